import { describe, expect, it } from "vitest";
import { type GroupBy, reconciliationReport } from "../src/reports/reconciliation.js";
import { chainTruth, moneyOf } from "./support/chain-truth.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { periodEdge } from "./support/ledger-periods.js";
import {
  discrepancy,
  type JobPlan,
  type Scenario,
  useAdversaryHarness,
} from "./support/operator.js";

/**
 * One settlement paying the jobs of two keys (or two workers) at once. The report's total was
 * right, but every figure of the settlement sat in the group of the job owning it (first by
 * id): grouped by key, the owner's key read charged 240,000 and unaccounted −160,000, the
 * other key charged 0 and unaccounted +160,000, though the chain paid each job in full. Each
 * group must say what moved for its own jobs, and the groups must still add up to the chain.
 */
const hour = 3_600_000;

/** What the chain moved for one job paid as planned (its lock, its payout, its remainder). */
const paidInFull = (p: JobPlan) => ({
  escrowedUnits: p.lock,
  chargedUnits: p.charge,
  workerPaidUnits: p.workerShare,
  treasuryPaidUnits: p.treasuryShare,
  refundedUnits: p.remainder,
});
/** A job whose lock is still in escrow: locked, nothing paid or returned. */
const stillLocked = (p: JobPlan) => ({
  escrowedUnits: p.lock,
  chargedUnits: 0n,
  workerPaidUnits: 0n,
  treasuryPaidUnits: 0n,
  refundedUnits: 0n,
});

