import { describe, expect, it } from "vitest";
import { createLedgerReader } from "../src/ledger/reader.js";
import { createLogger } from "../src/log.js";
import { maxConflictSignatures } from "../src/store/receipt-rules.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { type JobPlan, type Scenario, useAdversaryHarness } from "./support/operator.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A job keeps at most `maxConflictSignatures` further signatures to follow. An operator who
 * fills them with harmless memo-only transactions (jobs API answers naming each as the
 * settlement, each dropped by the next, then an honest answer) must not get a second lock or
 * a refund before the settlement past the verifier: the ledger keeps the step with the job as
 * the mark that more were named than are followed, and the job is not verified.
 */

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** Fills the job's slots through jobs API answers, then reads the vault's ledger. */
  async function fillThenRead(
    c: Scenario,
    plan: JobPlan,
    txs: { escrowTx: string; settlementTx: string },
  ) {
    const junk = Array.from(
      { length: maxConflictSignatures },
      (_, i) => h.op.send([h.op.memo(`hello ${i} ${plan.jobId}`)]).signature,
    );
    c.record(plan, txs);
    c.jobsApiSettlements(plan, txs.escrowTx, junk);
    c.honestJobsApi(plan, txs);
    await c.flush();
    await h.finalized();
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual(junk);
    const reader = createLedgerReader({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log: createLogger({ level: "silent" }),
      custody: { vaults: [plan.vault], byKey: {} },
    });
    await reader.syncVault(plan.vault);
    return junk;
  }

  it("does not verify a job locked twice once its followed signatures are full", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(plan);
    const second = h.op.send(h.op.lockIxs(plan)).signature;
    const junk = await fillThenRead(c, plan, txs);

    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([...junk, second]);
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("signatures.explained");
  });

  it("does not verify a job refunded before its settlement once its followed signatures are full", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refund = h.op.send(h.op.refundIxs(plan)).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    const junk = await fillThenRead(c, plan, { escrowTx, settlementTx });

    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([...junk, refund]);
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("signatures.explained");
  });
});
