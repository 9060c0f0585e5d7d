import { describe, expect, it, onTestFinished } from "vitest";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { chainSecondAfter } from "./support/finality.js";
import { vaultStatementSince } from "./support/ledger-periods.js";
import { rerunMigrationUpdates } from "./support/migration-rerun.js";
import {
  AuthorityType,
  discrepancy,
  type JobPlan,
  timedOutReceipt,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";
import { readProfilePins } from "./support/seed-verdicts.js";
import { execSql } from "./support/store.js";

/**
 * Round 14: under a profile naming no escrow authority and no escrow vault (the
 * `decentral-mainnet` profile's shape), the operator builds, for each check, the transaction
 * that passes it while moving money out of the customer's credit vault: both the vault and a
 * fresh escrow account handed to its own key before the lock, extra instructions beside the
 * lock or settlement, a worker account that is not the header worker's, a payout split into
 * many small transfers, a close of the escrow account, a memo naming another step, a refund
 * to another account.
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
function handToAttacker(account: string): string {
  const { signature } = h.op.send([
    h.op.setAuthority(account, AuthorityType.AccountOwner, h.op.attacker.address),
  ]);
  onTestFinished(() => h.op.giveBackVault(account));
  return signature;
}

/** A per-job escrow account owned by the escrow authority, as a profile pinning none takes. */
const freshEscrow = () => h.op.createTokenAccount(h.op.escrowAuthority.address);

/** The lock of `plan` into `escrow`, signed by `authority` (the escrow authority by default). */
function lockInto(plan: JobPlan, escrow: string, authority?: string) {
  return h.op.send([
    h.op.transfer(plan.vault, escrow, plan.lock, { authority }),
    h.op.memo(`decentral:escrow:${plan.jobId}`),
  ]).signature;
}

/**
 * The known hole's job: `plan`'s vault handed to the operator's key, then locked into a fresh
 * escrow account that key owns and settled out of it, every amount honest. Returns the
 * handover, the escrow account and the job's two signatures.
 */
function lockBetweenOwnAccounts(plan: JobPlan) {
  const handover = handToAttacker(plan.vault);
  const escrow = h.op.createTokenAccount(h.op.attacker.address);
  const escrowTx = lockInto(plan, escrow, h.op.attacker.address);
  const settlementTx = h.op.send(
    h.op.settleIxs(plan, { from: escrow, authority: h.op.attacker.address }),
  ).signature;
  return { handover, escrow, escrowTx, settlementTx };
}

describe("a credit vault and a fresh escrow account both handed to the operator before the lock", () => {
  it("fails escrow.source and escrow.vault: neither is owned by the owner every credit vault had", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const { escrow, escrowTx, settlementTx } = lockBetweenOwnAccounts(plan);
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    // Two accounts handed away, two findings: each is its owner's to spend alone.
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source", "escrow.vault")]);
    expect(await c.check(plan.jobId, "escrow.source")).toMatchObject({
      outcome: "fail",
      actual: { vault: plan.vault, owner: h.op.attacker.address },
    });
    expect(await c.check(plan.jobId, "escrow.vault")).toMatchObject({
      outcome: "fail",
      expected: { owner: h.op.escrowAuthority.address },
      actual: { vault: escrow, owner: h.op.attacker.address },
    });
  });

  it("fails escrow.source on a key's first lock too, once another key's lock showed the owner", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 2 });
    const { escrowTx, settlementTx } = lockBetweenOwnAccounts(plan);
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source", "escrow.vault")]);
  });

  it("never verifies both of two first locks judged at once, one from a vault handed away", async () => {
    const c = await h.scenario(mainnetShape);
    const honest = h.op.plan({ keyIndex: 1 });
    const escrow = freshEscrow();
    const honestTxs = {
      escrowTx: lockInto(honest, escrow),
      settlementTx: h.op.send(h.op.settleIxs(honest, { from: escrow })).signature,
    };
    c.recordWithJobsApi(honest, honestTxs);
    const fraud = h.op.plan({ keyIndex: 2 });
    c.recordWithJobsApi(fraud, lockBetweenOwnAccounts(fraud));
    // Whichever is written first shows the owner of every credit vault; the other, judged on
    // pins read before, is decided again against it.
    const outcomes = await c.verdicts(honest.jobId, fraud.jobId);
    expect(outcomes.filter((o) => o.verdict === "verified")).toHaveLength(1);
    expect(outcomes.find((o) => o.verdict !== "verified")).toEqual(
      discrepancy("escrow.source", "escrow.vault"),
    );
  });

  it("still verifies honest jobs of several keys into fresh escrow accounts", async () => {
    const c = await h.scenario(mainnetShape);
    const plans = [1, 2, 3].map((keyIndex) => h.op.plan({ keyIndex }));
    for (const plan of plans) {
      const escrow = freshEscrow();
      const escrowTx = lockInto(plan, escrow);
      const settlementTx = h.op.send(h.op.settleIxs(plan, { from: escrow })).signature;
      c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    }
    expect(await c.verdicts(...plans.map((p) => p.jobId))).toEqual(plans.map(() => verified));
  });
});

