import { and, eq, inArray, sql } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { checkResults, jobs } from "../../db/pg/schema.js";
import { finalVerdicts } from "../../db/schema.js";
import type { CustodyProfile } from "../custody.js";
import type { VerdictStore, VerdictWrite } from "../verdicts.js";
import { createPgCustodyPinning } from "./custody-pinning.js";
import type { PgTx } from "./executor.js";

/**
 * The verdict writer on PostgreSQL (see src/store/verdicts.ts): a batch's verdicts, amounts,
 * check rows and pins in one transaction, each job's write guarded by `owner`'s lease.
 *
 * The lease guard is `UPDATE … WHERE job_id = ? AND lease_owner = ?`: under READ COMMITTED an
 * update that meets a row another transaction changed waits for it, then re-checks the WHERE on
 * the committed row, so a claim or reopen that took the lease first makes this write touch
 * nothing (its checks and treasury evidence are then skipped too, as on SQLite). The report
 * rollups follow the jobs rows through the `jobs_rollup` triggers of migrations/postgres.
 */
export function createPgVerdictStore(store: PgStore, profile: CustodyProfile): VerdictStore {
  const custody = createPgCustodyPinning(profile);

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
    // Raw SQL: drizzle has no builder for advisory locks.
    await tx.execute(sql`SELECT pg_advisory_xact_lock(${VERDICT_LOCK_CLASS}::int, 0)`);
    // The treasury-learning lock comes next, before any row lock, so a writer holding it never
    // waits for a row held by another writer that waits for the lock (see custody-pinning.ts).
    if (decisions.some((d) => d.evaluation?.learned.treasuryCandidate)) {
      await custody.lockTreasuryLearning(tx);
    }
    // What the evaluations learned is pinned first, the whole batch at once in key order; a pin
    // another job (or process) set first that disagrees makes that verdict stale.
    const evaluated = decisions.filter((d) => d.evaluation !== null);
    const pinOk = await custody.pinAll(
      tx,
      evaluated.map((d) => ({ job: d.job, learned: d.evaluation!.learned })),
      t,
    );
    const stale = new Set(evaluated.filter((_, i) => !pinOk[i]));

    const written: boolean[] = [];
    const checksOf: VerdictWrite[] = [];
    for (const d of decisions) {
      const final = finalVerdicts.includes(d.verdict);
      const leased = and(eq(jobs.jobId, d.job.jobId), eq(jobs.leaseOwner, owner));
      const set = {
        verdict: d.verdict,
        verdictAt: final ? t : d.job.verdictAt,
        // Consecutive rounds that ended in RPC trouble: the error backoff grows with it.
        verifyAttempts:
          d.verdict === "error" || d.verdict === "rpc_disagreement" ? d.job.verifyAttempts + 1 : 0,
        nextVerifyAt: d.nextVerifyAt,
        leaseOwner: null,
        leaseUntil: null,
        lastError: d.lastError,
        commitment: d.commitment,
        unproven: d.evaluation?.unproven.length ? [...d.evaluation.unproven] : null,
        updatedAt: t,
      };
      if (stale.has(d)) {
        await tx
          .update(jobs)
          .set({
            ...set,
            verdict: "pending",
            verdictAt: d.job.verdictAt,
            nextVerifyAt: t,
            unproven: null,
          })
          .where(leased);
        written.push(false);
        continue;
      }
      const result = await tx
        .update(jobs)
        .set(d.evaluation ? { ...set, ...d.evaluation.amounts } : set)
        .where(leased);
      if ((result.rowCount ?? 0) === 0) {
        written.push(false); // The lease was lost: another owner has the job.
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
      if ((final || d.verdict === "rpc_disagreement") && d.checks) checksOf.push(d);
      written.push(final);
    }
    await replaceChecks(tx, checksOf, runId, t);
    return written;
  }

  return {
    async write(decisions, { owner, runId, t }) {
      if (decisions.length === 0) return [];
      return await retryOnDeadlock(() =>
        store.db.transaction((tx) => writeAll(tx, decisions, owner, runId, t)),
      );
    },
  };
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
