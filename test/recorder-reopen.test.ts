import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { SqliteStore } from "../src/db/client.js";
import { jobs } from "../src/db/schema.js";
import { type JobsApiAnswer, recordJobsApiAnswer } from "../src/recorder/jobs-api.js";
import { type Receipt, recordReceipt } from "../src/recorder/receipts.js";
import { address, jobId, signature } from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

const queue = (store: SqliteStore, id: string) =>
  store.db
    .select({
      verdict: jobs.verdict,
      nextVerifyAt: jobs.nextVerifyAt,
      verifyAttempts: jobs.verifyAttempts,
      leaseOwner: jobs.leaseOwner,
    })
    .from(jobs)
    .where(eq(jobs.jobId, id))
    .get();

/** Puts a job where a verifier left it: a verdict, attempts, a lease and a later due time. */
function verifiedAndLeased(
  store: SqliteStore,
  id: string,
  verdict: "verified" | "awaiting_finality",
) {
  store.db
    .update(jobs)
    .set({ verdict, nextVerifyAt: 90_000, verifyAttempts: 3, leaseOwner: "v1", leaseUntil: 99_000 })
    .where(eq(jobs.jobId, id))
    .run();
}

function receipt(overrides: Partial<Receipt> = {}): Receipt {
  return {
    jobId: jobId(),
    escrowTx: signature(),
    settlementTx: null,
    worker: address(),
    creditsRemainingUnits: null,
    model: "qwen3-8b",
    promptTokens: 1,
    completionTokens: 2,
    totalTokens: 3,
    ...overrides,
  };
}

const settled = (r: Receipt, settlementTx: string): JobsApiAnswer => ({
  status: "settled",
  creditsChargedUnits: 80_000n,
  escrowTx: r.escrowTx,
  settlementTx,
  worker: r.worker,
  raw: { status: "settled" },
});

