import {
  and,
  eq,
  gt,
  inArray,
  isNotNull,
  isNull,
  lt,
  lte,
  notInArray,
  or,
  type SQL,
  sql,
} from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { escrowPending, jobs, ledgerLines } from "../../db/pg/schema.js";
import {
  finalVerdicts,
  type RejudgeReason,
  type Verdict,
  verdictIsOpen,
  verdicts,
} from "../../db/schema.js";
import { AppError } from "../../errors.js";
import type { JobQueueStore } from "../job-queue.js";
import { besideAtClaim, jobKeepingLine } from "../ledger-rules.js";
import {
  backfillAgainSet,
  type ClaimedJob,
  claimedColumns,
  claimedSelection,
  claimOrder,
  jobInWindow,
  judgedElsewhere,
  NO_FAR_LOOK,
  narrows,
  putOffRange,
  type QueueFilter,
  reasonLiteral,
  rejudgeColumns,
  sliceToReopen,
} from "../queue-rules.js";
import { maxKeptSignatures, maxKeptWithPayouts, namedPastVault } from "../receipt-rules.js";
import type { PgExecutor } from "./executor.js";
import { boundRowLockWaits, sqlStateOf, takeReceiptWriterTurn } from "./group-commit.js";
import { holdNamerStripes } from "./namer-locks.js";
import { dueNowMs } from "./server-clock.js";
import { resetGivenUpPg } from "./signatures.js";

/** `job_id` is one of `ids`, as ONE array parameter (drizzle spreads a list into one each). */
const jobIdIn = (ids: readonly string[]) =>
  sql`${jobs.jobId} = ANY(${sql.param([...ids])}::text[])`;

/**
 * `reopenJobs` on PostgreSQL (see src/store/job-queue.ts, the only way a job goes back to the
 * verifier's queue), composing inside the caller's transaction. Returns how many jobs were
 * reopened. Due now by `dueNowMs`, the server's clock bounding the writer's.
 */
export async function reopenJobsPg(
  tx: PgExecutor,
  target: { jobIds: readonly string[] } | { where: SQL },
  now: number,
  options: { dueAt?: number; because?: RejudgeReason } = {},
): Promise<number> {
  const condition =
    "jobIds" in target ? (target.jobIds.length > 0 ? jobIdIn(target.jobIds) : null) : target.where;
  if (condition === null) return 0;
  const result = await tx
    .update(jobs)
    .set({
      ...rejudgeColumns(jobs, reasonLiteral(options.because ?? "evidence")),
      verdict: "pending",
      nextVerifyAt: options.dueAt ?? dueNowMs(now),
      verifyAttempts: 0,
      lastError: null,
      leaseOwner: null,
      leaseUntil: null,
      updatedAt: now,
    })
    .where(and(condition));
  return result.rowCount ?? 0;
}

/**
 * `reopenNamers` on PostgreSQL (see src/store/job-queue.ts): the jobs naming one of
 * `signatures` with a final verdict or a lease held are reopened, inside the caller's
 * transaction, except the job a transaction's memos name. One indexed lookup per column, as
 * there; the jobs API indexes hold only a signature the receipt does not name.
 *
 * The signatures' stripes are held first, until the caller commits (`holdNamerStripes`, see
 * namer-locks.ts): a verifier reading who names one of them waits for that commit, or, if it
 * read before, its job is found leased or final here and reopened. Only the rows reopened are
 * locked; an open job nobody holds is not touched, so two writers naming each other's open
 * jobs do not wait on each other's rows.
 */
export async function reopenNamersPg(
  tx: PgExecutor,
  signatures: readonly string[],
  now: number,
  except: string | null = null,
): Promise<number> {
  if (signatures.length === 0) return 0;
  const unique = [...new Set(signatures)];
  await holdNamerStripes(tx, unique);
  // A statement of its own, after the locks: it reads leases and verdicts committed before
  // they were granted.
  return reopenJobsPg(
    tx,
    {
      where: sql`${jobs.jobId} IN (${namersOf(unique)}) AND ${judged}
        AND ${jobs.jobId} IS DISTINCT FROM ${except}::text`,
    },
    now,
  );
}

