import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { createLogger } from "../src/log.js";
import { nightlyVerifierOptions } from "../src/nightly/verify-run.js";
import { createSettlementBackfill } from "../src/recorder/settlement-backfill.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { createLockStore } from "../src/store/locks.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import type { VerifierOptions } from "../src/verify/verifier-options.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { processingAnswer } from "./support/recorder-fixtures.js";
import { queueColumns, seedJobs } from "./support/seed-queue.js";
import { seedJob } from "./support/seed-recorder.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";

/**
 * A clock stepped back (NTP correcting a clock that ran ahead, a VM restored from a snapshot):
 * every job the verifier had put off carries a next look written on the clock before the step.
 * A look further off than the verifier ever puts one is due now; before, a job due in a poll
 * waited the whole step (2 hours), and a nightly run waited for it until its --timeout.
 */

const HOURS_2 = 7_200_000;
const POLL_MS = 300;

/** The verifier's clock: the host's on SQLite, the database server's on PostgreSQL. */
const clockOf = (store: Store) =>
  store.kind === "postgres" ? createLockStore(store).sharedNow(0) : Promise.resolve(Date.now());

/**
 * A verifier whose clock reads `shift` off this host's runs for `ms`, or to the end of the first
 * round that asked a status (its writes done) when `untilAsked`; the statuses it asked.
 */
async function verifierRuns(
  store: Store,
  shift: number,
  ms: number,
  options: Partial<VerifierOptions> = { pollIntervalMs: POLL_MS },
  untilAsked = false,
) {
  const chain = createFakeChain();
  const engine = createVerifier({
    store,
    rpc: chain.rpc,
    profile: localnetProfile,
    log: createLogger({ level: "silent" }),
    owner: "verifier",
    now: () => Date.now() + shift,
    options: { errorBackoffMs: 20, ...options },
  });
  const asked = new AbortController();
  const onProgress = () => {
    if (untilAsked && chain.calls.statusSignatures > 0) asked.abort();
  };
  await engine.runUntilSettled({}, { timeoutMs: ms, signal: asked.signal, onProgress });
  return chain.calls.statusSignatures;
}
const looked = { pollIntervalMs: POLL_MS };

