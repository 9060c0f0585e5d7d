import { setTimeout as sleep } from "node:timers/promises";
import { and, count, desc, eq, getTableColumns, inArray, sql } from "drizzle-orm";
import { isLostPgConnection } from "../../db/client.js";
import type { PgStore } from "../../db/pg/client.js";
import { jobs, nightlyCountedThrough, receiptConflicts } from "../../db/pg/schema.js";
import type { ReceiptSource } from "../../db/schema.js";
import type { AppError } from "../../errors.js";
import { backoff } from "../../retry.js";
import { checkedKeys } from "../key-checks.js";
import {
  addsTags,
  captureDifferences,
  captureParams,
  carriesCapture,
  closingsRepriced,
  completedBackfill,
  completedFingerprint,
  completedKeyCheck,
  completedStatus,
  completesOpenCapture,
  conflictRecord,
  differingFields,
  filledColumns,
  filledFields,
  fillsCapture,
  fillsKeyCheck,
  gainedConflictSignatures,
  initialBackfill,
  knowingLessOutcome,
  maxStoredConflicts,
  needsReopen,
  newlyNamed,
  nextSummary,
  noLongerNamed,
  otherSignatureReceipts,
  otherSourceDifferences,
  otherSourceKeyDifferences,
  type Receipt,
  type RecordedRow,
  receiptFields,
  receiptHash,
  receiptNamedPast,
  statusDiffers,
  statusOfCopy,
  statusWritten,
} from "../receipt-rules.js";
import type { ReceiptsStore, ReconnectOptions, RecordOptions, RecordResult } from "../receipts.js";
import type { PgExecutor, PgTx } from "./executor.js";
import {
  boundRowLockWaits,
  type CommitInDoubt,
  commitInDoubt,
  inGroupTransaction,
  retryWhileRowLocked,
  settledCommitStatus,
  takeReceiptWriterTurn,
  transactionSession,
} from "./group-commit.js";
import { rowsHeldError } from "./held-rows.js";
import { holdNamedPastPg, reopenJobsPg, reopenNamersPg } from "./job-queue.js";
import { holdKeyStripes, keyCheckSpansPg, reopenSharedKeysPg } from "./key-checks.js";
import { serverClockShiftMs } from "./server-clock.js";
import { inPgTransaction, retryOnConflict } from "./write-transaction.js";

type NewJob = typeof jobs.$inferInsert;

const columns = getTableColumns(jobs);

/** The recorded row a new receipt is compared with (as `RecordedRow` on SQLite). */
const recordedColumns = {
  ...Object.fromEntries(receiptFields.map((field) => [field, columns[field]])),
  source: jobs.source,
  tags: jobs.tags,
  captureState: jobs.captureState,
  receiptHash: jobs.receiptHash,
  responseModel: jobs.responseModel,
  creditVault: jobs.creditVault,
  backfillState: jobs.backfillState,
  conflictSignatures: jobs.conflictSignatures,
  httpStatus: jobs.httpStatus,
  keyFingerprint: jobs.keyFingerprint,
  keyCheck: jobs.keyCheck,
  maxTokens: jobs.maxTokens,
  choices: jobs.choices,
  createdAt: jobs.createdAt,
  requestMethod: jobs.requestMethod,
  requestPath: jobs.requestPath,
  verdict: jobs.verdict,
  nextVerifyAt: jobs.nextVerifyAt,
  verifyAttempts: jobs.verifyAttempts,
  lastError: jobs.lastError,
  leaseOwner: jobs.leaseOwner,
} as { [K in keyof RecordedRow]: (typeof columns)[K & keyof typeof columns] };

/** The new row of a receipt, as `recordOne` inserts it on SQLite. */
function newRow(
  receipt: Receipt,
  source: ReceiptSource,
  now: number,
  backfillDelayMs: number,
): NewJob {
  const params = captureParams(receipt, source, now, receiptHash(receipt));
  const backfillState = initialBackfill(receipt, source);
  const { now: _now, ...values } = params;
  return {
    ...(values as Omit<NewJob, "createdAt" | "recordedAt" | "updatedAt">),
    createdAt: receipt.createdAt ?? now,
    recordedAt: now,
    respondedAt: receipt.respondedAt ?? null,
    updatedAt: now,
    backfillState,
    backfillNextAt: backfillState ? now + backfillDelayMs : null,
  };
}

