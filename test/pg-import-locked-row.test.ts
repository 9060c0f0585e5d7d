import { describe, expect, it } from "vitest";
import { createPgReceiptsStore } from "../src/store/pg/receipts.js";
import { useStoreAndLocker } from "./support/pg-locker.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { receipt } from "./support/recorder-fixtures.js";

/**
 * `import` on PostgreSQL writes through `createPgReceiptsStore.record`, not the receipt writer:
 * a job row held locked by another session (an operator's `SELECT … FOR UPDATE`) made it wait
 * the whole statement timeout per receipt, then fail with a bare "canceling statement".
 */

const database = usePostgresDatabase({ migrated: true });
const pgs = useStoreAndLocker(database, { poolSize: 2, statementTimeoutMs: 30_000 });

describe("an import's write of a job whose row another session holds locked", () => {
  it("is refused within seconds naming the job, nothing of its batch written", async () => {
    const receipts = createPgReceiptsStore(pgs.store);
    const first = receipt({ settlementTx: null });
    await receipts.record([first], "ingest");
    const other = receipt();
    const settled = { ...first, settlementTx: receipt().settlementTx };
    try {
      await pgs.locker.query("BEGIN");
      await pgs.locker.query("SELECT * FROM jobs WHERE job_id = $1 FOR UPDATE", [first.jobId]);
      const started = performance.now();
      const error = await receipts.record([other, settled], "ingest").catch((e: unknown) => e);
      expect(performance.now() - started).toBeLessThan(15_000);
      expect(error).toMatchObject({ code: "locked" });
      expect((error as Error).message).toContain(`job ${first.jobId}:`);
      expect((error as Error).message).not.toContain(other.jobId);
    } finally {
      await pgs.locker.query("ROLLBACK");
    }
    const { rows } = await pgs.store.pool.query("SELECT job_id FROM jobs WHERE job_id = $1", [
      other.jobId,
    ]);
    expect(rows).toEqual([]);
    const again = await receipts.record([other, settled], "ingest");
    expect(again.map((r) => r.outcome)).toEqual(["created", expect.any(String)]);
  }, 40_000);
});