/** A job whose judgement was made or is being made: a final verdict, or a lease held. */
const judged = sql`(NOT ${verdictIsOpen(jobs.verdict)} OR ${jobs.leaseOwner} IS NOT NULL)`;

/**
 * The ids of the jobs naming one of `signatures` by receipt, jobs API or conflict signature
 * (`job_conflict_signatures`), leaving out the job
 * the transaction's memos name unless `memoJob` (see `namersOf` in src/store/job-queue.ts).
 * Raw SQL: a UNION of index lookups, which the builder cannot join this way; each branch is the
 * signatures, each one's transaction row (by primary key) and the jobs naming it (one index).
 */
function namersOf(signatures: readonly string[], memoJob = false): SQL {
  const from = sql`FROM unnest(${sql.param([...signatures])}::text[]) AS s (sig)
    LEFT JOIN chain_transactions c ON c.signature = s.sig JOIN jobs j`;
  const notMemoJob = memoJob ? sql`true` : sql`j.job_id IS DISTINCT FROM c.memo_job`;
  return sql`SELECT j.job_id ${from} ON j.escrow_tx = s.sig WHERE ${notMemoJob}
    UNION SELECT j.job_id ${from} ON j.settlement_tx = s.sig WHERE ${notMemoJob}
    UNION SELECT j.job_id ${from} ON j.api_escrow_tx = s.sig
      AND j.api_escrow_tx IS DISTINCT FROM j.escrow_tx WHERE ${notMemoJob}
    UNION SELECT j.job_id ${from} ON j.api_settlement_tx = s.sig
      AND j.api_settlement_tx IS DISTINCT FROM j.settlement_tx WHERE ${notMemoJob}
    UNION SELECT j.job_id FROM unnest(${sql.param([...signatures])}::text[]) AS s (sig)
      LEFT JOIN chain_transactions c ON c.signature = s.sig
      JOIN job_conflict_signatures j ON j.signature = s.sig WHERE ${notMemoJob}`;
}

/**
 * `reopenHolders` on PostgreSQL (see src/store/job-queue.ts): the jobs holding one of
 * `signatures` in any role, the memo's job and conflicting receipts included, with a final
 * verdict or a lease held, are reopened inside the caller's transaction. After the receipt
 * writers' turn, as every writer of job rows takes it before the first row. It runs only when
 * a signature given up on is read on chain.
 */
export async function reopenHoldersPg(
  tx: PgExecutor,
  signatures: readonly string[],
  now: number,
): Promise<number> {
  if (signatures.length === 0) return 0;
  const unique = [...new Set(signatures)];
  await takeReceiptWriterTurn(tx);
  const holders = sql`${jobs.jobId} IN (${namersOf(unique, true)})`;
  return reopenJobsPg(tx, { where: sql`${holders} AND ${judged}` }, now);
}

type JobRow = typeof jobs.$inferSelect;

/**
 * `holdNamedPast` on PostgreSQL (see src/store/job-queue.ts): holds `signatures`, named for `job`
 * past its kept conflict signatures, for the escrow scan (`namedPastVault`), inside the caller's
 * transaction; one held already keeps its first time.
 */
export async function holdNamedPastPg(
  tx: PgExecutor,
  job: string,
  signatures: readonly string[],
  now: number,
): Promise<void> {
  if (signatures.length === 0) return;
  await tx
    .insert(escrowPending)
    .values(
      signatures.map((signature) => ({
        jobId: job,
        signature,
        vault: namedPastVault,
        listedAt: now,
      })),
    )
    .onConflictDoNothing();
}

