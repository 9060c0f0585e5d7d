import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { QuorumStatus } from "../chain/quorum.js";
import type { Store } from "../db/client.js";
import { verdicts } from "../db/schema.js";
import { registerEventLoopDelay } from "../event-loop-delay.js";
import { ledgerLagSeconds } from "../ledger/totals.js";
import type { ReadGateStats } from "../read-gate.js";
import { registerCommitHold } from "../recorder/commit-hold.js";
import { type JobsApiCallOutcome, jobsApiCallCounts } from "../recorder/jobs-api.js";
import type { WriterHealth } from "../recorder/receipt-writer.js";
import { countJobsByVerdict, oldestOpenJob } from "../reports/reconciliation.js";
import { createAccountSnapshotsStore } from "../store/account-snapshots.js";
import { createLedgerStore } from "../store/ledger.js";
import { createOpsStore } from "../store/ops.js";

export { walFileBytes } from "../store/ops.js";

/** One row of the RPC pool's counters. */
export interface RpcStatRow {
  endpoint: string;
  method: string;
  outcome: string;
  count: number;
}

/** Where the metrics read live values at scrape time; each source optional. */
export interface MetricSources {
  store: Store;
  /** RPC pool counters (monotonic). */
  rpcStats?: () => readonly RpcStatRow[];
  /** Jobs API calls by outcome (default: this thread's). */
  jobsApiCalls?: () => Iterable<readonly [JobsApiCallOutcome, number]>;
  /** The RPC quorum's standing per endpoint (`RPC_QUORUM` above 1), else null. */
  rpcQuorum?: () => QuorumStatus | null;
  /** Jobs waiting in the verification queue; default: jobs whose verdict is not final. */
  queueDepth?: () => number;
  /** Size of the database's -wal file in bytes; default: read from the file at scrape time. */
  walBytes?: () => number;
  /** Findings of the credit vaults' ledger, as last counted; without it no ledger gauges. */
  ledger?: () => { unexplained: number; unreleasedLocks: number };
  /** The escrow vault the ledger rounds scan (src/ledger/escrow-scan.ts); without it no escrow gauges. */
  escrowVault?: string;
  /** The readers' turns (src/read-gate.ts): running, waiting, turned away. */
  readers?: () => ReadGateStats;
  /** This process's receipt writer's view of the database (as on `/readyz`). */
  receipts?: () => WriterHealth;
  now?: () => number;
}

/**
 * Prometheus metrics with their own registry (never the global default one), so every app and
 * every test has its own. Gauges read the database at scrape time; the proxy observes its
 * latency through `observeProxy`.
 */
