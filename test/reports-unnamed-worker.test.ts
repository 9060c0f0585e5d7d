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
import { runRecordedJob } from "./support/verify-jobs.js";

const log = createLogger({ level: "silent" });

const world = useStarted(() => startLocalWorld({ slotMs: 10, finalitySlots: 3 }));

type Figures = Record<string, string | number>;

describe("a receipt that names no worker", () => {
  it("reports its payout under the worker the jobs API named and the checks accepted", async () => {
    const store = createTestStore();
    const from = new Date(Date.now() - 60_000).toISOString();
    const { jobId } = await runRecordedJob(world, store, { model: "qwen3-8b" });
    // An ingested receipt without the worker header.
    store.sqlite.prepare("UPDATE jobs SET worker = NULL WHERE job_id = ?").run(jobId);
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
    const row = store.sqlite
      .prepare("SELECT verdict, worker, api_worker, worker_paid_units FROM jobs WHERE job_id = ?")
      .get(jobId) as {
      verdict: string;
      worker: null;
      api_worker: string;
      worker_paid_units: number;
    };
    // Judged on the jobs API's worker, whose payout counts in workerPaid.
    expect(row).toMatchObject({ verdict: "verified", worker: null });
    expect(row.api_worker).toEqual(expect.any(String));
    const paid = String(row.worker_paid_units);
    expect(BigInt(paid)).toBeGreaterThan(0n);

    const app = createApp({ store, log });
    const headers = {
      authorization: `Bearer ${(await createToken(store, { role: "read", name: "t" })).token}`,
    };
    const to = new Date(Date.now() + 60_000).toISOString();
    const q = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
    const byWorker = (await (
      await app.request(`/reports/reconciliation?${q}&groupBy=worker`, { headers })
    ).json()) as { totals: Figures; groups: Figures[] };
    expect(byWorker.groups.map((g) => [g.group, g.workerPaidUnits])).toEqual([
      [row.api_worker, paid],
    ]);
    expect(byWorker.totals.workerPaidUnits).toBe(paid);
    const csv = parse(
      await (
        await app.request(`/reports/reconciliation?${q}&groupBy=worker&format=csv`, { headers })
      ).text(),
      { columns: true },
    ) as Record<string, string>[];
    // The worker's row, then the totals row.
    expect(csv.map((r) => r.workerPaidUnits)).toEqual([paid, paid]);
    expect(csv[0]!.group).toBe(row.api_worker);
    const statement = (await (
      await app.request(`/reports/workers/${row.api_worker}?${q}`, { headers })
    ).json()) as { totals: Figures };
    expect(statement.totals).toMatchObject({ jobs: 1, verified: 1, workerPaidUnits: paid });
  });
});
