import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { openPostgres } from "../src/db/pg/client.js";
import type { LedgerReader, VaultSyncResult } from "../src/ledger/reader.js";
import { buildStatement } from "../src/ledger/statement.js";
import { LedgerNotFinalError, ledgerWindowCheck } from "../src/ledger/window-check.js";
import { isoOf } from "../src/reports/period.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import {
  createLedgerStore,
  type FetchedTransaction,
  type LedgerStore,
  type LineRead,
  type ListedSignature,
} from "../src/store/ledger.js";
import { SETTLEMENT_CLOCK_SLACK_SECONDS } from "../src/store/ledger-rules.js";
import { maxConflictSignatures } from "../src/store/receipt-rules.js";
import { createSignatureStore } from "../src/store/signatures.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { fakeSignature } from "./support/job-rows.js";
import { statementsSentBy } from "./support/pg-statements.js";
import {
  checkOf,
  dailyTotals,
  fileLineAs,
  jobVerdict,
  linesOf,
  seedChainTransaction,
  seedCheck,
  seedCreditVault,
  seedJob,
} from "./support/seed-ledger.js";
import { readJob, updateJob } from "./support/seed-recorder.js";

/** November 2026 in whole seconds, the month every statement below covers. */
const NOV = Date.UTC(2026, 10, 1) / 1000;
const DEC = Date.UTC(2026, 11, 1) / 1000;
const DEC_31 = Date.UTC(2026, 11, 31) / 1000;
const at = (day: number, hour: number, second = 0) =>
  NOV + (day - 1) * 86_400 + hour * 3_600 + second;
/** When the reader ran: after the month, so every response of it is read past. */
const NOW = Date.UTC(2026, 11, 11);
const VAULT = "bVau1tCred1tsXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
const OTHER_VAULT = "0therVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
const sig = (name: string) => fakeSignature(`ledger-dialects:${name}`);

interface SeedLine {
  name: string;
  slot: number;
  time: number;
  /** Absent: listed, never read. */
  balance?: { pre: bigint; post: bigint };
  succeeded?: boolean;
  memoKind?: LineRead["memoKind"];
  memoJobId?: string;
  /** The transaction created the vault's account. */
  opened?: boolean;
}

/**
 * A vault's month: a top-up, a job locked and settled (J1), a debit no receipt explains, a lock
 * never returned (J2) followed by a top-up whose balance before does not chain (30,000 missing),
 * a failed transaction, a line listed but not read, and a December line above it (2,000 missing).
 */
const month: SeedLine[] = [
  {
    name: "deposit",
    slot: 100,
    time: at(1, 10),
    balance: { pre: 0n, post: 1_000_000n },
    opened: true,
  },
  { name: "lock1", slot: 200, time: at(3, 12), balance: { pre: 1_000_000n, post: 600_000n } },
  {
    name: "settle1",
    slot: 201,
    time: at(3, 12, 20),
    balance: { pre: 600_000n, post: 920_000n },
    memoKind: "settle",
    memoJobId: "J1",
  },
  { name: "debit", slot: 300, time: at(10, 8), balance: { pre: 920_000n, post: 870_000n } },
  { name: "lock2", slot: 400, time: at(15, 9), balance: { pre: 870_000n, post: 770_000n } },
  { name: "topup", slot: 500, time: at(20, 0), balance: { pre: 800_000n, post: 810_000n } },
  {
    name: "failed",
    slot: 600,
    time: at(22, 5),
    balance: { pre: 810_000n, post: 810_000n },
    succeeded: false,
  },
  { name: "unread", slot: 700, time: at(25, 5) },
  { name: "december", slot: 800, time: DEC + 86_400, balance: { pre: 812_000n, post: 817_000n } },
];

/** A getSignaturesForAddress page: newest first. */
const pageOf = (lines: readonly SeedLine[]): ListedSignature[] =>
  [...lines].reverse().map((l) => ({
    signature: sig(l.name),
    slot: l.slot,
    blockTime: l.time,
    err: l.succeeded === false ? { InstructionError: [0, "Custom"] } : null,
  }));

/** What the reader makes of each read transaction, oldest first. */
const readsOf = (lines: readonly SeedLine[]): LineRead[] =>
  lines.flatMap((l) =>
    l.balance
      ? [
          {
            signature: sig(l.name),
            blockTime: l.time,
            succeeded: l.succeeded ?? true,
            pre: l.balance.pre,
            post: l.balance.post,
            delta: l.balance.post - l.balance.pre,
            // Quotes, commas, braces and backslashes: a memo is free text.
            memo: l.memoKind ? `${l.memoKind}:${l.memoJobId} "a, {b}" \\ é` : null,
            memoKind: l.memoKind ?? null,
            memoJobId: l.memoJobId ?? null,
            opened: l.opened ?? false,
          },
        ]
      : [],
  );

const fetchedOf = (lines: readonly SeedLine[]): FetchedTransaction[] =>
  lines.flatMap((l) =>
    l.balance
      ? [
          {
            signature: sig(l.name),
            slot: l.slot,
            blockTime: l.time,
            fee: 5_000n,
            succeeded: l.succeeded ?? true,
            err: l.succeeded === false ? '{"InstructionError":[0,"Custom"]}' : "null",
            facts: `{"signature": "${sig(l.name)}", "slot": ${l.slot}}`,
            raw: `raw:${l.name}`,
          },
        ]
      : [],
  );

/** The receipts of the month: J1 (header 60 credits: its balance after the lock) and J2 (50, none). */
/** Who takes a vault over, or is let spend from it, in the findings below. */
const ATTACKER = "Attacker1111111111111111111111111111111111";

/** The read of a line that moved no credits and named no memo. */
const unmovedRead = (name: string, time: number): LineRead => ({
  signature: sig(name),
  blockTime: time,
  succeeded: true,
  pre: null,
  post: null,
  delta: 0n,
  memo: null,
  memoKind: null,
  memoJobId: null,
});

/**
 * Lists the month's deposit and then `after`, and records the deposit's read (`depositReads`)
 * and `reads`: a vault whose only credits are the deposit, before one review.
 */
async function storeDepositThen(
  ledger: LedgerStore,
  after: readonly SeedLine[],
  reads: readonly LineRead[],
  depositReads = readsOf(month.slice(0, 1)),
) {
  await ledger.storePage(
    VAULT,
    await ledger.cursor(VAULT, NOW),
    pageOf([...month.slice(0, 1), ...after]),
    true,
    NOW,
  );
  await ledger.recordReads(VAULT, [...depositReads, ...reads], [], NOW);
}

/** November's statement of VAULT. */
const novemberOf = (store: Store) =>
  buildStatement(
    store,
    { from: NOV * 1000, to: DEC * 1000, vault: VAULT },
    { profile: localnetProfile },
  );

async function seedReceipts(store: Store) {
  await seedJob(store, {
    jobId: "J1",
    escrowTx: sig("lock1"),
    settlementTx: sig("settle1"),
    // The settlement paid 80,000 to worker and treasury and sent 320,000 back.
    chargedUnits: 80_000n,
    creditsRemainingUnits: 600_000n,
    recordedAt: at(3, 12, 30) * 1000,
  });
  await seedJob(store, {
    jobId: "J2",
    escrowTx: sig("lock2"),
    creditsRemainingUnits: 500_000n,
    recordedAt: at(15, 9, 30) * 1000,
  });
  // The verifier decided both before the ledger had read the vault: its skip names the vault.
  for (const jobId of ["J1", "J2"]) {
    await seedCheck(store, {
      jobId,
      name: "credits.header",
      outcome: "skip",
      expected: { vault: VAULT },
      at: NOW - 60_000,
    });
  }
}

/**
 * One reader's pass over the vault: list (the chain finalized through `finalThrough` before the
 * listing), read what is listed, review.
 */
async function readVault(
  ledger: LedgerStore,
  lines: readonly SeedLine[],
  now = NOW,
  finalThrough: number | null = now,
) {
  const seen = await ledger.cursor(VAULT, now);
  const stored = await ledger.storePage(VAULT, seen, pageOf(lines), true, now, finalThrough);
  await ledger.recordReads(VAULT, readsOf(lines), fetchedOf(lines), now);
  return { stored, review: await ledger.review(VAULT, now) };
}

const sums = (
  lock: [number, bigint],
  ret: [number, bigint],
  deposit: [number, bigint],
  unexplained: [number, bigint],
  none: [number, bigint],
) => ({
  lock: { lines: lock[0], units: lock[1] },
  return: { lines: ret[0], units: ret[1] },
  deposit: { lines: deposit[0], units: deposit[1] },
  unexplained: { lines: unexplained[0], units: unexplained[1] },
  none: { lines: none[0], units: none[1] },
});