/**
 * Inserts the first receipt of each job that has no row yet and returns the job ids it created,
 * in one statement: `INSERT … SELECT FROM unnest(<one array per column>) ON CONFLICT (job_id)
 * DO NOTHING`. Raw SQL because the builder only writes a VALUES list, which for 1,000 rows
 * costs 27,000 parameters and about half a second of building on a busy host; the arrays keep
 * the statement the same size for any batch. The primary key decides who creates a job when
 * several processes send it at once (the later insert waits for the earlier transaction and then
 * does nothing), and the rows go in job-id order so two batches that share jobs take their row
 * locks in the same order instead of deadlocking.
 */
async function insertNew(tx: PgTx, rows: NewJob[]): Promise<Set<string>> {
  const first = rows[0];
  if (first === undefined) return new Set();
  rows.sort((a, b) => (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : 0));
  const keys = Object.keys(first) as (keyof NewJob & keyof typeof columns)[];
  const names = sql.join(
    keys.map((key) => sql.identifier(columns[key].name)),
    sql`, `,
  );
  const arrays = sql.join(
    keys.map((key) => {
      const column = columns[key];
      // Each value as the column's driver value (bigint as text, JSON as text), NULL as null.
      const values = rows.map((row) => {
        const value = row[key];
        return value === null || value === undefined ? null : column.mapToDriverValue(value);
      });
      return sql`${sql.param(values)}::${sql.raw(column.getSQLType())}[]`;
    }),
    sql`, `,
  );
  // Never recorded before the end of a nightly window already counted: see
  // nightlyCountedThrough (greatest() passes over the null of a store no run has claimed in).
  const recorded = columns.recordedAt.name;
  const selected = sql.join(
    keys.map((key) =>
      columns[key].name === recorded
        ? sql`greatest(${sql.identifier(recorded)}, (SELECT ${nightlyCountedThrough.through}
            FROM ${nightlyCountedThrough} WHERE ${nightlyCountedThrough.id} = 1))`
        : sql.identifier(columns[key].name),
    ),
    sql`, `,
  );
  const inserted = await tx.execute<{ job_id: string }>(sql`
    INSERT INTO ${jobs} (${names})
    SELECT ${selected} FROM unnest(${arrays}) AS given (${names})
    ON CONFLICT (job_id) DO NOTHING
    RETURNING job_id`);
  return new Set(inserted.rows.map((row) => row.job_id));
}

/**
 * Keeps a conflicting receipt, as `storeConflict` does on SQLite. The caller holds the job's
 * row lock (`FOR UPDATE`), so the count, the same-receipt check and the summary below are
 * read and written by one transaction at a time for this job: the cap holds and the summary
 * counts every conflict however many processes post them at once.
 */
async function storeConflict(
  tx: PgTx,
  row: RecordedRow,
  receipt: Receipt,
  source: ReceiptSource,
  differences: string[],
  now: number,
): Promise<boolean> {
  const jobId = receipt.jobId;
  const signatures = gainedConflictSignatures(row, receipt);
  if (signatures !== null) {
    await tx
      .update(jobs)
      .set({ conflictSignatures: signatures, updatedAt: now })
      .where(eq(jobs.jobId, jobId));
  }
  // Named past the full list: held for the escrow scan, which keeps a payout with the job.
  await holdNamedPastPg(tx, jobId, receiptNamedPast(row, receipt, signatures), now);
  const gained = signatures !== null;
  const record = conflictRecord(receipt);
  const ofJob = eq(receiptConflicts.jobId, jobId);
  const [same] = await tx
    .select({ id: receiptConflicts.id })
    .from(receiptConflicts)
    .where(
      and(
        ofJob,
        eq(receiptConflicts.source, source),
        // `json` has no equality operator; it keeps the text as written, which is this same
        // JSON.stringify of the record.
        sql`${receiptConflicts.receipt}::text = ${JSON.stringify(record)}`,
      ),
    )
    .limit(1);
  if (same !== undefined) return gained;
  const [counted] = await tx.select({ n: count() }).from(receiptConflicts).where(ofJob);
  const stored = Number(counted?.n ?? 0);
  if (stored < maxStoredConflicts - 1) {
    await tx
      .insert(receiptConflicts)
      .values({ jobId, source, receipt: record, differences, receivedAt: now });
    return gained;
  }
  if (stored === maxStoredConflicts - 1) {
    const summary = { summary: true, more_conflicts: 1, latest: record };
    await tx
      .insert(receiptConflicts)
      .values({ jobId, source, receipt: summary, differences, receivedAt: now });
    return gained;
  }
  const [last] = await tx
    .select({
      id: receiptConflicts.id,
      receipt: receiptConflicts.receipt,
      differences: receiptConflicts.differences,
    })
    .from(receiptConflicts)
    .where(ofJob)
    .orderBy(desc(receiptConflicts.id))
    .limit(1);
  if (!last) return gained;
  await tx
    .update(receiptConflicts)
    .set({ source, ...nextSummary(last, record, differences), receivedAt: now })
    .where(eq(receiptConflicts.id, last.id));
  return gained;
}

