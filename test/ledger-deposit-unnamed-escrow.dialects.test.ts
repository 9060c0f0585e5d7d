import { describe, expect, it } from "vitest";
import { buildStatement } from "../src/ledger/statement.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { finalizedAfter, periodEdge, vaultReader } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * A profile naming neither the escrow vault nor the escrow authority (the shape of the
 * mainnet profile) knows escrow only by what the chain shows. Read against no escrow at all,
 * any money into a vault under a job's settle memo was that job's return: a wallet's top-up
 * released a lock the operator kept, and the statement's returns held money escrow never paid.
 */

const short = { settlementWindowSeconds: 1, receiptTimeSkewSeconds: 1 };
const profiles: [string, Profile][] = [
  [
    "a profile naming no escrow",
    { ...localnetProfile, ...short, escrowAuthority: null, escrowVault: null },
  ],
  ["the localnet profile", { ...localnetProfile, ...short }],
];

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** Reads the vault as the ledger round does. */
  async function sync(c: Scenario, vault: string) {
    await c.flush();
    await h.finalized();
    await vaultReader(h, c, vault).syncVault(vault);
  }

  async function statementOf(c: Scenario, vault: string, from: number) {
    await sync(c, vault);
    const statement = await buildStatement(
      c.store,
      { from, to: h.op.now() + 1_000, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    return statement.vaults[0]!;
  }

  it.each([
    [profiles[0]![0], "with its lock", profiles[0]![1], false],
    [profiles[0]![0], "after its lock", profiles[0]![1], true],
    [profiles[1]![0], "with its lock", profiles[1]![1], false],
  ] as const)(
    "reads a wallet's top-up under a job's settle memo as a deposit, under %s, read %s",
    async (_, _read, profile, lockReadFirst) => {
      const c = await h.scenario(profile);
      const from = periodEdge(h);
      // J locks and is never settled; a wallet tops the vault up under J's settle memo.
      const plan = h.op.plan({ keyIndex: 3 });
      const lock = h.op.send(h.op.lockIxs(plan)).signature;
      c.record(plan, { escrowTx: lock, settlementTx: null }, { stream: true });
      if (lockReadFirst) await sync(c, plan.vault);
      const owner = h.op.attacker.address;
      const wallet = h.op.createTokenAccount(owner, h.op.accounts.mint, 1_000_000n);
      h.op.send([
        h.op.transfer(wallet, plan.vault, 1_000_000n, { authority: owner }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]);
      await c.flush();
      await finalizedAfter(h, 2_000);

      const s = await statementOf(c, plan.vault, from);
      expect(s.depositsUnits).toBe(1_000_000n);
      expect(s.returnsUnits).toBe(0n);
      expect(s.unreleasedLocks).toEqual([
        expect.objectContaining({ jobId: plan.jobId, signature: lock, lockUnits: plan.lock }),
      ]);
      expect(s.differenceUnits).toBe(0n);
    },
  );

  it("reads an honest settlement's remainder as the job's return under a profile naming no escrow", async () => {
    const c = await h.scenario(profiles[0]![1]);
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 2 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    await c.flush();
    await finalizedAfter(h, 2_000);

    const s = await statementOf(c, plan.vault, from);
    expect(s.returnsUnits).toBe(plan.remainder);
    expect(s.depositsUnits).toBe(0n);
    expect(s.unreleasedLocks).toEqual([]);
    expect(s.unexplained).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
  });
});
