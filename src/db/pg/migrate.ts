import { fileURLToPath } from "node:url";
import { readMigrationFiles } from "drizzle-orm/migrator";
import type pg from "pg";
import { ForeignStoreError, storeKind } from "../client.js";
import { latestKnown, refuseNewerDatabase } from "../migration-guard.js";
import { openPostgres, type PostgresSettings, withPgTransaction } from "./client.js";

/** migrations/postgres at the package root, found from both src/db/pg and dist/db/pg. */
export const pgMigrationsFolder = fileURLToPath(
  new URL("../../../migrations/postgres", import.meta.url),
);

/** drizzle's bookkeeping table on PostgreSQL (schema `drizzle`), as drizzle's own migrator. */
const migrationsTable = `"drizzle"."__drizzle_migrations"`;

/**
 * Key of the transaction-level advisory lock every migrator takes first. Fixed, so every
 * process of every version of this program agrees on it: the first 8 bytes of
 * sha256("decentral-audit:migrate") as a signed 64-bit integer.
 */
export const MIGRATION_LOCK_KEY = "6798086142420800131";

export interface PgMigrationResult {
  /** Migrations this call applied (0 when another process had applied them). */
  applied: number;
}

/**
 * Applies every pending PostgreSQL migration in one transaction. Safe to run from many
 * processes at once (each `serve` migrates at start): the transaction first takes an advisory
 * lock, so the others wait, then read what the first applied and find nothing to do. The lock
 * is transaction-level: a process killed mid-migration releases it with its connection, and
 * its half of the migration is rolled back (PostgreSQL DDL is transactional). No statement
 * timeout applies inside: building an index on a large table may take long.
 */
export async function migratePostgres(
  pool: pg.Pool,
  options: {
    /** How long to wait for another session's migration lock (ms); default: no limit. */
    waitMs?: number;
  } = {},
): Promise<PgMigrationResult> {
  const known = latestKnown(pgMigrationsFolder, "postgres");
  const migrations = readMigrationFiles({ migrationsFolder: pgMigrationsFolder });
  return await withPgTransaction(pool, async (client) => {
    await client.query("SET LOCAL statement_timeout = 0");
    // A run with a deadline (the nightly's --timeout) waits for another session's migration
    // only what is left of it: without a limit, a lock held by a stuck `db migrate` or a long
    // migration kept `verify --timeout 8s` waiting for as long as it was held.
    const waitMs = options.waitMs === undefined ? 0 : Math.max(1, Math.floor(options.waitMs));
    await client.query(`SET LOCAL lock_timeout = ${waitMs}`);
    try {
      await client.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
    } catch (error) {
      if ((error as { code?: unknown }).code !== "55P03") throw error;
      throw new MigrationLockHeldError(
        `the migration lock is held by another session (a migration in progress, or a stuck \`db migrate\`): waited ${Math.round(waitMs / 1000)} s`,
        { cause: error },
      );
    }
    // The migration itself is not bounded: building an index on a large table may take long.
    await client.query("SET LOCAL lock_timeout = 0");
    // Another application's database is refused before anything is created in it: its tables
    // could share names with this program's, and a run over it would find nothing to judge.
    const found = await client.query<{ database: string; ours: boolean; tables: string[] }>(
      `SELECT current_database() AS database,
              to_regclass('drizzle.__drizzle_migrations') IS NOT NULL AS ours,
              ARRAY(SELECT c.relname::text FROM pg_class c
                    WHERE c.relnamespace = current_schema()::regnamespace
                      AND c.relkind IN ('r', 'p')
                      -- An extension's own table (PostGIS's spatial_ref_sys) is no application's.
                      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                      WHERE d.classid = 'pg_class'::regclass
                                        AND d.objid = c.oid AND d.deptype = 'e')
                    ORDER BY c.relname) AS tables`,
    );
    const row = found.rows[0];
    if (row) {
      const kind = storeKind(row.tables, row.ours);
      if (kind.kind === "foreign") {
        throw new ForeignStoreError(`PostgreSQL database "${row.database}"`, kind.holds);
      }
    }
    // Created only when missing: PostgreSQL checks CREATE on the database (a schema) or the
    // schema (a table) before IF NOT EXISTS, so a role of least privilege (no CREATE, as it
    // should be once an owner migrated) could not start on an up-to-date database.
    if (!row?.ours) {
      await needing("CREATE on the database", `create the schema "drizzle"`, () =>
        client.query(`CREATE SCHEMA IF NOT EXISTS "drizzle"`),
      );
      await needing(`CREATE on schema "drizzle"`, `create ${migrationsTable}`, () =>
        client.query(
          `CREATE TABLE IF NOT EXISTS ${migrationsTable} (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)`,
        ),
      );
    }
    const last = await client.query<{ created_at: string }>(
      `SELECT created_at FROM ${migrationsTable} ORDER BY created_at DESC LIMIT 1`,
    );
    const lastMillis = last.rows[0] === undefined ? undefined : Number(last.rows[0].created_at);
    refuseNewerDatabase(lastMillis, known.millis, known.tag);
    let applied = 0;
    for (const migration of migrations) {
      if (lastMillis !== undefined && lastMillis >= migration.folderMillis) continue;
      await needing(
        "the owner's rights (CREATE on the schema, ownership of the tables it alters)",
        `apply migration ${migration.folderMillis}`,
        async () => {
          for (const statement of migration.sql) {
            if (statement.trim() !== "") await client.query(inCurrentSchema(statement));
          }
          await client.query(`INSERT INTO ${migrationsTable} (hash, created_at) VALUES ($1, $2)`, [
            migration.hash,
            migration.folderMillis,
          ]);
        },
      );
      applied++;
    }
    return { applied };
  });
}

/**
 * A generated statement with drizzle-kit's `"public".` taken out of its references, so they name
 * the table in the schema the tables are created in (the first of the role's search_path: a
 * schema named after the role, as PostgreSQL 15 and later suggest, since `public` takes no
 * CREATE from other roles there). Kept, the foreign keys of the first migration named
 * `public.jobs`, which is not there, and no migration could be applied.
 */
export function inCurrentSchema(statement: string): string {
  return statement.replaceAll(/\bREFERENCES "public"\./g, "REFERENCES ");
}

/** Another session held the migration lock longer than the start could wait (SQLSTATE 55P03). */
export class MigrationLockHeldError extends Error {
  constructor(message: string, options: { cause: unknown }) {
    super(message, options);
    this.name = "MigrationLockHeldError";
  }
}

/** A migration that needs a privilege the connecting role lacks (SQLSTATE 42501). */
export class MigrationPrivilegeError extends Error {
  constructor(message: string, options: { cause: unknown }) {
    super(message, options);
    this.name = "MigrationPrivilegeError";
  }
}

/**
 * Runs `work`; a permission denied is thrown again naming what was to be done and the
 * privilege it takes: PostgreSQL's own message names neither the privilege nor the remedy.
 */
async function needing<T>(privilege: string, what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if ((error as { code?: unknown }).code !== "42501") throw error;
    throw new MigrationPrivilegeError(
      `cannot ${what}: ${(error as Error).message}; the role needs ${privilege} (run \`decentral-audit db migrate\` as the database's owner, then serve as this role)`,
      { cause: error },
    );
  }
}

/** `db migrate` on PostgreSQL: opens a connection to `url`, applies what is pending, closes. */
export async function migratePostgresUrl(
  url: string,
  settings: PostgresSettings,
): Promise<PgMigrationResult> {
  const store = openPostgres(url, { ...settings, poolSize: 1 });
  try {
    return await migratePostgres(store.pool);
  } finally {
    await store.close();
  }
}
