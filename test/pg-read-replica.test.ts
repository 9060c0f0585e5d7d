import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { usePostgresDatabase } from "./support/postgres.js";

/**
 * A `DATABASE_URL` naming a read replica by mistake: every write is refused (25006, as on a
 * database with `default_transaction_read_only` on, which stands in for one here).
 */

const database = usePostgresDatabase({ migrated: true });
let store: PgStore | undefined;

afterAll(async () => {
  await store?.close();
});

describe("the nightly verify on a read-only PostgreSQL (a read replica's URL)", () => {
  it("exits 2 saying the database is read-only and to point DATABASE_URL at the primary", async () => {
    const name = decodeURIComponent(new URL(database.url).pathname.slice(1));
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    await admin.query(`ALTER DATABASE "${name}" SET default_transaction_read_only = on`);
    await admin.end();
    store = openPostgres(database.url, { poolSize: 2, statementTimeoutMs: 30_000 });
    let settled = 0;
    const summary = await runNightlyVerification(
      store,
      {
        runUntilSettled: async () => {
          settled++;
          return { status: "completed" };
        },
      },
      { from: Date.UTC(2026, 10, 1), to: Date.UTC(2026, 10, 2), timeoutMs: 10_000 },
    );
    expect(summary.exitCode).toBe(2);
    expect(summary.reason).toMatch(
      /^database: cannot execute INSERT in a read-only transaction \(the database is read-only \(a read replica or standby, or default_transaction_read_only on\): point DATABASE_URL at the primary\)/,
    );
    expect(settled).toBe(0);
  });
});
