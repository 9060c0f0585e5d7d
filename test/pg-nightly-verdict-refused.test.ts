import { describe, expect, it } from "vitest";
import { AppError } from "../src/errors.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import type { CustodyProfile } from "../src/store/custody.js";
import { VERDICT_NOT_WRITTEN } from "../src/store/queue-rules.js";
import { createVerdictStore, type VerdictWrite } from "../src/store/verdicts.js";
import { useStoreAndLocker } from "./support/pg-locker.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { seedJobs } from "./support/seed-verdicts.js";

/**
 * A verdict write whose pin reopens a keyless job another session holds locked is refused; the
 * verifier parks the job it judged as `error`, the refusal its last error, until the error
 * backoff. A nightly ending meanwhile called it "waiting on RPC trouble", and on-call looked at
 * the node, not at the session holding the row.
 */

const database = usePostgresDatabase();
const day = Date.UTC(2026, 10, 1);
const now = day + 13 * 3600_000;
const pgs = useStoreAndLocker(database, { poolSize: 3, statementTimeoutMs: 10_000, migrate: true });

/** The learner's verdict: verified, learning its key's vault (which reopens keyless jobs on it). */
function learnerWrite(jobId: string, vault: string): VerdictWrite {
  return {
    job: { jobId, keyFingerprint: "kf_refused", verdictAt: null, verifyAttempts: 0 },
    verdict: "verified",
    nextVerifyAt: now + 60_000,
    lastError: null,
    commitment: "finalized",
    evaluation: {
      amounts: {
        escrowedUnits: 400_000n,
        chargedUnits: 80_000n,
        workerPaidUnits: 60_000n,
        treasuryPaidUnits: 20_000n,
        refundedUnits: 320_000n,
        expectedChargeUnits: 80_000n,
        feesLamports: 10_000n,
      },
      unproven: [],
      learned: { creditVault: vault, treasuryCandidate: null },
    },
    checks: [],
  };
}

describe("a nightly ending while a job waits after its verdict write was refused on a held row", () => {
  it("names the held row and the refusal, not RPC trouble", async () => {
    const vault = "RefusedPinVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const [learner, held] = ["job_refused_learner", "job_refused_keyless_held"];
    const profile: CustodyProfile = { name: "mainnet-v1", treasury: "TP", treasuryLearnAfter: 2 };
    await seedJobs(pgs.store, [
      { jobId: learner, keyFingerprint: "kf_refused" },
      { jobId: held, verdict: "verified", keyFingerprint: null, leaseOwner: null },
    ]);
    await pgs.store.pool.query(
      `INSERT INTO check_results (job_id, name, outcome, actual, checked_at)
        VALUES ($1, 'escrow.source', 'pass', $2::json, $3)`,
      [held, JSON.stringify({ vault }), now],
    );
    const verdicts = createVerdictStore(pgs.store, profile);
    const options = { owner: "owner-a", runId: null, t: now };
    const write = learnerWrite(learner, vault);
    await pgs.locker.query("BEGIN");
    try {
      await pgs.locker.query("SELECT * FROM jobs WHERE job_id = $1 FOR UPDATE", [held]);
      const refused = await verdicts.write([write], options).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(AppError);
      // Parked as the verifier parks a job whose write fails alone too (src/verify/round.ts).
      await verdicts.write(
        [
          {
            ...write,
            verdict: "error",
            nextVerifyAt: now + 60_000,
            lastError: `${VERDICT_NOT_WRITTEN}${(refused as Error).message}`,
            evaluation: null,
            checks: null,
          },
        ],
        options,
      );
      const summary = await runNightlyVerification(
        pgs.store,
        // The run ends inside the error backoff: the job is not tried again before it.
        { runUntilSettled: async () => ({ status: "timed_out" as const }) },
        { from: day, to: day + 86_400_000, timeoutMs: 30_000 },
      );
      expect(summary.outcome).toBe("incomplete");
      expect(summary.reason).not.toContain("RPC trouble");
      expect(summary.reason).toContain(
        `1 whose verdict write was refused, a row it locks held by another database session (SELECT ... FOR UPDATE, a long transaction): job ${held}: its row is held locked by another session (waited 3 times 1000 ms); tried again after the error backoff`,
      );
    } finally {
      await pgs.locker.query("ROLLBACK");
    }
  }, 30_000);
});
