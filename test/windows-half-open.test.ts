import { describe, expect, it } from "vitest";
import type { SqliteStore } from "../src/db/client.js";
import type { Verdict } from "../src/db/schema.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { verifyWindow } from "../src/nightly/verify-command.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile, profileId } from "../src/verify/profiles.js";
import { createTestApi } from "./support/audit-api-app.js";
import { insertCheck, insertJob } from "./support/job-rows.js";
import { createTestStore } from "./support/store.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";

/**
 * Every window in the service is half-open, [from, to): a job created exactly at `to` belongs
 * to the next window, so consecutive windows (days, nightly runs) count each job once.
 */

const FROM = Date.UTC(2026, 10, 24);
const TO = Date.UTC(2026, 10, 25);
const WORKER = "DcrtuEi23DAjQ9t2QJ9wFXDSZRU26jC5cVx4Dejivmwe";

/** Jobs on both edges of [FROM, TO): only `at_from` and `before_to` are inside. */
function seedEdges(store: SqliteStore, verdict: Verdict = "verified", outside: Verdict = verdict) {
  // Final verdicts name the profile that reached them, as the verifier writes them: one with no
  // profile recorded is judged again by the engine's sweep.
  const judged = (v: Verdict) => ({
    verdict: v,
    verdictProfile: v === "pending" ? null : profileId(localnetProfile),
  });
  insertJob(store, {
    jobId: "before_from",
    createdAt: FROM - 1,
    ...judged(outside),
    worker: WORKER,
  });
  insertJob(store, { jobId: "at_from", createdAt: FROM, ...judged(verdict), worker: WORKER });
  insertJob(store, { jobId: "before_to", createdAt: TO - 1, ...judged(verdict), worker: WORKER });
  insertJob(store, { jobId: "at_to", createdAt: TO, ...judged(outside), worker: WORKER });
}

const inside = ["at_from", "before_to"];
const range = `from=${new Date(FROM).toISOString()}&to=2026-11-25`;

describe("windows are [from, to): a job created exactly at `to` is in the next window", () => {
  it("the verification engine settles only the jobs of [from, to)", async () => {
    const store = createTestStore();
    // Open jobs outside the window: if the engine took them in, the run could never settle.
    seedEdges(store, "verified", "pending");
    const chain = createFakeChain();
    const verifier = createVerifier({
      store,
      rpc: chain.rpc,
      profile: localnetProfile,
      log: createLogger({ level: "silent" }),
      options: { pollIntervalMs: 2, idleIntervalMs: 20 },
    });
    const summary = await verifier.runUntilSettled({ from: FROM, to: TO }, { timeoutMs: 2_000 });
    expect(summary).toMatchObject({ status: "completed", total: 2, final: 2 });
    expect(chain.calls.statusCalls).toBe(0);
  });

  it("the nightly run counts [from, to) and hands the engine that same window", async () => {
    const store = createTestStore();
    seedEdges(store, "verified", "discrepancy");
    const filters: unknown[] = [];
    const summary = await runNightlyVerification(
      store,
      {
        async runUntilSettled(filter) {
          filters.push(filter);
          return { status: "completed" };
        },
      },
      { from: FROM, to: TO, timeoutMs: 1_000, now: () => TO + 60_000 },
    );
    expect(filters).toEqual([{ from: FROM, to: TO }]);
    expect(summary).toMatchObject({ total: 2, exitCode: 0, findings: [] });
  });

  it("verify --from/--to read `to` as the first instant left out", () => {
    expect(verifyWindow({ from: "2026-11-24", to: "2026-11-25" }, TO + 7_200_000)).toMatchObject({
      from: FROM,
      to: TO,
    });
  });

  it("the reconciliation report, by every grouping, and its CSV", async () => {
    const api = await createTestApi({ now: () => TO + 60_000 });
    seedEdges(api.store);
    for (const groupBy of ["day", "model", "worker", "key"]) {
      const res = await api.get(`/reports/reconciliation?${range}&groupBy=${groupBy}`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { groups: { group: string }[]; totals: { jobs: number } };
      expect(body.totals.jobs).toBe(2);
      if (groupBy === "day") expect(body.groups.map((g) => g.group)).toEqual(["2026-11-24"]);
      const csv = await (
        await api.get(`/reports/reconciliation?${range}&groupBy=${groupBy}&format=csv`)
      ).text();
      expect(csv).toMatch(/\r\ntotal,,2,2,/);
    }
  });

  it("the worker statement", async () => {
    const api = await createTestApi({ now: () => TO + 60_000 });
    seedEdges(api.store);
    const res = await api.get(`/reports/workers/${WORKER}?${range}`);
    const body = (await res.json()) as { days: { day: string }[]; totals: { jobs: number } };
    expect(body.totals.jobs).toBe(2);
    expect(body.days.map((d) => d.day)).toEqual(["2026-11-24"]);
  });

  it("the job listing", async () => {
    const api = await createTestApi();
    seedEdges(api.store);
    const res = await api.get(`/jobs?${range}&order=asc`);
    const body = (await res.json()) as { items: { jobId: string }[] };
    expect(body.items.map((i) => i.jobId)).toEqual(inside);
  });

  it("the discrepancies listing", async () => {
    const api = await createTestApi();
    seedEdges(api.store, "discrepancy");
    for (const jobId of ["before_from", ...inside, "at_to"]) {
      insertCheck(api.store, jobId, "settlement.split", "fail");
    }
    const res = await api.get(`/reports/discrepancies?${range}&order=asc`);
    const body = (await res.json()) as { items: { jobId: string }[] };
    expect(body.items.map((i) => i.jobId)).toEqual(inside);
  });

  it("the OpenAPI document says so for every `to`, in queries and in reports", async () => {
    const api = await createTestApi();
    const doc = (await (await api.get("/openapi.json")).json()) as {
      paths: Record<string, { get?: { parameters?: { name: string; description?: string }[] } }>;
      components: {
        schemas: Record<string, { properties?: Record<string, { description?: string }> }>;
      };
    };
    const toParams = Object.values(doc.paths).flatMap((p) =>
      (p.get?.parameters ?? []).filter((q) => q.name === "to"),
    );
    expect(toParams.length).toBeGreaterThanOrEqual(4);
    for (const param of toParams)
      expect(param.description).toMatch(/exclusive|before this instant/);
    for (const name of ["Reconciliation", "WorkerStatement"]) {
      expect(doc.components.schemas[name]?.properties?.to?.description).toMatch(/exclusive/);
    }
  });
});
