import { describe, expect, it } from "vitest";
import { chainSecondAfter } from "./support/finality.js";
import { statementAfterWindow } from "./support/ledger-periods.js";
import {
  discrepancy,
  quickWindowProfile,
  timedOutReceipt,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";

/**
 * The operator moves a customer's credits in and out of the vault within one transaction, or
 * empties the vault by a means no step uses and opens it again: the job whose step it is must
 * fail, or the vault's statement must list what left it.
 */

const h = useAdversaryHarness();

describe("a refund that takes the lock again in its own transaction", () => {
  it("fails refund.complete, and the statement keeps the lock unreleased", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const from = await chainSecondAfter(h.world);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refundTx = h.op.send([
      ...h.op.refundIxs(plan),
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, plan.lock),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("refund.complete")]);

    const s = await statementAfterWindow(h, c, plan.vault, from);
    expect(s.unreleasedLocks).toEqual([
      expect.objectContaining({ jobId: plan.jobId, outstandingUnits: plan.lock }),
    ]);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("a lock the operator tops the vault up for in its own transaction", () => {
  it("fails escrow.source: the lock's money came from the operator's account, not the vault", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(0);
    const plan = h.op.plan({ keyIndex: 0 });
    const wallet = h.op.attackerAccount(plan.lock);
    const escrowTx = h.op.send([
      h.op.transfer(wallet, plan.vault, plan.lock, { authority: h.op.attacker.address }),
      ...h.op.lockIxs(plan),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
  });
});

describe("a credit vault burned empty, closed and opened again in the credit mint between jobs", () => {
  it("lists the burn as an unreceipted debit, though the next job is verified", async () => {
    const c = await h.scenario(quickWindowProfile);
    const vault = h.op.vault(4);
    h.op.fund(vault, 1_000_000n);
    await c.pinKey(4);
    const from = await chainSecondAfter(h.world);
    const all = h.op.balance(vault);
    const burn = h.op.send([h.op.burn(vault, all)]).signature;
    h.op.reopenVault(4, h.op.accounts.mint);
    h.op.fund(vault, 1_000_000n);
    const plan = h.op.plan({ keyIndex: 4 });
    const txs = h.op.honestJob(plan);
    c.recordWithJobsApi(plan, txs);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);

    const s = await statementAfterWindow(h, c, vault, from);
    expect(s.unexplained.map((u) => [u.finding, u.signature, u.amountUnits])).toEqual([
      ["unreceipted_debit", burn, -all],
    ]);
    expect(s.differenceUnits).toBe(0n);
  });
});
