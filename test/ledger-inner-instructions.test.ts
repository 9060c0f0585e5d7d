import { describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { buildStatement } from "../src/ledger/statement.js";
import { localKeyNames, localSigner } from "../src/localnet/keys.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { chainSecondAfter } from "./support/finality.js";
import { vaultReader } from "./support/ledger-periods.js";
import { useAdversaryHarness } from "./support/operator.js";
import { rewritingNode } from "./support/rewriting-node.js";

/**
 * A node that answers getTransaction without inner instructions hides what a program's call
 * into the token program moved: a payout of the vault's money inside a top-up. The ledger
 * must not read such a line as whole.
 */

const h = useAdversaryHarness();

/** `rpc`, its getTransaction answers stripped of `meta.innerInstructions`. */
function withoutInner(rpc: RpcPool): RpcPool {
  return rewritingNode(rpc, () => (result: { meta: { innerInstructions: unknown } }) => {
    result.meta.innerInstructions = null;
  });
}

describe("a top-up served without its inner instructions", () => {
  it("stays listed, unread, its statement not complete, until an answer with them reads it", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(3);
    const from = await chainSecondAfter(h.world);
    const user = localSigner(localKeyNames.user(3));
    const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
    // A top-up whose transaction also calls a program that calls the token program: what that
    // call moved shows only in the inner instructions.
    const topUp = h.op.send(
      [h.op.newOwnerAtaIx(), h.op.transfer(wallet, vault, 1_000_000n, { authority: user.address })],
      { extraSigners: [user] },
    ).signature;
    await h.finalized();

    const statementNow = async (rpc: RpcPool) => {
      const reader = vaultReader(h, c, vault, rpc);
      const sync = await reader.syncVault(vault);
      const statement = await buildStatement(
        c.store,
        { from, to: Date.now() + 1_000, vault },
        { profile: c.profile, graceSeconds: 0 },
      );
      return { sync, s: statement.vaults[0]! };
    };

    const stripped = await statementNow(withoutInner(h.rpc));
    // Read as whole, it was a deposit of 1,000,000 in a complete statement: a payout inside
    // the call would have gone unseen.
    expect(stripped.sync.pending).toBeGreaterThanOrEqual(1);
    expect(stripped.s.complete).toBe(false);
    expect(stripped.s.depositsUnits).toBe(0n);
    expect(stripped.s.counts.pending).toBe(1);
    expect(stripped.s.unread).toEqual({
      lines: 1,
      why: `line ${topUp} not read: its transaction was served without inner instructions`,
    });
    expect(await createLedgerStore(c.store).storedTransaction(topUp)).toBeUndefined();
    // Asked again: still not read.
    const again = await statementNow(withoutInner(h.rpc));
    expect(again.s.complete).toBe(false);
    expect(again.s.counts.pending).toBe(1);

    const honest = await statementNow(h.rpc);
    expect(honest.s.depositsUnits).toBe(1_000_000n);
    expect(honest.s.counts.pending).toBe(0);
    expect(honest.s.unread).toBeNull();
    expect(honest.s.unexplained).toEqual([]);
  });
});
