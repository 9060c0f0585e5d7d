import type { jobs, Verdict } from "../db/schema.js";
import type { JobsApiAnswer } from "./jobs-api.js";
import { maxKeptSignatures, namedPast, needsReopen, type QueueState } from "./receipt-rules.js";

/*
 * The rules of recording a jobs-API answer that do not touch a database, shared by the SQLite
 * store (jobs-api.ts) and the PostgreSQL one (pg/jobs-api.ts).
 */

/**
 * The statuses of the protocol's list (`pending`, `processing`, `settling`, `settled`, `failed`,
 * `refunded`) after which the job's status and charge no longer change.
 */
const finalStatuses = new Set(["settled", "refunded", "failed"]);

/**
 * The status the jobs API wrote as the word the checks compare: stored as written, but
 * "Refunded", "SETTLED" and "settled " are the words they spell. Read as written, such an
 * answer was no final status and the check against the chain was skipped: "Refunded" with
 * nothing charged verified a job the chain shows settled.
 */
export function jobStatusWord(status: string | null): string | null {
  return status === null ? null : status.trim().toLowerCase();
}

/**
 * What `String.prototype.trim` takes off a status (white space and line terminators), for SQL
 * that reads the word as `jobStatusWord` does: SQL's one-argument trim takes spaces alone.
 */
export const statusSpaces =
  " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" +
  "\u2028\u2029\u202f\u205f\u3000\ufeff";

/**
 * True when the answer's status is final, so asking the jobs API again cannot bring anything
 * new. An answer naming the settlement is not final by that alone: one that says `settling`
 * (or a word the protocol does not list) with the settlement named has not given the status and
 * `credits_charged` that `jobs_api.matches_chain` compares with the chain, and the questions
 * ended on it never brought them.
 */
export function isFinalAnswer(answer: Pick<JobsApiAnswer, "status">): boolean {
  const status = jobStatusWord(answer.status);
  return status !== null && finalStatuses.has(status);
}

/** Verdicts a verifier will still revisit: an answer makes them due now without reopening. */
export const notFinal: ReadonlySet<Verdict> = new Set<Verdict>([
  "pending",
  "awaiting_finality",
  "error",
  "rpc_disagreement",
]);

/** What an answer's write needs of the job's row as it is. */
export interface AnsweredRow {
  escrowTx: string | null;
  apiCheckedAt: number | null;
  apiStatus: string | null;
  apiEscrowTx: string | null;
  apiSettlementTx: string | null;
  apiWorker: string | null;
  apiCompletionTokens: number | null;
  apiCreditsChargedUnits: bigint | null;
  apiCreditsChargedUnread: string | null;
  settlementTx: string | null;
  backfillState: "pending" | "done" | "gave_up" | null;
  conflictSignatures: string[] | null;
}

/** The columns of `jobs` an answer's write reads: `AnsweredRow`, the queue state, the commitment. */
const answeredColumns = [
  "escrowTx",
  "apiCheckedAt",
  "apiStatus",
  "apiEscrowTx",
  "apiSettlementTx",
  "apiWorker",
  "apiCompletionTokens",
  "apiCreditsChargedUnits",
  "apiCreditsChargedUnread",
  "settlementTx",
  "backfillState",
  "conflictSignatures",
  "commitment",
  "verdict",
  "nextVerifyAt",
  "verifyAttempts",
  "lastError",
  "leaseOwner",
] as const;

/** The `answeredColumns` of a drizzle table of jobs (either dialect's), for a `select()`. */
export function answeredSelection<T extends Record<(typeof answeredColumns)[number], unknown>>(
  table: T,
): Pick<T, (typeof answeredColumns)[number]> {
  return Object.fromEntries(answeredColumns.map((key) => [key, table[key]])) as Pick<
    T,
    (typeof answeredColumns)[number]
  >;
}

/**
 * True when the row holds an answer received after this one (`at`) that says at least as much:
 * the proxy and the settlement backfill may ask about one job at once, and an answer committed
 * late must not replace a newer one. An answer that names a settlement the row lacks, or gives
 * a final status where the row's is not, is never dropped, whatever the times say: they come from each process's clock, and a process
 * whose clock runs ahead must not hide a settlement another one learnt.
 */
export function answerIsOlder(row: AnsweredRow, answer: JobsApiAnswer, at: number): boolean {
  if (row.apiCheckedAt === null || row.apiCheckedAt <= at) return false;
  const settles = answer.settlementTx !== null && row.apiSettlementTx === null;
  const ends = isFinalAnswer(answer) && !isFinalAnswer({ status: row.apiStatus });
  return !settles && !ends;
}

/**
 * True when this answer tells the checks something the row did not say: a first answer, or a
 * different status, signature, worker, usage or charge.
 */
export function answerChanges(row: AnsweredRow, answer: JobsApiAnswer): boolean {
  return (
    row.apiCheckedAt === null ||
    row.apiStatus !== answer.status ||
    row.apiEscrowTx !== answer.escrowTx ||
    row.apiSettlementTx !== answer.settlementTx ||
    row.apiWorker !== answer.worker ||
    row.apiCompletionTokens !== (answer.completionTokens ?? null) ||
    row.apiCreditsChargedUnits !== answer.creditsChargedUnits ||
    row.apiCreditsChargedUnread !== (answer.creditsChargedUnread ?? null)
  );
}

/** The answer's body as `job_api_answers` keeps it: none (no row) for an answer without one. */
export const answerBody = (answer: JobsApiAnswer): unknown => answer.raw ?? null;

