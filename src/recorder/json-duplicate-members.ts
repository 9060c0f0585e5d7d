/**
 * JSON text whose objects may name one member twice. `JSON.parse` keeps the last value and
 * drops the others without a word, so `{"http_status":502,"http_status":200}` would be read as a
 * 2xx answer and `{"escrow_tx":"S1","escrow_tx":"S2"}` would lose the first lock. A receipt is
 * read with every value each of its members was given: see `duplicateMembers`.
 */

/** Where the values of a member named more than once are kept, on the object `JSON.parse` made. */
const duplicates = Symbol("duplicate JSON members");

type Path = (string | number)[];

interface Found {
  path: Path;
  name: string;
  /** The text of each value the member was given, in the order written. */
  texts: string[];
}

/** An object or array being read; `path` is null below the objects looked at. */
type Frame =
  | {
      kind: "object";
      path: Path | null;
      spans: Map<string, [number, number][]>;
      key: string | null;
      valueStart: number;
    }
  | { kind: "array"; path: Path | null; index: number };

/**
 * How deep the objects looked at lie: a receipt is the body or an item of it (path length 0 or
 * 1), its `_decentral`, `usage` and `tags` one level below. Deeper objects (a completion's
 * choices) are not receipts' members; not following them keeps the work linear in the text's
 * length, however deep it nests.
 */
const maxPathLength = 2;

const isSpace = (code: number) => code === 32 || code === 9 || code === 10 || code === 13;

/** The index just past the string literal that starts at `start` (its opening quote). */
function stringEnd(text: string, start: number): number {
  // Quote to quote with `indexOf` (native, fast over a long value); a quote after an odd run of
  // backslashes is escaped.
  let quote = text.indexOf('"', start + 1);
  for (;;) {
    let slashes = 0;
    while (text.charCodeAt(quote - 1 - slashes) === 92 /* \ */) slashes++;
    if (slashes % 2 === 0) return quote + 1;
    quote = text.indexOf('"', quote + 1);
  }
}

/**
 * The members named more than once in each object of `text` down to `maxPathLength`; the text
 * must be valid JSON (it is read only after `JSON.parse` took it). Iterative: nesting as deep as
 * `JSON.parse` takes costs no stack.
 */
function findDuplicateMembers(text: string): Found[] {
  const found: Found[] = [];
  const stack: Frame[] = [];
  // The path of a value that starts now (null when too deep to look at), and, in an object,
  // note where it starts.
  const valueBegins = (at: number): Path | null => {
    const top = stack.at(-1);
    if (!top) return [];
    if (top.kind === "object") top.valueStart = at;
    if (top.path === null || top.path.length >= maxPathLength) return null;
    return [...top.path, top.kind === "array" ? top.index : (top.key ?? "")];
  };
  const valueEnds = (end: number) => {
    const top = stack.at(-1);
    if (top?.kind !== "object" || top.key === null) return;
    if (top.path === null) {
      top.key = null;
      return;
    }
    const spans = top.spans.get(top.key);
    const span: [number, number] = [top.valueStart, end];
    if (spans) spans.push(span);
    else top.spans.set(top.key, [span]);
    top.key = null;
  };
  let i = 0;
  const n = text.length;
  while (i < n) {
    const code = text.charCodeAt(i);
    if (isSpace(code) || code === 58 /* : */) {
      i++;
    } else if (code === 44 /* , */) {
      const top = stack.at(-1);
      if (top?.kind === "array") top.index++;
      i++;
    } else if (code === 123 /* { */) {
      const path = valueBegins(i);
      stack.push({ kind: "object", path, spans: new Map(), key: null, valueStart: 0 });
      i++;
    } else if (code === 91 /* [ */) {
      stack.push({ kind: "array", path: valueBegins(i), index: 0 });
      i++;
    } else if (code === 125 /* } */ || code === 93 /* ] */) {
      const frame = stack.pop();
      if (frame?.kind === "object" && frame.path !== null) {
        for (const [name, spans] of frame.spans) {
          if (spans.length < 2) continue;
          found.push({ path: frame.path, name, texts: spans.map(([s, e]) => text.slice(s, e)) });
        }
      }
      i++;
      valueEnds(i);
    } else if (code === 34 /* " */) {
      const end = stringEnd(text, i);
      const top = stack.at(-1);
      if (top?.kind === "object" && top.key === null) {
        // A key is decoded only where it is looked at; elsewhere any non-null mark will do.
        top.key = top.path === null ? "" : (JSON.parse(text.slice(i, end)) as string);
      } else {
        valueBegins(i);
        valueEnds(end);
      }
      i = end;
    } else {
      // A number, true, false or null: up to the next delimiter.
      const start = i;
      while (i < n && !/[\s,\]}]/.test(text[i] as string)) i++;
      valueBegins(start);
      valueEnds(i);
    }
  }
  return found;
}

/** The own value of `name` on `value`, never one of its prototype's. */
function member(value: unknown, name: string | number): unknown {
  if (typeof value !== "object" || value === null) return undefined;
  return Object.getOwnPropertyDescriptor(value, name)?.value;
}

/**
 * Parses JSON text as `JSON.parse` does (and throws its `SyntaxError`), then notes on each
 * object (the text's own, an item of it, or one of their members) that named a member more than
 * once every value that member was given, for `duplicateMembers`.
 */
export function parseJsonNotingDuplicates(text: string): unknown {
  const value: unknown = JSON.parse(text);
  // Every duplicate needs a `"` before a second `:`; a text with no object needs no look.
  if (!text.includes("{")) return value;
  for (const { path, name, texts } of findDuplicateMembers(text)) {
    let target: unknown = value;
    for (const step of path) target = member(target, step);
    if (typeof target !== "object" || target === null || Array.isArray(target)) continue;
    let noted = (target as { [duplicates]?: Map<string, GivenValue[]> })[duplicates];
    if (!noted) {
      noted = new Map();
      Object.defineProperty(target, duplicates, { value: noted, enumerable: false });
    }
    noted.set(
      name,
      texts.map((t) => ({ value: JSON.parse(t) as unknown, text: t.trim() })),
    );
  }
  return value;
}

/** One value a member was given, and its text as written. */
export interface GivenValue {
  value: unknown;
  text: string;
}

/**
 * The members of `value` its JSON text named more than once with values that differ, each with
 * every value given, in order. Empty for an object not read by `parseJsonNotingDuplicates`.
 * Objects and arrays are compared by their text (never stringified again: one nested as deep as
 * `JSON.parse` takes would overflow the stack), other values by value.
 */
export function duplicateMembers(value: object): Map<string, GivenValue[]> {
  const noted = (value as { [duplicates]?: Map<string, GivenValue[]> })[duplicates];
  const differing = new Map<string, GivenValue[]>();
  for (const [name, given] of noted ?? []) {
    const seen = new Set(
      given.map(({ value: v, text }) =>
        typeof v === "object" && v !== null ? `t${text}` : `v${JSON.stringify(v)}`,
      ),
    );
    if (seen.size > 1) differing.set(name, given);
  }
  return differing;
}
