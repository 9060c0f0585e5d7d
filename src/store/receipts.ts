import { and, count, desc, eq, getTableColumns, sql } from "drizzle-orm";
import type { SqliteStore, Store } from "../db/client.js";
import { foldRollupDeltas } from "../db/rollups.js";
import { jobs, nightlyCountedThrough, type ReceiptSource, receiptConflicts } from "../db/schema.js";
import { holdNamedPast, reopenJobs, reopenNamers } from "./job-queue.js";
import { checkedKeys, keyCheckSpans, reopenSharedKeys } from "./key-checks.js";
import { pgTwins } from "./pg-twins.js";
import {
  indexAwareUpdate,
  inWriteTransaction,
  param,
  perConnection,
  prepareRun,
} from "./prepared.js";
import {
  addsTags,
  type CaptureField,
  captureDifferences,
  captureFields,
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
  type ReceiptCore,
  type RecordedRow,
  receiptFields,
  receiptHash,
  receiptNamedPast,
  statusDiffers,
  statusOfCopy,
  statusWritten,
} from "./receipt-rules.js";
import type { WriteUnit } from "./write-unit.js";

export {
  maxConflictSignatures,
  maxKeptSignatures,
  maxStoredConflicts,
  needsReopen,
  type OtherSignatures,
  type Receipt,
  type ReceiptCore,
  type ReceiptField,
  receiptFields,
  receiptHash,
} from "./receipt-rules.js";

export type RecordOutcome = "created" | "duplicate" | "conflict" | "updated";

export interface RecordResult {
  outcome: RecordOutcome;
  /** For a conflict: the fields (column names, e.g. `settlement_tx`) that differ from the recorded ones. */
  differences?: string[];
}

/** Options of `record` / `recordReceiptsInTransaction`. */
export interface RecordOptions {
  /** Clock (epoch ms); default `Date.now`. */
  now?: number;
  /**
   * Delay before the background backfill first asks the jobs API about a job recorded without
   * a settlement signature. The proxy asks right away with the caller's key, so it passes a
   * grace period here; other sources leave it at 0.
   */
  backfillDelayMs?: number;
}

/**
 * How a `record` on PostgreSQL rides through a lost connection (`pg_terminate_backend`, a
 * server restart, a failover): its transaction is written again on a fresh connection, for at
 * most `withinMs` from the first loss; past it, the loss is thrown. A transaction cut after its
 * COMMIT was sent is first asked of the server: committed, its own outcomes are returned, not
 * the `duplicate`s a second write would find. SQLite has no connection to lose.
 */
export interface ReconnectOptions {
  withinMs: number;
  /** Told before each new try, with the error that cut the last one. */
  onRetry?: (error: unknown) => void;
}

/** The receipts of jobs: what each source said, and the conflicting receipts kept as findings. */
export interface ReceiptsStore {
  /**
   * Records receipts from `source` in one IMMEDIATE transaction, in order (a job repeated
   * within the batch is a duplicate or conflict of its earlier item), idempotent on the job id:
   * - `created`: first receipt of the job;
   * - `duplicate`: the same receipt again (same canonical hash), or one that adds nothing;
   * - `updated`: the proxy completing the row it opened (or an import of the completion it
   *   logged, see `completesOpenCapture`), or a receipt from the same source that
   *   agrees with every recorded field and only fills fields that were unknown (e.g. a
   *   settlement signature, a key fingerprint, `max_tokens`, a credit vault, a new tag name);
   * - `conflict`: a field both receipts know differs (a receipt field, or from the same source
   *   a key fingerprint, `max_tokens`, credit vault or `created_at`), or a receipt from another
   *   source that is not the same receipt (one source never fills in another's); the new
   *   receipt is kept in `receipt_conflicts` (an audit finding, capped per job, see
   *   `maxStoredConflicts`) and the recorded one is left as it was.
   * New rows keep the verifier's defaults (`verdict` pending, `next_verify_at` 0); a recorded
   * job whose receipt changes is reopened for the verifier (`reopenJobs`).
   */
  record(
    receipts: readonly Receipt[],
    source: ReceiptSource,
    options?: RecordOptions,
  ): Promise<RecordResult[]>;
}

const columns = getTableColumns(jobs);

/** The recorded row as read here. */
type StoredRow = RecordedRow;

/** Values of a write of `jobs`, by field name. */
type JobValues = Partial<typeof jobs.$inferInsert>;