/**
 * `keepWithJob` on PostgreSQL (see src/store/job-queue.ts): keeps a read ledger line's
 * transaction with `job` when the job names it nowhere yet and holds fewer conflict signatures
 * than `cap` (`maxKeptSignatures`; a payout the escrow scan read, `maxKeptWithPayouts`), inside
 * the caller's transaction. One guarded UPDATE: a receipt or an answer writing the same job at
 * once is waited for, and the row re-read, before the guard holds. The job's row when it gained
 * the signature, else null; one a full list of `maxKeptSignatures` leaves out is held for the
 * escrow scan (`holdNamedPastPg`). The signature's other namers that are judged are sent back
 * (`reopenNamersPg`), as there.
 */
export async function keepWithJobPg(
  tx: PgExecutor,
  job: string,
  signature: string,
  now: number,
  cap: number = maxKeptSignatures,
): Promise<JobRow | null> {
  const asArray = sql`CASE WHEN json_typeof(${jobs.conflictSignatures}) = 'array'
    THEN ${jobs.conflictSignatures}::jsonb ELSE '[]'::jsonb END`;
  const notNamed = sql`${jobs.jobId} = ${job}
    AND ${signature} IS DISTINCT FROM ${jobs.escrowTx}
    AND ${signature} IS DISTINCT FROM ${jobs.settlementTx}
    AND ${signature} IS DISTINCT FROM ${jobs.apiEscrowTx}
    AND ${signature} IS DISTINCT FROM ${jobs.apiSettlementTx}
    AND NOT ${asArray} @> jsonb_build_array(${signature}::text)`;
  const [row] = await tx
    .update(jobs)
    .set({
      conflictSignatures: sql`(${asArray} || jsonb_build_array(${signature}::text))::json`,
      updatedAt: now,
    })
    .where(sql`${notNamed} AND jsonb_array_length(${asArray}) < ${cap}`)
    .returning();
  if (row === undefined) {
    // A payout past every place (`maxKeptWithPayouts`) is not held again: it was read.
    if (cap === maxKeptSignatures) {
      await tx.execute(sql`INSERT INTO ${escrowPending} (job_id, signature, vault, listed_at)
        SELECT ${jobs.jobId}, ${signature}, ${namedPastVault}, ${now}::bigint FROM ${jobs}
        WHERE ${notNamed} AND jsonb_array_length(${asArray}) >= ${cap}
        ON CONFLICT (job_id, signature, vault) DO NOTHING`);
    }
    return null;
  }
  // The memo's job owns the transaction now: its other namers that are judged go back (not the
  // job itself, now a namer too: a claim keeping a line with the job it holds would drop its
  // own lease).
  await reopenNamersPg(tx, [signature], now, job);
  return row;
}

/**
 * Keeps with each claimed job the read lines its memos name that `jobKeepingLine` gives it and
 * it names nowhere (see `keepEarlyLines` in src/store/job-queue.ts), inside the claim's
 * transaction, which holds the claimed rows, and the escrow entries a recorded job's own step
 * holds for them (`escrow_pending.named_by`). Three indexed reads per claim
 * (ledger_lines_memo_job, ledger_lines_memo_jobs, escrow_pending's primary key).
 */
