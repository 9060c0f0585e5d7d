import { describe, expect, it } from "vitest";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { reportsStore } from "../src/store/reports.js";
import { chainTruth, moneyOf } from "./support/chain-truth.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { periodEdge } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";

const hour = 3_600_000;

/**
 * A job recorded here whose lock drew on an account of the operator's (no customer's vault)
 * counts what a payout it owns sends back into that account as returned only up to what its
 * locks put into escrow from it. A lock of 1 unit that also sent 39,999 out of the same account
 * elsewhere made room for all of a 40,000 payout into it, bounded by what the lock took from the
 * account: refunded 80,000 where the chain returned 40,000 to a customer.
 */
describe.each(dialects)("%s store: a lock that pads its account's room", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });
  const totals = async (c: Scenario, from: number) =>
    (await reconciliationReport(c.store, { from, to: h.op.now() + hour, groupBy: "day" })).totals;
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
