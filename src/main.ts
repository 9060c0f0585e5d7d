import { type ServerType, serve } from "@hono/node-server";
import { createApp } from "./api/app.js";
import { type AppMetrics, createMetrics } from "./api/metrics.js";
import { isQuorumRpc, rpcFromConfig } from "./chain/quorum.js";
import type { Config } from "./config.js";
import { openStore, type Store } from "./db/client.js";
import { migrateStore } from "./db/migrate.js";
import { startWalCheckpointer } from "./db/wal-checkpointer.js";
import { AppError } from "./errors.js";
import { holdLeaderLease } from "./leader-lease.js";
import { createLedgerReader, type LedgerReader } from "./ledger/reader.js";
import { type LedgerTotals, ledgerTotals } from "./ledger/totals.js";
import { ledgerWindowCheck } from "./ledger/window-check.js";
import { createLogger, type Logger } from "./log.js";
import { scheduleNightlyVerification, validateCronExpression } from "./nightly/cron.js";
import { createJobsApiClient } from "./recorder/jobs-api.js";
import { createRecordingProxy } from "./recorder/proxy.js";
import { createSettlementBackfill } from "./recorder/settlement-backfill.js";
import { explorerClusterOf } from "./reports/audit-record.js";
import { createVerifier, type Verifier } from "./verify/engine.js";
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
   * the store's leader lock (the workers of `serve --workers N`). Default `always`.
   */
  background?: "always" | "leader";
  /**
   * Replaces the metrics the app serves, given this process's own (the cluster's workers
   * serve the whole service's). Default: this process's own.
   */
  metrics?: (own: AppMetrics) => AppMetrics;
}

/**
 * Busy timeout of the serving process's connection, in ms. better-sqlite3 waits for a lock in
 * a busy loop that blocks the event loop (the proxy with it), so the wait is kept short and
 * longer contention is retried from JavaScript on timers (verifier rounds, run bookkeeping).
 * Every transaction here and in other processes is short (ms), so 500 ms is rarely reached.
 */
