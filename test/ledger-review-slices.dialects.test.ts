import { performance } from "node:perf_hooks";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Store } from "../src/db/client.js";
import { openPostgres } from "../src/db/pg/client.js";
import {
  createLedgerStore,
  type FetchedTransaction,
  type LedgerStore,
  type LineRead,
  type ListedSignature,
} from "../src/store/ledger.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { fakeSignature } from "./support/job-rows.js";
import { checkOf, jobVerdict, seedCheck, seedJob } from "./support/seed-ledger.js";

/**
 * A review whose walk spans several slices (a write transaction each, the vault's lock taken
 * again for each on PostgreSQL) decides the credits headers once the last slice is through. The
 * locks whose headers it decides sit in the first slice and in the last; the walk finds a gap in
 * each; a line held far above its slot moves down into an early lock's span in a late slice.
 * Another connection writes between the slices: a sync lists a new line, it is read (a lock of a
 * job recorded then, whose check waits for this vault), and a second review runs beside. What
 * the vault holds after must be what one review that never slices leaves, with the same writes.
 */

const VAULT = "sL1cedVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
const NOV = Date.UTC(2026, 10, 1) / 1000;
const NOW = Date.UTC(2026, 11, 11);
/**
 * Lines that move nothing between the early locks and the late ones: pages of the walk (each a
 * slice here), 500 lines a page on PostgreSQL, 2,000 on SQLite.
 */
const FILLER = { sqlite: 4_500, postgres: 2_000 };
const sig = (name: string) => fakeSignature(`review-slices:${name}`);

interface Line {
  name: string;
  slot: number;
  time: number;
  delta: bigint;
  memoJobId?: string;
  /** The balance before, when it does not chain with the line below (a gap). */
  pre?: bigint;
  /** Listed (held) at this position of the page instead of by its slot. */
  heldAt?: number;
}

/** The vault's history: two locks early, two late, a gap in each part, one line held late. */
function history(filler: number): Line[] {
  const lines: Line[] = [{ name: "open", slot: 10, time: NOV, delta: 1_000_000_000n }];
  const add = (line: Omit<Line, "slot" | "time">) => {
    const n = lines.length;
    lines.push({ ...line, slot: 10 + n * 2, time: NOV + n });
  };
  add({ name: "lockA", delta: -10_000n, memoJobId: "A" });
  add({ name: "lockB", delta: -10_000n, memoJobId: "B" });
  add({ name: "earlyMove", delta: -1_000n });
  // Early gap: 7 units that no line shows left the vault.
  add({ name: "earlyGap", delta: -1_000n, pre: 999_978_993n });
  for (let i = 0; i < filler; i++) add({ name: `filler${i}`, delta: 0n });
  add({ name: "lockC", delta: -20_000n, memoJobId: "C" });
  add({ name: "lockD", delta: -20_000n, memoJobId: "D" });
  add({ name: "lateGap", delta: -3_000n, pre: 999_938_000n });
  add({ name: "top", delta: -5n });
  // A top-up in lockB's span, listed late above the lines the chain ran after it (the page holds
  // it at the top, the walk reaches it slices after its first and moves it down by slot).
  lines.splice(3, 0, {
    name: "lateListed",
    slot: 10 + 2 * 2 + 1,
    time: NOV + 2,
    delta: 500n,
    heldAt: Number.MAX_SAFE_INTEGER,
  });
  return lines;
}

/** Each line's balance before and after, chained by slot but where a line names its own. */
function balances(lines: readonly Line[]) {
  let balance = 0n;
  return lines.map((l) => {
    const pre = l.pre ?? balance;
    balance = pre + l.delta;
    return { ...l, pre, post: balance };
  });
}

const readOf = (l: ReturnType<typeof balances>[number], first: boolean): LineRead => ({
  signature: sig(l.name),
  slot: l.slot,
  blockTime: l.time,
  succeeded: true,
  pre: l.pre,
  post: l.post,
  delta: l.delta,
  memo: l.memoJobId === undefined ? null : `escrow:${l.memoJobId}`,
  memoKind: l.memoJobId === undefined ? null : "escrow",
  memoJobId: l.memoJobId ?? null,
  opened: first,
});

const fetchedOf = (l: Line): FetchedTransaction => ({
  signature: sig(l.name),
  slot: l.slot,
  blockTime: l.time,
  fee: 5_000n,
  succeeded: true,
  err: "null",
  facts: "{}",
  raw: `raw:${l.name}`,
});

/** When each job's response was recorded: A and B after the early gap, C and D at the top. */
const recordedAtOf = (lines: readonly Line[], after: string) =>
  (lines.find((l) => l.name === after)!.time + 1) * 1000;

