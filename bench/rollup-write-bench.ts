import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { createApp } from "../src/api/app.js";
import { createToken } from "../src/auth/tokens.js";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore, migrationsFolder } from "../src/db/migrate.js";
import { foldRollupDeltas, moneyFigureColumns } from "../src/db/rollups.js";
import { createLogger } from "../src/log.js";
import { parseReceiptInput } from "../src/recorder/receipt-input.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import type { Receipt } from "../src/recorder/receipts.js";
import { recordReceipts } from "../src/recorder/receipts.js";
import { benchReceipts, measurePostJobs } from "./ingest-bench.js";
import { percentile, round } from "./stats.js";

export interface WriteCostSide {
  /** Receipts recorded per second (recordReceipts, batches of `batchSize`). */
  receiptsPerSec: number;
  /** Verdict writes per second: pending -> awaiting_finality, no amounts. */
  statusWritesPerSec: number;
  /** Final verdict writes per second: verdict, amounts and the job's check results. */
  verdictWritesPerSec: number;
}

export interface WriteCostResult {
  rounds: number;
  batchSize: number;
  /** The schema as migrated: rollup triggers, no per-group report indexes on `jobs`. */
  withTriggers: WriteCostSide;
  /** The same schema with the rollup triggers dropped: what the triggers alone cost. */
  withoutTriggers: WriteCostSide;
  /**
   * The triggers before the rollup deltas (migration 0008): an upsert per grain (seven) for
   * every job written, each write summed into `job_rollups` at once.
   */
  perRowTriggers: WriteCostSide;
  /** The triggers of migration 0009: the same, but the fold trigger an upsert. */
  upsertFold: WriteCostSide;
  /** (without - upsertFold) / without, percent. */
  upsertFoldCostPercent: { receipts: number; statusWrites: number; verdictWrites: number };
  /**
   * The schema before the rollups: no triggers, and the four covering report indexes on `jobs`
   * that the from-scratch reports needed (dropped when the rollups replaced them).
   */
  beforeRollups: WriteCostSide;
  /** (without - with) / without, percent, per figure: the triggers alone. */
  costPercent: { receipts: number; statusWrites: number; verdictWrites: number };
  /** (before - with) / before, percent: what the rollups changed for writers, all told. */
  costVsBeforePercent: { receipts: number; statusWrites: number; verdictWrites: number };
  /** (without - per-row) / without, percent: what the per-row triggers cost. */
  perRowCostPercent: { receipts: number; statusWrites: number; verdictWrites: number };
  /** (before - per-row) / before, percent. */
  perRowCostVsBeforePercent: { receipts: number; statusWrites: number; verdictWrites: number };
}

/** The covering report indexes `jobs` had before the rollups replaced them. */
const preRollupIndexes = ["day", "model", "worker", "key"].map((g) => {
  const lead = g === "day" ? '"created_at" / 86400000' : g === "key" ? "key_fingerprint" : g;
  return `CREATE INDEX jobs_report_${g} ON jobs (${lead}, verdict, created_at, charged_units,
    escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports)`;
});

/** The triggers a migration creates, as it created them. */
function triggersOf(migration: string): string[] {
  const text = readFileSync(`${migrationsFolder}/${migration}.sql`, "utf8");
  return text
    .split("--> statement-breakpoint")
    .map((s) => s.trim())
    .filter((s) => s.startsWith("CREATE TRIGGER"));
}

/**
 * `job_rollups` with each sum also in one column, as the old triggers wrote it (migration 0048
 * keeps each in two parts, which the writers' fold still adds to).
 */
function singleColumnRollups(store: SqliteStore): void {
  for (const column of moneyFigureColumns) {
    store.sqlite.exec(`ALTER TABLE job_rollups ADD ${column} integer DEFAULT 0 NOT NULL`);
  }
}

type Side = "with" | "without" | "before" | "perRow" | "upsertFold";

/** Drops the triggers that keep the rollups: a migrated schema as it would be without them. */
export function dropRollupTriggers(store: SqliteStore): void {
  for (const name of store.sqlite
    .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'jobs_rollup_%'")
    .pluck()
    .all() as string[]) {
    store.sqlite.exec(`DROP TRIGGER ${name}`);
  }
}

/**
 * A fresh migrated store as one side of the comparison has it: `with` as migrated, `without`
 * the rollup triggers, `before` the rollups (no triggers, the report indexes), `perRow` the
 * triggers of migration 0008, `upsertFold` the fold trigger of migration 0009 (an upsert, which
 * gave every statement writing `jobs` a statement journal).
 */
