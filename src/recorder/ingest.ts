import type { Store } from "../db/client.js";
import {
  createReceiptsStore,
  type Receipt,
  type ReconnectOptions,
  type RecordResult,
  recordReceiptsUnit,
} from "../store/receipts.js";
import { type ParsedReceipt, parseReceiptInput } from "./receipt-input.js";
import type { ReceiptWriter } from "./receipt-writer.js";

/** Most receipts accepted in one `POST /jobs`. */
export const maxBatchSize = 1000;

/**
 * Largest `POST /jobs` body, refused by its Content-Length (or by the bytes streamed so far)
 * before anything is parsed: 4 MiB, about 4 KB for each of 1,000 receipts. A plain receipt
 * takes about 500 bytes; the rest is room for tags.
 */
export const maxIngestBodyBytes = 4 * 1024 * 1024;

/** Outcome of one item of a batch, in the order the items were sent. */
export interface IngestItemResult {
  index: number;
  jobId?: string;
  status: "created" | "duplicate" | "updated" | "conflict" | "rejected";
  /** For `rejected`: the field at fault and why. */
  field?: string;
  reason?: string;
  /** For `conflict`: the fields that differ from the recorded receipt. */
  differences?: string[];
}

/**
 * Validates and records receipts, each accepted or rejected on its own, all accepted ones in
 * one transaction: the outcome list is complete or, if the database fails, nothing is written.
 * `pace` (an import's, see `importPace`) is awaited between the validation and the transaction,
 * and told how many receipts it wrote and how long it took (the wait for its lock included).
 * With `reconnect`, a transaction whose PostgreSQL connection is lost is written again on a
 * fresh one for a while (`ReconnectOptions`), its outcomes counted once.
 */
export async function ingestReceipts(
  store: Store,
  items: readonly unknown[],
  source: "ingest" | "import",
  now = Date.now(),
  pace?: { before(): Promise<void>; after(count: number, ms: number): void },
  reconnect?: ReconnectOptions,
): Promise<IngestItemResult[]> {
  const { parsed, accepted } = parseAll(items);
  await pace?.before();
  const started = performance.now();
  const outcomes = await createReceiptsStore(store, reconnect).record(accepted, source, { now });
  pace?.after(accepted.length, performance.now() - started);
  return itemResults(parsed, outcomes);
}

/**
 * `ingestReceipts` through the receipt writer: validated here, recorded in the writer's next
 * group commit, and resolved only once that commit is durable (so a 2xx is never lost).
 */
export async function ingestReceiptsVia(
  writer: ReceiptWriter,
  items: readonly unknown[],
  source: "ingest" | "import",
  now = Date.now(),
): Promise<IngestItemResult[]> {
  const { parsed, accepted } = parseAll(items);
  const outcomes =
    accepted.length === 0 ? [] : await writer.run(recordReceiptsUnit(accepted, source, { now }));
  return itemResults(parsed, outcomes);
}

function parseAll(items: readonly unknown[]) {
  const parsed: ParsedReceipt[] = items.map(parseReceiptInput);
  const accepted: Receipt[] = [];
  for (const p of parsed) if (p.ok) accepted.push(p.receipt);
  return { parsed, accepted };
}

function itemResults(parsed: ParsedReceipt[], outcomes: RecordResult[]): IngestItemResult[] {
  let next = 0;
  return parsed.map((p, index): IngestItemResult => {
    if (!p.ok) return { index, status: "rejected", field: p.field, reason: p.reason };
    const result = outcomes[next++] as RecordResult;
    return {
      index,
      jobId: p.receipt.jobId,
      status: result.outcome,
      ...(result.differences ? { differences: result.differences } : {}),
    };
  });
}

/** Counts of a batch's outcomes by status. */
export function summarize(results: readonly IngestItemResult[]) {
  const counts = { created: 0, duplicate: 0, updated: 0, conflict: 0, rejected: 0 };
  for (const r of results) counts[r.status]++;
  return counts;
}
