import type { PgStore } from "../../db/pg/client.js";
import type { ReceiptSource } from "../../db/schema.js";
import type { Receipt, ReceiptsStore, RecordOptions, RecordResult } from "../receipts.js";
import type { PgExecutor } from "./executor.js";
import { notOnPostgresYet } from "./not-yet.js";

/** `recordReceiptsInTransaction` on PostgreSQL, inside the caller's transaction. */
export async function recordReceiptsPg(
  _tx: PgExecutor,
  _receipts: readonly Receipt[],
  _source: ReceiptSource,
  _options: RecordOptions = {},
): Promise<RecordResult[]> {
  throw notOnPostgresYet("receipts");
}

export function createPgReceiptsStore(_store: PgStore): ReceiptsStore {
  throw notOnPostgresYet("receipts");
}