async function keepEarlyLinesPg(tx: PgExecutor, claimed: ClaimedJob[], now: number) {
  if (claimed.length === 0) return claimed;
  const ids = claimed.map((j) => j.jobId);
  const lines = await tx
    .select({
      memoJobId: ledgerLines.memoJobId,
      signature: ledgerLines.signature,
      kind: ledgerLines.kind,
      jobId: ledgerLines.jobId,
    })
    .from(ledgerLines)
    .where(
      sql`${ledgerLines.memoJobId} = ANY(${sql.param(ids)}::text[])
        AND ${ledgerLines.state} = 'read' AND ${ledgerLines.kind} IN ('return', 'unexplained')
        AND ${ledgerLines.jobId} = ${ledgerLines.memoJobId}`,
    )
    .orderBy(ledgerLines.memoJobId, ledgerLines.vault, ledgerLines.ord);
  const fresh = new Map<string, ClaimedJob>();
  const keep = async (job: string, signature: string) => {
    const row = await keepWithJobPg(tx, job, signature, now);
    if (row !== null) fresh.set(row.jobId, pickClaimed(row));
  };
  for (const l of lines) {
    if (l.memoJobId === null || l.kind === null) continue;
    if (jobKeepingLine({ kind: l.kind, jobId: l.jobId }) !== l.memoJobId) continue;
    await keep(l.memoJobId, l.signature);
  }
  for (const l of await earlyMixedDebitsPg(tx, ids)) await keep(l.job, l.signature);
  // The escrow entries a recorded job's own step holds for a claimed job (see the SQLite store).
  const byId = new Map(claimed.map((j) => [j.jobId, j]));
  const beside = await tx
    .select({
      job: escrowPending.jobId,
      signature: escrowPending.signature,
      vault: escrowPending.vault,
      blockTime: escrowPending.blockTime,
      listedAt: escrowPending.listedAt,
    })
    .from(escrowPending)
    .where(
      sql`${escrowPending.jobId} = ANY(${sql.param(ids)}::text[])
        AND ${escrowPending.namedBy} IS NOT NULL`,
    )
    .orderBy(escrowPending.jobId, escrowPending.signature, escrowPending.vault);
  for (const held of beside) {
    const job = byId.get(held.job);
    const what =
      job === undefined
        ? "wait"
        : besideAtClaim(job, { ...held, listedAt: Number(held.listedAt) }, now);
    if (what === "wait") continue;
    if (what === "keep") {
      const row = await keepWithJobPg(tx, held.job, held.signature, now, maxKeptWithPayouts);
      if (row !== null) fresh.set(row.jobId, pickClaimed(row));
    }
    await tx.delete(escrowPending).where(
      sql`${escrowPending.jobId} = ${held.job} AND ${escrowPending.signature} = ${held.signature}
          AND ${escrowPending.vault} = ${held.vault}`,
    );
  }
  return fresh.size === 0 ? claimed : claimed.map((j) => fresh.get(j.jobId) ?? j);
}

/**
 * The debits that are no lock whose memos name several jobs, one of them in `ids`, as (job,
 * signature) pairs (see `earlyMixedDebits` in src/store/job-queue.ts). Few: the statement lists
 * each as a finding; read by the partial index of lines with several memo jobs.
 */
async function earlyMixedDebitsPg(tx: PgExecutor, ids: readonly string[]) {
  const result = await tx.execute<{ job: string; signature: string }>(sql`
    SELECT DISTINCT m.job, l.signature, l.vault, l.ord
    FROM ${ledgerLines} AS l,
      LATERAL (SELECT e->>'jobId' AS job FROM jsonb_array_elements(l.memo_jobs::jsonb) AS e) AS m
    WHERE l.memo_jobs IS NOT NULL AND l.state = 'read' AND l.kind = 'unexplained'
      AND m.job = ANY(${sql.param(ids)}::text[])
    ORDER BY m.job, l.vault, l.ord`);
  return result.rows;
}

/** The `claimedColumns` of a whole row. */
function pickClaimed(row: JobRow): ClaimedJob {
  return Object.fromEntries(claimedColumns.map((key) => [key, row[key]])) as ClaimedJob;
}

/**
 * `makeDue` on PostgreSQL: `next_verify_at` moves to now (`dueNowMs`, the server's clock bounding
 * the writer's) if later; nothing else changes.
 */
export async function makeDuePg(
  tx: PgExecutor,
  jobIds: readonly string[],
  now: number,
): Promise<number> {
  if (jobIds.length === 0) return 0;
  const result = await tx
    .update(jobs)
    .set({ nextVerifyAt: sql`least(${jobs.nextVerifyAt}, ${dueNowMs(now)})` })
    .where(jobIdIn(jobIds));
  return result.rowCount ?? 0;
}

