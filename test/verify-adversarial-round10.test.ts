import { describe, expect, it } from "vitest";
import { recordReceipts } from "../src/recorder/receipts.js";
import type { Profile } from "../src/verify/profiles.js";
import { chainSecondAfter } from "./support/finality.js";
import { statementAfterWindow } from "./support/ledger-periods.js";
import {
  discrepancy,
  discrepancyIncluding,
  type JobPlan,
  quickWindowProfile,
  timedOutReceipt,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";

/**
 * Round 10: the operator spends one step twice, names a job by a memo that only looks like
 * its id, answers a second key's request under a job id it already used, or pays the worker's
 * share where only the treasury or the customer's own wallet holds it.
 */

const h = useAdversaryHarness();

const ZWSP = "\u200b";

describe("a lock and its settlement in one transaction, the worker paid again by the settlement named", () => {
  it("fails escrow.memo: the lock's transaction names the job's settlement too", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const both = h.op.send([...h.op.lockIxs(plan), ...h.op.settleIxs(plan)]).signature;
    const again = h.op.send(h.op.settleIxs(plan, {})).signature;
    c.record(plan, { escrowTx: both, settlementTx: again });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancyIncluding("escrow.memo")]);
  });
});

describe("memos that name the job by a look-alike id", () => {
  it("fails escrow.memo on a lock whose memo ends in a zero-width space", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send([
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, plan.lock),
      h.op.memo(`decentral:escrow:${plan.jobId}${ZWSP}`),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancyIncluding("escrow.memo")]);
  });

  it("fails escrow.memo on a lock with a second memo instruction naming the look-alike", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send([
      ...h.op.lockIxs(plan),
      h.op.memo(`decentral:escrow:${plan.jobId}${ZWSP}`),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.memo")]);
  });

  it("lists a debit under the look-alike's escrow memo as an unreceipted debit", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const from = await chainSecondAfter(h.world);
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    c.recordWithJobsApi(plan, txs);
    const wallet = h.op.attackerAccount(0n);
    const theft = h.op.send([
      h.op.transfer(plan.vault, wallet, 30_000n),
      h.op.memo(`decentral:escrow:${plan.jobId}${ZWSP}`),
    ]).signature;
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    const s = await statementAfterWindow(h, c, plan.vault, from);
    expect(s.unexplained.map((u) => [u.finding, u.signature, u.amountUnits])).toEqual([
      ["unreceipted_debit", theft, -30_000n],
    ]);
  });
});

describe("a job id a second key's response uses again", () => {
  it("fails the first job's escrow.single: the second key's vault was locked under its id", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    await c.pinKey(2);
    const first = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(first);
    c.recordWithJobsApi(first, txs);
    expect(await c.verdicts(first.jobId)).toEqual([verified]);

    const second: JobPlan = { ...h.op.plan({ keyIndex: 2 }), jobId: first.jobId };
    const again = h.op.honestJob(second);
    await c.flush();
    const [result] = await recordReceipts(c.store, [receiptOf(second, again)], "ingest");
    expect(result?.outcome).toBe("conflict");
    expect(await c.verdicts(first.jobId)).toEqual([discrepancyIncluding("escrow.single")]);
  });
});

describe("a settlement paying the worker's share where the worker does not hold it", () => {
  it("fails settlement.worker_paid when the share goes to the treasury's own account", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send(
      h.op.settleIxs(plan, { workerAccount: h.op.accounts.treasury.tokenAccount }),
    ).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancyIncluding("settlement.worker_paid")]);
  });

  it("fails refund.complete on a 504 refund into an account of the customer's own wallet", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const userAccount = h.op.createTokenAccount(h.op.accounts.creditVaults[1]!.wallet);
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refundTx = h.op.send(h.op.refundIxs(plan, userAccount)).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancyIncluding("refund.complete")]);
  });
});

describe("a job id a second key's response uses again, naming the first job's signatures", () => {
  it("keeps the second key's lock under that id with the first job once its vault is read: escrow.single fails", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    await c.pinKey(2);
    const first = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(first);
    c.recordWithJobsApi(first, txs);
    expect(await c.verdicts(first.jobId)).toEqual([verified]);

    const from = await chainSecondAfter(h.world);
    // Key 2's customer is charged under the first job's id; its answer's headers name the
    // first job's lock and settlement, so its receipt brings no signature of its own.
    const second: JobPlan = { ...h.op.plan({ keyIndex: 2 }), jobId: first.jobId };
    const again = h.op.honestJob(second);
    await c.flush();
    const [result] = await recordReceipts(c.store, [receiptOf(second, txs)], "ingest");
    expect(result?.outcome).toBe("conflict");
    expect(await c.verdicts(first.jobId)).toEqual([verified]);

    const s = await statementAfterWindow(h, c, second.vault, from);
    expect(s.unexplained.map((u) => [u.finding, u.signature, u.amountUnits])).toEqual([
      ["unreceipted_debit", again.escrowTx, -second.lock],
    ]);
    expect(await c.verdicts(first.jobId)).toEqual([
      discrepancy("escrow.single", "settlement.single"),
    ]);
  });
});

