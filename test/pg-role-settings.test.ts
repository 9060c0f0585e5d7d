import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { runOnce, usePostgresDatabase } from "./support/postgres.js";

/**
 * A DBA's settings on the role (`ALTER ROLE … SET`), which every session of it starts with: the
 * store's own bound on statements is `DATABASE_STATEMENT_TIMEOUT_MS` (0: none), and a wait for a
 * lock is bounded by it alone, as the program waits out a lock held past it (README).
 */

const database = usePostgresDatabase();
const stores: PgStore[] = [];

afterAll(async () => {
  for (const store of stores) await store.close();
});

const asAdmin = (sql: string) => runOnce(database.url, sql);

describe("PostgreSQL role settings the store does not ask for", () => {
  it("runs a statement longer than the role's statement_timeout when DATABASE_STATEMENT_TIMEOUT_MS is 0", async () => {
    const name = decodeURIComponent(new URL(database.url).pathname.slice(1));
    await asAdmin(`ALTER ROLE CURRENT_USER IN DATABASE "${name}" SET statement_timeout = '50ms'`);
    const store = openPostgres(database.url, { poolSize: 2, statementTimeoutMs: 0 });
    stores.push(store);
    const { rows } = await store.pool.query<{ s: string }>(
      "SELECT current_setting('statement_timeout') AS s",
    );
    expect(rows[0]?.s).toBe("0");
    await expect(store.pool.query("SELECT pg_sleep(0.2)")).resolves.toBeDefined();
  });

  it("waits for a table lock within its statement timeout whatever the role's lock_timeout", async () => {
    const name = decodeURIComponent(new URL(database.url).pathname.slice(1));
    await asAdmin(`ALTER ROLE CURRENT_USER IN DATABASE "${name}" SET lock_timeout = '50ms'`);
    const store = openPostgres(database.url, { poolSize: 2, statementTimeoutMs: 5_000 });
    stores.push(store);
    await store.pool.query("CREATE TABLE IF NOT EXISTS held (x int)");
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    // The COMMIT's answer may come after the waiting SELECT's: ending the client before it
    // came failed its query ("Connection terminated") as an unhandled rejection.
    let committed: Promise<unknown> | undefined;
    try {
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE held IN ACCESS EXCLUSIVE MODE");
      const release = setTimeout(() => {
        committed = holder.query("COMMIT");
      }, 300);
      const started = performance.now();
      await expect(store.pool.query("SELECT count(*) FROM held")).resolves.toBeDefined();
      expect(performance.now() - started).toBeGreaterThan(250);
      clearTimeout(release);
      await committed;
    } finally {
      await committed?.catch(() => {});
      await holder.end();
    }
  });
});
