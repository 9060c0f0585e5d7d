import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { recordReceipts } from "../src/recorder/receipts.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { type CliProcess, startServe } from "./support/service-process.js";

/**
 * `serve` as a role of least privilege: the database's owner migrates (`db migrate`), and the
 * service's role can read and write the tables but create nothing, as README's PostgreSQL
 * section lists. PostgreSQL checks CREATE before it looks whether IF NOT EXISTS holds.
 */

const database = usePostgresDatabase();
const role = `svc_${randomBytes(4).toString("hex")}`;
const password = randomBytes(12).toString("hex");
let admin: PgStore;
let serve: (CliProcess & { url: string }) | undefined;

/** `url` as the service's role. */
function asRole(url: string): string {
  const target = new URL(url);
  target.username = role;
  target.password = password;
  return target.href;
}

/**
 * The privileges README lists for `serve`, on the database at `url` (migrated already), then
 * any statements `after` (a grant taken away).
 */
async function grantServe(url: string, after: string[] = []) {
  const owner = openPostgres(url);
  try {
    for (const statement of [
      `GRANT USAGE ON SCHEMA public, drizzle TO ${role}`,
      `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`,
      `GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${role}`,
      `GRANT SELECT ON drizzle.__drizzle_migrations TO ${role}`,
      ...after,
    ]) {
      await owner.pool.query(statement);
    }
  } finally {
    await owner.close();
  }
}

beforeAll(async () => {
  admin = openPostgres(database.url);
  await admin.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  // PostgreSQL before 15 lets every role create in schema public: not this one.
  await admin.pool.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
});

afterEach(async () => {
  serve?.child.kill("SIGKILL");
  await serve?.exited;
  serve = undefined;
});

/** Other databases the role was granted rights on: each holds them until dropped there. */
const grantedElsewhere: string[] = [];

afterAll(async () => {
  for (const url of grantedElsewhere) {
    const owner = openPostgres(url);
    try {
      await owner.pool.query(`DROP OWNED BY ${role}`);
    } finally {
      await owner.close();
    }
  }
  await admin?.pool.query(`DROP OWNED BY ${role}`);
  await admin?.close();
  const server = openPostgres(database.url);
  await server.pool.query(`DROP ROLE IF EXISTS ${role}`);
  await server.close();
});

describe("serve as a role without CREATE", () => {
  it("starts on a database its owner migrated, creating nothing", async () => {
    await migratePostgres(admin.pool);
    await grantServe(database.url);
    const store = openPostgres(asRole(database.url));
    try {
      await expect(migratePostgres(store.pool)).resolves.toEqual({ applied: 0 });
    } finally {
      await store.close();
    }
    serve = await startServe(asRole(database.url), { SOLANA_RPC_URLS: "http://127.0.0.1:9" });
    const health = await fetch(`${serve.url}/healthz`);
    expect(health.status).toBe(200);
    // Its background work (verifier, backfill, ledger) runs as this role too, without errors.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(serve.logs.filter((line) => Number(line.level) >= 50)).toEqual([]);
  }, 60_000);

  it("names what it could not create, and the privilege it takes, on a database not migrated", async () => {
    const fresh = await database.create();
    const store = openPostgres(asRole(fresh));
    try {
      await expect(migratePostgres(store.pool)).rejects.toThrow(
        /cannot create the schema "drizzle": permission denied .*; the role needs CREATE on the database/,
      );
    } finally {
      await store.close();
    }
  });
});

// With UPDATE on `jobs` taken from its role, `serve` told to stop logged its failing lease
// releases, then waited until its drain time ran out and was killed (40 s, exit by SIGKILL):
// the background's stop failed, so its receipt writer was never closed, and the store's close
// waited for the writer's connection.
describe("serve whose role lost a grant", () => {
  it("stops at once on SIGTERM, its background work failing", async () => {
    const url = await database.create();
    const owner = openPostgres(url);
    try {
      await migratePostgres(owner.pool);
      // Due jobs: the verifier and the backfill try to write them, and are refused.
      const receipts = Array.from({ length: 5 }, (_, i) => ({
        jobId: `job_revoked${i}`,
        escrowTx: `${"5".repeat(87)}${i + 1}`,
        settlementTx: null,
        worker: null,
        creditsRemainingUnits: null,
        model: "qwen3-8b",
        keyFingerprint: null,
        promptTokens: null,
        completionTokens: null,
        totalTokens: null,
      }));
      await recordReceipts(owner, receipts, "ingest");
    } finally {
      await owner.close();
    }
    grantedElsewhere.push(url);
    await grantServe(url, [`REVOKE UPDATE ON jobs FROM ${role}`]);
    serve = await startServe(asRole(url), { SOLANA_RPC_URLS: "http://127.0.0.1:9" });
    await serve.waitForLog((line) => line.msg === "verification round failed");
    const started = Date.now();
    serve.child.kill("SIGTERM");
    expect(await serve.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 90_000);
});
