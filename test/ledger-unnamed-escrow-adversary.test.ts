import { describe, expect, it } from "vitest";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { chainSecondAfter } from "./support/finality.js";
import { vaultStatementSince } from "./support/ledger-periods.js";
import { newJobId, useAdversaryHarness } from "./support/operator.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * Under a profile naming no escrow (the mainnet profile's shape) the ledger knows escrow by the
 * accounts a vault's debits under a job's escrow memo credited. The operator signs for the
 * vault: a debit to its own wallet under such a memo teaches the ledger that wallet, and the
 * wallet's money back under the job's settle memo then reads as escrow's return.
 */

const noEscrow: Profile = {
  ...localnetProfile,
  settlementWindowSeconds: 1,
  receiptTimeSkewSeconds: 1,
  escrowAuthority: null,
  escrowVault: null,
};

describe("a credit vault under a profile naming no escrow, paying the operator's wallet under a job's memo", () => {
  const h = useAdversaryHarness();

  it("lists each payout as an unreceipted debit, though the wallet sent one back under the job's settle memo, and the job is not verified", async () => {
    const c = await h.scenario(noEscrow);
    const from = await chainSecondAfter(h.world);
    const plan = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    const wallet = h.op.attackerAccount(0n);
    const taught = h.op.send([
      h.op.transfer(plan.vault, wallet, 300_000n),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    h.op.send([
      h.op.transfer(wallet, plan.vault, 300_000n, { authority: h.op.attacker.address }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]);
    // Now the wallet is escrow for the job: a later payout to it under the same memo.
    const later = h.op.send([
      h.op.transfer(plan.vault, wallet, 200_000n),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;

    const s = await vaultStatementSince(h, c, plan.vault, from);
    expect(s.unexplained.map((u) => [u.signature, u.amountUnits])).toEqual([
      [taught, -300_000n],
      [later, -200_000n],
    ]);
    expect(s.differenceUnits).toBe(0n);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual(
      expect.arrayContaining([taught, later]),
    );
    expect((await c.verdicts(plan.jobId))[0]?.failing).toContain("escrow.single");
  });

  it("lists a payout under the escrow memo of a job nobody recorded as an unreceipted debit, whatever comes back under its settle memo", async () => {
    const c = await h.scenario(noEscrow);
    const from = await chainSecondAfter(h.world);
    const vault = h.op.vault(2);
    const made = newJobId();
    const wallet = h.op.attackerAccount(0n);
    const taught = h.op.send([
      h.op.transfer(vault, wallet, 400_000n),
      h.op.memo(`decentral:escrow:${made}`),
    ]).signature;
    h.op.send([
      h.op.transfer(wallet, vault, 1n, { authority: h.op.attacker.address }),
      h.op.memo(`decentral:settle:${made}`),
    ]);

    const s = await vaultStatementSince(h, c, vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({
        finding: "unreceipted_debit",
        signature: taught,
        amountUnits: -400_000n,
        memoJobId: made,
      }),
    ]);
    expect(s.unexplainedOutUnits).toBe(400_000n);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("a lock kept by the operator, released by the customer's own money sent through escrow first", () => {
  const h = useAdversaryHarness();

  it.each([
    ["a profile naming no escrow", noEscrow],
    [
      "the localnet profile",
      {
        ...noEscrow,
        escrowAuthority: localnetProfile.escrowAuthority,
        escrowVault: localnetProfile.escrowVault,
      },
    ],
  ] as const)(
    "keeps the release with the job, whose lock or settlement then fails, under %s",
    async (_, profile) => {
      const c = await h.scenario(profile);
      const from = await chainSecondAfter(h.world);
      const plan = h.op.plan({ keyIndex: 3 });
      // Without a pinned escrow vault the lock goes to the operator's own account.
      const escrow = profile.escrowVault ?? h.op.attackerAccount(0n);
      const signer =
        profile.escrowVault === null ? h.op.attacker.address : h.op.escrowAuthority.address;
      const lock = h.op.send([
        h.op.transfer(plan.vault, escrow, plan.lock),
        h.op.memo(`decentral:escrow:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx: lock, settlementTx: null }, { stream: true });
      // The customer buys credits by paying escrow; escrow pays the vault under the job's settle
      // memo in a transaction of its own, which the vault's ledger alone cannot tell from a return.
      const wallet = h.op.createTokenAccount(h.op.attacker.address, h.op.accounts.mint, 1_000_000n);
      h.op.send([h.op.transfer(wallet, escrow, 1_000_000n, { authority: h.op.attacker.address })]);
      const release = h.op.send([
        h.op.transfer(escrow, plan.vault, 1_000_000n, { authority: signer }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;

      const s = await vaultStatementSince(h, c, plan.vault, from);
      expect(s.returnsUnits).toBe(1_000_000n);
      expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([release]);
      const [outcome] = await c.verdicts(plan.jobId);
      expect(outcome?.verdict).toBe("discrepancy");
      // With no escrow named the lock went into the operator's own account, whose owner is not
      // that of the customer's vault: the lock fails. Otherwise the settlement does.
      expect(outcome?.failing).toContain(
        profile.escrowVault === null ? "escrow.source" : "settlement.conserves_lock",
      );
    },
  );
});
