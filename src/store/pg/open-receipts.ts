import { and, inArray, isNotNull } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { jobs } from "../../db/pg/schema.js";
import { captureIsOpen } from "../../db/schema.js";
import type { OpenReceiptStore } from "../open-receipts.js";
import { takeReceiptWriterTurn } from "./group-commit.js";

/** The proxy's open captures by writer on PostgreSQL (see src/store/open-receipts.ts). */
export function createPgOpenReceiptStore(store: PgStore): OpenReceiptStore {
  const { db } = store;
  const open = captureIsOpen(jobs.captureState);
  return {
    async writers() {
      const rows = await db
        .selectDistinct({ writer: jobs.receiptWriter })
        .from(jobs)
        .where(and(open, isNotNull(jobs.receiptWriter)));
      return rows.flatMap((row) => (row.writer === null ? [] : [row.writer]));
    },
    async abort(dead, now) {
      if (dead.length === 0) return 0;
      // One statement: a capture its writer completed meanwhile is no longer open, and is left.
      // It locks many jobs' rows in the table's order; a receipt group of another host locking
      // two of them in its tasks' order closed a circle with it (a deadlock aborted one), so it
      // takes the receipt writers' turn first, as their other writers do.
      return db.transaction(async (tx) => {
        await takeReceiptWriterTurn(tx);
        // Rows another session holds locked are left out, never waited for with the turn
        // held (every receipt waited as long); the next sweep ends them.
        const free = tx
          .select({ jobId: jobs.jobId })
          .from(jobs)
          .where(and(open, inArray(jobs.receiptWriter, dead)))
          .orderBy(jobs.jobId)
          .for("update", { skipLocked: true });
        const ended = await tx
          .update(jobs)
          .set({ captureState: "aborted", receiptWriter: null, updatedAt: now })
          .where(and(open, inArray(jobs.receiptWriter, dead), inArray(jobs.jobId, free)))
          .returning({ jobId: jobs.jobId });
        return ended.length;
      });
    },
  };
}
