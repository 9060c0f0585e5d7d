import type { Verdict } from "../db/schema.js";
import type { JobsApiAnswer } from "./jobs-api.js";

/*
 * The rules of recording a jobs-API answer that do not touch a database, shared by the SQLite
 * store (jobs-api.ts) and the PostgreSQL one (pg/jobs-api.ts).
 */

/** Job statuses after which no settlement signature will ever appear. */
const terminalWithoutSettlement = new Set(["refunded", "failed"]);

/** True when asking the jobs API again cannot bring anything new. */
export function isSettledAnswer(answer: JobsApiAnswer): boolean {
  return (
    answer.settlementTx !== null ||
    (answer.status !== null && terminalWithoutSettlement.has(answer.status))
  );
}

/** Verdicts a verifier will still revisit: an answer makes them due now without reopening. */
export const notFinal: ReadonlySet<Verdict> = new Set<Verdict>([
  "pending",
  "awaiting_finality",
  "error",
  "rpc_disagreement",
]);
