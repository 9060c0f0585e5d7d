import { describe, expect, it } from "vitest";
import { createEscrowScanner } from "../src/ledger/escrow-scan.js";
import { createLogger } from "../src/log.js";
import { recordReceipts } from "../src/recorder/receipts.js";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { chainTruth, moneyOf } from "./support/chain-truth.js";
import { periodEdge, statementAfterWindow } from "./support/ledger-periods.js";
import {
  discrepancy,
  type JobPlan,
  type PlanInput,
  quickWindowProfile,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * Round 22. One settlement paying two jobs (each its settle memo) is split among them: the job
 * owning it gives up the other's part, and the other takes it. A job took its part only where
 * it named the settlement as its settlement; the jobs API naming it as the job's escrow (it is
 * then read as the job's closing all the same, its memo being the job's settle memo) left the
 * part given up and taken by no job, or taken by a job whose owner kept it: the report's totals
 * read 120,000 charged where the chain moved 240,000, or 360,000.
 */

const hour = 3_600_000;
const h = useAdversaryHarness();

/** What the chain moved for one job paid as planned (its lock, its payout, its remainder). */
const paidInFull = (p: JobPlan) => ({
  escrowedUnits: p.lock,
  chargedUnits: p.charge,
  workerPaidUnits: p.workerShare,
  treasuryPaidUnits: p.treasuryShare,
  refundedUnits: p.remainder,
});

/**
 * A scenario on the chain's clock with keys 1 and 2 pinned, where its period starts, and a job
 * of each: `a` (key 1) first by id, so the owner of what both name, unless `aFirst` is false.
 */
async function twoKeysJobs(
  input: { profile?: Profile; a?: PlanInput; b?: PlanInput; aFirst?: boolean } = {},
) {
  const c = (await h.scenario(input.profile)).recordOnChainClock();
  await c.pinKey(1);
  await c.pinKey(2);
  const from = periodEdge(h);
  const a = h.op.plan({ ...input.a, keyIndex: 1 });
  const b = h.op.plan({ ...input.b, keyIndex: 2 });
  const aFirst = input.aFirst ?? true;
  a.jobId = `job_${aFirst ? "0" : "z"}${a.jobId.slice(5)}`;
  b.jobId = `job_${aFirst ? "z" : "0"}${b.jobId.slice(5)}`;
  return { c, from, a, b };
}

/** A report's money but its fees (the chain's fees are not a job's). */
const moneyButFees = (row: Parameters<typeof moneyOf>[0]) => {
  const { feesLamports: _, ...money } = moneyOf(row);
  return money;
};

/** What the chain moved in `signatures`, but fees. */
const chainButFees = (signatures: string[]) => {
  const { feesLamports: _, ...money } = chainTruth(h.op, signatures);
  return money;
};

describe("a settlement two jobs share, one of them naming it only as the jobs API's escrow", () => {
  it.each([
    ["the job owning it", true],
    ["the other job", false],
  ])("counts every unit once when that job is %s", async (_who, ownerNamesItAsEscrow) => {
    // a owns the settlement (first by id among the jobs its memos name).
    const { c, from, a, b } = await twoKeysJobs();
    const { escrowA, escrowB, shared } = h.op.sharedSettlement(a, b);
    const [byApi, byReceipt] = ownerNamesItAsEscrow ? [a, b] : [b, a];
    // A stream: its headers name its lock, the jobs API names the shared settlement as its escrow.
    const lockOf = (p: JobPlan) => (p === a ? escrowA : escrowB);
    c.record(byApi, { escrowTx: lockOf(byApi), settlementTx: null }, { stream: true });
    c.jobsApi(byApi.jobId, {
      status: "settled",
      credits_charged: Number(byApi.charge / 10_000n),
      worker_address: byApi.worker.address,
      on_chain: { escrow_tx: shared },
    });
    c.record(byReceipt, { escrowTx: lockOf(byReceipt), settlementTx: shared });
    await h.finalized();
    expect((await c.verdicts(a.jobId, b.jobId)).map((o) => o.verdict)).toEqual([
      discrepancy().verdict,
      discrepancy().verdict,
    ]);

    const r = await reconciliationReport(c.store, { from, to: h.op.now() + hour, groupBy: "key" });
    expect(moneyButFees(r.totals)).toEqual(chainButFees([escrowA, escrowB, shared]));
    const groups = Object.fromEntries(r.groups.map((g) => [g.group, moneyButFees(g)]));
    expect(groups).toEqual({ [a.fingerprint]: paidInFull(a), [b.fingerprint]: paidInFull(b) });
  });
});

/**
 * One lock transaction taking two jobs' locks (each its escrow memo) is split by place: the job
 * owning it gives up the other's transfer into escrow, which that job escrows. A job reading
 * the transaction as its closing (it carried the job's settle memo too, and the job named it
 * as its settlement) took no part: escrowed read 160,000 where the chain locked 320,000.
 */
