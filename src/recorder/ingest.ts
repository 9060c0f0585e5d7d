import type { Store } from "../db/client.js";
import { type ParsedReceipt, parseReceiptInput } from "./receipt-input.js";
import { type Receipt, type RecordResult, recordReceipts } from "./receipts.js";

/** Most receipts accepted in one `POST /jobs`. */
export const maxBatchSize = 1000;

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
 */
export function ingestReceipts(
  store: Store,
  items: readonly unknown[],
  source: "ingest" | "import",
  now = Date.now(),
): IngestItemResult[] {
  const parsed: ParsedReceipt[] = items.map(parseReceiptInput);
  const accepted: Receipt[] = [];
  for (const p of parsed) if (p.ok) accepted.push(p.receipt);
  const outcomes: RecordResult[] = recordReceipts(store, accepted, source, { now });
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
