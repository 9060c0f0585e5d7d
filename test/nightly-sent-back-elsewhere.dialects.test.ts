import { describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { type NightlySummary, runNightlyVerification } from "../src/nightly/nightly-run.js";
import { summaryToText } from "../src/nightly/summary-format.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { nightWithJob, paidOnceCounted, serveFinds } from "./support/nightly-window.js";
import { discrepancy, type Scenario, useAdversaryHarness, verified } from "./support/operator.js";
import { quickVerifier } from "./support/quick-verifier.js";
import { execSql } from "./support/store.js";

/**
 * With only the nightly `verify` deployed (no `serve`), a job sent back to be judged again after
 * its window's run (a reverify, a profile's new rule, a conflicting receipt, a ledger line read
 * late) was judged by no run: each settles its own window, and that job's had passed. It stayed
 * `pending`, and every later run exited 0 without a word of it. A run now judges those sent back
 * before it began, after its own window, waiting for none of them.
 */
const log = createLogger({ level: "silent" });

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** The nightly run of [from, to) with the real verifier, its ledger not read. */
  const night = (c: Scenario, from: number, to: number): Promise<NightlySummary> =>
    runNightlyVerification(c.store, quickVerifier(c.store, h.rpc, log, { profile: c.profile }), {
      from,
      to,
      timeoutMs: 10_000,
      preflight: () => h.rpc.getSlot("finalized"),
    });

  /** An honest job counted verified by its night's run, then sent back by hand (a reverify). */
  async function verifiedThenSentBack(c: Scenario) {
    const plan = h.op.plan({ keyIndex: 0 });
    c.record(plan, h.op.honestJob(plan));
    await c.flush();
    await h.finalized();
    const t = Date.now();
    expect(await night(c, t - 3_600_000, t + 1_000)).toMatchObject({ exitCode: 0, total: 1 });
    expect(await c.outcome(plan.jobId)).toEqual(verified);
    await createJobQueueStore(c.store).reverify(plan.jobId, Date.now());
    return { jobId: plan.jobId, t };
  }

  it("judges a job of an earlier window sent back after its run, and says so once", async () => {
    const c = await h.scenario();
    const { jobId, t } = await verifiedThenSentBack(c);
    const next = await night(c, t + 1_000, t + 2_000);
    expect(await c.outcome(jobId)).toEqual(verified);
    expect(next).toMatchObject({
      exitCode: 0,
      outcome: "no_jobs",
      total: 0,
      sentBackElsewhere: { judged: 1, changed: 0, left: 0 },
    });
    expect(next.earlierJobs).toBeUndefined();
    expect(summaryToText(next)).toContain(
      "jobs of other windows sent back to be judged again before this run: 1 judged\n",
    );
    // Judged: the run after has none.
    const after = await night(c, t + 2_000, t + 3_000);
    expect(after.sentBackElsewhere).toBeUndefined();
  });

  it("leaves one another verifier holds, waiting for none, and exits as its window says", async () => {
    const c = await h.scenario();
    const { jobId, t } = await verifiedThenSentBack(c);
    // serve's verifier holds it (its lease renewed while its round waits on a slow node).
    await execSql(
      c.store,
      `UPDATE jobs SET lease_owner = 'verifier-serve', lease_until = ${Date.now() + 600_000} WHERE job_id = '${jobId}'`,
    );
    const next = await night(c, t + 1_000, t + 2_000);
    expect(next).toMatchObject({
      exitCode: 0,
      outcome: "no_jobs",
      reason: null,
      sentBackElsewhere: { judged: 0, changed: 0, left: 1 },
    });
    // Not the run's --timeout (10 s) waited out for it.
    expect(next.finishedAt - next.startedAt).toBeLessThan(3_000);
    expect((await c.outcome(jobId)).verdict).toBe("pending");
    expect(summaryToText(next)).toContain(
      "0 judged, 1 left for serve's verifier or the next run (leased by another verifier",
    );
  });

  /**
   * A job paid out twice after its night's run counted it verified (key `keyIndex`), found by
   * serve's scan and named by the next run, then sent back by hand: `pending`, from `discrepancy`.
   */
  async function knownDiscrepancySentBack(c: Scenario, keyIndex: number) {
    const { plan } = await paidOnceCounted(h, c, keyIndex);
    h.op.send(h.op.settleIxs(plan));
    await serveFinds(h, c, plan.jobId);
    expect(await nightWithJob(h, c, [plan.vault], keyIndex)).toMatchObject({
      exitCode: 1,
      earlierJobs: [{ jobId: plan.jobId, verdict: "discrepancy", foundBy: "judged_again" }],
    });
    await createJobQueueStore(c.store).reverify(plan.jobId, Date.now());
    return plan;
  }

  it("counts a known discrepancy judged the same again, and names it no more", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const plan = await knownDiscrepancySentBack(c, 1);
    const again = await nightWithJob(h, c, [plan.vault], 1);
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
    expect(again).toMatchObject({
      exitCode: 0,
      outcome: "verified",
      sentBackElsewhere: { judged: 1, changed: 0, left: 0 },
    });
    expect(again.earlierJobs).toBeUndefined();
  });

  it("names once a job judged to another failing verdict than the one it was sent back from", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const plan = await knownDiscrepancySentBack(c, 2);
    // Sent back from `unverifiable` (its transactions pruned from the node, say), not from
    // what it is judged now.
    await execSql(
      c.store,
      `UPDATE jobs SET previous_verdict = 'unverifiable' WHERE job_id = '${plan.jobId}'`,
    );
    const named = await nightWithJob(h, c, [plan.vault], 2);
    expect(named).toMatchObject({
      exitCode: 1,
      outcome: "discrepancies",
      earlierJobs: [
        {
          jobId: plan.jobId,
          verdict: "discrepancy",
          failingChecks: ["settlement.single"],
          foundBy: "sent_back",
        },
      ],
      sentBackElsewhere: { judged: 1, changed: 1, left: 0 },
    });
    expect(summaryToText(named)).toContain(
      `${plan.jobId} (an earlier window's, sent back to be judged again after its run, judged by this run): discrepancy (settlement.single)`,
    );
    const after = await nightWithJob(h, c, [plan.vault], 2);
    expect(after).toMatchObject({ exitCode: 0, outcome: "verified" });
    expect(after.earlierJobs).toBeUndefined();
    expect(after.sentBackElsewhere).toBeUndefined();
  });
});
