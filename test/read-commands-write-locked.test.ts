import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCli } from "./support/service-process.js";
import { storeOfOneReceipt, writeLockProcess } from "./support/write-lock-process.js";

/**
 * A read-only command run while another process holds SQLite's write lock (a long import, a
 * backup): every start migrated under the write lock even with nothing to apply, so the read
 * waited for the lock (39 s behind a 40 s lock), though readers need none under WAL.
 */
describe("read-only commands while another process holds the write lock", () => {
  let db: string;
  let locker: ReturnType<typeof writeLockProcess> | undefined;
  beforeAll(async () => {
    db = await storeOfOneReceipt("read-locked-");
    locker = writeLockProcess(db, 60_000);
    expect(await locker.take()).toMatch(/locked/);
  }, 30_000);
  afterAll(() => {
    locker?.kill();
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
