import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { useStoreAndLocker } from "./support/pg-locker.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { seedJobs } from "./support/seed-verdicts.js";
import { startCli } from "./support/service-process.js";
import { slotOnlyNode } from "./support/verify-fake-rpc.js";

/**
 * The nightly `verify`, a process of its own, while one job's row stays locked by another
 * session the whole run: it ends at its --timeout with exit 2, looking at the job once a poll
 * interval meanwhile, not claiming nothing as fast as the database answered, and saying the
 * job waits on the locked row.
 */

const database = usePostgresDatabase({ migrated: true });
const pgs = useStoreAndLocker(database, { poolSize: 2, statementTimeoutMs: 30_000 });

/** Transactions committed in the test database so far. */
async function commits(): Promise<number> {
  // Read outside the locking session's transaction, which sees the statistics as they were.
  const { rows } = await pgs.store.pool.query<{ n: string }>(
    "SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = current_database()",
  );
  return Number(rows[0]?.n);
}

describe("the nightly verify beside a job row locked all run on PostgreSQL", () => {
  it("exits 2 at its --timeout, looking at the job once a poll interval, naming the lock", async () => {
    const now = Date.now();
    await seedJobs(pgs.store, [{ jobId: "job_held", leaseOwner: null, createdAt: now - 60_000 }]);
    await pgs.store.db.execute(sql`UPDATE jobs SET escrow_tx = 'sig_' || job_id`);
    const node = await slotOnlyNode();
    await pgs.locker.query("BEGIN");
    await pgs.locker.query("SELECT * FROM jobs WHERE job_id = 'job_held' FOR UPDATE");
    try {
      const before = await commits();
      const run = startCli(["verify", "--since", "1h", "--timeout", "6s", "--db", database.url], {
        SOLANA_RPC_URLS: node.url,
        AUDIT_PROFILE: "localnet",
        VERIFY_POLL_MS: "500",
      });
      expect(await run.exited).toBe(2);
      const spent = (await commits()) - before;
      // 6 s at a look each 500 ms: some 12 rounds of a few statements, with the run's own.
      expect(spent).toBeLessThan(200);
      // The reason names the lock, not a slow or failing RPC that on-call would look for.
      const headline = String(run.logs[0]?.text);
      expect(headline).toContain("1 jobs not final: 1 whose rows another database session holds");
      expect(headline).not.toContain("RPC");
    } finally {
      await pgs.locker.query("ROLLBACK");
      node.close();
    }
  }, 60_000);
});
