import { and, eq, gte, inArray, isNull, lt, lte, or, type SQL, sql } from "drizzle-orm";
import type { Db, SqliteStore, Store } from "../db/client.js";
import { finalVerdicts, jobs, openVerdicts, type Verdict, verdicts } from "../db/schema.js";
import { createPgJobQueueStore } from "./pg/job-queue.js";
import { createGivenUpReset } from "./signatures.js";

/** A drizzle handle or the transaction a caller is inside (the reopen joins it). */
type Writer = Pick<Db, "update">;

/**
 * `job_id` is one of `ids`, passed as ONE JSON parameter: drizzle builds and SQLite prepares an
 * IN list of a parameter per id in time that grows with the list (~50 µs an id), on the
 * caller's event loop.
 */
const jobIdIn = (ids: readonly string[]) =>
  sql`${jobs.jobId} IN (SELECT value FROM json_each(${JSON.stringify(ids)}))`;

/**
 * Sends jobs back to the verifier's queue: pending, due at `now`, attempts reset, and any lease
 * dropped, so a verifier mid-round on one of them cannot write a verdict reached on what the
 * job was before (its verdict write is guarded by the lease). This is the only way a job is
 * reopened; the receipt writer, the jobs-API answer, custody and `reverify` all call it, inside
 * the transaction that changed what the checks will see. `where` narrows the ids further (e.g.
 * only jobs whose answer changed); `dueAt` (default `now`) puts them ahead of the queue, e.g. 0
 * for a re-verification asked for by hand. Returns how many jobs were reopened.
 */
export function reopenJobs(
  db: Writer,
  target: { jobIds: readonly string[] } | { where: SQL },
  now: number,
  options: { dueAt?: number } = {},
): number {
  const condition =
    "jobIds" in target ? (target.jobIds.length > 0 ? jobIdIn(target.jobIds) : null) : target.where;
  if (condition === null) return 0;
  return db
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
    .where(and(condition))
    .run().changes;
}

type JobRow = typeof jobs.$inferSelect;

/** Which jobs a run covers. */
export interface QueueFilter {
  /** Jobs created at or after this time (ms since epoch). */
  from?: number;
  /** Jobs created before this time (ms since epoch): the window is [from, to). */
  to?: number;
  jobIds?: string[];
}

/** How many jobs of a filter hold each verdict, and how many of those are final. */
export interface VerdictCounts {
  total: number;
  final: number;
  byVerdict: Record<Verdict, number>;
}

/**
 * The verifier's work queue: the job's queue columns (verdict while open, `next_verify_at`,
 * `verify_attempts`, the lease). A job is worked on only under a lease (owner + expiry); an
 * expired lease is reclaimable, so a crash never loses a job. Verdicts are written by
 * verdicts.ts, under the same lease.
 */
export interface JobQueueStore {
  /**
   * Claims up to `limit` due open jobs under a lease in ONE statement (`UPDATE ... WHERE
   * job_id IN (SELECT ... LIMIT n) RETURNING *`): a write statement takes the write lock before
   * it reads, so two processes claiming at once wait for each other (busy timeout) instead of
   * one failing on a read-to-write upgrade, and never both get a job. Jobs still leased to this
   * owner are claimable too: rounds of one verifier never overlap, so such a lease is left
   * from a round that failed, and waiting for it to expire would stall those jobs. Except
   * those a claim with the same `t` and `leaseMs` just took (their lease ends at exactly
   * t + leaseMs): a round may claim in several pieces, each a short write.
   */
  claim(
    owner: string,
    filter: QueueFilter | null,
    lease: { t: number; leaseMs: number; limit: number },
  ): Promise<JobRow[]>;
  /** Extends this owner's leases to `until` (a long round on a slow node). */
  renewLeases(owner: string, until: number): Promise<void>;
  /**
   * Drops this owner's leases (only those of `jobIds` when given), so another verifier takes
   * the jobs at once; they stay as due as they were, or become due no sooner than `dueAt`.
   */
  releaseLeases(owner: string, jobIds?: readonly string[], dueAt?: number): Promise<void>;
  /** When the next open job in `filter` is due (ms since epoch), or null if none is open. */
  nextDue(filter: QueueFilter | null): Promise<number | null>;
  /** Jobs of `filter` by verdict: a run's progress. */
  countVerdicts(filter: QueueFilter | null): Promise<VerdictCounts>;
  /**
   * Queues a fresh verification of one job: its given-up signatures (dropped, pruned) are
   * looked for again and the job is reopened, in one transaction.
   */
  reverify(jobId: string, t: number): Promise<void>;
}

