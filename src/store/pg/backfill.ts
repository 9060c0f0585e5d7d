import { and, asc, inArray, isNull, sql } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { jobs } from "../../db/pg/schema.js";
import { backfillIsPending } from "../../db/schema.js";
import type { BackfillClaim, BackfillStore } from "../backfill.js";
import { dueOrFar, NO_FAR_LOOK } from "../queue-rules.js";
import type { PgExecutor } from "./executor.js";
import { takeReceiptWriterTurn } from "./group-commit.js";
import { dueNowMs, serverClockShiftMs } from "./server-clock.js";
import { inPgTransaction, retryOnConflict } from "./write-transaction.js";

/**
 * A time of the backfill's host (`shift` behind the server's clock) on the server's clock: the
 * one receipts are recorded on, and the verifiers' jobs API wait runs on. By the host's clock,
 * a backfill 3 minutes behind asked 3 minutes late, after the wait had given the verdict.
 */
const onServerClock = (t: number, shift: number) => (t === NO_FAR_LOOK ? t : t + shift);

/**
 * `claimBackfillInTransaction` on PostgreSQL, inside the caller's transaction (or one of its
 * own); resolves with the job ids claimed. Each claim is a guarded UPDATE (still pending, still
 * due at `at`) of a row it could lock at once (`rowsFree`): a second process that read the same
 * job due finds the job's next attempt pushed past `at` once the first committed (or its row
 * held, and skips it), and claims nothing, so the job is asked about once and its attempts are
 * counted once.
 */
export async function claimBackfillPg(
  executor: PgExecutor,
  claims: readonly BackfillClaim[],
  giveUps: readonly string[],
  at: number,
  farAfter = NO_FAR_LOOK,
): Promise<string[]> {
  return inPgTransaction(executor, async (tx) => {
    if (giveUps.length > 0) await giveUpMany(tx, giveUps, at);
    if (claims.length === 0) return [];
    const shift = await serverClockShiftMs(tx);
    // One statement for the whole pass: each job's own next attempt comes from a VALUES list
    // (the builder has no UPDATE … FROM (VALUES …)); rows are locked in job-id order.
    // A job named twice is claimed by its first claim only, as SQLite's claim-by-claim loop
    // does (the second finds its next attempt pushed past `at`); an UPDATE … FROM would apply
    // one of them and both would be reported.
    const named = new Set<string>();
    const firsts = claims.filter(({ jobId }) => !named.has(jobId) && named.add(jobId));
    const sorted = [...firsts].sort((a, b) => (a.jobId < b.jobId ? -1 : 1));
    const values = sql.join(
      sorted.map(({ jobId, nextAt }) => sql`(${jobId}::text, ${nextAt + shift}::bigint)`),
      sql`, `,
    );
    const claimed = await tx.execute<{ job_id: string }>(sql`
      WITH free AS (${rowsFree(sorted.map(({ jobId }) => jobId))})
      UPDATE ${jobs}
      SET backfill_attempts = ${jobs.backfillAttempts} + 1, backfill_next_at = claim.next_at
      FROM (VALUES ${values}) AS claim (job_id, next_at)
      WHERE ${jobs.jobId} = claim.job_id
        AND ${jobs.jobId} IN (SELECT job_id FROM free)
        AND ${jobs.backfillState} = 'pending'
        AND ${dueOrFar(jobs.backfillNextAt, at + shift, onServerClock(farAfter, shift))}
      RETURNING ${jobs.jobId}`);
    const mine = new Set(claimed.rows.map((row) => row.job_id));
    return firsts.map(({ jobId }) => jobId).filter((jobId) => mine.has(jobId));
  });
}

/**
 * The rows of `jobIds` locked in key order, those another transaction holds left out, never
 * waited for: a claim or give-up leaves such a job for a later pass. Waited for, a row held by a
 * session outside the service (an operator's `SELECT … FOR UPDATE`, a long transaction) kept the
 * pass waiting up to the statement timeout with the receipt writers' turn held, and every
 * proxied receipt waited as long behind it.
 */
const rowsFree = (jobIds: readonly string[]) => sql`
  SELECT job_id FROM jobs WHERE job_id = ANY(${sql.param([...jobIds])}::text[])
  ORDER BY job_id FOR UPDATE SKIP LOCKED`;

/**
 * Gives up on jobs still pending and not held locked (see `rowsFree`); a single guarded UPDATE,
 * so two at once give up once.
 */
async function giveUpMany(tx: PgExecutor, jobIds: readonly string[], at: number): Promise<void> {
  const sorted = [...jobIds].sort();
  await tx
    .update(jobs)
    // A verdict waiting for the jobs API's answer is reached now (`dueNowMs`): no answer is coming.
    .set({
      backfillState: "gave_up",
      updatedAt: at,
      nextVerifyAt: sql`least(${jobs.nextVerifyAt}, ${dueNowMs(at)})`,
    })
    .where(
      and(inArray(jobs.jobId, sql`(${rowsFree(sorted)})`), backfillIsPending(jobs.backfillState)),
    );
}

/** `giveUpBackfillInTransaction` on PostgreSQL, inside the caller's transaction. */
export async function giveUpBackfillPg(tx: PgExecutor, jobId: string, at: number): Promise<void> {
  await giveUpMany(tx, [jobId], at);
}

/**
 * `leaveToBackfillUnit` on PostgreSQL: one guarded UPDATE (no backfill state yet), so a job
 * the backfill already finished or gave up on is left as it is.
 */
export async function leaveToBackfillPg(
  tx: PgExecutor,
  jobIds: readonly string[],
  at: number,
): Promise<void> {
  if (jobIds.length === 0) return;
  await tx
    .update(jobs)
    .set({ backfillState: "pending", backfillNextAt: at + (await serverClockShiftMs(tx)) })
    .where(and(inArray(jobs.jobId, [...jobIds]), isNull(jobs.backfillState)));
}

/** The settlement backfill's store on a PostgreSQL pool. */
export function createPgBackfillStore(store: PgStore): BackfillStore {
  const { db } = store;
  return {
    async due(at, limit, farAfter = NO_FAR_LOOK) {
      const shift = await serverClockShiftMs(db);
      return db
        .select({
          jobId: jobs.jobId,
          attempts: jobs.backfillAttempts,
          fingerprint: jobs.keyFingerprint,
        })
        .from(jobs)
        .where(
          and(
            backfillIsPending(jobs.backfillState),
            dueOrFar(jobs.backfillNextAt, at + shift, onServerClock(farAfter, shift)),
          ),
        )
        .orderBy(asc(jobs.backfillNextAt))
        .limit(limit);
    },
    claim(claims, giveUps, at, farAfter) {
      return retryOnConflict(() =>
        db.transaction(async (tx) => {
          // The receipt writers' turn, as the writer's own unit of it has: the pass locks many
          // jobs' rows in the order the statements reach them, a group its jobs' in the order
          // its receipts came, and two such met in a circle.
          await takeReceiptWriterTurn(tx);
          return claimBackfillPg(tx, claims, giveUps, at, farAfter);
        }),
      );
    },
    giveUp(jobId, at) {
      return giveUpBackfillPg(db, jobId, at);
    },
  };
}
