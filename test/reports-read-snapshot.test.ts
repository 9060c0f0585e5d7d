import { mkdtempSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import {
  countJobsByVerdict,
  dataCompleteUntil,
  reconciliationReport,
} from "../src/reports/reconciliation.js";
import { seedJobs } from "./support/seed-verdicts.js";

/**
 * Figures read while a verifier in another process moves jobs between verdicts: each answer
 * of several reads is taken from one snapshot, or a job that moved between two of them is
 * counted twice, not at all, or (an open job missed) the data is said to be complete.
 */

const jobCount = 200;
const oldest = Date.UTC(2026, 10, 1);
let store: SqliteStore | undefined;
afterEach(() => {
  store?.close();
  store = undefined;
});

/** A file store of `jobCount` jobs, all of them `first`. */
async function seeded(first: "verified" | "pending"): Promise<{ path: string }> {
  const path = join(mkdtempSync(join(tmpdir(), "read-snapshot-")), "audit.db");
  store = openSqliteStore(path);
  migrateStore(store);
  await seedJobs(
    store,
    Array.from({ length: jobCount }, (_, i) => ({
      jobId: `job_snap${i}`,
      verdict: first,
      leaseOwner: null,
      createdAt: oldest + i * 60_000,
    })),
  );
  return { path };
}

/**
 * Another connection, on a thread of its own (as another process), that moves every job from
 * verdict `a` to `b` and back, one transaction each, until told to stop.
 */
function flipper(path: string, a: string, b: string) {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const source = `
const { workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const stop = new Int32Array(workerData.stop);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 5000");
const flip = db.prepare("UPDATE jobs SET verdict = CASE verdict WHEN ? THEN ? ELSE ? END");
let flips = 0;
while (Atomics.load(stop, 0) === 0) {
  db.transaction(() => flip.run(workerData.a, workerData.b, workerData.a)).immediate();
  flips++;
}
db.close();
require("node:worker_threads").parentPort.postMessage(flips);
`;
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(source, {
    eval: true,
    workerData: { driver, path, a, b, stop: stop.buffer },
  });
  const flips = new Promise<number>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  return {
    async stop(): Promise<number> {
      Atomics.store(stop, 0, 1);
      return flips;
    },
  };
}

/** Reads `read` for `ms` (at least 200 reads), counting the answers `wrong` says are wrong. */
async function wrongAnswers<T>(ms: number, read: () => Promise<T>, wrong: (value: T) => boolean) {
  let reads = 0;
  let bad = 0;
  const until = performance.now() + ms;
  while (performance.now() < until || reads < 200) {
    if (wrong(await read())) bad++;
    reads++;
  }
  return { reads, bad };
}

describe("report figures read beside a verifier writing verdicts", () => {
  it("counts every job once by verdict, however they move between reads", async () => {
    const { path } = await seeded("verified");
    const writer = flipper(path, "verified", "pending");
    const { bad, reads } = await wrongAnswers(
      2500,
      () => countJobsByVerdict(store!, 0, Number.MAX_SAFE_INTEGER),
      (counts) => Object.values(counts).reduce((n, c) => n + c, 0) !== jobCount,
    );
    expect(await writer.stop()).toBeGreaterThan(10);
    expect({ bad, reads: reads > 0 }).toEqual({ bad: 0, reads: true });
  }, 20_000);

  it("never says the data is complete past a job that stayed open", async () => {
    const { path } = await seeded("pending");
    // Every job stays open, moving between two open verdicts.
    const writer = flipper(path, "pending", "awaiting_finality");
    const { bad } = await wrongAnswers(
      2500,
      () => dataCompleteUntil(store!, Date.now()),
      (complete) => complete > oldest,
    );
    expect(await writer.stop()).toBeGreaterThan(10);
    expect(bad).toBe(0);
  }, 20_000);
});

describe("a reconciliation report read beside a verifier moving money between jobs", () => {
  it("sums the whole days, whole hours and partial hours of its period from one snapshot", async () => {
    // Job A on a whole day, job B in the partial hour at the period's end: the report reads
    // them in separate statements. The writer moves one job's charge to the other in one
    // transaction each time, as a re-verification that hands a transaction's owner over does.
    const path = join(mkdtempSync(join(tmpdir(), "read-snapshot-")), "audit.db");
    store = openSqliteStore(path);
    migrateStore(store);
    const dayJob = Date.UTC(2026, 10, 1, 12);
    const partialJob = Date.UTC(2026, 10, 3, 0, 30);
    await seedJobs(store, [
      { jobId: "job_snapa", verdict: "verified", leaseOwner: null, createdAt: dayJob },
      { jobId: "job_snapb", verdict: "verified", leaseOwner: null, createdAt: partialJob },
    ]);
    store.sqlite
      .prepare("UPDATE jobs SET charged_units = CASE job_id WHEN 'job_snapa' THEN 100 ELSE 0 END")
      .run();
    const writer = sqlWriter(
      path,
      `UPDATE jobs SET charged_units = 100 - charged_units
       WHERE job_id IN ('job_snapa', 'job_snapb')`,
    );
    const { bad, reads } = await wrongAnswers(
      2500,
      () =>
        reconciliationReport(store!, {
          from: Date.UTC(2026, 10, 1),
          to: Date.UTC(2026, 10, 3, 0, 45),
          groupBy: "model",
        }),
      (report) => report.totals.chargedUnits !== 100n,
    );
    expect(await writer.stop()).toBeGreaterThan(10);
    expect({ bad, reads: reads > 0 }).toEqual({ bad: 0, reads: true });
  }, 20_000);
});

/** Another connection, on a thread of its own, that runs `statement` in a loop until stopped. */
function sqlWriter(path: string, statement: string) {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const source = `
const { workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const stop = new Int32Array(workerData.stop);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 5000");
const write = db.prepare(workerData.statement);
let writes = 0;
while (Atomics.load(stop, 0) === 0) {
  db.transaction(() => write.run()).immediate();
  writes++;
}
db.close();
require("node:worker_threads").parentPort.postMessage(writes);
`;
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(source, {
    eval: true,
    workerData: { driver, path, statement, stop: stop.buffer },
  });
  const writes = new Promise<number>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  return {
    async stop(): Promise<number> {
      Atomics.store(stop, 0, 1);
      return writes;
    },
  };
}
