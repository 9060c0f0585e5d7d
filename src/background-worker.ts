import type { Worker } from "node:worker_threads";
import type { RpcStatRow } from "./api/metrics.js";
import type { QuorumEndpointStatus, QuorumStatus } from "./chain/quorum.js";
import type { Config } from "./config.js";
import type { LedgerTotals } from "./ledger/totals.js";
import { type Logger, rawLineWriter } from "./log.js";
import type { JobsApiCallOutcome } from "./recorder/jobs-api.js";
import { startModuleThread } from "./thread-entry.js";

/** What the background thread is started with. */
export interface BackgroundThreadData {
  config: Config;
  busyTimeoutMs: number;
  /** The process's count of requests begun (src/request-pressure.ts). */
  requests: SharedArrayBuffer;
}

/** What the background thread reports every 2 s and when it ends. */
export interface BackgroundReport {
  type: "report";
  rpcStats: RpcStatRow[];
  /** The settlement backfill's jobs API calls, by outcome. */
  jobsApiCalls: [JobsApiCallOutcome, number][];
  quorum: QuorumStatus | null;
  totals: LedgerTotals;
}

/**
 * A log line of the thread, written by the process's logger: a thread writing to stdout
 * itself blocked on a full pipe (a log reader that stopped reading), and a thread stuck in a
 * write can neither stop nor be terminated, so the process could not exit.
 */
export interface BackgroundLogLine {
  type: "log";
  line: string;
}

/**
 * `later` with the counters of `earlier` added to its own (RPC requests, quorum
 * disagreements): a thread that ended took its counters with it, and the metrics' counters
 * must never go back. The rest (quorum standing, ledger totals) is `later`'s; an endpoint only
 * `earlier` knew keeps its counts and is not set aside.
 */
export function addReportCounters(
  earlier: BackgroundReport | null,
  later: BackgroundReport,
): BackgroundReport {
  if (!earlier) return later;
  return {
    ...later,
    rpcStats: addRpcStats(earlier.rpcStats, later.rpcStats),
    jobsApiCalls: addCallCounts(earlier.jobsApiCalls, later.jobsApiCalls),
    quorum: addQuorumCounts(earlier.quorum, later.quorum),
  };
}

/** Jobs API call counts of both (and of any more), added up per outcome. */
export function addCallCounts(
  ...counts: Iterable<readonly [JobsApiCallOutcome, number]>[]
): [JobsApiCallOutcome, number][] {
  const sums = new Map<JobsApiCallOutcome, number>();
  for (const list of counts) for (const [k, n] of list) sums.set(k, (sums.get(k) ?? 0) + n);
  return [...sums];
}

/** RPC counters of both, added up per endpoint, method and outcome. */
function addRpcStats(a: readonly RpcStatRow[], b: readonly RpcStatRow[]): RpcStatRow[] {
  const rows = new Map<string, RpcStatRow>();
  for (const row of [...a, ...b]) {
    const key = JSON.stringify([row.endpoint, row.method, row.outcome]);
    const seen = rows.get(key);
    rows.set(key, seen ? { ...seen, count: seen.count + row.count } : { ...row });
  }
  return [...rows.values()];
}

/** `b`'s quorum standing with `a`'s outvoted and unresolved counts added per endpoint. */
export function addQuorumCounts(
  a: QuorumStatus | null,
  b: QuorumStatus | null,
): QuorumStatus | null {
  if (!a) return b;
  const endpoints = new Map<string, QuorumEndpointStatus>();
  for (const e of b?.endpoints ?? []) endpoints.set(e.endpoint, { ...e });
  for (const e of a.endpoints) {
    const seen = endpoints.get(e.endpoint);
    if (seen) {
      seen.outvoted += e.outvoted;
      seen.unresolved += e.unresolved;
    } else {
      endpoints.set(e.endpoint, {
        ...e,
        consecutiveOutvoted: 0,
        setAside: false,
        setAsideUntil: null,
      });
    }
  }
  return { quorum: (b ?? a).quorum, endpoints: [...endpoints.values()] };
}

/** Whether the background work runs, for `/readyz`. */
export interface BackgroundHealth {
  ok: boolean;
  detail: string;
}

/** The background work running in a thread of this process. */
export interface BackgroundThread {
  /** The thread's last report, or null before its first. */
  lastReport(): BackgroundReport | null;
  /**
   * Running: the thread reported within `STALE_MS`, or started less than `STARTING_MS` ago.
   * Not running: it ended and waits to be started again, or stopped reporting (its event loop
   * stuck), or has not reported since it started.
   */
  health(): BackgroundHealth;
  /**
   * Stops the work (loops end, pool and store closed) and waits for the thread to end, which
   * it does on its own within the drain time (`DRAIN_TIMEOUT_MS`). The thread is never
   * terminated from outside: terminating a thread inside a synchronous SQLite call (a busy
   * wait for another process's write lock) aborts the whole process (SIGABRT), taking the
   * receipts it was still writing with it.
   */
  stop(): Promise<void>;
}

