import { sql } from "drizzle-orm";
import { beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { useStoreAndLocker } from "./support/pg-locker.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { seedJobs } from "./support/seed-verdicts.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";

/**
 * A due job whose row another session holds locked (an operator's `SELECT … FOR UPDATE` left
 * open, a long transaction) is skipped by every claim, while the next due time read after the
 * round is that job's, already past: the loop went straight into the next round, and claimed
 * nothing round after round as fast as the database answered (a nightly run until its
 * --timeout, `serve` for as long as the row stayed locked).
 */

const database = usePostgresDatabase({ migrated: true });
const POLL_MS = 200;
const pgs = useStoreAndLocker(database, { poolSize: 4, statementTimeoutMs: 30_000 });

beforeEach(async () => {
  await pgs.store.db.execute(sql`DELETE FROM jobs`);
  await seedJobs(pgs.store, [{ jobId: "job_held", leaseOwner: null }]);
  await pgs.store.db.execute(sql`UPDATE jobs SET escrow_tx = 'sig_' || job_id`);
});

/** A verifier on a chain that has shown nothing, counting its rounds. */
function verifier() {
  const chain = createFakeChain();
  const seen = { rounds: 0 };
  const engine = createVerifier({
    store: pgs.store,
    rpc: chain.rpc,
    profile: localnetProfile,
    log: createLogger({ level: "silent" }),
    owner: "host-a/verifier",
    options: { pollIntervalMs: POLL_MS, idleIntervalMs: 5_000, errorBackoffMs: 20 },
    pacer: { roundStarts: () => seen.rounds++, pauseAfter: () => 0 },
  });
  return { engine, chain, seen };
}

async function until(check: () => boolean, ms = 15_000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Runs `body` with the job's row locked by another session, which then lets it go. */
async function withRowLocked<T>(body: () => Promise<T>): Promise<T> {
  await pgs.locker.query("BEGIN");
  await pgs.locker.query("SELECT * FROM jobs WHERE job_id = 'job_held' FOR UPDATE");
  try {
    return await body();
  } finally {
    await pgs.locker.query("ROLLBACK");
  }
}

describe("a verifier beside a due job whose row another session holds locked on PostgreSQL", () => {
  it("a run looks again once a poll interval, ends at its time, and takes the job once the row is free", async () => {
    const { engine, chain, seen } = verifier();
    const summary = await withRowLocked(() => engine.runUntilSettled({}, { timeoutMs: 1_500 }));
    expect(summary.status).toBe("timed_out");
    // 1.5 s at one look a poll interval (200 ms): 8, with a round begun as the time ran out.
    expect(seen.rounds).toBeLessThanOrEqual(10);
    expect(chain.calls.statusCalls).toBe(0);

    // The row free, the next run takes the job and asks the chain about it.
    const stop = new AbortController();
    const run = engine.runUntilSettled({}, { timeoutMs: 20_000, signal: stop.signal });
    await until(() => chain.calls.statusSignatures > 0);
    stop.abort();
    await run;
  }, 30_000);

  it("serve's loop looks again once a poll interval while the row stays locked", async () => {
    const { engine, seen } = verifier();
    await withRowLocked(async () => {
      engine.start();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      await engine.stop();
    });
    expect(seen.rounds).toBeLessThanOrEqual(7);
  }, 30_000);
});
