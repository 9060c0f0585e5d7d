import { describe, expect, it } from "vitest";
import { createQuorumRpc } from "../src/chain/quorum.js";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { createLogger } from "../src/log.js";
import {
  type NightlyOptions,
  type NightlySummary,
  runNightlyVerification,
} from "../src/nightly/nightly-run.js";
import { summaryToText } from "../src/nightly/summary-format.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import type { VerifierRpc } from "../src/verify/engine.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { nightWithJob, paidOnceCounted, serveFinds } from "./support/nightly-window.js";
import { discrepancy, type Scenario, useAdversaryHarness, verified } from "./support/operator.js";
import { quickVerifier } from "./support/quick-verifier.js";
import { readJob } from "./support/seed-recorder.js";
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

  /** The nightly run of [from, to) with the real verifier over `rpc`, its ledger not read. */
  const night = (
    c: Scenario,
    from: number,
    to: number,
    { rpc = h.rpc, ...options }: Partial<NightlyOptions> & { rpc?: VerifierRpc } = {},
  ): Promise<NightlySummary> =>
    runNightlyVerification(c.store, quickVerifier(c.store, rpc, log, { profile: c.profile }), {
      from,
      to,
      timeoutMs: 10_000,
      preflight: () => rpc.getSlot("finalized"),
      ...options,
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

  /**
   * `n` honest jobs, recorded in turn (each dated after the one before), each sent back by hand
   * from `verified` as if judged so before: the verdict is written here, so their transactions
   * are fetched when they are judged again. Pending, due at 0, `previous_verdict` verified.
   */
  async function sentBackUnfetched(c: Scenario, n: number) {
    const sent: { jobId: string; signatures: string[] }[] = [];
    for (let i = 0; i < n; i++) {
      const plan = h.op.plan({ keyIndex: 0 });
      const txs = h.op.honestJob(plan);
      c.record(plan, txs);
      await c.flush();
      await new Promise((r) => setTimeout(r, 5));
      sent.push({ jobId: plan.jobId, signatures: [txs.escrowTx, txs.settlementTx] });
    }
    await h.finalized();
    const ids = sent.map((j) => `'${j.jobId}'`).join(", ");
    await execSql(
      c.store,
      `UPDATE jobs SET verdict = 'verified', verdict_at = ${Date.now()} WHERE job_id IN (${ids})`,
    );
    for (const j of sent) await createJobQueueStore(c.store).reverify(j.jobId, Date.now());
    return sent;
  }

  /**
   * RPC_QUORUM=2 over the harness's node and one serving the transactions of `forged` with a
   * fee one lamport more: the jobs naming them stay in `rpc_disagreement`, which no run judges.
   */
  const disagreeingOn = (forged: ReadonlySet<string>) =>
    createQuorumRpc({
      members: [
        { name: "honest", rpc: { ...h.rpc, async close() {} } },
        {
          name: "forger",
          rpc: {
            ...h.rpc,
            async getTransaction(signature, commitment, options) {
              const served = await h.rpc.getTransaction(signature, commitment, options);
              if (served === null || !forged.has(signature)) return served;
              return { ...served, facts: { ...served.facts, fee: served.facts.fee + 1n } };
            },
            async close() {},
          } satisfies RpcPool,
        },
      ],
      quorum: 2,
      log,
    });

  // A run reads 1,000 of them (here 2). Taken by age alone, the oldest, the same each run: 1,000
  // jobs in `rpc_disagreement` (a node serving their transactions otherwise) held every place of
  // every run, and 200 newer ones were never judged, on two nights running.
  it("takes the jobs it tried and could not judge behind those not tried since", async () => {
    const c = await h.scenario();
    const [stuckA, stuckB] = await sentBackUnfetched(c, 2);
    const [newer] = await sentBackUnfetched(c, 1);
    const stuck = [stuckA!, stuckB!];
    const t = Date.now();
    const rpc = disagreeingOn(new Set(stuck.flatMap((j) => j.signatures)));
    const bound = { rpc, sentBack: { jobs: 2 } };
    const first = await night(c, t + 1_000, t + 2_000, bound);
    expect(first).toMatchObject({
      exitCode: 0,
      outcome: "no_jobs",
      sentBackElsewhere: { judged: 0, changed: 0, left: 3 },
    });
    for (const j of stuck) expect((await c.outcome(j.jobId)).verdict).toBe("rpc_disagreement");
    // Past the run's bound: not taken, not tried.
    expect(await readJob(c.store, newer!.jobId)).toMatchObject({
      verdict: "pending",
      verifyAttempts: 0,
      nextVerifyAt: 0,
    });
    const second = await night(c, t + 2_000, t + 3_000, bound);
    expect(second.sentBackElsewhere).toEqual({ judged: 1, changed: 0, left: 2 });
    expect(await c.outcome(newer!.jobId)).toEqual(verified);
    for (const j of stuck) expect((await c.outcome(j.jobId)).verdict).toBe("rpc_disagreement");
  });

  /** `h.rpc`, its fetches of `held` answered only when the round asking gives up on them. */
  const holdingFetches = (held: ReadonlySet<string>, aborted: string[]): VerifierRpc => ({
    ...h.rpc,
    getTransaction(signature, commitment, options) {
      if (!held.has(signature)) return h.rpc.getTransaction(signature, commitment, options);
      return new Promise((_, reject) => {
        const timer = setTimeout(() => reject(new Error("held past the test")), 20_000);
        const stop = () => {
          clearTimeout(timer);
          aborted.push(signature);
          reject(new Error("the round gave up"));
        };
        if (options?.signal?.aborted) stop();
        else options?.signal?.addEventListener("abort", stop, { once: true });
      });
    },
  });

  it("stops taking them past its share of the time, and says how many it left", async () => {
    const c = await h.scenario();
    const sent = await sentBackUnfetched(c, 2);
    const aborted: string[] = [];
    const rpc = holdingFetches(new Set(sent.flatMap((j) => j.signatures)), aborted);
    /** A run that gave up on both held fetches, left both, and ended within `ms`. */
    const leftBoth = (night: NightlySummary, ms: number) => {
      expect(night).toMatchObject({
        exitCode: 0,
        reason: null,
        sentBackElsewhere: { judged: 0, changed: 0, left: 2 },
      });
      expect(night.finishedAt - night.startedAt).toBeLessThan(ms);
      expect(aborted.splice(0).length).toBeGreaterThan(0);
    };
    const t = Date.now();
    // Half the time its own window left it: about 2 s of a --timeout of 4 s.
    leftBoth(await night(c, t + 1_000, t + 2_000, { rpc, timeoutMs: 4_000 }), 3_000);
    // At most its bound (`SENT_BACK_MS`, here 0.3 s), however long the run may take: half of
    // the 10 s would be 5 s.
    const capped = await night(c, t + 2_000, t + 3_000, { rpc, sentBack: { ms: 300 } });
    leftBoth(capped, 2_500);
    expect(summaryToText(capped)).toContain(
      "0 judged, 2 left for serve's verifier or the next run",
    );
    for (const j of sent) expect((await c.outcome(j.jobId)).verdict).toBe("pending");
  });
});