async function seedVault(store: Store, ledger: LedgerStore): Promise<void> {
  const lines = balances(history(FILLER[store.kind]));
  const postOf = (name: string) => lines.find((l) => l.name === name)!.post;
  // A's header matches its lock's balance; B's the top-up held late, once placed; C's its
  // lock's; D's none (its span read in full: the job is reopened).
  const headers: Record<string, [bigint, string]> = {
    A: [postOf("lockA"), "earlyGap"],
    B: [postOf("lateListed"), "earlyGap"],
    C: [postOf("lockC"), "top"],
    D: [123n, "top"],
  };
  for (const [jobId, [header, after]] of Object.entries(headers)) {
    const recordedAt = recordedAtOf(lines, after);
    await seedJob(store, {
      jobId,
      escrowTx: sig(`lock${jobId}`),
      creditsRemainingUnits: header,
      recordedAt,
    });
    await seedCheck(store, {
      jobId,
      name: "credits.header",
      outcome: "skip",
      expected: { vault: VAULT },
      at: recordedAt,
    });
  }
  // Newest first; the line held late first of all.
  const page: ListedSignature[] = [...lines]
    .sort((a, b) => (b.heldAt ?? b.slot) - (a.heldAt ?? a.slot))
    .map((l) => ({ signature: sig(l.name), slot: l.slot, blockTime: l.time, err: null }));
  const seen = await ledger.cursor(VAULT, NOW);
  await ledger.storePage(VAULT, seen, page, true, NOW, NOW);
  await ledger.recordReads(
    VAULT,
    lines.map((l, i) => readOf(l, i === 0)),
    lines.map(fetchedOf),
    NOW,
  );
}

/** What another connection writes: a sync lists a new line, then reads it; its job records. */
async function writeNewLock(store: Store, ledger: LedgerStore): Promise<void> {
  const lines = balances(history(FILLER[store.kind]));
  const top = lines.find((l) => l.name === "top")!;
  const line = {
    name: "lockE",
    slot: top.slot + 2,
    time: top.time + 1,
    delta: -30_000n,
    memoJobId: "E",
    pre: top.post,
    post: top.post - 30_000n,
  };
  const recordedAt = (line.time + 1) * 1000;
  await seedJob(store, {
    jobId: "E",
    escrowTx: sig("lockE"),
    creditsRemainingUnits: line.post,
    recordedAt,
  });
  const seen = await ledger.cursor(VAULT, NOW + 5);
  await ledger.storePage(
    VAULT,
    seen,
    [{ signature: sig("lockE"), slot: line.slot, blockTime: line.time, err: null }],
    true,
    NOW + 5,
    recordedAt + 60_000,
  );
  await ledger.recordReads(VAULT, [readOf(line, false)], [fetchedOf(line)], NOW + 5);
  await seedCheck(store, {
    jobId: "E",
    name: "credits.header",
    outcome: "skip",
    expected: { vault: VAULT },
    at: recordedAt,
  });
}

/** Every walk slice one page long: the clock the walk reads moves 25 ms a call. */
function sliceEveryPage(): void {
  let t = 0;
  vi.spyOn(performance, "now").mockImplementation(() => {
    t += 25;
    return t;
  });
}

/** The walk never out of time: one slice, one review transaction. */
function neverSlice(): void {
  vi.spyOn(performance, "now").mockReturnValue(0);
}

/** The review's mark as committed. */
async function markOf(store: Store): Promise<number> {
  if (store.kind === "sqlite") {
    const mark = store.sqlite
      .prepare("SELECT chained_ord FROM ledger_cursors WHERE vault = ?")
      .pluck()
      .get(VAULT) as bigint | null;
    return mark === null ? -1 : Number(mark);
  }
  const { rows } = await store.pool.query<{ chained_ord: string | null }>(
    "SELECT chained_ord FROM ledger_cursors WHERE vault = $1",
    [VAULT],
  );
  return rows[0]?.chained_ord == null ? -1 : Number(rows[0].chained_ord);
}

