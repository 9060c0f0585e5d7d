import { once } from "node:events";
import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { isTransientPgError } from "../src/db/client.js";
import { openPostgres } from "../src/db/pg/client.js";
import { createJobsApiStore, type JobsApiAnswer } from "../src/store/jobs-api.js";
import { RECEIPT_WRITER_LOCK_CLASS } from "../src/store/pg/group-commit.js";
import { createReceiptsStore } from "../src/store/receipts.js";
import { reportsStore } from "../src/store/reports.js";
import { useStoreAndLocker } from "./support/pg-locker.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { receipt } from "./support/recorder-fixtures.js";

/**
 * A pooled connection's wait is not a connection attempt: receipts and jobs-API answers written
 * on a store's own pool (ingest without a writer, a nightly run, `import`) hold a connection
 * while they wait for the receipt writers' turn, and another host's group may hold that turn
 * for seconds. Those queued behind them for a free connection failed after the 5 s connect
 * timeout ("timeout exceeded when trying to connect"), taken for a database away.
 */

const database = usePostgresDatabase({ migrated: true });
/** The connect timeout of this file's pools: the production 5 s, shortened to keep it quick. */
const connectTimeoutMs = 1_000;
const pgs = useStoreAndLocker(database, {
  poolSize: 2,
  statementTimeoutMs: 30_000,
  connectTimeoutMs,
});

const answer = (): JobsApiAnswer => ({
  status: "pending",
  creditsChargedUnits: null,
  escrowTx: null,
  settlementTx: null,
  worker: null,
  raw: { status: "pending" },
});

describe("a PostgreSQL pool whose connections all wait for the receipt writers' turn", () => {
  it("keeps the writes queued for a connection until the turn is free, past the connect timeout", async () => {
    const known = receipt();
    await createReceiptsStore(pgs.store).record([known], "ingest");
    // Another host's slow group holds the turn for longer than the connect timeout.
    await pgs.locker.query("SELECT pg_advisory_lock($1::int, 0)", [RECEIPT_WRITER_LOCK_CLASS]);
    const receipts = Array.from({ length: 4 }, () => receipt());
    const started = Date.now();
    const writes = [
      ...receipts.map((r) => createReceiptsStore(pgs.store).record([r], "ingest")),
      createJobsApiStore(pgs.store).recordAnswer(known.jobId, answer(), 100),
      createJobsApiStore(pgs.store).recordAnswer(known.jobId, answer(), 200),
    ].map((p) =>
      p.then(
        () => "written",
        (e: Error) => e.message,
      ),
    );
    await expect
      .poll(() => [pgs.store.pool.totalCount, pgs.store.pool.waitingCount], { timeout: 10_000 })
      .toEqual([2, 4]);
    await new Promise((r) => setTimeout(r, 2 * connectTimeoutMs - (Date.now() - started)));
    await pgs.locker.query("SELECT pg_advisory_unlock($1::int, 0)", [RECEIPT_WRITER_LOCK_CLASS]);
    expect(await Promise.all(writes)).toEqual(Array(6).fill("written"));
    for (const r of receipts) {
      expect((await reportsStore(pgs.store).auditRows(r.jobId))?.job.jobId).toBe(r.jobId);
    }
  }, 30_000);

  it("still gives up a connection attempt to a server that does not answer within the connect timeout", async () => {
    // Accepts TCP and never speaks: a host gone quiet behind a live address.
    const silent = createServer(() => {}).listen(0, "127.0.0.1");
    await once(silent, "listening");
    const url = new URL(database.url);
    url.hostname = "127.0.0.1";
    url.port = String((silent.address() as { port: number }).port);
    const mute = openPostgres(url.href, {
      poolSize: 1,
      statementTimeoutMs: 30_000,
      connectTimeoutMs,
    });
    try {
      const started = Date.now();
      const failure = await mute.pool.query("SELECT 1").then(
        () => null,
        (error: unknown) => error,
      );
      expect(Date.now() - started).toBeLessThan(connectTimeoutMs + 3_000);
      // Taken for a database away, as before: an API request gets 503 with Retry-After.
      expect(isTransientPgError(failure)).toBe(true);
    } finally {
      await mute.close();
      silent.close();
    }
  }, 20_000);
});
