import { inArray, sql } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { checkResults } from "../../db/pg/schema.js";
import { finalVerdicts } from "../../db/schema.js";
import type { CustodyProfile } from "../custody.js";
import { waitsForTreasury } from "../custody-rules.js";
import {
  attemptsAfter,
  clearsRejudging,
  keepsVerdict,
  pinsOf,
  writesFinal,
} from "../verdict-rules.js";
import type { VerdictAmounts, VerdictStore, VerdictWrite } from "../verdicts.js";
import { createPgCustodyPinning } from "./custody-pinning.js";
import type { PgTx } from "./executor.js";
import {
  boundRowLockWaits,
  type HeldRowWaitOptions,
  heldRowBackoffMs,
  retryWhileRowLocked,
  takeReceiptWriterTurn,
} from "./group-commit.js";
import { rowsHeldError } from "./held-rows.js";

/**
 * How long a verdict write holding the receipt writers' turn waits for a row another session
 * holds locked (a job its pins send back to the verifier, `pinAll`), per try, in ms; and how many
 * tries, the turn let go between them, before the write is refused naming the job. Unbounded,
 * one such row kept the write waiting the statement timeout with the turn held, and every
 * receipt waited as long (10 s with a 10 s timeout).
 */
const VERDICT_LOCK_WAIT_MS = 1000;
const VERDICT_LOCK_TRIES = 3;

/**
 * The verdict writer on PostgreSQL (see src/store/verdicts.ts): a batch's verdicts, amounts,
 * check rows and pins in one transaction, each job's write guarded by `owner`'s lease.
 *
 * The jobs rows of a batch are written by one `UPDATE … FROM unnest(…) WHERE lease_owner = owner
 * RETURNING job_id` (see `updateLeased`): a job whose lease another owner took first is not
 * returned, and its checks and treasury evidence are then skipped too, as on SQLite. The report
 * rollups follow the jobs rows through the `jobs_rollup_*` statement triggers of
 * migrations/postgres, once for the whole batch.
 */
