import { describe, expect, it } from "vitest";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { reportsStore } from "../src/store/reports.js";
import { chainTruth, moneyOf } from "./support/chain-truth.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { periodEdge } from "./support/ledger-periods.js";
import { type JobPlan, type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * Round 4 of the adversary review of the reports: a payout out of escrow with no memo, named
 * only by a job's conflicting receipt (a second receipt of the same job id naming it as the
 * settlement). A transaction's owner was its memo's job or the first job by id naming it in a
 * receipt or a jobs API answer; the conflicting receipts' signatures had no index, so such a
 * payout had no owner: the job was a discrepancy, but the payout's money was in no job's
 * figures and the report's totals stood below what left escrow. Now the first job by id naming
 * it in a conflicting receipt owns it when no receipt or jobs API answer names it; a receipt
 * naming it later sends those jobs back, so it is still counted once.
 */

const hour = 3_600_000;

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  const totals = async (c: Scenario, from: number) =>
    (await reconciliationReport(c.store, { from, to: h.op.now() + hour, groupBy: "day" })).totals;

  /** The pinning job's and `plans`' honest lock and settlement, each judged; their signatures. */
  async function honestJobs(c: Scenario, keyIndex: number, plans: JobPlan[]) {
    const pin = await c.pinKey(keyIndex);
    const pinRow = (await reportsStore(c.store).auditRows(pin.jobId))!.job;
    const sigs = [pinRow.escrowTx!, pinRow.settlementTx!];
    for (const plan of plans) {
      const txs = h.op.honestJob(plan);
      c.record(plan, txs);
      sigs.push(txs.escrowTx, txs.settlementTx);
    }
    await h.finalized();
    await c.verify();
    return sigs;
  }

  /** A payout out of escrow of `plan`'s settlement's amounts, carrying no memo. */
  const barePayout = (plan: JobPlan) => h.op.send(h.op.payoutIxs(plan)).signature;

  /** Every job judged, none a verdict short; the report's totals equal what moved on chain. */
  async function countedOnce(c: Scenario, from: number, sigs: string[]) {
    await h.finalized();
    await c.verify();
    const t = await totals(c, from);
    expect(t.pending).toBe(0);
    expect(moneyOf(t)).toEqual(chainTruth(h.op, sigs));
  }

  it("counts a payout with no memo that only the job's conflicting receipt names", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const a = h.op.plan({ keyIndex: 1 });
    const sigs = await honestJobs(c, 1, [a]);
    const row = (await reportsStore(c.store).auditRows(a.jobId))!.job;
    // The operator pays the job out again, with no memo; a second receipt of the job names it.
    const bare = barePayout(a);
    c.recordConflict(a, { escrowTx: row.escrowTx, settlementTx: bare });
    await countedOnce(c, from, [...sigs, bare]);
    expect((await c.outcome(a.jobId)).verdict).toBe("discrepancy");
  });

  it("counts the fee of a failed payout with no memo that only the job's conflicting receipt names", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const a = h.op.plan({ keyIndex: 1 });
    const sigs = await honestJobs(c, 1, [a]);
    const row = (await reportsStore(c.store).auditRows(a.jobId))!.job;
    // More than escrow holds: it fails on chain, moving no credits, and pays its fee.
    const failed = h.op.send(h.op.payoutIxs(a, { workerShare: 10n ** 15n }), {
      expectFailure: true,
    }).signature;
    c.recordConflict(a, { escrowTx: row.escrowTx, settlementTx: failed });
    await countedOnce(c, from, [...sigs, failed]);
  });

  it("counts it once when a receipt of another job names it later", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const a = h.op.plan({ keyIndex: 2 });
    const sigs = await honestJobs(c, 2, [a]);
    const row = (await reportsStore(c.store).auditRows(a.jobId))!.job;
    const bare = barePayout(a);
    c.recordConflict(a, { escrowTx: row.escrowTx, settlementTx: bare });
    await countedOnce(c, from, [...sigs, bare]);
    // Job B's receipt names the payout as its settlement, beside B's own lock: the receipt's
    // job owns it now, and A, which counted it, is sent back.
    const b = h.op.plan({ keyIndex: 2 });
    const lockB = h.op.send(h.op.lockIxs(b)).signature;
    c.record(b, { escrowTx: lockB, settlementTx: bare });
    await countedOnce(c, from, [...sigs, bare, lockB]);
    expect((await c.outcome(a.jobId)).verdict).toBe("discrepancy");
  });

  it("counts it once when two jobs' conflicting receipts name it, the later one first by id", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const [first, second] = [h.op.plan({ keyIndex: 3 }), h.op.plan({ keyIndex: 3 })].sort((x, y) =>
      x.jobId < y.jobId ? -1 : 1,
    ) as [JobPlan, JobPlan];
    const sigs = await honestJobs(c, 3, [first, second]);
    const escrowOf = async (plan: JobPlan) =>
      (await reportsStore(c.store).auditRows(plan.jobId))!.job.escrowTx;
    const bare = barePayout(second);
    c.recordConflict(second, { escrowTx: await escrowOf(second), settlementTx: bare });
    await countedOnce(c, from, [...sigs, bare]);
    // The job first by id names it too: it owns it now, and the other is sent back.
    c.recordConflict(first, { escrowTx: await escrowOf(first), settlementTx: bare });
    await countedOnce(c, from, [...sigs, bare]);
    for (const plan of [first, second]) {
      expect((await c.outcome(plan.jobId)).verdict).toBe("discrepancy");
    }
  });
});
