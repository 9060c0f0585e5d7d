import { describe, expect, it } from "vitest";
import { createEscrowScanner } from "../src/ledger/escrow-scan.js";
import { createLogger } from "../src/log.js";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { reportsStore } from "../src/store/reports.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { chainTruth, moneyOf } from "./support/chain-truth.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { periodEdge, vaultStatementSince } from "./support/ledger-periods.js";
import {
  discrepancy,
  type JobPlan,
  type Scenario,
  useAdversaryHarness,
} from "./support/operator.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * Round 3 of the adversary review of the reports: a payout out of escrow under job A's settle
 * memo (a second one) that job B's receipt names as B's settlement. A names it nowhere, so B is
 * judged owning its money; then the credit vault's ledger or the escrow scan reads the payout
 * and keeps it with A (one of A's conflict signatures), and A, judged again, owns it as the
 * memo's job. B was left as it stood: both jobs counted the payout, the report's charged,
 * worker, treasury, refunded and fee totals above what moved on chain, and called final. A job
 * that gains a signature this way now sends the signature's other namers back to the verifier,
 * as a receipt naming one does.
 */

const hour = 3_600_000;
const log = createLogger({ level: "silent" });

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /**
   * A's lock and settlement (recorded, or not yet), and its second payout named by B's receipt
   * as B's settlement beside B's own lock, judged; the report then equals the chain.
   */
  async function paidToB(c: Scenario, keyIndex: number, recordA: boolean) {
    const from = periodEdge(h);
    const pin = await c.pinKey(keyIndex);
    const pinRow = (await reportsStore(c.store).auditRows(pin.jobId))!.job;
    c.honestJobsApi(pin, { escrowTx: pinRow.escrowTx!, settlementTx: pinRow.settlementTx! });
    const a: JobPlan = h.op.plan({ keyIndex });
    const b: JobPlan = h.op.plan({ keyIndex });
    const ta = h.op.honestJob(a);
    const second = h.op.send(h.op.settleIxs(a)).signature;
    const lockB = h.op.send(h.op.lockIxs(b)).signature;
    const recordJobA = () => {
      c.record(a, ta);
      c.honestJobsApi(a, ta);
    };
    if (recordA) recordJobA();
    c.record(b, { escrowTx: lockB, settlementTx: second });
    c.jobsApi(b.jobId, {
      status: "settled",
      credits_charged: Number(b.charge / 10_000n),
      worker_address: b.worker.address,
      on_chain: { escrow_tx: lockB, settlement_tx: second },
    });
    await h.finalized();
    await c.verify();
    const truth = chainTruth(h.op, [
      pinRow.escrowTx!,
      pinRow.settlementTx!,
      ta.escrowTx,
      ta.settlementTx,
      second,
      lockB,
    ]);
    if (recordA) expect(moneyOf(await totals(c, from))).toEqual(truth);
    return { from, a, b, second, truth, recordJobA };
  }

  const totals = async (c: Scenario, from: number) =>
    (await reconciliationReport(c.store, { from, to: h.op.now() + hour, groupBy: "day" })).totals;

  /** Every job judged again as it must be, the report's totals equal what moved on chain. */
  async function countedOnce(c: Scenario, from: number, truth: ReturnType<typeof chainTruth>) {
    await c.verify();
    const t = await totals(c, from);
    expect(t.pending).toBe(0);
    expect(moneyOf(t)).toEqual(truth);
  }

  it("counts once a payout B names that the credit vault's ledger then keeps with A", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { from, a, second, truth } = await paidToB(c, 1, true);
    // The ledger reads the vault: `second` is a return under A's memo A names nowhere.
    await vaultStatementSince(h, c, a.vault, from);
    expect((await readJob(c.store, a.jobId))?.conflictSignatures).toEqual([second]);
    await countedOnce(c, from, truth);
  });

  it("counts once a payout B names that the escrow scan then keeps with A", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { from, a, second, truth } = await paidToB(c, 2, true);
    await createEscrowScanner({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log,
      now: () => h.op.now(),
    }).scanNew();
    expect((await readJob(c.store, a.jobId))?.conflictSignatures).toEqual([second]);
    await countedOnce(c, from, truth);
  });

  it("counts once a payout B names that the ledger read before A was recorded, kept with A at its claim", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { from, a, second, truth, recordJobA } = await paidToB(c, 3, false);
    await vaultStatementSince(h, c, a.vault, from);
    recordJobA();
    await c.verify();
    expect((await readJob(c.store, a.jobId))?.conflictSignatures).toEqual([second]);
    await countedOnce(c, from, truth);
  });

  it("verifies neither of two receipts each naming the other job's settlement, each job holding its own", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const pin = await c.pinKey(1);
    const pinRow = (await reportsStore(c.store).auditRows(pin.jobId))!.job;
    const a: JobPlan = h.op.plan({ keyIndex: 1 });
    const b: JobPlan = h.op.plan({ keyIndex: 1 });
    const lockA = h.op.send(h.op.lockIxs(a)).signature;
    const settleA = h.op.send(h.op.settleIxs(a)).signature;
    const lockB = h.op.send(h.op.lockIxs(b)).signature;
    const settleB = h.op.send(h.op.settleIxs(b)).signature;
    // The ledger reads both returns before either job is recorded: each job's claim keeps its
    // own settlement with it, by its memo, while its receipt names the other's.
    await h.finalized();
    await vaultStatementSince(h, c, a.vault, from);
    c.record(a, { escrowTx: lockA, settlementTx: settleB });
    c.record(b, { escrowTx: lockB, settlementTx: settleA });
    await c.verify();
    expect(await c.outcome(a.jobId)).toEqual(discrepancy("signatures.unique"));
    expect(await c.outcome(b.jobId)).toEqual(discrepancy("signatures.unique"));
    const sigs = [pinRow.escrowTx!, pinRow.settlementTx!, lockA, settleA, lockB, settleB];
    await countedOnce(c, from, chainTruth(h.op, sigs));
  });
});

