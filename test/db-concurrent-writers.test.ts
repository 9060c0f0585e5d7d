import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { eq } from "drizzle-orm";
import { describe, expect, it, vi } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { jobs, verificationRuns } from "../src/db/schema.js";
import { createLogger } from "../src/log.js";
import { acquireLock } from "../src/nightly/locks.js";
import { recordReceipt } from "../src/recorder/receipts.js";
import { createSettlementBackfill } from "../src/recorder/settlement-backfill.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { migratedFileStore } from "./support/file-store.js";
import { recordHonest } from "./support/honest-receipt.js";
import { quickVerifier } from "./support/quick-verifier.js";
import { address, capturedLogger, jobId, signature } from "./support/recorder-fixtures.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";
import { holdWriteLockSync } from "./support/write-lock-holder.js";

/**
 * Each write path against a second connection that holds the write lock for 300 ms, as another
 * process's transaction would: the path waits (SQLite's busy timeout, or a retry from
 * JavaScript where the timeout is kept short) and succeeds. Before every write transaction began
 * IMMEDIATE, the claim failed here at once with SQLITE_BUSY.
 */

const HOLD_MS = 300;
const log = createLogger({ level: "silent" });

const fileStore = (busyTimeoutMs?: number) => migratedFileStore("concurrent-", busyTimeoutMs);

/** Runs `write` while another connection holds the lock; returns how long it waited. */
async function underHeldLock<T>(path: string, write: () => T): Promise<{ value: T; ms: number }> {
  const holder = holdWriteLockSync(path, HOLD_MS);
  const started = performance.now();
  const value = write();
  const ms = performance.now() - started;
  await holder.released;
  return { value, ms };
}

function streamedReceipt(id = jobId()) {
  return {
    jobId: id,
    escrowTx: signature(),
    settlementTx: null,
    worker: address(),
    creditsRemainingUnits: null,
    model: null,
    promptTokens: null,
    completionTokens: null,
    totalTokens: null,
  };
}

