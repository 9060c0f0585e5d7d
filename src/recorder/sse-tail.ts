import { isUtf8 } from "node:buffer";

/**
 * What a streamed completion told its client, read from the stream's last bytes the way an SSE
 * client reads them (the OpenAI SDKs' decoder): lines end at CR, LF or CRLF, each decoded alone
 * (a line opening with a byte-order mark is read by some clients alone: see `createEventParser`); an event ends at a blank line, with its
 * `data:` lines joined by "\n", and is no event when it names neither an event nor data; an
 * event whose data starts with `[DONE]` ends the stream, and the client reads nothing after it.
 * The operator writes the stream, so usage it puts where a client never looks (after `[DONE]`,
 * in an event never ended, after a chunk that stops the client, split over `data:` lines a
 * line-by-line reader would take apart, in an event with a name some SDKs do not read, after a
 * line that is no UTF-8 or a chunk Python's `json` refuses, where Python's SDK fails and Node's
 * reads on) is not what the customer was told, and must not become the receipt's.
 */

export interface SseEvent {
  /** The `event:` field, null when the event names none. */
  event: string | null;
  data: string;
  /** Read by some clients alone: a line of it opens with a byte-order mark (`createEventParser`). */
  someClients?: true;
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
 * Tells whether a line's bytes are UTF-8, given piece by piece (a character may be cut between
 * two): Python's SDK decodes every line of a stream strictly, a comment line too, and fails the
 * stream at one that is not (`UnicodeDecodeError`), where Node's reads U+FFFD and goes on.
 */
export function createUtf8Line() {
  // The start of a character cut at the last piece's end, and how many bytes it has in all.
  let carry: number[] = [];
  let need = 0;
  let valid = true;
  return {
    get valid() {
      return valid && carry.length === 0;
    },
    /** Whether a byte read so far is no UTF-8 (a character cut at the last piece's end is none yet). */
    get failed() {
      return !valid;
    },
    add(piece: Buffer) {
      if (!valid || piece.length === 0) return;
      let from = 0;
      if (carry.length > 0) {
        while (carry.length < need && from < piece.length) carry.push(piece[from++] as number);
        if (carry.length < need) return;
        valid = isUtf8(Uint8Array.from(carry));
        carry = [];
        if (!valid) return;
      }
      // A character cut at the piece's end: its lead byte, within the last three.
      let cut = piece.length;
      for (let i = piece.length - 1; i >= from && i >= piece.length - 3; i--) {
        const b = piece[i] as number;
        if ((b & 0xc0) === 0x80) continue;
        const length = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
        if (i + length > piece.length) cut = i;
        break;
      }
      valid = isUtf8(piece.subarray(from, cut));
      if (valid && cut < piece.length) {
        carry = [...piece.subarray(cut)];
        const b = carry[0] as number;
        need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
      }
    },
  };
}

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
 * byte. A line opening with a byte-order mark is none (read by some clients alone: see
 * `createEventParser`).
 */
export function createDataCount(responses = false): {
  add(chunk: Buffer): void;
  readonly bytes: number;
} {
  let bytes = 0;
  // A client failed the stream at an event of no data (see `sseEvents`) or at a line that is no
  // UTF-8 (see `createUtf8Line`): nothing after counts.
  let failed = false;
  const utf8 = createUtf8Line();
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
  // Line ends by CR in a row: an LF after two is one more blank line to some Python clients,
  // which fails their stream once an `id:` was given (see `strayBlank` in `createEventParser`).
  let crs = 0;
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
      // Where the bytes of the line being read start in this chunk (see `lineEnds`).
      let lineStart = 0;
      // A line ends at `at`: false when it is no UTF-8, at which Python's SDK fails the stream.
      const lineEnds = (at: number) => {
        utf8.add(chunk.subarray(lineStart, at));
        lineStart = at + 1;
        if (utf8.valid) return true;
        failed = true;
        return false;
      };
      while (i < n) {
        const c = chunk[i]!;
        if (afterCr) {
          afterCr = false;
          if (c === lf) {
            i++;
            lineStart = i;
            if (crs >= 2 && lastId) {
              failed = true;
              return;
            }
            crs = 0;
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
          if (end === n) {
            utf8.add(chunk.subarray(lineStart));
            return;
          }
          afterCr = chunk[end] === cr;
          crs = afterCr ? 1 : 0;
          if (!lineEnds(end)) return;
          endLine();
          if (failed) return;
          i = end + 1;
          continue;
        }
        i++;
        if (c === lf || c === cr) {
          afterCr = c === cr;
          crs = !afterCr ? 0 : field === "" ? crs + 1 : 1;
          if (!lineEnds(i - 1)) return;
          endLine();
          if (failed) return;
        } else if (c === colon) {
          // The line's field: `data` and `event` are read, `id` and `retry` for Python's SDK,
          // any other (a comment) is none.
          reading = valueFields.has(field) ? (field as "data" | "event" | "id" | "retry") : "other";
          if (reading === "event") event = "";
          if (reading === "data") hasData = true;
          first = true;
        } else if (field.length < nameBytes) field += String.fromCharCode(c);
        else reading = "other";
      }
      utf8.add(chunk.subarray(lineStart));
    },
  };
}

