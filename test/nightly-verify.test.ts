import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import type { SqliteStore } from "../src/db/client.js";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import type { Verdict } from "../src/db/schema.js";
import { ownerName } from "../src/host-identity.js";
import type { LedgerWindowResult } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { scheduleNightlyVerification } from "../src/nightly/cron.js";
import { acquireLock, releaseLock } from "../src/nightly/locks.js";
import {
  NIGHTLY_LOCK,
  runNightlyVerification,
  type SettlingEngine,
} from "../src/nightly/nightly-run.js";
import { runVerifyCommand, verifyWindow } from "../src/nightly/verify-command.js";
import { createVerificationRunStore } from "../src/store/verification-runs.js";
import { insertCheck, insertJob } from "./support/job-rows.js";
import { cleanLedger } from "./support/ledger-result.js";
import { createTestStore } from "./support/store.js";

const NOW = Date.UTC(2026, 10, 25, 2);
const hour = 3_600_000;

/**
 * Stands in for the verifier: settles each job of the window to the verdict given for it,
 * or leaves them open and reports a timeout, as the real engine does at its deadline.
 */
function scriptedEngine(
  store: SqliteStore,
  outcome: Record<string, Verdict> | "timeout",
): SettlingEngine & { filters: unknown[] } {
  const filters: unknown[] = [];
  return {
    filters,
    async runUntilSettled(filter, opts) {
      filters.push(filter);
      if (outcome === "timeout") return { status: "timed_out" };
      for (const [jobId, verdict] of Object.entries(outcome)) {
        store.sqlite.prepare("UPDATE jobs SET verdict = ? WHERE job_id = ?").run(verdict, jobId);
        if (verdict === "discrepancy") insertCheck(store, jobId, "settlement.split", "fail");
      }
      opts.onProgress?.({ total: 1, final: 1, byVerdict: {} as Record<Verdict, number> });
      return { status: "completed", runId: 7 };
    },
  };
}

function run(
  store: SqliteStore,
  engine: SettlingEngine,
  flags: Record<string, unknown> = {},
  extra = {},
) {
  const out: string[] = [];
  const err: string[] = [];
  const code = runVerifyCommand(
    store,
    engine,
    { since: "24h", timeout: "1m", ...flags },
    { out: (t) => out.push(t), err: (l) => err.push(l), progress: false, now: () => NOW },
    extra,
  );
  return { code, out, err };
}

function storeWithWindow() {
  const store = createTestStore();
  insertJob(store, { jobId: "in_1", createdAt: NOW - 2 * hour, verdict: "pending" });
  insertJob(store, { jobId: "in_2", createdAt: NOW - 3 * hour, verdict: "pending" });
  // Outside the 24 h window: its open verdict does not keep the run from finishing.
  insertJob(store, { jobId: "old", createdAt: NOW - 48 * hour, verdict: "pending" });
  return store;
}

