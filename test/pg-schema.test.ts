import { readFileSync } from "node:fs";
import { join } from "node:path";
import { getTableName, is } from "drizzle-orm";
import { readMigrationFiles } from "drizzle-orm/migrator";
import { PgTable, getTableConfig as pgTableConfig } from "drizzle-orm/pg-core";
import { SQLiteTable, getTableConfig as sqliteTableConfig } from "drizzle-orm/sqlite-core";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { migratePostgres, pgMigrationsFolder } from "../src/db/pg/migrate.js";
import {
  pgRollupFunctionBodies,
  pgRollupHoursBackfillSql,
  pgRollupTriggersSql,
  pgRollupWorkerRebuildSql,
} from "../src/db/pg/rollups.js";
import * as pgSchema from "../src/db/pg/schema.js";
import { storedFigures } from "../src/db/rollups.js";
import * as sqliteSchema from "../src/db/schema.js";
import { usePostgresDatabase } from "./support/postgres.js";

const sqliteTables = Object.values(sqliteSchema).filter((v) => is(v, SQLiteTable));
const pgTables = Object.values(pgSchema).filter((v) => is(v, PgTable));

/** Sums of money the stores keep (not computed by `sum()` at read time). */
const storedMoneySums = new Set([
  ...storedFigures.filter((f) => f.kind !== "count").map((f) => `job_rollups.${f.column}`),
  "ledger_daily.units",
]);

describe("the PostgreSQL schema mirrors the SQLite schema", () => {
  it("has every table, with the same columns, keys and index names", () => {
    expect(pgTables.map(getTableName).sort()).toEqual(sqliteTables.map(getTableName).sort());
    for (const table of sqliteTables) {
      const lite = sqliteTableConfig(table);
      const mirror = pgTableConfig(pgTables.find((t) => getTableName(t) === lite.name)!);
      // SQLite keeps each stored sum of money in two parts, `<name>_lo` and `<name>_hi`.
      const mirrored = (column: string) => {
        const base = column.replace(/_(lo|hi)$/, "");
        return base !== column && storedMoneySums.has(`${lite.name}.${base}`) ? base : column;
      };
      expect(
        mirror.columns.map((c) => c.name),
        lite.name,
      ).toEqual([...new Set(lite.columns.map((c) => mirrored(c.name)))]);
      const liteKey = [
        ...lite.columns.filter((c) => c.primary).map((c) => c.name),
        ...lite.primaryKeys.flatMap((k) => k.columns.map((c) => c.name)),
      ];
      // job_rollups: a UNIQUE NULLS NOT DISTINCT key, since its dimensions may be NULL.
      const mirrorKey = [
        ...mirror.columns.filter((c) => c.primary).map((c) => c.name),
        ...mirror.primaryKeys.flatMap((k) => k.columns.map((c) => c.name)),
        ...mirror.uniqueConstraints
          .filter((u) => u.nullsNotDistinct)
          .flatMap((u) => u.columns.map((c) => c.name)),
      ];
      expect(mirrorKey, lite.name).toEqual(liteKey);
      expect(mirror.indexes.map((i) => i.config.name).sort(), lite.name).toEqual(
        lite.indexes.map((i) => i.config.name).sort(),
      );
      for (const column of lite.columns) {
        const twin = mirror.columns.find((c) => c.name === mirrored(column.name))!;
        const nullDimension =
          lite.name === "job_rollups" &&
          ["model", "worker", "key_fingerprint"].includes(column.name);
        expect(twin.notNull, `${lite.name}.${column.name} NOT NULL`).toBe(
          nullDimension ? false : column.notNull,
        );
        // Every SQLite INTEGER is a PostgreSQL bigint (a 0/1 flag a boolean), so any value one
        // store holds fits the other; but a stored sum of money is numeric, since a sum of
        // amounts of 2^53 - 1 passes 2^63 (SQLite keeps it as two integer columns).
        if (column.getSQLType() === "integer") {
          const name = `${lite.name}.${mirrored(column.name)}`;
          expect(twin.getSQLType(), name).toBe(
            storedMoneySums.has(name)
              ? "numeric"
              : column.columnType === "SQLiteBoolean"
                ? "boolean"
                : "bigint",
          );
        }
      }
    }
  });
});

