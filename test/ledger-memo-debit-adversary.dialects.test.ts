import { describe, expect, it } from "vitest";
import { dialects, useDialectStores } from "./support/dialects.js";
import { chainSecondAfter } from "./support/finality.js";
import { vaultStatementSince } from "./support/ledger-periods.js";
import { type Scenario, timedOutReceipt, useAdversaryHarness } from "./support/operator.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * No step of a job takes money out of a credit vault but its lock: a settlement or a refund pays
 * out of escrow. The operator signs for the vault, and sends the customer's credits to escrow
 * under the job's own settle or refund memo after an honest job. The statement lists the debit;
 * the job whose memo it carries must be judged on it too, not stay `verified`, read before or
 * after its receipt.
 */

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** Reads the vault as the ledger round does and builds its statement from `from` to now. */
  const statementOf = (c: Scenario, vault: string, from: number) =>
    vaultStatementSince(h, c, vault, from);

  it.each([
    ["before", true],
    ["after", false],
  ])(
    "judges a debit of the vault under the job's settle memo, read %s the receipt",
    async (_, early) => {
      const c = await h.scenario();
      const from = await chainSecondAfter(h.world);
      const plan = h.op.plan({ keyIndex: 3 });
      const txs = h.op.honestJob(plan);
      const debit = h.op.send([
        h.op.transfer(plan.vault, h.op.accounts.escrowVault, 50_000n),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      if (early) await statementOf(c, plan.vault, from);
      c.record(plan, txs);
      c.honestJobsApi(plan, txs);
      await h.finalized();
      const failing = { verdict: "discrepancy", failing: ["settlement.single"] };
      if (early) expect(await c.verdicts(plan.jobId)).toEqual([failing]);
      const s = await statementOf(c, plan.vault, from);
      expect(s.unexplained).toEqual([
        expect.objectContaining({ finding: "unreceipted_debit", signature: debit }),
      ]);
      expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([debit]);
      expect(await c.verdicts(plan.jobId)).toEqual([failing]);
    },
  );

  it("judges a debit of the vault under a refunded job's refund memo", async () => {
    const c = await h.scenario();
    const from = await chainSecondAfter(h.world);
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refundTx = h.op.send(h.op.refundIxs(plan)).signature;
    const debit = h.op.send([
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, 50_000n),
      h.op.memo(`decentral:refund:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    c.jobsApi(plan.jobId, {
      status: "refunded",
      credits_charged: 0,
      worker_address: plan.worker.address,
      on_chain: { escrow_tx: escrowTx, settlement_tx: refundTx },
    });
    await h.finalized();
    expect(await c.verdicts(plan.jobId)).toEqual([{ verdict: "verified", failing: [] }]);
    const s = await statementOf(c, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ finding: "unreceipted_debit", signature: debit }),
    ]);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([debit]);
    expect(await c.verdicts(plan.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["refund.single"] },
    ]);
  });
});
