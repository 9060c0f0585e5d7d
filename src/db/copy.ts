import { realpathSync } from "node:fs";
import Database from "better-sqlite3";
import { getTableName, is } from "drizzle-orm";
import { readMigrationFiles } from "drizzle-orm/migrator";
import { type PgColumn, PgTable, getTableConfig as pgTableConfig } from "drizzle-orm/pg-core";
import { SQLiteTable, getTableConfig as sqliteTableConfig } from "drizzle-orm/sqlite-core";
import type pg from "pg";
import { isTransientPgError } from "./client.js";
import { migrationsFolder } from "./migrate.js";
import {
  defaultPostgresSettings,
  openPostgres,
  type PostgresSettings,
  withPgTransaction,
} from "./pg/client.js";
import { migratePostgres } from "./pg/migrate.js";
import * as pgSchema from "./pg/schema.js";
import { foldRollupDeltasSql, rollupDeltasTable } from "./rollups.js";
import * as sqliteSchema from "./schema.js";
import { highName, highPart, joinParts, lowName, lowPart } from "./split-sums.js";
import { parseDatabaseUrl } from "./url.js";

/**
 * `db copy`: moves a SQLite store into a PostgreSQL database, every table, exactly. Each table
 * is read in primary-key order in batches; each batch is inserted in one PostgreSQL
 * transaction together with the table's high-water mark (`db_copy_progress`), so a copy that
 * is killed loses at most the batch in flight (rolled back) and a rerun continues after the
 * last committed key. Rows are inserted with ON CONFLICT DO NOTHING as well, so no rerun can
 * duplicate one. At the end, row counts and the sums of every money column are compared per
 * table between the two databases.
 *
 * The source is read inside one read transaction (a consistent snapshot, while other
 * processes may still write to it); stop the writers first for the target to end equal.
 */

/** Options of one copy run. */
export interface CopyOptions {
  /** SQLite file to copy from (migrated to the current schema, rollups complete). */
  from: string;
  /** postgres:// URL to copy into; migrated first. */
  to: string;
  settings?: PostgresSettings;
  /** Rows per batch (fewer for wide tables: at most 60,000 parameters a statement). Default 1000. */
  batchRows?: number;
  /** Stop after this many batches (tests: a copy interrupted between two batches). */
  maxBatches?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** One table's figures on both sides. */
export interface TableComparison {
  table: string;
  sourceRows: string;
  targetRows: string;
  /** Sum of each money column (base units, lamports), as decimal strings; null when no row has one. */
  sums: { column: string; source: string | null; target: string | null }[];
  equal: boolean;
}

export interface CopyResult {
  /** Rows inserted by this run, per table. */
  copied: Record<string, number>;
  /** False when `maxBatches` stopped the run early (rerun to continue). */
  complete: boolean;
  /** Per-table comparison; empty when the run stopped early. */
  comparison: TableComparison[];
  /** True when every table has the same row count and money sums on both sides. */
  equal: boolean;
}

/** Thrown when the copy cannot start or go on; the message says what to do. */
export class CopyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CopyError";
  }
}

/** PostgreSQL's limit is 65,535 bind parameters per statement. */
const MAX_PARAMETERS = 60_000;

/** Tables of the SQLite file that are not data: SQLite's own, and each store's migration log. */
const bookkeeping = new Set([
  "__drizzle_migrations",
  "sqlite_sequence",
  "sqlite_stat1",
  // Rollup changes not yet summed into job_rollups: summed before the copy (sumPendingRollups).
  rollupDeltasTable,
]);

const progressTable = "db_copy_progress";

type KeyValue = bigint | number | string | Buffer | null;

