import { performance } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import type { SqliteStore } from "../src/db/client.js";
import { createLogger } from "../src/log.js";
import { acquireLock } from "../src/nightly/locks.js";
import { runVerifyCommand } from "../src/nightly/verify-command.js";
import type { Verifier, VerifierRpc } from "../src/verify/engine.js";
import { migratedFileStore } from "./support/file-store.js";
import { recordHonest } from "./support/honest-receipt.js";
import { cleanLedger } from "./support/ledger-result.js";
import { quickVerifier } from "./support/quick-verifier.js";
import { capturedLogger } from "./support/recorder-fixtures.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";
import { holdWriteLockSync, paceWriteLockSync } from "./support/write-lock-holder.js";

/**
 * A nightly `verify` (its store's 5 s busy timeout, as the CLI opens it) beside another process
 * that takes SQLite's write lock in the middle of the run and keeps it (a long import, a
 * `BEGIN IMMEDIATE` held by hand). SQLite's wait for the lock holds the event loop, so a timer
 * set for the run's deadline runs only between waits: writes that follow each other with no
 * turn of the loop each waited their whole busy timeout.
 */

const log = createLogger({ level: "silent" });

const fileStore = (busyTimeoutMs?: number) => migratedFileStore("verify-deadline-", busyTimeoutMs);

/**
 * `rpc` whose getTransaction first takes the database's write lock (once, held `holdMs`) and
 * waits `delayMs(n)` before the n-th answer; `holder()` is the lock's holder once taken.
 */
function lockingOnFetch(
  rpc: VerifierRpc,
  path: string,
  holdMs: number,
  delayMs: (n: number) => number = () => 0,
) {
  let holder: ReturnType<typeof holdWriteLockSync> | undefined;
  let calls = 0;
  const getTransaction = rpc.getTransaction.bind(rpc);
  return {
    rpc: {
      ...rpc,
      async getTransaction(...args: Parameters<typeof getTransaction>) {
        const n = calls++;
        holder ??= holdWriteLockSync(path, holdMs);
        const delay = delayMs(n);
        if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
        return getTransaction(...args);
      },
    },
    holder: () => holder,
  };
}

/** `verify --since 1h --timeout <timeout>` begun at `started`: its exit code and its text. */
async function verifyCommand(
  store: SqliteStore,
  verifier: Verifier,
  timeout: string,
  ledger: unknown,
  started: number,
): Promise<{ code: number; text: string }> {
  const lines: string[] = [];
  const code = await runVerifyCommand(
    store,
    verifier,
    { since: "1h", timeout },
    { out: (t) => lines.push(t), err: (l) => lines.push(l), progress: false },
    { ledger: ledger as never, startedTick: started },
  );
  return { code, text: lines.join("\n") };
}

/** The longest the event loop went without running a 10 ms timer, until `stop()`. */
function loopStalls() {
  let last = performance.now();
  let longest = 0;
  const timer = setInterval(() => {
    const t = performance.now();
    longest = Math.max(longest, t - last);
    last = t;
  }, 10);
  return {
    stop() {
      clearInterval(timer);
      return longest;
    },
  };
}