/** A thread reports every 2 s: one silent this long is not running. */
const STALE_MS = 30_000;
/** How long a thread started may take to report first (its store opened, its loops started). */
const STARTING_MS = 30_000;

/**
 * What the thread is told when it must stop: stop its work, and end at the latest `withinMs`
 * after, whatever it still waits for (see background-thread.ts).
 */
export interface BackgroundStop {
  type: "stop";
  withinMs: number;
}

/**
 * Least time the thread is given to stop, even with no drain time: on a store nobody else
 * holds, its stop (run closed, leases released) takes milliseconds.
 */
const MIN_STOP_MS = 1000;

/** The first wait before a failed thread starts again, doubled up to `MAX_RESTART_MS`. */
const RESTART_MS = 1000;
const MAX_RESTART_MS = 30_000;
/** A thread that ran this long failed anew: its restart waits `RESTART_MS` again. */
const HEALTHY_MS = 60_000;

/**
 * Connections the thread's own pool keeps open on PostgreSQL: half the process's setting (at
 * least two). Its loops run a statement or a few at a time; the requests keep the full pool.
 */
export function backgroundPoolSize(poolSize: number): number {
  return Math.max(2, Math.ceil(poolSize / 2));
}

/**
 * Starts the verifier, backfill, ledger reader and nightly schedule in a worker thread
 * (background-thread.ts). A thread that fails is logged and started again, a second later at
 * first and up to 30 s later while it keeps failing, until `stop()`.
 */
export function startBackgroundThread(
  config: Config,
  log: Logger,
  busyTimeoutMs: number,
  requests: SharedArrayBuffer,
): BackgroundThread {
  const here = import.meta.url;
  const fromSource = here.endsWith(".ts");
  const entry = new URL(fromSource ? "./background-thread.ts" : "./background-thread.js", here);
  const workerData: BackgroundThreadData = { config, busyTimeoutMs, requests };
  const writeLine = rawLineWriter(log);
  let report: BackgroundReport | null = null;
  /** The counters of the threads that ended before the current one (see `addReportCounters`). */
  let carried: BackgroundReport | null = null;
  /** When the current thread last reported (performance.now()), or null since it started. */
  let reportedAt: number | null = null;
  let spawnedAt = 0;
  /** When the last thread ended, while the next one has not reported yet. */
  let endedAt: number | null = null;
  let stopping = false;
  let thread: Worker;
  let ended: Promise<void>;
  let restart: NodeJS.Timeout | undefined;
  let restartMs = RESTART_MS;

  const spawn = () => {
    const startedAt = performance.now();
    spawnedAt = startedAt;
    reportedAt = null;
    thread = startModuleThread(entry, workerData);
    thread.on("message", (message: BackgroundReport | BackgroundLogLine) => {
      if (message.type === "log") return writeLine(message.line);
      if (message.type !== "report") return;
      report = addReportCounters(carried, message);
      reportedAt = performance.now();
      endedAt = null;
    });
    thread.on("error", (error) => log.error({ err: error }, "background thread failed"));
    ended = new Promise<void>((resolve) => {
      thread.once("exit", (code) => {
        carried = report;
        resolve();
        if (stopping) return;
        endedAt ??= performance.now();
        reportedAt = null;
        // A thread that cannot start (a database refusing connections) is not started again
        // and again at full speed: the wait doubles while it keeps failing.
        if (performance.now() - startedAt > HEALTHY_MS) restartMs = RESTART_MS;
        log.error({ code, restartInMs: restartMs }, "background thread ended; starting it again");
        restart = setTimeout(spawn, restartMs);
        restartMs = Math.min(restartMs * 2, MAX_RESTART_MS);
      });
    });
  };
  spawn();

  const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;
  return {
    lastReport: () => report,
    health() {
      const t = performance.now();
      if (endedAt !== null && reportedAt === null) {
        return {
          ok: false,
          detail: `the background thread (verifier, backfill, ledger) ended ${seconds(t - endedAt)} ago and is being started again`,
        };
      }
      if (reportedAt !== null) {
        return t - reportedAt <= STALE_MS
          ? { ok: true, detail: "running in a thread" }
          : {
              ok: false,
              detail: `the background thread has not reported for ${seconds(t - reportedAt)}`,
            };
      }
      return t - spawnedAt <= STARTING_MS
        ? { ok: true, detail: "starting" }
        : {
            ok: false,
            detail: `the background thread started ${seconds(t - spawnedAt)} ago and has not reported`,
          };
    },
    async stop() {
      stopping = true;
      clearTimeout(restart);
      thread.postMessage({
        type: "stop",
        withinMs: Math.max(config.DRAIN_TIMEOUT_MS, MIN_STOP_MS),
      } satisfies BackgroundStop);
      await ended;
    },
  };
}
