import { pino } from "pino";
import { createLogger, type Logger } from "./log.js";

/**
 * Linux's PIPE_BUF: a write of at most this many bytes to a pipe is never cut by another
 * process's write into it, nor taken in part. The processes of `serve --workers` share one
 * stdout, and a reader that falls behind (a loaded host, `serve | reader`) has each of their
 * writes wait in the kernel beside the others'. sonic-boom wrote up to 16 KiB at once, which
 * the kernel took a page at a time as the reader freed room, and another worker's lines landed
 * in the middle of a line.
 */
const PIPE_BUF = 4096;
/** Longest a gathered log line waits for its write, in ms. */
const LOG_FLUSH_MS = 200;
/** Longest wait, before a planned exit, for the log lines gathered to be written. */
const EXIT_FLUSH_MS = 1000;
/** The message of the one log line per request (src/api): the one gathered before writing. */
const REQUEST_LINE = "request";

/**
 * The logger of a serving process: its JSON lines are written asynchronously, so a request's
 * log line never holds the event loop on stdout. Request lines are gathered (up to 4 KiB, at
 * most 200 ms), so that a busy proxy makes one write per ~15 of them instead of one each; any
 * other line is written at once, with whatever was gathered before it. Each write is whole
 * lines of at most `PIPE_BUF` bytes: a longer line is shortened to fit (`fitLine`), since a pipe
 * may cut a write over that size. `flush` writes what is left before exit. A process killed with SIGKILL loses at most those 200 ms of request lines
 * (never a receipt: those are in the store before any answer).
 */
export function serveLogger(level: string, fd = 1): { log: Logger; flush(): Promise<boolean> } {
  // No `periodicFlush`: sonic-boom's timer wrote (an empty string, when nothing was gathered)
  // five times a second for the life of an idle process. A timer is armed when a request line
  // is gathered instead.
  const destination = pino.destination({
    dest: fd,
    sync: false,
    // sonic-boom gathers lines into chunks of at most `maxWrite` bytes and writes one chunk at a
    // time, once `minLength` bytes are gathered (which it requires below `maxWrite`).
    maxWrite: PIPE_BUF,
    minLength: PIPE_BUF - 1,
  });
  // Bytes handed to the destination and not yet written: sonic-boom says neither, and a flush
  // asked while a write is in flight only waits for that write, leaving what was gathered
  // beside it until the next line came (after a burst, for as long as the service was idle).
  let unwritten = 0;
  destination.on("write", (n: number) => {
    unwritten -= n;
  });
  const counted = {
    write(line: string) {
      const fitted = fitLine(line);
      unwritten += Buffer.byteLength(fitted);
      return destination.write(fitted);
    },
    flush(done?: (error?: Error) => void) {
      destination.flush(done);
    },
  };
  // No line is written synchronously at exit: to a stdout nobody reads (a full pipe) such a
  // write blocks, or is retried every 100 ms, for ever, and a worker whose primary had died
  // stayed alive in its exit handler holding the port. A planned exit first gives the async
  // writes a bounded time (`flush`); whatever is left then is dropped, so pino's own exit
  // handler (node:cluster exits a worker whose primary is gone with process.exit) has nothing
  // to write.
  process.prependOnceListener("exit", () => destination.destroy());
  /** Resolves true once what was gathered is written, false when stdout did not take it. */
  const writeLeft = () =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), EXIT_FLUSH_MS);
      timer.unref();
      const settle = (written: boolean) => {
        clearTimeout(timer);
        resolve(written);
      };
      // Called once a write is done, with the error of the fsync that follows it, which a pipe
      // or socket always refuses (EINVAL): the lines were written all the same. What was
      // gathered beside a write in flight takes another flush.
      const step = (error?: NodeJS.ErrnoException | null) => {
        if (unwritten <= 0) return settle(true);
        if (error && error.code !== "EINVAL") return settle(false);
        try {
          destination.flush(step);
        } catch {
          // Destroyed already: nothing more can be written.
          settle(true);
        }
      };
      step();
    });
  // One flush at a time, however many lines ask; once it is done, what was gathered beside the
  // write it waited for is written by the next.
  let flushing = false;
  const flushed = (error?: NodeJS.ErrnoException | null) => {
    flushing = false;
    // A stdout that refuses writes (EPIPE: its reader gone) is not asked again every 200 ms.
    if (unwritten > 0 && (!error || error.code === "EINVAL")) later();
  };
  let timer: NodeJS.Timeout | undefined;
  const later = () => {
    if (timer !== undefined) return;
    timer = setTimeout(flushNow, LOG_FLUSH_MS);
    timer.unref();
  };
  // sonic-boom keeps what is under `minLength` until asked.
  function flushNow() {
    clearTimeout(timer);
    timer = undefined;
    if (flushing) return later();
    flushing = true;
    destination.flush(flushed);
  }
  return {
    log: createLogger(
      {
        level,
        afterLine: (message) => (message === REQUEST_LINE ? later() : flushNow()),
      },
      counted,
    ),
    flush: writeLeft,
  };
}

/** What a shortened string value ends with. */
const CUT_MARK = "…";

/**
 * A JSON log line (ending in a newline) of at most `limit` bytes: the line itself when it fits;
 * else its string values cut to the longest length that fits and its arrays to their first
 * items (a stack trace, an RPC answer, the endpoints of a disagreement), with `cut_bytes` saying
 * how long the line was. When even that does not fit (hundreds of keys), only pino's own fields
 * and the message are kept. Each line stays one whole JSON object.
 */
export function fitLine(line: string, limit = PIPE_BUF): string {
  const bytes = Buffer.byteLength(line);
  if (bytes <= limit) return line;
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    entry = { msg: line.trimEnd() };
  }
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    entry = { msg: line.trimEnd() };
  }
  const record = entry as Record<string, unknown>;
  const fits = (text: string) => Buffer.byteLength(text) <= limit;
  const render = (maxChars: number) =>
    `${JSON.stringify({ ...(capped(record, maxChars) as Record<string, unknown>), cut_bytes: bytes })}\n`;
  // The longest cap whose line fits: a line only grows with its cap.
  let low = 0;
  let high = 4 * limit;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (fits(render(mid))) low = mid;
    else high = mid - 1;
  }
  const shortened = render(low);
  if (low >= 16 && fits(shortened)) return shortened;
  const kept: Record<string, unknown> = {};
  for (const key of ["level", "time", "pid", "hostname", "name"]) {
    if (key in record) kept[key] = capped(record[key], 64);
  }
  const message = typeof record.msg === "string" ? record.msg : "";
  const bare = `${JSON.stringify({ ...kept, msg: message, cut_bytes: bytes })}\n`;
  if (fits(bare)) return bare;
  return `${JSON.stringify({ ...kept, msg: capped(message, 256), cut_bytes: bytes })}\n`;
}

/** `value` with each string longer than `maxChars` cut to it, and each array to its first items. */
function capped(value: unknown, maxChars: number): unknown {
  if (typeof value === "string") {
    return value.length > maxChars ? `${value.slice(0, maxChars)}${CUT_MARK}` : value;
  }
  if (Array.isArray(value)) {
    const items = Math.max(1, Math.floor(maxChars / 16));
    const head = value.slice(0, items).map((item) => capped(item, maxChars));
    return value.length > items ? [...head, `${value.length - items} more`] : head;
  }
  if (typeof value === "object" && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = capped(item, maxChars);
    return out;
  }
  return value;
}
