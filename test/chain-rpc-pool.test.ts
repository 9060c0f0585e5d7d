import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  createRpcPool,
  type RpcEndpointConfig,
  type RpcPool,
  rpcPoolFromConfig,
} from "../src/chain/rpc-pool.js";
import { loadConfig } from "../src/config.js";
import { AppError } from "../src/errors.js";
import { addr } from "./fixtures/transactions/parties.js";

// biome-ignore lint/suspicious/noExplicitAny: saved JSON replies are read and mutated freely in tests.
type Json = any;

/** What the stub answers to one HTTP request. */
interface Reply {
  status?: number;
  headers?: Record<string, string>;
  /** A JSON-RPC reply (object or array) or raw text. */
  body?: unknown;
  delayMs?: number;
  /** Drop the connection without answering. */
  destroy?: boolean;
}

interface StubRequest {
  at: number;
  body: Json;
}

interface Stub {
  url: string;
  requests: StubRequest[];
  close(): Promise<void>;
}

const servers: Server[] = [];
const pools: RpcPool[] = [];

afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
  await Promise.all(
    servers.splice(0).map(
      (s) =>
        new Promise<void>((resolve) => {
          s.closeAllConnections();
          s.close(() => resolve());
        }),
    ),
  );
});

/** A JSON-RPC HTTP server whose every answer comes from `handler`; it records arrival times. */
async function startStub(handler: (body: Json, n: number) => Reply): Promise<Stub> {
  const requests: StubRequest[] = [];
  const server = createServer((req, res) => {
    const at = performance.now();
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      requests.push({ at, body });
      const reply = handler(body, requests.length);
      const send = () => {
        if (reply.destroy) {
          req.socket.destroy();
          return;
        }
        if (res.destroyed) return;
        res.writeHead(reply.status ?? 200, {
          "content-type": "application/json",
          ...reply.headers,
        });
        res.end(typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body ?? null));
      };
      if (reply.delayMs) setTimeout(send, reply.delayMs);
      else send();
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Answers single or batched calls with `result(call)`. */
function answer(body: Json, result: (call: Json) => unknown): unknown {
  const one = (call: Json) => ({ jsonrpc: "2.0", id: call.id, result: result(call) });
  return Array.isArray(body) ? body.map(one) : one(body);
}

const slotOf = (call: Json) => (call.method === "getSlot" ? 4242 : null);

function pool(endpoints: (Partial<RpcEndpointConfig> & { url: string })[], extra = {}): RpcPool {
  const p = createRpcPool({
    endpoints: endpoints.map((e) => ({
      rateLimitPerSec: 1000,
      concurrency: 8,
      timeoutMs: 2000,
      ...e,
    })),
    backoffBaseMs: 5,
    backoffMaxMs: 40,
    ...extra,
  });
  pools.push(p);
  return p;
}

function counts(p: RpcPool, outcome: string, endpoint?: string): number {
  return p
    .stats()
    .filter((s) => s.outcome === outcome && (!endpoint || s.endpoint === endpoint))
    .reduce((n, s) => n + s.count, 0);
}

/** A deterministic pseudo-random sequence, so fault patterns repeat from run to run. */
function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

/** The most requests that arrived within any window of `ms`. */
function maxInWindow(times: number[], ms: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= ms) start++;
    best = Math.max(best, end - start + 1);
  }
  return best;
}

