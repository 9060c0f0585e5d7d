import { type ServerType, serve } from "@hono/node-server";
import { createApp } from "./api/app.js";
import { createMetrics } from "./api/metrics.js";
import { isQuorumRpc, rpcFromConfig } from "./chain/quorum.js";
import type { Config } from "./config.js";
import { openStore, type Store, setBusyTimeout } from "./db/client.js";
import { migrateStore } from "./db/migrate.js";
import { startWalCheckpointer } from "./db/wal-checkpointer.js";
import { AppError } from "./errors.js";
import { createAccountSnapshotter } from "./ledger/account-snapshots.js";
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
    setBusyTimeout(store, 10_000);
    migrateStore(store);
    setBusyTimeout(store, SERVE_BUSY_TIMEOUT_MS);
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
        totalsAt = t;
        void ledgerTotals(store, profile, config.LEDGER_GRACE_SECONDS, t).then(
          (counted) => {
            totals = counted;
          },
          (error) => log.warn({ err: String(error) }, "ledger: findings not counted"),
        );
      },
    });
    // The verifier and the backfill are told to stop first, then the RPC pool is closed so
    // that calls in flight (a slow node, a rate-limit pause) end at once instead of at their
    // timeout; only then are their loops awaited.
    stops.push(async () => {
      const stopping = [backfill.stop(), ledgerReader.stop(), verifier.stop()];
      await rpc.close();
      await Promise.all(stopping);
    });
    // `GET /v1/account` against the key's vault on chain: on demand (admin route) with a key,
    // and on a schedule unless ACCOUNT_SNAPSHOT_INTERVAL_MS is 0.
    const snapshotter = config.DECENTRAL_API_KEY
      ? createAccountSnapshotter({
          store,
          rpc,
          baseUrl: config.DECENTRAL_BASE_URL,
          apiKey: config.DECENTRAL_API_KEY,
          custody: config.CREDIT_VAULTS,
          log,
          intervalMs: config.ACCOUNT_SNAPSHOT_INTERVAL_MS,
        })
      : null;
    if (snapshotter) stops.push(() => snapshotter.stop());
    backfill.start();
    verifier.start();
    if (config.LEDGER_POLL_MS > 0) ledgerReader.start();
    if (snapshotter && config.ACCOUNT_SNAPSHOT_INTERVAL_MS > 0) snapshotter.start();
    const nightly = config.VERIFY_CRON
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
    if (nightly) stops.push(() => nightly.stop());
    const app = createApp({
      store,
      log,
      proxy,
      metrics,
      verifier,
      proxyRequireToken: config.PROXY_REQUIRE_TOKEN,
      statement: {
        profile,
        graceSeconds: config.LEDGER_GRACE_SECONDS,
        ...(snapshotter ? { takeAccountSnapshot: () => snapshotter.take() } : {}),
      },
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
