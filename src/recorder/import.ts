import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { parse } from "csv-parse";
import type { Store } from "../db/client.js";
import { AppError } from "../errors.js";
import { ingestReceipts } from "./ingest.js";

/** File formats `import` reads. */
export type ImportFormat = "jsonl" | "csv";

export interface ImportOptions {
  /** Default: sniffed from the first character (`{` means JSONL, anything else CSV with a header). */
  format?: ImportFormat;
  /** Receipts per transaction. Default 1,000. */
  batchSize?: number;
  /** Called after each batch with the number of input bytes consumed so far. */
  onProgress?: (bytesRead: number, linesRead: number) => void;
  /** Clock (epoch ms). Default `Date.now`. */
  now?: () => number;
}

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
}

interface Item {
  line: number;
  value: unknown;
}

/** CSV usage columns, numbers that go into `usage`; every other column is text unless below. */
const usageColumns = new Set(["prompt_tokens", "completion_tokens", "total_tokens"]);

/**
 * Top-level receipt fields the ingest API takes only as JSON numbers: a cell of digits becomes
 * a number, anything else stays text for the receipt rules to refuse with the field named.
 */
const integerColumns = new Set(["max_tokens", "http_status"]);

/**
 * A CSV record (header names as keys) as the receipt object the ingest API takes: usage
 * columns become `usage`, `max_tokens` and `http_status` numbers, `tag_<name>` columns and a JSON `tags`
 * column become `tags`, and empty cells are absent.
 */
function receiptFromCsv(record: Record<string, string>): unknown {
  const receipt: Record<string, unknown> = {};
  const usage: Record<string, unknown> = {};
  let tags: Record<string, unknown> = {};
  for (const [column, cell] of Object.entries(record)) {
    const name = column.trim().toLowerCase();
    const value = cell.trim();
    if (value === "") continue;
    if (usageColumns.has(name)) {
      usage[name] = /^\d+$/.test(value) ? Number(value) : value;
    } else if (integerColumns.has(name)) {
      receipt[name] = /^\d+$/.test(value) ? Number(value) : value;
    } else if (name === "tags") {
      try {
        tags = { ...tags, ...(JSON.parse(value) as Record<string, unknown>) };
      } catch {
        receipt.tags = value;
      }
    } else if (name.startsWith("tag_")) {
      tags[name.slice(4)] = value;
    } else if (name === "created_at" && /^\d+(\.\d+)?$/.test(value)) {
      receipt.created_at = Number(value);
    } else {
      receipt[name] = value;
    }
  }
  if (Object.keys(usage).length > 0) receipt.usage = usage;
  if (receipt.tags === undefined && Object.keys(tags).length > 0) receipt.tags = tags;
  return receipt;
}

async function* jsonlItems(input: Readable): AsyncGenerator<Item> {
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let line = 0;
  for await (const text of lines) {
    line++;
    if (text.trim() === "") continue;
    let value: unknown;
    try {
      // Editors on some systems start a UTF-8 file with a byte-order mark.
      value = JSON.parse(line === 1 ? text.replace(/^\uFEFF/, "") : text);
    } catch {
      value = new SyntaxError("not valid JSON");
    }
    yield { line, value };
  }
}

/** Columns every CSV receipt needs: a receipt without them is refused by the ingest rules. */
const requiredColumns = ["job_id", "escrow_tx"];

/**
 * The header's column names, refused when two are the same field once trimmed and lowercased
 * (how `receiptFromCsv` reads them): the parser would otherwise keep the last cell silently.
 * A header without the required columns is no receipt file at all (a single line of anything
 * not starting with `{` is read as CSV): refused whole, rather than read as a header with no
 * rows and reported as 0 receipts.
 */
