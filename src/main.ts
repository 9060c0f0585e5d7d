import { type ServerType, serve } from "@hono/node-server";
import { createApp } from "./api/app.js";
import { createMetrics } from "./api/metrics.js";
import { rpcPoolFromConfig } from "./chain/rpc-pool.js";
import type { Config } from "./config.js";
import { openStore, type Store } from "./db/client.js";
import { migrateStore } from "./db/migrate.js";
import { startWalCheckpointer } from "./db/wal-checkpointer.js";
import { AppError } from "./errors.js";
import { createLedgerReader, type LedgerReader } from "./ledger/reader.js";
import { type LedgerTotals, ledgerTotals } from "./ledger/totals.js";
import { ledgerWindowCheck } from "./ledger/window-check.js";
import { createLogger, type Logger } from "./log.js";
import { scheduleNightlyVerification } from "./nightly/cron.js";
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

/** Composes config -> db -> app -> HTTP server. */
export async function startService(
  config: Config,
  log = createLogger({ level: config.LOG_LEVEL }),
): Promise<Service> {
  const store = openStore(config.DATABASE_URL);
  migrateStore(store);
  const checkpointer = startWalCheckpointer(store, { log });
  const jobsApi = createJobsApiClient(config.DECENTRAL_BASE_URL);
  let totals: LedgerTotals = { unexplained: 0, unreleasedLocks: 0, imbalanced: 0 };
  let totalsAt = 0;
  const metrics = createMetrics({
    store,
    rpcStats: () => rpc.stats(),
    ...(config.LEDGER_POLL_MS > 0 ? { ledger: () => totals } : {}),
  });
  const proxy = createRecordingProxy({
    store,
    log,
    upstreamBaseUrl: config.DECENTRAL_BASE_URL,
    jobsApi,
    observe: (sample) => metrics.observeProxy(sample),
  });
  const backfill = createSettlementBackfill({
    store,
    log,
    jobsApi,
    apiKey: config.DECENTRAL_API_KEY,
  });
  backfill.start();
  const rpc = rpcPoolFromConfig(config, log);
  const profile = loadProfile(config.AUDIT_PROFILE);
  const verifier = createVerifier({
    store,
    rpc,
    profile,
    log,
    custody: config.CREDIT_VAULTS,
    // New receipts are found by polling the store (one indexed query) as often as finality.
    options: { pollIntervalMs: config.VERIFY_POLL_MS, idleIntervalMs: config.VERIFY_POLL_MS },
  });
  verifier.start();
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
  if (config.LEDGER_POLL_MS > 0) ledgerReader.start();
  const nightly = config.VERIFY_CRON
    ? scheduleNightlyVerification(config.VERIFY_CRON, {
        store,
        engine: verifier,
        log,
        preflight: () => rpc.getSlot("finalized"),
        ledger: ledgerWindowCheck({
          store,
          reader: ledgerReader,
          profile,
          graceSeconds: config.LEDGER_GRACE_SECONDS,
        }),
      })
    : null;
  const app = createApp({
    store,
    log,
    proxy,
    metrics,
    verifier,
    proxyRequireToken: config.PROXY_REQUIRE_TOKEN,
    statement: { profile, graceSeconds: config.LEDGER_GRACE_SECONDS },
    explorer: explorerClusterOf(profile.cluster, config.SOLANA_RPC_URLS[0] ?? ""),
    readiness: {
      rpc: () => rpc.getSlot("finalized"),
      profile: () => profileStatus(store, profile),
    },
  });
  const stopWorkers = async () => {
    nightly?.stop();
    await backfill.stop();
    await ledgerReader.stop();
    await verifier.stop();
    await rpc.close();
    await proxy.close();
    await checkpointer.close();
    store.close();
  };
  let server: ServerType;
  try {
    server = await listen(app.fetch, config.PORT, config.HOST);
  } catch (error) {
    await stopWorkers();
    throw error;
  }
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
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await stopWorkers();
    },
  };
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
