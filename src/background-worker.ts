import { Worker } from "node:worker_threads";
import type { RpcStatRow } from "./api/metrics.js";
import type { QuorumStatus } from "./chain/quorum.js";
import type { Config } from "./config.js";
import type { LedgerTotals } from "./ledger/totals.js";
import type { Logger } from "./log.js";

/** What the background thread is started with. */
export interface BackgroundThreadData {
  config: Config;
  busyTimeoutMs: number;
}

/** What the background thread reports every 2 s and when it ends. */
export interface BackgroundReport {
  type: "report";
  rpcStats: RpcStatRow[];
  quorum: QuorumStatus | null;
  totals: LedgerTotals;
}

/** The background work running in a thread of this process. */
export interface BackgroundThread {
  /** The thread's last report, or null before its first. */
  lastReport(): BackgroundReport | null;
  /** Stops the work (loops end, pool and store closed) and waits for the thread to end. */
  stop(): Promise<void>;
}

/** How long `stop()` waits for the thread before terminating it. */
const STOP_WAIT_MS = 15_000;

/**
 * Starts the verifier, backfill, ledger reader and nightly schedule in a worker thread
 * (background-thread.ts). A thread that fails is logged and started again a second later,
 * until `stop()`.
 */
export function startBackgroundThread(
  config: Config,
  log: Logger,
  busyTimeoutMs: number,
): BackgroundThread {
  const here = import.meta.url;
  const fromSource = here.endsWith(".ts");
  const entry = new URL(fromSource ? "./background-thread.ts" : "./background-thread.js", here);
  const workerData: BackgroundThreadData = { config, busyTimeoutMs };
  let report: BackgroundReport | null = null;
  let stopping = false;
  let thread: Worker;
  let ended: Promise<void>;
  let restart: NodeJS.Timeout | undefined;

  const spawn = () => {
    // Run from source (tsx), the thread registers tsx itself: a worker thread does not inherit
    // the process's module hooks.
    thread = fromSource
      ? new Worker(
          `import("tsx/esm/api").then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); })`,
          { eval: true, workerData },
        )
      : new Worker(entry, { workerData });
    thread.on("message", (message: BackgroundReport) => {
      if (message.type === "report") report = message;
    });
    thread.on("error", (error) => log.error({ err: error }, "background thread failed"));
    ended = new Promise<void>((resolve) => {
      thread.once("exit", (code) => {
        resolve();
        if (stopping) return;
        log.error({ code }, "background thread ended; starting it again");
        restart = setTimeout(spawn, 1000);
      });
    });
  };
  spawn();

  return {
    lastReport: () => report,
    async stop() {
      stopping = true;
      clearTimeout(restart);
      thread.postMessage({ type: "stop" });
      const killer = setTimeout(() => void thread.terminate(), STOP_WAIT_MS);
      await ended;
      clearTimeout(killer);
    },
  };
}
