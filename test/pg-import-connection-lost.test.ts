import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { importReceipts } from "../src/recorder/import.js";
import { freezingRelay } from "./support/freezing-relay.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { wireReceipt } from "./support/recorder-fixtures.js";
import { startCli } from "./support/service-process.js";

/**
 * `import` on PostgreSQL whose connection the server ends (`pg_terminate_backend`, a restart,
 * a failover): the batch that was cut is written again on a fresh connection, its receipts
 * counted once, as `serve` and `verify` ride the same losses. It exited 2 at the first loss.
 */

const database = usePostgresDatabase();
let direct: PgStore;
let relay: Awaited<ReturnType<typeof freezingRelay>>;
let store: PgStore;
const folder = mkdtempSync(join(tmpdir(), "import-lost-"));

beforeAll(async () => {
  direct = openPostgres(database.url, { poolSize: 2, statementTimeoutMs: 10_000 });
  await migratePostgres(direct.pool);
  relay = await freezingRelay(database.url);
  store = openPostgres(relay.url, { poolSize: 2, statementTimeoutMs: 10_000 });
});

afterAll(async () => {
  await store?.close();
  relay?.close();
  await direct?.close();
  rmSync(folder, { recursive: true, force: true });
});

const lines = (receipts: Record<string, unknown>[]) =>
  Readable.from([`${receipts.map((r) => JSON.stringify(r)).join("\n")}\n`]);

async function storedOnce(jobIds: string[]): Promise<number> {
  const { rows } = await direct.pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM jobs WHERE job_id = ANY($1::text[])",
    [jobIds],
  );
  const conflicts = await direct.pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM receipt_conflicts WHERE job_id = ANY($1::text[])",
    [jobIds],
  );
  expect(conflicts.rows).toEqual([{ n: 0 }]);
  return rows[0]?.n ?? -1;
}

describe("an import on PostgreSQL whose connection is lost", () => {
  it("counts a batch whose COMMIT landed, its answer lost, as created once", async () => {
    const receipts = Array.from({ length: 5 }, () => wireReceipt());
    // A first batch opens the pool's connection; the second batch's COMMIT answer is cut.
    const first = await importReceipts(store, lines([wireReceipt()]));
    expect(first).toMatchObject({ created: 1 });
    relay.cutNextCommitReply();
    const retried: number[] = [];
    const summary = await importReceipts(store, lines(receipts), {
      onReconnect: (line) => retried.push(line),
    });
    expect(summary).toMatchObject({
      total: 5,
      created: 5,
      duplicate: 0,
      updated: 0,
      conflicts: [],
      rejected: [],
      reconnected: 1,
    });
    expect(retried).toEqual([1]);
    expect(await storedOnce(receipts.map((r) => r.job_id as string))).toBe(5);
  }, 30_000);

  it("writes again, once, a batch whose COMMIT never reached the server", async () => {
    const receipts = Array.from({ length: 4 }, () => wireReceipt());
    relay.dropNextCommit();
    const summary = await importReceipts(store, lines(receipts));
    expect(summary).toMatchObject({ total: 4, created: 4, duplicate: 0, reconnected: 1 });
    expect(await storedOnce(receipts.map((r) => r.job_id as string))).toBe(4);
  }, 30_000);

  it("stops as before, saying so, when the server stays away past the wait", async () => {
    const receipts = [wireReceipt()];
    relay.away();
    try {
      const error = await importReceipts(store, lines(receipts), { reconnectWithinMs: 1500 }).catch(
        (e: unknown) => e,
      );
      expect(String((error as Error).message)).toMatch(
        /written again on new connections for \d+ s\): the database stopped the import at line 1; no receipt was committed, none from line 1 on; running the import again is safe/,
      );
    } finally {
      relay.to(database.url);
    }
  }, 30_000);

  it("rides its sessions ended 6 times a second apart, each receipt counted and stored once", async () => {
    const receipts = Array.from({ length: 6000 }, () => wireReceipt());
    const file = join(folder, "receipts.jsonl");
    writeFileSync(file, `${receipts.map((r) => JSON.stringify(r)).join("\n")}\n`);
    const killer = new pg.Client({ connectionString: database.url });
    await killer.connect();
    let ended = 0;
    let running = true;
    // Once the import's first batch committed, every session in a transaction is ended as soon
    // as one is seen, then again a second later, 6 times: as a failover proxy or an operator's
    // sweeps end an import's batches.
    const sweeps = (async () => {
      for (;;) {
        const { rows } = await killer.query("SELECT 1 FROM jobs WHERE job_id = $1", [
          receipts[0]?.job_id,
        ]);
        if (rows.length > 0 || !running) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      while (running && ended < 6) {
        const { rows } = await killer.query<{ n: number }>(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND backend_type = 'client backend' AND xact_start IS NOT NULL`,
        );
        const hit = (rows[0]?.n ?? 0) > 0;
        if (hit) ended++;
        await new Promise((resolve) => setTimeout(resolve, hit ? 1000 : 20));
      }
    })();
    try {
      const run = startCli(["import", file, "--db", database.url]);
      const code = await run.exited;
      running = false;
      await sweeps;
      const said = run.stderr();
      expect(said, said).not.toMatch(/^error:/m);
      expect(code).toBe(0);
      expect(ended).toBeGreaterThan(0);
      expect(said).toMatch(
        /the database connection was lost .*writing the batch from this line again/,
      );
      expect(run.logs.map((line) => line.text)).toContainEqual(
        expect.stringMatching(
          /6000 receipts, 6000 created, 0 duplicate, 0 updated, 0 conflicting, 0 rejected$/,
        ),
      );
      expect(await storedOnce(receipts.map((r) => r.job_id as string))).toBe(6000);
    } finally {
      running = false;
      await sweeps.catch(() => {});
      await killer.end();
    }
  }, 120_000);
});
