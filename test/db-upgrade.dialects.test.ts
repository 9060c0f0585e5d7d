import { readFileSync } from "node:fs";
import type Database from "better-sqlite3";
import { getTableColumns, getTableName } from "drizzle-orm";
import { readMigrationFiles } from "drizzle-orm/migrator";
import { describe, expect, it } from "vitest";
import type { SqliteStore, Store } from "../src/db/client.js";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore, migrationsFolder } from "../src/db/migrate.js";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { migratePostgres, pgMigrationsFolder } from "../src/db/pg/migrate.js";
import { jobs, ledgerLines } from "../src/db/schema.js";
import { buildStatement } from "../src/ledger/statement.js";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { recomputeRollups } from "../src/reports/rollup-recompute.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { reportsStore } from "../src/store/reports.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { jobRow, signatureOf } from "./support/seed-reports.js";

/** The migrations before the first whose SQL contains `marker`, and that one's index. */
function migrationsBefore(folder: string, marker: string) {
  const migrations = readMigrationFiles({ migrationsFolder: folder });
  const at = migrations.findIndex((m) => m.sql.some((s) => s.includes(marker)));
  if (at < 0) throw new Error(`no migration with ${marker}`);
  return migrations.slice(0, at);
}

/** A SQLite database in memory as a deployment left it, migrated up to `marker`'s migration. */
function sqliteBefore(marker: string) {
  const store = openSqliteStore(":memory:");
  // As migrateStore records what it applied.
  store.sqlite.exec(
    `CREATE TABLE "__drizzle_migrations" (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at numeric)`,
  );
  for (const m of migrationsBefore(migrationsFolder, marker)) {
    for (const statement of m.sql) if (statement.trim() !== "") store.sqlite.exec(statement);
    store.sqlite
      .prepare(`INSERT INTO "__drizzle_migrations" (hash, created_at) VALUES (?, ?)`)
      .run(m.hash, m.folderMillis);
  }
  return store;
}

/** A PostgreSQL database at `url` as a deployment left it, migrated up to `marker`'s. */
async function postgresBefore(url: string, marker: string) {
  const store = openPostgres(url, { poolSize: 2, statementTimeoutMs: 30_000 });
  await store.pool.query(`CREATE SCHEMA "drizzle"`);
  await store.pool.query(
    `CREATE TABLE "drizzle"."__drizzle_migrations" (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)`,
  );
  for (const m of migrationsBefore(pgMigrationsFolder, marker)) {
    for (const statement of m.sql) if (statement.trim() !== "") await store.pool.query(statement);
    await store.pool.query(
      `INSERT INTO "drizzle"."__drizzle_migrations" (hash, created_at) VALUES ($1, $2)`,
      [m.hash, m.folderMillis],
    );
  }
  return store;
}

/**
 * Rows of today's schema written into a database an older migration left, in the columns it
 * has: drizzle's insert names every column of today's table, those later migrations add too.
 * Each value is mapped as drizzle maps it; a column a row leaves out takes the table's default.
 */
function insertAsBefore(
  store: SqliteStore,
  table: typeof jobs | typeof ledgerLines,
  rows: Record<string, unknown>[],
) {
  const name = getTableName(table);
  const have = new Set(
    store.sqlite.prepare("SELECT name FROM pragma_table_info(?)").pluck().all(name),
  );
  const columns = Object.entries(getTableColumns(table)).filter(([, c]) => have.has(c.name));
  // One statement per set of columns given: preparing an INSERT compiles the table's triggers
  // (the rollups'), about 5 ms each, 15 s for the 3,073 rows of a test on a loaded runner.
  const inserts = new Map<string, Database.Statement>();
  store.sqlite
    .transaction(() => {
      for (const row of rows) {
        const given = columns.filter(([key]) => row[key] !== undefined);
        const text = `INSERT INTO "${name}" (${given.map(([, c]) => `"${c.name}"`).join(", ")})
             VALUES (${given.map(() => "?").join(", ")})`;
        let insert = inserts.get(text);
        if (insert === undefined) {
          insert = store.sqlite.prepare(text);
          inserts.set(text, insert);
        }
        insert.run(
          given.map(([key, c]) => (row[key] === null ? null : c.mapToDriverValue(row[key]))),
        );
      }
    })
    .immediate();
}

/** Each job's verdict by its id, as a SQLite store holds it. */
function sqliteVerdicts(store: SqliteStore): Record<string, string> {
  const rows = store.sqlite.prepare("SELECT job_id, verdict FROM jobs").all();
  return Object.fromEntries(
    (rows as { job_id: string; verdict: string }[]).map((r) => [r.job_id, r.verdict]),
  );
}

/** Each job's verdict by its id, as a PostgreSQL store holds it. */
async function postgresVerdicts(store: PgStore): Promise<Record<string, string>> {
  const { rows } = await store.pool.query("SELECT job_id, verdict FROM jobs");
  return Object.fromEntries(rows.map((r) => [r.job_id, r.verdict]));
}

/** Jobs as a deployment before `job_api_answers` stored them, the answer inside the row. */
const jobsBefore = [
  { jobId: "job_answered", response: '{"status":"settled","on_chain":{"settlement_tx":"s"}}' },
  { jobId: "job_no_body", response: null },
  // Stored by versions that wrote a JSON null as text.
  { jobId: "job_json_null", response: "null" },
];

const columns = `job_id, source, receipt_hash, created_at, recorded_at, updated_at, api_response`;

