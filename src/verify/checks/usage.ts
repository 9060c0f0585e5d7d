import type { CheckResult, ReceiptForChecks } from "./check-input.js";
import { fail, pass, skip } from "./check-list.js";

/**
 * `usage.consistent`: the usage the operator claimed, which prices the job, against itself and
 * against the answer the customer got. A claim that contradicts either is evidence of a charge
 * for output that never was, not a gap: the job fails, whatever the chain charged for it.
 */

/**
 * Tokens an answer may hold beyond one per byte of its text: the special tokens a model emits
 * that decode to nothing (end of turn, tool call markers).
 */
export const specialTokenSlack = 16;

type UsageOfJob = Pick<
  ReceiptForChecks,
  "completionTokens" | "promptTokens" | "totalTokens" | "reasoningTokens" | "answerBytes"
>;

export function usageConsistent(job: UsageOfJob): CheckResult {
  const name = "usage.consistent";
  const prompt = job.promptTokens ?? null;
  const completion = job.completionTokens ?? null;
  const total = job.totalTokens ?? null;
  const reasoning = job.reasoningTokens ?? null;
  const answerBytes = job.answerBytes ?? null;
  if (completion === null) return skip(name, "the receipt records no completion tokens");
  const actual = {
    promptTokens: prompt,
    completionTokens: completion,
    totalTokens: total,
    reasoningTokens: reasoning,
    answerBytes,
  };
  if (total !== null && completion > total) {
    return fail(
      name,
      `the usage names more completion tokens (${completion}) than tokens in all (${total})`,
      { completionTokensAtMost: total },
      actual,
    );
  }
  if (total !== null && prompt !== null && total !== prompt + completion) {
    return fail(
      name,
      `the usage's total_tokens (${total}) is not prompt_tokens + completion_tokens (${prompt + completion})`,
      { totalTokens: prompt + completion },
      actual,
    );
  }
  if (answerBytes === null) {
    // An ingested or imported receipt does not carry what the caller was answered.
    return skip(
      name,
      "the receipt does not carry the answer's size, so completion tokens are not bounded by it (the usage's arithmetic holds)",
    );
  }
  // Every output token decodes to at least one byte; reasoning the answer does not show is
  // counted by the operator's own figure, and a few special tokens decode to nothing.
  const most = answerBytes + (reasoning ?? 0) + specialTokenSlack;
  if (completion > most) {
    return fail(
      name,
      `the usage names ${completion} completion tokens, but the answer the caller got holds ${answerBytes} bytes${reasoning ? ` and ${reasoning} reasoning tokens` : ""}: at most ${most} tokens`,
      { completionTokensAtMost: most },
      actual,
    );
  }
  return pass(name, { completionTokensAtMost: most }, actual);
}
