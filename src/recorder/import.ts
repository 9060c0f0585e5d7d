import { randomUUID } from "node:crypto";
import { Readable, Transform } from "node:stream";
import { setImmediate } from "node:timers/promises";
import { parse } from "csv-parse";
import type { Store } from "../db/client.js";
import { AppError, messageOf } from "../errors.js";
import { importPace } from "./import-pace.js";
import { ingestReceipts, maxIngestBodyBytes } from "./ingest.js";
import { duplicateMembers, parseJsonNotingDuplicates } from "./json-duplicate-members.js";
import { unknownFieldReason, wireReceiptFields } from "./receipt-input.js";

/** File formats `import` reads. */
export type ImportFormat = "jsonl" | "csv";

export interface ImportOptions {
  /**
   * Default: sniffed from the first character (`{` means JSONL, anything else CSV with a header).
   * Given, a file whose first line is plainly of the other format is refused whole.
   */
  format?: ImportFormat;
  /**
   * How `format` was chosen, named when the file is refused as not in it: `--format csv`, `its
   * .csv extension`. Default: `format csv`.
   */
  formatFrom?: string;
  /**
   * Most receipts per transaction. Default 1,000. On SQLite a transaction is cut shorter, to
   * hold the write lock a few tens of ms, and the lock is left free between two while another
   * process writes (see `importPace`).
   */
  batchSize?: number;
  /** Called after each batch with the number of input bytes consumed so far. */
  onProgress?: (bytesRead: number, linesRead: number) => void;
  /** Clock (epoch ms). Default `Date.now`. */
  now?: () => number;
  /**
   * Told to stop (a SIGTERM, Ctrl-C): the lines read are committed, the rest is not read, and
   * the summary says where it stopped (`stopped`).
   */
  signal?: AbortSignal;
  /**
   * PostgreSQL: how long a batch whose connection is lost (`pg_terminate_backend`, a server
   * restart, a failover) is written again on fresh connections, from the first loss, in ms;
   * past it the import stops as on any database failure. Default `reconnectWithinMs`.
   */
  reconnectWithinMs?: number;
  /**
   * Called as a batch whose connection was lost is written again: its first line and the
   * error that cut it.
   */
  onReconnect?: (firstLine: number, error: unknown) => void;
}

/**
 * How long `import` writes a batch again on PostgreSQL while its connection is lost, in ms: a
 * server restart or a failover of a few seconds, sessions ended by an operator or a pooler,
 * are ridden through as `serve` and `verify` ride them; an outage longer than this stops the
 * import (exit 2), a cron's next run carrying on.
 */
export const reconnectWithinMs = 30_000;

export interface ImportSummary {
  /** Receipts read (blank lines aside). */
  total: number;
  created: number;
  duplicate: number;
  updated: number;
  /** Lines whose receipt conflicts with the recorded one (kept as audit findings). */
  conflicts: { line: number; jobId: string; differences: string[] }[];
  /** Lines refused, with the field at fault. */
  rejected: { line: number; field: string; reason: string }[];
  /**
   * Receipts created without a time of their own (no `created_at`, no completion `created`):
   * dated at the import, so `receipt.time` fails one imported long after its lock.
   */
  undated: number;
  /** Told to stop (`signal`): the last line read; the lines after it were not. */
  stopped?: { afterLine: number };
  /**
   * Batches written again after their PostgreSQL connection was lost (each receipt is counted
   * once: one whose first write committed is counted as that write found it).
   */
  reconnected: number;
}

/** A receipt that names no time of its own (a wire receipt's `created_at`, a completion's). */
function undated(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const fields = value as Record<string, unknown>;
  return (fields.created_at ?? null) === null && (fields.created ?? null) === null;
}

interface Item {
  line: number;
  value: unknown;
}

/** A line refused before it is a receipt (not JSON, cells out of place, bytes not UTF-8). */
class UnreadableLine {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {}
}

/**
 * Strict UTF-8: a byte that is not UTF-8 would be stored as U+FFFD, a receipt that no longer
 * says what the file said (`POST /jobs` refuses such a body). A byte-order mark is kept: the
 * file's own is cut before its lines are read (`opening`), and one anywhere else is text.
 */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function utf8OrNull(bytes: Uint8Array): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/** CSV usage columns, numbers that go into `usage`; every other column is text unless below. */
const usageColumns = new Set(["prompt_tokens", "completion_tokens", "total_tokens"]);

/**
 * The columns a CSV header may name, besides `tag_<name>`: a receipt's fields with `usage`
 * spelt out as its counts (a cell holds no object).
 */
const csvColumnNames = [...wireReceiptFields.filter((name) => name !== "usage"), ...usageColumns];

/**
 * Top-level receipt fields the ingest API takes only as JSON numbers: a cell of digits becomes
 * a number, anything else stays text for the receipt rules to refuse with the field named.
 */
const integerColumns = new Set(["max_tokens", "n", "http_status"]);

/**
 * A CSV record (header names as keys) as the receipt object the ingest API takes: usage
 * columns become `usage`, `max_tokens`, `n` and `http_status` numbers, `tag_<name>` columns and a JSON `tags`
 * column become `tags`, and empty cells are absent.
 */