describe.each(dialects)("ledger store on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("keeps a return under a recorded job's memo that the job does not name with that job, and judges it again", async () => {
    // J9 names its lock and settlement; a full refund of the same lock came back first under
    // J9's refund memo. Only named transactions are a job's steps: the refund is kept with J9
    // (as a conflicting receipt's signatures are) and J9 goes back to the verifier.
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedJob(store, {
      jobId: "J9",
      escrowTx: sig("lock9"),
      settlementTx: sig("settle9"),
      verdict: "verified",
      recordedAt: at(11, 1) * 1000,
    });
    await readVault(ledger, [
      { name: "lock9", slot: 80, time: at(11, 1), balance: { pre: 500_000n, post: 340_000n } },
      {
        name: "refund9",
        slot: 81,
        time: at(11, 1, 10),
        balance: { pre: 340_000n, post: 500_000n },
        memoKind: "refund",
        memoJobId: "J9",
      },
      {
        name: "settle9",
        slot: 82,
        time: at(11, 1, 20),
        balance: { pre: 500_000n, post: 540_000n },
        memoKind: "settle",
        memoJobId: "J9",
      },
      // And a second lock under J9's escrow memo, which is no lock of J9's: unexplained.
      {
        name: "second9",
        slot: 83,
        time: at(11, 1, 30),
        balance: { pre: 540_000n, post: 380_000n },
        memoKind: "escrow",
        memoJobId: "J9",
      },
    ]);
    expect(await readJob(store, "J9")).toMatchObject({
      conflictSignatures: [sig("refund9"), sig("second9")],
      verdict: "pending",
    });
    // Read again (a review), nothing is added twice and the job is not sent back again.
    await updateJob(store, "J9", { verdict: "discrepancy" });
    await ledger.review(VAULT, NOW);
    expect(await readJob(store, "J9")).toMatchObject({
      conflictSignatures: [sig("refund9"), sig("second9")],
      verdict: "discrepancy",
    });
  });

  it("keeps one line past the followed signatures with a job whose list is full, as the mark that more were named", async () => {
    // JC's followed signatures are full; a refund and a second lock under its memo come. The
    // refund is kept as the one past them, which fails the job; the lock past that is not.
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedJob(store, {
      jobId: "JC",
      escrowTx: sig("lockC"),
      settlementTx: sig("settleC"),
      verdict: "verified",
      recordedAt: at(11, 1) * 1000,
    });
    const full = Array.from({ length: maxConflictSignatures }, (_, i) => sig(`junkC${i}`));
    await updateJob(store, "JC", { conflictSignatures: full });
    await readVault(ledger, [
      { name: "lockC", slot: 80, time: at(11, 1), balance: { pre: 500_000n, post: 340_000n } },
      {
        name: "refundC",
        slot: 81,
        time: at(11, 1, 10),
        balance: { pre: 340_000n, post: 500_000n },
        memoKind: "refund",
        memoJobId: "JC",
      },
      {
        name: "settleC",
        slot: 82,
        time: at(11, 1, 20),
        balance: { pre: 500_000n, post: 540_000n },
        memoKind: "settle",
        memoJobId: "JC",
      },
      {
        name: "secondC",
        slot: 83,
        time: at(11, 1, 30),
        balance: { pre: 540_000n, post: 380_000n },
        memoKind: "escrow",
        memoJobId: "JC",
      },
    ]);
    expect(await readJob(store, "JC")).toMatchObject({
      conflictSignatures: [...full, sig("refundC")],
      verdict: "pending",
    });
  });

  it("keeps nothing with a job that names every return under its memo", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedJob(store, {
      jobId: "J10",
      escrowTx: sig("lock10"),
      apiSettlementTx: sig("settle10"),
      verdict: "verified",
      recordedAt: at(11, 1) * 1000,
    });
    await readVault(ledger, [
      { name: "lock10", slot: 90, time: at(11, 1), balance: { pre: 500_000n, post: 340_000n } },
      {
        name: "settle10",
        slot: 91,
        time: at(11, 1, 20),
        balance: { pre: 340_000n, post: 380_000n },
        memoKind: "settle",
        memoJobId: "J10",
      },
    ]);
    expect(await readJob(store, "J10")).toMatchObject({
      conflictSignatures: null,
      verdict: "verified",
    });
  });

  describe("a step read before the job's receipt was recorded", () => {
    // The proxy records a receipt once the answer has ended, so the ledger may read a job's
    // transactions first: no job to keep a step with then, and reviews see the same kind
    // after. The verifier's claim keeps it with the job before its first judgement.
    const claimAll = (store: Store) =>
      createJobQueueStore(store).claim("verifier", null, {
        t: NOW,
        leaseMs: 60_000,
        limit: 10,
      });
    const lock = (name: string, slot: number, pre: bigint, post: bigint): SeedLine => ({
      name,
      slot,
      time: at(11, 1, slot),
      balance: { pre, post },
      memoKind: "escrow",
      memoJobId: "J11",
    });
    const back = (name: string, slot: number, memoKind: "settle" | "refund", pre: bigint) => ({
      name,
      slot,
      time: at(11, 1, slot),
      balance: { pre, post: pre + 160_000n },
      memoKind,
      memoJobId: "J11",
    });

    /** J11's receipt, naming lock11 and settle11, recorded after the vault was read. */
    const receiptOfJ11 = (store: Awaited<ReturnType<typeof stores.open>>) =>
      seedJob(store, {
        jobId: "J11",
        escrowTx: sig("lock11"),
        settlementTx: sig("settle11"),
        verdict: "pending",
        recordedAt: at(11, 2) * 1000,
      });

    it("keeps a refund read before the receipt naming the lock and settlement with the job", async () => {
      const store = await stores.open();
      const ledger = createLedgerStore(store);
      await readVault(ledger, [
        lock("lock11", 1, 500_000n, 340_000n),
        back("refund11", 2, "refund", 340_000n),
        back("settle11", 3, "settle", 500_000n),
      ]);
      await receiptOfJ11(store);
      await ledger.review(VAULT, NOW);
      const [claimed] = await claimAll(store);
      expect(claimed?.conflictSignatures).toEqual([sig("refund11")]);
      // Kept by its own claim, which still holds it: the job is judged in this round.
      expect(await readJob(store, "J11")).toMatchObject({
        conflictSignatures: [sig("refund11")],
        leaseOwner: "verifier",
      });
      // Claimed again (a failed round), the job keeps it once.
      await createJobQueueStore(store).releaseLeases("verifier");
      expect((await claimAll(store))[0]?.conflictSignatures).toEqual([sig("refund11")]);
    });

    it("keeps a second lock under the job's escrow memo read before the receipt with the job", async () => {
      const store = await stores.open();
      const ledger = createLedgerStore(store);
      await readVault(ledger, [
        lock("lock11", 1, 500_000n, 340_000n),
        back("settle11", 2, "settle", 340_000n),
        lock("again11", 3, 500_000n, 340_000n),
      ]);
      await receiptOfJ11(store);
      const [claimed] = await claimAll(store);
      expect(claimed?.conflictSignatures).toEqual([sig("again11")]);
    });

    it("keeps nothing with an honest job whose lock and settlement were read first", async () => {
      const store = await stores.open();
      const ledger = createLedgerStore(store);
      await readVault(ledger, [
        lock("lock11", 1, 500_000n, 340_000n),
        back("settle11", 2, "settle", 340_000n),
      ]);
      await receiptOfJ11(store);
      const [claimed] = await claimAll(store);
      expect(claimed).toMatchObject({ jobId: "J11", conflictSignatures: null });
      expect(await readJob(store, "J11")).toMatchObject({ conflictSignatures: null });
    });
  });

  it("lists pinned and statement vaults and a vault's keys in byte order", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedCreditVault(store, { keyFingerprint: "kf_b", vault: "bVault", pinnedAt: 1 });
    await seedCreditVault(store, { keyFingerprint: "kf_A", vault: "bVault", pinnedAt: 2 });
    await seedCreditVault(store, { keyFingerprint: "kf_C", vault: "CVault", pinnedAt: 3 });
    await ledger.cursor("aLedgerOnly", NOW);
    await ledger.cursor("bVault", NOW);

    expect(await ledger.pinnedVaults()).toEqual(["CVault", "bVault"]);
    expect(await ledger.statementVaults()).toEqual(["CVault", "aLedgerOnly", "bVault"]);
    expect(await ledger.keysOf("bVault")).toEqual(["kf_A", "kf_b"]);
    expect(await ledger.keysOf("nobody")).toEqual([]);
  });

  it("moves the cursor page by page, refuses a page listed from a cursor that moved, and orders lines oldest first", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    expect(await ledger.oldestFinalThrough()).toBeNull();
    const empty = await ledger.cursor(VAULT, 1_000);
    expect(empty).toEqual({
      vault: VAULT,
      newestSignature: null,
      newestSlot: null,
      syncTop: null,
      syncTopSlot: null,
      syncBefore: null,
      syncBeforeSlot: null,
      syncNumber: 0,
      syncIndex: 0,
    });
    expect(await ledger.oldestFinalThrough()).toBe(0);

    const [newest, older] = [pageOf(month).slice(0, 4), pageOf(month).slice(4)];
    // The chain had finalized through 1,000 before the sync's first page was asked for.
    expect(await ledger.storePage(VAULT, empty, newest, false, 2_000, 1_000)).toBe(true);
    const middle = await ledger.cursor(VAULT, 2_000);
    expect(middle).toMatchObject({
      syncTop: sig("december"),
      syncTopSlot: 800,
      syncBefore: sig("topup"),
      // The slot of the line the next page lists below: no entry of it can be later.
      syncBeforeSlot: newest.at(-1)!.slot,
      syncNumber: 0,
      syncIndex: 4,
    });
    // Another process listed from the empty cursor: its page is already stored.
    expect(await ledger.storePage(VAULT, empty, newest, false, 2_500, 2_000)).toBe(false);
    expect((await ledger.cursorFigures(VAULT))?.finalThrough).toBeNull();
    // The sync's last page, asked for later: what it holds is what the first page held.
    expect(await ledger.storePage(VAULT, middle, older, true, 3_000, 2_900)).toBe(true);
    expect(await ledger.cursorFigures(VAULT)).toMatchObject({
      syncedAt: 3_000,
      finalThrough: 1_000,
    });
    expect(await ledger.cursor(VAULT, 3_000)).toEqual({
      vault: VAULT,
      newestSignature: sig("december"),
      newestSlot: 800,
      syncTop: null,
      syncTopSlot: null,
      syncBefore: null,
      syncBeforeSlot: null,
      syncNumber: 1,
      syncIndex: 0,
    });
    expect(await ledger.listedSignatures(VAULT)).toEqual(month.map((l) => sig(l.name)));
    expect(await ledger.newestListedSlot(VAULT)).toBe(800);
    expect(await ledger.newestListedSlot("nobody")).toBeNull();
    // Listed at 3,000, read through 1,000: the lag counts from what the sync proved.
    expect(await ledger.oldestFinalThrough()).toBe(1_000);

    // The next sync lists what came after: its lines sort above the first sync's.
    const synced = await ledger.cursor(VAULT, 4_000);
    const later: ListedSignature[] = [
      { signature: sig("later"), slot: 900, blockTime: DEC_31, err: null },
    ];
    expect(await ledger.storePage(VAULT, synced, later, true, 4_000, 3_900)).toBe(true);
    expect((await ledger.cursorFigures(VAULT))?.finalThrough).toBe(3_900);
    expect((await ledger.listedSignatures(VAULT)).at(-1)).toBe(sig("later"));
    expect(await ledger.cursor(VAULT, 4_000)).toMatchObject({
      newestSignature: sig("later"),
      newestSlot: 900,
      syncNumber: 2,
    });
    // An empty last page ends a sync without moving the newest signature.
    const quiet = await ledger.cursor(VAULT, 5_000);
    expect(await ledger.storePage(VAULT, quiet, [], true, 5_000)).toBe(true);
    expect(await ledger.cursor(VAULT, 5_000)).toMatchObject({
      newestSignature: sig("later"),
      newestSlot: 900,
      syncNumber: 3,
    });
    // A sync that read no finalized time, or an earlier one (an endpoint behind), keeps the last.
    expect((await ledger.cursorFigures(VAULT))?.finalThrough).toBe(3_900);
    await ledger.storePage(VAULT, await ledger.cursor(VAULT, 6_000), [], true, 6_000, 3_000);
    expect(await ledger.cursorFigures(VAULT)).toMatchObject({
      syncedAt: 6_000,
      finalThrough: 3_900,
    });
  });

  it("files a read line under its transaction's block time, not its listing's", async () => {
    // A listing's time can rest on one endpoint alone: one dated the debit two days early (into
    // another period), and the line stayed there once read.
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    const early = month.map((l) => (l.name === "debit" ? { ...l, time: l.time - 2 * 86_400 } : l));
    await ledger.storePage(VAULT, await ledger.cursor(VAULT, NOW), pageOf(early), true, NOW);
    await ledger.recordReads(VAULT, readsOf(month), fetchedOf(month), NOW);
    const none = sums([0, 0n], [0, 0n], [0, 0n], [0, 0n], [0, 0n]);
    const debit = sums([0, 0n], [0, 0n], [0, 0n], [1, -50_000n], [0, 0n]);
    // Whole days (the daily sums) and a part of one (the lines) alike.
    expect(await ledger.periodSums(VAULT, at(8, 0), at(9, 0))).toEqual(none);
    expect(await ledger.periodSums(VAULT, at(10, 0), at(11, 0))).toEqual(debit);
    expect(await ledger.periodSums(VAULT, at(8, 7), at(8, 9))).toEqual(none);
    expect(await ledger.periodSums(VAULT, at(10, 7), at(10, 9))).toEqual(debit);
    // The line itself carries the transaction's time (what the statement lists it under).
    const lines = await ledger.reviewLines(VAULT, at(10, 0), at(11, 0));
    expect(lines.map((l) => [l.signature, l.blockTime])).toEqual([[sig("debit"), at(10, 8)]]);
  });

  it("stores fetched transactions once, keeps one already fetched, and records balances and errors", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedChainTransaction(store, { signature: sig("lock1"), facts: { old: true }, at: 1 });
    await seedChainTransaction(store, { signature: sig("debit"), at: 1 });
    const lines = month.slice(0, 4);
    await ledger.cursor(VAULT, NOW);
    await ledger.storePage(VAULT, await ledger.cursor(VAULT, NOW), pageOf(lines), true, NOW);
    expect(await ledger.storedTransaction(sig("debit"))).toBeUndefined();
    await ledger.recordReads(VAULT, readsOf(lines), fetchedOf(lines), NOW);

    // Facts are the text as written (spacing kept), for the reader to parse.
    expect(await ledger.storedTransaction(sig("deposit"))).toEqual({
      signature: sig("deposit"),
      facts: `{"signature": "${sig("deposit")}", "slot": 100}`,
      raw: "raw:deposit",
    });
    expect(await ledger.storedTransaction(sig("debit"))).toMatchObject({ raw: "raw:debit" });
    expect(JSON.parse((await ledger.storedTransaction(sig("lock1")))!.facts)).toEqual({
      old: true,
    });
    expect(await ledger.storedTransaction(sig("nothing"))).toBeUndefined();
    expect(await ledger.listedSignatures(VAULT)).toEqual([]);

    await ledger.setBalance(VAULT, { amount: 870_000n, slot: 333 }, NOW + 1);
    await ledger.setError(VAULT, "rpc said no", NOW + 2);
    expect(await ledger.cursorFigures(VAULT)).toEqual({
      syncedAt: NOW,
      finalThrough: null,
      balanceUnits: 870_000n,
      balanceSlot: 333,
      balanceForeign: null,
      balanceControl: null,
      newestSlot: 300,
      judgedThrough: null,
      judgedAt: null,
      // What a statement says of lines left unread: the reader's last error on the vault.
      lastError: "rpc said no",
    });
    expect(await ledger.cursorFigures("nobody")).toBeUndefined();

    // How far nightly runs judged the vault, and when: only ever raised, whichever run writes
    // last.
    await ledger.markJudged(VAULT, 5_000, NOW + 5);
    await ledger.markJudged(VAULT, 4_000, NOW + 4);
    expect(await ledger.cursorFigures(VAULT)).toMatchObject({
      judgedThrough: 5_000,
      judgedAt: NOW + 5,
    });
    await Promise.all([
      ledger.markJudged(VAULT, 7_000, NOW + 7),
      ledger.markJudged(VAULT, 6_000, NOW + 6),
    ]);
    expect(await ledger.cursorFigures(VAULT)).toMatchObject({
      judgedThrough: 7_000,
      judgedAt: NOW + 7,
    });

    // Where the history held begins: the oldest line, and whether it created the account.
    expect(await ledger.historyStart(VAULT)).toEqual({
      signature: sig("deposit"),
      slot: 100,
      blockTime: at(1, 10),
      read: true,
      opened: true,
    });
    await ledger.setOpened(VAULT, sig("deposit"), false);
    expect((await ledger.historyStart(VAULT))?.opened).toBe(false);
    expect(await ledger.historyStart("nobody")).toBeNull();
    // Reading nothing writes nothing.
    await ledger.recordReads(VAULT, [], [], NOW);
  });

  it("keeps the vault address's movements and holding in another mint apart from the credits, as findings", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    const fake = { name: "fake", slot: 150, time: at(2, 10) };
    // 10,000 units of another mint, with a refund memo: no credits moved.
    const foreign = [{ mint: "FakeMint", programId: "Tokenkeg", deltaUnits: 10_000n }];
    await storeDepositThen(
      ledger,
      [fake],
      [
        {
          ...unmovedRead("fake", fake.time),
          memo: "decentral:refund:J9",
          memoKind: "refund",
          memoJobId: "J9",
          foreign,
        },
      ],
    );
    await ledger.review(VAULT, NOW);
    expect(await ledger.periodSums(VAULT, NOV, DEC)).toEqual(
      sums([0, 0n], [0, 0n], [1, 1_000_000n], [0, 0n], [1, 0n]),
    );
    expect(await ledger.foreignLines(VAULT, NOV, DEC)).toEqual([
      {
        signature: sig("fake"),
        slot: 150,
        blockTime: at(2, 10),
        memo: "decentral:refund:J9",
        memoJobId: "J9",
        changes: foreign,
      },
    ]);
    expect(await ledger.foreignLines(VAULT, DEC, DEC + 86_400)).toEqual([]);
    const holding = { programId: "Tokenkeg", mint: "FakeMint", amountUnits: 10_000n };
    await ledger.setBalance(VAULT, { amount: 0n, slot: 160, foreign: holding }, NOW);
    expect(await ledger.cursorFigures(VAULT)).toMatchObject({
      balanceUnits: 0n,
      balanceForeign: holding,
    });
  });

  it("keeps the vault's owner after a transaction, when it is not the escrow authority, as a finding", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    const handover = { name: "handover", slot: 150, time: at(2, 10) };
    // A SetAuthority: no money moved, the vault now another's.
    await storeDepositThen(
      ledger,
      [handover],
      [{ ...unmovedRead("handover", handover.time), otherOwner: ATTACKER }],
    );
    await ledger.review(VAULT, NOW);
    expect(await ledger.periodSums(VAULT, NOV, DEC)).toEqual(
      sums([0, 0n], [0, 0n], [1, 1_000_000n], [0, 0n], [1, 0n]),
    );
    expect(await ledger.ownerLines(VAULT, NOV, DEC)).toEqual([
      {
        signature: sig("handover"),
        slot: 150,
        blockTime: at(2, 10),
        memo: null,
        memoJobId: null,
        owner: ATTACKER,
      },
    ]);
    expect(await ledger.ownerLines(VAULT, NOV, at(2, 10))).toEqual([]);
    // The handover is the vault's newest line: the vault is the attacker's now.
    expect(await ledger.ownerNow(VAULT)).toEqual({
      signature: sig("handover"),
      slot: 150,
      blockTime: at(2, 10),
      memo: null,
      memoJobId: null,
      owner: ATTACKER,
    });
    const s = await novemberOf(store);
    const now = expect.objectContaining({
      finding: "vault_owner_now",
      signature: sig("handover"),
      owner: ATTACKER,
    });
    expect(s.vaults[0]?.ownerChanges).toEqual([
      expect.objectContaining({
        finding: "vault_owner_changed",
        signature: sig("handover"),
        owner: ATTACKER,
      }),
      now,
    ]);
    // A period without the handover still says whose the vault is now.
    const earlier = await buildStatement(
      store,
      { from: NOV * 1000, to: at(2, 10) * 1000, vault: VAULT },
      { profile: localnetProfile },
    );
    expect(earlier.vaults[0]?.ownerChanges).toEqual([now]);
  });

  it("keeps the vault another's after a later line that does not show its owner, until one gives it back", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    const handover = { name: "handover", slot: 150, time: at(2, 10) };
    const lamport = { name: "lamport", slot: 160, time: at(2, 11) };
    const back = { name: "back", slot: 170, time: at(2, 12) };
    // The SetAuthority, then a SOL transfer to the vault: no token program among its keys, so
    // no token balances, and its owner is unknown (not the escrow authority's).
    await storeDepositThen(
      ledger,
      [handover, lamport, back],
      [
        // Written as a build before owner_after wrote it (migration 0024 fills those in): a
        // line naming another owner knows the owner.
        { ...unmovedRead("handover", handover.time), otherOwner: ATTACKER },
        { ...unmovedRead("lamport", lamport.time), otherOwner: null, ownerAfter: null },
      ],
      readsOf(month.slice(0, 1)).map((l) => ({
        ...l,
        ownerAfter: localnetProfile.escrowAuthority,
      })),
    );
    await ledger.review(VAULT, NOW);
    const owned = {
      signature: sig("handover"),
      slot: 150,
      blockTime: at(2, 10),
      memo: null,
      memoJobId: null,
      owner: ATTACKER,
    };
    expect(await ledger.ownerNow(VAULT)).toEqual(owned);
    // The lamport line after it shows no owner: the handover's slot is the newest that does.
    expect((await ledger.ownerShownLine(VAULT))?.slot).toBe(150);
    const later = await buildStatement(
      store,
      { from: at(2, 11) * 1000, to: DEC * 1000, vault: VAULT },
      { profile: localnetProfile },
    );
    expect(later.vaults[0]?.ownerChanges).toEqual([
      expect.objectContaining({ finding: "vault_owner_now", signature: sig("handover") }),
    ]);
    // A SetAuthority back to the escrow authority: the vault is its own again.
    await ledger.recordReads(
      VAULT,
      [
        {
          ...unmovedRead("back", back.time),
          otherOwner: null,
          ownerAfter: localnetProfile.escrowAuthority,
        },
      ],
      [],
      NOW,
    );
    expect(await ledger.ownerNow(VAULT)).toBeNull();
    expect((await ledger.ownerShownLine(VAULT))?.slot).toBe(back.slot);
  });

  it("keeps the delegate an Approve gave the vault as a finding, though nothing moved", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    const approve = { name: "approve", slot: 150, time: at(2, 10) };
    await storeDepositThen(
      ledger,
      [approve],
      [{ ...unmovedRead("approve", approve.time), delegate: ATTACKER }],
    );
    await ledger.review(VAULT, NOW);
    expect(await ledger.periodSums(VAULT, NOV, DEC)).toEqual(
      sums([0, 0n], [0, 0n], [1, 1_000_000n], [0, 0n], [1, 0n]),
    );
    expect(await ledger.delegateLines(VAULT, NOV, DEC)).toEqual([
      {
        signature: sig("approve"),
        slot: 150,
        blockTime: at(2, 10),
        memo: null,
        memoJobId: null,
        delegate: ATTACKER,
      },
    ]);
    expect(await ledger.delegateLines(VAULT, NOV, at(2, 10))).toEqual([]);
    expect(await ledger.ownerLines(VAULT, NOV, DEC)).toEqual([]);
    expect(await ledger.ownerNow(VAULT)).toBeNull();
    const s = await novemberOf(store);
    expect(s.vaults[0]?.delegateApprovals).toEqual([
      expect.objectContaining({
        finding: "vault_delegate_approved",
        signature: sig("approve"),
        delegate: ATTACKER,
      }),
    ]);
    expect(s.vaults[0]?.counts.delegateApprovals).toBe(1);
  });

  it("classifies lines by receipts, jobs-API answers and memos, and releases the locks returned", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedJob(store, {
      jobId: "J6",
      apiEscrowTx: sig("api-lock"),
      apiSettlementTx: sig("api-return"),
      chargedUnits: 15n,
      recordedAt: at(5, 1) * 1000,
    });
    const lines: SeedLine[] = [
      {
        name: "memo-lock",
        slot: 10,
        time: at(5, 0),
        balance: { pre: 100n, post: 90n },
        memoKind: "escrow",
        memoJobId: "J5",
      },
      {
        name: "memo-return",
        slot: 11,
        time: at(5, 0, 10),
        balance: { pre: 90n, post: 100n },
        memoKind: "settle",
        memoJobId: "J5",
      },
      { name: "api-lock", slot: 12, time: at(5, 1), balance: { pre: 100n, post: 80n } },
      {
        name: "api-return",
        slot: 13,
        time: at(5, 1, 10),
        balance: { pre: 80n, post: 85n },
        memoKind: "settle",
        memoJobId: "J6",
      },
    ];
    await ledger.storePage(VAULT, await ledger.cursor(VAULT, NOW), pageOf(lines), true, NOW);
    // Transactions not fetched here: the settlement is known from the line itself.
    await ledger.recordReads(VAULT, readsOf(lines), [], NOW);

    expect(await linesOf(store, VAULT)).toEqual([
      {
        signature: sig("memo-lock"),
        state: "read",
        kind: "unexplained",
        jobId: "J5",
        released: true,
        headerOk: null,
      },
      {
        signature: sig("memo-return"),
        state: "read",
        kind: "return",
        jobId: "J5",
        released: false,
        headerOk: null,
      },
      {
        signature: sig("api-lock"),
        state: "read",
        kind: "lock",
        jobId: "J6",
        released: true,
        headerOk: null,
      },
      {
        signature: sig("api-return"),
        state: "read",
        kind: "return",
        jobId: "J6",
        released: false,
        headerOk: null,
      },
    ]);
    expect(await ledger.periodSums(VAULT, NOV, DEC)).toEqual(
      sums([1, -20n], [2, 15n], [0, 0n], [1, -10n], [0, 0n]),
    );
    expect((await ledger.reviewLines(VAULT, NOV, DEC)).map((l) => [l.memo, l.now])).toEqual([
      ['escrow:J5 "a, {b}" \\ é', { kind: "unexplained", jobId: "J5" }],
    ]);
  });

  it("finds the job of a signature through an index, whichever column names it, on 20,000 jobs", async () => {
    const store = await stores.open();
    // SQLite: every statement the stores prepare (when they are made) that looks jobs up by a
    // signature column is explained below; PostgreSQL: every statement they send.
    const prepared: string[] = [];
    if (store.kind === "sqlite") {
      const prepare = store.sqlite.prepare.bind(store.sqlite);
      store.sqlite.prepare = ((text: string) => {
        prepared.push(text);
        return prepare(text);
      }) as typeof store.sqlite.prepare;
    }
    const ledger = createLedgerStore(store);
    const signatures = createSignatureStore(store);
    // Most jobs' API answers name the receipt's own signatures.
    const bulk = `SELECT 'bulk-' || i, 'proxy', 'e-' || i, 's-' || i, 'e-' || i, 's-' || i, 'h', i, i, i`;
    const columns = `job_id, source, escrow_tx, settlement_tx, api_escrow_tx, api_settlement_tx,
      receipt_hash, created_at, recorded_at, updated_at`;
    if (store.kind === "postgres") {
      await store.pool.query(
        `INSERT INTO jobs (${columns}) ${bulk} FROM generate_series(1, 20000) AS i`,
      );
      await store.pool.query("ANALYZE jobs");
    } else {
      store.sqlite.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
        INSERT INTO jobs (${columns}) ${bulk} FROM n`);
    }
    // A receipt whose upstream sent no escrow header: the jobs API names its lock.
    await seedJob(store, {
      jobId: "J6",
      apiEscrowTx: sig("api-lock"),
      apiSettlementTx: sig("api-return"),
      recordedAt: at(5, 1) * 1000,
    });
    const lines: SeedLine[] = [
      { name: "api-lock", slot: 12, time: at(5, 1), balance: { pre: 100n, post: 80n } },
      {
        name: "api-return",
        slot: 13,
        time: at(5, 1, 10),
        balance: { pre: 80n, post: 85n },
        memoKind: "settle",
        memoJobId: "J6",
      },
    ];
    const run = async () => {
      await ledger.storePage(VAULT, await ledger.cursor(VAULT, NOW), pageOf(lines), true, NOW);
      await ledger.recordReads(VAULT, readsOf(lines), [], NOW);
      return signatures.jobsNaming([sig("api-lock"), "e-77", "s-77"], 10);
    };
    const bySignature = /\b(api_)?(escrow|settlement)_tx"?\s*(=|IN\b)/i;
    const plans: string[] = [];
    let named: Awaited<ReturnType<typeof run>>;
    if (store.kind === "postgres") {
      let result: Awaited<ReturnType<typeof run>> | undefined;
      const sent = await statementsSentBy(async () => {
        result = await run();
      });
      named = result as Awaited<ReturnType<typeof run>>;
      const client = await store.pool.connect();
      try {
        await client.query("BEGIN");
        for (const { text, values } of sent.filter((s) => bySignature.test(s.text))) {
          const rows = (await client.query(`EXPLAIN ${text}`, values)).rows;
          plans.push(
            `${text}\n${rows.map((r: Record<string, string>) => r["QUERY PLAN"]).join("\n")}`,
          );
        }
      } finally {
        await client.query("ROLLBACK");
        client.release();
      }
    } else {
      named = await run();
      for (const text of prepared.filter((t) => bySignature.test(t) && /\bjobs\b/.test(t))) {
        const names = Object.fromEntries(
          [...text.matchAll(/[@:$](\w+)/g)].map((m) => [m[1], null]),
        );
        const anonymous = (text.match(/\?/g) ?? []).map(() => null);
        const statement = store.sqlite.prepare(`EXPLAIN QUERY PLAN ${text}`);
        const rows = (
          Object.keys(names).length > 0 ? statement.all(names) : statement.all(...anonymous)
        ) as { detail: string }[];
        plans.push(`${text}\n${rows.map((r) => r.detail).join("\n")}`);
      }
    }
    expect(plans.filter((p) => /api_escrow_tx/.test(p)).length).toBeGreaterThanOrEqual(2);
    for (const plan of plans) expect(plan).not.toMatch(/Seq Scan on jobs|\bSCAN jobs\b/);
    expect((await linesOf(store, VAULT)).map((l) => [l.signature, l.kind, l.jobId])).toEqual([
      [sig("api-lock"), "lock", "J6"],
      [sig("api-return"), "return", "J6"],
    ]);
    expect(named.named).toEqual(
      new Map([
        [sig("api-lock"), ["J6"]],
        ["e-77", ["bulk-77"]],
        ["s-77", ["bulk-77"]],
      ]),
    );
  });

  it("classifies a batch line by line: a memo return read before the memo lock it names is a deposit until the next round", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    const lines: SeedLine[] = [
      {
        name: "early-return",
        slot: 20,
        time: at(6, 0),
        balance: { pre: 100n, post: 105n },
        memoKind: "settle",
        memoJobId: "J7",
      },
      {
        name: "late-lock",
        slot: 21,
        time: at(6, 0, 5),
        balance: { pre: 105n, post: 100n },
        memoKind: "escrow",
        memoJobId: "J7",
      },
    ];
    await ledger.storePage(VAULT, await ledger.cursor(VAULT, NOW), pageOf(lines), true, NOW);
    await ledger.recordReads(VAULT, readsOf(lines), [], NOW);
    expect(await linesOf(store, VAULT)).toEqual([
      {
        signature: sig("early-return"),
        state: "read",
        kind: "deposit",
        jobId: null,
        released: false,
        headerOk: null,
      },
      {
        signature: sig("late-lock"),
        state: "read",
        kind: "unexplained",
        jobId: "J7",
        released: true,
        headerOk: null,
      },
    ]);
    expect(await ledger.review(VAULT, NOW)).toMatchObject({ classified: 1, released: 0 });
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId])).toEqual([
      ["return", "J7"],
      ["unexplained", "J7"],
    ]);
  });

  it("gives a month's statement figures: sums, opening, pending, review, overdue locks, headers, gaps", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedReceipts(store);
    const { stored, review } = await readVault(ledger, month);
    expect(stored).toBe(true);
    expect(review).toEqual({
      classified: 0,
      released: 0,
      headersDecided: 2,
      reopened: 1,
      headersPassed: 1,
      gaps: 1,
    });
    await ledger.setBalance(VAULT, { amount: 817_000n, slot: 801 }, NOW);

    expect(await linesOf(store, VAULT)).toEqual([
      {
        signature: sig("deposit"),
        state: "read",
        kind: "deposit",
        jobId: null,
        released: false,
        headerOk: null,
      },
      {
        signature: sig("lock1"),
        state: "read",
        kind: "lock",
        jobId: "J1",
        released: true,
        headerOk: true,
      },
      {
        signature: sig("settle1"),
        state: "read",
        kind: "return",
        jobId: "J1",
        released: false,
        headerOk: null,
      },
      {
        signature: sig("debit"),
        state: "read",
        kind: "unexplained",
        jobId: null,
        released: false,
        headerOk: null,
      },
      {
        signature: sig("lock2"),
        state: "read",
        kind: "lock",
        jobId: "J2",
        released: false,
        headerOk: false,
      },
      {
        signature: sig("topup"),
        state: "read",
        kind: "deposit",
        jobId: null,
        released: false,
        headerOk: null,
      },
      {
        signature: sig("failed"),
        state: "read",
        kind: "none",
        jobId: null,
        released: false,
        headerOk: null,
      },
      {
        signature: sig("unread"),
        state: "listed",
        kind: null,
        jobId: null,
        released: false,
        headerOk: null,
      },
      {
        signature: sig("december"),
        state: "read",
        kind: "deposit",
        jobId: null,
        released: false,
        headerOk: null,
      },
    ]);
    // The triggers' daily sums: every read line once.
    expect(await dailyTotals(store, VAULT)).toEqual({
      deposit: { lines: 3, units: 1_015_000n },
      lock: { lines: 2, units: -500_000n },
      return: { lines: 1, units: 320_000n },
      unexplained: { lines: 1, units: -50_000n },
      none: { lines: 1, units: 0n },
    });
    // J1's header matched the balance after its lock: passed in place. J2's matched none of a
    // span now read in full: reopened for the verifier to fail it.
    expect(await checkOf(store, "J1", "credits.header")).toEqual({
      outcome: "pass",
      expected: { headerUnits: "600000", vault: VAULT },
      actual: { balanceUnits: "600000" },
    });
    expect(await jobVerdict(store, "J1")).toBe("verified");
    expect(await jobVerdict(store, "J2")).toBe("pending");
    expect(await checkOf(store, "J2", "credits.header")).toMatchObject({ outcome: "skip" });

    // Whole days (the daily sums) and partial days (their lines) add up alike.
    expect(await ledger.periodSums(VAULT, NOV, DEC)).toEqual(
      sums([2, -500_000n], [1, 320_000n], [2, 1_010_000n], [1, -50_000n], [1, 0n]),
    );
    expect(await ledger.periodSums(VAULT, at(3, 6), at(20, 12))).toEqual(
      sums([2, -500_000n], [1, 320_000n], [1, 10_000n], [1, -50_000n], [0, 0n]),
    );
    expect(await ledger.periodSums(VAULT, at(3, 12, 10), at(3, 13))).toEqual(
      sums([0, 0n], [1, 320_000n], [0, 0n], [0, 0n], [0, 0n]),
    );
    expect(await ledger.openingUnits(VAULT, NOV)).toBe(0n);
    expect(await ledger.openingUnits(VAULT, at(3, 6))).toBe(1_000_000n);
    expect(await ledger.openingUnits(VAULT, at(3, 12, 10))).toBe(600_000n);
    expect(await ledger.openingUnits(VAULT, DEC)).toBe(780_000n);
    expect(await ledger.openingUnits("nobody", DEC)).toBeNull();
    expect(await ledger.pendingCounts(VAULT, NOV, DEC)).toEqual({ inPeriod: 1, upTo: 1, all: 1 });
    expect(await ledger.pendingCounts(VAULT, DEC, DEC_31)).toEqual({
      inPeriod: 0,
      upTo: 1,
      all: 1,
    });
    // A period ending before the line was made: it does not wait for it.
    expect(await ledger.pendingCounts(VAULT, NOV - 86_400, NOV)).toEqual({
      inPeriod: 0,
      upTo: 0,
      all: 1,
    });

    const reviewed = await ledger.reviewLines(VAULT, NOV, DEC);
    expect(reviewed.map((l) => [l.signature, l.kind, l.deltaUnits, l.now])).toEqual([
      [sig("deposit"), "deposit", 1_000_000n, { kind: "deposit", jobId: null }],
      [sig("debit"), "unexplained", -50_000n, { kind: "unexplained", jobId: null }],
      [sig("topup"), "deposit", 10_000n, { kind: "deposit", jobId: null }],
    ]);
    expect(reviewed[1]).toEqual({
      signature: sig("debit"),
      ord: expect.any(Number),
      slot: 300,
      blockTime: at(10, 8),
      preUnits: 920_000n,
      postUnits: 870_000n,
      deltaUnits: -50_000n,
      memo: null,
      memoKind: null,
      memoJobId: null,
      memoJobs: null,
      kind: "unexplained",
      jobId: null,
      now: { kind: "unexplained", jobId: null },
    });

    const overdue = await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC);
    expect(overdue.map((l) => [l.signature, l.jobId, l.deltaUnits])).toEqual([
      [sig("lock2"), "J2", -100_000n],
    ]);
    // Not due yet an hour after the lock.
    expect(await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, at(15, 9) + 600)).toEqual([]);

    expect(await ledger.headerChecks(VAULT, NOV, DEC)).toEqual([
      {
        jobId: "J2",
        headerUnits: 500_000n,
        balancesUnits: [770_000n],
        matched: false,
        decided: true,
        lasting: false,
      },
    ]);

    expect(await ledger.gaps(VAULT, NOV, DEC)).toEqual([
      {
        afterSignature: sig("lock2"),
        beforeSignature: sig("topup"),
        fromSlot: 400,
        toSlot: 500,
        missingUnits: 30_000n,
      },
    ]);
    // Above the unread line the walk stopped at, movements are compared when asked.
    expect(await ledger.gaps(VAULT, DEC, DEC_31)).toEqual([
      {
        afterSignature: sig("topup"),
        beforeSignature: sig("december"),
        fromSlot: 500,
        toSlot: 800,
        missingUnits: 2_000n,
      },
    ]);
    expect(await ledger.movementAround(VAULT, DEC)).toEqual({ next: 812_000n, last: null });
    expect(await ledger.movementAround(VAULT, DEC_31)).toEqual({ next: null, last: 817_000n });
    expect(await ledger.movementAround("nobody", DEC)).toEqual({ next: null, last: null });
    // Where the history read ends: the balance read after it is compared with this.
    expect(await ledger.newestMovement(VAULT)).toEqual({
      signature: sig("december"),
      slot: 800,
      blockTime: DEC + 86_400,
      postUnits: 817_000n,
    });
    expect(await ledger.newestMovement("nobody")).toBeNull();
    expect(await ledger.cursorFigures(VAULT)).toEqual({
      syncedAt: NOW,
      finalThrough: NOW,
      balanceUnits: 817_000n,
      balanceSlot: 801,
      balanceForeign: null,
      balanceControl: null,
      newestSlot: 800,
      judgedThrough: null,
      judgedAt: null,
      lastError: null,
    });

    expect(
      await ledger.creditSpans([
        {
          jobId: "J1",
          vault: VAULT,
          lockTx: sig("lock1"),
          recordedAt: at(3, 12, 30) * 1000,
          respondedAt: at(3, 12, 30) * 1000,
        },
        {
          jobId: "J2",
          vault: VAULT,
          lockTx: sig("lock2"),
          recordedAt: at(15, 9, 30) * 1000,
          respondedAt: at(15, 9, 30) * 1000,
        },
        {
          jobId: "J8",
          vault: VAULT,
          lockTx: sig("unread"),
          recordedAt: at(25, 6) * 1000,
          respondedAt: at(25, 6) * 1000,
        },
        {
          jobId: "J9",
          vault: VAULT,
          lockTx: sig("nowhere"),
          recordedAt: at(25, 6) * 1000,
          respondedAt: at(25, 6) * 1000,
        },
      ]),
    ).toEqual(
      new Map([
        ["J1", { balancesUnits: [600_000n, 920_000n], ordered: 2, covered: true }],
        ["J2", { balancesUnits: [770_000n], ordered: 1, covered: true }],
        ["J8", { balancesUnits: [], ordered: 0, covered: false }],
        ["J9", { balancesUnits: [], ordered: 0, covered: false }],
      ]),
    );

    // A second round finds nothing new.
    expect(await ledger.review(VAULT, NOW + 1)).toEqual({
      classified: 0,
      released: 0,
      headersDecided: 0,
      reopened: 0,
      headersPassed: 0,
      gaps: 0,
    });
  });

  it("lets a receipt recorded after the line explain it: the statement sees it at once, the next round moves its sums", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedReceipts(store);
    await readVault(ledger, month);
    // Its header is the balance after the debit, in whole credits.
    await seedJob(store, {
      jobId: "J4",
      escrowTx: sig("debit"),
      creditsRemainingUnits: 870_000n,
      recordedAt: at(10, 9) * 1000,
    });

    const reviewed = await ledger.reviewLines(VAULT, NOV, DEC);
    expect(reviewed.find((l) => l.signature === sig("debit"))?.now).toEqual({
      kind: "lock",
      jobId: "J4",
    });
    const late = { ...reviewed[1]!, kind: "lock" as const, jobId: "J4" };
    expect(await ledger.headerChecks(VAULT, NOV, DEC, [late])).toEqual([
      {
        jobId: "J2",
        headerUnits: 500_000n,
        balancesUnits: [770_000n],
        matched: false,
        decided: true,
        lasting: false,
      },
      {
        jobId: "J4",
        headerUnits: 870_000n,
        balancesUnits: [],
        matched: true,
        decided: true,
        lasting: true,
      },
    ]);

    expect(await ledger.review(VAULT, NOW + 1)).toEqual({
      classified: 1,
      released: 0,
      headersDecided: 1,
      reopened: 0,
      headersPassed: 0,
      gaps: 0,
    });
    expect(await ledger.periodSums(VAULT, NOV, DEC)).toEqual(
      sums([3, -550_000n], [1, 320_000n], [2, 1_010_000n], [0, 0n], [1, 0n]),
    );
    expect(await ledger.openingUnits(VAULT, DEC)).toBe(780_000n);
  });

  it("files a debit as a lock only of a job that can pay from the vault: another customer's job naming it leaves an unreceipted debit", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedCreditVault(store, { keyFingerprint: "kf_one", vault: VAULT, pinnedAt: 1 });
    await seedCreditVault(store, { keyFingerprint: "kf_two", vault: OTHER_VAULT, pinnedAt: 2 });
    // Key one's own job, and key two's settled job whose jobs API names key one's debit.
    await seedJob(store, {
      jobId: "K1",
      keyFingerprint: "kf_one",
      escrowTx: sig("own-lock"),
      recordedAt: at(7, 1) * 1000,
    });
    await seedJob(store, {
      jobId: "K2",
      keyFingerprint: "kf_two",
      escrowTx: sig("k2-lock"),
      apiEscrowTx: sig("theft"),
      settlementTx: sig("k2-settle"),
      verdict: "discrepancy",
      chargedUnits: 120_000n,
      recordedAt: at(7, 2) * 1000,
    });
    // A job of no pinned key, and one that declares another vault, name the next two debits.
    await seedJob(store, {
      jobId: "K3",
      keyFingerprint: "kf_three",
      escrowTx: sig("unpinned-key"),
      recordedAt: at(7, 3) * 1000,
    });
    await seedJob(store, {
      jobId: "K4",
      creditVault: OTHER_VAULT,
      escrowTx: sig("declared-elsewhere"),
      recordedAt: at(7, 4) * 1000,
    });
    await seedChainTransaction(store, { signature: sig("k2-settle"), facts: {}, at: NOW });
    const lines: SeedLine[] = [
      {
        name: "own-lock",
        slot: 30,
        time: at(7, 1),
        balance: { pre: 2_000_000n, post: 1_840_000n },
      },
      {
        name: "theft",
        slot: 31,
        time: at(7, 2),
        balance: { pre: 1_840_000n, post: 1_340_000n },
        memoKind: "escrow",
        memoJobId: "K2",
      },
      {
        name: "unpinned-key",
        slot: 32,
        time: at(7, 3),
        balance: { pre: 1_340_000n, post: 1_330_000n },
      },
      {
        name: "declared-elsewhere",
        slot: 33,
        time: at(7, 4),
        balance: { pre: 1_330_000n, post: 1_320_000n },
      },
    ];
    await readVault(ledger, lines);

    expect((await linesOf(store, VAULT)).map((l) => [l.signature, l.kind, l.jobId])).toEqual([
      [sig("own-lock"), "lock", "K1"],
      [sig("theft"), "unexplained", "K2"],
      [sig("unpinned-key"), "unexplained", null],
      [sig("declared-elsewhere"), "unexplained", null],
    ]);
    expect(await ledger.periodSums(VAULT, NOV, DEC)).toEqual(
      sums([1, -160_000n], [0, 0n], [0, 0n], [3, -520_000n], [0, 0n]),
    );
    expect((await ledger.reviewLines(VAULT, NOV, DEC)).map((l) => [l.signature, l.now])).toEqual([
      [sig("theft"), { kind: "unexplained", jobId: "K2" }],
      [sig("unpinned-key"), { kind: "unexplained", jobId: null }],
      [sig("declared-elsewhere"), { kind: "unexplained", jobId: null }],
    ]);
    // K2's settlement pays out of K2's own lock, never of this vault's: nothing here is released.
    expect(
      (await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC)).map((l) => [l.jobId, l.signature]),
    ).toEqual([["K1", sig("own-lock")]]);
  });

  it("files a lock read before either key was pinned again once a pin shows its job pays from another vault", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedJob(store, {
      jobId: "K2",
      keyFingerprint: "kf_two",
      apiEscrowTx: sig("theft"),
      verdict: "discrepancy",
      chargedUnits: 120_000n,
      recordedAt: at(8, 2) * 1000,
    });
    const lines: SeedLine[] = [
      { name: "theft", slot: 40, time: at(8, 2), balance: { pre: 900_000n, post: 400_000n } },
    ];
    await readVault(ledger, lines);
    // Nothing tied the job to a vault yet: the debit is its lock, and 120,000 short of released.
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId, l.released])).toEqual([
      ["lock", "K2", false],
    ]);
    expect(
      (await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC)).map((l) => l.outstandingUnits),
    ).toEqual([380_000n]);

    await seedCreditVault(store, { keyFingerprint: "kf_two", vault: OTHER_VAULT, pinnedAt: 3 });
    expect(await ledger.review(VAULT, NOW + 1)).toMatchObject({ classified: 1, released: 0 });
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId, l.released])).toEqual([
      ["unexplained", null, false],
    ]);
    expect(await ledger.periodSums(VAULT, NOV, DEC)).toEqual(
      sums([0, 0n], [0, 0n], [0, 0n], [1, -500_000n], [0, 0n]),
    );
    expect(await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC)).toEqual([]);
  });

  it("releases a lock only when its returns and settlement account for it: one unit back with a refund memo leaves the rest outstanding", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    // J4: never settled. J5: named as its settlement a transaction that sent one unit back,
    // which the verifier read as paying nothing out. J6: settled honestly (40,000 back).
    await seedJob(store, { jobId: "J4", escrowTx: sig("lock4"), recordedAt: at(9, 1) * 1000 });
    await seedJob(store, {
      jobId: "J5",
      escrowTx: sig("lock5"),
      settlementTx: sig("unit5"),
      verdict: "discrepancy",
      chargedUnits: 0n,
      recordedAt: at(9, 2) * 1000,
    });
    await seedJob(store, {
      jobId: "J6",
      escrowTx: sig("lock6"),
      settlementTx: sig("settle6"),
      chargedUnits: 120_000n,
      recordedAt: at(9, 3) * 1000,
    });
    const lines: SeedLine[] = [
      { name: "lock4", slot: 50, time: at(9, 1), balance: { pre: 1_000_000n, post: 840_000n } },
      {
        name: "unit4",
        slot: 51,
        time: at(9, 1, 30),
        balance: { pre: 840_000n, post: 840_001n },
        memoKind: "refund",
        memoJobId: "J4",
      },
      { name: "lock5", slot: 52, time: at(9, 2), balance: { pre: 840_001n, post: 680_001n } },
      {
        name: "unit5",
        slot: 53,
        time: at(9, 2, 30),
        balance: { pre: 680_001n, post: 680_002n },
        memoKind: "settle",
        memoJobId: "J5",
      },
      { name: "lock6", slot: 54, time: at(9, 3), balance: { pre: 680_002n, post: 520_002n } },
      {
        name: "settle6",
        slot: 55,
        time: at(9, 3, 30),
        balance: { pre: 520_002n, post: 560_002n },
        memoKind: "settle",
        memoJobId: "J6",
      },
    ];
    await readVault(ledger, lines);
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId, l.released])).toEqual([
      ["lock", "J4", false],
      ["return", "J4", false],
      ["lock", "J5", false],
      ["return", "J5", false],
      ["lock", "J6", true],
      ["return", "J6", false],
    ]);
    const overdue = await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC);
    expect(overdue.map((l) => [l.jobId, l.deltaUnits, l.outstandingUnits])).toEqual([
      ["J4", -160_000n, 159_999n],
      ["J5", -160_000n, 159_999n],
    ]);

    // The rest of J4's lock comes back: now it is accounted for.
    const rest: SeedLine = {
      name: "rest4",
      slot: 56,
      time: at(9, 4),
      balance: { pre: 560_002n, post: 720_001n },
      memoKind: "refund",
      memoJobId: "J4",
    };
    await readVault(ledger, [...lines, rest], NOW + 1);
    expect((await linesOf(store, VAULT)).map((l) => [l.jobId, l.released])).toEqual([
      ["J4", true],
      ["J4", false],
      ["J5", false],
      ["J5", false],
      ["J6", true],
      ["J6", false],
      ["J4", false],
    ]);
    expect((await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC)).map((l) => l.jobId)).toEqual([
      "J5",
    ]);
  });

  it("files a keyless receipt's own lock of a vault pinned to a key as its lock, and a keyless job's jobs API answer alone as no lock", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedCreditVault(store, { keyFingerprint: "kf_one", vault: VAULT, pinnedAt: 1 });
    // K5: a receipt sent without its key (at best partially verified) naming its own lock.
    // K6: keyless too, but only the jobs API, which the operator answers, names the debit.
    await seedJob(store, {
      jobId: "K5",
      escrowTx: sig("keyless-lock"),
      settlementTx: sig("keyless-settle"),
      verdict: "partially_verified",
      chargedUnits: 40_000n,
      recordedAt: at(12, 1) * 1000,
    });
    await seedJob(store, {
      jobId: "K6",
      apiEscrowTx: sig("api-named"),
      verdict: "discrepancy",
      recordedAt: at(12, 2) * 1000,
    });
    const lines: SeedLine[] = [
      {
        name: "keyless-lock",
        slot: 70,
        time: at(12, 1),
        balance: { pre: 1_000_000n, post: 840_000n },
        memoKind: "escrow",
        memoJobId: "K5",
      },
      {
        name: "keyless-settle",
        slot: 71,
        time: at(12, 1, 30),
        balance: { pre: 840_000n, post: 960_000n },
        memoKind: "settle",
        memoJobId: "K5",
      },
      {
        name: "api-named",
        slot: 72,
        time: at(12, 2),
        balance: { pre: 960_000n, post: 910_000n },
        memoKind: "escrow",
        memoJobId: "K6",
      },
    ];
    await readVault(ledger, lines);
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId, l.released])).toEqual([
      ["lock", "K5", true],
      ["return", "K5", false],
      ["unexplained", "K6", false],
    ]);
    expect((await ledger.reviewLines(VAULT, NOV, DEC)).map((l) => l.now)).toEqual([
      { kind: "unexplained", jobId: "K6" },
    ]);
    expect(await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC)).toEqual([]);
  });

  it("takes money back with an undecided job's settle memo as its settlement landing, before the settlement is recorded, in a statement only", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    // A stream: the receipt names the lock; the settlement's signature is not recorded yet.
    await seedJob(store, {
      jobId: "J8",
      escrowTx: sig("lock8"),
      verdict: "pending",
      recordedAt: at(13, 1) * 1000,
    });
    const lines: SeedLine[] = [
      {
        name: "lock8",
        slot: 80,
        time: at(13, 1),
        balance: { pre: 500_000n, post: 300_000n },
        memoKind: "escrow",
        memoJobId: "J8",
      },
      {
        name: "rest8",
        slot: 81,
        time: at(13, 1, 30),
        balance: { pre: 300_000n, post: 450_000n },
        memoKind: "settle",
        memoJobId: "J8",
      },
    ];
    await readVault(ledger, lines);
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId, l.released])).toEqual([
      ["lock", "J8", false],
      ["return", "J8", false],
    ]);
    expect(await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC)).toEqual([]);
  });

  it("files money in as a job's return only with that job's settle or refund memo: a top-up a jobs API names as a settlement releases nothing", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedCreditVault(store, { keyFingerprint: "kf_one", vault: VAULT, pinnedAt: 1 });
    // K7 locked and never settled; its jobs API answer names the customer's top-up instead.
    await seedJob(store, {
      jobId: "K7",
      keyFingerprint: "kf_one",
      escrowTx: sig("lock-k7"),
      apiSettlementTx: sig("topup-k7"),
      verdict: "discrepancy",
      recordedAt: at(14, 1) * 1000,
    });
    const lines: SeedLine[] = [
      {
        name: "lock-k7",
        slot: 90,
        time: at(14, 1),
        balance: { pre: 1_000_000n, post: 500_000n },
        memoKind: "escrow",
        memoJobId: "K7",
      },
      { name: "topup-k7", slot: 91, time: at(14, 2), balance: { pre: 500_000n, post: 2_500_000n } },
    ];
    await readVault(ledger, lines);
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId, l.released])).toEqual([
      ["lock", "K7", false],
      ["deposit", null, false],
    ]);
    expect(
      (await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC)).map((l) => [
        l.jobId,
        l.outstandingUnits,
      ]),
    ).toEqual([["K7", 500_000n]]);
  });

  it("files money another key's job's settlement moved into this vault as a deposit: that job locked nothing here", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedCreditVault(store, { keyFingerprint: "kf_one", vault: OTHER_VAULT, pinnedAt: 1 });
    await seedCreditVault(store, { keyFingerprint: "kf_two", vault: VAULT, pinnedAt: 1 });
    // J8 pays from the other vault; its settlement also moves 30,000 into this vault under its
    // settle memo. K8 pays from this vault, locked before the lines read here: its settlement
    // still brings its remainder back.
    await seedJob(store, {
      jobId: "J8",
      keyFingerprint: "kf_one",
      escrowTx: sig("lock-j8"),
      settlementTx: sig("settle-j8"),
      recordedAt: at(14, 1) * 1000,
    });
    await seedJob(store, {
      jobId: "K8",
      keyFingerprint: "kf_two",
      escrowTx: sig("lock-k8"),
      settlementTx: sig("settle-k8"),
      recordedAt: at(14, 1) * 1000,
    });
    const lines: SeedLine[] = [
      {
        name: "settle-j8",
        slot: 90,
        time: at(14, 2),
        balance: { pre: 1_000_000n, post: 1_030_000n },
        memoKind: "settle",
        memoJobId: "J8",
      },
      {
        name: "settle-k8",
        slot: 91,
        time: at(14, 3),
        balance: { pre: 1_030_000n, post: 1_070_000n },
        memoKind: "settle",
        memoJobId: "K8",
      },
    ];
    await readVault(ledger, lines);
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId])).toEqual([
      ["deposit", null],
      ["return", "K8"],
    ]);
  });

  it("files money a keyless job's settlement moved into a vault pinned to a key as a deposit", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedCreditVault(store, { keyFingerprint: "kf_two", vault: VAULT, pinnedAt: 1 });
    // J9 was sent without its key and declares no vault: nothing ties it to this customer, and
    // its settlement moves 30,000 into this vault under its settle memo.
    await seedJob(store, {
      jobId: "J9",
      escrowTx: sig("lock-j9"),
      settlementTx: sig("settle-j9"),
      recordedAt: at(14, 1) * 1000,
    });
    await readVault(ledger, [
      {
        name: "settle-j9",
        slot: 90,
        time: at(14, 2),
        balance: { pre: 1_000_000n, post: 1_030_000n },
        memoKind: "settle",
        memoJobId: "J9",
      },
    ]);
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId])).toEqual([
      ["deposit", null],
    ]);
  });

  it("files a debit only the jobs API names as the lock only of a job whose receipt names none, and pays off no other debit with what the settlements paid out", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedCreditVault(store, { keyFingerprint: "kf_one", vault: VAULT, pinnedAt: 1 });
    // J9's receipt names its lock and settlement. Its jobs API answer, given later, names a
    // second debit under J9's escrow memo and a settlement paying that on to the treasury: the
    // verifier read J9's settlements paying out its charge (40,000) and the 300,000 taken.
    await seedJob(store, {
      jobId: "J9",
      keyFingerprint: "kf_one",
      escrowTx: sig("lock9"),
      settlementTx: sig("settle9"),
      apiEscrowTx: sig("theft9"),
      apiSettlementTx: sig("payout9"),
      verdict: "discrepancy",
      chargedUnits: 340_000n,
      recordedAt: at(16, 1) * 1000,
    });
    // J10: a proxied receipt whose upstream sent no escrow header; the jobs API names its lock.
    await seedJob(store, {
      jobId: "J10",
      keyFingerprint: "kf_one",
      apiEscrowTx: sig("lock10"),
      apiSettlementTx: sig("settle10"),
      chargedUnits: 40_000n,
      recordedAt: at(16, 3) * 1000,
    });
    const memo = (kind: "escrow" | "settle", jobId: string) => ({
      memoKind: kind,
      memoJobId: jobId,
    });
    const lines: SeedLine[] = [
      {
        name: "lock9",
        slot: 100,
        time: at(16, 1),
        balance: { pre: 1_000_000n, post: 840_000n },
        ...memo("escrow", "J9"),
      },
      {
        name: "settle9",
        slot: 101,
        time: at(16, 1, 30),
        balance: { pre: 840_000n, post: 960_000n },
        ...memo("settle", "J9"),
      },
      {
        name: "theft9",
        slot: 102,
        time: at(16, 2),
        balance: { pre: 960_000n, post: 660_000n },
        ...memo("escrow", "J9"),
      },
      {
        name: "lock10",
        slot: 103,
        time: at(16, 3),
        balance: { pre: 660_000n, post: 500_000n },
        ...memo("escrow", "J10"),
      },
      {
        name: "settle10",
        slot: 104,
        time: at(16, 3, 30),
        balance: { pre: 500_000n, post: 620_000n },
        ...memo("settle", "J10"),
      },
    ];
    await readVault(ledger, lines);
    // What J9's settlements paid out accounts for its one lock; the 300,000 is still out.
    const filed = [
      ["lock", "J9", true],
      ["return", "J9", false],
      ["unexplained", "J9", false],
      ["lock", "J10", true],
      ["return", "J10", false],
    ];
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId, l.released])).toEqual(filed);
    expect(await ledger.periodSums(VAULT, NOV, DEC)).toEqual(
      sums([2, -320_000n], [2, 240_000n], [0, 0n], [1, -300_000n], [0, 0n]),
    );
    expect((await ledger.reviewLines(VAULT, NOV, DEC)).map((l) => [l.signature, l.now])).toEqual([
      [sig("theft9"), { kind: "unexplained", jobId: "J9" }],
    ]);
    expect(await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC)).toEqual([]);

    // As an earlier version filed it: J9's lock, released. The next round files it again.
    await fileLineAs(store, VAULT, sig("theft9"), { kind: "lock", jobId: "J9", released: true });
    expect(await ledger.review(VAULT, NOW + 1)).toMatchObject({ classified: 1 });
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId])).toEqual(
      filed.map(([kind, jobId]) => [kind, jobId]),
    );
    expect(await ledger.periodSums(VAULT, NOV, DEC)).toEqual(
      sums([2, -320_000n], [2, 240_000n], [0, 0n], [1, -300_000n], [0, 0n]),
    );
  });

  it("takes a landed settlement the verifier has not read yet as accounting for the lock in a statement, never in the stored release", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedJob(store, {
      jobId: "J7",
      escrowTx: sig("lock7"),
      settlementTx: sig("settle7"),
      verdict: "pending",
      recordedAt: at(11, 1) * 1000,
    });
    const lines: SeedLine[] = [
      { name: "lock7", slot: 60, time: at(11, 1), balance: { pre: 500_000n, post: 340_000n } },
      {
        name: "settle7",
        slot: 61,
        time: at(11, 1, 30),
        balance: { pre: 340_000n, post: 340_001n },
        memoKind: "settle",
        memoJobId: "J7",
      },
    ];
    await readVault(ledger, lines);
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.released])).toEqual([
      ["lock", false],
      ["return", false],
    ]);
    expect(await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC)).toEqual([]);
  });
});

/** A one-hour settlement window, no grace: J2's lock (Nov 15 09:00) is due at 10:00. */
const hourProfile = { ...localnetProfile, settlementWindowSeconds: 3_600 };

/**
 * A reader over the seeded store: each round lists nothing new, with the chain finalized through
 * what `finalized()` says then.
 */
function listingReader(ledger: LedgerStore, finalized: () => number): LedgerReader {
  const sync = async (vault: string): Promise<VaultSyncResult> => {
    const t = Date.now();
    await ledger.storePage(vault, await ledger.cursor(vault, t), [], true, t, finalized());
    return { vault, pages: 1, listed: 0, fetched: 0, shared: 0, pending: 0, noBlockTime: null };
  };
  return {
    vaults: async () => [VAULT],
    syncVault: sync,
    syncAll: async () => [await sync(VAULT)],
    start() {},
    async stop() {},
  };
}

describe.each(dialects)("the ledger's read on %s, by the chain's finalized time", (dialect) => {
  const stores = useDialectStores(dialect);

  it("counts a period, a lock's due time and a credits header's span as read only once the chain had finalized past them when the vault was listed", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedReceipts(store);
    // Listed on Dec 11 by the local clock, when the chain had finalized only through 09:30 on
    // Nov 15 (a node far behind; on mainnet the last ~13 s of any listing are the same).
    await readVault(ledger, month, NOW, at(15, 9, 1_800) * 1000);
    const statementTo = async (toSec: number) =>
      (
        await buildStatement(
          store,
          { from: NOV * 1000, to: toSec * 1000, vault: VAULT },
          { profile: hourProfile, graceSeconds: 0 },
        )
      ).vaults[0]!;
    // December's lock, the newest line: its credits header's span has no line after it.
    const december = {
      jobId: "J5",
      vault: VAULT,
      lockTx: sig("december"),
      recordedAt: (DEC + 86_400) * 1000 + 500,
      respondedAt: (DEC + 86_400) * 1000 + 500,
    };

    const early = await statementTo(at(15, 12));
    expect(early).toMatchObject({
      historyRead: false,
      complete: false,
      readThrough: isoOf(at(15, 9, 1_800) * 1000),
    });
    // J2's lock was due at 10:00: a return listed by then cannot be ruled out yet.
    expect(early.unreleasedLocks).toEqual([]);
    expect((await ledger.creditSpans([december])).get("J5")?.covered).toBe(false);
    // Through 09:30: a period ending at that second is read, one a second later is not.
    expect((await statementTo(at(15, 9, 1_800))).historyRead).toBe(true);
    expect((await statementTo(at(15, 9, 1_801))).historyRead).toBe(false);

    // The next sync lists nothing new, the chain finalized past December's lock by then.
    await ledger.storePage(
      VAULT,
      await ledger.cursor(VAULT, NOW + 1),
      [],
      true,
      NOW + 1,
      (DEC + 86_401) * 1000,
    );
    const later = await statementTo(at(15, 12));
    expect(later.historyRead).toBe(true);
    expect(later.unreleasedLocks).toEqual([
      expect.objectContaining({ jobId: "J2", signature: sig("lock2") }),
    ]);
    // Not its credits header's span: the chain may date a line that came before the response
    // up to 2 s after its second (a chain clock ahead of the recorder's), so the span is read
    // only once the listing is final past those; so too with a receipt naming a settlement the
    // vault holds no line of.
    const settled = { ...december, settlementTx: sig("december-settlement") };
    expect((await ledger.creditSpans([december])).get("J5")?.covered).toBe(false);
    expect((await ledger.creditSpans([settled])).get("J5")?.covered).toBe(false);
    await ledger.storePage(
      VAULT,
      await ledger.cursor(VAULT, NOW + 2),
      [],
      true,
      NOW + 2,
      (DEC + 86_403) * 1000,
    );
    expect((await ledger.creditSpans([december])).get("J5")?.covered).toBe(true);
    expect((await ledger.creditSpans([settled])).get("J5")?.covered).toBe(true);
  });

  it("names in a window's nightly check the locks just before it that fell due since its previous run read the vault", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedReceipts(store);
    await readVault(ledger, month, NOW, DEC_31 * 1000);
    const check = ledgerWindowCheck({
      store,
      reader: listingReader(ledger, () => DEC_31 * 1000),
      profile: hourProfile,
      graceSeconds: 0,
      now: () => DEC_31 * 1000,
    });
    // The run of the window ending at 09:30 read the vault before J2's lock (09:00) was due;
    // the window after it does not hold the lock, yet its run names it.
    const result = await check({ from: at(15, 9, 1_800) * 1000, to: DEC * 1000 });
    // The vault's history before this window no run had judged: judged by this one.
    expect(result.judgedBefore).toEqual([{ vault: VAULT, from: null }]);
    // The window holds a line never read (the 25th): the run cannot mark the vault judged.
    await check.commit(result);
    expect((await ledger.cursorFigures(VAULT))?.judgedThrough).toBeNull();
    // Say a later run read it all and judged the vault through December.
    await ledger.markJudged(VAULT, DEC * 1000, DEC_31 * 1000);
    expect(result.unreleasedLocks).toEqual([
      {
        vault: VAULT,
        jobId: "J2",
        signature: sig("lock2"),
        lockUnits: "100000",
        outstandingUnits: "100000",
        lockedAt: isoOf(at(15, 9) * 1000),
        dueBy: isoOf(at(15, 10) * 1000),
        beforeWindow: true,
      },
    ]);
    // A window starting more than the settlement window after the lock leaves it to the run
    // that judged it.
    const next = await check({ from: at(15, 10, 1) * 1000, to: DEC * 1000 });
    expect(next.unreleasedLocks).toEqual([]);
  });

  it("judges a line listed after its vault's last judgement by the next run, once, whatever its time", async () => {
    // An endpoint left a debit out of the listing until the night's run had judged its time
    // (or a node listed it late): the run after it read the line, dated before its window and
    // before the vault's mark, and passed.
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    let clock = DEC_31 * 1000;
    const check = ledgerWindowCheck({
      store,
      // The chain finalized past each night's end and the credits headers' 2 s after it.
      reader: listingReader(ledger, () => clock + 2_000),
      profile: hourProfile,
      graceSeconds: 0,
      now: () => clock,
    });
    await readVault(ledger, month.slice(0, 1), NOW, clock);
    const night = async (hours: number) => {
      const from = clock;
      clock += hours * 3_600_000;
      const result = await check({ from, to: clock });
      await check.commit(result);
      return result;
    };
    const first = await night(24);
    expect(first.unreceiptedDebits).toEqual([]);
    const hidden: SeedLine = {
      name: "hidden",
      slot: 300,
      time: at(10, 8),
      balance: { pre: 1_000_000n, post: 950_000n },
    };
    await readVault(ledger, [hidden], clock + 1_000, clock);
    clock += 1_000;
    const next = await night(24);
    expect(next.unreceiptedDebits).toEqual([
      expect.objectContaining({
        vault: VAULT,
        signature: sig("hidden"),
        at: isoOf(at(10, 8) * 1000),
        beforeWindow: true,
        listedLate: true,
      }),
    ]);
    // Judged once: the run after it does not report it again.
    expect((await night(24)).unreceiptedDebits).toEqual([]);
    expect(await ledger.cursorFigures(VAULT)).toMatchObject({
      judgedThrough: clock,
      judgedAt: clock,
    });
  });

  it("reads the vault again until the chain has finalized past the window's end, and says how far it had when time runs out", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedReceipts(store);
    // The window ends 2 s before the line listed and never read: up to it, every line is
    // read, and the 2 s after it that its last credits headers span hold none.
    const end = at(25, 5) - SETTLEMENT_CLOCK_SLACK_SECONDS;
    await readVault(ledger, month, NOW, (end - 2) * 1000);
    // The chain finalizes one second further at each read; the pauses between reads are taken
    // at once, each noted.
    let finalSec = end - 2;
    const pauses: number[] = [];
    const check = ledgerWindowCheck({
      store,
      reader: listingReader(ledger, () => ++finalSec * 1000),
      profile: hourProfile,
      graceSeconds: 0,
      now: () => DEC_31 * 1000,
      pause: async (ms) => {
        pauses.push(ms);
      },
    });
    const read = await check({ from: NOV * 1000, to: end * 1000 });
    expect(read.incomplete).toBeNull();
    // Past the window's end and the 2 s after it that its last credits headers span.
    expect(finalSec).toBe(end + 2);
    // Each pause as long as the chain's finalized time stood short of them.
    expect(pauses).toEqual([3_000, 2_000, 1_000]);

    const stuck = ledgerWindowCheck({
      store,
      reader: listingReader(ledger, () => DEC * 1000),
      profile: hourProfile,
      graceSeconds: 0,
      now: () => DEC_31 * 1000,
    });
    await expect(
      stuck({ from: DEC * 1000, to: (DEC + 10) * 1000, signal: AbortSignal.timeout(300) }),
    ).rejects.toThrow(
      new LedgerNotFinalError(
        `the chain had not finalized past ${isoOf((DEC + 12) * 1000)}, the window's end (${isoOf((DEC + 10) * 1000)}) and the 2 s its last credits headers span, when the credit vaults were last read: listed ${VAULT} through ${isoOf(DEC * 1000)}`,
      ),
    );

    // A read that took long is said with what it did: a vault's first read of 16,000
    // transactions took 110 s, and the run blamed the chain's finality alone.
    let clock = DEC_31 * 1000;
    const slow = ledgerWindowCheck({
      store,
      reader: listingReader(ledger, () => DEC * 1000),
      profile: hourProfile,
      graceSeconds: 0,
      // 11 s pass between two readings of the clock: each read of the vaults takes that long.
      now: () => (clock += 11_000),
    });
    await expect(
      slow({ from: DEC * 1000, to: (DEC + 10) * 1000, signal: AbortSignal.timeout(300) }),
    ).rejects.toThrow(
      /when the credit vaults were last read: listed .*; that read took 11\.0 s \(\d+ lines listed, \d+ transactions fetched\)/,
    );
  });

  it("waits for the chain past the latest recording of a job dated in the window and recorded after its end, and names it when time runs out", async () => {
    const store = await stores.open();
    await seedReceipts(store);
    // Dated 3 s before the window's end (DEC + 7 s), ingested 2 s after it: its credits
    // header spans the lines up to 2 s past that.
    await seedJob(store, { jobId: "LATE", recordedAt: (DEC + 12) * 1000 });
    const stuck = ledgerWindowCheck({
      store,
      reader: listingReader(createLedgerStore(store), () => DEC * 1000),
      profile: hourProfile,
      graceSeconds: 0,
      now: () => DEC_31 * 1000,
    });
    await expect(
      stuck({ from: DEC * 1000, to: (DEC + 10) * 1000, signal: AbortSignal.timeout(300) }),
    ).rejects.toThrow(
      new LedgerNotFinalError(
        `the chain had not finalized past ${isoOf((DEC + 14) * 1000)}, the latest recording (${isoOf((DEC + 12) * 1000)}) of a job dated in the window ending ${isoOf((DEC + 10) * 1000)} and the 2 s its credits header spans, when the credit vaults were last read: listed ${VAULT} through ${isoOf(DEC * 1000)}`,
      ),
    );
  });

  it("does not finish a window whose 2 s after its end hold a line listed and not read: its last credits headers span it", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedReceipts(store);
    // The line listed and never read is 1 s after the window's end; the chain finalized past
    // both long since.
    const end = at(25, 5) - 1;
    await readVault(ledger, month, NOW, (end + 3) * 1000);
    const check = ledgerWindowCheck({
      store,
      reader: listingReader(ledger, () => (end + 3) * 1000),
      profile: hourProfile,
      graceSeconds: 0,
      now: () => DEC_31 * 1000,
    });
    const read = await check({ from: NOV * 1000, to: end * 1000 });
    expect(read.incomplete).toBe(
      `ledger: the history of 1 credit vault(s) is not read through the window's end (${VAULT}, 1 transaction(s) listed in the 2 s after the window's end not read: the credits headers of its last jobs span them)`,
    );
  });
  it("keeps out what a settle-memo return leaves of the lock of a job judged with no settlement named", async () => {
    // No receipt or jobs API answer names J8's settlement: the operator sent one unit back to
    // the vault under J8's settle memo and kept the rest. Read, that return is J8's (a conflict
    // signature) and J8 is judged again; judged, the lock is still out, less the unit, whatever
    // memo came back with it.
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await seedJob(store, {
      jobId: "J8",
      escrowTx: sig("lock8"),
      verdict: "unverifiable",
      recordedAt: at(11, 1) * 1000,
    });
    const lines: SeedLine[] = [
      { name: "lock8", slot: 70, time: at(11, 1), balance: { pre: 500_000n, post: 340_000n } },
      {
        name: "settle8",
        slot: 71,
        time: at(11, 1, 30),
        balance: { pre: 340_000n, post: 340_001n },
        memoKind: "settle",
        memoJobId: "J8",
      },
    ];
    await readVault(ledger, lines);
    expect(await readJob(store, "J8")).toMatchObject({
      conflictSignatures: [sig("settle8")],
      verdict: "pending",
    });
    await updateJob(store, "J8", { verdict: "discrepancy" });
    expect(
      (await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC)).map((l) => [
        l.jobId,
        l.outstandingUnits,
      ]),
    ).toEqual([["J8", 159_999n]]);
  });
});

