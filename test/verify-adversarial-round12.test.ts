import { describe, expect, it, onTestFinished } from "vitest";
import type { Profile } from "../src/verify/profiles.js";
import {
  AuthorityType,
  discrepancy,
  quickWindowProfile,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";

/**
 * Round 12: under a profile naming no escrow authority (the `decentral-mainnet` profile's shape:
 * its programs, vaults and escrow authority are not public), the operator spends a lock, or a
 * lock's release, by a delegate of the account it leaves.
 */

const h = useAdversaryHarness();

/** The mainnet profile's shape on the local chain: no escrow authority, no escrow vault. */
const mainnetShape: Profile = {
  ...quickWindowProfile,
  name: "mainnet-shape",
  escrowAuthority: null,
  escrowVault: null,
};

describe("a delegate of the credit vault signing a job's lock, under a profile naming no escrow authority", () => {
  it("fails escrow.source: the transfer's authority is not the vault's owner the token balances name", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    h.op.send([h.op.approve(plan.vault, h.op.attacker.address, plan.lock)]);
    const escrowTx = h.op.send(h.op.lockIxs(plan, { authority: h.op.attacker.address })).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
    expect(await c.check(plan.jobId, "escrow.source")).toMatchObject({
      outcome: "fail",
      expected: { vault: plan.vault, spentBy: h.op.escrowAuthority.address },
      actual: { vault: plan.vault, spentBy: h.op.attacker.address },
    });
  });

  it("still verifies the honest lock its owner signed", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    c.recordWithJobsApi(plan, txs);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });
});

describe("a delegate of the escrow account paying a job's settlement, under a profile naming no escrow authority", () => {
  it("fails escrow.vault: the release was signed by a key that is not the escrow account's owner", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    h.op.send([h.op.approve(h.op.accounts.escrowVault, h.op.attacker.address, plan.lock)]);
    const settlementTx = h.op.send(
      h.op.settleIxs(plan, { authority: h.op.attacker.address }),
    ).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
    expect(await c.check(plan.jobId, "escrow.vault")).toMatchObject({
      outcome: "fail",
      expected: { owner: h.op.escrowAuthority.address },
      actual: { spentBy: h.op.attacker.address, releasedBy: settlementTx },
    });
  });
});

describe("a pinned credit vault handed to the operator, under a profile naming no escrow authority", () => {
  it("fails escrow.source on a lock its new owner signed: the escrow account it went into has another owner", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(2);
    const plan = h.op.plan({ keyIndex: 2 });
    // In a transaction naming no job: the customer's vault is the operator's from now on.
    h.op.send([h.op.setAuthority(plan.vault, AuthorityType.AccountOwner, h.op.attacker.address)]);
    onTestFinished(() => h.op.giveBackVault(plan.vault));
    const escrowTx = h.op.send(h.op.lockIxs(plan, { authority: h.op.attacker.address })).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("escrow.source");
    expect(await c.check(plan.jobId, "escrow.source")).toMatchObject({
      outcome: "fail",
      actual: { vault: plan.vault, owner: h.op.attacker.address },
    });
  });
});