function csvColumns(header: string[]): string[] {
  const seen = new Set<string>();
  for (const column of header) {
    const name = column.trim().toLowerCase();
    // Which of the two cells is meant cannot be told: the file is refused as a whole, like one
    // without the receipt columns (exit 2 from `import`), not read as one rejected receipt.
    if (seen.has(name)) {
      throw new AppError(
        "validation_failed",
        `the CSV header (line 1) names column "${name}" twice; nothing was imported`,
        { field: "header" },
      );
    }
    seen.add(name);
  }
  const missing = requiredColumns.filter((name) => !seen.has(name));
  if (missing.length > 0) {
    throw new AppError(
      "validation_failed",
      `the CSV header (line 1) has no column ${missing.join(", ")}; nothing was imported (a file is read as JSONL when its first line starts with "{")`,
      { field: "header" },
    );
  }
  return header;
}

async function* csvItems(input: Readable): AsyncGenerator<Item> {
  const parser = input.pipe(
    parse({
      columns: csvColumns,
      bom: true,
      skip_empty_lines: true,
      info: true,
      // A row of the wrong length is one bad line, not the end of the file: it is read (its
      // cell count is in `info`) and refused below.
      relax_column_count: true,
    }),
  );
  for await (const row of parser as AsyncIterable<{
    record: Record<string, string>;
    info: { lines: number; index: number; columns: unknown[] };
  }>) {
    const { lines, index: cells, columns } = row.info;
    // Cells are matched to the header by position: a cell left out or one too many (an
    // unquoted comma) would put a wallet under `settlement_tx` or a model under
    // `credits_remaining`, and a receipt of shifted values would be recorded.
    const value =
      cells === columns.length
        ? receiptFromCsv(row.record)
        : new SyntaxError(`${cells} cells where the header has ${columns.length}`);
    yield { line: lines, value };
  }
}

/** Reads the first chunk to pick the format, then replays it ahead of the rest. */
async function sniff(input: Readable): Promise<{ format: ImportFormat; stream: Readable }> {
  const iterator = input[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const first = await iterator.next();
  const head = first.done ? "" : first.value.toString();
  const format: ImportFormat = head.trimStart().startsWith("{") ? "jsonl" : "csv";
  async function* replay() {
    if (!first.done) yield first.value;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { format, stream: Readable.from(replay(), { objectMode: false }) };
}

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
  const batchSize = options.batchSize ?? 1000;
  const now = options.now ?? Date.now;
  let stream = input;
  let format = options.format;
  if (!format) ({ format, stream } = await sniff(input));
  let bytesRead = 0;
  stream.on("data", (chunk: Buffer | string) => {
    bytesRead += chunk.length;
  });

  const summary: ImportSummary = {
    total: 0,
    created: 0,
    duplicate: 0,
    updated: 0,
    conflicts: [],
    rejected: [],
  };
  let batch: Item[] = [];
  let lastLine = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const values = batch.map((item) => item.value);
    const results = await ingestReceipts(store, values, "import", now());
    for (const result of results) {
      const item = batch[result.index] as Item;
      if (item.value instanceof SyntaxError) {
        summary.rejected.push({ line: item.line, field: "line", reason: item.value.message });
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
      }
    }
    summary.total += batch.length;
    batch = [];
    options.onProgress?.(bytesRead, lastLine);
  };

  const items = format === "csv" ? csvItems(stream) : jsonlItems(stream);
  try {
    for await (const item of items) {
      batch.push(item);
      lastLine = item.line;
      if (batch.length >= batchSize) await flush();
    }
  } catch (error) {
    if (error instanceof AppError) throw error;
    // A file that stops parsing (an unclosed CSV quote, say) keeps what was read before it,
    // and the summary says where reading stopped instead of the import dying without one.
    await flush();
    // The receipt where reading stopped is one read and refused, so that the summary's counts
    // add up to its total.
    summary.total++;
    summary.rejected.push({
      line: lastLine + 1,
      field: "file",
      reason: `${format.toUpperCase()} syntax: ${error instanceof Error ? error.message : String(error)}; the rest of the file was not read`,
    });
    return summary;
  }
  await flush();
  return summary;
}