/** The job's recorded receipt, its row locked for the rest of the transaction. */
async function lockedRow(tx: PgTx, jobId: string): Promise<RecordedRow> {
  const [found] = await tx
    .select(recordedColumns)
    .from(jobs)
    .where(eq(jobs.jobId, jobId))
    .for("update");
  // Only a row deleted since the insert looked (no code path deletes jobs) lands here.
  if (found === undefined) throw new Error(`job ${jobId} vanished while recording`);
  return found as RecordedRow;
}

/**
 * The rows of `jobIds`, each locked for the rest of the transaction as `lockedRow` locks one,
 * read in one statement in job id order: a batch of 1,000 receipts of recorded jobs (an
 * import run again) took a round trip per receipt.
 */
async function lockedRows(tx: PgTx, jobIds: readonly string[]): Promise<Map<string, RecordedRow>> {
  if (jobIds.length === 0) return new Map();
  const found = await tx
    .select({ ...recordedColumns, jobId: jobs.jobId })
    .from(jobs)
    .where(inArray(jobs.jobId, [...jobIds]))
    .orderBy(sql`${jobs.jobId} COLLATE "C"`)
    .for("update");
  return new Map(found.map((row) => [row.jobId, row as RecordedRow]));
}

/** Writes the key check another source's receipt names for its job (see `fillsKeyCheck`). */
async function fillKeyCheck(tx: PgTx, receipt: Receipt, now: number): Promise<void> {
  await tx
    .update(jobs)
    .set({ keyCheck: receipt.keyCheck ?? null, updatedAt: now })
    .where(eq(jobs.jobId, receipt.jobId));
}

/** As on SQLite: the key check a receipt kept as a conflict names, filled in. */
async function fillKeyCheckOfConflict(
  tx: PgTx,
  row: RecordedRow,
  receipt: Receipt,
  now: number,
): Promise<boolean> {
  if (!fillsKeyCheck(row, receipt)) return false;
  await fillKeyCheck(tx, receipt, now);
  return true;
}

/**
 * A receipt of a job that already has a row, as `recordOne` on SQLite after its insert did
 * nothing. The row is read `FOR UPDATE` (or was, as `read`, in this transaction before anything
 * of the batch wrote it): what is written below depends on what was read, and the lock makes a
 * second process with a receipt of the same job wait and then read this one's result, as if
 * the two had come one after the other.
 */