describe("decentral-audit verify", () => {
  it("exits 0 when every job of the window ends verified, and asks the engine for that window only", async () => {
    const store = storeWithWindow();
    const engine = scriptedEngine(store, { in_1: "verified", in_2: "verified" });
    const { code, out } = run(store, engine);
    expect(await code).toBe(0);
    expect(out.join("")).toContain("all 2 jobs verified");
    expect(engine.filters).toEqual([{ from: NOW - 24 * hour, to: NOW }]);
  });

  it("exits 1 and names the job and its failing check when one is not verified", async () => {
    const store = storeWithWindow();
    const { code, out } = run(
      store,
      scriptedEngine(store, { in_1: "verified", in_2: "discrepancy" }),
      { markdown: true },
    );
    expect(await code).toBe(1);
    const text = out.join("");
    expect(text).toContain("| `in_2` | discrepancy | settlement.split |");
    expect(text).toContain("| verified | 1 |");
  });

  // `--timeout 1ms` read "timed out after 0 s: its start took 1 s" over a summary that "took
  // 0.8 s": the timeout and the start each rounded to whole seconds, the summary not.
  it("says a timeout under a second as given, and its start's time as the summary's took line", async () => {
    const store = storeWithWindow();
    const { code, out, err } = run(
      store,
      scriptedEngine(store, "timeout"),
      { timeout: "1ms" },
      {
        // Its start (modules loaded) took 0.75 s before the run was called.
        startedTick: performance.now() - 750,
      },
    );
    expect(await code).toBe(2);
    const reason = /^verify: timed out after 1 ms: its start took (\d+\.\d) s, before/.exec(
      err.join("\n"),
    );
    expect(reason, err.join("\n")).not.toBeNull();
    const took = /^ {2}took (\d+\.\d) s;/m.exec(out.join(""));
    expect(took, out.join("")).not.toBeNull();
    // The same clock, the summary's read after the start's (a loaded host takes a while
    // between the two: how long is no part of what is said).
    const [start, whole] = [Number(reason?.[1]), Number(took?.[1])];
    expect(start).toBeGreaterThanOrEqual(0.7);
    expect(whole).toBeGreaterThanOrEqual(start);
  });

  it("exits 2 when the run times out with jobs still open", async () => {
    const store = storeWithWindow();
    const { code, err } = run(store, scriptedEngine(store, "timeout"), { timeout: "1s" });
    expect(await code).toBe(2);
    expect(err.join("\n")).toMatch(/timed out after 1 s/);
    // What the open jobs wait on is said, not only that time ran out: never judged (their
    // transactions not read) is no wait for finality.
    expect(err.join("\n")).toContain(
      "2 jobs not final: 2 not judged yet (their transactions not read: a slow or failing RPC?)",
    );
  });

  // A table lock held past the statement timeout, or no connection slot left, ended the run
  // with its jobs "not judged yet (... a slow or failing RPC?)": on-call looked at the RPC.
  it("names the database, not the RPC, when the verifier's last round could not use it", async () => {
    const store = storeWithWindow();
    const trouble = "canceling statement due to statement timeout";
    const engine: SettlingEngine = {
      async runUntilSettled() {
        return { status: "timed_out", databaseTrouble: trouble };
      },
    };
    const { code, err } = run(store, engine, { timeout: "1s" });
    expect(await code).toBe(2);
    const text = err.join("\n");
    expect(text).toContain(
      `2 jobs not final: 2 not judged yet (the verifier's last round could not use the database: ${trouble})`,
    );
    expect(text).not.toContain("slow or failing RPC");
  });

  it("names the rate limiting when the RPC answered 429 during a run that timed out", async () => {
    const store = storeWithWindow();
    // 3 answers 429 before the run (not its own), 40 more during it.
    let limited = 3;
    const rpcStats = () => [
      {
        endpoint: "https://rpc.example",
        method: "getTransaction",
        outcome: "rate_limited",
        count: limited,
      },
      { endpoint: "https://rpc.example", method: "getTransaction", outcome: "ok", count: 7 },
    ];
    const engine = scriptedEngine(store, "timeout");
    const settle = engine.runUntilSettled.bind(engine);
    engine.runUntilSettled = (...args: Parameters<typeof settle>) => {
      limited += 40;
      return settle(...args);
    };
    const { code, err } = run(store, engine, { timeout: "1s" }, { rpcStats });
    expect(await code).toBe(2);
    expect(err.join("\n")).toContain(
      "the RPC answered 429 (rate limited) this run: https://rpc.example 40 times",
    );
  });

  it("keeps to its timeout on the monotonic clock when the wall clock steps", async () => {
    // The clock steps 2 h ahead as the run starts (NTP, a VM resumed): not a timeout.
    for (const step of [2 * hour, -2 * hour]) {
      const store = storeWithWindow();
      let calls = 0;
      const out: string[] = [];
      const err: string[] = [];
      const code = await runVerifyCommand(
        store,
        scriptedEngine(store, { in_1: "verified", in_2: "verified" }),
        { since: "24h", timeout: "1m", json: true },
        {
          out: (t) => out.push(t),
          err: (l) => err.push(l),
          progress: false,
          now: () => (calls++ < 2 ? NOW : NOW + step),
        },
      );
      expect(err.join("\n"), `step ${step}`).not.toMatch(/timed out/);
      expect(code, `step ${step}`).toBe(0);
      const summary = JSON.parse(out.join("")) as { startedAt: string; finishedAt: string };
      const took = Date.parse(summary.finishedAt) - Date.parse(summary.startedAt);
      expect(took).toBeGreaterThanOrEqual(0);
      expect(took).toBeLessThan(60_000);
    }
  });

  it("exits 2, could not finish, while a job waits in rpc_disagreement, and says so", async () => {
    const store = storeWithWindow();
    const { code, out } = run(
      store,
      scriptedEngine(store, { in_1: "verified", in_2: "rpc_disagreement" }),
      { json: true },
    );
    expect(await code).toBe(2);
    const summary = JSON.parse(out.join(""));
    expect(summary.outcome).toBe("incomplete");
    expect(summary.byVerdict.rpc_disagreement).toBe(1);
    expect(summary.reason).toContain("1 jobs in rpc_disagreement");
  });

  it("exits 2 without touching a job when the RPC is unreachable", async () => {
    const store = storeWithWindow();
    const engine = scriptedEngine(store, { in_1: "verified", in_2: "verified" });
    const { code, err } = run(
      store,
      engine,
      {},
      {
        preflight: () => Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:1")),
      },
    );
    expect(await code).toBe(2);
    expect(err.join("\n")).toMatch(/RPC unreachable: connect ECONNREFUSED/);
    expect(engine.filters).toEqual([]);
  });

  it("exits 2 within its timeout when the RPC never answers the preflight", async () => {
    const store = storeWithWindow();
    const engine = scriptedEngine(store, { in_1: "verified", in_2: "verified" });
    const started = Date.now();
    const { code, err } = run(
      store,
      engine,
      { timeout: "1s" },
      // A node that accepts the connection and never replies (the pool retries for a minute).
      { preflight: () => new Promise(() => {}) },
    );
    expect(await code).toBe(2);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(err.join("\n")).toMatch(/RPC unreachable: no answer, timed out after 1 s/);
    expect(engine.filters).toEqual([]);
  });

  it("exits 2 while another run holds the lock, and runs once the lock is released or expired", async () => {
    const store = storeWithWindow();
    const engine = scriptedEngine(store, { in_1: "verified", in_2: "verified" });
    expect(await acquireLock(store, NIGHTLY_LOCK, "other-run", hour, NOW)).toBeNull();
    const held = run(store, engine);
    expect(await held.code).toBe(2);
    expect(held.err.join("\n")).toMatch(
      /another verification run holds the lock \(owner other-run/,
    );
    expect(engine.filters).toEqual([]);

    await releaseLock(store, NIGHTLY_LOCK, "other-run");
    expect(await run(store, engine).code).toBe(0);
    // The run released its own lock.
    expect(store.sqlite.prepare("SELECT count(*) FROM locks").pluck().get()).toBe(0);

    await acquireLock(store, NIGHTLY_LOCK, "crashed-run", 1000, NOW - 5000);
    expect(await run(store, engine).code).toBe(0);
  });

  // On SQLite the lock's expiry is this host's clock: stepped forward past a live run's
  // --timeout plus a minute, the next cron start took the lock and two nightlies ran at once.
  it("leaves the lock of a run still running on this host, its expiry passed or not", async () => {
    const store = storeWithWindow();
    const engine = scriptedEngine(store, { in_1: "verified", in_2: "verified" });
    const other = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"]);
    try {
      const live = ownerName("nightly-live").replace(/\/\d+(\.\d+)?\//, `/${other.pid}/`);
      // Expired 5 s ago by the clock the lock is judged by.
      await acquireLock(store, NIGHTLY_LOCK, live, 1000, NOW - 6000);
      const held = run(store, engine);
      expect(await held.code).toBe(2);
      expect(held.err.join("\n")).toMatch(/another verification run holds the lock/);
      expect(engine.filters).toEqual([]);
    } finally {
      other.kill("SIGKILL");
    }
  });

  it("takes at once the lock of a run killed on this host, whose pid is gone", async () => {
    const store = storeWithWindow();
    const engine = scriptedEngine(store, { in_1: "verified", in_2: "verified" });
    const gone = spawnSync(process.execPath, ["-e", ""]).pid;
    const dead = ownerName("nightly-killed").replace(/\/\d+(\.\d+)?\//, `/${gone}/`);
    await acquireLock(store, NIGHTLY_LOCK, dead, hour, NOW);
    expect(await run(store, engine).code).toBe(0);
    // A live holder (this process) keeps it.
    await acquireLock(store, NIGHTLY_LOCK, ownerName("nightly-alive"), hour, NOW);
    expect(await run(store, engine).code).toBe(2);
  });

  it("keeps to its timeout while reading the credit vaults' history", async () => {
    const store = storeWithWindow();
    const engine = scriptedEngine(store, { in_1: "verified", in_2: "verified" });
    const started = Date.now();
    const result = run(
      store,
      engine,
      { timeout: "1s" },
      {
        // A ledger read that would go on for ever: only the run's deadline ends it.
        ledger: ({ signal }: { signal?: AbortSignal }) =>
          new Promise((_resolve, reject) =>
            signal?.addEventListener("abort", () => reject(signal.reason)),
          ),
      },
    );
    expect(await result.code).toBe(2);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(result.err.join("\n")).toMatch(
      /timed out after 1 s \(reading the credit vaults' history\)/,
    );
  });

  it("names the store's file when its disk fills during the run", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "nightly-full-")), "audit.db");
    const store = openSqliteStore(path);
    migrateStore(store);
    insertJob(store, { jobId: "in_1", createdAt: NOW - 2 * hour, verdict: "pending" });
    const engine: SettlingEngine = {
      async runUntilSettled() {
        // The disk has no page left: the verifier's next write that grows the file fails.
        const pages = Number(store.sqlite.pragma("page_count", { simple: true }));
        store.sqlite.pragma(`max_page_count = ${pages}`);
        store.sqlite
          .prepare("UPDATE jobs SET tags = ? WHERE job_id = 'in_1'")
          .run(JSON.stringify({ note: "x".repeat(200_000) }));
        return { status: "completed", runId: 1 };
      },
    };
    const { code, err } = run(store, engine);
    expect(await code).toBe(2);
    expect(err.join("\n")).toContain(
      `verify: cannot use the SQLite store ${path}: the disk holding it is full; free space there`,
    );
    store.close();
  });

  it("writes the JSON summary to --out", async () => {
    const store = storeWithWindow();
    const file = join(mkdtempSync(join(tmpdir(), "verify-")), "summary.json");
    const { code } = run(store, scriptedEngine(store, { in_1: "verified", in_2: "unverifiable" }), {
      json: true,
      out: file,
    });
    expect(await code).toBe(1);
    const summary = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    expect(summary).toMatchObject({
      outcome: "discrepancies",
      exitCode: 1,
      total: 2,
      from: "2026-11-24T02:00:00.000Z",
      to: "2026-11-25T02:00:00.000Z",
      findings: [{ jobId: "in_2", verdict: "unverifiable", failingChecks: [] }],
    });
  });

  it("refuses before the run an --out it could not write, and --json with --markdown", async () => {
    const store = storeWithWindow();
    const engine = scriptedEngine(store, { in_1: "verified", in_2: "verified" });
    const dir = mkdtempSync(join(tmpdir(), "verify-"));
    for (const [flags, message] of [
      [{ out: dir }, `--out: ${dir} is a folder`],
      [{ out: join(dir, "no", "summary.json") }, "--out: no folder"],
      [{ json: true, markdown: true }, "--json: cannot be given with --markdown"],
    ] as const) {
      await expect(run(store, engine, flags).code).rejects.toMatchObject({
        code: "validation_failed",
        message: expect.stringContaining(message),
      });
    }
    // Nothing ran: the engine was never asked to settle the window.
    expect(engine.filters).toEqual([]);
  });

  it("says 0 jobs recorded, never all verified, for a window without jobs (text, Markdown, JSON)", async () => {
    const store = createTestStore();
    const text = run(store, scriptedEngine(store, {}));
    expect(await text.code).toBe(0);
    expect(text.out.join("")).toContain("0 jobs recorded in this window, nothing verified");
    const markdown = run(store, scriptedEngine(store, {}), { markdown: true });
    expect(await markdown.code).toBe(0);
    expect(markdown.out.join("")).toMatch(/^### ⚪ Nightly verification: 0 jobs recorded/);
    const json = run(store, scriptedEngine(store, {}), { json: true });
    expect(await json.code).toBe(0);
    expect(JSON.parse(json.out.join(""))).toMatchObject({
      headline: "0 jobs recorded in this window, nothing verified",
      outcome: "no_jobs",
      exitCode: 0,
      total: 0,
    });
    for (const output of [text, markdown, json]) {
      expect(output.out.join("")).not.toMatch(/all 0|all verified|"outcome": "verified"|✅/);
    }
  });

  it("exits 1 with --min-jobs when the window holds fewer jobs, saying so", async () => {
    const store = storeWithWindow();
    const engine = scriptedEngine(store, { in_1: "verified", in_2: "verified" });
    const tooFew = run(store, engine, { minJobs: "3", json: true });
    expect(await tooFew.code).toBe(1);
    expect(tooFew.err).toContain("verify: 2 jobs recorded, fewer than --min-jobs 3");
    expect(JSON.parse(tooFew.out.join(""))).toMatchObject({
      outcome: "too_few_jobs",
      minJobs: 3,
      total: 2,
    });
    const enough = run(store, engine, { minJobs: "2" });
    expect(await enough.code).toBe(0);
    expect(enough.out.join("")).toContain("all 2 jobs verified");

    const empty = createTestStore();
    const none = run(empty, scriptedEngine(empty, {}), { minJobs: "1" });
    expect(await none.code).toBe(1);
    expect(none.out.join("")).toContain("0 jobs recorded, fewer than --min-jobs 1");
  });

  it("reports too few jobs beside the discrepancies it found", async () => {
    const store = storeWithWindow();
    const { code, out, err } = run(
      store,
      scriptedEngine(store, { in_1: "verified", in_2: "discrepancy" }),
      { minJobs: "10" },
    );
    expect(await code).toBe(1);
    expect(out.join("")).toContain("1 of 2 jobs NOT verified");
    expect(out.join("")).toContain("also: 2 jobs recorded, fewer than --min-jobs 10");
    expect(err).toContain("verify: 2 jobs recorded, fewer than --min-jobs 10");
  });

  it.each([
    [{ since: "yesterday" }, "since"],
    [{ since: "24h", from: "2026-11-01" }, "since"],
    [{ from: "2026-11-31" }, "from"],
    [{ from: "2026-11-02", to: "2026-11-01" }, "to"],
    [{ since: "1h", timeout: "forever" }, "timeout"],
    // Beyond what a timer waits: Node would fire it at once, and the run end "timed out".
    [{ since: "1h", timeout: "30d" }, "timeout"],
    [{}, "from"],
    [{ window: "last-week" }, "window"],
    [{ since: "24h", minJobs: "-1" }, "min-jobs"],
    [{ since: "24h", minJobs: "many" }, "min-jobs"],
    [{ window: "yesterday", since: "24h" }, "window"],
    [{ window: "yesterday", to: "2026-11-25" }, "window"],
  ])("rejects flags %j naming --%s", (flags, field) => {
    expect(() => verifyWindow(flags, NOW)).toThrow(expect.objectContaining({ details: { field } }));
  });

  it("says which window names there are when --window names another", () => {
    expect(() => verifyWindow({ window: "today" }, NOW)).toThrow(
      '--window: no window named "today" (known: yesterday); for another period give --since or --from/--to',
    );
  });

  it("refuses a window that has not ended yet, naming --to: its runs would say clean of receipts still to come", () => {
    expect(() => verifyWindow({ from: "2026-11-24", to: "2026-11-26" }, NOW)).toThrow(
      expect.objectContaining({
        details: { field: "to" },
        message: expect.stringContaining(
          "--to: 2026-11-26 is after now (2026-11-25T02:00:00.000Z): a window is verified once it has ended",
        ),
      }),
    );
    // One ending now is over: the default end.
    expect(verifyWindow({ from: "2026-11-24", to: String(NOW / 1000) }, NOW)).toMatchObject({
      to: NOW,
    });
  });

  it("points --since yesterday at --window yesterday", () => {
    expect(() => verifyWindow({ since: "yesterday" }, NOW)).toThrow(/--window yesterday/);
  });

  it("--since is relative to the run's start, --window yesterday is the previous UTC day whenever it runs", () => {
    const late = NOW + 7 * 60_000;
    expect(verifyWindow({ since: "24h" }, late)).toMatchObject({
      from: late - 24 * hour,
      to: late,
    });
    const day = { from: Date.UTC(2026, 10, 24), to: Date.UTC(2026, 10, 25) };
    for (const at of [Date.UTC(2026, 10, 25), NOW, late, Date.UTC(2026, 10, 26) - 1]) {
      expect(verifyWindow({ window: "yesterday" }, at)).toMatchObject(day);
    }
  });
});

describe("serve --verify-cron", () => {
  it("schedules the same run in UTC and logs its summary", async () => {
    const store = storeWithWindow();
    const lines: Record<string, unknown>[] = [];
    const log = createLogger(
      { level: "info" },
      { write: (l: string) => lines.push(JSON.parse(l)) },
    );
    const schedule = scheduleNightlyVerification("0 2 * * *", {
      store,
      engine: scriptedEngine(store, { in_1: "verified", in_2: "discrepancy" }),
      log,
      now: () => NOW,
    });
    try {
      expect(schedule.nextRun()?.getUTCHours()).toBe(2);
      const summary = await schedule.runNow();
      expect(summary.exitCode).toBe(1);
      expect(lines.at(-1)).toMatchObject({
        msg: "nightly verification: discrepancies",
        nightly: { exitCode: 1 },
      });
    } finally {
      schedule.stop();
    }
  });

  it("ends a run going on as interrupted when the service stops", async () => {
    const store = storeWithWindow();
    let started: () => void = () => {};
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    // A verifier still at work, that stops when told to, as the real engine does.
    const engine: SettlingEngine = {
      async runUntilSettled(_filter, opts) {
        started();
        const signal = opts.signal!;
        await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
        return { status: "interrupted" };
      },
    };
    const schedule = scheduleNightlyVerification("0 2 * * *", {
      store,
      engine,
      log: createLogger({ level: "silent" }),
      now: () => NOW,
    });
    const summary = schedule.runNow();
    await running;
    schedule.stop();
    expect(await summary).toMatchObject({
      exitCode: 2,
      reason: expect.stringMatching(/^interrupted;/),
    });
  });

  it("verifies the window between scheduled fire times, even when the run starts late", async () => {
    const store = createTestStore();
    let at = Date.UTC(2026, 10, 25, 2, 7); // 2 h 7 min after the fire of "0 0 * * *"
    const engine = scriptedEngine(store, {});
    const daily = scheduleNightlyVerification("0 0 * * *", {
      store,
      engine,
      log: createLogger({ level: "silent" }),
      now: () => at,
    });
    const at2 = scheduleNightlyVerification("0 2 * * *", {
      store,
      engine,
      log: createLogger({ level: "silent" }),
      now: () => at,
    });
    try {
      expect(await daily.runNow()).toMatchObject({
        from: Date.UTC(2026, 10, 24),
        to: Date.UTC(2026, 10, 25),
      });
      expect(await at2.runNow()).toMatchObject({
        from: Date.UTC(2026, 10, 24, 2),
        to: Date.UTC(2026, 10, 25, 2),
      });
      // A run exactly at its fire time ends its window there.
      at = Date.UTC(2026, 10, 26);
      expect(await daily.runNow()).toMatchObject({
        from: Date.UTC(2026, 10, 25),
        to: Date.UTC(2026, 10, 26),
      });
    } finally {
      daily.stop();
      at2.stop();
    }
  });

  it("folds a window it could not finish into the next one, so no time is left out", async () => {
    const store = createTestStore();
    let at = Date.UTC(2026, 10, 25, 0, 5);
    let status: "timed_out" | "completed" = "timed_out";
    const schedule = scheduleNightlyVerification("0 0 * * *", {
      store,
      engine: { runUntilSettled: async () => ({ status }) },
      log: createLogger({ level: "silent" }),
      now: () => at,
    });
    try {
      const failed = await schedule.runNow();
      expect(failed).toMatchObject({ exitCode: 2, from: Date.UTC(2026, 10, 24) });
      status = "completed";
      at = Date.UTC(2026, 10, 26, 0, 5);
      expect(await schedule.runNow()).toMatchObject({
        exitCode: 0,
        from: Date.UTC(2026, 10, 24),
        to: Date.UTC(2026, 10, 26),
      });
      at = Date.UTC(2026, 10, 27, 0, 5);
      expect(await schedule.runNow()).toMatchObject({
        from: Date.UTC(2026, 10, 26),
        to: Date.UTC(2026, 10, 27),
      });
    } finally {
      schedule.stop();
    }
  });

  it("ends a scheduled run's window at its fire time when a busy process starts it late", async () => {
    const store = createTestStore();
    const summaries: { from: number; to: number; startedAt: number }[] = [];
    let seen: () => void = () => {};
    const ran = new Promise<void>((resolve) => {
      seen = resolve;
    });
    const log = createLogger(
      { level: "info" },
      {
        write: (line: string) => {
          const entry = JSON.parse(line) as { nightly?: (typeof summaries)[number] };
          if (entry.nightly) summaries.push(entry.nightly);
          seen();
        },
      },
    );
    // Busy from just after a whole second until well past the next one, when the run is due.
    while (Date.now() % 1000 < 50 || Date.now() % 1000 > 200);
    const fire = (Math.floor(Date.now() / 1000) + 1) * 1000;
    const schedule = scheduleNightlyVerification("* * * * * *", {
      store,
      engine: scriptedEngine(store, {}),
      log,
    });
    try {
      while (Date.now() < fire + 500);
      await ran;
      const [first] = summaries;
      expect(first).toMatchObject({ from: fire - 1000, to: fire });
      expect(first!.startedAt - first!.to).toBeGreaterThanOrEqual(500);
    } finally {
      schedule.stop();
    }
  });

  const day = (d: number) => Date.UTC(2026, 10, d);

  /** The night from `day(from)` run by `owner`: finished with `exitCode`, or killed in it. */
  async function pastNight(
    store: SqliteStore,
    from: number,
    exitCode: number | null,
    owner = "killed",
  ) {
    const runs = createVerificationRunStore(store);
    const { runId } = await runs.open(
      { trigger: "verify", window: { from: day(from), to: day(from + 1) }, heartbeatUntil: 1 },
      { owner, t: day(from + 1), deadOwners: [] },
    );
    if (exitCode === null) return;
    await runs.finish(runId, "completed", {}, day(from + 1));
    const outcome = { outcome: "discrepancies", exitCode, reason: null, ledgerFindings: null };
    await runs.recordOutcome(runId, outcome, day(from + 1));
  }

  /** The first scheduled runs of a process that starts with no memory of the nights before. */
  async function dailyRuns(store: SqliteStore, at: readonly number[]) {
    let now = at[0]!;
    const schedule = scheduleNightlyVerification("0 0 * * *", {
      store,
      engine: scriptedEngine(store, {}),
      log: createLogger({ level: "silent" }),
      now: () => now,
    });
    try {
      const windows: unknown[] = [];
      for (const t of at) {
        now = t;
        windows.push(await schedule.runNow());
      }
      return windows;
    } finally {
      schedule.stop();
    }
  }

  it("takes in the window of a run that never finished in another process (a leader killed in its run)", async () => {
    const store = createTestStore();
    // The night of the 24th finished; the leader running the night of the 25th was killed in
    // it (its row abandoned, no outcome), and the leader after it starts with no memory.
    await pastNight(store, 23, 1);
    await pastNight(store, 24, null);
    const runs = await dailyRuns(store, [day(26) + 5 * 60_000, day(27) + 5 * 60_000]);
    expect(runs).toMatchObject([
      { from: day(24), to: day(26) },
      { from: day(26), to: day(27) },
    ]);
  });

  it("takes in the window of the first scheduled run when it never finished", async () => {
    const store = createTestStore();
    await pastNight(store, 24, null);
    const runs = await dailyRuns(store, [day(26) + 5 * 60_000]);
    expect(runs).toMatchObject([{ from: day(24), to: day(26) }]);
  });

  it("looks back at most a week of windows for a nightly that finished", async () => {
    const store = createTestStore();
    await pastNight(store, 1, 0, "long-ago");
    const runs = await dailyRuns(store, [day(26) + 5 * 60_000]);
    expect(runs).toMatchObject([{ from: day(25), to: day(26) }]);
  });

  it("refuses an invalid expression naming VERIFY_CRON", () => {
    const store = createTestStore();
    expect(() =>
      scheduleNightlyVerification("every night", {
        store,
        engine: scriptedEngine(store, {}),
        log: createLogger({ level: "silent" }),
      }),
    ).toThrow(/VERIFY_CRON/);
  });
});

describe("decentral-audit verify with a busy database", () => {
  it("waits out a held write lock for its timeout, then exits 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "verify-locked-"));
    const file = join(dir, "audit.db");
    const store = openSqliteStore(file, { busyTimeoutMs: 50 });
    migrateStore(store);
    insertJob(store, { jobId: "in_1", createdAt: NOW - hour, verdict: "pending" });
    const other = new Database(file);
    other.exec("BEGIN IMMEDIATE");
    try {
      const engine = scriptedEngine(store, { in_1: "verified" });
      const started = performance.now();
      const { code, err } = run(store, engine, { timeout: "2s" });
      expect(await code).toBe(2);
      // A lock held as the run starts (another writer's transaction) is waited on, not fatal.
      expect(performance.now() - started).toBeGreaterThan(1500);
      expect(err.join("\n")).toMatch(/database: database is locked/);
      expect(engine.filters).toEqual([]);
    } finally {
      other.exec("ROLLBACK");
      other.close();
      store.close();
    }
  });
});