/**
 * The indexed columns of `jobs` a receipt write sets besides the key fingerprint (the job id
 * too: the statement's own key, never changed).
 */
const indexedReceiptColumns = [
  "jobId",
  "escrowTx",
  "settlementTx",
  "worker",
  "model",
  "backfillState",
] as const;

/**
 * Prepares a drizzle INSERT or UPDATE of `jobs` as `INSERT OR IGNORE` / `UPDATE OR IGNORE`
 * (drizzle's SQLite builder cannot say it). Why: a statement that fires a trigger and may abort
 * on a constraint (NOT NULL, with the default ABORT policy) makes SQLite keep a statement
 * journal, a copy of every page the statement touches, for each row written; with the rollup
 * triggers on `jobs` that cost a third of a receipt write. Under OR IGNORE (which the triggers'
 * statements inherit) nothing can abort, so there is no statement journal. A row that breaks a
 * constraint is then skipped instead of failing: callers check `changes` and throw.
 */
export function prepareOrIgnore(
  store: SqliteStore,
  query: { toSQL(): { sql: string; params: unknown[] } },
): { run(values: Record<string, unknown>): { changes: number } } {
  const head = /^(insert|update) (into )?"jobs" /;
  return prepareRun(store, query, (text) => {
    if (!head.test(text)) throw new Error(`not an insert or update of jobs: ${text.slice(0, 40)}`);
    return text.replace(head, '$1 or ignore $2"jobs" ').replace(/ on conflict do nothing$/, "");
  });
}

/** A receipt write that changed no row although the job's row exists broke a constraint. */
function expectWritten(changes: number, jobId: string): void {
  if (changes !== 1) {
    throw new Error(`receipt of job ${jobId} breaks a constraint of jobs (NOT NULL): not recorded`);
  }
}