export function createPgVerdictStore(
  store: PgStore,
  profile: CustodyProfile,
  judgedBy: string | null = null,
  options: HeldRowWaitOptions = {},
): VerdictStore {
  const custody = createPgCustodyPinning(profile);
  const heldRowWaitMs = options.heldRowWaitMs ?? VERDICT_LOCK_WAIT_MS;

  async function writeAll(
    tx: PgTx,
    decisions: readonly VerdictWrite[],
    owner: string,
    runId: number | null,
    t: number,
  ): Promise<boolean[]> {
    // Verdict writers take turns (a transaction-level advisory lock, before any row lock): every
    // verdict moves the rollup rows of its day's worker and key, which the jobs of a batch
    // share, so concurrent batches already wait on each other there, and in whatever order
    // their jobs come, which deadlocks (each one costing PostgreSQL's deadlock_timeout, 1 s by
    // default). Taking turns up front costs little: batches of one deployment's few workers and
    // keys share those rows anyway. The RPC work of a round is outside this transaction.
    // (A batch now moves its rollup rows in one statement, in key order, so two batches no
    // longer meet there out of order; the turns stay until the other rows a batch locks, jobs
    // another owner took over and treasury evidence, are shown safe without them.)
    // Raw SQL: drizzle has no builder for advisory locks.
    await tx.execute(sql`SELECT pg_advisory_xact_lock(${VERDICT_LOCK_CLASS}::int, 0)`);
    // Then the receipt writers' turn: a receipt group moves rollup rows (a new job's insert) and
    // then locks an existing job's row, the order opposite to this batch's (jobs rows, then
    // their rollup rows by the statement trigger); the two deadlocked, one aborted after
    // deadlock_timeout. Taken after the verdict turn, which no receipt writer takes.
    await takeReceiptWriterTurn(tx);
    // Its own jobs' rows are taken skipping those held (`leasedRowsFree`); the other rows it may
    // wait for under the turn, the jobs its pins reopen, are waited for a while only.
    await boundRowLockWaits(tx, heldRowWaitMs);
    // The treasury-learning lock comes next, before any row lock, so a writer holding it never
    // waits for a row held by another writer that waits for the lock (see custody-pinning.ts).
    if (decisions.some((d) => d.evaluation?.learned.treasuryCandidate)) {
      await custody.lockTreasuryLearning(tx);
    }
    // What the evaluations learned is pinned first, the whole batch at once in key order; a pin
    // another job (or process) set first that disagrees makes that verdict stale.
    const pinning = decisions.filter((d) => pinsOf(d) !== null);
    const pinOk = await custody.pinAll(
      tx,
      pinning.map((d) => ({ job: d.job, learned: pinsOf(d)! })),
      t,
    );
    const stale = new Set(pinning.filter((_, i) => !pinOk[i]));
    // A verdict that waits for the treasury, which another writer pinned since the checks read
    // the pins, is stale too: that writer's reopen ran before this verdict was written. (One
    // pinned by a job of this batch reopens it below, as the rows are written first.)
    const waiting = decisions.filter(
      (d) => d.evaluation !== null && waitsForTreasury(d.verdict, d.evaluation.unproven),
    );
    if (waiting.length > 0 && (await custody.treasuryLearned(tx))) {
      for (const d of waiting) stale.add(d);
    }

    // Only a job's first decision is written: writing it releases the lease, so another
    // decision of the same job in the batch would find the lease gone and write nothing.
    const firsts = new Set<VerdictWrite>();
    const seen = new Set<string>();
    for (const d of decisions) {
      if (!seen.has(d.job.jobId)) firsts.add(d);
      seen.add(d.job.jobId);
    }
    const writes = decisions.filter((d) => firsts.has(d)).map((d) => rowOf(d, stale.has(d), t));
    const updated = await updateLeased(tx, writes, owner, t, judgedBy);

    const written: boolean[] = [];
    const checksOf: VerdictWrite[] = [];
    for (const d of decisions) {
      // Stale (written back to pending), a later decision of the same job, or the lease was
      // lost (another owner has the job): no verdict, and nothing else of it is written.
      if (stale.has(d) || !firsts.has(d) || !updated.has(d.job.jobId)) {
        written.push(false);
        continue;
      }
      if (d.evaluation?.learned.treasuryCandidate) {
        await custody.countTreasuryEvidence(
          tx,
          d.job.jobId,
          d.evaluation.learned.treasuryCandidate,
          t,
        );
      }
      // A disagreement's evidence is written too, and replaced by the checks of the final verdict.
      const final = finalVerdicts.includes(d.verdict);
      if ((final || d.verdict === "rpc_disagreement") && d.checks) checksOf.push(d);
      written.push(final);
    }
    await replaceChecks(tx, checksOf, runId, t);
    return written;
  }

  return {
    async write(decisions, { owner, runId, t }) {
      if (decisions.length === 0) return [];
      // A job polled again and still waiting keeps its verdict (see `keepsVerdict`): written
      // without the verdict writers' turn, which orders the writers of rollup rows, and this
      // write moves none (the statement trigger runs on every UPDATE of jobs, and finds no
      // verdict or amount changed). It still takes the receipt writers' turn (see
      // `updateKeepingVerdict`). Those left unwritten (the verdict is not the one claimed, or
      // the lease is gone) take the whole write below.
      const seen = new Set<string>();
      const same = decisions.filter((d) => {
        const first = !seen.has(d.job.jobId);
        seen.add(d.job.jobId);
        return first && keepsVerdict(d);
      });
      const kept =
        same.length === 0
          ? new Set<string>()
          : await retryOnDeadlock(() =>
              store.db.transaction((tx) =>
                updateKeepingVerdict(
                  tx,
                  same.map((d) => rowOf(d, false, t)),
                  owner,
                  t,
                ),
              ),
            );
      const rest = decisions.filter((d) => !(keepsVerdict(d) && kept.has(d.job.jobId)));
      const written =
        rest.length === 0
          ? []
          : await retryWhileRowLocked(
              () =>
                retryOnDeadlock(() =>
                  store.db.transaction((tx) => writeAll(tx, rest, owner, runId, t)),
                ),
              VERDICT_LOCK_TRIES,
              (error) =>
                rowsHeldError(
                  store,
                  error,
                  { tries: VERDICT_LOCK_TRIES, waitMs: heldRowWaitMs },
                  "none of these verdicts was written; the verifier decides the jobs again",
                ),
              heldRowBackoffMs(heldRowWaitMs),
            );
      // A decision that kept its verdict is not final: nothing final was written for it.
      let next = 0;
      return decisions.map((d) =>
        keepsVerdict(d) && kept.has(d.job.jobId) ? false : (written[next++] ?? false),
      );
    },
  };
}

