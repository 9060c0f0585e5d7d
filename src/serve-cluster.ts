import cluster, { type Worker } from "node:cluster";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Counter, Gauge, Histogram } from "prom-client";
import type { AppMetrics } from "./api/metrics.js";
import { warnWithoutProxyTokens } from "./auth/tokens.js";
import { backgroundPoolSize } from "./background-worker.js";
import type { Config } from "./config.js";
import { openStore } from "./db/open.js";
import type { PgStore } from "./db/pg/client.js";
import {
  type ConnectionRoom,
  readConnectionRoom,
  WRITER_CONNECTIONS,
} from "./db/pg/connection-room.js";
import { parseDatabaseUrl } from "./db/url.js";
import { AppError } from "./errors.js";
import type { Logger } from "./log.js";
import { loopDelaySampler } from "./loop-delay.js";
import { validateCronExpression } from "./nightly/cron-expression.js";
import { exitAfterDrain } from "./process-exit.js";
import {
  type CommitHolds,
  commitHoldsSinceLastRead,
  writerThreadCommitsSinceLastRead,
} from "./recorder/commit-hold.js";
import {
  COLLECT_TIMEOUT_MS,
  createClusterMetrics,
  fromWire,
  proxiedCount,
  toWire,
  type WireMetrics,
  type WorkerMetrics,
} from "./serve-cluster-metrics.js";
import { serveLogger } from "./serve-log.js";
import { loadProfile } from "./verify/profiles.js";

/** Most workers `serve` starts by default, however many cores. */
const MAX_DEFAULT_WORKERS = 16;
/**
 * The first wait before a dead worker is started again is `WORKER_RESTART_MS`, doubled up to
 * `MAX_RESTART_MS` (or that first wait, if longer).
 */
const MAX_RESTART_MS = 30_000;
/** A worker that lived this long died anew: its successor waits the first wait again. */
const HEALTHY_MS = 60_000;
/** What one process of `serve` reports about itself (the benchmark reads it). */
export interface ProcessStats {
  pid: number;
  /** CPU time (user + system) used so far, ms. */
  cpuMs: number;
  /** Event-loop delay since the last report: p99 and max, ms. */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** The receipt writer's group commits since the last report and how long they held the loop. */
  commitHold: CommitHolds;
  /** The group commits of the receipt writer's own thread since the last report (no loop held). */
  threadCommits: CommitHolds;
}

/** A worker's place in the cluster, taken by each worker restarted in it. */
interface Slot {
  restartMs: number;
  /** When the workers of this place were killed while serve started, the last ones. */
  killedAt: number[];
}

/** The signals that drain `serve` and each of its workers (SIGHUP: its terminal closed). */
const STOP_SIGNALS: readonly string[] = ["SIGTERM", "SIGINT", "SIGHUP"];

/** Workers of one place killed in a row while serve starts, within `HEALTHY_MS`: it gives up. */
const MAX_KILLED_STARTING = 5;

/**
 * Why serve cannot start, now that a worker of `slot` ended before any listened: none when it
 * was killed or stopped from outside (the OOM killer, kill -9, a SIGTERM sent to it alone),
 * which its restart survives unless the workers of that place keep being killed. A worker that
 * exits with a code of its own (a bad configuration, a port taken) fails the same way in every
 * place: serve fails at once. One stopped by a signal that reached serve too (sent to the whole
 * group as serve starts), before it could listen for one (killed by it) or after (drained, exit
 * 0), is serve being stopped, not failing to start.
 */
function startFailure(
  slot: Slot,
  code: number | null,
  signal: string | null,
  serveStopping: boolean,
): Error | undefined {
  const stopped = signal !== null ? STOP_SIGNALS.includes(signal) : code === 0;
  if (stopped && serveStopping) return new StoppedWhileStarting(signal ?? "drained");
  if (signal === null && !stopped) {
    return new Error(`a worker of serve exited while starting (code ${code}, ${signal})`);
  }
  const now = Date.now();
  slot.killedAt = [...slot.killedAt, now].filter((at) => now - at < HEALTHY_MS);
  if (slot.killedAt.length < MAX_KILLED_STARTING) return undefined;
  return new Error(
    `a worker of serve was ${signal === null ? "stopped" : `killed (${signal})`} while starting ${slot.killedAt.length} times in a row within ${HEALTHY_MS / 1000} s; giving up`,
  );
}

/** A running `serve`: one process, or the primary of a cluster. */
/** A worker was stopped by a signal while serve started: the stop, not a failure to start. */
export class StoppedWhileStarting extends Error {
  constructor(readonly signal: string) {
    super(`a worker of serve was stopped (${signal}) while serve started`);
    this.name = "StoppedWhileStarting";
  }
}

export interface RunningServe {
  url: string;
  /** Processes serving requests (1 without a cluster). */
  workers: number;
  /** Per serving process: CPU used and event-loop delay (reset by each call). */
  stats(): Promise<ProcessStats[]>;
  /**
   * Stops taking requests, lets every response in flight finish and its receipt be written.
   * Rejects if a worker had to be killed for not finishing in time.
   */
  close(): Promise<void>;
}

