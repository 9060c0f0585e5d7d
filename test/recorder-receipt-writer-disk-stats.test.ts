import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";

// What statfs reports, set by each test for the paths it names: a file system that reports no
// sizes, or a full one, needs a mount this suite may not make. The files and writes are real.
const disk = vi.hoisted(() => ({
  stats: null as ((path: string) => { blocks: number; bavail: number } | null) | null,
}));
vi.mock("node:fs", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs")>();
  const statfsSync = ((path: string) => {
    const stats = real.statfsSync(path);
    const set = disk.stats?.(path) ?? null;
    if (set === null) return stats;
    return { ...stats, bsize: 4096, blocks: set.blocks, bfree: set.bavail, bavail: set.bavail };
  }) as typeof real.statfsSync;
  return { ...real, default: { ...real, statfsSync }, statfsSync };
});

const dirs: string[] = [];
afterEach(() => {
  disk.stats = null;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A writer over a migrated store at `path`, asked as the proxy asks before a paid job. */
async function refusesPaidWork(path: string): Promise<boolean> {
  const store = openSqliteStore(path);
  migrateStore(store);
  const writer = createReceiptWriter(store, { log: createLogger({ level: "silent" }) });
  try {
    const full = writer.full();
    expect(writer.health().reachable).toBe(!full);
    return full;
  } finally {
    await writer.close();
    store.close();
  }
}

describe("the SQLite receipt writer's free-space watch", () => {
  it("takes paid work on a file system that reports no sizes at all (0 blocks, 0 free)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "writer-disk-stats-"));
    dirs.push(dir);
    // Some FUSE and network mounts answer statfs with zeros: nothing is known of their room,
    // and the database on them takes writes.
    disk.stats = () => ({ blocks: 0, bavail: 0 });
    expect(await refusesPaidWork(join(dir, "audit.db"))).toBe(false);
  });

  it("reads the room of the disk the database file is on, not of the folder of a symlink to it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "writer-disk-stats-"));
    dirs.push(dir);
    const volume = join(dir, "volume");
    const app = join(dir, "app");
    mkdirSync(volume);
    mkdirSync(app);
    openSqliteStore(join(volume, "audit.db")).close();
    symlinkSync(join(volume, "audit.db"), join(app, "audit.db"));
    // The symlink's folder is on a full (or read-only) disk; the file, its WAL and its journal
    // are on a volume with room (SQLite opens them beside the file the link names).
    disk.stats = (path) =>
      path.startsWith(volume)
        ? { blocks: 1_000_000, bavail: 500_000 }
        : { blocks: 1_000_000, bavail: 0 };
    expect(await refusesPaidWork(join(app, "audit.db"))).toBe(false);
  });

  it("still refuses paid work on a full disk that reports its size", async () => {
    const dir = mkdtempSync(join(tmpdir(), "writer-disk-stats-"));
    dirs.push(dir);
    disk.stats = () => ({ blocks: 1_000_000, bavail: 2 });
    expect(await refusesPaidWork(join(dir, "audit.db"))).toBe(true);
  });
});
