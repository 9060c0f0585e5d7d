import { eq } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { jobApiAnswers, jobs } from "../../db/pg/schema.js";
import type { Verdict } from "../../db/schema.js";
import type { JobsApiAnswer, JobsApiStore } from "../jobs-api.js";
import {
  answerBody,
  answerColumns,
  answeredSelection,
  answerIsOlder,
  answerNamedPast,
  answerQueueEffect,
  answerRenames,
  sentBack,
} from "../jobs-api-rules.js";
import type { PgExecutor } from "./executor.js";
import { boundRowLockWaits, retryWhileRowLocked, takeReceiptWriterTurn } from "./group-commit.js";
import { holdNamedPastPg, makeDuePg, reopenJobsPg, reopenNamersPg } from "./job-queue.js";
import { dueNowMs } from "./server-clock.js";
import { inPgTransaction, retryOnConflict } from "./write-transaction.js";

/**
 * `recordJobsApiAnswerInTransaction` on PostgreSQL, inside the caller's transaction (or one of
 * its own). The row is read `FOR UPDATE`: whether the answer changed anything, the settlement
 * signature kept and the backfill state all depend on what was there, so a receipt or another
 * answer for the same job written at the same moment by another process waits and is then
 * compared with this one's result (as on SQLite, where writes are serialized).
 */
export async function recordJobsApiAnswerPg(
  executor: PgExecutor,
  jobId: string,
  answer: JobsApiAnswer,
  now: number = Date.now(),
): Promise<Verdict | null> {
  return inPgTransaction(executor, async (tx) => {
    const byId = eq(jobs.jobId, jobId);
    const [row] = await tx
      .select({
        ...answeredSelection(jobs),
        // Whether the job is due yet, by the clock "due now" is written on (`dueNowMs`).
        dueNow: dueNowMs(now).mapWith(Number),
      })
      .from(jobs)
      .where(byId)
      .for("update");
    if (!row || answerIsOlder(row, answer, now)) return null;
    const effect = answerQueueEffect(row, answer, row.dueNow);
    const { conflictSignatures, ...columns } = answerColumns(row, answer);
    // Dropped steps past the full list: held for the escrow scan (see `answerNamedPast`).
    await holdNamedPastPg(tx, jobId, answerNamedPast(row, answer, conflictSignatures), now);
    await tx
      .update(jobs)
      .set({
        ...columns,
        // Written only when the answer adds one (see `answerConflictSignatures`).
        ...(conflictSignatures === row.conflictSignatures ? {} : { conflictSignatures }),
        apiCheckedAt: now,
        updatedAt: now,
      })
      .where(byId);
    const body = answerBody(answer);
    if (body === null) {
      await tx.delete(jobApiAnswers).where(eq(jobApiAnswers.jobId, jobId));
    } else {
      await tx
        .insert(jobApiAnswers)
        .values({ jobId, response: body })
        .onConflictDoUpdate({ target: jobApiAnswers.jobId, set: { response: body } });
    }
    if (effect === "reopen") await reopenJobsPg(tx, { jobIds: [jobId] }, now);
    else if (effect === "due") await makeDuePg(tx, [jobId], now);
    await reopenNamersPg(tx, answerRenames(row, answer), now, jobId);
    return sentBack(row.verdict, effect);
  });
}

/** How long a jobs API answer waits for a job row held locked, per try, in ms; and how many tries. */
const ANSWER_LOCK_WAIT_MS = 1000;
const ANSWER_LOCK_TRIES = 5;

/** The jobs-API answers store on a PostgreSQL pool: each answer is one transaction. */
export function createPgJobsApiStore(store: PgStore): JobsApiStore {
  return {
    recordAnswer(jobId, answer, at) {
      const once = () =>
        retryOnConflict(() =>
          store.db.transaction(async (tx) => {
            // Its own transaction, beside the receipt writers' groups (a nightly `verify`'s
            // backfill has no writer): it takes their turn as they do. It locks its job, then
            // reopens the jobs naming what the answer names; a group holding one of those and
            // waiting for this job closed a circle, and PostgreSQL aborted one of the two.
            await takeReceiptWriterTurn(tx);
            // A row held by a session outside the service is waited for a while, the turn let
            // go between tries (see `retryWhileRowLocked`); refused at last, the backfill asks
            // the jobs API again later.
            await boundRowLockWaits(tx, ANSWER_LOCK_WAIT_MS);
            return recordJobsApiAnswerPg(tx, jobId, answer, at);
          }),
        );
      return retryWhileRowLocked(once, ANSWER_LOCK_TRIES);
    },
  };
}
