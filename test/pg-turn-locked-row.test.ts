import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { AppError } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { createBackfillStore } from "../src/store/backfill.js";
import {
  type CustodyConfig,
  type CustodyProfile,
  type CustodyStore,
  createCustodyStore,
} from "../src/store/custody.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { createJobsApiStore } from "../src/store/jobs-api.js";
import { createOpenReceiptStore } from "../src/store/open-receipts.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { jobId, processingAnswer, receipt } from "./support/recorder-fixtures.js";
import { readJob, seedJob } from "./support/seed-recorder.js";
import { seedJobs } from "./support/seed-verdicts.js";

/**
 * Work that takes the receipt writers' turn and then a job's row, with that row held locked by
 * a session outside the service (an operator's `SELECT … FOR UPDATE`, a long transaction): it
 * waited for the row up to the statement timeout holding the turn, and every proxied receipt
 * waited as long behind it. A receipt written meanwhile must be answered within about a second.
 */

const database = usePostgresDatabase({ migrated: true });
const log = createLogger({ level: "silent" });
const T = Date.UTC(2026, 11, 1, 9);
let store: PgStore;
let locker: pg.Client;

beforeAll(async () => {
  store = openPostgres(database.url, { poolSize: 3, statementTimeoutMs: 10_000 });
  locker = new pg.Client({ connectionString: database.url });
  await locker.connect();
});

afterAll(async () => {
  await locker?.end();
  await store?.close();
});

/** A job waiting for its settlement signature, due since `T`. */
const pending = (id: string) => ({
  jobId: id,
  settlementTx: null,
  backfillState: "pending" as const,
  backfillNextAt: T,
  backfillAttempts: 0,
});

/**
 * Runs `work` with the rows of `locked` held by another session and a receipt written meanwhile;
 * resolves with how `work` ended and how long each took, in ms, and `tryMs`: how long one wait
 * for a held row bounded at 1 s (each store's wait per try) took beside them. The bounds are
 * in tries of the host as loaded as it is: a fixed 1 or 2 s failed on a loaded host (1,533 ms
 * for a receipt that waited out one try).
 */
async function whileRowsHeld<T>(locked: readonly string[], work: () => Promise<T>) {
  const writer = createReceiptWriter(store, { log });
  try {
    await locker.query("BEGIN");
    await locker.query("SELECT * FROM jobs WHERE job_id = ANY($1) FOR UPDATE", [locked]);
    const started = performance.now();
    const done = work().then(
      (value) => ({ value, ms: performance.now() - started }),
      (error: unknown) => ({ error, ms: performance.now() - started }),
    );
    const tryMs = oneTryOnHeldRow(locked[0] as string);
    const receiptMs = await writer
      .run(recordReceiptsUnit([receipt()], "proxy"))
      .then(() => performance.now() - started);
    return { outcome: await done, receiptMs, tryMs: await tryMs };
  } finally {
    await locker.query("ROLLBACK");
    await writer.close();
  }
}

/**
 * How long, in ms, a transaction of its own waits to be refused the row of `held` (held by
 * `locker`) under a lock wait of 1 s, on this host as loaded as it is.
 */
async function oneTryOnHeldRow(held: string): Promise<number> {
  const probe = new pg.Client({ connectionString: database.url });
  await probe.connect();
  try {
    await probe.query("BEGIN");
    await probe.query("SET LOCAL lock_timeout = 1000");
    const started = performance.now();
    const refused = await probe
      .query("SELECT 1 FROM jobs WHERE job_id = $1 FOR UPDATE", [held])
      .then(
        () => false,
        (error: { code?: string }) => error.code === "55P03",
      );
    const ms = performance.now() - started;
    if (!refused) throw new Error("the row was not held");
    return ms;
  } finally {
    await probe.query("ROLLBACK").catch(() => {});
    await probe.end();
  }
}

const profile: CustodyProfile = { name: "mainnet-v1", treasury: null, treasuryLearnAfter: 2 };

