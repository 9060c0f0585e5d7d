import { and, inArray, type SQL, sql } from "drizzle-orm";
import type { Db } from "../db/client.js";
import { jobs } from "../db/schema.js";

/** A drizzle handle or the transaction a caller is inside (the reopen joins it). */
type Writer = Pick<Db, "update">;

/**
 * Sends jobs back to the verifier's queue: pending, due at `now`, attempts reset, and any lease
 * dropped, so a verifier mid-round on one of them cannot write a verdict reached on what the
 * job was before (its verdict write is guarded by the lease). This is the only way a job is
 * reopened; the receipt writer, the jobs-API answer, custody and `reverify` all call it, inside
 * the transaction that changed what the checks will see. `where` narrows the ids further (e.g.
 * only jobs whose answer changed). Returns how many jobs were reopened.
 */
export function reopenJobs(
  db: Writer,
  target: { jobIds: readonly string[] } | { where: SQL },
  now: number,
): number {
  const condition =
    "jobIds" in target
      ? target.jobIds.length > 0
        ? inArray(jobs.jobId, [...target.jobIds])
        : null
      : target.where;
  if (condition === null) return 0;
  return db
    .update(jobs)
    .set({
      verdict: "pending",
      nextVerifyAt: now,
      verifyAttempts: 0,
      lastError: null,
      leaseOwner: null,
      leaseUntil: null,
      updatedAt: now,
    })
    .where(and(condition))
    .run().changes;
}

/**
 * Makes jobs due now without reopening them: `next_verify_at` moves to `now` if it was later;
 * the verdict, attempts and lease stay. For news a verifier may be parked waiting for that
 * changes nothing it has checked (an unchanged jobs-API answer for a job not yet final).
 * Composes inside the caller's transaction like `reopenJobs`. Returns how many jobs matched.
 */
export function makeDue(db: Writer, jobIds: readonly string[], now: number): number {
  if (jobIds.length === 0) return 0;
  return db
    .update(jobs)
    .set({ nextVerifyAt: sql`min(${jobs.nextVerifyAt}, ${now})` })
    .where(inArray(jobs.jobId, [...jobIds]))
    .run().changes;
}
