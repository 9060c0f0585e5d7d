/**
 * What a streamed completion told its client, read from the stream's last bytes the way an SSE
 * client reads them (the OpenAI SDKs' decoder): lines end at CR, LF or CRLF; an event ends at a
 * blank line and its `data:` lines are joined with "\n"; an event whose data starts with
 * `[DONE]` ends the stream, and the client reads nothing after it. The operator writes the
 * stream, so usage it puts where a client never looks (after `[DONE]`, in an event never ended,
 * split over `data:` lines a line-by-line reader would take apart) is not what the customer was
 * told, and must not become the receipt's.
 */

export interface SseEvent {
  /** The `event:` field, null when the event names none. */
  event: string | null;
  data: string;
}

/** `data: [DONE]` at a line's start, as in a stream's bytes read as latin1. */
const doneLine = /(?:^|[\r\n])data: ?\[DONE\]/;
/** Bytes of the stream kept between chunks to find a `[DONE]` line cut by a chunk's edge. */
const carryBytes = 16;

/**
 * Watches a stream's chunks for its `[DONE]` event, so that capture can stop there: a client
 * reads nothing after it, however much follows.
 */
export function createDoneWatch(): (chunk: Buffer) => boolean {
  // The stream starts at a line's start.
  let carry = "\n";
  return (chunk) => {
    const found =
      chunk.indexOf("[DONE]") >= 0
        ? doneLine.test(carry + chunk.toString("latin1"))
        : doneLine.test(carry + chunk.toString("latin1", 0, carryBytes));
    carry = (carry + chunk.toString("latin1", Math.max(0, chunk.length - carryBytes))).slice(
      -carryBytes,
    );
    return found;
  };
}

/**
 * The events of `text` a client acts on, oldest first, up to (not including) the one that ends
 * the stream. With `cut`, the text is a tail whose first event may have lost its start: it is
 * left out. An event not ended by a blank line before the text ends is left out, as a client
 * leaves it.
 */
export function sseEvents(text: string, cut: boolean): SseEvent[] {
  const events: SseEvent[] = [];
  let event: string | null = null;
  let data: string[] = [];
  let started = false;
  let skipping = cut;
  const lines = text.split(/\r\n|\r|\n/);
  // What follows the last line break is no line yet: the stream ended inside it.
  lines.pop();
  for (const line of lines) {
    if (line === "") {
      if (skipping) skipping = false;
      else if (started) {
        const joined = data.join("\n");
        if (joined.startsWith("[DONE]")) return events;
        events.push({ event, data: joined });
      }
      event = null;
      data = [];
      started = false;
      continue;
    }
    if (skipping || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") {
      event = value;
      started = true;
    } else if (field === "data") {
      data.push(value);
      started = true;
    }
  }
  return events;
}

/**
 * The JSON chunks a client takes from `events`, oldest first: the SDKs hand on every event but
 * `thread.*` ones as a chunk, and stop at a chunk that carries an `error`.
 */
export function sseChunks(events: readonly SseEvent[]): Record<string, unknown>[] {
  const chunks: Record<string, unknown>[] = [];
  for (const e of events) {
    if (e.event?.startsWith("thread.")) continue;
    let chunk: unknown;
    try {
      chunk = JSON.parse(e.data);
    } catch {
      // A client fails the stream here; what it read before stands.
      return chunks;
    }
    if (typeof chunk !== "object" || chunk === null) continue;
    if ((chunk as { error?: unknown }).error) return chunks;
    chunks.push(chunk as Record<string, unknown>);
  }
  return chunks;
}