async function recordExisting(
  tx: PgTx,
  receipt: Receipt,
  source: ReceiptSource,
  now: number,
  read?: RecordedRow,
): Promise<{ result: RecordResult; reopen: boolean; named: string[] }> {
  const hash = receiptHash(receipt);
  const row = read ?? (await lockedRow(tx, receipt.jobId));
  const completesCapture = completesOpenCapture(row, receipt, source, () => row);
  if (!completesCapture && row.receiptHash === hash) {
    const status = statusOfCopy(row, receipt);
    // As on SQLite: capture fields are compared only with the row's own source's, but for the
    // key check.
    const ownSource = row.source === source;
    const readsCapture = ownSource ? carriesCapture(receipt) : (receipt.keyCheck ?? null) !== null;
    if (status === "none" && !readsCapture) {
      return { result: { outcome: "duplicate" }, reopen: false, named: [] };
    }
    if (statusWritten(status)) {
      await tx
        .update(jobs)
        .set({ httpStatus: receipt.httpStatus ?? null, updatedAt: now })
        .where(eq(jobs.jobId, receipt.jobId));
    }
    const differences = [
      ...(statusDiffers(status) ? ["http_status"] : []),
      ...(ownSource ? captureDifferences(row, receipt) : otherSourceKeyDifferences(row, receipt)),
    ];
    if (differences.length > 0) {
      await storeConflict(tx, row, receipt, source, differences, now);
      const keyFilled = await fillKeyCheckOfConflict(tx, row, receipt, now);
      const reopen = (statusWritten(status) || keyFilled) && needsReopen(row, now);
      return { result: { outcome: "conflict", differences }, reopen, named: [] };
    }
    const fills = ownSource ? fillsCapture(row, receipt) : fillsKeyCheck(row, receipt);
    const tagged = ownSource && addsTags(row, receipt);
    if (!ownSource && fills) await fillKeyCheck(tx, receipt, now);
    else if (fills || tagged) {
      await tx
        .update(jobs)
        .set({ ...filledColumns(row, receipt), updatedAt: now })
        .where(eq(jobs.jobId, receipt.jobId));
    }
    // A key, vault or ceiling the job lacked changes its checks; a new tag does not.
    if (status === "fill" || fills) {
      return {
        result: { outcome: "updated" },
        reopen: needsReopen(row, now),
        named: closingsRepriced(row, receipt),
      };
    }
    return { result: { outcome: tagged ? "updated" : "duplicate" }, reopen: false, named: [] };
  }
  const reopen = needsReopen(row, now);
  const named = [...newlyNamed(row, receipt), ...closingsRepriced(row, receipt)];
  const byId = eq(jobs.jobId, receipt.jobId);
  // As on SQLite: a status the recorded receipt lacks, or an error answer where it says 2xx,
  // is taken whatever else this receipt does; one that differs is a conflict too.
  const status = completesCapture ? "none" : statusOfCopy(row, receipt);
  if (statusWritten(status)) {
    await tx
      .update(jobs)
      .set({ httpStatus: receipt.httpStatus ?? null, updatedAt: now })
      .where(byId);
  }
  const statusFinding = statusDiffers(status) ? ["http_status"] : [];
  if (completesCapture) {
    const params = captureParams(receipt, source, now, hash);
    const { now: _now, source: _source, ...values } = params;
    const settlementTx = receipt.settlementTx ?? row.settlementTx;
    await tx
      .update(jobs)
      .set({
        ...(values as Partial<NewJob>),
        httpStatus: completedStatus(row, receipt),
        settlementTx,
        responseModel: receipt.responseModel ?? row.responseModel,
        creditVault: receipt.creditVault ?? row.creditVault,
        // A request's method and path are the proxy's facts: a completion naming none keeps them.
        requestMethod: receipt.requestMethod ?? row.requestMethod,
        requestPath: receipt.requestPath ?? row.requestPath,
        keyFingerprint: completedFingerprint(row, receipt),
        keyCheck: completedKeyCheck(row, receipt),
        backfillState: completedBackfill(row, settlementTx, source),
        updatedAt: now,
      })
      .where(byId);
    const dropped = noLongerNamed(row, { escrowTx: receipt.escrowTx, settlementTx });
    return { result: { outcome: "updated" }, reopen, named: [...named, ...dropped] };
  }

  // Past an open capture, another source's receipt never completes or corrects this one:
  // anything but the same receipt is a finding, whether it contradicts a field or only knows
  // more (one that only knows less is a duplicate).
  if (row.source !== source) {
    const differences = [
      ...otherSourceDifferences(row, receipt, statusFinding),
      ...otherSourceKeyDifferences(row, receipt),
    ];
    if (differences.length === 0) {
      if (!fillsKeyCheck(row, receipt)) return knowingLessOutcome(statusWritten(status), reopen);
      await fillKeyCheck(tx, receipt, now);
      return { result: { outcome: "updated" }, reopen, named: [] };
    }
    const gained = await storeConflict(tx, row, receipt, source, differences, now);
    const keyFilled = await fillKeyCheckOfConflict(tx, row, receipt, now);
    return {
      result: { outcome: "conflict", differences },
      reopen: (gained || keyFilled || statusWritten(status)) && reopen,
      named: gained ? named : [],
    };
  }
  const differences = [
    ...differingFields(row, receipt),
    ...captureDifferences(row, receipt),
    ...statusFinding,
  ];
  if (differences.length > 0) {
    const gained = await storeConflict(tx, row, receipt, source, differences, now);
    const keyFilled = await fillKeyCheckOfConflict(tx, row, receipt, now);
    return {
      result: { outcome: "conflict", differences },
      reopen: (gained || keyFilled || statusWritten(status)) && reopen,
      named: gained ? named : [],
    };
  }
  if (filledFields(row, receipt).length === 0) {
    const fills = fillsCapture(row, receipt);
    const tagged = addsTags(row, receipt);
    if (fills || tagged) {
      await tx
        .update(jobs)
        .set({ ...filledColumns(row, receipt), updatedAt: now })
        .where(byId);
    }
    if (status === "fill" || fills) return { result: { outcome: "updated" }, reopen, named: [] };
    return { result: { outcome: tagged ? "updated" : "duplicate" }, reopen: false, named: [] };
  }

  await tx
    .update(jobs)
    .set({ ...filledColumns(row, receipt), updatedAt: now })
    .where(byId);
  return { result: { outcome: "updated" }, reopen, named };
}