/**
 * A verifier's custody opened with `held`'s row held by another session: its first read fails
 * within two waits for the row (the opening's writes refused after one), and a receipt written
 * meanwhile passes as fast.
 */
async function openedWhileHeld(
  held: string,
  named: CustodyProfile,
  config: CustodyConfig,
): Promise<CustodyStore> {
  // Opened once the row is held: the opening's writes start as the store is made.
  let custody: CustodyStore | undefined;
  const { outcome, receiptMs, tryMs } = await whileRowsHeld([held], () => {
    custody = createCustodyStore(store, named, config);
    return custody.pins([], []);
  });
  if (custody === undefined) throw new Error("custody was not opened");
  expect(outcome).toMatchObject({ error: expect.anything() });
  expect(outcome.ms).toBeLessThan(2 * tryMs);
  expect(receiptMs).toBeLessThan(2 * tryMs);
  return custody;
}

describe("work holding the receipt writers' turn with a job row locked by another session", () => {
  it("a backfill pass claims and gives up the free jobs at once, leaves the held one for later, and receipts pass", async () => {
    const [held, free, heldGivenUp, freeGivenUp] = [jobId(), jobId(), jobId(), jobId()];
    for (const id of [held, free, heldGivenUp, freeGivenUp]) await seedJob(store, pending(id));
    const backfill = createBackfillStore(store);
    const { outcome, receiptMs, tryMs } = await whileRowsHeld([held, heldGivenUp], () =>
      backfill.claim(
        [
          { jobId: held, nextAt: T + 60_000 },
          { jobId: free, nextAt: T + 60_000 },
        ],
        [heldGivenUp, freeGivenUp],
        T,
      ),
    );
    expect(outcome).toMatchObject({ value: [free] });
    expect(outcome.ms).toBeLessThan(tryMs);
    expect(receiptMs).toBeLessThan(tryMs);
    expect(await readJob(store, free)).toMatchObject({ backfillAttempts: 1 });
    expect(await readJob(store, freeGivenUp)).toMatchObject({ backfillState: "gave_up" });
    expect(await readJob(store, held)).toMatchObject({ backfillAttempts: 0 });
    expect(await readJob(store, heldGivenUp)).toMatchObject({ backfillState: "pending" });

    // Once the rows are free, the next pass claims and gives up on them.
    expect(await backfill.claim([{ jobId: held, nextAt: T + 60_000 }], [heldGivenUp], T)).toEqual([
      held,
    ]);
    expect(await readJob(store, heldGivenUp)).toMatchObject({ backfillState: "gave_up" });
  }, 30_000);

  it("an operator's re-verification is refused naming the held job, and receipts pass", async () => {
    const held = jobId();
    await seedJob(store, { jobId: held, verdict: "verified", verdictAt: T });
    const queue = createJobQueueStore(store);
    const { outcome, receiptMs, tryMs } = await whileRowsHeld([held], () =>
      queue.reverify(held, T + 1),
    );
    expect(outcome).toMatchObject({ error: expect.any(AppError) });
    const { error } = outcome as { error: AppError };
    expect(error.code).toBe("locked");
    expect(error.message).toContain(held);
    expect(error.details).toEqual({ jobId: held });
    expect(outcome.ms).toBeLessThan(2 * tryMs);
    expect(receiptMs).toBeLessThan(2 * tryMs);
    expect(await readJob(store, held)).toMatchObject({ verdict: "verified" });

    await queue.reverify(held, T + 2);
    expect(await readJob(store, held)).toMatchObject({ verdict: "pending" });
  }, 30_000);

  it("a jobs API answer waits for the held row with the turn let go between tries, and is written once it is free", async () => {
    const held = jobId();
    await seedJob(store, pending(held));
    const answers = createJobsApiStore(store);
    // When the answer ended (written or refused), in ms from the start of the work. The row is
    // held until both receipts are written: an answer that held the turn through its tries, or
    // waited for the row holding it, ended refused before a receipt could pass.
    let answerEndedMs = Number.POSITIVE_INFINITY;
    let written: Promise<unknown> | undefined;
    const { outcome, receiptMs, tryMs } = await whileRowsHeld([held], async () => {
      const started = performance.now();
      written = answers.recordAnswer(held, processingAnswer(), T + 1);
      const ended = () => {
        answerEndedMs = performance.now() - started;
      };
      written.then(ended, ended);
      // A second receipt after the first try's wait: the turn is let go between tries.
      const now = performance.now() - started;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 1_200 - now)));
      const writer = createReceiptWriter(store, { log });
      const sent = performance.now();
      await writer.run(recordReceiptsUnit([receipt()], "proxy"));
      await writer.close();
      return { waitedMs: performance.now() - sent, passedMs: performance.now() - started };
    });
    expect(outcome).toMatchObject({ value: expect.anything() });
    const second = (outcome as { value: { waitedMs: number; passedMs: number } }).value;
    // Each receipt waited at most the try in progress, and the answer, still waiting for the
    // row when they passed, was written once it was free (not refused).
    expect(receiptMs).toBeLessThan(2 * tryMs);
    expect(second.waitedMs).toBeLessThan(2 * tryMs);
    await written;
    expect(answerEndedMs).toBeGreaterThan(Math.max(receiptMs, second.passedMs));
    expect(await readJob(store, held)).toMatchObject({ apiStatus: "processing" });
  }, 30_000);

  it("the sweep of dead processes' open receipts leaves a held row for the next sweep, and receipts pass", async () => {
    const [held, free] = [jobId(), jobId()];
    for (const id of [held, free]) {
      await seedJob(store, { jobId: id, captureState: "open", receiptWriter: "dead-writer" });
    }
    const sweep = createOpenReceiptStore(store);
    const { outcome, receiptMs, tryMs } = await whileRowsHeld([held], () =>
      sweep.abort(["dead-writer"], T),
    );
    expect(outcome).toMatchObject({ value: 1 });
    expect(outcome.ms).toBeLessThan(tryMs);
    expect(receiptMs).toBeLessThan(tryMs);
    expect(await readJob(store, held)).toMatchObject({ captureState: "open" });
    expect(await sweep.abort(["dead-writer"], T)).toBe(1);
    expect(await readJob(store, held)).toMatchObject({ captureState: "aborted" });
  }, 30_000);

  it("a verifier's custody, opening with a job waiting for the treasury held, lets receipts pass and decides the job once it is free", async () => {
    const held = jobId();
    await seedJobs(store, [
      { jobId: held, verdict: "partially_verified", unproven: ["treasury_unknown"] },
    ]);
    const custody = await openedWhileHeld(
      held,
      { ...profile, treasury: "TP" },
      {
        vaults: [],
        byKey: {},
      },
    );
    expect(await readJob(store, held)).toMatchObject({ verdict: "partially_verified" });

    // The next read makes the opening's writes again, the row free now.
    await custody.pins([], []);
    expect(await readJob(store, held)).toMatchObject({ verdict: "pending", nextVerifyAt: 0 });
  }, 30_000);

  it("a verifier's custody, opening with a newly configured vault whose keyless job is held, lets receipts pass and pins it once the row is free", async () => {
    const held = jobId();
    const vault = "TurnLockedVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    await seedJobs(store, [{ jobId: held, verdict: "verified", keyFingerprint: null }]);
    await store.pool.query(
      `INSERT INTO check_results (job_id, name, outcome, actual, checked_at)
        VALUES ($1, 'escrow.source', 'pass', $2::json, $3)`,
      [held, JSON.stringify({ vault }), T],
    );
    const custody = await openedWhileHeld(held, profile, {
      vaults: [vault],
      byKey: { kf_9: vault },
    });
    expect(await readJob(store, held)).toMatchObject({ verdict: "verified" });

    await custody.pins([], []);
    expect(await readJob(store, held)).toMatchObject({ verdict: "pending" });
  }, 30_000);
});
