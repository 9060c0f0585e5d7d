import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultPostgresSettings } from "../src/db/pg/client.js";
import { MIGRATION_LOCK_KEY, migratePostgresUrl } from "../src/db/pg/migrate.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { startCli } from "./support/service-process.js";

/**
 * `verify` started while another session holds the migration's advisory lock (a `serve`
 * migrating a large table, a stuck `db migrate`): the start-up migration waited on the lock
 * with no timeout, whatever the run's --timeout.
 */
describe("verify started while another session holds the PostgreSQL migration lock", () => {
  const database = usePostgresDatabase();
  let holder: pg.Client;
  beforeAll(async () => {
    await migratePostgresUrl(database.url, defaultPostgresSettings);
    holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    await holder.query("BEGIN");
    await holder.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
  }, 60_000);
  afterAll(async () => {
    await holder?.query("ROLLBACK").catch(() => {});
    await holder?.end();
  });

  it("ends within its --timeout, saying the migration lock is held", async () => {
    const started = performance.now();
    const args = ["verify", "--since", "1h", "--timeout", "8s", "--json"];
    const verify = startCli([...args, "--profile", "localnet"], {
      DATABASE_URL: database.url,
      SOLANA_RPC_URLS: "http://127.0.0.1:9",
    });
    const timer = setTimeout(() => verify.child.kill("SIGKILL"), 40_000);
    const code = await verify.exited;
    clearTimeout(timer);
    const ms = performance.now() - started;
    expect(verify.stderr()).toMatch(/migration lock is held by another session/);
    expect(code).toBe(2);
    expect(ms).toBeLessThan(8000 + 6000);
  }, 60_000);
});
