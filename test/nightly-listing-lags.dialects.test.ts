import { describe, expect, it } from "vitest";
import { dialects, useDialectStores } from "./support/dialects.js";
import { chainSecondAfter } from "./support/finality.js";
import { nightlyAfter } from "./support/nightly-window.js";
import { useAdversaryHarness } from "./support/operator.js";
import { type Listing, listingNode } from "./support/rewriting-node.js";

/**
 * A node whose address index lags behind its finalized slot: it proves the chain final past
 * the window's end, but lists a credit vault without its newest transactions. The credits
 * header of a job recorded before the run then stays unjudged, and the run cannot finish
 * (exit 2). Its reason said the job was "recorded while the run went on, after its read of
 * the credit vault": on-call looked for an import during the night's run, not at the node.
 */
describe.each(dialects)("%s store: a nightly run over a node whose listing lags", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  it("names the listing, not a recording during the run, for a header left unjudged", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(3);
    const from = await chainSecondAfter(h.world, 200);
    const plan = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    await c.flush();
    const left = new Set([txs.escrowTx, txs.settlementTx]);
    const listing: { rewrite: Listing | null } = {
      rewrite: (entries, _options, address) =>
        address === vault ? entries.filter((e) => !left.has(e.signature)) : entries,
    };
    const to = Math.ceil((h.op.now() + 1) / 1000) * 1000;
    const run = await nightlyAfter(h, c, {
      vaults: [vault],
      from,
      to,
      timeoutMs: 8_000,
      rpc: listingNode(h.rpc, listing),
    });
    expect(run.exitCode).toBe(2);
    expect(run.reason).toContain(plan.jobId);
    expect(run.reason).not.toMatch(/recorded while the run went on/);
    expect(run.reason).toMatch(/recorded before the run began/);
  });
});