describe("RPC pool: faults", () => {
  it("honours Retry-After during a 429 storm and still answers every call", async () => {
    const stub = await startStub((body, n) =>
      n <= 2
        ? { status: 429, headers: { "retry-after": "1" }, body: "Too many requests" }
        : { body: answer(body, slotOf) },
    );
    const p = pool([{ url: stub.url, concurrency: 1 }]);
    const slots = await Promise.all([p.getSlot(), p.getSlot(), p.getSlot()]);
    expect(slots).toEqual([4242, 4242, 4242]);
    const [first, second, third] = stub.requests.map((r) => r.at);
    // Each 429 paused the endpoint for the full second it asked for.
    expect(second! - first!).toBeGreaterThanOrEqual(990);
    expect(third! - second!).toBeGreaterThanOrEqual(990);
    expect(counts(p, "rate_limited")).toBe(2);
    expect(counts(p, "ok")).toBe(3);
  });

  it("pauses the default time after a 429 whose Retry-After is neither seconds nor a date (-5, +3), not none", async () => {
    // `Date.parse` reads "-5" as a day of 2001 and "+3" as one of March 2001: dates in the
    // past, read as "retry now", so a 429 storm of them was answered with no pause at all.
    for (const unusable of ["-5", "+3"]) {
      const stub = await startStub((body, n) =>
        n <= 2
          ? { status: 429, headers: { "retry-after": unusable }, body: "Too many requests" }
          : { body: answer(body, slotOf) },
      );
      const p = pool([{ url: stub.url, concurrency: 1 }], { defaultRetryAfterMs: 400 });
      expect(await p.getSlot()).toBe(4242);
      const [first, second, third] = stub.requests.map((r) => r.at);
      expect(second! - first!).toBeGreaterThanOrEqual(390);
      expect(third! - second!).toBeGreaterThanOrEqual(390);
    }
  });

  it("pauses the default time after a 429 whose Retry-After asks for no pause (0, a date past), not none", async () => {
    // A node answering every request 429 with "retry now" was asked again at once: the same
    // storm of requests as an unreadable Retry-After gave, told as a pause of 0 ms each time.
    for (const now of ["0", "Thu, 01 Jan 1970 00:00:00 GMT"]) {
      const stub = await startStub((body, n) =>
        n <= 2
          ? { status: 429, headers: { "retry-after": now }, body: "Too many requests" }
          : { body: answer(body, slotOf) },
      );
      const p = pool([{ url: stub.url, concurrency: 1 }], { defaultRetryAfterMs: 400 });
      expect(await p.getSlot()).toBe(4242);
      const [first, second, third] = stub.requests.map((r) => r.at);
      expect(second! - first!).toBeGreaterThanOrEqual(390);
      expect(third! - second!).toBeGreaterThanOrEqual(390);
    }
  });

  it("tells the rate it allows now: the configured one, lowered after a run of 429s", async () => {
    // A run: 8 of the latest answers (a quarter of 32) refused; a lone 429 lowers nothing.
    const stub = await startStub((body, n) =>
      n <= 8
        ? { status: 429, headers: { "retry-after": "0" }, body: "Too many requests" }
        : { body: answer(body, slotOf) },
    );
    // Each 429's own pause is not what is tested: the rate is.
    const p = pool([{ url: stub.url, rateLimitPerSec: 40 }], { defaultRetryAfterMs: 1 });
    expect(p.requestRate()).toBe(40);
    await p.getSlot();
    expect(p.requestRate()).toBeGreaterThan(0);
    expect(p.requestRate()).toBeLessThanOrEqual(21);
  });

  // The rate lowered by 429s spaced requests on the pool's wall clock: a host clock set back
  // after the 429s held every request of the endpoint for as long as the step.
  it("keeps answering at the lowered rate when the host clock is set back after 429s", async () => {
    const stub = await startStub((body, n) =>
      n <= 8
        ? { status: 429, headers: { "retry-after": "0" }, body: "Too many requests" }
        : { body: answer(body, slotOf) },
    );
    let step = 0;
    const p = pool([{ url: stub.url, rateLimitPerSec: 40 }], {
      now: () => Date.now() + step,
      defaultRetryAfterMs: 1,
    });
    await p.getSlot();
    expect(p.requestRate()).toBeLessThan(40);
    step = -600_000;
    const started = performance.now();
    await Promise.all(Array.from({ length: 10 }, () => p.getSlot()));
    // 10 calls at about 20 a second: half a second, not the 10 min of the step.
    expect(performance.now() - started).toBeLessThan(5_000);
  }, 20_000);

  // The configured rate was kept by p-queue's interval, on the wall clock: a host clock set back
  // (NTP, a VM restored) held every request for as long as the step.
  it("keeps answering at the configured rate when the host clock is set back", async () => {
    const stub = await startStub((body) => ({ body: answer(body, slotOf) }));
    const p = pool([{ url: stub.url, rateLimitPerSec: 20 }]);
    await Promise.all(Array.from({ length: 20 }, () => p.getSlot()));
    const stepped = Date.now() - 600_000;
    const now = vi.spyOn(Date, "now").mockImplementation(() => stepped + performance.now());
    try {
      const started = performance.now();
      await Promise.all(Array.from({ length: 40 }, () => p.getSlot()));
      // 40 calls at 20 a second: about 2 s, not the 10 min of the step.
      expect(performance.now() - started).toBeLessThan(5_000);
    } finally {
      now.mockRestore();
    }
    // Still held to a rate: without one, 20 calls reach the stub within a few ms. Read at the stub,
    // where a loaded host delivers calls started a second apart closer together, so half a second.
    const at = stub.requests.map((r) => r.at);
    for (let i = 20; i < at.length; i++) expect(at[i]! - at[i - 20]!).toBeGreaterThan(500);
  }, 20_000);

  it("recovers from 30% errors (5xx, node behind, dropped connections) with retries", async () => {
    const random = seeded(7);
    const stub = await startStub((body) => {
      const roll = random();
      if (roll < 0.1) return { status: 503, body: "unavailable" };
      if (roll < 0.2) {
        return {
          body: { jsonrpc: "2.0", id: body.id, error: { code: -32005, message: "Node is behind" } },
        };
      }
      if (roll < 0.3) return { destroy: true };
      return { body: answer(body, slotOf) };
    });
    const p = pool([{ url: stub.url }], { maxAttempts: 8 });
    const slots = await Promise.all(Array.from({ length: 40 }, () => p.getSlot()));
    expect(slots.every((s) => s === 4242)).toBe(true);
    expect(counts(p, "ok")).toBe(40);
    expect(counts(p, "http_error")).toBeGreaterThan(0);
    expect(counts(p, "rpc_error")).toBeGreaterThan(0);
    expect(stub.requests.length).toBe(40 + counts(p, "http_error") + counts(p, "rpc_error"));
  });

  it("times out slow responses and retries them", async () => {
    const stub = await startStub((body, n) => ({
      body: answer(body, slotOf),
      delayMs: n % 3 === 1 ? 10_000 : 0,
    }));
    // Far apart, so that a loaded machine does not time out the prompt answers too.
    const p = pool([{ url: stub.url, timeoutMs: 500 }]);
    const slots = await Promise.all(Array.from({ length: 6 }, () => p.getSlot()));
    expect(slots).toEqual(Array(6).fill(4242));
    expect(counts(p, "timeout")).toBeGreaterThan(0);
  });

  it("fails over from a dead endpoint, sets it aside, and tries it again after the cooldown", async () => {
    const dead = await startStub(() => ({ body: null }));
    await dead.close();
    const live = await startStub((body) => ({ body: answer(body, slotOf) }));
    let clock = 1_000_000;
    const p = pool([{ url: dead.url }, { url: live.url }], {
      breakerThreshold: 3,
      breakerCooldownMs: 30_000,
      now: () => clock,
    });
    for (let i = 0; i < 10; i++) expect(await p.getSlot()).toBe(4242);
    expect(counts(p, "http_error", dead.url)).toBe(3);
    expect(counts(p, "ok", live.url)).toBe(10);
    clock += 30_001;
    expect(await p.getSlot()).toBe(4242);
    expect(counts(p, "http_error", dead.url)).toBe(4);
  });

  it("logs a single endpoint set aside once per cooldown, though it is still asked", async () => {
    // The only endpoint is asked while set aside (there is no other); each failure then said
    // "set aside" again: about twice a second for one unreachable endpoint, 30 s cooldown.
    const dead = await startStub(() => ({ body: null }));
    await dead.close();
    let clock = 1_000_000;
    const warnings: unknown[] = [];
    const log = {
      warn: (fields: unknown, message: string) => warnings.push({ fields, message }),
      info: () => {},
      debug: () => {},
      error: () => {},
      child: () => log,
    };
    const p = pool([{ url: dead.url }], {
      breakerThreshold: 3,
      breakerCooldownMs: 30_000,
      maxAttempts: 4,
      now: () => clock,
      log,
    });
    for (let i = 0; i < 5; i++)
      await expect(p.getSlot()).rejects.toMatchObject({ code: "rpc_unavailable" });
    const setAside = () =>
      warnings.filter((w) => (w as { message: string }).message === "rpc endpoint set aside");
    expect(counts(p, "http_error", dead.url)).toBe(20);
    expect(setAside()).toHaveLength(1);
    clock += 30_001;
    await expect(p.getSlot()).rejects.toMatchObject({ code: "rpc_unavailable" });
    expect(setAside()).toHaveLength(2);
  });

  it("logs a single endpoint set aside again each cooldown while it keeps failing", async () => {
    // Each failure while aside pushes the cooldown on: an endpoint down for an hour and asked
    // every few seconds was said set aside once, at the start of its outage.
    const dead = await startStub(() => ({ body: null }));
    await dead.close();
    let clock = 1_000_000;
    const warnings: string[] = [];
    const log = {
      warn: (_fields: unknown, message: string) => warnings.push(message),
      info: () => {},
      debug: () => {},
      error: () => {},
      child: () => log,
    };
    const p = pool([{ url: dead.url }], {
      breakerThreshold: 3,
      breakerCooldownMs: 30_000,
      maxAttempts: 4,
      now: () => clock,
      log,
    });
    // 95 s of failures, a call every 5 s.
    for (let i = 0; i < 20; i++) {
      await expect(p.getSlot()).rejects.toMatchObject({ code: "rpc_unavailable" });
      clock += 5000;
    }
    expect(warnings.filter((m) => m === "rpc endpoint set aside")).toHaveLength(4);
  });

  it("rejects calls waiting out a long Retry-After as soon as the pool closes", async () => {
    const stub = await startStub(() => ({ status: 429, headers: { "retry-after": "30" } }));
    const p = pool([{ url: stub.url }], { maxRateLimitWaitMs: 60_000 });
    const pending = p.getSlot().catch((e: unknown) => e);
    await vi.waitFor(() => expect(stub.requests).toHaveLength(1), { timeout: 5000 });
    await p.close();
    expect(await pending).toMatchObject({ code: "rpc_unavailable", message: /closed/ });
    expect(stub.requests).toHaveLength(1);
  });

  it("gives up with rpc_unavailable after the last attempt", async () => {
    const stub = await startStub(() => ({ status: 502, body: "bad gateway" }));
    const p = pool([{ url: stub.url }], { maxAttempts: 3 });
    await expect(p.getSlot()).rejects.toMatchObject({ code: "rpc_unavailable" });
    expect(stub.requests).toHaveLength(3);
  });

  it("does not retry an error that another attempt cannot fix", async () => {
    const stub = await startStub((body) => ({
      body: { jsonrpc: "2.0", id: body.id, error: { code: -32602, message: "Invalid param" } },
    }));
    const p = pool([{ url: stub.url }]);
    const error = await p.getSlot().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).message).toMatch(/-32602/);
    expect(stub.requests).toHaveLength(1);
  });

  it("takes a skipped slot's answer at once, without retries nor the endpoint set aside", async () => {
    const stub = await startStub((body) => ({
      body: {
        jsonrpc: "2.0",
        id: body.id,
        error: { code: -32007, message: "Slot 12 was skipped, or missing due to ledger jump" },
      },
    }));
    const p = pool([{ url: stub.url }], { breakerThreshold: 1 });
    for (let i = 0; i < 3; i++) {
      await expect(p.getBlockTime(12)).rejects.toMatchObject({ message: /-32007/ });
    }
    expect(stub.requests).toHaveLength(3);
  });

  for (const code of [-32601, -32007, -32009]) {
    it(`asks the next endpoint when one cannot answer (${code}), and not that one again`, async () => {
      const unable = await startStub((body) => ({
        body: { jsonrpc: "2.0", id: body.id, error: { code, message: "not here" } },
      }));
      const able = await startStub((body) => ({
        body: { jsonrpc: "2.0", id: body.id, result: 1_700_000_000 },
      }));
      const p = pool([{ url: unable.url }, { url: able.url }]);
      expect(await p.getBlockTime(12)).toBe(1_700_000_000);
      expect([unable.requests.length, able.requests.length]).toEqual([1, 1]);
      // With no endpoint left that could answer, the call ends at once.
      const alone = pool([{ url: unable.url }]);
      await expect(alone.getBlockTime(12)).rejects.toMatchObject({
        message: new RegExp(`${code}`),
      });
      expect(unable.requests.length).toBe(2);
    });
  }

  it("never starts more requests than the configured rate in any rolling second, retries included", async () => {
    // Simulated time: the pool's pacing and p-queue's window run on faked timers and clock, so
    // the assertion is exact however loaded the machine is. Rates on real sockets are measured
    // by the benchmark, not asserted here.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date", "performance"] });
    try {
      const random = seeded(11);
      const sent: number[] = [];
      const p = pool([{ url: "http://rpc.invalid", rateLimitPerSec: 10, concurrency: 4 }], {
        maxAttempts: 10,
        random: seeded(5),
        fetch: async (_url: string, init: RequestInit) => {
          sent.push(Date.now());
          const body = JSON.parse(String(init.body));
          return random() < 0.3
            ? new Response("oops", { status: 500 })
            : new Response(JSON.stringify(answer(body, slotOf)), {
                headers: { "content-type": "application/json" },
              });
        },
      });
      let settled = false;
      const slots = Promise.all(Array.from({ length: 20 }, () => p.getSlot())).finally(() => {
        settled = true;
      });
      // At most 60 simulated seconds; 20 calls and their retries need about 3 at 10 per second.
      for (let step = 0; step < 600 && !settled; step++) await vi.advanceTimersByTimeAsync(100);
      expect(await slots).toEqual(Array(20).fill(4242));
      expect(sent.length).toBeGreaterThan(20);
      expect(maxInWindow(sent, 1000)).toBeLessThanOrEqual(10);
      await p.close();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("RPC pool: calls whose caller stopped waiting", () => {
  // A quorum question settled by the other endpoints stops waiting for a slow one. Its call
  // stayed queued there and was sent later, holding one of the endpoint's places for its whole
  // answer time: with a quorum of 2 and one endpoint answering in 5 s, the questions that did
  // need it waited behind all of those, and no verdict was written for minutes (found as
  // deployed on PostgreSQL).
  it("sends none still queued and cuts one in flight, so a call that needs the endpoint waits for one answer, not theirs", async () => {
    const slowMs = 400;
    const stub = await startStub((body) => ({ body: answer(body, slotOf), delayMs: slowMs }));
    const p = pool([{ url: stub.url, concurrency: 1 }]);
    const stopped = Array.from({ length: 10 }, () => {
      const stop = new AbortController();
      const call = p.getSlot("finalized", { signal: stop.signal }).catch(() => null);
      stop.abort();
      return call;
    });
    await Promise.all(stopped);
    const started = performance.now();
    expect(await p.getSlot("finalized")).toBe(4242);
    // One slow answer's time, not the ten abandoned calls' (10 × 400 ms) before it.
    expect(performance.now() - started).toBeLessThan(slowMs * 3);
    expect(stub.requests.length).toBeLessThanOrEqual(2);
    // A cut call says nothing of the endpoint: not a timeout, not an error.
    expect(counts(p, "timeout") + counts(p, "error")).toBe(0);
  });
});

describe("RPC pool: batches", () => {
  it("sends one request per call when batching is off (the default)", async () => {
    const stub = await startStub((body) => ({ body: answer(body, slotOf) }));
    const p = pool([{ url: stub.url }]);
    await Promise.all(Array.from({ length: 5 }, () => p.getSlot()));
    expect(stub.requests).toHaveLength(5);
    expect(stub.requests.every((r) => !Array.isArray(r.body))).toBe(true);
  });

  it("sends concurrent calls as one batch array when batching is on", async () => {
    const stub = await startStub((body) => ({ body: answer(body, slotOf) }));
    const p = pool([{ url: stub.url }], { batch: true });
    const slots = await Promise.all(Array.from({ length: 5 }, () => p.getSlot()));
    expect(slots).toEqual(Array(5).fill(4242));
    expect(stub.requests).toHaveLength(1);
    expect(stub.requests[0]!.body).toHaveLength(5);
    expect(counts(p, "ok")).toBe(5);
  });

  it("falls back to single requests when the endpoint refuses batches", async () => {
    const stub = await startStub((body) =>
      Array.isArray(body)
        ? {
            status: 200,
            body: {
              jsonrpc: "2.0",
              id: null,
              error: { code: -32600, message: "batch not supported" },
            },
          }
        : { body: answer(body, slotOf) },
    );
    const p = pool([{ url: stub.url }], { batch: true });
    expect(await Promise.all([p.getSlot(), p.getSlot(), p.getSlot()])).toEqual([4242, 4242, 4242]);
    expect(await Promise.all([p.getSlot(), p.getSlot()])).toEqual([4242, 4242]);
    // One refused array, then only single requests, also for later calls.
    expect(stub.requests.filter((r) => Array.isArray(r.body))).toHaveLength(1);
    expect(stub.requests).toHaveLength(1 + 5);
  });
});

describe("RPC pool: calls", () => {
  const statusStub = () =>
    startStub((body) => ({
      body: answer(body, (call) => {
        const sigs = call.params[0] as string[];
        expect(call.params[1]).toEqual({ searchTransactionHistory: true });
        return {
          context: { slot: 500 },
          value: sigs.map((s) =>
            s.endsWith("7")
              ? null
              : {
                  slot: Number(s.slice(4)),
                  confirmations: null,
                  err: null,
                  confirmationStatus: "finalized",
                },
          ),
        };
      }),
    }));
  const signatures = Array.from({ length: 600 }, (_, i) => `sig-${i}`);

  it.each([
    [256, [256, 256, 88]],
    [100, [100, 100, 100, 100, 100, 100]],
  ])("asks getSignatureStatuses in chunks of %i and keeps the order", async (size, chunks) => {
    const stub = await statusStub();
    const p = pool([{ url: stub.url }], { statusBatchSize: size });
    const statuses = await p.getSignatureStatuses(signatures);
    expect(stub.requests.map((r) => r.body.params[0].length)).toEqual(chunks);
    expect(statuses).toHaveLength(600);
    statuses.forEach((s, i) => {
      if (i % 10 === 7) expect(s).toBeNull();
      else
        expect(s).toEqual({
          signature: `sig-${i}`,
          slot: i,
          confirmationStatus: "finalized",
          err: null,
        });
    });
  });

  it("takes its endpoints and status chunk size from the config", async () => {
    const stub = await statusStub();
    const p = rpcPoolFromConfig(
      loadConfig({ SOLANA_RPC_URLS: stub.url, RPC_STATUS_BATCH_SIZE: "50" }),
    );
    pools.push(p);
    expect(await p.getSignatureStatuses(signatures.slice(0, 120))).toHaveLength(120);
    expect(stub.requests.map((r) => r.body.params[0].length)).toEqual([50, 50, 20]);
    expect(await p.getSignatureStatuses([])).toEqual([]);
    expect(stub.requests).toHaveLength(3);
  });

  it("returns a transaction's facts and its raw result text, big lamports exact", async () => {
    const text = readFileSync(
      join(import.meta.dirname, "fixtures/transactions/big-balances.json.json"),
      "utf8",
    );
    const signature = JSON.parse(text).result.transaction.signatures[0] as string;
    const stub = await startStub((body) =>
      body.params[0] === signature
        ? { body: text.replace('"id": 1', `"id": ${body.id}`) }
        : { body: answer(body, () => null) },
    );
    const p = pool([{ url: stub.url }]);
    const fetched = await p.getTransaction(signature);
    expect(stub.requests[0]!.body.params[1]).toEqual({
      encoding: "json",
      commitment: "finalized",
      maxSupportedTransactionVersion: 0,
    });
    expect(fetched?.facts.feePayer).toBe(addr.whale);
    expect(fetched?.facts.solChanges[0]?.pre).toBe(12_345_678_901_234_567_890n);
    expect(fetched?.raw).toContain("12345678901234567890");
    expect(fetched?.raw.startsWith("{")).toBe(true);
    expect(text).toContain(fetched!.raw);
    expect(await p.getTransaction("5".repeat(88))).toBeNull();
    expect(counts(p, "not_found")).toBe(1);
  });

  it("never takes another endpoint's transaction over the first's not found: they disagree", async () => {
    const text = readFileSync(
      join(import.meta.dirname, "fixtures/transactions/big-balances.json.json"),
      "utf8",
    );
    const signature = JSON.parse(text).result.transaction.signatures[0] as string;
    // The first endpoint has no such transaction; the second serves one (a forged history,
    // or a node ahead of the first: from here, the two cannot be told apart).
    const empty = await startStub((body) =>
      body.method === "getTransaction"
        ? { body: answer(body, () => null) }
        : { body: answer(body, (call) => slotOf(call) ?? { context: { slot: 1 }, value: [null] }) },
    );
    const serving = await startStub((body) =>
      body.method === "getTransaction"
        ? { body: text.replace('"id": 1', `"id": ${body.id}`) }
        : { body: answer(body, (call) => slotOf(call) ?? { context: { slot: 1 }, value: [null] }) },
    );
    const p = pool([{ url: empty.url }, { url: serving.url }]);
    await expect(p.getTransaction(signature)).rejects.toMatchObject({
      code: "rpc_disagreement",
    });
    expect(serving.requests).toHaveLength(1);
    // Before a drop, the others are asked too: seen anywhere, the signature is not dropped.
    const anywhere = await p.findAnywhere!([signature]);
    expect([...anywhere.found.keys()]).toEqual([signature]);
    expect(anywhere.unanswered).toEqual([]);
  });

  it("looks up many unseen signatures several at a time, and stops when its round stops", async () => {
    // Two endpoints that know none of them, 50 ms per answer.
    const slowEmpty = () =>
      startStub((body) =>
        body.method === "getTransaction"
          ? { body: answer(body, () => null), delayMs: 50 }
          : {
              body: answer(
                body,
                (call) =>
                  slotOf(call) ?? {
                    context: { slot: 1 },
                    value: (call.params as unknown[][])[0]!.map(() => null),
                  },
              ),
            },
      );
    const a = await slowEmpty();
    const b = await slowEmpty();
    const p = pool([{ url: a.url }, { url: b.url }]);
    const wanted = Array.from({ length: 40 }, (_, i) =>
      String(i + 1)
        .padStart(2, "1")
        .repeat(44),
    );
    const started = performance.now();
    const anywhere = await p.findAnywhere!(wanted);
    // One after another: 40 signatures x 2 endpoints x 50 ms = 4 s.
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(anywhere.found.size).toBe(0);
    const stopped = new AbortController();
    stopped.abort();
    const before = a.requests.length + b.requests.length;
    const cut = await p.findAnywhere!(wanted, stopped.signal);
    // Nothing is asked, and no endpoint counts as having answered: no drop can follow.
    expect(a.requests.length + b.requests.length - before).toBe(0);
    expect(cut.unanswered).toHaveLength(2);
  });

  it("asks an endpoint that cannot answer once per search, not once per signature", async () => {
    const empty = await startStub((body) =>
      body.method === "getTransaction"
        ? { body: answer(body, () => null) }
        : {
            body: answer(
              body,
              (call) => slotOf(call) ?? { context: { slot: 1 }, value: [null, null, null] },
            ),
          },
    );
    const down = await startStub(() => ({ status: 503, body: "unavailable" }));
    const p = pool([{ url: empty.url }, { url: down.url }]);
    const wanted = ["4".repeat(88), "5".repeat(88), "6".repeat(88)];
    const anywhere = await p.findAnywhere!(wanted);
    expect(anywhere.found.size).toBe(0);
    expect(anywhere.unanswered).toHaveLength(1);
    // One failed call (its retries included) for the whole search: three signatures asked of
    // a dead endpoint one by one made a drop take seconds each.
    const before = down.requests.length;
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThanOrEqual(6);
  });

  it("tells with a search the lowest finalized slot of its endpoints, and an endpoint that cannot tell its slot as unanswered", async () => {
    // A drop counts slots from a first miss whose slot one endpoint gave: a lagging first
    // endpoint's, say, while the poll that would drop read a second one 1,000 slots ahead.
    const node = (slot: number | "fails") =>
      startStub((body) => {
        if (body.method === "getSlot" && slot === "fails") return { status: 500, body: "down" };
        return {
          body: answer(body, (call) =>
            call.method === "getSlot"
              ? slot
              : call.method === "getTransaction"
                ? null
                : {
                    context: { slot: 1 },
                    value: (call.params as unknown[][])[0]!.map(() => null),
                  },
          ),
        };
      });
    const lagging = await node(5_000);
    const ahead = await node(6_000);
    const wanted = ["7".repeat(88)];
    const both = await pool([{ url: lagging.url }, { url: ahead.url }]).findAnywhere!(wanted);
    expect(both).toMatchObject({ unanswered: [], lowestSlot: 5_000 });
    expect(both.found.size).toBe(0);
    // One that answers statuses but not its slot cannot say how far it is behind.
    const mute = await node("fails");
    const withMute = await pool([{ url: mute.url }, { url: ahead.url }]).findAnywhere!(wanted);
    expect(withMute.unanswered).toHaveLength(1);
    expect(withMute.lowestSlot).toBe(6_000);
  });
});

describe("RPC pool: an endpoint asking for long pauses", () => {
  it("names an endpoint answering 429 with Retry-After 60 as unanswered in a search at once, not after 20 pauses", async () => {
    // Asked of that endpoint alone, the call waited out its minute 20 times (20 minutes), and
    // the verifier's round, every job of it, with it.
    const empty = await startStub((body) => ({
      body: answer(body, (call) =>
        call.method === "getSlot"
          ? 4242
          : call.method === "getTransaction"
            ? null
            : { context: { slot: 1 }, value: (call.params as unknown[][])[0]!.map(() => null) },
      ),
    }));
    const limited = await startStub(() => ({
      status: 429,
      headers: { "retry-after": "60" },
      body: "Too many requests",
    }));
    const p = pool([{ url: empty.url }, { url: limited.url }]);
    const started = performance.now();
    const anywhere = await p.findAnywhere!(["8".repeat(88)]);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(anywhere.unanswered).toEqual([limited.url]);
    expect(anywhere.found.size).toBe(0);
    expect(limited.requests).toHaveLength(1);
    // The pause still holds the endpoint: a call that may go elsewhere goes to the other.
    await expect(p.getSlot()).resolves.toBe(4242);
    expect(limited.requests).toHaveLength(1);
  });

  it("waits out a pause shorter than its cap", async () => {
    let refused = 0;
    const stub = await startStub((body) =>
      refused++ === 0
        ? { status: 429, headers: { "retry-after": "1" }, body: "Too many requests" }
        : { body: answer(body, () => 4242) },
    );
    const p = pool([{ url: stub.url }], { maxRateLimitWaitMs: 5_000 });
    await expect(p.getSlot()).resolves.toBe(4242);
    expect(stub.requests).toHaveLength(2);
  });

  it("takes its cap from RPC_RATE_LIMIT_WAIT_MS: a pause beyond it fails the call, not waited out", async () => {
    let refused = 0;
    const stub = await startStub((body) =>
      refused++ === 0
        ? { status: 429, headers: { "retry-after": "3" }, body: "Too many requests" }
        : { body: answer(body, () => 4242) },
    );
    const p = rpcPoolFromConfig(
      loadConfig({ SOLANA_RPC_URLS: stub.url, RPC_RATE_LIMIT_WAIT_MS: "1000" }),
    );
    pools.push(p);
    const started = performance.now();
    await expect(p.getSlot()).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(2_500);
    expect(stub.requests).toHaveLength(1);
  });
});

describe("RPC pool: secrets in endpoint URLs", () => {
  it("keeps API keys in the path or query out of counters and error messages", async () => {
    const stub = await startStub(() => ({ status: 500, body: "down" }));
    const secretUrl = `${stub.url}/v2/PATHSECRET?api-key=QUERYSECRET`;
    const p = pool([{ url: secretUrl }], { maxAttempts: 2 });
    const failure = await p.getSlot().catch((error: Error) => error);
    expect(stub.requests.length).toBeGreaterThan(0);
    const shown = JSON.stringify(p.stats()) + String((failure as Error).message);
    expect(shown).not.toContain("SECRET");
    expect(shown).toContain(`${stub.url}/…`);
  });
});

describe("RPC pool: 429s at random", () => {
  it("keeps its request rate when 8% of answers are 429 whatever the rate", async () => {
    const random = seeded(3);
    let refused = 0;
    const stub = await startStub((body) => {
      if (random() < 0.08) {
        refused++;
        return { status: 429, headers: { "retry-after": "0" }, body: "Too many requests" };
      }
      return { body: answer(body, slotOf) };
    });
    const p = pool([{ url: stub.url, rateLimitPerSec: 200 }], { defaultRetryAfterMs: 1 });
    for (let i = 0; i < 15; i++) await Promise.all(Array.from({ length: 10 }, () => p.getSlot()));
    expect(refused).toBeGreaterThan(5);
    // Halving on each 429 (once a second) left it at a fraction of the configured 200.
    expect(p.requestRate()).toBeGreaterThan(150);
  });
});

describe("rpc pool memory", () => {
  /** Heap in use after a full collection. */
  function heapAfterGc(): number {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  }

  it.each([false, true])(
    "keeps no answer once its call returned (batch %s): the verifier's thread grew 20 MB a minute",
    async (batch) => {
      // Each answer carries 64 KiB: 400 calls kept would hold about 26 MB.
      const pad = "x".repeat(65_536);
      const p = pool([{ url: "http://rpc.invalid" }], {
        batch,
        fetch: async (_url: string, init: RequestInit) => {
          const body = JSON.parse(String(init.body));
          // The result's text, kept as the evidence (`raw`), is a slice of the whole answer.
          const one = (call: Json) =>
            `{"jsonrpc":"2.0","id":${call.id},"result":[${" ".repeat(32)}],"pad":"${pad}"}`;
          const text = Array.isArray(body) ? `[${body.map(one).join(",")}]` : one(body);
          return new Response(text, {
            headers: { "content-type": "application/json" },
          });
        },
      });
      const statuses = () => p.getSignaturesForAddress(addr.creditVault, { limit: 1 });
      await statuses();
      const before = heapAfterGc();
      for (let i = 0; i < 40; i++) await Promise.all(Array.from({ length: 10 }, statuses));
      const grown = heapAfterGc() - before;
      expect(grown).toBeLessThan(8_000_000);
    },
  );
});
