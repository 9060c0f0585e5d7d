import { isQuorumRpc } from "./chain/quorum.js";
import type { RpcPool } from "./chain/rpc-pool.js";
import type { Config } from "./config.js";
import type { Store } from "./db/client.js";
import { configuredAccountSnapshotter } from "./ledger/account-snapshots.js";
import { createLedgerReader, type LedgerReader } from "./ledger/reader.js";
import { type LedgerTotals, ledgerTotals } from "./ledger/totals.js";
import { ledgerWindowCheck } from "./ledger/window-check.js";
import type { Logger } from "./log.js";
import { scheduleNightlyVerification } from "./nightly/cron.js";
import { hangMarginMs } from "./nightly/nightly-run.js";
import type { JobsApiClient } from "./recorder/jobs-api.js";
import { createOpenReceiptSweep } from "./recorder/open-receipts.js";
import type { ReceiptWriter } from "./recorder/receipt-writer.js";
import { createSettlementBackfill } from "./recorder/settlement-backfill.js";
import { createRoundPacer } from "./request-pressure.js";
import { createVerifier, type Verifier } from "./verify/engine.js";
import { createEscrowCoverGate } from "./verify/escrow-cover.js";
import { profileStatus } from "./verify/profile-status.js";
import type { Profile } from "./verify/profiles.js";

/** What the background work needs: the service's store, RPC pool and receipt writer. */
export interface BackgroundDeps {
  config: Config;
  store: Store;
  rpc: RpcPool;
  profile: Profile;
  log: Logger;
  jobsApi: JobsApiClient;
  /** The receipt writer the settlement backfill records through. */
  writer: ReceiptWriter;
  /** The count of requests the process began: the verifier gives way to them. */
  requests?: () => number;
}

/**
 * The work of `serve` beside the requests: the verifier, the settlement backfill, the credit
 * vaults' ledger reader and the nightly schedule. One process of those sharing a store runs it
 * (in a cluster, the leader); the others only build the verifier for `reverify`, which writes
 * to the store the leader's verifier polls.
 */
export interface Background {
  verifier: Verifier;
  ledgerReader: LedgerReader;
  /** Findings of the ledger, as last counted (zeros before the first count). */
  totals(): LedgerTotals;
  start(): void;
  /** Tells every part to stop at once; resolves when their loops have ended. */
  stop(): Promise<void>;
}

/**
 * The most a job the proxy recorded and asks about itself waits of `JOBS_API_WAIT_MS` (see
 * config.ts): its four questions, 4.35 s of retry delays apart, take at most 10 s each (the jobs API client's timeout), and one left
 * unanswered then goes to the backfill (held as above). A proxy killed before it asked leaves
 * nobody asking: the job waits no longer than this.
 */
const PROXY_JOBS_API_WAIT_MS = 45_000;

export function composeBackground(deps: BackgroundDeps): Background {
  const { config, store, rpc, profile, log, jobsApi } = deps;
  let totals: LedgerTotals = { unexplained: 0, unreleasedLocks: 0, imbalanced: 0 };
  let totalsAt = 0;
  const backfill = createSettlementBackfill({
    store,
    log,
    jobsApi,
    apiKey: config.DECENTRAL_API_KEY,
    apiKeys: config.DECENTRAL_API_KEYS,
    writer: deps.writer,
  });
  // Streams of proxies killed mid-body: their receipts say `aborted`, not "still streaming".
  const openReceipts = createOpenReceiptSweep({ store, log });
  // This process scans the escrow vault: a clean verdict waits until the scan has read past
  // the job, so that a second payout made with its settlement never shows as `verified`.
  const escrowGate =
    config.LEDGER_POLL_MS > 0 && profile.escrowVault !== null
      ? { vault: profile.escrowVault, gate: createEscrowCoverGate() }
      : null;
  const verifier = createVerifier({
    store,
    rpc,
    profile,
    log,
    custody: config.CREDIT_VAULTS,
    // New receipts are found by polling the store (one indexed query) as often as finality.
    // This process's proxy and backfill ask the jobs API: a clean verdict waits for the answer.
    options: {
      pollIntervalMs: config.VERIFY_POLL_MS,
      idleIntervalMs: config.VERIFY_POLL_MS,
      dropHoldMs: config.VERIFY_DROP_HOLD_MS,
      jobsApiWaitMs: config.JOBS_API_WAIT_MS,
      proxyJobsApiWaitMs: Math.min(PROXY_JOBS_API_WAIT_MS, config.JOBS_API_WAIT_MS),
    },
    ...(deps.requests ? { pacer: createRoundPacer(deps.requests) } : {}),
    ...(escrowGate ? { escrowCover: escrowGate } : {}),
  });
  // The credit vaults' ledger beside the verifier: same store, same rate-limited pool.
  const ledgerReader: LedgerReader = createLedgerReader({
    store,
    rpc,
    profile,
    log,
    custody: config.CREDIT_VAULTS,
    options: { intervalMs: config.LEDGER_POLL_MS || 10_000 },
    ...(escrowGate
      ? {
          escrowCover: {
            wanted: () => escrowGate.gate.wanted(),
            covered: (slot: number) => verifier.lookAgain(escrowGate.gate.covered(slot)),
          },
        }
      : {}),
    // Counting findings builds every vault's whole statement (synchronous SQLite): only after
    // a round that read something, or once a minute (receipts arriving can explain a line).
    afterRound: (results) => {
      // Verdicts held for this round's read of their credit vault (escrow-cover.ts) are due.
      if (escrowGate) {
        const due = escrowGate.gate.ledgerRead(results.map((r) => r.vault));
        void verifier.lookAgain(due).catch((error) => {
          log.warn({ err: String(error) }, "ledger: jobs waiting for its read not made due");
        });
      }
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
  // `GET /v1/account` against the key's vault, on a schedule unless ACCOUNT_SNAPSHOT_INTERVAL_MS is 0.
  const snapshotter =
    config.ACCOUNT_SNAPSHOT_INTERVAL_MS > 0
      ? configuredAccountSnapshotter(config, { store, profile, rpc, log })
      : null;
  let nightly: { stop(): unknown } | null = null;
  return {
    verifier,
    ledgerReader,
    totals: () => totals,
    start() {
      openReceipts.start();
      backfill.start();
      verifier.start();
      if (config.LEDGER_POLL_MS > 0) ledgerReader.start();
      snapshotter?.start();
      nightly = config.VERIFY_CRON
        ? scheduleNightlyVerification(config.VERIFY_CRON, {
            store,
            engine: verifier,
            log,
            preflight: () => rpc.getSlot("finalized"),
            ...(isQuorumRpc(rpc) ? { rpcQuorum: rpc } : {}),
            rpcStats: () => rpc.stats(),
            profile: () => profileStatus(store, profile),
            ledger: ledgerWindowCheck({
              store,
              reader: ledgerReader,
              profile,
              graceSeconds: config.LEDGER_GRACE_SECONDS,
            }),
            ...(store.kind === "postgres"
              ? { hangMarginMs: hangMarginMs(config.DATABASE_STATEMENT_TIMEOUT_MS) }
              : {}),
          })
        : null;
    },
    async stop() {
      // First: a scheduled run going on ends as interrupted, before its RPC and store close.
      nightly?.stop();
      const stopping = [openReceipts.stop(), backfill.stop(), ledgerReader.stop(), verifier.stop()];
      if (snapshotter) stopping.push(snapshotter.stop());
      nightly = null;
      await Promise.all(stopping);
    },
  };
}