describe("decentral-audit verify when the database is gone before the summary", () => {
  it("says the window's counts are not known, never 0 jobs, and exits 2", async () => {
    const store = storeWithWindow();
    // The database goes away as the jobs are settled, and does not come back.
    const engine: SettlingEngine = {
      async runUntilSettled() {
        store.sqlite.close();
        return { status: "completed" };
      },
    };
    const { code, out } = run(store, engine, { json: true });
    expect(await code).toBe(2);
    const summary = JSON.parse(out.join("")) as { countsUnknown?: boolean; reason: string };
    expect(summary.countsUnknown).toBe(true);
    expect(summary.reason).toContain("the window's job counts could not be read");
    // The text says so too (the store is still closed: this run cannot even take the lock).
    const text = run(store, engine);
    expect(await text.code).toBe(2);
    expect(text.out.join("")).toContain("jobs: not known (the database did not answer)");
    expect(text.out.join("")).not.toMatch(/jobs: 0/);
  });
});

describe("verify: partially verified jobs and profile gaps", () => {
  it("counts partially verified jobs apart, says what was unproven, and names the profile's gaps once", async () => {
    const store = storeWithWindow();
    const engine = scriptedEngine(store, { in_1: "verified", in_2: "partially_verified" });
    store.sqlite
      .prepare("UPDATE jobs SET unproven = ? WHERE job_id = 'in_2'")
      .run(JSON.stringify(["usage_unknown"]));
    // The run's verdicts name its profile: one of no profile recorded is still to be judged.
    store.sqlite
      .prepare("UPDATE jobs SET verdict_profile = ?")
      .run("decentral-mainnet@0123456789abcdef");
    const profile = () => ({
      name: "decentral-mainnet",
      id: "decentral-mainnet@0123456789abcdef",
      gaps: [{ check: "settlement.program", reason: "the settlement program id is not known" }],
      treasury: { source: "profile" as const, address: "x" },
    });
    const { code, out } = run(store, engine, {}, { profile });
    expect(await code).toBe(0);
    const text = out.join("");
    expect(text).toContain("1 of 2 jobs verified, 1 partially verified");
    expect(text).toContain("usage_unknown 1");
    expect(text).not.toContain("all 2 jobs verified");
    expect(text.match(/cannot check settlement\.program/g)).toHaveLength(1);

    const json = run(store, scriptedEngine(store, {}), { json: true }, { profile });
    await json.code;
    const summary = JSON.parse(json.out.join(""));
    expect(summary.byVerdict.partially_verified).toBe(1);
    expect(summary.unproven).toEqual({ usage_unknown: 1 });
    expect(summary.profile.gaps).toHaveLength(1);
  });
});

