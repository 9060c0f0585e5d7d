import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createQuorumRpc } from "../src/chain/quorum.js";
import { createRpcPool, type RpcPool } from "../src/chain/rpc-pool.js";
import { checkResults, jobs } from "../src/db/schema.js";
import type { RpcFaults } from "../src/localnet/rpc-server.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { useStarted } from "./support/started-life.js";
import { createTestStore } from "./support/store.js";
import { runRecordedJob } from "./support/verify-jobs.js";

/**
 * Drops under RPC nodes that lag or lie, on the local chain: a real job is never called
 * "never landed" on one node's word, and a phantom is dropped in bounded time whatever one node
 * says, its verdict naming the endpoint it overruled.
 */

const log = createLogger({ level: "silent" });

const world = useStarted(() => startLocalWorld({ slotMs: 10, finalitySlots: 3 }));

/** A pool over one endpoint, or over several in order (failover). */
function poolOver(urls: string[]): RpcPool {
  return createRpcPool({
    endpoints: urls.map((url) => ({ url, rateLimitPerSec: 200, concurrency: 4, timeoutMs: 1000 })),
    backoffBaseMs: 20,
    backoffMaxMs: 200,
  });
}

/** A quorum of `k` over one pool per endpoint, each named by its URL. */
function quorumOver(urls: string[], k: number): RpcPool {
  return createQuorumRpc({
    members: urls.map((url) => ({ name: url, rpc: poolOver([url]) })),
    quorum: k,
  });
}

/** Verifies every job of `store` through `rpc`; returns the summary and each job's verdict. */
async function verify(
  store: ReturnType<typeof createTestStore>,
  rpc: RpcPool,
  profile: Profile,
  timeoutMs: number,
  dropHoldMs = 300_000,
) {
  const verifier = createVerifier({
    store,
    rpc,
    profile,
    log,
    options: { pollIntervalMs: 50, errorBackoffMs: 50, maxBackoffMs: 300, dropHoldMs },
  });
  try {
    const started = performance.now();
    const summary = await verifier.runUntilSettled({}, { timeoutMs });
    const tookMs = performance.now() - started;
    const rows = store.db.select({ jobId: jobs.jobId, verdict: jobs.verdict }).from(jobs).all();
    return { summary, tookMs, verdicts: new Map(rows.map((r) => [r.jobId, r.verdict])) };
  } finally {
    await rpc.close();
  }
}

/**
 * A phantom settlement's job and an honest one, recorded, then verified through `rpc` (drop
 * window 50 slots, `dropHoldMs` 1.5 s): the run completes, the honest job is verified and the
 * phantom dropped. Returns the store, the phantom's job, and how long the run took.
 */
async function phantomBesideReal(rpc: RpcPool, timeoutMs: number) {
  const store = createTestStore();
  const phantom = await runRecordedJob(world, store, {
    apiKeyIndex: 3,
    fault: "phantom-signature",
  });
  const real = await runRecordedJob(world, store, { apiKeyIndex: 3 });
  const { summary, verdicts, tookMs } = await verify(
    store,
    rpc,
    { ...localnetProfile, dropAfterSlots: 50 },
    timeoutMs,
    1500,
  );
  expect(summary.status).toBe("completed");
  expect(verdicts.get(real.jobId)).toBe("verified");
  expect(verdicts.get(phantom.jobId)).toBe("dropped");
  return { store, phantom, tookMs };
}

/** The reason of a job's check, as `/audit/:jobId` shows it. */
function reasonOf(store: ReturnType<typeof createTestStore>, jobId: string, name: string) {
  return store.db
    .select({ reason: checkResults.reason })
    .from(checkResults)
    .where(and(eq(checkResults.jobId, jobId), eq(checkResults.name, name)))
    .get()?.reason;
}

/** Hides every status and transaction on `urls` (nodes that do not see them yet) for `forMs`. */
function hideFor(urls: string[], forMs: number) {
  const hidden: Partial<RpcFaults> = { nullStatuses: true, nullTransactions: true };
  for (const url of urls) world.setRpcFaults(url, hidden);
  return setTimeout(() => {
    for (const url of urls) {
      world.setRpcFaults(url, { nullStatuses: false, nullTransactions: false });
    }
  }, forMs);
}

