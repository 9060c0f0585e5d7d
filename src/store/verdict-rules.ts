/* The rules of a verdict write that do not touch a database, shared by both dialects. */

import type { VerdictWrite } from "./verdicts.js";

/**
 * Whether a decision keeps the verdict the job was claimed with, with nothing else to write than
 * its row's queue columns: no evaluation (so no amounts, pins or evidence) and no check rows. A
 * claimed job is open, so such a decision is never final.
 */
export function keepsVerdict(d: VerdictWrite): boolean {
  return d.evaluation === null && d.checks === null && d.job.verdict === d.verdict;
}

/** Consecutive rounds that ended in RPC trouble: the error backoff grows with them. */
export function attemptsAfter(d: VerdictWrite): number {
  return d.verdict === "error" || d.verdict === "rpc_disagreement" ? d.job.verifyAttempts + 1 : 0;
}
