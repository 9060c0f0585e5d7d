import { describe, expect, it } from "vitest";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { reportsStore } from "../src/store/reports.js";
import { chainTruth, moneyOf } from "./support/chain-truth.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { periodEdge } from "./support/ledger-periods.js";
import { discrepancy, type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * One transaction for two jobs of two keys (each its own credit vault): each job is a
 * discrepancy, and the report's totals must still equal what the chain moved. The job owning
 * the shared transaction (first by id) counted only the money returned to its own vault: the
 * other key's remainder, paid out of escrow into that key's vault, was in no figure (refunded
 * 40,000 short of the chain, unaccounted 40,000 over).
 */
const hour = 3_600_000;

describe.each(dialects)("%s: a transaction two keys' jobs share", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });
  const totals = async (c: Scenario, from: number) =>
    (await reconciliationReport(c.store, { from, to: h.op.now() + hour, groupBy: "day" })).totals;
  /** Pins the key's vault with a clean job; its lock and settlement. */
  async function pinned(c: Scenario, keyIndex: number) {
    const pin = await c.pinKey(keyIndex);
    const row = (await reportsStore(c.store).auditRows(pin.jobId))!.job;
    return [row.escrowTx!, row.settlementTx!];
  }
  /** Both keys pinned, then `run` (the signatures it sent); totals against the chain's. */
  async function reportedAsMoved(run: (c: Scenario) => string[]) {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const sigs = [...(await pinned(c, 1)), ...(await pinned(c, 2))];
    sigs.push(...run(c));
    await h.finalized();
    await c.verify();
    expect(moneyOf(await totals(c, from))).toEqual(chainTruth(h.op, sigs));
  }

  it("one settlement paying both in full", () =>
    reportedAsMoved((c) => {
      const a = h.op.plan({ keyIndex: 1 });
      const b = h.op.plan({ keyIndex: 2 });
      const { escrowA, escrowB, shared } = h.op.sharedSettlement(a, b);
      c.record(a, { escrowTx: escrowA, settlementTx: shared });
      c.record(b, { escrowTx: escrowB, settlementTx: shared });
      return [escrowA, escrowB, shared];
    }));

  // The job owning the settlement names one worker: the other job's worker, paid in the same
  // transaction, was counted charged to no one named and left out of worker paid (102,000).
  it("one settlement paying both in full, each its own worker", () =>
    reportedAsMoved((c) => {
      const a = h.op.plan({ keyIndex: 1 });
      const b = h.op.plan({ keyIndex: 2, workerIndex: 1 });
      const { escrowA, escrowB, shared } = h.op.sharedSettlement(a, b);
      c.record(a, { escrowTx: escrowA, settlementTx: shared });
      c.record(b, { escrowTx: escrowB, settlementTx: shared });
      return [escrowA, escrowB, shared];
    }));

  it("one lock for both, each settled on its own", () =>
    reportedAsMoved((c) => {
      const a = h.op.plan({ keyIndex: 1 });
      const b = h.op.plan({ keyIndex: 2 });
      const { lock, settleA, settleB } = h.op.sharedLock(a, b);
      c.record(a, { escrowTx: lock, settlementTx: settleA });
      c.record(b, { escrowTx: lock, settlementTx: settleB });
      return [lock, settleA, settleB];
    }));

  /**
   * Key 2 has no clean job: nothing pins its vault, and the shared settlement fails both jobs.
   * The job owning it (first by id, so the order is forced both ways) knows that vault for a
   * customer's from the other job's lock; it left key 2's remainder unaccounted when key 1's
   * job owned the settlement, and counted it when key 2's did.
   */
  it.each([
    ["key 1's job owns it", true, false],
    ["key 2's job owns it", false, false],
    ["key 1's job owns it, key 2's recorded after its verdict", true, true],
  ])("one settlement paying both in full, key 2 with no clean job: %s", async (_, aFirst, late) => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const sigs = await pinned(c, 1);
    const a = { ...h.op.plan({ keyIndex: 1 }) };
    const b = { ...h.op.plan({ keyIndex: 2 }) };
    a.jobId = `job_${aFirst ? "0" : "z"}${a.jobId.slice(5)}`;
    b.jobId = `job_${aFirst ? "z" : "0"}${b.jobId.slice(5)}`;
    const { escrowA, escrowB, shared } = h.op.sharedSettlement(a, b);
    c.record(a, { escrowTx: escrowA, settlementTx: shared });
    if (late) {
      await h.finalized();
      await c.verify();
    }
    c.record(b, { escrowTx: escrowB, settlementTx: shared });
    await h.finalized();
    await c.verify();
    sigs.push(escrowA, escrowB, shared);
    expect(moneyOf(await totals(c, from))).toEqual(chainTruth(h.op, sigs));
  });

  /**
   * A payout with no memo out of escrow (key 2's job's pay again) sends the 40,000 remainder
   * into an account of the escrow authority's no customer holds (the operator's own). Key 2's
   * job lists it; so does a made-up job of key 1 (nothing pins key 1), first by id so it owns
   * the payout, whose lock draws `locked` out of that account. The account is a customer's
   * vault to the verifier only through that lock, so what the payout sent there counted as the
   * made-up job's return whatever the lock's size: a 1-unit lock read refunded 80,000, 40,000
   * above the chain's, the operator's money reading as a customer's back. Such a return is
   * bounded by what the job's own locks took from the account: the 1-unit lock reads 1 unit
   * refunded above the chain, the rest of the payout's credit unaccounted. The 40,000 lock
   * still reads 40,000 above the chain: nothing the verifier reads tells that account from a
   * key's first vault (key 1's, learned by this lock), and a customer's 40,000 lock coming back
   * whole is an honest refund's shape; the chain's figure counts no refund there because the
   * test world knows the account is no customer's. With key 1's vault pinned by a clean job
   * the lock fails `escrow.source`, and its 1 unit bounds the return all the same. Both jobs
   * fail their checks either way, as before the bound.
   */
  it.each([
    ["a 1-unit lock", 1n, false],
    ["a 40,000 lock, as large as the payout's credit", 40_000n, false],
    ["a 1-unit lock, key 1's vault pinned by a clean job", 1n, true],
  ])(
    "a made-up job first by id owns a payout into the account its own lock drew on: %s",
    async (_, locked, pinOne) => {
      const c = (await h.scenario()).recordOnChainClock();
      const from = periodEdge(h);
      const sigs = pinOne ? await pinned(c, 1) : [];
      const real = { ...h.op.plan({ keyIndex: 2 }) };
      real.jobId = `job_z${real.jobId.slice(5)}`;
      const txs = h.op.honestJob(real);
      const own = h.op.victimVault(100_000n);
      const payout = h.op.send(h.op.payoutIxs(real, { remainderTo: own })).signature;
      c.record(real, txs);
      c.recordConflict(real, { escrowTx: txs.escrowTx, settlementTx: payout });
      const made = { ...h.op.plan({ keyIndex: 1 }) };
      made.jobId = `job_0${made.jobId.slice(5)}`;
      const lock = h.op.send(h.op.lockIxs(made, { from: own, amount: locked })).signature;
      const note = h.op.send([h.op.memo(`hello ${made.jobId}`)]).signature;
      c.record(made, { escrowTx: lock, settlementTx: note });
      c.recordConflict(made, { escrowTx: lock, settlementTx: payout });
      await h.finalized();
      await c.verify();
      const sent = [txs.escrowTx, txs.settlementTx, payout, lock, note];
      // The settlement's remainder alone (the pin's own aside): the account is no customer's.
      expect(chainTruth(h.op, sent).refundedUnits).toBe(real.remainder);
      const chain = chainTruth(h.op, [...sigs, ...sent]);
      const reported = await totals(c, from);
      expect(moneyOf(reported)).toEqual({
        ...chain,
        refundedUnits: chain.refundedUnits + locked,
      });
      expect((await reportsStore(c.store).auditRows(made.jobId))!.job.refundedUnits).toBe(locked);
      // Judged as before the bound: the payout explains no step of either job (and the lock is
      // not from key 1's pinned vault).
      expect(await c.outcome(real.jobId)).toEqual(
        discrepancy("signatures.explained", "signatures.unique"),
      );
      expect(await c.outcome(made.jobId)).toEqual(
        discrepancy(
          ...(pinOne ? ["escrow.source"] : []),
          "settlement.memo",
          "signatures.explained",
        ),
      );
    },
  );

  /**
   * A job recorded here whose lock drew on an account of the operator's (no customer's vault)
   * counts what a payout it owns sends back into that account as returned only up to what its
   * locks put into escrow from it. A lock of 1 unit that also sent 39,999 out of the same account
   * elsewhere made room for all of a 40,000 payout into it, bounded by what the lock took from the
   * account: refunded 80,000 where the chain returned 40,000 to a customer.
   */
  it.each([
    ["to another of the escrow authority's accounts", "vault"],
    ["to an account of its own", "attacker"],
  ])(
    "counts a return up to what the lock put into escrow, its account also paid out %s",
    async (_label, kind) => {
      const c = (await h.scenario()).recordOnChainClock();
      const from = periodEdge(h);
      const real = { ...h.op.plan({ keyIndex: 2 }) };
      real.jobId = `job_z${real.jobId.slice(5)}`;
      const txs = h.op.honestJob(real);
      const own = h.op.victimVault(100_000n);
      const payout = h.op.send(h.op.payoutIxs(real, { remainderTo: own })).signature;
      c.record(real, txs);
      c.recordConflict(real, { escrowTx: txs.escrowTx, settlementTx: payout });
      const made = { ...h.op.plan({ keyIndex: 1 }) };
      made.jobId = `job_0${made.jobId.slice(5)}`;
      const other = kind === "vault" ? h.op.victimVault(0n) : h.op.attackerAccount(0n);
      const lock = h.op.send([
        ...h.op.lockIxs(made, { from: own, amount: 1n }),
        h.op.transfer(own, other, real.remainder - 1n),
      ]).signature;
      const note = h.op.send([h.op.memo(`hello ${made.jobId}`)]).signature;
      c.record(made, { escrowTx: lock, settlementTx: note });
      c.recordConflict(made, { escrowTx: lock, settlementTx: payout });
      await h.finalized();
      await c.verify();
      const sent = [txs.escrowTx, txs.settlementTx, payout, lock, note];
      const chain = chainTruth(h.op, sent);
      const rep = moneyOf(await totals(c, from));
      const row = (await reportsStore(c.store).auditRows(made.jobId))!.job;
      // The made-up job keeps the unit its lock put into escrow; the 39,999 it sent elsewhere
      // is no room for a return.
      expect(row.refundedUnits).toBe(1n);
      expect(rep.refundedUnits).toBe(chain.refundedUnits + 1n);
    },
  );
});

describe("money into another key's vault that escrow did not pay", () => {
  const h = useAdversaryHarness();
  it("is no refund: a top-up riding in a settlement counts nothing", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    periodEdge(h);
    await c.pinKey(1);
    await c.pinKey(2);
    const a = h.op.plan({ keyIndex: 1 });
    const other = h.op.plan({ keyIndex: 2 });
    const lock = h.op.send(h.op.lockIxs(a)).signature;
    const attacker = h.op.attackerAccount();
    const settle = h.op.send([
      ...h.op.settleIxs(a),
      h.op.transfer(attacker, other.vault, 40_000n, { authority: h.op.attacker.address }),
    ]).signature;
    c.record(a, { escrowTx: lock, settlementTx: settle });
    await h.finalized();
    await c.verify();
    // The lock's own remainder alone: 40,000, not 80,000.
    expect((await reportsStore(c.store).auditRows(a.jobId))!.job.refundedUnits).toBe(40_000n);
  });
});