describe("ledger store on postgres, two readers at once", () => {
  const stores = useDialectStores("postgres");

  it("counts every line once and decides every header once when two stores read the same vault together", async () => {
    const store = await stores.open();
    const other = openPostgres(stores.lastUrl, { poolSize: 4, statementTimeoutMs: 30_000 });
    try {
      await seedReceipts(store);
      const [a, b] = [createLedgerStore(store), createLedgerStore(other)];
      // Both list from the same cursor: one page is stored, the other refused.
      const [seenA, seenB] = await Promise.all([a.cursor(VAULT, NOW), b.cursor(VAULT, NOW)]);
      const stored = await Promise.all([
        a.storePage(VAULT, seenA, pageOf(month), true, NOW),
        b.storePage(VAULT, seenB, pageOf(month), true, NOW),
      ]);
      expect(stored.filter(Boolean)).toHaveLength(1);
      await Promise.all([
        a.recordReads(VAULT, readsOf(month), fetchedOf(month), NOW),
        b.recordReads(VAULT, readsOf(month), fetchedOf(month), NOW),
      ]);
      const reviews = await Promise.all([a.review(VAULT, NOW), b.review(VAULT, NOW)]);
      const total = (key: keyof (typeof reviews)[0]) => reviews[0][key] + reviews[1][key];
      expect(total("headersPassed")).toBe(1);
      expect(total("reopened")).toBe(1);
      expect(total("headersDecided")).toBe(2);
      expect(total("gaps")).toBe(1);

      expect(await dailyTotals(store, VAULT)).toEqual({
        deposit: { lines: 3, units: 1_015_000n },
        lock: { lines: 2, units: -500_000n },
        return: { lines: 1, units: 320_000n },
        unexplained: { lines: 1, units: -50_000n },
        none: { lines: 1, units: 0n },
      });
      expect(await a.periodSums(VAULT, NOV, DEC)).toEqual(
        sums([2, -500_000n], [1, 320_000n], [2, 1_010_000n], [1, -50_000n], [1, 0n]),
      );
      expect(await linesOf(store, VAULT)).toHaveLength(month.length);
      expect(await a.cursor(VAULT, NOW)).toMatchObject({ syncNumber: 1, syncBefore: null });

      // Both list the same page again from one cursor, racing: still one sync, no line twice.
      const [againA, againB] = await Promise.all([a.cursor(VAULT, NOW), b.cursor(VAULT, NOW)]);
      const again = await Promise.all([
        a.storePage(VAULT, againA, pageOf(month), true, NOW + 1),
        b.storePage(VAULT, againB, pageOf(month), true, NOW + 1),
      ]);
      expect(again.filter(Boolean)).toHaveLength(1);
      expect(await linesOf(store, VAULT)).toHaveLength(month.length);
      expect(await a.cursor(VAULT, NOW)).toMatchObject({ syncNumber: 2 });
    } finally {
      await other.close();
    }
  });
});

