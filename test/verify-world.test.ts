import { eq } from "drizzle-orm";
import { describe, expect, it, vi } from "vitest";
import { AuditRecordSchema } from "../src/api/openapi-schemas.js";
import { createRpcPool, type RpcPool } from "../src/chain/rpc-pool.js";
import type { SqliteStore } from "../src/db/client.js";
import { checkResults, jobs } from "../src/db/schema.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { createJobsApiClient } from "../src/recorder/jobs-api.js";
import { createSettlementBackfill } from "../src/recorder/settlement-backfill.js";
import { auditRecord } from "../src/reports/audit-record.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";
import { useStarted } from "./support/started-life.js";
import { createTestStore } from "./support/store.js";
import { groundTruth, type JobSpec, runRecordedJob } from "./support/verify-jobs.js";

const log = createLogger({ level: "silent" });
/** A short drop window: with 10 ms slots a never-landing signature is called dropped in ~0.5 s. */
const profile: Profile = { ...localnetProfile, dropAfterSlots: 50 };

const world = useStarted(() => startLocalWorld({ slotMs: 10, finalitySlots: 3 }));

function pool(urls = [world.rpcUrl], rateLimitPerSec = 200): RpcPool {
  return createRpcPool({
    endpoints: urls.map((url) => ({ url, rateLimitPerSec, concurrency: 4, timeoutMs: 2000 })),
    backoffBaseMs: 20,
    backoffMaxMs: 200,
    breakerCooldownMs: 500,
  });
}

async function verifyAll(store: SqliteStore, rpc: RpcPool) {
  const verifier = createVerifier({
    store,
    rpc,
    profile,
    log,
    options: quickVerifierOptions,
  });
  return verifier.runUntilSettled({}, { timeoutMs: 20_000 });
}

/** A verifier as `serve` runs it: a clean verdict waits a minute for the jobs API's answer. */
function holdingVerifier(store: SqliteStore, rpc: RpcPool) {
  return createVerifier({
    store,
    rpc,
    profile,
    log,
    options: { ...quickVerifierOptions, jobsApiWaitMs: 60_000 },
  });
}

const jobRow = (store: SqliteStore, jobId: string) =>
  store.db.select().from(jobs).where(eq(jobs.jobId, jobId)).get()!;
const failingChecks = (store: SqliteStore, jobId: string) =>
  store.db
    .select()
    .from(checkResults)
    .where(eq(checkResults.jobId, jobId))
    .all()
    .filter((c) => c.outcome === "fail")
    .map((c) => c.name)
    .sort();