describe("a job goes back to the verifier's queue when what its checks see changes", () => {
  it("a receipt that gains a field reopens its job and drops the lease", async () => {
    const store = createTestStore();
    const r = receipt();
    await recordReceipt(store, r, "ingest", { now: 1_000 });
    verifiedAndLeased(store, r.jobId, "verified");
    await recordReceipt(store, { ...r, settlementTx: signature() }, "ingest", { now: 2_000 });
    expect(queue(store, r.jobId)).toEqual({
      verdict: "pending",
      nextVerifyAt: 2_000,
      verifyAttempts: 0,
      leaseOwner: null,
    });
  });

  it("a job no verifier has touched yet stays as it is: it is already due", async () => {
    const store = createTestStore();
    const r = receipt({ captureState: "open" });
    await recordReceipt(store, r, "proxy", { now: 1_000 });
    await recordReceipt(store, { ...r, captureState: "complete" }, "proxy", { now: 2_000 });
    await recordJobsApiAnswer(store, r.jobId, settled(r, signature()), 3_000);
    expect(queue(store, r.jobId)).toEqual({
      verdict: "pending",
      nextVerifyAt: 0,
      verifyAttempts: 0,
      leaseOwner: null,
    });
  });

  it("the same receipt again leaves the verifier's state alone", async () => {
    const store = createTestStore();
    const r = receipt();
    await recordReceipt(store, r, "ingest", { now: 1_000 });
    verifiedAndLeased(store, r.jobId, "verified");
    await recordReceipt(store, r, "ingest", { now: 2_000 });
    expect(queue(store, r.jobId)?.verdict).toBe("verified");
  });

  it("a changed jobs-API answer reopens the job; the same answer again does not", async () => {
    const store = createTestStore();
    const r = receipt();
    await recordReceipt(store, r, "ingest", { now: 1_000 });
    verifiedAndLeased(store, r.jobId, "verified");
    const answer = settled(r, signature());
    await recordJobsApiAnswer(store, r.jobId, answer, 2_000);
    expect(queue(store, r.jobId)).toEqual({
      verdict: "pending",
      nextVerifyAt: 2_000,
      verifyAttempts: 0,
      leaseOwner: null,
    });
    verifiedAndLeased(store, r.jobId, "verified");
    await recordJobsApiAnswer(store, r.jobId, answer, 3_000);
    expect(queue(store, r.jobId)).toEqual({
      verdict: "verified",
      nextVerifyAt: 90_000,
      verifyAttempts: 3,
      leaseOwner: "v1",
    });
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, r.jobId)).get();
    expect(row).toMatchObject({
      settlementTx: answer.settlementTx,
      apiCheckedAt: 3_000,
      backfillState: "done",
    });
  });

  it("the same answer for a job not yet final makes it due now without reopening it", async () => {
    const store = createTestStore();
    const r = receipt();
    await recordReceipt(store, r, "ingest", { now: 1_000 });
    const answer = settled(r, signature());
    await recordJobsApiAnswer(store, r.jobId, answer, 2_000);
    verifiedAndLeased(store, r.jobId, "awaiting_finality");
    await recordJobsApiAnswer(store, r.jobId, answer, 3_000);
    expect(queue(store, r.jobId)).toEqual({
      verdict: "awaiting_finality",
      nextVerifyAt: 3_000,
      verifyAttempts: 3,
      leaseOwner: "v1",
    });
  });

  it("a recorded settlement signature is never overwritten by the jobs API's", async () => {
    const store = createTestStore();
    const recorded = signature();
    const r = receipt({ settlementTx: recorded });
    await recordReceipt(store, r, "ingest", { now: 1_000 });
    await recordJobsApiAnswer(store, r.jobId, settled(r, signature()), 2_000);
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, r.jobId)).get();
    expect(row?.settlementTx).toBe(recorded);
    expect(row?.apiSettlementTx).not.toBe(recorded);
  });

  // Each namer alone, so that no other one reopens it along: every column the namers are read
  // from must be looked at, by whatever decides that a receipt has namers to reopen.
  it.each(["escrowTx", "settlementTx", "apiEscrowTx", "apiSettlementTx"] as const)(
    "a new receipt naming a signature reopens a judged job naming it as %s",
    async (column) => {
      const store = createTestStore();
      const named = signature();
      const other = receipt({ settlementTx: signature() });
      await recordReceipt(store, other, "ingest", { now: 1_000 });
      store.db
        .update(jobs)
        .set({ [column]: named })
        .where(eq(jobs.jobId, other.jobId))
        .run();
      verifiedAndLeased(store, other.jobId, "verified");
      store.db
        .update(jobs)
        .set({ leaseOwner: null, leaseUntil: null })
        .where(eq(jobs.jobId, other.jobId))
        .run();
      const fresh = receipt(
        column.endsWith("scrowTx") ? { escrowTx: named } : { settlementTx: named },
      );
      expect(await recordReceipt(store, fresh, "proxy", { now: 2_000 })).toEqual({
        outcome: "created",
      });
      expect(queue(store, other.jobId)).toEqual({
        verdict: "pending",
        nextVerifyAt: 2_000,
        verifyAttempts: 0,
        leaseOwner: null,
      });
    },
  );

  it("a new receipt reopens an open job held by a verifier that names its signature, not a free one", async () => {
    const store = createTestStore();
    const held = receipt();
    const free = receipt({ escrowTx: signature() });
    await recordReceipt(store, held, "ingest", { now: 1_000 });
    await recordReceipt(store, { ...free, settlementTx: held.escrowTx }, "ingest", { now: 1_000 });
    verifiedAndLeased(store, held.jobId, "awaiting_finality");
    await recordReceipt(store, receipt({ escrowTx: held.escrowTx }), "proxy", { now: 2_000 });
    expect(queue(store, held.jobId)).toEqual({
      verdict: "pending",
      nextVerifyAt: 2_000,
      verifyAttempts: 0,
      leaseOwner: null,
    });
    expect(queue(store, free.jobId)).toEqual({
      verdict: "pending",
      nextVerifyAt: 0,
      verifyAttempts: 0,
      leaseOwner: null,
    });
  });
});