/** A credit-mint balance change as the stored facts of a transaction carry it. */
const creditChange = (account: string, delta: bigint) => ({
  account,
  owner: null,
  mint: "CreditMint",
  programId: "TokenProgram",
  decimals: 6,
  pre: "0",
  post: "0",
  delta: delta.toString(),
});

/** A fetched transaction whose stored facts carry these credit changes, in this order. */
const fetchedWith = (
  name: string,
  slot: number,
  blockTime: number,
  changes: ReturnType<typeof creditChange>[],
): FetchedTransaction => ({
  signature: sig(name),
  slot,
  blockTime,
  fee: 5_000n,
  succeeded: true,
  err: "null",
  facts: JSON.stringify({ signature: sig(name), slot, tokenChanges: changes }),
  raw: `raw:${name}`,
});

type RoundLine = {
  name: string;
  slot: number;
  time: number;
  pre: bigint;
  post: bigint;
  memoKind: LineRead["memoKind"];
  memoJobId: string | null;
};

/** One ledger round of a vault: these lines listed, read (with these facts), reviewed. */
async function readRound(
  ledger: LedgerStore,
  vault: string,
  lines: RoundLine[],
  fetched: FetchedTransaction[],
) {
  const seen = await ledger.cursor(vault, NOW);
  const page = [...lines].reverse().map((l) => ({
    signature: sig(l.name),
    slot: l.slot,
    blockTime: l.time,
    err: null,
  }));
  await ledger.storePage(vault, seen, page, true, NOW, NOW);
  await ledger.recordReads(
    vault,
    lines.map((l) => ({
      signature: sig(l.name),
      blockTime: l.time,
      succeeded: true,
      pre: l.pre,
      post: l.post,
      delta: l.post - l.pre,
      memo: null,
      memoKind: l.memoKind,
      memoJobId: l.memoJobId,
    })),
    fetched,
    NOW,
  );
  await ledger.review(vault, NOW);
}