/**
 * `releaseLeasesOf` on PostgreSQL: drops every lease of `owner` (a process known dead, or this
 * one stopping), composing inside the caller's transaction (see verification-runs.ts).
 */
export async function releaseLeasesOfPg(tx: PgExecutor, owner: string): Promise<void> {
  // Skips rows another transaction holds, as `releaseLeases` of named jobs does: one statement
  // took the rows in table order, and a receipt group holding one of them while waiting for
  // another it had taken was aborted as a deadlock. A skipped lease simply runs to its expiry
  // (the writer holding it is most often reopening the job, which drops it anyway).
  const mine = tx
    .select({ jobId: jobs.jobId })
    .from(jobs)
    .where(and(eq(jobs.leaseOwner, owner), isNotNull(jobs.leaseUntil), verdictIsOpen(jobs.verdict)))
    .for("update", { skipLocked: true });
  await tx
    .update(jobs)
    .set({ leaseOwner: null, leaseUntil: null })
    .where(and(inArray(jobs.jobId, mine), eq(jobs.leaseOwner, owner)));
}

function filterCondition(filter: QueueFilter | null): SQL | undefined {
  if (!filter) return undefined;
  const parts = [];
  const window = jobInWindow(jobs, filter.from, filter.to);
  if (window) parts.push(window);
  if (filter.jobIds !== undefined) parts.push(inArray(jobs.jobId, filter.jobIds));
  return parts.length > 0 ? and(...parts) : undefined;
}

/**
 * How long an operator's re-verification waits for a row another session holds locked, in ms:
 * it holds the receipt writers' turn meanwhile, so every receipt waits as long. Past it the
 * request is refused naming the job (HTTP 423), rather than every receipt stalled for it.
 */
const REVERIFY_LOCK_WAIT_MS = 1000;

/**
 * The job queue on PostgreSQL (contract and SQLite version in src/store/job-queue.ts). Many
 * verifiers on many hosts claim from one table at once: a claim locks the rows it picks with
 * `FOR UPDATE SKIP LOCKED`, so claimers never wait on each other nor take the same job.
 */
