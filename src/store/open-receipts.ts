import { and, inArray, isNotNull } from "drizzle-orm";
import type { SqliteStore, Store } from "../db/client.js";
import { captureIsOpen, jobs } from "../db/schema.js";
import { pgTwins } from "./pg-twins.js";

/**
 * The proxy's open captures (a stream whose body has not ended) by the process writing them:
 * a process killed mid-stream never completes its own, so the one running the background work
 * ends those of dead writers (src/recorder/open-receipts.ts).
 */
export interface OpenReceiptStore {
  /** The writers named by open captures; captures written before writers were named are not. */
  writers(): Promise<string[]>;
  /**
   * Ends as `aborted` the captures still open of `writers` (known dead), their usage and
   * latency left unknown. Resolves with how many it ended.
   */
  abort(writers: string[], now: number): Promise<number>;
}

/** The open-capture store of either dialect. */
export function createOpenReceiptStore(store: Store): OpenReceiptStore {
  return store.kind === "postgres"
    ? pgTwins().createPgOpenReceiptStore(store)
    : createSqliteOpenReceiptStore(store);
}

function createSqliteOpenReceiptStore(store: SqliteStore): OpenReceiptStore {
  const { db } = store;
  // The literal term of the partial index `jobs_open_receipts`: a read of the few open rows.
  const open = captureIsOpen(jobs.captureState);
  const writers = db
    .selectDistinct({ writer: jobs.receiptWriter })
    .from(jobs)
    .where(and(open, isNotNull(jobs.receiptWriter)))
    .prepare();
  return {
    async writers() {
      return writers.all().flatMap((row) => (row.writer === null ? [] : [row.writer]));
    },
    async abort(dead, now) {
      if (dead.length === 0) return 0;
      // One statement: a capture its writer completed meanwhile is no longer open, and is left.
      return db
        .update(jobs)
        .set({ captureState: "aborted", receiptWriter: null, updatedAt: now })
        .where(and(open, inArray(jobs.receiptWriter, dead)))
        .run().changes;
    },
  };
}
