import { closeSync, createReadStream, open, openSync, statSync } from "node:fs";
import { Socket } from "node:net";
import { constants as os } from "node:os";
import { extname } from "node:path";
import { Readable } from "node:stream";
import { Presets, SingleBar } from "cli-progress";
import type { Store } from "../db/client.js";
import { AppError, messageOf } from "../errors.js";
import { pathProblem } from "../file-input.js";
import { printable } from "../printable-text.js";
import {
  type ImportFormat,
  type ImportSummary,
  importReceipts,
  reconnectWithinMs,
} from "./import.js";

export { reconnectWithinMs };

/** Output of the `import` command: where lines go, and whether to draw a progress bar. */
export interface ImportCommandIo {
  stdin: Readable;
  out: (line: string) => void;
  err: (line: string) => void;
  /** Draw a progress bar on stderr (when stderr is a TTY; only for a file, whose size is known). */
  progress: boolean;
  /**
   * Aborted when the command is told to stop, with the signal's name (`SIGTERM`) as its reason:
   * the lines read are committed, the summary printed, and the exit code is the signal's
   * (128 + its number, as a shell reports a process it ended).
   */
  signal?: AbortSignal;
}

/** The format `file` is read in, and how it was told (named if the file is not in it). */
function formatOf(
  file: string,
  flag: string | undefined,
): { format: ImportFormat; formatFrom: string } | undefined {
  if (flag === "jsonl" || flag === "csv") return { format: flag, formatFrom: `--format ${flag}` };
  if (flag !== undefined) {
    throw new AppError("validation_failed", `--format must be jsonl or csv, not ${flag}`, {
      field: "format",
    });
  }
  const ext = extname(file).toLowerCase();
  const formatFrom = `its ${ext} extension`;
  if (ext === ".csv") return { format: "csv", formatFrom };
  if (ext === ".jsonl" || ext === ".ndjson") return { format: "jsonl", formatFrom };
  return undefined;
}

/**
 * `look` at `file`, a permission error refused naming the file and this user: `fs` said only
 * "EACCES: permission denied, open 'receipts.jsonl'" and `import` exited 2 with nothing else.
 */
function readable<T>(file: string, look: () => T): T {
  try {
    return look();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const said = pathProblem(error, file);
    if (said !== null) {
      throw new AppError(
        "bad_request",
        `${said}; nothing was imported`,
        { field: "file" },
        {
          cause: error,
        },
      );
    }
    if (code !== "EACCES" && code !== "EPERM") throw error;
    throw new AppError(
      "bad_request",
      `${file}: this user (uid ${process.getuid?.()}) may not read it or a folder on its path (${code}); nothing was imported`,
      { field: "file" },
      { cause: error },
    );
  }
}

/**
 * A named pipe opened to read, once a writer opens it too (as `open(2)` waits); null when told
 * to stop first. That wait is in the thread pool and is left there: the process, told to stop,
 * ends by its signal (see cli.ts), which no thread holds.
 */
function openPipe(file: string, signal: AbortSignal | undefined): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const stop = () => resolve(null);
    if (signal?.aborted) stop();
    else signal?.addEventListener("abort", stop, { once: true });
    open(file, "r", (error, fd) => {
      signal?.removeEventListener("abort", stop);
      if (error) reject(error);
      else if (signal?.aborted) closeSync(fd);
      else resolve(fd);
    });
  });
}

/** A pipe's reads, as a socket's (see `openPipe`); nothing when it was never opened. */
const pipeStream = (fd: number | null): Readable =>
  fd === null ? Readable.from([]) : new Socket({ fd, readable: true, writable: false });

/** Lists at most this many rejected or conflicting lines; the counts cover the rest. */
const maxListed = 50;

/**
 * The end-of-import summary, one fact per line. Field names, reasons and job ids echo the
 * file (a tag name is whatever the file wrote), so each line is printed inert: an escape
 * sequence or line break from the file cannot drive the terminal or forge a line.
 */
export function formatImportSummary(summary: ImportSummary, source: string): string[] {
  return importSummaryLines(summary, source).map(printable);
}

