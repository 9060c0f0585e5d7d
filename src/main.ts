import { createServer, type IncomingMessage, type RequestListener, type Server } from "node:http";
import { getRequestListener } from "@hono/node-server";
import { createApp } from "./api/app.js";
import { answerClientErrors } from "./api/client-error.js";
import { createDrainGate, type DrainGate } from "./api/drain-gate.js";
import { type AppMetrics, createMetrics } from "./api/metrics.js";
import { withProxyFastPath } from "./api/proxy-listener.js";
import { warnWithoutProxyTokens } from "./auth/tokens.js";
import { composeBackground } from "./background.js";
import {
  addCallCounts,
  addQuorumCounts,
  addReportCounters,
  type BackgroundReport,
  type BackgroundThread,
  startBackgroundThread,
} from "./background-worker.js";
import { isQuorumRpc, quorumReadiness, rpcFromConfig } from "./chain/quorum.js";
import { rpcPoolFromConfig } from "./chain/rpc-pool.js";
import type { Config } from "./config.js";
import {
  followCheckpoints,
  MissingStoreError,
  type SqliteStore,
  type Store,
  setBusyTimeout,
  sqliteFileOf,
} from "./db/client.js";
import { openStore } from "./db/open.js";
import { startWalCheckpointer } from "./db/wal-checkpointer.js";
import { timeLeft } from "./deadline.js";
import { AppError } from "./errors.js";
import { holdLeaderLease, type LeaderLease } from "./leader-lease.js";
import { configuredAccountSnapshotter } from "./ledger/account-snapshots.js";
import { createLogger, type Logger } from "./log.js";
import { validateCronExpression } from "./nightly/cron-expression.js";
import { createReadGate } from "./read-gate.js";
import { createJobsApiClient, jobsApiCallCounts } from "./recorder/jobs-api.js";
import { createRecordingProxy } from "./recorder/proxy.js";
import { startThreadedReceiptWriter } from "./recorder/threaded-receipt-writer.js";
import { explorerClusterOf } from "./reports/audit-record.js";
import { createRequestCounter, isTraffic, readRequestCount } from "./request-pressure.js";
import type { Verifier } from "./verify/engine.js";
import { profileStatus } from "./verify/profile-status.js";
import { loadProfile } from "./verify/profiles.js";

/** A running service; `close()` stops taking requests, drains work and closes the store. */
export interface Service {
  url: string;
  store: Store;
  log: Logger;
  /** The running verifier (the demo waits on it with `runUntilSettled`). */
  verifier: Verifier;
  close(): Promise<void>;
}

/** How `startService` runs; every option has a default. */
export interface ServiceOptions {
  /**
   * Who runs the background work (verifier, settlement backfill, ledger reader, nightly
   * schedule): `always` this process (one `serve`), or `leader`: only while this process holds
   * the store's leader lock, in a thread of its own (the workers of `serve --workers N`).
   * Default `always`: on PostgreSQL in a thread of its own too, on SQLite on the event loop
   * (see `startService`).
   */
  background?: "always" | "leader";
  /**
   * Replaces the metrics the app serves, given this process's own (the cluster's workers
   * serve the whole service's). Default: this process's own.
   */
  metrics?: (own: AppMetrics) => AppMetrics;
  /**
   * With `background: "leader"`: the leader lease is first asked for once this settles (a
   * cluster's worker: once the primary said the port it listens on is the service's). A worker
   * that listened on a port of its own took the lease before it listened, and the verifier
   * moved to it and on again. Default: at once.
   */
  leadAfter?: Promise<unknown>;
  /**
   * The port to serve on, given the one listened on (a cluster's worker asks the primary): when
   * another, the server listens on that one instead, until they agree. Default: the one got.
   */
  servicePort?: (port: number) => Promise<number>;
  /**
   * Whether start-up says what in the configuration will refuse work (PROXY_REQUIRE_TOKEN with
   * no token to open the proxy). Default true; a cluster's workers leave it to the primary,
   * which says it once where each worker said it again.
   */
  startupWarnings?: boolean;
  /**
   * SQLite: create the database file (and its folder) when it is not there. Default true; a
   * cluster's workers pass false, as the primary created and migrated it: a worker restarted
   * after the file's folder was renamed or removed created a new, empty store there and served
   * on it (and led its verifier) beside the workers still writing the old file.
   */
  createStore?: boolean;
}

