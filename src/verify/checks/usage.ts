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

/**
 * Tokens each tool or function call may cost beyond the bytes of its name and arguments: the
 * format a model writes a call in (its markers, the call's id and type, the wrapper around its
 * arguments) is billed as output but is none of the text the caller gets. Twelve parallel calls
 * of `f({})` are billed about ten tokens each.
 */
export const toolCallTokenSlack = 16;

type UsageOfJob = Pick<
  ReceiptForChecks,
  | "completionTokens"
  | "promptTokens"
  | "totalTokens"
  | "reasoningTokens"
  | "rejectedPredictionTokens"
  | "answerBytes"
  | "answerToolCalls"
  | "predictionSent"
>;

/**
 * `model` is the requested model as the job is priced by it; `hiddenTokens` its profile price's
 * (`false`: the model bills no reasoning or rejected prediction tokens).
 */
export function usageConsistent(
  job: UsageOfJob,
  model: { name: string; hiddenTokens?: boolean } | null = null,
): CheckResult {
  const name = "usage.consistent";
  const prompt = job.promptTokens ?? null;
  const completion = job.completionTokens ?? null;
  const total = job.totalTokens ?? null;
  const reasoning = job.reasoningTokens ?? null;
  const rejected = job.rejectedPredictionTokens ?? null;
  const answerBytes = job.answerBytes ?? null;
  const toolCalls = job.answerToolCalls ?? null;
  if (completion === null) return skip(name, "the receipt records no completion tokens");
  const actual = {
    promptTokens: prompt,
    completionTokens: completion,
    totalTokens: total,
    reasoningTokens: reasoning,
    rejectedPredictionTokens: rejected,
    answerBytes,
    answerToolCalls: toolCalls,
  };
  if (total !== null && completion > total) {
    return fail(
      name,
      `the usage names more completion tokens (${completion}) than tokens in all (${total})`,
      { completionTokensAtMost: total },
      actual,
    );
  }
  // A total above its parts is honest (Gemini counts thinking in the total alone) and prices
  // nothing: the charge goes by completion tokens. Only a total below them contradicts itself.
  if (total !== null && prompt !== null && total < prompt + completion) {
    return fail(
      name,
      `the usage's total_tokens (${total}) is less than prompt_tokens + completion_tokens (${prompt + completion})`,
      { totalTokensAtLeast: prompt + completion },
      actual,
    );
  }
  // Reasoning and rejected prediction tokens are the operator's own figures. OpenAI bills them
  // inside the completion tokens, so more of them than the completion tokens contradicts itself
  // unless the total holds them beside the completion (xAI counts reasoning apart from it):
  // then they are none of the completion tokens the job is priced by, and bound none of them.
  // As many as the completion tokens or fewer may be inside them whatever the total says: a
  // total above its parts may hold other tokens (Gemini's tool-use prompt), not these.
  const named = (reasoning ?? 0) + (rejected ?? 0);
  // A model that neither reasons nor takes predicted outputs has no such tokens:
  // named, they are the operator's figure for output nobody got, whatever bound they lift.
  if (model?.hiddenTokens === false && named > 0) {
    return fail(
      name,
      `the usage names ${[
        ...(reasoning ? [`${reasoning} reasoning tokens`] : []),
        ...(rejected ? [`${rejected} rejected prediction tokens`] : []),
      ].join(
        " and ",
      )}, but the profile says ${model.name} neither reasons nor takes predicted outputs (hiddenTokens: false)`,
      { reasoningTokens: 0, rejectedPredictionTokens: 0 },
      actual,
    );
  }
  // Rejected prediction tokens are predicted outputs the model did not take: a request that sent
  // no `prediction` has none, and named they lift the bound of its answer's bytes for nothing.
  if (job.predictionSent === false && rejected !== null && rejected > 0) {
    return fail(
      name,
      `the usage names ${rejected} rejected prediction tokens, but the request sent no prediction`,
      { rejectedPredictionTokens: 0 },
      actual,
    );
  }
  const beside = total !== null && prompt !== null && total >= prompt + completion + named;
  const hidden = named <= completion || !beside ? named : 0;
  if (hidden > completion) {
    return fail(
      name,
      `the usage names ${hidden} reasoning and rejected prediction tokens, more than its ${completion} completion tokens`,
      { hiddenTokensAtMost: completion },
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
  // Every output token decodes to at least one byte; reasoning the answer does not show and
  // predicted tokens the model rejected are counted by the operator's own figures; each tool
  // call has its format, and a few special tokens decode to nothing.
  const most = answerBytes + hidden + (toolCalls ?? 0) * toolCallTokenSlack + specialTokenSlack;
  if (completion > most) {
    const parts = [
      `${answerBytes} bytes`,
      ...(toolCalls ? [`${toolCalls} tool calls`] : []),
      ...(reasoning && hidden > 0 ? [`${reasoning} reasoning tokens`] : []),
      ...(rejected && hidden > 0 ? [`${rejected} rejected prediction tokens`] : []),
    ];
    return fail(
      name,
      `the usage names ${completion} completion tokens, but the answer the caller got holds ${parts.join(", ")}: at most ${most} tokens`,
      { completionTokensAtMost: most },
      actual,
    );
  }
  return pass(name, { completionTokensAtMost: most }, actual);
}
