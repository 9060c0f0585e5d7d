import type { PgStore } from "../../db/pg/client.js";
import type { JobsApiAnswer, JobsApiStore } from "../jobs-api.js";
import type { PgExecutor } from "./executor.js";
import { notOnPostgresYet } from "./not-yet.js";

/** `recordJobsApiAnswerInTransaction` on PostgreSQL, inside the caller's transaction. */
export async function recordJobsApiAnswerPg(
  _tx: PgExecutor,
  _jobId: string,
  _answer: JobsApiAnswer,
  _now: number,
): Promise<void> {
  throw notOnPostgresYet("jobs-api");
}

export function createPgJobsApiStore(_store: PgStore): JobsApiStore {
  throw notOnPostgresYet("jobs-api");
}