/**
 * Busy timeout of the serving process's connection, in ms. better-sqlite3 waits for a lock in
 * a busy loop that blocks the event loop (the proxy with it), so the wait is kept short and
 * longer contention is retried from JavaScript on timers (verifier rounds, run bookkeeping).
 * Every transaction here and in other processes is short (ms), so 500 ms is rarely reached.
 */
export const SERVE_BUSY_TIMEOUT_MS = 500;

/**
 * Busy timeout of the leader lease's connection, in ms: none, since a wait in SQLite holds the
 * event loop; a heartbeat that finds the write lock taken retries from a timer.
 */
const LEASE_BUSY_TIMEOUT_MS = 0;

/**
 * Composes config -> db -> app -> HTTP server. Everything that can be wrong (profile, cron
 * expression, explorer URL) is checked before anything starts; if a later step fails (the
 * port is taken, the database cannot be opened) whatever was started is stopped again, so a
 * failed start leaves no thread or timer keeping the process alive.
 */
export async function startService(
  config: Config,
  log = createLogger({ level: config.LOG_LEVEL }),
  options: ServiceOptions = {},
): Promise<Service> {
  // 1. Validate: throws before anything runs.
  const profile = loadProfile(config.AUDIT_PROFILE);
  if (config.VERIFY_CRON) validateCronExpression(config.VERIFY_CRON);
  const explorer = explorerClusterOf(profile.cluster, config.SOLANA_RPC_URLS[0] ?? "");

  // 2. Start, remembering how to stop each part; on failure stop them in reverse order.
  const stops: (() => unknown)[] = [];
  const stopAll = async () => {
    // Taken out first: a second call while this one runs finds nothing left to stop.
    const taken = stops.splice(0).reverse();
    for (const stop of taken) {
      try {
        await stop();
      } catch (error) {
        log.warn({ err: error }, "stopping a part of the service failed");
      }
    }
  };
  try {
    // Opening (the switch to WAL) and migrating may wait for another process's migration:
    // allow that wait here, once, then keep the serving timeout short.
    const store = await openStore(config, {
      busyTimeoutMs: 10_000,
      create: options.createStore ?? true,
    }).catch((error: unknown) => {
      throw error instanceof MissingStoreError && options.createStore === false
        ? new MissingStoreError(error.path, true)
        : error;
    });
    stops.push(() => store.close());
    setBusyTimeout(store, SERVE_BUSY_TIMEOUT_MS);
    if (config.PROXY_REQUIRE_TOKEN && options.startupWarnings !== false) {
      await warnWithoutProxyTokens(store, log);
    }
    if (store.kind === "sqlite") {
      const checkpointer = startWalCheckpointer(store, { log });
      stops.push(() => checkpointer.close());
    }
    const jobsApi = createJobsApiClient(config.DECENTRAL_BASE_URL);
    const rpc = rpcFromConfig(config, log);
    // /readyz asks each endpoint once, in a pool of its own: asked of the verifier's pool, its
    // five attempts and their backoffs (and, with probes side by side, its rate limit) outlasted
    // the probe's 3 s, so an RPC refusing every connection read "no answer within 3000 ms", as
    // a hung one does. A quorum asks each member, whose own attempts are few. No log: the
    // verifier's pool already warns of an endpoint set aside.
    const readinessRpc = isQuorumRpc(rpc)
      ? rpc
      : rpcPoolFromConfig(config, undefined, { maxAttempts: config.SOLANA_RPC_URLS.length });
    if (readinessRpc !== rpc) stops.push(() => readinessRpc.close());
    // In a cluster the leader runs the background work in a thread; its RPC counters and
    // ledger totals reach the metrics through the thread's reports.
    let thread: BackgroundThread | null = null;
    // The threads this process ran before (it lost the lease, or is losing it): their last
    // counters stay in the metrics, whose counters must never go back.
    let leaving: BackgroundThread | null = null;
    let past: BackgroundReport | null = null;
    const threadCounters = () => {
      const report = (thread ?? leaving)?.lastReport();
      return report ? addReportCounters(past, report) : past;
    };
    // One reader at a time on SQLite, whose reads hold the event loop; as many as the pool
    // on PostgreSQL, whose reads wait on the network.
    const readGate = createReadGate({
      concurrency: store.kind === "postgres" ? config.DATABASE_POOL_SIZE : 1,
      maxWaiting: config.READ_QUEUE,
    });
    const metrics = createMetrics({
      store,
      readers: () => readGate.stats(),
      rpcStats: () => [...rpc.stats(), ...(threadCounters()?.rpcStats ?? [])],
      jobsApiCalls: () => addCallCounts(jobsApiCallCounts(), threadCounters()?.jobsApiCalls ?? []),
      rpcQuorum: () =>
        addQuorumCounts(
          past?.quorum ?? null,
          (thread ?? leaving)?.lastReport()?.quorum ??
            (isQuorumRpc(rpc) ? rpc.quorumStatus() : null),
        ),
      ...(config.LEDGER_POLL_MS > 0
        ? { ledger: () => thread?.lastReport()?.totals ?? background.totals() }
        : {}),
      ...(config.LEDGER_POLL_MS > 0 && profile.escrowVault !== null
        ? { escrowVault: profile.escrowVault }
        : {}),
      receipts: () => proxy.writer.health(),
    });
    // Asked for, on a database file the receipt writer commits in a thread of its own: no group
    // commit holds the event loop that proxies every byte (see threaded-receipt-writer.ts).
    const receiptWriter =
      config.RECEIPT_WRITER_THREAD && ownReceiptWriterThread(store)
        ? await startThreadedReceiptWriter(store, { log })
        : undefined;
    if (receiptWriter) stops.push(() => receiptWriter.close());
    const proxy = createRecordingProxy({
      store,
      log,
      upstreamBaseUrl: config.DECENTRAL_BASE_URL,
      jobsApi,
      observe: (sample) => metrics.observeProxy(sample),
      ...(receiptWriter ? { writer: receiptWriter } : {}),
    });
    stops.push(() => proxy.close());
    // Requests first: the verifier, here or in the background thread, reads how many requests
    // this process began and gives way while they come (src/request-pressure.ts).
    const requests = createRequestCounter();
    const background = composeBackground({
      config,
      store,
      rpc,
      profile,
      log,
      jobsApi,
      writer: proxy.writer,
      requests: readRequestCount(requests.buffer),
    });
    const { verifier } = background;
    // Only the holder of the leader lock runs the background work, in a thread of its own.
    // The lease has a connection of its own with a short busy timeout: its heartbeat must not
    // wait on the event loop while the background thread holds the write lock.
    const leaseStore =
      options.background === "leader"
        ? await openStore(config, {
            busyTimeoutMs: 1000,
            poolSize: 1,
            migrate: false,
            // Opened after the store: a file gone from the path since is not made anew.
            create: false,
          })
        : null;
    if (leaseStore) {
      stops.push(() => leaseStore.close());
      setBusyTimeout(leaseStore, LEASE_BUSY_TIMEOUT_MS);
      followCheckpoints(store, leaseStore);
    }
    /** Set once the service stops: a lease not yet asked for is then never asked for. */
    let resigned = false;
    let lease: LeaderLease | null = null;
    const lead = () => {
      if (!leaseStore || resigned) return;
      lease = holdLeaderLease({
        store: leaseStore,
        log,
        onGain: () => {
          thread = startBackgroundThread(config, log, SERVE_BUSY_TIMEOUT_MS, requests.buffer);
        },
        onLose: async () => {
          leaving = thread;
          const stopping = thread?.stop();
          thread = null;
          await stopping;
          past = threadCounters();
          leaving = null;
        },
      });
    };
    if (leaseStore) {
      if (options.leadAfter) options.leadAfter.then(lead, () => {});
      else lead();
    }
    // One process on PostgreSQL runs the background work in a thread as a leader does: its
    // writes wait for nothing the proxy's writes hold, so its rounds (result sets parsed,
    // decisions made) leave the event loop of the proxy and the API. On SQLite it stays on the
    // event loop: a thread's write transactions would make the proxy's writes wait on SQLite's
    // write lock, which blocks the loop, where here they take turns on it.
    const ownThread = !leaseStore && store.kind === "postgres";
    // The verifier and the backfill are told to stop first, then the RPC pool is closed so
    // that calls in flight (a slow node, a rate-limit pause) end at once instead of at their
    // timeout; only then are their loops awaited.
    stops.push(async () => {
      resigned = true;
      const stopping = leaseStore
        ? (lease as LeaderLease | null)?.stop()
        : ownThread
          ? thread?.stop()
          : background.stop();
      await rpc.close();
      await stopping;
    });
    if (ownThread) {
      thread = startBackgroundThread(config, log, SERVE_BUSY_TIMEOUT_MS, requests.buffer);
    } else if (!leaseStore) background.start();
    // `GET /v1/account` against the key's vault on chain, on demand (admin route); the schedule
    // runs with the background work.
    const snapshotter = configuredAccountSnapshotter(config, { store, profile, rpc, log });
    if (snapshotter) stops.push(() => snapshotter.stop());
    const app = createApp({
      store,
      log,
      proxy,
      metrics: options.metrics ? options.metrics(metrics) : metrics,
      verifier,
      proxyRequireToken: config.PROXY_REQUIRE_TOKEN,
      readGate,
      statement: {
        profile,
        graceSeconds: config.LEDGER_GRACE_SECONDS,
        ...(snapshotter ? { takeAccountSnapshot: () => snapshotter.take() } : {}),
      },
      explorer,
      readiness: {
        rpc: (signal) =>
          isQuorumRpc(readinessRpc)
            ? quorumReadiness(readinessRpc, signal)
            : readinessRpc.getSlot("finalized", { signal }),
        profile: () => profileStatus(store, profile),
        receipts: () => proxy.writer.health(),
        rpcQuorum: () => (isQuorumRpc(rpc) ? rpc.quorumStatus() : null),
        background: () =>
          thread?.health() ??
          (leaseStore
            ? { ok: true, detail: "run by the process holding the leader lock" }
            : { ok: true, detail: "running on the event loop" }),
      },
    });
    // `/v1/*` skips the app's Fetch API adapter and middleware (its token, when required, checked
    // on the way; a request it does not let through is the app's to answer).
    const direct = (listener: RequestListener) =>
      withProxyFastPath(listener, {
        proxy,
        log,
        ...(config.PROXY_REQUIRE_TOKEN ? { requireToken: store } : {}),
      });
    const gate = createDrainGate();
    const server = await listen(app.fetch, config.PORT, config.HOST, gate, direct);
    if (options.servicePort) await moveToServicePort(server, config.HOST, options.servicePort);
    // What the verifier gives way to: requests, not probes or scrapes.
    server.on("request", (req: IncomingMessage) => {
      if (isTraffic(req.url)) requests.mark();
    });
    const url = `http://${config.HOST}:${portOf(server, config.PORT)}`;
    log.info({ url }, "decentral-audit listening");
    return {
      url,
      store,
      log,
      verifier,
      async close() {
        // A worker that drains neither keeps nor takes the leader lease: another process's
        // leader starts at once, and this one cannot become leader while it drains.
        resigned = true;
        const resigning = (lease as LeaderLease | null)?.stop();
        // Stop accepting; responses in flight finish, no new request is taken on a connection
        // kept open, and each connection closes once idle (see DrainGate). A response still
        // running at the drain time is cut off.
        const drainLeft = timeLeft(config.DRAIN_TIMEOUT_MS);
        log.info(
          { withinMs: config.DRAIN_TIMEOUT_MS },
          "draining: taking no new requests, finishing those in flight",
        );
        const closed = gate.drain(server);
        const cutOff = setTimeout(() => server.closeAllConnections(), config.DRAIN_TIMEOUT_MS);
        cutOff.unref();
        await closed;
        clearTimeout(cutOff);
        // A job whose client left before its answer still runs and is charged: its answer,
        // which names it, is waited for within the same drain time, then recorded.
        await proxy.drain(drainLeft());
        await resigning;
        await stopAll();
        log.info("drained: responses in flight ended and their receipts are written");
      },
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/**
 * Starts the HTTP server; a port in use or a bad interface is an error naming it, not a crash.
 * Requests pass `gate` (see DrainGate); `wrap`, if given, wraps the app's request listener (the
 * proxy's direct path).
 */
function listen(
  fetch: Parameters<typeof getRequestListener>[0],
  port: number,
  hostname: string,
  gate: DrainGate,
  wrap?: (listener: RequestListener) => RequestListener,
): Promise<Server> {
  return new Promise<Server>((resolve, reject) => {
    // What @hono/node-server's `serve` does, with the listener wrapped.
    const listener = getRequestListener(fetch, { hostname });
    const server = createServer(gate.wrap(wrap ? wrap(listener) : listener));
    answerClientErrors(server);
    gate.attach(server);
    listenOn(server, port, hostname).then(() => resolve(server), reject);
  });
}

/** `server` listening on `port`; a port in use or a bad interface is an error naming it. */
function listenOn(server: Server, port: number, hostname: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.listen(port, hostname, () => {
      server.off("error", onError);
      resolve();
    });
    const onError = (error: NodeJS.ErrnoException) => {
      // A port in use or reserved (below 1024 without the right) is PORT's; an interface that
      // is not there or a name that resolves to none (EADDRNOTAVAIL, ENOTFOUND) is HOST's.
      const byPort = error.code === "EADDRINUSE" || error.code === "EACCES";
      const reason =
        error.code === "EADDRINUSE"
          ? `port ${port} on ${hostname} is already in use (set PORT or --port)`
          : `cannot listen on ${hostname}:${port} (set ${byPort ? "PORT or --port" : "HOST or --host"}): ${error.message}`;
      reject(new AppError("bad_request", reason, { field: byPort ? "PORT" : "HOST" }));
    };
    server.once("error", onError);
  });
}

/** The port `server` listens on (`fallback` when it listens on none). */
function portOf(server: Server, fallback: number): number {
  const address = server.address();
  return typeof address === "object" && address ? address.port : fallback;
}

/**
 * Listens on the port `servicePort` says instead of the one got, until they agree: a cluster's
 * worker asking for port 0 after every worker it would have shared the socket with died got a
 * port of its own, which nobody calls. It moves before it takes any request.
 */
async function moveToServicePort(
  server: Server,
  hostname: string,
  servicePort: (port: number) => Promise<number>,
): Promise<void> {
  for (;;) {
    const port = portOf(server, 0);
    const wanted = await servicePort(port);
    if (wanted === port) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await listenOn(server, wanted, hostname);
  }
}

/** Whether the receipt writer can have a thread of its own: on a SQLite database file. */
function ownReceiptWriterThread(store: Store): store is SqliteStore {
  return sqliteFileOf(store) !== null;
}