/**
 * Keeps each further signature `receipt` named (`otherSignatures`) as a conflicting receipt of
 * its job, as `recordOtherSignatures` on SQLite. The row is read `FOR UPDATE`, as for
 * `storeConflict`.
 */
async function recordOtherSignatures(
  tx: PgTx,
  receipt: Receipt,
  source: ReceiptSource,
  now: number,
): Promise<{ reopen: boolean; named: string[] }> {
  const outcome = { reopen: false, named: [] as string[] };
  for (const other of otherSignatureReceipts(receipt)) {
    // Read again for each: the one before may have added to the job's conflict signatures.
    const row = await lockedRow(tx, receipt.jobId);
    const named = newlyNamed(row, other.receipt);
    const gained = await storeConflict(tx, row, other.receipt, source, [other.column], now);
    if (gained) {
      outcome.reopen ||= needsReopen(row, now);
      outcome.named.push(...named);
    }
  }
  return outcome;
}

/**
 * `recordReceiptsInTransaction` on PostgreSQL: the same outcomes, inside the caller's
 * transaction (the receipt writer's group) or one of its own. The first receipt of each new
 * job is created by one multi-row insert (the common case, a batch of new jobs, costs one round
 * trip per thousand); every other item, in batch order, goes through `recordExisting`, so a job
 * repeated within the batch is a duplicate or conflict of its earlier item. Jobs whose receipt
 * changed go back to the verifier's queue (`reopenJobsPg`) in the same transaction.
 */
export async function recordReceiptsPg(
  executor: PgExecutor,
  receipts: readonly Receipt[],
  source: ReceiptSource,
  options: RecordOptions = {},
): Promise<RecordResult[]> {
  const hostNow = options.now ?? Date.now();
  const delay = options.backfillDelayMs ?? 0;
  return inPgTransaction(executor, async (tx) => {
    // The recording on the server's clock, which the verifiers' due times follow: the jobs API
    // wait runs from `recorded_at`, and whether a job is due yet (`needsReopen`) compares its
    // `next_verify_at` with this. By the writer's clock, a recorder 3 minutes ahead made a
    // clean verdict wait 3 minutes longer for the answer (one behind, not at all), and left a
    // job a verifier had put off unreopened when its receipt gained a signature.
    const now = hostNow + (await serverClockShiftMs(tx));
    // Fingerprints these receipts name with a key check, and the checks they had before (their
    // stripes held first, see pg/key-checks.ts).
    const keys = checkedKeys(receipts);
    await holdKeyStripes(tx, keys);
    const before = await keyCheckSpansPg(tx, keys);
    const firstOf = new Map<string, number>();
    receipts.forEach((receipt, index) => {
      if (!firstOf.has(receipt.jobId)) firstOf.set(receipt.jobId, index);
    });
    const created = await insertNew(
      tx,
      [...firstOf.values()].map((index) => newRow(receipts[index] as Receipt, source, now, delay)),
    );
    // Each recorded job's row as this batch first meets it; a later item of the same job reads
    // it again, after what the earlier one wrote.
    const recorded = await lockedRows(
      tx,
      [...firstOf.keys()].filter((jobId) => !created.has(jobId)),
    );
    const reopened: string[] = [];
    const named: string[] = [];
    const results: RecordResult[] = [];
    for (const [index, receipt] of receipts.entries()) {
      const outcome =
        created.has(receipt.jobId) && firstOf.get(receipt.jobId) === index
          ? {
              result: { outcome: "created" as const },
              reopen: false,
              named: newlyNamed(null, receipt),
            }
          : await recordExisting(
              tx,
              receipt,
              source,
              now,
              firstOf.get(receipt.jobId) === index ? recorded.get(receipt.jobId) : undefined,
            );
      const others = await recordOtherSignatures(tx, receipt, source, now);
      if (outcome.reopen || others.reopen) reopened.push(receipt.jobId);
      named.push(...outcome.named, ...others.named);
      results.push(outcome.result);
    }
    await reopenJobsPg(tx, { jobIds: reopened }, now);
    await reopenNamersPg(tx, named, now);
    await reopenSharedKeysPg(tx, keys, before, now);
    return results;
  });
}