interface TablePlan {
  name: string;
  /** Column names, in SQLite schema order. */
  columns: string[];
  /**
   * PostgreSQL columns written, in `columns` order: a sum SQLite keeps in two parts
   * (`<name>_lo`, `<name>_hi`: src/db/split-sums.ts) is one numeric `<name>`, in the low part's
   * place.
   */
  targetColumns: string[];
  /** The sums kept in two parts: the PostgreSQL column and the index of each part in `columns`. */
  split: { column: string; low: number; high: number }[];
  /** Primary-key column names, in key order. */
  key: string[];
  /** PostgreSQL column of each name. */
  target: Map<string, PgColumn>;
  /** Money columns (bigint read as JS bigint on PostgreSQL). */
  money: string[];
  /** Tables this one references (copied first). */
  references: string[];
  /** An identity column to move past the copied ids. */
  identity: string | undefined;
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** SQLite's sums kept in two parts whose PostgreSQL mirror is one numeric column. */
function splitColumns(columns: string[], target: Map<string, PgColumn>): TablePlan["split"] {
  return columns.flatMap((name, low) => {
    const column = name.endsWith("_lo") ? name.slice(0, -3) : undefined;
    const high = column === undefined ? -1 : columns.indexOf(highName(column));
    if (column === undefined || high < 0 || target.get(column)?.getSQLType() !== "numeric") {
      return [];
    }
    return [{ column, low, high }];
  });
}

/** A SQLite row as the PostgreSQL columns take it: each sum kept in two parts joined. */
function targetRow(plan: TablePlan, row: unknown[]): unknown[] {
  if (plan.split.length === 0) return row;
  const out = [...row];
  for (const s of plan.split) {
    out[s.low] = joinParts(row[s.high] as bigint, row[s.low] as bigint);
  }
  return out.filter((_, i) => !plan.split.some((s) => s.high === i));
}

/** The tables to copy, parents before the tables that reference them. */
function planTables(): TablePlan[] {
  const pgTables = new Map(
    (Object.values(pgSchema) as unknown[])
      .filter((v): v is PgTable => is(v, PgTable))
      .map((t) => [getTableName(t), pgTableConfig(t)]),
  );
  const plans: TablePlan[] = [];
  const liteTables = (Object.values(sqliteSchema) as unknown[]).filter((v): v is SQLiteTable =>
    is(v, SQLiteTable),
  );
  for (const table of liteTables) {
    const lite = sqliteTableConfig(table);
    const mirror = pgTables.get(lite.name);
    if (mirror === undefined) {
      throw new CopyError(`table ${lite.name} has no PostgreSQL mirror in src/db/pg/schema.ts`);
    }
    const target = new Map(mirror.columns.map((c) => [c.name, c]));
    const columns = lite.columns.map((c) => c.name);
    const split = splitColumns(columns, target);
    for (const [i, column] of columns.entries()) {
      const part = split.some((s) => s.low === i || s.high === i);
      if (!target.has(column) && !part) {
        throw new CopyError(`column ${lite.name}.${column} has no PostgreSQL mirror`);
      }
    }
    plans.push({
      name: lite.name,
      columns,
      targetColumns: columns.flatMap((c, i) =>
        split.some((s) => s.high === i) ? [] : [split.find((s) => s.low === i)?.column ?? c],
      ),
      split,
      key: [
        ...lite.columns.filter((c) => c.primary).map((c) => c.name),
        ...lite.primaryKeys.flatMap((k) => k.columns.map((c) => c.name)),
      ],
      target,
      // Money: amounts (bigint) and the stored sums of them (numeric).
      money: mirror.columns
        .filter((c) => c.columnType === "PgBigInt64" || c.getSQLType() === "numeric")
        .map((c) => c.name),
      references: mirror.foreignKeys.map((fk) => getTableName(fk.reference().foreignTable)),
      identity: mirror.columns.find((c) => (c as { generatedIdentity?: unknown }).generatedIdentity)
        ?.name,
    });
  }
  const ordered: TablePlan[] = [];
  const visit = (plan: TablePlan) => {
    if (ordered.includes(plan)) return;
    for (const parent of plan.references) {
      const p = plans.find((x) => x.name === parent);
      if (p !== undefined && p !== plan) visit(p);
    }
    ordered.push(plan);
  };
  for (const plan of plans) visit(plan);
  return ordered;
}

/** A SQLite value as the PostgreSQL column takes it (text parameters, cast by the server). */
function toTarget(plan: TablePlan, column: string, value: unknown): string | boolean | null {
  if (value === null) return null;
  const target = plan.target.get(column)!;
  const type = target.getSQLType();
  const fail = (what: string): never => {
    throw new CopyError(`${plan.name}.${column}: ${what} cannot be copied into ${type}`);
  };
  if (Buffer.isBuffer(value)) {
    // job_rollups' x'' marks a dimension that is absent; PostgreSQL keeps it as NULL.
    if (plan.name === "job_rollups" && value.length === 0 && !target.notNull) return null;
    return fail("a BLOB");
  }
  if (type === "boolean") {
    if (value === 0n || value === 0) return false;
    if (value === 1n || value === 1) return true;
    return fail(`the value ${String(value)}`);
  }
  if (type === "bigint" && typeof value !== "bigint")
    return fail(`the non-integer ${String(value)}`);
  if (typeof value === "string") {
    // PostgreSQL text cannot hold U+0000; say which row instead of a driver error.
    if (value.includes("\u0000")) return fail("text with a NUL character");
    return value;
  }
  if (typeof value === "bigint" || typeof value === "number") return String(value);
  return fail(`a ${typeof value}`);
}

/** Key values kept in `db_copy_progress` as JSON (bigints and BLOBs tagged). */
function encodeKey(values: KeyValue[]): unknown {
  return values.map((v) =>
    typeof v === "bigint"
      ? { i: v.toString() }
      : Buffer.isBuffer(v)
        ? { b: v.toString("hex") }
        : v === null || typeof v === "string"
          ? v
          : { n: v },
  );
}

function decodeKey(json: unknown): KeyValue[] {
  return (json as unknown[]).map((v) => {
    if (v === null || typeof v === "string") return v;
    const tagged = v as { i?: string; b?: string; n?: number };
    if (tagged.i !== undefined) return BigInt(tagged.i);
    if (tagged.b !== undefined) return Buffer.from(tagged.b, "hex");
    return tagged.n ?? null;
  });
}

/** Refuses a source that is not at the current schema or still owes rollup days. */
function checkSource(source: Database.Database, path: string): void {
  const expected = readMigrationFiles({ migrationsFolder }).at(-1)?.folderMillis;
  let last: bigint | number | string | undefined;
  try {
    last = source.prepare(`SELECT max(created_at) FROM "__drizzle_migrations"`).pluck().get() as
      | bigint
      | undefined;
  } catch {
    throw new CopyError(`${path} is not a decentral-audit store (no migrations table)`);
  }
  if (expected !== undefined && last != null && Number(last) > expected) {
    throw new CopyError(
      `${path} was migrated by a newer version of decentral-audit: copy it with that version`,
    );
  }
  if (last === undefined || last === null || Number(last) !== expected) {
    throw new CopyError(
      `${path} is not at the current schema: run \`decentral-audit db migrate --db ${path}\` first`,
    );
  }
  if (source.prepare("SELECT 1 FROM job_rollups_backfill LIMIT 1").get() !== undefined) {
    throw new CopyError(
      `${path} has report rollups still to build: run \`decentral-audit db migrate --db ${path}\` first`,
    );
  }
}

const pendingRollupsSql = `SELECT 1 FROM ${rollupDeltasTable} LIMIT 1`;

/**
 * Sums the source's pending rollup deltas (SQLite only, src/db/rollups.ts) into job_rollups, on
 * a connection of its own, so the rollups copied are whole.
 */
function sumPendingRollups(source: Database.Database, path: string): void {
  if (source.prepare(pendingRollupsSql).get() === undefined) return;
  const writer = new Database(path, { fileMustExist: true });
  try {
    writer.pragma("busy_timeout = 5000");
    const statements = foldRollupDeltasSql().map((text) => writer.prepare(text));
    writer
      .transaction(() => {
        for (const statement of statements) statement.run();
      })
      .immediate();
  } finally {
    writer.close();
  }
}

/** Counts and money sums of one table on both sides. */
async function compareTable(
  plan: TablePlan,
  source: Database.Database,
  target: pg.Pool,
): Promise<TableComparison> {
  const sums = plan.money.map((c) => `sum(${quote(c)})`);
  // SQLite sums each in two parts (src/db/split-sums.ts): one sum() fails past 2^63.
  const parts = plan.money.flatMap((c) =>
    plan.split.some((s) => s.column === c)
      ? [`sum(${quote(lowName(c))})`, `sum(${quote(highName(c))})`]
      : [`sum(${lowPart(quote(c))})`, `sum(${highPart(quote(c))})`],
  );
  const liteParts = source
    .prepare(`SELECT count(*), ${[...parts, "NULL"].join(", ")} FROM ${quote(plan.name)}`)
    .safeIntegers(true)
    .raw(true)
    .get() as (bigint | null)[];
  const lite = [
    liteParts[0],
    ...plan.money.map((_, i) => {
      const [low, high] = [liteParts[1 + 2 * i], liteParts[2 + 2 * i]];
      return low == null || high == null ? null : joinParts(high, low);
    }),
  ];
  const pgRow = await target.query({
    text: `SELECT count(*)::text, ${[...sums.map((s) => `${s}::text`), "NULL"].join(", ")} FROM ${quote(plan.name)}`,
    rowMode: "array",
  });
  const remote = pgRow.rows[0] as (string | null)[];
  const text = (v: bigint | string | null | undefined) => (v == null ? null : String(v));
  const comparison: TableComparison = {
    table: plan.name,
    sourceRows: String(lite[0]),
    targetRows: String(remote[0]),
    sums: plan.money.map((column, i) => ({
      column,
      source: text(lite[i + 1]),
      target: text(remote[i + 1]),
    })),
    equal: false,
  };
  comparison.equal =
    comparison.sourceRows === comparison.targetRows &&
    comparison.sums.every((s) => s.source === s.target);
  return comparison;
}

/**
 * Copies the SQLite store at `from` into the PostgreSQL database at `to` (see the top of this
 * file), then compares both. A target that holds rows this copy did not write, or a copy of
 * another source, is refused.
 */
/** A postgres:// URL as it may be printed: its password replaced. */
function redactedOf(url: string): string {
  const target = parseDatabaseUrl(url);
  return target.kind === "postgres" ? target.redacted : url;
}

export async function copySqliteToPostgres(options: CopyOptions): Promise<CopyResult> {
  const log = options.log ?? (() => {});
  if (!/^postgres(ql)?:\/\//i.test(options.to)) {
    throw new CopyError("--to must be a postgres:// or postgresql:// URL");
  }
  const plans = planTables();
  let sourcePath: string;
  try {
    sourcePath = realpathSync(options.from);
  } catch {
    throw new CopyError(`no SQLite store at ${options.from}`);
  }
  // Errors about the URL are said of `--to`, where it came from: "DATABASE_URL names no user"
  // sent the operator to a setting the command does not read.
  const ofTo = (message: string) => message.replace(/^DATABASE_URL\b/, "--to");
  let target: ReturnType<typeof openPostgres>;
  try {
    target = openPostgres(options.to, options.settings ?? defaultPostgresSettings);
  } catch (error) {
    throw new CopyError(ofTo(error instanceof Error ? error.message : String(error)));
  }
  const source = new Database(sourcePath, { readonly: true, fileMustExist: true });
  try {
    checkSource(source, options.from);
    sumPendingRollups(source, sourcePath);
    const known = new Set(plans.map((p) => p.name));
    const extra = (
      source
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .pluck()
        .all() as string[]
    ).filter((name) => !known.has(name) && !bookkeeping.has(name));
    if (extra.length > 0) {
      throw new CopyError(`tables with no PostgreSQL mirror: ${extra.join(", ")}`);
    }
    await migratePostgres(target.pool).catch((error: unknown) => {
      // A server that is not there: the raw "connect ECONNREFUSED" named neither flag nor URL.
      if (!isTransientPgError(error)) throw error;
      throw new CopyError(
        `--to: cannot reach PostgreSQL at ${redactedOf(options.to)}: ${error instanceof Error ? error.message : String(error)}`,
      );
    });
    await target.pool.query(
      `CREATE TABLE IF NOT EXISTS ${progressTable} (
        table_name text PRIMARY KEY, source text NOT NULL, last_key json,
        rows bigint NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false)`,
    );
    const progress = new Map(
      (
        await target.pool.query<{
          table_name: string;
          source: string;
          last_key: unknown;
          done: boolean;
        }>(`SELECT table_name, source, last_key, done FROM ${progressTable}`)
      ).rows.map((r) => [r.table_name, r]),
    );
    for (const row of progress.values()) {
      if (row.source !== sourcePath) {
        throw new CopyError(
          `the target already holds a copy of ${row.source}; copy ${sourcePath} into an empty database`,
        );
      }
    }
    for (const plan of plans) {
      if (progress.has(plan.name)) continue;
      const any = await target.pool.query(`SELECT 1 FROM ${quote(plan.name)} LIMIT 1`);
      if (any.rowCount !== 0) {
        throw new CopyError(
          `the target's table ${plan.name} already holds rows this copy did not write; copy into an empty database`,
        );
      }
    }

    // One snapshot of the source for the whole copy and the comparison.
    source.prepare("BEGIN").run();
    if (source.prepare(pendingRollupsSql).get() !== undefined) {
      throw new CopyError(
        `${options.from} is being written to (report rollups changed since the copy began): stop the writers and copy again`,
      );
    }
    const copied: Record<string, number> = {};
    let batches = 0;
    let complete = true;
    tables: for (const plan of plans) {
      copied[plan.name] = 0;
      const state = progress.get(plan.name);
      if (state?.done) continue;
      let lastKey: KeyValue[] | undefined =
        state?.last_key == null ? undefined : decodeKey(state.last_key);
      const batchRows = Math.max(
        1,
        Math.min(options.batchRows ?? 1000, Math.floor(MAX_PARAMETERS / plan.columns.length)),
      );
      const columns = plan.columns.map(quote).join(", ");
      const order = plan.key.map(quote).join(", ");
      const after = `(${order}) > (${plan.key.map(() => "?").join(", ")})`;
      const first = source
        .prepare(`SELECT ${columns} FROM ${quote(plan.name)} ORDER BY ${order} LIMIT ?`)
        .safeIntegers(true)
        .raw(true);
      const next = source
        .prepare(
          `SELECT ${columns} FROM ${quote(plan.name)} WHERE ${after} ORDER BY ${order} LIMIT ?`,
        )
        .safeIntegers(true)
        .raw(true);
      const keyIndexes = plan.key.map((k) => plan.columns.indexOf(k));
      for (;;) {
        if (options.maxBatches !== undefined && batches >= options.maxBatches) {
          complete = false;
          break tables;
        }
        const rows = (
          lastKey === undefined ? first.all(batchRows) : next.all(...lastKey, batchRows)
        ) as unknown[][];
        const end = rows.length < batchRows;
        const newKey =
          rows.length === 0 ? lastKey : keyIndexes.map((i) => rows.at(-1)![i] as KeyValue);
        await writeBatch(target.pool, plan, rows, {
          source: sourcePath,
          lastKey: newKey,
          done: end,
        });
        batches++;
        copied[plan.name] = (copied[plan.name] ?? 0) + rows.length;
        lastKey = newKey;
        if (end) break;
      }
      log(`copied ${plan.name}: ${copied[plan.name]} rows`);
    }
    if (!complete) {
      source.prepare("COMMIT").run();
      return { copied, complete: false, comparison: [], equal: false };
    }
    const comparison: TableComparison[] = [];
    for (const plan of plans) comparison.push(await compareTable(plan, source, target.pool));
    source.prepare("COMMIT").run();
    return { copied, complete: true, comparison, equal: comparison.every((c) => c.equal) };
  } finally {
    if (source.inTransaction) source.prepare("ROLLBACK").run();
    source.close();
    await target.close();
  }
}

/**
 * Tables whose triggers keep a derived table (`jobs` -> `job_rollups` and
 * `job_conflict_signatures`, `ledger_lines` -> `ledger_daily`): the derived table is copied as it is, so their rows go in with the triggers
 * off for that batch's transaction only (DDL is transactional: a kill leaves them on).
 */
const derivedSources = new Set(["jobs", "ledger_lines"]);

/** Inserts one batch and moves the table's high-water mark in one transaction. */
async function writeBatch(
  pool: pg.Pool,
  plan: TablePlan,
  rows: unknown[][],
  progress: { source: string; lastKey: KeyValue[] | undefined; done: boolean },
): Promise<void> {
  await withPgTransaction(pool, async (client) => {
    const quiet = derivedSources.has(plan.name) && rows.length > 0;
    if (quiet) await client.query(`ALTER TABLE ${quote(plan.name)} DISABLE TRIGGER USER`);
    if (rows.length > 0) {
      const values: unknown[] = [];
      const tuples = rows.map((row) => {
        const params = targetRow(plan, row).map((value, i) => {
          values.push(toTarget(plan, plan.targetColumns[i]!, value));
          return `$${values.length}`;
        });
        return `(${params.join(", ")})`;
      });
      await client.query(
        `INSERT INTO ${quote(plan.name)} (${plan.targetColumns.map(quote).join(", ")}) VALUES ${tuples.join(", ")} ON CONFLICT DO NOTHING`,
        values,
      );
    }
    if (quiet) await client.query(`ALTER TABLE ${quote(plan.name)} ENABLE TRIGGER USER`);
    if (progress.done && plan.identity !== undefined) {
      // Ids inserted explicitly do not move the identity: start new rows after the copied ones.
      await client.query(
        `SELECT setval(pg_get_serial_sequence($1, $2), max(${quote(plan.identity)})) FROM ${quote(plan.name)} HAVING max(${quote(plan.identity)}) IS NOT NULL`,
        [plan.name, plan.identity],
      );
    }
    await client.query(
      `INSERT INTO ${progressTable} (table_name, source, last_key, rows, done)
       VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (table_name) DO UPDATE SET last_key = EXCLUDED.last_key,
         rows = ${progressTable}.rows + EXCLUDED.rows, done = EXCLUDED.done`,
      [
        plan.name,
        progress.source,
        progress.lastKey === undefined ? null : JSON.stringify(encodeKey(progress.lastKey)),
        rows.length,
        progress.done,
      ],
    );
  });
}

/** The comparison as printed by `db copy`: one line per table, and a verdict. */
export function formatComparison(comparison: TableComparison[]): string[] {
  const width = Math.max(...comparison.map((c) => c.table.length));
  const lines = comparison.map((c) => {
    const rows =
      c.sourceRows === c.targetRows
        ? `${c.sourceRows} ${c.sourceRows === "1" ? "row" : "rows"}`
        : `rows ${c.sourceRows} -> ${c.targetRows}`;
    const sums = c.sums
      .filter((s) => s.source !== null || s.target !== null)
      .map((s) =>
        s.source === s.target
          ? `${s.column} ${s.source}`
          : `${s.column} ${s.source} -> ${s.target}`,
      );
    return `${c.equal ? "ok  " : "DIFF"} ${c.table.padEnd(width)}  ${[rows, ...sums].join(", ")}`;
  });
  const differing = comparison.filter((c) => !c.equal).length;
  lines.push(
    differing === 0
      ? `every table has the same rows and money sums (${comparison.length} tables)`
      : `${differing} of ${comparison.length} tables differ`,
  );
  return lines;
}

/**
 * `decentral-audit db copy --from <sqlite> --to <postgres url>`: runs the copy, prints the
 * comparison, and returns the exit code: 0 equal, 1 any table differs, 2 stopped early.
 */
export async function runCopyCommand(
  options: Pick<CopyOptions, "from" | "to" | "settings" | "batchRows" | "maxBatches">,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const result = await copySqliteToPostgres({ ...options, log: err });
  if (!result.complete) {
    err("stopped before the end: run the same command again to continue");
    return 2;
  }
  for (const line of formatComparison(result.comparison)) out(line);
  return result.equal ? 0 : 1;
}
