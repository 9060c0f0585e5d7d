import { describe, expect, it } from "vitest";
import { buildStatement } from "../src/ledger/statement.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { chainSecondAfter } from "./support/finality.js";
import { vaultReader } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * In serve the proxy records a receipt once the answer has ended, so the ledger may read a
 * job's transactions before the job exists: a step the job does not name (a second lock under
 * its escrow memo, a refund before its settlement) found no job to be kept with then. Read
 * before or after the receipt, the job must end judged on that step, not verified.
 */

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** Reads the vault as the ledger round does. */
  async function sync(c: Scenario, vault: string) {
    await c.flush();
    await h.finalized();
    const reader = vaultReader(h, c, vault);
    await reader.syncVault(vault);
  }

  /** Reads the vault and builds its statement from `from` to now. */
  async function statementOf(c: Scenario, vault: string, from: number) {
    await sync(c, vault);
    const statement = await buildStatement(
      c.store,
      { from, to: Date.now() + 1_000, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    return statement.vaults[0]!;
  }

  /** The next whole second: the period of a statement holding only what follows. */
  const nextSecond = () => chainSecondAfter(h.world);

  it.each([
    ["before", true],
    ["after", false],
  ])("judges a second lock under the job's escrow memo, read %s the receipt", async (_, early) => {
    const c = await h.scenario();
    const from = await nextSecond();
    const plan = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(plan);
    const second = h.op.send(h.op.lockIxs(plan)).signature;
    if (early) await sync(c, plan.vault);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    await h.finalized();
    const failing = { verdict: "discrepancy", failing: ["escrow.single"] };
    // Read first, the job's first judgement sees the second lock.
    if (early) expect(await c.verdicts(plan.jobId)).toEqual([failing]);
    const s = await statementOf(c, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ finding: "unreceipted_debit", signature: second }),
    ]);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([second]);
    expect(await c.verdicts(plan.jobId)).toEqual([failing]);
  });

  it.each([
    ["before", true],
    ["after", false],
  ])("judges a refund the settlement then closed again, read %s the receipt", async (_, early) => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refund = h.op.send(h.op.refundIxs(plan)).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    if (early) await sync(c, plan.vault);
    c.record(plan, { escrowTx, settlementTx });
    c.honestJobsApi(plan, { escrowTx, settlementTx });
    await h.finalized();
    const failing = {
      verdict: "discrepancy",
      failing: ["jobs_api.matches_chain", "refund.not_settled"],
    };
    if (early) expect(await c.verdicts(plan.jobId)).toEqual([failing]);
    await sync(c, plan.vault);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([refund]);
    expect(await c.verdicts(plan.jobId)).toEqual([failing]);
  });

  it("keeps nothing with an honest job whose lock and settlement were read before its receipt", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(plan);
    await sync(c, plan.vault);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    await h.finalized();
    expect(await c.verdicts(plan.jobId)).toEqual([{ verdict: "verified", failing: [] }]);
    await sync(c, plan.vault);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toBeNull();
    expect(await c.verdicts(plan.jobId)).toEqual([{ verdict: "verified", failing: [] }]);
  });
});
