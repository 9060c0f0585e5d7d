import { describe, expect, it, vi } from "vitest";

/**
 * A job of a run's own window turned from verified by serve while the run reads its counts:
 * the counts saw it verified, so the run must not forget the note of its turn; the next run
 * names it. A hook runs once inside the run's read of its counts (after the window's counts).
 */
const hook: { fn: (() => Promise<void>) | null } = { fn: null };
vi.mock("../src/store/ops.js", async (importOriginal) => {
  const mod = await importOriginal<typeof import("../src/store/ops.js")>();
  return {
    ...mod,
    createOpsStore: (store: Parameters<typeof mod.createOpsStore>[0]) => {
      const ops = mod.createOpsStore(store);
      return {
        ...ops,
        async unprovenCounts(from: number, to: number) {
          const r = await ops.unprovenCounts(from, to);
          const f = hook.fn;
          hook.fn = null;
          if (f) await f();
          return r;
        },
      };
    },
  };
});

import { nightlyAfter, nightWithJob, paidOnceNight, serveFinds } from "./support/nightly-window.js";
import { discrepancy, useAdversaryHarness } from "./support/operator.js";

const h = useAdversaryHarness();

describe("a job of the run's own window turned by serve while the run reads its counts", () => {
  it("is named by the next run", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { plan, from, to } = await paidOnceNight(h, c, 2);
    // serve, meanwhile: a second payout, found by its scan, judged by its verifier.
    hook.fn = async () => {
      h.op.send(h.op.settleIxs(plan));
      await serveFinds(h, c, plan.jobId);
    };
    const night1 = await nightlyAfter(h, c, { vaults: [plan.vault], from, to });
    expect(hook.fn).toBeNull();
    // The run's counts saw it verified.
    expect(night1).toMatchObject({ exitCode: 0, byVerdict: { verified: 1 } });
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
    const night2 = await nightWithJob(h, c, [plan.vault], 2);
    expect(night2).toMatchObject({
      exitCode: 1,
      earlierJobs: [{ jobId: plan.jobId, verdict: "discrepancy", foundBy: "judged_again" }],
    });
  });
});