/** Messages between the primary and its workers. */
type ToWorker =
  | { type: "audit:start"; config: Config }
  | { type: "audit:drain" }
  /** Answers `audit:may-stop`: another worker listens (or none is coming), stop now. */
  | { type: "audit:may-stop-res" }
  /** The port the worker listens on is the service's: it may now take the leader lease. */
  | { type: "audit:serving" }
  /** The service's port, answering `audit:port`: the worker listens on it if it got another. */
  | { type: "audit:port-res"; port: number }
  | { type: "audit:stats"; id: number }
  | { type: "audit:collect"; id: number }
  | { type: "audit:metrics-res"; id: number; text?: string; error?: string };
type ToPrimary =
  | { type: "audit:hello" }
  /** The port the worker got: which is the service's? */
  | { type: "audit:port"; port: number }
  | { type: "audit:ready"; url: string }
  | { type: "audit:failed"; error: string }
  | { type: "audit:drained" }
  /** A stop signal reached this worker: may it close its listener now? */
  | { type: "audit:may-stop" }
  | { type: "audit:stats-res"; id: number; stats: ProcessStats }
  | { type: "audit:collect-res"; id: number; metrics?: WireMetrics; error?: string }
  | { type: "audit:counters"; metrics: WireMetrics }
  | { type: "audit:metrics"; id: number };

function isMessage(value: unknown): value is { type: string } {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { type?: unknown }).type === "string" &&
    (value as { type: string }).type.startsWith("audit:")
  );
}

/**
 * Workers `serve` runs under `config`: WORKERS, else one per core. (An in-memory database, which
 * each worker would have its own of, is refused before: `serve` keeps nothing in one.)
 */
export function workerCount(config: Config): number {
  return config.WORKERS ?? Math.min(availableParallelism(), MAX_DEFAULT_WORKERS);
}

/**
 * PostgreSQL connections a serving process opens at most with `poolSize` (see README,
 * DATABASE_POOL_SIZE): its pool, its revocation listener and its receipt writer's; a cluster's
 * worker its leader lease's too.
 */
function processConnections(poolSize: number, lease: boolean): number {
  return poolSize + 1 + WRITER_CONNECTIONS + (lease ? 1 : 0);
}

/** Connections of the background work (one process's, or the leader's): its pool and writer's. */
function backgroundConnections(poolSize: number): number {
  return backgroundPoolSize(poolSize) + WRITER_CONNECTIONS;
}

/** PostgreSQL connections a cluster of `workers` opens at most with `poolSize`. */
function clusterConnections(workers: number, poolSize: number): number {
  return workers * processConnections(poolSize, true) + backgroundConnections(poolSize);
}

/** The most workers whose connections fit in `room` (0 when not even one does). */
function workersThatFit(room: number, poolSize: number): number {
  const left = room - backgroundConnections(poolSize);
  return Math.max(0, Math.floor(left / processConnections(poolSize, true)));
}

/**
 * Workers `serve` runs: `workerCount`, bounded on PostgreSQL by the connections the server
 * allows. A default of one per core that does not fit is lowered (to one process at least) and
 * said; an explicit WORKERS that does not fit, 1 included, is refused, naming it: its workers
 * would fail at start or wait for connections the server never gives.
 */
async function workersToRun(config: Config, log: Logger): Promise<number> {
  const wanted = workerCount(config);
  const target = parseDatabaseUrl(config.DATABASE_URL);
  if (target.kind !== "postgres") return wanted;
  const store = await openStore(config, { poolSize: 1, migrate: false });
  let room: ConnectionRoom;
  try {
    room = await readConnectionRoom((store as PgStore).pool);
  } finally {
    await store.close();
  }
  const poolSize = config.DATABASE_POOL_SIZE;
  const single = processConnections(poolSize, false) + backgroundConnections(poolSize);
  const fit = workersThatFit(room.connections, poolSize);
  const fits = wanted <= 1 ? single <= room.connections : fit >= wanted;
  if (fits) return wanted;
  const needs = wanted <= 1 ? single : clusterConnections(wanted, poolSize);
  const allows = `PostgreSQL at ${target.redacted} allows ${room.connections} (${roomLimit(room)})`;
  const between = betweenPort(config.DATABASE_URL, room);
  if (between !== null && config.WORKERS !== undefined) {
    // A pooler takes more clients than the server has connections: what fits is its to say.
    log.warn(
      { workers: wanted, connections: room.connections, poolSize, port: between },
      `--workers ${wanted} may need up to ${needs} PostgreSQL connections with DATABASE_POOL_SIZE ${poolSize}, more than ${allows}; run as asked, since serve reaches it through port ${between}, not the server's ${room.serverPort}: a pooler (PgBouncer), whose own client limit serve cannot read, must take them`,
    );
    return wanted;
  }
  const pooler =
    between === null
      ? ""
      : `; serve reaches it through port ${between}, not the server's ${room.serverPort}: behind a pooler (PgBouncer), set WORKERS to what its client limit takes`;
  if (config.WORKERS !== undefined) {
    // One process that does not fit is refused as a cluster is: its pool would wait for
    // connections the server never gives, or fail at start.
    const most =
      wanted <= 1 ? "" : `: ${fit >= 2 ? `at most ${fit} workers fit` : "no cluster fits"}`;
    throw new AppError(
      "bad_request",
      `--workers ${wanted} (WORKERS) needs up to ${needs} PostgreSQL connections with DATABASE_POOL_SIZE ${poolSize} (see README, DATABASE_POOL_SIZE), but ${allows}${most}; lower ${wanted <= 1 ? "" : "--workers or "}DATABASE_POOL_SIZE, or raise the limit`,
      { field: "WORKERS" },
    );
  }
  if (wanted <= 1) {
    log.warn(
      { workers: 1, connections: room.connections, poolSize },
      `serve runs one process, which may need up to ${needs} PostgreSQL connections with DATABASE_POOL_SIZE ${poolSize}, but ${allows}: lower DATABASE_POOL_SIZE or raise the limit${pooler}`,
    );
    return 1;
  }
  const workers = Math.max(1, fit);
  const short =
    workers === 1 && single > room.connections
      ? `; even one process may need up to ${single}: lower DATABASE_POOL_SIZE or raise the limit`
      : "";
  log.warn(
    { workers, cores: wanted, connections: room.connections, poolSize },
    `serve runs ${workers} worker(s), not one per core: ${wanted} would need up to ${needs} PostgreSQL connections with DATABASE_POOL_SIZE ${poolSize}, but ${allows}${short}${pooler}`,
  );
  return workers;
}

