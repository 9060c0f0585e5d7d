import { afterAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { createLogger } from "../src/log.js";
import { acquireLock } from "../src/nightly/locks.js";
import { NIGHTLY_LOCK, runNightlyVerification } from "../src/nightly/nightly-run.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { seedJobs } from "./support/seed-verdicts.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";

/**
 * Two nightly runs of two hosts on one PostgreSQL database, the second host's clock minutes
 * ahead of the first's: the nightly lock's expiry is the first host's wall clock, and it must
 * not be judged against the second's.
 */

const database = usePostgresDatabase({ migrated: true });
let store: PgStore | undefined;

afterAll(async () => {
  await store?.close();
});

describe("the nightly lock on PostgreSQL across hosts whose clocks differ", () => {
  it("is not taken from a live run by a host whose clock is 10 minutes ahead", async () => {
    store = openPostgres(database.url, { poolSize: 4, statementTimeoutMs: 30_000 });
    const from = Date.UTC(2026, 10, 1);
    await seedJobs(store, [{ jobId: "job_l1", verdict: "verified", leaseOwner: null }]);
    // Host A's run holds the lock: its --timeout 1m plus the minute the lock outlives it.
    expect(await acquireLock(store, NIGHTLY_LOCK, "host-a/nightly", 120_000)).toBeNull();
    const engine = createVerifier({
      store,
      rpc: createFakeChain().rpc,
      profile: localnetProfile,
      log: createLogger({ level: "silent" }),
      options: { pollIntervalMs: 5, errorBackoffMs: 20 },
    });
    const ahead = 10 * 60_000;
    const summary = await runNightlyVerification(store, engine, {
      from,
      to: from + 86_400_000,
      timeoutMs: 5000,
      now: () => Date.now() + ahead,
    });
    expect(summary.reason).toMatch(/another verification run holds the lock \(owner host-a/);
    expect(summary.exitCode).toBe(2);
    expect(summary.runId).toBeNull();
  }, 30_000);
});
