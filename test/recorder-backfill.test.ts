import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { jobs } from "../src/db/schema.js";
import { type JobsApiAnswer, JobsApiError, recordJobsApiAnswer } from "../src/recorder/jobs-api.js";
import { keyFingerprint } from "../src/recorder/proxy.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { recordReceipt } from "../src/recorder/receipts.js";
import { backoffDelay, createSettlementBackfill } from "../src/recorder/settlement-backfill.js";
import {
  address,
  capturedLogger,
  jobId,
  processingAnswer,
  signature,
} from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

const apiKey = "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345";

function answer(overrides: Partial<JobsApiAnswer> = {}): JobsApiAnswer {
  return { ...processingAnswer(), ...overrides };
}

/** A store holding one streamed job recorded at t=1000 ms without its settlement. */
function storeWithStreamedJob() {
  const store = createTestStore();
  const id = jobId();
  recordReceipt(
    store,
    {
      jobId: id,
      escrowTx: signature(),
      settlementTx: null,
      worker: address(),
      creditsRemainingUnits: null,
      model: null,
      promptTokens: null,
      completionTokens: null,
      totalTokens: null,
    },
    "ingest",
    { now: 1_000 },
  );
  return { store, id };
}

/** A store holding one streamed job without settlement, and a clock the test moves. */
function setup(
  jobsApi: (id: string, authorization: string, signal?: AbortSignal) => Promise<JobsApiAnswer>,
) {
  const { store, id } = storeWithStreamedJob();
  let clock = 1_000;
  const { log, lines } = capturedLogger();
  const backfill = createSettlementBackfill({
    store,
    log,
    jobsApi,
    apiKey,
    now: () => clock,
    baseDelayMs: 100,
    maxDelayMs: 1_000,
    maxAttempts: 4,
  });
  const row = () => store.db.select().from(jobs).where(eq(jobs.jobId, id)).get();
  return { backfill, row, lines, advance: (ms: number) => (clock += ms) };
}

