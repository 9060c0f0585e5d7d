/* The rules of a verdict write that do not touch a database, shared by both dialects. */

import { finalVerdicts } from "../db/schema.js";
import type { LearnedPins } from "./custody.js";
import type { VerdictWrite } from "./verdicts.js";

/**
 * Whether a decision keeps the verdict the job was claimed with, with nothing else to write than
 * its row's queue columns: no evaluation (so no amounts, pins or evidence) and no check rows. A
 * claimed job is open, so such a decision is never final.
 */
export function keepsVerdict(d: VerdictWrite): boolean {
  // Pins to write (a verdict held for the ledger's read of the vault they pin) go the long way.
  return (
    d.evaluation === null &&
    d.checks === null &&
    d.pins === undefined &&
    d.job.verdict === d.verdict
  );
}

/** Consecutive rounds that ended in RPC trouble: the error backoff grows with them. */
export function attemptsAfter(d: VerdictWrite): number {
  return d.verdict === "error" || d.verdict === "rpc_disagreement" ? d.job.verifyAttempts + 1 : 0;
}

/**
 * The SQL assignments of a verdict write (raw, `written` the SQL of the verdict it writes) to
 * the columns of a job judged again: a final verdict ends that (`previous_verdict` and
 * `rejudge_reason` cleared), an open one leaves them.
 */
export function clearsRejudging(written: string): string {
  const final = writesFinal(written);
  return `previous_verdict = CASE WHEN ${final} THEN NULL ELSE previous_verdict END,
    rejudge_reason = CASE WHEN ${final} THEN NULL ELSE rejudge_reason END`;
}

/** The verdict a write writes (raw SQL `written`) is final. */
export const writesFinal = (written: string): string =>
  `${written} IN (${finalVerdicts.map((v) => `'${v}'`).join(", ")})`;

/**
 * The assignment of `verdict_profile` (raw; `judgedBy` the SQL of the writer's profile id): only
 * a final verdict says which profile reached it. An open one leaves it, so a job judged again
 * keeps naming the profile of the verdict it left (`rejudging.previousVerdictProfile`) while
 * its new judgement waits on finality or the RPC.
 */
export const verdictProfileSet = (written: string, judgedBy: string): string =>
  `verdict_profile = CASE WHEN ${writesFinal(written)} THEN ${judgedBy} ELSE verdict_profile END`;

/** What a write pins: its evaluation's lessons, or the pins it carries without one. */
export const pinsOf = (d: VerdictWrite): LearnedPins | null =>
  d.evaluation?.learned ?? d.pins ?? null;