/**
 * The port `url` reaches PostgreSQL through where the server took the connection on another
 * (`room.serverPort`): a pooler such as PgBouncer stands between, and the limits read are the
 * server's, not the pooler's. Null when they are the same, or over a Unix socket.
 */
function betweenPort(url: string, room: ConnectionRoom): number | null {
  if (room.serverPort === null) return null;
  const port = Number(new URL(url).port || process.env.PGPORT || 5432);
  return port === room.serverPort ? null : port;
}

/** Which limit of the server's sets `room`, in words. */
function roomLimit(room: ConnectionRoom): string {
  if (room.role === room.connections) return "the role's CONNECTION LIMIT";
  if (room.database === room.connections) return "the database's CONNECTION LIMIT";
  return `max_connections ${room.maxConnections} less ${room.maxConnections - room.server} reserved`;
}

const ownLoopDelay = loopDelaySampler();

/**
 * This process's CPU time and its event-loop delay since the last call. The delay is sampled
 * from the first call on (a 10 ms timer): a process nobody asks never pays for it.
 */
function ownStats(): ProcessStats {
  const usage = process.cpuUsage();
  const loop = ownLoopDelay();
  return {
    pid: process.pid,
    cpuMs: (usage.user + usage.system) / 1000,
    loopDelayP99Ms: loop.p99Ms,
    loopDelayMaxMs: loop.maxMs,
    commitHold: commitHoldsSinceLastRead(),
    threadCommits: writerThreadCommitsSinceLastRead(),
  };
}

/** How `serve` runs beside the command that started it. */
export interface ServeOptions {
  /**
   * Whether serve itself was told to stop (a signal to the whole group): a worker stopped as
   * serve starts is then the stop, else one stopped alone, restarted like one killed.
   */
  stopping?: () => boolean;
}

/**
 * Runs `serve`: with one worker, the service in this process (verifier included); with more,
 * this process becomes the primary of a node:cluster whose workers share the port.
 */
export async function runServe(config: Config, options: ServeOptions = {}): Promise<RunningServe> {
  const { log, flush } = serveLogger(config.LOG_LEVEL);
  if (config.RPC_QUORUM <= 1 && profileCluster(config) === "mainnet-beta") {
    // Said once at start: the verdicts rest on whatever the first endpoint that answers says.
    log.warn(
      { endpoints: config.SOLANA_RPC_URLS.length },
      "RPC_QUORUM is 1: chain facts are taken from one endpoint; set RPC_QUORUM=2 with endpoints of two independent providers so that an endpoint alone cannot make a doctored transaction pass",
    );
  }
  let running: RunningServe;
  try {
    const workers = await workersToRun(config, log);
    if (workers <= 1) {
      const { startService } = await loadService();
      const service = await startService(config, log);
      running = {
        url: service.url,
        workers: 1,
        stats: async () => [ownStats()],
        close: () => service.close(),
      };
    } else {
      running = await startPrimary(config, workers, log, options.stopping ?? (() => false));
    }
  } catch (error) {
    await flush();
    throw error;
  }
  return { ...running, close: () => running.close().finally(flush) };
}

/**
 * Runs `serve` as its command does: a signal that stops it (`STOP_SIGNALS`) drains it and exits
 * 0, one that comes while it starts once it started (instead of killing it with its workers half
 * up, or restarting a worker the same signal stopped); a second one stops waiting for the
 * drain. `fail` ends the process when the drain fails.
 */
