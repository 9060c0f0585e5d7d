import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore, migrationsFolder } from "../src/db/migrate.js";
import { foldRollupDeltas } from "../src/db/rollups.js";
import { parseReceiptInput } from "../src/recorder/receipt-input.js";
import type { Receipt } from "../src/recorder/receipts.js";
import { recordReceipts } from "../src/recorder/receipts.js";
import { benchReceipts } from "./ingest-bench.js";
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

/** The per-row triggers of migration 0008 (before the rollup deltas), as it created them. */
function perRowTriggersSql(): string[] {
  const text = readFileSync(`${migrationsFolder}/0008_rollup_hours.sql`, "utf8");
  return text
    .split("--> statement-breakpoint")
    .map((s) => s.trim())
    .filter((s) => s.startsWith("CREATE TRIGGER"));
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
  const sides = ["with", "without", "before", "perRow"] as const;
  const stores = Object.fromEntries(
    sides.map((side) => {
      const store = openSqliteStore(join(dir, `${side}.db`));
      migrateStore(store);
      if (side !== "with") {
        for (const name of store.sqlite
          .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'jobs_rollup_%'",
          )
          .pluck()
          .all() as string[]) {
          store.sqlite.exec(`DROP TRIGGER ${name}`);
        }
      }
      if (side === "before") for (const sql of preRollupIndexes) store.sqlite.exec(sql);
      if (side === "perRow") for (const sql of perRowTriggersSql()) store.sqlite.exec(sql);
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
  const cost = (a: number, b: number) => round(((b - a) / b) * 100, 1);
  return {
    rounds,
    batchSize,
    withTriggers,
    withoutTriggers,
    beforeRollups,
    perRowTriggers,
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
