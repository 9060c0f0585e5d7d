import { describe, expect, it } from "vitest";
import { createQuorumRpc } from "../src/chain/quorum.js";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { createVerifier } from "../src/verify/engine.js";
import { finalizedNow } from "./support/finality.js";
import { vaultReader } from "./support/ledger-periods.js";
import { useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

const log = createLogger({ level: "silent" });

const h = useAdversaryHarness();

/**
 * The operator's endpoint: it leaves the signatures in `hide` out of every listing, answers
 * "not found" for their transactions and statuses, and adds `offset` to the vault's balance.
 */
function operatorEndpoint(hide: Set<string>, vault: string, offset: bigint): RpcPool {
  return {
    ...h.rpc,
    async getSignaturesForAddress(address, options) {
      const page = await h.rpc.getSignaturesForAddress(address, options);
      return page.filter((e) => !hide.has(e.signature));
    },
    async getTransaction(signature, commitment, options) {
      if (hide.has(signature)) return null;
      return h.rpc.getTransaction(signature, commitment, options);
    },
    async getSignatureStatuses(signatures, options) {
      const statuses = await h.rpc.getSignatureStatuses(signatures, options);
      return statuses.map((s, i) => (hide.has(signatures[i]!) ? null : s));
    },
    async getTokenAccount(address) {
      const r = await h.rpc.getTokenAccount(address);
      if (address !== vault || hide.size === 0 || r.account?.amount == null) return r;
      return { ...r, account: { ...r.account, amount: r.account.amount + offset } };
    },
    async close() {},
  };
}

const down = {
  getSignaturesForAddress: async () => Promise.reject(new Error("503")),
  getTransaction: async () => Promise.reject(new Error("503")),
  getSignatureStatuses: async () => Promise.reject(new Error("503")),
  getTokenAccount: async () => Promise.reject(new Error("503")),
  getSlot: async () => Promise.reject(new Error("503")),
  getBlockHeight: async () => Promise.reject(new Error("503")),
  getBlockTime: async () => Promise.reject(new Error("503")),
  requestRate: () => 1,
  stats: () => [],
  close: async () => {},
} as unknown as RpcPool;

describe("a nightly run under RPC_QUORUM=2 when the operator's endpoint hides the vault's newest debit", () => {
  for (const [keyIndex, variant] of [
    [0, "2 of 2"],
    [1, "2 of 3, the third down"],
  ] as const) {
    it(`never passes, and the run after the endpoint tells the truth reports it (${variant})`, async () => {
      // Left out of the listing and "not found" by the operator's endpoint, the debit was taken
      // for one the honest node had and the other not yet: the night's run passed (exit 0),
      // and the next one read it dated before the vault's judged mark and passed too.
      const vault = h.op.vault(keyIndex);
      const c = await h.scenario();
      const from = Date.now() - 5_000;
      await c.pinKey(keyIndex);
      const stolen = 250_000n;
      const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), stolen)]).signature;
      const hide = new Set([theft]);
      const rpc = createQuorumRpc({
        members: [
          { name: "operator", rpc: operatorEndpoint(hide, vault, stolen) },
          { name: "honest", rpc: { ...h.rpc, async close() {} } },
          ...(keyIndex === 1 ? [{ name: "down", rpc: down }] : []),
        ],
        quorum: 2,
      });
      const verifier = createVerifier({
        store: c.store,
        rpc,
        profile: c.profile,
        log,
        options: quickVerifierOptions,
      });
      const reader = vaultReader(h, c, vault, rpc);
      const night = async (window: { from: number; to: number }) =>
        runNightlyVerification(c.store, verifier, {
          ...window,
          timeoutMs: 5_000,
          ledger: ledgerWindowCheck({
            store: c.store,
            reader,
            profile: c.profile,
            graceSeconds: 0,
          }),
        });
      const to = await finalizedNow(h.world);
      const first = await night({ from, to });
      expect(first.exitCode).not.toBe(0);
      expect(first.ledger?.unreceiptedDebits ?? []).toEqual([]);

      hide.clear();
      const second = await night({ from: to, to: await finalizedNow(h.world) });
      expect(second.exitCode).toBe(1);
      expect(second.ledger?.unreceiptedDebits).toEqual([
        expect.objectContaining({ signature: theft, amountUnits: (-stolen).toString() }),
      ]);
    });
  }
});
