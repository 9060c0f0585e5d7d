import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import type { WriteUnit } from "../src/store/write-unit.js";

// A database that refuses a COMMIT, not a statement, and not for a lock: a full disk does this
// in WAL mode (the WAL cannot grow). A deferred foreign key fails the same way, at COMMIT.
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function fileStore(): SqliteStore {
  const dir = mkdtempSync(join(tmpdir(), "writer-refused-"));
  dirs.push(dir);
  const store = openSqliteStore(join(dir, "audit.db"));
  migrateStore(store);
  store.sqlite.exec(`CREATE TABLE refused_at_commit (
    job_id TEXT REFERENCES jobs(job_id) DEFERRABLE INITIALLY DEFERRED)`);
  return store;
}

/** A task whose row only the COMMIT refuses while `refuse.on` holds. */
function task(refuse: { on: boolean }, value: string): WriteUnit<string> {
  return {
    runSqlite(store) {
      const target = refuse.on ? "job_not_there" : null;
      store.sqlite.prepare("INSERT INTO refused_at_commit (job_id) VALUES (?)").run(target);
      return value;
    },
    runPostgres: () => Promise.reject(new Error("SQLite only")),
  };
}

describe("the SQLite receipt writer when the database refuses writes", () => {
  it("turns new work away, says so to /readyz, and answers waiting receipts with an error instead of leaving them hanging", async () => {
    const store = fileStore();
    const log = createLogger({ level: "silent" });
    const writer = createReceiptWriter(store, { log, refuseAfterMs: 300 });
    const refuse = { on: true };
    const started = Date.now();
    const outcome = writer.run(task(refuse, "first")).then(
      () => "written",
      (error: unknown) => (error as Error).message,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Refusing: the proxy's 503 before forwarding, and /readyz's failing database check.
    expect(writer.full()).toBe(true);
    expect(writer.health()).toMatchObject({ reachable: false, refusing: true, waiting: 1 });
    // Rejected after refuseAfterMs, not retried for ever: its client gets a 503.
    expect(await outcome).toMatch(/FOREIGN KEY/);
    expect(Date.now() - started).toBeLessThan(3000);
    await writer.idle();
    // With nothing waiting, a write of its own finds the database taking writes again (here the
    // database itself never refused; only that receipt's row did), so new work is let in.
    const until = Date.now() + 5000;
    while (writer.full() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(writer.full()).toBe(false);
    expect(writer.health()).toEqual({ reachable: true });

    // The next receipt is written.
    refuse.on = false;
    await expect(writer.run(task(refuse, "second"))).resolves.toBe("second");
    expect(writer.full()).toBe(false);
    expect(writer.health()).toEqual({ reachable: true });
    await writer.close();
    store.close();
  });
});

describe("a write that records what already happened, refused by the database", () => {
  it("is kept in memory up to a bound and written once writes work, or rejected when the writer closes", async () => {
    const store = fileStore();
    const log = createLogger({ level: "silent" });
    const writer = createReceiptWriter(store, { log, refuseAfterMs: 200, maxKept: 1 });
    const refuse = { on: true };
    let keptCalls = 0;
    const keep = () => {
      keptCalls++;
    };
    const settled = (promise: Promise<string>) =>
      promise.then(
        (value) => value,
        (error: unknown) => `rejected: ${(error as Error).message}`,
      );
    const first = settled(writer.run(task(refuse, "first"), { keep }));
    const second = settled(writer.run(task(refuse, "second"), { keep }));
    // One is kept; the second finds the bound reached and is rejected, for its caller to log.
    expect(await second).toMatch(/^rejected: .*FOREIGN KEY/);
    expect(keptCalls).toBe(1);
    // Kept writes are not a backlog to wait for: a stop is not held up by them.
    await writer.idle();
    expect(writer.health()).toMatchObject({ refusing: true, waiting: 1 });

    refuse.on = false;
    expect(await first).toBe("first");
    // Told once, however many times the database refused it after.
    expect(keptCalls).toBe(1);
    const until = Date.now() + 5000;
    while (writer.full() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(writer.health()).toEqual({ reachable: true });

    refuse.on = true;
    const third = settled(writer.run(task(refuse, "third"), { keep }));
    await new Promise((r) => setTimeout(r, 400));
    expect(keptCalls).toBe(2);
    // Closing while the database still refuses: a last try, then the caller hears of it.
    await writer.close();
    expect(await third).toMatch(/^rejected: .*FOREIGN KEY/);
    store.close();
  });
});

describe("a receipt the database refuses while the system clock steps back", () => {
  it("is still answered after refuseAfterMs of elapsed time, not after the clock catches up", async () => {
    const store = fileStore();
    const log = createLogger({ level: "silent" });
    const writer = createReceiptWriter(store, { log, refuseAfterMs: 300 });
    const refuse = { on: true };
    const realNow = Date.now.bind(Date);
    let stepMs = 0;
    const now = vi.spyOn(Date, "now").mockImplementation(() => realNow() - stepMs);
    try {
      const started = performance.now();
      const outcome = writer.run(task(refuse, "first")).then(
        () => "written",
        (error: unknown) => (error as Error).message,
      );
      // The database refused it once; then NTP (or a VM restored) steps the clock an hour back.
      await new Promise((resolve) => setTimeout(resolve, 100));
      stepMs = 3_600_000;
      // Its client is answered (a 503) within about refuseAfterMs, not held for the hour.
      const answered = await Promise.race([
        outcome,
        new Promise<string>((resolve) => setTimeout(() => resolve("still waiting"), 4000)),
      ]);
      expect(answered).toMatch(/FOREIGN KEY/);
      expect(performance.now() - started).toBeLessThan(3000);
    } finally {
      now.mockRestore();
      await writer.close();
      store.close();
    }
  });
});