export async function runServeUntilStopped(
  config: Config,
  fail: (error: unknown) => never,
): Promise<RunningServe> {
  let service: RunningServe | undefined;
  let stopping = false;
  const close = (running: RunningServe) => {
    // A cluster's primary kills a worker whose drain does not end; one process ends itself
    // alike (receipts waiting for a write lock another process keeps held it for as long).
    if (running.workers === 1) endIfDrainOutlasts(config);
    return running.close().then(() => exitAfterDrain(0), fail);
  };
  const stop = () => {
    if (stopping) {
      process.stderr.write("decentral-audit: stopped before the drain ended\n");
      exitAfterDrain(130);
    }
    stopping = true;
    if (service) void close(service);
  };
  for (const signal of STOP_SIGNALS) process.on(signal, stop);
  try {
    service = await runServe(config, { stopping: () => stopping });
  } catch (error) {
    // The same signal reached a worker before it could drain (a stop sent to the group).
    if (stopping && error instanceof StoppedWhileStarting) exitAfterDrain(0);
    throw error;
  }
  if (stopping) await close(service);
  return service;
}

/**
 * Ends this process, killed, if its drain has not ended past the drain time and its margin
 * (`DRAIN_TIMEOUT_MS` + `DRAIN_MARGIN_MS`), as a cluster's worker does. Killed, not exited: an
 * exit terminates the background thread, which inside a SQLite call aborts. Its receipt writer
 * logs how many writes wait for a write lock held 10 s and more.
 */
function endIfDrainOutlasts(config: Config): void {
  const ms = config.DRAIN_TIMEOUT_MS + config.DRAIN_MARGIN_MS;
  setTimeout(() => {
    process.stderr.write(
      `decentral-audit: serve did not finish draining within ${ms} ms (DRAIN_TIMEOUT_MS + DRAIN_MARGIN_MS); ending without what it had not written\n`,
    );
    process.kill(process.pid, "SIGKILL");
  }, ms).unref();
}

/**
 * The service (the API, the proxy, the verifier: most of the program), loaded where it runs. The
 * primary of a cluster only forks, restarts and counts: loading it there cost each `serve
 * --workers N` start a process's worth of CPU, and delayed the fork of its workers by as much.
 */
function loadService(): Promise<typeof import("./main.js")> {
  return import("./main.js");
}

/** The profile's cluster; null when the profile cannot be read (start-up then says why). */
function profileCluster(config: Config): string | null {
  try {
    return loadProfile(config.AUDIT_PROFILE).cluster;
  } catch {
    return null;
  }
}

/** Node options for the workers: this process's, minus a script given inline (`-e`). */
function workerExecArgv(): string[] {
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (["-e", "--eval", "-p", "--print"].includes(arg)) {
      i++;
      continue;
    }
    if (arg.startsWith("--eval=") || arg.startsWith("--print=")) continue;
    out.push(arg);
  }
  return out;
}

/**
 * The primary: checks the configuration and migrates the store once, forks `count` workers
 * (each runs `startService` with the background work under the leader lock), restarts a
 * worker that dies, answers the workers' `/metrics` with the whole service's figures
 * (serve-cluster-metrics.ts), and on `close()` drains every worker.
 */
