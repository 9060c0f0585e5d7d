import { mkdirSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import type { Worker } from "node:worker_threads";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { createLogger } from "../src/log.js";
import {
  commitHoldsSinceLastRead,
  writerThreadCommitsSinceLastRead,
} from "../src/recorder/commit-hold.js";
import type { ReceiptWriter } from "../src/recorder/receipt-writer.js";
import { startThreadedReceiptWriter } from "../src/recorder/threaded-receipt-writer.js";
import { recordReceiptAtAttemptUnit, recordReceiptsUnit } from "../src/store/receipts.js";
import { migratedFileStore } from "./support/file-store.js";
import { receipt } from "./support/recorder-fixtures.js";

/**
 * `serve` on a database file commits receipts in a thread of its own: the same group commits
 * and promises as the in-process writer, with no BEGIN IMMEDIATE ... COMMIT on the event loop
 * that proxies the bytes.
 */

const log = createLogger({ level: "silent" });
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Threaded {
  store: SqliteStore;
  writer: ReceiptWriter;
  path: string;
}

async function threaded(
  options: { refuseAfterMs?: number; thread?: (worker: Worker) => void; restartMs?: number } = {},
  cleanUp: (cleanup: () => unknown) => void = (cleanup) => cleanups.push(cleanup),
): Promise<Threaded> {
  const { store, path } = migratedFileStore("threaded-writer-");
  cleanUp(() => rmSync(dirname(path), { recursive: true, force: true }));
  cleanUp(() => store.close());
  const writer = await startThreadedReceiptWriter(store, { log, ...options });
  cleanUp(() => writer.close());
  return { store, writer, path };
}

/**
 * One writer, on a database of its own, for the tests that leave it as they found it (its
 * thread running, nothing held): a thread's start is most of such a test's time (it loads the
 * store's modules anew, through tsx when run from source).
 */
const sharedCleanups: (() => unknown)[] = [];
let sharedWriter: Promise<Threaded> | undefined;
const shared = () => {
  sharedWriter ??= threaded({}, (cleanup) => sharedCleanups.push(cleanup));
  return sharedWriter;
};
afterAll(async () => {
  for (const cleanup of sharedCleanups.splice(0).reverse()) await cleanup();
});

const jobRow = (store: SqliteStore, jobId: string) =>
  store.sqlite
    .prepare("SELECT job_id, created_at, total_tokens, capture_state FROM jobs WHERE job_id = ?")
    .get(jobId) as
    | { job_id: string; created_at: number; total_tokens: number; capture_state: string }
    | undefined;

describe("the receipt writer in a thread of its own", () => {
  it("commits each receipt before its promise settles, with the outcome the in-process writer gives", async () => {
    const { store, writer } = await shared();
    const first = receipt();
    const results = await Promise.all([
      writer.run(recordReceiptsUnit([first], "proxy")),
      writer.run(recordReceiptsUnit([receipt()], "proxy")),
    ]);
    expect(results).toEqual([[{ outcome: "created" }], [{ outcome: "created" }]]);
    // Committed when the promise settled: another connection reads it at once.
    expect(jobRow(store, first.jobId)?.total_tokens).toBe(30);
    // The same receipt again is a duplicate, as it would be in-process.
    expect(await writer.run(recordReceiptsUnit([first], "proxy"))).toEqual([
      { outcome: "duplicate" },
    ]);
    // A different one for the same job is a conflict naming what differs.
    const [conflict] = await writer.run(
      recordReceiptsUnit([{ ...first, totalTokens: 31, completionTokens: 21 }], "proxy"),
    );
    expect(conflict?.outcome).toBe("conflict");
    expect(conflict?.differences).toEqual(
      expect.arrayContaining(["completion_tokens", "total_tokens"]),
    );
  });

  it("dates a proxy receipt inside the transaction that commits it, and says when", async () => {
    const { store, writer } = await shared();
    const open = receipt();
    const before = Date.now();
    const { at } = await writer.run(recordReceiptAtAttemptUnit(open, null, 0));
    expect(at).toBeGreaterThanOrEqual(before);
    expect(at).toBeLessThanOrEqual(Date.now());
    expect(jobRow(store, open.jobId)?.created_at).toBe(at);
    // A later write of the same job keeps the first one's time.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const later = await writer.run(recordReceiptAtAttemptUnit({ ...open, totalTokens: 30 }, at, 0));
    expect(later.at).toBeGreaterThan(at);
    expect(jobRow(store, open.jobId)?.created_at).toBe(at);
  });

  it("holds no event loop of the process while it commits: a commit of 3,000 receipts leaves the loop turning", async () => {
    const { store, writer } = await shared();
    const jobCount = () =>
      (store.sqlite.prepare("SELECT count(*) AS n FROM jobs").get() as { n: number }).n;
    // The writer's database holds the jobs of the tests before: the commit adds 3,000.
    const before = jobCount();
    commitHoldsSinceLastRead();
    writerThreadCommitsSinceLastRead();
    const many = Array.from({ length: 3000 }, () => receipt());
    // The longest the loop went without a turn while the write ran.
    let longest = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
    }, 1);
    try {
      const results = await writer.run(recordReceiptsUnit(many, "ingest"));
      // The stretch since the last turn counts too (a loop held to the end never turned).
      longest = Math.max(longest, performance.now() - last);
      expect(results).toHaveLength(3000);
    } finally {
      clearInterval(ticker);
    }
    const thread = writerThreadCommitsSinceLastRead();
    // The one group took tens of ms in the thread (measured there and sent back)...
    expect(thread.count).toBeGreaterThanOrEqual(1);
    expect(thread.maxMs).toBeGreaterThan(20);
    // ...while this loop kept turning, and no commit held it.
    expect(longest).toBeLessThan(thread.maxMs / 2);
    expect(commitHoldsSinceLastRead().count).toBe(0);
    expect(jobCount() - before).toBe(3000);
  });

  it("rebuilds a task's error in the caller's thread, and keeps going", async () => {
    const { store, writer } = await shared();
    // A row the jobs table refuses (NOT NULL) fails its task alone, with its message.
    const broken = { ...receipt(), jobId: null } as unknown as ReturnType<typeof receipt>;
    const good = receipt();
    const [failed, written] = await Promise.allSettled([
      writer.run(recordReceiptsUnit([broken], "proxy")),
      writer.run(recordReceiptsUnit([good], "proxy")),
    ]);
    expect(failed.status).toBe("rejected");
    expect(String((failed as PromiseRejectedResult).reason)).toMatch(
      /receipt of job null breaks a constraint of jobs \(NOT NULL\)/,
    );
    expect(written.status).toBe("fulfilled");
    expect(jobRow(store, good.jobId)).toBeDefined();
    // A task with no data to send cannot run there, and says so.
    await expect(
      writer.run({ runSqlite: () => 1, runPostgres: () => Promise.resolve(1) }),
    ).rejects.toThrow(/must carry its data/);
  });

  it("keeps a completion while the database refuses its commit, turns new work away, and writes it once writes work again", async () => {
    const { store, writer, path } = await threaded({ refuseAfterMs: 300 });
    // Refused at COMMIT and not for a lock, as a full disk refuses a WAL commit: a deferred
    // foreign key that a trigger on jobs breaks.
    const other = openSqliteStore(path);
    cleanups.push(() => other.close());
    other.sqlite.exec(`CREATE TABLE refused_at_commit (
      job_id TEXT REFERENCES jobs(job_id) DEFERRABLE INITIALLY DEFERRED);
      CREATE TRIGGER refuse_jobs AFTER INSERT ON jobs BEGIN
        INSERT INTO refused_at_commit (job_id) VALUES ('job_not_there'); END;`);
    const completion = receipt();
    let keptAt: number | null = null;
    const written = writer.run(recordReceiptsUnit([completion], "proxy"), {
      keep: () => {
        keptAt = Date.now();
      },
    });
    const refusedOpen = writer.run(recordReceiptsUnit([receipt()], "proxy")).then(
      () => "written",
      (error: unknown) => (error as Error).message,
    );
    // Rejected after refuseAfterMs (its client was never answered: a 503), the other kept.
    expect(await refusedOpen).toMatch(/FOREIGN KEY/);
    await expect.poll(() => keptAt, { timeout: 5000 }).not.toBeNull();
    expect(writer.full()).toBe(true);
    expect(writer.health()).toMatchObject({ reachable: false, refusing: true });
    expect(writer.backlog()).toBe(0);
    // Idle with only a kept write left, as the in-process writer is: a drain waits for no disk.
    await writer.idle();
    expect(jobRow(store, completion.jobId)).toBeUndefined();
    // Writes work again: the kept completion is written and its promise settles.
    other.sqlite.exec("DROP TRIGGER refuse_jobs");
    await expect(written).resolves.toEqual([{ outcome: "created" }]);
    expect(jobRow(store, completion.jobId)).toBeDefined();
    await expect.poll(() => writer.full(), { timeout: 5000 }).toBe(false);
    expect(writer.health()).toEqual({ reachable: true });
  });

  it("when its thread ends: rejects what it held as unavailable, writes again what may be kept, turns other work away, and starts another", async () => {
    const threads: Worker[] = [];
    // The next thread is started 100 ms after one ends (1 s by default).
    const { store, writer } = await threaded({
      thread: (worker) => threads.push(worker),
      restartMs: 100,
    });
    await writer.run(recordReceiptsUnit([receipt()], "proxy"));
    // Sent, and the thread ends before it answers: whether it was written is not known, so its
    // caller is told it was not (a 503 withholds an answer)...
    const held = writer.run(recordReceiptsUnit([receipt()], "proxy"));
    // ...but what a client already has (a stream's completion) goes to the next thread.
    const completion = receipt();
    const keepable = writer.run(recordReceiptsUnit([completion], "proxy"), { keep: () => {} });
    await threads[0]?.terminate();
    await expect(held).rejects.toMatchObject({
      code: "store_unavailable",
      message: expect.stringMatching(/thread ended before committing/),
    });
    expect(writer.full()).toBe(true);
    expect(writer.health()).toMatchObject({ reachable: false });
    await expect(writer.run(recordReceiptsUnit([receipt()], "proxy"))).rejects.toMatchObject({
      code: "store_unavailable",
    });
    const whileDown = receipt();
    const keptWhileDown = writer.run(recordReceiptsUnit([whileDown], "proxy"), { keep: () => {} });
    // Once the next thread started, it takes the writes, those that waited first.
    await expect(keepable).resolves.toEqual([{ outcome: "created" }]);
    await expect(keptWhileDown).resolves.toEqual([{ outcome: "created" }]);
    expect(threads).toHaveLength(2);
    expect(writer.full()).toBe(false);
    expect(writer.health()).toEqual({ reachable: true });
    for (const r of [completion, whileDown]) expect(jobRow(store, r.jobId)).toBeDefined();
    const after = receipt();
    await writer.run(recordReceiptsUnit([after], "proxy"));
    expect(jobRow(store, after.jobId)).toBeDefined();
  });

  it("fails its start when the thread cannot open the database, and starts no other", async () => {
    const { store, path } = migratedFileStore("threaded-writer-");
    cleanups.push(() => rmSync(dirname(path), { recursive: true, force: true }));
    cleanups.push(() => store.close());
    // The file goes (this connection keeps it open) and a folder takes its name.
    rmSync(path);
    mkdirSync(path);
    const threads: Worker[] = [];
    // Were another started, it would be 100 ms after the first ended: its timer, set before
    // the wait below, fires before it.
    await expect(
      startThreadedReceiptWriter(store, {
        log,
        thread: (worker) => threads.push(worker),
        restartMs: 100,
      }),
    ).rejects.toThrow(/is a folder, not a SQLite database file/);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(threads).toHaveLength(1);
  });

  it("commits every task it was given before it closes", async () => {
    const { store, writer } = await threaded();
    const many = Array.from({ length: 200 }, () => receipt());
    const written = many.map((r) => writer.run(recordReceiptsUnit([r], "proxy")));
    await writer.close();
    expect((await Promise.allSettled(written)).every((w) => w.status === "fulfilled")).toBe(true);
    const counted = store.sqlite.prepare("SELECT count(*) AS n FROM jobs").get() as { n: number };
    expect(counted.n).toBe(200);
    await expect(writer.run(recordReceiptsUnit([receipt()], "proxy"))).rejects.toThrow(/closed/);
  });
});
