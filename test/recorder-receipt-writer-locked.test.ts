import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import type { WriteUnit } from "../src/store/write-unit.js";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

/** How long each `BEGIN IMMEDIATE` ran, on any connection of this process, while recording. */
function timeBegins(): { durations: number[]; stop(): void } {
  const probe = new Database(":memory:");
  const proto = Object.getPrototypeOf(probe.prepare("SELECT 1")) as {
    run: (...args: unknown[]) => unknown;
  };
  probe.close();
  const original = proto.run;
  const durations: number[] = [];
  proto.run = function (this: { source: string }, ...args: unknown[]) {
    const started = performance.now();
    try {
      return original.apply(this, args);
    } finally {
      if (/^BEGIN IMMEDIATE/i.test(this.source)) durations.push(performance.now() - started);
    }
  };
  const stop = () => {
    proto.run = original;
  };
  cleanups.push(stop);
  return { durations, stop };
}

describe("the SQLite receipt writer while another connection holds the write lock", () => {
  it("never waits for the lock on the event loop, and writes within ms of its release", async () => {
    const dir = mkdtempSync(join(tmpdir(), "writer-locked-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "audit.db");
    const store = openSqliteStore(path);
    migrateStore(store);
    const other = new Database(path);
    cleanups.push(() => {
      if (other.inTransaction) other.exec("ROLLBACK");
      other.close();
      store.close();
    });
    const writer = createReceiptWriter(store, { log: createLogger({ level: "silent" }) });
    const task: WriteUnit<string> = {
      runSqlite: (s) => {
        s.sqlite.prepare("PRAGMA user_version").get();
        return "written";
      },
      runPostgres: () => Promise.reject(new Error("SQLite only")),
    };

    // Another worker (or the leader's thread) holds the write lock for 400 ms.
    other.exec("BEGIN IMMEDIATE");
    const begins = timeBegins();
    let writtenAt = 0;
    const written = writer.run(task).then((value) => {
      writtenAt = performance.now();
      return value;
    });
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(writtenAt).toBe(0);
    const releasedAt = performance.now();
    other.exec("COMMIT");
    expect(await written).toBe("written");
    begins.stop();

    // Every attempt that found the lock taken returned at once instead of sleeping in SQLite's
    // busy handler, where the event loop (every proxied byte) waited with it.
    const attempts = begins.durations.length;
    expect(attempts).toBeGreaterThan(10);
    const sorted = [...begins.durations].sort((a, b) => a - b);
    expect(sorted[Math.floor(attempts / 2)]).toBeLessThan(0.5);
    // Retried often enough that the receipt (and its client's answer) follows the release.
    expect(writtenAt - releasedAt).toBeLessThan(60);
    await writer.close();
  });
});
