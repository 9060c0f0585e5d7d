import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { openPostgres } from "../src/db/pg/client.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { startCli } from "./support/service-process.js";

/**
 * The server's connections used up (`max_connections`, or a role's or database's `CONNECTION
 * LIMIT`): a role limited to two, both held. A superuser is never limited, so the program runs
 * as a role of its own.
 */

const database = usePostgresDatabase({ migrated: true });
const role = `audit_lim_${randomBytes(4).toString("hex")}`;
const held: pg.Client[] = [];

afterAll(async () => {
  for (const client of held) await client.end();
  const admin = openPostgres(database.url);
  await admin.pool.query(`DROP OWNED BY ${role}`).catch(() => {});
  await admin.pool.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
  await admin.close();
});

describe("PostgreSQL with no connection left for the program's role", () => {
  it("says the connection limit is reached, not that the server cannot be reached", async () => {
    const admin = openPostgres(database.url);
    try {
      for (const statement of [
        `CREATE ROLE ${role} LOGIN PASSWORD 'pw' CONNECTION LIMIT 2`,
        `GRANT USAGE ON SCHEMA public, drizzle TO ${role}`,
        `GRANT SELECT ON ALL TABLES IN SCHEMA public, drizzle TO ${role}`,
      ]) {
        await admin.pool.query(statement);
      }
    } finally {
      await admin.close();
    }
    const url = new URL(database.url);
    url.username = role;
    url.password = "pw";
    for (let i = 0; i < 2; i++) {
      const client = new pg.Client({ connectionString: url.href });
      await client.connect();
      held.push(client);
    }
    const run = startCli(["report", "reconciliation", "--since", "24h", "--db", url.href], {
      LOG_LEVEL: "warn",
    });
    expect(await run.exited).toBe(2);
    const said = run.stderr();
    expect(said).not.toMatch(/cannot reach/);
    expect(said).toMatch(
      new RegExp(
        `PostgreSQL at postgres://${role}:\\*\\*\\*@.* has no connection left for this process: too many connections for role "${role}" \\(`,
      ),
    );
    expect(said).toMatch(/DATABASE_POOL_SIZE/);
  }, 60_000);
});
