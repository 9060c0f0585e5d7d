import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { createLogger } from "../src/log.js";
import {
  COMMIT_HOLD_METRIC,
  commitHoldsSinceLastRead,
  registerCommitHold,
} from "../src/recorder/commit-hold.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import type { WriteUnit } from "../src/store/write-unit.js";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

/** A migrated file database, a receipt writer over it, and a second connection to it. */
function writerOverFile() {
  const dir = mkdtempSync(join(tmpdir(), "commit-hold-"));
  const path = join(dir, "audit.db");
  const store = openSqliteStore(path);
  migrateStore(store);
  const other = new Database(path);
  const writer = createReceiptWriter(store, { log: createLogger({ level: "silent" }) });
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => {
    if (other.inTransaction) other.exec("ROLLBACK");
    other.close();
    store.close();
  });
  return { writer, other };
}

/** A task holding the event loop for `ms` inside the writer's transaction. */
const holding = (ms: number): WriteUnit<void> => ({
  runSqlite: (s) => {
    s.sqlite.prepare("PRAGMA user_version").get();
    const until = performance.now() + ms;
    while (performance.now() < until) {
      // The task's own statements, as long as a slow disk's would take.
    }
  },
  runPostgres: () => Promise.reject(new Error("SQLite only")),
});

/** `/metrics`' histogram of holds: its count and how many were longer than `bound` seconds. */
async function histogram(registry: Registry, bound: string) {
  const text = await registry.getSingleMetricAsString(COMMIT_HOLD_METRIC);
  const bucket = (le: string) => {
    const line = text
      .split("\n")
      .find((l) => l.startsWith(`${COMMIT_HOLD_METRIC}_bucket{le="${le}"}`));
    return Number(line?.split(" ").at(-1) ?? Number.NaN);
  };
  return { count: bucket("+Inf"), longer: bucket("+Inf") - bucket(bound) };
}

describe("how long the SQLite receipt writer's group commits hold the event loop", () => {
  it("counts each group commit, and names one that held the loop past 1 ms, in the readings and on /metrics", async () => {
    const { writer } = writerOverFile();
    const registry = new Registry();
    registerCommitHold(registry);
    commitHoldsSinceLastRead();
    const before = await histogram(registry, "0.002");

    // Three groups that hold the loop briefly, then one whose task holds it 5 ms.
    for (let i = 0; i < 3; i++) await writer.run(holding(0));
    await writer.run(holding(5));

    const read = commitHoldsSinceLastRead();
    expect(read.count).toBe(4);
    expect(read.overOneMs).toBeGreaterThanOrEqual(1);
    expect(read.maxMs).toBeGreaterThanOrEqual(5);
    const after = await histogram(registry, "0.002");
    expect(after.count - before.count).toBe(4);
    expect(after.longer - before.longer).toBeGreaterThanOrEqual(1);
    // A reading starts the next stretch: nothing since.
    expect(commitHoldsSinceLastRead()).toEqual({ count: 0, overOneMs: 0, p99Ms: 0, maxMs: 0 });
    await writer.close();
  });

  it("counts an attempt that found the write lock taken, which returned at once", async () => {
    const { writer, other } = writerOverFile();
    commitHoldsSinceLastRead();
    other.exec("BEGIN IMMEDIATE");
    const written = writer.run(holding(0));
    // The first attempt finds the lock taken and is tried again from a timer.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const whileLocked = commitHoldsSinceLastRead();
    expect(whileLocked.count).toBeGreaterThanOrEqual(1);
    // Not SQLite's busy handler waiting for the lock, which is held 300 ms (bounded at half of
    // that: a loaded host may pause any JavaScript for tens of ms).
    expect(whileLocked.maxMs).toBeLessThan(150);
    other.exec("ROLLBACK");
    await written;
    expect(commitHoldsSinceLastRead().count).toBeGreaterThanOrEqual(1);
    await writer.close();
  });
});
