import { describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { DAY_MS, grains } from "../src/db/rollups.js";
import type { Verdict } from "../src/db/schema.js";
import type { CustodyProfile } from "../src/store/custody.js";
import {
  createVerdictStore,
  type VerdictAmounts,
  type VerdictWrite,
} from "../src/store/verdicts.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import {
  leaseJob,
  readChecks,
  readJob,
  readProfilePins,
  readRollups,
  readTreasuryEvidence,
  readVaultPins,
  seedJobs,
} from "./support/seed-verdicts.js";

const profile: CustodyProfile = { name: "mainnet-v1", treasury: null, treasuryLearnAfter: 2 };
const T = Date.UTC(2026, 10, 2, 9);
const DAY1 = Date.UTC(2026, 10, 1, 12);
const DAY2 = DAY1 + DAY_MS;
const WORKER = "DcrtuEi23DAjQ9t2QJ9wFXDSZRU26jC5cVx4Dejivmwe";

function amounts(charged: bigint): VerdictAmounts {
  return {
    escrowedUnits: 400_000n,
    chargedUnits: charged,
    workerPaidUnits: (charged * 3n) / 4n,
    treasuryPaidUnits: charged - (charged * 3n) / 4n,
    refundedUnits: 400_000n - charged,
    expectedChargeUnits: charged,
    feesLamports: 10_000n,
  };
}

/** A decision as the verifier's round makes it, with a full evaluation unless said otherwise. */
function decision(
  jobId: string,
  verdict: Verdict,
  options: Partial<VerdictWrite> & { charged?: bigint; keyFingerprint?: string | null } = {},
): VerdictWrite {
  const { charged, keyFingerprint, ...rest } = options;
  return {
    job: {
      jobId,
      keyFingerprint: keyFingerprint === undefined ? "kf_0001" : keyFingerprint,
      verdictAt: null,
      verifyAttempts: 0,
    },
    verdict,
    nextVerifyAt: T + 60_000,
    lastError: null,
    commitment: "finalized",
    evaluation: {
      amounts: amounts(charged ?? 80_000n),
      unproven: [],
      learned: { creditVault: null, treasuryCandidate: null },
    },
    checks: [
      {
        name: "escrow.amount",
        outcome: "pass",
        reason: null,
        expected: "400000",
        actual: "400000",
      },
      {
        name: "settlement.charge",
        outcome: "pass",
        reason: null,
        expected: null,
        actual: undefined,
      },
    ],
    ...rest,
  };
}

