import { describe, expect, it } from "vitest";
import { createSignatureStore } from "../src/store/signatures.js";
import { clockPause } from "./support/chain-clock.js";
import { nightlyOnChain, periodEdge, vaultReader } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness, verified } from "./support/operator.js";
import { rewritingNode, storeServedWithoutTokenBalances } from "./support/rewriting-node.js";
import { updateSignature } from "./support/seed-queue.js";

const h = useAdversaryHarness();

/** The chain's clock, which the periods and the nightly runs' finality pauses move on. */
const now = () => h.op.now();

/** Nightly runs of scenario `c` through `reader`, on the chain's clock: no pause waited. */
const nightlyOn = (c: Scenario, reader: Parameters<typeof nightlyOnChain>[2]) =>
  nightlyOnChain(h, c, reader, now, clockPause(h));

// `meta.preTokenBalances`/`postTokenBalances` are optional in the RPC's JSON. A node leaving
// them out of a deposit's answer made it read as no money in: the vault's balance then stood
// above its lines, a finding of the operator's on the node's omission.
describe("an honest deposit a node serves with no token balances", () => {
  it("leaves the vault's history unread there (incomplete), not a finding, until an answer has them", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { vault } = await c.pinKey(0);
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 0 });
    c.record(plan, h.op.honestJob(plan));
    const donor = h.op.victimVault(100_000n);
    const deposit = h.op.send([h.op.transfer(donor, vault, 40_000n)]).signature;
    await h.finalized();
    const to = h.op.now();
    const omitting = { on: true };
    const rpc = rewritingNode(h.rpc, (signature) =>
      signature !== deposit || !omitting.on
        ? undefined
        : (result: { meta: Record<string, unknown> }) => {
            delete result.meta.preTokenBalances;
            delete result.meta.postTokenBalances;
          },
    );
    const { nightly } = nightlyOn(c, vaultReader(h, c, vault, rpc, { now }));
    const first = await nightly({ from, to });
    expect(first).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    expect(first.ledger?.incomplete).toContain(vault);
    omitting.on = false;
    const second = await nightly({ from, to });
    expect(second).toMatchObject({ outcome: "verified", exitCode: 0 });
  });

  it("stored from such an answer before it was unreadable, is fetched again, the reading not stopped", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { vault } = await c.pinKey(1);
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 1 });
    c.record(plan, h.op.honestJob(plan));
    const donor = h.op.victimVault(100_000n);
    const deposit = h.op.send([h.op.transfer(donor, vault, 40_000n)]).signature;
    await h.finalized();
    // The deposit as a version that read such an answer stored it: no balance moved.
    await storeServedWithoutTokenBalances(c.store, h.rpc, deposit);
    const { nightly } = nightlyOn(c, vaultReader(h, c, vault, h.rpc, { now }));
    // Its raw answer, read again, threw at every round: the vault was never read past it.
    expect(await nightly({ from, to: h.op.now() })).toMatchObject({
      outcome: "verified",
      exitCode: 0,
    });
  });
});

describe("a job's answers an older version stored without token balances", () => {
  it("are read again from the chain for the vault's lines, not a ledger run that fails on them", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { vault } = await c.pinKey(2);
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 2 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    await h.finalized();
    const to = h.op.now();
    // As an older version stored them: the node's answers without token balances, and facts
    // without the accounts each transaction opened, so the answers are read again.
    const rows = await createSignatureStore(c.store).load([txs.escrowTx, txs.settlementTx]);
    for (const row of rows.values()) {
      const facts = row.facts as { openedTokenAccounts?: string[] };
      delete facts.openedTokenAccounts;
      const raw = JSON.parse(row.raw as string) as { meta: Record<string, unknown> };
      delete raw.meta.preTokenBalances;
      delete raw.meta.postTokenBalances;
      await updateSignature(c.store, row.signature, { facts, raw: JSON.stringify(raw) });
    }
    const { nightly } = nightlyOn(c, vaultReader(h, c, vault, h.rpc, { now }));
    expect(await nightly({ from, to })).toMatchObject({ outcome: "verified", exitCode: 0 });
  });
});
