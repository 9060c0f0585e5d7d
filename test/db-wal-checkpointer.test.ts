import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Worker } from "node:worker_threads";
import { describe, expect, it, vi } from "vitest";
import { walFileBytes } from "../src/api/metrics.js";
import { followCheckpoints, JOURNAL_SIZE_LIMIT, openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { deltaFoldRows, rollupDeltasTable } from "../src/db/rollups.js";
import { startWalCheckpointer } from "../src/db/wal-checkpointer.js";
import { ingestReceipts } from "../src/recorder/ingest.js";
import { recomputeRollups } from "../src/reports/rollup-recompute.js";
import { openWriterConnection } from "../src/store/group-commit.js";
import { recordReceiptsInTransaction } from "../src/store/receipts.js";
import { capturedLogger, receipt, wireReceipt } from "./support/recorder-fixtures.js";

describe("WAL checkpointer", () => {
  it("takes checkpoints off the store's connection and writes the WAL back from its worker", async () => {
    const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), "recorder-wal-")), "audit.db"));
    migrateStore(store);
    const checkpointer = startWalCheckpointer(store, { intervalMs: 20 });
    expect(store.sqlite.pragma("wal_autocheckpoint", { simple: true })).toBe(0);
    ingestReceipts(
      store,
      Array.from({ length: 500 }, () => wireReceipt()),
      "import",
    );
    // A checkpoint that started after the writes saw them in the WAL and wrote them all back.
    // Which one it is depends on the host's timing (the worker runs beside this thread, and one
    // that truncates the WAL leaves the next nothing to see): one of the next three.
    const results = [];
    for (let i = 0; i < 3; i++) results.push(await checkpointer.nextCheckpoint());
    expect(results.some((r) => r.log > 0 && r.checkpointed === r.log)).toBe(true);
    await checkpointer.close();
    expect(store.sqlite.pragma("wal_autocheckpoint", { simple: true })).toBe(1000);
    store.close();
  });

  it("cuts the WAL back to zero once it passes its size threshold, even after a reader pinned it", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "recorder-wal-")), "audit.db");
    const store = openSqliteStore(path);
    migrateStore(store);
    const reader = openSqliteStore(path);
    const checkpointer = startWalCheckpointer(store, {
      intervalMs: 20,
      truncateAboveBytes: 256 * 1024,
    });
    // A read transaction held open pins the WAL: PASSIVE checkpoints cannot reset it, so every
    // write below appends to it.
    reader.sqlite.exec("BEGIN");
    reader.sqlite.prepare("SELECT count(*) FROM jobs").get();
    for (let i = 0; i < 4; i++) {
      ingestReceipts(
        store,
        Array.from({ length: 500 }, () => wireReceipt()),
        "import",
      );
    }
    const grown = walFileBytes(store);
    expect(grown).toBeGreaterThan(256 * 1024);
    reader.sqlite.exec("COMMIT");
    // Only a TRUNCATE checkpoint shrinks the file (a PASSIVE one never does). Waiting for the
    // file, not for the next checkpoint's mode: on a loaded host the TRUNCATE may already have
    // run before the first look, and every checkpoint after it is PASSIVE.
    await vi.waitFor(
      async () => {
        await checkpointer.nextCheckpoint();
        expect(walFileBytes(store)).toBe(0);
        // What the checkpointer reports comes with a checkpoint's answer: the next one after.
        expect(checkpointer.walBytes()).toBe(0);
      },
      { timeout: 5000, interval: 1 },
    );
    await checkpointer.close();
    reader.close();
    store.close();
  });

  it("sets a journal size limit on every connection", () => {
    const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), "recorder-wal-")), "audit.db"));
    expect(store.sqlite.pragma("journal_size_limit", { simple: true })).toBe(JOURNAL_SIZE_LIMIT);
    store.close();
  });
  it("runs no checkpoint while nothing is committed, and one as soon as something is", async () => {
    const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), "recorder-wal-")), "audit.db"));
    migrateStore(store);
    const checkpointer = startWalCheckpointer(store, { intervalMs: 5 });
    const written = await checkpointer.nextCheckpoint();
    expect(written.checkpointed).toBe(written.log);
    // Idle: 40 ticks. Each one ran a checkpoint (and woke this thread) with nothing to do.
    const idleFrom = checkpointer.runs();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const idleRuns = checkpointer.runs();
    expect(idleRuns - idleFrom).toBeLessThanOrEqual(1);
    ingestReceipts(store, [wireReceipt()], "import");
    await vi.waitFor(() => expect(checkpointer.runs()).toBeGreaterThan(idleRuns), {
      timeout: 5000,
      interval: 5,
    });
    await checkpointer.close();
    store.close();
  });

  it("keeps checkpointing a WAL a reader kept from being written back, with no new commit", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "recorder-wal-")), "audit.db");
    const store = openSqliteStore(path);
    migrateStore(store);
    const reader = openSqliteStore(path);
    const checkpointer = startWalCheckpointer(store, { intervalMs: 50 });
    await checkpointer.nextCheckpoint();
    // The reader's snapshot ends inside the WAL (after one receipt, before the next): the next
    // one's frames cannot be written back while it reads. A checkpoint between the first
    // receipt and the read lets the reader skip the WAL, so that is tried until it pins.
    await vi.waitFor(
      async () => {
        if (reader.sqlite.inTransaction) reader.sqlite.exec("COMMIT");
        ingestReceipts(store, [wireReceipt()], "import");
        reader.sqlite.exec("BEGIN");
        reader.sqlite.prepare("SELECT count(*) FROM jobs").get();
        ingestReceipts(store, [wireReceipt()], "import");
        const pinned = await checkpointer.nextCheckpoint();
        expect(pinned.checkpointed).toBeLessThan(pinned.log);
      },
      { timeout: 5000, interval: 1 },
    );
    reader.sqlite.exec("COMMIT");
    // Nothing is committed from here on; the ticks still write the frames back.
    const runs = checkpointer.runs();
    await vi.waitFor(() => expect(checkpointer.runs()).toBeGreaterThan(runs), {
      timeout: 5000,
      interval: 5,
    });
    // Once the frames are written back, the ticks rest again.
    let seen = -1;
    await vi.waitFor(
      async () => {
        seen = checkpointer.runs();
        await new Promise((resolve) => setTimeout(resolve, 60));
        expect(checkpointer.runs()).toBe(seen);
      },
      { timeout: 5000, interval: 5 },
    );
    await checkpointer.close();
    reader.close();
    store.close();
  });
});

