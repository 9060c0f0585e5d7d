import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import type { SqliteStore } from "../src/db/client.js";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import {
  createLedgerStore,
  type LedgerStore,
  type ListedSignature,
  type ReviewResult,
} from "../src/store/ledger.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { linesOf } from "./support/seed-ledger.js";
import { createTestStore, recordPrepared, sqlitePlanOf } from "./support/store.js";

/**
 * A gap healed far back in a long vault: the line the first listing left out goes between the
 * gap's two lines, whose ords are consecutive, so every line above must move up first. Done in
 * one write transaction, 200,000 lines held SQLite's write lock 2.9 s while receipts waited;
 * the lines move a slice per transaction, and a process stopped between slices leaves them in
 * order for the next heal to finish.
 */
const NOW = Date.UTC(2026, 11, 1);
const VAULT = "roomVau1tCred1tsXXXXXXXXXXXXXXXXXXXXXXXXXXX";
/** Lines above the gap: three slices (`ROOM_LINES_PER_MOVE`). */
const LINES = 2_500;
const sig = (i: number) => `room-${String(i).padStart(6, "0")}`;
const entry = (i: number): ListedSignature => ({
  signature: sig(i),
  slot: i * 10,
  blockTime: 1_790_000_000 + i * 10,
  err: null,
});
const gap = { afterSignature: sig(1), beforeSignature: sig(3) };
/** Chain order, oldest first, with and without the line left out. */
const chain = Array.from({ length: LINES }, (_, i) => sig(i + 1));
const listedFirst = chain.filter((s) => s !== sig(2));

/** One sync listed the whole history but line 2, newest first, a page of 1,000 at a time. */
async function listAllBut2(ledger: LedgerStore) {
  const listed = Array.from({ length: LINES }, (_, i) => LINES - i).filter((i) => i !== 2);
  for (let from = 0; from < listed.length; from += 1000) {
    const seen = await ledger.cursor(VAULT, NOW);
    const page = listed.slice(from, from + 1000).map(entry);
    await ledger.storePage(VAULT, seen, page, from + 1000 >= listed.length, NOW);
  }
}

const signaturesOf = async (store: Parameters<typeof linesOf>[0]) =>
  (await linesOf(store, VAULT)).map((l) => l.signature);

describe.each(dialects)("a gap healed far back on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("moves the lines above a slice at a time; stopped between slices, the order holds and the next heal finishes", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await listAllBut2(ledger);
    const newestBefore = (await linesOf(store, VAULT)).length;
    expect(newestBefore).toBe(LINES - 1);

    // Stopped once the first slice moved (a process killed there is the same: nothing after).
    // The heal asks its signal before each slice; this one says stop from the second ask on, so
    // the stop falls between slices however fast they run.
    const ordOfNewest = () => newestOrd(store);
    const start = await ordOfNewest();
    let asked = 0;
    const stopAfterFirstSlice = {
      get aborted() {
        asked++;
        return asked > 1;
      },
    } as AbortSignal;
    const healing = ledger.healGap(VAULT, gap, [entry(2)], NOW + 1, stopAfterFirstSlice);
    expect(await healing).toBe(0);
    expect(asked).toBe(2);
    // Some lines moved and some not: their order is the chain's all the same.
    expect(await ordOfNewest()).toBeGreaterThan(start);
    expect(await signaturesOf(store)).toEqual(listedFirst);

    expect(await ledger.healGap(VAULT, gap, [entry(2)], NOW + 2)).toBe(1);
    expect(await signaturesOf(store)).toEqual(chain);
    // The next sync's lines still come after every one.
    const next = await ledger.cursor(VAULT, NOW + 3);
    await ledger.storePage(VAULT, next, [entry(LINES + 1)], true, NOW + 3);
    expect((await signaturesOf(store)).at(-1)).toBe(sig(LINES + 1));
  });
});

/** The ord of the vault's newest line (read with the lines' own order). */
async function newestOrd(store: Parameters<typeof linesOf>[0]): Promise<number> {
  const lines = await linesOf(store, VAULT);
  const newest = lines.at(-1)!.signature;
  if (store.kind === "sqlite") {
    return Number(
      store.sqlite
        .prepare("SELECT ord FROM ledger_lines WHERE vault = ? AND signature = ?")
        .pluck()
        .get(VAULT, newest),
    );
  }
  const { rows } = await store.pool.query<{ ord: string }>(
    "SELECT ord FROM ledger_lines WHERE vault = $1 AND signature = $2",
    [VAULT, newest],
  );
  return Number(rows[0]!.ord);
}

/**
 * Takes and releases the write lock on `other` every millisecond until `work` settles, as the
 * receipt writer does (no busy timeout, tried again from a timer): how many times it got it.
 */