function receiptFromCsv(record: Record<string, string>): unknown {
  const receipt: Record<string, unknown> = {};
  const usage: Record<string, unknown> = {};
  const tags: Record<string, unknown> = {};
  for (const [column, cell] of Object.entries(record)) {
    const name = column.trim().toLowerCase();
    const value = cell.trim();
    if (value === "") continue;
    if (usageColumns.has(name)) {
      usage[name] = /^\d+$/.test(value) ? Number(value) : value;
    } else if (integerColumns.has(name)) {
      receipt[name] = /^\d+$/.test(value) ? Number(value) : value;
    } else if (name === "tags") {
      const named = tagsCell(value);
      if (named instanceof UnreadableLine) return named;
      const clash = addTags(tags, named, "tags");
      if (clash) return clash;
    } else if (name.startsWith("tag_")) {
      const clash = addTags(tags, { [name.slice(4)]: value }, name);
      if (clash) return clash;
    } else if (name === "created_at" && /^\d+(\.\d+)?$/.test(value)) {
      receipt.created_at = Number(value);
    } else {
      receipt[name] = value;
    }
  }
  if (Object.keys(usage).length > 0) receipt.usage = usage;
  if (Object.keys(tags).length > 0) receipt.tags = tags;
  return receipt;
}

/**
 * The tags a CSV `tags` cell names: a JSON object, each name once. Anything else is refused by
 * the column, never read as something else: a JSON string spread into tags was `{"0":"a",...}`,
 * and a number or `null` vanished.
 */
function tagsCell(value: string): Record<string, unknown> | UnreadableLine {
  let parsed: unknown;
  try {
    parsed = parseJsonNotingDuplicates(value);
  } catch {
    return new UnreadableLine("tags", "must be a JSON object of tag names to strings");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return new UnreadableLine("tags", "must be a JSON object of tag names to strings");
  }
  const [twice] = duplicateMembers(parsed).keys();
  if (twice !== undefined) {
    return new UnreadableLine(`tags.${twice}`, "given more than once with different values");
  }
  return parsed as Record<string, unknown>;
}

/**
 * Adds a row's tags from one column; a tag another column of the row named with another value
 * is refused by the column, rather than the later column silently winning.
 */
function addTags(
  tags: Record<string, unknown>,
  named: Record<string, unknown>,
  column: string,
): UnreadableLine | null {
  for (const [tag, value] of Object.entries(named)) {
    if (Object.hasOwn(tags, tag) && tags[tag] !== value) {
      return new UnreadableLine(column, `names tag ${tag} another column names differently`);
    }
    // Defined, not assigned: a tag named `__proto__` must reach the tag-name rule, not vanish.
    Object.defineProperty(tags, tag, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return null;
}

/** A line longer than a whole `POST /jobs` body holds no receipt the API would take. */
const maxLineBytes = maxIngestBodyBytes;

/** A line cut at `maxLineBytes`: its bytes are dropped as they come, and it is refused. */
class OverlongLine {
  constructor(readonly bytes: number) {}
}

/**
 * The lines of a stream as bytes, ended by LF, CRLF or a lone CR (as `readline` ends them), so
 * that each is decoded on its own and one bad byte costs its line, not the file. A line's
 * pieces are joined once, at its end: joining at every chunk copied a long line again each
 * time (a 60 MB line took minutes), and one past `maxLineBytes` is not kept at all.
 */
async function* byteLines(input: Readable): AsyncGenerator<Buffer | OverlongLine> {
  let pieces: Buffer[] = [];
  let held = 0;
  let overlong = 0;
  // A CR that ended the previous chunk: an LF opening this one belongs to it.
  let afterCr = false;
  const take = (piece: Buffer) => {
    if (overlong > 0 || held + piece.length > maxLineBytes) {
      overlong = Math.max(overlong, held) + piece.length;
      pieces = [];
      held = 0;
      return;
    }
    if (piece.length > 0) pieces.push(piece);
    held += piece.length;
  };
  const line = (): Buffer | OverlongLine => {
    const done = overlong > 0 ? new OverlongLine(overlong) : Buffer.concat(pieces, held);
    pieces = [];
    held = 0;
    overlong = 0;
    return done;
  };
  for await (const chunk of input as AsyncIterable<Buffer | string>) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    let start = afterCr && bytes[0] === 0x0a ? 1 : 0;
    afterCr = false;
    for (let i = start; i < bytes.length; i++) {
      const byte = bytes[i];
      if (byte !== 0x0a && byte !== 0x0d) continue;
      take(bytes.subarray(start, i));
      yield line();
      if (byte === 0x0d && i + 1 < bytes.length && bytes[i + 1] === 0x0a) i++;
      else if (byte === 0x0d && i + 1 === bytes.length) afterCr = true;
      start = i + 1;
    }
    // Copied: the stream may reuse its chunk's memory once handed over.
    if (start < bytes.length) take(Buffer.from(bytes.subarray(start)));
  }
  if (held > 0 || overlong > 0) yield line();
}

async function* jsonlItems(input: Readable): AsyncGenerator<Item> {
  let line = 0;
  for await (const bytes of byteLines(input)) {
    line++;
    if (bytes instanceof OverlongLine) {
      const reason = `${bytes.bytes} bytes, longer than the ${maxLineBytes} a receipt may take`;
      yield { line, value: new UnreadableLine("line", reason) };
      continue;
    }
    const text = utf8OrNull(bytes);
    if (text === null) {
      yield { line, value: new UnreadableLine("line", "not valid UTF-8") };
      continue;
    }
    if (text.trim() === "") continue;
    let value: unknown;
    try {
      value = parseJsonNotingDuplicates(text);
    } catch {
      value = new UnreadableLine("line", "not valid JSON");
    }
    yield { line, value };
  }
}

/** Columns every CSV receipt needs: a receipt without them is refused by the ingest rules. */
const requiredColumns = ["job_id", "escrow_tx"];

/** Why a CSV file is refused as a whole: nothing of it is imported, and `import` exits 2. */
function headerError(what: string, note = ""): AppError {
  const message = `the CSV header (line 1) ${what}; nothing was imported${note}`;
  return new AppError("validation_failed", message, { field: "header" });
}

/**
 * A CSV parser's error, without the cell it quotes: cells are bytes here, which it would print
 * as a JSON array of numbers.
 */
function csvErrorText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/, value is [\s\S]*$/, "").slice(0, 300);
}

