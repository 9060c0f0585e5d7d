import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { createApp } from "../src/api/app.js";
import { createToken } from "../src/auth/tokens.js";
import { openSqliteStore, type Store } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { openPostgres } from "../src/db/pg/client.js";
import { createLogger } from "../src/log.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { holdWriteLockSync } from "./support/write-lock-holder.js";

/**
 * `/readyz` while another session holds a lock on `jobs` (an operator's `LOCK TABLE`, a long
 * migration): a load balancer's probe must get an answer within its own timeout, saying why,
 * not hang until the statement timeout and then read 500.
 */

const database = usePostgresDatabase({ migrated: true });
const log = createLogger({ level: "silent" });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** `/readyz` of an app over `store`, timed. */
async function readyz(store: Store) {
  const app = createApp({
    store,
    log,
    readiness: { databaseTimeoutMs: 1000 },
  });
  const token = (await createToken(store, { role: "read", name: "probe" })).token;
  return async () => {
    const started = Date.now();
    const response = await app.request("/readyz", {
      headers: { authorization: `Bearer ${token}` },
    });
    return {
      status: response.status,
      ms: Date.now() - started,
      body: (await response.json()) as {
        checks: { verificationLag: { ok: boolean; seconds: number | null; detail?: string } };
      },
    };
  };
}

describe("/readyz under a lock held on jobs", () => {
  it("answers 503 within its deadline on PostgreSQL, naming the lag as unknown", async () => {
    const store = openPostgres(database.url, { poolSize: 4, statementTimeoutMs: 30_000 });
    cleanups.push(() => store.close());
    const probe = await readyz(store);
    expect((await probe()).status).toBe(200);

    const locker = new pg.Client({ connectionString: database.url });
    await locker.connect();
    cleanups.push(() => locker.end());
    await locker.query("BEGIN");
    await locker.query("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE");
    cleanups.push(() => locker.query("ROLLBACK").then(() => {}));

    const locked = await probe();
    expect(locked.status).toBe(503);
    expect(locked.ms).toBeLessThan(4000);
    expect(locked.body.checks.verificationLag).toMatchObject({
      ok: false,
      seconds: null,
      detail: expect.stringMatching(
        /^unknown: jobs could not be read \(no answer within 1000 ms\)/,
      ),
    });
  }, 20_000);

  it("answers at once on SQLite while another connection holds the write lock", async () => {
    const dir = mkdtempSync(join(tmpdir(), "readyz-locked-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "audit.db");
    const store = openSqliteStore(path);
    cleanups.push(() => store.close());
    migrateStore(store);
    const probe = await readyz(store);
    // Readers of a WAL database never wait for its writer, and the token's first use (its
    // `lastUsedAt`, written once a minute) does not wait for the lock on the event loop.
    const { released } = holdWriteLockSync(path, 3000);
    const locked = await probe();
    expect(locked.status).toBe(200);
    expect(locked.ms).toBeLessThan(1000);
    await released;
  }, 20_000);
});
