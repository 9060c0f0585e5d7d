import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { createLogger } from "../src/log.js";
import { ingestReceiptsVia } from "../src/recorder/ingest.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { freezingRelay } from "./support/freezing-relay.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { wireReceipt } from "./support/recorder-fixtures.js";

/**
 * A receipt group's COMMIT that landed while its answer was lost with the connection: the
 * writer wrote the group again, found its own rows, and `POST /jobs` answered `duplicate` for
 * receipts sent once. A receipt sent again from elsewhere is still a duplicate.
 */

const database = usePostgresDatabase();
const log = createLogger({ level: "silent" });
let direct: PgStore;
let relay: Awaited<ReturnType<typeof freezingRelay>>;
let store: PgStore;

beforeAll(async () => {
  direct = openPostgres(database.url, { poolSize: 1, statementTimeoutMs: 10_000 });
  await migratePostgres(direct.pool);
  relay = await freezingRelay(database.url);
  store = openPostgres(relay.url, { poolSize: 2, statementTimeoutMs: 10_000 });
});

afterAll(async () => {
  await store?.close();
  relay?.close();
  await direct?.close();
});

describe("the PostgreSQL receipt writer whose COMMIT's answer is lost", () => {
  it("answers as the commit did, once, and a receipt sent again is a duplicate", async () => {
    const writer = createReceiptWriter(store, { log });
    const items = [wireReceipt(), wireReceipt()];
    const jobIds = items.map((item) => item.job_id as string);
    try {
      // A first group opens the writer's connection; the next COMMIT's answer is cut.
      await ingestReceiptsVia(writer, [wireReceipt()], "ingest");
      relay.cutNextCommitReply();
      const results = await ingestReceiptsVia(writer, items, "ingest");
      expect(results.map((r) => r.status)).toEqual(["created", "created"]);
      const { rows } = await direct.pool.query(
        "SELECT count(*)::int AS n FROM jobs WHERE job_id = ANY($1::text[])",
        [jobIds],
      );
      expect(rows).toEqual([{ n: 2 }]);
      const again = await ingestReceiptsVia(writer, items, "ingest");
      expect(again.map((r) => r.status)).toEqual(["duplicate", "duplicate"]);
      expect(writer.health()).toEqual({ reachable: true });
    } finally {
      await writer.close();
    }
  }, 30_000);

  it("writes again, once, a group whose COMMIT never reached the server", async () => {
    const writer = createReceiptWriter(store, { log });
    const items = [wireReceipt()];
    try {
      await ingestReceiptsVia(writer, [wireReceipt()], "ingest");
      relay.dropNextCommit();
      const results = await ingestReceiptsVia(writer, items, "ingest");
      expect(results.map((r) => r.status)).toEqual(["created"]);
      const { rows } = await direct.pool.query(
        "SELECT count(*)::int AS n FROM jobs WHERE job_id = $1",
        [items[0]?.job_id],
      );
      expect(rows).toEqual([{ n: 1 }]);
    } finally {
      await writer.close();
    }
  }, 30_000);

  it("writes again a group lost before its COMMIT whose session the server still holds open", async () => {
    const writer = createReceiptWriter(store, { log });
    const items = [wireReceipt()];
    try {
      await ingestReceiptsVia(writer, [wireReceipt()], "ingest");
      relay.loseNextCommitUnseen();
      const started = performance.now();
      const results = await ingestReceiptsVia(writer, items, "ingest");
      expect(results.map((r) => r.status)).toEqual(["created"]);
      expect(performance.now() - started).toBeLessThan(10_000);
      const { rows } = await direct.pool.query(
        "SELECT count(*)::int AS n FROM jobs WHERE job_id = $1",
        [items[0]?.job_id],
      );
      expect(rows).toEqual([{ n: 1 }]);
      expect(writer.health()).toEqual({ reachable: true });
    } finally {
      await writer.close();
    }
  }, 30_000);
});