/** What the vault holds that a review decides, and the jobs' checks and verdicts. */
async function decidedOf(store: Store) {
  const lineSql = `SELECT signature, ord, state, kind, job_id, released, header_ok,
      gap_after_signature, gap_units FROM ledger_lines WHERE vault = ? ORDER BY ord`;
  const lines =
    store.kind === "sqlite"
      ? (store.sqlite.prepare(lineSql).all(VAULT) as Record<string, unknown>[]).map((r) => ({
          ...r,
          released: Boolean(r.released),
          header_ok: r.header_ok === null ? null : Boolean(r.header_ok),
        }))
      : (await store.pool.query(lineSql.replace("?", "$1"), [VAULT])).rows;
  const jobs: Record<string, unknown> = {};
  for (const jobId of ["A", "B", "C", "D", "E"]) {
    const check = await checkOf(store, jobId, "credits.header");
    jobs[jobId] = {
      verdict: await jobVerdict(store, jobId),
      outcome: check?.outcome,
      actual: check?.actual,
    };
  }
  return {
    lines: lines.map((l) => ({
      ...l,
      ord: String(l.ord),
      gap_units: l.gap_units == null ? null : String(l.gap_units),
    })),
    mark: await markOf(store),
    jobs,
  };
}

afterEach(() => {
  vi.restoreAllMocks();
});

/** What one review decides of the jobs seeded (`seedVault`). */
const decidedJobs = {
  A: { verdict: "verified", outcome: "pass" },
  // Its header matches only the top-up listed late, once that is in its place by slot.
  B: { verdict: "verified", outcome: "pass" },
  C: { verdict: "verified", outcome: "pass" },
  D: { verdict: "pending" },
};

describe.each(dialects)("a review whose walk spans several slices on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  /** The store, and another connection to it (SQLite: the same in-memory store). */
  async function twoConnections(): Promise<[Store, Store]> {
    const store = await stores.open();
    if (store.kind === "sqlite") return [store, store];
    return [store, openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 })];
  }

  /** One review that never slices, after `before` wrote. */
  async function unsliced(before: (store: Store) => Promise<void>) {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedVault(store, ledger);
    neverSlice();
    await before(store);
    await ledger.review(VAULT, NOW + 10);
    return { store, ledger };
  }

  it("decides the headers of early and late locks as one review that never slices", async () => {
    const expected = await decidedOf((await unsliced(async () => {})).store);
    expect(expected.jobs).toMatchObject(decidedJobs);
    vi.restoreAllMocks();
    // The early gap and the late one.
    expect(expected.lines.filter((l) => l.gap_units !== null)).toHaveLength(2);

    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedVault(store, ledger);
    const marks: number[] = [];
    sliceEveryPage();
    const reviewing = ledger.review(VAULT, NOW + 10);
    await untilSettled(reviewing, async () => {
      marks.push(await markOf(store));
    });
    expect(new Set(marks).size, "the walk committed several slices").toBeGreaterThan(2);
    expect(await decidedOf(store)).toEqual(expected);
  });

  it("decides them as one review that never slices while another connection lists, reads, records and reviews between the slices", async () => {
    const writes = async (store: Store) => {
      const ledger = createLedgerStore(store);
      await writeNewLock(store, ledger);
      await ledger.review(VAULT, NOW + 10);
    };
    const before = await unsliced(writes);
    await before.ledger.review(VAULT, NOW + 10);
    const expected = await decidedOf(before.store);
    expect(expected.jobs).toMatchObject({
      ...decidedJobs,
      E: { verdict: "verified", outcome: "pass" },
    });
    vi.restoreAllMocks();

    const [store, other] = await twoConnections();
    try {
      const ledger = createLedgerStore(store);
      await seedVault(store, ledger);
      const top = await topOrd(store);
      sliceEveryPage();
      const reviewing = ledger.review(VAULT, NOW + 10);
      let wroteAt: number | undefined;
      await untilSettled(reviewing, async () => {
        const mark = await markOf(store);
        if (wroteAt !== undefined || mark <= 0 || mark >= top) return;
        wroteAt = mark;
        await writes(other);
      });
      expect(wroteAt, "the other connection wrote while the walk was partway").toBeDefined();
      vi.restoreAllMocks();
      await ledger.review(VAULT, NOW + 10);
      expect(await decidedOf(store)).toEqual(expected);
    } finally {
      if (other !== store) await other.close();
    }
  });
});

/** The ord of the vault's newest line. */
async function topOrd(store: Store): Promise<number> {
  const q = "SELECT max(ord) AS top FROM ledger_lines WHERE vault = ?";
  if (store.kind === "sqlite") {
    return Number((store.sqlite.prepare(q).get(VAULT) as { top: bigint }).top);
  }
  return Number((await store.pool.query(q.replace("?", "$1"), [VAULT])).rows[0].top);
}

/** Runs `step` every millisecond (real time) until `work` settles. */
async function untilSettled(work: Promise<unknown>, step: () => Promise<void>): Promise<void> {
  let settled = false;
  void work.finally(() => {
    settled = true;
  });
  while (!settled) {
    await step();
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await work;
}
