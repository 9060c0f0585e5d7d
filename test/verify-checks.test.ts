import { describe, expect, it } from "vitest";
import type { TransactionFacts } from "../src/chain/transaction-facts.js";
import { type CheckInput, evaluateJob, type ReceiptForChecks } from "../src/verify/checks.js";
import { decentralMainnetProfile, localnetProfile } from "../src/verify/profiles.js";
import { accounts, change, facts, honest, sig, vault, worker } from "./support/verify-fixtures.js";

function input(
  job: ReceiptForChecks,
  txs: TransactionFacts[],
  namedBy = new Map<string, string[]>(),
): CheckInput {
  return {
    job,
    profile: localnetProfile,
    transactions: new Map(txs.map((t) => [t.signature, t])),
    namedBy,
  };
}

const failing = (e: ReturnType<typeof evaluateJob>) =>
  e.checks.filter((c) => c.outcome === "fail").map((c) => c.name);

describe("protocol checks", () => {
  it("verifies an honest settled job and reports its amounts", () => {
    const { job, escrow, settlement } = honest();
    const e = evaluateJob(input(job, [escrow, settlement]));
    expect(failing(e)).toEqual([]);
    expect(e.verdict).toBe("verified");
    expect(e.amounts).toMatchObject({
      escrowedUnits: 160_000n,
      chargedUnits: 80_000n,
      workerPaidUnits: 60_000n,
      treasuryPaidUnits: 20_000n,
      refundedUnits: 80_000n,
      expectedChargeUnits: 80_000n,
      feesLamports: 10_000n,
    });
    const names = e.checks.map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
    expect(e.checks.find((c) => c.name === "settlement.split")?.expected).toMatchObject({
      workerShare: ["60000"],
    });
  });

  it("fails the split, not the payment, when the worker is paid at the wrong rate", () => {
    const { job, escrow, settlement } = honest();
    // 75% worker paid as if staked: 85%. Treasury gets less; the lock is still conserved.
    settlement.tokenChanges[1]!.delta = 68_000n;
    settlement.tokenChanges[2]!.delta = 12_000n;
    const e = evaluateJob(input(job, [escrow, settlement]));
    expect(failing(e)).toEqual(["settlement.split"]);
    expect(e.verdict).toBe("discrepancy");
  });

  it("fails conservation when part of the lock never leaves escrow", () => {
    const { job, escrow, settlement } = honest();
    settlement.tokenChanges[0]!.delta = -150_000n;
    settlement.tokenChanges[3]!.delta = 70_000n;
    const e = evaluateJob(input(job, [escrow, settlement]));
    expect(failing(e)).toEqual(["settlement.conserves_lock"]);
  });

  it("keeps a replayed signature with the job its memo names and fails the replaying job", () => {
    const original = honest("job_original");
    const replay = honest("job_replay");
    replay.job.escrowTx = original.escrow.signature;
    replay.settlement.signature = sig("R");
    replay.job.settlementTx = replay.settlement.signature;
    const namedBy = new Map([[original.escrow.signature, ["job_original", "job_replay"]]]);
    const forOriginal = evaluateJob(
      input(original.job, [original.escrow, original.settlement], namedBy),
    );
    const forReplay = evaluateJob(input(replay.job, [original.escrow, replay.settlement], namedBy));
    expect(forOriginal.verdict).toBe("verified");
    // One cause, one failing check: the escrow's own checks defer to signatures.unique.
    expect(failing(forReplay)).toEqual(["signatures.unique"]);
    // The replayed lock's money is counted for the job it belongs to, not again here.
    expect(forOriginal.amounts.escrowedUnits).toBe(160_000n);
    expect(forReplay.amounts.escrowedUnits).toBe(0n);
    // Checks that need this job's own lock are skipped, not failed.
    expect(forReplay.checks.find((c) => c.name === "settlement.conserves_lock")?.outcome).toBe(
      "skip",
    );
  });

  it("keeps the evidence of a mass replay small: a few job ids and the count", () => {
    const original = honest("job_original");
    const replay = honest("job_replay_1");
    replay.job.escrowTx = original.escrow.signature;
    replay.settlement.signature = sig("M");
    replay.job.settlementTx = replay.settlement.signature;
    const listed = ["job_original", ...Array.from({ length: 9 }, (_, i) => `job_replay_${i + 1}`)];
    const e = evaluateJob({
      ...input(replay.job, [original.escrow, replay.settlement]),
      namedBy: new Map([[original.escrow.signature, listed]]),
      namedByTotal: new Map([[original.escrow.signature, 5_000]]),
    });
    const unique = e.checks.find((c) => c.name === "signatures.unique");
    expect(unique?.outcome).toBe("fail");
    expect(unique?.actual).toEqual([
      expect.objectContaining({ owner: "job_original", namedBy: listed, jobsNaming: 5_000 }),
    ]);
  });

  it("fails a lock that also pays someone other than the escrow vault", () => {
    const { job, escrow, settlement } = honest();
    const thief = accounts.workers[3]!;
    escrow.tokenChanges = [
      change(vault, accounts.escrowAuthority, -200_000n),
      change(accounts.escrowVault, accounts.escrowAuthority, 160_000n),
      change(thief.tokenAccount, thief.address, 40_000n),
    ];
    const e = evaluateJob(input(job, [escrow, settlement]));
    expect(e.verdict).toBe("discrepancy");
    expect(failing(e)).toContain("escrow.vault");
    const vaultCheck = e.checks.find((c) => c.name === "escrow.vault");
    expect(vaultCheck?.actual).toMatchObject({ taken: "200000", locked: "160000" });
  });

  it("checks a receipt without a worker against the jobs API's worker, else calls it unverifiable", () => {
    const named = honest();
    named.job.worker = null;
    named.job.apiWorker = worker.address;
    named.job.apiStatus = "settled";
    named.job.apiCheckedAt = 1;
    expect(evaluateJob(input(named.job, [named.escrow, named.settlement])).verdict).toBe(
      "verified",
    );

    const nobody = honest();
    nobody.job.worker = null;
    const e = evaluateJob(input(nobody.job, [nobody.escrow, nobody.settlement]));
    expect(e.verdict).toBe("unverifiable");
    expect(e.checks.find((c) => c.name === "settlement.worker_paid")?.outcome).toBe("skip");
  });

  it("skips the money checks of a failed settlement and fails only its success check", () => {
    const { job, escrow, settlement } = honest();
    settlement.succeeded = false;
    settlement.err = { InstructionError: [0, { Custom: 1 }] };
    settlement.tokenChanges = [];
    const e = evaluateJob(input(job, [escrow, settlement]));
    expect(failing(e)).toEqual(["settlement.succeeded"]);
    expect(e.amounts.chargedUnits).toBe(0n);
  });

  it("verifies a refunded job whose whole lock came back", () => {
    const { job, escrow } = honest("job_refund");
    const refund = facts(sig("F"), 14, "decentral:refund:job_refund", [
      change(accounts.escrowVault, accounts.escrowAuthority, -160_000n),
      change(vault, accounts.escrowAuthority, 160_000n),
    ]);
    job.settlementTx = refund.signature;
    job.httpStatus = 504;
    const e = evaluateJob(input(job, [escrow, refund]));
    expect(failing(e)).toEqual([]);
    expect(e.verdict).toBe("verified");
    expect(e.amounts).toMatchObject({ chargedUnits: 0n, refundedUnits: 160_000n });
    refund.tokenChanges[1]!.delta = 100_000n;
    refund.tokenChanges.push(change(worker.tokenAccount, worker.address, 60_000n));
    expect(failing(evaluateJob(input(job, [escrow, refund])))).toEqual(["refund.complete"]);
  });

  it("fails a job settled twice, once in the headers and once in the jobs API", () => {
    const { job, escrow, settlement } = honest();
    const second = { ...settlement, signature: sig("T"), slot: 13 };
    job.apiSettlementTx = second.signature;
    job.apiEscrowTx = job.escrowTx;
    job.apiWorker = job.worker;
    job.apiStatus = "settled";
    job.apiCheckedAt = 1;
    const e = evaluateJob(input(job, [escrow, settlement, second]));
    expect(failing(e).sort()).toEqual(["jobs_api.matches_receipt", "settlement.single"]);
  });

  it("under a profile without program ids, vault or treasury, learns the treasury before verifying", () => {
    const { job, escrow, settlement } = honest();
    // Mainnet knowledge (no program ids, vault or treasury) over the local mint.
    const profile = { ...decentralMainnetProfile, usdcMint: accounts.mint };
    const e = evaluateJob({ ...input(job, [escrow, settlement]), profile });
    expect(e.verdict).toBe("partially_verified");
    expect(e.unproven).toEqual(["treasury_unknown"]);
    expect(e.learned.treasuryCandidate).toEqual({
      signature: settlement.signature,
      address: accounts.treasury.owner,
    });
    const skipped = Object.fromEntries(
      e.checks.filter((c) => c.outcome === "skip").map((c) => [c.name, c.reason]),
    );
    expect(skipped).toMatchObject({
      "escrow.program": expect.stringContaining("job_escrow program id"),
      "settlement.program": expect.stringContaining("settlement program id"),
      "settlement.recipients": expect.stringContaining("treasury"),
    });
    expect(e.amounts).toMatchObject({ escrowedUnits: 160_000n, chargedUnits: 80_000n });

    const learned = evaluateJob({
      ...input(job, [escrow, settlement]),
      profile,
      learnedTreasury: accounts.treasury.owner,
    });
    expect(learned.verdict).toBe("verified");
  });

  it("never books an unknown payee as the treasury once the treasury is learned", () => {
    const { job, escrow, settlement } = honest();
    const profile = { ...decentralMainnetProfile, usdcMint: accounts.mint };
    const stranger = accounts.workers[3]!;
    settlement.tokenChanges[2] = change(stranger.tokenAccount, stranger.address, 20_000n);
    const e = evaluateJob({
      ...input(job, [escrow, settlement]),
      profile,
      learnedTreasury: accounts.treasury.owner,
    });
    expect(e.verdict).toBe("discrepancy");
    expect(failing(e)).toEqual(["settlement.recipients"]);
  });

  it("calls a job unverifiable when no settlement signature is known and the API did not say settled", () => {
    const { job, escrow } = honest();
    job.settlementTx = null;
    expect(evaluateJob(input(job, [escrow])).verdict).toBe("unverifiable");
    job.apiStatus = "settled";
    job.apiCheckedAt = 1;
    const e = evaluateJob(input(job, [escrow]));
    expect(e.verdict).toBe("discrepancy");
    expect(failing(e)).toEqual(["settlement.exists"]);
  });
});

