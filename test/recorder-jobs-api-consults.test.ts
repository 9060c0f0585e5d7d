import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { type JobsApiAnswer, JobsApiError } from "../src/recorder/jobs-api.js";
import { createJobsApiConsults } from "../src/recorder/jobs-api-consults.js";
import type { ReceiptWriter } from "../src/recorder/receipt-writer.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { createSettlementBackfill } from "../src/recorder/settlement-backfill.js";
import { capturedLogger, jobId, signature } from "./support/recorder-fixtures.js";
import { readJob, seedJob } from "./support/seed-recorder.js";
import { createTestStore } from "./support/store.js";

const settled: JobsApiAnswer = {
  status: "settled",
  creditsChargedUnits: 42_000n,
  escrowTx: null,
  settlementTx: "5".repeat(88),
  worker: null,
  raw: {},
};
const unsettled: JobsApiAnswer = { ...settled, status: "settling", settlementTx: null };

/**
 * A writer that records each unit it is given and whether it came in the same event-loop turn
 * as the first one of its turn's group (a macrotask between two runs starts a new turn).
 */
function recordingWriter(fail: () => boolean = () => false) {
  const turns: number[] = [];
  let turn = 0;
  let open = false;
  const writer = {
    async run() {
      if (fail()) throw new Error("database unreachable");
      if (!open) {
        open = true;
        turn++;
        setImmediate(() => {
          open = false;
        });
      }
      turns.push(turn);
    },
  } as unknown as ReceiptWriter;
  return { writer, turns };
}

function setup(
  answer: (jobId: string, attempt: number) => Promise<JobsApiAnswer>,
  options: {
    batchMs?: number;
    batchMax?: number;
    batchWaitMs?: number;
    retryDelaysMs?: number[];
    writerFails?: () => boolean;
  } = {},
) {
  const calls: { jobId: string; authorization: string; at: number }[] = [];
  const started = performance.now();
  const { writer, turns } = recordingWriter(options.writerFails);
  const consults = createJobsApiConsults({
    jobsApi: (jobId, authorization) => {
      calls.push({ jobId, authorization, at: performance.now() - started });
      return answer(jobId, calls.filter((c) => c.jobId === jobId).length);
    },
    writer,
    log: capturedLogger().log,
    now: Date.now,
    retryDelaysMs: options.retryDelaysMs ?? [5, 5, 5],
    batchMs: options.batchMs ?? 20,
    batchMax: options.batchMax ?? 64,
    batchWaitMs: options.batchWaitMs ?? 200,
  });
  return { consults, calls, turns };
}