/** Every statement of the receipt path, prepared once per connection (see `statementsOf`). */
function prepare(store: SqliteStore) {
  const { db } = store;
  const jobId = eq(jobs.jobId, sql.placeholder("jobId"));
  const conflictsOf = eq(receiptConflicts.jobId, sql.placeholder("jobId"));
  const receiptValues = Object.fromEntries(
    receiptFields.map((field) => [field, param(field)]),
  ) as ReceiptCore;
  // What a capture records beside the receipt's own fields: inserted with a new job, and
  // replaced whole when the proxy completes the capture it opened.
  const captureValues = Object.fromEntries(
    [...captureFields, "receiptHash"].map((field) => [field, param(field)]),
  ) as Pick<typeof jobs.$inferInsert, CaptureField | "receiptHash">;
  return {
    holdNamedPast: (job: string, signatures: readonly string[], now: number) =>
      holdNamedPast(store, job, signatures, now),
    // OR IGNORE: no statement journal per receipt (see `prepareOrIgnore`); a job already
    // recorded is skipped, as ON CONFLICT DO NOTHING did.
    insert: prepareOrIgnore(
      store,
      db
        .insert(jobs)
        .values({
          ...receiptValues,
          source: param("source"),
          ...captureValues,
          createdAt: param("createdAt"),
          // Never before the end of a nightly window already counted: see nightlyCountedThrough.
          recordedAt: sql`max(${param("now")}, coalesce((SELECT ${nightlyCountedThrough.through}
            FROM ${nightlyCountedThrough} WHERE ${nightlyCountedThrough.id} = 1), 0))`,
          respondedAt: param("respondedAt"),
          updatedAt: param("now"),
          backfillState: param("backfillState"),
          backfillNextAt: param("backfillNextAt"),
        })
        .onConflictDoNothing(),
    ),
    // Enough to tell the common case, the same receipt again, without reading the whole row.
    recorded: db
      .select({
        source: jobs.source,
        captureState: jobs.captureState,
        receiptHash: jobs.receiptHash,
        httpStatus: jobs.httpStatus,
      })
      .from(jobs)
      .where(jobId)
      .prepare(),
    select: db
      .select({
        ...Object.fromEntries(receiptFields.map((field) => [field, columns[field]])),
        source: jobs.source,
        tags: jobs.tags,
        captureState: jobs.captureState,
        receiptHash: jobs.receiptHash,
        responseModel: jobs.responseModel,
        creditVault: jobs.creditVault,
        backfillState: jobs.backfillState,
        conflictSignatures: jobs.conflictSignatures,
        keyFingerprint: jobs.keyFingerprint,
        keyCheck: jobs.keyCheck,
        maxTokens: jobs.maxTokens,
        choices: jobs.choices,
        createdAt: jobs.createdAt,
        httpStatus: jobs.httpStatus,
        requestMethod: jobs.requestMethod,
        requestPath: jobs.requestPath,
        ...queueColumns,
      } as { [K in keyof StoredRow]: (typeof columns)[K] })
      .from(jobs)
      .where(jobId)
      .prepare(),
    // The proxy's own completion of the row it opened: every capture field is replaced (an
    // indexed one that keeps its value is left out, see `indexAwareUpdate`).
    completeCapture: indexAwareUpdate<JobValues>(
      {
        ...receiptValues,
        ...captureValues,
        backfillState: param("backfillState"),
        updatedAt: param("now"),
      },
      [...indexedReceiptColumns, "keyFingerprint", "keyCheck"],
      (set) => prepareOrIgnore(store, db.update(jobs).set(set).where(jobId)),
    ),
    // A later receipt that agrees with the recorded one and only adds what was unknown.
    fill: indexAwareUpdate<JobValues>(
      {
        ...receiptValues,
        keyFingerprint: param("keyFingerprint"),
        keyCheck: param("keyCheck"),
        maxTokens: param("maxTokens"),
        choices: param("choices"),
        creditVault: param("creditVault"),
        requestMethod: param("requestMethod"),
        requestPath: param("requestPath"),
        tags: param("tags"),
        receiptHash: param("receiptHash"),
        backfillState: param("backfillState"),
        updatedAt: param("now"),
      },
      [...indexedReceiptColumns, "keyFingerprint", "keyCheck"],
      (set) => prepareOrIgnore(store, db.update(jobs).set(set).where(jobId)),
    ),
    // Another source's receipt naming the key check the job lacks (see `fillsKeyCheck`).
    fillKeyCheck: db
      .update(jobs)
      .set({ keyCheck: param("keyCheck"), updatedAt: param("now") })
      .where(jobId)
      .prepare(),
    // A copy of the receipt that brings the status it lacked (see `statusOfCopy`).
    fillStatus: db
      .update(jobs)
      .set({ httpStatus: param("httpStatus"), updatedAt: param("now") })
      .where(jobId)
      .prepare(),
    // Signatures a conflicting receipt names are the job's too: the verifier fetches and judges
    // them (a job id answered twice, each time with its own lock, is charged twice).
    conflictSignatures: db
      .update(jobs)
      .set({ conflictSignatures: param("signatures"), updatedAt: param("now") })
      .where(jobId)
      .prepare(),
    conflict: db
      .insert(receiptConflicts)
      .values({
        jobId: param("jobId"),
        source: param("source"),
        receipt: param("receipt"),
        differences: param("differences"),
        receivedAt: param("now"),
      })
      .prepare(),
    conflictCount: db.select({ n: count() }).from(receiptConflicts).where(conflictsOf).prepare(),
    sameConflict: db
      .select({ id: receiptConflicts.id })
      .from(receiptConflicts)
      .where(
        and(
          conflictsOf,
          eq(receiptConflicts.source, sql.placeholder("source")),
          // A placeholder in a condition is not encoded by its column: the caller passes JSON text.
          eq(receiptConflicts.receipt, sql.placeholder("receiptJson")),
        ),
      )
      .prepare(),
    lastConflict: db
      .select({
        id: receiptConflicts.id,
        receipt: receiptConflicts.receipt,
        differences: receiptConflicts.differences,
      })
      .from(receiptConflicts)
      .where(conflictsOf)
      .orderBy(desc(receiptConflicts.id))
      .limit(1)
      .prepare(),
    updateSummary: db
      .update(receiptConflicts)
      .set({
        source: param("source"),
        receipt: param("receipt"),
        differences: param("differences"),
        receivedAt: param("now"),
      })
      .where(eq(receiptConflicts.id, sql.placeholder("id")))
      .prepare(),
  };
}

const statementsOf = perConnection(prepare);
type Statements = ReturnType<typeof prepare>;

/** The verifier's queue columns of a job, read to decide whether reopening it changes anything. */
export const queueColumns = {
  verdict: jobs.verdict,
  nextVerifyAt: jobs.nextVerifyAt,
  verifyAttempts: jobs.verifyAttempts,
  lastError: jobs.lastError,
  leaseOwner: jobs.leaseOwner,
};

/**
 * Keeps a conflicting receipt, at most `maxStoredConflicts` rows per job: the same conflicting
 * receipt again is not stored twice, and beyond the cap the last row summarizes the rest.
 * Returns true when the job gained signatures to verify (it is then reopened).
 */