async function startPrimary(
  config: Config,
  count: number,
  log: Logger,
  stopping: () => boolean,
): Promise<RunningServe> {
  // Whatever is wrong fails here, once, before any worker starts.
  loadProfile(config.AUDIT_PROFILE);
  if (config.VERIFY_CRON) validateCronExpression(config.VERIFY_CRON);
  const store = await openStore(config, { busyTimeoutMs: 10_000, poolSize: 1 });
  try {
    // Said once, here: the workers do not say it (each did, once per worker and restart).
    if (config.PROXY_REQUIRE_TOKEN) await warnWithoutProxyTokens(store, log);
  } finally {
    await store.close();
  }

  const here = import.meta.url;
  const exec = fileURLToPath(
    new URL(here.endsWith(".ts") ? "./serve-worker.ts" : "./serve-worker.js", here),
  );
  // Workers accept from the shared socket themselves. Under round-robin the primary accepts
  // each connection and hands it to a worker; one handed to a worker as it dies is never
  // closed nor handed on, and its client waits forever (nodejs/node#21746). Set before the
  // first fork: the policy is fixed from then on.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec, args: [], execArgv: workerExecArgv() });
  const metrics = createClusterMetrics();
  const collectWaiting = new Map<number, (m: { metrics?: WireMetrics; error?: string }) => void>();
  /** A worker's registry, or a rejection if it does not answer in time (a hung worker). */
  const collect = (worker: Worker) =>
    new Promise<WorkerMetrics>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        collectWaiting.delete(id);
        reject(new Error(`worker ${worker.process.pid} did not answer in time`));
      }, COLLECT_TIMEOUT_MS);
      collectWaiting.set(id, (m) => {
        clearTimeout(timer);
        collectWaiting.delete(id);
        if (m.metrics) resolve(fromWire(m.metrics));
        else reject(new Error(m.error ?? "no metrics"));
      });
      send(worker, { type: "audit:collect", id });
    });
  let closing = false;
  let nextId = 1;
  const statsWaiting = new Map<number, (stats: ProcessStats) => void>();
  const ready = new Set<Worker>();
  /** Workers that said they drained: whatever ends them then (see `runWorker`) is clean. */
  const drained = new WeakSet<Worker>();
  /** Workers that ended during the drain without having drained (a crash, an abort). */
  let crashed = 0;
  /** Workers the drain had to kill: counted there, not again as crashed. */
  const killedByDrain = new WeakSet<Worker>();
  let url = "";
  let restarts = 0;
  /**
   * Under `--port 0` the service keeps the port its first worker got: node:cluster's primary
   * keeps the socket that workers asking for port 0 share only while one of them lives; once
   * every worker died, a replacement asking for port 0 got another port, and the URL serve
   * printed refused every connection. A worker asks for the port the living workers asked for
   * (asking for the bound port beside them would be a second socket on it, refused); once none
   * lives, for the bound port itself. One whose peers all died before it listened got a port of
   * its own: it moves to the bound port before it takes a request (`audit:port`).
   */
  let boundPort: number | undefined;
  let askPort = config.PORT;
  /** Living workers that were told to ask for `askPort`. */
  const asking = new Set<Worker>();
  const restartTimers = new Set<NodeJS.Timeout>();
  /**
   * Workers a stop signal of their own reached (a rolling restart signals each worker), and
   * those of them told to wait. node:cluster closes the service's listening socket once no
   * worker listens on it: the last worker stopping before a replacement listened made every
   * client meanwhile get ECONNREFUSED. Such a worker goes on serving until another listens.
   */
  const leaving = new Set<Worker>();
  const held = new Set<Worker>();
  /**
   * Is a worker other than `worker` coming to listen: one starting (forked, or its restart due),
   * or one let stop that has not ended yet, which is restarted once its end is seen? Without the
   * latter, a worker signalled while another drained at its own signal (a rolling restart
   * signalling every worker at once, or the next one as soon as the first stopped listening)
   * found no listener and nothing starting, stopped too, and the port closed until a
   * replacement listened.
   */
  const replacementComing = (worker: Worker) =>
    restartTimers.size > 0 ||
    Object.values(cluster.workers ?? {}).some(
      (w) =>
        w !== undefined &&
        w !== worker &&
        !w.isDead() &&
        (!ready.has(w) || (leaving.has(w) && !held.has(w))),
    );
  const mayStop = (worker: Worker) =>
    closing ||
    [...ready].some((w) => w !== worker && !leaving.has(w)) ||
    !replacementComing(worker);
  /** Lets each held worker stop that may now. */
  const letGo = () => {
    for (const worker of held) {
      if (!mayStop(worker)) continue;
      held.delete(worker);
      send(worker, { type: "audit:may-stop-res" });
    }
  };

  /**
   * A worker that ended while `serve` stops. A drained worker says so, then exits 0, or kills
   * itself when stdout would not take its last lines. One that ends otherwise crashed while
   * draining (an abort inside a native call, say): responses it held were cut and receipts it
   * was still writing may be lost, which the exit status of serve must not hide. One that never
   * served (a stop signal reached it as it started) held nothing.
   */
  const judgeDrained = (
    worker: Worker,
    served: boolean,
    code: number | null,
    signal: string | null,
  ) => {
    if ((signal === null && code === 0) || !served) return;
    if (drained.has(worker)) {
      // Its responses and receipts are done; its last log lines may be lost.
      log.warn(
        { workerPid: worker.process.pid, code, signal },
        "serve worker did not exit cleanly",
      );
    } else if (!killedByDrain.has(worker)) {
      crashed++;
      log.error(
        { workerPid: worker.process.pid, code, signal },
        "serve worker ended while draining, before it drained",
      );
    }
  };

  const started = new Promise<void>((resolve, reject) => {
    /**
     * One worker's place: the wait before its next restart, doubled while it keeps dying, and
     * when its workers were killed while serve starts.
     */
    const fork = (slot: Slot) => {
      const worker = cluster.fork();
      // Sends to a worker that died fail with EPIPE; its 'exit' says what happened.
      worker.on("error", () => {});
      const bornAt = Date.now();
      worker.on("message", (message: unknown) => {
        if (!isMessage(message)) return;
        const m = message as ToPrimary;
        if (m.type === "audit:hello") {
          // Forked before a stop began, it may have missed the drain (sent before it listened):
          // it is told to stop instead of to start serving through the drain.
          if (asking.size === 0 && boundPort !== undefined) askPort = boundPort;
          if (!closing) asking.add(worker);
          const answer: ToWorker = closing
            ? { type: "audit:drain" }
            : { type: "audit:start", config: { ...config, PORT: askPort } };
          send(worker, answer);
        } else if (m.type === "audit:port") {
          boundPort ??= m.port;
          if (m.port !== boundPort) {
            // The workers it shared the socket with died before it listened: it got a port of
            // its own, which nobody calls. It moves to the bound port (see `boundPort`), and so
            // do the workers started after it, instead of each being stopped and restarted.
            log.warn(
              { workerPid: worker.process.pid, port: m.port, servicePort: boundPort },
              "serve worker listened on another port than the service's; moving it to the service's",
            );
            asking.clear();
            askPort = boundPort;
          }
          send(worker, { type: "audit:port-res", port: boundPort });
        } else if (m.type === "audit:ready") {
          url = m.url;
          ready.add(worker);
          // Only now may it lead: one that got a port of its own above never takes the lease
          // before it moved.
          send(worker, { type: "audit:serving" });
          letGo();
          if (ready.size === count) resolve();
        } else if (m.type === "audit:drained") {
          drained.add(worker);
        } else if (m.type === "audit:may-stop") {
          leaving.add(worker);
          held.add(worker);
          letGo();
          if (held.has(worker)) {
            log.info(
              { workerPid: worker.process.pid },
              "serve worker asked to stop; it serves until its replacement listens",
            );
          }
        } else if (m.type === "audit:failed") {
          if (url === "") reject(new Error(m.error));
        } else if (m.type === "audit:stats-res") {
          statsWaiting.get(m.id)?.(m.stats);
        } else if (m.type === "audit:collect-res") {
          collectWaiting.get(m.id)?.(m);
        } else if (m.type === "audit:counters") {
          const values = fromWire(m.metrics);
          metrics.counted(worker.id, values);
          log.debug(
            { workerPid: worker.process.pid, proxied: proxiedCount(values) },
            "serve worker sent its counters",
          );
        } else if (m.type === "audit:metrics") {
          const workers = [...ready].map((w) => ({ id: w.id, collect: () => collect(w) }));
          metrics.scrape(workers).then(
            (text) => send(worker, { type: "audit:metrics-res", id: m.id, text }),
            (error: Error) =>
              send(worker, { type: "audit:metrics-res", id: m.id, error: error.message }),
          );
        }
      });
      // A worker that ends during the stop is judged once its channel is read to the end
      // ('close' follows 'exit'): it says it drained just before it ends, and that message may
      // be read after the exit is seen.
      let judge: (() => void) | undefined;
      worker.process.once("close", () => judge?.());
      worker.on("exit", (code, signal) => {
        asking.delete(worker);
        leaving.delete(worker);
        held.delete(worker);
        const wasReady = ready.delete(worker);
        void metrics.retire(worker.id);
        if (closing) {
          judge = () => judgeDrained(worker, wasReady, code, signal);
          return;
        }
        if (!wasReady && url === "") {
          const failure = startFailure(slot, code, signal, stopping());
          if (failure) return reject(failure);
        }
        // A worker that keeps dying (a bad disk, a crash on some request) is started again
        // later and later, not every second forever; one that lived a while starts afresh.
        if (Date.now() - bornAt >= HEALTHY_MS) slot.restartMs = config.WORKER_RESTART_MS;
        const delay = slot.restartMs;
        slot.restartMs = Math.min(delay * 2, Math.max(MAX_RESTART_MS, config.WORKER_RESTART_MS));
        restarts++;
        // Stopped on its own terms (a SIGTERM sent to it alone drains it and exits 0): no death.
        const fields = {
          workerPid: worker.process.pid,
          code,
          signal,
          restarts,
          restartInMs: delay,
        };
        if (code === 0 && signal === null) {
          log.warn(fields, "serve worker exited (code 0, not asked by serve); restarting it");
        } else log.error(fields, "serve worker died; restarting it");
        const timer = setTimeout(() => {
          restartTimers.delete(timer);
          if (closing) return;
          metrics.restarted();
          fork(slot);
        }, delay);
        restartTimers.add(timer);
        letGo();
      });
    };
    for (let i = 0; i < count; i++) fork({ restartMs: config.WORKER_RESTART_MS, killedAt: [] });
  });

  const drainWaitMs = config.DRAIN_TIMEOUT_MS + config.DRAIN_MARGIN_MS;
  /**
   * Drains every worker; resolves with how many had to be killed or crashed while draining
   * (responses maybe cut, receipts maybe lost).
   */
  const drain = async () => {
    closing = true;
    for (const timer of restartTimers) clearTimeout(timer);
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
    let killed = 0;
    await Promise.all(
      workers.map(
        (worker) =>
          new Promise<void>((resolve) => {
            if (worker.isDead()) return resolve();
            const killer = setTimeout(() => {
              killed++;
              killedByDrain.add(worker);
              log.error(
                { workerPid: worker.process.pid, waitedMs: drainWaitMs },
                "serve worker did not drain in time; killed it",
              );
              worker.process.kill("SIGKILL");
            }, drainWaitMs);
            // 'close', not 'exit': by then the worker has been judged (`judgeDrained`).
            worker.process.once("close", () => {
              clearTimeout(killer);
              resolve();
            });
            send(worker, { type: "audit:drain" });
          }),
      ),
    );
    return { killed, crashed };
  };

  try {
    await started;
  } catch (error) {
    await drain();
    throw error;
  }
  log.info({ url, workers: count }, "serve cluster ready");

  return {
    url,
    workers: count,
    async stats() {
      const workers = [...ready];
      return Promise.all(
        workers.map(
          (worker) =>
            new Promise<ProcessStats>((resolve) => {
              const id = nextId++;
              statsWaiting.set(id, (stats) => {
                statsWaiting.delete(id);
                resolve(stats);
              });
              send(worker, { type: "audit:stats", id });
            }),
        ),
      );
    },
    // A worker killed may have cut responses or left their receipts unwritten: the exit
    // status says so, for the supervisor and whoever reads its record.
    async close() {
      const { killed, crashed } = await drain();
      if (killed > 0) {
        throw new Error(`${killed} serve worker(s) did not drain within ${drainWaitMs} ms`);
      }
      if (crashed > 0) throw new Error(`${crashed} serve worker(s) ended before they drained`);
    },
  };
}

