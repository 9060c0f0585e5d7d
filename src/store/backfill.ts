import { and, asc, eq, isNull, sql } from "drizzle-orm";
import type { SqliteStore, Store } from "../db/client.js";
import { backfillIsPending, jobs } from "../db/schema.js";
import { pgTwins } from "./pg-twins.js";
import { inWriteTransaction, perConnection } from "./prepared.js";
import { dueOrFar, NO_FAR_LOOK } from "./queue-rules.js";
import type { WriteUnit } from "./write-unit.js";

/** A job whose settlement signature is still to be asked for. */
export interface BackfillDue {
  jobId: string;
  /** Attempts made so far. */
  attempts: number;
  /** The key fingerprint the job was recorded with, if any. */
  fingerprint: string | null;
}

/** One pass's claims: the jobs asked about now, and when each may be asked again. */
export interface BackfillClaim {
  jobId: string;
  nextAt: number;
}

/**
 * The settlement backfill's state, the `jobs.backfill_*` columns: a restart resumes where the
 * loop stopped, and a claim pushes a job's next attempt forward so two passes never take it.
 */
export interface BackfillStore {
  /**
   * Pending jobs due at `at`, the longest waiting first, at most `limit`; a job whose next
   * attempt is past `farAfter` (default: none is) is due too: the backfill never puts one that
   * far off, so it was written before the clock was stepped back.
   */
  due(at: number, limit: number, farAfter?: number): Promise<BackfillDue[]>;
  /**
   * Claims `claims` and gives up on `giveUps`, in one IMMEDIATE transaction. Resolves with the
   * job ids claimed: a job is claimed only while still pending and due at `at`, so of two
   * passes that read it due at once, only the first to claim it asks the jobs API.
   */
  claim(
    claims: readonly BackfillClaim[],
    giveUps: readonly string[],
    at: number,
    farAfter?: number,
  ): Promise<string[]>;
  /** Gives up on a job still pending: its settlement stays unknown (unverifiable). */
  giveUp(jobId: string, at: number): Promise<void>;
}

function prepare(store: SqliteStore) {
  const pendingJob = and(
    eq(jobs.jobId, sql.placeholder("jobId")),
    backfillIsPending(jobs.backfillState),
  );
  return {
    due: store.db
      .select({
        jobId: jobs.jobId,
        attempts: jobs.backfillAttempts,
        fingerprint: jobs.keyFingerprint,
      })
      .from(jobs)
      .where(
        and(
          backfillIsPending(jobs.backfillState),
          dueOrFar(jobs.backfillNextAt, sql.placeholder("at"), sql.placeholder("far")),
        ),
      )
      .orderBy(asc(jobs.backfillNextAt))
      .limit(sql.placeholder("limit"))
      .prepare(),
    claim: store.db
      .update(jobs)
      .set({
        backfillAttempts: sql`${jobs.backfillAttempts} + 1`,
        backfillNextAt: sql`${sql.placeholder("nextAt")}`,
      })
      .where(
        and(
          pendingJob,
          dueOrFar(jobs.backfillNextAt, sql.placeholder("at"), sql.placeholder("far")),
        ),
      )
      .prepare(),
    giveUp: store.db
      .update(jobs)
      // A verdict waiting for the jobs API's answer (see `jobsApiAnswerBy` in
      // src/verify/decide.ts) is reached now: no answer is coming.
      .set({
        backfillState: "gave_up",
        updatedAt: sql`${sql.placeholder("at")}`,
        nextVerifyAt: sql`min(${jobs.nextVerifyAt}, ${sql.placeholder("at")})`,
      })
      .where(pendingJob)
      .prepare(),
    leave: store.db
      .update(jobs)
      .set({ backfillState: "pending", backfillNextAt: sql`${sql.placeholder("at")}` })
      .where(and(eq(jobs.jobId, sql.placeholder("jobId")), isNull(jobs.backfillState)))
      .prepare(),
  };
}