/**
 * How long a `record` (an import's) waits for a job row another session holds locked, per try,
 * in ms; and how many tries before it is refused naming the job. Unbounded, one row held by an
 * operator's `SELECT … FOR UPDATE` made `import` wait the whole statement timeout per receipt,
 * holding the receipt writers' turn all that time.
 */
const RECORD_LOCK_WAIT_MS = 1000;
const RECORD_LOCK_TRIES = 5;

/**
 * The receipts store on a PostgreSQL pool: each `record` is one transaction, written again on a
 * lost connection while `reconnect` says (see `ReconnectOptions`).
 */
export function createPgReceiptsStore(store: PgStore, reconnect?: ReconnectOptions): ReceiptsStore {
  const recordOnce: ReceiptsStore["record"] = (receipts, source, options) =>
    retryOnConflict(() =>
      // Its transaction's id is kept with a failure after its body ran (`commitInDoubt`).
      inGroupTransaction(
        store.db,
        async (tx) => {
          // Its own transaction, beside the receipt writers' groups: it takes its turn as they do.
          await takeReceiptWriterTurn(tx);
          await boundRowLockWaits(tx, RECORD_LOCK_WAIT_MS);
          return reconnect === undefined ? null : transactionSession(tx);
        },
        (tx) => recordReceiptsPg(tx, receipts, source, options),
      ),
    );
  const recordLocked: ReceiptsStore["record"] = (receipts, source, options) =>
    retryWhileRowLocked(
      () => recordOnce(receipts, source, options),
      RECORD_LOCK_TRIES,
      (error) => rowsLockedError(store, receipts, error),
    );
  if (reconnect === undefined) return { record: recordLocked };
  return {
    async record(receipts, source, options) {
      /** Since when tries are lost (monotonic), and the last one cut after its COMMIT was sent. */
      let since: number | null = null;
      let doubt: { session: CommitInDoubt; error: unknown } | null = null;
      for (let retries = 0; ; retries++) {
        try {
          if (doubt !== null) {
            // A fresh connection answers whether the cut COMMIT landed; until it can, the
            // transaction is neither reported nor written again.
            const until = (since ?? 0) + reconnect.withinMs;
            const status = await settledCommitStatus(store.pool, doubt.session, until);
            if (status === "in progress") throw doubt.error;
            const { values } = doubt.session;
            doubt = null;
            if (status === "committed") return values as RecordResult[];
          }
          return await recordLocked(receipts, source, options);
        } catch (error) {
          if (!isLostPgConnection(error)) throw error;
          const session = commitInDoubt(error);
          if (session !== null) doubt = { session, error };
          since ??= performance.now();
          if (performance.now() - since >= reconnect.withinMs) throw error;
          reconnect.onRetry?.(error);
          const wait = backoff(retries, { baseMs: 100, maxMs: 2000 });
          await sleep(Math.min(wait, Math.max(0, since + reconnect.withinMs - performance.now())));
        }
      }
    },
  };
}

/** The refusal of a `record` whose job rows stayed locked: nothing of it was written. */
function rowsLockedError(
  store: PgStore,
  receipts: readonly { jobId: string }[],
  cause: unknown,
): Promise<AppError> {
  const ids = [...new Set(receipts.map((r) => r.jobId))];
  return rowsHeldError(
    store,
    cause,
    { tries: RECORD_LOCK_TRIES, waitMs: RECORD_LOCK_WAIT_MS },
    `none of these ${receipts.length} receipts was written, run the import again once it is free`,
    inArray(jobs.jobId, ids),
    ids,
  );
}