describe("verifying simulated jobs on the local chain", () => {
  it("verifies honest jobs, streamed or not, for staked and unstaked workers, to the base unit", async () => {
    const store = createTestStore();
    const rpc = pool();
    const specs: JobSpec[] = [
      { stream: false, model: "qwen3-8b" },
      { stream: true, model: "qwen3-8b" },
      { stream: false, model: "llama-3.3-70b", maxTokens: 800 },
      { stream: true, model: "phi-4-mini" },
      { stream: false, model: "mistral-small-3.1-24b" },
      { stream: true, model: "llama-3.3-70b" },
      { stream: false, model: "phi-4-mini", apiKeyIndex: 1 },
      { stream: true, model: "qwen3-8b", apiKeyIndex: 1 },
    ];
    const ids: string[] = [];
    for (const spec of specs) ids.push((await runRecordedJob(world, store, spec)).jobId);
    const summary = await verifyAll(store, rpc);
    expect(summary).toMatchObject({ status: "completed", total: specs.length });
    const staked = new Set<boolean>();
    for (const jobId of ids) {
      const truth = await groundTruth(world, jobId);
      staked.add(truth.staked as boolean);
      const row = jobRow(store, jobId);
      expect({ jobId, verdict: row.verdict, failing: failingChecks(store, jobId) }).toEqual({
        jobId,
        verdict: "verified",
        failing: [],
      });
      expect(row).toMatchObject({
        escrowedUnits: BigInt(truth.lockUnits as string),
        chargedUnits: BigInt(truth.chargeUnits as string),
        workerPaidUnits: BigInt(truth.workerShareUnits as string),
        treasuryPaidUnits: BigInt(truth.treasuryShareUnits as string),
        refundedUnits: BigInt(truth.refundUnits as string),
        expectedChargeUnits: BigInt(truth.priceUnits as string),
      });
    }
    expect(staked).toEqual(new Set([true, false]));
    await rpc.close();
  });

  it("lists both settlements of a settled-twice job in its audit record, so its amounts add up from the movements listed", async () => {
    const store = createTestStore();
    const rpc = pool();
    const { jobId } = await runRecordedJob(world, store, {
      fault: "double-settle",
      apiKeyIndex: 3,
      consultJobsApi: true,
    });
    await verifyAll(store, rpc);
    const record = (await auditRecord(store, jobId, { cluster: "mainnet-beta" }))!;
    // The shape documented in /openapi.json.
    expect(AuditRecordSchema.safeParse(JSON.parse(JSON.stringify(record))).success).toBe(true);
    const { amounts } = record;
    const settlements = record.transactions.filter((t) =>
      t.namedAs.some((n) => n.endsWith("settlement")),
    );
    expect(settlements).toHaveLength(2);
    // What the page lists, added up by who received it.
    const counted = record.transactions.filter((t) => t.countedInAmounts);
    const received = (account: (m: { account: string; owner: string | null }) => boolean) =>
      counted
        .flatMap((t) => t.tokenMovements)
        .filter((m) => account(m) && BigInt(m.delta) > 0n)
        .reduce((total, m) => total + BigInt(m.delta), 0n);
    const worker = record.receipt.decentral.worker ?? record.jobsApi?.worker;
    const vault = world.accounts.creditVaults[3]!.vault;
    const listed = {
      workerPaidUnits: received((m) => m.owner === worker).toString(),
      treasuryPaidUnits: received(
        (m) => m.account === world.accounts.treasury.tokenAccount,
      ).toString(),
      refundedUnits: received((m) => m.account === vault).toString(),
      feesLamports: counted.reduce((total, t) => total + BigInt(t.feeLamports!), 0n).toString(),
    };
    expect(listed).toEqual({
      workerPaidUnits: amounts.workerPaidUnits,
      treasuryPaidUnits: amounts.treasuryPaidUnits,
      refundedUnits: amounts.refundedUnits,
      feesLamports: amounts.feesLamports,
    });
    // Two settlements paid twice: the listed settlements alone carry more than the header's.
    expect(BigInt(amounts.workerPaidUnits!)).toBeGreaterThan(
      BigInt(
        record.settlement!.tokenMovements.find((m) => m.owner === worker && BigInt(m.delta) > 0n)!
          .delta,
      ),
    );
    await rpc.close();
  });

  it("asks the jobs API about an ingested job too, so a second settlement only it names is caught", async () => {
    const store = createTestStore();
    const rpc = pool();
    // Posted to POST /jobs with its headers, as the fetch wrapper does: nobody asked the jobs
    // API about it at the time.
    const { jobId } = await runRecordedJob(world, store, {
      fault: "double-settle",
      apiKeyIndex: 3,
      consultJobsApi: false,
    });
    expect(jobRow(store, jobId)).toMatchObject({ backfillState: "pending", apiCheckedAt: null });
    const backfill = createSettlementBackfill({
      store,
      log,
      jobsApi: createJobsApiClient(world.decentralBaseUrl),
      apiKeys: [world.apiKeys[3]!],
    });
    expect(await backfill.runOnce()).toBe(1);
    expect(jobRow(store, jobId).backfillState).toBe("done");
    await verifyAll(store, rpc);
    expect({ verdict: jobRow(store, jobId).verdict, failing: failingChecks(store, jobId) }).toEqual(
      { verdict: "discrepancy", failing: ["jobs_api.matches_receipt", "settlement.single"] },
    );
    await rpc.close();
  });

  it("holds an ingested job's verdict for the jobs API's answer, so a second settlement is never verified first", async () => {
    const store = createTestStore();
    const rpc = pool();
    // Posted after its transactions were final: the verifier can judge it at once, before the
    // backfill has asked the jobs API, which alone names the second settlement.
    const { jobId } = await runRecordedJob(world, store, {
      fault: "double-settle",
      apiKeyIndex: 3,
      consultJobsApi: false,
    });
    const verifier = holdingVerifier(store, rpc);
    const run = verifier.runUntilSettled({}, { timeoutMs: 20_000 });
    await vi.waitFor(() => expect(jobRow(store, jobId).commitment).toBe("finalized"), {
      timeout: 5_000,
      interval: 20,
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(jobRow(store, jobId).verdict).toBe("awaiting_finality");
    const backfill = createSettlementBackfill({
      store,
      log,
      jobsApi: createJobsApiClient(world.decentralBaseUrl),
      apiKeys: [world.apiKeys[3]!],
    });
    expect(await backfill.runOnce()).toBe(1);
    expect(await run).toMatchObject({ status: "completed" });
    expect({ verdict: jobRow(store, jobId).verdict, failing: failingChecks(store, jobId) }).toEqual(
      { verdict: "discrepancy", failing: ["jobs_api.matches_receipt", "settlement.single"] },
    );
    await rpc.close();
  });

  it("ends the hold as soon as the answer or the backfill's give-up comes, not at the wait's end", async () => {
    const store = createTestStore();
    const rpc = pool();
    const { jobId: answered } = await runRecordedJob(world, store, {
      apiKeyIndex: 3,
      consultJobsApi: false,
    });
    const { jobId: keyless } = await runRecordedJob(world, store, {
      apiKeyIndex: 2,
      consultJobsApi: false,
    });
    const verifier = holdingVerifier(store, rpc);
    const run = verifier.runUntilSettled({}, { timeoutMs: 15_000 });
    await vi.waitFor(
      () => {
        for (const id of [answered, keyless]) {
          expect(jobRow(store, id)).toMatchObject({
            verdict: "awaiting_finality",
            commitment: "finalized",
          });
        }
      },
      { timeout: 5_000, interval: 20 },
    );
    // One key: the answer for the first names nothing new; the second has no key, so the
    // backfill gives up on it. Either way no answer is still to come.
    const backfill = createSettlementBackfill({
      store,
      log,
      jobsApi: createJobsApiClient(world.decentralBaseUrl),
      apiKeys: [world.apiKeys[3]!],
    });
    await backfill.runOnce();
    expect(jobRow(store, keyless).backfillState).toBe("gave_up");
    const started = Date.now();
    expect(await run).toMatchObject({ status: "completed" });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect([jobRow(store, answered).verdict, jobRow(store, keyless).verdict]).toEqual([
      "verified",
      "verified",
    ]);
    await rpc.close();
  });

  // fault -> verdict -> the checks that fail (and no others)
  const faultTable: { fault: string; stream?: boolean; verdict: string; failing: string[] }[] = [
    { fault: "underpay-worker", verdict: "discrepancy", failing: ["settlement.split"] },
    { fault: "wrong-worker", verdict: "discrepancy", failing: ["settlement.worker_paid"] },
    { fault: "skip-settlement", verdict: "discrepancy", failing: ["settlement.exists"] },
    {
      fault: "double-settle",
      verdict: "discrepancy",
      failing: ["jobs_api.matches_receipt", "settlement.single"],
    },
    {
      fault: "reuse-escrow",
      verdict: "discrepancy",
      failing: ["signatures.unique"],
    },
    { fault: "phantom-signature", verdict: "dropped", failing: ["settlement.exists"] },
    { fault: "overcharge", verdict: "discrepancy", failing: ["charge.matches_price"] },
    { fault: "failed-settlement", verdict: "discrepancy", failing: ["settlement.succeeded"] },
    { fault: "timeout", verdict: "verified", failing: [] },
    {
      fault: "underpay-worker",
      stream: true,
      verdict: "discrepancy",
      failing: ["settlement.split"],
    },
    {
      fault: "overcharge",
      stream: true,
      verdict: "discrepancy",
      failing: ["charge.matches_price"],
    },
  ];

  it("ends each simulator fault in its verdict with exactly the checks it breaks", async () => {
    const store = createTestStore();
    const rpc = pool();
    // reuse-escrow replays the previous escrow of the same key: this honest job's.
    const { jobId: original } = await runRecordedJob(world, store, { apiKeyIndex: 2 });
    const ids: string[] = [];
    for (const row of faultTable) {
      const { jobId } = await runRecordedJob(world, store, {
        fault: row.fault,
        stream: row.stream ?? false,
        apiKeyIndex: 2,
      });
      ids.push(jobId);
    }
    await verifyAll(store, rpc);
    const actual = faultTable.map((row, i) => ({
      fault: row.fault,
      stream: row.stream ?? false,
      verdict: jobRow(store, ids[i]!).verdict,
      failing: failingChecks(store, ids[i]!),
    }));
    expect(actual).toEqual(
      faultTable.map((row) => ({
        fault: row.fault,
        stream: row.stream ?? false,
        verdict: row.verdict,
        failing: [...row.failing].sort(),
      })),
    );
    // The replayed escrow stays with the job its memo names.
    expect(jobRow(store, original).verdict).toBe("verified");
    // The 504 job proved its refund.
    const timeoutId = ids[faultTable.findIndex((r) => r.fault === "timeout")]!;
    const refund = store.db
      .select()
      .from(checkResults)
      .where(eq(checkResults.jobId, timeoutId))
      .all()
      .filter((c) => c.name.startsWith("refund."));
    const outcomes = Object.fromEntries(refund.map((c) => [c.name, c.outcome]));
    expect(outcomes).toMatchObject({
      "refund.exists": "pass",
      "refund.finalized": "pass",
      "refund.succeeded": "pass",
      "refund.memo": "pass",
      "refund.complete": "pass",
      "refund.after_escrow": "pass",
      "refund.within_window": "pass",
      "refund.not_settled": "pass",
    });
    expect(jobRow(store, timeoutId)).toMatchObject({ httpStatus: 504, chargedUnits: 0n });
    await rpc.close();
  });
});