describe("WAL checkpointer: its thread ends", () => {
  it("puts every connection that followed it back to in-line checkpoints, so receipts alone keep the WAL bounded", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "recorder-wal-")), "audit.db");
    const store = openSqliteStore(path);
    migrateStore(store);
    let thread: Worker | undefined;
    const checkpointer = startWalCheckpointer(store, {
      intervalMs: 20,
      thread: (worker) => {
        thread = worker;
      },
    });
    // The receipt writer's connection and the lease's, as serve opens them.
    const writer = openWriterConnection(store, 0);
    const lease = openSqliteStore(path);
    followCheckpoints(store, lease);
    expect(writer.store.sqlite.pragma("wal_autocheckpoint", { simple: true })).toBe(0);
    // As a crash ends it: an error, then the exit.
    thread?.emit("error", new Error("worker crashed"));
    await thread?.terminate();
    // Receipts only (the proxy busy, nothing else writing), one a commit as the proxy sends
    // them: past 1,000 pages, a commit writes the WAL back and the next starts it over.
    // Measured: ~25 pages a receipt; 400 left 40 MB of WAL while only the thread checkpointed.
    for (let i = 0; i < 400; i++) ingestReceipts(writer.store, [wireReceipt()], "import");
    const pageSize = Number(store.sqlite.pragma("page_size", { simple: true }));
    expect(walFileBytes(store)).toBeLessThan(2000 * pageSize);
    for (const sqlite of [store.sqlite, writer.store.sqlite, lease.sqlite]) {
      expect(sqlite.pragma("wal_autocheckpoint", { simple: true })).toBe(1000);
    }
    await checkpointer.close();
    writer.close();
    lease.close();
    store.close();
  });

  it("stops after its thread ended, not waiting for an end that already came", async () => {
    const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), "recorder-wal-")), "audit.db"));
    let thread: Worker | undefined;
    const checkpointer = startWalCheckpointer(store, {
      intervalMs: 20,
      thread: (worker) => {
        thread = worker;
      },
    });
    await thread?.terminate();
    const stopped = await Promise.race([
      checkpointer.close().then(() => "stopped"),
      new Promise((resolve) => setTimeout(resolve, 2000, "still waiting")),
    ]);
    expect(stopped).toBe("stopped");
    store.close();
  });
  it("sums the pending rollup deltas on its thread once half the fold trigger's count is pending", async () => {
    const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), "recorder-wal-")), "audit.db"));
    migrateStore(store);
    const writer = openWriterConnection(store, 0);
    // As the receipt writer's group commits write them: small writes inside a transaction,
    // which leave their deltas to the fold trigger (at deltaFoldRows) or to this thread.
    const write = writer.immediate((count: number) => {
      for (let i = 0; i < count; i++) {
        recordReceiptsInTransaction(
          writer.store,
          [receipt({ createdAt: Date.now() - i * 60_000 })],
          "proxy",
        );
      }
    });
    const pending = store.sqlite.prepare(`SELECT count(*) FROM ${rollupDeltasTable}`).pluck();
    const checkpointer = startWalCheckpointer(store, { intervalMs: 20, foldIntervalMs: 5 });
    write(deltaFoldRows / 2 - 1);
    // Below the count: two checkpoints later, after the thread has looked, still pending.
    await checkpointer.nextCheckpoint();
    await checkpointer.nextCheckpoint();
    expect(pending.get()).toBe(deltaFoldRows / 2 - 1);
    write(1);
    await vi.waitFor(() => expect(pending.get()).toBe(0), { timeout: 5000, interval: 5 });
    expect((await recomputeRollups(store)).differences).toEqual([]);
    // The receipt writer's next commit goes through; its delta waits for the next fold.
    write(1);
    expect(pending.get()).toBe(1);
    await checkpointer.close();
    writer.close();
    store.close();
  });
  it("says once that it could not sum the deltas, and keeps checkpointing", async () => {
    // A database without the rollup tables (not a store's): every look at them fails.
    const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), "recorder-wal-")), "audit.db"));
    const { log, lines } = capturedLogger();
    const checkpointer = startWalCheckpointer(store, { intervalMs: 20, foldIntervalMs: 5, log });
    const other = openSqliteStore(store.sqlite.name);
    other.sqlite.exec("CREATE TABLE t (x)");
    for (let i = 0; i < 5; i++) {
      other.sqlite.prepare("INSERT INTO t VALUES (?)").run(i);
      await checkpointer.nextCheckpoint();
    }
    const failed = lines.filter((line) => line.includes("rollup fold failed"));
    expect(failed).toHaveLength(1);
    expect(failed[0]).toContain("job_rollup_deltas");
    expect((await checkpointer.nextCheckpoint()).checkpointed).toBeGreaterThan(0);
    await checkpointer.close();
    other.close();
    store.close();
  });
});