describe("verify that loses the verification lock to another run", () => {
  it("says another run holds the lock, since when, and does not blame the RPC", async () => {
    const store = storeWithWindow();
    const engine = scriptedEngine(store, { in_1: "verified", in_2: "verified" });
    await acquireLock(store, NIGHTLY_LOCK, "other-run", hour, NOW - 60_000);
    const held = run(store, engine);
    expect(await held.code).toBe(2);
    const said = held.err.join("\n");
    expect(said).toContain(
      `another verification run holds the lock (owner other-run, since ${new Date(NOW - 60_000).toISOString()}`,
    );
    // The window's jobs were left open by the other run, not by a slow or failing RPC.
    expect(said).not.toMatch(/RPC/);
    expect(engine.filters).toEqual([]);
  });
});

// The jobs the ledger's read reopened were settled by a second run with a row of its own: the
// first row stayed `completed` with no exit code. One row is held `running` through the ledger
// and both settlements, and closed once with the night's outcome.
describe("a nightly whose ledger read reopens jobs", () => {
  it("settles them on the same held row and closes it once with the outcome", async () => {
    const store = storeWithWindow();
    const calls: { holdRun?: boolean; runId?: number }[] = [];
    const ended: unknown[][] = [];
    const engine: SettlingEngine = {
      async runUntilSettled(_filter, opts) {
        calls.push({
          ...(opts.holdRun !== undefined ? { holdRun: opts.holdRun } : {}),
          ...(opts.runId !== undefined ? { runId: opts.runId } : {}),
        });
        store.sqlite.prepare("UPDATE jobs SET verdict = 'verified' WHERE job_id LIKE 'in_%'").run();
        return { status: "completed", runId: 7 };
      },
      async endRun(...args) {
        ended.push(args);
      },
    };
    const empty = Object.fromEntries(
      [
        "unreceiptedDebits",
        "unreleasedLocks",
        "creditsHeaderMismatches",
        "creditsHeaderUndecided",
        "foreignMint",
        "vaultOwnerChanges",
        "vaultDelegateApprovals",
        "vaultDelegatesNow",
        "vaultOwnersNow",
        "mixedJobMemos",
        "imbalanced",
        "gaps",
        "prunedHistory",
      ].map((k) => [k, []]),
    );
    const summary = await runNightlyVerification(store, engine, {
      from: NOW - 24 * hour,
      to: NOW,
      timeoutMs: 60_000,
      now: () => NOW,
      // The read reopens a job whose credits header waited for it.
      ledger: async () => {
        store.sqlite.prepare("UPDATE jobs SET verdict = 'pending' WHERE job_id = 'in_1'").run();
        return { vaults: 1, incomplete: null, ...empty } as unknown as LedgerWindowResult;
      },
    });
    expect(summary).toMatchObject({ outcome: "verified", exitCode: 0, runId: 7 });
    expect(calls).toEqual([{ holdRun: true }, { holdRun: true, runId: 7 }]);
    expect(ended).toEqual([
      [
        7,
        "completed",
        { outcome: "verified", exitCode: 0, reason: null, ledgerFindings: 0 },
        summary.finishedAt,
      ],
    ]);
  });
});