/**
 * `updateLeased` for decisions that keep the verdict: the verdict and the amounts are left out of
 * the SET list, so no rollup row moves. Guarded by the lease and by the verdict; returns the ids
 * of the jobs written.
 */
async function updateKeepingVerdict(
  tx: PgTx,
  rows: readonly JobWrite[],
  owner: string,
  t: number,
): Promise<Set<string>> {
  // The receipt writers' turn first, before any row lock: a receipt group locks the rows of the
  // jobs its receipts name in the order they came, this write its jobs' rows in its own, and a
  // group holding one job's row while waiting for another's this write held closed a circle
  // (PostgreSQL aborted one after deadlock_timeout; the group's callers waited it and a retry).
  await takeReceiptWriterTurn(tx);
  // Raw SQL: drizzle's update builder has no `UPDATE … FROM unnest(arrays)`.
  const result = await tx.execute<{ job_id: string }>(sql`
    WITH free AS (${leasedRowsFree(rows, owner)})
    UPDATE jobs SET ${queueColumnsSet(t)}, unproven = NULL
    FROM unnest(${queueArrays(rows)}) AS u (${queueArrayNames})
    WHERE jobs.job_id = u.job_id AND jobs.lease_owner = ${owner} AND jobs.verdict = u.verdict
      AND jobs.job_id IN (SELECT job_id FROM free)
    RETURNING jobs.job_id`);
  return new Set(result.rows.map((r) => r.job_id));
}

/**
 * The rows of `rows`' jobs leased to `owner`, locked in key order, those another transaction
 * holds left out, never waited for: a write leaves such a job as one whose lease was lost, and
 * it is decided again once its lease ends and the row is free. With the receipt writers' turn
 * held, the holder is a session outside the service (an operator's `SELECT … FOR UPDATE`, a
 * long transaction): the write waited for it up to the statement timeout, every receipt
 * waiting for the turn behind it, then failed as the database busy, and the round was tried
 * again, the same way, for as long as the row stayed locked.
 */
const leasedRowsFree = (rows: readonly JobWrite[], owner: string) => sql`
  SELECT job_id FROM jobs
  WHERE job_id = ANY(${sql.param(rows.map((r) => r.jobId))}::text[]) AND lease_owner = ${owner}
  ORDER BY job_id FOR UPDATE SKIP LOCKED`;

/** What every verdict write sets of a job's row: the queue columns, with the lease released. */
const queueColumnsSet = (t: number) => sql`verdict_at = u.verdict_at,
  verify_attempts = u.verify_attempts,
  next_verify_at = u.next_verify_at,
  lease_owner = NULL,
  lease_until = NULL,
  last_error = u.last_error,
  commitment = u.commitment,
  updated_at = ${t}::bigint`;