describe("verify beside another process holding SQLite's write lock", () => {
  it("a round's fetches in flight store nothing once one store found the lock held", async () => {
    // Each fetched transaction answered on its own, the first one after the lock was taken:
    // each store waited the busy timeout again on the event loop, one per fetch in flight
    // (8 of 5 s: `verify --timeout 30s` ended after 68 s, its deadline's timer unrun).
    const { store, path } = fileStore(400);
    const chain = createFakeChain({ finalitySlots: 0 });
    for (let i = 0; i < 12; i++) recordHonest(store, `f${i}`, chain);
    const locking = lockingOnFetch(chain.rpc, path, 4_000, (n) => 20 + n * 15);
    const verifier = quickVerifier(store, locking.rpc, log);
    const stalls = loopStalls();
    const run = verifier.runUntilSettled({}, { timeoutMs: 1_500 });
    // The round's writes wait one busy timeout (400 ms) at a time, then the loop turns; each
    // fetch in flight storing apart held it for 6 to 8 of them in a row (2.4 s and more). The
    // bound leaves a loaded host's own stalls room beside the one wait.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const longest = stalls.stop();
    expect(locking.holder()).toBeDefined();
    expect(longest).toBeLessThan(1_600);
    locking.holder()?.release();
    await locking.holder()?.released;
    // Its last round refused by the lock, the run says so: its jobs wait on the database.
    expect((await run).databaseTrouble).toMatch(/locked|busy/i);
    store.close();
  }, 20_000);

  it("ends at its --timeout when the lock is taken while it reads the ledger", async () => {
    // The ledger's read ends as the run's time runs out; the nightly lock's release, the
    // ledger's marks, the run row and its heartbeat then followed each other with no turn of the
    // event loop: each waited the whole 5 s, and `--timeout 30s` ended after 46 s.
    const { store, path } = fileStore();
    const chain = createFakeChain({ finalitySlots: 0 });
    recordHonest(store, "l", chain);
    const verifier = quickVerifier(store, chain.rpc, log);
    let holder: ReturnType<typeof holdWriteLockSync> | undefined;
    const started = performance.now();
    const ledger = Object.assign(
      async () => {
        holder = holdWriteLockSync(path, 30_000);
        // Read on until a second before the deadline, as a long history would.
        await new Promise((resolve) => setTimeout(resolve, 3_000 - (performance.now() - started)));
        return cleanLedger;
      },
      {
        commit: async () => {
          await acquireLock(store, "ledger-marks", "verify", 60_000, Date.now());
        },
      },
    );
    const { code, text } = await verifyCommand(store, verifier, "4s", ledger, started);
    const took = performance.now() - started;
    expect(holder).toBeDefined();
    // Every job and the ledger were judged in time: the closing writes the lock refused do
    // not change the outcome. Before, the run ended after about 20 s.
    expect(code).toBe(0);
    // The run row's outcome is tried again for half a second past it.
    expect(took).toBeLessThan(4_000 + 1_500);
    // But what was not stored is said: cron's operator read exit 0 while the status page showed
    // the night running, then abandoned, and the next night judged the ledger's history again.
    expect(text).toContain("not stored, the database's write lock held as the run closed");
    expect(text).toContain("the ledger's marks");
    expect(text).toContain("the run row's outcome");
    holder?.release();
    await holder?.released;
    store.close();
  }, 40_000);

  it("stores the run row's outcome past its time beside an import that paces the lock", async () => {
    // Past its --timeout each closing write took the lock at once or not at all: beside a
    // writer that leaves the lock free a few ms between transactions (an import leaves it 15 ms
    // between 30, a loaded host less), the row's outcome missed the gaps most times, and the
    // status page showed the night abandoned after cron was told its exit code.
    const { store, path } = fileStore();
    const chain = createFakeChain({ finalitySlots: 0 });
    recordHonest(store, "p", chain);
    const verifier = quickVerifier(store, chain.rpc, log);
    const started = performance.now();
    let pacer: ReturnType<typeof paceWriteLockSync> | undefined;
    const ledger = async () => {
      pacer = paceWriteLockSync(path, 45, 5);
      // Read on until the deadline has passed, as a long history would.
      await new Promise((resolve) => setTimeout(resolve, 2_100 - (performance.now() - started)));
      return cleanLedger;
    };
    const { text } = await verifyCommand(store, verifier, "2s", ledger, started);
    const took = performance.now() - started;
    pacer?.release();
    await pacer?.released;
    expect(pacer).toBeDefined();
    expect(text).not.toContain("the run row's outcome");
    const row = store.sqlite
      .prepare("SELECT status, summary FROM verification_runs WHERE trigger = 'verify'")
      .get() as { status: string; summary: string };
    expect(row.status).not.toBe("running");
    expect(JSON.parse(row.summary)).toHaveProperty("outcome");
    // The tries take a moment past the time, no more.
    expect(took).toBeLessThan(2_000 + 1_500);
    store.close();
  }, 30_000);

  it("a run out of time hands its leases back at once or not at all", async () => {
    // Retried with backoff beside the held lock, the release added 2.5 s to the run row's close
    // grace: `--timeout 30s` ended 47.5 s after it started, not 45.
    const { store, path } = fileStore(0);
    // Never final within the run: its job stays leased to it, waiting, when the time runs out.
    const chain = createFakeChain({ finalitySlots: 100_000 });
    recordHonest(store, "r", chain);
    const { log: captured, lines } = capturedLogger();
    const verifier = quickVerifier(store, chain.rpc, captured);
    const started = performance.now();
    const run = verifier.runUntilSettled({}, { timeoutMs: 400 });
    while (store.sqlite.prepare("SELECT count(lease_owner) FROM jobs").pluck().get() === 0) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const holder = holdWriteLockSync(path, 3_000);
    let gaveUpAt: number | undefined;
    while (gaveUpAt === undefined && performance.now() - started < 2_900) {
      if (lines.some((l) => l.includes("leases not released"))) gaveUpAt = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(gaveUpAt).toBeDefined();
    expect((gaveUpAt ?? 0) - started).toBeLessThan(400 + 500);
    holder.release();
    await holder.released;
    expect(await run).toMatchObject({ status: "timed_out" });
    store.close();
  }, 20_000);

  it("out of time in a ledger read that met the lock says the timeout and the phase", async () => {
    // The vaults' reader writes (cursors, lines) and meets the lock as the run's time runs out:
    // its busy wait, bounded by the time left, ends past the deadline before the deadline's
    // timer has run, and the summary said only "database is locked", not that the run timed out
    // nor where.
    const { store, path } = fileStore();
    const chain = createFakeChain({ finalitySlots: 0 });
    recordHonest(store, "p", chain);
    const verifier = quickVerifier(store, chain.rpc, log);
    let holder: ReturnType<typeof holdWriteLockSync> | undefined;
    const started = performance.now();
    const ledger = async () => {
      holder ??= holdWriteLockSync(path, 6_000);
      for (;;) await acquireLock(store, "ledger-cursor", "verify", 60_000, Date.now());
    };
    const { code, text } = await verifyCommand(store, verifier, "2s", ledger, started);
    expect(holder).toBeDefined();
    expect(code).toBe(2);
    expect(text).toContain("timed out after 2 s");
    expect(text).toContain("reading the credit vaults' history");
    expect(text).toContain("database is locked");
    // Ended by its deadline, not by the holder's release at 6 s (a loaded host ran 1.7 s past
    // it; the lock is let go as soon as the run ended, so a longer hold costs nothing).
    expect(performance.now() - started).toBeLessThan(2_000 + 2_500);
    holder?.release();
    await holder?.released;
    store.close();
  }, 30_000);

  it("serve's nightly closes its run row within the close grace beside a held lock", async () => {
    // serve's store waits 500 ms for the lock, unbounded by the run's time; the run row's close
    // retried the whole 8-attempt backoff (about 6 s) inside its grace (15 s by default, 2 s
    // here), checking the grace only between them: `--timeout 3s` beside a held lock ended
    // after 23 s, not 18 or 19.
    const { store, path } = fileStore(500);
    const chain = createFakeChain({ finalitySlots: 0 });
    for (let i = 0; i < 3; i++) recordHonest(store, `g${i}`, chain);
    const locking = lockingOnFetch(chain.rpc, path, 20_000);
    const closeGraceMs = 2_000;
    const verifier = quickVerifier(store, locking.rpc, log, { options: { closeGraceMs } });
    const started = performance.now();
    const result = await verifier.runUntilSettled({}, { timeoutMs: 1_000 }).catch((e) => e);
    const took = performance.now() - started;
    expect(locking.holder()).toBeDefined();
    // The grace, its last try's wait, the leases' and heartbeat's one try each (500 ms apiece)
    // and a loaded host's slack: 6 s past the grace before.
    expect(took).toBeLessThan(1_000 + closeGraceMs + 3_500);
    expect(result).toBeDefined();
    locking.holder()?.release();
    await locking.holder()?.released;
    store.close();
  }, 60_000);
});