async function writesBeside(other: Database.Database, work: Promise<unknown>): Promise<number> {
  let settled = false;
  void work.finally(() => {
    settled = true;
  });
  let taken = 0;
  while (!settled) {
    try {
      other.exec("BEGIN IMMEDIATE");
      other.exec("COMMIT");
      taken++;
    } catch (error) {
      if ((error as { code?: string }).code !== "SQLITE_BUSY") throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return taken;
}

describe("a gap healed far back beside the receipt writer (SQLite file)", () => {
  const dir = mkdtempSync(join(tmpdir(), "gap-heal-room-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("lets another connection take the write lock between slices", async () => {
    const file = join(dir, "room.db");
    const store = openSqliteStore(file, { create: true });
    const other = new Database(file);
    other.pragma("busy_timeout = 0");
    try {
      migrateStore(store);
      const ledger = createLedgerStore(store);
      await listAllBut2(ledger);
      const healing = ledger.healGap(VAULT, gap, [entry(2)], NOW + 1);
      const taken = await writesBeside(other, healing);
      expect(await healing).toBe(1);
      expect(taken).toBeGreaterThanOrEqual(2);
      expect(await signaturesOf(store)).toEqual(chain);
    } finally {
      other.close();
      store.close();
    }
  });

  /**
   * 100,000 read lines whose balances chain by slot (line i at slot i), none compared yet (a
   * heal's mark), line i held at ord `ordOf` (SQL of i), reviewed beside another connection: it
   * takes the write lock between the walk's slices, and the walk compares through the last line.
   */
  async function reviewBeside(
    name: string,
    ordOf: string,
    check: (ledger: LedgerStore, result: ReviewResult, store: SqliteStore) => Promise<void>,
  ) {
    const file = join(dir, `${name}.db`);
    const store = openSqliteStore(file, { create: true });
    const other = new Database(file);
    other.pragma("busy_timeout = 0");
    try {
      migrateStore(store);
      const ledger = createLedgerStore(store);
      await ledger.cursor(VAULT, NOW);
      store.sqlite
        .prepare(
          `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
           INSERT INTO ledger_lines (vault, signature, ord, slot, block_time, succeeded,
             listed_at, state, pre_units, post_units, delta_units, kind)
           SELECT ?, printf('walk-%06d', i), ${ordOf}, i, 1790000000 + i, 1, ?, 'read', i * 10,
             i * 10 + 10, 10, 'none' FROM n`,
        )
        .run(VAULT, NOW);
      const reviewing = ledger.review(VAULT, NOW + 1);
      const taken = await writesBeside(other, reviewing);
      expect(taken).toBeGreaterThanOrEqual(2);
      const mark = store.sqlite
        .prepare("SELECT chained_ord FROM ledger_cursors WHERE vault = ?")
        .pluck()
        .get(VAULT);
      expect(Number(mark)).toBe(100_000);
      await check(ledger, await reviewing, store);
    } finally {
      other.close();
      store.close();
    }
  }

  it("compares every line above a gap healed far back again a slice per write transaction", async () => {
    await reviewBeside("walk", "i", async (_ledger, result) => {
      expect(result.gaps).toBe(0);
    });
  });

  it("puts a line out of slot order far above a gap healed far back in its place, a slice at a time", async () => {
    // Line 50,000 listed late, held at 99,990 above the lines the chain ran after it: the walk
    // reaches it in a later write transaction than its first.
    const ordOf =
      "CASE WHEN i = 50000 THEN 99990 WHEN i > 50000 AND i <= 99990 THEN i - 1 ELSE i END";
    await reviewBeside("place", ordOf, async (ledger, _result, store) => {
      const order = Array.from(
        { length: 100_000 },
        (_, i) => `walk-${String(i + 1).padStart(6, "0")}`,
      );
      expect(await signaturesOf(store)).toEqual(order);
      expect(await ledger.storedGaps(VAULT, 10)).toEqual([]);
    });
  });

  it("looks for a line out of slot order in the walk's next page only, not every line above", () => {
    const store = createTestStore();
    const prepared = recordPrepared(store);
    createLedgerStore(store);
    const texts = prepared.filter((t) => /lag\(coalesce\(c\.slot, l\.slot\)\)/.test(t));
    expect(texts.length).toBe(1);
    expect(sqlitePlanOf(store, texts[0]!)).toMatch(
      /SEARCH l USING INDEX ledger_lines_order \(vault=\? AND ord>\? AND ord<\?\)/,
    );
    store.close();
  });

  it("clears the gaps above a healed one, and reviews a vault's few lines of a kind, by their own indexes, not every line", () => {
    const store = createTestStore();
    const prepared = recordPrepared(store);
    createLedgerStore(store);
    const byIndex: [RegExp, string][] = [
      [/SET gap_after_signature = NULL/, "ledger_lines_gaps"],
      [
        /WHERE vault = \? AND memo_jobs IS NOT NULL AND state = 'read' AND kind IS NOT NULL\s+ORDER BY ord/,
        "ledger_lines_memo_jobs",
      ],
      [
        /WHERE vault = \? AND kind IN \('unexplained', 'deposit'\) ORDER BY ord/,
        "ledger_lines_review",
      ],
      [/WHERE vault = \? AND kind = 'lock' AND released = 0`?$/, "ledger_lines_open_locks"],
      [/header_ok IS NULL AND ord > \? ORDER BY ord/, "ledger_lines_header_open"],
    ];
    for (const [pattern, index] of byIndex) {
      const texts = prepared.filter((t) => pattern.test(t.trim()));
      expect(texts.length, String(pattern)).toBeGreaterThan(0);
      for (const text of texts) {
        expect(sqlitePlanOf(store, text), text).toMatch(new RegExp(`USING INDEX ${index}\\b`));
      }
    }
    store.close();
  });
});
