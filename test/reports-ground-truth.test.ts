import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/api/app.js";
import { createToken } from "../src/auth/tokens.js";
import { createRpcPool } from "../src/chain/rpc-pool.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { useStarted } from "./support/started-life.js";
import { createTestStore } from "./support/store.js";
import { groundTruth, type JobSpec, runRecordedJob } from "./support/verify-jobs.js";

const log = createLogger({ level: "silent" });

const world = useStarted(() => startLocalWorld({ slotMs: 10, finalitySlots: 3 }));

type Figures = Record<string, string | number>;

describe("reports over simulated jobs", () => {
  it("match the simulator's ground truth to the base unit, in JSON and CSV, and list exactly the faulty jobs", async () => {
    const store = createTestStore();
    const from = new Date(Date.now() - 60_000).toISOString();
    // Honest jobs (stream or not, staked and unstaked workers), a 504 refund, and faults whose
    // money still moved exactly as the simulator records it.
    const specs: (JobSpec & { faulty?: string })[] = [
      { model: "qwen3-8b" },
      { model: "llama-3.3-70b", stream: true, maxTokens: 800 },
      { model: "phi-4-mini", apiKeyIndex: 1 },
      { model: "mistral-small-3.1-24b", stream: true, apiKeyIndex: 2 },
      { model: "qwen3-8b", fault: "timeout" },
      { model: "qwen3-8b", fault: "underpay-worker", faulty: "settlement.split" },
      { model: "llama-3.3-70b", fault: "overcharge", faulty: "charge.matches_price" },
    ];
    const jobs: { jobId: string; faulty?: string }[] = [];
    for (const spec of specs) {
      const { jobId } = await runRecordedJob(world, store, spec);
      jobs.push({ jobId, faulty: spec.faulty });
    }
    const rpc = createRpcPool({
      endpoints: [{ url: world.rpcUrl, rateLimitPerSec: 200, concurrency: 4, timeoutMs: 2000 }],
    });
    const verifier = createVerifier({
      store,
      rpc,
      profile: localnetProfile,
      log,
      options: { pollIntervalMs: 20, backfillWaitMs: 20 },
    });
    const run = await verifier.runUntilSettled({}, { timeoutMs: 20_000 });
    await rpc.close();
    expect(run.status).toBe("completed");

    const truth = {
      escrowedUnits: 0n,
      chargedUnits: 0n,
      workerPaidUnits: 0n,
      treasuryPaidUnits: 0n,
      refundedUnits: 0n,
    };
    for (const { jobId } of jobs) {
      const t = await groundTruth(world, jobId);
      truth.escrowedUnits += BigInt(t.lockUnits as string);
      truth.chargedUnits += BigInt(t.chargeUnits as string);
      truth.workerPaidUnits += BigInt(t.workerShareUnits as string);
      truth.treasuryPaidUnits += BigInt(t.treasuryShareUnits as string);
      truth.refundedUnits += BigInt(t.refundUnits as string);
    }

    const app = createApp({ store, log });
    const headers = {
      authorization: `Bearer ${(await createToken(store, { role: "read", name: "t" })).token}`,
    };
    const to = new Date(Date.now() + 60_000).toISOString();
    const query = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}&groupBy=model`;
    const json = (await (
      await app.request(`/reports/reconciliation?${query}`, { headers })
    ).json()) as { totals: Figures };
    const csv = parse(
      await (await app.request(`/reports/reconciliation?${query}&format=csv`, { headers })).text(),
      { columns: true },
    ) as Record<string, string>[];
    const csvTotals = csv.at(-1)!;

    for (const [key, value] of Object.entries(truth)) {
      expect({ key, json: json.totals[key], csv: csvTotals[key] }).toEqual({
        key,
        json: value.toString(),
        csv: value.toString(),
      });
    }
    expect(json.totals.unaccountedUnits).toBe("0");
    expect(json.totals).toMatchObject({
      jobs: specs.length,
      verified: specs.length - 2,
      discrepancies: 2,
      pending: 0,
    });

    const page = (await (
      await app.request("/reports/discrepancies?order=asc", { headers })
    ).json()) as {
      items: { jobId: string; failingChecks: { name: string }[] }[];
    };
    const faulty = jobs.filter((j) => j.faulty);
    expect(
      page.items.map((i) => ({ jobId: i.jobId, failing: i.failingChecks.map((c) => c.name) })),
    ).toEqual(faulty.map((j) => ({ jobId: j.jobId, failing: [j.faulty] })));
  });
});