/**
 * The header's column names, read as bytes (the parser gives cells undecoded, see csvItems).
 * Refused as a whole: a header that is not UTF-8; a column no receipt has (ignored, its every
 * cell would be lost: `httpStatus` for `http_status`, and an error answer read as a 2xx); two
 * that are the same field once trimmed and lowercased (how `receiptFromCsv` reads them; the
 * parser would keep the last cell silently). A header without the required columns is no
 * receipt file at all (a single line of anything not starting with `{` is read as CSV): refused
 * whole, rather than read as a header with no rows and reported as 0 receipts.
 */
function csvColumns(header: Buffer[]): string[] {
  // Each column by its field name (trimmed, lowercased), with the name as the file writes it,
  // which the messages quote: the user looks for `httpStatus` in the file, not `httpstatus`.
  const seen = new Map<string, string>();
  const columns: string[] = [];
  for (const cell of header) {
    const text = utf8OrNull(cell);
    if (text === null) {
      throw headerError("is not valid UTF-8 text (is this a CSV file?)");
    }
    const name = text.trim().toLowerCase();
    // Which of the two cells is meant cannot be told: the file is refused as a whole, like one
    // without the receipt columns (exit 2 from `import`), not read as one rejected receipt.
    const first = seen.get(name);
    if (first !== undefined) {
      throw headerError(
        first === text.trim()
          ? `names column "${first}" twice`
          : `names column "${first}" twice (also as "${text.trim()}": column names are read without case)`,
      );
    }
    seen.set(name, text.trim());
    columns.push(text);
  }
  const missing = requiredColumns.filter((name) => !seen.has(name));
  if (missing.length > 0) {
    throw headerError(
      `has no column ${missing.join(", ")}`,
      ` (a file is read as JSONL when its first line starts with "{")`,
    );
  }
  for (const [name, written] of seen) {
    if (csvColumnNames.includes(name) || /^tag_./.test(name)) continue;
    // A JSONL receipt's `usage` object is three columns in a CSV: no spelling is near it.
    const reason =
      name === "usage"
        ? "a CSV gives the usage as columns prompt_tokens, completion_tokens and total_tokens"
        : `${unknownFieldReason(name, csvColumnNames)} (or tag_<name>)`;
    throw headerError(`names column "${written}": ${reason}`);
  }
  return columns;
}

/**
 * Line numbers of CSV records, counted from the bytes the parser reads: the parser's own count
 * (`info.lines`) takes a CRLF inside a quoted cell for two line breaks, so every row after a
 * cell holding one (a note written on Windows, an `Export-Csv` of a multi-line value) was named
 * by the line after its own, and whoever fixed "line 6" edited the wrong row. Here CRLF, LF and a
 * lone CR each end one line, as `byteLines` counts them for JSONL. A record is named by the line
 * it starts on, blank lines before it aside: its last line, after a quoted cell holding line
 * breaks, is the end of a note, not the row to fix.
 */
