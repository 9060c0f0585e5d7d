/**
 * What a streamed completion told its client, read from the stream's last bytes the way an SSE
 * client reads them (the OpenAI SDKs' decoder): lines end at CR, LF or CRLF, each decoded alone
 * (a byte-order mark at a line's start is dropped); an event ends at a blank line, with its
 * `data:` lines joined by "\n", and is no event when it names neither an event nor data; an
 * event whose data starts with `[DONE]` ends the stream, and the client reads nothing after it.
 * The operator writes the stream, so usage it puts where a client never looks (after `[DONE]`,
 * in an event never ended, after a chunk that stops the client, split over `data:` lines a
 * line-by-line reader would take apart, in an event with a name some SDKs do not read) is not
 * what the customer was told, and must not become the receipt's.
 */

export interface SseEvent {
  /** The `event:` field, null when the event names none. */
  event: string | null;
  data: string;
}

/**
 * `data: [DONE]` at a line's start (after a byte-order mark, which the client drops), as in a
 * stream's bytes read as latin1.
 */
const doneLine = /(?:^|[\r\n])(?:\u00EF\u00BB\u00BF)*data: ?\[DONE\]/;
/** Bytes of the stream kept between chunks to find a `[DONE]` line cut by a chunk's edge. */
const carryBytes = 24;
/** `[DONE]`'s length: a `]` within this many bytes of a chunk's start may close one begun before. */
const doneLength = 6;
const doneBytes = Buffer.from("[DONE]");

/**
 * Watches a stream's chunks for its `[DONE]` event, so that capture can stop there: a client
 * reads nothing after it, however much follows. It runs on every chunk of every stream, so the
 * bytes are looked at as text only where `[DONE]` is in the chunk or may have begun in the one
 * before (a `]` among its first bytes).
 */
export function createDoneWatch(): (chunk: Buffer) => boolean {
  // The chunks holding the stream's last `carryBytes` bytes before this one; the stream starts
  // at a line's start.
  const recent: Buffer[] = [Buffer.from("\n")];
  let recentBytes = 1;
  const closesEarly = (chunk: Buffer) => {
    for (let i = 0; i < doneLength && i < chunk.length; i++) if (chunk[i] === 0x5d) return true;
    return false;
  };
  return (chunk) => {
    const whole = chunk.indexOf(doneBytes) >= 0;
    const found =
      (whole || closesEarly(chunk)) &&
      doneLine.test(
        Buffer.concat(recent).toString("latin1") +
          (whole ? chunk.toString("latin1") : chunk.toString("latin1", 0, doneLength)),
      );
    if (chunk.length >= carryBytes) recent.length = 0;
    recent.push(chunk);
    recentBytes = chunk.length >= carryBytes ? chunk.length : recentBytes + chunk.length;
    while (recent.length > 1 && recentBytes - recent[0]!.length >= carryBytes) {
      recentBytes -= recent.shift()!.length;
    }
    return found;
  };
}

/**
 * Whether every OpenAI SDK reads an event named `event` (null: none) as a chunk of its stream.
 * Node's SDK from 5 and Python's read any event not named `thread.*` as one; Node's 4 (and
 * Python's before 1.66) hand an event with a name on wrapped (`{ event, data }`), so its caller
 * finds no `choices` and no `usage` in it, but for a Responses API stream's `response.*` and
 * `transcript.*` events (Node's 4.87 on). Text or usage only such an event carries is what one
 * customer was shown and another was not: an operator could pad it in, and a bound on the
 * usage must not grow with it.
 */
export function readByEveryClient(event: string | null, responses: boolean): boolean {
  if (event === null) return true;
  return responses && (event.startsWith("response.") || event.startsWith("transcript."));
}

const lf = 0x0a;
const cr = 0x0d;
const colon = 0x3a;
const space = 0x20;
/** Bytes of a line's field name or of an event's name kept: enough to tell them apart. */
const nameBytes = 16;
/** Bytes of an `id:` or `retry:` value kept. */
const valueBytes = 64;
/** The fields whose values a client reads. */
const valueFields = new Set(["data", "event", "id", "retry"]);

