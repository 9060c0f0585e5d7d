import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { startWalCheckpointer } from "../src/db/wal-checkpointer.js";
import { ingestReceipts } from "../src/recorder/ingest.js";
import { wireReceipt } from "./support/recorder-fixtures.js";

describe("WAL checkpointer", () => {
  it("takes checkpoints off the store's connection and writes the WAL back from its worker", async () => {
    const store = openStore(join(mkdtempSync(join(tmpdir(), "recorder-wal-")), "audit.db"));
    migrateStore(store);
    const checkpointer = startWalCheckpointer(store, { intervalMs: 20 });
    expect(store.sqlite.pragma("wal_autocheckpoint", { simple: true })).toBe(0);
    ingestReceipts(
      store,
      Array.from({ length: 500 }, () => wireReceipt()),
      "import",
    );
    // A checkpoint that started after the writes saw them in the WAL and wrote them all back.
    await checkpointer.nextCheckpoint();
    const result = await checkpointer.nextCheckpoint();
    expect(result.log).toBeGreaterThan(0);
    expect(result.checkpointed).toBe(result.log);
    await checkpointer.close();
    expect(store.sqlite.pragma("wal_autocheckpoint", { simple: true })).toBe(1000);
    store.close();
  });
});
