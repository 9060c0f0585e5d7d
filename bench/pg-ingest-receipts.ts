/**
 * Receipts per second through `ingestReceiptsVia` (the receipt writer, batches of 1,000 new
 * receipts), on PostgreSQL and, for comparison, on a SQLite file. Not part of `npm run bench`.
 *
 *   node --import tsx bench/pg-ingest-receipts.ts [batches] [inFlight]
 *
 * PostgreSQL is TEST_POSTGRES_URL's server when set, else a throwaway embedded one (fsync off).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { openSqliteStore, type Store } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { openPostgres } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { createLogger } from "../src/log.js";
import { ingestReceiptsVia } from "../src/recorder/ingest.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { startEmbeddedPostgres } from "../test/support/postgres-server.js";
import { wireReceipt } from "../test/support/recorder-fixtures.js";

const batches = Number(process.argv[2] ?? 20);
const inFlight = Number(process.argv[3] ?? 1);

async function measure(label: string, store: Store): Promise<void> {
  const writer = createReceiptWriter(store, { log: createLogger({ level: "warn" }) });
  const work = Array.from({ length: batches }, () =>
    Array.from({ length: 1000 }, () => wireReceipt()),
  );
  // One warm-up batch (connections, prepared statements), not counted.
  await ingestReceiptsVia(
    writer,
    Array.from({ length: 1000 }, () => wireReceipt()),
    "ingest",
  );
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < work.length) {
        const batch = work[next++] as unknown[];
        const results = await ingestReceiptsVia(writer, batch, "ingest");
        if (results.some((r) => r.status !== "created")) throw new Error("not all created");
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await writer.close();
  const rate = Math.round((batches * 1000) / seconds);
  console.log(
    `${label}: ${batches} batches of 1,000, ${inFlight} in flight: ${seconds.toFixed(2)} s, ${rate} receipts/s`,
  );
}

const server = process.env.TEST_POSTGRES_URL
  ? { adminUrl: process.env.TEST_POSTGRES_URL, stop: async () => {} }
  : await startEmbeddedPostgres();
const name = `bench_ingest_${process.pid}`;
const admin = new pg.Client({ connectionString: server.adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${name}`);
const url = new URL(server.adminUrl);
url.pathname = `/${name}`;
const pgStore = openPostgres(url.href);
const dir = mkdtempSync(join(tmpdir(), "bench-ingest-"));
try {
  await migratePostgres(pgStore.pool);
  await measure("postgres", pgStore);
  const sqlite = openSqliteStore(join(dir, "audit.db"));
  migrateStore(sqlite);
  await measure("sqlite", sqlite);
  sqlite.close();
} finally {
  await pgStore.close();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