/**
 * Counts a stream's bytes that every client reads as data: the values of the `data:` lines of
 * the events `readByEveryClient` names (`responses`: the stream of a Responses API request),
 * ended by a blank line. A comment line (`: ...`), `event:` and `id:` lines and line ends are
 * read by no client as anything, and an event with a name by some clients as none, so the
 * operator could pad them freely; a bound on the completion tokens must not grow with them. It
 * runs on every chunk of every stream: data values are skipped with `indexOf`, not read byte by
 * byte. A byte-order mark before a line's field is dropped, as the client drops it.
 */
export function createDataCount(responses = false): {
  add(chunk: Buffer): void;
  readonly bytes: number;
} {
  let bytes = 0;
  // A client failed the stream at an event of no data (see `sseEvents`): nothing after counts.
  let failed = false;
  // The event being read: its data bytes so far, and its name (its first bytes), null if none.
  let pending = 0;
  let event: string | null = null;
  let hasData = false;
  // Python's SDK's last id (kept across events) is set, and the event's `retry:` (see `sseEvents`).
  let lastId = false;
  let retry = false;
  // The line being read: its field name so far while `reading` is "field", then which value.
  let reading: "field" | "data" | "event" | "id" | "retry" | "other" = "field";
  let field = "";
  // An `id:` or `retry:` value's first bytes (latin1), and whether it was longer.
  let value = "";
  let longValue = false;
  const endValue = () => {
    if (reading === "id" && !value.includes("\0")) lastId = value !== "";
    if (reading === "retry") {
      const text = Buffer.from(value, "latin1").toString("utf8");
      // One too long to keep is taken as Python reads a number: the count stops the sooner.
      retry ||= longValue ? /^\s*[+-]?\p{Nd}/u.test(text) : pythonInt.test(text);
    }
    value = "";
    longValue = false;
  };
  // Inside a value: whether its first byte (a space, the field's separator) is still to come.
  let first = false;
  // The last line ended with CR: an LF right after it ends no second line.
  let afterCr = false;
  const endLine = () => {
    if (reading === "field" && field === "") {
      // A blank line ends the event.
      if (pending === 0 && (hasData || !!event || lastId || retry)) failed = true;
      else if (readByEveryClient(event, responses)) bytes += pending;
      pending = 0;
      event = null;
      hasData = false;
      retry = false;
    } else if (reading === "field") {
      // A field with no colon: `data` alone is an empty data line, `event` an empty name.
      if (field === "event") event = "";
      else if (field === "data") hasData = true;
      else if (field === "id") lastId = false;
    } else endValue();
    reading = "field";
    field = "";
  };
  return {
    get bytes() {
      return bytes;
    },
    add(chunk) {
      if (failed) return;
      const n = chunk.length;
      // Most streams end lines with LF alone: a chunk without CR is searched for LF only.
      const hasCr = chunk.indexOf(cr) >= 0;
      let i = 0;
      while (i < n) {
        const c = chunk[i]!;
        if (afterCr) {
          afterCr = false;
          if (c === lf) {
            i++;
            continue;
          }
        }
        if (reading !== "field") {
          let end = chunk.indexOf(lf, i);
          if (hasCr) {
            const r = chunk.indexOf(cr, i);
            if (r >= 0 && (end < 0 || r < end)) end = r;
          }
          if (end < 0) end = n;
          let from = i;
          if (first && from < end) {
            first = false;
            if (chunk[from] === space) from++;
          }
          if (reading === "data") pending += end - from;
          else if (reading === "event" && (event as string).length < nameBytes) {
            const upTo = Math.min(end, from + nameBytes - (event as string).length);
            event += chunk.toString("latin1", from, upTo);
          } else if (reading === "id" || reading === "retry") {
            const upTo = Math.min(end, from + valueBytes - value.length);
            value += chunk.toString("latin1", from, upTo);
            if (upTo < end) longValue = true;
          }
          if (end === n) return;
          afterCr = chunk[end] === cr;
          endLine();
          if (failed) return;
          i = end + 1;
          continue;
        }
        i++;
        if (c === lf || c === cr) {
          afterCr = c === cr;
          endLine();
          if (failed) return;
        } else if (c === colon) {
          // The line's field: `data` and `event` are read, `id` and `retry` for Python's SDK,
          // any other (a comment) is none.
          reading = valueFields.has(field) ? (field as "data" | "event" | "id" | "retry") : "other";
          if (reading === "event") event = "";
          if (reading === "data") hasData = true;
          first = true;
        } else if (field === "" && (c === 0xef || c === 0xbb || c === 0xbf)) {
          // A byte-order mark's bytes before the field.
        } else if (field.length < nameBytes) field += String.fromCharCode(c);
        else reading = "other";
      }
    },
  };
}

