import { describe, expect, it } from "vitest";
import { createQuorumRpc } from "../src/chain/quorum.js";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { createVerifier } from "../src/verify/engine.js";
import { chainSecondAfter } from "./support/finality.js";
import { vaultReader } from "./support/ledger-periods.js";
import { useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

/**
 * Under RPC_QUORUM=2 the listing is the union of what the endpoints list: a theft both indexes
 * left out between two read jobs is a gap; once one of them lists it, the gap's signatures
 * listed again (through the same quorum) name it.
 */
const log = createLogger({ level: "silent" });
const stolen = 55_000n;

const h = useAdversaryHarness();

/** `rpc` whose listing leaves out `hidden`. */
function laggingNode(rpc: RpcPool, hidden: Set<string>): RpcPool {
  return {
    ...rpc,
    async getSignaturesForAddress(address, options) {
      const page = await rpc.getSignaturesForAddress(address, options);
      return page.filter((e) => !hidden.has(e.signature));
    },
    async close() {},
  };
}

describe("a gap listed again under RPC_QUORUM=2", () => {
  it("names the theft once one endpoint's index lists it", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(0);
    const from = await chainSecondAfter(h.world);
    const plan = h.op.plan({ keyIndex: 0 });
    c.record(plan, h.op.honestJob(plan));
    const theft = h.op.send([
      h.op.transfer(vault, h.op.attackerAccount(0n), stolen),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    const next = h.op.plan({ keyIndex: 0 });
    c.record(next, h.op.honestJob(next));
    await h.finalized();
    const to = Date.now();
    const lagging = new Set([theft]);
    const rpc = createQuorumRpc({
      members: [
        { name: "lagging", rpc: laggingNode(h.rpc, lagging) },
        { name: "hiding", rpc: laggingNode(h.rpc, new Set([theft])) },
      ],
      quorum: 2,
    });
    const nightly = () =>
      runNightlyVerification(
        c.store,
        createVerifier({
          store: c.store,
          rpc: h.rpc,
          profile: c.profile,
          log,
          options: quickVerifierOptions,
        }),
        {
          from,
          to,
          timeoutMs: 10_000,
          ledger: ledgerWindowCheck({
            store: c.store,
            reader: vaultReader(h, c, vault, rpc),
            profile: c.profile,
            graceSeconds: 0,
          }),
        },
      );
    const first = await nightly();
    expect(first.exitCode).toBe(1);
    expect(first.ledger?.gaps).toEqual([
      expect.objectContaining({ vault, missingUnits: String(-stolen) }),
    ]);
    lagging.clear();
    const second = await nightly();
    expect(second.exitCode).toBe(1);
    expect(second.ledger?.gaps).toEqual([]);
    expect(second.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ vault, signature: theft, amountUnits: String(-stolen) }),
    ]);
  });
});
