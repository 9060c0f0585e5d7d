import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { objectMemberTexts, parseJsonLossless } from "../src/chain/json-text.js";
import { parseTransaction } from "../src/chain/parse-transaction.js";
import { createRpcPool, type RpcPool } from "../src/chain/rpc-pool.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { useStarted } from "./support/started-life.js";

const world = useStarted(() => startLocalWorld({ slotMs: 10, finalitySlots: 2 }));
let rpc: RpcPool;
beforeAll(() => {
  rpc = createRpcPool({
    endpoints: [{ url: world.rpcUrl, rateLimitPerSec: 500, concurrency: 4, timeoutMs: 2000 }],
  });
});
afterAll(async () => {
  await rpc?.close();
});

/** One non-streamed job through the simulator; returns its id and both signatures. */
async function runJob(): Promise<{ jobId: string; escrow: string; settlement: string }> {
  const base = world.decentralBaseUrl.replace(/\/+$/, "");
  const res = await fetch(`${base}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${world.apiKeys[0]}`, "content-type": "application/json" },
    body: JSON.stringify({
      model: "qwen3-8b",
      messages: [{ role: "user", content: "Say hello." }],
    }),
  });
  await res.text();
  expect(res.status).toBe(200);
  return {
    jobId: res.headers.get("x-decentral-job-id")!,
    escrow: res.headers.get("x-decentral-tx-signature")!,
    settlement: res.headers.get("x-decentral-settlement-tx")!,
  };
}

/** Resolves once every signature is finalized, polling the status call as the verifier does. */
async function finalized(signatures: string[]): Promise<void> {
  await vi.waitFor(
    async () => {
      const statuses = await rpc.getSignatureStatuses(signatures);
      expect(statuses.map((s) => s?.confirmationStatus)).toEqual(signatures.map(() => "finalized"));
    },
    { timeout: 30_000, interval: 10 },
  );
}

/** The raw `result` of getTransaction in one encoding, read losslessly. */
async function fetchResult(signature: string, encoding: string): Promise<unknown> {
  const res = await fetch(world.rpcUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "getTransaction",
      params: [signature, { encoding, commitment: "finalized", maxSupportedTransactionVersion: 0 }],
    }),
  });
  const text = await res.text();
  return parseJsonLossless(objectMemberTexts(text).get("result")!);
}

describe("transaction facts from the local chain", () => {
  it("derives the same facts from every encoding of real escrow and settlement transactions, legacy, v0 and v0 with a lookup table", async () => {
    // The simulator rotates settlement shapes job by job: three jobs cover all three.
    const jobs = [await runJob(), await runJob(), await runJob()];
    await finalized(jobs.flatMap((j) => [j.escrow, j.settlement]));
    const versions = new Set<string>();
    let loadedSeen = false;
    for (const job of jobs) {
      for (const [signature, kind] of [
        [job.escrow, "escrow"],
        [job.settlement, "settle"],
      ] as const) {
        const fetched = await rpc.getTransaction(signature);
        expect(fetched).not.toBeNull();
        const facts = fetched!.facts;
        expect(facts.signature).toBe(signature);
        expect(facts.succeeded).toBe(true);
        expect(facts.memos).toContain(`decentral:${kind}:${job.jobId}`);
        // Tokens only move between accounts: the deltas of one mint sum to zero.
        expect(facts.tokenChanges.reduce((sum, c) => sum + c.delta, 0n)).toBe(0n);
        for (const encoding of ["jsonParsed", "base64"]) {
          expect(parseTransaction(await fetchResult(signature, encoding), signature)).toEqual(
            facts,
          );
        }
        versions.add(String(facts.version));
        const json = (await fetchResult(signature, "json")) as {
          transaction: { message: { accountKeys: string[] } };
        };
        if (facts.accounts.length > json.transaction.message.accountKeys.length) loadedSeen = true;
      }
    }
    expect([...versions].sort()).toEqual(["0", "legacy"]);
    expect(loadedSeen).toBe(true);
  });
});
