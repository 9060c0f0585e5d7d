import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type Database from "better-sqlite3";
import pg from "pg";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { openPostgres } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { createLedgerStore, type LedgerStore, type ListedSignature } from "../src/store/ledger.js";
import { takeVaultLock } from "../src/store/pg/ledger.js";
import { percentile, round } from "./stats.js";

/**
 * How long a gap heal far back in a long vault keeps other writers of the same SQLite file
 * waiting: `LINES` lines listed in one sync, a gap between its two oldest lines, and a second
 * thread that takes the write lock every few ms as the receipt writer does (no busy timeout,
 * tried again after 1 ms) reports its longest wait while the heal runs; the heal's own write
 * transactions are timed too (the longest is what the lock is held for at once).
 *
 * With a PostgreSQL URL (a database of its own, migrated here) the same vault there: another
 * connection takes the vault's ledger lock every few ms and reports its longest wait.
 *
 *   node --import tsx bench/ledger-heal-lock.ts [lines] [postgres://…]
 */

const LINES = Number(process.argv[2] ?? 200_000);
const PG_URL = process.argv[3];
const VAULT = `healLockVau1t${randomBytes(15).toString("hex")}X`;
const NOW = Date.UTC(2026, 11, 1);
const sig = (i: number) => `heal-lock-${String(i).padStart(9, "0")}`;
const entry = (i: number, slot = i * 10): ListedSignature => ({
  signature: sig(i),
  slot,
  blockTime: 1_790_000_000 + slot,
  err: null,
});

