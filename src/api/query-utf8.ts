/** Strict: a byte that is not UTF-8 fails the decoding instead of becoming U+FFFD. */
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The bytes a percent-encoded query part stands for (`+` is a space; a stray `%` is itself). */
function bytesOf(part: string): Uint8Array {
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  for (let i = 0; i < part.length; i++) {
    const hex = part.slice(i + 1, i + 3);
    if (part[i] === "%" && /^[0-9a-fA-F]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else {
      // A whole code point: a pair of surrogates is one character.
      const point = part.codePointAt(i) as number;
      const char = String.fromCodePoint(point);
      if (char.length === 2) i++;
      bytes.push(...encoder.encode(char === "+" ? " " : char));
    }
  }
  return Uint8Array.from(bytes);
}

function decodes(part: string): string | null {
  try {
    return utf8.decode(bytesOf(part));
  } catch {
    return null;
  }
}

/**
 * The first query parameter of `url` whose name or value is not UTF-8 once percent-decoded
 * (`?model=%FF`), by its name as decoded (or as sent, when the name is the bad part), with the
 * part at fault. The router keeps such a value as the characters sent, so `%FF` was matched
 * literally: a filter that selected what its sender never wrote.
 */
export function notUtf8QueryParameter(
  url: string,
): { name: string; part: "name" | "value" } | undefined {
  for (const { rawName, rawValue } of queryPairs(url)) {
    const name = decodes(rawName);
    if (name === null) return { name: rawName, part: "name" };
    if (rawValue !== null && decodes(rawValue) === null) return { name, part: "value" };
  }
  return undefined;
}

/** The `name=value` pairs of the query of `url`, as sent; a pair without `=` has no value. */
function queryPairs(url: string): { rawName: string; rawValue: string | null }[] {
  const start = url.indexOf("?");
  if (start < 0) return [];
  const end = url.indexOf("#", start);
  const query = url.slice(start + 1, end < 0 ? undefined : end);
  return query
    .split("&")
    .filter((pair) => pair !== "")
    .map((pair) => {
      const equals = pair.indexOf("=");
      return equals < 0
        ? { rawName: pair, rawValue: null }
        : { rawName: pair.slice(0, equals), rawValue: pair.slice(equals + 1) };
    });
}

/**
 * The first query pair of `url` with a value and no name (`?=discrepancy`), as sent. The router
 * drops it unread, so a filter whose name was left out answered as if every job matched it.
 */
export function unnamedQueryParameter(url: string): string | undefined {
  const pair = queryPairs(url).find(({ rawName, rawValue }) => rawName === "" && rawValue !== null);
  return pair && `=${pair.rawValue}`;
}

/** What a 400 says of such a pair. */
export function unnamedMessage(pair: string): string {
  return `query: a parameter with no name (${JSON.stringify(pair)}); write it as name=value`;
}

/** What a 400 says of such a parameter. */
export function notUtf8Message(found: { name: string; part: "name" | "value" }): string {
  return found.part === "name"
    ? `${found.name}: a query parameter's name that is not valid UTF-8 once percent-decoded`
    : `${found.name}: not valid UTF-8 once percent-decoded; percent-encode the value's UTF-8 bytes`;
}

/**
 * Whether the path of `url` is UTF-8 once percent-decoded: the router keeps a path byte that is
 * not (`/audit/job_%FF`) as the characters sent, so a job was looked up by a name never written.
 */
export function pathIsUtf8(url: string): boolean {
  const pathname = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*([^?#]*)/i.exec(url)?.[1] ?? url;
  return decodes(pathname) !== null;
}

/** What a 400 says of such a path. */
export const notUtf8PathMessage =
  "path: not valid UTF-8 once percent-decoded; percent-encode the UTF-8 bytes of each segment";
