import { cutText } from "../printable-text.js";
import { maxTokenCount } from "./request-facts.js";
import { withoutAnyKey } from "./without-key.js";

/**
 * Values the Decentral operator writes (a response's model and usage, a jobs API status), made
 * fit to store: the operator is the party being audited, so what it writes is never trusted to
 * be well formed, and a malformed value is recorded as unknown rather than losing the receipt.
 * No dependency beyond the platform, since the fetch wrapper is imported alone by backends.
 */

/** The longest operator text kept, in UTF-16 code units (as ingest counts a model's length). */
export const maxOperatorTextLength = 200;

// C0 and C1 control characters and DEL. PostgreSQL text cannot hold NUL at all (the whole
// INSERT fails, and with it the receipt), and the others would break a log line, a CSV cell
// or a terminal that shows the value. A lone surrogate (`\ud800` in JSON) is no character:
// stored, it became bytes that are no UTF-8.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
const controlCharacters = /[\u0000-\u001f\u007f-\u009f\p{Cs}]/gu;

/**
 * `value` with its control characters removed and cut to `max` characters (never inside a
 * surrogate pair); null when it is not a string or nothing is left of it. A status is read by
 * its word, so what is removed leaves the word as it was meant ("settled\u0000" is "settled").
 */
export function operatorText(value: unknown, max = maxOperatorTextLength): string | null {
  if (typeof value !== "string") return null;
  return cutText(value.replace(controlCharacters, ""), max, "");
}

/**
 * A model the operator's response named, fit to store and to compare with the one the caller
 * asked for: each control character becomes U+FFFD and a cut ends in U+2026, so a cleaned
 * value never compares equal to a name it was not ("qwen3-8b\u0000" is not "qwen3-8b").
 */
export function operatorModel(value: unknown): string | null {
  if (typeof value !== "string") return null;
  // A key the answer echoes is never stored, whoever's (the proxy cuts the caller's own first).
  return cutText(
    withoutAnyKey(value.replace(controlCharacters, "\ufffd")),
    maxOperatorTextLength,
    "\u2026",
  );
}

/** A token count the operator wrote, or null when it is not an integer within ingest's bounds. */
export function operatorTokens(value: unknown): number | null {
  return typeof value === "number" &&
    Number.isInteger(value) &&
    value >= 0 &&
    value <= maxTokenCount
    ? value
    : null;
}

/**
 * An amount the operator sent that is no amount (`99.00001` credits, `"1e2"`), kept as sent
 * (JSON for what is not a string), cleaned and cut as `operatorText`: present but unreadable is
 * a finding of its check, which must not take it for a value never sent.
 */
export function unreadAmount(value: unknown): string {
  const text = typeof value === "string" ? value : (JSON.stringify(value) ?? String(value));
  return operatorText(text) ?? "(no printable characters)";
}

/** The token counts of an answer's `usage`, each null when absent or no count. */
export interface OperatorUsage {
  promptTokens: number | null;
  completionTokens: number | null;
  totalTokens: number | null;
  reasoningTokens: number | null;
  rejectedPredictionTokens: number | null;
}

const asRecord = (value: unknown): Record<string, unknown> =>
  typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};

/**
 * The `usage` of an answer, read by the proxy and the fetch wrapper alike; null when it is no
 * object. A completion's names `prompt_tokens` and `completion_tokens`; a Responses API
 * answer's (`responses`: the request asked `/responses`) names `input_tokens` and
 * `output_tokens` (the completion tokens it is billed by, reasoning included), whose client
 * reads no other: a count under the other endpoint's name is none its caller was told.
 */
export function operatorUsage(value: unknown, responses: boolean): OperatorUsage | null {
  if (typeof value !== "object" || value === null) return null;
  const u = value as Record<string, unknown>;
  if (responses) {
    return {
      promptTokens: operatorTokens(u.input_tokens),
      completionTokens: operatorTokens(u.output_tokens),
      totalTokens: operatorTokens(u.total_tokens),
      reasoningTokens: operatorTokens(asRecord(u.output_tokens_details).reasoning_tokens),
      rejectedPredictionTokens: null,
    };
  }
  const details = asRecord(u.completion_tokens_details);
  return {
    promptTokens: operatorTokens(u.prompt_tokens),
    completionTokens: operatorTokens(u.completion_tokens),
    totalTokens: operatorTokens(u.total_tokens),
    reasoningTokens: operatorTokens(details.reasoning_tokens),
    // Predicted Outputs: billed as completion tokens, absent from the answer.
    rejectedPredictionTokens: operatorTokens(details.rejected_prediction_tokens),
  };
}