/** Takes and releases the write lock as a receipt group would, and reports its longest wait. */
const PROBE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.file);
db.pragma("busy_timeout = 0");
let stop = false;
let longest = 0;
let takes = 0;
parentPort.on("message", () => { stop = true; });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  parentPort.postMessage({ ready: true });
  while (!stop) {
    const asked = performance.now();
    for (;;) {
      try { db.exec("BEGIN IMMEDIATE"); db.exec("COMMIT"); break; }
      catch (e) { if (e.code !== "SQLITE_BUSY") throw e; await sleep(1); }
    }
    longest = Math.max(longest, performance.now() - asked);
    takes++;
    await sleep(2);
  }
  db.close();
  parentPort.postMessage({ longest, takes });
})();
`;

/** Records how long each `.immediate()` transaction made on `sqlite` held the write lock. */
function timeWriteTransactions(sqlite: Database.Database): number[] {
  const holds: number[] = [];
  const make = sqlite.transaction.bind(sqlite);
  sqlite.transaction = ((fn: (...args: unknown[]) => unknown) => {
    const tx = make(fn);
    const immediate = (...args: unknown[]) => {
      const start = performance.now();
      try {
        return tx.immediate(...args);
      } finally {
        holds.push(performance.now() - start);
      }
    };
    return Object.assign((...args: unknown[]) => tx(...args), {
      default: tx.default,
      deferred: tx.deferred,
      immediate,
      exclusive: tx.exclusive,
    });
  }) as typeof sqlite.transaction;
  return holds;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "heal-lock-"));
  const file = join(dir, "heal.db");
  try {
    const store = openSqliteStore(file, { create: true });
    migrateStore(store);
    const holds = timeWriteTransactions(store.sqlite);
    const ledger = createLedgerStore(store);
    const t0 = performance.now();
    await ledger.cursor(VAULT, NOW);
    // One completed sync listed the whole history, ords consecutive as a sync numbers them;
    // the second line from the bottom is missing, so a later listing of the gap's slots holds it.
    store.sqlite
      .prepare(
        `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         INSERT INTO ledger_lines (vault, signature, ord, slot, block_time, succeeded, listed_at,
           state, pre_units, post_units, delta_units, kind)
         SELECT ?, printf('heal-lock-%09d', i), 1000000000 + i + (i = 1), i * 10,
           1790000000 + i * 10, 1, ?, 'read', i * 10, i * 10 + 10, 10, 'none' FROM n WHERE i <> 2`,
      )
      .run(LINES, VAULT, NOW);
    // Every line compared already: the gap is the one stored.
    store.sqlite
      .prepare(
        `UPDATE ledger_cursors SET chained_ord = (SELECT max(ord) FROM ledger_lines WHERE vault = ?)
         WHERE vault = ?`,
      )
      .run(VAULT, VAULT);
    // The seed's pages written back now, not by the first write measured.
    store.sqlite.pragma("wal_checkpoint(TRUNCATE)");
    const seeded = performance.now() - t0;
    holds.length = 0;
    const driver = new URL(import.meta.resolve("better-sqlite3")).pathname;
    const probe = new Worker(PROBE, { eval: true, workerData: { file, driver } });
    await new Promise((resolve) => probe.once("message", resolve));
    const done = new Promise<{ longest: number; takes: number }>((resolve) =>
      probe.on("message", (m) => resolve(m)),
    );
    await new Promise((r) => setTimeout(r, 200));
    const gap = { afterSignature: sig(1), beforeSignature: sig(3) };
    const h0 = performance.now();
    const inserted = await ledger.healGap(VAULT, gap, [entry(2)], NOW + 1);
    const healMs = performance.now() - h0;
    const healHolds = holds.splice(0);
    await readLine2(ledger, NOW + 2);
    holds.length = 0;
    const r0 = performance.now();
    const review = await ledger.review(VAULT, NOW + 2);
    const reviewMs = performance.now() - r0;
    probe.postMessage("stop");
    const probed = await done;
    await probe.terminate();
    const order = store.sqlite
      .prepare("SELECT signature FROM ledger_lines WHERE vault = ? ORDER BY ord LIMIT 4")
      .pluck()
      .all(VAULT);
    store.close();
    printResult(
      { seeded, inserted, healMs },
      {
        writeTransactions: healHolds.length,
        writeTransactionP50Ms: round(percentile(healHolds, 50)),
        writeTransactionP95Ms: round(percentile(healHolds, 95)),
        longestWriteTransactionMs: round(Math.max(...healHolds)),
        reviewMs: round(reviewMs),
        reviewGaps: review.gaps,
        reviewWriteTransactions: holds.length,
        reviewLongestWriteTransactionMs: round(Math.max(...holds)),
        otherWriterLongestWaitMs: round(probed.longest),
        otherWriterTakes: probed.takes,
        oldestFour: order,
      },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Prints one run's figures as a JSON line: the seed and the heal's first, then `more`. */
function printResult(
  run: { seeded: number; inserted: number; healMs: number },
  more: Record<string, unknown>,
): void {
  console.log(
    JSON.stringify({
      lines: LINES,
      seedMs: round(run.seeded),
      inserted: run.inserted,
      healMs: round(run.healMs),
      ...more,
    }),
  );
}

/** Line 2 read, so the next review compares every line above the healed gap again. */
async function readLine2(ledger: LedgerStore, at: number): Promise<void> {
  await ledger.recordReads(
    VAULT,
    [
      {
        signature: sig(2),
        blockTime: null,
        succeeded: true,
        pre: 20n,
        post: 30n,
        delta: 10n,
        memo: null,
        memoKind: null,
        memoJobId: null,
      },
    ],
    [],
    at,
  );
}

/** The same on PostgreSQL at `url`: how long another connection waits for the vault's lock. */
async function mainPostgres(url: string) {
  const store = openPostgres(url);
  const other = openPostgres(url, { poolSize: 1, statementTimeoutMs: 0 });
  try {
    await migratePostgres(store.pool);
    const ledger = createLedgerStore(store);
    const t0 = performance.now();
    await ledger.cursor(VAULT, NOW);
    // The seed with the triggers off (a superuser's URL): the lines' daily sums do not matter.
    const seeder = new pg.Client({ connectionString: url });
    await seeder.connect();
    try {
      await seeder.query("SET session_replication_role = replica");
      await seeder.query(
        `INSERT INTO ledger_lines (vault, signature, ord, slot, block_time, succeeded, listed_at,
           state, pre_units, post_units, delta_units, kind)
         SELECT $2, 'heal-lock-' || lpad(i::text, 9, '0'), 1000000000 + i + (i = 1)::int, i * 10,
           1790000000 + i * 10, true, $3, 'read', i * 10, i * 10 + 10, 10, 'none'
         FROM generate_series(1, $1::int) AS i WHERE i <> 2`,
        [LINES, VAULT, NOW],
      );
    } finally {
      await seeder.end();
    }
    await store.pool.query(
      `UPDATE ledger_cursors SET chained_ord = (SELECT max(ord) FROM ledger_lines WHERE vault = $1)
       WHERE vault = $1`,
      [VAULT],
    );
    await store.pool.query("ANALYZE ledger_lines");
    const seeded = performance.now() - t0;
    let longest = 0;
    let takes = 0;
    let stop = false;
    const probing = (async () => {
      while (!stop) {
        const asked = performance.now();
        await takeVaultLock(other, VAULT);
        longest = Math.max(longest, performance.now() - asked);
        takes++;
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const gap = { afterSignature: sig(1), beforeSignature: sig(3) };
    const h0 = performance.now();
    const inserted = await ledger.healGap(VAULT, gap, [entry(2)], NOW + 1);
    const healMs = performance.now() - h0;
    const healWait = longest;
    await readLine2(ledger, NOW + 2);
    longest = 0;
    const r0 = performance.now();
    const review = await ledger.review(VAULT, NOW + 2);
    const reviewMs = performance.now() - r0;
    stop = true;
    await probing;
    printResult(
      { seeded, inserted, healMs },
      {
        otherLockLongestWaitInHealMs: round(healWait),
        reviewMs: round(reviewMs),
        reviewGaps: review.gaps,
        otherLockLongestWaitInReviewMs: round(longest),
        otherLockTakes: takes,
      },
    );
  } finally {
    await other.close();
    await store.close();
  }
}

await (PG_URL === undefined ? main() : mainPostgres(PG_URL));