function storeConflict(
  st: Statements,
  row: RecordedRow,
  receipt: Receipt,
  source: ReceiptSource,
  differences: string[],
  now: number,
): boolean {
  const signatures = gainedConflictSignatures(row, receipt);
  const gained = signatures !== null;
  if (gained) st.conflictSignatures.run({ jobId: receipt.jobId, signatures, now });
  // Named past the full list: held for the escrow scan, which keeps a payout with the job.
  st.holdNamedPast(receipt.jobId, receiptNamedPast(row, receipt, signatures), now);
  const record = conflictRecord(receipt);
  const jobId = receipt.jobId;
  const receiptJson = JSON.stringify(record);
  if (st.sameConflict.get({ jobId, source, receiptJson }) !== undefined) return gained;
  const stored = st.conflictCount.get({ jobId })?.n ?? 0;
  if (stored < maxStoredConflicts - 1) {
    st.conflict.run({ jobId, source, receipt: record, differences, now });
    return gained;
  }
  if (stored === maxStoredConflicts - 1) {
    const summary = { summary: true, more_conflicts: 1, latest: record };
    st.conflict.run({ jobId, source, receipt: summary, differences, now });
    return gained;
  }
  const last = st.lastConflict.get({ jobId });
  if (!last) return gained;
  st.updateSummary.run({ id: last.id, source, ...nextSummary(last, record, differences), now });
  return gained;
}

/** Writes the key check another source's receipt names for its job (see `fillsKeyCheck`). */
function fillKeyCheck(st: Statements, receipt: Receipt, now: number): void {
  const filled = st.fillKeyCheck.run({ jobId: receipt.jobId, keyCheck: receipt.keyCheck, now });
  expectWritten(filled.changes, receipt.jobId);
}

/**
 * Fills in the key check a receipt kept as a conflict names (see `fillsKeyCheck`), whatever
 * else it contradicts or knows more of: the check is the key's own, and a later receipt naming
 * the settlement an import line lacked left the job judged on its fingerprint alone. True when
 * it was written (the job is judged again).
 */
function fillKeyCheckOfConflict(
  st: Statements,
  row: RecordedRow,
  receipt: Receipt,
  now: number,
): boolean {
  if (!fillsKeyCheck(row, receipt)) return false;
  fillKeyCheck(st, receipt, now);
  return true;
}

/**
 * Records one receipt inside the caller's transaction. Synchronous by design: it is the body
 * of the batch transaction and must never await. Returns the outcome, and whether the
 * recorded job changed so that it must be verified again.
 */
