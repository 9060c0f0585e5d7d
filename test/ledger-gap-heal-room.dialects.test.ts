import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { openSqliteStore, type SqliteStore, type Store } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import {
  createLedgerStore,
  type LedgerStore,
  type ListedSignature,
  type ReviewResult,
} from "../src/store/ledger.js";
import { lockVault, PG_ROOM_LINES_PER_MOVE } from "../src/store/pg/ledger.js";
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

/**
 * Lines a review walks beside the receipt writer: 200 slices of the walk on a loaded 2-core
 * host at 100,000 (5 to 10 s a test), still tens of slices at 20,000.
 */
const FILE_WALKED = 20_000;

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
   * `FILE_WALKED` read lines whose balances chain by slot (line i at slot i), none compared yet
   * (a heal's mark), line i held at ord `ordOf` (SQL of i), reviewed beside another connection:
   * it takes the write lock between the walk's slices, and the walk compares through the last
   * line.
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
          `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${FILE_WALKED})
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
      expect(Number(mark)).toBe(FILE_WALKED);
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
    // Line 10,000 listed late, held at 19,990 above the lines the chain ran after it: the walk
    // reaches it in a later write transaction than its first.
    const ordOf =
      "CASE WHEN i = 10000 THEN 19990 WHEN i > 10000 AND i <= 19990 THEN i - 1 ELSE i END";
    await reviewBeside("place", ordOf, async (ledger, _result, store) => {
      const order = Array.from(
        { length: FILE_WALKED },
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

/**
 * Lines above a gap healed far back that the next review compares again: many slices of the
 * walk. PostgreSQL walks them slower, so fewer give as many slices (tens at 10,000 on a loaded
 * 2-core host; 40,000 took 10 to 12 s a test there).
 */
const walkedOn = { sqlite: 40_000, postgres: 10_000 } as const;

/** A review's lines: `walked` of them, line `broken` not chaining with the one before it. */
interface Walk {
  walked: number;
  broken: number;
}

/**
 * `walked` read lines (line i at slot i, held at ord `ordOf`, SQL of i; by default ord i) whose
 * balances chain by slot but at `broken` (none when 0), none compared yet.
 */
async function seedWalk(store: Store, { walked, broken }: Walk, ordOf = "i"): Promise<void> {
  // Line `broken` starts 5 units above what the line before it left: one gap.
  const pre = `i * 10 + CASE WHEN i = ${broken} THEN 5 ELSE 0 END`;
  if (store.kind === "sqlite") {
    store.sqlite
      .prepare(
        `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${walked})
         INSERT INTO ledger_lines (vault, signature, ord, slot, succeeded, listed_at, state,
           pre_units, post_units, delta_units, kind)
         SELECT ?, printf('walk-%06d', i), ${ordOf}, i, 1, ?, 'read', ${pre}, i * 10 + 10,
           i * 10 + 10 - (${pre}), 'none' FROM n`,
      )
      .run(VAULT, NOW);
    return;
  }
  await store.pool.query(
    `INSERT INTO ledger_lines (vault, signature, ord, slot, succeeded, listed_at, state,
       pre_units, post_units, delta_units, kind)
     SELECT $1, 'walk-' || lpad(i::text, 6, '0'), ${ordOf}, i, true, $2, 'read', ${pre},
       i * 10 + 10, i * 10 + 10 - (${pre}), 'none' FROM generate_series(1, ${walked}) AS i`,
    [VAULT, NOW],
  );
}

/**
 * The review's mark (the ord it compared through) read under the vault's ledger lock (SQLite:
 * the write lock, with no busy timeout): undefined when another held it.
 */
async function markOf(store: Store): Promise<number | null | undefined> {
  if (store.kind === "sqlite") {
    try {
      store.sqlite.exec("BEGIN IMMEDIATE");
    } catch (error) {
      if ((error as { code?: string }).code === "SQLITE_BUSY") return undefined;
      throw error;
    }
    try {
      const mark = store.sqlite
        .prepare("SELECT chained_ord FROM ledger_cursors WHERE vault = ?")
        .pluck()
        .get(VAULT) as bigint | null;
      return mark === null ? null : Number(mark);
    } finally {
      store.sqlite.exec("COMMIT");
    }
  }
  return store.db.transaction(async (tx) => {
    await lockVault(tx, VAULT);
    const { rows } = await tx.execute<{ chained_ord: string | null }>(
      sql`SELECT chained_ord FROM ledger_cursors WHERE vault = ${VAULT}`,
    );
    return rows[0]!.chained_ord === null ? null : Number(rows[0]!.chained_ord);
  });
}

/** The marks another connection reads each time it gets the vault's lock, until `work` settles. */
async function marksBeside(other: Store, work: Promise<unknown>): Promise<(number | null)[]> {
  let settled = false;
  void work.finally(() => {
    settled = true;
  });
  const marks: (number | null)[] = [];
  while (!settled) {
    const mark = await markOf(other);
    if (mark !== undefined) marks.push(mark);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return marks;
}

describe.each(dialects)("a review after a gap healed far back on %s", (dialect) => {
  const stores = useDialectStores(dialect);
  const walked = walkedOn[dialect];
  /** Three quarters up the walk: a line whose balance does not chain with the one before. */
  const broken = (walked * 3) / 4;
  const sig = (i: number) => `walk-${String(i).padStart(6, "0")}`;
  const dir = mkdtempSync(join(tmpdir(), "gap-heal-walk-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** The store and another connection to it (SQLite: a file, with no busy timeout). */
  async function twoConnections(name: string): Promise<[Store, Store]> {
    if (dialect === "sqlite") {
      const file = join(dir, `${name}.db`);
      const store = openSqliteStore(file, { create: true });
      migrateStore(store);
      const other = openSqliteStore(file);
      other.sqlite.pragma("busy_timeout = 0");
      return [store, other];
    }
    const store = await stores.open();
    return [store, openPostgres(stores.lastUrl, { poolSize: 1, statementTimeoutMs: 30_000 })];
  }

  it("compares every line above again a slice at a time, another connection taking the vault's lock between", async () => {
    const [store, other] = await twoConnections("walk");
    try {
      const ledger = createLedgerStore(store);
      await ledger.cursor(VAULT, NOW);
      await seedWalk(store, { walked, broken });
      const reviewing = ledger.review(VAULT, NOW + 1);
      const marks = await marksBeside(other, reviewing);
      expect((await reviewing).gaps).toBe(1);
      // The other connection had the lock while the walk was partway: each slice committed.
      expect(marks.some((m) => m !== null && m > 0 && m < walked)).toBe(true);
      expect(await markOf(other)).toBe(walked);
      const [stored] = await ledger.storedGaps(VAULT, 10);
      expect(stored).toEqual({ afterSignature: sig(broken - 1), beforeSignature: sig(broken) });
    } finally {
      await other.close();
      // A PostgreSQL store from `stores.open` is closed after the test.
      if (store.kind === "sqlite") store.close();
    }
  });

  it("puts a line out of slot order far above in its place within a slice, each page looked over before it is compared", async () => {
    const [store, other] = await twoConnections("place");
    try {
      const ledger = createLedgerStore(store);
      await ledger.cursor(VAULT, NOW);
      // The line halfway up listed late, held 10 below the top above the lines the chain ran
      // after it: the walk reaches it slices after its first.
      const late = walked / 2;
      const held = walked - 10;
      await seedWalk(
        store,
        { walked, broken: 0 },
        `CASE WHEN i = ${late} THEN ${held} WHEN i > ${late} AND i <= ${held} THEN i - 1 ELSE i END`,
      );
      const reviewing = ledger.review(VAULT, NOW + 1);
      const marks = await marksBeside(other, reviewing);
      await reviewing;
      expect(marks.some((m) => m !== null && m > 0 && m < walked)).toBe(true);
      expect(await markOf(other)).toBe(walked);
      expect(await ledger.storedGaps(VAULT, 10)).toEqual([]);
      const order = Array.from({ length: walked }, (_, i) => sig(i + 1));
      expect(await walkOrderOf(store)).toEqual(order);
    } finally {
      await other.close();
      if (store.kind === "sqlite") store.close();
    }
  });
});

/** The vault's line signatures by ord. */
async function walkOrderOf(store: Store): Promise<string[]> {
  if (store.kind === "sqlite") {
    return store.sqlite
      .prepare("SELECT signature FROM ledger_lines WHERE vault = ? ORDER BY ord")
      .pluck()
      .all(VAULT) as string[];
  }
  const { rows } = await store.pool.query<{ signature: string }>(
    "SELECT signature FROM ledger_lines WHERE vault = $1 ORDER BY ord",
    [VAULT],
  );
  return rows.map((r) => r.signature);
}

describe("a gap healed far back on PostgreSQL", () => {
  const stores = useDialectStores("postgres");

  /**
   * Lines each transaction renumbered, by a statement trigger beside the store's own: a new ord
   * is a new entry in each of the line's indexes, so the vault's lock is held for as many lines.
   */
  async function countMovesPerTransaction(store: PgStore) {
    await store.pool.query(`CREATE TABLE lines_moved (tx bigint, lines int);
      CREATE FUNCTION count_lines_moved() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        INSERT INTO lines_moved SELECT txid_current(), count(*) FROM moved; RETURN NULL; END $$;
      CREATE TRIGGER count_lines_moved AFTER UPDATE ON ledger_lines
        REFERENCING NEW TABLE AS moved FOR EACH STATEMENT EXECUTE FUNCTION count_lines_moved();`);
    return async () => {
      const { rows } = await store.pool.query<{ lines: string }>(
        "SELECT sum(lines) AS lines FROM lines_moved GROUP BY tx ORDER BY tx",
      );
      return rows.map((r) => Number(r.lines));
    };
  }

  it("moves the lines above a short batch per transaction, each holding the vault's lock a few ms", async () => {
    const store = (await stores.open()) as PgStore;
    const ledger = createLedgerStore(store);
    await listAllBut2(ledger);
    const movedPerTransaction = await countMovesPerTransaction(store);
    expect(await ledger.healGap(VAULT, gap, [entry(2)], NOW + 1)).toBe(1);
    expect(await signaturesOf(store)).toEqual(chain);
    const moved = await movedPerTransaction();
    // Every line from the gap's later one up moved once.
    expect(moved.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(LINES - 2);
    // Before: 1,000 lines a transaction, 56 to 304 ms of the lock each on a loaded host.
    expect(Math.max(...moved)).toBeLessThanOrEqual(PG_ROOM_LINES_PER_MOVE);
  });
});