describe.each(dialects)("%s: groups of a settlement two jobs share", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** Both keys pinned before the period; then two jobs, `a` first by id when `aFirst`. */
  async function twoJobs(aFirst: boolean, bWorker = 0, pin = true) {
    const c = (await h.scenario()).recordOnChainClock();
    if (pin) {
      await c.pinKey(1);
      await c.pinKey(2);
    }
    const from = periodEdge(h);
    const a = { ...h.op.plan({ keyIndex: 1 }) };
    const b = { ...h.op.plan({ keyIndex: 2, workerIndex: bWorker }) };
    a.jobId = `job_${aFirst ? "0" : "z"}${a.jobId.slice(5)}`;
    b.jobId = `job_${aFirst ? "z" : "0"}${b.jobId.slice(5)}`;
    return { c, from, a, b };
  }

  /** One settlement paying `a` and `b` (or those of `paid`), both receipts recorded and judged. */
  async function judgedShared(c: Scenario, a: JobPlan, b: JobPlan, paid?: JobPlan[]) {
    const txs = h.op.sharedSettlement(a, b, paid);
    c.record(a, { escrowTx: txs.escrowA, settlementTx: txs.shared });
    c.record(b, { escrowTx: txs.escrowB, settlementTx: txs.shared });
    await h.finalized();
    await c.verify();
    return txs;
  }

  /** The report's groups (money only, fees aside) and its totals against the chain. */
  async function grouped(c: Scenario, from: number, groupBy: GroupBy, sigs: string[]) {
    const r = await reconciliationReport(c.store, { from, to: h.op.now() + hour, groupBy });
    const { feesLamports: _, ...truth } = chainTruth(h.op, sigs);
    const { feesLamports: __, ...total } = moneyOf(r.totals);
    expect(total).toEqual(truth);
    return Object.fromEntries(
      r.groups.map((g) => {
        const { feesLamports: _f, ...money } = moneyOf(g);
        return [g.group, money];
      }),
    );
  }

  it.each([true, false])(
    "paying both in full, grouped by key: each key its own job's money (key 1's first: %s)",
    async (aFirst) => {
      const { c, from, a, b } = await twoJobs(aFirst);
      const { escrowA, escrowB, shared } = await judgedShared(c, a, b);
      expect(await grouped(c, from, "key", [escrowA, escrowB, shared])).toEqual({
        [a.fingerprint]: paidInFull(a),
        [b.fingerprint]: paidInFull(b),
      });
    },
  );

  it.each([true, false])(
    "paying both in full, key 2 never pinned, grouped by key (key 1's first: %s)",
    async (aFirst) => {
      const { c, from, a, b } = await twoJobs(aFirst, 0, false);
      const { escrowA, escrowB, shared } = await judgedShared(c, a, b);
      expect(await grouped(c, from, "key", [escrowA, escrowB, shared])).toEqual({
        [a.fingerprint]: paidInFull(a),
        [b.fingerprint]: paidInFull(b),
      });
    },
  );

  it.each([true, false])(
    "paying both in full, each its own worker, grouped by worker (key 1's first: %s)",
    async (aFirst) => {
      const { c, from, a, b } = await twoJobs(aFirst, 1);
      const { escrowA, escrowB, shared } = await judgedShared(c, a, b);
      expect(await grouped(c, from, "worker", [escrowA, escrowB, shared])).toEqual({
        [a.worker.address]: paidInFull(a),
        [b.worker.address]: paidInFull(b),
      });
    },
  );

  // The job paid is told by its remainder coming home: the other job's lock stays in escrow,
  // in its own key's group, whichever job owns the settlement.
  it.each([true, false])(
    "naming both and paying one, grouped by key (key 1's first: %s)",
    async (aFirst) => {
      const { c, from, a, b } = await twoJobs(aFirst);
      const { escrowA, escrowB, shared } = await judgedShared(c, a, b, [a]);
      expect(await grouped(c, from, "key", [escrowA, escrowB, shared])).toEqual({
        [a.fingerprint]: paidInFull(a),
        [b.fingerprint]: stillLocked(b),
      });
    },
  );

  // A receipt of key 3 replaying a's lock and the shared settlement, and a second receipt of
  // b's job under another id: neither carries its own memo there, so neither takes a part.
  it.each([true, false])(
    "replays naming the shared settlement take no part of it (key 1's first: %s)",
    async (aFirst) => {
      const { c, from, a, b } = await twoJobs(aFirst);
      await c.pinKey(3);
      const edge = periodEdge(h);
      const { escrowA, escrowB, shared } = h.op.sharedSettlement(a, b);
      c.record(a, { escrowTx: escrowA, settlementTx: shared });
      c.record(b, { escrowTx: escrowB, settlementTx: shared });
      // First by id of all: it owned the settlement, and its key's group read both payouts.
      const replay = { ...h.op.plan({ keyIndex: 3 }) };
      replay.jobId = `job_00${replay.jobId.slice(6)}`;
      c.record(replay, { escrowTx: escrowA, settlementTx: shared });
      c.record(
        { ...b, jobId: `job_y${b.jobId.slice(5)}` },
        { escrowTx: escrowB, settlementTx: shared },
      );
      await h.finalized();
      await c.verify();
      const groups = await grouped(c, edge, "key", [escrowA, escrowB, shared]);
      expect(groups[a.fingerprint]).toEqual(paidInFull(a));
      expect(groups[b.fingerprint]).toEqual(paidInFull(b));
      expect(groups[replay.fingerprint]).toEqual({ ...stillLocked(replay), escrowedUnits: 0n });
      expect(from).toBeLessThan(edge);
    },
  );

  // Key 2's lock is named only by the jobs API, after key 1's job was judged: the arrival of
  // that lock must send key 1's job back, or its group keeps key 2's share.
  it.each([true, false])(
    "the other job's lock named by the jobs API after the owner's verdict (key 1's first: %s)",
    async (aFirst) => {
      const { c, from, a, b } = await twoJobs(aFirst);
      const { escrowA, escrowB, shared } = h.op.sharedSettlement(a, b);
      c.record(a, { escrowTx: escrowA, settlementTx: shared });
      c.record(b, { escrowTx: null, settlementTx: shared });
      await h.finalized();
      await c.verify();
      c.jobsApi(b.jobId, {
        status: "settled",
        credits_charged: Number(b.charge / 10_000n),
        worker_address: b.worker.address,
        on_chain: { escrow_tx: escrowB, settlement_tx: shared },
      });
      await h.finalized();
      await c.verify();
      expect(await grouped(c, from, "key", [escrowA, escrowB, shared])).toEqual({
        [a.fingerprint]: paidInFull(a),
        [b.fingerprint]: paidInFull(b),
      });
    },
  );

  /**
   * Three keys' jobs (each its own worker, or workers 0, 1, 0), each charged its whole lock, so
   * nothing comes home: one settlement carries the three settle memos and pays two of them.
   */
  async function threeJobs(
    paid: readonly number[],
    workers: readonly number[],
    maxTokens?: readonly number[],
  ) {
    const c = (await h.scenario()).recordOnChainClock();
    for (const k of [1, 2, 3]) await c.pinKey(k);
    const from = periodEdge(h);
    const plans = h.op.wholeLockPlans(workers, maxTokens);
    const { escrows, shared } = h.op.sharedSettlementOf(
      plans,
      paid.map((i) => plans[i]!),
    );
    for (const [i, p] of plans.entries())
      c.record(p, { escrowTx: escrows[i]!, settlementTx: shared });
    await h.finalized();
    await c.verify();
    return { c, from, plans, sigs: [...escrows, shared] };
  }

  // The job paid is told by its worker's credit: the payouts went to what was left of each
  // lock, the owner first, so the unpaid job's key read a charge of 160,000 and a paid one's 0.
  it.each([
    [
      [1, 2],
      [0, 1, 2],
    ],
    [
      [0, 2],
      [0, 1, 2],
    ],
    [
      [0, 1],
      [0, 1, 2],
    ],
    [
      [0, 2],
      [0, 1, 0],
    ],
  ])(
    "three jobs, whole locks, the settlement paying %s (workers %s), grouped by key",
    async (paid, workers) => {
      const { c, from, plans, sigs } = await threeJobs(paid, workers);
      const groups = await grouped(c, from, "key", sigs);
      expect(plans.map((p) => groups[p.fingerprint])).toEqual(
        plans.map((p, i) => (paid.includes(i) ? paidInFull(p) : stillLocked(p))),
      );
      // The split moves money between groups only: every job is judged as before.
      for (const p of plans) expect((await c.outcome(p.jobId)).verdict).toBe("discrepancy");
    },
  );

  // Locks of 120,000, 120,000 and 240,000, one worker, each charged whole: paying the third
  // alone moves the net balances paying the two others would. It was read as paying those two:
  // their keys charged 120,000 each and the third's nothing. The payout transfers tell them
  // apart (one of 204,000 to the worker against two of 102,000).
  it.each([[[2]], [[0, 1]]])(
    "three jobs of one worker locking 120,000, 120,000 and 240,000, the settlement paying %s, grouped by key",
    async (paid) => {
      const { c, from, plans, sigs } = await threeJobs(paid, [0, 0, 0], [1000, 1000, 4000]);
      expect(plans[0]!.lock + plans[1]!.lock).toBe(plans[2]!.lock);
      const groups = await grouped(c, from, "key", sigs);
      expect(plans.map((p) => groups[p.fingerprint])).toEqual(
        plans.map((p, i) => (paid.includes(i) ? paidInFull(p) : stillLocked(p))),
      );
      for (const p of plans)
        expect(await c.outcome(p.jobId)).toEqual(discrepancy("settlement.memo"));
    },
  );

  // Two keys' jobs of one worker, both locking 160,000: `a` charged its whole lock, `b` 120,000
  // of it. Paying `a` alone sends nothing home, so net balances cannot tell which was paid, and
  // the owner (first by id) was read as paid; the payout (136,000 and 24,000) is `a`'s charge,
  // not `b`'s.
  it.each([
    [true, "a"],
    [false, "a"],
    [true, "b"],
    [false, "b"],
  ] as const)(
    "two jobs of one worker and equal locks, the settlement naming both paying one, grouped by key (key 1's first: %s, paid: %s)",
    async (aFirst, which) => {
      const { c, from, a: first, b } = await twoJobs(aFirst);
      const a = { ...h.op.plan({ keyIndex: 1, completionTokens: 2000 }), jobId: first.jobId };
      expect([a.lock, a.charge]).toEqual([b.lock, b.lock]);
      expect(b.charge).toBeLessThan(b.lock);
      const paid = which === "a" ? a : b;
      const unpaid = which === "a" ? b : a;
      const { escrowA, escrowB, shared } = await judgedShared(c, a, b, [paid]);
      expect(await grouped(c, from, "key", [escrowA, escrowB, shared])).toEqual({
        [paid.fingerprint]: paidInFull(paid),
        [unpaid.fingerprint]: stillLocked(unpaid),
      });
      expect(await c.outcome(a.jobId)).toEqual(discrepancy("settlement.memo"));
      expect(await c.outcome(b.jobId)).toEqual(discrepancy("settlement.memo"));
    },
  );

  /** Two jobs of key 1 (two models, so two locks of one vault), `a` first by id when `aFirst`. */
  async function oneKeyTwoModels(aFirst: boolean) {
    const c = (await h.scenario()).recordOnChainClock();
    await c.pinKey(1);
    const from = periodEdge(h);
    const a = { ...h.op.plan({ keyIndex: 1 }) };
    const b = { ...h.op.plan({ keyIndex: 1, model: "phi-4-mini" }) };
    a.jobId = `job_${aFirst ? "0" : "z"}${a.jobId.slice(5)}`;
    b.jobId = `job_${aFirst ? "z" : "0"}${b.jobId.slice(5)}`;
    return { c, from, a, b };
  }

  // One net credit into the vault holds both remainders: the owning job's model read both
  // (unaccounted -40,000) and the other's none (+40,000).
  it.each([true, false])(
    "two jobs of one key paid in one settlement, grouped by model (a first: %s)",
    async (aFirst) => {
      const { c, from, a, b } = await oneKeyTwoModels(aFirst);
      const { escrowA, escrowB, shared } = await judgedShared(c, a, b);
      expect(await grouped(c, from, "model", [escrowA, escrowB, shared])).toEqual({
        [a.model]: paidInFull(a),
        [b.model]: paidInFull(b),
      });
    },
  );

  it.each([
    [true, "a"],
    [false, "a"],
    [true, "b"],
    [false, "b"],
  ] as const)(
    "two jobs of one key, the settlement naming both paying one, grouped by model (a first: %s, paid: %s)",
    async (aFirst, which) => {
      const { c, from, a, b } = await oneKeyTwoModels(aFirst);
      const paid = which === "a" ? a : b;
      const unpaid = which === "a" ? b : a;
      const { escrowA, escrowB, shared } = await judgedShared(c, a, b, [paid]);
      expect(await grouped(c, from, "model", [escrowA, escrowB, shared])).toEqual({
        [paid.model]: paidInFull(paid),
        [unpaid.model]: stillLocked(unpaid),
      });
      // Judged as before the split: the settlement carries the other job's memo too.
      expect(await c.outcome(a.jobId)).toEqual(discrepancy("settlement.memo"));
      expect(await c.outcome(b.jobId)).toEqual(discrepancy("settlement.memo"));
    },
  );

  // One lock transaction taking both keys' locks (each its escrow memo), each job settled on
  // its own: the owning key read escrowed 320,000 (unaccounted +160,000) and the other 0
  // (-160,000).
  it.each([true, false])(
    "one lock for both keys' jobs, each settled on its own, grouped by key (key 1's first: %s)",
    async (aFirst) => {
      const { c, from, a, b } = await twoJobs(aFirst);
      const { lock, settleA, settleB } = h.op.sharedLock(a, b);
      c.record(a, { escrowTx: lock, settlementTx: settleA });
      c.record(b, { escrowTx: lock, settlementTx: settleB });
      await h.finalized();
      await c.verify();
      expect(await grouped(c, from, "key", [lock, settleA, settleB])).toEqual({
        [a.fingerprint]: paidInFull(a),
        [b.fingerprint]: paidInFull(b),
      });
      // Judged as before the split: the lock carries the other job's escrow memo too.
      expect(await c.outcome(a.jobId)).toEqual(discrepancy("escrow.memo"));
      expect(await c.outcome(b.jobId)).toEqual(discrepancy("escrow.memo"));
    },
  );
});