const statementsOf = perConnection(prepare);

/**
 * `BackfillStore.claim` for a caller that batches writes of its own (the receipt writer's
 * group commit): synchronous, on the connection `tx`, in an IMMEDIATE transaction of its own
 * or, inside the caller's transaction, a savepoint.
 */
export function claimBackfillInTransaction(
  tx: SqliteStore,
  claims: readonly BackfillClaim[],
  giveUps: readonly string[],
  at: number,
  farAfter = NO_FAR_LOOK,
): string[] {
  const st = statementsOf(tx);
  return inWriteTransaction(tx, () => {
    for (const jobId of giveUps) st.giveUp.run({ jobId, at });
    return claims
      .filter(
        ({ jobId, nextAt }) => st.claim.run({ jobId, nextAt, at, far: farAfter }).changes === 1,
      )
      .map(({ jobId }) => jobId);
  });
}

/** `BackfillStore.giveUp` inside the caller's transaction (see `claimBackfillInTransaction`). */
export function giveUpBackfillInTransaction(tx: SqliteStore, jobId: string, at: number): void {
  statementsOf(tx).giveUp.run({ jobId, at });
}

/**
 * Leaves jobs to the backfill, due at `at`: the proxy's own questions about them went
 * unanswered when its process stopped. Only a job with no backfill state is changed: a pending
 * one is asked anyway, and a done or given-up one has had its last answer. A job whose receipt
 * names its settlement is left too: the jobs API is where a second settlement shows.
 */
export function leaveToBackfillUnit(jobIds: readonly string[], at: number): WriteUnit<void> {
  return {
    runSqlite: (tx) => {
      const st = statementsOf(tx);
      inWriteTransaction(tx, () => {
        for (const jobId of jobIds) st.leave.run({ jobId, at });
      });
    },
    runPostgres: (tx) => pgTwins().leaveToBackfillPg(tx, jobIds, at),
    jobIds,
    data: { kind: "leaveToBackfill", jobIds, at },
  };
}

/** Claims and gives up backfill work as one unit of the receipt writer's group commit. */
export function claimBackfillUnit(
  claims: readonly BackfillClaim[],
  giveUps: readonly string[],
  at: number,
  farAfter = NO_FAR_LOOK,
): WriteUnit<string[]> {
  return {
    runSqlite: (tx) => claimBackfillInTransaction(tx, claims, giveUps, at, farAfter),
    runPostgres: (tx) => pgTwins().claimBackfillPg(tx, claims, giveUps, at, farAfter),
    jobIds: [...claims.map((claim) => claim.jobId), ...giveUps],
    data: { kind: "claimBackfill", claims, giveUps, at, farAfter },
  };
}

/** Gives up one job's backfill as one unit of the receipt writer's group commit. */
export function giveUpBackfillUnit(jobId: string, at: number): WriteUnit<void> {
  return {
    runSqlite: (tx) => giveUpBackfillInTransaction(tx, jobId, at),
    runPostgres: (tx) => pgTwins().giveUpBackfillPg(tx, jobId, at),
    jobIds: [jobId],
    data: { kind: "giveUpBackfill", jobId, at },
  };
}

/** The backfill store of either dialect. */
export function createBackfillStore(store: Store): BackfillStore {
  return store.kind === "postgres"
    ? pgTwins().createPgBackfillStore(store)
    : createSqliteBackfillStore(store);
}

/** The backfill store on `store`'s connection; its statements are prepared here, once. */
function createSqliteBackfillStore(store: SqliteStore): BackfillStore {
  const st = statementsOf(store);
  return {
    async due(at, limit, farAfter = NO_FAR_LOOK) {
      return st.due.all({ at, limit, far: farAfter });
    },
    async claim(claims, giveUps, at, farAfter) {
      return claimBackfillInTransaction(store, claims, giveUps, at, farAfter);
    },
    async giveUp(jobId, at) {
      giveUpBackfillInTransaction(store, jobId, at);
    },
  };
}
