import { describe, expect, it } from "vitest";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { reportsStore } from "../src/store/reports.js";
import { chainTruth, moneyOf } from "./support/chain-truth.js";
import { periodEdge } from "./support/ledger-periods.js";
import { type Scenario, timedOutReceipt, useAdversaryHarness } from "./support/operator.js";

/**
 * A receipt (or the jobs API) naming a job's lock as its settlement and its settlement as its
 * lock: the job is a discrepancy, and the report must still hold what the chain moved. Each
 * transaction was read in the role its header gave it, against the wrong accounts: the job's
 * escrowed, charged and refunded were all 0 (the report 160,000 escrowed, 120,000 charged and
 * 40,000 refunded short). A transaction is read in the role its own memos give it for the job.
 */
const hour = 3_600_000;
const h = useAdversaryHarness();

const settled = (a: ReturnType<typeof h.op.plan>, escrow_tx: string, settlement_tx: string) => ({
  status: "settled" as const,
  credits_charged: Number(a.charge / 10_000n),
  worker_address: a.worker.address,
  on_chain: { escrow_tx, settlement_tx },
});

const cases: [string, (c: Scenario) => string[]][] = [
  [
    "the receipt names its lock and settlement swapped",
    (c) => {
      const a = h.op.plan({ keyIndex: 1 });
      const t = h.op.honestJob(a);
      c.record(a, { escrowTx: t.settlementTx, settlementTx: t.escrowTx });
      return [t.escrowTx, t.settlementTx];
    },
  ],
  [
    "the jobs API names them swapped",
    (c) => {
      const a = h.op.plan({ keyIndex: 1 });
      const t = h.op.honestJob(a);
      c.record(a, t);
      c.jobsApi(a.jobId, settled(a, t.settlementTx, t.escrowTx));
      return [t.escrowTx, t.settlementTx];
    },
  ],
  [
    "a stream's jobs API answer names them swapped",
    (c) => {
      const a = h.op.plan({ keyIndex: 1 });
      const t = h.op.honestJob(a);
      c.record(a, { escrowTx: t.escrowTx, settlementTx: null }, { stream: true });
      c.jobsApi(a.jobId, settled(a, t.settlementTx, t.escrowTx));
      return [t.escrowTx, t.settlementTx];
    },
  ],
  [
    "a 504's receipt names its refund as the lock",
    (c) => {
      const a = h.op.plan({ keyIndex: 1 });
      const lock = h.op.send(h.op.lockIxs(a)).signature;
      const refund = h.op.send(h.op.refundIxs(a)).signature;
      c.record(a, { escrowTx: refund, settlementTx: lock }, timedOutReceipt);
      return [lock, refund];
    },
  ],
];

describe("a job's lock and settlement named in each other's place", () => {
  it.each(cases)("%s: the report holds what the chain moved", async (_, run) => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const sigs: string[] = [];
    for (const keyIndex of [1, 2]) {
      const pin = await c.pinKey(keyIndex);
      const row = (await reportsStore(c.store).auditRows(pin.jobId))!.job;
      sigs.push(row.escrowTx!, row.settlementTx!);
    }
    sigs.push(...run(c));
    await h.finalized();
    await c.verify();
    const { totals } = await reconciliationReport(c.store, {
      from,
      to: h.op.now() + hour,
      groupBy: "day",
    });
    expect(moneyOf(totals)).toEqual(chainTruth(h.op, sigs));
    expect(totals.discrepancies).toBe(1);
  });
});
