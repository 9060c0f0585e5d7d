import { describe, expect, it } from "vitest";
import { chainSecondAfter } from "./support/finality.js";
import { statementAfterWindow } from "./support/ledger-periods.js";
import {
  discrepancy,
  discrepancyIncluding,
  quickWindowProfile,
  timedOutReceipt,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";

/**
 * Round 11: the operator spends a lock by a delegate of the vault, names a job in capitals,
 * keeps a fee of a 504's lock, splits a settlement in two, prices the prompt, draws on a vault
 * it opened anew for the key, or settles a job long after its window to itself.
 */

const h = useAdversaryHarness();

describe("a delegate of the credit vault signing a job's lock", () => {
  it("fails escrow.source: the vault was spent by a key that is not its owner, and the statement names the Approve", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const from = await chainSecondAfter(h.world);
    const plan = h.op.plan({ keyIndex: 1 });
    // The allowance is the lock to the unit: spent by it, the vault has no delegate after.
    const approve = h.op.send([
      h.op.approve(plan.vault, h.op.attacker.address, plan.lock),
    ]).signature;
    const escrowTx = h.op.send(h.op.lockIxs(plan, { authority: h.op.attacker.address })).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
    expect(await c.check(plan.jobId, "escrow.source")).toMatchObject({
      outcome: "fail",
      actual: { vault: plan.vault, spentBy: h.op.attacker.address },
    });

    const s = await statementAfterWindow(h, c, plan.vault, from);
    expect(s.delegateApprovals).toEqual([
      expect.objectContaining({
        finding: "vault_delegate_approved",
        signature: approve,
        delegate: h.op.attacker.address,
        approvedUnits: plan.lock,
      }),
    ]);
    // The money went where a lock's and a settlement's should: the statement sums.
    expect(s.unexplained).toEqual([]);
    expect(s.unreleasedLocks).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
  });

  it("still verifies the same lock signed by the escrow authority after the delegate was revoked", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    h.op.send([h.op.approve(plan.vault, h.op.attacker.address, plan.lock)]);
    h.op.send([h.op.revoke(plan.vault)]);
    const txs = h.op.honestJob(plan);
    c.recordWithJobsApi(plan, txs);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });
});

describe("a job named in capitals by its memo", () => {
  it("fails escrow.memo on a lock naming the job id upper-cased", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send([
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, plan.lock),
      h.op.memo(`decentral:escrow:${plan.jobId.toUpperCase()}`),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancyIncluding("escrow.memo")]);
  });

  it("lists a second lock under the upper-cased id as an unreceipted debit", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const from = await chainSecondAfter(h.world);
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    c.recordWithJobsApi(plan, txs);
    const again = h.op.send([
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, 20_000n),
      h.op.memo(`decentral:escrow:${plan.jobId.toUpperCase()}`),
    ]).signature;
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    const s = await statementAfterWindow(h, c, plan.vault, from);
    expect(s.unexplained.map((u) => [u.finding, u.signature, u.amountUnits])).toEqual([
      ["unreceipted_debit", again, -20_000n],
    ]);
  });
});

describe("a 504 whose lock pays a fee", () => {
  it("fails refund.complete on a refund that keeps a fee for the treasury", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const fee = 10_000n;
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refundTx = h.op.send([
      h.op.transfer(h.op.accounts.escrowVault, plan.vault, plan.lock - fee),
      h.op.transfer(h.op.accounts.escrowVault, h.op.accounts.treasury.tokenAccount, fee),
      h.op.memo(`decentral:refund:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancyIncluding("refund.complete")]);
  });

  it("fails refund.not_settled on a 504 settled for the price of a request", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1, completionTokens: 0 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs, timedOutReceipt);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancyIncluding("refund.not_settled")]);
  });
});

describe("a settlement split across two transactions", () => {
  it("fails the job whose headers name one half and whose jobs API names the other", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const memo = h.op.memo(`decentral:settle:${plan.jobId}`);
    const first = h.op.send([
      h.op.transfer(h.op.accounts.escrowVault, plan.worker.tokenAccount, plan.workerShare),
      h.op.transfer(h.op.accounts.escrowVault, plan.vault, plan.remainder),
      memo,
    ]).signature;
    const second = h.op.send([
      h.op.transfer(
        h.op.accounts.escrowVault,
        h.op.accounts.treasury.tokenAccount,
        plan.treasuryShare,
      ),
      memo,
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: first });
    c.honestJobsApi(plan, { escrowTx, settlementTx: second });
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancyIncluding("settlement.single", "settlement.conserves_lock"),
    ]);
  });
});

describe("usage that names a prompt the operator made up", () => {
  it("prices no prompt token: a charge for them fails charge.matches_price, the count alone changes nothing", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const inflated = { promptTokens: 900_000, totalTokens: 900_640 };
    const honest = h.op.plan({ keyIndex: 1 });
    c.record(honest, h.op.honestJob(honest), inflated);
    // The prompt charged as if it were completion tokens: the whole lock.
    const plan = h.op.plan({ keyIndex: 1 });
    const charged = { ...plan, charge: plan.lock, remainder: 0n };
    charged.workerShare = (plan.lock * BigInt(plan.worker.rateBps)) / 10_000n;
    charged.treasuryShare = plan.lock - charged.workerShare;
    const txs = { escrowTx: h.op.send(h.op.lockIxs(plan)).signature, settlementTx: "" };
    txs.settlementTx = h.op.send(h.op.settleIxs(charged)).signature;
    c.record(plan, txs, inflated);
    const [kept, overcharged] = await c.verdicts(honest.jobId, plan.jobId);
    expect(kept).toEqual(verified);
    expect(overcharged?.failing).toContain("charge.matches_price");
  });
});

describe("a credit vault opened anew for the key between jobs", () => {
  it("fails escrow.source on a lock from the new account: the key's vault is the one learned", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(2);
    const plan = h.op.plan({ keyIndex: 2 });
    const fresh = h.op.createTokenAccount(h.op.escrowAuthority.address, undefined, 1_000_000n);
    const escrowTx = h.op.send(h.op.lockIxs(plan, { from: fresh })).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan, { remainderTo: fresh })).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancyIncluding("escrow.source")]);
  });
});

describe("a streamed job settled long after its window, to the operator", () => {
  it("fails settlement.within_window and settlement.worker_paid on the late payout the jobs API names", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx: null }, { stream: true });
    h.op.advanceClock(30_000);
    const settlementTx = h.op.send([
      h.op.transfer(h.op.accounts.escrowVault, h.op.attackerAccount(0n), plan.lock),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.honestJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancyIncluding("settlement.within_window", "settlement.worker_paid"),
    ]);
  });
});
