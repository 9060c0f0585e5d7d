import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { inReadSnapshot } from "../src/store/prepared.js";
import { reportsStore } from "../src/store/reports.js";

/**
 * A report's recompute reads a day's jobs and rollups on one snapshot. It used to take the
 * write lock for as long as that took, and a serve beside it stalled paid traffic for seconds.
 */
describe("a read snapshot", () => {
  it("holds no writer back, and its reads do not see what was written meanwhile", () => {
    const path = join(mkdtempSync(join(tmpdir(), "snapshot-")), "audit.db");
    const store = openSqliteStore(path);
    migrateStore(store);
    const other = new Database(path);
    other.pragma("busy_timeout = 0");
    const insert = other.prepare(
      `INSERT INTO jobs (job_id, source, receipt_hash, created_at, recorded_at, updated_at)
       VALUES (?, 'ingest', 'h', 1, 1, 1)`,
    );
    const count = store.sqlite.prepare("SELECT count(*) FROM jobs").pluck();
    try {
      const seen = inReadSnapshot(store, () => {
        const before = count.get();
        // Another process writes while the snapshot is open: it must not wait, nor be seen.
        insert.run("job_written_meanwhile");
        return [before, count.get()];
      });
      expect(seen).toEqual([0, 0]);
      expect(count.get()).toBe(1);
    } finally {
      other.close();
      store.close();
    }
  });

  it("serves the recompute's day reads", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "snapshot-")), "audit.db");
    const store = openSqliteStore(path);
    migrateStore(store);
    const other = new Database(path);
    other.pragma("busy_timeout = 0");
    try {
      // Held open by a writer elsewhere: a read that wanted the write lock would fail at once.
      other.prepare("BEGIN IMMEDIATE").run();
      const day = await reportsStore(store).rollupDay(20_000);
      expect(day).toEqual({ scratch: [], stored: [] });
      other.prepare("COMMIT").run();
    } finally {
      other.close();
      store.close();
    }
  });
});
