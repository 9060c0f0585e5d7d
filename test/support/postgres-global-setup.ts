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

/** What test files receive through `inject("postgres")`. */
export type ProvidedPostgres =
  | { adminUrl: string; databasePrefix: string }
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
}
const runServer = Symbol.for("decentral-audit.test-postgres");
const holder = globalThis as { [runServer]?: Embedded | undefined };

let external: { adminUrl: string; databasePrefixes: string[] } | undefined;

export async function setup(project: TestProject): Promise<void> {
  const databasePrefix = `da_test_${randomBytes(4).toString("hex")}_`;
  const configured = process.env.TEST_POSTGRES_URL;
  if (configured !== undefined && configured !== "") {
    external = {
      adminUrl: configured,
      databasePrefixes: [...(external?.databasePrefixes ?? []), databasePrefix],
    };
    project.provide("postgres", { adminUrl: configured, databasePrefix });
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
    project.provide("postgres", { adminUrl: server.adminUrl, databasePrefix });
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
