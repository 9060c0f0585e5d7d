import { createHash } from "node:crypto";
import bs58 from "bs58";
import { describe, expect, it } from "vitest";
import type { AddressSignatureInfo, RpcPool } from "../src/chain/rpc-pool.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { vaultReader } from "./support/ledger-periods.js";
import { useAdversaryHarness } from "./support/operator.js";
import { type Listing, listingNode } from "./support/rewriting-node.js";

/**
 * The operator runs the node the ledger reads. Each sync lists a page of the vault's held
 * history again, and the node fills it with entries that are no transaction of the vault's,
 * each at a slot between the held lines around it: made-up signatures, or another account's
 * transactions. They must not become lines of the vault's, and must not cost a getTransaction
 * each: a node listing a thousand of them every sync made each sync (and each nightly run) ask
 * a thousand times, every endpoint of the pool once for each.
 */
const MADE_UP = 200;

describe("a listing of held history that is not the vault's", () => {
  const h = useAdversaryHarness();

  it("stops at the first one not served, and inserts none", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(0);
    for (let i = 0; i < 2; i++) {
      const plan = h.op.plan({ keyIndex: 0 });
      c.record(plan, h.op.honestJob(plan));
      h.op.nextSlot();
    }
    await h.finalized();
    const listing: { rewrite: Listing | null } = { rewrite: null };
    const asked: string[] = [];
    const listed = listingNode(h.rpc, listing);
    const node = new Proxy(listed, {
      get(target, key, receiver) {
        if (key !== "getTransaction") return Reflect.get(target, key, receiver);
        return (...args: Parameters<RpcPool["getTransaction"]>) => {
          asked.push(args[0]);
          return target.getTransaction(...args);
        };
      },
    });
    const reader = vaultReader(h, c, vault, node);
    await reader.syncVault(vault);
    const madeUp: string[] = [];
    listing.rewrite = (entries, options) => {
      const first = entries[0];
      // Only the listing of held history (below the newest line) is rewritten.
      if (!options?.before || first === undefined) return entries;
      const fakes: AddressSignatureInfo[] = Array.from({ length: MADE_UP }, (_, i) => ({
        ...first,
        signature: bs58.encode(createHash("sha512").update(`${vault}:${i}`).digest()),
      }));
      madeUp.push(...fakes.map((f) => f.signature));
      return [...fakes, ...entries];
    };
    await reader.syncVault(vault);
    expect(madeUp.length).toBe(MADE_UP);
    const madeUpAsked = asked.filter((s) => madeUp.includes(s));
    expect(madeUpAsked.length).toBeGreaterThan(0);
    expect(madeUpAsked.length).toBeLessThanOrEqual(8);
    expect((await createLedgerStore(c.store).heldLines(vault, madeUp)).size).toBe(0);
  });

  it("keeps another vault's transaction listed between two held lines out of its lines", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(1);
    await c.pinKey(2);
    const mine = h.op.plan({ keyIndex: 1 });
    c.record(mine, h.op.honestJob(mine));
    h.op.nextSlot();
    const other = h.op.plan({ keyIndex: 2 });
    const otherTxs = h.op.honestJob(other);
    c.record(other, otherTxs);
    h.op.nextSlot();
    const next = h.op.plan({ keyIndex: 1 });
    c.record(next, h.op.honestJob(next));
    await h.finalized();
    const listing: { rewrite: Listing | null } = { rewrite: null };
    const node = listingNode(h.rpc, listing);
    const reader = vaultReader(h, c, vault, node);
    await reader.syncVault(vault);
    const [foreign] = (await h.rpc.getSignaturesForAddress(h.op.vault(2), { limit: 10 })).filter(
      (e) => e.signature === otherTxs.settlementTx,
    );
    expect(foreign).toBeDefined();
    listing.rewrite = (entries, options) => {
      if (!options?.before || foreign === undefined) return entries;
      const at = entries.findIndex((e) => e.slot < foreign.slot);
      return [...entries.slice(0, at), foreign, ...entries.slice(at)];
    };
    await reader.syncVault(vault);
    const held = await createLedgerStore(c.store).heldLines(vault, [otherTxs.settlementTx]);
    expect(held.size).toBe(0);
  });
});
