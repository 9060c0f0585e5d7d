import { describe, expect, it } from "vitest";
import type { Verdict } from "../src/db/schema.js";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import type { CustodyProfile } from "../src/store/custody.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { createVerdictStore, type VerdictWrite } from "../src/store/verdicts.js";
import { useStoreAndLocker } from "./support/pg-locker.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { receipt } from "./support/recorder-fixtures.js";
import { readJob, seedJobs } from "./support/seed-verdicts.js";

/**
 * A job's row held locked by a session outside the service (an operator's `SELECT … FOR
 * UPDATE`, a long transaction) as the verifier writes its verdict: the write waited for it up to
 * the statement timeout holding the receipt writers' turn, so every receipt waited as long, then
 * failed as the database busy, and the round was written again the same way while the row
 * stayed locked. The batch's other jobs, and receipts, must not wait for the one row.
 */

const database = usePostgresDatabase({ migrated: true });
const log = createLogger({ level: "silent" });
const profile: CustodyProfile = { name: "mainnet-v1", treasury: null, treasuryLearnAfter: 2 };
const T = Date.UTC(2026, 10, 2, 9);
const pgs = useStoreAndLocker(database, { poolSize: 3, statementTimeoutMs: 5_000 });

/** A decision of `verdict` for `jobId`, pending before, with no evaluation. */
function decision(jobId: string, verdict: Verdict): VerdictWrite {
  return {
    job: {
      jobId,
      keyFingerprint: "kf_0001",
      verdictAt: null,
      verifyAttempts: 0,
      verdict: "pending",
    },
    verdict,
    nextVerifyAt: T + 60_000,
    lastError: null,
    commitment: "finalized",
    evaluation: null,
    checks: null,
  };
}

describe("verdict writes on PostgreSQL with a job's row locked by another session", () => {
  it.each([
    ["a final verdict", "verified"],
    ["a poll that keeps the verdict", "pending"],
  ] as const)(
    "%s: writes the batch's other jobs and lets receipts through at once, and the locked job once the lock goes",
    async (_, verdict) => {
      const [locked, free] = [`job_locked_${verdict}`, `job_free_${verdict}`];
      await seedJobs(pgs.store, [
        { jobId: locked, leaseOwner: "verifier-1" },
        { jobId: free, leaseOwner: "verifier-1" },
      ]);
      const verdicts = createVerdictStore(pgs.store, profile);
      const writer = createReceiptWriter(pgs.store, { log });
      try {
        await pgs.locker.query("BEGIN");
        await pgs.locker.query("SELECT * FROM jobs WHERE job_id = $1 FOR UPDATE", [locked]);
        const started = performance.now();
        const written = verdicts.write([decision(locked, verdict), decision(free, verdict)], {
          owner: "verifier-1",
          runId: null,
          t: T,
        });
        const recorded = writer
          .run(recordReceiptsUnit([receipt()], "proxy"))
          .then(() => performance.now() - started);
        expect(await written).toEqual([false, verdict === "verified"]);
        expect(performance.now() - started).toBeLessThan(1_000);
        expect(await recorded).toBeLessThan(1_000);
        expect(await readJob(pgs.store, free)).toMatchObject({ verdict, leaseOwner: null });
        expect(await readJob(pgs.store, locked)).toMatchObject({
          verdict: "pending",
          leaseOwner: "verifier-1",
        });

        await pgs.locker.query("COMMIT");
        await verdicts.write([decision(locked, verdict)], {
          owner: "verifier-1",
          runId: null,
          t: T,
        });
        expect(await readJob(pgs.store, locked)).toMatchObject({ verdict, leaseOwner: null });
      } finally {
        await pgs.locker.query("ROLLBACK").catch(() => {});
        await writer.close();
      }
    },
    30_000,
  );
});
