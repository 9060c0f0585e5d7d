import { maxTokenCount } from "./request-facts.js";

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
// or a terminal that shows the value.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
const controlCharacters = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * `value` with its control characters removed and cut to `max` characters (never inside a
 * surrogate pair); null when it is not a string or nothing is left of it.
 */
export function operatorText(value: unknown, max = maxOperatorTextLength): string | null {
  if (typeof value !== "string") return null;
  let text = value.replace(controlCharacters, "");
  if (text.length > max) {
    const cut = text.charCodeAt(max - 1);
    text = text.slice(0, cut >= 0xd800 && cut <= 0xdbff ? max - 1 : max);
  }
  return text.length > 0 ? text : null;
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