describe.each(dialects)("a lock drawn on two credit vaults on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("counts what its job's settlement paid out once across both vaults, whichever is read first", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    // K7, keyless and declaring no vault: its lock took 160,000 from VAULT and 120,000 from
    // OTHER_VAULT in one transaction. The settlement paid out 120,000 and sent 40,000 back to
    // VAULT: the 120,000 of OTHER_VAULT stayed in escrow.
    await seedJob(store, {
      jobId: "K7",
      escrowTx: sig("two-vault-lock"),
      settlementTx: sig("two-vault-settle"),
      verdict: "discrepancy",
      chargedUnits: 120_000n,
      recordedAt: at(14, 1) * 1000,
    });
    const lockFacts = fetchedWith("two-vault-lock", 90, at(14, 1), [
      creditChange(VAULT, -160_000n),
      creditChange(OTHER_VAULT, -120_000n),
      creditChange("EscrowVau1t", 280_000n),
    ]);
    const read = (
      vault: string,
      lines: Omit<RoundLine, "memoKind" | "memoJobId">[],
      fetched: FetchedTransaction[],
    ) =>
      readRound(
        ledger,
        vault,
        lines.map((l) => ({
          ...l,
          memoKind: l.name === "two-vault-settle" ? "settle" : null,
          memoJobId: l.name === "two-vault-settle" ? "K7" : null,
        })),
        fetched,
      );
    // The other vault is read first: nothing of the settlement is its, whatever VAULT says.
    await read(
      OTHER_VAULT,
      [{ name: "two-vault-lock", slot: 90, time: at(14, 1), pre: 500_000n, post: 380_000n }],
      [lockFacts],
    );
    await read(
      VAULT,
      [
        { name: "two-vault-lock", slot: 90, time: at(14, 1), pre: 1_000_000n, post: 840_000n },
        { name: "two-vault-settle", slot: 91, time: at(14, 1, 30), pre: 840_000n, post: 880_000n },
      ],
      [],
    );
    expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId, l.released])).toEqual([
      ["lock", "K7", true],
      ["return", "K7", false],
    ]);
    expect((await linesOf(store, OTHER_VAULT)).map((l) => [l.kind, l.jobId, l.released])).toEqual([
      ["lock", "K7", false],
    ]);
    expect(await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC)).toEqual([]);
    const overdue = await ledger.overdueLocks(OTHER_VAULT, NOV, DEC, 3_600, DEC);
    expect(overdue.map((l) => [l.jobId, l.deltaUnits, l.outstandingUnits])).toEqual([
      ["K7", -120_000n, 120_000n],
    ]);
  });
});

