import { describe, expect, it } from "vitest";
import { buildStatement } from "../src/ledger/statement.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { chainSecondAfter } from "./support/finality.js";
import { vaultReader } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * Money into a credit vault is a job's return only for a recorded job. A debit under the escrow
 * memo of a job nobody recorded, then money back under its settle memo: the statement named a
 * return of a job that does not exist, instead of a deposit.
 */

const short = { settlementWindowSeconds: 1, receiptTimeSkewSeconds: 1 };
const noEscrow: Profile = {
  ...localnetProfile,
  ...short,
  escrowAuthority: null,
  escrowVault: null,
};

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  async function sync(c: Scenario, vault: string) {
    await c.flush();
    await h.finalized();
    await vaultReader(h, c, vault).syncVault(vault);
  }

  async function statementOf(c: Scenario, vault: string, from: number) {
    await sync(c, vault);
    const statement = await buildStatement(
      c.store,
      { from, to: Date.now() + 1_000, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    return statement.vaults[0]!;
  }

  it.each([
    { name: "a profile naming no escrow", profile: noEscrow, debitReadFirst: false },
    { name: "a profile naming no escrow", profile: noEscrow, debitReadFirst: true },
    {
      name: "the localnet profile",
      profile: { ...localnetProfile, ...short },
      debitReadFirst: true,
    },
  ])(
    "files money back under the settle memo of a job nobody recorded as a deposit, under $name (debit read first: $debitReadFirst)",
    async ({ profile, debitReadFirst }) => {
      const c = await h.scenario(profile);
      const from = await chainSecondAfter(h.world);
      const plan = h.op.plan({ keyIndex: 2 });
      // Without a pinned escrow vault the debit goes to the operator's own account.
      const escrow = profile.escrowVault ?? h.op.attackerAccount(0n);
      const signer =
        profile.escrowVault === null ? h.op.attacker.address : h.op.escrowAuthority.address;
      const debit = h.op.send([
        h.op.transfer(plan.vault, escrow, 400_000n),
        h.op.memo(`decentral:escrow:${plan.jobId}`),
      ]).signature;
      if (debitReadFirst) await sync(c, plan.vault);
      h.op.send([
        h.op.transfer(escrow, plan.vault, 1n, { authority: signer }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]);

      const s = await statementOf(c, plan.vault, from);
      expect([s.returnsUnits, s.depositsUnits]).toEqual([0n, 1n]);
      expect(s.unexplained.map((u) => [u.signature, u.amountUnits])).toEqual([[debit, -400_000n]]);
      expect(s.differenceUnits).toBe(0n);

      // Once a receipt names the debit as the job's lock, money back from escrow is its return.
      c.record(plan, { escrowTx: debit, settlementTx: null }, { stream: true });
      const later = await statementOf(c, plan.vault, from);
      expect([later.returnsUnits, later.depositsUnits]).toEqual([1n, 0n]);
      expect(later.differenceUnits).toBe(0n);
    },
  );
});
