import { sql } from "drizzle-orm";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { createLogger } from "../src/log.js";
import { createBackfillStore } from "../src/store/backfill.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { createJobsApiStore, type JobsApiAnswer } from "../src/store/jobs-api.js";
import { createLockStore } from "../src/store/locks.js";
import { createVerifier, type Verifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { seedJobs } from "./support/seed-verdicts.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";

/**
 * Two verifier hosts on one PostgreSQL database whose wall clocks differ by minutes. A job's
 * lease, its renewal and a run's heartbeat must mean the same to both: a host ahead took the
 * live leases of another (two verifiers judging the same jobs, the first one's RPC work lost),
 * a host behind had its own taken, and the sweep of abandoned runs closed a live run's row.
 */

const database = usePostgresDatabase({ migrated: true });
const MINUTES_3 = 180_000;
const stores: PgStore[] = [];
const stops: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});
afterAll(async () => {
  for (const store of stores) await store.close();
});

/** One host's store: a pool of its own on the shared database. */
async function host(): Promise<PgStore> {
  const store = openPostgres(database.url, { poolSize: 4, statementTimeoutMs: 30_000 });
  stores.push(store);
  return store;
}

/** Fresh open jobs, each naming an escrow transaction the chain has not shown. */
async function seedOpenJobs(store: PgStore, prefix: string, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}_${i}`);
  await store.db.execute(sql`DELETE FROM jobs`);
  await store.db.execute(sql`DELETE FROM verification_runs`);
  await store.db.execute(sql`DELETE FROM locks`);
  await seedJobs(
    store,
    ids.map((jobId) => ({ jobId, leaseOwner: null })),
  );
  await store.db.execute(sql`UPDATE jobs SET escrow_tx = 'sig_' || job_id`);
  return ids;
}

async function leaseOwners(store: PgStore): Promise<Map<string, number>> {
  const rows = await store.db.execute<{ owner: string | null; n: string }>(
    sql`SELECT lease_owner AS owner, count(*)::text AS n FROM jobs GROUP BY lease_owner`,
  );
  return new Map(rows.rows.map((r) => [r.owner ?? "(none)", Number(r.n)]));
}

async function runStatuses(store: PgStore): Promise<Map<string, string>> {
  const rows = await store.db.execute<{ owner: string; status: string }>(
    sql`SELECT owner, status FROM verification_runs`,
  );
  return new Map(rows.rows.map((r) => [r.owner, r.status]));
}

async function until(check: () => Promise<boolean>, ms = 10_000) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Host A, whose wall clock is `shift` off, starts a run and holds its jobs' leases inside a
 * round (its node never answers the status poll).
 */
async function holdingHost(store: PgStore, shift: number, leaseMs?: number) {
  const chain = createFakeChain();
  const release = chain.hold();
  const engine = createVerifier({
    store,
    rpc: chain.rpc,
    profile: localnetProfile,
    log: createLogger({ level: "silent" }),
    owner: "host-a/verifier",
    now: () => Date.now() + shift,
    options: { pollIntervalMs: 50, errorBackoffMs: 20, ...(leaseMs ? { leaseMs } : {}) },
  });
  const controller = new AbortController();
  const run = engine.runUntilSettled({}, { timeoutMs: 60_000, signal: controller.signal });
  stops.push(async () => {
    controller.abort();
    release();
    await run.catch(() => {});
  });
  return engine;
}

/** Host B, whose clock is `shift` off, runs for `ms`: the jobs it polled and its rounds. */
async function otherHostRuns(store: PgStore, shift: number, ms: number, leaseMs?: number) {
  const chain = createFakeChain();
  let rounds = 0;
  const engine: Verifier = createVerifier({
    store,
    rpc: chain.rpc,
    profile: localnetProfile,
    log: createLogger({ level: "silent" }),
    owner: "host-b/verifier",
    now: () => Date.now() + shift,
    options: { pollIntervalMs: 300, errorBackoffMs: 20, ...(leaseMs ? { leaseMs } : {}) },
    pacer: { roundStarts: () => rounds++, pauseAfter: () => 0 },
  });
  const summary = await engine.runUntilSettled({}, { timeoutMs: ms });
  return { polled: chain.calls.statusSignatures, rounds, summary };
}

describe("job leases and run heartbeats on PostgreSQL across hosts whose clocks differ", () => {
  it("a host 3 minutes ahead takes none of a live verifier's leases nor closes its run", async () => {
    const a = await host();
    const b = await host();
    await seedOpenJobs(a, "ahead", 20);
    await holdingHost(a, 0);
    await until(async () => (await leaseOwners(a)).get("host-a/verifier") === 20);
    const seen = await otherHostRuns(b, MINUTES_3, 1500);
    expect(seen.polled).toBe(0);
    expect((await leaseOwners(a)).get("host-a/verifier")).toBe(20);
    expect((await runStatuses(a)).get("host-a/verifier")).toBe("running");
    // It waits a poll interval (300 ms) for leases that end in 2 minutes on every clock: read
    // by its own clock, they had ended a minute ago, and it claimed round after round.
    expect(seen.rounds).toBeLessThan(12);
  }, 30_000);

  it("a host 3 minutes behind keeps its leases from a host whose clock is right", async () => {
    const a = await host();
    const b = await host();
    await seedOpenJobs(a, "behind", 10);
    await holdingHost(a, -MINUTES_3);
    await until(async () => (await leaseOwners(a)).get("host-a/verifier") === 10);
    const seen = await otherHostRuns(b, 0, 1000);
    expect(seen.polled).toBe(0);
    expect((await leaseOwners(a)).get("host-a/verifier")).toBe(10);
    expect((await runStatuses(a)).get("host-a/verifier")).toBe("running");
  }, 30_000);

  it("a host 3 minutes behind keeps its leases and its run past their renewals", async () => {
    const a = await host();
    const b = await host();
    await seedOpenJobs(a, "renewed", 10);
    // A 0.9 s lease, renewed every 0.3 s; its heartbeat too.
    await holdingHost(a, -MINUTES_3, 900);
    await until(async () => (await leaseOwners(a)).get("host-a/verifier") === 10);
    // Past several renewals and the first lease's end.
    await new Promise((resolve) => setTimeout(resolve, 1300));
    const seen = await otherHostRuns(b, 0, 500, 900);
    expect(seen.polled).toBe(0);
    expect((await leaseOwners(a)).get("host-a/verifier")).toBe(10);
    expect((await runStatuses(a)).get("host-a/verifier")).toBe("running");
  }, 30_000);

  it("reads a live lease's end on the asking host's clock", async () => {
    const a = await host();
    await seedOpenJobs(a, "due", 1);
    const queue = createJobQueueStore(a);
    const locks = createLockStore(a);
    const serverNow = await locks.sharedNow(Date.now());
    await queue.claim("host-a/verifier", null, {
      t: Date.now(),
      leaseAt: serverNow,
      leaseMs: 60_000,
      limit: 10,
    });
    // A host 3 minutes ahead: the lease ends a minute from now on its clock too.
    const t = Date.now() + MINUTES_3;
    const due = await queue.nextDue(null, { t, leaseAt: await locks.sharedNow(t) });
    expect(due).toBeGreaterThan(t + 50_000);
    expect(due).toBeLessThanOrEqual(t + 60_000);
  }, 30_000);
});

/** The open jobs' verdicts and their due times, as every host reads them. */
async function dueTimes(store: PgStore): Promise<{ verdict: string; due: number }[]> {
  const rows = await store.db.execute<{ verdict: string; due: string }>(
    sql`SELECT verdict, next_verify_at::text AS due FROM jobs`,
  );
  return rows.rows.map((r) => ({ verdict: r.verdict, due: Number(r.due) }));
}

/**
 * Host A, its clock `shift` off, runs one round, which puts its jobs off for a later look. One
 * round only (the next is a poll interval, 1 s, away): from the second on, the slot's pace is
 * known and a job whose signatures no node has seen is put off to their drop, its signatures
 * watched by the round in between, which is not what these cases time.
 */
async function decidingHost(store: PgStore, shift: number, pollIntervalMs = 1000) {
  const engine = createVerifier({
    store,
    rpc: createFakeChain().rpc,
    profile: localnetProfile,
    log: createLogger({ level: "silent" }),
    owner: "host-a/verifier",
    now: () => Date.now() + shift,
    options: { pollIntervalMs, errorBackoffMs: 20 },
  });
  // One round: stopped before its next poll (a loaded CI host took more than 400 ms for it).
  await engine.runUntilSettled({}, { timeoutMs: Math.max(400, pollIntervalMs - 500) });
}

describe("due times on PostgreSQL across hosts whose clocks differ", () => {
  it("a job a host 3 minutes ahead puts off is due for the others within a poll", async () => {
    const a = await host();
    const b = await host();
    await seedOpenJobs(a, "later", 5);
    // Polls 3 s apart, so that its one round has 2.5 s: with 0.5 s, a CI run at full load
    // found the jobs still pending.
    await decidingHost(a, MINUTES_3, 3000);
    const serverNow = await createLockStore(a).sharedNow(0);
    const jobs = await dueTimes(a);
    expect(jobs.map((j) => j.verdict)).toEqual(Array(5).fill("awaiting_finality"));
    // Its next look is a poll away on the server's clock, not 3 minutes later (the offset is
    // measured over a round trip, which a loaded host stretches by some hundreds of ms).
    for (const job of jobs) expect(job.due).toBeLessThanOrEqual(serverNow + 3000 + 5_000);
    // The other host runs as long as that bound allows: in 1.5 s it polled 4 of the 5 once.
    const seen = await otherHostRuns(b, 0, 6_000);
    expect(seen.polled).toBeGreaterThanOrEqual(5);
  }, 30_000);

  it("a job a host 3 minutes behind puts off is not due for the others at once", async () => {
    const a = await host();
    await seedOpenJobs(a, "early", 5);
    const before = await createLockStore(a).sharedNow(0);
    await decidingHost(a, -MINUTES_3, 3000);
    const jobs = await dueTimes(a);
    expect(jobs.map((j) => j.verdict)).toEqual(Array(5).fill("awaiting_finality"));
    // Due 3 minutes in the past, every verifier claimed and polled them round after round.
    for (const job of jobs) expect(job.due).toBeGreaterThan(before);
  }, 30_000);
});

/**
 * One job waiting for finality, due a minute from now on the server's clock, its backfill
 * pending: the server's time then.
 */
async function parkedJob(store: PgStore, jobId: string): Promise<number> {
  await seedOpenJobs(store, jobId, 1);
  const serverNow = await createLockStore(store).sharedNow(0);
  await store.db.execute(sql`UPDATE jobs SET verdict = 'awaiting_finality',
    next_verify_at = ${serverNow + 60_000}, backfill_state = 'pending', backfill_next_at = 0`);
  return serverNow;
}

const processing = (jobId: string): JobsApiAnswer => ({
  status: "processing",
  creditsChargedUnits: null,
  escrowTx: `sig_${jobId}`,
  settlementTx: null,
  worker: null,
  raw: { status: "processing" },
});

describe("due now on PostgreSQL, written by a host 3 minutes ahead", () => {
  const ahead = () => Date.now() + MINUTES_3;
  const dueNow = async (store: PgStore, serverBefore: number) => {
    const [job] = await dueTimes(store);
    const serverAfter = await createLockStore(store).sharedNow(0);
    expect(job?.due).toBeGreaterThanOrEqual(serverBefore);
    expect(job?.due).toBeLessThanOrEqual(serverAfter);
  };

  it("a job the jobs API's first answer reopens is due now for every verifier", async () => {
    const a = await host();
    const before = await parkedJob(a, "reopened");
    await createJobsApiStore(a).recordAnswer("reopened_0", processing("reopened_0"), ahead());
    await dueNow(a, before);
  }, 30_000);

  it("a waiting job the same answer again makes due is due now for every verifier", async () => {
    const a = await host();
    await parkedJob(a, "answered");
    const answers = createJobsApiStore(a);
    await answers.recordAnswer("answered_0", processing("answered_0"), Date.now());
    const before = await createLockStore(a).sharedNow(0);
    await a.db.execute(sql`UPDATE jobs SET verdict = 'awaiting_finality',
      next_verify_at = ${before + 60_000}, verify_attempts = 1`);
    await answers.recordAnswer("answered_0", processing("answered_0"), ahead());
    await dueNow(a, before);
  }, 30_000);

  it("a job waiting for the answer the backfill gives up on is due now for every verifier", async () => {
    const a = await host();
    const before = await parkedJob(a, "given-up");
    await createBackfillStore(a).giveUp("given-up_0", ahead());
    await dueNow(a, before);
  }, 30_000);
});
