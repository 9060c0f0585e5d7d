import { afterEach, describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { openPostgres } from "../src/db/pg/client.js";
import { createJobsApiStore, type JobsApiAnswer } from "../src/store/jobs-api.js";
import { maxConflictSignatures } from "../src/store/receipt-rules.js";
import { createReceiptsStore, type Receipt } from "../src/store/receipts.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { address, jobId, signature } from "./support/recorder-fixtures.js";
import { readApiResponse, readJob, seedJob, updateJob } from "./support/seed-recorder.js";

function answer(overrides: Partial<JobsApiAnswer> = {}): JobsApiAnswer {
  return {
    status: "settled",
    creditsChargedUnits: 80_000n,
    escrowTx: signature(),
    settlementTx: signature(),
    worker: address(),
    raw: { id: "job", status: "settled" },
    ...overrides,
  };
}

describe.each(dialects)("jobs API answers store on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("stores a first answer, fills the missing settlement from it, ends the backfill and reopens the job", async () => {
    const store = await stores.open();
    const id = jobId();
    await seedJob(store, {
      jobId: id,
      settlementTx: null,
      backfillState: "pending",
      backfillNextAt: 0,
      verdict: "unverifiable",
      nextVerifyAt: 9_999_999,
      verifyAttempts: 2,
      lastError: "no settlement",
    });
    const a = answer({ raw: { id, status: "settled", extra: [1, 2] } });
    await createJobsApiStore(store).recordAnswer(id, a, 100);
    expect(await readJob(store, id)).toMatchObject({
      apiStatus: "settled",
      apiCreditsChargedUnits: 80_000n,
      apiEscrowTx: a.escrowTx,
      apiSettlementTx: a.settlementTx,
      apiWorker: a.worker,
      apiCheckedAt: 100,
      settlementTx: a.settlementTx,
      backfillState: "done",
      verdict: "pending",
      nextVerifyAt: 100,
      verifyAttempts: 0,
      lastError: null,
      updatedAt: 100,
    });
    expect(await readApiResponse(store, id)).toEqual({ id, status: "settled", extra: [1, 2] });
  });

  it("never overwrites a recorded settlement signature: a different one stays in the api column", async () => {
    const store = await stores.open();
    const id = jobId();
    const recorded = signature();
    await seedJob(store, { jobId: id, settlementTx: recorded, verdict: "verified" });
    const a = answer();
    await createJobsApiStore(store).recordAnswer(id, a, 100);
    expect(await readJob(store, id)).toMatchObject({
      settlementTx: recorded,
      apiSettlementTx: a.settlementTx,
      backfillState: null,
      verdict: "pending",
    });
  });

  it("makes a parked job due when the same answer comes again, without reopening it", async () => {
    const store = await stores.open();
    const id = jobId();
    await seedJob(store, { jobId: id, settlementTx: null, backfillState: "pending" });
    const a = answer({ status: "running", settlementTx: null });
    const answers = createJobsApiStore(store);
    await answers.recordAnswer(id, a, 100);
    expect(await readJob(store, id)).toMatchObject({
      backfillState: "pending",
      settlementTx: null,
    });
    await updateJob(store, id, {
      verdict: "awaiting_finality",
      nextVerifyAt: 5000,
      verifyAttempts: 4,
    });
    await answers.recordAnswer(id, a, 200);
    expect(await readJob(store, id)).toMatchObject({
      verdict: "awaiting_finality",
      nextVerifyAt: 200,
      verifyAttempts: 4,
      apiCheckedAt: 200,
    });
  });

  it("leaves a final verdict alone when nothing in the answer changed, and ends the backfill on a refund", async () => {
    const store = await stores.open();
    const id = jobId();
    await seedJob(store, { jobId: id, settlementTx: null, backfillState: "pending" });
    const refunded = answer({ status: "refunded", settlementTx: null });
    const answers = createJobsApiStore(store);
    await answers.recordAnswer(id, refunded, 100);
    expect(await readJob(store, id)).toMatchObject({ backfillState: "done", settlementTx: null });
    await updateJob(store, id, { verdict: "unverifiable", nextVerifyAt: 9_999_999 });
    await answers.recordAnswer(id, refunded, 200);
    expect(await readJob(store, id)).toMatchObject({
      verdict: "unverifiable",
      nextVerifyAt: 9_999_999,
    });
  });

  it("says which final verdict an answer coming after it sent back to be judged again, and none otherwise", async () => {
    const store = await stores.open();
    const id = jobId();
    // Verified before any answer came (a `verify` run holds none; serve's wait ran out).
    await seedJob(store, { jobId: id, backfillState: "pending", verdict: "verified" });
    const answers = createJobsApiStore(store);
    const settled = answer();
    expect(await answers.recordAnswer(id, settled, 100)).toBe("verified");
    expect(await readJob(store, id)).toMatchObject({ verdict: "pending" });
    // Judged again on it: the same answer again sends nothing back.
    await updateJob(store, id, { verdict: "verified" });
    expect(await answers.recordAnswer(id, settled, 200)).toBeNull();
    // A job not judged yet is judged on the answer the first time: nothing is sent back.
    const open = jobId();
    await seedJob(store, { jobId: open, backfillState: "pending", verdict: "awaiting_finality" });
    expect(await answers.recordAnswer(open, answer(), 300)).toBeNull();
  });

  it("keeps the latest answer's body apart from the job's row, and none for an answer without one", async () => {
    const store = await stores.open();
    const id = jobId();
    await seedJob(store, { jobId: id });
    const answers = createJobsApiStore(store);
    await answers.recordAnswer(id, answer({ raw: { id, extra: [1, 2] } }), 90);
    expect(await readApiResponse(store, id)).toEqual({ id, extra: [1, 2] });
    await answers.recordAnswer(id, answer({ raw: { id, extra: [3] } }), 95);
    expect(await readApiResponse(store, id)).toEqual({ id, extra: [3] });
    // Not the JSON text null: no body, no row.
    await answers.recordAnswer(id, answer({ raw: null, status: null }), 100);
    expect(await readApiResponse(store, id)).toBeUndefined();
    expect((await readJob(store, id))?.apiCheckedAt).toBe(100);
  });

  it("keeps a newer answer when an older one is committed after it", async () => {
    // The proxy and the settlement backfill may ask about one job at once; each answer is
    // stamped with the time it was received.
    const store = await stores.open();
    const id = jobId();
    await seedJob(store, { jobId: id, settlementTx: null, backfillState: "pending" });
    const answers = createJobsApiStore(store);
    const newer = answer({ status: "settled", raw: { id, status: "settled" } });
    await answers.recordAnswer(id, newer, 200);
    await answers.recordAnswer(
      id,
      answer({ status: "settling", settlementTx: null, raw: { id, status: "settling" } }),
      150,
    );
    expect(await readJob(store, id)).toMatchObject({
      apiStatus: "settled",
      apiSettlementTx: newer.settlementTx,
      apiCheckedAt: 200,
    });
    expect(await readApiResponse(store, id)).toEqual({ id, status: "settled" });
    // The same time again is not older: it is written.
    await answers.recordAnswer(id, answer({ status: "refunded", raw: { id } }), 200);
    expect((await readJob(store, id))?.apiStatus).toBe("refunded");
  });

  it("takes an answer that settles the job even when the row's answer is stamped later", async () => {
    // Another host's clock runs ahead: its unsettled answer must not hide this settlement.
    const store = await stores.open();
    const id = jobId();
    await seedJob(store, { jobId: id, settlementTx: null, backfillState: "pending" });
    const answers = createJobsApiStore(store);
    await answers.recordAnswer(id, answer({ status: "settling", settlementTx: null }), 5_000);
    const settled = answer({ status: "settled" });
    await answers.recordAnswer(id, settled, 1_000);
    expect(await readJob(store, id)).toMatchObject({
      apiStatus: "settled",
      apiSettlementTx: settled.settlementTx,
      settlementTx: settled.settlementTx,
      backfillState: "done",
      apiCheckedAt: 1_000,
    });
  });

  it("keeps the backfill asking after an answer naming the settlement with no final status", async () => {
    // "settling" (or a word the protocol does not list) with the settlement named ended the
    // backfill: the final status and credits_charged compared with the chain never came.
    const store = await stores.open();
    const id = jobId();
    await seedJob(store, { jobId: id, settlementTx: null, backfillState: "pending" });
    const answers = createJobsApiStore(store);
    const settling = answer({ status: "settling" });
    await answers.recordAnswer(id, settling, 1_000);
    expect(await readJob(store, id)).toMatchObject({
      apiStatus: "settling",
      settlementTx: settling.settlementTx,
      backfillState: "pending",
    });
    await answers.recordAnswer(id, answer({ status: "completed" }), 2_000);
    expect((await readJob(store, id))?.backfillState).toBe("pending");
    // A final answer stamped earlier (another host's clock) still ends it: the row's says less.
    const final = answer({ status: "settled", settlementTx: settling.settlementTx });
    await answers.recordAnswer(id, final, 1_500);
    expect(await readJob(store, id)).toMatchObject({
      apiStatus: "settled",
      backfillState: "done",
      apiCheckedAt: 1_500,
    });
  });

  it("leaves a waiting job's next poll alone when the answer names only its own signatures", async () => {
    // The proxy asks about every job just after recording it: a poll at once for an answer
    // that only confirms the receipt would learn nothing about the job's transactions.
    const store = await stores.open();
    const id = jobId();
    const escrowTx = signature();
    const settlementTx = signature();
    const waiting = {
      verdict: "awaiting_finality" as const,
      nextVerifyAt: 5_000,
      verifyAttempts: 0,
    };
    await seedJob(store, { jobId: id, escrowTx, settlementTx, ...waiting });
    const confirming = answer({ escrowTx, settlementTx, status: "settled" });
    await createJobsApiStore(store).recordAnswer(id, confirming, 100);
    expect(await readJob(store, id)).toMatchObject({
      ...waiting,
      apiStatus: "settled",
      apiEscrowTx: escrowTx,
      apiSettlementTx: settlementTx,
      apiCheckedAt: 100,
    });
  });

  it("writes the answer's worker only when it changes, so a repeated one fires no rollup trigger", async () => {
    // `api_worker` is a column of the rollup triggers and of the worker index: writing it
    // unchanged (no worker in the answer, as most answers) rewrote both on every answer.
    const store = await stores.open();
    const answers = createJobsApiStore(store);
    const id = jobId();
    const worker = address();
    await seedJob(store, { jobId: id, worker, apiWorker: null });
    const written = workerWrites(store);
    await answers.recordAnswer(id, answer({ worker: null }), 100);
    expect(await readJob(store, id)).toMatchObject({ worker, apiWorker: null, apiCheckedAt: 100 });
    if (written) expect(written()).toBe(0);
    const named = address();
    await answers.recordAnswer(id, answer({ worker: named }), 200);
    await answers.recordAnswer(id, answer({ worker: named }), 300);
    expect(await readJob(store, id)).toMatchObject({ apiWorker: named, apiCheckedAt: 300 });
    if (written) expect(written()).toBe(1);
  });

  it("reopens a waiting job when the answer names another signature, or a verifier holds it", async () => {
    const store = await stores.open();
    const answers = createJobsApiStore(store);
    const escrowTx = signature();
    const settlementTx = signature();
    const waiting = { verdict: "awaiting_finality" as const, nextVerifyAt: 5_000 };
    const another = jobId();
    await seedJob(store, { jobId: another, escrowTx, settlementTx, ...waiting });
    await answers.recordAnswer(another, answer({ escrowTx }), 100);
    // Held: the verifier's round may be reaching a final verdict on the row without the answer.
    const held = jobId();
    await seedJob(store, {
      jobId: held,
      escrowTx,
      settlementTx,
      ...waiting,
      leaseOwner: "verifier-1",
      leaseUntil: 9_000,
    });
    await answers.recordAnswer(held, answer({ escrowTx, settlementTx }), 100);
    for (const id of [another, held]) {
      expect(await readJob(store, id)).toMatchObject({
        verdict: "pending",
        nextVerifyAt: 100,
        leaseOwner: null,
      });
    }
  });

  it("sends back every judged job naming a signature a later answer stops naming", async () => {
    const store = await stores.open();
    const answers = createJobsApiStore(store);
    // The job's receipt names no escrow; its first answer names the lock, a replay names it
    // too and was judged while the job owned it (so the replay owned nothing).
    const lock = signature();
    const settlementTx = signature();
    const job = jobId();
    await seedJob(store, { jobId: job, escrowTx: null, settlementTx: null });
    await answers.recordAnswer(job, answer({ escrowTx: lock, settlementTx }), 100);
    const replay = jobId();
    await seedJob(store, {
      jobId: replay,
      escrowTx: lock,
      settlementTx,
      verdict: "discrepancy",
      nextVerifyAt: 9_999_999,
    });
    // A lock the job's receipt names stays the job's whatever the answers say.
    const own = signature();
    const receipted = jobId();
    await seedJob(store, { jobId: receipted, escrowTx: own, settlementTx: signature() });
    await answers.recordAnswer(receipted, answer({ escrowTx: own }), 100);
    const another = jobId();
    await seedJob(store, {
      jobId: another,
      escrowTx: own,
      settlementTx: signature(),
      verdict: "discrepancy",
      nextVerifyAt: 9_999_999,
    });
    // The later answers name no lock: the job no longer owns it, so the replay may.
    await answers.recordAnswer(job, answer({ escrowTx: null, settlementTx }), 200);
    await answers.recordAnswer(receipted, answer({ escrowTx: null }), 200);
    expect(await readJob(store, replay)).toMatchObject({ verdict: "pending", nextVerifyAt: 200 });
    expect(await readJob(store, another)).toMatchObject({
      verdict: "discrepancy",
      nextVerifyAt: 9_999_999,
    });
  });

  it("keeps a lock or closing an earlier answer named and a later one drops as the job's, and reopens it", async () => {
    const store = await stores.open();
    const answers = createJobsApiStore(store);
    const lock = signature();
    const settlementTx = signature();
    const job = jobId();
    await seedJob(store, { jobId: job, escrowTx: lock, settlementTx, verdict: "verified" });
    // One answer names a second payout and another lock; the next names the receipt's again.
    const payout = signature();
    const otherLock = signature();
    await answers.recordAnswer(job, answer({ escrowTx: otherLock, settlementTx: payout }), 100);
    expect(await readJob(store, job)).toMatchObject({ conflictSignatures: null });
    await updateJob(store, job, { verdict: "discrepancy", nextVerifyAt: 9_999_999 });
    await answers.recordAnswer(job, answer({ escrowTx: lock, settlementTx }), 200);
    expect(await readJob(store, job)).toMatchObject({
      conflictSignatures: [otherLock, payout],
      apiEscrowTx: lock,
      apiSettlementTx: settlementTx,
      settlementTx,
      verdict: "pending",
      nextVerifyAt: 200,
    });
    // The same answer again keeps them, once each.
    await answers.recordAnswer(job, answer({ escrowTx: lock, settlementTx }), 300);
    expect((await readJob(store, job))?.conflictSignatures).toEqual([otherLock, payout]);
  });

  it("keeps one step an answer drops past the followed signatures, as the mark that more were named", async () => {
    const store = await stores.open();
    const answers = createJobsApiStore(store);
    const lock = signature();
    const settlementTx = signature();
    const job = jobId();
    await seedJob(store, { jobId: job, escrowTx: lock, settlementTx, verdict: "verified" });
    const full = Array.from({ length: maxConflictSignatures }, () => signature());
    await updateJob(store, job, { conflictSignatures: full });
    // Two answers name payouts the next one drops: the first is kept, past it none.
    const [payout, another] = [signature(), signature()];
    await answers.recordAnswer(job, answer({ escrowTx: lock, settlementTx: payout }), 100);
    await answers.recordAnswer(job, answer({ escrowTx: lock, settlementTx: another }), 200);
    expect((await readJob(store, job))?.conflictSignatures).toEqual([...full, payout]);
    await answers.recordAnswer(job, answer({ escrowTx: lock, settlementTx }), 300);
    expect((await readJob(store, job))?.conflictSignatures).toEqual([...full, payout]);
  });

  it("keeps nothing when the answers go from pending to naming the settlement", async () => {
    const store = await stores.open();
    const answers = createJobsApiStore(store);
    const lock = signature();
    const settlementTx = signature();
    const job = jobId();
    await seedJob(store, { jobId: job, escrowTx: lock, settlementTx: null });
    await answers.recordAnswer(
      job,
      answer({ status: "pending", escrowTx: null, settlementTx: null }),
      100,
    );
    await answers.recordAnswer(job, answer({ escrowTx: lock, settlementTx: null }), 200);
    await answers.recordAnswer(job, answer({ escrowTx: lock, settlementTx }), 300);
    expect(await readJob(store, job)).toMatchObject({ conflictSignatures: null, settlementTx });
  });

  it("changes nothing for an unknown job id", async () => {
    const store = await stores.open();
    await createJobsApiStore(store).recordAnswer("job_unknown", answer(), 100);
    expect(await readJob(store, "job_unknown")).toBeUndefined();
  });
});

