import { describe, expect, it } from "vitest";
import { summaryToMarkdown, summaryToText } from "../src/nightly/summary-format.js";
import {
  nightlyAfter,
  nightWithJob,
  paidOnceCounted,
  paidOnceNight,
  serveFinds,
} from "./support/nightly-window.js";
import { discrepancy, useAdversaryHarness } from "./support/operator.js";

/**
 * Round 20: a second payout out of escrow under the memo of a job of a window whose run has
 * passed, found by a run of an EARLIER window run after it (a night run again, or late, out of
 * order). The run's escrow scan reads up to now, finds the payout and sends the job back, but
 * the job was its own window's: the run neither judged nor named it, and with no `serve` it
 * stayed `pending`, named by no run, until its own window was run again. Now the run judges it
 * and names it (`laterJobs`), and fails; a job of a later window no run has counted yet is left
 * to that window's run, as before, so it is reported once.
 */

const h = useAdversaryHarness();

/** An empty window of the chain's clock before `before`: an earlier night to run again. */
const earlierWindow = (before: number) => ({ from: before - 3000, to: before - 1000 });

describe("a run of an earlier window, run after a later window's run", () => {
  it("judges and names a later window's job whose second payout its escrow scan finds", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { plan, from } = await paidOnceCounted(h, c, 1);
    h.op.send(h.op.settleIxs(plan));

    const again = await nightlyAfter(h, c, { vaults: [plan.vault], ...earlierWindow(from) });
    expect(again).toMatchObject({
      outcome: "discrepancies",
      exitCode: 1,
      total: 0,
      laterJobs: [
        {
          jobId: plan.jobId,
          verdict: "discrepancy",
          failingChecks: ["settlement.single"],
          foundBy: "escrow_scan",
        },
      ],
    });
    expect(again.earlierJobs).toBeUndefined();
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
    const text = summaryToText(again);
    expect(text).toContain(
      "0 jobs recorded in this window, and 1 jobs of later windows NOT verified (a payout out of escrow under their memo found after their run; their window's run had passed)",
    );
    expect(text).toContain(`${plan.jobId} (a later window's, sent back by the escrow scan)`);
    expect(summaryToMarkdown(again)).toContain("a later window's, sent back by the escrow scan");

    // Named once: the turn its judgement noted is done with, and the next night counts its own.
    const next = await nightWithJob(h, c, [plan.vault], 1);
    expect(next).toMatchObject({ outcome: "verified", exitCode: 0, total: 1 });
    expect(next.earlierJobs).toBeUndefined();
    expect(next.laterJobs).toBeUndefined();
  });

  it("names a later window's job serve turned after its run, when it is the first run to complete", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { plan, from } = await paidOnceCounted(h, c, 2);
    h.op.send(h.op.settleIxs(plan));
    // serve's escrow scan and verifier find the payout first.
    await serveFinds(h, c, plan.jobId);
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));

    const again = await nightlyAfter(h, c, { vaults: [plan.vault], ...earlierWindow(from) });
    expect(again).toMatchObject({
      outcome: "discrepancies",
      exitCode: 1,
      laterJobs: [{ jobId: plan.jobId, verdict: "discrepancy", foundBy: "judged_again" }],
    });
    expect(summaryToText(again)).toContain(
      "1 jobs of later windows NOT verified (judged again after their run; their window's run had passed)",
    );
  });

  it("leaves a later window's job to that window's run while no run has counted it", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { plan, from, to } = await paidOnceNight(h, c, 3);
    h.op.send(h.op.settleIxs(plan));

    const earlier = await nightlyAfter(h, c, { vaults: [plan.vault], ...earlierWindow(from) });
    expect(earlier).toMatchObject({ outcome: "no_jobs", exitCode: 0 });
    expect(earlier.laterJobs).toBeUndefined();
    // Its own window's run judges and counts it: reported once, by that run.
    const own = await nightlyAfter(h, c, { vaults: [plan.vault], from, to });
    expect(own).toMatchObject({
      outcome: "discrepancies",
      exitCode: 1,
      total: 1,
      findings: [
        { jobId: plan.jobId, verdict: "discrepancy", failingChecks: ["settlement.single"] },
      ],
    });
    expect(own.laterJobs).toBeUndefined();
    expect(own.earlierJobs).toBeUndefined();
  });

  it("leaves the job of a window no run counted to that window's run, though a later window's ran", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    // J's window, not run; a later window's run; then J's second payout.
    const { plan, from, to } = await paidOnceNight(h, c, 2);
    // (The key's vault holds an earlier case's lines no store of this one explains: findings.)
    const later = await nightWithJob(h, c, [plan.vault], 2);
    expect(later).toMatchObject({ reason: null, total: 1, byVerdict: { verified: 1 } });
    h.op.send(h.op.settleIxs(plan));

    const earlier = await nightlyAfter(h, c, { vaults: [plan.vault], ...earlierWindow(from) });
    expect(earlier.laterJobs).toBeUndefined();
    // Its own window's run, done late, names it: reported once.
    const own = await nightlyAfter(h, c, { vaults: [plan.vault], from, to });
    expect(own).toMatchObject({
      outcome: "discrepancies",
      findings: [
        { jobId: plan.jobId, verdict: "discrepancy", failingChecks: ["settlement.single"] },
      ],
    });
  });
});