describe("upgrading a deployment that verified a lock between two accounts handed to the operator", () => {
  it("pins the owner of the earliest clean lock and judges again the clean verdicts of another", async () => {
    const c = await h.scenario(mainnetShape);
    const honest = await c.pinKey(1);
    const fraud = h.op.plan({ keyIndex: 1 });
    c.recordWithJobsApi(fraud, lockBetweenOwnAccounts(fraud));
    const judged = discrepancy("escrow.source", "escrow.vault");
    expect(await c.verdicts(fraud.jobId)).toEqual([judged]);

    // As a version before the rule left them: no owner pinned, the fraud verified.
    await execSql(c.store, `UPDATE jobs SET verdict = 'verified' WHERE job_id = '${fraud.jobId}'`);
    await execSql(c.store, "DELETE FROM profile_pins WHERE name = 'escrow_authority'");
    await rerunMigrationUpdates(c.store, "rejudge_lock_owner");
    expect(await readProfilePins(c.store)).toEqual([
      {
        profile: mainnetShape.name,
        name: "escrow_authority",
        value: h.op.escrowAuthority.address,
        evidence: 1,
      },
    ]);
    expect([await c.outcome(honest.jobId), await c.outcome(fraud.jobId)]).toEqual([
      verified,
      { verdict: "pending", failing: expect.any(Array) },
    ]);
    expect(await c.verdicts(honest.jobId, fraud.jobId)).toEqual([verified, judged]);
  });
});

describe("the statement of a credit vault handed to the operator, under a profile naming no escrow authority", () => {
  it("names the SetAuthority and the lines after it, once a lock showed the vaults' owner", async () => {
    const c = await h.scenario(mainnetShape);
    const from = await chainSecondAfter(h.world);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const { handover, escrowTx, settlementTx } = lockBetweenOwnAccounts(plan);
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    await c.verify();

    const s = await vaultStatementSince(h, c, plan.vault, from);
    // Every line sums: only the owner tells the vault is the operator's to spend.
    expect(s.differenceUnits).toBe(0n);
    const owned = (signature: string) =>
      expect.objectContaining({
        finding: "vault_owner_changed",
        signature,
        owner: h.op.attacker.address,
      });
    expect(s.ownerChanges).toEqual([
      owned(handover),
      owned(escrowTx),
      owned(settlementTx),
      expect.objectContaining({ finding: "vault_owner_now", owner: h.op.attacker.address }),
    ]);
  });
});