describe.each(dialects)("a payout hidden inside a top-up on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("lists what left the vault beyond the line's net debit as an unreceipted debit", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    const topUp = { name: "hidden-topup", slot: 150, time: at(2, 10) };
    const theft = { name: "hidden-theft", slot: 160, time: at(2, 11) };
    await ledger.storePage(
      VAULT,
      await ledger.cursor(VAULT, NOW),
      [theft, topUp].map((l) => ({
        signature: sig(l.name),
        slot: l.slot,
        blockTime: l.time,
        err: null,
      })),
      true,
      NOW,
    );
    const line = (name: string, time: number, pre: bigint, post: bigint, hidden: bigint) => ({
      signature: sig(name),
      blockTime: time,
      succeeded: true,
      pre,
      post,
      delta: post - pre,
      memo: null,
      memoKind: null,
      memoJobId: null,
      hiddenDebit: hidden,
    });
    // 1,000,000 in and 300,000 out; then 500,000 out and 200,000 in (no receipt for either).
    await ledger.recordReads(
      VAULT,
      [
        line("hidden-topup", topUp.time, 0n, 700_000n, 300_000n),
        line("hidden-theft", theft.time, 700_000n, 400_000n, 200_000n),
      ],
      [],
      NOW,
    );
    await ledger.review(VAULT, NOW);
    expect(await ledger.hiddenDebitLines(VAULT, NOV, DEC)).toEqual([
      expect.objectContaining({
        signature: sig("hidden-topup"),
        slot: 150,
        deltaUnits: 700_000n,
        hiddenUnits: 300_000n,
      }),
      expect.objectContaining({ signature: sig("hidden-theft"), hiddenUnits: 200_000n }),
    ]);
    expect(await ledger.hiddenDebitLines(VAULT, NOV, at(2, 10))).toEqual([]);
    const s = (
      await buildStatement(
        store,
        { from: NOV * 1000, to: DEC * 1000, vault: VAULT },
        { profile: localnetProfile },
      )
    ).vaults[0]!;
    expect(s.unexplained.map((u) => [u.signature, u.amountUnits])).toEqual([
      [sig("hidden-theft"), -500_000n],
      [sig("hidden-topup"), -300_000n],
    ]);
    expect(s.counts.unexplained).toBe(2);
    expect(s.depositsUnits).toBe(1_200_000n);
    expect(s.unexplainedOutUnits).toBe(800_000n);
    expect(s.closingByLedgerUnits).toBe(400_000n);
  });
});

