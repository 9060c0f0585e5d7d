import { and, inArray, type SQL, sql } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { jobs } from "../../db/pg/schema.js";
import type { JobQueueStore } from "../job-queue.js";
import type { PgExecutor } from "./executor.js";
import { notOnPostgresYet } from "./not-yet.js";

/**
 * `reopenJobs` on PostgreSQL (see src/store/job-queue.ts, the only way a job goes back to the
 * verifier's queue), composing inside the caller's transaction. Returns how many jobs were
 * reopened.
 */
export async function reopenJobsPg(
  tx: PgExecutor,
  target: { jobIds: readonly string[] } | { where: SQL },
  now: number,
  options: { dueAt?: number } = {},
): Promise<number> {
  const condition =
    "jobIds" in target
      ? target.jobIds.length > 0
        ? inArray(jobs.jobId, [...target.jobIds])
        : null
      : target.where;
  if (condition === null) return 0;
  const result = await tx
    .update(jobs)
    .set({
      verdict: "pending",
      nextVerifyAt: options.dueAt ?? now,
      verifyAttempts: 0,
      lastError: null,
      leaseOwner: null,
      leaseUntil: null,
      updatedAt: now,
    })
    .where(and(condition));
  return result.rowCount ?? 0;
}

/** `makeDue` on PostgreSQL: `next_verify_at` moves to `now` if later; nothing else changes. */
export async function makeDuePg(
  tx: PgExecutor,
  jobIds: readonly string[],
  now: number,
): Promise<number> {
  if (jobIds.length === 0) return 0;
  const result = await tx
    .update(jobs)
    .set({ nextVerifyAt: sql`least(${jobs.nextVerifyAt}, ${now})` })
    .where(inArray(jobs.jobId, [...jobIds]));
  return result.rowCount ?? 0;
}

export function createPgJobQueueStore(_store: PgStore): JobQueueStore {
  throw notOnPostgresYet("job-queue");
}
