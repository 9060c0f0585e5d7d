import { describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { chainSecondAfter, finalizedPast } from "./support/finality.js";
import { nightlyOnChain, vaultReader } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";
import { type Listing, listingNode } from "./support/rewriting-node.js";

/**
 * The node the ledger reads leaves one entry out of a full getSignaturesForAddress page once,
 * then answers honestly: the page, shorter than the limit, ended the sync's listing there, and
 * the gaps below it showed only once the lines were read. The nightly run reading them must
 * list the gaps again before it judges the window: exit 0 with the money all there, and a
 * theft hidden the same way named in the same run.
 */
const stolen = 55_000n;
/** Listing pages of 3, so a few movements fill one. */
const pageSize = 3;

const h = useAdversaryHarness();

/** The next sync's first full page served without its second entry, once. */
function cutOnce(listing: { rewrite: Listing | null }, dropped: string[]) {
  listing.rewrite = (entries, options) => {
    if (options?.before || entries.length < pageSize) return entries;
    listing.rewrite = null;
    dropped.push(entries[1]!.signature);
    return entries.filter((_, i) => i !== 1);
  };
}

/**
 * The nightly run of [from, now) reading the ledger through `rpc`, once the chain has finalized
 * past the window's end: its first read of the vault reads it through (as a run at night does,
 * long after the window), and no second read waiting for finality lists the gaps again.
 */
async function nightly(c: Scenario, vault: string, rpc: RpcPool, from: number) {
  const to = Date.now();
  await finalizedPast(h.world, to);
  const reader = vaultReader(h, c, vault, rpc, { options: { pageSize } });
  return nightlyOnChain(h, c, reader).nightly({ from, to });
}

/** Key `keyIndex`'s vault with one honest job, read by a nightly run through `rpc`. */
async function readOnce(keyIndex: number, rpc: RpcPool) {
  const c = await h.scenario();
  const { vault } = await c.pinKey(keyIndex);
  const from = await chainSecondAfter(h.world);
  const plan = h.op.plan({ keyIndex });
  c.record(plan, h.op.honestJob(plan));
  await h.finalized();
  expect((await nightly(c, vault, rpc, from)).exitCode).toBe(0);
  return { c, vault };
}

describe("a node leaving one entry out of a full listing page once", () => {
  it("heals the gaps its listing cut short in the same run: exit 0, no gap", async () => {
    const listing: { rewrite: Listing | null } = { rewrite: null };
    const rpc = listingNode(h.rpc, listing);
    const { c, vault } = await readOnce(0, rpc);
    const from = await chainSecondAfter(h.world);
    for (let i = 0; i < 2; i++) {
      const plan = h.op.plan({ keyIndex: 0 });
      c.record(plan, h.op.honestJob(plan));
    }
    await h.finalized();
    const dropped: string[] = [];
    cutOnce(listing, dropped);
    const run = await nightly(c, vault, rpc, from);
    expect(dropped).toHaveLength(1);
    expect(run.ledger?.gaps).toEqual([]);
    expect(run.ledger?.imbalanced).toEqual([]);
    expect(run.reason).toBeNull();
    expect(run.exitCode).toBe(0);
  });

  it("names a theft the cut page left out, in the same run", async () => {
    h.op.fund(h.op.vault(1), 1_000_000n);
    const listing: { rewrite: Listing | null } = { rewrite: null };
    const rpc = listingNode(h.rpc, listing);
    const { c, vault } = await readOnce(1, rpc);
    const from = await chainSecondAfter(h.world);
    const plan = h.op.plan({ keyIndex: 1 });
    c.record(plan, h.op.honestJob(plan));
    const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), stolen)]).signature;
    const next = h.op.plan({ keyIndex: 1 });
    c.record(next, h.op.honestJob(next));
    await h.finalized();
    const dropped: string[] = [];
    cutOnce(listing, dropped);
    const run = await nightly(c, vault, rpc, from);
    expect(dropped).toHaveLength(1);
    expect(run.exitCode).toBe(1);
    expect(run.ledger?.gaps).toEqual([]);
    expect(run.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ vault, signature: theft, amountUnits: String(-stolen) }),
    ]);
  });
});