function recordOne(
  st: Statements,
  receipt: Receipt,
  source: ReceiptSource,
  now: number,
  backfillDelayMs: number,
): { result: RecordResult; reopen: boolean; named: string[] } {
  const hash = receiptHash(receipt);
  const params = captureParams(receipt, source, now, hash);
  const backfillState = initialBackfill(receipt, source);
  const inserted = st.insert.run({
    ...params,
    createdAt: receipt.createdAt ?? now,
    respondedAt: receipt.respondedAt ?? null,
    backfillState,
    backfillNextAt: backfillState ? now + backfillDelayMs : null,
  });
  if (inserted.changes === 1) {
    return { result: { outcome: "created" }, reopen: false, named: newlyNamed(null, receipt) };
  }

  const recorded = st.recorded.get({ jobId: receipt.jobId });
  // Neither inserted nor there: the row broke a constraint that OR IGNORE skipped.
  if (recorded === undefined) expectWritten(0, receipt.jobId);
  const completesCapture =
    recorded !== undefined &&
    completesOpenCapture(
      recorded,
      receipt,
      source,
      () => st.select.get({ jobId: receipt.jobId }) as StoredRow,
    );
  if (!completesCapture && recorded?.receiptHash === hash) {
    const status = statusOfCopy(recorded, receipt);
    // Capture fields outside the hash are compared only with the row's own source's (another
    // source's never fills in this one but for the key check), and only read when the receipt
    // names any.
    const ownSource = recorded.source === source;
    const readsCapture = ownSource ? carriesCapture(receipt) : (receipt.keyCheck ?? null) !== null;
    if (status === "none" && !readsCapture) {
      return { result: { outcome: "duplicate" }, reopen: false, named: [] };
    }
    const row = st.select.get({ jobId: receipt.jobId }) as StoredRow;
    if (statusWritten(status)) {
      st.fillStatus.run({ jobId: receipt.jobId, httpStatus: receipt.httpStatus, now });
    }
    const differences = [
      ...(statusDiffers(status) ? ["http_status"] : []),
      ...(ownSource ? captureDifferences(row, receipt) : otherSourceKeyDifferences(row, receipt)),
    ];
    if (differences.length > 0) {
      storeConflict(st, row, receipt, source, differences, now);
      const keyFilled = fillKeyCheckOfConflict(st, row, receipt, now);
      const reopen = (statusWritten(status) || keyFilled) && needsReopen(row, now);
      return { result: { outcome: "conflict", differences }, reopen, named: [] };
    }
    const fills = ownSource ? fillsCapture(row, receipt) : fillsKeyCheck(row, receipt);
    const tagged = ownSource && addsTags(row, receipt);
    if (!ownSource && fills) fillKeyCheck(st, receipt, now);
    else if (fills || tagged) {
      expectWritten(st.fill.run({ ...filledColumns(row, receipt), now }, row).changes, row.jobId);
    }
    // A key, vault or ceiling the job lacked changes its checks; a new tag does not.
    if (status === "fill" || fills) {
      return { result: { outcome: "updated" }, reopen: needsReopen(row, now), named: [] };
    }
    return { result: { outcome: tagged ? "updated" : "duplicate" }, reopen: false, named: [] };
  }
  const row = st.select.get({ jobId: receipt.jobId }) as StoredRow;
  const reopen = needsReopen(row, now);
  const named = [...newlyNamed(row, receipt), ...closingsRepriced(row, receipt)];
  // A status the recorded receipt lacks, or an error answer where it says 2xx, is taken
  // whatever else this receipt does; one that differs is a conflict too (see `statusOfCopy`).
  const status = completesCapture ? "none" : statusOfCopy(row, receipt);
  if (statusWritten(status)) {
    st.fillStatus.run({ jobId: receipt.jobId, httpStatus: receipt.httpStatus, now });
  }
  const statusFinding = statusDiffers(status) ? ["http_status"] : [];
  if (completesCapture) {
    const settlementTx = receipt.settlementTx ?? row.settlementTx;
    const completed = st.completeCapture.run(
      {
        ...params,
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
      },
      row,
    );
    expectWritten(completed.changes, receipt.jobId);
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
      fillKeyCheck(st, receipt, now);
      return { result: { outcome: "updated" }, reopen, named: [] };
    }
    const gained = storeConflict(st, row, receipt, source, differences, now);
    const keyFilled = fillKeyCheckOfConflict(st, row, receipt, now);
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
    const gained = storeConflict(st, row, receipt, source, differences, now);
    const keyFilled = fillKeyCheckOfConflict(st, row, receipt, now);
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
      expectWritten(st.fill.run({ ...filledColumns(row, receipt), now }, row).changes, row.jobId);
    }
    if (status === "fill" || fills)
      return { result: { outcome: "updated" }, reopen, named: closingsRepriced(row, receipt) };
    return { result: { outcome: tagged ? "updated" : "duplicate" }, reopen: false, named: [] };
  }

  const filled = st.fill.run({ ...filledColumns(row, receipt), now }, row);
  expectWritten(filled.changes, receipt.jobId);
  return { result: { outcome: "updated" }, reopen, named };
}

/**
 * Keeps each further signature `receipt` named (`otherSignatures`) as a conflicting receipt of
 * its job, once the receipt itself is recorded; the receipt's outcome is its own (a new job's
 * receipt naming two settlements is still created). Returns whether the job must go back to
 * the verifier, and the signatures it newly names.
 */
function recordOtherSignatures(
  st: Statements,
  receipt: Receipt,
  source: ReceiptSource,
  now: number,
): { reopen: boolean; named: string[] } {
  const outcome = { reopen: false, named: [] as string[] };
  for (const other of otherSignatureReceipts(receipt)) {
    // Read again for each: the one before may have added to the job's conflict signatures.
    const row = st.select.get({ jobId: receipt.jobId }) as StoredRow;
    const named = newlyNamed(row, other.receipt);
    const gained = storeConflict(st, row, other.receipt, source, [other.column], now);
    if (gained) {
      outcome.reopen ||= needsReopen(row, now);
      outcome.named.push(...named);
    }
  }
  return outcome;
}

/** Receipts from which a call inside another transaction folds the rollup deltas it wrote. */
const foldBatchReceipts = 100;

