import { describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { type NightlySummary, runNightlyVerification } from "../src/nightly/nightly-run.js";
import { createOpsStore } from "../src/store/ops.js";
import { createVerificationRunStore } from "../src/store/verification-runs.js";
import { createVerifier, type Verifier } from "../src/verify/engine.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { finalizedAfter, periodEdge } from "./support/ledger-periods.js";
import {
  type AdversaryHarness,
  type JobPlan,
  type Scenario,
  useAdversaryHarness,
} from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

/**
 * A job dated in night N and recorded after N's end (an import, ingest's late write) but before
 * N's run was counted by N (by its date) and again by N+1 (recorded in it, dated before it): a
 * finance reader summing the nightly reports saw it twice. Each job is counted by one window of
 * any that follow each other: the first run that counts it claims it.
 */
const log = createLogger({ level: "silent" });

/** A job whose money moved in the window, its receipt not written yet. */
interface Unwritten {
  plan: JobPlan;
  txs: { escrowTx: string; settlementTx: string };
}

/** The nightly run of [from, to) with the real verifier, on the chain's clock. */
function nightly(
  h: AdversaryHarness,
  c: Scenario,
  window: { from: number; to: number },
  wrap: (verifier: Verifier) => Verifier = (v) => v,
): Promise<NightlySummary> {
  const now = () => h.op.now();
  const verifier = createVerifier({
    store: c.store,
    rpc: h.rpc,
    profile: c.profile,
    log,
    now,
    options: quickVerifierOptions,
  });
  return runNightlyVerification(c.store, wrap(verifier), {
    ...window,
    timeoutMs: 60_000,
    now,
    preflight: () => h.rpc.getSlot("finalized"),
  });
}

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** `n` honest jobs of key `keyIndex` on chain now, receipts not written. */
  function onChain(keyIndex: number, n: number): Unwritten[] {
    return Array.from({ length: n }, () => {
      const plan = h.op.plan({ keyIndex });
      return { plan, txs: h.op.honestJob(plan) };
    });
  }

  /** Writes `job`'s receipt as an import does: dated `createdAt`, recorded `recordedAt`. */
  async function write(c: Scenario, job: Unwritten, createdAt: number, recordedAt: number) {
    c.record(job.plan, job.txs, { createdAt }, "import", recordedAt);
    c.honestJobsApi(job.plan, job.txs);
    await c.flush();
  }

  /** `run`, while an operator's session holds `jobId`'s row (SELECT ... FOR UPDATE). */
  async function whileRowHeld<T>(c: Scenario, jobId: string, run: () => Promise<T>): Promise<T> {
    if (c.store.kind !== "postgres") throw new Error("a PostgreSQL store");
    const locker = await c.store.pool.connect();
    try {
      await locker.query("BEGIN");
      await locker.query("SELECT 1 FROM jobs WHERE job_id = $1 FOR UPDATE", [jobId]);
      return await run();
    } finally {
      await locker.query("ROLLBACK");
      locker.release();
    }
  }

  it("counts a job recorded after its night's end in one nightly window: its own when its run saw it, else the one it was recorded in, a window done again included", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const n0 = periodEdge(h);
    const [inTime, beforeRun, afterRun, afterNext] = onChain(1, 4) as [
      Unwritten,
      Unwritten,
      Unwritten,
      Unwritten,
    ];
    await write(c, inTime, h.op.now(), h.op.now());
    const n1 = periodEdge(h);
    await finalizedAfter(h, 2_500);
    const dated = n1 - 1_000;

    // Dated in night N, recorded after N's end, before N's run (an import at 00:30, the run
    // at 02:00): N counts it.
    await write(c, beforeRun, dated, n1 + 100);
    const nightN = await nightly(h, c, { from: n0, to: n1 });
    expect(nightN).toMatchObject({ outcome: "verified", exitCode: 0, total: 2 });

    // Dated in night N, recorded after N's run: N+1 counts it, and not the one N counted.
    await write(c, afterRun, dated, n1 + 200);
    const n2 = periodEdge(h);
    await finalizedAfter(h, 2_500);
    const nightN1 = await nightly(h, c, { from: n1, to: n2 });
    expect(nightN1).toMatchObject({ outcome: "verified", total: 1 });
    expect(nightN1.byVerdict.verified).toBe(1);

    // Dated in night N, recorded after N+1 ran: no window left it out, N+2 counts it.
    await write(c, afterNext, dated, n2 + 100);
    const n3 = periodEdge(h);
    await finalizedAfter(h, 2_500);
    const nightN2 = await nightly(h, c, { from: n2, to: n3 });
    expect(nightN2).toMatchObject({ outcome: "verified", total: 1 });

    // Night N done again (a catch-up `verify --from --to`): the same two jobs, not the two
    // later windows counted.
    const again = await nightly(h, c, { from: n0, to: n1 });
    expect(again).toMatchObject({ outcome: "verified", total: 2 });
    expect(again.byVerdict.verified).toBe(2);

    // Each of the four jobs once over the consecutive windows.
    expect(nightN.total + nightN1.total + nightN2.total).toBe(4);
  });

  it("counts in its own night a receipt recorded during that night's run, not in the next; the next run still judges nothing twice", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const n0 = periodEdge(h);
    const [first, during] = onChain(2, 2) as [Unwritten, Unwritten];
    await write(c, first, h.op.now(), h.op.now());
    const n1 = periodEdge(h);
    await finalizedAfter(h, 2_500);

    // Written while the run settles the window (after its judging, before its count): the run
    // counts it, not final yet, and cannot call the night verified.
    const nightN = await nightly(h, c, { from: n0, to: n1 }, (verifier) => ({
      ...verifier,
      async runUntilSettled(filter, opts) {
        const result = await verifier.runUntilSettled(filter, opts);
        await write(c, during, n1 - 1_000, h.op.now());
        return result;
      },
    }));
    expect(nightN).toMatchObject({ outcome: "incomplete", exitCode: 2, total: 2 });
    expect(nightN.byVerdict.pending).toBe(1);

    // N+1 judges it (recorded in its window) but counts only what is its own: nothing.
    const n2 = periodEdge(h);
    await finalizedAfter(h, 2_500);
    const nightN1 = await nightly(h, c, { from: n1, to: n2 });
    expect(nightN1).toMatchObject({ outcome: "no_jobs", total: 0 });
    expect(await c.outcome(during.plan.jobId)).toEqual({ verdict: "verified", failing: [] });

    // N done again, as serve's schedule folds a night it could not finish: both, final.
    const again = await nightly(h, c, { from: n0, to: n1 });
    expect(again).toMatchObject({ outcome: "verified", exitCode: 0, total: 2 });
  });

  it.runIf(dialect === "postgres")(
    "leaves to the window it was recorded in a job whose row another session holds as the run claims, without waiting for it",
    async () => {
      const c = (await h.scenario()).recordOnChainClock();
      const n0 = periodEdge(h);
      const [inTime, held] = onChain(2, 2) as [Unwritten, Unwritten];
      await write(c, inTime, h.op.now(), h.op.now());
      const n1 = periodEdge(h);
      await finalizedAfter(h, 2_500);
      await write(c, held, n1 - 1_000, n1 + 100);
      await c.verify();
      // An operator's session holds the late job's row (SELECT ... FOR UPDATE) through N's run.
      const started = performance.now();
      const nightN = await whileRowHeld(c, held.plan.jobId, () =>
        nightly(h, c, { from: n0, to: n1 }),
      );
      // Not waited for (a statement timeout's 30 s), not claimed, not counted by N.
      expect(performance.now() - started).toBeLessThan(15_000);
      expect(nightN).toMatchObject({ outcome: "verified", total: 1 });
      const n2 = periodEdge(h);
      await finalizedAfter(h, 2_500);
      const nightN1 = await nightly(h, c, { from: n1, to: n2 });
      expect(nightN1).toMatchObject({ outcome: "verified", total: 1 });
      expect(nightN.total + nightN1.total).toBe(2);
    },
  );

  it.runIf(dialect === "postgres")(
    "counts once a job recorded late whose row another session holds as the run of its recording window claims it: that run says so and exits 2, and done again it claims the job",
    async () => {
      const c = (await h.scenario()).recordOnChainClock();
      const n0 = periodEdge(h);
      const [inTime, late] = onChain(2, 2) as [Unwritten, Unwritten];
      await write(c, inTime, h.op.now(), h.op.now());
      const n1 = periodEdge(h);
      await finalizedAfter(h, 2_500);
      const nightN = await nightly(h, c, { from: n0, to: n1 });
      expect(nightN).toMatchObject({ outcome: "verified", total: 1 });
      // Dated in night N, recorded after N's run: N+1's.
      await write(c, late, n1 - 1_000, n1 + 100);
      await c.verify();
      const n2 = periodEdge(h);
      await finalizedAfter(h, 2_500);
      // An operator's session holds the late job's row (SELECT ... FOR UPDATE) through N+1's run.
      const heldRun = await whileRowHeld(c, late.plan.jobId, () =>
        nightly(h, c, { from: n1, to: n2 }),
      );
      // Counted, not claimed: a run of N done again would count it too. Said, and not clean.
      expect(heldRun).toMatchObject({ outcome: "incomplete", exitCode: 2 });
      expect(heldRun.reason).toContain(late.plan.jobId);
      // Done again (cron told 2), N+1 claims it; N done again leaves it to N+1.
      const nightN1 = await nightly(h, c, { from: n1, to: n2 });
      expect(nightN1).toMatchObject({ outcome: "verified", exitCode: 0, total: 1 });
      const again = await nightly(h, c, { from: n0, to: n1 });
      expect(again).toMatchObject({ outcome: "verified", total: 1 });
      expect(again.total + nightN1.total).toBe(2);
    },
  );

  it("counts in the next window a receipt stamped before a window's end whose row was written after that window's run counted, not in none", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const n0 = periodEdge(h);
    const [inTime, slow] = onChain(3, 2) as [Unwritten, Unwritten];
    await write(c, inTime, h.op.now(), h.op.now());
    const n1 = periodEdge(h);
    await finalizedAfter(h, 2_500);
    const nightN = await nightly(h, c, { from: n0, to: n1 });
    expect(nightN).toMatchObject({ outcome: "verified", total: 1 });
    // Stamped just before N's end (the proxy dates and records a receipt as its response
    // ends), its group's write held until after N's run counted (the write lock taken, the
    // database refusing writes a while): dated and recorded in a window already counted.
    await write(c, slow, n1 - 500, n1 - 400);
    await c.verify();
    const n2 = periodEdge(h);
    await finalizedAfter(h, 2_500);
    const nightN1 = await nightly(h, c, { from: n1, to: n2 });
    expect(nightN1).toMatchObject({ outcome: "verified", total: 1 });
    // N done again leaves it to N+1: each once over the reports.
    const again = await nightly(h, c, { from: n0, to: n1 });
    expect(again.total + nightN1.total).toBe(2);
  });

  it("leaves to the next window a job recorded between a run's claim and its count", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const n0 = periodEdge(h);
    const [job] = onChain(3, 1) as [Unwritten];
    const n1 = periodEdge(h);
    await finalizedAfter(h, 2_500);
    // The run's claim is made before the receipt is written, its count after.
    const runs = createVerificationRunStore(c.store);
    expect(await runs.claimWindowJobs(n0, n1, h.op.now())).toEqual({ date: 0, late: 0 });
    await write(c, job, n1 - 1_000, n1 + 100);
    await c.verify();
    const n2 = periodEdge(h);
    await finalizedAfter(h, 2_500);
    // A run of N counts it only if its claim saw it: this one's (made first) did not.
    const counts = await createOpsStore(c.store).countedAdjustByVerdict(n0, n1);
    expect(counts.notCounted.verified).toBe(1);
    const nightN1 = await nightly(h, c, { from: n1, to: n2 });
    expect(nightN1).toMatchObject({ outcome: "verified", total: 1 });
    // N's run now, its claim past N+1's: N+1 had it, N leaves it out.
    const nightN = await nightly(h, c, { from: n0, to: n1 });
    expect(nightN).toMatchObject({ outcome: "no_jobs", total: 0 });
  });
});
