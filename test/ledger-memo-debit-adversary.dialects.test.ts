import { describe, expect, it } from "vitest";
import { dialects, useDialectStores } from "./support/dialects.js";
import { periodEdge, vaultStatementSince } from "./support/ledger-periods.js";
import {
  discrepancy,
  type JobPlan,
  type Scenario,
  timedOutReceipt,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";
import { readJob } from "./support/seed-recorder.js";
import { execSql } from "./support/store.js";

/**
 * No step of a job takes money out of a credit vault but its lock: a settlement or a refund pays
 * out of escrow. The operator signs for the vault, and sends the customer's credits to escrow
 * under the job's own settle or refund memo after an honest job. The statement lists the debit;
 * the job whose memo it carries must be judged on it too, not stay `verified`, read before or
 * after its receipt.
 */

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** Reads the vault as the ledger round does and builds its statement from `from` to now. */
  const statementOf = (c: Scenario, vault: string, from: number) =>
    vaultStatementSince(h, c, vault, from);

  it.each([
    ["before", true],
    ["after", false],
  ])(
    "judges a debit of the vault under the job's settle memo, read %s the receipt",
    async (_, early) => {
      const c = (await h.scenario()).recordOnChainClock();
      const from = periodEdge(h);
      const plan = h.op.plan({ keyIndex: 3 });
      const txs = h.op.honestJob(plan);
      const debit = h.op.send([
        h.op.transfer(plan.vault, h.op.accounts.escrowVault, 50_000n),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      if (early) await statementOf(c, plan.vault, from);
      c.record(plan, txs);
      c.honestJobsApi(plan, txs);
      await h.finalized();
      const failing = { verdict: "discrepancy", failing: ["settlement.single"] };
      if (early) expect(await c.verdicts(plan.jobId)).toEqual([failing]);
      const s = await statementOf(c, plan.vault, from);
      expect(s.unexplained).toEqual([
        expect.objectContaining({ finding: "unreceipted_debit", signature: debit }),
      ]);
      expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([debit]);
      expect(await c.verdicts(plan.jobId)).toEqual([failing]);
    },
  );

  it("judges a debit of the vault under a refunded job's refund memo", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refundTx = h.op.send(h.op.refundIxs(plan)).signature;
    const debit = h.op.send([
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, 50_000n),
      h.op.memo(`decentral:refund:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    c.jobsApi(plan.jobId, {
      status: "refunded",
      credits_charged: 0,
      worker_address: plan.worker.address,
      on_chain: { escrow_tx: escrowTx, settlement_tx: refundTx },
    });
    await h.finalized();
    expect(await c.verdicts(plan.jobId)).toEqual([{ verdict: "verified", failing: [] }]);
    const s = await statementOf(c, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ finding: "unreceipted_debit", signature: debit }),
    ]);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([debit]);
    expect(await c.verdicts(plan.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["refund.single"] },
    ]);
  });

  /** An honest settled job of `keyIndex`, recorded with its jobs-API answer. */
  function honestRecorded(c: Scenario, keyIndex: number) {
    const plan = h.op.plan({ keyIndex });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    return { plan, txs };
  }

  /** A debit of `vault` to `to` (escrow by default) under `memos`, one memo instruction each. */
  const debitUnder = (vault: string, memos: string[], to = h.op.accounts.escrowVault) =>
    h.op.send([h.op.transfer(vault, to, 50_000n), ...memos.map((m) => h.op.memo(m))]).signature;

  /** The statement lists `debit` as an unreceipted debit, and the job fails `settlement.single`. */
  async function expectJudgedOnDebit(c: Scenario, plan: JobPlan, from: number, debit: string) {
    const s = await statementOf(c, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ finding: "unreceipted_debit", signature: debit }),
    ]);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
  }

  it.each([
    ["another customer's job", "other"],
    ["a job nobody recorded", "ghost"],
    ["a job nobody recorded, as its escrow", "ghostEscrow"],
    ["no job at all", "note"],
  ])(
    "judges a debit under the job's settle memo named after %s, read before the receipt",
    async (_, first) => {
      const c = (await h.scenario()).recordOnChainClock();
      const from = periodEdge(h);
      const other = honestRecorded(c, 2).plan.jobId;
      const plan = h.op.plan({ keyIndex: 3 });
      const txs = h.op.honestJob(plan);
      const before = {
        other: `decentral:settle:${other}`,
        ghost: "decentral:settle:job_nobody_recorded",
        ghostEscrow: "decentral:escrow:job_nobody_recorded",
        note: "thanks",
      }[first]!;
      const debit = debitUnder(plan.vault, [before, `decentral:settle:${plan.jobId}`]);
      await statementOf(c, plan.vault, from);
      c.record(plan, txs);
      c.honestJobsApi(plan, txs);
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
      await expectJudgedOnDebit(c, plan, from, debit);
    },
  );

  it.each([
    ["another customer's job", "other"],
    ["a job nobody recorded", "ghost"],
  ])(
    "judges a debit under the job's settle memo named after %s, read after the receipt",
    async (_, first) => {
      const c = (await h.scenario()).recordOnChainClock();
      const from = periodEdge(h);
      const other = honestRecorded(c, 2).plan.jobId;
      const { plan } = honestRecorded(c, 3);
      const before =
        first === "other" ? `decentral:settle:${other}` : "decentral:settle:job_nobody_recorded";
      const debit = debitUnder(plan.vault, [before, `decentral:settle:${plan.jobId}`]);
      await h.finalized();
      expect(await c.verdicts(plan.jobId)).toEqual([verified]);
      await expectJudgedOnDebit(c, plan, from, debit);
    },
  );

  it("judges again a job already final whose settle memo a later debit carries", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const { plan } = honestRecorded(c, 3);
    await statementOf(c, plan.vault, from);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    const debit = debitUnder(plan.vault, [`decentral:settle:${plan.jobId}`]);
    await expectJudgedOnDebit(c, plan, from, debit);
  });

  it("judges a debit to the operator's wallet under the job's settle memo", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const { plan } = honestRecorded(c, 3);
    const debit = debitUnder(
      plan.vault,
      [`decentral:settle:${plan.jobId}`],
      h.op.attackerAccount(0n),
    );
    await expectJudgedOnDebit(c, plan, from, debit);
  });

  it.each([
    ["less than the remainder it sends back", -1n],
    ["more than the remainder it sends back", 1n],
  ])("fails a settlement that also takes from the vault %s", async (_, side) => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const taken = plan.remainder + side * 10_000n;
    const settlementTx = h.op.send([
      ...h.op.settleIxs(plan),
      h.op.transfer(plan.vault, h.op.attackerAccount(0n), taken),
    ]).signature;
    const txs = { escrowTx, settlementTx };
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    const s = await statementOf(c, plan.vault, from);
    // A payout the remainder back hides is listed at its whole amount.
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: settlementTx, amountUnits: -taken }),
    ]);
    const failing = await c.verdicts(plan.jobId);
    expect(failing).toEqual([
      expect.objectContaining({
        verdict: "discrepancy",
        failing: expect.arrayContaining(["settlement.recipients", "settlement.split"]),
      }),
    ]);
  });

  it("fails a refund that also takes from the vault", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refundTx = h.op.send([
      ...h.op.refundIxs(plan),
      h.op.transfer(plan.vault, h.op.attackerAccount(0n), 50_000n),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    c.jobsApi(plan.jobId, {
      status: "refunded",
      credits_charged: 0,
      worker_address: plan.worker.address,
      on_chain: { escrow_tx: escrowTx, settlement_tx: refundTx },
    });
    const s = await statementOf(c, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: refundTx, amountUnits: -50_000n }),
    ]);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("refund.complete")]);
  });

  // The lock of another job of the customer also pays the operator under the job's settle memo:
  // that lock fails `escrow.memo`, and the statement lists the line among its mixed memos.
  it("fails the lock a debit under the job's settle memo rides on", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const { plan } = honestRecorded(c, 3);
    const next = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send([
      ...h.op.lockIxs(next),
      h.op.transfer(plan.vault, h.op.attackerAccount(0n), 50_000n),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(next)).signature;
    c.record(next, { escrowTx, settlementTx });
    c.honestJobsApi(next, { escrowTx, settlementTx });
    const s = await statementOf(c, plan.vault, from);
    const outcomes = await c.verdicts(plan.jobId, next.jobId);
    expect(outcomes).toEqual([verified, discrepancy("escrow.memo")]);
    expect(s.mixedMemos).toEqual([
      expect.objectContaining({ signature: escrowTx, kind: "lock", jobId: next.jobId }),
    ]);
  });

  // Before lines under a settle or refund memo were filed under its job, the ledger stored such
  // a debit `unexplained` under no job, and the job stayed `verified`: the next ledger round
  // files it under the job and judges the job again.
  it("files a debit stored under no job by the ledger before, and judges the job again", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const { plan } = honestRecorded(c, 3);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    const debit = debitUnder(plan.vault, [`decentral:settle:${plan.jobId}`]);
    await statementOf(c, plan.vault, from);
    await execSql(c.store, `UPDATE ledger_lines SET job_id = NULL WHERE signature = '${debit}'`);
    await execSql(
      c.store,
      `UPDATE jobs SET conflict_signatures = NULL WHERE job_id = '${plan.jobId}'`,
    );
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    const s = await statementOf(c, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ finding: "unreceipted_debit", signature: debit }),
    ]);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([debit]);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
  });
});