describe("serve --verify-cron's summary line", () => {
  it("counts the ledger's findings, so the line fits the log's 4 KiB and keeps its reason whole", async () => {
    const store = storeWithWindow();
    const lines: string[] = [];
    const log = createLogger({ level: "info" }, { write: (l: string) => lines.push(l) });
    const lock = (i: number) => ({
      vault: "2iy3Sxsq1Q2hyd1V6abajS6CiU8ZmP9jzyQcsTYTP3jB",
      jobId: `job_unreleased${i}`,
      signature:
        "5HpCBJL3UQ29wgXXtCvfD566hZ1JtuRknpXwD6Pemqex2AQvjdR3CLtPhyXN1M2BN3hpoWjiSjac44n93bs5B87U",
      lockUnits: "20000",
      outstandingUnits: "20000",
      lockedAt: "2026-11-24T22:22:21.000Z",
      dueBy: "2026-11-24T22:29:21.000Z",
      beforeWindow: true,
    });
    const ledger = async (): Promise<LedgerWindowResult> => ({
      ...cleanLedger,
      vaults: 5,
      unreleasedLocks: Array.from({ length: 168 }, (_, i) => lock(i)),
    });
    const schedule = scheduleNightlyVerification("0 2 * * *", {
      store,
      engine: scriptedEngine(store, { in_1: "verified", in_2: "verified" }),
      log,
      ledger,
      now: () => NOW,
    });
    try {
      const summary = await schedule.runNow();
      expect(summary.exitCode).toBe(1);
      const line = lines.at(-1) as string;
      // Longer than PIPE_BUF, the log's writer cuts every string of the line (src/serve-log.ts).
      expect(Buffer.byteLength(line)).toBeLessThanOrEqual(4096);
      const entry = JSON.parse(line);
      expect(entry.msg).toBe("nightly verification: ledger_findings");
      expect(entry.nightly.ledger).toMatchObject({ vaults: 5, unreleasedLocks: 168, gaps: 0 });
    } finally {
      schedule.stop();
    }
  });
});