describe.each(dialects)(
  "a job's locks in two transactions drawing on two vaults on %s",
  (dialect) => {
    const stores = useDialectStores(dialect);

    it("count what its settlement paid out once across every lock, not once per vault", async () => {
      const store = await stores.open();
      const ledger = createLedgerStore(store);
      // K8, keyless, naming no escrow and no vault: a lock under its escrow memo took 160,000 from
      // VAULT and 120,000 from OTHER_VAULT, a second took 1 more from OTHER_VAULT. The settlement
      // paid out 120,000 and sent 40,000 back to VAULT and 1 to OTHER_VAULT: 120,000 stayed in
      // escrow. With two locks in OTHER_VAULT, its release rule counted the whole 120,000 for it,
      // while VAULT's counted the same 120,000 for its part of the first lock: both were clean.
      await seedJob(store, {
        jobId: "K8",
        settlementTx: sig("k8-settle"),
        apiEscrowTx: sig("k8-lock"),
        verdict: "discrepancy",
        chargedUnits: 120_000n,
        recordedAt: at(15, 1) * 1000,
      });
      const facts: FetchedTransaction[] = [
        fetchedWith("k8-lock", 90, at(15, 1), [
          creditChange(VAULT, -160_000n),
          creditChange(OTHER_VAULT, -120_000n),
          creditChange("EscrowVau1t", 280_000n),
        ]),
        fetchedWith("k8-lock2", 92, at(15, 1), [
          creditChange(OTHER_VAULT, -1n),
          creditChange("EscrowVau1t", 1n),
        ]),
      ];
      const read = (
        vault: string,
        lines: {
          name: string;
          slot: number;
          pre: bigint;
          post: bigint;
          memo: "escrow" | "settle";
        }[],
      ) =>
        readRound(
          ledger,
          vault,
          lines.map(({ memo, ...l }) => ({
            ...l,
            time: at(15, 1),
            memoKind: memo,
            memoJobId: "K8",
          })),
          facts,
        );
      await read(OTHER_VAULT, [
        { name: "k8-lock", slot: 90, pre: 500_000n, post: 380_000n, memo: "escrow" },
      ]);
      await read(VAULT, [
        { name: "k8-lock", slot: 90, pre: 1_000_000n, post: 840_000n, memo: "escrow" },
        { name: "k8-settle", slot: 93, pre: 840_000n, post: 880_000n, memo: "settle" },
      ]);
      // The jobs API's next answer names the second lock instead.
      await updateJob(store, "K8", { apiEscrowTx: sig("k8-lock2") });
      await read(OTHER_VAULT, [
        { name: "k8-lock2", slot: 92, pre: 380_000n, post: 379_999n, memo: "escrow" },
        { name: "k8-settle", slot: 93, pre: 379_999n, post: 380_000n, memo: "settle" },
      ]);
      expect((await linesOf(store, VAULT)).map((l) => [l.kind, l.jobId])).toEqual([
        ["lock", "K8"],
        ["return", "K8"],
      ]);
      // The settlement's 120,000 covers VAULT's part of the first lock (its order), once:
      // nothing covers OTHER_VAULT's 120,000 of it, which the jobs API no longer names, an
      // unreceipted debit. Counted whole for OTHER_VAULT's second lock too, it released that
      // first lock as well, and the 120,000 escrow kept was in neither statement.
      expect((await linesOf(store, OTHER_VAULT)).map((l) => [l.kind, l.jobId])).toEqual([
        ["unexplained", "K8"],
        ["lock", "K8"],
        ["return", "K8"],
      ]);
      const review = await ledger.reviewLines(OTHER_VAULT, NOV, DEC);
      expect(review.map((l) => [l.signature, l.now.kind, l.deltaUnits])).toEqual([
        [sig("k8-lock"), "unexplained", -120_000n],
      ]);
      expect([
        ...(await ledger.overdueLocks(VAULT, NOV, DEC, 3_600, DEC)),
        ...(await ledger.overdueLocks(OTHER_VAULT, NOV, DEC, 3_600, DEC)),
      ]).toEqual([]);
    });
  },
);