describe("settlement backfill", () => {
  it("asks again with backoff until the jobs API names the settlement, then stops", async () => {
    const settlement = signature();
    const answers = [
      answer(),
      answer({ status: "settling" }),
      answer({ status: "settled", settlementTx: settlement }),
    ];
    const seen: string[] = [];
    const { backfill, row, advance, lines } = setup(async (_id, authorization) => {
      seen.push(authorization);
      return answers.shift() ?? answer();
    });
    expect(await backfill.runOnce()).toBe(1);
    expect(row()).toMatchObject({
      backfillState: "pending",
      backfillAttempts: 1,
      backfillNextAt: 1_100,
      apiStatus: "processing",
    });
    // Not due yet: nothing asked.
    expect(await backfill.runOnce()).toBe(0);
    advance(100);
    expect(await backfill.runOnce()).toBe(1);
    expect(row()?.backfillNextAt).toBe(1_300);
    advance(200);
    expect(await backfill.runOnce()).toBe(1);
    expect(row()).toMatchObject({
      backfillState: "done",
      settlementTx: settlement,
      apiSettlementTx: settlement,
    });
    advance(10_000);
    expect(await backfill.runOnce()).toBe(0);
    expect(seen).toEqual([`Bearer ${apiKey}`, `Bearer ${apiKey}`, `Bearer ${apiKey}`]);
    expect(lines.join("\n")).not.toContain(apiKey);
  });

  it("stops at once while the jobs API never answers, the job still pending", async () => {
    let asked: () => void = () => {};
    const calling = new Promise<void>((resolve) => {
      asked = resolve;
    });
    // As the real client does: no answer until its 10 s timeout, unless the call is aborted.
    const { backfill, row } = setup(
      (_id, _authorization, signal) =>
        new Promise<JobsApiAnswer>((_resolve, reject) => {
          asked();
          const timeout = setTimeout(() => reject(new JobsApiError("timeout", null, true)), 10_000);
          signal?.addEventListener("abort", () => {
            clearTimeout(timeout);
            reject(new JobsApiError("jobs API call aborted", null, true));
          });
        }),
    );
    backfill.start();
    await calling;
    const started = performance.now();
    await backfill.stop();
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(row()).toMatchObject({ backfillState: "pending", backfillAttempts: 1 });
  });

  it("stops at a refund without a settlement", async () => {
    const { backfill, row } = setup(async () => answer({ status: "refunded" }));
    await backfill.runOnce();
    expect(row()).toMatchObject({
      backfillState: "done",
      settlementTx: null,
      apiStatus: "refunded",
    });
  });

  it("gives up after its attempts, and at once when the jobs API refuses the key", async () => {
    const flaky = setup(async () => {
      throw new JobsApiError("jobs API answered 503", 503, true);
    });
    for (let i = 0; i < 4; i++) {
      await flaky.backfill.runOnce();
      flaky.advance(1_000);
    }
    expect(flaky.row()).toMatchObject({ backfillState: "gave_up", backfillAttempts: 4 });

    const refused = setup(async () => {
      throw new JobsApiError("jobs API answered 404", 404, false);
    });
    await refused.backfill.runOnce();
    expect(refused.row()).toMatchObject({ backfillState: "gave_up", backfillAttempts: 1 });
  });

  it("gives up at once, and says so, when no DECENTRAL_API_KEY is configured", async () => {
    const { store, id } = storeWithStreamedJob();
    const { log, lines } = capturedLogger();
    const asked: string[] = [];
    const backfill = createSettlementBackfill({
      store,
      log,
      jobsApi: async (jobId) => {
        asked.push(jobId);
        return answer();
      },
      now: () => 10 * 60_000,
    });
    expect(await backfill.runOnce()).toBe(1);
    expect(asked).toEqual([]);
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, id)).get();
    expect(row?.backfillState).toBe("gave_up");
    expect(lines.join("\n")).toContain("no backfill key for these jobs' API keys");
  });

  it("asks about each job with its own caller's key from DECENTRAL_API_KEYS, else the fallback", async () => {
    const store = createTestStore();
    const callerA = "dcntrl_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const callerB = "dcntrl_live_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    const stranger = "dcntrl_live_CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
    const jobOf: Record<string, string> = {};
    for (const key of [callerA, callerB, stranger]) {
      const id = jobId();
      jobOf[id] = key;
      recordReceipt(
        store,
        {
          jobId: id,
          escrowTx: signature(),
          settlementTx: null,
          worker: address(),
          creditsRemainingUnits: null,
          model: null,
          promptTokens: null,
          completionTokens: null,
          totalTokens: null,
          keyFingerprint: keyFingerprint(`Bearer ${key}`),
        },
        "proxy",
        { now: 1_000 },
      );
    }
    const { log, lines } = capturedLogger();
    const askedWith = new Map<string, string>();
    const backfill = createSettlementBackfill({
      store,
      log,
      jobsApi: async (id, authorization) => {
        askedWith.set(id, authorization);
        return answer({ status: "settled", settlementTx: signature() });
      },
      apiKeys: [callerA, callerB],
      apiKey,
      // As `serve` runs it: writes through the proxy's receipt writer.
      writer: createReceiptWriter(store, { log }),
      now: () => 10 * 60_000,
    });
    expect(await backfill.runOnce()).toBe(3);
    for (const [id, key] of Object.entries(jobOf)) {
      expect(askedWith.get(id)).toBe(`Bearer ${key === stranger ? apiKey : key}`);
    }
    const states = store.db.select().from(jobs).all();
    expect(states.map((j) => [j.backfillState, j.settlementTx !== null])).toEqual([
      ["done", true],
      ["done", true],
      ["done", true],
    ]);
    expect(lines.join("\n")).not.toMatch(/dcntrl_live_[A-C]/);
  });

  it("makes a job parked for its settlement due for verification when the answer arrives", () => {
    const { store, id } = storeWithStreamedJob();
    // The verifier parked it until the backfill would be due.
    store.db.update(jobs).set({ nextVerifyAt: 60_000 }).where(eq(jobs.jobId, id)).run();
    const settlement = signature();
    recordJobsApiAnswer(store, id, answer({ status: "settled", settlementTx: settlement }), 2_000);
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, id)).get();
    expect(row?.settlementTx).toBe(settlement);
    expect(row?.nextVerifyAt).toBe(2_000);
  });

  it("doubles its delay up to the cap", () => {
    expect([0, 1, 2, 3, 10].map((n) => backoffDelay(n, 100, 1_000))).toEqual([
      100, 200, 400, 800, 1_000,
    ]);
  });
});