function filterCondition(filter: QueueFilter | null): SQL | undefined {
  if (!filter) return undefined;
  const parts = [];
  if (filter.from !== undefined) parts.push(gte(jobs.createdAt, filter.from));
  if (filter.to !== undefined) parts.push(lt(jobs.createdAt, filter.to));
  if (filter.jobIds !== undefined) parts.push(inArray(jobs.jobId, filter.jobIds));
  return parts.length > 0 ? and(...parts) : undefined;
}

/**
 * Drops every lease of `owner` (a process known dead), inside the caller's write transaction
 * (see verification-runs.ts).
 */
export function releaseLeasesOf(db: Writer, owner: string): void {
  db.update(jobs)
    .set({ leaseOwner: null, leaseUntil: null })
    .where(eq(jobs.leaseOwner, owner))
    .run();
}

/** The jobqueue store of either dialect. */
export function createJobQueueStore(store: Store): JobQueueStore {
  return store.kind === "postgres"
    ? createPgJobQueueStore(store)
    : createSqliteJobQueueStore(store);
}

function createSqliteJobQueueStore(store: SqliteStore): JobQueueStore {
  const { db, sqlite } = store;
  const resetGivenUp = createGivenUpReset(store);
  const reverifyOne = sqlite.transaction((jobId: string, t: number) => {
    resetGivenUp(jobId);
    reopenJobs(db, { jobIds: [jobId] }, t, { dueAt: 0 });
  });
  return {
    async claim(owner, filter, { t, leaseMs, limit }) {
      const due = db
        .select({ jobId: jobs.jobId })
        .from(jobs)
        .where(
          and(
            inArray(jobs.verdict, openVerdicts),
            lte(jobs.nextVerifyAt, t),
            or(
              isNull(jobs.leaseUntil),
              lte(jobs.leaseUntil, t),
              and(eq(jobs.leaseOwner, owner), lt(jobs.leaseUntil, t + leaseMs)),
            ),
            filterCondition(filter),
          ),
        )
        .orderBy(jobs.nextVerifyAt)
        .limit(limit);
      return db
        .update(jobs)
        .set({ leaseOwner: owner, leaseUntil: t + leaseMs })
        .where(inArray(jobs.jobId, due))
        .returning()
        .all();
    },
    async renewLeases(owner, until) {
      db.update(jobs).set({ leaseUntil: until }).where(eq(jobs.leaseOwner, owner)).run();
    },
    async releaseLeases(owner, jobIds, dueAt) {
      if (jobIds === undefined) return releaseLeasesOf(db, owner);
      if (jobIds.length === 0) return;
      db.update(jobs)
        .set({
          leaseOwner: null,
          leaseUntil: null,
          ...(dueAt === undefined
            ? {}
            : { nextVerifyAt: sql`max(${jobs.nextVerifyAt}, ${dueAt})` }),
        })
        .where(and(eq(jobs.leaseOwner, owner), jobIdIn(jobIds)))
        .run();
    },
    async nextDue(filter) {
      const row = db
        .select({
          next: sql<number | null>`min(max(${jobs.nextVerifyAt}, coalesce(${jobs.leaseUntil}, 0)))`,
        })
        .from(jobs)
        .where(and(inArray(jobs.verdict, openVerdicts), filterCondition(filter)))
        .get();
      return row?.next ?? null;
    },
    async countVerdicts(filter) {
      const byVerdict = Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
      const rows = db
        .select({ verdict: jobs.verdict, n: sql<number>`count(*)` })
        .from(jobs)
        .where(filterCondition(filter))
        .groupBy(jobs.verdict)
        .all();
      let total = 0;
      for (const r of rows) {
        byVerdict[r.verdict] = r.n;
        total += r.n;
      }
      const final = finalVerdicts.reduce((n, v) => n + byVerdict[v], 0);
      return { total, final, byVerdict };
    },
    async reverify(jobId, t) {
      reverifyOne.immediate(jobId, t);
    },
  };
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
    .where(jobIdIn(jobIds))
    .run().changes;
}