function csvLineCounter(input: Readable) {
  // Line breaks not yet passed by a record, as offsets of their first byte and just past them;
  // `head` is the first of them, the break that ends line `line`, which starts at `lineStart`.
  const breaks: { at: number; end: number }[] = [];
  let head = 0;
  let line = 1;
  let lineStart = 0;
  let offset = 0;
  // Where the last CR was; none yet (a first byte LF is a break of its own, not a CRLF's end).
  let crAt: number | null = null;
  // Where the last record (or the header) ended: the next one starts at or after it.
  let recordEnd = 0;
  input.on("data", (chunk: Buffer | string) => {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i];
      const at = offset + i;
      if (byte === 0x0a && crAt === at - 1) {
        (breaks[breaks.length - 1] as { end: number }).end = at + 1;
      } else if (byte === 0x0a || byte === 0x0d) {
        breaks.push({ at, end: at + 1 });
      }
      if (byte === 0x0d) crAt = at;
    }
    offset += bytes.length;
  });
  const next = () => {
    lineStart = (breaks[head] as { end: number }).end;
    head++;
    line++;
  };
  return {
    /** The header or a record ended just before `end` (`info.bytes`). */
    ended(end: number) {
      recordEnd = end;
    },
    /**
     * The line the record after the last one ended starts on, given the bytes read through
     * its end (`end`, or none yet when reading stopped inside it).
     */
    firstLineOf(end = Number.POSITIVE_INFINITY): number {
      while (head < breaks.length && (breaks[head] as { end: number }).end <= recordEnd) next();
      // Empty lines before it were skipped by the parser, not part of it.
      while (
        head < breaks.length &&
        (breaks[head] as { at: number }).at === lineStart &&
        (breaks[head] as { end: number }).end < end
      ) {
        next();
      }
      if (head > 4096) {
        breaks.splice(0, head);
        head = 0;
      }
      return line;
    },
  };
}

/** Where a CSV row's scan stands: the quote rules of RFC 4180, as the parser reads them. */
enum CsvScan {
  /** At a cell's first byte: a quote here opens a quoted cell. */
  CellStart,
  /** Inside an unquoted cell. */
  Unquoted,
  /** Inside a quoted cell. */
  Quoted,
  /** Just past a quote inside a quoted cell: the cell's end, or half of an escaped quote. */
  QuoteInQuoted,
}

/**
 * Passes a CSV file through row by row, except a row (after the header) longer than
 * `maxLineBytes`: its bytes are dropped as they come, and in its place comes one cell, `marker`
 * (`eofMarker` when the file ends inside it), then one empty line for each line break it held,
 * so that the rows after it keep their line numbers (the parser skips empty lines). The parser
 * cannot go on past a row it refused for its size, so one overlong row (a note pasted into a
 * cell) stopped the import there, and every receipt after it was left unread.
 */
function csvOverlongRows(marker: string, eofMarker: string): Transform {
  let state = CsvScan.CellStart;
  let headerDone = false;
  // The row being read, held until its end: it may turn out too long and never be passed on.
  let held: Buffer[] = [];
  let heldBytes = 0;
  let dropping = false;
  // Line breaks inside the row so far (a CRLF is one), and whether its last byte was a CR.
  let breaks = 0;
  let lastCr = false;
  // A row that ended on a CR: an LF next (maybe in the next chunk) belongs to its end.
  let endedOnCr = false;
  let dropped: { breaks: number } | null = null;
  // Whether the row so far holds a byte (an empty line before the header is no header).
  let rowStarted = false;
  const replacement = (terminator: string, lineBreaks: number): Buffer =>
    Buffer.from(`${marker}${terminator}${terminator.repeat(lineBreaks)}`);
  return new Transform({
    transform(chunk: Buffer | string, _encoding, done) {
      const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      const out: Buffer[] = [];
      let start = 0;
      let i = 0;
      // The LF of a CRLF that ended a dropped row in the previous chunk.
      if (dropped !== null) {
        const lf = bytes[0] === 0x0a;
        out.push(replacement(endedOnCr && lf ? "\r\n" : endedOnCr ? "\r" : "\n", dropped.breaks));
        dropped = null;
        if (endedOnCr && lf) {
          i = 1;
          start = 1;
        }
        endedOnCr = false;
      }
      const keep = (end: number) => {
        if (dropping || end <= start) return;
        if (!headerDone) {
          out.push(bytes.subarray(start, end));
          return;
        }
        held.push(Buffer.from(bytes.subarray(start, end)));
        heldBytes += end - start;
        if (heldBytes > maxLineBytes) {
          dropping = true;
          held = [];
          heldBytes = 0;
        }
      };
      for (; i < bytes.length; i++) {
        const byte = bytes[i] as number;
        const lineBreak = byte === 0x0a || byte === 0x0d;
        if (lineBreak && state !== CsvScan.Quoted) {
          // The row ends here.
          keep(i);
          const crlf = byte === 0x0d && bytes[i + 1] === 0x0a;
          const end = crlf ? i + 2 : i + 1;
          if (dropping) {
            if (byte === 0x0d && i + 1 === bytes.length) {
              // Whether an LF follows is said by the next chunk.
              dropped = { breaks };
              endedOnCr = true;
            } else {
              out.push(replacement(crlf ? "\r\n" : byte === 0x0d ? "\r" : "\n", breaks));
            }
          } else {
            out.push(...held, bytes.subarray(i, end));
            if (rowStarted) headerDone = true;
          }
          held = [];
          heldBytes = 0;
          dropping = false;
          breaks = 0;
          lastCr = false;
          rowStarted = false;
          state = CsvScan.CellStart;
          i = end - 1;
          start = end;
          continue;
        }
        rowStarted = true;
        switch (state) {
          case CsvScan.CellStart:
            state = byte === 0x22 ? CsvScan.Quoted : byte === 0x2c ? state : CsvScan.Unquoted;
            break;
          case CsvScan.Unquoted:
            if (byte === 0x2c) state = CsvScan.CellStart;
            break;
          case CsvScan.Quoted:
            if (byte === 0x22) state = CsvScan.QuoteInQuoted;
            else if (byte === 0x0d || (byte === 0x0a && !lastCr)) breaks++;
            break;
          case CsvScan.QuoteInQuoted:
            state =
              byte === 0x22 ? CsvScan.Quoted : byte === 0x2c ? CsvScan.CellStart : CsvScan.Unquoted;
            break;
        }
        lastCr = byte === 0x0d;
      }
      keep(bytes.length);
      if (out.length > 0) this.push(Buffer.concat(out));
      done();
    },
    flush(done) {
      if (dropped !== null) this.push(replacement(endedOnCr ? "\r" : "\n", dropped.breaks));
      else if (dropping) this.push(Buffer.from(eofMarker));
      else if (held.length > 0) this.push(Buffer.concat(held));
      done();
    },
  });
}

