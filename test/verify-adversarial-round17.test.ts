import { describe, expect, it } from "vitest";
import { finalizedAfter, periodEdge } from "./support/ledger-periods.js";
import { nightlyOver } from "./support/nightly-window.js";
import {
  discrepancy,
  type JobPlan,
  type Scenario,
  useAdversaryHarness,
} from "./support/operator.js";

/**
 * Round 17: a second payout of an earlier window's job that the run's first read of the ledger
 * sent back, the run reading the ledger again for a receipt recorded while it ran (its credits
 * header left unjudged by the first read): the second read's scan keeps nothing new, and only its
 * result was looked at, so the run exited 0 with the job left pending.
 */

const h = useAdversaryHarness();

const wholeLockJob = (keyIndex: number): JobPlan => {
  const plan = h.op.plan({ keyIndex, maxTokens: 300, completionTokens: 300 });
  expect(plan.remainder).toBe(0n);
  return plan;
};

/** Night 1: a streamed job, settled once, judged verified; exit 0. */
async function nightOne(c: Scenario, keyIndex = 2) {
  const from1 = periodEdge(h);
  const plan = wholeLockJob(keyIndex);
  const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
  const first = h.op.send(h.op.settleIxs(plan)).signature;
  c.record(plan, { escrowTx, settlementTx: null }, { stream: true });
  c.honestJobsApi(plan, { escrowTx, settlementTx: first });
  await c.flush();
  const to1 = periodEdge(h);
  await finalizedAfter(h, 2_500);
  const summary = await nightlyOver(h, c, {
    vaults: [plan.vault],
    from: from1,
    to: to1,
    timeoutMs: 60_000,
    now: () => h.op.now(),
  });
  expect(summary).toMatchObject({ exitCode: 0 });
  expect((await c.outcome(plan.jobId)).verdict).toBe("verified");
  return plan;
}

describe("a second payout of an earlier window's job, found by a run's first read of the ledger", () => {
  it("is judged and fails the run even when the run reads the ledger a second time (a receipt recorded during the run)", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const plan = await nightOne(c);

    // Night 2: the same lock paid out again under the job's settle memo.
    const from2 = periodEdge(h);
    h.op.send(h.op.settleIxs(plan));
    const pin = await c.pinKey(1);
    // An honest job of the window, its receipt written while the run goes on (a stream the
    // operator's proxy holds open past the window's end; or ingest's backlog).
    const late = h.op.plan({ keyIndex: 1 });
    const to2 = periodEdge(h);
    await finalizedAfter(h, 2_500);

    const summary = await nightlyOver(h, c, {
      vaults: [plan.vault, pin.vault],
      from: from2,
      to: to2,
      timeoutMs: 60_000,
      now: () => h.op.now(),
      afterRead: async (n) => {
        if (n !== 1) return;
        // The operator runs the job now and dates its completion's `created` in the window.
        const lateTxs = h.op.honestJob(late);
        c.record(late, lateTxs, { createdAt: to2 - 1_000 } as never, "ingest", h.op.now());
        c.honestJobsApi(late, lateTxs);
        await c.flush();
        h.op.advanceClock(3_000);
        await finalizedAfter(h, 2_500);
      },
    });
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
    expect(summary.reads).toBe(2);
    expect(summary.exitCode).toBe(1);
    expect(summary.earlierJobs).toEqual([
      expect.objectContaining({ jobId: plan.jobId, verdict: "discrepancy" }),
    ]);
  });
});