/** The arrays (one per column, as one parameter each) `queueColumnsSet` reads, in order. */
function queueArrays(rows: readonly JobWrite[]) {
  const column = <T>(pick: (r: JobWrite) => T) => sql.param(rows.map(pick));
  return sql`${column((r) => r.jobId)}::text[],
    ${column((r) => r.verdict)}::text[],
    ${column((r) => r.verdictAt)}::bigint[],
    ${column((r) => r.verifyAttempts)}::bigint[],
    ${column((r) => r.nextVerifyAt)}::bigint[],
    ${column((r) => r.lastError)}::text[],
    ${column((r) => r.commitment)}::text[]`;
}
const queueArrayNames = sql.raw(
  "job_id, verdict, verdict_at, verify_attempts, next_verify_at, last_error, commitment",
);

/** What one decision writes to its job row (`amounts` null: the amounts stay as they are). */
interface JobWrite {
  jobId: string;
  verdict: string;
  verdictAt: number | null;
  verifyAttempts: number;
  nextVerifyAt: number;
  lastError: string | null;
  commitment: string | null;
  unproven: string | null;
  amounts: VerdictAmounts | null;
}

/**
 * The row a decision writes; a stale one (a pin it relied on disagrees) goes back to pending,
 * due now, without its amounts, as SQLite's writer does.
 */
function rowOf(d: VerdictWrite, stale: boolean, t: number): JobWrite {
  const final = finalVerdicts.includes(d.verdict);
  const row: JobWrite = {
    jobId: d.job.jobId,
    verdict: d.verdict,
    verdictAt: final ? t : d.job.verdictAt,
    verifyAttempts: attemptsAfter(d),
    nextVerifyAt: d.nextVerifyAt,
    lastError: d.lastError,
    commitment: d.commitment,
    unproven: d.evaluation?.unproven.length ? JSON.stringify(d.evaluation.unproven) : null,
    amounts: d.evaluation?.amounts ?? null,
  };
  if (!stale) return row;
  return {
    ...row,
    verdict: "pending",
    verdictAt: d.job.verdictAt,
    nextVerifyAt: t,
    unproven: null,
    amounts: null,
  };
}

/** The amount columns of `jobs` a decision with an evaluation writes. */
const amountColumns = {
  escrowedUnits: "escrowed_units",
  chargedUnits: "charged_units",
  workerPaidUnits: "worker_paid_units",
  treasuryPaidUnits: "treasury_paid_units",
  refundedUnits: "refunded_units",
  expectedChargeUnits: "expected_charge_units",
  feesLamports: "fees_lamports",
  escrowPaidUnits: "escrow_paid_units",
  sharedReturnUnits: "shared_return_units",
} as const satisfies Record<keyof VerdictAmounts, string>;

/**
 * Writes the rows in one statement, each guarded by `owner`'s lease, with the profile that judged
 * them (`judgedBy`), and returns the ids of the jobs written. Guard: `UPDATE … WHERE lease_owner = owner RETURNING`, on the rows
 * `leasedRowsFree` locked (its lease checked on the latest committed row, so a claim or reopen
 * that took the lease first makes that job's write touch nothing; one still under way holds the
 * row, which is left out). One
 * statement, so the rollup triggers run once for the batch. Raw SQL: drizzle's update builder
 * has no `UPDATE … FROM unnest(arrays)`.
 */
