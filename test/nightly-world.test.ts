import { describe, expect, it } from "vitest";
import { createRpcPool, type RpcPool } from "../src/chain/rpc-pool.js";
import type { SqliteStore } from "../src/db/client.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { runVerifyCommand } from "../src/nightly/verify-command.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";
import { useStarted } from "./support/started-life.js";
import { createTestStore } from "./support/store.js";
import { runRecordedJob } from "./support/verify-jobs.js";

const log = createLogger({ level: "silent" });

const world = useStarted(() => startLocalWorld({ slotMs: 10, finalitySlots: 3 }));

function pool(url: string): RpcPool {
  return createRpcPool({
    endpoints: [{ url, rateLimitPerSec: 200, concurrency: 4, timeoutMs: 1000 }],
    backoffBaseMs: 10,
    backoffMaxMs: 50,
    breakerCooldownMs: 200,
  });
}

/** `verify --since 1h` with the real verifier over `rpcUrl`, as the CLI composes it. */
async function verify(store: SqliteStore, rpcUrl: string, timeout = "20s", json = false) {
  const rpc = pool(rpcUrl);
  const verifier = createVerifier({
    store,
    rpc,
    profile: localnetProfile,
    log,
    options: quickVerifierOptions,
  });
  const out: string[] = [];
  const err: string[] = [];
  try {
    const code = await runVerifyCommand(
      store,
      verifier,
      { since: "1h", timeout, ...(json ? { json: true } : {}) },
      { out: (t) => out.push(t), err: (l) => err.push(l), progress: false },
      { preflight: () => rpc.getSlot("finalized") },
    );
    return { code, out: out.join(""), err: err.join("\n") };
  } finally {
    await rpc.close();
  }
}

describe("decentral-audit verify against the local chain", () => {
  it("exits 0 when every simulated job is honest", async () => {
    const store = createTestStore();
    await runRecordedJob(world, store, { model: "qwen3-8b" });
    await runRecordedJob(world, store, { model: "phi-4-mini", stream: true });
    const { code, out } = await verify(store, world.rpcUrl);
    expect(out).toContain("all 2 jobs verified");
    expect(code).toBe(0);
  });

  it("exits 1 and names the faulty job and its failing check", async () => {
    const store = createTestStore();
    await runRecordedJob(world, store, { model: "qwen3-8b" });
    const { jobId } = await runRecordedJob(world, store, {
      model: "qwen3-8b",
      fault: "underpay-worker",
    });
    const { code, out } = await verify(store, world.rpcUrl);
    expect(code).toBe(1);
    expect(out).toContain(`${jobId}: discrepancy (settlement.split)`);
  });

  it("judges a receipt recorded in the window but dated days before it, and counts each job once", async () => {
    const store = createTestStore();
    const now = Date.now();
    // Honest, dated and recorded in the window: one job, though both hold.
    const { jobId: honest } = await runRecordedJob(world, store, { model: "qwen3-8b" });
    // Overcharged, its receipt dated 3 days back (a completion's `created`, an import's
    // `created_at`) yet recorded now, as its money moves: the night it names was judged.
    const { jobId: backdated } = await runRecordedJob(world, store, {
      model: "qwen3-8b",
      fault: "overcharge",
      createdAt: now - 3 * 86_400_000,
    });
    // Dated and recorded 2 h ago, in the previous window: that window's run judged it.
    const { jobId: before } = await runRecordedJob(world, store, {
      model: "qwen3-8b",
      createdAt: now - 2 * 3_600_000,
      recordedAt: now - 2 * 3_600_000,
    });
    const { code, out } = await verify(store, world.rpcUrl, "20s", true);
    const summary = JSON.parse(out) as {
      total: number;
      byVerdict: Record<string, number>;
      findings: { jobId: string; failingChecks: string[] }[];
    };
    expect(summary.findings.map((f) => f.jobId)).toEqual([backdated]);
    expect(summary.findings[0]?.failingChecks).toEqual(
      expect.arrayContaining(["charge.matches_price", "receipt.time"]),
    );
    expect(summary.total).toBe(2);
    expect(summary.byVerdict.verified).toBe(1);
    expect(summary.byVerdict.discrepancy).toBe(1);
    expect(code).toBe(1);
    const verdictOf = (id: string) =>
      store.sqlite.prepare("SELECT verdict FROM jobs WHERE job_id = ?").pluck().get(id);
    expect(verdictOf(honest)).toBe("verified");
    // Left to its own window's run: never claimed by this one.
    expect(verdictOf(before)).toBe("pending");
  });

  it("exits 2 when the RPC endpoint is unreachable", async () => {
    const store = createTestStore();
    await runRecordedJob(world, store, { model: "qwen3-8b" });
    const { code, err } = await verify(store, "http://127.0.0.1:9", "5s");
    expect(code).toBe(2);
    expect(err).toMatch(/RPC unreachable/);
  });
});
