/**
 * Text that came from a caller, a receipt or the chain, made safe to show. Such text can hold
 * control characters (an escape sequence drives the terminal that prints it, a newline forges
 * the next line of a report) and the line separators and bidirectional overrides that make it
 * display as something else. Caller text with such characters is refused where it is taken
 * (`hasUnprintable`); chain text (a memo) cannot be, and rows stored before the rule may hold
 * them, so outputs that print outside text show it through `printable`.
 */

/**
 * C0 and C1 controls and DEL (`\p{Cc}`), line and paragraph separators, and the characters
 * that show as nothing or as a plain space: format characters (`\p{Cf}`: zero-width spaces and
 * joiners, bidi marks and overrides, the byte-order mark, soft hyphens, tags), spaces other
 * than U+0020 and the Hangul fillers. "qwen3-8b\u200b" showed in a report as a second
 * "qwen3-8b". A lone surrogate (`\ud800` in JSON) too: it is no character, and stored it became
 * bytes that are no UTF-8, shown as U+FFFD.
 */
const unprintableChar =
  /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u115f\u1160\u3164\uffa0]/u;
const unprintableChars = new RegExp(unprintableChar.source, "gu");

/** Whether the text holds a character `printable` would escape. */
export function hasUnprintable(text: string): boolean {
  return unprintableChar.test(text);
}

/**
 * The text as one line of plain text: each unprintable character as a `\uXXXX` escape (one
 * past U+FFFF, such as a tag character, as `\u{XXXXX}`).
 */
export function printable(text: string): string {
  return printableMarked(text, (code) => code);
}

/**
 * `printable`, each escape passed through `mark`: a page sets it apart from text that holds a
 * backslash and a `u` of its own.
 */
export function printableMarked(text: string, mark: (code: string) => string): string {
  return text.replace(unprintableChars, (c) => {
    const code = c.codePointAt(0) as number;
    return mark(
      code > 0xffff ? `\\u{${code.toString(16)}}` : `\\u${code.toString(16).padStart(4, "0")}`,
    );
  });
}

/**
 * The text as a markdown code span: links, images and HTML inside it render as literal text.
 * The fence is one backtick longer than the longest run of backticks inside, and a space pads
 * text that starts or ends with one, as CommonMark requires.
 */
export function markdownCode(text: string): string {
  const inert = printable(text);
  const longestRun = Math.max(0, ...(inert.match(/`+/g) ?? []).map((run) => run.length));
  const fence = "`".repeat(longestRun + 1);
  const pad = inert.startsWith("`") || inert.endsWith("`") ? " " : "";
  return `${fence}${pad}${inert}${pad}${fence}`;
}

/**
 * `text` cut to `max` UTF-16 code units, never inside a surrogate pair, a cut ending in `mark`;
 * null when nothing is left of it.
 */
export function cutText(text: string, max: number, mark: string): string | null {
  if (text.length > max) {
    const end = max - mark.length;
    const last = text.charCodeAt(end - 1);
    text = text.slice(0, last >= 0xd800 && last <= 0xdbff ? end - 1 : end) + mark;
  }
  return text.length > 0 ? text : null;
}

/**
 * Text fit to store and show though it could not be refused (it was already acted on): each
 * unprintable character becomes U+FFFD and a cut ends in U+2026, so the value never compares
 * equal to a name it was not ("qwen3-8b\u0000" is not "qwen3-8b").
 */
export function fitText(text: string, max: number): string | null {
  return cutText(text.replace(unprintableChars, "\ufffd"), max, "\u2026");
}