async function updateLeased(
  tx: PgTx,
  rows: readonly JobWrite[],
  owner: string,
  t: number,
  judgedBy: string | null,
): Promise<Set<string>> {
  if (rows.length === 0) return new Set();
  const column = <T>(pick: (r: JobWrite) => T) => sql.param(rows.map(pick));
  const units = (v: bigint | null | undefined) => (v == null ? null : v.toString());
  const amounts = Object.entries(amountColumns) as [keyof VerdictAmounts, string][];
  const result = await tx.execute<{ job_id: string }>(sql`
    WITH free AS (${leasedRowsFree(rows, owner)})
    UPDATE jobs SET
      verdict = u.verdict,
      verdict_profile = CASE WHEN ${sql.raw(writesFinal("u.verdict"))} THEN ${judgedBy}::text
        ELSE jobs.verdict_profile END,
      ${sql.raw(clearsRejudging("u.verdict"))},
      ${queueColumnsSet(t)},
      unproven = u.unproven::json,
      ${sql.join(
        amounts.map(
          ([, c]) =>
            sql`${sql.raw(c)} = CASE WHEN u.has_amounts THEN u.${sql.raw(c)} ELSE jobs.${sql.raw(c)} END`,
        ),
        sql`, `,
      )}
    FROM unnest(
      ${queueArrays(rows)},
      ${column((r) => r.unproven)}::text[],
      ${column((r) => r.amounts !== null)}::boolean[],
      ${sql.join(
        amounts.map(([key]) => sql`${column((r) => units(r.amounts?.[key]))}::bigint[]`),
        sql`, `,
      )}
    ) AS u (${queueArrayNames}, unproven, has_amounts,
      ${sql.raw(amounts.map(([, c]) => c).join(", "))})
    WHERE jobs.job_id = u.job_id AND jobs.lease_owner = ${owner}
      AND jobs.job_id IN (SELECT job_id FROM free)
    RETURNING jobs.job_id`);
  return new Set(result.rows.map((r) => r.job_id));
}

/**
 * Two-key advisory lock class of the verdict writers: the first 4 bytes of
 * sha256("decentral-audit:verdicts") as a signed 32-bit integer.
 */
export const VERDICT_LOCK_CLASS = 424_689_667;

/**
 * Replaces the check rows of `decisions`' jobs: one delete, then one insert of every row. The
 * rows go as one array per column through `unnest` (a batch is ~30 rows a job): measured
 * several times faster than a multi-row VALUES with 8 parameters a row, which PostgreSQL parses
 * and binds one by one.
 */
async function replaceChecks(
  tx: PgTx,
  decisions: readonly VerdictWrite[],
  runId: number | null,
  t: number,
): Promise<void> {
  if (decisions.length === 0) return;
  await tx.delete(checkResults).where(
    inArray(
      checkResults.jobId,
      decisions.map((d) => d.job.jobId),
    ),
  );
  const rows = decisions.flatMap((d) => (d.checks ?? []).map((c) => ({ jobId: d.job.jobId, c })));
  if (rows.length === 0) return;
  // As SQLite's writer: undefined is SQL NULL, anything else its JSON text (null is `null`).
  const json = (value: unknown) => (value === undefined ? null : JSON.stringify(value));
  // Raw SQL: drizzle's insert builder has no `INSERT … SELECT FROM unnest(arrays)`.
  await tx.execute(sql`
    INSERT INTO check_results (job_id, name, outcome, reason, expected, actual, run_id, checked_at)
    SELECT r.job_id, r.name, r.outcome, r.reason, r.expected::json, r.actual::json,
      ${runId}::bigint, ${t}::bigint
    FROM unnest(
      ${sql.param(rows.map((r) => r.jobId))}::text[],
      ${sql.param(rows.map((r) => r.c.name))}::text[],
      ${sql.param(rows.map((r) => r.c.outcome))}::text[],
      ${sql.param(rows.map((r) => r.c.reason))}::text[],
      ${sql.param(rows.map((r) => json(r.c.expected)))}::text[],
      ${sql.param(rows.map((r) => json(r.c.actual)))}::text[]
    ) AS r (job_id, name, outcome, reason, expected, actual)`);
}

/**
 * Runs a transaction again when PostgreSQL aborted it to break a deadlock (SQLSTATE 40P01):
 * verdict writers take turns, but the receipt writer's inserts and other modules' reopens move
 * the same rollup rows in their own order, so a cycle stays possible. The transaction rolled back whole, so running it again
 * is safe; the lease guard decides again what it may write.
 */
async function retryOnDeadlock<T>(run: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (attempt >= attempts || !isDeadlock(error)) throw error;
    }
  }
}

function isDeadlock(error: unknown): boolean {
  // drizzle wraps the driver's error (DrizzleQueryError) with the original as `cause`.
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if ((e as { code?: unknown }).code === "40P01") return true;
  }
  return false;
}