function openSide(dir: string, side: Side): SqliteStore {
  const store = openSqliteStore(join(dir, `${side}.db`));
  migrateStore(store);
  if (side !== "with" && side !== "upsertFold") dropRollupTriggers(store);
  if (side === "before") for (const sql of preRollupIndexes) store.sqlite.exec(sql);
  if (side === "perRow" || side === "upsertFold") singleColumnRollups(store);
  if (side === "perRow") for (const sql of triggersOf("0008_rollup_hours")) store.sqlite.exec(sql);
  if (side === "upsertFold") {
    store.sqlite.exec("DROP TRIGGER jobs_rollup_fold");
    const fold = triggersOf("0009_rollup_deltas").find((t) => t.includes("jobs_rollup_fold"));
    store.sqlite.exec(fold as string);
  }
  return store;
}

const checkNames = Array.from({ length: 14 }, (_, i) => `check.${i}`);

/** The verifier's verdict writes (src/verify/engine.ts), per job, a batch per transaction. */
function verdictWriter(store: SqliteStore) {
  const db = store.sqlite;
  const status = db.prepare(
    `UPDATE jobs SET verdict = 'awaiting_finality', verdict_at = NULL, verify_attempts = 0,
       next_verify_at = @now, lease_owner = NULL, lease_until = NULL, last_error = NULL,
       commitment = 'confirmed', unproven = NULL, updated_at = @now WHERE job_id = @jobId`,
  );
  const final = db.prepare(
    `UPDATE jobs SET verdict = @verdict, verdict_at = @now, verify_attempts = 0,
       next_verify_at = @now, lease_owner = NULL, lease_until = NULL, last_error = NULL,
       commitment = 'finalized', unproven = NULL, updated_at = @now,
       escrowed_units = 4000000, charged_units = @charged, worker_paid_units = @worker,
       treasury_paid_units = @charged - @worker, refunded_units = 4000000 - @charged,
       expected_charge_units = @charged, fees_lamports = 10000
     WHERE job_id = @jobId`,
  );
  const clearChecks = db.prepare("DELETE FROM check_results WHERE job_id = ?");
  const insertCheck = db.prepare(
    `INSERT INTO check_results (job_id, name, outcome, reason, expected, actual, run_id, checked_at)
     VALUES (?, ?, 'pass', NULL, NULL, NULL, NULL, ?)`,
  );
  // Each batch sums its rollup deltas before it commits, as the verdict store does.
  const statusTx = db.transaction((ids: string[], now: number) => {
    for (const jobId of ids) status.run({ jobId, now });
    foldRollupDeltas(store);
  });
  const finalTx = db.transaction((ids: string[], now: number) => {
    for (const [i, jobId] of ids.entries()) {
      const charged = 80_000 + (i % 50) * 10_000;
      final.run({
        jobId,
        now,
        verdict: i % 50 === 0 ? "discrepancy" : "verified",
        charged,
        worker: Math.floor(charged * 0.75),
      });
      clearChecks.run(jobId);
      for (const name of checkNames) insertCheck.run(jobId, name, now);
    }
    foldRollupDeltas(store);
  });
  return {
    status: (ids: string[], now: number) => statusTx.immediate(ids, now),
    final: (ids: string[], now: number) => finalTx.immediate(ids, now),
  };
}

/**
 * What the rollup triggers cost the writers: the same receipts and verdict writes go to two
 * stores, one with the triggers and one with them dropped, round by round in alternating
 * order, and each side's median rate is compared. Receipts go through `recordReceipts` (the
 * ingest API's and import's write); verdicts through the verifier's UPDATE statements.
 */
