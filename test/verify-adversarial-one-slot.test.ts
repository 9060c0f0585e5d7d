import { describe, expect, it } from "vitest";
import type { InstructionSpec } from "../src/localnet/wire.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { chainSecondAfter } from "./support/finality.js";
import { vaultStatementSince } from "./support/ledger-periods.js";
import { discrepancy, useAdversaryHarness, verified } from "./support/operator.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * The operator splits one job's steps over transactions of one slot, or joins two steps in one
 * transaction, where the chain gives no order within the slot and the receipt names only the
 * transactions the operator chose.
 */

const h = useAdversaryHarness();

/**
 * Sends two transactions, signed beforehand, one after the other with the chain's clock held:
 * one slot holds both, however loaded the host. (Waiting for a slot's start and sending in its
 * first milliseconds, as before, missed the slot once in a run of four files at once.)
 */
function inOneSlot(first: InstructionSpec[], second: InstructionSpec[]) {
  const a = h.op.signOnly(first);
  const b = h.op.signOnly(second);
  return h.op.inOneSlot(() => [h.op.sendSigned(a), h.op.sendSigned(b)] as const);
}

const noEscrow: Profile = { ...localnetProfile, escrowAuthority: null, escrowVault: null };

describe("one job's lock split over two transactions of one slot", () => {
  it("keeps the part under the job's escrow memo that no receipt names with the job: escrow.single fails", async () => {
    const c = await h.scenario();
    const from = await chainSecondAfter(h.world);
    const plan = h.op.plan({ keyIndex: 3 });
    const [named, kept] = inOneSlot(h.op.lockIxs(plan), h.op.lockIxs(plan, { amount: 50_000n }));
    // Settled on the named part alone: escrow keeps the other.
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    expect(kept.slot).toBe(named.slot);
    const txs = { escrowTx: named.signature, settlementTx };
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);

    const s = await vaultStatementSince(h, c, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ finding: "unreceipted_debit", signature: kept.signature }),
    ]);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([kept.signature]);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.single")]);
  });

  it("lists the part sent with no memo as an unreceipted debit", async () => {
    const c = await h.scenario();
    const from = await chainSecondAfter(h.world);
    const plan = h.op.plan({ keyIndex: 3 });
    const [named, kept] = inOneSlot(h.op.lockIxs(plan), [
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, 50_000n),
    ]);
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    expect(kept.slot).toBe(named.slot);
    const txs = { escrowTx: named.signature, settlementTx };
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);

    const s = await vaultStatementSince(h, c, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({
        finding: "unreceipted_debit",
        signature: kept.signature,
        amountUnits: -50_000n,
      }),
    ]);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("a lock whose transaction also pays the charge out of escrow", () => {
  it.each([
    ["the localnet profile", localnetProfile],
    ["a profile naming no escrow", noEscrow],
  ] as const)(
    "fails escrow.vault, under %s, the settlement returning only the rest",
    async (_, profile) => {
      const c = await h.scenario(profile);
      const plan = h.op.plan({ keyIndex: 3 });
      const [workerPay, treasuryPay, rest] = h.op.payoutIxs(plan);
      const escrowTx = h.op.send([...h.op.lockIxs(plan), workerPay!, treasuryPay!]).signature;
      const settlementTx = h.op.send([
        rest!,
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      const [outcome] = await c.verdicts(plan.jobId);
      expect(outcome?.verdict).toBe("discrepancy");
      expect(outcome?.failing).toContain("escrow.vault");
    },
  );
});
