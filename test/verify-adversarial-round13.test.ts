import { describe, expect, it, onTestFinished } from "vitest";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import {
  AuthorityType,
  discrepancy,
  timedOutReceipt,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";

/**
 * Round 13: under a profile naming no escrow authority (the `decentral-mainnet` profile's shape),
 * the operator hands the customer's credit vault, or the escrow account holding a lock, to its
 * own key between the lock and its release, in a transaction naming no job: the remainder or
 * refund "back to the customer" lands in an account the operator alone may spend, or the lock is
 * paid out by the escrow account's new owner.
 */

const h = useAdversaryHarness();

/** The mainnet profile's shape on the local chain: no escrow authority, no escrow vault. */
const mainnetShape: Profile = {
  ...localnetProfile,
  name: "mainnet-shape",
  escrowAuthority: null,
  escrowVault: null,
  settlementWindowSeconds: 1,
  receiptTimeSkewSeconds: 1,
};

/** Hands `account` to the attacker in a transaction naming no job, and back after the test. */
function handToAttacker(account: string) {
  h.op.send([h.op.setAuthority(account, AuthorityType.AccountOwner, h.op.attacker.address)]);
  onTestFinished(() => h.op.giveBackVault(account));
}

describe("a remainder returned to a credit vault handed to the operator after the lock", () => {
  it("fails escrow.source: the vault's owner after the settlement is not the one that owned it at the lock", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    handToAttacker(plan.vault);
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    c.honestJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
    expect(await c.check(plan.jobId, "escrow.source")).toMatchObject({
      outcome: "fail",
      expected: { returnedTo: plan.vault, owner: h.op.escrowAuthority.address },
      actual: {
        returnedTo: [
          { account: plan.vault, owner: h.op.attacker.address, amount: plan.remainder.toString() },
        ],
      },
    });
  });

  it("fails escrow.source on a 504's whole lock refunded into it", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    handToAttacker(plan.vault);
    const refundTx = h.op.send(h.op.refundIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("escrow.source");
    expect(await c.check(plan.jobId, "escrow.source")).toMatchObject({
      outcome: "fail",
      actual: {
        returnedTo: [
          { account: plan.vault, owner: h.op.attacker.address, amount: plan.lock.toString() },
        ],
      },
    });
  });

  it("still verifies the same job when the vault is handed back before the settlement", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    h.op.send([h.op.setAuthority(plan.vault, AuthorityType.AccountOwner, h.op.attacker.address)]);
    h.op.giveBackVault(plan.vault);
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    c.honestJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });
});

describe("an escrow account handed to the operator while it holds the lock", () => {
  it("fails escrow.vault on the release its new owner signed, paying exactly", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    handToAttacker(h.op.accounts.escrowVault);
    const settlementTx = h.op.send(
      h.op.settleIxs(plan, { authority: h.op.attacker.address }),
    ).signature;
    c.record(plan, { escrowTx, settlementTx });
    c.honestJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
    expect(await c.check(plan.jobId, "escrow.vault")).toMatchObject({
      outcome: "fail",
      expected: { vault: h.op.accounts.escrowVault, owner: h.op.escrowAuthority.address },
      actual: {
        vault: h.op.accounts.escrowVault,
        owner: h.op.attacker.address,
        releasedBy: settlementTx,
      },
    });
  });
});