describe.each(dialects)("%s store, the treasury learned", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });
  /** The treasury not named (as the mainnet profile ships): learned from two settlements. */
  const learning: Profile = { ...localnetProfile, treasury: null, treasuryLearnAfter: 2 };

  it("counts as the treasury's pay only what reached it, in a discrepancy judged before it was learned", async () => {
    const c = (await h.scenario(learning)).recordOnChainClock();
    const from = periodEdge(h);
    // The "treasury's share" (and a unit of the worker's) paid to the operator's own account:
    // the one payee besides the worker and the vault, counted as the treasury while it is
    // learned; the job a discrepancy (settlement.split).
    const d = h.op.plan({ keyIndex: 1 });
    const lock = h.op.send(h.op.lockIxs(d)).signature;
    const settle = h.op.send(
      h.op.settleIxs(d, {
        workerShare: d.workerShare - 1n,
        treasuryAccount: h.op.attackerAccount(0n),
        treasuryShare: d.treasuryShare + 1n,
      }),
    ).signature;
    c.recordWithJobsApi(d, { escrowTx: lock, settlementTx: settle });
    await c.verify();
    expect((await c.outcome(d.jobId)).verdict).toBe("discrepancy");
    // Honest jobs pay the real treasury: it is learned, and the discrepancy decided again.
    const sigs = [lock, settle];
    for (let i = 0; i < 3; i++) {
      const p = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(p);
      c.recordWithJobsApi(p, txs);
      sigs.push(txs.escrowTx, txs.settlementTx);
      await c.verify();
      if (i > 0) expect((await c.outcome(p.jobId)).verdict).toBe("verified");
    }
    await c.verify();
    const outcome = await c.outcome(d.jobId);
    expect(outcome.verdict).toBe("discrepancy");
    expect(outcome.failing).toContain("settlement.recipients");
    const r = await reconciliationReport(c.store, { from, to: h.op.now() + hour, groupBy: "day" });
    expect(r.totals.pending).toBe(0);
    // The worker's and the treasury's figures are what reached them; the customer was charged
    // all that left escrow and came not back, the operator's take included.
    const truth = chainTruth(h.op, sigs);
    expect(moneyOf(r.totals)).toEqual({
      ...truth,
      chargedUnits: truth.escrowedUnits - truth.refundedUnits,
    });
  });
});