/** Reading a CSV file stopped inside the record starting on `line` (an unclosed quote). */
class StoppedReading extends Error {
  constructor(
    readonly line: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

async function* csvItems(file: Readable): AsyncGenerator<Item> {
  let headerRead = false;
  // Made up for this file, so that no row of it can read as one.
  const nonce = randomUUID();
  const marker = Buffer.from(`decentral-audit-overlong-row-${nonce}`);
  const eofMarker = Buffer.from(`decentral-audit-overlong-row-at-eof-${nonce}`);
  const input = file.pipe(csvOverlongRows(marker.toString(), eofMarker.toString()));
  file.on("error", (error) => input.destroy(error));
  const lines = csvLineCounter(input);
  const parser = input.pipe(
    parse({
      columns: (header: unknown[]) => {
        const columns = csvColumns(header as Buffer[]);
        headerRead = true;
        // Read as the header ends: where it ends, the first record may start.
        lines.ended(parser.info.bytes);
        return columns;
      },
      // Cells come as bytes, decoded strictly below: the parser's own decoding would put
      // U+FFFD for a byte that is not UTF-8. (Its `bom` option would decode too, so the mark is
      // cut from the bytes before they get here, by `opening`.)
      encoding: null,
      skip_empty_lines: true,
      info: true,
      // A row of the wrong length is one bad line, not the end of the file: it is read (its
      // cell count is in `info`) and refused below.
      relax_column_count: true,
      // A row's bytes, bounded as a JSONL line is: a file of one endless row grew until the
      // process ran out of memory. Rows after the header come cut by `csvOverlongRows`; the
      // header is bounded here, where reading stops.
      max_record_size: maxLineBytes,
    }),
  );
  const rows = rowsThenError<{
    record: Record<string, Buffer>;
    info: { bytes: number; index: number; columns: unknown[] };
  }>(parser);
  try {
    for await (const row of rows) {
      const { bytes, index: cells, columns } = row.info;
      // Cells are matched to the header by position: a cell left out or one too many (an
      // unquoted comma) would put a wallet under `settlement_tx` or a model under
      // `credits_remaining`, and a receipt of shifted values would be recorded.
      const first = cells === 1 ? Object.values(row.record)[0] : undefined;
      const overlong = first?.equals(marker) ? "" : first?.equals(eofMarker) ? "at-eof" : null;
      const value =
        overlong !== null
          ? new UnreadableLine(
              "line",
              `a CSV row longer than the ${maxLineBytes} bytes a receipt may take${
                overlong === "at-eof" ? ", running to the end of the file (a quote left open?)" : ""
              }`,
            )
          : cells === columns.length
            ? csvRecord(row.record)
            : new UnreadableLine("line", `${cells} cells where the header has ${columns.length}`);
      const line = lines.firstLineOf(bytes);
      lines.ended(bytes);
      yield { line, value };
    }
  } catch (error) {
    if (error instanceof AppError) throw error;
    if (headerRead) {
      const tooLong = (error as { code?: unknown }).code === "CSV_MAX_RECORD_SIZE";
      throw new StoppedReading(
        lines.firstLineOf(),
        tooLong
          ? `a CSV row longer than the ${maxLineBytes} bytes a receipt may take`
          : `CSV syntax: ${csvErrorText(error)}`,
      );
    }
    // A file that stops parsing before its header ends has no header at all (a binary file,
    // say): no receipt file, refused whole as a header without the receipt columns is.
    throw headerError(`is not CSV (${csvErrorText(error)})`);
  }
}

/**
 * The objects a stream gives, then its error: its own async iterator throws the error at once,
 * dropping the rows parsed before it and not yet taken (the rows before an unclosed quote or an
 * overlong row, a batch's worth of receipts, were neither imported nor named). The stream is
 * paused while `highWater` rows wait, so a slow consumer does not hold the whole file.
 */
async function* rowsThenError<T>(stream: Readable, highWater = 1000): AsyncGenerator<T> {
  const queue: T[] = [];
  let failure: { error: unknown } | null = null;
  let ended = false;
  let wake: (() => void) | null = null;
  const signal = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  stream.on("data", (row: T) => {
    queue.push(row);
    if (queue.length >= highWater) stream.pause();
    signal();
  });
  stream.on("error", (error: unknown) => {
    failure = { error };
    signal();
  });
  stream.on("end", () => {
    ended = true;
    signal();
  });
  try {
    for (;;) {
      if (queue.length > 0) {
        const row = queue.shift() as T;
        if (queue.length < highWater / 2 && stream.isPaused() && failure === null) stream.resume();
        yield row;
        continue;
      }
      if (failure !== null) throw (failure as { error: unknown }).error;
      if (ended) return;
      if (stream.isPaused()) stream.resume();
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    if (!ended) stream.destroy();
  }
}

/** A CSV row's cells decoded, as a receipt; a cell that is not UTF-8 refuses its row, named. */
function csvRecord(record: Record<string, Buffer>): unknown {
  const cells: Record<string, string> = {};
  for (const [column, bytes] of Object.entries(record)) {
    const text = utf8OrNull(bytes);
    if (text === null) return new UnreadableLine(column.trim().toLowerCase(), "not valid UTF-8");
    cells[column] = text;
  }
  return receiptFromCsv(cells);
}

/** Byte-order marks of other encodings, longest first: UTF-32 LE starts as UTF-16 LE does. */
const foreignMarks: [string, Buffer][] = [
  ["UTF-32 LE", Buffer.from([0xff, 0xfe, 0x00, 0x00])],
  ["UTF-32 BE", Buffer.from([0x00, 0x00, 0xfe, 0xff])],
  ["UTF-16 LE", Buffer.from([0xff, 0xfe])],
  ["UTF-16 BE", Buffer.from([0xfe, 0xff])],
];

const utf8Bom = Buffer.from([0xef, 0xbb, 0xbf]);

/**
 * Opening bytes of compressed or archived files, with the command that reads them out. An
 * export saved as `receipts.jsonl.gz` was refused as "the CSV header is not CSV (Invalid
 * Opening Quote)", or its bytes quoted as a first line that is no JSON object: neither said
 * the file was compressed. No receipt file (UTF-8 text) starts with these bytes.
 */
const compressedMarks: [string, Buffer, string][] = [
  ["gzip-compressed", Buffer.from([0x1f, 0x8b]), "zcat"],
  ["zstd-compressed", Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), "zstdcat"],
  ["xz-compressed", Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), "xzcat"],
  // "BZh", the block size digit, then the first block's magic (pi's digits in BCD).
  ["bzip2-compressed", Buffer.from("BZh"), "bzcat"],
  ["a zip archive", Buffer.from([0x50, 0x4b, 0x03, 0x04]), "unzip -p"],
];

/** Stops reading the file (its stream closed) and refuses it whole, on `file`, with `message`. */
async function refusedWhole(
  iterator: AsyncIterator<Buffer | string>,
  message: string,
): Promise<never> {
  await iterator.return?.();
  throw new AppError("validation_failed", message, { field: "file" });
}

/** Most characters of the first line quoted when the file is refused as not in its format. */
const firstLineShown = 60;

/**
 * Why a file is refused as not in the format it was given, `start` being its opening (blank
 * lines and a byte-order mark cut), `more` whether the file goes on past it.
 */
function wrongFormat(
  given: { format: ImportFormat; from: string },
  start: string,
  more: boolean,
): string {
  const [line = ""] = start.split(/\r\n|\r|\n/, 1);
  const cut = line.length > firstLineShown || (more && line.length === start.length);
  // A character the opening's last bytes cut in two is left out, not shown as U+FFFD.
  const shown = cut ? `${line.slice(0, firstLineShown).replace(/\uFFFD$/, "")}...` : line;
  const looks =
    given.format === "csv"
      ? "is a JSON object, as in JSON Lines; if it is JSON Lines, give --format jsonl"
      : `${line.includes(",") ? "looks like a CSV header, not" : "is not"} a JSON object; if it is CSV, give --format csv`;
  const name = given.format === "csv" ? "CSV" : "JSON Lines";
  return `the file does not look like ${name} (${given.from}): its first line, ${shown}, ${looks}; nothing was imported`;
}

/**
 * Reads the opening bytes of the stream, then replays the rest. A UTF-8 byte-order mark (an
 * editor's, or PowerShell's `Export-Csv -Encoding UTF8`) is cut here, before any parser: the
 * CSV parser would take it as a cell's first character and refuse the quote after it. A file
 * opening with a UTF-16 or UTF-32 mark is refused whole, the encoding named: read as UTF-8,
 * every line of it would be refused on its own, or its header as not CSV, saying nothing of
 * why. With no format given, the opening picks it (`{` means JSONL); a format given that the
 * opening plainly is not refuses the file whole.
 */
async function opening(
  input: Readable,
  given: { format: ImportFormat; from: string } | undefined,
): Promise<{ format: ImportFormat; stream: Readable }> {
  const iterator = input[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const bytes = (chunk: Buffer | string) =>
    typeof chunk === "string" ? Buffer.from(chunk) : chunk;
  // Chunks are read until the longest mark fits, and the first line's opening past a few
  // spaces (a JSON document rather than JSON Lines): a pipe may hand over one byte at a time.
  let head: Buffer = Buffer.alloc(0);
  let ended = false;
  while (head.length < 64) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    head = Buffer.concat([head, bytes(next.value)]);
  }
  for (const [encoding, mark] of foreignMarks) {
    if (!head.subarray(0, mark.length).equals(mark)) continue;
    return refusedWhole(
      iterator,
      `the file is ${encoding} text (it starts with that byte-order mark); save it as UTF-8 and import it again; nothing was imported`,
    );
  }
  // Without a mark (PowerShell's `Out-File`, .NET's `Encoding.Unicode` writers leave it out at
  // times): a NUL beside the first character. UTF-8 text of a receipt file never holds one, and
  // read as UTF-8 every line was refused as not JSON, or the header as lacking job_id, while an
  // editor showed it there.
  const unmarked =
    head.length >= 2 && head[0] !== 0 && head[1] === 0
      ? head.length >= 4 && head[2] === 0 && head[3] === 0
        ? "UTF-32 LE"
        : "UTF-16 LE"
      : head.length >= 2 && head[0] === 0 && head[1] !== 0
        ? "UTF-16 BE"
        : head.length >= 4 && head[0] === 0 && head[1] === 0 && head[2] === 0 && head[3] !== 0
          ? "UTF-32 BE"
          : null;
  if (unmarked !== null) {
    return refusedWhole(
      iterator,
      `the file looks like ${unmarked} text (a NUL byte beside its first character, no byte-order mark); save it as UTF-8 and import it again; nothing was imported`,
    );
  }
  for (const [what, mark, reader] of compressedMarks) {
    if (!head.subarray(0, mark.length).equals(mark)) continue;
    if (mark.length === 3 && !/^BZh[1-9]1AY&SY/.test(head.subarray(0, 10).toString("latin1"))) {
      continue;
    }
    return refusedWhole(
      iterator,
      `the file is ${what}, not text: decompress it first (${reader} FILE | decentral-audit import -, or import <(${reader} FILE)); nothing was imported`,
    );
  }
  if (head.subarray(0, 3).equals(utf8Bom)) head = head.subarray(3);
  // A JSON array (`jq -s`, an API dump) or one receipt pretty-printed over many lines is no
  // JSON Lines: the array was refused as "the CSV header is not CSV", the pretty one as a
  // dozen lines "not valid JSON", counted as that many receipts. Refused whole, saying so.
  const start = head.toString().trimStart();
  const document = start.startsWith("[")
    ? "a JSON array"
    : /^\{[ \t]*\r?\n/.test(start)
      ? "a JSON document spread over several lines"
      : null;
  if (document !== null) {
    return refusedWhole(
      iterator,
      `the file is ${document}, not JSON Lines (one receipt, a JSON object, on each line): write each receipt on a line of its own (jq -c '.[]' for an array, jq -c . for one document) and import it again; nothing was imported`,
    );
  }
  const sniffed: ImportFormat = start.startsWith("{") ? "jsonl" : "csv";
  const format = given?.format ?? sniffed;
  // A format given that the first line plainly is not (a JSONL file told `--format csv`, a CSV
  // one told jsonl): read so, every line of it was refused one by one, or the header as "not
  // CSV (Invalid Opening Quote)", naming neither the format given nor what the file holds.
  // Every JSON Lines receipt starts with `{` and no CSV header can, so the two cannot be mixed up.
  if (given !== undefined && start !== "" && given.format !== sniffed) {
    return refusedWhole(iterator, wrongFormat(given, start, !ended));
  }
  async function* replay() {
    if (head.length > 0) yield head;
    while (!ended) {
      const next = await iterator.next();
      if (next.done) return;
      yield bytes(next.value);
    }
  }
  return { format, stream: Readable.from(replay(), { objectMode: false }) };
}

/**
 * The database refused a batch (a PostgreSQL restart, a full disk, a lock held too long): the
 * batches before it are committed, this one and the rest are not. Said with the database's
 * reason, so that whoever ran the import knows where it stopped and that running it again only
 * adds what is missing (receipts already imported are counted duplicate).
 */
function stoppedImport(
  error: unknown,
  summary: ImportSummary,
  firstLine: number,
  retriedForMs: number | null,
): AppError {
  // What each line before it came to: a rerun of an import that stopped, or a file of refused
  // lines, committed far fewer receipts than it read.
  const outcomes = [
    [summary.created, "created"],
    [summary.updated, "updated"],
    [summary.duplicate, "duplicate"],
    [summary.conflicts.length, "conflicting"],
    [summary.rejected.length, "rejected"],
  ] as const;
  const counts = outcomes
    .filter(([n]) => n > 0)
    .map(([n, what]) => `${n} ${what}`)
    .join(", ");
  const done =
    summary.total === 0
      ? "no receipt was committed"
      : `the ${summary.total} receipts before it are done (${counts})`;
  return new AppError(
    error instanceof AppError ? error.code : "store_unavailable",
    `${messageOf(error)}${retriedForMs === null ? "" : ` (its connection lost, the batch was written again on new connections for ${Math.round(retriedForMs / 1000)} s)`}: the database stopped the import at line ${firstLine}; ${done}, none from line ${firstLine} on; running the import again is safe (receipts already imported are counted duplicate)`,
    {},
    { cause: error },
  );
}

const emptySummary = (): ImportSummary => ({
  total: 0,
  created: 0,
  duplicate: 0,
  updated: 0,
  conflicts: [],
  rejected: [],
  undated: 0,
  reconnected: 0,
});

/**
 * Imports receipts from a JSONL or CSV stream with the ingest API's validation and
 * idempotency, one transaction per batch. Rejected lines do not stop the import; they are
 * listed in the summary with their line numbers (1-based, counting the CSV header).
 */
export async function importReceipts(
  store: Store,
  input: Readable,
  options: ImportOptions = {},
): Promise<ImportSummary> {
  const pace = importPace(store, options.batchSize ?? 1000);
  const retryMs = options.reconnectWithinMs ?? reconnectWithinMs;
  const now = options.now ?? Date.now;
  // Told to stop, a wait for the next line ends at once: a pipe may send nothing for hours.
  const { signal } = options;
  const stop = new Promise<"stop">((resolve) => {
    if (signal?.aborted) resolve("stop");
    signal?.addEventListener("abort", () => resolve("stop"), { once: true });
  });
  const open = opening(
    input,
    options.format === undefined
      ? undefined
      : { format: options.format, from: options.formatFrom ?? `format ${options.format}` },
  );
  const opened = await Promise.race([open, stop]);
  if (opened === "stop") {
    open.catch(() => {});
    input.destroy();
    return { ...emptySummary(), stopped: { afterLine: 0 } };
  }
  const { format, stream } = opened;
  let bytesRead = 0;
  stream.on("data", (chunk: Buffer | string) => {
    bytesRead += chunk.length;
  });

  const summary = emptySummary();
  let batch: Item[] = [];
  let lastLine = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    // A line refused unread goes in as no receipt, keeping its place among the outcomes.
    const values = batch.map((item) => (item.value instanceof UnreadableLine ? null : item.value));
    let results: Awaited<ReturnType<typeof ingestReceipts>>;
    const firstLine = batch[0]?.line ?? lastLine;
    let lostAt: number | null = null;
    try {
      results = await ingestReceipts(store, values, "import", now(), pace, {
        withinMs: retryMs,
        onRetry: (error) => {
          if (lostAt === null) summary.reconnected++;
          lostAt ??= performance.now();
          options.onReconnect?.(firstLine, error);
        },
      });
    } catch (error) {
      const retriedFor = lostAt === null ? null : performance.now() - lostAt;
      throw stoppedImport(error, summary, firstLine, retriedFor);
    }
    for (const result of results) {
      const item = batch[result.index] as Item;
      if (item.value instanceof UnreadableLine) {
        const { field, reason } = item.value;
        summary.rejected.push({ line: item.line, field, reason });
        continue;
      }
      switch (result.status) {
        case "rejected":
          summary.rejected.push({
            line: item.line,
            field: result.field ?? "receipt",
            reason: result.reason ?? "invalid",
          });
          break;
        case "conflict":
          summary.conflicts.push({
            line: item.line,
            jobId: result.jobId ?? "",
            differences: result.differences ?? [],
          });
          break;
        default:
          summary[result.status]++;
          if (result.status === "created" && undated(item.value)) summary.undated++;
      }
    }
    summary.total += batch.length;
    batch = [];
    options.onProgress?.(bytesRead, lastLine);
    // Lines already read come without a turn of the event loop between them: one is given
    // here, so that a stop signal is heard between two transactions, not seconds later.
    await setImmediate();
  };

  const items = (format === "csv" ? csvItems(stream) : jsonlItems(stream))[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = signal?.aborted ? null : items.next();
      const read = next === null ? "stop" : await Promise.race([next, stop]);
      if (read === "stop") {
        // The line being read is left unread; the stream's end may reject its wait.
        next?.catch(() => {});
        stream.destroy();
        await flush();
        summary.stopped = { afterLine: lastLine };
        return summary;
      }
      if (read.done) break;
      const item = read.value;
      batch.push(item);
      lastLine = item.line;
      if (batch.length >= pace.size()) await flush();
    }
  } catch (error) {
    if (error instanceof AppError) throw error;
    // A file that stops parsing (an unclosed CSV quote, say) keeps what was read before it,
    // and the summary says where reading stopped instead of the import dying without one.
    await flush();
    // The receipt where reading stopped is one read and refused, so that the summary's counts
    // add up to its total.
    summary.total++;
    const stopped = error instanceof StoppedReading ? error : null;
    summary.rejected.push({
      line: stopped?.line ?? lastLine + 1,
      field: "file",
      reason: `${stopped?.reason ?? `${format.toUpperCase()} syntax: ${csvErrorText(error)}`}; the rest of the file was not read`,
    });
    if (signal?.aborted) summary.stopped = { afterLine: lastLine };
    return summary;
  }
  await flush();
  // Told to stop as the input ended (a signal sent to a pipeline's whole group ends its
  // writer too): stopped all the same, the input's end perhaps cut by the writer's.
  if (signal?.aborted) summary.stopped = { afterLine: lastLine };
  return summary;
}
