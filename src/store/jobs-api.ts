import { eq, sql } from "drizzle-orm";
import type { SqliteStore, Store } from "../db/client.js";
import { jobApiAnswers, jobs, type Verdict } from "../db/schema.js";
import { holdNamedPast, makeDue, reopenJobs, reopenNamers } from "./job-queue.js";
import {
  answerBody,
  answerColumns,
  answeredSelection,
  answerIsOlder,
  answerNamedPast,
  answerQueueEffect,
  answerRenames,
  sentBack,
} from "./jobs-api-rules.js";
import { pgTwins } from "./pg-twins.js";
import {
  indexAwareUpdate,
  inWriteTransaction,
  param,
  perConnection,
  prepareColumns,
  prepareRun,
} from "./prepared.js";
import { prepareOrIgnore } from "./receipts.js";
import type { WriteUnit } from "./write-unit.js";

export { isFinalAnswer } from "./jobs-api-rules.js";

/** What `GET /v1/jobs/{job_id}` said about a job, reduced to what the audit compares. */
export interface JobsApiAnswer {
  status: string | null;
  creditsChargedUnits: bigint | null;
  /** `credits_charged` as sent when it is no credit amount; null or absent otherwise. */
  creditsChargedUnread?: string | null;
  escrowTx: string | null;
  settlementTx: string | null;
  worker: string | null;
  /** `usage.completion_tokens` when the answer names it; null or absent otherwise. */
  completionTokens?: number | null;
  /** The response body as received. */
  raw: unknown;
}

/** The `jobs.api_*` columns: what the jobs API said about each job. */
export interface JobsApiStore {
  /**
   * Stores what the jobs API said in the `api_*` columns and fills the receipt's settlement
   * signature from it when the receipt lacked one (an update, never a conflict). A recorded
   * settlement signature is never overwritten: a different one from the API is a finding for
   * the verifier, which compares the two columns. The backfill is done once the answer is
   * final. A job whose answer changed (or the first answer) is reopened for the verifier; a
   * job not yet final is at least due now (it may have been parked waiting for exactly this
   * answer). One IMMEDIATE transaction; an unknown job id changes nothing. Returns the final
   * verdict the answer sent back to be judged again (`sentBack`), else null.
   */
  recordAnswer(jobId: string, answer: JobsApiAnswer, at?: number): Promise<Verdict | null>;
}

function prepare(store: SqliteStore) {
  const jobId = eq(jobs.jobId, sql.placeholder("jobId"));
  const answered = answeredSelection(jobs);
  return {
    previous: prepareColumns(store, answered, store.db.select(answered).from(jobs).where(jobId)),
    // An indexed column that keeps its value is left out (see `indexAwareUpdate`): a repeated
    // answer rewrites no index, and one naming the settlement the receipt had leaves its own.
    // So are the conflict signatures an answer adds none to (the row's own array again).
    update: indexAwareUpdate<Partial<typeof jobs.$inferInsert>>(
      {
        apiStatus: param("apiStatus"),
        apiCreditsChargedUnits: param("apiCreditsChargedUnits"),
        apiCreditsChargedUnread: param("apiCreditsChargedUnread"),
        apiEscrowTx: param("apiEscrowTx"),
        apiSettlementTx: param("apiSettlementTx"),
        apiWorker: param("apiWorker"),
        apiCompletionTokens: param("apiCompletionTokens"),
        apiCheckedAt: param("now"),
        settlementTx: param("settlementTx"),
        backfillState: param("backfillState"),
        conflictSignatures: param("conflictSignatures"),
        updatedAt: param("now"),
      },
      [
        "apiEscrowTx",
        "apiSettlementTx",
        "settlementTx",
        "backfillState",
        "conflictSignatures",
        "apiWorker",
      ],
      // OR IGNORE: no statement journal when a column of the rollup triggers is written (see
      // `prepareOrIgnore`); the caller checks that the row was written.
      (set) => prepareOrIgnore(store, store.db.update(jobs).set(set).where(jobId)),
    ),
    body: prepareRun(
      store,
      store.db
        .insert(jobApiAnswers)
        .values({ jobId: param("jobId"), response: param("response") })
        .onConflictDoUpdate({
          target: jobApiAnswers.jobId,
          set: { response: sql`excluded.response` },
        }),
    ),
    noBody: prepareRun(
      store,
      store.db.delete(jobApiAnswers).where(eq(jobApiAnswers.jobId, sql.placeholder("jobId"))),
    ),
  };
}

const statementsOf = perConnection(prepare);

/**
 * `JobsApiStore.recordAnswer` for a caller that batches writes of its own (the receipt
 * writer's group commit): synchronous, on the connection `tx`, in an IMMEDIATE transaction of
 * its own or, inside the caller's transaction, a savepoint.
 */
export function recordJobsApiAnswerInTransaction(
  tx: SqliteStore,
  jobId: string,
  answer: JobsApiAnswer,
  now = Date.now(),
): Verdict | null {
  const st = statementsOf(tx);
  return inWriteTransaction(tx, () => {
    const [row] = st.previous.all({ jobId });
    if (!row || answerIsOlder(row, answer, now)) return null;
    const effect = answerQueueEffect(row, answer, now);
    const columns = answerColumns(row, answer);
    const written = st.update.run({ jobId, ...columns, now }, row);
    if (written.changes !== 1) {
      throw new Error(`jobs API answer of job ${jobId} breaks a constraint of jobs: not recorded`);
    }
    // Dropped steps past the full list: held for the escrow scan (see `answerNamedPast`).
    holdNamedPast(tx, jobId, answerNamedPast(row, answer, columns.conflictSignatures), now);
    const response = answerBody(answer);
    if (response === null) st.noBody.run({ jobId });
    else st.body.run({ jobId, response });
    // Each only when it changes something: a write of `jobs` fires its rollup triggers.
    if (effect === "reopen") reopenJobs(tx, { jobIds: [jobId] }, now);
    else if (effect === "due") makeDue(tx, [jobId], now);
    reopenNamers(tx, answerRenames(row, answer), now, jobId);
    return sentBack(row.verdict, effect);
  });
}

/** Records a jobs-API answer as one unit of the receipt writer's group commit. */
export function recordJobsApiAnswerUnit(
  jobId: string,
  answer: JobsApiAnswer,
  now = Date.now(),
): WriteUnit<Verdict | null> {
  return {
    runSqlite: (tx) => recordJobsApiAnswerInTransaction(tx, jobId, answer, now),
    runPostgres: (tx) => pgTwins().recordJobsApiAnswerPg(tx, jobId, answer, now),
    jobIds: [jobId],
    data: { kind: "jobsApiAnswer", jobId, answer, at: now },
  };
}

/** The jobsapi store of either dialect. */
export function createJobsApiStore(store: Store): JobsApiStore {
  return store.kind === "postgres"
    ? pgTwins().createPgJobsApiStore(store)
    : createSqliteJobsApiStore(store);
}

/** The jobs-API answers store on `store`'s connection; its statements are prepared here, once. */
function createSqliteJobsApiStore(store: SqliteStore): JobsApiStore {
  statementsOf(store);
  return {
    async recordAnswer(jobId, answer, at) {
      return recordJobsApiAnswerInTransaction(store, jobId, answer, at);
    },
  };
}