describe("upgrading a deployment whose jobs held the jobs API's answer", () => {
  it("moves each answer body to job_api_answers on SQLite, and the audit record still shows it", async () => {
    const store = sqliteBefore("job_api_answers");
    try {
      const insert = store.sqlite.prepare(
        `INSERT INTO jobs (${columns}) VALUES (@jobId, 'proxy', 'h', 1, 1, 1, @response)`,
      );
      for (const job of jobsBefore) insert.run(job);

      migrateStore(store);

      expect(store.sqlite.prepare("SELECT job_id, response FROM job_api_answers").all()).toEqual([
        { job_id: "job_answered", response: jobsBefore[0]!.response },
      ]);
      const jobColumns = store.sqlite.prepare("SELECT name FROM pragma_table_info('jobs')").pluck();
      expect(jobColumns.all()).not.toContain("api_response");
      expect(store.sqlite.prepare("SELECT count(*) FROM jobs").pluck().get()).toBe(3);
      const reports = reportsStore(store);
      expect((await reports.auditRows("job_answered"))?.apiResponse).toEqual({
        status: "settled",
        on_chain: { settlement_tx: "s" },
      });
      expect((await reports.auditRows("job_json_null"))?.apiResponse).toBeNull();
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("moves each answer body to job_api_answers on PostgreSQL, and the audit record still shows it", async () => {
    const store = await postgresBefore(await database.create(), "job_api_answers");
    try {
      for (const job of jobsBefore) {
        await store.pool.query(
          `INSERT INTO jobs (${columns}) VALUES ($1, 'proxy', 'h', 1, 1, 1, $2::json)`,
          [job.jobId, job.response],
        );
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      const moved = await store.pool.query(
        "SELECT job_id, response::text AS response FROM job_api_answers",
      );
      expect(moved.rows).toEqual([{ job_id: "job_answered", response: jobsBefore[0]!.response }]);
      const jobColumns = await store.pool.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'jobs'",
      );
      expect(jobColumns.rows.map((r) => r.column_name)).not.toContain("api_response");
      const reports = reportsStore(store);
      expect((await reports.auditRows("job_answered"))?.apiResponse).toEqual({
        status: "settled",
        on_chain: { settlement_tx: "s" },
      });
      expect((await reports.auditRows("job_no_body"))?.apiResponse).toBeNull();
    } finally {
      await store.close();
    }
  });
});

/** Jobs as a deployment stored them before escrow.single and refund.single were checked. */
const verdictsBefore = [
  { jobId: "job_conflict", verdict: "verified", escrow: "e1", api: null, conflicts: '["e9"]' },
  { jobId: "job_api_lock", verdict: "verified", escrow: "e2", api: "e8", conflicts: null },
  { jobId: "job_partial", verdict: "partially_verified", escrow: null, api: "e7", conflicts: null },
  { jobId: "job_plain", verdict: "verified", escrow: "e3", api: "e3", conflicts: null },
  // Its conflicting receipt names another job's lock: a job a receipt names owns it, so no
  // later migration sends it back either (0071 does a judged job holding one nobody else names).
  { jobId: "job_bad", verdict: "discrepancy", escrow: "e4", api: null, conflicts: '["e3"]' },
];
/** Verdicts after the upgrade: only a verified job naming a second signature is looked at again. */
const verdictsAfter = {
  job_conflict: "pending",
  job_api_lock: "pending",
  job_partial: "pending",
  job_plain: "verified",
  job_bad: "discrepancy",
};
const verdictColumns = `job_id, source, receipt_hash, created_at, recorded_at, updated_at, verdict,
  next_verify_at, escrow_tx, api_escrow_tx, conflict_signatures`;

describe("upgrading a deployment with jobs verified before escrow.single", () => {
  it("reopens, on SQLite, the verified jobs whose receipts or answers name another lock", () => {
    const store = sqliteBefore("escrow.single");
    try {
      const insert = store.sqlite.prepare(
        `INSERT INTO jobs (${verdictColumns})
         VALUES (@jobId, 'proxy', 'h', 1, 1, 1, @verdict, 5000, @escrow, @api, @conflicts)`,
      );
      for (const job of verdictsBefore) insert.run(job);

      migrateStore(store);

      expect(sqliteVerdicts(store)).toEqual(verdictsAfter);
      const due = store.sqlite.prepare("SELECT next_verify_at FROM jobs WHERE job_id = ?").pluck();
      expect(due.get("job_conflict")).toBe(0);
      expect(due.get("job_plain")).toBe(5000);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("reopens, on PostgreSQL, the verified jobs whose receipts or answers name another lock", async () => {
    const store = await postgresBefore(await database.create(), "escrow.single");
    try {
      for (const job of verdictsBefore) {
        await store.pool.query(
          `INSERT INTO jobs (${verdictColumns})
           VALUES ($1, 'proxy', 'h', 1, 1, 1, $2, 5000, $3, $4, $5::json)`,
          [job.jobId, job.verdict, job.escrow, job.api, job.conflicts],
        );
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      expect(await postgresVerdicts(store)).toEqual(verdictsAfter);
    } finally {
      await store.close();
    }
  });
});

/**
 * Jobs as a deployment judged them before error answers, failed jobs, later namers and the
 * receipt's time were checked; and what the upgrade does to each.
 */
const judgedBefore = [
  // A settled 500 and a settled job the jobs API calls failed, verified then.
  { jobId: "job_error", verdict: "verified", status: 500, api: null, escrow: "e1", settle: "s1" },
  {
    jobId: "job_failed",
    verdict: "verified",
    status: 200,
    api: "failed",
    escrow: "e2",
    settle: "s2",
  },
  // A replay judged before the job it copies: both name e3 and s3.
  {
    jobId: "job_replay",
    verdict: "discrepancy",
    status: 200,
    api: null,
    escrow: "e3",
    settle: "s3",
  },
  { jobId: "job_real", verdict: "verified", status: 200, api: null, escrow: "e3", settle: "s3" },
  // Dated years before its lock's block time (see chain_transactions below).
  { jobId: "job_dated", verdict: "verified", status: 200, api: null, escrow: "e4", settle: "s4" },
  // Nothing new applies: left as they were.
  {
    jobId: "job_plain",
    verdict: "verified",
    status: 200,
    api: "settled",
    escrow: "e5",
    settle: "s5",
  },
  {
    jobId: "job_refunded",
    verdict: "verified",
    status: 504,
    api: null,
    escrow: "e6",
    settle: "s6",
  },
];
const judgedAfter = {
  job_error: "pending",
  job_failed: "pending",
  job_replay: "pending",
  job_real: "pending",
  job_dated: "pending",
  job_plain: "verified",
  job_refunded: "pending",
};
/** Receipt times (ms) and lock block times (s): job_dated's receipt is from 2021. */
const lockAt = 1_790_000_000;
const receiptAt = (jobId: string) => (jobId === "job_dated" ? 1_614_556_800_000 : lockAt * 1000);
const judgedColumns = `job_id, source, receipt_hash, created_at, recorded_at, updated_at, verdict,
  next_verify_at, http_status, api_status, escrow_tx, settlement_tx`;

describe("upgrading a deployment judged before error answers, later namers and receipt times", () => {
  it("reopens, on SQLite, every job a new rule can judge otherwise", () => {
    const store = sqliteBefore("receipt.time");
    try {
      const insert = store.sqlite.prepare(
        `INSERT INTO jobs (${judgedColumns})
         VALUES (@jobId, 'ingest', 'h', @at, 1, 1, @verdict, 5000, @status, @api, @escrow, @settle)`,
      );
      for (const job of judgedBefore) insert.run({ ...job, at: receiptAt(job.jobId) });
      const tx = store.sqlite.prepare(
        "INSERT OR IGNORE INTO chain_transactions (signature, state, block_time, first_seen_at) VALUES (?, 'finalized', ?, 1)",
      );
      for (const job of judgedBefore) tx.run(job.escrow, lockAt);

      const before = Date.now();
      migrateStore(store);

      expect(sqliteVerdicts(store)).toEqual(judgedAfter);
      // Reopened now, so readiness counts them as due from now, not from when they were judged.
      const oldest = store.sqlite
        .prepare("SELECT min(updated_at) FROM jobs WHERE verdict = 'pending'")
        .pluck()
        .get() as number;
      expect(oldest).toBeGreaterThanOrEqual(before - 1000);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("reopens, on PostgreSQL, every job a new rule can judge otherwise", async () => {
    const store = await postgresBefore(await database.create(), "receipt.time");
    try {
      for (const job of judgedBefore) {
        await store.pool.query(
          `INSERT INTO jobs (${judgedColumns})
           VALUES ($1, 'ingest', 'h', $2, 1, 1, $3, 5000, $4, $5, $6, $7)`,
          [
            job.jobId,
            receiptAt(job.jobId),
            job.verdict,
            job.status,
            job.api,
            job.escrow,
            job.settle,
          ],
        );
        await store.pool.query(
          `INSERT INTO chain_transactions (signature, state, block_time, first_seen_at)
           VALUES ($1, 'finalized', $2, 1)
           ON CONFLICT DO NOTHING`,
          [job.escrow, lockAt],
        );
      }

      const before = Date.now();
      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      expect(await postgresVerdicts(store)).toEqual(judgedAfter);
      const { rows: oldest } = await store.pool.query(
        "SELECT min(updated_at)::text AS at FROM jobs WHERE verdict = 'pending'",
      );
      expect(Number(oldest[0].at)).toBeGreaterThanOrEqual(before - 1000);
    } finally {
      await store.close();
    }
  });
});

/**
 * Jobs as a deployment judged them before a refund's time was checked: each refunded one was
 * verified whenever its refund landed, before its lock or hours after it.
 */
const refundsBefore = [
  { jobId: "job_timeout", verdict: "verified", status: 504, api: null, charged: 0, paid: 0 },
  // Charging a unit, so only the jobs API calling it refunded reopens it.
  {
    jobId: "job_api_refunded",
    verdict: "verified",
    status: null,
    api: "refunded",
    charged: 1,
    paid: 1,
  },
  {
    jobId: "job_quiet_refund",
    verdict: "partially_verified",
    status: 200,
    api: null,
    charged: 0,
    paid: 0,
  },
  // Settled, so already judged by settlement.after_escrow and settlement.within_window; its
  // charge is what the worker got of what the lock left in escrow, so the later upgrade that
  // judges again charges gone beyond escrow leaves it too.
  {
    jobId: "job_settled",
    verdict: "verified",
    status: 200,
    api: "settled",
    charged: 120000,
    paid: 120000,
  },
  { jobId: "job_bad_refund", verdict: "discrepancy", status: 504, api: null, charged: 0, paid: 0 },
];
const refundsAfter = {
  job_timeout: "pending",
  job_api_refunded: "pending",
  job_quiet_refund: "pending",
  job_settled: "verified",
  // Not a clean verdict, written before escrow_paid_units: a later upgrade judges it again.
  job_bad_refund: "pending",
};
const refundColumns = `job_id, source, receipt_hash, created_at, recorded_at, updated_at, verdict,
  next_verify_at, http_status, api_status, charged_units, escrowed_units, worker_paid_units`;

describe("upgrading a deployment that verified refunds whenever they landed", () => {
  it("reopens, on SQLite, every job verified as refunded, and leaves settled ones", () => {
    const store = sqliteBefore("refund.within_window");
    try {
      const insert = store.sqlite.prepare(
        `INSERT INTO jobs (${refundColumns})
         VALUES (@jobId, 'proxy', 'h', 1, 1, 1, @verdict, 5000, @status, @api, @charged, @paid, @paid)`,
      );
      for (const job of refundsBefore) insert.run(job);

      migrateStore(store);

      expect(sqliteVerdicts(store)).toEqual(refundsAfter);
      const due = store.sqlite.prepare("SELECT next_verify_at FROM jobs WHERE job_id = ?").pluck();
      expect(due.get("job_timeout")).toBe(0);
      expect(due.get("job_settled")).toBe(5000);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("reopens, on PostgreSQL, every job verified as refunded, and leaves settled ones", async () => {
    const store = await postgresBefore(await database.create(), "refund.within_window");
    try {
      for (const job of refundsBefore) {
        await store.pool.query(
          `INSERT INTO jobs (${refundColumns})
           VALUES ($1, 'proxy', 'h', 1, 1, 1, $2, 5000, $3, $4, $5, $6, $6)`,
          [job.jobId, job.verdict, job.status, job.api, job.charged, job.paid],
        );
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      expect(await postgresVerdicts(store)).toEqual(refundsAfter);
    } finally {
      await store.close();
    }
  });
});

/**
 * Jobs as a deployment judged them before usage.consistent: a settlement priced at usage that
 * contradicts itself was verified.
 */
const usageBefore = [
  { jobId: "job_over_total", verdict: "verified", prompt: 5, completion: 640, total: 3 },
  { jobId: "job_bad_sum", verdict: "partially_verified", prompt: 12, completion: 640, total: 645 },
  // A total above its parts (thinking counted in the total alone) is honest.
  { jobId: "job_thought", verdict: "verified", prompt: 12, completion: 640, total: 999 },
  { jobId: "job_honest", verdict: "verified", prompt: 12, completion: 640, total: 652 },
  { jobId: "job_no_total", verdict: "verified", prompt: null, completion: 640, total: null },
  { jobId: "job_found", verdict: "discrepancy", prompt: 5, completion: 640, total: 3 },
];
const usageAfter = {
  job_over_total: "pending",
  job_bad_sum: "pending",
  job_thought: "verified",
  job_honest: "verified",
  job_no_total: "verified",
  job_found: "discrepancy",
};
const usageColumns = `job_id, source, receipt_hash, created_at, recorded_at, updated_at, verdict,
  next_verify_at, prompt_tokens, completion_tokens, total_tokens`;

describe("upgrading a deployment that verified usage contradicting itself", () => {
  it("reopens, on SQLite, the jobs verified on such usage", () => {
    const store = sqliteBefore("usage.consistent");
    try {
      const insert = store.sqlite.prepare(
        `INSERT INTO jobs (${usageColumns})
         VALUES (@jobId, 'ingest', 'h', 1, 1, 1, @verdict, 5000, @prompt, @completion, @total)`,
      );
      for (const job of usageBefore) insert.run(job);

      migrateStore(store);

      expect(sqliteVerdicts(store)).toEqual(usageAfter);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("reopens, on PostgreSQL, the jobs verified on such usage", async () => {
    const store = await postgresBefore(await database.create(), "usage.consistent");
    try {
      for (const job of usageBefore) {
        await store.pool.query(
          `INSERT INTO jobs (${usageColumns})
           VALUES ($1, 'ingest', 'h', 1, 1, 1, $2, 5000, $3, $4, $5)`,
          [job.jobId, job.verdict, job.prompt, job.completion, job.total],
        );
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      expect(await postgresVerdicts(store)).toEqual(usageAfter);
    } finally {
      await store.close();
    }
  });
});

/**
 * Jobs judged while the treasury was learned: a discrepancy and one dropped whose settlement's
 * one payee besides the worker and the vault counted as the treasury's pay (never decided again
 * once it was learned), a discrepancy whose settlement paid the treasury pinned, and a partially
 * verified job waiting for it (decided again at the pin, as before).
 */
const treasuryBefore = [
  {
    jobId: "job_candidate_bad",
    verdict: "discrepancy",
    reason:
      "the treasury is not known yet; x took the rest of the charge and counts towards learning it",
  },
  {
    jobId: "job_candidate_dropped",
    verdict: "dropped",
    reason: "the treasury is not known yet; x took the rest",
  },
  { jobId: "job_pinned_bad", verdict: "discrepancy", reason: null },
  {
    jobId: "job_waiting",
    verdict: "partially_verified",
    reason: "the treasury is not known yet; x took the rest",
  },
];
const treasuryAfter = {
  job_candidate_bad: "pending",
  job_candidate_dropped: "pending",
  job_pinned_bad: "discrepancy",
  job_waiting: "partially_verified",
};
const treasuryMarker = "the treasury is not known yet%";
const treasuryColumns = `job_id, source, receipt_hash, created_at, recorded_at, updated_at, verdict,
  next_verify_at`;

describe("upgrading a deployment that judged discrepancies while the treasury was learned", () => {
  it("reopens, on SQLite, the failing verdicts that counted a treasury candidate's pay", () => {
    const store = sqliteBefore(treasuryMarker);
    try {
      for (const job of treasuryBefore) {
        store.sqlite
          .prepare(
            `INSERT INTO jobs (${treasuryColumns}) VALUES (?, 'ingest', 'h', 1, 1, 1, ?, 5000)`,
          )
          .run(job.jobId, job.verdict);
        store.sqlite
          .prepare(
            `INSERT INTO check_results (job_id, name, outcome, reason, checked_at)
             VALUES (?, 'settlement.recipients', ?, ?, 1)`,
          )
          .run(job.jobId, job.reason === null ? "pass" : "skip", job.reason);
      }

      migrateStore(store);

      expect(sqliteVerdicts(store)).toEqual(treasuryAfter);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("reopens, on PostgreSQL, the failing verdicts that counted a treasury candidate's pay", async () => {
    const store = await postgresBefore(await database.create(), treasuryMarker);
    try {
      for (const job of treasuryBefore) {
        await store.pool.query(
          `INSERT INTO jobs (${treasuryColumns}) VALUES ($1, 'ingest', 'h', 1, 1, 1, $2, 5000)`,
          [job.jobId, job.verdict],
        );
        await store.pool.query(
          `INSERT INTO check_results (job_id, name, outcome, reason, checked_at)
           VALUES ($1, 'settlement.recipients', $2, $3, 1)`,
          [job.jobId, job.reason === null ? "pass" : "skip", job.reason],
        );
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      expect(await postgresVerdicts(store)).toEqual(treasuryAfter);
    } finally {
      await store.close();
    }
  });
});

/**
 * Streams judged with no usage recorded, partially verified, and the jobs API answers kept for
 * them: one naming its usage (judged again, to be priced by it), one naming none, one naming
 * it as no whole number, and a verified job whose answer names usage (left as it is).
 */
const apiUsageBefore = [
  {
    jobId: "job_named",
    verdict: "partially_verified",
    answer: { usage: { completion_tokens: 396 } },
  },
  { jobId: "job_silent", verdict: "partially_verified", answer: { status: "settled" } },
  {
    jobId: "job_text",
    verdict: "partially_verified",
    answer: { usage: { completion_tokens: "396" } },
  },
  { jobId: "job_verified", verdict: "verified", answer: { usage: { completion_tokens: 12 } } },
  // Not judged yet: its column is filled (a settled answer is final, none comes again).
  { jobId: "job_open", verdict: "pending", answer: { usage: { completion_tokens: 5 } } },
  // A NUL in a string, which PostgreSQL's jsonb refuses: read as naming none there.
  {
    jobId: "job_nul",
    verdict: "partially_verified",
    answer: { error: { message: "bad\u0000byte" }, usage: { completion_tokens: 7 } },
  },
];
const apiUsageAfter = {
  job_named: "pending",
  job_silent: "partially_verified",
  job_text: "partially_verified",
  job_verified: "verified",
  job_open: "pending",
};

describe("upgrading a deployment that priced streams without usage by nothing", () => {
  it("reopens, on SQLite, the jobs whose kept jobs API answer names their usage", () => {
    const store = sqliteBefore("$.usage.completion_tokens");
    try {
      for (const job of apiUsageBefore) {
        store.sqlite
          .prepare(
            `INSERT INTO jobs (${treasuryColumns}) VALUES (?, 'ingest', 'h', 1, 1, 1, ?, 5000)`,
          )
          .run(job.jobId, job.verdict);
        store.sqlite
          .prepare("INSERT INTO job_api_answers (job_id, response) VALUES (?, ?)")
          .run(job.jobId, JSON.stringify(job.answer));
      }

      migrateStore(store);

      expect(sqliteVerdicts(store)).toEqual({ ...apiUsageAfter, job_nul: "pending" });
      const tokens = store.sqlite
        .prepare("SELECT api_completion_tokens FROM jobs WHERE job_id = ?")
        .pluck();
      expect(["job_named", "job_open", "job_nul"].map((id) => tokens.get(id))).toEqual([396, 5, 7]);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("reopens, on PostgreSQL, the jobs whose kept jobs API answer names their usage", async () => {
    const store = await postgresBefore(await database.create(), "{usage,completion_tokens}");
    try {
      for (const job of apiUsageBefore) {
        await store.pool.query(
          `INSERT INTO jobs (${treasuryColumns}) VALUES ($1, 'ingest', 'h', 1, 1, 1, $2, 5000)`,
          [job.jobId, job.verdict],
        );
        await store.pool.query("INSERT INTO job_api_answers (job_id, response) VALUES ($1, $2)", [
          job.jobId,
          JSON.stringify(job.answer),
        ]);
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      expect(await postgresVerdicts(store)).toEqual({
        ...apiUsageAfter,
        job_nul: "partially_verified",
      });
      const { rows } = await store.pool.query(
        "SELECT job_id, api_completion_tokens::int AS n FROM jobs WHERE job_id IN ('job_named', 'job_open', 'job_nul') ORDER BY job_id",
      );
      expect(rows).toEqual([
        { job_id: "job_named", n: 396 },
        { job_id: "job_nul", n: null },
        { job_id: "job_open", n: 5 },
      ]);
    } finally {
      await store.close();
    }
  });
});

/**
 * Block times as versions before the range check stored them: a read-through time and a line's
 * time no date holds (every statement threw), a future one, and a transaction dated so.
 */
const NO_DATE = 99_999_999_999_999;
const goodTime = Math.floor(Date.now() / 1000) - 3_600;
const timesBefore = {
  cursors: [
    { vault: "vault_no_date", final: NO_DATE * 1000 },
    { vault: "vault_2100", final: 4_102_444_800_000 },
    { vault: "vault_good", final: goodTime * 1000 },
  ],
  lines: [
    { signature: "line_no_date", time: NO_DATE },
    { signature: "line_good", time: goodTime },
  ],
  transactions: [
    { signature: "tx_no_date", time: NO_DATE },
    { signature: "tx_good", time: goodTime },
  ],
};
const timesAfter = {
  cursors: { vault_no_date: null, vault_2100: null, vault_good: goodTime * 1000 },
  lines: { line_no_date: null, line_good: goodTime },
  facts: { tx_no_date: null, tx_good: "kept" },
};
const statementOptions = { profile: localnetProfile };
const day = { from: Date.now() - 86_400_000, to: Date.now() };

describe("upgrading a deployment that stored block times the chain cannot have", () => {
  it("reads them as unknown on SQLite: the statement reads, and the transaction is fetched again", async () => {
    const store = sqliteBefore("the chain cannot have");
    try {
      const cursor = store.sqlite.prepare(
        `INSERT INTO ledger_cursors (vault, updated_at, final_through, sync_final_through)
         VALUES (?, 1, ?, ?)`,
      );
      for (const c of timesBefore.cursors) cursor.run(c.vault, c.final, c.final);
      const line = store.sqlite.prepare(
        `INSERT INTO ledger_lines (vault, signature, ord, slot, block_time, listed_at)
         VALUES ('vault_no_date', ?, ?, 1, ?, 1)`,
      );
      for (const [i, l] of timesBefore.lines.entries()) line.run(l.signature, i, l.time);
      const tx = store.sqlite.prepare(
        `INSERT INTO chain_transactions (signature, state, block_time, facts, raw, first_seen_at)
         VALUES (?, 'finalized', ?, 'kept', 'kept', 1)`,
      );
      for (const t of timesBefore.transactions) tx.run(t.signature, t.time);

      migrateStore(store);

      const pairs = (sql: string) =>
        Object.fromEntries(store.sqlite.prepare(sql).raw().all() as [string, unknown][]);
      expect(pairs("SELECT vault, final_through FROM ledger_cursors")).toEqual(timesAfter.cursors);
      expect(pairs("SELECT vault, sync_final_through FROM ledger_cursors")).toEqual(
        timesAfter.cursors,
      );
      expect(pairs("SELECT signature, block_time FROM ledger_lines")).toEqual(timesAfter.lines);
      expect(pairs("SELECT signature, facts FROM chain_transactions")).toEqual(timesAfter.facts);
      const statement = await buildStatement(
        store,
        { ...day, vault: "vault_no_date" },
        statementOptions,
      );
      expect(statement.vaults[0]).toMatchObject({ readThrough: null, complete: false });
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("reads them as unknown on PostgreSQL: the statement reads, and the transaction is fetched again", async () => {
    const store = await postgresBefore(await database.create(), "the chain cannot have");
    try {
      for (const c of timesBefore.cursors) {
        await store.pool.query(
          `INSERT INTO ledger_cursors (vault, updated_at, final_through, sync_final_through)
           VALUES ($1, 1, $2, $2)`,
          [c.vault, c.final],
        );
      }
      for (const [i, l] of timesBefore.lines.entries()) {
        await store.pool.query(
          `INSERT INTO ledger_lines (vault, signature, ord, slot, block_time, listed_at)
           VALUES ('vault_no_date', $1, $2, 1, $3, 1)`,
          [l.signature, i, l.time],
        );
      }
      for (const t of timesBefore.transactions) {
        await store.pool.query(
          `INSERT INTO chain_transactions (signature, state, block_time, facts, raw, first_seen_at)
           VALUES ($1, 'finalized', $2, '"kept"'::json, 'kept', 1)`,
          [t.signature, t.time],
        );
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      const pairs = async (sql: string) =>
        Object.fromEntries(
          (await store.pool.query({ text: sql, rowMode: "array" })).rows.map(([k, v]) => [
            k,
            v === null ? null : Number.isNaN(Number(v)) ? v : Number(v),
          ]),
        );
      expect(await pairs("SELECT vault, final_through FROM ledger_cursors")).toEqual(
        timesAfter.cursors,
      );
      expect(await pairs("SELECT vault, sync_final_through FROM ledger_cursors")).toEqual(
        timesAfter.cursors,
      );
      expect(await pairs("SELECT signature, block_time FROM ledger_lines")).toEqual(
        timesAfter.lines,
      );
      expect(await pairs("SELECT signature, facts #>> '{}' FROM chain_transactions")).toEqual(
        timesAfter.facts,
      );
      const statement = await buildStatement(
        store,
        { ...day, vault: "vault_no_date" },
        statementOptions,
      );
      expect(statement.vaults[0]).toMatchObject({ readThrough: null, complete: false });
    } finally {
      await store.close();
    }
  });
});

describe("a database of another application", () => {
  const database = usePostgresDatabase();
  it("is refused on PostgreSQL with nothing created in it, while an empty one is migrated", async () => {
    const store = openPostgres(await database.create(), {
      poolSize: 2,
      statementTimeoutMs: 30_000,
    });
    try {
      await store.pool.query("CREATE TABLE invoices (id int)");
      await expect(migratePostgres(store.pool)).rejects.toThrow(
        /is not a decentral-audit store: it holds 1 table of another application \(invoices\)/,
      );
      const tables = await store.pool.query(
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
      );
      expect(tables.rows).toEqual([{ schemaname: "public", tablename: "invoices" }]);
      const schemas = await store.pool.query(
        "SELECT 1 FROM pg_namespace WHERE nspname = 'drizzle'",
      );
      expect(schemas.rows).toEqual([]);
    } finally {
      await store.close();
    }
    const fresh = openPostgres(await database.create(), {
      poolSize: 2,
      statementTimeoutMs: 30_000,
    });
    try {
      // An extension's own table in the default schema (PostGIS's spatial_ref_sys, say) is no
      // other application's: the database is still a new one.
      await fresh.pool.query("CREATE TABLE spatial_ref_sys (srid int)");
      await fresh.pool.query("ALTER EXTENSION plpgsql ADD TABLE spatial_ref_sys");
      expect((await migratePostgres(fresh.pool)).applied).toBeGreaterThan(0);
      // Migrated, it is this program's store: opened again, nothing is refused or applied.
      expect((await migratePostgres(fresh.pool)).applied).toBe(0);
    } finally {
      await fresh.close();
    }
  }, 60_000);
});

/**
 * A deployment upgraded while this machine's clock was 10 minutes slow: a debit the chain dated
 * 2 minutes ago is "8 minutes in the future" by this clock. It is a good time and must stay; a
 * line dated 2100 is not, and goes back to be read and dated again.
 */
const hostNow = Math.floor(Date.now() / 1000);
const chainNow = hostNow + 600;
const theftTime = chainNow - 120;
const YEAR_2100 = 4_102_444_800;
/** Rows as the deployment left them, in PostgreSQL's placeholders ($n, each used once). */
const slowClockRows: [string, unknown[]][] = [
  [
    `INSERT INTO ledger_cursors (vault, updated_at, final_through, sync_final_through, judged_through)
     VALUES ('V', 1, $1, $2, $3)`,
    [(chainNow - 20) * 1000, (chainNow - 20) * 1000, (theftTime + 30) * 1000],
  ],
  ...[
    ["theft", 0, 5, theftTime, 1_000_000, 500_000, -500_000],
    ["bogus", 1, 6, YEAR_2100, 500_000, 499_000, -1_000],
  ].map((values): [string, unknown[]] => [
    `INSERT INTO ledger_lines (vault, signature, ord, slot, block_time, listed_at, state, succeeded,
         pre_units, post_units, delta_units, kind)
       VALUES ('V', $1, $2, $3, $4, 1, 'read', $5, $6, $7, $8, 'unexplained')`,
    [values[0], values[1], values[2], values[3], 1, values[4], values[5], values[6]],
  ]),
];

/** What the upgrade must leave, then what the next sync's read makes of the line sent back. */
async function expectGoodTimesKept(
  store: Store,
  rows: (sql: string) => Promise<Record<string, unknown>[]>,
) {
  expect(
    await rows("SELECT signature, state, block_time, kind FROM ledger_lines ORDER BY ord"),
  ).toEqual([
    // Listed again by migration 0033 (every line read before `hidden_debit_units` is read
    // again), its good block time and kind kept until then.
    { signature: "theft", state: "listed", block_time: theftTime, kind: "unexplained" },
    { signature: "bogus", state: "listed", block_time: null, kind: null },
  ]);
  const [cursor] = await rows("SELECT final_through, judged_through FROM ledger_cursors");
  // The read-through time stands; the judged mark is lowered to the good time below the line
  // sent back, so the next nightly run judges it wherever it is dated.
  expect(cursor).toEqual({
    final_through: (chainNow - 20) * 1000,
    judged_through: theftTime * 1000,
  });
  const period = { from: (theftTime - 3600) * 1000, to: (theftTime + 60) * 1000, vault: "V" };
  const before = await buildStatement(store, period, statementOptions);
  expect(before.vaults[0]?.unexplained.map((l) => [l.signature, l.amountUnits])).toEqual([
    ["theft", -500_000n],
  ]);

  const ledger = createLedgerStore(store);
  expect(await ledger.listedSignatures("V")).toEqual(["theft", "bogus"]);
  await ledger.recordReads(
    "V",
    [
      {
        signature: "theft",
        blockTime: theftTime,
        succeeded: true,
        pre: 1_000_000n,
        post: 500_000n,
        delta: -500_000n,
        memo: null,
        memoKind: null,
        memoJobId: null,
      },
      {
        signature: "bogus",
        blockTime: theftTime + 10,
        succeeded: true,
        pre: 500_000n,
        post: 499_000n,
        delta: -1_000n,
        memo: null,
        memoKind: null,
        memoJobId: null,
      },
    ],
    [],
    Date.now(),
  );
  const after = await buildStatement(store, period, statementOptions);
  expect(after.vaults[0]?.unexplained.map((l) => [l.signature, l.blockTime])).toEqual([
    ["theft", theftTime],
    ["bogus", theftTime + 10],
  ]);
}

describe("upgrading with this machine's clock 10 minutes slow", () => {
  it("keeps on SQLite every good block time, and sends a line dated 2100 back to be dated again", async () => {
    const store = sqliteBefore("the chain cannot have");
    try {
      for (const [sql, params] of slowClockRows) {
        store.sqlite.prepare(sql.replace(/\$\d+/g, "?")).run(...params);
      }
      migrateStore(store);
      const rows = async (sql: string) =>
        (store.sqlite.prepare(sql).all() as Record<string, unknown>[]).map((r) =>
          Object.fromEntries(
            Object.entries(r).map(([k, v]) => [k, typeof v === "bigint" ? Number(v) : v]),
          ),
        );
      await expectGoodTimesKept(store, rows);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("keeps on PostgreSQL every good block time, and sends a line dated 2100 back to be dated again", async () => {
    const store = await postgresBefore(await database.create(), "the chain cannot have");
    try {
      for (const [sql, params] of slowClockRows) await store.pool.query(sql, params);
      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);
      const rows = async (sql: string) =>
        (await store.pool.query(sql)).rows.map((r: Record<string, unknown>) =>
          Object.fromEntries(
            Object.entries(r).map(([k, v]) => [
              k,
              typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v,
            ]),
          ),
        );
      await expectGoodTimesKept(store, rows);
    } finally {
      await store.close();
    }
  });
});

/**
 * Jobs as a deployment summed them before reports put a receipt without a worker under the
 * worker the jobs API named: its payout was under no worker.
 */
const unnamedDay = Date.UTC(2026, 10, 2);
const unnamedRows: [string, string | null, string | null][] = [
  ["job_unnamed", null, "WorkerPaid"],
  ["job_named", "WorkerNamed", "WorkerPaid"],
  ["job_nobody", null, null],
];
const unnamedColumns = `job_id, source, receipt_hash, created_at, recorded_at, updated_at, verdict,
  worker, api_worker, charged_units, worker_paid_units`;

async function expectPaidWorkerGroups(store: Store) {
  const report = await reconciliationReport(store, {
    from: unnamedDay,
    to: unnamedDay + 86_400_000,
    groupBy: "worker",
  });
  expect(report.groups.map((g) => [g.group, g.jobs, g.workerPaidUnits])).toEqual([
    [null, 1, 75n],
    ["WorkerNamed", 1, 75n],
    ["WorkerPaid", 1, 75n],
  ]);
  expect(report.totals.workerPaidUnits).toBe(225n);
  const statement = await reconciliationReport(store, {
    from: unnamedDay,
    to: unnamedDay + 86_400_000,
    groupBy: "day",
    worker: "WorkerPaid",
  });
  expect(statement.totals.workerPaidUnits).toBe(75n);
  expect((await recomputeRollups(store)).differenceCount).toBe(0);
}

describe("upgrading a deployment that reported a receipt without a worker under none", () => {
  const marker = "coalesce(worker, api_worker)";
  it("sums it again on SQLite under the worker the jobs API named", async () => {
    const store = sqliteBefore(marker);
    try {
      const insert = store.sqlite.prepare(
        `INSERT INTO jobs (${unnamedColumns})
         VALUES (?, 'ingest', ?, ${unnamedDay + 3_600_000}, 1, 1, 'verified', ?, ?, 100, 75)`,
      );
      for (const [id, worker, api] of unnamedRows) insert.run(id, id, worker, api);

      migrateStore(store);

      expect(await reportsStore(store).rollupsComplete()).toBe(true);
      await expectPaidWorkerGroups(store);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("sums it again on PostgreSQL under the worker the jobs API named", async () => {
    const store = await postgresBefore(await database.create(), marker);
    try {
      for (const [id, worker, api] of unnamedRows) {
        await store.pool.query(
          `INSERT INTO jobs (${unnamedColumns})
           VALUES ($1, 'ingest', $1, ${unnamedDay + 3_600_000}, 1, 1, 'verified', $2, $3, 100, 75)`,
          [id, worker, api],
        );
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      await expectPaidWorkerGroups(store);
    } finally {
      await store.close();
    }
  });
});

/** Lines read before 0034: one whose transaction moved the vault in another mint, one not. */
const relistLines = [
  ["with_foreign", 0, '[{"mint":"F","programId":null,"deltaUnits":"5"}]'],
  ["credits_only", 1, null],
] as const;
const relistInsert = `INSERT INTO ledger_lines (vault, signature, ord, slot, block_time, listed_at,
    state, succeeded, delta_units, kind, foreign_changes)
  VALUES ('V', $1, $2, 5, 1700000000, 1, 'read', $3, 0, 'none', $4)`;
const relistMarker = "in another mint were read with no";

describe("upgrading a deployment that read a vault opened again in another mint", () => {
  it("lists again on SQLite the lines that moved another mint, to read their credits again", () => {
    const store = sqliteBefore(relistMarker);
    try {
      const insert = store.sqlite.prepare(relistInsert.replace(/\$\d/g, "?"));
      for (const [signature, ord, foreign] of relistLines) insert.run(signature, ord, 1, foreign);
      migrateStore(store);
      expect(
        store.sqlite.prepare("SELECT signature, state FROM ledger_lines ORDER BY ord").all(),
      ).toEqual([
        { signature: "with_foreign", state: "listed" },
        { signature: "credits_only", state: "read" },
      ]);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("lists again on PostgreSQL the lines that moved another mint, to read their credits again", async () => {
    const store = await postgresBefore(await database.create(), relistMarker);
    try {
      for (const [signature, ord, foreign] of relistLines) {
        await store.pool.query(relistInsert, [signature, ord, true, foreign]);
      }
      await migratePostgres(store.pool);
      const { rows } = await store.pool.query(
        "SELECT signature, state FROM ledger_lines ORDER BY ord",
      );
      expect(rows).toEqual([
        { signature: "with_foreign", state: "listed" },
        { signature: "credits_only", state: "read" },
      ]);
    } finally {
      await store.close();
    }
  });
});

const ownerRelistMarker = "naming the vault as a new account's owner";

describe("upgrading a deployment that took an account made the vault's for the vault reopened", () => {
  it("lists again on SQLite the lines that moved another mint, read since 0034", () => {
    const store = sqliteBefore(ownerRelistMarker);
    try {
      const insert = store.sqlite.prepare(relistInsert.replace(/\$\d/g, "?"));
      for (const [signature, ord, foreign] of relistLines) insert.run(signature, ord, 1, foreign);
      migrateStore(store);
      expect(
        store.sqlite.prepare("SELECT signature, state FROM ledger_lines ORDER BY ord").all(),
      ).toEqual([
        { signature: "with_foreign", state: "listed" },
        { signature: "credits_only", state: "read" },
      ]);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("lists again on PostgreSQL the lines that moved another mint, read since 0026", async () => {
    const store = await postgresBefore(await database.create(), ownerRelistMarker);
    try {
      for (const [signature, ord, foreign] of relistLines) {
        await store.pool.query(relistInsert, [signature, ord, true, foreign]);
      }
      await migratePostgres(store.pool);
      const { rows } = await store.pool.query(
        "SELECT signature, state FROM ledger_lines ORDER BY ord",
      );
      expect(rows).toEqual([
        { signature: "with_foreign", state: "listed" },
        { signature: "credits_only", state: "read" },
      ]);
    } finally {
      await store.close();
    }
  });
});

/** Lines read before 0036 from stored transactions: inner instructions left out, or shown. */
const innerLines = [
  ["inner_hidden", 0, '{"innerInstructionsKnown":false}'],
  ["inner_known", 1, '{"innerInstructionsKnown":true}'],
  ["inner_not_json", 2, "not json"],
] as const;
const innerTxInsert = `INSERT INTO chain_transactions (signature, first_seen_at, facts)
  VALUES ($1, 1, $2)`;
const innerMarker = "served without inner instructions";

describe("upgrading a deployment that read lines a node served without inner instructions", () => {
  it("lists again on SQLite the lines read from such a transaction", () => {
    const store = sqliteBefore(innerMarker);
    try {
      const line = store.sqlite.prepare(relistInsert.replace(/\$\d/g, "?"));
      const tx = store.sqlite.prepare(innerTxInsert.replace(/\$\d/g, "?"));
      for (const [signature, ord, facts] of innerLines) {
        line.run(signature, ord, 1, null);
        // SQLite stores the facts as text: one that is not JSON must not stop the migration.
        tx.run(signature, facts);
      }
      migrateStore(store);
      expect(
        store.sqlite.prepare("SELECT signature, state FROM ledger_lines ORDER BY ord").all(),
      ).toEqual([
        { signature: "inner_hidden", state: "listed" },
        { signature: "inner_known", state: "read" },
        { signature: "inner_not_json", state: "read" },
      ]);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("lists again on PostgreSQL the lines read from such a transaction", async () => {
    const store = await postgresBefore(await database.create(), innerMarker);
    try {
      for (const [signature, ord, facts] of innerLines.slice(0, 2)) {
        await store.pool.query(relistInsert, [signature, ord, true, null]);
        await store.pool.query(innerTxInsert, [signature, facts]);
      }
      await migratePostgres(store.pool);
      const { rows } = await store.pool.query(
        "SELECT signature, state FROM ledger_lines ORDER BY ord",
      );
      expect(rows).toEqual([
        { signature: "inner_hidden", state: "listed" },
        { signature: "inner_known", state: "read" },
      ]);
    } finally {
      await store.close();
    }
  });
});

/** Lines read before 0037 from stored transactions: money seen going into the vault, or not. */
const balanceLines = [
  [
    "bal_in",
    0,
    1,
    '{"tokenInstructions":[{"kind":"transferChecked","destination":"V","amount":"5"}]}',
  ],
  [
    "bal_out",
    1,
    1,
    '{"tokenInstructions":[{"kind":"transfer","source":"V","destination":"W","amount":"5"}]}',
  ],
  ["bal_old", 2, 1, '{"tokenInstructions":[{"kind":"transfer","accounts":["V","W"]}]}'],
  ["bal_failed", 3, 0, '{"tokenInstructions":[{"kind":"mintTo","destination":"V","amount":"5"}]}'],
  ["bal_none", 4, 1, '{"innerInstructionsKnown":true}'],
  ["bal_not_json", 5, 1, "not json"],
] as const;
const balanceMarker = "held against the instructions a node served";
const balanceExpected = [
  { signature: "bal_in", state: "listed" },
  { signature: "bal_out", state: "read" },
  { signature: "bal_old", state: "listed" },
  { signature: "bal_failed", state: "read" },
  { signature: "bal_none", state: "read" },
  { signature: "bal_not_json", state: "read" },
];

describe("upgrading a deployment that read lines before balances were held against movements", () => {
  it("lists again on SQLite the lines whose transaction shows money into the vault", () => {
    const store = sqliteBefore(balanceMarker);
    try {
      const line = store.sqlite.prepare(relistInsert.replace(/\$\d/g, "?"));
      const tx = store.sqlite.prepare(innerTxInsert.replace(/\$\d/g, "?"));
      for (const [signature, ord, succeeded, facts] of balanceLines) {
        line.run(signature, ord, succeeded, null);
        tx.run(signature, facts);
      }
      migrateStore(store);
      expect(
        store.sqlite.prepare("SELECT signature, state FROM ledger_lines ORDER BY ord").all(),
      ).toEqual(balanceExpected);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("lists again on PostgreSQL the lines whose transaction shows money into the vault", async () => {
    const store = await postgresBefore(await database.create(), balanceMarker);
    try {
      for (const [signature, ord, succeeded, facts] of balanceLines.slice(0, 5)) {
        await store.pool.query(relistInsert, [signature, ord, succeeded === 1, null]);
        await store.pool.query(innerTxInsert, [signature, facts]);
      }
      await migratePostgres(store.pool);
      const { rows } = await store.pool.query(
        "SELECT signature, state FROM ledger_lines ORDER BY ord",
      );
      expect(rows).toEqual(balanceExpected.slice(0, 5));
    } finally {
      await store.close();
    }
  });
});

/**
 * Lines read before the vault's token balances were held to the accounts they name: signature,
 * order, succeeded, kind, delta, post, hidden debit.
 */
const balancesLines = [
  ["made_up_deposit", 0, 1, "unexplained", 0, 945_000, 55_000],
  ["emptied", 1, 1, "unexplained", -945_000, 0, null],
  ["lock", 2, 1, "lock", -160_000, 785_000, null],
  ["failed", 3, 0, "none", 0, null, 5],
  ["top_up", 4, 1, "deposit", 40_000, 825_000, null],
] as const;
const balancesInsert = `INSERT INTO ledger_lines (vault, signature, ord, slot, block_time, listed_at,
    state, succeeded, kind, delta_units, post_units, hidden_debit_units)
  VALUES ('V', $1, $2, 5, 1700000000, 1, 'read', $3, $4, $5, $6, $7)`;
const balancesMarker = "held to the accounts they name";
const balancesExpected = [
  { signature: "made_up_deposit", state: "listed" },
  { signature: "emptied", state: "listed" },
  { signature: "lock", state: "read" },
  { signature: "failed", state: "read" },
  { signature: "top_up", state: "read" },
];

describe("upgrading a deployment that read lines a node's token balances made up", () => {
  it("lists again on SQLite the lines read as a hidden payout or as the vault emptied", () => {
    const store = sqliteBefore(balancesMarker);
    try {
      const line = store.sqlite.prepare(balancesInsert.replace(/\$\d/g, "?"));
      for (const l of balancesLines) line.run(...l);
      migrateStore(store);
      expect(
        store.sqlite.prepare("SELECT signature, state FROM ledger_lines ORDER BY ord").all(),
      ).toEqual(balancesExpected);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("lists again on PostgreSQL the lines read as a hidden payout or as the vault emptied", async () => {
    const store = await postgresBefore(await database.create(), balancesMarker);
    try {
      for (const [signature, ord, succeeded, ...rest] of balancesLines) {
        await store.pool.query(balancesInsert, [signature, ord, succeeded === 1, ...rest]);
      }
      await migratePostgres(store.pool);
      const { rows } = await store.pool.query(
        "SELECT signature, state FROM ledger_lines ORDER BY ord",
      );
      expect(rows).toEqual(balancesExpected);
    } finally {
      await store.close();
    }
  });
});

describe("upgrading a SQLite deployment whose sums passed 2^63 base units", () => {
  const MAX = 2n ** 53n - 1n;
  const DAY = Date.UTC(2026, 10, 1);
  const VAULT = "VauLt11111111111111111111111111111111111111";

  it("sums the rollups and the vault's days again, exact, where the old sums held floats", async () => {
    const store = sqliteBefore("units_lo");
    try {
      // 2,048 amounts of 2^53 - 1 in one hour and key: the second fold of 1,024 pending rows
      // took every rollup row of theirs past 2^63, where SQLite's `+` keeps a float.
      const whales = Array.from({ length: 2_048 }, (_, i) =>
        jobRow({
          jobId: `whale_${i}`,
          createdAt: DAY + 3_600_000 + i,
          verdict: "discrepancy",
          escrowedUnits: MAX,
          chargedUnits: MAX - BigInt(i),
          refundedUnits: BigInt(i),
        }),
      );
      insertAsBefore(store, jobs, whales);
      const floats = (table: string, column: string) =>
        store.sqlite
          .prepare(`SELECT count(*) FROM ${table} WHERE typeof(${column}) = 'real'`)
          .pluck()
          .get();
      expect(floats("job_rollups", "escrowed_units")).toBeGreaterThan(0);
      // A vault locked whole 1,025 times in a day: its day's sum passes 2^63 as well.
      const locks = Array.from({ length: 1_025 }, (_, i) => -(MAX - BigInt(i)));
      const lockRows = locks.map((delta, i) => ({
        vault: VAULT,
        signature: signatureOf(`lock_${i}`),
        ord: i + 1,
        slot: 1_000 + i,
        blockTime: DAY / 1000 + 60 + i,
        state: "read" as const,
        succeeded: true,
        deltaUnits: delta,
        listedAt: DAY,
        kind: "lock" as const,
      }));
      insertAsBefore(store, ledgerLines, lockRows);
      expect(floats("ledger_daily", "units")).toBe(1);

      migrateStore(store);
      const sum = (pick: (r: (typeof whales)[number]) => bigint | null | undefined) =>
        whales.reduce((s, r) => s + (pick(r) ?? 0n), 0n);
      const report = await reconciliationReport(
        store,
        { from: DAY, to: DAY + 86_400_000, groupBy: "model" },
        () => 0,
      );
      expect(report.totals).toMatchObject({
        jobs: whales.length,
        escrowedUnits: sum((r) => r.escrowedUnits),
        chargedUnits: sum((r) => r.chargedUnits),
        refundedUnits: sum((r) => r.refundedUnits),
        // Discrepancies written before escrow_paid_units are judged again by a later upgrade:
        // open, they are no longer disputed.
        disputedEscrowedUnits: 0n,
      });
      expect(await reportsStore(store).rollupsComplete()).toBe(true);
      expect((await recomputeRollups(store, {})).differences).toEqual([]);
      const ledger = createLedgerStore(store);
      const period = await ledger.periodSums(VAULT, DAY / 1000, DAY / 1000 + 86_400);
      expect(period.lock).toEqual({ lines: locks.length, units: locks.reduce((a, b) => a + b) });
    } finally {
      store.close();
    }
  });
});

/**
 * Jobs as a deployment left them before only a final status ended the jobs API's questions: an
 * answer naming the settlement with `settling` (or a word the protocol does not list) ended the
 * backfill (`done`) or the proxy's retries (no backfill state), and the job was verified.
 */
const answeredBefore = [
  { jobId: "job_settling", verdict: "verified", status: "settling", backfill: "done" },
  { jobId: "job_completed", verdict: "verified", status: " Completed", backfill: null },
  { jobId: "job_partial", verdict: "partially_verified", status: "processing", backfill: null },
  { jobId: "job_no_status", verdict: "verified", status: null, backfill: "done" },
  // Already failing: asked again, its verdict left as it is.
  { jobId: "job_failing", verdict: "discrepancy", status: "settling", backfill: "done" },
  // Asked 30 times then as now: not asked again, but judged by the new rule.
  { jobId: "job_gave_up", verdict: "verified", status: "processing", backfill: "gave_up" },
  // Final statuses, however written, and a job the jobs API never answered: left alone.
  { jobId: "job_settled", verdict: "verified", status: "\u00a0SETTLED\ufeff", backfill: "done" },
  { jobId: "job_refunded", verdict: "verified", status: "refunded", backfill: null },
  { jobId: "job_unasked", verdict: "verified", status: null, backfill: null, unasked: true },
];
const answeredAfter = {
  job_settling: ["pending", "verified", "upgrade", "pending", 0],
  job_completed: ["pending", "verified", "upgrade", "pending", 0],
  job_partial: ["pending", "partially_verified", "upgrade", "pending", 0],
  job_no_status: ["pending", "verified", "upgrade", "pending", 0],
  job_failing: ["discrepancy", null, null, "pending", 0],
  job_gave_up: ["pending", "verified", "upgrade", "gave_up", 30],
  job_settled: ["verified", null, null, "done", 30],
  job_refunded: ["verified", null, null, null, 30],
  job_unasked: ["verified", null, null, null, 30],
};
const answeredColumns = `job_id, source, receipt_hash, created_at, recorded_at, updated_at, verdict,
  next_verify_at, api_status, api_settlement_tx, api_checked_at, backfill_state,
  backfill_attempts, backfill_next_at`;
const answeredSelect = `SELECT job_id, verdict, previous_verdict, rejudge_reason, backfill_state,
  CAST(backfill_attempts AS integer) AS attempts FROM jobs ORDER BY job_id`;
const answeredMarker = "rejudge_reason";

/** The rows of `answeredSelect` by job id, as `answeredAfter` lists them. */
function answeredRows(rows: Record<string, unknown>[]) {
  return Object.fromEntries(
    rows.map((r) => [
      r.job_id,
      [r.verdict, r.previous_verdict, r.rejudge_reason, r.backfill_state, r.attempts],
    ]),
  );
}

describe("upgrading a deployment whose jobs API questions ended on a status that is not final", () => {
  it("asks again and reopens, on SQLite, the jobs whose answer gave no final status", () => {
    const store = sqliteBefore(answeredMarker);
    try {
      const insert = store.sqlite.prepare(
        `INSERT INTO jobs (${answeredColumns}) VALUES (@jobId, 'proxy', 'h', 1, 1, 1, @verdict,
           5000, @status, 's', @checkedAt, @backfill, 30, 9000)`,
      );
      for (const job of answeredBefore) {
        insert.run({ ...job, checkedAt: job.unasked ? null : 2 });
      }

      migrateStore(store);

      expect(answeredRows(store.sqlite.prepare(answeredSelect).all() as never)).toEqual(
        answeredAfter,
      );
      // Due at once, to the verifier and to the backfill.
      const due = store.sqlite.prepare(
        "SELECT next_verify_at AS v, backfill_next_at AS b FROM jobs WHERE job_id = ?",
      );
      expect(due.get("job_settling")).toEqual({ v: 0, b: 0 });
      expect(due.get("job_settled")).toEqual({ v: 5000, b: 9000 });
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("asks again and reopens, on PostgreSQL, the jobs whose answer gave no final status", async () => {
    const store = await postgresBefore(await database.create(), answeredMarker);
    try {
      for (const job of answeredBefore) {
        await store.pool.query(
          `INSERT INTO jobs (${answeredColumns}) VALUES ($1, 'proxy', 'h', 1, 1, 1, $2, 5000, $3,
             's', $4, $5, 30, 9000)`,
          [job.jobId, job.verdict, job.status, job.unasked ? null : 2, job.backfill],
        );
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      expect(answeredRows((await store.pool.query(answeredSelect)).rows)).toEqual(answeredAfter);
      const { rows } = await store.pool.query(
        `SELECT next_verify_at::integer AS v, backfill_next_at::integer AS b FROM jobs
         WHERE job_id = 'job_settling'`,
      );
      expect(rows).toEqual([{ v: 0, b: 0 }]);
    } finally {
      await store.close();
    }
  });
});

/**
 * Jobs judged before `escrow_paid_units` was kept, each with its released lock, and what the
 * upgrade does: a payout that rode in the lock (charged beyond what the worker and treasury got),
 * a settlement paying out more than the lock left in escrow (charged beyond the lock less the
 * return), and a discrepancy are judged again, their locks open; a clean job whose charge is
 * what the payees got of what stayed in escrow, and one with no charge read, are left alone.
 */
const escrowPaidMarker = "Only those are judged again";
const beforeEscrowPaid = [
  // [job, verdict, escrowed, charged, worker, treasury, refunded]
  ["job_payout", "verified", 170_000, 170_000, 90_000, 30_000, 0],
  ["job_over_escrow", "partially_verified", 100_000, 170_000, 127_500, 42_500, 0],
  ["job_discrepancy", "discrepancy", 200_000, 120_000, 90_000, 30_000, 80_000],
  ["job_clean", "verified", 200_000, 120_000, 90_000, 30_000, 80_000],
  ["job_unread", "verified", null, null, null, null, null],
] as const;
const afterEscrowPaid = {
  verdicts: {
    job_payout: "pending",
    job_over_escrow: "pending",
    job_discrepancy: "pending",
    job_clean: "verified",
    job_unread: "verified",
  },
  released: {
    lock_job_payout: 0,
    lock_job_over_escrow: 0,
    lock_job_discrepancy: 0,
    lock_job_clean: 1,
    lock_job_unread: 1,
  },
};
const escrowPaidJobInsert = `INSERT INTO jobs (job_id, source, receipt_hash, created_at, recorded_at,
    updated_at, verdict, verdict_at, verdict_profile, next_verify_at, escrowed_units, charged_units,
    worker_paid_units, treasury_paid_units, refunded_units)
  VALUES ($1, 'proxy', 'h', 1, 1, 1, $2, 5000, 'localnet', 9000, $3, $4, $5, $6, $7)`;
const escrowPaidLockInsert = `INSERT INTO ledger_lines (vault, signature, ord, slot, block_time,
    listed_at, state, succeeded, delta_units, kind, job_id, released)
  VALUES ('V', $1, $2, 5, 1700000000, 1, 'read', $3, $4, 'lock', $5, $6)`;

describe("upgrading a deployment judged before escrow_paid_units was kept", () => {
  it("judges again on SQLite the verdicts whose charge went beyond escrow, their locks open", () => {
    const store = sqliteBefore(escrowPaidMarker);
    try {
      store.sqlite
        .prepare(
          "INSERT INTO ledger_cursors (vault, updated_at, sync_number, sync_index, pages_read) VALUES ('V', 1, 0, 0, 0)",
        )
        .run();
      const job = store.sqlite.prepare(escrowPaidJobInsert.replace(/\$\d/g, "?"));
      const line = store.sqlite.prepare(escrowPaidLockInsert.replace(/\$\d/g, "?"));
      beforeEscrowPaid.forEach(([jobId, verdict, ...units], i) => {
        job.run(jobId, verdict, ...units);
        line.run(`lock_${jobId}`, i + 1, 1, -(units[0] ?? 100_000), jobId, 1);
      });

      migrateStore(store);

      expect(sqliteVerdicts(store)).toEqual(afterEscrowPaid.verdicts);
      const pairs = (q: string) =>
        Object.fromEntries(store.sqlite.prepare(q).raw().all() as [string, unknown][]);
      expect(pairs("SELECT signature, released FROM ledger_lines")).toEqual(
        afterEscrowPaid.released,
      );
      expect(pairs("SELECT job_id, rejudge_reason FROM jobs WHERE verdict = 'pending'")).toEqual({
        job_payout: "upgrade",
        job_over_escrow: "upgrade",
        job_discrepancy: "upgrade",
      });
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("judges again on PostgreSQL the verdicts whose charge went beyond escrow, their locks open", async () => {
    const store = await postgresBefore(await database.create(), escrowPaidMarker);
    try {
      await store.pool.query(
        "INSERT INTO ledger_cursors (vault, updated_at, sync_number, sync_index, pages_read) VALUES ('V', 1, 0, 0, 0)",
      );
      for (const [i, [jobId, verdict, ...units]] of beforeEscrowPaid.entries()) {
        await store.pool.query(escrowPaidJobInsert, [jobId, verdict, ...units]);
        await store.pool.query(escrowPaidLockInsert, [
          `lock_${jobId}`,
          i + 1,
          true,
          -(units[0] ?? 100_000),
          jobId,
          true,
        ]);
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      expect(await postgresVerdicts(store)).toEqual(afterEscrowPaid.verdicts);
      const { rows } = await store.pool.query("SELECT signature, released FROM ledger_lines");
      expect(Object.fromEntries(rows.map((r) => [r.signature, r.released ? 1 : 0]))).toEqual(
        afterEscrowPaid.released,
      );
      const reasons = await store.pool.query(
        "SELECT job_id, rejudge_reason FROM jobs WHERE verdict = 'pending'",
      );
      expect(Object.fromEntries(reasons.rows.map((r) => [r.job_id, r.rejudge_reason]))).toEqual({
        job_payout: "upgrade",
        job_over_escrow: "upgrade",
        job_discrepancy: "upgrade",
      });
    } finally {
      await store.close();
    }
  });
});

/**
 * Jobs judged before a transfer's signer was held to the owner of the account it spends, and
 * before owners were compared across a job's lock and release, with the stored facts of their
 * transactions (accounts: V the credit vault, X the escrow account, W the worker's; owners: EA
 * the escrow authority, A the operator's own key, D a delegate). The upgrade judges again the
 * clean verdicts whose facts show a delegate's transfer, a lock between two owners' accounts, or
 * an account another owns at the release than at the lock; the honest ones and a verdict that is
 * already a discrepancy are left alone.
 */
const ownerAtLockMarker = "authority is not the owner its token balances name";
const change = (account: string, owner: string | null, delta: string) => ({
  account,
  owner,
  mint: "M",
  programId: null,
  decimals: 6,
  pre: "0",
  post: "0",
  delta,
});
const transfer = (source: string, authority: string | null, accounts: string[] = []) => ({
  programId: "T",
  kind: "transferChecked",
  accounts,
  source,
  ...(authority === null ? {} : { authority }),
});
const lockFacts = (ix = transfer("V", "EA"), vaultOwner = "EA") => ({
  tokenChanges: [change("V", vaultOwner, "-10"), change("X", "EA", "10")],
  tokenInstructions: [ix],
  ownersAfter: [
    { account: "V", owner: vaultOwner },
    { account: "X", owner: "EA" },
  ],
});
const releaseFacts = (ix = transfer("X", "EA"), vaultOwner = "EA") => ({
  tokenChanges: [change("X", "EA", "-10"), change("W", "WK", "8"), change("V", vaultOwner, "2")],
  tokenInstructions: [ix],
});
const beforeOwnerAtLock: [string, string, object, object][] = [
  ["job_honest", "verified", lockFacts(), releaseFacts()],
  ["job_lock_delegate", "verified", lockFacts(transfer("V", "D")), releaseFacts()],
  [
    "job_old_facts_delegate",
    "partially_verified",
    lockFacts(transfer("V", null, ["D", "M", "V", "X"])),
    releaseFacts(),
  ],
  [
    "job_old_facts_honest",
    "verified",
    lockFacts(transfer("V", null, ["EA", "M", "V", "X"])),
    releaseFacts(),
  ],
  ["job_vault_other", "verified", lockFacts(transfer("V", "A"), "A"), releaseFacts()],
  ["job_return_other", "verified", lockFacts(), releaseFacts(transfer("X", "EA"), "A")],
  ["job_release_delegate", "verified", lockFacts(), releaseFacts(transfer("X", "D"))],
  ["job_discrepancy", "discrepancy", lockFacts(transfer("V", "D")), releaseFacts()],
];
const afterOwnerAtLock = {
  job_honest: "verified",
  job_lock_delegate: "pending",
  job_old_facts_delegate: "pending",
  job_old_facts_honest: "verified",
  job_vault_other: "pending",
  job_return_other: "pending",
  job_release_delegate: "pending",
  job_discrepancy: "discrepancy",
};
const ownerAtLockJobInsert = `INSERT INTO jobs (job_id, source, receipt_hash, created_at,
    recorded_at, updated_at, verdict, verdict_at, verdict_profile, next_verify_at, escrow_tx,
    settlement_tx)
  VALUES ($1, 'proxy', 'h', 1, 1, 1, $2, 5000, 'localnet', 9000, $3, $4)`;
const ownerAtLockTxInsert = `INSERT INTO chain_transactions (signature, state, first_seen_at, facts)
  VALUES ($1, 'finalized', 1, $2)`;
/** Each job with its lock's and release's signatures and facts, as the inserts take them. */
const ownerAtLockRows = () =>
  beforeOwnerAtLock.map(([jobId, verdict, lock, release]) => ({
    job: [jobId, verdict, `lock_${jobId}`, `release_${jobId}`],
    txs: [
      [`lock_${jobId}`, JSON.stringify({ signature: `lock_${jobId}`, ...lock })],
      [`release_${jobId}`, JSON.stringify({ signature: `release_${jobId}`, ...release })],
    ],
  }));

describe("upgrading a deployment that verified jobs a delegate or another owner paid", () => {
  it("judges again on SQLite the clean verdicts whose stored transactions show one", () => {
    const store = sqliteBefore(ownerAtLockMarker);
    try {
      const job = store.sqlite.prepare(ownerAtLockJobInsert.replace(/\$\d/g, "?"));
      const tx = store.sqlite.prepare(ownerAtLockTxInsert.replace(/\$\d/g, "?"));
      for (const row of ownerAtLockRows()) {
        job.run(...row.job);
        for (const t of row.txs) tx.run(...t);
      }
      // Facts a store holds as text that is no JSON (PostgreSQL's json column refuses it) are
      // passed over, not an upgrade that fails.
      job.run("job_unparsed", "verified", "lock_job_unparsed", "release_job_unparsed");
      tx.run("lock_job_unparsed", "{");
      tx.run("release_job_unparsed", "not json");

      migrateStore(store);

      expect(sqliteVerdicts(store)).toEqual({ ...afterOwnerAtLock, job_unparsed: "verified" });
    } finally {
      store.close();
    }
  });

  it("reopens on SQLite the very verdicts the first form of the upgrade reopened, over a mix of jobs", () => {
    // The first form, one UPDATE reading each job's facts clause by clause, took minutes on a
    // million jobs; the upgrade now reads them into temporary tables first.
    const first = readFileSync(
      new URL("./fixtures/migrations/0056_rejudge_owner_at_lock.first.sql", import.meta.url),
      "utf8",
    );
    const seed = (store: SqliteStore) => {
      const tx = store.sqlite.prepare(ownerAtLockTxInsert.replace(/\$\d/g, "?"));
      const job = store.sqlite.prepare(
        `INSERT INTO jobs (job_id, source, receipt_hash, created_at, recorded_at, updated_at,
           verdict, verdict_at, verdict_profile, next_verify_at, escrow_tx, api_escrow_tx,
           settlement_tx, api_settlement_tx)
         VALUES (?, 'proxy', 'h', 1, 1, 1, ?, 5000, 'localnet', 9000, ?, ?, ?, ?)`,
      );
      const signers = ["EA", "D", null];
      const accounts = [["EA", "M", "V", "X"], ["D", "M", "V", "X"], []];
      const owners = ["EA", "A", null];
      const kinds = ["transferChecked", "burn", "approve"];
      const verdicts = ["verified", "partially_verified", "discrepancy", "pending"];
      let n = 0;
      for (const lockSigner of signers)
        for (const lockAccounts of accounts)
          for (const vaultOwner of owners)
            for (const releaseSigner of signers)
              for (const returnOwner of owners)
                for (const kind of kinds) {
                  n += 1;
                  const lock = lockFacts(
                    { ...transfer("V", lockSigner, lockAccounts), kind },
                    vaultOwner ?? "EA",
                  );
                  if (vaultOwner === null) {
                    // Balances naming no owner, and no owners kept after.
                    lock.tokenChanges[0] = change("V", null, "-10");
                    delete (lock as { ownersAfter?: unknown }).ownersAfter;
                  }
                  const release = releaseFacts(
                    transfer("X", releaseSigner, ["EA", "M", "X", "W"]),
                    returnOwner ?? "EA",
                  );
                  if (returnOwner === null) release.tokenChanges[2] = change("V", null, "2");
                  tx.run(`L${n}`, JSON.stringify(lock));
                  tx.run(`S${n}`, JSON.stringify(release));
                  const verdict = verdicts[n % verdicts.length];
                  // Transactions named by the jobs API's columns, by both, or by a job that
                  // shares its release with another; a transaction never fetched; a lock that
                  // is its own release.
                  const shape = n % 6;
                  const cols =
                    shape === 0
                      ? [`L${n}`, null, `S${n}`, null]
                      : shape === 1
                        ? [null, `L${n}`, null, `S${n}`]
                        : shape === 2
                          ? [`L${n}`, `L${n - 1}`, `S${n}`, `S${n - 1}`]
                          : shape === 3
                            ? [`L${n}`, null, `S${n}`, `S${n - 2}`]
                            : shape === 4
                              ? [`L${n}`, null, `missing${n}`, null]
                              : [`S${n}`, null, `S${n}`, null];
                  job.run(`job_${n}`, verdict, ...cols);
                }
      // Facts that are no JSON, named by a clean verdict and by one that is not.
      tx.run("bad_lock", "{");
      tx.run("bad_release", "not json");
      job.run("job_bad_clean", "verified", "bad_lock", null, "bad_release", null);
      job.run("job_bad_pending", "pending", "bad_lock", null, "S1", null);
      return n;
    };
    const rows = (store: SqliteStore) =>
      store.sqlite
        .prepare(
          "SELECT job_id, verdict, previous_verdict, rejudge_reason, next_verify_at FROM jobs ORDER BY job_id",
        )
        .all();
    const before = sqliteBefore(ownerAtLockMarker);
    const after = sqliteBefore(ownerAtLockMarker);
    try {
      const count = seed(before);
      seed(after);
      before.sqlite.exec(first);
      migrateStore(after);

      const reopened = before.sqlite
        .prepare("SELECT count(*) FROM jobs WHERE rejudge_reason = 'upgrade'")
        .pluck()
        .get() as number;
      const clean = after.sqlite
        .prepare("SELECT count(*) FROM jobs WHERE verdict IN ('verified', 'partially_verified')")
        .pluck()
        .get() as number;
      // The mix holds both: verdicts the upgrade reopens and clean ones it leaves.
      expect(count).toBe(729);
      expect(reopened).toBeGreaterThan(50);
      expect(clean).toBeGreaterThan(20);
      expect(rows(after)).toEqual(rows(before));
    } finally {
      before.close();
      after.close();
    }
  });

  const database = usePostgresDatabase();
  it("judges again on PostgreSQL the clean verdicts whose stored transactions show one", async () => {
    const store = await postgresBefore(await database.create(), ownerAtLockMarker);
    try {
      for (const row of ownerAtLockRows()) {
        await store.pool.query(ownerAtLockJobInsert, row.job);
        for (const t of row.txs) await store.pool.query(ownerAtLockTxInsert, t);
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      expect(await postgresVerdicts(store)).toEqual(afterOwnerAtLock);
      const { rows } = await store.pool.query(
        "SELECT job_id, previous_verdict, rejudge_reason FROM jobs WHERE verdict = 'pending' ORDER BY job_id",
      );
      expect(rows.map((r) => [r.job_id, r.previous_verdict, r.rejudge_reason])).toEqual([
        ["job_lock_delegate", "verified", "upgrade"],
        ["job_old_facts_delegate", "partially_verified", "upgrade"],
        ["job_release_delegate", "verified", "upgrade"],
        ["job_return_other", "verified", "upgrade"],
        ["job_vault_other", "verified", "upgrade"],
      ]);
    } finally {
      await store.close();
    }
  });
});

/**
 * Clean verdicts judged under a profile naming no escrow authority before it was learned from
 * the first lock written, with their locks' stored facts: V1, V2 credit vaults, X an escrow
 * account; EA the owner every vault had, A the operator's key that took a vault and a fresh
 * escrow account (a lock between two of its own accounts, which 0056 does not reopen). The
 * upgrade pins, per profile, the owner of the earliest clean lock and judges again the clean
 * verdicts of another owner.
 */
const vaultsOwnerMarker = "rejudge_lock_owner";
const lockBetween = (vault: string, owner: string) => ({
  tokenChanges: [change(vault, owner, "-10"), change("X", owner, "10")],
  tokenInstructions: [transfer(vault, owner)],
  ownersAfter: [
    { account: vault, owner },
    { account: "X", owner },
  ],
});
const beforeVaultsOwner: [string, string, string, number, object | string][] = [
  ["job_first", "verified", "shape@1", 1000, lockBetween("V1", "EA")],
  ["job_taken", "verified", "shape@1", 2000, lockBetween("V2", "A")],
  ["job_taken_partly", "partially_verified", "shape@2", 2500, lockBetween("V2", "A")],
  ["job_later", "verified", "shape@1", 3000, lockBetween("V2", "EA")],
  ["job_found", "discrepancy", "shape@1", 500, lockBetween("V2", "A")],
  ["job_other_profile", "verified", "named@1", 4000, lockBetween("V1", "NA")],
  ["job_unparsed", "verified", "shape@1", 100, "{"],
];
const afterVaultsOwner = {
  job_first: "verified",
  job_taken: "pending",
  job_taken_partly: "pending",
  job_later: "verified",
  job_found: "discrepancy",
  job_other_profile: "verified",
  job_unparsed: "verified",
};
const vaultsOwnerJobInsert = `INSERT INTO jobs (job_id, source, receipt_hash, created_at,
    recorded_at, updated_at, verdict, verdict_at, verdict_profile, next_verify_at, escrow_tx)
  VALUES ($1, 'proxy', 'h', 1, 1, 1, $2, $3, $4, 9000, $5)`;
const vaultsOwnerRows = () =>
  beforeVaultsOwner.map(([jobId, verdict, profile, at, lock]) => ({
    job: [jobId, verdict, at, profile, `lock_${jobId}`],
    tx: [
      `lock_${jobId}`,
      typeof lock === "string" ? lock : JSON.stringify({ signature: `lock_${jobId}`, ...lock }),
    ],
  }));
const pinsAfterVaultsOwner = [
  { profile: "named", value: "NA" },
  { profile: "shape", value: "EA" },
];

describe("upgrading a deployment whose clean locks drew on vaults of two owners under a profile naming no escrow authority", () => {
  it("pins on SQLite the owner of the earliest clean lock and judges again the others", () => {
    const store = sqliteBefore(vaultsOwnerMarker);
    try {
      const job = store.sqlite.prepare(vaultsOwnerJobInsert.replace(/\$\d/g, "?"));
      const tx = store.sqlite.prepare(ownerAtLockTxInsert.replace(/\$\d/g, "?"));
      for (const row of vaultsOwnerRows()) {
        job.run(...row.job);
        tx.run(...row.tx);
      }

      migrateStore(store);

      expect(sqliteVerdicts(store)).toEqual(afterVaultsOwner);
      expect(
        store.sqlite
          .prepare(
            "SELECT profile, value FROM profile_pins WHERE name = 'escrow_authority' ORDER BY profile",
          )
          .all(),
      ).toEqual(pinsAfterVaultsOwner);
      expect(
        store.sqlite
          .prepare("SELECT DISTINCT rejudge_reason FROM jobs WHERE verdict = 'pending'")
          .pluck()
          .all(),
      ).toEqual(["upgrade"]);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("pins on PostgreSQL the owner of the earliest clean lock and judges again the others", async () => {
    const store = await postgresBefore(await database.create(), vaultsOwnerMarker);
    try {
      for (const row of vaultsOwnerRows()) {
        await store.pool.query(vaultsOwnerJobInsert, row.job);
        // PostgreSQL's json column refuses text that is no JSON: such facts are never stored.
        if (row.tx[1] !== "{") await store.pool.query(ownerAtLockTxInsert, row.tx);
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(1);

      expect(await postgresVerdicts(store)).toEqual(afterVaultsOwner);
      const pins = await store.pool.query(
        "SELECT profile, value FROM profile_pins WHERE name = 'escrow_authority' ORDER BY profile",
      );
      expect(pins.rows).toEqual(pinsAfterVaultsOwner);
      const reasons = await store.pool.query(
        "SELECT DISTINCT rejudge_reason FROM jobs WHERE verdict = 'pending'",
      );
      expect(reasons.rows).toEqual([{ rejudge_reason: "upgrade" }]);
    } finally {
      await store.close();
    }
  });
});

/**
 * Jobs as a deployment before `job_conflict_signatures` left them: a payout with no memo named
 * only by a conflicting receipt had no owner; one a receipt names keeps its owner.
 */
const conflictsBefore = [
  { jobId: "job_alone", verdict: "discrepancy", settlementTx: null, conflicts: '["sig_alone", 5]' },
  { jobId: "job_shared", verdict: "discrepancy", settlementTx: null, conflicts: '["sig_named"]' },
  { jobId: "job_named", verdict: "verified", settlementTx: "sig_named", conflicts: null },
  { jobId: "job_open", verdict: "pending", settlementTx: null, conflicts: '["sig_open"]' },
  { jobId: "job_odd", verdict: "verified", settlementTx: null, conflicts: '{"a":"sig_odd"}' },
];
const conflictsAfter = {
  verdicts: {
    job_alone: "pending",
    job_shared: "discrepancy",
    job_named: "verified",
    job_open: "pending",
    job_odd: "verified",
  },
  index: [
    { signature: "sig_alone", job_id: "job_alone" },
    { signature: "sig_named", job_id: "job_shared" },
    { signature: "sig_open", job_id: "job_open" },
  ],
  // After the named job's list is written: the old signature gone, the new ones in.
  rewritten: [
    { signature: "sig_alone", job_id: "job_alone" },
    { signature: "sig_named", job_id: "job_shared" },
    { signature: "sig_new", job_id: "job_named" },
    { signature: "sig_next", job_id: "job_open" },
  ],
};
const conflictColumns = `${treasuryColumns}, settlement_tx, conflict_signatures`;
const indexed = "SELECT signature, job_id FROM job_conflict_signatures ORDER BY signature, job_id";

describe("upgrading a deployment whose conflict signatures had no index", () => {
  it("indexes them on SQLite, keeps the index as lists change, and reopens the jobs that may own one", () => {
    const store = sqliteBefore("job_conflict_signatures");
    try {
      for (const job of conflictsBefore) {
        store.sqlite
          .prepare(
            `INSERT INTO jobs (${conflictColumns}) VALUES (?, 'ingest', ?, 1, 1, 1, ?, 5000, ?, ?)`,
          )
          .run(job.jobId, job.jobId, job.verdict, job.settlementTx, job.conflicts);
      }

      migrateStore(store);

      expect(sqliteVerdicts(store)).toEqual(conflictsAfter.verdicts);
      expect(store.sqlite.prepare(indexed).all()).toEqual(conflictsAfter.index);
      store.sqlite.exec(`UPDATE jobs SET conflict_signatures = '["sig_new"]' WHERE job_id = 'job_named';
        UPDATE jobs SET conflict_signatures = '["sig_next"]' WHERE job_id = 'job_open'`);
      expect(store.sqlite.prepare(indexed).all()).toEqual(conflictsAfter.rewritten);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("indexes them on PostgreSQL, keeps the index as lists change, and reopens the jobs that may own one", async () => {
    const store = await postgresBefore(await database.create(), "job_conflict_signatures");
    try {
      for (const job of conflictsBefore) {
        await store.pool.query(
          `INSERT INTO jobs (${conflictColumns}) VALUES ($1, 'ingest', $1, 1, 1, 1, $2, 5000, $3, $4)`,
          [job.jobId, job.verdict, job.settlementTx, job.conflicts],
        );
      }

      expect((await migratePostgres(store.pool)).applied).toBeGreaterThanOrEqual(2);

      expect(await postgresVerdicts(store)).toEqual(conflictsAfter.verdicts);
      expect((await store.pool.query(indexed)).rows).toEqual(conflictsAfter.index);
      await store.pool.query(
        `UPDATE jobs SET conflict_signatures = '["sig_new"]' WHERE job_id = 'job_named'`,
      );
      await store.pool.query(
        `UPDATE jobs SET conflict_signatures = '["sig_next"]' WHERE job_id = 'job_open'`,
      );
      expect((await store.pool.query(indexed)).rows).toEqual(conflictsAfter.rewritten);
    } finally {
      await store.close();
    }
  });
});

/**
 * Escrow entries held before 0074 (SQLite) / 0065 (PostgreSQL) keyed them by job and signature:
 * a listing's entry and a signature the job named past its kept ones (vault '') shared a row.
 */
const pendingBefore = [
  ["job_held", "sig_listed", "EscrowV", 1_700_000_000, 1000, "not served", '{"answers":[1,2]}'],
  ["job_held", "sig_past", "", null, 2000, "not served", null],
  ["job_open", "sig_listed", "EscrowV", null, 3000, null, null],
] as const;
const pendingInsert = `INSERT INTO escrow_pending (job_id, signature, vault, block_time, listed_at,
    unread, disagreement) VALUES ($1, $2, $3, $4, $5, $6, $7)`;
const pendingRows = `SELECT job_id, signature, vault, CAST(block_time AS integer) AS block_time,
    CAST(listed_at AS integer) AS listed_at,
    unread, CAST(disagreement AS text) AS disagreement FROM escrow_pending
  ORDER BY job_id, signature, vault`;
const pendingRowsBefore = pendingBefore.map(
  ([job_id, signature, vault, block_time, listed_at, unread, disagreement]) => ({
    job_id,
    signature,
    vault,
    block_time,
    listed_at,
    unread,
    disagreement,
  }),
);
/** The listing's entry named past its job's kept signatures too: a row beside it now. */
const pendingBeside = ["job_held", "sig_listed", "", null, 4000, null, null] as const;

describe("upgrading a deployment whose held escrow entries were keyed by job and signature", () => {
  it("keeps every row on SQLite, and holds a signature named past beside the listing's entry", () => {
    const store = sqliteBefore("__new_escrow_pending");
    try {
      const insert = store.sqlite.prepare(pendingInsert.replace(/\$\d/g, "?"));
      for (const row of pendingBefore) insert.run(...row);
      migrateStore(store);
      expect(store.sqlite.prepare(pendingRows).all()).toEqual(pendingRowsBefore);
      insert.run(...pendingBeside);
      expect(store.sqlite.prepare(pendingRows).all()).toHaveLength(pendingBefore.length + 1);
    } finally {
      store.close();
    }
  });

  const database = usePostgresDatabase();
  it("keeps every row on PostgreSQL, and holds a signature named past beside the listing's entry", async () => {
    const store = await postgresBefore(
      await database.create(),
      "escrow_pending_job_id_signature_vault_pk",
    );
    try {
      for (const row of pendingBefore) await store.pool.query(pendingInsert, [...row]);
      await migratePostgres(store.pool);
      expect((await store.pool.query(pendingRows)).rows).toEqual(pendingRowsBefore);
      await store.pool.query(pendingInsert, [...pendingBeside]);
      expect((await store.pool.query(pendingRows)).rows).toHaveLength(pendingBefore.length + 1);
    } finally {
      await store.close();
    }
  });
});