export function measureRollupWriteCost(
  options: {
    rounds?: number;
    batchSize?: number;
    prefill?: number;
    /**
     * What a batch's time is: `wall` (default) or `cpu`, this process's CPU time (user + system),
     * steadier than wall time on a loaded host since the writes run synchronously on this thread.
     */
    clock?: "wall" | "cpu";
  } = {},
): WriteCostResult {
  const rounds = options.rounds ?? 12;
  const now =
    options.clock === "cpu"
      ? () => {
          const used = process.cpuUsage();
          return (used.user + used.system) / 1000;
        }
      : () => performance.now();
  const batchSize = options.batchSize ?? 1000;
  const dir = mkdtempSync(join(tmpdir(), "rollup-writes-"));
  const sides = ["with", "without", "before", "perRow", "upsertFold"] as const;
  const stores = Object.fromEntries(
    sides.map((side) => {
      const store = openSide(dir, side);
      return [side, { store, writer: verdictWriter(store) }];
    }),
  ) as Record<
    (typeof sides)[number],
    { store: SqliteStore; writer: ReturnType<typeof verdictWriter> }
  >;

  const toReceipts = (raw: Record<string, unknown>[]): Receipt[] =>
    raw.map((r) => {
      const parsed = parseReceiptInput(r);
      if (!parsed.ok) throw new Error(`bench receipt rejected: ${JSON.stringify(parsed)}`);
      return parsed.receipt;
    });
  const rates = Object.fromEntries(
    sides.map((s) => [
      s,
      { receipts: [] as number[], status: [] as number[], final: [] as number[] },
    ]),
  ) as Record<(typeof sides)[number], { receipts: number[]; status: number[]; final: number[] }>;

  try {
    // Both stores start with the same history, so B-trees have a realistic depth.
    const prefill = options.prefill ?? 20_000;
    for (let i = 0; i < prefill; i += batchSize) {
      const batch = toReceipts(benchReceipts(batchSize, `p${i.toString(36)}x`));
      for (const side of sides) recordReceipts(stores[side].store, batch, "ingest");
    }
    for (let round = 0; round < rounds; round++) {
      const batch = toReceipts(benchReceipts(batchSize, `r${round.toString(36)}x`));
      const ids = batch.map((r) => r.jobId);
      // Each side goes first, second and last equally often.
      const order = sides.map((_, i) => sides[(i + round) % sides.length]!);
      for (const side of order) {
        const { store, writer } = stores[side];
        let t = now();
        recordReceipts(store, batch, "ingest");
        rates[side].receipts.push(batchSize / ((now() - t) / 1000));
        t = now();
        writer.status(ids, Date.now());
        rates[side].status.push(batchSize / ((now() - t) / 1000));
        t = now();
        writer.final(ids, Date.now());
        rates[side].final.push(batchSize / ((now() - t) / 1000));
      }
    }
  } finally {
    for (const side of sides) stores[side].store.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const side = (s: (typeof sides)[number]): WriteCostSide => ({
    receiptsPerSec: Math.round(percentile(rates[s].receipts, 50)),
    statusWritesPerSec: Math.round(percentile(rates[s].status, 50)),
    verdictWritesPerSec: Math.round(percentile(rates[s].final, 50)),
  });
  const withTriggers = side("with");
  const withoutTriggers = side("without");
  const beforeRollups = side("before");
  const perRowTriggers = side("perRow");
  const upsertFold = side("upsertFold");
  const cost = (a: number, b: number) => round(((b - a) / b) * 100, 1);
  return {
    rounds,
    batchSize,
    withTriggers,
    withoutTriggers,
    beforeRollups,
    perRowTriggers,
    upsertFold,
    upsertFoldCostPercent: {
      receipts: cost(upsertFold.receiptsPerSec, withoutTriggers.receiptsPerSec),
      statusWrites: cost(upsertFold.statusWritesPerSec, withoutTriggers.statusWritesPerSec),
      verdictWrites: cost(upsertFold.verdictWritesPerSec, withoutTriggers.verdictWritesPerSec),
    },
    perRowCostPercent: {
      receipts: cost(perRowTriggers.receiptsPerSec, withoutTriggers.receiptsPerSec),
      statusWrites: cost(perRowTriggers.statusWritesPerSec, withoutTriggers.statusWritesPerSec),
      verdictWrites: cost(perRowTriggers.verdictWritesPerSec, withoutTriggers.verdictWritesPerSec),
    },
    perRowCostVsBeforePercent: {
      receipts: cost(perRowTriggers.receiptsPerSec, beforeRollups.receiptsPerSec),
      statusWrites: cost(perRowTriggers.statusWritesPerSec, beforeRollups.statusWritesPerSec),
      verdictWrites: cost(perRowTriggers.verdictWritesPerSec, beforeRollups.verdictWritesPerSec),
    },
    costVsBeforePercent: {
      receipts: cost(withTriggers.receiptsPerSec, beforeRollups.receiptsPerSec),
      statusWrites: cost(withTriggers.statusWritesPerSec, beforeRollups.statusWritesPerSec),
      verdictWrites: cost(withTriggers.verdictWritesPerSec, beforeRollups.verdictWritesPerSec),
    },
    costPercent: {
      receipts: cost(withTriggers.receiptsPerSec, withoutTriggers.receiptsPerSec),
      statusWrites: cost(withTriggers.statusWritesPerSec, withoutTriggers.statusWritesPerSec),
      verdictWrites: cost(withTriggers.verdictWritesPerSec, withoutTriggers.verdictWritesPerSec),
    },
  };
}

export interface IngestCostResult {
  rounds: number;
  /** Receipts each side took per round (POST /jobs, batches of 1,000, one request in flight). */
  receiptsPerRound: number;
  /** Median receipts per second of each side's rounds. */
  receiptsPerSec: { with: number; without: number; before: number };
  /** This process's CPU (client and service) per 1,000 receipts, median of the rounds. */
  cpuMsPer1000: { with: number; without: number; before: number };
  /** (other - with) / other, percent, by receipts/s and by CPU. */
  costPercent: { vsWithout: number; vsBefore: number; cpuVsWithout: number; cpuVsBefore: number };
}

/**
 * The rollups' cost to ingest end to end: `POST /jobs` over HTTP into the app with its receipt
 * writer (group commit), as `serve` answers it, on three stores side by side: the schema as
 * migrated, without the rollup triggers, and before the rollups. The same receipts go to each,
 * round by round in rotating order. The client runs in this process too (the same work for
 * every side); no verifier runs.
 */
export async function measureIngestRollupCost(
  options: { rounds?: number; receiptsPerRound?: number; prefill?: number } = {},
): Promise<IngestCostResult> {
  const rounds = options.rounds ?? 8;
  const perRound = options.receiptsPerRound ?? 5000;
  const dir = mkdtempSync(join(tmpdir(), "rollup-ingest-"));
  const sides = ["with", "without", "before"] as const;
  const log = createLogger({ level: "silent" });
  const services = await Promise.all(
    sides.map(async (side) => {
      const store = openSide(dir, side);
      const receiptWriter = createReceiptWriter(store, { log });
      const app = createApp({ store, log, receiptWriter });
      const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }) as Server;
      if (!server.listening) await once(server, "listening");
      const { token } = await createToken(store, { role: "ingest", name: "bench" });
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      return { side, store, receiptWriter, server, token, url };
    }),
  );
  const rates = { with: [] as number[], without: [] as number[], before: [] as number[] };
  const cpu = { with: [] as number[], without: [] as number[], before: [] as number[] };
  const cpuNow = () => {
    const used = process.cpuUsage();
    return (used.user + used.system) / 1000;
  };
  try {
    const prefill = options.prefill ?? 20_000;
    const history = benchReceipts(prefill, "h");
    for (const s of services) await measurePostJobs(s.url, s.token, history, 1000, 1);
    for (let round = 0; round < rounds; round++) {
      const receipts = benchReceipts(perRound, `r${round.toString(36)}x`);
      const order = services.map((_, i) => services[(i + round) % services.length]!);
      for (const s of order) {
        const before = cpuNow();
        const figures = await measurePostJobs(s.url, s.token, receipts, 1000, 1);
        cpu[s.side].push(((cpuNow() - before) / perRound) * 1000);
        if (figures.notCreated > 0) throw new Error(`${s.side}: ${figures.notCreated} not created`);
        rates[s.side].push(figures.receiptsPerSec);
      }
    }
  } finally {
    for (const s of services) {
      s.server.closeAllConnections();
      await new Promise((resolve) => s.server.close(resolve));
      await s.receiptWriter.close();
      s.store.close();
    }
    rmSync(dir, { recursive: true, force: true });
  }
  const median = (xs: number[]) => percentile(xs, 50);
  const receiptsPerSec = {
    with: Math.round(median(rates.with)),
    without: Math.round(median(rates.without)),
    before: Math.round(median(rates.before)),
  };
  const cpuMsPer1000 = {
    with: round(median(cpu.with), 1),
    without: round(median(cpu.without), 1),
    before: round(median(cpu.before), 1),
  };
  const cost = (a: number, b: number) => round(((b - a) / b) * 100, 1);
  return {
    rounds,
    receiptsPerRound: perRound,
    receiptsPerSec,
    cpuMsPer1000,
    costPercent: {
      vsWithout: cost(receiptsPerSec.with, receiptsPerSec.without),
      vsBefore: cost(receiptsPerSec.with, receiptsPerSec.before),
      // More CPU per receipt is a cost: (with - other) / with, as a share of the time taken.
      cpuVsWithout: cost(cpuMsPer1000.without, cpuMsPer1000.with),
      cpuVsBefore: cost(cpuMsPer1000.before, cpuMsPer1000.with),
    },
  };
}
