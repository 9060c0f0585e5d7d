import { describe, expect, it } from "vitest";
import { chainSecondAfter } from "./support/finality.js";
import { nightlyOnChain, vaultReader } from "./support/ledger-periods.js";
import { useAdversaryHarness } from "./support/operator.js";
import { rewritingNode, storeServedWithoutTokenBalances } from "./support/rewriting-node.js";

const h = useAdversaryHarness();

// `meta.preTokenBalances`/`postTokenBalances` are optional in the RPC's JSON. A node leaving
// them out of a deposit's answer made it read as no money in: the vault's balance then stood
// above its lines, a finding of the operator's on the node's omission.
describe("an honest deposit a node serves with no token balances", () => {
  it("leaves the vault's history unread there (incomplete), not a finding, until an answer has them", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(0);
    const from = await chainSecondAfter(h.world);
    const plan = h.op.plan({ keyIndex: 0 });
    c.record(plan, h.op.honestJob(plan));
    const donor = h.op.victimVault(100_000n);
    const deposit = h.op.send([h.op.transfer(donor, vault, 40_000n)]).signature;
    await h.finalized();
    const to = Date.now();
    const omitting = { on: true };
    const rpc = rewritingNode(h.rpc, (signature) =>
      signature !== deposit || !omitting.on
        ? undefined
        : (result: { meta: Record<string, unknown> }) => {
            delete result.meta.preTokenBalances;
            delete result.meta.postTokenBalances;
          },
    );
    const { nightly } = nightlyOnChain(h, c, vaultReader(h, c, vault, rpc));
    const first = await nightly({ from, to });
    expect(first).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    expect(first.ledger?.incomplete).toContain(vault);
    omitting.on = false;
    const second = await nightly({ from, to });
    expect(second).toMatchObject({ outcome: "verified", exitCode: 0 });
  });

  it("stored from such an answer before it was unreadable, is fetched again, the reading not stopped", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(1);
    const from = await chainSecondAfter(h.world);
    const plan = h.op.plan({ keyIndex: 1 });
    c.record(plan, h.op.honestJob(plan));
    const donor = h.op.victimVault(100_000n);
    const deposit = h.op.send([h.op.transfer(donor, vault, 40_000n)]).signature;
    await h.finalized();
    // The deposit as a version that read such an answer stored it: no balance moved.
    await storeServedWithoutTokenBalances(c.store, h.rpc, deposit);
    const { nightly } = nightlyOnChain(h, c, vaultReader(h, c, vault, h.rpc));
    // Its raw answer, read again, threw at every round: the vault was never read past it.
    expect(await nightly({ from, to: Date.now() })).toMatchObject({
      outcome: "verified",
      exitCode: 0,
    });
  });
});
