import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import {
  openPgWriterConnection,
  RECEIPT_WRITER_LOCK_CLASS,
  ReceiptTurnWaitError,
} from "../src/store/pg/group-commit.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { reportsStore } from "../src/store/reports.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { receipt } from "./support/recorder-fixtures.js";

/**
 * Another host's receipt group (or a verdict or ledger write taking the receipt writers' turn)
 * held longer than DATABASE_STATEMENT_TIMEOUT_MS: the wait for the turn is a lock wait, not a
 * database away. It used to be cancelled at the statement timeout and taken for an outage: the
 * proxy refused every new paid job with 503 and /readyz failed until the turn was free.
 */

const database = usePostgresDatabase({ migrated: true });
const log = createLogger({ level: "silent" });
const statementTimeoutMs = 300;
let store: PgStore;
let holder: pg.Client;

beforeAll(async () => {
  store = openPostgres(database.url, { poolSize: 2, statementTimeoutMs });
  holder = new pg.Client({ connectionString: database.url });
  await holder.connect();
});

afterAll(async () => {
  await holder?.end();
  await store?.close();
});

describe("the PostgreSQL receipt writer waiting for a turn held past the statement timeout", () => {
  it("keeps taking paid work and writes the receipt once the turn is free", async () => {
    const writer = createReceiptWriter(store, { log, maxRetryDelayMs: 200 });
    const recorded = receipt();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT pg_advisory_xact_lock($1::int, 0)", [RECEIPT_WRITER_LOCK_CLASS]);
      const written = writer.run(recordReceiptsUnit([recorded], "proxy"));
      let settled = false;
      void written.then(
        () => {
          settled = true;
        },
        () => {
          settled = true;
        },
      );
      // The turn is held for four statement timeouts, as a slow group on another host would.
      const seen = new Set<string>();
      const until = performance.now() + 4 * statementTimeoutMs;
      while (performance.now() < until) {
        const health = writer.health();
        seen.add(`reachable=${health.reachable} full=${writer.full()}`);
        await sleep(10);
      }
      expect(settled).toBe(false);
      await holder.query("COMMIT");
      expect(await written).toEqual([{ outcome: "created" }]);
      expect([...seen]).toEqual(["reachable=true full=false"]);
      expect(writer.health()).toEqual({ reachable: true });
      expect((await reportsStore(store).auditRows(recorded.jobId))?.job.jobId).toBe(recorded.jobId);
    } finally {
      await holder.query("COMMIT").catch(() => {});
      await writer.close();
    }
  }, 30_000);
});

describe("the PostgreSQL receipt writer closing while it waits for the writers' turn", () => {
  it("stops within refuseAfterMs and rejects the waiting receipt, not at the turn's timeout", async () => {
    const writer = createReceiptWriter(store, { log, refuseAfterMs: 500 });
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT pg_advisory_xact_lock($1::int, 0)", [RECEIPT_WRITER_LOCK_CLASS]);
      const written = writer.run(recordReceiptsUnit([receipt()], "proxy"));
      const outcome = written.then(
        () => "written",
        (error: Error) => error.message,
      );
      // Its group waits for the turn (the advisory lock) on the server (read outside the
      // holder's transaction, which sees one snapshot of the activity).
      const waits = async () =>
        (
          await store.pool.query(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
          )
        ).rows[0]?.n;
      await expect.poll(waits, { timeout: 10_000, interval: 20 }).toBe(1);
      const started = performance.now();
      const closed = await Promise.race([
        writer.close().then(() => "closed"),
        sleep(8_000).then(() => "still waiting"),
      ]);
      expect(closed).toBe("closed");
      expect(performance.now() - started).toBeLessThan(3_000);
      expect(await outcome).toMatch(/did not take the write before the writer closed/);
    } finally {
      await holder.query("COMMIT").catch(() => {});
      await writer.close();
    }
  }, 30_000);
});

/**
 * DATABASE_STATEMENT_TIMEOUT_MS takes up to 2^31 - 1 ms. The turn's wait is four of them: past
 * 536,870,911 ms (about 6 days) a statement_timeout PostgreSQL refuses (outside 0 ..
 * 2147483647), so every receipt group failed and serve refused all paid work. The pool's wait
 * for a connection is two of them: past about 12 days a timer Node fires at once, so every
 * connection failed as timed out.
 */
describe("the PostgreSQL receipt writer under the longest statement timeouts the config takes", () => {
  it.each([600_000_000, 2_147_483_647])(
    "writes a receipt at %i ms",
    async (statementTimeoutMs) => {
      const long = openPostgres(database.url, { poolSize: 2, statementTimeoutMs });
      const writer = createReceiptWriter(long, { log, maxRetryDelayMs: 200, refuseAfterMs: 3_000 });
      const recorded = receipt();
      try {
        expect(await writer.run(recordReceiptsUnit([recorded], "proxy"))).toEqual([
          { outcome: "created" },
        ]);
      } finally {
        await writer.close();
        await long.close();
      }
    },
    10_000,
  );
});

describe("the PostgreSQL receipt writer's connection told to stop waiting before a group waits", () => {
  it("does not wait the turn's own timeout in a group begun after the stop's deadline", async () => {
    // The stop's deadline fired between two groups (the first was writing, none waited): the
    // next group of the backlog then waited for the turn held by another host, up to a minute.
    const connection = openPgWriterConnection(store);
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT pg_advisory_xact_lock($1::int, 0)", [RECEIPT_WRITER_LOCK_CLASS]);
      await connection.cancelTurnWait();
      const started = performance.now();
      const outcome = await Promise.race([
        connection.together([recordReceiptsUnit([receipt()], "proxy")]).then(
          () => "written",
          (error: unknown) => (error instanceof ReceiptTurnWaitError ? "turn wait" : String(error)),
        ),
        sleep(8_000).then(() => "still waiting"),
      ]);
      expect(outcome).toBe("turn wait");
      expect(performance.now() - started).toBeLessThan(3_000);
    } finally {
      await holder.query("COMMIT").catch(() => {});
      await connection.close();
    }
  }, 30_000);
});
