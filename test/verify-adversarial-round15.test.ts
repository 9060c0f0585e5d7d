import { describe, expect, it, onTestFinished } from "vitest";
import { findingCount } from "../src/ledger/statement.js";
import { chainSecondAfter } from "./support/finality.js";
import { statementAfterWindow } from "./support/ledger-periods.js";
import {
  discrepancy,
  discrepancyIncluding,
  quickWindowProfile,
  timedOutReceipt,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";

/**
 * Round 15: memos padded with Unicode white space (which `parseJobMemos` trims) and memos sent
 * by the v1 Memo program, read alike by the verifier and the vault statement; a remainder or
 * refund "returned" to the credit vault that the same transaction passes on to the operator; a
 * second lock hidden under a padded copy of the job's memo; a refund that also tops up escrow.
 */

const h = useAdversaryHarness();

const MEMO_V1 = "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo";
const memoV1 = (text: string) => ({
  programId: MEMO_V1,
  accounts: [],
  data: new TextEncoder().encode(text),
});

describe("memos padded with white space the verifier trims", () => {
  it("verifies an honest job whose memos are wrapped in a BOM, an ideographic space and a newline, and the statement reads them as the job's", async () => {
    const c = await h.scenario(quickWindowProfile);
    const from = await chainSecondAfter(h.world);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send([
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, plan.lock),
      h.op.memo(`\uFEFF\u3000decentral:escrow:${plan.jobId}\n`),
    ]).signature;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan),
      h.op.memo(`\u00A0decentral:settle:${plan.jobId}\u2003`),
    ]).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    const s = await statementAfterWindow(h, c, plan.vault, from);
    expect(s.differenceUnits).toBe(0n);
    expect(findingCount(s)).toBe(0);
  });

  it("does not let a second lock under the job's escrow memo padded with a BOM pass unseen", async () => {
    const c = await h.scenario(quickWindowProfile);
    const from = await chainSecondAfter(h.world);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    const second = h.op.send([
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, plan.lock),
      h.op.memo(`\uFEFFdecentral:escrow:${plan.jobId}`),
    ]).signature;
    c.recordWithJobsApi(plan, txs);
    await c.verify();
    const s = await statementAfterWindow(h, c, plan.vault, from);
    // The second lock is never released: the statement must name it.
    expect(JSON.stringify(s, (_k, v) => (typeof v === "bigint" ? v.toString() : v))).toContain(
      second,
    );
    expect(findingCount(s)).toBeGreaterThan(0);
  });
});

describe("memos sent by the v1 Memo program", () => {
  it("verifies an honest job whose memos the v1 program carries", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send([
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, plan.lock),
      memoV1(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan),
      memoV1(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });

  it("fails settlement.memo on a settlement whose v1 memo also names another job's lock", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const other = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    // One transaction: the settlement of `plan` and, under a v1 memo, a lock of `other`
    // taken out of the remainder's way straight from the vault.
    const settlementTx = h.op.send([
      ...h.op.settleIxs(plan),
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, other.lock),
      memoV1(`decentral:escrow:${other.jobId}`),
    ]).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("settlement.memo");
  });
});

describe("money returned to the credit vault and passed on within the same transaction", () => {
  it("fails a settlement whose remainder the vault pays on to the operator at once", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send([
      ...h.op.settleIxs(plan),
      h.op.transfer(plan.vault, h.op.attackerAccount(0n), plan.remainder),
    ]).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
  });

  it("fails refund.complete on a 504 refund part of which the vault pays on to the operator", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refundTx = h.op.send([
      ...h.op.refundIxs(plan),
      h.op.transfer(plan.vault, h.op.attackerAccount(0n), plan.lock / 2n),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("refund.complete");
  });

  it("fails a 504 refund that puts the lock back and takes the same amount into escrow again", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    // Vault and escrow both net zero: no token balance moves at all.
    const refundTx = h.op.send([
      ...h.op.refundIxs(plan),
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, plan.lock),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("refund.complete");
  });

  it("fails a settlement whose remainder leaves the vault again as a second escrow lock in the same transaction", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    // The remainder goes back and out again into escrow: the vault's net is nothing, the
    // escrow vault's outflow is only the charge.
    const settlementTx = h.op.send([
      ...h.op.settleIxs(plan),
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, plan.remainder),
    ]).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancyIncluding("settlement.conserves_lock"),
    ]);
  });
});

describe("a settlement signature two receipts of one key both name", () => {
  it("never verifies both: one lock released once for two jobs", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const a = h.op.plan({ keyIndex: 1 });
    const b = { ...h.op.plan({ keyIndex: 1 }) };
    const escrowA = h.op.send(h.op.lockIxs(a)).signature;
    const escrowB = h.op.send(h.op.lockIxs(b)).signature;
    // One transaction pays both jobs' shares and remainders, one settle memo per job.
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(a),
      ...h.op.payoutIxs(b),
      h.op.memo(`decentral:settle:${a.jobId}`),
      h.op.memo(`decentral:settle:${b.jobId}`),
    ]).signature;
    c.recordWithJobsApi(a, { escrowTx: escrowA, settlementTx });
    c.recordWithJobsApi(b, { escrowTx: escrowB, settlementTx });
    const outcomes = await c.verdicts(a.jobId, b.jobId);
    expect(outcomes.filter((o) => o.verdict === "verified")).toHaveLength(0);
  });
});

describe("a memo naming the job twice", () => {
  it("verifies a lock whose escrow memo is sent twice, once padded", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send([
      ...h.op.lockIxs(plan),
      h.op.memo(` decentral:escrow:${plan.jobId} `),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });

  it("fails settlement.memo on a settlement that names the job's lock too and takes a second lock from the vault", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send([
      ...h.op.settleIxs(plan),
      h.op.transfer(plan.vault, h.op.accounts.escrowVault, plan.lock),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("settlement.memo");
  });
});

describe("a delegate of the credit vault set in one job's transaction, used later", () => {
  it("fails refund.instructions on the 504 refund that Approves the operator, and the statement lists the later debit", async () => {
    const c = await h.scenario(quickWindowProfile);
    const from = await chainSecondAfter(h.world);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refundTx = h.op.send([
      ...h.op.refundIxs(plan),
      h.op.approve(plan.vault, h.op.attacker.address, plan.lock),
    ]).signature;
    onTestFinished(() => {
      h.op.send([h.op.revoke(plan.vault)]);
    });
    const later = h.op.send([
      h.op.transfer(plan.vault, h.op.attackerAccount(0n), plan.lock, {
        authority: h.op.attacker.address,
      }),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, timedOutReceipt);
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("refund.instructions");
    const s = await statementAfterWindow(h, c, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ finding: "unreceipted_debit", signature: later }),
    ]);
  });

  it("lists the Approve of a later honest job's lock and the delegate's debit after it, though the job is a discrepancy", async () => {
    const c = await h.scenario(quickWindowProfile);
    const from = await chainSecondAfter(h.world);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    // ApproveChecked rather than Approve, inside the lock.
    const escrowTx = h.op.send([
      ...h.op.lockIxs(plan),
      h.op.approveChecked(plan.vault, h.op.attacker.address, 3_000n),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    const later = h.op.send([
      h.op.transfer(plan.vault, h.op.attackerAccount(0n), 3_000n, {
        authority: h.op.attacker.address,
      }),
    ]).signature;
    c.recordWithJobsApi(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.instructions")]);
    const s = await statementAfterWindow(h, c, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ finding: "unreceipted_debit", signature: later }),
    ]);
    expect(s.delegateApprovals.length).toBeGreaterThan(0);
  });
});