/** A value Python's `int()` reads: an optional sign, decimal digits (`_` between), spaces around. */
const pythonInt = /^\s*[+-]?\p{Nd}+(?:_\p{Nd}+)*\s*$/u;

/**
 * Reads a stream's lines into events as an SSE client does, one line at a time (see
 * `sseEvents`): `line` takes each line, decoded, and returns false once the stream has ended
 * (`[DONE]`, after which a client reads nothing). `skipping`: the first event is a tail's, its
 * start lost, and is left out.
 */
function createEventParser(onEvent: (event: SseEvent) => void, skipping = false) {
  let event: string | null = null;
  let data: string[] = [];
  // Python's SDK ends an event at a blank line once an `id:` was given (kept across events) or
  // the event gave a `retry:`, data or none: its empty data is no JSON and fails the stream.
  let lastId = "";
  let retry = false;
  // A line of the event opened with a byte-order mark: Node's SDK drops the mark and reads the
  // line, Python's decodes each line with the mark kept, and `\uFEFFdata` is no field to it. So
  // the event is one client's and not another's (`someClients`): its text counts for nothing
  // and a last usage in it is unknown, as in an event with a name. A `[DONE]` so written still
  // ends the stream: what Node's client read stops there.
  let marked = false;
  return {
    /** The data this event holds so far, in UTF-16 code units. */
    pending: 0,
    /**
     * An LF right after a line end by CR and a blank line by CR (`x\r\r\n`): one line end to
     * this reader and Node's (the blank line's CRLF), but Python's SDK cuts its bytes into events
     * after `\r\r` and splits each into lines alone, so where the bytes came apart there (the
     * operator's pause between two writes) the LF is one more blank line to it. Python's SDK
     * dispatches a blank line once an `id:` was given (`sseEvents`): an event of no data, which
     * fails its stream, while Node's reads on. False where that is so: nothing after is read.
     */
    strayBlank(): boolean {
      return lastId === "";
    },
    line(raw: string): boolean {
      const bom = raw.startsWith("\uFEFF");
      const line = bom ? raw.slice(1) : raw;
      if (line === "") {
        if (skipping) skipping = false;
        else if (event || data.length > 0 || lastId !== "" || retry) {
          const joined = data.join("\n");
          if (joined.startsWith("[DONE]")) return false;
          onEvent(marked ? { event, data: joined, someClients: true } : { event, data: joined });
        }
        event = null;
        data = [];
        retry = false;
        marked = false;
        this.pending = 0;
        return true;
      }
      marked ||= bom;
      // A comment, or a line of a tail's first event.
      if (skipping || line.startsWith(":")) return true;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") {
        data.push(value);
        this.pending += value.length;
      } else if (field === "id" && !value.includes("\0")) lastId = value;
      else if (field === "retry" && pythonInt.test(value)) retry = true;
      return true;
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
  const parser = createEventParser((e) => events.push(e), cut);
  // Most streams end lines with LF alone: split on it without a pattern when that is all.
  const lines = text.includes("\r") ? text.split(/\r\n|\r|\n/) : text.split("\n");
  // What follows the last line break is no line yet: the stream ended inside it.
  lines.pop();
  if (cut) lines.shift();
  for (const line of lines) if (!parser.line(line)) break;
  return events;
}

/** Bytes kept of a line that is no `data:` line: its field and enough of its value. */
const keptLineBytes = 256;
/** A line opening with `data:` (or `data` alone), a byte-order mark before it or not. */
const dataLine = /^(?:\xEF\xBB\xBF)?data(?::|$)/;

/**
 * The characters besides CR and LF that Python's `str.splitlines()` ends a line at, as UTF-8:
 * VT, FF, FS, GS, RS (one byte each), NEL (`C2 85`), LINE and PARAGRAPH SEPARATOR (`E2 80 A8`,
 * `E2 80 A9`). The OpenAI SDKs before April 2024 read a stream by lines split so: Python's before
 * 1.16.2 by httpx's `iter_lines()` (`splitlines()` from httpx 0.24), Node's before 4.32.2 by a
 * line decoder copied from it. Such a character in a `data:` line (U+2028 is valid, unescaped,
 * inside a JSON string) cuts its JSON in two and fails their stream there; in any other line it
 * can start one only they read. Later SDKs end lines at CR and LF alone, as the event stream
 * format does, and read on.
 */
const oldLineEnds = [0x0b, 0x0c, 0x1c, 0x1d, 0x1e];
const nel = Buffer.from([0xc2, 0x85]);
const separatorLead = Buffer.from([0xe2, 0x80]);

/** Whether `bytes` hold one of the line ends of `oldLineEnds`, NEL or U+2028/U+2029. */
function holdsOldLineEnd(bytes: Buffer): boolean {
  for (const b of oldLineEnds) if (bytes.indexOf(b) >= 0) return true;
  if (bytes.indexOf(nel) >= 0) return true;
  for (let at = bytes.indexOf(separatorLead); at >= 0; at = bytes.indexOf(separatorLead, at + 1)) {
    const third = bytes[at + 2];
    if (third === 0xa8 || third === 0xa9) return true;
  }
  return false;
}

/**
 * Reads a stream's bytes into events as they pass, as `sseEvents` reads its whole text: lines
 * end at CR, LF or CRLF (a CR and its LF in two chunks end one line), each decoded alone (no
 * character's UTF-8 holds a CR or LF byte). Only the line being read and the event's data are
 * held: a line that is no `data:` line keeps its first `keptLineBytes` (a comment none), and an
 * event whose data passes `maxEventBytes` ends what is read (`cut`): the events before it stand,
 * which only lowers what the stream can be found to hold. Held whole, a comment or an `id:` line
 * of 40 MiB, read by no client, was held by the proxy as long as the operator kept it open.
 */
export function createSseReader(onEvent: (event: SseEvent) => void, maxEventBytes: number) {
  let line: Buffer[] = [];
  let lineBytes = 0;
  // The line being read: a data line (null: not known yet), a comment, bytes past those kept.
  let data: boolean | null = null;
  let comment = false;
  let dropped = false;
  let afterCr = false;
  // Line ends by CR just read in a row: an LF after two is a blank line to some Python clients
  // (see `strayBlank`).
  let crs = 0;
  let ended = false;
  let cut = false;
  // The data bytes of the event being read.
  let eventBytes = 0;
  const parser = createEventParser(onEvent);
  // Whether the line's bytes, every one of them (a dropped comment's too), are UTF-8.
  const utf8 = createUtf8Line();
  // Whether a line read so far held a line end older SDKs split at (`holdsOldLineEnd`); whether
  // this chunk holds one, so that its lines are looked at (most chunks hold none); and the last
  // chunk's last two bytes where it ended inside a character, which this one may end.
  let oldSplit = false;
  let scanLines = false;
  let charTail: Buffer | null = null;
  const head = () => (line.length === 1 ? (line[0] as Buffer) : Buffer.concat(line));
  const classify = () => {
    const first = head().toString("latin1", 0, 8);
    data = dataLine.test(first);
    comment = first.startsWith(":");
  };
  const take = (piece: Buffer) => {
    utf8.add(piece);
    // A piece of a line within one chunk cuts no character (none holds a CR or LF byte).
    if (scanLines && !oldSplit) oldSplit = holdsOldLineEnd(piece);
    if (dropped || piece.length === 0) return;
    line.push(piece);
    lineBytes += piece.length;
    if (data === null && lineBytes >= 8) classify();
    if (data === true) {
      if (eventBytes + lineBytes > maxEventBytes) {
        cut = true;
        line = [];
        lineBytes = 0;
      }
    } else if (data === false && lineBytes > keptLineBytes) {
      line = comment ? [] : [head().subarray(0, keptLineBytes)];
      lineBytes = comment ? 0 : keptLineBytes;
      dropped = true;
    }
  };
  const endLine = () => {
    if (!utf8.valid) {
      // Python's SDK fails the stream at this line: what follows is read by Node's alone.
      ended = true;
      return;
    }
    if (lineBytes === 0 && !dropped) {
      // A blank line: the event ends.
      eventBytes = 0;
      if (!parser.line("")) ended = true;
    } else {
      if (data === null) classify();
      if (!comment) {
        const whole = head();
        if (data === true) eventBytes += whole.length;
        if (eventBytes > maxEventBytes) cut = true;
        else if (!parser.line(whole.toString("utf8"))) ended = true;
      }
    }
    line = [];
    lineBytes = 0;
    data = null;
    comment = false;
    dropped = false;
  };
  return {
    /** Whether nothing more is read: the stream's end (`[DONE]`), or an event too long to hold. */
    get done() {
      return ended || cut;
    },
    /**
     * Whether a line read so far holds a line end the SDKs before April 2024 split at
     * (`holdsOldLineEnd`): what follows was read by those and later ones apart.
     */
    get oldSplit() {
      return oldSplit;
    },
    add(chunk: Buffer) {
      if (!oldSplit && chunk.length > 0) {
        // A character cut between the last chunk and this one is in the line being read, which
        // this chunk goes on with: no event ends before it.
        if (charTail !== null) {
          oldSplit = holdsOldLineEnd(Buffer.concat([charTail, chunk.subarray(0, 2)]));
        }
        scanLines = !oldSplit && holdsOldLineEnd(chunk);
        // A copy of the last two bytes (a view would hold the chunk), where a character may go on.
        charTail =
          (chunk[chunk.length - 1] as number) >= 0x80
            ? Buffer.from(
                Buffer.concat([charTail ?? Buffer.alloc(0), chunk.subarray(-2)]).subarray(-2),
              )
            : null;
      }
      let i = 0;
      const n = chunk.length;
      // The next CR, found again only once passed: searched for at every line, a chunk of
      // blank lines and no CR was scanned to its end once a line (18 s for 50 MB).
      let r = chunk.indexOf(cr);
      while (i < n && !ended && !cut) {
        if (afterCr) {
          afterCr = false;
          if (chunk[i] === lf) {
            i++;
            if (crs >= 2 && !parser.strayBlank()) {
              ended = true;
              return;
            }
            crs = 0;
            continue;
          }
        }
        const c = chunk[i];
        if ((c === lf || c === cr) && lineBytes === 0 && !dropped) {
          // A blank line, most lines of some streams: read without a search or a copy.
          afterCr = c === cr;
          crs = afterCr ? crs + 1 : 0;
          i++;
          endLine();
          continue;
        }
        let end = chunk.indexOf(lf, i);
        if (r >= 0 && r < i) r = chunk.indexOf(cr, i);
        if (r >= 0 && (end < 0 || r < end)) end = r;
        if (end < 0) {
          take(chunk.subarray(i));
          return;
        }
        take(chunk.subarray(i, end));
        afterCr = chunk[end] === cr;
        crs = afterCr ? 1 : 0;
        i = end + 1;
        if (!cut) endLine();
      }
    },
  };
}

/** A chunk of a stream (see `sseChunks`). */
export interface SseChunk {
  /** The event's data, parsed. */
  data: Record<string, unknown>;
  /** Whether every OpenAI SDK reads it as a chunk (`readByEveryClient`). */
  everyClient: boolean;
}

/**
 * Nesting that Python's `json` refuses (`RecursionError`), taken at the least a client may have:
 * its C scanner spends one level of the interpreter's recursion budget a level of nesting, and
 * what is left depends on the client. On CPython 3.8 to 3.11 the budget is the recursion limit
 * (1,000) less every Python frame below the SDK's `json.loads` (the customer's program's too:
 * 990 levels read at a prompt, fewer the deeper it calls); on 3.12 and 3.13 the C levels
 * (`Py_C_RECURSION_LIMIT`: 8,000 on 3.13, but 500 in a debug build and on WASI) less those in use;
 * the pure-Python scanner spends two frames a level. Taken as 512, a chunk nested 500 deep
 * was read here and refused by such a client. No answer nests past a few dozen levels, so one
 * deeper than this is taken as refused (the JSON answer scan's `maxDepth` too).
 */
export const pythonMaxDepth = 256;
/** Digits of an integer Python's `int()` reads at most (CPython 3.11 on: `ValueError` past it). */
export const pythonMaxDigits = 4300;
// Begun only where a run of digits begins: tried again at every digit of a run one short, the
// search went over each run once per digit, 23 s for 1.7 MB of the operator's answer.
const longDigits = new RegExp(`(?<!\\d)\\d{${pythonMaxDigits + 1}}`);

/**
 * Whether Python's SDK fails at JSON text `JSON.parse` read (`sse.json()` raises, and its
 * stream with it): nested deeper than `pythonMaxDepth`, or an integer of more digits than
 * `pythonMaxDigits` outside a string. Node's reads both. Looked at closely only where the text
 * holds that many brackets or digits in a row: an answer's chunks hold neither.
 */
export function pythonRefuses(text: string): boolean {
  let opened = 0;
  for (
    let at = text.indexOf("[");
    at >= 0 && opened <= pythonMaxDepth;
    at = text.indexOf("[", at + 1)
  )
    opened++;
  for (
    let at = text.indexOf("{");
    at >= 0 && opened <= pythonMaxDepth;
    at = text.indexOf("{", at + 1)
  )
    opened++;
  const deep = opened > pythonMaxDepth;
  if (!deep && !longDigits.test(text)) return false;
  let depth = 0;
  let digits = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      // Past the string: an escaped quote is no end.
      digits = 0;
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > pythonMaxDepth) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) depth--;
    else if (c >= 0x30 && c <= 0x39) {
      if (++digits > pythonMaxDigits) {
        // An integer's digits: a fraction or exponent makes it a float, which Python reads.
        let j = i + 1;
        while (j < text.length && text.charCodeAt(j) >= 0x30 && text.charCodeAt(j) <= 0x39) j++;
        const next = text[j];
        if (next !== "." && next !== "e" && next !== "E") return true;
        i = j;
        digits = 0;
      }
    } else if (c === 0x2e /* . */ || c === 0x65 || c === 0x45) {
      // A fraction or exponent: the digits after it are a float's.
      digits = -Infinity;
    } else if (c !== 0x2b /* + */ && c !== 0x2d /* - */) digits = 0;
  }
  return false;
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
  const read = createChunkReader(readsChoices, responses);
  for (const e of events) {
    const chunk = read(e);
    if (chunk === "end") break;
    if (chunk !== null) chunks.push(chunk);
  }
  return chunks;
}

