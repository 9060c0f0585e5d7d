import type { Store } from "../db/client.js";
import type { ReceiptSource } from "../db/schema.js";
import {
  createReceiptsStore,
  type Receipt,
  type RecordOptions,
  type RecordResult,
} from "../store/receipts.js";

export {
  maxConflictSignatures,
  maxKeptSignatures,
  maxStoredConflicts,
  type OtherSignatures,
  type Receipt,
  type RecordOptions,
  type RecordOutcome,
  type RecordResult,
  receiptFields,
  receiptHash,
} from "../store/receipts.js";

/**
 * Records a receipt from `source`, idempotent on the job id (the outcomes are described on
 * `ReceiptsStore.record`).
 */
export async function recordReceipt(
  store: Store,
  receipt: Receipt,
  source: ReceiptSource,
  options: RecordOptions = {},
): Promise<RecordResult> {
  const [result] = await createReceiptsStore(store).record([receipt], source, options);
  return result as RecordResult;
}

/**
 * Records many receipts in one transaction: either every outcome is written or, if the
 * database fails, none is. Receipts are processed in order, so a job repeated within the batch
 * is a duplicate or conflict of its earlier item.
 */
export function recordReceipts(
  store: Store,
  receipts: readonly Receipt[],
  source: ReceiptSource,
  options: RecordOptions = {},
): Promise<RecordResult[]> {
  return createReceiptsStore(store).record(receipts, source, options);
}