/** 300 slots of 10 ms: a drop window of 3 s. */
const window3s: Profile = { ...localnetProfile, dropAfterSlots: 300 };

describe.concurrent("a node answering a finalized slot far too low at a first miss", () => {
  // Its transactions reach the nodes 1.2 s after they are first asked about: less than the
  // 3 s drop window, so no node is ever past it. The liar, asked first, answers the slot read
  // with the first miss 100,000 slots low, and honestly after.
  for (const mode of ["a failover pool", "a quorum of 2"] as const) {
    it(`does not hasten the drop of a real job that lands inside the window (${mode})`, async () => {
      const liar = await world.addRpcEndpoint({
        lies: { share: 0, kinds: [], seed: "low-slot", lowSlotAtFirstMiss: 100_000 },
      });
      const honest = await world.addRpcEndpoint();
      const store = createTestStore();
      const { jobId } = await runRecordedJob(world, store, { apiKeyIndex: 3 });
      const rpc =
        mode === "a quorum of 2" ? quorumOver([liar, honest], 2) : poolOver([liar, honest]);
      const heal = hideFor([liar, honest], 1200);
      try {
        const { summary, verdicts } = await verify(store, rpc, window3s, 20_000);
        expect(summary.status).toBe("completed");
        expect(verdicts.get(jobId)).toBe("verified");
      } finally {
        clearTimeout(heal);
      }
    });
  }
});

describe.concurrent("a node showing a status for a phantom signature", () => {
  for (const mode of ["a failover pool", "a quorum of 2"] as const) {
    it(`cannot hold its job's drop for ever: dropped in bounded time, naming that node (${mode})`, async () => {
      const honest = await world.addRpcEndpoint();
      const honestB = await world.addRpcEndpoint();
      const liar = await world.addRpcEndpoint({
        lies: { share: 0, kinds: [], seed: "phantoms", phantomStatuses: true },
      });
      const rpc =
        mode === "a quorum of 2"
          ? quorumOver([honest, honestB, liar], 2)
          : poolOver([honest, liar]);
      const { store, phantom, tookMs } = await phantomBesideReal(rpc, 20_000);
      expect(tookMs).toBeLessThan(15_000);
      const reason = reasonOf(store, phantom.jobId, "settlement.exists");
      expect(reason).toContain("never landed");
      expect(reason).toContain(`shown only by ${liar}`);
    });
  }
});

describe("an endpoint answering every request 429 with Retry-After 60", () => {
  it("holds no round for its pauses: other jobs are verified, a phantom dropped in bounded time naming it", async () => {
    const honest = await world.addRpcEndpoint();
    const limited = await world.addRpcEndpoint({ tooManyRequests: true, retryAfterSeconds: 60 });
    const { store, phantom, tookMs } = await phantomBesideReal(poolOver([honest, limited]), 40_000);
    expect(world.rpcStats(limited).served429).toBeGreaterThan(0);
    // One pause of a minute held the look on every endpoint before the drop, and the round.
    expect(tookMs).toBeLessThan(30_000);
    expect(reasonOf(store, phantom.jobId, "settlement.exists")).toContain(
      `${limited} could not be asked`,
    );
  });
});

describe("a node listed first in a failover pool, showing a phantom as confirmed", () => {
  it("cannot hold its job for ever: the others are asked, and it is dropped naming that node", async () => {
    const liar = await world.addRpcEndpoint({
      lies: { share: 0, kinds: [], seed: "first-confirmed", phantomStatuses: true },
    });
    const honest = await world.addRpcEndpoint();
    const { store, phantom, tookMs } = await phantomBesideReal(poolOver([liar, honest]), 20_000);
    expect(tookMs).toBeLessThan(15_000);
    const reason = reasonOf(store, phantom.jobId, "settlement.exists");
    expect(reason).toContain("never landed");
    expect(reason).toContain(liar);
  });
});
