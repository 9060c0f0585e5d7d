import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { ingestReceipts } from "../src/recorder/ingest.js";
import { wireReceipt } from "./support/recorder-fixtures.js";
import { startCli } from "./support/service-process.js";

/**
 * A read-only command run while another process holds SQLite's write lock (a long import, a
 * backup): every start migrated under the write lock even with nothing to apply, so the read
 * waited for the lock (39 s behind a 40 s lock), though readers need none under WAL.
 */
describe("read-only commands while another process holds the write lock", () => {
  let db: string;
  let locker: ChildProcess;
  beforeAll(async () => {
    db = join(mkdtempSync(join(tmpdir(), "read-locked-")), "audit.db");
    const store = openSqliteStore(db);
    migrateStore(store);
    await ingestReceipts(store, [wireReceipt()], "ingest");
    store.close();
    const script = `const Database = require("better-sqlite3");
      const db = new Database(${JSON.stringify(db)});
      db.exec("BEGIN IMMEDIATE");
      console.log("locked");
      setTimeout(() => { db.exec("COMMIT"); db.close(); }, 60000);`;
    locker = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    const [chunk] = (await once(locker.stdout!, "data")) as [Buffer];
    expect(String(chunk)).toMatch(/locked/);
  }, 30_000);
  afterAll(() => {
    locker?.kill("SIGKILL");
  });

  it("report reconciliation reads at once, without waiting for the lock", async () => {
    const started = performance.now();
    const report = startCli([
      "report",
      "reconciliation",
      "--since",
      "24h",
      "--format",
      "json",
      "--db",
      db,
    ]);
    const code = await report.exited;
    expect(report.stderr()).toBe("");
    expect(code).toBe(0);
    // A start takes ~2 s on a loaded 2-core host; the migration's wait was the full 60 s.
    expect(performance.now() - started).toBeLessThan(15_000);
  }, 90_000);
});