export const SERVE_BUSY_TIMEOUT_MS = 500;

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
    for (const stop of stops.reverse()) {
      try {
        await stop();
      } catch (error) {
        log.warn({ err: error }, "stopping a part of the service failed");
      }
    }
    stops.length = 0;
  };
  try {
    const store = openStore(config.DATABASE_URL, { busyTimeoutMs: SERVE_BUSY_TIMEOUT_MS });
    stops.push(() => store.close());
    // Migrating may wait for another process's migration: allow that wait here, once.
    store.sqlite.pragma("busy_timeout = 10000");
    migrateStore(store);
    store.sqlite.pragma(`busy_timeout = ${SERVE_BUSY_TIMEOUT_MS}`);
    const checkpointer = startWalCheckpointer(store, { log });
    stops.push(() => checkpointer.close());
    const jobsApi = createJobsApiClient(config.DECENTRAL_BASE_URL);
    const rpc = rpcFromConfig(config, log);
    let totals: LedgerTotals = { unexplained: 0, unreleasedLocks: 0, imbalanced: 0 };
    let totalsAt = 0;
    const metrics = createMetrics({
      store,
      rpcStats: () => rpc.stats(),
      rpcQuorum: () => (isQuorumRpc(rpc) ? rpc.quorumStatus() : null),
      ...(config.LEDGER_POLL_MS > 0 ? { ledger: () => totals } : {}),
    });
    const proxy = createRecordingProxy({
      store,
      log,
      upstreamBaseUrl: config.DECENTRAL_BASE_URL,
      jobsApi,
      observe: (sample) => metrics.observeProxy(sample),
    });
    stops.push(() => proxy.close());
    const backfill = createSettlementBackfill({
      store,
      log,
      jobsApi,
      apiKey: config.DECENTRAL_API_KEY,
      apiKeys: config.DECENTRAL_API_KEYS,
      writer: proxy.writer,
    });
    const verifier = createVerifier({
      store,
      rpc,
      profile,
      log,
      custody: config.CREDIT_VAULTS,
      // New receipts are found by polling the store (one indexed query) as often as finality.
      options: { pollIntervalMs: config.VERIFY_POLL_MS, idleIntervalMs: config.VERIFY_POLL_MS },
    });
    // The credit vaults' ledger beside the verifier: same store, same rate-limited pool.
    const ledgerReader: LedgerReader = createLedgerReader({
      store,
      rpc,
      profile,
      log,
      custody: config.CREDIT_VAULTS,
      options: { intervalMs: config.LEDGER_POLL_MS || 10_000 },
      // Counting findings builds every vault's whole statement (synchronous SQLite): only after
      // a round that read something, or once a minute (receipts arriving can explain a line).
      afterRound: (results) => {
        const t = Date.now();
        if (results.every((r) => r.listed === 0) && t - totalsAt < 60_000) return;
        totals = ledgerTotals(store, profile, config.LEDGER_GRACE_SECONDS, t);
        totalsAt = t;
      },
    });
    // The background work: one process of those sharing the store runs it in cluster mode.
    let nightly: { stop(): unknown } | null = null;
    const startBackground = () => {
      backfill.start();
      verifier.start();
      if (config.LEDGER_POLL_MS > 0) ledgerReader.start();
      nightly = config.VERIFY_CRON
        ? scheduleNightlyVerification(config.VERIFY_CRON, {
            store,
            engine: verifier,
            log,
            preflight: () => rpc.getSlot("finalized"),
            profile: () => profileStatus(store, profile),
            ledger: ledgerWindowCheck({
              store,
              reader: ledgerReader,
              profile,
              graceSeconds: config.LEDGER_GRACE_SECONDS,
            }),
          })
        : null;
    };
    // Told to stop at once (synchronously); the promise is their loops ending.
    const stopBackground = async () => {
      const stopping = [backfill.stop(), ledgerReader.stop(), verifier.stop()];
      await nightly?.stop();
      nightly = null;
      await Promise.all(stopping);
    };
    const lease =
      options.background === "leader"
        ? holdLeaderLease({ store, log, onGain: startBackground, onLose: stopBackground })
        : null;
    // The verifier and the backfill are told to stop first, then the RPC pool is closed so
    // that calls in flight (a slow node, a rate-limit pause) end at once instead of at their
    // timeout; only then are their loops awaited.
    stops.push(async () => {
      const stopping = lease ? lease.stop() : stopBackground();
      await rpc.close();
      await stopping;
    });
    if (!lease) startBackground();
    const app = createApp({
      store,
      log,
      proxy,
      metrics: options.metrics ? options.metrics(metrics) : metrics,
      verifier,
      proxyRequireToken: config.PROXY_REQUIRE_TOKEN,
      statement: { profile, graceSeconds: config.LEDGER_GRACE_SECONDS },
      explorer,
      readiness: {
        rpc: () => rpc.getSlot("finalized"),
        profile: () => profileStatus(store, profile),
        rpcQuorum: () => (isQuorumRpc(rpc) ? rpc.quorumStatus() : null),
      },
    });
    const server = await listen(app.fetch, config.PORT, config.HOST);
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : config.PORT;
    const url = `http://${config.HOST}:${port}`;
    log.info({ url }, "decentral-audit listening");
    return {
      url,
      store,
      log,
      verifier,
      async close() {
        // Stop accepting; responses in flight finish (idle keep-alive connections close). A
        // client holding a connection open past the drain time is cut off.
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        const cutOff = setTimeout(() => closeAllConnections(server), DRAIN_MS);
        cutOff.unref();
        await closed;
        clearTimeout(cutOff);
        await stopAll();
      },
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** How long SIGTERM waits for responses in flight before closing their connections. */
const DRAIN_MS = 5000;

function closeAllConnections(server: ServerType) {
  const http = server as { closeAllConnections?: () => void };
  http.closeAllConnections?.();
}

/** Starts the HTTP server; a port in use or a bad interface is an error naming it, not a crash. */
function listen(
  fetch: Parameters<typeof serve>[0]["fetch"],
  port: number,
  hostname: string,
): Promise<ServerType> {
  return new Promise<ServerType>((resolve, reject) => {
    const server = serve({ fetch, port, hostname }, () => {
      server.off("error", onError);
      resolve(server);
    });
    const onError = (error: NodeJS.ErrnoException) => {
      const reason =
        error.code === "EADDRINUSE"
          ? `port ${port} on ${hostname} is already in use (set PORT or --port)`
          : `cannot listen on ${hostname}:${port}: ${error.message}`;
      reject(new AppError("bad_request", reason, { field: "PORT" }));
    };
    server.once("error", onError);
  });
}
