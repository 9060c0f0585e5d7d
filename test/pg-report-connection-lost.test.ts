import pg from "pg";
import { describe, expect, it } from "vitest";
import { usePostgresDatabase } from "./support/postgres.js";
import { startCli } from "./support/service-process.js";

/**
 * A `report` whose connection PostgreSQL ends in the middle of its transaction (a failover, an
 * operator's `pg_terminate_backend`): the command exits 2 saying what happened to the
 * connection, not the statement the query builder had sent last ("Failed query: rollback").
 */

const database = usePostgresDatabase();

describe("a report on PostgreSQL whose connection is ended mid-transaction", () => {
  it("exits 2 naming the lost connection, not the statement it was running", async () => {
    expect(await startCli(["db", "migrate", "--db", database.url]).exited).toBe(0);
    const holder = new pg.Client({ connectionString: database.url });
    // Another session: the holder's transaction would see one snapshot of pg_stat_activity.
    const watcher = new pg.Client({ connectionString: database.url });
    await Promise.all([holder.connect(), watcher.connect()]);
    try {
      // The report's reads wait behind this lock, inside their transaction.
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE jobs, job_rollups IN ACCESS EXCLUSIVE MODE");
      const report = startCli([
        ...["report", "reconciliation", "--from", "2026-01-01", "--to", "2026-02-01"],
        ...["--format", "json", "--out", "-", "--db", database.url],
      ]);
      let waiting: number | undefined;
      await expect
        .poll(
          async () => {
            const { rows } = await watcher.query<{ pid: number }>(
              "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            );
            waiting = rows[0]?.pid;
            return waiting;
          },
          { timeout: 60_000, interval: 50 },
        )
        .toBeDefined();
      await watcher.query("SELECT pg_terminate_backend($1)", [waiting]);
      expect(await report.exited).toBe(2);
      const said = report.stderr();
      expect(said).not.toMatch(/Failed query|SELECT/);
      expect(said).toMatch(/^error: .*connection/m);
    } finally {
      await holder.query("ROLLBACK").catch(() => {});
      await Promise.all([holder.end(), watcher.end()]);
    }
  }, 120_000);
});