describe.each(dialects)("the stored transactions of a part of a listing on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("are each signature's own stored transaction, those without facts left out", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    const s = (name: string) => fakeSignature(`stored-part-dialects:${name}`);
    await seedChainTransaction(store, { signature: s("with"), facts: { a: 1 }, at: 1 });
    await seedChainTransaction(store, { signature: s("without"), at: 1 });
    const part = [s("with"), s("without"), s("never"), s("with")];
    const found = await ledger.storedTransactions(part);
    const oneByOne = new Map();
    for (const signature of part) {
      const row = await ledger.storedTransaction(signature);
      if (row) oneByOne.set(signature, row);
    }
    expect(found).toEqual(oneByOne);
    expect([...found.keys()]).toEqual([s("with")]);
    expect(JSON.parse(found.get(s("with"))!.facts)).toEqual({ a: 1 });
    expect(await ledger.storedTransactions([])).toEqual(new Map());
  });
});

describe.each(dialects)("who else may spend a vault, by its balance read, on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("is kept whole (an amount up to u64 max, an owner named or not) and cleared by a read finding nobody", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    await ledger.cursor(VAULT, NOW);
    expect((await ledger.cursorFigures(VAULT))?.balanceControl).toBeNull();
    const control = {
      slot: 900,
      otherOwner: { owner: "0wnerXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX" },
      delegate: {
        address: "De1egateXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        amountUnits: 2n ** 64n - 1n,
      },
    };
    await ledger.setControl(VAULT, control, NOW + 1);
    // Kept with when it was read: a statement of a period long past says when.
    expect((await ledger.cursorFigures(VAULT))?.balanceControl).toEqual({
      ...control,
      readAt: NOW + 1,
    });
    await ledger.setControl(VAULT, { slot: 901, otherOwner: { owner: null }, delegate: null }, NOW);
    expect((await ledger.cursorFigures(VAULT))?.balanceControl).toEqual({
      slot: 901,
      otherOwner: { owner: null },
      delegate: null,
      readAt: NOW,
    });
    await ledger.setControl(VAULT, { slot: 902, otherOwner: null, delegate: null }, NOW);
    expect((await ledger.cursorFigures(VAULT))?.balanceControl).toBeNull();
    // The balance kept or not, the control is the read's: a balance write leaves it alone.
    await ledger.setControl(VAULT, control, NOW);
    await ledger.setBalance(VAULT, { amount: 5n, slot: 903 }, NOW);
    expect((await ledger.cursorFigures(VAULT))?.balanceControl).toEqual({
      ...control,
      readAt: NOW,
    });
  });
});
