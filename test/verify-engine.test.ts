import { eq, isNotNull } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { TransactionFacts } from "../src/chain/transaction-facts.js";
import type { SqliteStore } from "../src/db/client.js";
import { chainTransactions, checkResults, jobs, verificationRuns } from "../src/db/schema.js";
import { AppError } from "../src/errors.js";
import { thisHost } from "../src/host-identity.js";
import { createLogger } from "../src/log.js";
import { recordJobsApiAnswer } from "../src/recorder/jobs-api.js";
import { recordReceipt } from "../src/recorder/receipts.js";
import { createCustodyStore } from "../src/store/custody.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { createSignatureStore } from "../src/store/signatures.js";
import { createVerdictStore } from "../src/store/verdicts.js";
import { createVerifier, type VerifierDeps, type VerifierRpc } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { createRound } from "../src/verify/round.js";
import { defaultVerifierOptions } from "../src/verify/verifier-options.js";
import { createTestStore } from "./support/store.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";
import { honest } from "./support/verify-fixtures.js";

const log = createLogger({ level: "silent" });
const fast = { pollIntervalMs: 2, errorBackoffMs: 2, backfillWaitMs: 2, idleIntervalMs: 20 };

function record(store: SqliteStore, job: ReturnType<typeof honest>["job"]) {
  recordReceipt(
    store,
    {
      jobId: job.jobId,
      escrowTx: job.escrowTx,
      settlementTx: job.settlementTx,
      worker: job.worker,
      creditsRemainingUnits: null,
      model: job.model,
      keyFingerprint: job.keyFingerprint ?? null,
      promptTokens: 10,
      completionTokens: job.completionTokens,
      totalTokens: null,
    },
    "ingest",
  );
}

function verifier(
  store: SqliteStore,
  chain: ReturnType<typeof createFakeChain>,
  extra: Partial<VerifierDeps> = {},
) {
  return createVerifier({
    store,
    rpc: chain.rpc,
    profile: localnetProfile,
    log,
    options: fast,
    ...extra,
  });
}

const verdictOf = (store: SqliteStore, jobId: string) =>
  store.db.select().from(jobs).where(eq(jobs.jobId, jobId)).get();

