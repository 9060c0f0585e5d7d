/**
 * Exact reading of JSON-RPC reply text. Solana nodes write lamport balances as JSON numbers, and
 * some exceed 2^53 (an account holding more than ~9 million SOL), which `JSON.parse` would round.
 * These helpers keep such integers exact and cut out the `result` text as it was received, so
 * the stored evidence is byte-for-byte what the node sent.
 */

const digit = (code: number) => code >= 48 && code <= 57;
/**
 * A number literal of 16 digits or more where JSON puts a value (the text's start, or after
 * `:`, `,` or `[`). The same run inside a string (the system program's address is 32 `1`s)
 * may match too, which only sends that text the slow way.
 */
const longNumber = /(?:^|[:,[])\s*-?\d{16}/;

/**
 * Parses JSON text, turning every integer literal that is not a safe integer into its decimal
 * string ("12345678901234567890"), so no number is ever rounded. Other numbers parse as usual.
 * Throws `SyntaxError` on invalid JSON, as `JSON.parse` does.
 */
export function parseJsonLossless(text: string): unknown {
  // An integer beyond 2^53 has at least 16 digits: a text with no such number (most replies)
  // holds none, and the native parser alone reads it exactly.
  if (!longNumber.test(text)) return JSON.parse(text);
  let out = "";
  let copiedUpTo = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const code = text.charCodeAt(i);
    if (code === 34 /* " */) {
      i = skipString(text, i);
      continue;
    }
    if (code === 45 /* - */ || digit(code)) {
      const start = i;
      i++;
      while (i < n && digit(text.charCodeAt(i))) i++;
      let integer = true;
      while (i < n && /[.eE+\-0-9]/.test(text[i] as string)) {
        integer = false;
        i++;
      }
      const literal = text.slice(start, i);
      if (integer && /^-?\d+$/.test(literal) && !Number.isSafeInteger(Number(literal))) {
        out += `${text.slice(copiedUpTo, start)}"${literal}"`;
        copiedUpTo = i;
      }
      continue;
    }
    i++;
  }
  return JSON.parse(copiedUpTo === 0 ? text : out + text.slice(copiedUpTo));
}

/** Index just past the string literal starting at `start` (which holds a quote). */
function skipString(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length) {
    const code = text.charCodeAt(i);
    if (code === 92 /* \ */) i += 2;
    else if (code === 34) return i + 1;
    else i++;
  }
  throw new SyntaxError("unterminated string in JSON text");
}

function skipWhitespace(text: string, start: number): number {
  let i = start;
  while (i < text.length && /\s/.test(text[i] as string)) i++;
  return i;
}

/** Index just past the JSON value starting at `start` (after whitespace). Assumes valid JSON. */
function skipValue(text: string, start: number): number {
  let i = skipWhitespace(text, start);
  const first = text[i];
  if (first === '"') return skipString(text, i);
  if (first === "{" || first === "[") {
    let depth = 0;
    while (i < text.length) {
      const ch = text[i];
      if (ch === '"') {
        i = skipString(text, i);
        continue;
      }
      if (ch === "{" || ch === "[") depth++;
      else if (ch === "}" || ch === "]") {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    throw new SyntaxError("unterminated container in JSON text");
  }
  while (i < text.length && !/[,}\]\s]/.test(text[i] as string)) i++;
  return i;
}

/**
 * The member texts of a top-level JSON object, exactly as written (`{"a": 1}` -> a: "1").
 * Call only on text that `JSON.parse` accepts.
 */
export function objectMemberTexts(text: string): Map<string, string> {
  const members = new Map<string, string>();
  let i = skipWhitespace(text, 0);
  if (text[i] !== "{") throw new SyntaxError("JSON text is not an object");
  i = skipWhitespace(text, i + 1);
  if (text[i] === "}") return members;
  while (i < text.length) {
    const keyEnd = skipString(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipWhitespace(text, keyEnd);
    const valueStart = skipWhitespace(text, i + 1); // past ':'
    const valueEnd = skipValue(text, valueStart);
    members.set(key, text.slice(valueStart, valueEnd));
    i = skipWhitespace(text, valueEnd);
    if (text[i] === "}") return members;
    i = skipWhitespace(text, i + 1); // past ','
  }
  throw new SyntaxError("unterminated object in JSON text");
}

/** The element texts of a top-level JSON array, exactly as written. Call only on valid JSON. */
export function arrayElementTexts(text: string): string[] {
  const elements: string[] = [];
  let i = skipWhitespace(text, 0);
  if (text[i] !== "[") throw new SyntaxError("JSON text is not an array");
  i = skipWhitespace(text, i + 1);
  if (text[i] === "]") return elements;
  while (i < text.length) {
    const end = skipValue(text, i);
    elements.push(text.slice(skipWhitespace(text, i), end));
    i = skipWhitespace(text, end);
    if (text[i] === "]") return elements;
    i = skipWhitespace(text, i + 1);
  }
  throw new SyntaxError("unterminated array in JSON text");
}
