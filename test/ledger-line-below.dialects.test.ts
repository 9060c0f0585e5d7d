import { describe, expect, it } from "vitest";
import { createLedgerStore } from "../src/store/ledger.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { vaultReader } from "./support/ledger-periods.js";
import { useAdversaryHarness } from "./support/operator.js";

/** The line below a held one, by which the listing of held history goes on past a page it holds none of. */
describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  it("gives the vault's line just below a held one, none below the oldest or an unheld one", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(0);
    const plan = h.op.plan({ keyIndex: 0 });
    c.record(plan, h.op.honestJob(plan));
    await h.finalized();
    await vaultReader(h, c, vault).syncVault(vault);
    const history = (await h.rpc.getSignaturesForAddress(vault, { limit: 100 })).map(
      (e) => e.signature,
    );
    expect(history.length).toBeGreaterThan(2);
    const ledger = createLedgerStore(c.store);
    expect(await ledger.lineBelow(vault, history[0]!)).toBe(history[1]);
    expect(await ledger.lineBelow(vault, history[1]!)).toBe(history[2]);
    expect(await ledger.lineBelow(vault, history.at(-1)!)).toBeNull();
    expect(await ledger.lineBelow(vault, plan.jobId)).toBeNull();
    expect(await ledger.lineBelow(h.op.vault(1), history[0]!)).toBeNull();
    // Whether a line is among those just below another, as far as a page of `n` reaches.
    expect(await ledger.heldWithinBelow(vault, history[0]!, history[2]!, 2)).toBe(true);
    expect(await ledger.heldWithinBelow(vault, history[0]!, history[2]!, 1)).toBe(false);
    expect(await ledger.heldWithinBelow(vault, history[1]!, history[0]!, 100)).toBe(false);
    expect(await ledger.heldWithinBelow(vault, history[1]!, history[1]!, 100)).toBe(false);
    expect(await ledger.heldWithinBelow(h.op.vault(1), history[0]!, history[1]!, 100)).toBe(false);
  });
});
