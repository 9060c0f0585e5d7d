import { describe, expect, it } from "vitest";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { useDeadlockHosts, whileGroupHeld } from "./support/pg-deadlock.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { receipt, signature } from "./support/recorder-fixtures.js";
import { seedJobs } from "./support/seed-verdicts.js";

/**
 * An operator's re-verification (`POST /v1/jobs/{id}/reverify`, the dashboard's button) on one
 * host while another host's receipt group writes: the re-verification reopened the job (its row,
 * then by the statement trigger its rollup rows) without the receipt writers' turn; a group that
 * had moved the same rollup rows (a new job of the same model, worker and hour) and then came
 * to the job's row closed a circle, and PostgreSQL aborted one of the two (the group's callers
 * waited a retry, or the operator got a 503). The group's connections find deadlocks after
 * 20 ms, the other host's after 10 s, so a cycle aborts the group, which the test sees.
 */

const database = usePostgresDatabase();
const WORKER = "DcrtuEi23DAjQ9t2QJ9wFXDSZRU26jC5cVx4Dejivmwe";
const CREATED = Date.UTC(2026, 10, 1, 12);

const host = useDeadlockHosts(database, ["A", "B"]);

describe("a receipt group and another host's re-verification of a job it writes", () => {
  it("wait for each other instead of one being aborted as a deadlock", async () => {
    const existing = "job_deadlock_reverify_existing";
    const sameRollup = { model: "qwen3-8b", worker: WORKER, keyFingerprint: "kf_0001" };
    await seedJobs(host.B, [
      { jobId: existing, verdict: "verified", leaseOwner: null, createdAt: CREATED },
    ]);
    const fresh = receipt({ ...sameRollup, createdAt: CREATED });
    // Another receipt of the existing job (another escrow): a conflict, read `FOR UPDATE`.
    const other = receipt({ ...sameRollup, jobId: existing, escrowTx: signature() });
    await whileGroupHeld(
      host.A,
      [recordReceiptsUnit([fresh], "proxy")],
      [recordReceiptsUnit([other], "proxy")],
      () => createJobQueueStore(host.B).reverify(existing, CREATED + 1000),
    );
    const { rows } = await host.A.pool.query<{ verdict: string; n: string }>(
      `SELECT (SELECT verdict FROM jobs WHERE job_id = $1) AS verdict,
        (SELECT count(*) FROM jobs WHERE job_id = $2) AS n`,
      [existing, fresh.jobId],
    );
    expect(rows[0]).toEqual({ verdict: "pending", n: "1" });
  }, 30_000);
});
