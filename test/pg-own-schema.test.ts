import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { startCli } from "./support/service-process.js";

/**
 * A store in a schema that is not `public`: the role's own schema (`CREATE SCHEMA AUTHORIZATION
 * role`), which PostgreSQL 15 and later suggest, as `public` takes no CREATE from other roles
 * there. The role's default search_path (`"$user", public`) puts every table in it.
 */

const database = usePostgresDatabase();
const role = `own_${randomBytes(4).toString("hex")}`;
const password = randomBytes(12).toString("hex");
let admin: PgStore;

function asRole(url: string): string {
  const target = new URL(url);
  target.username = role;
  target.password = password;
  return target.href;
}

beforeAll(async () => {
  admin = openPostgres(database.url);
  await admin.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  await admin.pool.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
  await admin.pool.query(`CREATE SCHEMA AUTHORIZATION ${role}`);
  const name = decodeURIComponent(new URL(database.url).pathname.slice(1));
  await admin.pool.query(`GRANT CREATE ON DATABASE "${name}" TO ${role}`);
});

afterAll(async () => {
  await admin?.pool.query(`DROP OWNED BY ${role}`);
  await admin?.pool.query(`DROP SCHEMA IF EXISTS ${role} CASCADE`);
  await admin?.close();
  const server = openPostgres(database.url);
  await server.pool.query(`DROP ROLE IF EXISTS ${role}`);
  await server.close();
});

describe("a store in the role's own schema", () => {
  it("migrates there, its foreign keys naming its own tables, and a command reads it", async () => {
    const store = openPostgres(asRole(database.url));
    try {
      // The first migration's foreign keys named "public"."jobs": not there, nothing applied.
      const { applied } = await migratePostgres(store.pool);
      expect(applied).toBeGreaterThan(30);
      const fks = await store.pool.query<{ child: string; parent: string }>(
        `SELECT conrelid::regclass::text AS child, confrelid::regclass::text AS parent
           FROM pg_constraint WHERE contype = 'f' ORDER BY 1`,
      );
      expect(fks.rows.length).toBeGreaterThan(0);
      for (const fk of fks.rows) expect(fk.parent).toMatch(/^(jobs|access_tokens)$/);
      const tables = await admin.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = $1`,
        [role],
      );
      expect(tables.rows[0]?.n).toBeGreaterThan(10);
    } finally {
      await store.close();
    }
    // A command on it reads its tables (and, as every start does, finds nothing to migrate).
    const report = startCli(
      [
        "report",
        "reconciliation",
        "--since",
        "7d",
        "--format",
        "json",
        "--db",
        asRole(database.url),
      ],
      { LOG_LEVEL: "warn" },
    );
    expect(await report.exited).toBe(0);
    expect(report.stderr()).toBe("");
  }, 60_000);
});
