import { describe, expect, it, onTestFinished } from "vitest";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { rerunMigrationUpdates } from "./support/migration-rerun.js";
import {
  AuthorityType,
  discrepancy,
  timedOutReceipt,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";
import { ownerlessNode } from "./support/rewriting-node.js";
import { execSql } from "./support/store.js";

/**
 * Round 13: under a profile naming no escrow authority (the `decentral-mainnet` profile's shape),
 * the operator hands the customer's credit vault, or the escrow account holding a lock, to its
 * own key between the lock and its release, in a transaction naming no job: the remainder or
 * refund "back to the customer" lands in an account the operator alone may spend, or the lock is
 * paid out by the escrow account's new owner. And the upgrade: verdicts an older version wrote
 * clean on such a job, or on a lock or release a delegate signed (rounds 11 and 12), are judged
 * again.
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

describe("a node naming no owner in token balances, under a profile naming no escrow authority", () => {
  it("leaves a 504's refund into a vault handed away unproven (owner_unknown), not verified", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    handToAttacker(plan.vault);
    const refundTx = h.op.send(h.op.refundIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    await c.flush();
    // (A settlement fails settlement.worker_paid there: the worker is known by its owner.)
    const run = await c
      .verifierOver(ownerlessNode(h.rpc))
      .runUntilSettled({}, { timeoutMs: 20_000 });
    expect(run.status).toBe("completed");
    expect(await c.outcome(plan.jobId)).toEqual({ verdict: "partially_verified", failing: [] });
    expect(await c.check(plan.jobId, "escrow.source")).toMatchObject({ outcome: "skip" });
  });
});

describe("upgrading a deployment that verified jobs a delegate or a new owner paid", () => {
  it("judges again the clean verdicts whose stored transactions show one, and leaves the honest job", async () => {
    const c = await h.scenario(mainnetShape);
    const honest = await c.pinKey(1);
    // Round 11: a delegate of the vault signs the lock.
    const delegated = h.op.plan({ keyIndex: 1 });
    h.op.send([h.op.approve(delegated.vault, h.op.attacker.address, delegated.lock)]);
    const delegatedTxs = {
      escrowTx: h.op.send([
        h.op.transfer(delegated.vault, h.op.accounts.escrowVault, delegated.lock, {
          authority: h.op.attacker.address,
        }),
        h.op.memo(`decentral:escrow:${delegated.jobId}`),
      ]).signature,
      settlementTx: "",
    };
    delegatedTxs.settlementTx = h.op.send(h.op.settleIxs(delegated)).signature;
    c.record(delegated, delegatedTxs);
    // Round 12: a delegate of the escrow account pays the release.
    const released = h.op.plan({ keyIndex: 1 });
    const releasedTxs = { escrowTx: h.op.send(h.op.lockIxs(released)).signature, settlementTx: "" };
    h.op.send([h.op.approve(h.op.accounts.escrowVault, h.op.attacker.address, released.lock)]);
    releasedTxs.settlementTx = h.op.send(
      h.op.settleIxs(released, { authority: h.op.attacker.address }),
    ).signature;
    c.record(released, releasedTxs);
    // Round 13: the remainder goes back into the vault while the operator owns it.
    const returned = h.op.plan({ keyIndex: 1 });
    const returnedTxs = { escrowTx: h.op.send(h.op.lockIxs(returned)).signature, settlementTx: "" };
    h.op.send([
      h.op.setAuthority(returned.vault, AuthorityType.AccountOwner, h.op.attacker.address),
    ]);
    returnedTxs.settlementTx = h.op.send(h.op.settleIxs(returned)).signature;
    h.op.giveBackVault(returned.vault);
    c.record(returned, returnedTxs);
    const frauds = [delegated.jobId, released.jobId, returned.jobId];
    const judged = [
      discrepancy("escrow.source"),
      discrepancy("escrow.vault"),
      discrepancy("escrow.source"),
    ];
    expect(await c.verdicts(...frauds)).toEqual(judged);

    // As a version before these rules left them: verified, with the same stored transactions.
    for (const jobId of frauds) {
      await execSql(c.store, `UPDATE jobs SET verdict = 'verified' WHERE job_id = '${jobId}'`);
    }
    await rerunMigrationUpdates(c.store, "authority is not the owner its token balances name");
    expect(await Promise.all([honest.jobId, ...frauds].map((id) => c.outcome(id)))).toEqual([
      verified,
      ...frauds.map(() => ({ verdict: "pending", failing: expect.any(Array) })),
    ]);
    expect(await c.verdicts(honest.jobId, ...frauds)).toEqual([verified, ...judged]);
  });
});