/** Sends `message` to the primary; resolves once written, or at once without a primary. */
function tellPrimary(message: ToPrimary): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected || !process.send) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

function send(worker: Worker, message: ToWorker) {
  // A worker dying as this is sent (a stop signal reached it too) fails the write with EPIPE:
  // its exit is what the caller waits for, and an unhandled 'error' would end the primary.
  if (worker.isConnected()) worker.send(message, undefined, () => {});
}

/**
 * Metrics of a worker: gauges read the shared store (the same in every worker) or are set by
 * the leader alone, so the whole service's value is their maximum (NaN when any worker read
 * NaN: its database was away); counters and histograms add up. Whether the database is up is
 * the least of the workers' answers: one that cannot reach it is not hidden by another that
 * can. Readers (`decentral_audit_readers`) are each worker's own: they add up. `/metrics` asks the primary, which collects every worker's registry. Counters and
 * histograms also go to the primary every `WORKER_COUNTERS_MS` (1 s) when they changed: a worker
 * that dies loses about that long of its counts, not all since the last scrape.
 */
function clusterMetrics(own: AppMetrics, countersMs: number): AppMetrics {
  for (const metric of own.registry.getMetricsAsArray()) {
    if (metric instanceof Gauge) {
      const gauge = metric as unknown as { name: string; aggregator: string };
      gauge.aggregator =
        gauge.name === "decentral_audit_database_up"
          ? "min"
          : gauge.name === "decentral_audit_readers"
            ? "sum"
            : "max";
    }
  }
  const monotonic = own.registry
    .getMetricsAsArray()
    .filter((metric) => metric instanceof Counter || metric instanceof Histogram);
  let lastSent = "";
  let sending = false;
  const sendCounters = async () => {
    if (sending || !process.connected) return;
    sending = true;
    try {
      const values = (await Promise.all(monotonic.map((m) => m.get()))) as WorkerMetrics;
      const wire = toWire(values);
      const text = JSON.stringify(wire);
      if (text === lastSent) return;
      lastSent = text;
      process.send?.({ type: "audit:counters", metrics: wire } satisfies ToPrimary);
    } catch {
      // A counter that could not be read now is sent with the next change.
    } finally {
      sending = false;
    }
  };
  setInterval(() => void sendCounters(), countersMs).unref();
  let nextId = 1;
  const waiting = new Map<number, (m: { text?: string; error?: string }) => void>();
  process.on("message", (message: unknown) => {
    if (!isMessage(message)) return;
    if (message.type === "audit:collect") {
      const { id } = message as Extract<ToWorker, { type: "audit:collect" }>;
      own.registry.getMetricsAsJSON().then(
        (metrics) =>
          process.send?.({
            type: "audit:collect-res",
            id,
            metrics: toWire(metrics as WorkerMetrics),
          } satisfies ToPrimary),
        (error: Error) =>
          process.send?.({
            type: "audit:collect-res",
            id,
            error: error.message,
          } satisfies ToPrimary),
      );
      return;
    }
    if (message.type !== "audit:metrics-res") return;
    const m = message as Extract<ToWorker, { type: "audit:metrics-res" }>;
    waiting.get(m.id)?.(m);
    waiting.delete(m.id);
  });
  const registry = Object.create(own.registry, {
    metrics: {
      value: () =>
        new Promise<string>((resolve, reject) => {
          const id = nextId++;
          waiting.set(id, (m) =>
            m.error === undefined ? resolve(m.text ?? "") : reject(new Error(m.error)),
          );
          process.send?.({ type: "audit:metrics", id } satisfies ToPrimary);
        }),
    },
  }) as AppMetrics["registry"];
  return { ...own, registry };
}