describe("escrow.within_ceiling: a lock above the most the job can cost", () => {
  /** The honest job's lock made `factor` times larger, the extra returned with the remainder. */
  function overLocked(factor: bigint, jobId = "job_overlock") {
    const { job, escrow, settlement } = honest(jobId);
    const lock = 160_000n * factor;
    escrow.tokenChanges[0]!.delta = -lock;
    escrow.tokenChanges[1]!.delta = lock;
    settlement.tokenChanges[0]!.delta = -lock;
    settlement.tokenChanges[3]!.delta = lock - 80_000n;
    return { job, escrow, settlement };
  }
  const ceiling = (e: ReturnType<typeof evaluateJob>) =>
    e.checks.find((c) => c.name === "escrow.within_ceiling");

  it("fails a lock 1000 times the price at max_tokens, even with the rest returned", () => {
    const { job, escrow, settlement } = overLocked(1000n);
    job.maxTokens = 2000;
    const e = evaluateJob(input(job, [escrow, settlement]));
    expect(e.verdict).toBe("discrepancy");
    expect(failing(e)).toEqual(["escrow.within_ceiling"]);
    expect(ceiling(e)).toMatchObject({
      expected: { lockAtMost: "160000", maxTokens: 2000 },
      actual: { lock: "160000000" },
    });
  });

  it("passes a lock at the price of max_tokens, and one below it", () => {
    const { job, escrow, settlement } = honest();
    job.maxTokens = 2000;
    const atCeiling = evaluateJob(input(job, [escrow, settlement]));
    expect(ceiling(atCeiling)?.outcome).toBe("pass");
    expect(atCeiling.verdict).toBe("verified");
    // 8 + 4 * 5 = 28 credits at 5,000 tokens: a 16-credit lock is below it.
    job.maxTokens = 5000;
    const below = evaluateJob(input(job, [escrow, settlement]));
    expect(ceiling(below)).toMatchObject({ outcome: "pass", expected: { lockAtMost: "280000" } });
    expect(below.verdict).toBe("verified");
  });

  it("takes the default ceiling for a proxy receipt whose request set no max_tokens", () => {
    const { job, escrow, settlement } = overLocked(2n);
    job.source = "proxy";
    const e = evaluateJob(input(job, [escrow, settlement]));
    expect(failing(e)).toEqual(["escrow.within_ceiling"]);
    expect(ceiling(e)?.expected).toMatchObject({ lockAtMost: "160000", maxTokens: 2000 });
  });

  it("skips an ingested receipt without max_tokens, leaving the verdict as it was", () => {
    const { job, escrow, settlement } = overLocked(2n);
    for (const source of ["ingest", "import", undefined] as const) {
      job.source = source;
      const e = evaluateJob(input(job, [escrow, settlement]));
      expect(ceiling(e)?.outcome).toBe("skip");
      expect(e.verdict).toBe("verified");
    }
  });

  it("skips a model the profile does not price, without leaving anything unproven for it", () => {
    const { job, escrow, settlement } = overLocked(2n);
    job.maxTokens = 2000;
    job.model = "unpriced-model";
    const e = evaluateJob(input(job, [escrow, settlement]));
    expect(ceiling(e)?.outcome).toBe("skip");
    // The charge's own check says the price is unknown; the ceiling's skip adds nothing.
    expect(e.verdict).toBe("partially_verified");
    expect(e.unproven).toEqual(["price_unknown"]);
  });

  it("fails a 504 whose over-lock came back whole: the credits were held all the same", () => {
    const { job, escrow } = overLocked(1000n, "job_overlock_refund");
    const refund = facts(sig("F"), 14, "decentral:refund:job_overlock_refund", [
      change(accounts.escrowVault, accounts.escrowAuthority, -160_000_000n),
      change(vault, accounts.escrowAuthority, 160_000_000n),
    ]);
    job.settlementTx = refund.signature;
    job.httpStatus = 504;
    job.maxTokens = 2000;
    const e = evaluateJob(input(job, [escrow, refund]));
    expect(e.checks.find((c) => c.name === "refund.complete")?.outcome).toBe("pass");
    expect(failing(e)).toEqual(["escrow.within_ceiling"]);
    expect(e.verdict).toBe("discrepancy");
  });
});
