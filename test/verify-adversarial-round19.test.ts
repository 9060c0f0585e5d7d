import { describe, expect, it } from "vitest";
import { summaryToMarkdown, summaryToText } from "../src/nightly/summary-format.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import {
  nightlyAfter,
  nightStart,
  nightWithJob,
  paidOnceCounted,
  serveFinds,
  verifyJobs,
} from "./support/nightly-window.js";
import { discrepancy, type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * Round 19: a second payout out of escrow under the memo of a job an earlier nightly run counted
 * verified, found first by `serve`'s escrow scan (the job turns `discrepancy` under serve's
 * verifier), or by a run that did not complete: no nightly run reported it. The run whose own
 * scan finds such a payout names the job (round 16); the later ones count their own windows and
 * exited 0. Now the first run to complete after the job turned names it and fails, once.
 */

const h = useAdversaryHarness();

/** Night one: a streamed job whose lock is paid out once, counted verified. */
const nightOne = async (c: Scenario, keyIndex: number) =>
  (await paidOnceCounted(h, c, keyIndex)).plan;

describe("a second payout of an earlier window's job that serve's scan found first", () => {
  it("fails the next run to complete, which names the job once", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const plan = await nightOne(c, 2);
    h.op.send(h.op.settleIxs(plan));
    await serveFinds(h, c, plan.jobId);
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));

    const night2 = await nightWithJob(h, c, [plan.vault], 2);
    expect(night2).toMatchObject({
      outcome: "discrepancies",
      exitCode: 1,
      total: 1,
      earlierJobs: [
        {
          jobId: plan.jobId,
          verdict: "discrepancy",
          failingChecks: ["settlement.single"],
          foundBy: "judged_again",
        },
      ],
    });
    expect(night2.byVerdict.verified).toBe(1);
    const text = summaryToText(night2);
    expect(text).toContain("1 jobs of earlier windows NOT verified (judged again after their run)");
    expect(text).toContain(`${plan.jobId} (an earlier window's, judged again after its run)`);
    expect(summaryToMarkdown(night2)).toContain("judged again after its run");

    // Named once: the run after counts its own window.
    const night3 = await nightWithJob(h, c, [plan.vault], 2);
    expect(night3).toMatchObject({ outcome: "verified", exitCode: 0 });
    expect(night3.earlierJobs).toBeUndefined();
  });
});

describe("a second payout of an earlier window's job found by a run that did not complete", () => {
  it("is named by the next run that completes", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const plan = await nightOne(c, 3);
    h.op.send(h.op.settleIxs(plan));
    // Night two's scan sends the job back, then the run cannot finish (its ledger read fails).
    const from2 = await nightStart(h, c);
    const to2 = Math.ceil((h.op.now() + 1) / 1000) * 1000;
    const night2 = await nightlyAfter(h, c, {
      vaults: [plan.vault],
      from: from2,
      to: to2,
      afterRead: async () => {
        throw new Error("the RPC went away");
      },
    });
    expect(night2).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    expect((await c.outcome(plan.jobId)).verdict).not.toBe("verified");
    // serve's verifier judges it meanwhile.
    await verifyJobs(h, c, [plan.jobId]);
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));

    const night3 = await nightWithJob(h, c, [plan.vault], null);
    expect(night3).toMatchObject({
      outcome: "discrepancies",
      exitCode: 1,
      earlierJobs: [{ jobId: plan.jobId, verdict: "discrepancy", foundBy: "judged_again" }],
    });
    expect(summaryToText(night3)).toContain(
      "0 jobs recorded in this window, and 1 jobs of earlier windows NOT verified",
    );
  });
});

describe("a job turned from verified after its run, then sent back again before the next run", () => {
  it("is named by the first run to complete once it is judged again", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const plan = await nightOne(c, 1);
    h.op.send(h.op.settleIxs(plan));
    await serveFinds(h, c, plan.jobId);
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
    // Asked to be judged again by hand before the next run: that run judges it (sent back
    // before it began), from `discrepancy`, which notes no turn, and names the turn serve's
    // verifier found, once.
    await createJobQueueStore(c.store).reverify(plan.jobId, Date.now());
    const night2 = await nightWithJob(h, c, [plan.vault], 1);
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
    expect(night2).toMatchObject({
      exitCode: 1,
      earlierJobs: [{ jobId: plan.jobId, verdict: "discrepancy", foundBy: "judged_again" }],
      sentBackElsewhere: { judged: 1, changed: 0, left: 0 },
    });
    await verifyJobs(h, c, [plan.jobId]);
    const night3 = await nightWithJob(h, c, [plan.vault], 1);
    expect(night3).toMatchObject({ exitCode: 0 });
    expect(night3.earlierJobs).toBeUndefined();
  });
});
