import { describe, expect, it } from "vitest";
import { createQuorumRpc } from "../src/chain/quorum.js";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { endpointNames } from "../src/chain/url-secrets.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { recordHonest } from "./support/honest-receipt.js";
import { quickVerifier } from "./support/quick-verifier.js";
import { createTestStore } from "./support/store.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";

const log = createLogger({ level: "silent" });

/** The fake chain's node as an RPC pool, one member of a quorum. */
const poolOf = (chain: ReturnType<typeof createFakeChain>) =>
  ({
    ...chain.rpc,
    requestRate: () => 1,
    stats: () => [],
    async close() {},
  }) as unknown as RpcPool;

describe("a nightly run under RPC_QUORUM=2 when the endpoints disagree", () => {
  it("says the endpoints disagree, naming them, not that the jobs wait for finality", async () => {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 0 });
    const from = Date.now() - 60_000;
    recordHonest(store, "a", chain);
    recordHonest(store, "b", chain);
    const honest = poolOf(chain);
    const liar = { ...honest, getTransaction: async () => null } as unknown as RpcPool;
    const rpc = createQuorumRpc({
      members: [
        { name: "honest", rpc: honest },
        { name: "liar", rpc: liar },
      ],
      quorum: 2,
    });
    const verifier = quickVerifier(store, rpc, log);
    const night = await runNightlyVerification(store, verifier, {
      from,
      to: Date.now() + 1_000,
      timeoutMs: 1_500,
      rpcQuorum: rpc,
    });
    expect(night.exitCode).toBe(2);
    expect(night.reason).not.toContain("to be final");
    expect(night.reason).toMatch(
      /2 jobs not final: 2 waiting on RPC trouble; the RPC endpoints disagree: answered not found for a transaction another endpoint served \(liar \d+ times\)/,
    );
  });

  /** A night whose one job's transactions two endpoints, named `names`, serve differently. */
  async function disagreeingNight(names: readonly [string, string]) {
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 0 });
    const from = Date.now() - 60_000;
    recordHonest(store, "a", chain);
    const honest = poolOf(chain);
    // Serves every transaction with a fee of one lamport more: another digest of the facts.
    const forger = {
      ...honest,
      async getTransaction(signature: string, options?: unknown) {
        const served = await honest.getTransaction(signature, options as never);
        return served && { ...served, facts: { ...served.facts, fee: served.facts.fee + 1n } };
      },
    } as unknown as RpcPool;
    const rpc = createQuorumRpc({
      members: [
        { name: names[0], rpc: honest },
        { name: names[1], rpc: forger },
      ],
      quorum: 2,
    });
    return runNightlyVerification(store, quickVerifier(store, rpc, log), {
      from,
      to: Date.now() + 1_000,
      timeoutMs: 1_500,
      rpcQuorum: rpc,
    });
  }

  it("names the endpoints that disagree on the transactions of jobs in rpc_disagreement", async () => {
    const night = await disagreeingNight(["honest", "forger"]);
    expect(night.exitCode).toBe(2);
    expect(night.reason).toMatch(
      /1 jobs in rpc_disagreement: the RPC endpoints disagree on their transactions \(disagreeing this run: honest \d+ times, forger \d+ times; tx inspect SIGNATURE --quorum k\)/,
    );
  });

  it("names them without the API keys of their URLs, a scheme written in capitals too", async () => {
    // As `rpcFromConfig` names the members of SOLANA_RPC_URLS, which takes `HTTPS://` as given.
    const night = await disagreeingNight(
      endpointNames([
        "HTTPS://user:PASSWORD@honest.example.com/?api-key=SECRET1",
        "Https://forger.example.com/v2/SECRET2",
      ]) as [string, string],
    );
    expect(night.reason).toMatch(
      /disagreeing this run: HTTPS:\/\/honest\.example\.com\/ \d+ times, Https:\/\/forger\.example\.com\/… \d+ times;/,
    );
    expect(night.reason).not.toMatch(/SECRET|PASSWORD|user/);
  });
});