export function createPgJobQueueStore(store: PgStore): JobQueueStore {
  const { db } = store;
  return {
    async claim(
      owner,
      filter,
      { t, leaseMs, limit, leaseAt = t, farAfter = NO_FAR_LOOK, liveOwners = [] },
    ) {
      // One statement: the subquery locks the due rows it picks and skips rows another
      // transaction holds (another claimer's pick, a writer reopening the job), so concurrent
      // claims get disjoint jobs without waiting. In READ COMMITTED a row changed since the
      // statement's snapshot (another owner's lease just committed) is re-checked against the
      // WHERE when locked and left out if it no longer qualifies.
      const claimable = and(
        verdictIsOpen(jobs.verdict),
        or(
          // A lease by the clock all hosts share (`leaseAt`), the due time by the claimer's.
          isNull(jobs.leaseUntil),
          liveOwners.length === 0
            ? lte(jobs.leaseUntil, leaseAt)
            : and(
                lte(jobs.leaseUntil, leaseAt),
                or(isNull(jobs.leaseOwner), notInArray(jobs.leaseOwner, [...liveOwners])),
              ),
          and(eq(jobs.leaseOwner, owner), lt(jobs.leaseUntil, leaseAt + leaseMs)),
        ),
        filterCondition(filter),
      );
      // Due jobs in the order they fell due (`claimOrder`): each side read in due order up to
      // the limit, its rows locked, and the three merged. A row locked on one side and left out
      // of the merge stays free once the claim commits.
      const { fresh, looked, far } = claimOrder(jobs, t, narrows(filter), farAfter);
      const side = (part: typeof fresh) =>
        db
          .select({ jobId: jobs.jobId, due: sql`${part.due}`.as("due") })
          .from(jobs)
          .where(and(claimable, part.where))
          // A window's claim in due order, but not read in it: a window's jobs are dated in it
          // or recorded in it (`jobInWindow`), an OR the planner estimates at twice its size,
          // and it then walked jobs_open_due in order through every due job outside the
          // window. Sorting an expression leaves it the window's indexes (jobs_created_at,
          // jobs_recorded_late).
          // New jobs tie on next_verify_at 0: read by when they were recorded (jobs_open_due
          // holds it), as `due` merges them; in heap order a row written again fell behind.
          .orderBy(
            narrows(filter) ? sql`${jobs.nextVerifyAt} + 0` : jobs.nextVerifyAt,
            jobs.recordedAt,
          )
          .limit(limit)
          .for("update", { skipLocked: true });
      const due = sql`SELECT job_id FROM (SELECT * FROM (${side(fresh)}) f
        UNION ALL SELECT * FROM (${side(looked)}) l UNION ALL SELECT * FROM (${side(far)}) r) u
        ORDER BY due LIMIT ${limit}`;
      return db.transaction(async (tx) => {
        // The due jobs are read in the order of jobs_open_due, stopping at `limit`. Right after
        // a bulk ingest the statistics still say few jobs are due, and the planner picked a
        // bitmap scan, or another index, that fetched and sorted every due job (22,000 rows,
        // 25 ms, per claim). A filtered claim (a window, named jobs) is left to the planner:
        // through jobs_open_due it would walk every due job outside the window.
        if (!narrows(filter)) {
          // SET LOCAL of both in one round trip.
          await tx.execute(
            sql`SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)`,
          );
        }
        const claimed = await tx
          .update(jobs)
          .set({ leaseOwner: owner, leaseUntil: leaseAt + leaseMs })
          .where(sql`${jobs.jobId} IN (${due})`)
          .returning(claimedSelection(jobs));
        return keepEarlyLinesPg(tx, claimed, t);
      });
    },
    async rowsOf(jobIds) {
      if (jobIds.length === 0) return [];
      return db.select().from(jobs).where(jobIdIn(jobIds));
    },
    async renewLeases(owner, until) {
      // Skips rows another transaction holds rather than waiting on them: such a job is being
      // reopened (its lease is dropped) or decided under this lease, and the next renewal, a
      // third of a lease later, covers it. A renewal that waited could close a deadlock with a
      // writer updating several of this owner's jobs in another order.
      const mine = db
        .select({ jobId: jobs.jobId })
        .from(jobs)
        // Only open jobs hold leases, with their end set (see `leasedTo`): jobs_leased, not
        // every open job, is read.
        .where(
          and(eq(jobs.leaseOwner, owner), isNotNull(jobs.leaseUntil), verdictIsOpen(jobs.verdict)),
        )
        .for("update", { skipLocked: true });
      await db
        .update(jobs)
        .set({ leaseUntil: until })
        .where(and(inArray(jobs.jobId, mine), eq(jobs.leaseOwner, owner)));
    },
    async releaseLeases(owner, jobIds, dueAt) {
      if (jobIds === undefined) return releaseLeasesOfPg(db, owner);
      if (jobIds.length === 0) return;
      // Skips rows another transaction holds, as the renewal does: such a job is being reopened
      // (which drops its lease anyway); waiting could close a deadlock with a writer updating
      // several of these jobs in another order. A skipped lease simply runs to its expiry.
      const mine = db
        .select({ jobId: jobs.jobId })
        .from(jobs)
        .where(and(eq(jobs.leaseOwner, owner), jobIdIn(jobIds)))
        .for("update", { skipLocked: true });
      await db
        .update(jobs)
        .set({
          leaseOwner: null,
          leaseUntil: null,
          ...(dueAt === undefined
            ? {}
            : { nextVerifyAt: sql`greatest(${jobs.nextVerifyAt}, ${dueAt}::bigint)` }),
        })
        .where(and(inArray(jobs.jobId, mine), eq(jobs.leaseOwner, owner)));
    },
    async nextDue(filter, clocks) {
      // A lease's end on the caller's clock, as `next_verify_at` is.
      const shift = clocks === undefined ? 0 : clocks.t - clocks.leaseAt;
      const leaseEnd = sql`${jobs.leaseUntil} + ${shift}::bigint`;
      const next = (due: SQL) =>
        sql`min(${due})`.mapWith((value: string | number | null) =>
          value === null ? null : Number(value),
        );
      if (filter !== null) {
        const [row] = await db
          .select({ next: next(sql`greatest(${jobs.nextVerifyAt}, coalesce(${leaseEnd}, 0))`) })
          .from(jobs)
          .where(and(verdictIsOpen(jobs.verdict), filterCondition(filter)));
        return row?.next ?? null;
      }
      // The whole queue, as on SQLite: the first unleased open job by jobs_open_due, and the
      // leased ones by jobs_leased, not every open job at each poll.
      const unleased = db
        .select({ due: sql`${jobs.nextVerifyAt}`.as("due") })
        .from(jobs)
        .where(and(verdictIsOpen(jobs.verdict), isNull(jobs.leaseUntil)))
        .orderBy(jobs.nextVerifyAt)
        .limit(1);
      const leased = db
        .select({ due: sql`greatest(${jobs.nextVerifyAt}, ${leaseEnd})`.as("due") })
        .from(jobs)
        .where(and(isNotNull(jobs.leaseUntil), verdictIsOpen(jobs.verdict)));
      const [row] = await db
        .select({ next: next(sql`due`) })
        .from(sql`((${unleased}) UNION ALL (${leased})) AS queue`);
      return row?.next ?? null;
    },
    async countVerdicts(filter) {
      const byVerdict = Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
      const rows = await db
        .select({ verdict: jobs.verdict, n: sql`count(*)`.mapWith(Number) })
        .from(jobs)
        .where(filterCondition(filter))
        .groupBy(jobs.verdict);
      let total = 0;
      for (const r of rows) {
        byVerdict[r.verdict] = r.n;
        total += r.n;
      }
      const final = finalVerdicts.reduce((n, v) => n + byVerdict[v], 0);
      return { total, final, byVerdict };
    },
    async reverify(jobId, t) {
      try {
        await db.transaction(async (tx) => {
          // The receipt writers' turn before any row, as every writer of job rows takes it: the
          // reopen locks the job's row and then, by the statement trigger, its rollup rows; a
          // group that had moved those rollup rows and came to the job's row closed a circle.
          await takeReceiptWriterTurn(tx);
          await boundRowLockWaits(tx, REVERIFY_LOCK_WAIT_MS);
          await resetGivenUpPg(tx, jobId);
          await tx
            .update(jobs)
            .set(backfillAgainSet)
            .where(and(eq(jobs.jobId, jobId), eq(jobs.backfillState, "gave_up")));
          await reopenJobsPg(tx, { jobIds: [jobId] }, t, { dueAt: 0, because: "reverify" });
        });
      } catch (error) {
        if (sqlStateOf(error) !== "55P03") throw error;
        throw new AppError(
          "locked",
          `job ${jobId}: a row of it is held locked by another session (waited ${REVERIFY_LOCK_WAIT_MS} ms); it was not queued, ask again once it is free`,
          { jobId },
          { cause: error },
        );
      }
    },
    async reopenStale(jobIds, before, t) {
      if (jobIds.length === 0) return 0;
      return db.transaction(async (tx) => {
        // The receipt writers' turn before any row, as every writer of job rows takes it; a row
        // another session holds is skipped: it is being judged or reopened, so read again.
        await takeReceiptWriterTurn(tx);
        const free = await tx
          .select({ jobId: jobs.jobId })
          .from(jobs)
          .where(
            and(
              jobIdIn([...jobIds]),
              sql`NOT ${verdictIsOpen(jobs.verdict)}`,
              isNull(jobs.leaseOwner),
              or(isNull(jobs.verdictAt), lt(jobs.verdictAt, before)),
            ),
          )
          .orderBy(jobs.jobId)
          .for("update", { skipLocked: true });
        return reopenJobsPg(tx, { jobIds: free.map((r) => r.jobId) }, t);
      });
    },
    async reopenJudgedElsewhere(step) {
      const stale = and(
        judgedElsewhere(jobs, step.judgedBy, step.before),
        filterCondition(step.filter),
      );
      const rows = await db
        .select({ jobId: jobs.jobId, due: sql<boolean>`coalesce(${stale}, false)` })
        .from(jobs)
        .where(
          step.ids
            ? jobIdIn(step.ids)
            : step.after === null
              ? undefined
              : gt(jobs.jobId, step.after),
        )
        .orderBy(jobs.jobId)
        .limit(step.scan);
      const { ids, last, end } = sliceToReopen(rows, step);
      if (ids.length === 0) return { reopened: [], last, end, held: [] };
      const reopened = await db.transaction(async (tx) => {
        // The receipt writers' turn before any row, as every writer of job rows takes it; a row
        // another session holds is skipped, never waited for (counted apart by the nightly).
        await takeReceiptWriterTurn(tx);
        const free = await tx
          .select({ jobId: jobs.jobId })
          .from(jobs)
          .where(and(jobIdIn(ids), stale))
          .orderBy(jobs.jobId)
          .for("update", { skipLocked: true });
        const found = free.map((r) => r.jobId);
        await reopenJobsPg(tx, { jobIds: found }, step.t, { because: "profile" });
        return found;
      });
      // The rest are held locked, or were judged or reopened since the read: the held ones
      // (still to reopen as their last committed row says) are tried again by the sweep.
      const taken = new Set(reopened);
      const rest = ids.filter((id) => !taken.has(id));
      const held =
        rest.length === 0
          ? []
          : (
              await db
                .select({ jobId: jobs.jobId })
                .from(jobs)
                .where(and(jobIdIn(rest), stale))
            ).map((r) => r.jobId);
      return { reopened, last, end, held };
    },
    async countJudgedElsewhere(filter, judgedBy) {
      return db
        .select({ profile: jobs.verdictProfile, jobs: sql`count(*)`.mapWith(Number) })
        .from(jobs)
        .where(and(judgedElsewhere(jobs, judgedBy), filterCondition(filter)))
        .groupBy(jobs.verdictProfile);
    },
    async openOf(jobIds) {
      if (jobIds.length === 0) return [];
      const rows = await db
        .select({ jobId: jobs.jobId })
        .from(jobs)
        .where(and(jobIdIn(jobIds), verdictIsOpen(jobs.verdict)));
      return rows.map((r) => r.jobId);
    },
    async putOff(after, until, limit, from) {
      return db
        .select({
          jobId: jobs.jobId,
          escrowTx: jobs.escrowTx,
          apiEscrowTx: jobs.apiEscrowTx,
          settlementTx: jobs.settlementTx,
          apiSettlementTx: jobs.apiSettlementTx,
          nextVerifyAt: jobs.nextVerifyAt,
        })
        .from(jobs)
        .where(putOffRange(jobs, after, until, from))
        .orderBy(jobs.nextVerifyAt, jobs.jobId)
        .limit(limit);
    },
    async makeDue(jobIds, t) {
      if (jobIds.length === 0) return 0;
      // Skips rows another transaction holds, as `releaseLeases` does: such a job is being
      // claimed or reopened, and so looked at again anyway.
      const free = db
        .select({ jobId: jobs.jobId })
        .from(jobs)
        .where(and(jobIdIn(jobIds), verdictIsOpen(jobs.verdict)))
        .for("update", { skipLocked: true });
      const result = await db
        .update(jobs)
        .set({ nextVerifyAt: sql`least(${jobs.nextVerifyAt}, ${dueNowMs(t)})` })
        .where(inArray(jobs.jobId, free));
      return result.rowCount ?? 0;
    },
  };
}
