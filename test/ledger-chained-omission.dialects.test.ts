import { describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { SETTLEMENT_CLOCK_SLACK_SECONDS } from "../src/store/ledger-rules.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import {
  finalizedThrough,
  nightlyOnChain,
  periodEdge,
  vaultReader,
} from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * A node the ledger reads leaves a top-up and a theft of the same amount out of its listing:
 * the vault's balances chain across the two, so no gap shows, and the node's run cannot see
 * them (RPC_QUORUM is the answer to a node that keeps lying). Once the nodes list them, the
 * next nightly run must name the theft: exit 1, never a second clean night.
 */
const stolen = 55_000n;

/** `rpc` whose listing leaves out `hidden` (while it holds any), its pages full all the same. */
function hidingNode(rpc: RpcPool, hidden: Set<string>): RpcPool {
  return new Proxy(rpc, {
    get(target, key, receiver) {
      if (key !== "getSignaturesForAddress") return Reflect.get(target, key, receiver);
      return async (address: string, options?: { limit?: number; before?: string }) => {
        const limit = options?.limit ?? 1000;
        const asked = { ...options, limit: Math.min(limit + hidden.size, 1000) };
        const page = await target.getSignaturesForAddress(address, asked);
        return page.filter((e) => !hidden.has(e.signature)).slice(0, limit);
      };
    },
  });
}

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** The chain's clock, which the cases move on to a window's edge instead of waiting for it. */
  const now = () => h.op.now();

  /**
   * A nightly run in a process of its own, on the chain's clock: a new reader, listing pages of
   * `pageSize`.
   */
  function nightly(
    c: Scenario,
    vault: string,
    rpc: RpcPool,
    from: number,
    to: number,
    pageSize = 1000,
  ) {
    const reader = vaultReader(h, c, vault, rpc, { options: { pageSize }, now });
    return nightlyOnChain(h, c, reader, now).nightly({ from, to });
  }

  /**
   * Key `keyIndex`'s vault, read once; then an honest job, a top-up, a theft of as much, and
   * `jobsAfter` honest jobs; returned once the chain has finalized past the window's end and
   * the 2 s after it the run reads, as for a nightly run after its window: each run reads the
   * vault once. A run that came while the chain finalized the window's last second read it again
   * every pause, a page of held history listed again at each read, so which run reached a page
   * depended on how far the chain's clock ran ahead of the machine's. The chain's clock is moved
   * on to the window's edges and past those seconds, not waited for; the receipts keep it.
   */
  async function chainedTheft(keyIndex: number, jobsAfter = 1) {
    const c = (await h.scenario()).recordOnChainClock();
    const { vault } = await c.pinKey(keyIndex);
    await vaultReader(h, c, vault, h.rpc, { now }).syncVault(vault);
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex });
    c.record(plan, h.op.honestJob(plan));
    h.op.nextSlot();
    const donor = h.op.victimVault(100_000n);
    const topUp = h.op.send([h.op.transfer(donor, vault, stolen)]).signature;
    h.op.nextSlot();
    const thief = h.op.attackerAccount(0n);
    const theft = h.op.send([h.op.transfer(vault, thief, stolen)]).signature;
    for (let i = 0; i < jobsAfter; i++) {
      h.op.nextSlot();
      const next = h.op.plan({ keyIndex });
      c.record(next, h.op.honestJob(next));
    }
    const to = periodEdge(h);
    // A run reads the lines of the 2 s after its window's end too, for its last jobs' credits
    // headers: the chain finalized past them, it reads the vault once.
    await finalizedThrough(h, to + SETTLEMENT_CLOCK_SLACK_SECONDS * 1000);
    return { c, vault, from, to, topUp, theft };
  }

  it("names the theft in the next nightly run once the node lists it", async () => {
    const { c, vault, from, to, topUp, theft } = await chainedTheft(0);
    const hidden = new Set([topUp, theft]);
    const rpc = hidingNode(h.rpc, hidden);
    const first = await nightly(c, vault, rpc, from, to);
    expect(first.ledger?.gaps).toEqual([]);
    expect(first.exitCode).toBe(0);
    hidden.clear();
    const second = await nightly(c, vault, rpc, from, to);
    expect(second.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ vault, signature: theft, amountUnits: String(-stolen) }),
    ]);
    expect(second.ledger?.imbalanced).toEqual([]);
    expect(second.exitCode).toBe(1);
  });

  it("names it in the same run when the pool's next endpoint lists it", async () => {
    const { c, vault, from, to, topUp, theft } = await chainedTheft(1);
    // The pool answers each listing from its next endpoint: the first leaves both out.
    let calls = 0;
    const rotating = new Proxy(h.rpc, {
      get(target, key, receiver) {
        if (key !== "getSignaturesForAddress") return Reflect.get(target, key, receiver);
        return async (...args: Parameters<RpcPool["getSignaturesForAddress"]>) => {
          const page = await target.getSignaturesForAddress(...args);
          if (calls++ % 2 === 1) return page;
          return page.filter((e) => e.signature !== topUp && e.signature !== theft);
        };
      },
    });
    const run = await nightly(c, vault, rotating, from, to);
    expect(run.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ vault, signature: theft, amountUnits: String(-stolen) }),
    ]);
    expect(run.exitCode).toBe(1);
  });

  it("names a theft a page below the newest by the second nightly run, each run its own process", async () => {
    // Pages of 3 lines and 2 honest jobs after the theft: the two hidden lie a page below the
    // newest, where a run that lists the newest page again alone never looks. The first run
    // lists the newest page of held history again; the second goes on a page below it.
    const { c, vault, from, to, topUp, theft } = await chainedTheft(2, 2);
    const hidden = new Set([topUp, theft]);
    const rpc = hidingNode(h.rpc, hidden);
    const first = await nightly(c, vault, rpc, from, to, 3);
    expect(first.ledger?.unreceiptedDebits).toEqual([]);
    expect(first.exitCode).toBe(0);
    hidden.clear();
    const second = await nightly(c, vault, rpc, from, to, 3);
    expect(second.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ vault, signature: theft, amountUnits: String(-stolen) }),
    ]);
    expect(second.ledger?.creditsHeaderMismatches).toEqual([]);
    expect(second.exitCode).toBe(1);
  });
});
