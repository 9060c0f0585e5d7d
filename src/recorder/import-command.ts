import { createReadStream, openSync, statSync } from "node:fs";
import { extname } from "node:path";
import type { Readable } from "node:stream";
import { Presets, SingleBar } from "cli-progress";
import type { Store } from "../db/client.js";
import { AppError } from "../errors.js";
import { printable } from "../printable-text.js";
import { type ImportFormat, type ImportSummary, importReceipts } from "./import.js";

/** Output of the `import` command: where lines go, and whether to draw a progress bar. */
export interface ImportCommandIo {
  stdin: Readable;
  out: (line: string) => void;
  err: (line: string) => void;
  /** Draw a progress bar on stderr (when stderr is a TTY; only for a file, whose size is known). */
  progress: boolean;
}

function formatOf(file: string, flag: string | undefined): ImportFormat | undefined {
  if (flag === "jsonl" || flag === "csv") return flag;
  if (flag !== undefined) {
    throw new AppError("validation_failed", `--format must be jsonl or csv, not ${flag}`, {
      field: "format",
    });
  }
  const ext = extname(file).toLowerCase();
  if (ext === ".csv") return "csv";
  if (ext === ".jsonl" || ext === ".ndjson") return "jsonl";
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
    if (code !== "EACCES" && code !== "EPERM") throw error;
    throw new AppError(
      "bad_request",
      `${file}: this user (uid ${process.getuid?.()}) may not read it or a folder on its path (${code}); nothing was imported`,
      { field: "file" },
      { cause: error },
    );
  }
}

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
  // opened by its stream (opening it waits for its writer).
  const input = fromStdin
    ? io.stdin
    : stat?.isFile()
      ? createReadStream(file, { fd: readable(file, () => openSync(file, "r")) })
      : createReadStream(file);
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
      ...(format ? { format } : {}),
      onProgress: (bytes, lines) => bar?.update(Math.min(bytes, size), { lines }),
    });
    bar?.update(size);
    bar?.stop();
    if (summary.total === 0 && flags.allowEmpty !== true) {
      // A cron importing last night's export sees exit 0 for a file its exporter left empty
      // (a failed query, a full disk, a rotated path) and the day's jobs are never audited.
      throw new AppError(
        "validation_failed",
        `${fromStdin ? "stdin" : file}: no receipt in it (empty, blank lines, or a CSV header alone); nothing was imported; pass --allow-empty if an export may have nothing to say`,
        { field: "file" },
      );
    }
    const [head, ...details] = formatImportSummary(summary, fromStdin ? "stdin" : file);
    io.out(head ?? "");
    for (const line of details) io.err(line);
    return summary.rejected.length > 0 ? 1 : 0;
  } finally {
    bar?.stop();
  }
}