/** A value Python's `int()` reads: an optional sign, decimal digits (`_` between), spaces around. */
const pythonInt = /^\s*[+-]?\p{Nd}+(?:_\p{Nd}+)*\s*$/u;

/**
 * The events of `text` a client acts on, oldest first, up to (not including) the one that ends
 * the stream. With `cut`, the text is a tail whose first line and event may have lost their
 * start (a line cut between its CR and LF reads as a blank line): both are left out. An event
 * not ended by a blank line before the text ends is left out, as a client leaves it.
 */
export function sseEvents(text: string, cut: boolean): SseEvent[] {
  const events: SseEvent[] = [];
  let event: string | null = null;
  let data: string[] = [];
  // Python's SDK ends an event at a blank line once an `id:` was given (kept across events) or
  // the event gave a `retry:`, data or none: its empty data is no JSON and fails the stream.
  let lastId = "";
  let retry = false;
  // Most streams end lines with LF alone: split on it without a pattern when that is all.
  const lines = text.includes("\r") ? text.split(/\r\n|\r|\n/) : text.split("\n");
  // What follows the last line break is no line yet: the stream ended inside it.
  lines.pop();
  let skipping = cut;
  if (cut) lines.shift();
  for (const raw of lines) {
    const line = raw.startsWith("\uFEFF") ? raw.slice(1) : raw;
    if (line === "") {
      if (skipping) skipping = false;
      else if (event || data.length > 0 || lastId !== "" || retry) {
        const joined = data.join("\n");
        if (joined.startsWith("[DONE]")) return events;
        events.push({ event, data: joined });
      }
      event = null;
      data = [];
      retry = false;
      continue;
    }
    if (skipping || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id" && !value.includes("\0")) lastId = value;
    else if (field === "retry" && pythonInt.test(value)) retry = true;
  }
  return events;
}

/** A chunk of a stream (see `sseChunks`). */
export interface SseChunk {
  /** The event's data, parsed. */
  data: Record<string, unknown>;
  /** Whether every OpenAI SDK reads it as a chunk (`readByEveryClient`). */
  everyClient: boolean;
}

/**
 * The chunks a client takes from `events`, oldest first, as the SDKs hand them on: every
 * event's data is parsed (the client fails the stream at one that is no JSON), a chunk carrying
 * an `error` fails it too, and so does `null`, on which a caller reading `chunk.usage` throws.
 * A `thread.*` event comes wrapped (`{ event, data }`): no usage of its data is read as the
 * chunk's. `readsChoices`: the client reads each chunk's `choices` (a completion's stream), so
 * data that is no object (a number, a string, an array) fails it as `null` does: Node's stream
 * helper finds no `choices` to iterate and a caller's `chunk.choices[0]` throws. Skipped, the
 * text and usage after `data: 5` were priced though its client read none of them. A chunk of an
 * event with a name stops the stream where any SDK stops at it, and is marked as read by some
 * SDKs alone (`responses`: the stream of a Responses API request; see `readByEveryClient`).
 */
export function sseChunks(
  events: readonly SseEvent[],
  readsChoices = false,
  responses = false,
): SseChunk[] {
  const chunks: SseChunk[] = [];
  for (const e of events) {
    let chunk: unknown;
    try {
      chunk = JSON.parse(e.data);
    } catch {
      // A client fails the stream here; what it read before stands.
      return chunks;
    }
    if (chunk === null) return chunks;
    if (e.event?.startsWith("thread.")) continue;
    if (readsChoices && (typeof chunk !== "object" || Array.isArray(chunk))) return chunks;
    if (typeof chunk !== "object") continue;
    if ((chunk as { error?: unknown }).error) return chunks;
    chunks.push({
      data: chunk as Record<string, unknown>,
      everyClient: readByEveryClient(e.event, responses),
    });
  }
  return chunks;
}
