import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import pg from "pg";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres, type TestPostgresServer } from "./postgres-server.js";

/**
 * vitest globalSetup: one PostgreSQL server for the whole run, for the test files that use
 * test/support/postgres.ts (each gets its own fresh database there). With `TEST_POSTGRES_URL`
 * set (a superuser URL, e.g. postgres://postgres:pw@localhost:5432/postgres), that server is
 * used and nothing is started. Otherwise an embedded server is started, but only when a test
 * file of this run imports the helper: `vitest run test/config.test.ts` pays nothing. A server
 * that cannot start is not a reason to skip: the PostgreSQL tests then fail with the reason.
 */

/**
 * What test files receive through `inject("postgres")`. `migratedUrl`: a database of the run
 * with every migration applied, which nobody connects to, for test files to copy
 * (test/support/postgres.ts `createMigrated`); absent when migrating it failed (each file then
 * migrates its own and fails with the reason).
 */
export type ProvidedPostgres =
  | {
      adminUrl: string;
      databasePrefix: string;
      migratedUrl?: string;
      /**
       * The run's own server (which skips fsync): its databases are made with `STRATEGY =
       * FILE_COPY` (test/support/postgres.ts). Not set for a server of the user's, which may
       * predate the clause (PostgreSQL 15) or pay a checkpoint's fsync for each copy.
       */
      fileCopy?: true;
    }
  | { unavailable: string };

declare module "vitest" {
  export interface ProvidedContext {
    postgres: ProvidedPostgres;
  }
}

/** The markers a test file carries when it needs PostgreSQL: it imports one of the helpers. */
const helperImports = ["support/postgres.js", "support/dialects.js"];

/** True when a test file this run executes asks for PostgreSQL. */
async function runNeedsPostgres(project: TestProject): Promise<boolean> {
  // The file filters of `vitest run a b`; not public API, so when it is missing every test
  // file of the project counts (the server then starts whenever a PostgreSQL test exists).
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern;
  const { testFiles } = await project.globTestFiles(filters);
  return testFiles.some((file) => {
    const text = readFileSync(file, "utf8");
    return helperImports.some((marker) => text.includes(marker));
  });
}

/**
 * The embedded server, started by the first project of the run that needs it and stopped when
 * the last of them is torn down: both projects (vitest.config.ts) hold PostgreSQL test files,
 * and each loads this module afresh, so the one server is kept on the main process's global.
 */
interface Embedded {
  server: Promise<TestPostgresServer>;
  users: number;
  /** The migrated database of both projects (`migratedDatabase`): the first one's. */
  migrated?: Promise<string | undefined>;
}
const runServer = Symbol.for("decentral-audit.test-postgres");
const holder = globalThis as { [runServer]?: Embedded | undefined };

let external: { adminUrl: string; databasePrefixes: string[] } | undefined;

/**
 * Creates a migrated database (named with a project's prefix, so dropped with the run's others)
 * and returns its URL; undefined when that fails. Migrated once for the run: a
 * block of a test file migrated a database of its own, about half a second of the server's on
 * a loaded 2-core runner, for each of some 80 blocks.
 */
async function migratedDatabase(adminUrl: string, databasePrefix: string) {
  const name = `${databasePrefix}migrated`;
  const admin = new pg.Client({ connectionString: adminUrl });
  try {
    await admin.connect();
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
  } catch {
    // The files' own databases fail with the reason.
    return undefined;
  } finally {
    await admin.end().catch(() => undefined);
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  // Loaded here only: a run without PostgreSQL tests imports none of the program.
  const { openPostgres } = await import("../../src/db/pg/client.js");
  const { migratePostgres } = await import("../../src/db/pg/migrate.js");
  const store = openPostgres(url.href, { poolSize: 1, statementTimeoutMs: 0 });
  try {
    await migratePostgres(store.pool);
    return url.href;
  } catch {
    return undefined;
  } finally {
    // Copied only while nobody is connected to it.
    await store.close();
  }
}

/** What the project's files receive: the server, and its migrated database when made. */
async function provided(
  adminUrl: string,
  databasePrefix: string,
  migrated: Promise<string | undefined>,
  fileCopy = false,
): Promise<ProvidedPostgres> {
  const migratedUrl = await migrated;
  return {
    adminUrl,
    databasePrefix,
    ...(migratedUrl === undefined ? {} : { migratedUrl }),
    ...(fileCopy ? { fileCopy: true as const } : {}),
  };
}

export async function setup(project: TestProject): Promise<void> {
  const databasePrefix = `da_test_${randomBytes(4).toString("hex")}_`;
  const configured = process.env.TEST_POSTGRES_URL;
  if (configured !== undefined && configured !== "") {
    external = {
      adminUrl: configured,
      databasePrefixes: [...(external?.databasePrefixes ?? []), databasePrefix],
    };
    project.provide(
      "postgres",
      (await runNeedsPostgres(project))
        ? await provided(configured, databasePrefix, migratedDatabase(configured, databasePrefix))
        : { adminUrl: configured, databasePrefix },
    );
    return;
  }
  if (!(await runNeedsPostgres(project))) {
    project.provide("postgres", { unavailable: "no test file of this run imports the helper" });
    return;
  }
  holder[runServer] ??= { server: startEmbeddedPostgres(), users: 0 };
  const embedded = holder[runServer];
  embedded.users++;
  try {
    const server = await embedded.server;
    embedded.migrated ??= migratedDatabase(server.adminUrl, databasePrefix);
    project.provide(
      "postgres",
      await provided(server.adminUrl, databasePrefix, embedded.migrated, true),
    );
  } catch (error) {
    project.provide("postgres", { unavailable: (error as Error).message });
  }
}

export async function teardown(): Promise<void> {
  const embedded = holder[runServer];
  if (embedded !== undefined && --embedded.users === 0) {
    const { server } = embedded;
    holder[runServer] = undefined;
    await (await server.catch(() => undefined))?.stop();
  }
  const prefixes = external?.databasePrefixes.splice(0) ?? [];
  if (external !== undefined && prefixes.length > 0) {
    // Databases a crashed test file left behind on the user's server.
    const client = new pg.Client({ connectionString: external.adminUrl });
    await client.connect();
    try {
      const left = await client.query<{ datname: string }>(
        "SELECT datname FROM pg_database WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) AS p WHERE starts_with(datname, p))",
        [prefixes],
      );
      for (const { datname } of left.rows) {
        await client.query(
          `DROP DATABASE IF EXISTS ${client.escapeIdentifier(datname)} WITH (FORCE)`,
        );
      }
    } finally {
      await client.end();
    }
  }
}