/**
 * The chunk a client takes from each event in turn (see `sseChunks`): null for an event it
 * reads as none, "end" once it has failed the stream. A chunk of a completion's stream
 * (`readsChoices`) with no `choices` (or null) ends it after its usage: Node's stream helper
 * fails there ("chunk.choices is not iterable") and a loop reading `chunk.choices[0]` throws, so
 * text after it was read by a guarded Python loop alone, and counted, 1,000 bytes of it lifted
 * the bound of `Hi.`'s usage; its own usage is read, as an honest upstream may send it so.
 * `choices` of another kind (`"ab"`, `{}`) throws in no such loop: the stream goes on.
 */
export function createChunkReader(
  readsChoices: boolean,
  responses: boolean,
): (e: SseEvent) => SseChunk | null | "end" {
  let ended = false;
  return (e) => {
    if (ended) return "end";
    let chunk: unknown;
    try {
      chunk = JSON.parse(e.data);
    } catch {
      // A client fails the stream here; what it read before stands.
      ended = true;
      return "end";
    }
    if (chunk === null || pythonRefuses(e.data)) {
      ended = true;
      return "end";
    }
    if (e.event?.startsWith("thread.")) return null;
    if (readsChoices && (typeof chunk !== "object" || Array.isArray(chunk))) {
      ended = true;
      return "end";
    }
    if (typeof chunk !== "object") return null;
    if ((chunk as { error?: unknown }).error) {
      ended = true;
      return "end";
    }
    const choices = (chunk as { choices?: unknown }).choices;
    if (readsChoices && (choices === undefined || choices === null)) ended = true;
    return {
      data: chunk as Record<string, unknown>,
      everyClient: readByEveryClient(e.event, responses) && e.someClients !== true,
    };
  };
}