describe("PostgreSQL migrations", () => {
  const database = usePostgresDatabase();

  it("apply once when ten migrators start at once on a fresh database", async () => {
    // Ten pools, as ten processes would have: each migrator on its own connection.
    const stores = Array.from({ length: 10 }, () => openPostgres(database.url));
    try {
      const results = await Promise.all(stores.map((s) => migratePostgres(s.pool)));
      const expected = readMigrationFiles({ migrationsFolder: pgMigrationsFolder }).length;
      expect(results.map((r) => r.applied).sort((a, b) => b - a)).toEqual([
        expected,
        ...Array(9).fill(0),
      ]);
      const rows = await stores[0]!.pool.query(
        `SELECT count(*)::int AS n FROM "drizzle"."__drizzle_migrations"`,
      );
      expect(rows.rows[0].n).toBe(expected);
      expect((await migratePostgres(stores[0]!.pool)).applied).toBe(0);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });
});

describe("the PostgreSQL store", () => {
  const database = usePostgresDatabase();
  let store: PgStore;
  beforeAll(async () => {
    store = openPostgres(database.url);
    await migratePostgres(store.pool);
  });
  afterAll(() => store?.close());

  const job = (id: string, over: Partial<typeof pgSchema.jobs.$inferInsert> = {}) => ({
    jobId: id,
    source: "ingest" as const,
    receiptHash: `h-${id}`,
    createdAt: Date.UTC(2026, 10, 1, 12),
    recordedAt: Date.UTC(2026, 10, 1, 12),
    updatedAt: Date.UTC(2026, 10, 1, 12),
    ...over,
  });

  it("keeps money exact across the whole signed 64-bit range, and JSON as written", async () => {
    const max = 2n ** 63n - 1n;
    const min = -(2n ** 63n);
    await store.db.insert(pgSchema.ledgerLines).values({
      vault: "v",
      signature: "s",
      ord: 1,
      slot: 2 ** 40,
      preUnits: max,
      postUnits: min,
      deltaUnits: 9_007_199_254_740_993n,
      listedAt: Date.now(),
    });
    expect(await store.db.select().from(pgSchema.ledgerLines)).toMatchObject([
      { preUnits: max, postUnits: min, deltaUnits: 9_007_199_254_740_993n, slot: 2 ** 40 },
    ]);
    await store.db.insert(pgSchema.jobs).values(
      job("job_money", {
        chargedUnits: 9_007_199_254_740_993n,
        refundedUnits: -5n,
        tags: { team: "search", ü: "ß" },
        stream: true,
      }),
    );
    const [row] = await store.db.select().from(pgSchema.jobs);
    expect(row).toMatchObject({
      chargedUnits: 9_007_199_254_740_993n,
      refundedUnits: -5n,
      tags: { team: "search", ü: "ß" },
      stream: true,
      verdict: "pending",
    });
    await store.db.delete(pgSchema.jobs);
  });

  it("keeps the rollups equal to the jobs summed from scratch through inserts, verdicts, moves and deletes", async () => {
    const day = (n: number) => Date.UTC(2026, 10, n, 10);
    await store.db
      .insert(pgSchema.jobs)
      .values([
        job("a", { model: "m1", worker: "w1", keyFingerprint: "k1", createdAt: day(1) }),
        job("b", { model: "m1", worker: "w2", keyFingerprint: null, createdAt: day(1) }),
        job("c", { model: null, worker: "w1", keyFingerprint: "k2", createdAt: day(2) }),
        job("d", { model: "m2", worker: null, keyFingerprint: "k1", createdAt: day(2) }),
      ]);
    // Rows as arrays: the sums below have no names of their own.
    const q = (text: string) => store.pool.query({ text, rowMode: "array" });
    await q(
      `UPDATE jobs SET verdict = 'verified', escrowed_units = 100, charged_units = 60, worker_paid_units = 48, treasury_paid_units = 12, refunded_units = 40, fees_lamports = 5000 WHERE job_id = 'a'`,
    );
    await q(
      `UPDATE jobs SET verdict = 'discrepancy', escrowed_units = 7, charged_units = 9 WHERE job_id = 'b'`,
    );
    await q(`UPDATE jobs SET verdict = 'awaiting_finality' WHERE job_id = 'c'`);
    await q(`UPDATE jobs SET lease_owner = 'p1', verify_attempts = 3 WHERE job_id = 'c'`);
    // Moves: another day, another model, a worker learned later.
    await q(
      `UPDATE jobs SET created_at = ${day(3)}, verdict = 'dropped', escrowed_units = 3 WHERE job_id = 'd'`,
    );
    await q(`UPDATE jobs SET model = 'm3', worker = 'w9' WHERE job_id = 'c'`);
    await q(
      `UPDATE jobs SET verdict = 'partially_verified', charged_units = 11 WHERE job_id = 'c'`,
    );
    await q(`DELETE FROM jobs WHERE job_id = 'b'`);
    // Another hour of the same day: the day rows keep it, the hour rows move it.
    await q(`UPDATE jobs SET created_at = created_at + 7200000 WHERE job_id = 'a'`);

    const figures = `jobs_open, jobs_verified, jobs_partially_verified, jobs_discrepancy, jobs_dropped,
      jobs_unverifiable, escrowed_units, charged_units, worker_paid_units, treasury_paid_units,
      refunded_units, fees_lamports, verified_escrowed_units, verified_charged_units,
      verified_worker_paid_units, verified_treasury_paid_units, verified_refunded_units,
      disputed_escrowed_units, disputed_charged_units, disputed_worker_paid_units,
      disputed_treasury_paid_units, disputed_refunded_units`;
    const sums = `count(*) FILTER (WHERE verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')),
      count(*) FILTER (WHERE verdict = 'verified'), count(*) FILTER (WHERE verdict = 'partially_verified'),
      count(*) FILTER (WHERE verdict = 'discrepancy'), count(*) FILTER (WHERE verdict = 'dropped'),
      count(*) FILTER (WHERE verdict = 'unverifiable'),
      ${["escrowed_units", "charged_units", "worker_paid_units", "treasury_paid_units", "refunded_units", "fees_lamports"].map((c) => `coalesce(sum(${c}), 0)`).join(", ")},
      ${["escrowed_units", "charged_units", "worker_paid_units", "treasury_paid_units", "refunded_units"].map((c) => `coalesce(sum(${c}) FILTER (WHERE verdict = 'verified'), 0)`).join(", ")},
      ${["escrowed_units", "charged_units", "worker_paid_units", "treasury_paid_units", "refunded_units"].map((c) => `coalesce(sum(${c}) FILTER (WHERE verdict IN ('discrepancy', 'dropped')), 0)`).join(", ")}`;
    const fromJobs = await q(`
      SELECT ${[0, 1, 2, 3, 4, 5, 6]
        .map(
          (g) => `SELECT ${g} AS grain, created_at / ${g >= 4 ? 3600000 : 86400000} AS day,
            ${[0, 1, 4].includes(g) ? "model" : "NULL::text"} AS model,
            ${[0, 2, 5].includes(g) ? "worker" : "NULL::text"} AS worker,
            ${[0, 3, 6].includes(g) ? "key_fingerprint" : "NULL::text"} AS key_fingerprint, ${sums}
          FROM jobs GROUP BY 1, 2, 3, 4, 5`,
        )
        .join(" UNION ALL ")
        .replace(/^SELECT /, "")}
      ORDER BY 1, 2, 3, 4, 5`);
    // Rows every figure of which went back to 0 (the key a job moved away from) stay behind.
    const readRollups = () =>
      q(`
      SELECT grain, day, model, worker, key_fingerprint, ${figures} FROM job_rollups
      WHERE ${figures
        .split(",")
        .map((c) => `${c.trim()} <> 0`)
        .join(" OR ")}
      ORDER BY 1, 2, 3, 4, 5`);
    const rollups = await readRollups();
    const normalise = (rows: unknown[][]) =>
      rows.map((r) => r.map((v) => (v === null ? null : String(v))));
    expect(normalise(rollups.rows)).toEqual(normalise(fromJobs.rows));
    expect(rollups.rows.length).toBeGreaterThan(8);
    expect(rollups.rows.some((r) => Number(r[0]) >= 4)).toBe(true);
    // The migration's one-off sum of hour rows for jobs written before them gives the same rows.
    await q("DELETE FROM job_rollups WHERE grain >= 4");
    await q(pgRollupHoursBackfillSql());
    expect(normalise((await readRollups()).rows)).toEqual(normalise(fromJobs.rows));
  });

  it("runs the rollup functions and statement triggers generated from the report figures", async () => {
    const bodies = pgRollupFunctionBodies();
    const installed = await store.pool.query<{ proname: string; prosrc: string }>(
      "SELECT proname, prosrc FROM pg_proc WHERE proname LIKE 'jobs\\_rollup%' ORDER BY 1",
    );
    expect(installed.rows).toEqual(
      (["delete", "insert", "update"] as const).map((op) => ({
        proname: `jobs_rollup_${op}`,
        prosrc: bodies[op],
      })),
    );
    // The latest migration holds the generated statements as they are; the one-off sum of
    // hour rows stays where the hour grains came.
    const migration = (name: string) => readFileSync(join(pgMigrationsFolder, name), "utf8");
    for (const statement of [...pgRollupTriggersSql(), ...pgRollupWorkerRebuildSql()]) {
      expect(migration("0021_report_worker.sql")).toContain(statement);
    }
    expect(migration("0001_ledger_kinds_snapshots_hours.sql")).toContain(
      pgRollupHoursBackfillSql(),
    );
    // pg_get_triggerdef prints the triggers as PostgreSQL reads them: compare them with the
    // generated ones, read by PostgreSQL the same way on a scratch table.
    const defs = async (client: pg.ClientBase, table: string) =>
      (
        await client.query<{ def: string }>(
          `SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgrelid = '${table}'::regclass AND NOT tgisinternal AND tgname LIKE 'jobs\\_rollup%' ORDER BY tgname`,
        )
      ).rows.map((r) => r.def.replace(`ON public.${table} `, "ON public.jobs "));
    const client = await store.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("CREATE TABLE jobs_scratch (LIKE jobs)");
      for (const statement of pgRollupTriggersSql().filter((s) => s.startsWith("CREATE TRIGGER"))) {
        await client.query(statement.replace('ON "jobs"', 'ON "jobs_scratch"'));
      }
      const generated = await defs(client, "jobs_scratch");
      expect(generated).toHaveLength(3);
      expect(await defs(client, "jobs")).toEqual(generated);
    } finally {
      await client.query("ROLLBACK");
      client.release();
    }
  });

  it("keeps ledger_daily equal to the lines summed from scratch through inserts, kinds, moves and deletes", async () => {
    const q = (text: string) => store.pool.query({ text, rowMode: "array" });
    const t = (day: number, s = 0) => Date.UTC(2026, 10, day) / 1000 + s;
    const line = (
      vault: string,
      sig: string,
      ord: number,
      blockTime: number | null,
      kind: string | null,
      delta: number | null,
    ) =>
      `('${vault}', '${sig}', ${ord}, ${ord}, ${blockTime ?? "NULL"}, 'read', ${kind === null ? "NULL" : `'${kind}'`}, ${delta ?? "NULL"}, 0)`;
    await q(`INSERT INTO ledger_lines (vault, signature, ord, slot, block_time, state, kind, delta_units, listed_at) VALUES
      ${[
        line("v1", "s1", 1, t(1, 10), "lock", -100),
        line("v1", "s2", 2, t(1, 20), "lock", -50),
        line("v1", "s3", 3, t(1, 30), "deposit", 500),
        line("v1", "s4", 4, t(2, 5), null, -7),
        line("v1", "s5", 5, null, "none", 0),
        line("v2", "s6", 1, t(1, 40), "unexplained", -9),
        line("v2", "s7", 2, t(3, 1), "return", null),
      ].join(",\n")}`);
    await q(`UPDATE ledger_lines SET kind = 'lock' WHERE signature = 's4'`);
    await q(`UPDATE ledger_lines SET kind = 'return' WHERE signature = 's3'`);
    await q(`UPDATE ledger_lines SET delta_units = -60 WHERE signature = 's2'`);
    await q(`UPDATE ledger_lines SET block_time = ${t(2, 99)} WHERE signature = 's1'`);
    await q(`UPDATE ledger_lines SET block_time = ${t(4)} WHERE signature = 's5'`);
    await q(`UPDATE ledger_lines SET released = true, memo = 'x' WHERE signature = 's6'`);
    await q(`DELETE FROM ledger_lines WHERE signature = 's2'`);

    const daily = await q(
      "SELECT vault, day, kind, lines, units FROM ledger_daily WHERE lines <> 0 OR units <> 0 ORDER BY 1, 2, 3",
    );
    const fromLines = await q(`
      SELECT vault, block_time / 86400, kind, count(*), coalesce(sum(delta_units), 0) FROM ledger_lines
      WHERE kind IS NOT NULL AND block_time IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`);
    const normalise = (rows: unknown[][]) => rows.map((r) => r.map((v) => String(v)));
    expect(normalise(daily.rows)).toEqual(normalise(fromLines.rows));
    expect(daily.rows.length).toBeGreaterThan(4);
  });

  it("lets concurrent writers of one day's rollup rows commit without deadlocks", async () => {
    const day = Date.UTC(2026, 10, 5, 10);
    const ids = Array.from({ length: 40 }, (_, i) => `conc_${i}`);
    await store.db
      .insert(pgSchema.jobs)
      .values(
        ids.map((id, i) => job(id, { model: `m${i % 2}`, worker: `w${i % 3}`, createdAt: day })),
      );
    const writers = Array.from(
      { length: 4 },
      () => new pg.Client({ connectionString: database.url }),
    );
    await Promise.all(writers.map((w) => w.connect()));
    try {
      await Promise.all(
        writers.map(async (writer, n) => {
          for (const id of ids.filter((_, i) => i % 4 === n)) {
            await writer.query("BEGIN");
            await writer.query(
              `UPDATE jobs SET verdict = 'verified', charged_units = 10 WHERE job_id = $1`,
              [id],
            );
            await writer.query(`UPDATE jobs SET escrowed_units = 20 WHERE job_id = $1`, [id]);
            await writer.query("COMMIT");
          }
        }),
      );
    } finally {
      await Promise.all(writers.map((w) => w.end()));
    }
    const total = await store.pool.query(
      `SELECT jobs_verified, charged_units::text, escrowed_units::text FROM job_rollups
       WHERE grain = 1 AND day = $1 ORDER BY model`,
      [Math.floor(day / 86_400_000)],
    );
    expect(total.rows).toEqual([
      { jobs_verified: "20", charged_units: "200", escrowed_units: "400" },
      { jobs_verified: "20", charged_units: "200", escrowed_units: "400" },
    ]);
  });
});
