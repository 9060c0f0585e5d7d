import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { AppError } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import type { CustodyProfile } from "../src/store/custody.js";
import { createLedgerStore, type LineRead } from "../src/store/ledger.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { createVerdictStore, type VerdictWrite } from "../src/store/verdicts.js";
import { fakeSignature } from "./support/job-rows.js";
import { listLines } from "./support/pg-deadlock.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { receipt } from "./support/recorder-fixtures.js";
import { seedCheck } from "./support/seed-ledger.js";
import { readJob, seedJob } from "./support/seed-recorder.js";
import { readVaultPins, seedJobs } from "./support/seed-verdicts.js";

/**
 * Ledger and verdict writes that take the receipt writers' turn and then a job's row, with that
 * row held locked by a session outside the service (an operator's `SELECT … FOR UPDATE`, a long
 * transaction): each waited for the row up to the statement timeout (10 s here) holding the
 * turn, every proxied receipt waiting as long. A receipt written meanwhile must pass within
 * about a second, and what the write was for is done once the row is free, once.
 */

const database = usePostgresDatabase();
const log = createLogger({ level: "silent" });
const at = Date.UTC(2026, 11, 1, 9) / 1000;
const now = (at + 3600) * 1000;
let store: PgStore;
let locker: pg.Client;
/** Each wait for the held row a quarter of the stores' own 1 s: the same tries, less idling. */
const waits = { heldRowWaitMs: 250 };

beforeAll(async () => {
  store = openPostgres(database.url, { poolSize: 3, statementTimeoutMs: 10_000 });
  await migratePostgres(store.pool);
  locker = new pg.Client({ connectionString: database.url });
  await locker.connect();
});

afterAll(async () => {
  await locker?.end();
  await store?.close();
});

/**
 * Runs `work` with `held`'s row held by another session and a receipt written a little after it
 * started (the work holding the turn by then); how `work` ended, and how long each took, in ms.
 */
async function whileRowHeld<T>(held: string, work: () => Promise<T>) {
  const writer = createReceiptWriter(store, { log });
  try {
    // Its connection opened first: the write measured is the one beside the held row, not the
    // writer's cold start with it (measured cold, it took 1.73 s once on a loaded 2-core CI host).
    await writer.run(recordReceiptsUnit([receipt()], "proxy"));
    await locker.query("BEGIN");
    await locker.query("SELECT * FROM jobs WHERE job_id = $1 FOR UPDATE", [held]);
    const started = performance.now();
    const done = work().then(
      (value) => ({ value, ms: performance.now() - started }),
      (error: unknown) => ({ error, ms: performance.now() - started }),
    );
    await waitForRowWait();
    const sent = performance.now();
    await writer.run(recordReceiptsUnit([receipt()], "proxy"));
    const receiptMs = performance.now() - sent;
    return { outcome: await done, receiptMs };
  } finally {
    await locker.query("ROLLBACK");
    await writer.close();
  }
}

/** Until a backend of the database waits for a row lock (the work reached the held row). */
async function waitForRowWait(): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await locker.query(
      `SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
        AND wait_event_type = 'Lock' AND wait_event IN ('transactionid', 'tuple')`,
    );
    if (rows.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error("the work never waited for the held row");
}

/** The refusal: a `locked` AppError naming the held job. */
function expectRefusedNaming(outcome: object, held: string) {
  const { error } = outcome as { error?: unknown };
  expect(error).toBeInstanceOf(AppError);
  if (!(error instanceof AppError)) return;
  expect(error.code).toBe("locked");
  expect(error.message).toContain(held);
}

const sig = (name: string) => fakeSignature(`ledger-locked-row:${name}`);

/** A line of the vault under `memo` (`escrow:<job>` or `refund:<job>`). */
function line(name: string, second: number, pre: bigint, post: bigint, memo: string): LineRead {
  const [kind, job] = memo.split(":") as ["escrow" | "refund", string];
  return {
    signature: sig(name),
    blockTime: at + second,
    succeeded: true,
    pre,
    post,
    delta: post - pre,
    memo,
    memoKind: kind,
    memoJobId: job,
    opened: false,
  };
}