describe("one lock for two jobs that one of them names as its settlement too", () => {
  it.each([
    ["the other job", false],
    ["the job owning it", true],
  ])("counts each lock once when that job is %s", async (_who, ownerCloses) => {
    const { c, from, a, b } = await twoKeysJobs();
    const closer = ownerCloses ? a : b;
    const lock = h.op.send([
      ...h.op.lockIxs(a),
      ...h.op.lockIxs(b),
      h.op.memo(`decentral:settle:${closer.jobId}`),
    ]).signature;
    const settleA = h.op.send(h.op.settleIxs(a)).signature;
    const settleB = h.op.send(h.op.settleIxs(b)).signature;
    const settlementOf = (p: JobPlan) => (p === a ? settleA : settleB);
    for (const p of [a, b]) {
      if (p === closer) {
        // Its headers name the lock for both steps; a second receipt names its settlement.
        c.record(p, { escrowTx: lock, settlementTx: lock });
        c.recordConflict(p, { escrowTx: lock, settlementTx: settlementOf(p) });
      } else c.record(p, { escrowTx: lock, settlementTx: settlementOf(p) });
    }
    await h.finalized();
    expect((await c.verdicts(a.jobId, b.jobId)).map((o) => o.verdict)).toEqual([
      "discrepancy",
      "discrepancy",
    ]);

    const r = await reconciliationReport(c.store, { from, to: h.op.now() + hour, groupBy: "key" });
    expect(moneyButFees(r.totals)).toEqual(chainButFees([lock, settleA, settleB]));
    const escrowed = Object.fromEntries(r.groups.map((g) => [g.group, moneyOf(g).escrowedUnits]));
    expect(escrowed).toEqual({ [a.fingerprint]: a.lock, [b.fingerprint]: b.lock });
  });
});

/**
 * A validator's signature listing names the memos of both memo programs, the v1 one too, and
 * the verifier reads both. The local chain listed the current program's alone, so a second
 * payout of a streamed job under a v1 settle memo passed the escrow scan by on it (the job
 * stayed verified), where on a validator's listing the scan finds it.
 */
describe("a second payout of a streamed job under a settle memo of the v1 Memo program", () => {
  it("is kept by the escrow scan, and the job fails settlement.single", async () => {
    const c = await h.scenario();
    const { plan, second } = c.streamedPaidTwice((p) => [
      {
        programId: "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo",
        accounts: [],
        data: new TextEncoder().encode(`decentral:settle:${p.jobId}`),
      },
    ]);
    await h.finalized();
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);

    const scanned = await createEscrowScanner({
      store: c.store,
      rpc: h.rpc,
      profile: localnetProfile,
      log: createLogger({ level: "silent" }),
      pageSize: 50,
    }).scanNew();
    expect(scanned.kept).toEqual([plan.jobId]);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([second]);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
  });
});

describe("a shared settlement's namer whose usage is filled in after the split was written", () => {
  // Two jobs of one worker with equal locks, each charged its whole lock; one settlement naming
  // both pays `a` alone. While `a`'s receipt names no usage, the split reads `b` as paid; `a`'s
  // usage filled in later (the same source sending its receipt again) tells `a` paid. Both must
  // be judged again on it: `b` judged on the old split kept its part, and the report charged
  // the settlement twice, `b`'s vault statement naming no lock though `b`'s was still in escrow.
  it.each([true, false])(
    "is judged again with the other namer (a first by id: %s)",
    async (aFirst) => {
      const { c, from, a, b } = await twoKeysJobs({
        profile: quickWindowProfile,
        a: { completionTokens: 2000 },
        b: { workerIndex: 0, completionTokens: 2000 },
        aFirst,
      });
      expect([a.lock, a.charge]).toEqual([b.lock, b.lock]);
      const txs = h.op.sharedSettlement(a, b, [a]);
      c.record(
        a,
        { escrowTx: txs.escrowA, settlementTx: txs.shared },
        { completionTokens: null, totalTokens: null },
      );
      c.record(b, { escrowTx: txs.escrowB, settlementTx: txs.shared });
      await h.finalized();
      await c.verify();
      const [filled] = await recordReceipts(
        c.store,
        [
          {
            jobId: a.jobId,
            escrowTx: txs.escrowA,
            settlementTx: txs.shared,
            worker: a.worker.address,
            creditsRemainingUnits: null,
            model: a.model,
            promptTokens: a.promptTokens,
            completionTokens: a.completionTokens,
            totalTokens: (a.promptTokens ?? 0) + a.completionTokens!,
            maxTokens: a.maxTokens,
            stream: false,
            httpStatus: 200,
            keyFingerprint: a.fingerprint,
          },
        ],
        "ingest",
        { now: h.op.now() },
      );
      expect(filled!.outcome).toBe("updated");
      await c.verify();
      const report = await reconciliationReport(c.store, {
        from,
        to: h.op.now() + hour,
        groupBy: "key",
      });
      expect(moneyButFees(report.totals)).toEqual(
        chainButFees([txs.escrowA, txs.escrowB, txs.shared]),
      );
      // `a` was paid: `b`'s lock is still in escrow, and its vault's statement names it. (With
      // `b` owning the settlement, equal charges leave the owner read as paid: Known limits.)
      if (!aFirst) return;
      const statement = await statementAfterWindow(h, c, b.vault, from);
      expect(statement.unreleasedLocks.map((l) => [l.jobId, l.outstandingUnits])).toEqual([
        [b.jobId, b.lock],
      ]);
    },
  );
});