describe("write paths beside a connection holding the write lock", () => {
  it("a migration with something to apply waits for another process's write lock past the busy timeout", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "concurrent-")), "audit.db");
    // Created without its schema: every migration is pending, as in another process's that
    // migrates first (a reader sees what it has not committed yet as still pending).
    const store = openSqliteStore(path, { busyTimeoutMs: 20 });
    try {
      const { ms } = await underHeldLock(path, () => migrateStore(store));
      expect(ms).toBeGreaterThanOrEqual(HOLD_MS - 50);
      expect(store.sqlite.pragma("busy_timeout", { simple: true })).toBe(20);
      expect(store.sqlite.prepare("SELECT count(*) FROM jobs").pluck().get()).toBe(0);
    } finally {
      store.close();
    }
  });

  it("a migration with nothing to apply does not wait for the write lock", async () => {
    const { store, path } = fileStore(20);
    try {
      const { ms } = await underHeldLock(path, () => migrateStore(store));
      expect(ms).toBeLessThan(HOLD_MS / 2);
    } finally {
      store.close();
    }
  });

  it("a receipt write waits for the lock and is recorded", async () => {
    const { store, path } = fileStore();
    const receipt = streamedReceipt();
    const { value, ms } = await underHeldLock(path, () => recordReceipt(store, receipt, "ingest"));
    expect((await value).outcome).toBe("created");
    expect(ms).toBeGreaterThan(HOLD_MS / 2);
    expect(store.db.select().from(jobs).where(eq(jobs.jobId, receipt.jobId)).get()).toBeTruthy();
    store.close();
  });

  it("a token is created after waiting for the lock", async () => {
    const { store, path } = fileStore();
    const { value, ms } = await underHeldLock(path, () =>
      createToken(store, { role: "read", name: "dashboard" }),
    );
    expect((await value).token).toMatch(/^da_read_/);
    expect(ms).toBeGreaterThan(HOLD_MS / 2);
    store.close();
  });

  it("the nightly lock is acquired after waiting for the write lock", async () => {
    const { store, path } = fileStore();
    const { value, ms } = await underHeldLock(path, () =>
      acquireLock(store, "nightly-verify", "me", 60_000),
    );
    expect(await value).toBeNull();
    expect(ms).toBeGreaterThan(HOLD_MS / 2);
    store.close();
  });

  it("the settlement backfill claims and records its jobs after waiting", async () => {
    const { store, path } = fileStore();
    const receipt = streamedReceipt();
    recordReceipt(store, receipt, "ingest", { now: 1_000 });
    const settlement = signature();
    const backfill = createSettlementBackfill({
      store,
      log,
      jobsApi: async () => ({
        status: "settled",
        creditsChargedUnits: 80_000n,
        escrowTx: receipt.escrowTx,
        settlementTx: settlement,
        worker: receipt.worker,
        raw: {},
      }),
      apiKey: "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345",
      now: () => 5_000,
    });
    const holder = holdWriteLockSync(path, HOLD_MS);
    const started = performance.now();
    expect(await backfill.runOnce()).toBe(1);
    expect(performance.now() - started).toBeGreaterThan(HOLD_MS / 2);
    await holder.released;
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, receipt.jobId)).get();
    expect(row?.apiSettlementTx).toBe(settlement);
    store.close();
  });

  it("the verifier's claim waits, with a short busy timeout retried from JavaScript", async () => {
    // 100 ms timeout, like a serving process: the claim fails once or twice and is retried.
    const { store, path } = fileStore(100);
    const chain = createFakeChain();
    const ids = ["a", "b", "c"].map((tag) => recordHonest(store, tag, chain));
    const verifier = quickVerifier(store, chain.rpc, log);
    // The lock is taken right before the run's first claim: the run's first look at its
    // signal comes just before it.
    let holder: { released: Promise<void> } | undefined;
    const signal = {
      get aborted() {
        holder ??= holdWriteLockSync(path, HOLD_MS);
        return false;
      },
      addEventListener() {},
      removeEventListener() {},
    } as unknown as AbortSignal;
    const summary = await verifier.runUntilSettled({}, { timeoutMs: 20_000, signal });
    expect(holder).toBeDefined();
    await holder?.released;
    expect(summary).toMatchObject({ status: "completed", total: 3, final: 3 });
    for (const id of ids) {
      expect(store.db.select().from(jobs).where(eq(jobs.jobId, id)).get()?.verdict).toBe(
        "verified",
      );
    }
    store.close();
  });

  it("the verifier's verdict write waits, with a short busy timeout retried from JavaScript", async () => {
    const { store, path } = fileStore(100);
    const chain = createFakeChain({ finalitySlots: 0 });
    const id = recordHonest(store, "v", chain);
    // The lock is taken when the checks first read the payout rates: after every RPC call and
    // chain write of the round, right before its verdicts are written (the memos are read
    // before the fetched transactions are stored, so the profile as a whole is too early).
    let holder: { released: Promise<void> } | undefined;
    const profile = new Proxy(localnetProfile, {
      get(target, key, receiver) {
        if (key === "payout" && chain.calls.getTransaction.size === 2) {
          holder ??= holdWriteLockSync(path, HOLD_MS);
        }
        return Reflect.get(target, key, receiver);
      },
    }) as Profile;
    const verifier = quickVerifier(store, chain.rpc, log, { profile });
    const summary = await verifier.runUntilSettled({}, { timeoutMs: 20_000 });
    expect(holder).toBeDefined();
    await holder?.released;
    expect(summary).toMatchObject({ status: "completed", total: 1, final: 1 });
    expect(store.db.select().from(jobs).where(eq(jobs.jobId, id)).get()?.verdict).toBe("verified");
    // Each signature was fetched once: the retried round used what the first one stored.
    expect([...chain.calls.getTransaction.values()]).toEqual([1, 1]);
    const runs = store.db.select().from(verificationRuns).all();
    expect(runs.map((r) => r.status)).toEqual(["completed"]);
    store.close();
  });

  it("a lease renewal that finds the database locked is logged and retried, never thrown", async () => {
    const { store, path } = fileStore(5);
    const chain = createFakeChain();
    const id = recordHonest(store, "r", chain);
    const { log: captured, lines } = capturedLogger();
    // Renewal every 10 ms, while the round waits on the node below.
    const verifier = quickVerifier(store, chain.rpc, captured, { options: { leaseMs: 30 } });
    const release = chain.hold();
    const run = verifier.runUntilSettled({}, { timeoutMs: 20_000 });
    await vi.waitFor(
      () =>
        expect(store.sqlite.prepare("SELECT count(lease_owner) FROM jobs").pluck().get()).toBe(1),
      { timeout: 5000, interval: 5 },
    );
    const holder = holdWriteLockSync(path, HOLD_MS);
    await vi.waitFor(() => expect(lines.join("\n")).toContain("lease renewal failed"), {
      timeout: 5000,
      interval: 5,
    });
    await holder.released;
    release();
    expect(await run).toMatchObject({ status: "completed", final: 1 });
    expect(store.db.select().from(jobs).where(eq(jobs.jobId, id)).get()?.verdict).toBe("verified");
    store.close();
  });

  it("serve's verifier logs a round that found the database locked as a warning, and goes on", async () => {
    const { store, path } = fileStore(5);
    const chain = createFakeChain({ finalitySlots: 0 });
    const id = recordHonest(store, "w", chain);
    const { log: captured, lines } = capturedLogger();
    const verifier = quickVerifier(store, chain.rpc, captured);
    // An import or a large batch holding the write lock as serve starts its verifier and runs
    // its rounds, longer than a round's own retries of a busy write (about 2.5 s).
    const holder = holdWriteLockSync(path, 4_000);
    verifier.start();
    try {
      await holder.released;
      await vi.waitFor(
        () =>
          expect(store.db.select().from(jobs).where(eq(jobs.jobId, id)).get()?.verdict).toBe(
            "verified",
          ),
        { timeout: 10_000, interval: 10 },
      );
    } finally {
      await verifier.stop();
    }
    const logged = lines.map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(logged.some((l) => l.level === 40 && /database busy/.test(l.msg))).toBe(true);
    // Nothing an operator is paged for: the lock was another process's, and it passed.
    expect(logged.filter((l) => l.level >= 50).map((l) => l.msg)).toEqual([]);
    store.close();
  });
});