describe("jobs API answers store on postgres, beside a receipt from another process", () => {
  const stores = useDialectStores("postgres");
  const extra: Store[] = [];
  afterEach(async () => {
    for (const store of extra.splice(0)) await store.close();
  });

  it("keeps whichever settlement signature came first, never overwriting the receipt's", async () => {
    const a = await stores.open();
    const b = openPostgres(stores.lastUrl, { poolSize: 4, statementTimeoutMs: 30_000 });
    extra.push(b);
    // 80 transactions take the receipt writers' turn one after another on two pools of 4: the
    // last waits for a free connection for as long as the others hold theirs (test/pg-pool-wait).
    const incomplete: Receipt[] = Array.from({ length: 40 }, () => ({
      jobId: jobId(),
      escrowTx: signature(),
      settlementTx: null,
      worker: address(),
      creditsRemainingUnits: 1n,
      model: "m",
      promptTokens: 1,
      completionTokens: 1,
      totalTokens: 2,
    }));
    await createReceiptsStore(a).record(incomplete, "ingest");
    const fromReceipt = incomplete.map(() => signature());
    const fromApi = incomplete.map(() => answer());
    const results = await Promise.all(
      incomplete.map((r, i) =>
        Promise.all([
          createReceiptsStore(a).record([{ ...r, settlementTx: fromReceipt[i] ?? null }], "ingest"),
          createJobsApiStore(b).recordAnswer(r.jobId, fromApi[i] as JobsApiAnswer, 100),
        ]),
      ),
    );
    for (const [i, [[result]]] of results.entries()) {
      const row = await readJob(a, incomplete[i]?.jobId as string);
      // The receipt came first: it filled the signature, the answer's went to the api column.
      // The answer came first: the receipt then disagreed with the signature it had filled.
      expect(row?.settlementTx).toBe(
        result?.outcome === "updated" ? fromReceipt[i] : fromApi[i]?.settlementTx,
      );
      expect(result?.outcome).toMatch(/^(updated|conflict)$/);
      expect(row?.apiSettlementTx).toBe(fromApi[i]?.settlementTx);
    }
  });
});

/**
 * How many times `api_worker` has been written since (SQLite: a temporary trigger on the
 * store's connection counts them); null on PostgreSQL, whose rollup triggers fire per statement.
 */
function workerWrites(store: Store): (() => number) | null {
  if (store.kind !== "sqlite") return null;
  store.sqlite.exec(`CREATE TEMP TABLE IF NOT EXISTS worker_writes (job_id TEXT);
    DELETE FROM worker_writes;
    CREATE TEMP TRIGGER IF NOT EXISTS count_worker_writes AFTER UPDATE OF api_worker ON main.jobs
    BEGIN INSERT INTO worker_writes VALUES (new.job_id); END`);
  const count = store.sqlite.prepare("SELECT count(*) FROM worker_writes").pluck();
  return () => count.get() as number;
}
