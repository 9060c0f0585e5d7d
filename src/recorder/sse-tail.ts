/**
 * What a streamed completion told its client, read from the stream's last bytes the way an SSE
 * client reads them (the OpenAI SDKs' decoder): lines end at CR, LF or CRLF, each decoded alone
 * (a byte-order mark at a line's start is dropped); an event ends at a blank line, with its
 * `data:` lines joined by "\n", and is no event when it names neither an event nor data; an
 * event whose data starts with `[DONE]` ends the stream, and the client reads nothing after it.
 * The operator writes the stream, so usage it puts where a client never looks (after `[DONE]`,
 * in an event never ended, after a chunk that stops the client, split over `data:` lines a
 * line-by-line reader would take apart) is not what the customer was told, and must not become
 * the receipt's.
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

const dataField = Buffer.from("data:");
const lf = 0x0a;
const cr = 0x0d;
const space = 0x20;

/**
 * Counts a stream's bytes that a client reads as data: the values of its `data:` lines. A
 * comment line (`: ...`), `event:` and `id:` lines and line ends are read by no client as
 * anything, so the operator could pad them freely; a bound on the completion tokens must not
 * grow with them. It runs on every chunk of every stream: lines are skipped with `indexOf`, not
 * read byte by byte. A byte-order mark before a line's field is dropped, as the client drops it.
 */
export function createDataCount(): { add(chunk: Buffer): void; readonly bytes: number } {
  // At a line's start, how much of "data:" has matched (0 to 5, then the optional space); -1
  // inside a line that is no data, 6 inside a data line's value.
  let matched = 0;
  let bytes = 0;
  const inValue = 6;
  const other = -1;
  return {
    get bytes() {
      return bytes;
    },
    add(chunk) {
      const n = chunk.length;
      // Most streams end lines with LF alone: a chunk without CR is searched for LF only.
      const hasCr = chunk.indexOf(cr) >= 0;
      let i = 0;
      while (i < n) {
        if (matched === inValue || matched === other) {
          let end = chunk.indexOf(lf, i);
          if (hasCr) {
            const r = chunk.indexOf(cr, i);
            if (r >= 0 && (end < 0 || r < end)) end = r;
          }
          if (end < 0) end = n;
          if (matched === inValue) bytes += end - i;
          if (end === n) return;
          matched = 0;
          i = end + 1;
          continue;
        }
        const c = chunk[i]!;
        if (c === lf || c === cr) matched = 0;
        else if (matched === 5) {
          // After `data:`, one space is the field's separator, not its value.
          matched = inValue;
          if (c !== space) continue;
        } else if (c === dataField[matched]) matched++;
        else if (matched === 0 && (c === 0xef || c === 0xbb || c === 0xbf)) {
          // A byte-order mark's bytes before the field.
        } else {
          matched = other;
          continue;
        }
        i++;
      }
    },
  };
}

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
      else if (event || data.length > 0) {
        const joined = data.join("\n");
        if (joined.startsWith("[DONE]")) return events;
        events.push({ event, data: joined });
      }
      event = null;
      data = [];
      continue;
    }
    if (skipping || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return events;
}

/**
 * The chunks a client takes from `events`, oldest first, as the SDKs hand them on: every
 * event's data is parsed (the client fails the stream at one that is no JSON), a chunk carrying
 * an `error` fails it too, and so does `null`, on which a caller reading `chunk.usage` throws.
 * A `thread.*` event comes wrapped (`{ event, data }`): no usage of its data is read as the
 * chunk's. `readsChoices`: the client reads each chunk's `choices` (a completion's stream), so
 * data that is no object (a number, a string, an array) fails it as `null` does: Node's stream
 * helper finds no `choices` to iterate and a caller's `chunk.choices[0]` throws. Skipped, the
 * text and usage after `data: 5` were priced though its client read none of them.
 */
export function sseChunks(
  events: readonly SseEvent[],
  readsChoices = false,
): Record<string, unknown>[] {
  const chunks: Record<string, unknown>[] = [];
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
    chunks.push(chunk as Record<string, unknown>);
  }
  return chunks;
}