describe("ledger and verdict writes meeting a job row another session holds locked", () => {
  it("a ledger batch keeping a refund with the held job reads the vault's other lines within seconds, receipts pass, leaves the refund listed naming the job without waiting again, and keeps it once the row is free", async () => {
    const vault = "LockedRowVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const held = "job_ledger_locked_refund";
    // Verified on its receipt's lock and settlement; the vault then shows a refund under its
    // memo that the receipt does not name: the job answers for it (refund.not_settled).
    await seedJob(store, {
      jobId: held,
      escrowTx: sig("lock"),
      settlementTx: sig("settle"),
      verdict: "verified",
      verdictAt: now - 1000,
    });
    const lines = [
      line("lock", 0, 1_000_000n, 900_000n, `escrow:${held}`),
      line("refund", 5, 900_000n, 950_000n, `refund:${held}`),
      // A top-up without a memo.
      {
        ...line("top-up", 8, 950_000n, 1_000_000n, "refund:-"),
        memo: null,
        memoKind: null,
        memoJobId: null,
      },
    ];
    const ledger = createLedgerStore(store, waits);
    await listLines(ledger, vault, lines, now, 1000);
    const waiting = [{ signature: sig("refund"), jobId: held }];
    const { outcome, receiptMs } = await whileRowHeld(held, () =>
      ledger.recordReads(vault, lines, [], now),
    );
    expect(receiptMs).toBeLessThan(1_500);
    expect(outcome).toMatchObject({ value: waiting });
    expect(outcome.ms).toBeLessThan(6_000);
    // The lock and the top-up are read; the refund stays listed for the next read, the job as
    // it was.
    expect(await ledger.listedSignatures(vault)).toEqual([sig("refund")]);
    expect(await readJob(store, held)).toMatchObject({ verdict: "verified" });

    // The next round, the row held still: the refund waits again, without waiting for the row.
    await locker.query("BEGIN");
    try {
      await locker.query("SELECT * FROM jobs WHERE job_id = $1 FOR UPDATE", [held]);
      const started = performance.now();
      expect(await ledger.recordReads(vault, [lines[1]!], [], now)).toEqual(waiting);
      expect(performance.now() - started).toBeLessThan(500);
    } finally {
      await locker.query("ROLLBACK");
    }
    expect(await ledger.listedSignatures(vault)).toEqual([sig("refund")]);

    // The row free: the refund is kept with the job, once, and the job reopened.
    expect(await ledger.recordReads(vault, [lines[1]!], [], now)).toEqual([]);
    await ledger.recordReads(vault, lines, [], now);
    expect(await ledger.listedSignatures(vault)).toEqual([]);
    expect(await readJob(store, held)).toMatchObject({
      verdict: "pending",
      conflictSignatures: [sig("refund")],
    });
  }, 30_000);

  it("a ledger batch meeting the jobs table locked by another session is refused within seconds, saying so", async () => {
    const vault = "LockedTableVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const job = "job_ledger_locked_table";
    await seedJob(store, {
      jobId: job,
      escrowTx: sig("table-lock"),
      settlementTx: sig("table-settle"),
      verdict: "verified",
      verdictAt: now - 1000,
    });
    const lines = [
      line("table-lock", 0, 1_000_000n, 900_000n, `escrow:${job}`),
      line("table-refund", 5, 900_000n, 950_000n, `refund:${job}`),
    ];
    const ledger = createLedgerStore(store, waits);
    await listLines(ledger, vault, lines, now, 1000);
    // A table lock (an ALTER TABLE, a VACUUM FULL by hand) reads allow, row locks do not.
    await locker.query("BEGIN");
    try {
      await locker.query("LOCK TABLE jobs IN EXCLUSIVE MODE");
      const started = performance.now();
      const error = await ledger.recordReads(vault, lines, [], now).catch((e: unknown) => e);
      expect(performance.now() - started).toBeLessThan(6_000);
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).message).toMatch(
        /^a row or table the write locks is held locked by another session \(waited 3 times 250 ms\)/,
      );
    } finally {
      await locker.query("ROLLBACK");
    }
    await ledger.recordReads(vault, lines, [], now);
    expect(await readJob(store, job)).toMatchObject({ conflictSignatures: [sig("table-refund")] });
  }, 30_000);

  it("a review reopening a held job whose credits header no balance matches is refused within seconds, receipts pass, and reopens it once the row is free", async () => {
    const vault = "LockedHeaderVau1tXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const held = "job_ledger_locked_header";
    // Verified before the vault was read, its header check a skip naming the vault; the header
    // names a balance the vault never held.
    await seedJob(store, {
      jobId: held,
      escrowTx: sig("header-lock"),
      recordedAt: (at + 5) * 1000,
      creditsRemainingUnits: 7n,
      verdict: "verified",
      verdictAt: now - 1000,
    });
    await seedCheck(store, {
      jobId: held,
      name: "credits.header",
      outcome: "skip",
      expected: { vault },
      at: (at + 60) * 1000,
    });
    const lines: LineRead[] = [
      {
        signature: sig("header-lock"),
        blockTime: at,
        succeeded: true,
        pre: 1_000_000n,
        post: 900_000n,
        delta: -100_000n,
        memo: null,
        memoKind: null,
        memoJobId: null,
        opened: false,
      },
    ];
    const ledger = createLedgerStore(store, waits);
    await listLines(ledger, vault, lines, now, 1000);
    await ledger.recordReads(vault, lines, [], now);
    const { outcome, receiptMs } = await whileRowHeld(held, () => ledger.review(vault, now));
    expect(receiptMs).toBeLessThan(1_500);
    expectRefusedNaming(outcome, held);
    expect(outcome.ms).toBeLessThan(6_000);
    expect(await readJob(store, held)).toMatchObject({ verdict: "verified" });

    expect(await ledger.review(vault, now)).toMatchObject({ reopened: 1 });
    expect(await readJob(store, held)).toMatchObject({ verdict: "pending" });
  }, 30_000);

  it("a verdict write pinning a key's vault, with a keyless job drawn on it held, is refused within seconds, receipts pass, and pins and reopens once the row is free", async () => {
    const vault = "LockedPinVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const [learner, held] = ["job_verdict_learns_vault", "job_verdict_keyless_held"];
    const profile: CustodyProfile = { name: "mainnet-v1", treasury: "TP", treasuryLearnAfter: 2 };
    await seedJobs(store, [
      { jobId: learner, keyFingerprint: "kf_locked" },
      { jobId: held, verdict: "verified", keyFingerprint: null, leaseOwner: null },
    ]);
    await store.pool.query(
      `INSERT INTO check_results (job_id, name, outcome, actual, checked_at)
        VALUES ($1, 'escrow.source', 'pass', $2::json, $3)`,
      [held, JSON.stringify({ vault }), now],
    );
    const write: VerdictWrite = {
      job: { jobId: learner, keyFingerprint: "kf_locked", verdictAt: null, verifyAttempts: 0 },
      verdict: "verified",
      nextVerifyAt: now + 60_000,
      lastError: null,
      commitment: "finalized",
      evaluation: {
        amounts: {
          escrowedUnits: 400_000n,
          chargedUnits: 80_000n,
          workerPaidUnits: 60_000n,
          treasuryPaidUnits: 20_000n,
          refundedUnits: 320_000n,
          expectedChargeUnits: 80_000n,
          feesLamports: 10_000n,
        },
        unproven: [],
        learned: { creditVault: vault, treasuryCandidate: null },
      },
      checks: [],
    };
    const verdicts = createVerdictStore(store, profile, null, waits);
    const options = { owner: "owner-a", runId: null, t: now };
    const { outcome, receiptMs } = await whileRowHeld(held, () => verdicts.write([write], options));
    expect(receiptMs).toBeLessThan(1_500);
    expectRefusedNaming(outcome, held);
    expect(outcome.ms).toBeLessThan(6_000);
    expect(await readVaultPins(store)).not.toContainEqual(
      expect.objectContaining({ key: "kf_locked" }),
    );
    expect(await readJob(store, learner)).toMatchObject({ verdict: "pending" });

    expect(await verdicts.write([write], options)).toEqual([true]);
    expect(await readVaultPins(store)).toContainEqual(
      expect.objectContaining({ key: "kf_locked", vault }),
    );
    expect(await readJob(store, held)).toMatchObject({ verdict: "pending" });
  }, 30_000);
});
