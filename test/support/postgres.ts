import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, inject } from "vitest";
import type { ProvidedPostgres } from "./postgres-global-setup.js";

/**
 * PostgreSQL for a test file: a fresh, empty database of its own on the run's one server
 * (started by test/support/postgres-global-setup.ts, or TEST_POSTGRES_URL), dropped after the
 * file. Importing this module is what tells the global setup that the run needs the server.
 */

/** A database created for one test file. */
export interface TestDatabase {
  /** postgres:// URL of the database, as the server's superuser. */
  readonly url: string;
  /**
   * Another fresh database on the same server (for a test that needs two); a copy of the
   * database at `template` (a URL on this server nobody is connected to) when given.
   */
  create(options?: { template?: string }): Promise<string>;
  /**
   * Another fresh database with every migration applied: a copy of the run's migrated one
   * (`migratedTemplate`), or one migrated here when the run has none.
   */
  createMigrated(): Promise<string>;
  /**
   * The URL of the run's database with every migration applied (test/support/
   * postgres-global-setup.ts), for `create({ template })`; undefined when the run has none.
   */
  readonly migratedTemplate: string | undefined;
  /** The names of the databases made so far (`url`'s, `create`'s), all dropped after the file. */
  readonly databases: readonly string[];
}

function provided(): Exclude<ProvidedPostgres, { unavailable: string }> {
  const value: ProvidedPostgres | undefined = inject("postgres");
  if (value === undefined || "unavailable" in value) {
    throw new Error(
      `no PostgreSQL server for the tests: ${value?.unavailable ?? "the global setup did not run (vitest.config.ts globalSetup)"}. Set TEST_POSTGRES_URL to use your own server.`,
    );
  }
  return value;
}

/** Runs `body` on a connection to the server's admin database. */
async function withAdmin<T>(body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: provided().adminUrl });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates an empty database (or a copy of `template`) and returns its URL. On the run's own
 * server, copied file by file (`FILE_COPY`), not block by block through the WAL (`WAL_LOG`, the
 * default since PostgreSQL 15): with fsync off, a copy took about half the time and its drop a
 * fifth.
 */
async function createDatabase(created: string[], template?: string): Promise<string> {
  const { adminUrl, databasePrefix, fileCopy } = provided();
  const name = `${databasePrefix}${randomBytes(6).toString("hex")}`;
  const source = template && decodeURIComponent(new URL(template).pathname.slice(1));
  await withAdmin((client) =>
    client.query(
      `CREATE DATABASE ${client.escapeIdentifier(name)}${source ? ` TEMPLATE ${client.escapeIdentifier(source)}` : ""}${fileCopy ? " STRATEGY = FILE_COPY" : ""}`,
    ),
  );
  created.push(name);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.href;
}

/**
 * A fresh database with every migration applied: a copy of the run's migrated database, or,
 * when the run has none, one migrated here (which then fails with the reason).
 */
async function createMigratedDatabase(created: string[]): Promise<string> {
  const template = provided().migratedUrl;
  if (template !== undefined) return await createDatabase(created, template);
  const url = await createDatabase(created);
  // Loaded here only: the module is imported by files that open no store.
  const { openPostgres } = await import("../../src/db/pg/client.js");
  const { migratePostgres } = await import("../../src/db/pg/migrate.js");
  const store = openPostgres(url, { poolSize: 1, statementTimeoutMs: 30_000 });
  try {
    await migratePostgres(store.pool);
  } finally {
    await store.close();
  }
  return url;
}

/**
 * Declares that this test file uses PostgreSQL: before its tests a fresh database is
 * created (fails, never skips, when there is no server), after them every database it created
 * is dropped. Call at the top level of the file or of a describe block. `migrated`: the
 * database has every migration applied (a copy of the run's migrated one): migrating a
 * database of its own cost a file about half a second of the server's on a loaded runner.
 * `url: false`: none is created before the tests (`url` then throws), for a caller that makes
 * every database it uses with `create` or `createMigrated` (test/support/dialects.ts): the empty
 * one took 180-1,185 ms of the server's at load 24, which nobody used.
 */
export function usePostgresDatabase(
  options: { migrated?: boolean; url?: boolean } = {},
): TestDatabase {
  const created: string[] = [];
  let url: string | undefined;
  if (options.url !== false) {
    beforeAll(async () => {
      url = options.migrated
        ? await createMigratedDatabase(created)
        : await createDatabase(created);
    });
  }
  afterAll(async () => {
    // Checked before the drop, which would end them: in the shared-imports project the next
    // file runs in this process beside a pool left open.
    const left = await connectionsLeftOpen(created);
    // Four at a time: a file with a store per test leaves a hundred, each dropped in up to a
    // second on a loaded runner, and all within the hook's timeout.
    const lanes = Array.from({ length: 4 }, (_, lane) =>
      created.filter((_, i) => i % 4 === lane),
    ).filter((names) => names.length > 0);
    await Promise.all(
      lanes.map((names) =>
        withAdmin(async (client) => {
          for (const name of names) {
            await client.query(
              `DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`,
            );
          }
        }),
      ),
    );
    if (left > 0) {
      throw new Error(
        `${left} connection(s) to this file's PostgreSQL databases were still open at its end: close every store and pool it opens (store.close(), pool.end())`,
      );
    }
  });
  return {
    get url() {
      if (url === undefined) {
        throw new Error(
          options.url === false
            ? "no test database was asked for (usePostgresDatabase({ url: false })): make one with create()"
            : "the test database is created in beforeAll",
        );
      }
      return url;
    },
    create: (options) => createDatabase(created, options?.template),
    createMigrated: () => createMigratedDatabase(created),
    get migratedTemplate() {
      return provided().migratedUrl;
    },
    databases: created,
  };
}

/**
 * Client connections to the databases `names` that stay open for up to `waitMs` (a pool's end
 * returns before the server's session has gone): a test file's stores and pools all closed,
 * none is left.
 */
export async function connectionsLeftOpen(
  names: readonly string[],
  waitMs = 2_000,
): Promise<number> {
  if (names.length === 0) return 0;
  return await withAdmin(async (client) => {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const { rows } = await client.query<{ open: number }>(
        `SELECT count(*)::int AS open FROM pg_stat_activity
          WHERE backend_type = 'client backend' AND datname = ANY($1::text[])`,
        [names],
      );
      const open = rows[0]?.open ?? 0;
      if (open === 0 || Date.now() >= deadline) return open;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });
}

/** Runs `sql` on a connection of its own to the database at `url`. */
export async function runOnce(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
