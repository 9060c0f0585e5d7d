import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import type { WriteUnit } from "../src/store/write-unit.js";

// The free space statfs reports for the database's folder, set by each test: a real full disk
// needs a mount this suite may not make. Everything else (the file, its writes) is real.
const disk = vi.hoisted(() => ({ freeBlocks: null as number | null }));
vi.mock("node:fs", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs")>();
  const statfsSync = ((path: string) => {
    const stats = real.statfsSync(path);
    if (disk.freeBlocks === null) return stats;
    return { ...stats, bsize: 4096, bfree: disk.freeBlocks, bavail: disk.freeBlocks };
  }) as typeof real.statfsSync;
  return { ...real, default: { ...real, statfsSync }, statfsSync };
});

/** A write of its own to a scratch table: one a full disk could still take. */
function scratchRow(value: string): WriteUnit<string> {
  return {
    runSqlite(store) {
      store.sqlite.prepare("INSERT INTO scratch (value) VALUES (?)").run(value);
      return value;
    },
    runPostgres: () => Promise.reject(new Error("SQLite only")),
  };
}

const dirs: string[] = [];
afterEach(() => {
  disk.freeBlocks = null;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("the SQLite receipt writer on a disk that is full before any receipt fails", () => {
  it("turns paid work away and fails /readyz without waiting for a receipt to be refused, and takes work again once the disk has room", async () => {
    const dir = mkdtempSync(join(tmpdir(), "writer-disk-full-"));
    dirs.push(dir);
    const store = openSqliteStore(join(dir, "audit.db"));
    migrateStore(store);
    store.sqlite.exec("CREATE TABLE scratch (value TEXT)");
    const writer = createReceiptWriter(store, { log: createLogger({ level: "silent" }) });
    expect(writer.full()).toBe(false);
    expect(writer.health()).toEqual({ reachable: true });

    // Something else filled the disk (the verifier's writes failing, another program's files):
    // 8 KiB left, less than one group commit of receipts may need. The proxy asks before it
    // forwards a paid job; it must be told no, not find out after the job ran and was charged.
    disk.freeBlocks = 2;
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(writer.full()).toBe(true);
    expect(writer.health()).toMatchObject({
      reachable: false,
      refusing: true,
      error: "only 8192 bytes free on the database's disk",
    });

    // A write already queued may still go in (WAL space a commit left free): that says nothing
    // about the next receipt's room, and the proxy keeps turning paid jobs away.
    await expect(writer.run(scratchRow("queued before"))).resolves.toBe("queued before");
    expect(writer.full()).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(writer.full()).toBe(true);

    // Room again: the writer's own probe finds the database taking writes within seconds.
    disk.freeBlocks = 100_000;
    const until = Date.now() + 5000;
    while (writer.full() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(writer.full()).toBe(false);
    expect(writer.health()).toEqual({ reachable: true });
    await writer.close();
    store.close();
  });
});
