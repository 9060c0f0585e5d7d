import { createServer as createHttpServer, type ServerResponse } from "node:http";
import { createServer, type Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { createRpcPool } from "../src/chain/rpc-pool.js";
import { jobs } from "../src/db/schema.js";
import type { RpcFaults } from "../src/localnet/rpc-server.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import type { VerifierOptions } from "../src/verify/verifier-options.js";
import { useStarted } from "./support/started-life.js";
import { createTestStore } from "./support/store.js";
import { runRecordedJob } from "./support/verify-jobs.js";

const log = createLogger({ level: "silent" });

const world = useStarted(() => startLocalWorld({ slotMs: 10, finalitySlots: 3 }));

/** Records `count` honest jobs, then verifies them through a pool over `urls`. */
async function verifyThrough(urls: string[], rateLimitPerSec: number, count: number) {
  const store = createTestStore();
  for (let i = 0; i < count; i++) {
    await runRecordedJob(world, store, { stream: i % 2 === 1, apiKeyIndex: 3 });
  }
  const rpc = createRpcPool({
    endpoints: urls.map((url) => ({ url, rateLimitPerSec, concurrency: 4, timeoutMs: 1000 })),
    backoffBaseMs: 20,
    backoffMaxMs: 300,
    breakerThreshold: 3,
    breakerCooldownMs: 2000,
    maxAttempts: 8,
  });
  const verifier = createVerifier({
    store,
    rpc,
    profile: localnetProfile,
    log,
    options: { pollIntervalMs: 50, errorBackoffMs: 50, maxBackoffMs: 500 },
  });
  const summary = await verifier.runUntilSettled({}, { timeoutMs: 30_000 });
  await rpc.close();
  const verdicts = store.db.select({ verdict: jobs.verdict }).from(jobs).all();
  return { summary, verdicts: verdicts.map((v) => v.verdict) };
}

// One test at a time: the local endpoints count each second's requests as they read them, in
// this process, and other tests' work beside them bunched a pool's paced requests into one
// second's count (7 seen of a pool that sends 6 a second).
describe("verifying through an RPC pool under injected faults", () => {
  it("verifies every job through a 429 storm without exceeding its own rate", async () => {
    const limited = await world.addRpcEndpoint({ rateLimitPerSec: 4 });
    const { summary, verdicts } = await verifyThrough([limited], 6, 4);
    expect(summary.status).toBe("completed");
    expect(verdicts).toEqual(Array(4).fill("verified"));
    const stats = world.rpcStats(limited);
    expect(stats.served429).toBeGreaterThan(0);
    expect(stats.maxRequestsPerSecond).toBeLessThanOrEqual(6);
  });

  it("verifies every job with one endpoint down and another slow and failing 30% of requests", async () => {
    const down = await world.addRpcEndpoint({ down: true });
    const flaky = await world.addRpcEndpoint({ http5xxRate: 0.3, behindRate: 0.05, latencyMs: 30 });
    const { summary, verdicts } = await verifyThrough([down, flaky], 40, 6);
    expect(summary.status).toBe("completed");
    expect(verdicts).toEqual(Array(6).fill("verified"));
    const flakyStats = world.rpcStats(flaky);
    expect(flakyStats.served5xx).toBeGreaterThan(0);
    for (const url of [down, flaky]) {
      expect(world.rpcStats(url).maxRequestsPerSecond).toBeLessThanOrEqual(40);
    }
  });
});

/**
 * Records `count` honest jobs, turns `faults` on at `faulty` for `forMs`, and verifies the jobs
 * through a pool over `urls` meanwhile. Blockhashes expire after 50 slots (0.5 s): a lag of
 * seconds outlasts them many times over.
 */
async function verifyWhileFaulty(
  urls: string[],
  faulty: string,
  faults: Partial<RpcFaults>,
  forMs: number,
  count = 4,
) {
  const store = createTestStore();
  for (let i = 0; i < count; i++) {
    await runRecordedJob(world, store, { stream: i % 2 === 1, apiKeyIndex: 3 });
  }
  const rpc = createRpcPool({
    endpoints: urls.map((url) => ({ url, rateLimitPerSec: 200, concurrency: 4, timeoutMs: 1000 })),
    backoffBaseMs: 20,
    backoffMaxMs: 300,
  });
  const verifier = createVerifier({
    store,
    rpc,
    profile: { ...localnetProfile, dropAfterSlots: 50 },
    log,
    options: { pollIntervalMs: 50, errorBackoffMs: 50, maxBackoffMs: 500 },
  });
  world.setRpcFaults(faulty, faults);
  const heal = setTimeout(
    () =>
      world.setRpcFaults(faulty, {
        nullStatuses: false,
        nullTransactions: false,
        wrongTransactions: false,
      }),
    forMs,
  );
  try {
    const summary = await verifier.runUntilSettled({}, { timeoutMs: 30_000 });
    const rows = store.db.select({ verdict: jobs.verdict }).from(jobs).all();
    return { summary, verdicts: rows.map((v) => v.verdict), stats: world.rpcStats(faulty) };
  } finally {
    clearTimeout(heal);
    await rpc.close();
  }
}

/**
 * Records `count` honest jobs and a verifier over them through a pool over `urls` (RPC timeout
 * `timeoutMs`), for a run against a node that misbehaves in one way.
 */
async function verifierThrough(
  urls: string[],
  opts: { timeoutMs: number; count?: number; backoffMaxMs?: number },
  options: Partial<VerifierOptions> = {},
) {
  const store = createTestStore();
  for (let i = 0; i < (opts.count ?? 2); i++) {
    await runRecordedJob(world, store, { apiKeyIndex: 3 });
  }
  const rpc = createRpcPool({
    endpoints: urls.map((url) => ({
      url,
      rateLimitPerSec: 200,
      concurrency: 4,
      timeoutMs: opts.timeoutMs,
    })),
    backoffBaseMs: 20,
    backoffMaxMs: opts.backoffMaxMs ?? 300,
  });
  const verifier = createVerifier({
    store,
    rpc,
    profile: localnetProfile,
    log,
    options: { pollIntervalMs: 50, errorBackoffMs: 50, maxBackoffMs: 500, ...options },
  });
  /** Runs until settled or `timeoutMs`; returns the summary, how long it took and the verdicts. */
  const run = async (runTimeoutMs: number) => {
    const started = performance.now();
    const summary = await verifier.runUntilSettled({}, { timeoutMs: runTimeoutMs });
    const tookMs = performance.now() - started;
    const verdicts = store.db.select({ verdict: jobs.verdict }).from(jobs).all();
    return { summary, tookMs, verdicts: verdicts.map((v) => v.verdict) };
  };
  return { run, close: () => rpc.close() };
}

/** The port of a listening server. */
function portOf(server: { address(): unknown }): number {
  const address = server.address() as { port?: number } | null;
  if (!address?.port) throw new Error("no port");
  return address.port;
}

// Each test waits on its endpoint's faults and timeouts, not on the CPU, and has endpoints and a
// store of its own over the one chain: they run at once.
describe.concurrent("one lagging or lying endpoint never makes an honest job final", () => {
  it("does not drop landed jobs while the only endpoint answers their statuses null", async () => {
    const url = await world.addRpcEndpoint();
    const { summary, verdicts, stats } = await verifyWhileFaulty(
      [url],
      url,
      { nullStatuses: true },
      2000,
    );
    expect(stats.servedNull).toBeGreaterThan(0);
    expect(summary.status).toBe("completed");
    expect(verdicts).toEqual(Array(4).fill("verified"));
  });

  it("asks the pool's other endpoint before dropping what the first says it never saw", async () => {
    const lagging = await world.addRpcEndpoint();
    const honest = await world.addRpcEndpoint();
    // While they disagree the jobs wait (neither endpoint is believed over the other); once
    // the lagging one sees the chain again, they are verified, none dropped.
    const { verdicts, stats } = await verifyWhileFaulty(
      [lagging, honest],
      lagging,
      { nullStatuses: true, nullTransactions: true },
      2000,
    );
    expect(stats.servedNull).toBeGreaterThan(0);
    expect(verdicts).toEqual(Array(4).fill("verified"));
  });

  it("holds back a drop it cannot confirm because another endpoint of the pool is down", async () => {
    const lagging = await world.addRpcEndpoint();
    const down = await world.addRpcEndpoint({ down: true });
    const { summary, verdicts } = await verifyWhileFaulty(
      [lagging, down],
      lagging,
      { nullStatuses: true },
      2000,
    );
    expect(summary.status).toBe("completed");
    expect(verdicts).toEqual(Array(4).fill("verified"));
    expect(world.rpcStats(down).served5xx).toBeGreaterThan(0);
  });

  it("retries, and does not end unverifiable, while the only endpoint serves other transactions", async () => {
    const url = await world.addRpcEndpoint();
    const { summary, verdicts, stats } = await verifyWhileFaulty(
      [url],
      url,
      { wrongTransactions: true },
      2000,
    );
    expect(stats.servedWrong).toBeGreaterThan(0);
    expect(summary.status).toBe("completed");
    expect(verdicts).toEqual(Array(4).fill("verified"));
  });

  it("does not count a lagging node's missing transactions as pruned within seconds", async () => {
    const url = await world.addRpcEndpoint();
    const { summary, verdicts, stats } = await verifyWhileFaulty(
      [url],
      url,
      { nullTransactions: true },
      2000,
    );
    expect(stats.servedNull).toBeGreaterThan(0);
    expect(summary.status).toBe("completed");
    expect(verdicts).toEqual(Array(4).fill("verified"));
  });

  it("waits while one endpoint serves other transactions and another the right ones, then verifies", async () => {
    const lying = await world.addRpcEndpoint();
    const honest = await world.addRpcEndpoint();
    const { verdicts, stats } = await verifyWhileFaulty(
      [lying, honest],
      lying,
      { wrongTransactions: true },
      2000,
    );
    expect(stats.servedWrong).toBeGreaterThan(0);
    expect(verdicts).toEqual(Array(4).fill("verified"));
  });

  it("ends a run at its deadline while a second endpoint accepts connections and never answers", async () => {
    // The first endpoint has no transaction, so each fetch asks the second one, which hangs:
    // asked with retries and backoff, one fetch held the run for five RPC timeouts.
    const sockets: Socket[] = [];
    const hanging = createServer((socket) => {
      sockets.push(socket);
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => hanging.listen(0, "127.0.0.1", resolve));
    const lagging = await world.addRpcEndpoint({ nullTransactions: true });
    const v = await verifierThrough([lagging, `http://127.0.0.1:${portOf(hanging)}/`], {
      timeoutMs: 3000,
    });
    try {
      const { summary, tookMs, verdicts } = await v.run(1500);
      expect(summary.status).toBe("timed_out");
      expect(tookMs).toBeLessThan(2900);
      expect(verdicts.filter((verdict) => verdict === "unverifiable")).toEqual([]);
    } finally {
      await v.close();
      for (const socket of sockets) socket.destroy();
      hanging.close();
    }
  });

  it("ends a run at its deadline while the endpoint never answers the status poll", async () => {
    // A node stuck on its status index: every other method is passed to the local chain.
    const held: ServerResponse[] = [];
    const stuck = createHttpServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const body = Buffer.concat(chunks).toString();
      if (body.includes('"getSignatureStatuses"')) {
        held.push(res);
        return;
      }
      const answer = await fetch(world.rpcUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      res.writeHead(answer.status, { "content-type": "application/json" });
      res.end(await answer.text());
    });
    await new Promise<void>((resolve) => stuck.listen(0, "127.0.0.1", resolve));
    const v = await verifierThrough([`http://127.0.0.1:${portOf(stuck)}/`], { timeoutMs: 3000 });
    // Garbage collected all along, as a busy process does: a deadline only weakly held (an
    // AbortSignal.timeout inside AbortSignal.any, on Node 20) was collected and never fired.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const collecting = setInterval(gc, 20);
    try {
      const { summary, tookMs } = await v.run(1500);
      expect(summary.status).toBe("timed_out");
      // Five attempts of 3 s each ran the run to 15 s.
      expect(tookMs).toBeLessThan(2900);
    } finally {
      clearInterval(collecting);
      await v.close();
      for (const res of held) res.destroy();
      stuck.close();
    }
  });

  it("keeps honest jobs waiting while the endpoint that serves them fails half its requests", async () => {
    // The first endpoint has no transaction; the second has them but fails half its requests.
    // One failed request of the second is not "nobody serves it": no miss, never unverifiable.
    const lagging = await world.addRpcEndpoint({ nullTransactions: true });
    const flaky = await world.addRpcEndpoint({ http5xxRate: 0.5 });
    const v = await verifierThrough(
      [lagging, flaky],
      { timeoutMs: 1000, count: 4, backoffMaxMs: 100 },
      { maxBackoffMs: 200, maxFetchMisses: 5, fetchMissSpanMs: 1500 },
    );
    try {
      const { verdicts } = await v.run(4000);
      expect(world.rpcStats(flaky).served5xx).toBeGreaterThan(0);
      expect(verdicts.filter((verdict) => verdict === "unverifiable")).toEqual([]);
    } finally {
      await v.close();
    }
  });
});