/** The signatures the row's last answer named that neither `answer` nor the receipt names. */
function droppedByAnswer(row: AnsweredRow, answer: JobsApiAnswer): string[] {
  const kept = [row.escrowTx, row.settlementTx, answer.escrowTx, answer.settlementTx];
  return [row.apiEscrowTx, row.apiSettlementTx].filter(
    (s): s is string => s !== null && !kept.includes(s),
  );
}

/**
 * The job's conflict signatures with those the last answer named and `answer` no longer does
 * (up to `maxKeptSignatures`), or the row's own list (the same array) when it adds none.
 * A lock, settlement or refund the jobs API once named for the job stays the job's, as a
 * conflicting receipt's do: otherwise the operator's next answer, naming the honest settlement
 * again, would erase a second payout or refund the last one showed, and the job would pass.
 */
export function answerConflictSignatures(row: AnsweredRow, answer: JobsApiAnswer): string[] | null {
  const known = new Set<string>(row.conflictSignatures ?? []);
  const before = known.size;
  for (const s of droppedByAnswer(row, answer)) {
    if (known.size < maxKeptSignatures) known.add(s);
  }
  return known.size > before ? [...known] : row.conflictSignatures;
}

/**
 * The signatures the last answer named that `answer` drops and that do not fit in the job's
 * conflict signatures (`kept`: as `answerConflictSignatures` left them), for the escrow scan to
 * read (`namedPast`).
 */
export function answerNamedPast(
  row: AnsweredRow,
  answer: JobsApiAnswer,
  kept: readonly string[] | null,
): string[] {
  return namedPast(droppedByAnswer(row, answer), [row.escrowTx, row.settlementTx], kept);
}

/**
 * The columns of `jobs` an answer writes (its body goes to `job_api_answers`): what it says,
 * the settlement signature when the row had none (a recorded one is never overwritten), the
 * signatures the last answer named that this one drops (kept as conflict signatures), and the
 * backfill ended once the status is final (nothing more can come).
 */
export function answerColumns(row: AnsweredRow, answer: JobsApiAnswer) {
  return {
    conflictSignatures: answerConflictSignatures(row, answer),
    apiStatus: answer.status,
    apiCreditsChargedUnits: answer.creditsChargedUnits,
    apiCreditsChargedUnread: answer.creditsChargedUnread ?? null,
    apiEscrowTx: answer.escrowTx,
    apiSettlementTx: answer.settlementTx,
    apiWorker: answer.worker,
    apiCompletionTokens: answer.completionTokens ?? null,
    settlementTx: row.settlementTx ?? answer.settlementTx,
    backfillState:
      isFinalAnswer(answer) && row.backfillState === "pending" ? "done" : row.backfillState,
  };
}

/**
 * The signatures whose namers `answer` changes, so their other namers are judged again (see
 * `newlyNamed` in receipt-rules.ts): those it makes the job name that neither its receipt nor
 * an earlier answer named, and those the earlier answer named that the job names no more (not
 * this answer, not its receipt). Who owns a signature's money turns on every job naming it:
 * a job that stops naming one no longer owns it, and a replay of it judged while it did owned
 * nothing, so without being judged again the money would be counted for nobody.
 */
export function answerRenames(row: AnsweredRow, answer: JobsApiAnswer): string[] {
  const known = [row.escrowTx, row.settlementTx, row.apiEscrowTx, row.apiSettlementTx];
  const added = [answer.escrowTx, answer.settlementTx].filter(
    (s): s is string => s !== null && !known.includes(s),
  );
  // One kept as a conflict signature still leaves its namers: who owns a signature's money
  // turns on the receipt's and the answer's columns first, and on conflict signatures only
  // where none names it. The job itself is sent back by the answer's own effect, if at all.
  return [...added, ...droppedByAnswer(row, answer)];
}

/**
 * What recording an answer does to the job's place in the verifier's queue:
 * - `reopen`: back to pending and due now (see `reopenJobs`), when the answer changed what a
 *   verdict was reached on, or may be being reached on by a verifier holding the job now;
 * - `due`: a waiting job is polled now, as it may be parked for exactly this answer;
 * - `none`: the job's next poll, due anyway, decides on the answer.
 * A job still waiting, held by no verifier, that has its settlement signature, is left where
 * it is when the answer names no signature it does not name already: what it says is read at
 * the decision, and polling the job again at once learns nothing about its transactions. That
 * extra poll came after nearly every proxied job's first answer.
 */
export function answerQueueEffect(
  row: AnsweredRow & QueueState & Pick<typeof jobs.$inferSelect, "commitment">,
  answer: JobsApiAnswer,
  now: number,
): "reopen" | "due" | "none" {
  const known = [row.escrowTx, row.settlementTx, row.apiEscrowTx, row.apiSettlementTx];
  const namesNothingNew = [answer.escrowTx, answer.settlementTx].every(
    (s) => s === null || known.includes(s),
  );
  const waiting = notFinal.has(row.verdict);
  // A job whose transactions are all final waits only for this answer (see `jobsApiAnswerBy`
  // in src/verify/decide.ts): it is judged on it at once.
  const parkedForAnswer = row.commitment === "finalized";
  if (
    waiting &&
    row.leaseOwner === null &&
    row.settlementTx !== null &&
    namesNothingNew &&
    !parkedForAnswer
  ) {
    return "none";
  }
  if (answerChanges(row, answer)) return needsReopen(row, now) ? "reopen" : "none";
  return waiting && row.nextVerifyAt > now ? "due" : "none";
}

/**
 * The final verdict an answer's write sent back to the verifier (`reopen` of a job judged
 * before the answer came: it is judged again on it), else null; for the log to say why the
 * job has a second verdict.
 */
export function sentBack(verdict: Verdict, effect: ReturnType<typeof answerQueueEffect>) {
  return effect === "reopen" && !notFinal.has(verdict) ? verdict : null;
}