describe.each(dialects)("a clock stepped back on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("a job whose next look was written 2 hours ahead is looked at within a poll", async () => {
    const store = await stores.open();
    const now = await clockOf(store);
    // Put off for a poll by a verifier whose clock then went back 2 hours.
    await seedJobs(store, [
      { jobId: "put-off", escrowTx: "sig_put-off", nextVerifyAt: now + HOURS_2 + POLL_MS },
    ]);
    expect(await verifierRuns(store, 0, 1_500, looked, true)).toBeGreaterThanOrEqual(1);
    // Its next look is written within the verifier's own delays again.
    const [job] = await queueColumns(store);
    expect(job?.nextVerifyAt).toBeLessThan((await clockOf(store)) + 60_000);
  }, 30_000);

  it("a job the verifier put off before its clock went back 2 hours is looked at within a poll", async () => {
    const store = await stores.open();
    await seedJobs(store, [{ jobId: "stepped", escrowTx: "sig_stepped", leaseOwner: null }]);
    // Polled once (not found) on the clock 2 hours ahead, which then steps back. On PostgreSQL
    // the verifier's clock is the server's: its host's step moves no due time.
    expect(await verifierRuns(store, HOURS_2, 400, looked, true)).toBeGreaterThanOrEqual(1);
    expect(await verifierRuns(store, 0, 1_500, looked, true)).toBeGreaterThanOrEqual(1);
  }, 30_000);

  // The poll grid remembered the last poll's cell on the clock before the step: one verifier
  // (serve's, running on) asked no status for as long as the step.
  it("a running verifier whose clock goes back 2 hours asks statuses again within a poll", async () => {
    const store = await stores.open();
    await seedJobs(store, [{ jobId: "running", escrowTx: "sig_running", leaseOwner: null }]);
    const chain = createFakeChain();
    let shift = HOURS_2;
    const engine = createVerifier({
      store,
      rpc: chain.rpc,
      profile: localnetProfile,
      log: createLogger({ level: "silent" }),
      owner: "verifier",
      now: () => Date.now() + shift,
      options: { errorBackoffMs: 20, pollIntervalMs: POLL_MS },
    });
    const runUntilAsked = async (ms: number) => {
      const before = chain.calls.statusSignatures;
      const asked = new AbortController();
      const onProgress = () => {
        if (chain.calls.statusSignatures > before) asked.abort();
      };
      await engine.runUntilSettled({}, { timeoutMs: ms, signal: asked.signal, onProgress });
      return chain.calls.statusSignatures - before;
    };
    expect(await runUntilAsked(1_500)).toBeGreaterThanOrEqual(1);
    shift = 0;
    expect(await runUntilAsked(1_500)).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it("the nightly verify leaves a job serve holds for the jobs API's answer under a long JOBS_API_WAIT_MS", async () => {
    const store = await stores.open();
    const now = await clockOf(store);
    // serve, waiting 30 minutes for the answer, put the job off until then: the nightly run,
    // which waits for no answer itself, gave the clean verdict the wait holds back.
    await seedJobs(store, [
      { jobId: "held", escrowTx: "sig_held", leaseOwner: null, nextVerifyAt: now + 1_700_000 },
    ]);
    const nightly = nightlyVerifierOptions({
      VERIFY_POLL_MS: POLL_MS,
      JOBS_API_WAIT_MS: 1_800_000,
      VERIFY_DROP_HOLD_MS: 300_000,
    });
    expect(await verifierRuns(store, 0, 1_000, nightly)).toBe(0);
    const [job] = await queueColumns(store);
    expect(job?.nextVerifyAt).toBe(now + 1_700_000);
  }, 30_000);

  it("claims a far look after the jobs due by then, and not one within the verifier's delays", async () => {
    const store = await stores.open();
    const t = await clockOf(store);
    await seedJobs(store, [
      { jobId: "far", nextVerifyAt: t + HOURS_2 },
      { jobId: "due", nextVerifyAt: t - 1 },
      { jobId: "later", nextVerifyAt: t + 60_000 },
    ]);
    const queue = createJobQueueStore(store);
    // Without a bound (the default) a far look waits for its time.
    const plain = await queue.claim("B", null, { t, leaseMs: 60_000, limit: 5 });
    expect(plain.map((j) => j.jobId)).toEqual(["due"]);
    await seedJobs(store, [
      { jobId: "due-2", nextVerifyAt: t - 1 },
      { jobId: "far-2", nextVerifyAt: t + HOURS_2 },
    ]);
    const lease = { t, leaseMs: 60_000, farAfter: t + 120_000 };
    const first = await queue.claim("A", null, { ...lease, limit: 1 });
    expect(first.map((j) => j.jobId)).toEqual(["due-2"]);
    const rest = await queue.claim("A", null, { ...lease, limit: 5 });
    expect(rest.map((j) => j.jobId).sort()).toEqual(["far", "far-2"]);
  });

  it("the settlement backfill asks at once about a job whose next ask was written 2 hours ahead", async () => {
    const store = await stores.open();
    const at = Date.now();
    await seedJob(store, {
      jobId: "job_stepped",
      settlementTx: null,
      backfillState: "pending",
      // Its next ask 10 s off, written before the clock went back 2 hours.
      backfillNextAt: at + HOURS_2 + 10_000,
    });
    const asked: string[] = [];
    const backfill = createSettlementBackfill({
      store,
      log: createLogger({ level: "silent" }),
      apiKey: "key",
      now: () => at,
      jobsApi: async (jobId) => {
        asked.push(jobId);
        return processingAnswer();
      },
    });
    expect(await backfill.runOnce()).toBe(1);
    expect(asked).toEqual(["job_stepped"]);
  });
});