describe("verification engine", () => {
  it("verifies jobs at finality, batching status polls and fetching each transaction once", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 3 });
    const a = honest("job_a", "a");
    const b = honest("job_b", "b");
    const replay = honest("job_replay", "r");
    replay.job.escrowTx = a.escrow.signature; // a replayed receipt: job_a's escrow again
    for (const j of [a, b, replay]) {
      chain.land(j.escrow);
      chain.land(j.settlement);
      record(store, j.job);
    }
    const summary = await verifier(store, chain).runUntilSettled({}, { timeoutMs: 10_000 });
    expect(summary).toMatchObject({ status: "completed", total: 3, final: 3 });
    expect(summary.byVerdict).toMatchObject({ verified: 2, discrepancy: 1 });
    expect(verdictOf(store, "job_replay")?.verdict).toBe("discrepancy");
    expect(verdictOf(store, "job_a")).toMatchObject({
      verdict: "verified",
      commitment: "finalized",
      chargedUnits: 80_000n,
      workerPaidUnits: 60_000n,
    });
    // 5 distinct signatures (the replayed escrow is named twice): one getTransaction each.
    expect(chain.calls.getTransaction.size).toBe(5);
    expect([...chain.calls.getTransaction.values()].every((n) => n === 1)).toBe(true);
    // Each poll carried every pending signature at once: polls < finality rounds + 1.
    expect(chain.calls.statusCalls).toBeLessThanOrEqual(4);
    const stored = store.db.select().from(chainTransactions).all();
    expect(stored.every((r) => r.state === "finalized" && r.raw !== null)).toBe(true);
    const run = store.db.select().from(verificationRuns).get();
    expect(run).toMatchObject({ trigger: "verify", status: "completed" });
  });

  it("keeps to its timeout on the monotonic clock when the wall clock steps ahead", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 0 });
    // A job whose transactions never land: the run can only end at its timeout.
    record(store, honest("job_never", "n").job);
    let calls = 0;
    // The clock steps 2 h ahead once the run has started (NTP, a VM resumed).
    const v = verifier(store, chain, { now: () => Date.now() + (calls++ > 3 ? 7_200_000 : 0) });
    const started = performance.now();
    const summary = await v.runUntilSettled({}, { timeoutMs: 800 });
    expect(summary.status).toBe("timed_out");
    // Not at once: the run kept to its 800 ms.
    expect(performance.now() - started).toBeGreaterThan(700);
    expect(summary.durationMs).toBeGreaterThan(700);
    expect(summary.durationMs).toBeLessThan(5_000);
  });

  it("ends a run near its deadline even inside a long round: fetches not begun are not begun", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 0 });
    for (let i = 0; i < 20; i++) {
      const j = honest(`job_slow${i}`, `s${i}`);
      chain.land(j.escrow);
      chain.land(j.settlement);
      record(store, j.job);
    }
    // A node that takes 200 ms per transaction, asked one at a time: one round needs 8 s.
    const slow = {
      ...chain.rpc,
      async getTransaction(signature: string) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        return chain.rpc.getTransaction(signature);
      },
    };
    const v = verifier(store, chain, {
      rpc: slow,
      options: { ...fast, fetchConcurrency: 1 },
    });
    const started = performance.now();
    const summary = await v.runUntilSettled({}, { timeoutMs: 1_000 });
    expect(summary.status).toBe("timed_out");
    expect(performance.now() - started).toBeLessThan(3_000);
    // The jobs the cut-short round had claimed are free for serve's verifier at once, not two
    // minutes later when their leases would have run out.
    const leased = store.sqlite
      .prepare("SELECT count(*) FROM jobs WHERE lease_owner IS NOT NULL")
      .pluck()
      .get();
    expect(leased).toBe(0);
  });

  it("stores the transactions a round fetches several to a commit", async () => {
    const store = createTestStore();
    // Counts the fetched transactions each write transaction stores (src/store/signatures.ts).
    const stores: number[] = [];
    const transaction = store.sqlite.transaction.bind(store.sqlite);
    store.sqlite.transaction = ((fn: (...args: never[]) => unknown) =>
      transaction((...args: never[]) => {
        const [items] = args as unknown[];
        const first: unknown = Array.isArray(items) ? items[0] : undefined;
        if (typeof first === "object" && first !== null && "fetched" in first) {
          stores.push((items as unknown[]).length);
        }
        return fn(...args);
      })) as typeof store.sqlite.transaction;
    const chain = createFakeChain({ finalitySlots: 1 });
    for (let i = 0; i < 12; i++) {
      const j = honest(`job_${i}`, `t${i}`);
      chain.land(j.escrow);
      chain.land(j.settlement);
      record(store, j.job);
    }
    const summary = await verifier(store, chain).runUntilSettled({}, { timeoutMs: 10_000 });
    expect(summary.byVerdict).toMatchObject({ verified: 12 });
    expect(stores.reduce((a, b) => a + b, 0)).toBe(24);
    expect(stores.length).toBeLessThanOrEqual(6);
  });

  it("stores what its fetches brought before a failing round ends", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1 });
    // Ten jobs: the first slice's eight, and two whose fetches run while the first is decided.
    for (let i = 0; i < 10; i++) {
      const j = honest(`job_${i}`, `s${i}`);
      chain.land(j.escrow);
      chain.land(j.settlement);
      record(store, j.job);
    }
    const answered = new Set<string>();
    const rpc: typeof chain.rpc = {
      ...chain.rpc,
      async getTransaction(signature) {
        await new Promise((r) => setTimeout(r, 5));
        const result = await chain.rpc.getTransaction(signature);
        answered.add(signature);
        return result;
      },
    };
    const verdicts = createVerdictStore(store, localnetProfile);
    const round = createRound({
      queue: createJobQueueStore(store),
      signatures: createSignatureStore(store),
      // The first slice's write fails: the round ends with the second slice's fetches out.
      verdicts: {
        write: () => Promise.reject(new Error("disk full")),
      } satisfies typeof verdicts,
      custody: createCustodyStore(store, localnetProfile, { vaults: [], byKey: {} }),
      ledger: createLedgerStore(store),
      configuredVaults: new Set(),
      rpc,
      profile: localnetProfile,
      options: { ...defaultVerifierOptions, ...fast },
      owner: "me",
      now: Date.now,
      log,
    });
    await expect(round(null, null, new AbortController().signal)).rejects.toThrow("disk full");
    const stored = store.db
      .select({ signature: chainTransactions.signature })
      .from(chainTransactions)
      .where(isNotNull(chainTransactions.facts))
      .all()
      .map((r) => r.signature);
    expect(answered.size).toBeGreaterThan(16);
    expect(new Set(stored)).toEqual(answered);
  });

  it("decides every other job of a slice whose one job's verdict cannot be written, and holds that one back with the error", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1 });
    const jobIds = Array.from({ length: 6 }, (_, i) => `job_${i}`);
    for (const jobId of jobIds) {
      const j = honest(jobId, jobId);
      chain.land(j.escrow);
      chain.land(j.settlement);
      record(store, j.job);
    }
    const verdicts = createVerdictStore(store, localnetProfile);
    // Any write carrying job_3's final verdict fails, as a value no column holds would.
    const refusing: typeof verdicts = {
      write: (decisions, context) =>
        decisions.some((d) => d.job.jobId === "job_3" && d.verdict !== "error")
          ? Promise.reject(new RangeError("The bound string, buffer, or bigint is too big"))
          : verdicts.write(decisions, context),
    };
    const t0 = Date.now();
    const round = createRound({
      queue: createJobQueueStore(store),
      signatures: createSignatureStore(store),
      verdicts: refusing,
      custody: createCustodyStore(store, localnetProfile, { vaults: [], byKey: {} }),
      ledger: createLedgerStore(store),
      configuredVaults: new Set(),
      rpc: chain.rpc,
      profile: localnetProfile,
      options: { ...defaultVerifierOptions, ...fast, errorBackoffMs: 60_000 },
      owner: "me",
      now: Date.now,
      log,
    });
    const open = (id: string) => !["verified", "error"].includes(verdictOf(store, id)!.verdict);
    for (let i = 0; i < 20 && jobIds.some(open); i++) {
      await round(null, null, new AbortController().signal);
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const jobId of jobIds.filter((id) => id !== "job_3")) {
      expect(verdictOf(store, jobId)?.verdict, jobId).toBe("verified");
    }
    const held = verdictOf(store, "job_3");
    expect(held).toMatchObject({ verdict: "error", leaseOwner: null, verifyAttempts: 1 });
    expect(held?.lastError).toContain("bigint is too big");
    // Parked with the error backoff, not claimed again by the next round.
    expect(held?.nextVerifyAt).toBeGreaterThanOrEqual(t0 + 30_000);
  });

  it("parks the jobs of a slice making a pin refused on a held row after one wait, not one wait each", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1 });
    // Six jobs of one key, each learning the key's credit vault: one pin, reopening the
    // keyless jobs drawn on the vault, one of which another session holds locked.
    const jobIds = Array.from({ length: 6 }, (_, i) => `job_${i}`);
    for (const jobId of jobIds) {
      const j = honest(jobId, jobId);
      chain.land(j.escrow);
      chain.land(j.settlement);
      record(store, j.job);
    }
    const verdicts = createVerdictStore(store, localnetProfile);
    const refusal = new AppError(
      "locked",
      "job job_keyless: its row is held locked by another session (waited 3 times 1000 ms); none of these verdicts was written; the verifier decides the jobs again",
    );
    let refusedWrites = 0;
    const refusing: typeof verdicts = {
      write: (decisions, context) => {
        if (!decisions.some((d) => d.evaluation?.learned.creditVault)) {
          return verdicts.write(decisions, context);
        }
        refusedWrites++;
        return Promise.reject(refusal);
      },
    };
    const round = createRound({
      queue: createJobQueueStore(store),
      signatures: createSignatureStore(store),
      verdicts: refusing,
      custody: createCustodyStore(store, localnetProfile, { vaults: [], byKey: {} }),
      ledger: createLedgerStore(store),
      configuredVaults: new Set(),
      rpc: chain.rpc,
      profile: localnetProfile,
      options: { ...defaultVerifierOptions, ...fast, errorBackoffMs: 60_000 },
      owner: "me",
      now: Date.now,
      log,
    });
    const open = (id: string) => verdictOf(store, id)!.verdict !== "error";
    for (let i = 0; i < 20 && jobIds.some(open); i++) {
      await round(null, null, new AbortController().signal);
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const jobId of jobIds) {
      expect(verdictOf(store, jobId), jobId).toMatchObject({
        verdict: "error",
        lastError: `the verdict could not be written: ${refusal.message}`,
      });
    }
    // The slice's write, then the first job's alone: the others took its refusal.
    expect(refusedWrites).toBe(2);
  });

  it("needs no RPC call at all for jobs whose transactions are already stored", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1 });
    const a = honest("job_a", "a");
    chain.land(a.escrow);
    chain.land(a.settlement);
    record(store, a.job);
    await verifier(store, chain).runUntilSettled({}, { timeoutMs: 10_000 });
    const before = { ...chain.calls, tx: chain.calls.getTransaction.size };
    const again = honest("job_again", "a"); // names the same two signatures
    record(store, { ...again.job, jobId: "job_again" });
    store.db.update(jobs).set({ verdict: "pending" }).where(eq(jobs.jobId, "job_a")).run();
    await verifier(store, chain).runUntilSettled({}, { timeoutMs: 10_000 });
    expect(chain.calls.statusCalls).toBe(before.statusCalls);
    expect(chain.calls.getTransaction.size).toBe(before.tx);
  });

  it("shares a backlog between verifiers: a round keeps the fetches its rate allows and hands back the rest", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1, slotsPerPoll: 5 });
    const jobIds = Array.from({ length: 24 }, (_, i) => `job_${i}`);
    for (const jobId of jobIds) {
      const j = honest(jobId, jobId);
      chain.land(j.escrow);
      chain.land(j.settlement);
      record(store, j.job);
    }
    // Each process has its own RPC limit: 2 requests/s, 2 s of fetching a round = 4 fetches,
    // two jobs. A fetch takes 5 ms, so the rounds of the two overlap.
    const fetchedBy = (into: Set<string>): typeof chain.rpc => ({
      ...chain.rpc,
      async getTransaction(signature) {
        into.add(signature);
        await new Promise((resolve) => setTimeout(resolve, 5));
        return chain.rpc.getTransaction(signature);
      },
      requestRate: () => 2,
    });
    const byA = new Set<string>();
    const byB = new Set<string>();
    const options = { ...fast, fetchConcurrency: 2, fetchSecondsPerRound: 2 };
    const a = verifier(store, chain, { rpc: fetchedBy(byA), options });
    const b = verifier(store, chain, { rpc: fetchedBy(byB), options });
    const [ra, rb] = await Promise.all([
      a.runUntilSettled({}, { timeoutMs: 10_000 }),
      b.runUntilSettled({}, { timeoutMs: 10_000 }),
    ]);
    expect(ra.byVerdict.verified).toBe(24);
    expect(rb.byVerdict.verified).toBe(24);
    // Both worked (one verifier holding the whole claim would leave the other nothing), and
    // the work was shared, not done twice: each of the 48 transactions fetched once.
    expect(byA.size).toBeGreaterThanOrEqual(8);
    expect(byB.size).toBeGreaterThanOrEqual(8);
    expect(byA.size + byB.size).toBe(48);
    expect([...chain.calls.getTransaction.values()].every((n) => n === 1)).toBe(true);
  });

  it("polls a backlog waiting for finality round after round, and writes no job it did not poll", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 3 });
    const waiting = Array.from({ length: 30 }, (_, i) => honest(`job_${i}`, `w${i}`));
    for (const j of waiting) record(store, j.job); // their transactions never land
    store.sqlite.exec(`CREATE TEMP TABLE verdict_writes (job_id TEXT);
      CREATE TEMP TRIGGER count_verdict_writes AFTER UPDATE OF verdict ON main.jobs
      BEGIN INSERT INTO verdict_writes VALUES (new.job_id); END;`);
    const polled = new Map<string, number>();
    const rpc: typeof chain.rpc = {
      ...chain.rpc,
      async getSignatureStatuses(signatures) {
        for (const s of signatures) polled.set(s, (polled.get(s) ?? 0) + 1);
        return chain.rpc.getSignatureStatuses(signatures);
      },
    };
    // Claims of 10 out of 30 due jobs: three rounds in one poll interval.
    const options = { ...fast, pollIntervalMs: 60, idleIntervalMs: 10, claimBatchSize: 10 };
    const v = verifier(store, chain, { rpc, options });
    v.start();
    await new Promise((resolve) => setTimeout(resolve, 500));
    await v.stop();
    const writes = new Map<string, number>();
    for (const { job_id } of store.sqlite.prepare("SELECT job_id FROM verdict_writes").all() as {
      job_id: string;
    }[]) {
      writes.set(job_id, (writes.get(job_id) ?? 0) + 1);
    }
    for (const j of waiting) {
      const polls = Math.min(
        polled.get(j.job.escrowTx!) ?? 0,
        polled.get(j.job.settlementTx!) ?? 0,
      );
      expect(polls, j.job.jobId).toBeGreaterThan(0);
      // A write decides what the poll before it learnt; one without a poll learnt nothing.
      expect(writes.get(j.job.jobId) ?? 0, j.job.jobId).toBeLessThanOrEqual(polls);
    }
  });

  it("polls a landed job again when the cluster's pace says it is final, not at every poll", async () => {
    const store = createTestStore();
    // A chain whose slots move with time (10 ms each) and finalize 40 slots behind the tip, as
    // mainnet's do at 400 ms: a transaction is final 400 ms after it landed.
    const slotMs = 10;
    const depth = 40;
    const start = Date.now();
    const tip = () => 1000 + Math.floor((Date.now() - start) / slotMs);
    const landedAt = new Map<string, { facts: TransactionFacts; slot: number }>();
    let statusCalls = 0;
    const rpc: VerifierRpc = {
      async getSignatureStatuses(signatures) {
        statusCalls++;
        const finalizedSlot = tip() - depth;
        return signatures.map((signature) => {
          const tx = landedAt.get(signature);
          if (!tx) return null;
          return {
            signature,
            slot: tx.slot,
            confirmationStatus: tx.slot <= finalizedSlot ? "finalized" : "confirmed",
            err: null,
          };
        });
      },
      async getTransaction(signature) {
        const tx = landedAt.get(signature);
        if (!tx || tx.slot > tip() - depth) return null;
        return { facts: { ...tx.facts, slot: tx.slot }, raw: JSON.stringify({ slot: tx.slot }) };
      },
      getSlot: async () => tip() - depth,
    };
    const options = { ...fast, pollIntervalMs: 40, idleIntervalMs: 10 };
    const v = createVerifier({ store, rpc, profile: localnetProfile, log, options });
    const polls: number[] = [];
    // Jobs land one after another, so the pace is learnt from the first ones' polls.
    for (let i = 0; i < 4; i++) {
      const j = honest(`job_${i}`, `p${i}`);
      for (const tx of [j.escrow, j.settlement])
        landedAt.set(tx.signature, { facts: tx, slot: tip() });
      record(store, j.job);
      const before = statusCalls;
      const summary = await v.runUntilSettled({ jobIds: [j.job.jobId] }, { timeoutMs: 5_000 });
      expect(summary.byVerdict.verified).toBe(1);
      polls.push(statusCalls - before);
    }
    // Polled every 40 ms, a job final after 400 ms took ten polls. Once the pace is known, the
    // next look after the first is at finality: a second poll, or a third when the node lags.
    expect(Math.max(...polls.slice(1))).toBeLessThanOrEqual(3);
  });

  it("calls a signature that never lands dropped once the drop window has passed", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1, slotsPerPoll: 100 });
    const a = honest("job_phantom", "p");
    chain.land(a.escrow); // the settlement never lands
    record(store, a.job);
    const summary = await verifier(store, chain).runUntilSettled({}, { timeoutMs: 10_000 });
    expect(summary.byVerdict.dropped).toBe(1);
    const checks = store.db.select().from(checkResults).all();
    // The one finding is the settlement that never landed; the lock that did is judged too.
    expect(checks.filter((c) => c.outcome === "fail")).toEqual([
      expect.objectContaining({ name: "settlement.exists", outcome: "fail" }),
    ]);
    expect(checks.find((c) => c.name === "escrow.vault")?.outcome).toBe("pass");
    expect(chain.slot).toBeGreaterThan(localnetProfile.dropAfterSlots);
  });

  it("looks again for a dropped signature when the job is re-verified", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1, slotsPerPoll: 100 });
    const a = honest("job_late_landing", "q");
    chain.land(a.escrow);
    record(store, a.job);
    const v = verifier(store, chain);
    expect((await v.runUntilSettled({}, { timeoutMs: 10_000 })).byVerdict.dropped).toBe(1);
    // Another node had it after all (e.g. the first one was on the wrong cluster).
    chain.land(a.settlement);
    v.reverify("job_late_landing");
    const again = await v.runUntilSettled({}, { timeoutMs: 10_000 });
    expect(again.byVerdict.verified).toBe(1);
  });

  it("decides a job re-verified while its round claims in pieces once, on the row read after", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1 });
    // More jobs than one claim piece (250), so the round claims twice with one `t`.
    for (let i = 0; i < 260; i++) record(store, honest(`job_${i}`, `s${i}`).job);
    // Attempts left from earlier trouble: the reverify resets them, so each row says when it
    // was read.
    store.db.update(jobs).set({ verifyAttempts: 3 }).where(eq(jobs.jobId, "job_0")).run();
    const queue = createJobQueueStore(store);
    let pieces = 0;
    const reverifying: typeof queue = {
      ...queue,
      async claim(owner, filter, lease) {
        const piece = await queue.claim(owner, filter, lease);
        // Asked for by hand between the round's two pieces.
        if (++pieces === 1) await queue.reverify("job_0", lease.t + 1);
        return piece;
      },
    };
    const verdicts = createVerdictStore(store, localnetProfile);
    const decided: { jobId: string; verifyAttempts: number }[] = [];
    const recording: typeof verdicts = {
      write: (decisions, context) => {
        for (const d of decisions) decided.push(d.job);
        return verdicts.write(decisions, context);
      },
    };
    const round = createRound({
      queue: reverifying,
      signatures: createSignatureStore(store),
      verdicts: recording,
      custody: createCustodyStore(store, localnetProfile, { vaults: [], byKey: {} }),
      ledger: createLedgerStore(store),
      configuredVaults: new Set(),
      rpc: chain.rpc,
      profile: localnetProfile,
      options: { ...defaultVerifierOptions, ...fast },
      owner: "me",
      now: Date.now,
      log,
    });
    expect(await round(null, null, new AbortController().signal)).toBe(260);
    expect(pieces).toBe(2);
    const ofJob0 = decided.filter((j) => j.jobId === "job_0");
    expect(ofJob0.map((j) => j.verifyAttempts)).toEqual([0]);
    expect(new Set(decided.map((j) => j.jobId)).size).toBe(decided.length);
  });

  it("treats RPC trouble as a retryable error, never as a discrepancy", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1 });
    const a = honest("job_a", "a");
    chain.land(a.escrow);
    chain.land(a.settlement);
    record(store, a.job);
    chain.failNext(3);
    const seen = new Set<string>();
    const summary = await verifier(store, chain).runUntilSettled(
      {},
      {
        timeoutMs: 10_000,
        onProgress: (p) => {
          for (const [v, n] of Object.entries(p.byVerdict)) if (n > 0) seen.add(v);
        },
      },
    );
    expect(seen.has("error")).toBe(true);
    expect(summary.byVerdict.verified).toBe(1);
    expect(verdictOf(store, "job_a")?.lastError).toBeNull();
  });

  it("waits for the settlement backfill of a streamed job, then verifies it", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1 });
    const a = honest("job_stream", "s");
    chain.land(a.escrow);
    chain.land(a.settlement);
    record(store, { ...a.job, settlementTx: null });
    expect(verdictOf(store, "job_stream")?.backfillState).toBe("pending");
    const v = verifier(store, chain);
    const run = v.runUntilSettled(
      {},
      {
        timeoutMs: 10_000,
        onProgress: (p) => {
          if (
            p.byVerdict.awaiting_finality > 0 &&
            verdictOf(store, "job_stream")?.apiCheckedAt === null
          ) {
            recordJobsApiAnswer(store, "job_stream", {
              status: "settled",
              creditsChargedUnits: 80_000n,
              escrowTx: a.escrow.signature,
              settlementTx: a.settlement.signature,
              worker: a.job.worker,
              raw: {},
            });
          }
        },
      },
    );
    const summary = await run;
    expect(summary.byVerdict.verified).toBe(1);
    const api = store.db
      .select()
      .from(checkResults)
      .where(eq(checkResults.name, "jobs_api.matches_receipt"))
      .get();
    expect(api?.outcome).toBe("pass");
  });

  it("never applies a result computed under a lease that expired and was taken over", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1 });
    const a = honest("job_a", "a");
    chain.land(a.escrow);
    chain.land(a.settlement);
    record(store, a.job);
    // The stale verifier's clock runs ten minutes behind (a paused VM, a skewed host): its leases
    // look expired to everyone else. It gets stuck in its first RPC call.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const stuckRpc = {
      ...chain.rpc,
      getSignatureStatuses: async (sigs: string[]) => {
        await gate;
        return chain.rpc.getSignatureStatuses(sigs);
      },
    };
    const stale = verifier(store, chain, {
      rpc: stuckRpc,
      owner: "stale",
      now: () => Date.now() - 600_000,
    });
    const staleRun = stale.runUntilSettled({}, { timeoutMs: 10_000 });
    await expect.poll(() => verdictOf(store, "job_a")?.leaseOwner).toBe("stale");
    const fresh = await verifier(store, chain, { owner: "fresh" }).runUntilSettled(
      {},
      { timeoutMs: 10_000 },
    );
    expect(fresh.byVerdict.verified).toBe(1);
    const decided = verdictOf(store, "job_a");
    release();
    await staleRun;
    // The stale owner's late result was refused: the row and its checks are the fresh run's.
    expect(verdictOf(store, "job_a")).toEqual(decided);
    const checks = store.db.select().from(checkResults).all();
    expect(new Set(checks.map((c) => c.runId))).toEqual(new Set([fresh.runId]));
    expect(new Set(checks.map((c) => c.name)).size).toBe(checks.length);
  });

  it("keeps looking for new jobs while serving and wakes when notified", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1 });
    const v = verifier(store, chain, { options: { ...fast, idleIntervalMs: 60_000 } });
    v.start();
    await v.onIdle();
    const a = honest("job_late", "l");
    chain.land(a.escrow);
    chain.land(a.settlement);
    record(store, a.job);
    v.notify();
    await expect.poll(() => verdictOf(store, "job_late")?.verdict).toBe("verified");
    await v.stop();
    const run = store.db.select().from(verificationRuns).get();
    expect(run).toMatchObject({ trigger: "serve", status: "completed" });
    v.reverify("job_late");
    expect(verdictOf(store, "job_late")?.verdict).toBe("pending");
  });

  it("gives way to requests: after a round, pauses as the pacer says; stop ends the pause", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1 });
    for (const id of ["job_1", "job_2", "job_3"]) {
      const j = honest(id, id);
      chain.land(j.escrow);
      chain.land(j.settlement);
      record(store, j.job);
    }
    const rounds: number[] = [];
    // Requests arrived during every round: the pacer asks for a minute's pause after each.
    const pacer = {
      roundStarts() {},
      pauseAfter(roundMs: number) {
        rounds.push(roundMs);
        return 60_000;
      },
    };
    const v = verifier(store, chain, { pacer, options: { ...fast, claimBatchSize: 1 } });
    v.start();
    await expect.poll(() => rounds.length).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // One round, one job: the next waits out the pause.
    expect(rounds).toHaveLength(1);
    const final = ["job_1", "job_2", "job_3"].filter(
      (id) => verdictOf(store, id)?.verdict === "verified",
    );
    expect(final).toHaveLength(1);
    const started = performance.now();
    await v.stop();
    expect(performance.now() - started).toBeLessThan(1000);

    // With no request in its rounds the pacer asks for nothing: rounds follow each other.
    const idle = verifier(store, chain, {
      pacer: { roundStarts() {}, pauseAfter: () => 0 },
      options: { ...fast, claimBatchSize: 1 },
    });
    const summary = await idle.runUntilSettled({}, { timeoutMs: 10_000 });
    expect(summary).toMatchObject({ status: "completed", total: 3, final: 3 });
  });

  it("closes as abandoned the runs left running by a dead process, not those of a live one", async () => {
    const store = createTestStore();
    const chain = createFakeChain();
    const t = Date.now();
    const run = (owner: string) =>
      store.db
        .insert(verificationRuns)
        .values({ trigger: "verify", status: "running", startedAt: t - 60_000, owner })
        .returning({ id: verificationRuns.id })
        .get().id;
    const dead = run("verifier-killed-with-sigkill");
    const alive = run("verifier-other-live-process");
    store.sqlite
      .prepare("INSERT INTO locks (name, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?)")
      .run("verifier:verifier-other-live-process", "verifier-other-live-process", t, t + 60_000);
    const status = (id: number) =>
      store.db.select().from(verificationRuns).where(eq(verificationRuns.id, id)).get();
    const v = verifier(store, chain);
    v.start();
    await v.onIdle();
    expect(status(dead)).toMatchObject({ status: "abandoned", finishedAt: expect.any(Number) });
    expect(status(alive)?.status).toBe("running");
    await v.stop();
    // This verifier's own run was closed normally, and its heartbeat removed.
    const own = store.db
      .select()
      .from(verificationRuns)
      .all()
      .filter((r) => r.trigger === "serve");
    expect(own.map((r) => r.status)).toEqual(["completed"]);
    expect(store.sqlite.prepare("SELECT name FROM locks").pluck().all()).toEqual([
      "verifier:verifier-other-live-process",
    ]);
  });

  it("keeps a live process's run open when this host's clock steps past its heartbeat", async () => {
    const store = createTestStore();
    const chain = createFakeChain();
    const t = Date.now();
    // The test runner's parent runs on this host: the nightly `verify` beside `serve`.
    const owner = `verifier-nightly-pid${process.ppid}@${thisHost()}`;
    const id = store.db
      .insert(verificationRuns)
      .values({ trigger: "verify", status: "running", startedAt: t - 60_000, owner })
      .returning({ id: verificationRuns.id })
      .get().id;
    store.sqlite
      .prepare("INSERT INTO locks (name, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?)")
      .run(`verifier:${owner}`, owner, t, t + 60_000);
    // This process's clock stepped 10 min forward: the heartbeat reads as long expired.
    const v = verifier(store, chain, { now: () => Date.now() + 600_000 });
    v.start();
    await v.onIdle();
    await v.stop();
    const row = store.db.select().from(verificationRuns).where(eq(verificationRuns.id, id)).get();
    expect(row).toMatchObject({ status: "running", finishedAt: null });
    expect(store.sqlite.prepare("SELECT name FROM locks").pluck().all()).toEqual([
      `verifier:${owner}`,
    ]);
  });

  it("counts a drop's window on every endpoint: a first miss read on a lagging one is not dropped when the poll after it reads one 1,000 slots ahead", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1, slotsPerPoll: 1 });
    const a = honest("job_lagging_first", "lf");
    chain.land(a.escrow); // the settlement lands later, seconds after the receipt
    record(store, a.job);
    // The pool's first endpoint lags 1,000 slots; it answered the first miss's slot, then
    // failed once, and the second endpoint answered every poll after that.
    let slotReads = 0;
    const rpc: VerifierRpc = {
      ...chain.rpc,
      async getSlot() {
        slotReads++;
        return slotReads === 1 ? chain.slot - 1000 : chain.slot;
      },
      async findAnywhere() {
        return { found: new Map(), unanswered: [], lowestSlot: chain.slot - 1000 };
      },
    };
    const v = verifier(store, chain, { rpc });
    const first = await v.runUntilSettled({}, { timeoutMs: 1_500 });
    expect(slotReads).toBeGreaterThan(1);
    // A few slots after its first miss, the settlement is not called never landed.
    expect(first.byVerdict.dropped).toBe(0);
    expect(verdictOf(store, "job_lagging_first")?.lastError).toMatch(
      /finalized slots differ .* the drop waits/,
    );
    chain.land(a.settlement);
    const then = await v.runUntilSettled({}, { timeoutMs: 10_000 });
    expect(then.byVerdict.verified).toBe(1);
  });

  it("drops a signature that never lands though the first miss's slot read was a billion slots ahead of the chain", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1, slotsPerPoll: 100 });
    const a = honest("job_slot_lie", "sl");
    chain.land(a.escrow); // the settlement never lands
    record(store, a.job);
    // One node answered the first miss's getSlot with a slot no endpoint has; every read after
    // it is the chain's. Kept as the first miss's slot, it held the drop for good.
    let slotReads = 0;
    const rpc: VerifierRpc = {
      ...chain.rpc,
      async getSlot(commitment, options) {
        const slot = await chain.rpc.getSlot(commitment, options);
        return ++slotReads === 1 ? slot + 1_000_000_000 : slot;
      },
    };
    const summary = await verifier(store, chain, { rpc }).runUntilSettled(
      {},
      { timeoutMs: 10_000 },
    );
    expect(slotReads).toBeGreaterThan(1);
    expect(summary.byVerdict.dropped).toBe(1);
  });

  it("looks on every endpoint for as many signatures due to drop as a round may fetch, the others in later rounds", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1, slotsPerPoll: 100 });
    const phantoms = Array.from({ length: 6 }, (_, i) => honest(`job_ph${i}`, `ph${i}`));
    for (const j of phantoms) record(store, j.job); // neither transaction ever lands
    // Each look takes its time, as at the RPC's rate: asked for all twelve at once, one round
    // held every other job for the whole of it.
    const looks: number[] = [];
    const rpc: VerifierRpc = {
      ...chain.rpc,
      async findAnywhere(signatures) {
        looks.push(signatures.length);
        await new Promise((resolve) => setTimeout(resolve, 5 * signatures.length));
        return { found: new Map(), unanswered: [] };
      },
      // 40 requests a second, 0.05 s of fetching a round: two signatures a round.
      requestRate: () => 40,
    };
    const options = { ...fast, fetchConcurrency: 1, fetchSecondsPerRound: 0.05 };
    const summary = await verifier(store, chain, { rpc, options }).runUntilSettled(
      {},
      { timeoutMs: 10_000 },
    );
    expect(summary.byVerdict.dropped).toBe(6);
    expect(looks.reduce((a, b) => a + b, 0)).toBe(12);
    expect(Math.max(...looks)).toBe(2);
  });
});
