import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { createLogger } from "../src/log.js";
import { ingestReceiptsVia } from "../src/recorder/ingest.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { freezingRelay } from "./support/freezing-relay.js";
import { startEmbeddedPostgres, type TestPostgresServer } from "./support/postgres-server.js";
import { wireReceipt } from "./support/recorder-fixtures.js";

/**
 * A receipt group whose COMMIT's answer was lost, its fate then asked of a server that may have
 * given its transaction id to another transaction: a standby promoted after a failover
 * (asynchronous: it never saw the group), or the same server after a crash recovery (its
 * unflushed transactions gone). `pg_xact_status` there said "committed" of someone else's
 * transaction, and the group's receipts were answered as written and lost. Servers of this
 * file's own: one is stopped, killed and copied.
 */

const log = createLogger({ level: "silent" });
let primary: TestPostgresServer;
let standby: TestPostgresServer | undefined;
let relay: Awaited<ReturnType<typeof freezingRelay>>;
const opened: PgStore[] = [];

/** `url` with the database `name`. */
function databaseUrl(url: string, name: string): string {
  const at = new URL(url);
  at.pathname = `/${name}`;
  return at.href;
}

/** Runs `statement` on a connection of its own to `url`. */
async function query<T extends pg.QueryResultRow>(url: string, statement: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => {});
  await client.connect();
  try {
    return (await client.query<T>(statement)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/** The next transaction id `url`'s server gives out (each call takes one). */
async function nextXid(url: string): Promise<bigint> {
  const [row] = await query<{ xid: string }>(url, "SELECT pg_current_xact_id()::text AS xid");
  return BigInt(row?.xid ?? "0");
}

/** Commits transactions on `url` until one with an id past `xid` did: ids up to it are taken. */
async function commitPast(url: string, xid: bigint): Promise<void> {
  while ((await nextXid(url)) <= xid) {}
}

/** The rows of `jobIds` on `url`. */
async function jobsOn(url: string, jobIds: string[]): Promise<number> {
  const list = jobIds.map((id) => `'${id}'`).join(",");
  const [row] = await query<{ n: number }>(
    url,
    `SELECT count(*)::int AS n FROM jobs WHERE job_id IN (${list})`,
  );
  return row?.n ?? -1;
}

/** Resolves with the call `arm` hands its callback, once it comes. */
function once(arm: (then: () => void) => void): Promise<void> {
  return new Promise((resolve) => arm(resolve));
}

beforeAll(async () => {
  primary = await startEmbeddedPostgres();
  await query(primary.adminUrl, "CREATE DATABASE receipts");
  const store = openPostgres(databaseUrl(primary.adminUrl, "receipts"), {
    poolSize: 1,
    statementTimeoutMs: 30_000,
  });
  try {
    await migratePostgres(store.pool);
  } finally {
    await store.close();
  }
  relay = await freezingRelay(databaseUrl(primary.adminUrl, "receipts"));
}, 60_000);

afterAll(async () => {
  for (const store of opened) await store.close();
  relay?.close();
  await standby?.stop();
  await primary?.stop();
});

describe("the PostgreSQL receipt writer asking a group's fate of a server that may reuse its id", () => {
  it("writes again, on a standby promoted after the answer was lost, a group only the old primary committed", async () => {
    // The standby saw the primary up to here, and nothing after.
    await primary.halt();
    standby = await primary.copy();
    await primary.resume();
    const store = openPostgres(relay.url, { poolSize: 2, statementTimeoutMs: 10_000 });
    opened.push(store);
    const writer = createReceiptWriter(store, { log });
    const items = [wireReceipt(), wireReceipt()];
    const jobIds = items.map((item) => item.job_id as string);
    try {
      await ingestReceiptsVia(writer, [wireReceipt()], "ingest");
      // The primary commits the group; its answer is lost, and the primary with it.
      const cut = once((then) => relay.cutNextCommitReply(then));
      const written = ingestReceiptsVia(writer, items, "ingest");
      await cut;
      relay.away();
      const primaryUrl = databaseUrl(primary.adminUrl, "receipts");
      expect(await jobsOn(primaryUrl, jobIds)).toBe(2);
      const taken = await nextXid(primaryUrl);
      await primary.halt();
      // The promoted standby gives out the group's id again, to transactions it commits.
      const standbyUrl = databaseUrl(standby.adminUrl, "receipts");
      await commitPast(standbyUrl, taken);
      relay.to(standbyUrl);
      expect((await written).map((r) => r.status)).toEqual(["created", "created"]);
      expect(await jobsOn(standbyUrl, jobIds)).toBe(2);
    } finally {
      await writer.close();
      await primary.resume();
      relay.to(databaseUrl(primary.adminUrl, "receipts"));
    }
  }, 60_000);

  it("writes again a group lost at its COMMIT when the server went through a crash recovery since", async () => {
    const url = databaseUrl(primary.adminUrl, "receipts");
    // WAL written but not flushed stays so for 10 s: the group's is lost with the crash.
    await query(primary.adminUrl, "ALTER SYSTEM SET wal_writer_delay = '10s'");
    await query(primary.adminUrl, "SELECT pg_reload_conf()");
    const store = openPostgres(relay.url, { poolSize: 2, statementTimeoutMs: 10_000 });
    opened.push(store);
    const writer = createReceiptWriter(store, { log });
    const items = [wireReceipt()];
    const jobIds = items.map((item) => item.job_id as string);
    try {
      await ingestReceiptsVia(writer, [wireReceipt()], "ingest");
      const dropped = once((then) => relay.dropNextCommit(then));
      const written = ingestReceiptsVia(writer, items, "ingest");
      await dropped;
      relay.away();
      const taken = await nextXid(url);
      // A server process killed (the kernel's OOM killer): every session ends, and the server
      // recovers from its WAL, the same server (its start time unchanged).
      const [victim] = await query<{ pid: number }>(
        primary.adminUrl,
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'",
      );
      process.kill(victim?.pid ?? 0, "SIGKILL");
      for (;;) {
        try {
          await commitPast(url, taken);
          break;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
      relay.to(url);
      expect((await written).map((r) => r.status)).toEqual(["created"]);
      expect(await jobsOn(url, jobIds)).toBe(1);
    } finally {
      await writer.close();
      await query(primary.adminUrl, "ALTER SYSTEM RESET wal_writer_delay").catch(() => {});
    }
  }, 60_000);
});