describe.each(dialects)("verdict store on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("writes a final verdict with its amounts and checks in one go, and releases the lease", async () => {
    const store = await stores.open();
    await seedJobs(store, [{ jobId: "job-1" }]);
    const written = await createVerdictStore(store, profile).write(
      [decision("job-1", "verified")],
      {
        owner: "owner-a",
        runId: 7,
        t: T,
      },
    );
    expect(written).toEqual([true]);
    expect(await readJob(store, "job-1")).toMatchObject({
      verdict: "verified",
      verdictAt: T,
      verifyAttempts: 0,
      nextVerifyAt: T + 60_000,
      leaseOwner: null,
      leaseUntil: null,
      commitment: "finalized",
      unproven: null,
      updatedAt: T,
      chargedUnits: 80_000n,
      escrowedUnits: 400_000n,
      workerPaidUnits: 60_000n,
      treasuryPaidUnits: 20_000n,
      refundedUnits: 320_000n,
      expectedChargeUnits: 80_000n,
      feesLamports: 10_000n,
    });
    expect(await readChecks(store, "job-1")).toEqual([
      {
        name: "escrow.amount",
        outcome: "pass",
        reason: null,
        expected: "400000",
        actual: "400000",
        runId: 7,
        checkedAt: T,
      },
      {
        name: "settlement.charge",
        outcome: "pass",
        reason: null,
        expected: null,
        actual: null,
        runId: 7,
        checkedAt: T,
      },
    ]);
  });

  it("writes nothing for a job whose lease another owner holds now", async () => {
    const store = await stores.open();
    await seedJobs(store, [{ jobId: "job-1", leaseOwner: "owner-b" }]);
    const before = await readJob(store, "job-1");
    const stale = decision("job-1", "verified", {
      evaluation: {
        amounts: amounts(80_000n),
        unproven: [],
        learned: { creditVault: null, treasuryCandidate: { signature: "sig-1", address: "T1" } },
      },
    });
    const written = await createVerdictStore(store, profile).write([stale], {
      owner: "owner-a",
      runId: 1,
      t: T,
    });
    expect(written).toEqual([false]);
    expect(await readJob(store, "job-1")).toEqual(before);
    expect(await readChecks(store, "job-1")).toEqual([]);
    expect(await readTreasuryEvidence(store, profile.name)).toEqual([]);
    const rollups = await readRollups(store, grains.full);
    expect(rollups.map((r) => [r.open, r.verified, r.chargedUnits])).toEqual([[1, 0, 0n]]);
  });

  it("writes the jobs it still leases and skips the others in the same batch", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "job-1" },
      { jobId: "job-2", leaseOwner: null },
      { jobId: "job-3" },
    ]);
    const written = await createVerdictStore(store, profile).write(
      [decision("job-1", "verified"), decision("job-2", "verified"), decision("job-3", "error")],
      { owner: "owner-a", runId: null, t: T },
    );
    expect(written).toEqual([true, false, false]);
    expect((await readJob(store, "job-2")).verdict).toBe("pending");
    expect(await readJob(store, "job-3")).toMatchObject({
      verdict: "error",
      verdictAt: null,
      verifyAttempts: 1,
      leaseOwner: null,
    });
    // A retryable error is not final: its checks are not kept.
    expect(await readChecks(store, "job-3")).toEqual([]);
  });

  it("writes a job polled again and still open without its verdict, and a verdict that moved under the lease whole", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "job-1", verdict: "awaiting_finality" },
      // Claimed as waiting, but the row says pending: the whole write, verdict included.
      { jobId: "job-2", verdict: "pending" },
      { jobId: "job-3", verdict: "awaiting_finality", leaseOwner: "owner-b" },
      { jobId: "job-4", verdict: "error" },
    ]);
    const still = (jobId: string, verdict: Verdict, rest: Partial<VerdictWrite> = {}) =>
      decision(jobId, verdict, {
        job: { jobId, keyFingerprint: "kf_0001", verdictAt: null, verifyAttempts: 2, verdict },
        evaluation: null,
        checks: null,
        commitment: "confirmed",
        nextVerifyAt: T + 4_000,
        ...rest,
      });
    const job3 = await readJob(store, "job-3");
    const written = await createVerdictStore(store, profile).write(
      [
        still("job-1", "awaiting_finality"),
        still("job-2", "awaiting_finality"),
        still("job-3", "awaiting_finality"),
        still("job-4", "error", { lastError: "getTransaction: timed out", commitment: null }),
      ],
      { owner: "owner-a", runId: null, t: T },
    );
    expect(written).toEqual([false, false, false, false]);
    const waiting = {
      verdict: "awaiting_finality",
      verdictAt: null,
      verifyAttempts: 0,
      nextVerifyAt: T + 4_000,
      leaseOwner: null,
      leaseUntil: null,
      lastError: null,
      commitment: "confirmed",
      unproven: null,
      updatedAt: T,
    };
    expect(await readJob(store, "job-1")).toMatchObject(waiting);
    expect(await readJob(store, "job-2")).toMatchObject(waiting);
    // Another owner's lease: nothing written.
    expect(await readJob(store, "job-3")).toEqual(job3);
    expect(await readJob(store, "job-4")).toMatchObject({
      verdict: "error",
      verifyAttempts: 3,
      nextVerifyAt: T + 4_000,
      leaseOwner: null,
      lastError: "getTransaction: timed out",
      commitment: null,
    });
    // Open all along: the report figures count four open jobs, as before.
    const rollups = await readRollups(store, grains.full);
    expect(rollups.map((r) => [r.open, r.verified, r.discrepancy, r.chargedUnits])).toEqual([
      [4, 0, 0, 0n],
    ]);
  });

  it("keeps the profile of the verdict a job judged again left until the new one is final", async () => {
    // Before, an open write (RPC trouble, waiting on finality) of a job judged again wrote its
    // profile: `rejudging.previousVerdictProfile` named the new profile beside the old verdict.
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "job-1", previousVerdict: "verified", verdictProfile: "localnet@00000000000000aa" },
      { jobId: "job-2", previousVerdict: "verified", verdictProfile: "localnet@00000000000000aa" },
    ]);
    const judgedBy = "localnet@00000000000000bb";
    const verdicts = createVerdictStore(store, profile, judgedBy);
    const open = decision("job-1", "error", {
      evaluation: null,
      checks: null,
      lastError: "getTransaction: timed out",
    });
    await verdicts.write([open, decision("job-2", "verified")], {
      owner: "owner-a",
      runId: null,
      t: T,
    });
    expect(await readJob(store, "job-1")).toMatchObject({
      verdict: "error",
      previousVerdict: "verified",
      verdictProfile: "localnet@00000000000000aa",
    });
    expect(await readJob(store, "job-2")).toMatchObject({
      verdict: "verified",
      previousVerdict: null,
      verdictProfile: judgedBy,
    });
  });

  it("keeps an RPC disagreement's evidence and replaces it with the final verdict's checks", async () => {
    const store = await stores.open();
    await seedJobs(store, [{ jobId: "job-1" }]);
    const verdicts = createVerdictStore(store, profile);
    const disagreement = decision("job-1", "rpc_disagreement", {
      evaluation: null,
      checks: [
        {
          name: "rpc.quorum",
          outcome: "fail",
          reason: "endpoints disagree",
          expected: { a: 1 },
          actual: [2],
        },
      ],
      lastError: "quorum",
    });
    expect(await verdicts.write([disagreement], { owner: "owner-a", runId: 1, t: T })).toEqual([
      false,
    ]);
    expect(await readJob(store, "job-1")).toMatchObject({
      verdict: "rpc_disagreement",
      verifyAttempts: 1,
      lastError: "quorum",
      chargedUnits: null,
    });
    expect((await readChecks(store, "job-1")).map((c) => [c.name, c.expected, c.actual])).toEqual([
      ["rpc.quorum", { a: 1 }, [2]],
    ]);

    await leaseJob(store, "job-1", "owner-a");
    expect(
      await verdicts.write([decision("job-1", "verified")], {
        owner: "owner-a",
        runId: 2,
        t: T + 1,
      }),
    ).toEqual([true]);
    expect((await readChecks(store, "job-1")).map((c) => c.name)).toEqual([
      "escrow.amount",
      "settlement.charge",
    ]);
  });

  it("pins a key's first learned vault and sends a job that learned another back to pending", async () => {
    const store = await stores.open();
    await seedJobs(store, [{ jobId: "job-1" }, { jobId: "job-2" }, { jobId: "job-3" }]);
    const learning = (jobId: string, vault: string) =>
      decision(jobId, "verified", {
        evaluation: {
          amounts: amounts(80_000n),
          unproven: [],
          learned: { creditVault: vault, treasuryCandidate: null },
        },
      });
    const written = await createVerdictStore(store, profile).write(
      [learning("job-1", "VaultA"), learning("job-2", "VaultB"), learning("job-3", "VaultA")],
      { owner: "owner-a", runId: null, t: T },
    );
    expect(written).toEqual([true, false, true]);
    expect(await readVaultPins(store)).toEqual([
      { key: "kf_0001", vault: "VaultA", source: "learned", jobId: "job-1" },
    ]);
    expect(await readJob(store, "job-2")).toMatchObject({
      verdict: "pending",
      verdictAt: null,
      nextVerifyAt: T,
      leaseOwner: null,
      chargedUnits: null,
    });
  });

  it("learns the treasury once enough settlements agree and reopens the jobs that waited for it", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "job-1" },
      { jobId: "job-2" },
      {
        jobId: "waiting",
        leaseOwner: null,
        verdict: "partially_verified",
        unproven: ["treasury_unknown"],
      },
      {
        jobId: "other-gap",
        leaseOwner: null,
        verdict: "partially_verified",
        unproven: ["fee_payer"],
      },
    ]);
    const settling = (jobId: string, signature: string) =>
      decision(jobId, "partially_verified", {
        evaluation: {
          amounts: amounts(80_000n),
          unproven: ["treasury_unknown"],
          learned: { creditVault: null, treasuryCandidate: { signature, address: "Treasury1" } },
        },
      });
    const verdicts = createVerdictStore(store, profile);
    await verdicts.write([settling("job-1", "sig-1")], { owner: "owner-a", runId: null, t: T });
    expect(await readProfilePins(store)).toEqual([]);
    expect((await readJob(store, "waiting")).verdict).toBe("partially_verified");

    await verdicts.write([settling("job-2", "sig-2")], { owner: "owner-a", runId: null, t: T + 1 });
    expect(await readProfilePins(store)).toEqual([
      { profile: profile.name, name: "treasury", value: "Treasury1", evidence: 2 },
    ]);
    for (const jobId of ["waiting", "job-1", "job-2"]) {
      expect(await readJob(store, jobId)).toMatchObject({ verdict: "pending", nextVerifyAt: 0 });
    }
    expect((await readJob(store, "other-gap")).verdict).toBe("partially_verified");
  });

  it("moves the rollup figures exactly as the verdicts move the jobs", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "a1", createdAt: DAY1, model: "m-a" },
      { jobId: "a2", createdAt: DAY1 + 1000, model: "m-a" },
      { jobId: "a3", createdAt: DAY1 + 2000, model: "m-b" },
      { jobId: "b1", createdAt: DAY2, model: "m-a" },
      { jobId: "b2", createdAt: DAY2 + 1000, model: "m-a" },
    ]);
    const verdicts = createVerdictStore(store, profile);
    await verdicts.write(
      [
        decision("a1", "verified", { charged: 80_000n }),
        decision("a2", "discrepancy", { charged: 90_000n }),
        decision("a3", "partially_verified", { charged: 70_000n }),
        decision("b1", "dropped", { evaluation: null, checks: null }),
        decision("b2", "error", { evaluation: null }),
      ],
      { owner: "owner-a", runId: null, t: T },
    );
    const row = (
      day: number,
      model: string,
      figures: Partial<Record<string, number | bigint>>,
    ) => ({
      day: Math.floor(day / DAY_MS),
      model,
      worker: WORKER,
      key: "kf_0001",
      open: 0,
      verified: 0,
      partiallyVerified: 0,
      discrepancy: 0,
      dropped: 0,
      unverifiable: 0,
      escrowedUnits: 0n,
      chargedUnits: 0n,
      workerPaidUnits: 0n,
      treasuryPaidUnits: 0n,
      refundedUnits: 0n,
      feesLamports: 0n,
      verifiedChargedUnits: 0n,
      disputedChargedUnits: 0n,
      ...figures,
    });
    expect(await readRollups(store, grains.full)).toEqual([
      row(DAY1, "m-a", {
        verified: 1,
        discrepancy: 1,
        escrowedUnits: 800_000n,
        chargedUnits: 170_000n,
        workerPaidUnits: 60_000n + 67_500n,
        treasuryPaidUnits: 20_000n + 22_500n,
        refundedUnits: 320_000n + 310_000n,
        feesLamports: 20_000n,
        verifiedChargedUnits: 80_000n,
        disputedChargedUnits: 90_000n,
      }),
      row(DAY1, "m-b", {
        partiallyVerified: 1,
        escrowedUnits: 400_000n,
        chargedUnits: 70_000n,
        workerPaidUnits: 52_500n,
        treasuryPaidUnits: 17_500n,
        refundedUnits: 330_000n,
        feesLamports: 10_000n,
      }),
      row(DAY2, "m-a", { open: 1, dropped: 1 }),
    ]);

    // A verdict that changes again moves the figures from one column to the other.
    await leaseJob(store, "a2", "owner-a");
    await verdicts.write([decision("a2", "verified", { charged: 90_000n })], {
      owner: "owner-a",
      runId: null,
      t: T + 1,
    });
    const [day1ModelA] = await readRollups(store, grains.full);
    expect(day1ModelA).toMatchObject({
      verified: 2,
      discrepancy: 0,
      chargedUnits: 170_000n,
      verifiedChargedUnits: 170_000n,
      disputedChargedUnits: 0n,
    });
  });

  if (dialect === "postgres") {
    it("two processes writing the same job's verdict at once: one writes, the other nothing", async () => {
      const store = await stores.open();
      const other = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 });
      try {
        await seedJobs(store, [{ jobId: "job-1" }]);
        const [a, b] = await Promise.all([
          createVerdictStore(store, profile).write(
            [decision("job-1", "verified", { charged: 1n })],
            {
              owner: "owner-a",
              runId: null,
              t: T,
            },
          ),
          createVerdictStore(other, profile).write(
            [decision("job-1", "verified", { charged: 2n })],
            {
              owner: "owner-a",
              runId: null,
              t: T,
            },
          ),
        ]);
        // The same owner twice (a retried round): the first write releases the lease, so the
        // second finds no lease and touches nothing.
        expect([...a!, ...b!].sort()).toEqual([false, true]);
        const [rollup] = await readRollups(store, grains.full);
        expect(rollup).toMatchObject({ verified: 1, open: 0 });
        expect(rollup!.chargedUnits).toBe((await readJob(store, "job-1")).chargedUnits);
      } finally {
        await other.close();
      }
    });

    it("two processes whose batches meet on rollup rows in opposite orders both complete", async () => {
      const store = await stores.open();
      const other = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 });
      try {
        // Same day, worker and key, two models: each job's rollup trigger locks its model's
        // rows and the shared worker and key rows, so batches that ran side by side would wait
        // on each other in a cycle (PostgreSQL then aborts one); the writers take turns, and a
        // writer aborted for a deadlock runs again.
        await seedJobs(store, [
          { jobId: "x1", model: "m1" },
          { jobId: "x2", model: "m2" },
          { jobId: "y1", model: "m2" },
          { jobId: "y2", model: "m1" },
        ]);
        const blocker = await (store as PgStore).pool.connect();
        let writes: Promise<boolean[][]>;
        try {
          await blocker.query("BEGIN");
          // The rollup rows held: the first batch waits there, holding the turns, the second
          // for them (a job row held is left out of a verdict write, not waited for).
          await blocker.query("SELECT 1 FROM job_rollups FOR UPDATE");
          const context = { owner: "owner-a", runId: null, t: T };
          writes = Promise.all([
            createVerdictStore(store, profile).write(
              [decision("x1", "verified"), decision("x2", "verified")],
              context,
            ),
            createVerdictStore(other, profile).write(
              [decision("y1", "verified"), decision("y2", "verified")],
              context,
            ),
          ]);
          await waitForLockWaiters(store as PgStore, 2);
          await blocker.query("COMMIT");
        } finally {
          blocker.release();
        }
        expect(await writes).toEqual([
          [true, true],
          [true, true],
        ]);
        const rollups = await readRollups(store, grains.full);
        expect(rollups.map((r) => [r.model, r.verified, r.open, r.chargedUnits])).toEqual([
          ["m1", 2, 0, 160_000n],
          ["m2", 2, 0, 160_000n],
        ]);
      } finally {
        await other.close();
      }
    });
  }
});

/** Resolves once `n` sessions of the store's database wait on a lock. */
async function waitForLockWaiters(store: PgStore, n: number): Promise<void> {
  for (;;) {
    const { rows } = await store.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity
       WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (Number(rows[0]?.n) >= n) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