function importSummaryLines(summary: ImportSummary, source: string): string[] {
  const lines = [
    `imported ${source}: ${summary.total} receipts, ${summary.created} created, ${summary.duplicate} duplicate, ${summary.updated} updated, ${summary.conflicts.length} conflicting, ${summary.rejected.length} rejected`,
  ];
  for (const c of summary.conflicts.slice(0, maxListed)) {
    lines.push(`line ${c.line}: conflict: ${c.jobId} differs in ${c.differences.join(", ")}`);
  }
  for (const r of summary.rejected.slice(0, maxListed)) {
    lines.push(`line ${r.line}: rejected: ${r.field}: ${r.reason}`);
  }
  const hidden =
    Math.max(0, summary.conflicts.length - maxListed) +
    Math.max(0, summary.rejected.length - maxListed);
  if (hidden > 0) lines.push(`... and ${hidden} more lines`);
  if (summary.reconnected > 0) {
    lines.push(
      `${summary.reconnected} ${summary.reconnected === 1 ? "batch was" : "batches were"} written again after the database connection was lost; each receipt is counted once`,
    );
  }
  if (summary.undated > 0) {
    lines.push(
      `${summary.undated} created without created_at: dated now, at the import, so receipt.time fails each imported longer after its lock than the settlement window and receiptTimeSkewSeconds (720 s by default); add the column to date them`,
    );
  }
  return lines;
}

/**
 * `decentral-audit import FILE|-`: imports receipts, shows progress on a TTY, prints a summary
 * and resolves with the exit code: 0 when every line was accepted, 1 when any was rejected. A
 * source holding no receipt is refused (exit 2) unless `allowEmpty`.
 */
export async function runImportCommand(
  store: Store,
  file: string,
  flags: { format?: string; allowEmpty?: boolean },
  io: ImportCommandIo,
): Promise<number> {
  const fromStdin = file === "-";
  // `import "$FILE"` with FILE unset: said as such, not as ": no such file".
  if (file.trim() === "") {
    throw new AppError("bad_request", "file: empty path (give a file, or - for stdin)", {
      field: "file",
    });
  }
  const format = formatOf(fromStdin ? "" : file, flags.format);
  const stat = fromStdin ? null : readable(file, () => statSync(file, { throwIfNoEntry: false }));
  // A pipe is read as stdin is: `import <(zcat receipts.jsonl.gz)` and `import /dev/stdin` name
  // one, and were refused as "not a file". A folder or a device (/dev/zero never ends) is not.
  if (!fromStdin && !stat?.isFile() && !stat?.isFIFO()) {
    throw new AppError("bad_request", `${file}: ${stat ? "not a file" : "no such file"}`, {
      field: "file",
    });
  }
  // A file is opened here, so that one this user may not read is refused naming it; a pipe is
  // opened once its writer opens it, and read as a socket: a file stream's read of it waits in
  // the thread pool, where a stop leaves it waiting.
  const input = fromStdin
    ? io.stdin
    : stat?.isFile()
      ? createReadStream(file, { fd: readable(file, () => openSync(file, "r")) })
      : pipeStream(await openPipe(file, io.signal));
  const size = stat?.isFile() ? stat.size : 0;
  const bar =
    io.progress && size > 0
      ? new SingleBar(
          {
            format: "importing [{bar}] {percentage}% | {lines} lines",
            hideCursor: true,
            // stderr, so stdout carries only the summary and can be piped.
            stream: process.stderr,
          },
          Presets.shades_classic,
        )
      : undefined;
  bar?.start(size, 0, { lines: 0 });
  try {
    const summary = await importReceipts(store, input, {
      ...format,
      onProgress: (bytes, lines) => bar?.update(Math.min(bytes, size), { lines }),
      onReconnect: (line, error) =>
        io.err(
          printable(
            `line ${line}: the database connection was lost (${messageOf(error)}); writing the batch from this line again on a new connection (for up to ${reconnectWithinMs / 1000} s from the first loss)`,
          ),
        ),
      ...(io.signal ? { signal: io.signal } : {}),
    });
    if (summary.stopped === undefined) bar?.update(size);
    bar?.stop();
    // The summary on stdout, its details on stderr.
    const print = () => {
      const [head, ...details] = formatImportSummary(summary, fromStdin ? "stdin" : file);
      io.out(head ?? "");
      for (const line of details) io.err(line);
    };
    if (summary.stopped !== undefined) {
      print();
      const name = String(io.signal?.reason ?? "a signal");
      io.err(
        `stopped by ${printable(name)} after line ${summary.stopped.afterLine}: the lines before are imported, the rest of the ${fromStdin ? "input" : "file"} was not read; running the import again is safe (receipts already imported are counted duplicate)`,
      );
      const number = os.signals[name as keyof typeof os.signals];
      return number === undefined ? 1 : 128 + number;
    }
    if (summary.total === 0 && flags.allowEmpty !== true) {
      // A cron importing last night's export sees exit 0 for a file its exporter left empty
      // (a failed query, a full disk, a rotated path) and the day's jobs are never audited.
      throw new AppError(
        "validation_failed",
        `${fromStdin ? "stdin" : file}: no receipt in it (empty, blank lines, or a CSV header alone); nothing was imported; pass --allow-empty if an export may have nothing to say`,
        { field: "file" },
      );
    }
    print();
    return summary.rejected.length > 0 ? 1 : 0;
  } finally {
    bar?.stop();
  }
}
