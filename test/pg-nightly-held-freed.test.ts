import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { useStoreAndLocker } from "./support/pg-locker.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { seedJobs } from "./support/seed-verdicts.js";
import { startCli } from "./support/service-process.js";
import { slotOnlyNode } from "./support/verify-fake-rpc.js";

/**
 * The nightly `verify`, a process of its own, while one job's row is held locked by another
 * session for most of the run and let go before its end: the open-job count is read at the
 * summary, when the row is free, and called the job not judged yet, asking whether the RPC was
 * slow, when the run had not looked at it again since it found the row held.
 */

const database = usePostgresDatabase();
const pgs = useStoreAndLocker(database, { poolSize: 2, statementTimeoutMs: 30_000, migrate: true });

/** Until the run's row is written: its first round follows at once. */
async function runStarted(): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const { rows } = await pgs.store.pool.query(
      "SELECT 1 FROM verification_runs WHERE status = 'running'",
    );
    if (rows.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("the run never started");
}

describe("the nightly verify beside a job row locked for most of the run on PostgreSQL", () => {
  it("says the row was held during the run though it is free at the summary", async () => {
    const now = Date.now();
    await seedJobs(pgs.store, [{ jobId: "job_held", leaseOwner: null, createdAt: now - 60_000 }]);
    await pgs.store.db.execute(sql`UPDATE jobs SET escrow_tx = 'sig_' || job_id`);
    const node = await slotOnlyNode();
    await pgs.locker.query("BEGIN");
    await pgs.locker.query("SELECT * FROM jobs WHERE job_id = 'job_held' FOR UPDATE");
    let released = false;
    try {
      // A poll interval longer than the run: one look at the job, while its row is held.
      const run = startCli(["verify", "--since", "1h", "--timeout", "8s", "--db", database.url], {
        SOLANA_RPC_URLS: node.url,
        AUDIT_PROFILE: "localnet",
        VERIFY_POLL_MS: "20000",
      });
      await runStarted();
      // Its first round follows at once; a loaded host may take seconds to reach it. Let go
      // well before the run's end, which is 8 s after its start.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      await pgs.locker.query("ROLLBACK");
      released = true;
      expect(await run.exited).toBe(2);
      expect(String(run.logs[0]?.text)).toContain(
        "1 jobs not final: 1 not judged yet (their transactions not read: a slow or failing RPC?); a due job's row was held locked by another database session (another verifier writing it, serve's beside this run, or a long transaction: SELECT ... FOR UPDATE) during the run",
      );
    } finally {
      if (!released) await pgs.locker.query("ROLLBACK");
      node.close();
    }
  }, 60_000);
});
