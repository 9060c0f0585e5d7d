import { createHash } from "node:crypto";
import { Connection, Keypair, SystemProgram, Transaction } from "@solana/web3.js";
import { describe, expect, it, vi } from "vitest";
import { startLocalWorld } from "../src/localnet/world.js";
import { useStarted } from "./support/started-life.js";

// Short slots so a blockhash (150 slots) expires within a test.
const world = useStarted(() => startLocalWorld({ slotMs: 10, finalitySlots: 2 }));

async function call(url: string, body: unknown) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, json: JSON.parse(text) as RpcReply };
}

interface RpcReply {
  id: unknown;
  result?: unknown;
  error: { code: number; message: string };
}

const health = { jsonrpc: "2.0", id: 1, method: "getHealth" };

function signedTransfer(blockhash: string, lamports: number): Transaction {
  const seed = createHash("sha256").update("decentral-audit/localnet/worker-3").digest();
  const from = Keypair.fromSeed(seed);
  const tx = new Transaction({ feePayer: from.publicKey, recentBlockhash: blockhash }).add(
    SystemProgram.transfer({
      fromPubkey: from.publicKey,
      toPubkey: Keypair.generate().publicKey,
      lamports,
    }),
  );
  tx.sign(from);
  return tx;
}

describe("RPC fault injection, each fault observable", () => {
  it("adds latency to every response", async () => {
    const url = await world.addRpcEndpoint({ latencyMs: 120 });
    const started = performance.now();
    expect((await call(url, health)).json.result).toBe("ok");
    expect(performance.now() - started).toBeGreaterThanOrEqual(115);
    expect(world.rpcStats(url).byMethod.getHealth).toBe(1);
  });

  it("answers HTTP 429 with Retry-After beyond the rate limit and counts the peak rate", async () => {
    // A limit far below the burst: 20 requests fired at once would have to spread over ten
    // seconds for none to be refused, so a loaded machine cannot make this pass by accident.
    const url = await world.addRpcEndpoint({ rateLimitPerSec: 2 });
    const replies = await Promise.all(Array.from({ length: 20 }, () => call(url, health)));
    const limited = replies.filter((r) => r.status === 429);
    expect(replies.filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(2);
    expect(limited.length).toBeGreaterThan(0);
    expect(limited.every((r) => r.headers.get("retry-after") === "1")).toBe(true);
    const stats = world.rpcStats(url);
    expect(stats.served429).toBe(limited.length);
    expect(stats.maxRequestsPerSecond).toBeGreaterThan(2);
    // web3.js surfaces the 429. Should the burst's second be over already, a call that passes
    // takes the quota, so the next one within the second is refused.
    const web3 = new Connection(url, { disableRetryOnRateLimit: true });
    await vi.waitFor(() => expect(web3.getSlot()).rejects.toThrow(/429/), {
      timeout: 10_000,
      interval: 0,
    });
  });

  it("answers a share of requests with HTTP 5xx", async () => {
    const url = await world.addRpcEndpoint({ http5xxRate: 1 });
    const statuses = [(await call(url, health)).status, (await call(url, health)).status];
    expect(statuses.sort()).toEqual([500, 503]);
    expect(world.rpcStats(url).served5xx).toBe(2);
    world.setRpcFaults(url, { http5xxRate: 0 });
    expect((await call(url, health)).status).toBe(200);
  });

  it("answers its share of a short run with HTTP 5xx, not a random count of them", async () => {
    const url = await world.addRpcEndpoint({ http5xxRate: 0.3 });
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await call(url, health)).status);
    expect(statuses.filter((status) => status >= 500)).toHaveLength(3);
    expect(world.rpcStats(url).served5xx).toBe(3);
    // Never two in a row at this share: spread, not bunched.
    expect(statuses.join(",")).not.toMatch(/5\d\d,5\d\d/);
  });

  it("answers a share of calls with -32005 node is behind", async () => {
    const url = await world.addRpcEndpoint({ behindRate: 1 });
    const reply = await call(url, { jsonrpc: "2.0", id: 9, method: "getSlot" });
    expect(reply.json.id).toBe(9);
    expect(reply.json.error.code).toBe(-32005);
    expect(reply.json.error.message).toMatch(/^Node is behind by \d+ slots$/);
    expect(world.rpcStats(url).servedBehind).toBe(1);
  });

  it("refuses batch arrays while serving single calls", async () => {
    const url = await world.addRpcEndpoint({ refuseBatch: true });
    const batch = await call(url, [health, { ...health, id: 2 }]);
    expect(batch.status).toBe(400);
    expect(batch.json.error.code).toBe(-32600);
    expect((await call(url, health)).json.result).toBe("ok");
    expect(world.rpcStats(url)).toMatchObject({ batches: 1, batchesRefused: 1 });
  });

  it("answers HTTP 503 to everything while down, and recovers", async () => {
    const url = await world.addRpcEndpoint({ down: true });
    expect((await call(url, health)).status).toBe(503);
    world.setRpcFaults(url, { down: false });
    expect((await call(url, health)).status).toBe(200);
  });

  it("acknowledges a transaction that never lands, which stays unknown once its blockhash expires", async () => {
    const url = await world.addRpcEndpoint({ neverLandRate: 1 });
    const web3 = new Connection(url, "confirmed");
    const { blockhash, lastValidBlockHeight } = await web3.getLatestBlockhash();
    const tx = signedTransfer(blockhash, 10_000_000);
    const signature = await web3.sendRawTransaction(tx.serialize());
    expect(world.rpcStats(url).neverLanded).toEqual([signature]);
    await vi.waitFor(
      async () =>
        expect(await web3.getBlockHeight("processed")).toBeGreaterThan(lastValidBlockHeight),
      { timeout: 30_000, interval: 50 },
    );
    const status = await web3.getSignatureStatus(signature, { searchTransactionHistory: true });
    expect(status.value).toBeNull();
    // Past its window the same bytes cannot land anywhere.
    const healthy = new Connection(world.rpcUrl, "confirmed");
    await expect(healthy.sendRawTransaction(tx.serialize())).rejects.toThrow(/BlockhashNotFound/);
  });

  it("leaves the first endpoint alone when another endpoint's faults change", async () => {
    const url = await world.addRpcEndpoint({ down: true });
    expect((await call(world.rpcUrl, health)).status).toBe(200);
    expect(world.rpcStats().url).toBe(world.rpcUrl);
    expect(world.rpcStats(url).url).toBe(url);
  });
});

describe("local chain clock", () => {
  it("advances slots and block times with wall-clock time", async () => {
    const web3 = new Connection(world.rpcUrl, "processed");
    const first = await web3.getSlot("processed");
    const blockTime = await web3.getBlockTime(first);
    expect(Math.abs(blockTime! - Date.now() / 1000)).toBeLessThan(2);
    await vi.waitFor(async () => expect(await web3.getSlot("processed")).toBeGreaterThan(first), {
      timeout: 10_000,
      interval: 5,
    });
  });
});