/**
 * A worker of the cluster (run by `serve-worker.ts`): asks the primary for the configuration,
 * starts the service with the background work under the leader lock, and drains on the
 * primary's word, on SIGTERM/SIGINT/SIGHUP, or when the primary is gone.
 */
export function runWorker(): void {
  // Loaded while the primary sends the configuration, as a static import of it was.
  const serviceModule = loadService();
  // Said by the start's own error handling below, when the configuration has come.
  serviceModule.catch(() => {});
  let closing: Promise<void> | undefined;
  let close: (() => Promise<void>) | undefined;
  let flush = async () => true;
  let drainTimeoutMs = 30_000;
  let drainMarginMs = 10_000;
  /** Answers the worker's `audit:port`. */
  let portAnswered = (_port: number) => {};
  const servicePort = (port: number) =>
    new Promise<number>((resolve) => {
      portAnswered = resolve;
      process.send?.({ type: "audit:port", port } satisfies ToPrimary);
    });
  /** Settles when the primary says the port this worker listens on is the service's. */
  let confirmServing = () => {};
  const serving = new Promise<void>((resolve) => {
    confirmServing = resolve;
  });
  const drain = () => {
    if (!closing) {
      // A drain that does not end (seen in workers whose primary was killed, or receipts
      // waiting for a write lock another process keeps) must not keep the process for ever:
      // past the drain time and the primary's margin, it ends all the same. Killed, not
      // exited: an exit terminates the background thread, which inside a SQLite call aborts.
      setTimeout(() => {
        process.stderr.write("decentral-audit: serve worker did not finish draining; exiting\n");
        process.kill(process.pid, "SIGKILL");
      }, drainTimeoutMs + drainMarginMs).unref();
    }
    closing ??= (close ? close() : Promise.resolve())
      .then(
        () => flush().then((written) => ({ drained: true, written })),
        () => flush().then((written) => ({ drained: false, written })),
      )
      .then(async ({ drained, written }) => {
        // Said before the exit: however the worker then ends, the primary knows it drained.
        if (drained) await tellPrimary({ type: "audit:drained" });
        // A write to a stdout nobody reads, still in flight, would hold the exit for ever (the
        // exit waits for it): drained, the worker has nothing left to lose.
        if (!written) process.kill(process.pid, "SIGKILL");
        exitAfterDrain(drained ? 0 : 1);
      });
    return closing;
  };
  /** Settles when the primary lets this worker stop (`audit:may-stop-res`). */
  let stopAllowed = () => {};
  /**
   * A stop signal sent to this worker: it drains once another worker listens on the service's
   * port (or none is coming), waiting at most the drain time, so the port is never closed
   * between two workers of a rolling restart. Not started, it has no listener to keep.
   */
  const stopOnSignal = () => {
    if (close === undefined || closing !== undefined || !process.connected) return void drain();
    const allowed = new Promise<void>((resolve) => {
      stopAllowed = resolve;
    });
    const waited = new Promise<void>((resolve) => setTimeout(resolve, drainTimeoutMs).unref());
    void Promise.race([allowed, waited]).then(drain);
    process.send?.({ type: "audit:may-stop" } satisfies ToPrimary);
  };
  process.on("message", (message: unknown) => {
    if (!isMessage(message)) return;
    const m = message as ToWorker;
    if (m.type === "audit:start") {
      drainTimeoutMs = m.config.DRAIN_TIMEOUT_MS;
      drainMarginMs = m.config.DRAIN_MARGIN_MS;
      const logger = serveLogger(m.config.LOG_LEVEL);
      const { log } = logger;
      flush = logger.flush;
      serviceModule
        .then(({ startService }) =>
          startService(m.config, log, {
            background: "leader",
            startupWarnings: false,
            createStore: false,
            metrics: (own) => clusterMetrics(own, m.config.WORKER_COUNTERS_MS),
            leadAfter: serving,
            servicePort,
          }),
        )
        .then(
          (service) => {
            close = () => service.close();
            if (closing) return void drain();
            process.send?.({ type: "audit:ready", url: service.url } satisfies ToPrimary);
          },
          (error: unknown) => {
            const text = error instanceof Error ? error.message : String(error);
            // A refusal of what the operator gave (a --host this machine has not, a port taken)
            // is said by its message, as a single process says it: a stack trace there read as
            // a crash of the program. Anything else keeps its stack.
            if (error instanceof AppError)
              log.error({ code: error.code }, `serve worker could not start: ${text}`);
            else log.error({ err: error }, "serve worker could not start");
            void flush().then(() =>
              process.send?.({ type: "audit:failed", error: text } satisfies ToPrimary, () =>
                process.exit(2),
              ),
            );
          },
        );
    } else if (m.type === "audit:serving") {
      confirmServing();
    } else if (m.type === "audit:port-res") {
      portAnswered(m.port);
    } else if (m.type === "audit:drain") {
      void drain();
    } else if (m.type === "audit:may-stop-res") {
      stopAllowed();
    } else if (m.type === "audit:stats") {
      process.send?.({ type: "audit:stats-res", id: m.id, stats: ownStats() } satisfies ToPrimary);
    }
  });
  // Once the primary is gone (killed), sends to it fail with EPIPE until `disconnect`.
  cluster.worker?.on("error", () => {});
  for (const signal of STOP_SIGNALS) process.once(signal, stopOnSignal);
  // The primary is gone (killed): node:cluster would exit this worker at once, but an exit can
  // wait for ever on a write to a stdout nobody reads, and a worker left so holds the port
  // without answering. Nothing can drain without the primary: the worker ends outright.
  process.prependOnceListener("disconnect", () => process.kill(process.pid, "SIGKILL"));
  // Forked just as the primary died: nobody will ever start or drain this worker.
  if (!process.connected) void drain();
  process.send?.({ type: "audit:hello" } satisfies ToPrimary);
}
