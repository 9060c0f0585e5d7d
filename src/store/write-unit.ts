import type { SqliteStore } from "../db/client.js";
import type { ReceiptSource } from "../db/schema.js";
import type { BackfillClaim } from "./backfill.js";
import type { JobsApiAnswer } from "./jobs-api.js";
import type { PgExecutor } from "./pg/executor.js";
import type { Receipt } from "./receipt-rules.js";
import type { RecordOptions } from "./receipts.js";

/**
 * One write a group-committing writer (the receipt writer) runs inside its shared transaction,
 * in either dialect: `runSqlite` runs synchronously on the writer's SQLite connection,
 * `runPostgres` on the writer's PostgreSQL transaction. Store modules build these (`recordReceiptsUnit`, …);
 * callers hand them to the writer without knowing which database is behind it.
 */
export interface WriteUnit<T> {
  runSqlite(store: SqliteStore): T;
  runPostgres(tx: PgExecutor): Promise<T>;
  /**
   * The jobs whose rows it writes, when it writes a few: a writer that holds one back (its row
   * locked) holds back the later units of those jobs too, so each job's are written in order.
   */
  jobIds?: readonly string[];
  /**
   * The unit as data, from which `unitOfData` (src/store/write-units.ts) builds it again: what
   * a writer running in a thread of its own is sent. Every unit the store modules build has it.
   */
  data?: WriteUnitData;
}

/** A write unit as plain data (structured-cloneable: bigints, no functions). */
export type WriteUnitData =
  | {
      kind: "receipts";
      receipts: readonly Receipt[];
      source: ReceiptSource;
      options: RecordOptions;
    }
  | {
      kind: "receiptAtAttempt";
      receipt: Receipt;
      createdAt: number | null;
      backfillDelayMs: number;
    }
  | { kind: "jobsApiAnswer"; jobId: string; answer: JobsApiAnswer; at: number }
  | { kind: "leaveToBackfill"; jobIds: readonly string[]; at: number }
  | {
      kind: "claimBackfill";
      claims: readonly BackfillClaim[];
      giveUps: readonly string[];
      at: number;
      farAfter: number;
    }
  | { kind: "giveUpBackfill"; jobId: string; at: number };
