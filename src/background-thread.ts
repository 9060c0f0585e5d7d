import { readlinkSync } from "node:fs";
import { setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { composeBackground } from "./background.js";
import {
  type BackgroundLogLine,
  type BackgroundReport,
  type BackgroundStop,
  type BackgroundThreadData,
  backgroundPoolSize,
} from "./background-worker.js";
import { isQuorumRpc, rpcFromConfig } from "./chain/quorum.js";
import type { Config } from "./config.js";
import { openStore } from "./db/open.js";
import { createLogger } from "./log.js";
import { createJobsApiClient, jobsApiCallCounts } from "./recorder/jobs-api.js";
import { createReceiptWriter } from "./recorder/receipt-writer.js";
import { readRequestCount } from "./request-pressure.js";
import { loadProfile } from "./verify/profiles.js";

/**
 * Entry of the background thread of a cluster's leader, and of a single process on
 * PostgreSQL (see background-worker.ts): the verifier, backfill and ledger on an event loop and
 * database connections of their own, so their rounds never hold up a proxied byte. Reports its RPC counters
 * and ledger totals every 2 s; on `stop` it stops, closes the pool and the store, and ends.
 */
const port = parentPort;
if (!port) throw new Error("background-thread.ts runs as a worker thread");
const { config, busyTimeoutMs, requests } = workerData as BackgroundThreadData;
const cfg: Config = config;
// Its lines go to the process's logger, which writes them (see `BackgroundLogLine`).
const log = createLogger(
  { level: cfg.LOG_LEVEL },
  { write: (line: string) => port.postMessage({ type: "log", line } satisfies BackgroundLogLine) },
);
const store = await openStore(cfg, {
  busyTimeoutMs,
  poolSize: backgroundPoolSize(cfg.DATABASE_POOL_SIZE),
  migrate: false,
  // The process opened (and created) the store before: a leader taking over after the file's
  // folder was renamed made a new, empty store there and verified it.
  create: false,
});
if (store.kind === "postgres") yieldToRequests();
const rpc = rpcFromConfig(cfg, log);
const writer = createReceiptWriter(store, { log });
const background = composeBackground({
  config: cfg,
  store,
  rpc,
  profile: loadProfile(cfg.AUDIT_PROFILE),
  log,
  jobsApi: createJobsApiClient(cfg.DECENTRAL_BASE_URL),
  writer,
  requests: readRequestCount(requests),
});
const report = () =>
  port.postMessage({
    type: "report",
    rpcStats: rpc.stats(),
    jobsApiCalls: [...jobsApiCallCounts()],
    quorum: isQuorumRpc(rpc) ? rpc.quorumStatus() : null,
    totals: background.totals(),
  } satisfies BackgroundReport);
const timer = setInterval(report, 2000);
port.on("message", (message: Partial<BackgroundStop>) => {
  if (message.type !== "stop") return;
  clearInterval(timer);
  // The thread ends on its own by the deadline: it is never terminated from outside, which
  // inside a SQLite call aborts the process. Whatever still waits then (another process
  // holding the write lock: the run's closing, the leases' release) is left; the leases
  // expire on their own. The deadline fires between two calls (each waits at most its busy
  // timeout), and ending from this thread's own code is safe.
  const deadline = setTimeout(() => {
    log.warn(
      { withinMs: message.withinMs },
      "background work did not stop within the drain time; ending it (its job leases expire on their own)",
    );
    report();
    process.exit(0);
  }, message.withinMs ?? 0);
  // Told to stop first, then the pool is closed so that calls in flight end at once.
  const stopping = background.stop();
  // The writer is closed whether or not the work stopped cleanly: a stop that failed (a role
  // refused UPDATE on `jobs`) left it retrying, its connection held, and the store's close
  // waited for it until the drain time ran out and the process was killed.
  void rpc
    .close()
    .then(() => stopping)
    .catch((error: unknown) => log.warn({ err: error }, "stopping the background work failed"))
    .then(() => writer.close())
    .catch((error: unknown) => log.warn({ err: error }, "closing the background's writer failed"))
    .finally(() => {
      report();
      void Promise.resolve(store.close()).finally(() => {
        clearTimeout(deadline);
        port.close();
      });
    });
});
background.start();

/**
 * Lowers this thread's scheduling priority (nice 10; on Linux the nice value belongs to a
 * thread): on a busy host the background rounds wait for a core while the process's requests
 * are answered, and run at full speed otherwise. Only on PostgreSQL: on SQLite this thread holds
 * the write lock the proxy's writes wait on, and must not be slowed while it does. Elsewhere, or
 * when the system refuses, the thread keeps the process's priority.
 */
function yieldToRequests() {
  try {
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, 10);
  } catch {
    // Not Linux, or not allowed.
  }
}
