import { describe, expect, it } from "vitest";
import { createLedgerReader } from "../src/ledger/reader.js";
import { buildStatement } from "../src/ledger/statement.js";
import { createLogger } from "../src/log.js";
import { reportsStore } from "../src/store/reports.js";
import { createVerifier } from "../src/verify/engine.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

/**
 * The operator is the local mint's authority: it can mint more into a credit vault than any
 * store column holds (2^63 and beyond, a u64 of another mint), lock it and settle honestly.
 * That one job must be decided on its own, never `verified`, and neither the verifier's other
 * jobs nor the ledger's reading of the vault may wait on it.
 */

const huge = 2n ** 63n + 7n;

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /**
   * Twelve honest jobs of key `keyIndex`, and after the fourth one whose lock is 2^63 + 7 base
   * units, minted into the vault just before and settled honestly; the remainder is then burnt,
   * leaving the vault's balance as before, so the later jobs' lines are within reach.
   */
  async function hugeAmongHonest(keyIndex: number) {
    const { op } = h;
    const c = await h.scenario();
    const honest: string[] = [];
    let big = "";
    for (let i = 0; i < 12; i++) {
      const plan = op.plan({ keyIndex });
      honest.push(c.record(plan, op.honestJob(plan), { creditsRemainingUnits: null }));
      if (i === 3) {
        const plan = op.plan({ keyIndex });
        op.fund(plan.vault, huge);
        const escrowTx = op.send(op.lockIxs(plan, { amount: huge })).signature;
        const settlementTx = op.send([
          ...op.payoutIxs(plan, { remainder: huge - plan.charge }),
          op.memo(`decentral:settle:${plan.jobId}`),
        ]).signature;
        big = c.record(plan, { escrowTx, settlementTx }, { creditsRemainingUnits: null });
        op.send([op.burn(plan.vault, huge - plan.charge)]);
      }
    }
    await c.flush();
    return { c, honest, big, vault: op.plan({ keyIndex }).vault };
  }

  it("decides a job whose lock no column holds as unverifiable, naming the amount, and verifies the jobs beside it", async () => {
    const { c, honest, big } = await hugeAmongHonest(1);
    const verifier = createVerifier({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log: createLogger({ level: "silent" }),
      options: quickVerifierOptions,
    });
    const summary = await verifier.runUntilSettled({}, { timeoutMs: 20_000 });
    expect(summary).toMatchObject({ status: "completed", final: summary.total });
    for (const jobId of honest) {
      expect(await c.outcome(jobId), jobId).toMatchObject({ failing: [] });
      expect(["verified", "partially_verified"]).toContain((await c.outcome(jobId)).verdict);
    }
    expect(await c.outcome(big)).toEqual({ verdict: "unverifiable", failing: [] });
    const storable = await c.check(big, "amounts.storable");
    expect(storable?.outcome).toBe("skip");
    expect(storable?.reason).toContain(`escrowedUnits ${huge}`);
    const rows = await reportsStore(c.store).auditRows(big);
    expect(rows?.job).toMatchObject({ escrowedUnits: null, chargedUnits: null });
  });

  it("reads a vault past the lines whose amounts no column holds, naming them, and goes on", async () => {
    const { c, honest, vault } = await hugeAmongHonest(2);
    await h.finalized();
    const warnings: string[] = [];
    const reader = createLedgerReader({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log: createLogger({ level: "warn" }, { write: (line: string) => warnings.push(line) }),
      custody: { vaults: [vault], byKey: {} },
    });
    const from = Date.now() - 3_600_000;
    const first = await reader.syncVault(vault);
    // The mint, the lock, the settlement's return and the burn: four unread lines.
    expect(first.pending).toBe(4);
    // The first of them: the mint, whose balance after is the vault's balance plus 2^63 + 7.
    expect(warnings.join("\n")).toMatch(/not read: its amount 9223\d{15} is beyond/);
    const statement = await buildStatement(
      c.store,
      { from, to: Date.now() + 1_000, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    const own = statement.vaults[0]!;
    expect(own.complete).toBe(false);
    expect(own.counts.pending).toBe(4);
    // Every honest job's lock, before the huge lines and after them, is read as a lock.
    expect(own.counts.locks).toBe(honest.length);
  });

  it("reads a vault past a transaction whose transfers out of it sum past what a column holds", async () => {
    // The vault's balance never leaves what a column holds, but 2^62 + 1 leaves it twice and
    // comes back twice in one transaction: what left beyond its net debit (2^63 + 2, a payout
    // its money in hid) no column holds. Written with the line, it failed the vault's whole
    // read, at the same line every round: no line after it was read, the honest job's lock
    // after it neither.
    const { op } = h;
    const c = await h.scenario();
    const plan = op.plan({ keyIndex: 3 });
    c.record(plan, op.honestJob(plan), { creditsRemainingUnits: null });
    const half = 2n ** 62n + 1n;
    const attacker = op.attackerAccount(half);
    const back = op.transfer(attacker, plan.vault, half, { authority: op.attacker.address });
    const out = op.transfer(plan.vault, attacker, half);
    op.send([back, out, back, out]);
    const after = op.plan({ keyIndex: 3 });
    c.record(after, op.honestJob(after), { creditsRemainingUnits: null });
    await c.flush();
    await h.finalized();
    const warnings: string[] = [];
    const reader = createLedgerReader({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log: createLogger({ level: "warn" }, { write: (line: string) => warnings.push(line) }),
      custody: { vaults: [plan.vault], byKey: {} },
    });
    const from = Date.now() - 3_600_000;
    const sync = await reader.syncVault(plan.vault);
    expect(sync.pending).toBe(1);
    expect(warnings.join("\n")).toMatch(/not read: its amount 9223372036854775810 is beyond/);
    const own = (
      await buildStatement(
        c.store,
        { from, to: Date.now() + 1_000, vault: plan.vault },
        { profile: c.profile, graceSeconds: 0 },
      )
    ).vaults[0]!;
    expect(own.complete).toBe(false);
    expect(own.counts.pending).toBe(1);
    expect(own.counts.locks).toBe(2);
  });
});
