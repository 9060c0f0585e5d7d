import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BLOCK_TIME_AHEAD_SECONDS } from "../src/chain/block-time.js";
import { createRpcPool, type RpcPool } from "../src/chain/rpc-pool.js";
import type { SqliteStore } from "../src/db/client.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { buildStatement } from "../src/ledger/statement.js";
import { createLogger } from "../src/log.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { createVerifier } from "../src/verify/engine.js";
import { useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

/**
 * An endpoint that answers block times the chain cannot have: one beyond what a date holds, or
 * one in the future. Its answer is the endpoint's trouble: no job is judged by it, no round
 * stops on it, and no ledger takes it as how far the chain has finalized.
 */

const log = createLogger({ level: "silent" });
/** 99999999999999 s: a safe integer, but no date holds it (a RangeError in toISOString). */
const NO_DATE = 99_999_999_999_999;
/** 2100-01-01: a date, but one no block has yet. */
const YEAR_2100 = 4_102_444_800;

const h = useAdversaryHarness();
let server: Server;
let lyingUrl: string;
/** What the lying endpoint says: a block time for these transactions, and for every slot. */
const lies = { transactions: new Map<string, number>(), blockTime: null as number | null };

beforeAll(async () => {
  // Forwards every call to the local world and rewrites the block times it was told to.
  server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    const upstream = await fetch(h.world.rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    // biome-ignore lint/suspicious/noExplicitAny: a JSON-RPC reply is rewritten in place.
    const reply: any = await upstream.json();
    const lie = (time: number | undefined) => (time === undefined ? {} : { blockTime: time });
    if (body.method === "getTransaction" && reply.result) {
      Object.assign(reply.result, lie(lies.transactions.get(body.params[0])));
    } else if (body.method === "getBlockTime" && lies.blockTime !== null) {
      reply.result = lies.blockTime;
    } else if (body.method === "getSignaturesForAddress" && Array.isArray(reply.result)) {
      for (const entry of reply.result)
        Object.assign(entry, lie(lies.transactions.get(entry.signature)));
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(reply));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  lyingUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

function lyingPool(): RpcPool {
  return createRpcPool({
    endpoints: [{ url: lyingUrl, rateLimitPerSec: 500, concurrency: 4, timeoutMs: 2000 }],
    backoffBaseMs: 20,
    backoffMaxMs: 200,
    breakerCooldownMs: 500,
  });
}

describe("an endpoint's block time the chain cannot have", () => {
  it("is refused by the RPC pool in getTransaction and getBlockTime, and passed on in a listing", async () => {
    const c = await h.scenario();
    const honest = await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const { escrowTx } = h.op.honestJob(plan);
    await h.finalized();
    const rpc = lyingPool();
    try {
      for (const time of [NO_DATE, YEAR_2100, 1_000]) {
        lies.transactions.set(escrowTx, time);
        await expect(rpc.getTransaction(escrowTx)).rejects.toMatchObject({
          code: "malformed_transaction",
          message: new RegExp(`block time ${time}`),
        });
        // The ledger reader judges each entry (older entries of the page are kept).
        const listed = await rpc.getSignaturesForAddress(honest.vault);
        expect(listed.find((e) => e.signature === escrowTx)?.blockTime).toBe(time);
        lies.blockTime = time;
        await expect(rpc.getBlockTime(await rpc.getSlot())).rejects.toMatchObject({
          message: new RegExp(`block time ${time}`),
        });
        lies.blockTime = null;
      }
      lies.transactions.clear();
      // A time within a day of this machine's clock is the chain's.
      const near = Math.floor(Date.now() / 1000) + BLOCK_TIME_AHEAD_SECONDS - 5;
      lies.blockTime = near;
      expect(await rpc.getBlockTime(await rpc.getSlot())).toBe(near);
    } finally {
      lies.transactions.clear();
      lies.blockTime = null;
      await rpc.close();
    }
  });

  it("holds back only the job whose lock it dates, names why, and judges every other job", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const lied = h.op.plan({ keyIndex: 1 });
    const liedTxs = h.op.honestJob(lied);
    c.record(lied, liedTxs);
    const others = [h.op.plan({ keyIndex: 1 }), h.op.plan({ keyIndex: 1 })];
    for (const plan of others) c.record(plan, h.op.honestJob(plan));
    await c.flush();
    await h.finalized();
    lies.transactions.set(liedTxs.escrowTx, NO_DATE);
    const rpc = lyingPool();
    try {
      const verifier = createVerifier({
        store: c.store,
        rpc,
        profile: c.profile,
        log,
        options: quickVerifierOptions,
      });
      // It does not settle (the lied-about lock waits), but every round ends and writes.
      await verifier.runUntilSettled({}, { timeoutMs: 3_000 });
      for (const plan of others) {
        expect(await c.outcome(plan.jobId)).toEqual({ verdict: "verified", failing: [] });
      }
      const held = await c.outcome(lied.jobId);
      expect(held.verdict).not.toBe("verified");
      expect(held.verdict).not.toBe("discrepancy");
      const row = (c.store as SqliteStore).sqlite
        .prepare("SELECT verdict, last_error FROM jobs WHERE job_id = ?")
        .get(lied.jobId) as { verdict: string; last_error: string };
      expect(row).toMatchObject({ verdict: "error", last_error: /block time 99999999999999/ });
    } finally {
      lies.transactions.clear();
      await rpc.close();
    }
  });

  it("is refused by the verifier and the ledger whatever RPC they are given", async () => {
    const c = await h.scenario();
    const honest = await c.pinKey(1);
    const lied = h.op.plan({ keyIndex: 1 });
    const liedTxs = h.op.honestJob(lied);
    c.record(lied, liedTxs);
    const other = h.op.plan({ keyIndex: 1 });
    c.record(other, h.op.honestJob(other));
    await c.flush();
    await h.finalized();
    // Not the pool: an RPC of the verifier's and the ledger's own shape that passes them on.
    const rpc: typeof h.rpc = {
      ...h.rpc,
      getTransaction: async (signature, commitment, options) => {
        const got = await h.rpc.getTransaction(signature, commitment, options);
        if (got === null || signature !== liedTxs.escrowTx) return got;
        return { ...got, facts: { ...got.facts, blockTime: NO_DATE } };
      },
      getBlockTime: async () => YEAR_2100,
    };
    const verifier = createVerifier({
      store: c.store,
      rpc,
      profile: c.profile,
      log,
      options: quickVerifierOptions,
    });
    await verifier.runUntilSettled({}, { timeoutMs: 2_000 });
    expect(await c.outcome(other.jobId)).toEqual({ verdict: "verified", failing: [] });
    expect((await c.outcome(lied.jobId)).verdict).toBe("error");

    const custody = { vaults: [honest.vault], byKey: {} };
    const reader = createLedgerReader({ store: c.store, rpc, profile: c.profile, log, custody });
    const [read] = await reader.syncAll();
    expect(read?.noBlockTime).toMatch(/block time 4102444800/);
    expect((await createLedgerStore(c.store).cursorFigures(honest.vault))?.finalThrough).toBe(null);
  });

  for (const [name, time] of [
    ["one no date holds", NO_DATE],
    ["one in the future", YEAR_2100],
  ] as const) {
    it(`never becomes a ledger's read-through time (${name}), and the statement still reads`, async () => {
      const c = await h.scenario();
      const honest = await c.pinKey(1);
      const custody = { vaults: [honest.vault], byKey: {} };
      await h.finalized();
      const honestReader = createLedgerReader({
        store: c.store,
        rpc: h.rpc,
        profile: c.profile,
        log,
        custody,
      });
      await honestReader.syncAll();
      const ledger = createLedgerStore(c.store);
      const proven = (await ledger.cursorFigures(honest.vault))?.finalThrough;
      expect(proven).toBeTypeOf("number");

      // A later payment, then a sync through the lying endpoint.
      h.op.send([h.op.transfer(honest.vault, h.op.attackerAccount(0n), 1_000n)]);
      await h.finalized();
      lies.blockTime = time;
      const rpc = lyingPool();
      try {
        const reader = createLedgerReader({
          store: c.store,
          rpc,
          profile: c.profile,
          log,
          custody,
        });
        const [read] = await reader.syncAll();
        expect(read?.noBlockTime).toMatch(new RegExp(`block time ${time}`));
      } finally {
        lies.blockTime = null;
        await rpc.close();
      }
      expect((await ledger.cursorFigures(honest.vault))?.finalThrough).toBe(proven);
      const from = Date.now() - 86_400_000;
      const statement = await buildStatement(
        c.store,
        { from, to: Date.now() + 86_400_000 * 365, vault: honest.vault },
        { profile: c.profile },
      );
      expect(statement.vaults[0]?.readThrough).toBe(new Date(proven!).toISOString());
      expect(statement.vaults[0]?.complete).toBe(false);
    });
  }
});