describe("a second debit of the vault beside an honest job, under the job's settle memo", () => {
  it("is an unreceipted debit of the statement, and the job read with it fails settlement.single", async () => {
    const c = await h.scenario(mainnetShape);
    const from = await chainSecondAfter(h.world);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrow = freshEscrow();
    const escrowTx = lockInto(plan, escrow);
    const settlementTx = h.op.send(h.op.settleIxs(plan, { from: escrow })).signature;
    // Right after the settlement, named by no receipt and no jobs API answer.
    const second = h.op.send([
      h.op.transfer(plan.vault, h.op.attackerAccount(0n), 7_000n),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);

    const s = await vaultStatementSince(h, c, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ finding: "unreceipted_debit", signature: second }),
    ]);
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("settlement.single");
  });
});

describe("each check of a job, passed while money leaves the vault", () => {
  it("escrow.vault: the lock's escrow account pays part of it on to the operator in the same transaction", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrow = freshEscrow();
    const attacker = h.op.attackerAccount(0n);
    const escrowTx = h.op.send([
      h.op.transfer(plan.vault, escrow, plan.lock + 5_000n),
      h.op.transfer(escrow, attacker, 5_000n),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan, { from: escrow })).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
  });

  it("escrow.instructions: an Approve and the delegate's transfer out of the vault beside the lock", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrow = freshEscrow();
    const attacker = h.op.attackerAccount(0n);
    const escrowTx = h.op.send([
      h.op.transfer(plan.vault, escrow, plan.lock),
      h.op.approve(plan.vault, h.op.attacker.address, 5_000n),
      h.op.transfer(plan.vault, attacker, 5_000n, { authority: h.op.attacker.address }),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan, { from: escrow })).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.instructions")]);
  });

  it("settlement.worker_paid: the worker's share to the operator's own account, not the header worker's", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrow = freshEscrow();
    const escrowTx = lockInto(plan, escrow);
    const settlementTx = h.op.send(
      h.op.settleIxs(plan, { from: escrow, workerAccount: h.op.attackerAccount(0n) }),
    ).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("settlement.worker_paid");
  });

  it("settlement.recipients: the treasury's share split into many small transfers, one to the operator", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrow = freshEscrow();
    const escrowTx = lockInto(plan, escrow);
    const piece = plan.treasuryShare / 6n;
    const pieces = Array.from({ length: 5 }, () =>
      h.op.transfer(escrow, h.op.accounts.treasury.tokenAccount, piece),
    );
    const settlementTx = h.op.send([
      h.op.transfer(escrow, plan.worker.tokenAccount, plan.workerShare),
      ...pieces,
      h.op.transfer(escrow, h.op.attackerAccount(0n), plan.treasuryShare - 5n * piece),
      h.op.transfer(escrow, plan.vault, plan.remainder),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("settlement.recipients");
  });

  it("settlement.instructions: the escrow account closed to the operator once paid out", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrow = freshEscrow();
    const escrowTx = lockInto(plan, escrow);
    const settlementTx = h.op.send([
      ...h.op.settleIxs(plan, { from: escrow }),
      h.op.closeAccount(escrow, h.op.attacker.address),
    ]).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.instructions")]);
  });

  it("settlement.balances: the worker paid, and the operator paid from another account beside it", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrow = freshEscrow();
    const escrowTx = lockInto(plan, escrow);
    const other = h.op.victimVault(50_000n);
    const settlementTx = h.op.send([
      ...h.op.settleIxs(plan, { from: escrow }),
      h.op.transfer(other, h.op.attackerAccount(0n), 50_000n),
    ]).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.balances")]);
  });

  it("escrow.memo: the lock names the job's settlement, not its lock", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrow = freshEscrow();
    const escrowTx = h.op.send([
      h.op.transfer(plan.vault, escrow, plan.lock),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan, { from: escrow })).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("escrow.memo");
  });

  it("escrow.source: a 504's refund into another account the vaults' owner holds", async () => {
    const c = await h.scenario(mainnetShape);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrow = freshEscrow();
    const escrowTx = lockInto(plan, escrow);
    const elsewhere = h.op.victimVault(0n);
    const refundTx = h.op.send([
      h.op.transfer(escrow, elsewhere, plan.lock),
      h.op.memo(`decentral:refund:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("escrow.source");
  });
});
