import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { readConnectionRoom } from "../src/db/pg/connection-room.js";
import { runOnce, usePostgresDatabase } from "./support/postgres.js";

/**
 * The connections `serve` counts on (its workers bound by them): a role's CONNECTION LIMIT is
 * the login role's, the one DATABASE_URL names, even when its sessions switch to another role
 * (`ALTER ROLE … SET role`, a common way to own the schema by a role nobody logs in as).
 */

const database = usePostgresDatabase();
const suffix = randomBytes(4).toString("hex");
const login = `da_login_${suffix}`;
const owner = `da_owner_${suffix}`;
const pools: pg.Pool[] = [];

const asAdmin = (sql: string) => runOnce(database.url, sql);

afterAll(async () => {
  for (const pool of pools) await pool.end();
  await asAdmin(`DROP ROLE IF EXISTS ${login}`);
  await asAdmin(`DROP ROLE IF EXISTS ${owner}`);
});

describe("the connections PostgreSQL allows this program's role", () => {
  it("are the login role's CONNECTION LIMIT when its sessions SET another role", async () => {
    const name = decodeURIComponent(new URL(database.url).pathname.slice(1));
    await asAdmin(`CREATE ROLE ${owner} NOLOGIN`);
    await asAdmin(`CREATE ROLE ${login} LOGIN PASSWORD 'pw' CONNECTION LIMIT 20 IN ROLE ${owner}`);
    await asAdmin(`ALTER ROLE ${login} IN DATABASE "${name}" SET role = '${owner}'`);
    const url = new URL(database.url);
    url.username = login;
    url.password = "pw";
    const pool = new pg.Pool({ connectionString: url.href, max: 1 });
    pools.push(pool);
    const { rows } = await pool.query<{ user: string }>("SELECT current_user AS user");
    expect(rows[0]?.user).toBe(owner);
    const room = await readConnectionRoom(pool);
    expect(room).toMatchObject({ role: 20, connections: 20 });
  });
});
