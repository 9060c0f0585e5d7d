import { describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { buildStatement } from "../src/ledger/statement.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { vaultReader } from "./support/ledger-periods.js";
import { useAdversaryHarness } from "./support/operator.js";
import { type Listing, listingNode, rewritingNode } from "./support/rewriting-node.js";

/**
 * The operator runs the node the ledger reads, and lists another vault's real transaction
 * among the vault's new signatures, at its own slot. It must not become a line of the vault's:
 * the listing is taken as wrong (the sync fails, naming it, and nothing of it is stored), and
 * an honest listing next round reads every line.
 */
describe("a new listing naming another account's transaction", () => {
  const h = useAdversaryHarness();

  it("inserts none of it, and an honest listing then reads every line", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(1);
    await c.pinKey(2);
    const mine = h.op.plan({ keyIndex: 1 });
    const mineTxs = h.op.honestJob(mine);
    c.record(mine, mineTxs);
    h.op.nextSlot();
    const other = h.op.plan({ keyIndex: 2 });
    const otherTxs = h.op.honestJob(other);
    c.record(other, otherTxs);
    h.op.nextSlot();
    const next = h.op.plan({ keyIndex: 1 });
    const nextTxs = h.op.honestJob(next);
    c.record(next, nextTxs);
    await h.finalized();
    const [foreign] = (await h.rpc.getSignaturesForAddress(h.op.vault(2), { limit: 10 })).filter(
      (e) => e.signature === otherTxs.settlementTx,
    );
    expect(foreign).toBeDefined();
    const listing: { rewrite: Listing | null } = {
      rewrite: (entries, options) => {
        if (options?.before || foreign === undefined) return entries;
        const at = entries.findIndex((e) => e.slot < foreign.slot);
        return [...entries.slice(0, at), foreign, ...entries.slice(at)];
      },
    };
    const reader = vaultReader(h, c, vault, listingNode(h.rpc, listing));
    const ledger = createLedgerStore(c.store);
    const failed = await reader.syncVault(vault).then(
      () => null,
      (error: unknown) => String(error),
    );
    expect((await ledger.heldLines(vault, [otherTxs.settlementTx])).size).toBe(0);
    expect(failed).toContain(`${otherTxs.settlementTx}'s transaction does not name the vault`);
    const honest = (await h.rpc.getSignaturesForAddress(vault, { limit: 100 })).map(
      (e) => e.signature,
    );
    expect((await ledger.heldLines(vault, honest)).size).toBe(0);

    listing.rewrite = null;
    const synced = await reader.syncVault(vault);
    expect(synced.pending).toBe(0);
    expect((await ledger.heldLines(vault, honest)).size).toBe(honest.length);
    expect(honest).toContain(nextTxs.settlementTx);
    expect((await ledger.heldLines(vault, [otherTxs.settlementTx])).size).toBe(0);
    expect(await ledger.listedSignatures(vault)).toEqual([]);
  });

  /**
   * The operator's node lists another vault's transaction once, as new, above the vault's
   * lines, dated past a nightly run's window: stored unjudged. The next read fetches it.
   */
  async function listedPastWindow(keyIndex: number, node: (rpc: RpcPool) => RpcPool = (r) => r) {
    const c = await h.scenario();
    const { vault } = await c.pinKey(keyIndex);
    await c.pinKey(2);
    const mine = h.op.plan({ keyIndex });
    c.record(mine, h.op.honestJob(mine));
    h.op.nextSlot();
    const other = h.op.plan({ keyIndex: 2 });
    const otherTxs = h.op.honestJob(other);
    c.record(other, otherTxs);
    await h.finalized();
    const [foreign] = (await h.rpc.getSignaturesForAddress(h.op.vault(2), { limit: 10 })).filter(
      (e) => e.signature === otherTxs.settlementTx,
    );
    expect(foreign?.blockTime).toBeTypeOf("number");
    // Listed once, as new, by the run's listing.
    const listing: { rewrite: Listing | null } = {
      rewrite: (entries) => {
        listing.rewrite = null;
        return foreign ? [foreign, ...entries] : entries;
      },
    };
    const reader = vaultReader(h, c, vault, listingNode(node(h.rpc), listing));
    // A run whose window ends before it: listed, neither judged nor read.
    await reader.syncVault(vault, { readUntil: foreign!.blockTime! * 1000 });
    expect(await createLedgerStore(c.store).listedSignatures(vault)).toContain(
      otherTxs.settlementTx,
    );
    return { c, vault, reader, foreign: foreign!, signature: otherTxs.settlementTx };
  }

  it("sets aside one a nightly run listed past its window once its signed transaction proves it is not the vault's", async () => {
    const { c, vault, reader, foreign, signature } = await listedPastWindow(0);
    const synced = await reader.syncVault(vault);
    expect(synced.pending).toBe(0);
    expect(await createLedgerStore(c.store).listedSignatures(vault)).toEqual([]);
    // Not a line of the vault's money: the statement is complete and says what was set aside.
    const period = { from: (foreign.blockTime! - 1) * 1000, to: Date.now(), vault };
    const [s] = (await buildStatement(c.store, period, { profile: c.profile, graceSeconds: 0 }))
      .vaults;
    expect(s?.unread).toBeNull();
    expect(s?.setAside).toEqual([
      expect.objectContaining({
        signature,
        why: expect.stringContaining("none of them the vault"),
      }),
    ]);
    expect(s?.unexplainedOutUnits).toBe(0n);
  });

  it("keeps it unread when the node serves a transaction its signature does not sign", async () => {
    // The node serves the listed signature with the fee payer's key put where the vault's was:
    // a message no one signed, naming no account of the vault's.
    let vaultOf = "";
    const { c, vault, reader, signature } = await listedPastWindow(3, (rpc) =>
      rewritingNode<{ transaction: { message: { accountKeys: string[] } } }>(rpc, () => (r) => {
        const keys = r.transaction.message.accountKeys;
        const at = keys.indexOf(vaultOf);
        if (at >= 0) keys[at] = h.op.vault(1);
      }),
    );
    vaultOf = h.op.vault(2);
    const synced = await reader.syncVault(vault);
    expect(synced.pending).toBe(1);
    expect(await createLedgerStore(c.store).listedSignatures(vault)).toEqual([signature]);
  });
});
