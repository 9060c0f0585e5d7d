import type { SqliteStore } from "../../src/db/client.js";
import {
  fakeSignature,
  insertChainTransaction,
  insertCheck,
  insertConflict,
  insertJob,
} from "./job-rows.js";

/** The clock of the dashboard tests: 2026-11-20 12:00 UTC, so month to date is Nov 1 to 20. */
export const DASHBOARD_NOW = Date.UTC(2026, 10, 20, 12);

export const WORKERS = [
  "DcrtuEi23DAjQ9t2QJ9wFXDSZRU26jC5cVx4Dejivmwe",
  "Bjiv9vXpvefh5utsg2YV37kGca6qTuFZgHLLAq3ZZ3QX",
] as const;

/**
 * A month of jobs as the verifier leaves them: verified jobs on most days, one underpaid
 * worker (a failing settlement.split with its evidence), one dropped settlement, one partially
 * verified and one still pending job, over two models, two workers and two keys. Also one job
 * in October, outside month to date.
 */
export function seedDashboard(store: SqliteStore): { discrepancyJob: string; droppedJob: string } {
  const models = ["qwen3-8b", "llama-3.3-70b"];
  for (let day = 1; day <= 20; day++) {
    for (let i = 0; i < 2; i++) {
      const jobId = `job_d${String(day).padStart(2, "0")}_${i}`;
      insertJob(store, {
        jobId,
        createdAt: Date.UTC(2026, 10, day, 3 + i * 7),
        model: models[i % 2],
        worker: WORKERS[(day + i) % 2],
        keyFingerprint: i === 0 ? "a1b2c3d4e5f60718" : "0f1e2d3c4b5a6978",
        chargedUnits: BigInt(40_000 * day + i * 10_000),
        escrowedUnits: 800_000n,
      });
      insertCheck(store, jobId, "settlement.split", "pass");
    }
  }
  insertJob(store, { jobId: "job_october", createdAt: Date.UTC(2026, 9, 30, 12) });

  const discrepancyJob = "job_underpaidworker";
  const escrowTx = fakeSignature(`${discrepancyJob}:escrow`);
  insertJob(store, {
    jobId: discrepancyJob,
    createdAt: Date.UTC(2026, 10, 18, 9),
    verdict: "discrepancy",
    model: "llama-3.3-70b",
    chargedUnits: 400_000n,
    escrowedUnits: 800_000n,
    workerPaidUnits: 306_000n,
    treasuryPaidUnits: 94_000n,
    refundedUnits: 400_000n,
    expectedChargeUnits: 400_000n,
    escrowTx,
    apiCheckedAt: Date.UTC(2026, 10, 18, 9, 1),
    apiStatus: "settled",
    apiCreditsChargedUnits: 400_000n,
  });
  insertCheck(store, discrepancyJob, "settlement.split", "fail", {
    reason: "the worker's share matches no allowed payout rate",
    expected: { charge: "400000", rateBps: [8500], workerShare: ["340000"] },
    actual: { workerShare: "306000", treasuryShare: "94000" },
  });
  insertCheck(store, discrepancyJob, "settlement.conserves_lock", "pass", {
    expected: { lock: "800000" },
    actual: { released: "800000" },
  });
  insertCheck(store, discrepancyJob, "escrow.program", "skip", {
    reason: "the profile does not know the job_escrow program id",
  });
  insertChainTransaction(store, escrowTx, {
    slot: 447552066,
    tokenChanges: [
      {
        account: "F11Zd87fGZBi1tD6uYQyPQ2JCmaG3e7RcDmrm3eJucpB",
        owner: "EZshmQRpaT2nQQaR2egEeei61o2m2cnCH4pWjMAHD2p5",
        mint: "7rupWNPx2KZpVkoyNiYTxhzH7AnxGm46n1DXG4yUziV1",
        programId: "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
        decimals: 6,
        pre: "9999999920000",
        post: "9999999120000",
        delta: "-800000",
      },
    ],
  });
  insertConflict(store, discrepancyJob, ["worker"]);

  const droppedJob = "job_phantom_settlement";
  insertJob(store, {
    jobId: droppedJob,
    createdAt: Date.UTC(2026, 10, 19, 9),
    verdict: "dropped",
    chargedUnits: 0n,
    workerPaidUnits: 0n,
  });
  insertCheck(store, droppedJob, "settlement.exists", "fail", {
    reason: "never landed: its blockhash has expired",
  });

  insertJob(store, {
    jobId: "job_stream_no_usage",
    createdAt: Date.UTC(2026, 10, 19, 10),
    verdict: "partially_verified",
    unproven: ["usage_unknown"],
  });
  insertJob(store, {
    jobId: "job_waiting",
    createdAt: Date.UTC(2026, 10, 20, 11),
    verdict: "pending",
  });
  return { discrepancyJob, droppedJob };
}
