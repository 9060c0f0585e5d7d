import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { createReceiptsStore } from "../src/store/receipts.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { receipt } from "./support/recorder-fixtures.js";

/**
 * `import` of a file already imported (a cron that runs its export again, a rerun after a
 * failure) on PostgreSQL: 100,000 receipts took 47 s the first time and 291 s the second, a
 * round trip per receipt to read its recorded row. The rows of a batch are read in one.
 */

const database = usePostgresDatabase({ migrated: true });
let store: PgStore;

beforeAll(async () => {
  store = openPostgres(database.url, { poolSize: 2, statementTimeoutMs: 30_000 });
});
afterAll(async () => {
  await store.close();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** Statements sent to the server while `run` runs. */
async function statementsOf(run: () => Promise<unknown>): Promise<number> {
  const query = vi.spyOn(pg.Client.prototype, "query");
  try {
    await run();
    return query.mock.calls.length;
  } finally {
    query.mockRestore();
  }
}

describe("a batch of receipts recorded again on PostgreSQL", () => {
  it("reads the recorded rows in one statement and answers each as before", async () => {
    const receipts = createReceiptsStore(store);
    const batch = Array.from({ length: 300 }, () => receipt());
    const first = await receipts.record(batch, "import");
    expect(first.every((r) => r.outcome === "created")).toBe(true);

    // The same batch, one receipt of it changed and one job named twice.
    const changed = { ...batch[7]!, model: "llama-3.3-70b" };
    const again = [...batch.slice(0, 7), changed, ...batch.slice(8), { ...batch[3]! }];
    let results: Awaited<ReturnType<typeof receipts.record>> = [];
    const statements = await statementsOf(async () => {
      results = await receipts.record(again, "import");
    });
    expect(results[7]).toMatchObject({ outcome: "conflict" });
    expect(results.filter((r) => r.outcome === "duplicate")).toHaveLength(300);
    // Its transaction, the writers' turn, the clock, the insert, the read, the conflict's
    // writes, the repeated job's read: a few dozen at most, never one per receipt.
    expect(statements).toBeLessThan(40);
  });
});