export function createMetrics(sources: MetricSources) {
  const registry = new Registry();
  const now = sources.now ?? Date.now;
  const ops = createOpsStore(sources.store);
  /**
   * A gauge read from the database at scrape time: with the database away it says so instead
   * of a stale or a plausible value (a lag of 0 would clear the very alert an outage should
   * keep), and the scrape still answers, for the proxy's counters and the receipt backlog
   * matter most during an outage. A gauge by label loses its series; one without labels reads
   * NaN (prom-client keeps a 0 for it otherwise).
   */
  const fromDatabase = (read: (gauge: Gauge<string>) => Promise<void>) =>
    async function collect(this: Gauge<string>) {
      try {
        await read(this);
      } catch {
        this.reset();
        if (((this as unknown as { labelNames?: string[] }).labelNames ?? []).length === 0) {
          this.set(Number.NaN);
        }
      }
    };

  new Gauge({
    name: "decentral_audit_database_up",
    help: "1 when the database answered this scrape and takes this process's receipts, 0 when it is away or receipt writes wait (its gauges then read NaN or are left out).",
    registers: [registry],
    async collect() {
      // A database that answers a ping while the receipt writer holds receipts for it (it
      // refuses writes, or every try of a group lost its connection) is down to paid work.
      if (sources.receipts?.().reachable === false) {
        this.set(0);
        return;
      }
      this.set(
        await ops.ping().then(
          () => 1,
          () => 0,
        ),
      );
    },
  });

  new Gauge({
    name: "decentral_audit_jobs",
    help: "Jobs by verdict.",
    labelNames: ["verdict"] as const,
    registers: [registry],
    collect: fromDatabase(async (gauge) => {
      // From the rollups (every day so far) and the open jobs' index, not a scan of every job.
      const counts = await countJobsByVerdict(sources.store, 0, Number.MAX_SAFE_INTEGER);
      gauge.reset();
      for (const v of verdicts) gauge.set({ verdict: v }, counts[v]);
    }),
  });

  new Gauge({
    name: "decentral_audit_verification_queue_depth",
    help: "Jobs waiting for a final verdict.",
    registers: [registry],
    collect: fromDatabase(async (gauge) => {
      gauge.set(sources.queueDepth ? sources.queueDepth() : await ops.countOpenJobs());
    }),
  });

  new Gauge({
    name: "decentral_audit_sqlite_wal_bytes",
    help: "Size of the SQLite write-ahead log file; checkpoints keep it bounded.",
    registers: [registry],
    collect: fromDatabase(async (gauge) => {
      gauge.set(sources.walBytes ? sources.walBytes() : await ops.walBytes());
    }),
  });

  new Gauge({
    name: "decentral_audit_verification_lag_seconds",
    help: "Age of the oldest job without a final verdict; 0 when every job is final.",
    registers: [registry],
    collect: fromDatabase(async (gauge) => {
      const at = now();
      gauge.set(Math.max(0, (at - (await oldestOpenJob(sources.store, at))) / 1000));
    }),
  });

  if (sources.ledger) {
    const ledger = sources.ledger;
    new Gauge({
      name: "decentral_audit_ledger_unexplained",
      help: "Credit vault movements of the last 7 days no recorded job explains: unreceipted debits and unreleased locks.",
      labelNames: ["finding"] as const,
      registers: [registry],
      collect() {
        const totals = ledger();
        this.set({ finding: "unreceipted_debit" }, totals.unexplained);
        this.set({ finding: "unreleased_lock" }, totals.unreleasedLocks);
      },
    });
    new Gauge({
      name: "decentral_audit_ledger_lag_seconds",
      help: "Time since the least recently read credit vault's history was read through.",
      registers: [registry],
      collect: fromDatabase(async (gauge) => {
        gauge.set(await ledgerLagSeconds(sources.store, now()));
      }),
    });
  }

  if (sources.escrowVault !== undefined) {
    const vault = sources.escrowVault;
    const ledgerStore = createLedgerStore(sources.store);
    const figures = () => ledgerStore.escrowScanFigures(vault);
    new Gauge({
      name: "decentral_audit_escrow_scan_lag_seconds",
      help: "Time since the escrow vault's memo scan last ran through its new history; absent before its first.",
      registers: [registry],
      collect: fromDatabase(async (gauge) => {
        const { scannedAt } = await figures();
        gauge.reset();
        if (scannedAt !== null) gauge.set(Math.max(0, (now() - scannedAt) / 1000));
      }),
    });
    new Gauge({
      name: "decentral_audit_escrow_pending",
      help: "Escrow entries held for judging later: their job not recorded yet, or their transaction not served.",
      registers: [registry],
      collect: fromDatabase(async (gauge) => {
        gauge.set((await figures()).pending);
      }),
    });
  }

  const snapshots = createAccountSnapshotsStore(sources.store);
  new Gauge({
    name: "decentral_audit_account_snapshot_difference_units",
    help: "Last GET /v1/account snapshot of each credit vault: usdc_value minus the vault's balance on chain, in base units (0 when they agree).",
    labelNames: ["vault"] as const,
    registers: [registry],
    collect: fromDatabase(async (gauge) => {
      const latest = await snapshots.latestPerVault();
      gauge.reset();
      for (const s of latest) {
        if (s.vault !== null && s.usdcDifferenceUnits !== null) {
          gauge.set({ vault: s.vault }, Number(s.usdcDifferenceUnits));
        }
      }
    }),
  });

  new Counter({
    name: "decentral_audit_rpc_requests_total",
    help: "Solana RPC requests by endpoint, method and outcome.",
    labelNames: ["endpoint", "method", "outcome"] as const,
    registers: [registry],
    collect() {
      if (!sources.rpcStats) return;
      this.reset();
      for (const row of sources.rpcStats()) {
        this.inc({ endpoint: row.endpoint, method: row.method, outcome: row.outcome }, row.count);
      }
    },
  });

  new Counter({
    name: "decentral_audit_rpc_disagreements_total",
    help: "Answers of an endpoint that differed from the others (RPC_QUORUM): outvoted by a quorum, or unresolved (no quorum formed).",
    labelNames: ["endpoint", "kind"] as const,
    registers: [registry],
    collect() {
      const status = sources.rpcQuorum?.();
      if (!status) return;
      this.reset();
      for (const e of status.endpoints) {
        this.inc({ endpoint: e.endpoint, kind: "outvoted" }, e.outvoted);
        this.inc({ endpoint: e.endpoint, kind: "unresolved" }, e.unresolved);
      }
    },
  });

  new Gauge({
    name: "decentral_audit_rpc_endpoint_set_aside",
    help: "1 while the quorum sets an endpoint aside for disagreeing with the others.",
    labelNames: ["endpoint"] as const,
    registers: [registry],
    collect() {
      const status = sources.rpcQuorum?.();
      if (!status) return;
      this.reset();
      for (const e of status.endpoints) this.set({ endpoint: e.endpoint }, e.setAside ? 1 : 0);
    },
  });

  new Counter({
    name: "decentral_audit_jobs_api_calls_total",
    help: "Decentral jobs API calls (the proxy's questions and the settlement backfill's) by outcome: answered, failed (5xx, 429, unreachable, timed out: retried), refused (other 4xx), aborted (a stop).",
    labelNames: ["outcome"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [outcome, n] of sources.jobsApiCalls?.() ?? jobsApiCallCounts()) {
        this.inc({ outcome }, n);
      }
    },
  });

  new Gauge({
    name: "decentral_audit_readers",
    help: "Readers of audit records, reports, job listings and dashboard pages by state: running (their turn) or waiting (queued, at most READ_QUEUE).",
    labelNames: ["state"] as const,
    registers: [registry],
    collect() {
      const stats = sources.readers?.();
      if (!stats) return;
      this.set({ state: "running" }, stats.running);
      this.set({ state: "waiting" }, stats.waiting);
    },
  });

  new Counter({
    name: "decentral_audit_readers_turned_away_total",
    help: "Readers not served: busy (503, the queue full) or hung_up (the client left while it waited).",
    labelNames: ["reason"] as const,
    registers: [registry],
    collect() {
      const stats = sources.readers?.();
      if (!stats) return;
      this.reset();
      this.inc({ reason: "busy" }, stats.turnedAway.busy);
      this.inc({ reason: "hung_up" }, stats.turnedAway.hung_up);
    },
  });

  registerEventLoopDelay(registry);
  registerCommitHold(registry);
  const proxyLatency = new Histogram({
    name: "decentral_audit_proxy_duration_seconds",
    help: "Recording proxy: time from request to the end of the upstream response.",
    labelNames: ["status", "stream"] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [registry],
  });
  const proxyTtfb = new Histogram({
    name: "decentral_audit_proxy_ttfb_seconds",
    help: "Recording proxy: time to the upstream's first byte.",
    labelNames: ["stream"] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });

  return {
    registry,
    /** Records one proxied request: total duration and time to first byte, in seconds. */
    observeProxy(sample: {
      status: number;
      stream: boolean;
      durationSeconds: number;
      ttfbSeconds?: number;
    }): void {
      const stream = sample.stream ? "true" : "false";
      proxyLatency.observe({ status: String(sample.status), stream }, sample.durationSeconds);
      if (sample.ttfbSeconds !== undefined) proxyTtfb.observe({ stream }, sample.ttfbSeconds);
    },
  };
}

export type AppMetrics = ReturnType<typeof createMetrics>;
