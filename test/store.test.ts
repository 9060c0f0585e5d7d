import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { eq } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import {
  JOURNAL_SIZE_LIMIT,
  openSqliteStore,
  type SqliteStore,
  setBusyTimeout,
} from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { jobs } from "../src/db/schema.js";
import { createTestStore } from "./support/store.js";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

/** A migrated store on a file in a fresh temporary folder, closed and removed after the test. */
function fileStore(options: { busyTimeoutMs?: number } = {}): { store: SqliteStore; path: string } {
  const dir = mkdtempSync(join(tmpdir(), "store-test-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "audit.db");
  const store = openSqliteStore(path, options);
  cleanups.push(() => store.close());
  migrateStore(store);
  return { store, path };
}

const pragma = (store: SqliteStore, name: string) => store.sqlite.pragma(name, { simple: true });

describe("store", () => {
  it("applies the migrations with WAL-ready pragmas and foreign keys on", () => {
    const store = createTestStore();
    expect(store.sqlite.pragma("foreign_keys", { simple: true })).toBe(1);
    const tables = store.sqlite
      .prepare("select name from sqlite_master where type = 'table' order by name")
      .all()
      .map((r) => (r as { name: string }).name);
    expect(tables).toEqual(
      expect.arrayContaining(["jobs", "chain_transactions", "check_results", "verification_runs"]),
    );
  });

  it("round-trips amounts as bigint", () => {
    const store = createTestStore();
    const now = Date.now();
    store.db
      .insert(jobs)
      .values({
        jobId: "job_a",
        source: "ingest",
        receiptHash: "h",
        createdAt: now,
        recordedAt: now,
        updatedAt: now,
        creditsRemainingUnits: 99_920_000n,
      })
      .run();
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, "job_a")).get();
    expect(row?.creditsRemainingUnits).toBe(99_920_000n);
    expect(row?.verdict).toBe("pending");
    expect(row?.tags).toEqual({});
  });

  it("opens a file database as several processes need it: WAL, busy timeout, synchronous NORMAL, foreign keys", () => {
    const { store } = fileStore();
    // WAL: readers (reports, the API) go on while the verifier or the recorder writes.
    expect(pragma(store, "journal_mode")).toBe("wal");
    // A second writer waits for the lock this long instead of failing at once (CLI default).
    expect(pragma(store, "busy_timeout")).toBe(5000);
    // NORMAL (1) is durable in WAL mode across a process crash; FULL would fsync every commit.
    expect(pragma(store, "synchronous")).toBe(1);
    expect(pragma(store, "foreign_keys")).toBe(1);
    expect(pragma(store, "journal_size_limit")).toBe(JOURNAL_SIZE_LIMIT);
  });

  it("takes the busy timeout a serving process asks for, and a longer one around a migration", () => {
    const { store } = fileStore({ busyTimeoutMs: 250 });
    expect(pragma(store, "busy_timeout")).toBe(250);
    setBusyTimeout(store, 10_000);
    expect(pragma(store, "busy_timeout")).toBe(10_000);
  });

  it("leaves the file in WAL mode for every other connection, openSqliteStore's or not", () => {
    const { path } = fileStore();
    const second = openSqliteStore(path);
    cleanups.push(() => second.close());
    expect(pragma(second, "journal_mode")).toBe("wal");
    expect(pragma(second, "foreign_keys")).toBe(1);
    // journal_mode=WAL is kept in the file itself, so a plain connection (sqlite3, a backup
    // tool) joins the same WAL instead of taking exclusive locks.
    const plain = new Database(path, { readonly: true });
    cleanups.push(() => plain.close());
    expect(plain.pragma("journal_mode", { simple: true })).toBe("wal");
  });

  it("lets a writer commit while another connection is in the middle of a read", () => {
    const { path } = fileStore();
    // Timeout 0 on both: nothing below may wait for a lock, or it fails at once.
    const writer = openSqliteStore(path, { busyTimeoutMs: 0 });
    const reader = openSqliteStore(path, { busyTimeoutMs: 0 });
    cleanups.push(
      () => writer.close(),
      () => reader.close(),
    );
    const now = Date.now();
    const job = (jobId: string) => ({
      jobId,
      source: "ingest" as const,
      receiptHash: "h",
      createdAt: now,
      recordedAt: now,
      updatedAt: now,
    });
    const ids = () =>
      reader.db
        .select({ jobId: jobs.jobId })
        .from(jobs)
        .all()
        .map((r) => r.jobId);
    writer.db.insert(jobs).values(job("job_before")).run();

    // A long report holds a read transaction; a rollback journal would refuse the commit below.
    reader.sqlite.exec("BEGIN");
    expect(ids()).toEqual(["job_before"]);
    writer.sqlite.exec("BEGIN IMMEDIATE");
    writer.db.insert(jobs).values(job("job_during")).run();
    writer.sqlite.exec("COMMIT");
    // The reader keeps its snapshot until its transaction ends, then sees the commit.
    expect(ids()).toEqual(["job_before"]);
    reader.sqlite.exec("COMMIT");
    expect(ids()).toEqual(["job_before", "job_during"]);
  });
});
