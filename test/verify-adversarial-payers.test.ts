import { describe, expect, it } from "vitest";
import { localnetProfile } from "../src/verify/profiles.js";
import {
  AuthorityType,
  discrepancy,
  timedOutReceipt,
  useAdversaryHarness,
} from "./support/operator.js";

/**
 * The operator pays a job's steps out of, or back into, accounts of the right mint and owner
 * that are not the job's: another customer's credit vault (the escrow authority owns every
 * one), or one transaction doing two jobs' steps. Each job must fail the check naming it.
 */

const h = useAdversaryHarness();

describe("a step paid by another customer's credit vault", () => {
  it("fails a settlement paid out of key 2's vault while escrow keeps key 1's lock", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    await c.pinKey(2);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, { from: h.op.vault(2) }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("settlement.balances", "settlement.conserves_lock"),
    ]);
  });

  it("fails a refund key 2's vault pays while escrow keeps key 1's lock", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    await c.pinKey(2);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refundTx = h.op.send([
      h.op.transfer(h.op.vault(2), plan.vault, plan.lock),
      h.op.memo(`decentral:refund:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("refund.balances", "refund.complete"),
    ]);
  });

  it("fails key 1's first job locked from key 2's vault and settled back into it", async () => {
    const c = await h.scenario();
    await c.pinKey(2);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan, { from: h.op.vault(2) })).signature;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, { remainderTo: h.op.vault(2) }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
  });
});

describe("one transaction doing more than one step", () => {
  it("fails a settlement that also hands the vault's close authority to the attacker", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send([
      ...h.op.settleIxs(plan),
      h.op.setAuthority(plan.vault, AuthorityType.CloseAccount, h.op.attacker.address),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.instructions")]);
  });

  it("fails both jobs when one transaction settles job A and locks job B", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const a = h.op.plan({ keyIndex: 1 });
    const b = h.op.plan({ keyIndex: 1 });
    const escrowA = h.op.send(h.op.lockIxs(a)).signature;
    const both = h.op.send([...h.op.settleIxs(a), ...h.op.lockIxs(b)]).signature;
    const settleB = h.op.send(h.op.settleIxs(b)).signature;
    c.record(a, { escrowTx: escrowA, settlementTx: both });
    c.record(b, { escrowTx: both, settlementTx: settleB });
    expect(await c.verdicts(a.jobId, b.jobId)).toEqual([
      discrepancy("settlement.memo"),
      discrepancy("escrow.memo"),
    ]);
  });
});

describe("the pinned escrow vault closed and opened again between lock and release", () => {
  it("fails a settlement out of the escrow vault the attacker opened again at its address", async () => {
    const op = h.op;
    const mint = op.accounts.mint;
    // An escrow vault of this test's own (its keypair is the operator's), pinned by the profile.
    const escrow = op.createTokenAccount(op.escrowAuthority.address, mint, 10_000_000n);
    const c = await h.scenario({ ...localnetProfile, escrowVault: escrow });
    const plan = op.plan({ keyIndex: 1 });
    const escrowTx = op.send([
      op.transfer(plan.vault, escrow, plan.lock),
      op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    // One transaction naming no job: escrow is emptied into the attacker's account, closed,
    // created again at its address as the attacker's, and the money put back.
    const held = op.balance(escrow);
    const thief = op.attackerAccount(0n);
    const attacker = op.attacker.address;
    op.send([
      op.transfer(escrow, thief, held),
      op.closeAccount(escrow, op.payer.address),
      ...op.reopenIxs(escrow, mint, attacker).slice(1),
      op.transfer(thief, escrow, held, { authority: attacker }),
    ]);
    expect(op.balance(escrow)).toBe(held);
    const settlementTx = op.send([
      ...op.payoutIxs(plan, { from: escrow, authority: attacker }),
      op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
  });
});