describe("an old settlement named again as a new job's settlement", () => {
  it("fails the new job's signatures.unique, and its lock is never released", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const from = await chainSecondAfter(h.world);
    const old = h.op.plan({ keyIndex: 1 });
    const oldTxs = h.op.honestJob(old);
    c.record(old, oldTxs);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx: oldTxs.settlementTx });
    const [kept, replayed] = await c.verdicts(old.jobId, plan.jobId);
    expect(kept).toEqual(verified);
    expect(replayed?.verdict).toBe("discrepancy");
    expect(replayed?.failing).toContain("signatures.unique");

    const s = await statementAfterWindow(h, c, plan.vault, from);
    expect(s.unreleasedLocks).toEqual([
      expect.objectContaining({ jobId: plan.jobId, outstandingUnits: plan.lock }),
    ]);
  });
});

/** The receipt a second answer under `plan`'s job id would leave, naming `txs`. */
function receiptOf(plan: JobPlan, txs: { escrowTx: string; settlementTx: string }) {
  return {
    jobId: plan.jobId,
    escrowTx: txs.escrowTx,
    settlementTx: txs.settlementTx,
    worker: plan.worker.address,
    creditsRemainingUnits: h.op.balance(plan.vault),
    model: plan.requestedModel,
    responseModel: plan.model,
    promptTokens: plan.promptTokens,
    completionTokens: plan.completionTokens,
    totalTokens: (plan.promptTokens ?? 0) + (plan.completionTokens ?? 0),
    maxTokens: plan.maxTokens,
    stream: false,
    httpStatus: 200,
    keyFingerprint: plan.fingerprint,
  };
}

describe("hidden tokens claimed for a model the profile says has none", () => {
  /** `llama-3.3-70b` marked as billing no tokens its answer does not hold. */
  const plain: Profile = {
    ...quickWindowProfile,
    pricing: {
      ...quickWindowProfile.pricing,
      "llama-3.3-70b": { ...quickWindowProfile.pricing["llama-3.3-70b"]!, hiddenTokens: false },
    },
  };
  /** A proxied answer of `bytes` whose usage names 2,000 completion tokens and `hidden`. */
  const answered = (bytes: number, hidden: Record<string, number> = {}) => ({
    completionTokens: 2000,
    promptTokens: 12,
    totalTokens: 2012,
    answerBytes: bytes,
    ...hidden,
  });

  it("fails usage.consistent on reasoning or rejected prediction tokens lifting the bound of a three-byte answer", async () => {
    const c = await h.scenario(plain);
    await c.pinKey(1);
    const jobs: string[] = [];
    const claims: Record<string, number>[] = [
      { reasoningTokens: 1997 },
      { rejectedPredictionTokens: 1997 },
    ];
    for (const hidden of claims) {
      const plan = h.op.plan({ keyIndex: 1, model: "llama-3.3-70b", completionTokens: 2000 });
      jobs.push(c.record(plan, h.op.honestJob(plan), answered(3, hidden), "proxy"));
    }
    // Every token of an honest answer is in its bytes, and a model not marked may reason.
    const honest = h.op.plan({ keyIndex: 1, model: "llama-3.3-70b", completionTokens: 2000 });
    c.record(honest, h.op.honestJob(honest), answered(8_000, { reasoningTokens: 0 }), "proxy");
    const reasoner = h.op.plan({ keyIndex: 1, model: "qwen3-8b", completionTokens: 2000 });
    c.record(reasoner, h.op.honestJob(reasoner), answered(3, { reasoningTokens: 1997 }), "proxy");
    expect(await c.verdicts(...jobs, honest.jobId, reasoner.jobId)).toEqual([
      discrepancy("usage.consistent"),
      discrepancy("usage.consistent"),
      verified,
      verified,
    ]);
    expect(await c.check(jobs[0]!, "usage.consistent")).toMatchObject({
      outcome: "fail",
      expected: { reasoningTokens: 0, rejectedPredictionTokens: 0 },
      actual: { completionTokens: 2000, answerBytes: 3, reasoningTokens: 1997 },
    });
  });
});