/**
 * `ReceiptsStore.record` for a caller that batches writes of its own (the receipt writer's
 * group commit): synchronous, on the connection `tx`, in an IMMEDIATE transaction of its own
 * or, inside the caller's transaction, a savepoint. A receipt that gains fields or signatures
 * sends its job back to the verifier's queue (`reopenJobs`) in that same transaction.
 */
export function recordReceiptsInTransaction(
  tx: SqliteStore,
  receipts: readonly Receipt[],
  source: ReceiptSource,
  options: RecordOptions = {},
): RecordResult[] {
  const st = statementsOf(tx);
  const now = options.now ?? Date.now();
  const delay = options.backfillDelayMs ?? 0;
  // A batch sums its rollup deltas before it commits; the small writes of a group commit leave
  // theirs to the rows the next batch or the fold trigger sums (reports add pending rows).
  const fold = !tx.sqlite.inTransaction || receipts.length >= foldBatchReceipts;
  const record = () => {
    const reopened: string[] = [];
    const named: string[] = [];
    // Fingerprints these receipts name with a key check, and the checks they had before.
    const keys = checkedKeys(receipts);
    const before = keys.length === 0 ? new Map() : keyCheckSpans(tx, keys);
    const results = receipts.map((receipt) => {
      const outcome = recordOne(st, receipt, source, now, delay);
      const others = recordOtherSignatures(st, receipt, source, now);
      if (outcome.reopen || others.reopen) reopened.push(receipt.jobId);
      named.push(...outcome.named, ...others.named);
      return outcome.result;
    });
    reopenJobs(tx, { jobIds: reopened }, now);
    reopenNamers(tx, named, now);
    reopenSharedKeys(tx, keys, before, now);
    if (fold) foldRollupDeltas(tx);
    return results;
  };
  return inWriteTransaction(tx, record);
}

/** Records receipts as one unit of the receipt writer's group commit (either dialect). */
export function recordReceiptsUnit(
  receipts: readonly Receipt[],
  source: ReceiptSource,
  options: RecordOptions = {},
): WriteUnit<RecordResult[]> {
  return {
    runSqlite: (tx) => recordReceiptsInTransaction(tx, receipts, source, options),
    runPostgres: (tx) => pgTwins().recordReceiptsPg(tx, receipts, source, options),
    jobIds: receipts.map((receipt) => receipt.jobId),
    data: { kind: "receipts", receipts, source, options },
  };
}

/** What `recordReceiptAtAttemptUnit` resolves with: the results, and the time it was dated. */
export interface ReceiptAtAttempt {
  results: RecordResult[];
  /** The clock's reading inside the transaction that committed it (epoch ms). */
  at: number;
}

/**
 * Records one receipt of the proxy, dated inside the write transaction (`created_at` is
 * `createdAt` when given, else the clock's reading at the attempt that commits, as `now` is in
 * both): receipts are then committed in the order of their times, within the few ms a
 * transaction takes, whatever waited before it (a group retried after the database came back
 * is dated by the attempt that landed). Resolves with that time.
 */
export function recordReceiptAtAttemptUnit(
  receipt: Receipt,
  createdAt: number | null,
  backfillDelayMs: number,
  clock: () => number = Date.now,
): WriteUnit<ReceiptAtAttempt> {
  const unitAt = (at: number) =>
    recordReceiptsUnit([{ ...receipt, createdAt: createdAt ?? at }], "proxy", {
      now: at,
      backfillDelayMs,
    });
  return {
    runSqlite: (tx) => {
      const at = clock();
      return { results: unitAt(at).runSqlite(tx), at };
    },
    runPostgres: async (tx) => {
      const at = clock();
      return { results: await unitAt(at).runPostgres(tx), at };
    },
    jobIds: [receipt.jobId],
    data: { kind: "receiptAtAttempt", receipt, createdAt, backfillDelayMs },
  };
}

/** The receipts store of either dialect. */
export function createReceiptsStore(store: Store, reconnect?: ReconnectOptions): ReceiptsStore {
  return store.kind === "postgres"
    ? pgTwins().createPgReceiptsStore(store, reconnect)
    : createSqliteReceiptsStore(store);
}

/** The receipts store on `store`'s connection; its statements are prepared here, once. */
function createSqliteReceiptsStore(store: SqliteStore): ReceiptsStore {
  statementsOf(store);
  return {
    async record(receipts, source, options) {
      return recordReceiptsInTransaction(store, receipts, source, options);
    },
  };
}