describe("the proxy's jobs API questions", () => {
  it("asks about jobs in batches and hands a batch's answers to the writer in one turn", async () => {
    // Answers come back at different times; they are still written together.
    const { consults, calls, turns } = setup(async () => {
      await sleep(Math.floor(Math.random() * 8));
      return settled;
    });
    for (let i = 0; i < 10; i++) consults.ask(`job_${i}`, "Bearer dcntrl_live_k");
    expect(calls).toHaveLength(0); // nothing goes before the batch does
    await consults.drain();
    expect(calls.map((c) => c.jobId)).toEqual(Array.from({ length: 10 }, (_, i) => `job_${i}`));
    expect(new Set(calls.map((c) => c.authorization))).toEqual(new Set(["Bearer dcntrl_live_k"]));
    expect(turns).toHaveLength(10);
    expect(new Set(turns).size).toBe(1);
    expect(consults.waiting()).toBe(0);
  });

  it("asks a batch once it is full or its first job has waited batchMs", async () => {
    const { consults, calls } = setup(async () => settled, { batchMs: 300, batchMax: 3 });
    consults.ask("job_a", "Bearer k");
    await sleep(20);
    expect(calls).toHaveLength(0);
    await sleep(400);
    expect(calls.map((c) => c.jobId)).toEqual(["job_a"]);
    expect(calls[0]!.at).toBeGreaterThanOrEqual(299);
    consults.ask("job_b", "Bearer k");
    consults.ask("job_c", "Bearer k");
    consults.ask("job_d", "Bearer k");
    expect(calls.map((c) => c.jobId)).toEqual(["job_a", "job_b", "job_c", "job_d"]);
    await consults.drain();
  });

  it("drains a waiting batch at once instead of waiting for its time", async () => {
    const { consults, calls, turns } = setup(async () => settled, { batchMs: 60_000 });
    consults.ask("job_a", "Bearer k");
    await consults.drain(); // would wait a minute for the batch's time
    expect(calls).toHaveLength(1);
    expect(turns).toHaveLength(1);
  });

  it("asks again after each retry delay while no settlement is named, and stops at one", async () => {
    const { consults, calls, turns } = setup(
      async (jobId, attempt) => (jobId === "job_never" || attempt < 3 ? unsettled : settled),
      { retryDelaysMs: [30, 30, 30] },
    );
    consults.ask("job_late", "Bearer k");
    consults.ask("job_never", "Bearer k");
    // Not drained: the retries wait for their delay and then for their batch, as in service.
    const deadline = performance.now() + 5_000;
    while (consults.waiting() > 0 && performance.now() < deadline) await sleep(10);
    expect(consults.waiting()).toBe(0);
    // job_late: unsettled twice, settled the third time; job_never: the first ask and 3 retries.
    expect(calls.filter((c) => c.jobId === "job_late")).toHaveLength(3);
    expect(calls.filter((c) => c.jobId === "job_never")).toHaveLength(4);
    // Every answer is recorded, settled or not, and job_never, out of retries, is left to the
    // settlement backfill in one more write.
    expect(turns).toHaveLength(8);
    const late = calls.filter((c) => c.jobId === "job_late").map((c) => c.at);
    expect(late[1]! - late[0]!).toBeGreaterThanOrEqual(25);
  });

  // An answer naming the settlement ended the questions, whatever its status: the final status
  // and credits_charged that jobs_api.matches_chain compares with the chain never came.
  it.each(["settling", "completed"])(
    "asks again while the answer says %j with the settlement named, and stops at a final status",
    async (status) => {
      const naming = { ...settled, status };
      const { consults, calls, turns } = setup(
        async (jobId, attempt) => (jobId === "job_never" || attempt < 2 ? naming : settled),
        { retryDelaysMs: [50, 50, 50] },
      );
      consults.ask("job_late", "Bearer k");
      consults.ask("job_never", "Bearer k");
      await consults.drain();
      expect(consults.waiting()).toBe(0);
      expect(calls.filter((c) => c.jobId === "job_late")).toHaveLength(2);
      // Out of retries without a final status: left to the settlement backfill (one more write).
      expect(calls.filter((c) => c.jobId === "job_never")).toHaveLength(4);
      expect(turns).toHaveLength(7);
    },
  );

  it("asks once about a job whose first answer is final", async () => {
    const { consults, calls } = setup(async () => settled, { retryDelaysMs: [50, 50, 50] });
    consults.ask("job_a", "Bearer k");
    consults.ask("job_b", "Bearer k");
    await consults.drain();
    expect(calls).toHaveLength(2);
  });

  it("makes no more retries once finishing, so a stopping proxy does not wait for them", async () => {
    const { consults, calls } = setup(async () => unsettled, { retryDelaysMs: [2000, 2000] });
    consults.ask("job_a", "Bearer k");
    // Asked within its batch's 20 ms; its answer named no settlement: a retry waits 2 s.
    await sleep(300);
    expect(calls).toHaveLength(1);
    const started = performance.now();
    await consults.finish();
    expect(performance.now() - started).toBeLessThan(1000);
    expect(consults.waiting()).toBe(0);
    expect(calls).toHaveLength(1);
  });

  it("writes the answers in by the batch's wait without waiting for a slow call", async () => {
    const { consults, calls, turns } = setup(
      async (jobId) => {
        if (jobId === "job_slow") await sleep(1_500);
        return settled;
      },
      { batchWaitMs: 50 },
    );
    consults.ask("job_fast", "Bearer k");
    consults.ask("job_slow", "Bearer k");
    const drained = consults.drain();
    await sleep(600);
    expect(calls).toHaveLength(2);
    expect(turns).toHaveLength(1); // job_fast's answer, written while job_slow's call goes on
    await drained;
    expect(turns).toHaveLength(2);
  });

  it("asks again when an answer could not be written", async () => {
    let failures = 1;
    const { consults, calls, turns } = setup(async () => settled, {
      writerFails: () => failures-- > 0,
    });
    consults.ask("job_a", "Bearer k");
    await consults.drain();
    expect(calls).toHaveLength(2);
    expect(turns).toHaveLength(1);
  });

  it("settles a question whose answer the writer keeps while the database refuses writes", async () => {
    const calls: string[] = [];
    let write!: () => void;
    // The receipt writer's answer once the database refused a write for its time: kept in
    // memory, written when the database takes writes again (here: never, within the test).
    const writer = {
      run(_unit: unknown, options?: { keep?: () => void }) {
        setTimeout(() => options?.keep?.(), 10);
        return new Promise<void>((resolve) => {
          write = resolve;
        });
      },
    } as unknown as ReceiptWriter;
    const consults = createJobsApiConsults({
      jobsApi: async (jobId) => {
        calls.push(jobId);
        return settled;
      },
      writer,
      log: capturedLogger().log,
      now: Date.now,
      retryDelaysMs: [5, 5, 5],
      batchMs: 20,
      batchMax: 64,
      batchWaitMs: 200,
    });
    consults.ask("job_a", "Bearer k");
    // The answer is in hand: not asked again, and a stop does not wait for the database.
    const drained = await Promise.race([consults.drain().then(() => true), sleep(2000)]);
    expect(drained).toBe(true);
    expect(calls).toEqual(["job_a"]);
    write();
  });

  it("settles the batch of a client that throws at once, asking the others", async () => {
    const { consults, turns } = setup((jobId) => {
      if (jobId === "job_bad") throw new Error("client bug");
      return Promise.resolve(settled);
    });
    consults.ask("job_bad", "Bearer k");
    consults.ask("job_ok", "Bearer k");
    await consults.drain();
    // job_ok's answer, and job_bad left to the settlement backfill once out of retries.
    expect(turns).toHaveLength(2);
    expect(consults.waiting()).toBe(0);
  });

  it("stops at a refusal of the caller's key and retries what may pass", async () => {
    const { consults, calls, turns } = setup(async (jobId, attempt) => {
      if (jobId === "job_refused") throw new JobsApiError("jobs API answered 401", 401, false);
      if (attempt === 1) throw new JobsApiError("jobs API answered 503", 503, true);
      return settled;
    });
    consults.ask("job_refused", "Bearer k");
    consults.ask("job_busy", "Bearer k");
    await consults.drain();
    expect(calls.filter((c) => c.jobId === "job_refused")).toHaveLength(1);
    expect(calls.filter((c) => c.jobId === "job_busy")).toHaveLength(2);
    expect(turns).toHaveLength(1);
  });

  it("stamps each answer with the time it was received, not the time of its commit", async () => {
    const store = createTestStore();
    const log = capturedLogger().log;
    const writer = createReceiptWriter(store, { log });
    const [fast, slow] = [jobId(), jobId()];
    for (const id of [fast, slow]) {
      await seedJob(store, { jobId: id, settlementTx: null, backfillState: "pending" });
    }
    let clock = 1_000;
    const consults = createJobsApiConsults({
      // The fast answer is received at 1,000; the batch is written when the slow one comes.
      jobsApi: async (id) => {
        if (id === slow) {
          await sleep(10);
          clock = 9_000;
          await sleep(40);
        }
        return settled;
      },
      writer,
      log,
      now: () => clock,
      retryDelaysMs: [],
      batchMs: 0,
    });
    consults.ask(fast, "Bearer k");
    consults.ask(slow, "Bearer k");
    await consults.drain();
    expect((await readJob(store, fast))?.apiCheckedAt).toBe(1_000);
    expect((await readJob(store, slow))?.apiCheckedAt).toBe(9_000);
    await writer.close();
    store.sqlite.close();
  });

  it("leaves a job whose questions all failed to the backfill while it runs, not only at a stop", async () => {
    const store = createTestStore();
    const { log } = capturedLogger();
    const writer = createReceiptWriter(store, { log });
    // A proxied job whose receipt names its settlement: nothing but this question would ever
    // ask the jobs API about it, and only the answer names a second settlement.
    const id = jobId();
    await seedJob(store, { jobId: id, source: "proxy", settlementTx: signature() });
    // The jobs API is down for the few seconds the questions take.
    const consults = createJobsApiConsults({
      jobsApi: () => Promise.reject(new JobsApiError("HTTP 503", 503, true)),
      writer,
      log,
      now: () => 7_000,
      retryDelaysMs: [10, 10],
      batchMs: 0,
    });
    consults.ask(id, "Bearer k");
    await consults.drain();
    expect(await readJob(store, id)).toMatchObject({
      backfillState: "pending",
      backfillNextAt: 7_000,
    });
  });

  it("leaves a job answered settling to the backfill, which asks until a final status, then gives up", async () => {
    const store = createTestStore();
    const { log } = capturedLogger();
    const writer = createReceiptWriter(store, { log });
    const [ending, never] = [jobId(), jobId()];
    for (const id of [ending, never]) {
      await seedJob(store, { jobId: id, source: "proxy", settlementTx: signature() });
    }
    const naming = { ...settled, status: "settling" };
    const consults = createJobsApiConsults({
      jobsApi: async () => naming,
      writer,
      log,
      now: () => 5_000,
      retryDelaysMs: [10],
      batchMs: 0,
    });
    for (const id of [ending, never]) consults.ask(id, "Bearer k");
    await consults.drain();
    for (const id of [ending, never]) {
      expect(await readJob(store, id)).toMatchObject({
        backfillState: "pending",
        apiStatus: "settling",
      });
    }
    let clock = 6_000;
    const backfill = createSettlementBackfill({
      store,
      log,
      writer,
      apiKey: "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345",
      jobsApi: async (id) => (id === ending && clock > 6_000 ? settled : naming),
      now: () => clock,
      baseDelayMs: 1_000,
      maxAttempts: 3,
    });
    for (; clock < 40_000; clock += 10_000) await backfill.runOnce();
    expect(await readJob(store, ending)).toMatchObject({
      backfillState: "done",
      apiStatus: "settled",
    });
    expect(await readJob(store, never)).toMatchObject({
      backfillState: "gave_up",
      apiStatus: "settling",
      backfillAttempts: 3,
    });
    await writer.close();
    store.sqlite.close();
  });

  it("stops within its bound on a jobs API that never answers, leaving the jobs to the backfill", async () => {
    const store = createTestStore();
    const { log } = capturedLogger();
    const writer = createReceiptWriter(store, { log });
    // Proxied jobs whose receipts name their settlement: the backfill would never ask about
    // them, and a second settlement is named only by the jobs API.
    const [inFlight, retrying, late, done] = [jobId(), jobId(), jobId(), jobId()];
    for (const id of [inFlight, retrying, late]) {
      await seedJob(store, { jobId: id, source: "proxy", settlementTx: signature() });
    }
    await seedJob(store, { jobId: done, source: "proxy", backfillState: "done" });
    // The jobs API answers `retrying` (naming no settlement) and then hangs on every call, as
    // the real client does until its 10 s timeout, unless the call is aborted.
    let hang = false;
    const consults = createJobsApiConsults({
      jobsApi: (_id, _authorization, signal) => {
        if (!hang) return Promise.resolve(unsettled);
        return new Promise<JobsApiAnswer>((_resolve, reject) => {
          const timeout = setTimeout(() => reject(new JobsApiError("timeout", null, true)), 10_000);
          signal?.addEventListener("abort", () => {
            clearTimeout(timeout);
            reject(new JobsApiError("jobs API call aborted", null, true));
          });
        });
      },
      writer,
      log,
      now: () => 5_000,
      retryDelaysMs: [60_000],
      batchMs: 0,
      finishWaitMs: 300,
    });
    consults.ask(retrying, "Bearer k");
    await sleep(100); // answered, its retry waits a minute
    hang = true;
    consults.ask(inFlight, "Bearer k");
    await sleep(50); // asked, never answered
    const started = performance.now();
    await consults.finish();
    expect(performance.now() - started).toBeLessThan(2_000);
    // A stream cut off by the stop completes after `finish`: its question is left too.
    consults.ask(late, "Bearer k");
    consults.ask(done, "Bearer k");
    await consults.drain();
    for (const id of [inFlight, retrying, late]) {
      expect(await readJob(store, id)).toMatchObject({
        backfillState: "pending",
        backfillNextAt: 5_000,
      });
    }
    expect((await readJob(store, done))?.backfillState).toBe("done");

    // The backfill asks about them later, and sees the jobs API name another settlement.
    const second = signature();
    const backfill = createSettlementBackfill({
      store,
      log,
      writer,
      apiKey: "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345",
      jobsApi: async () => ({ ...settled, settlementTx: second }),
      now: () => 6_000,
    });
    expect(await backfill.runOnce()).toBe(3);
    const row = await readJob(store, inFlight);
    expect(row).toMatchObject({ backfillState: "done", apiSettlementTx: second });
    expect(row?.settlementTx).not.toBe(second);
    await writer.close();
    store.sqlite.close();
  });
});
