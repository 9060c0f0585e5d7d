import { describe, expect, it } from "vitest";
import { AppError } from "../src/errors.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { chainSecondAfter } from "./support/finality.js";
import { nightlyAfter } from "./support/nightly-window.js";
import { useAdversaryHarness } from "./support/operator.js";
import { type Listing, listingNode } from "./support/rewriting-node.js";

/**
 * A credit vault's listing fails in a nightly run (a pruned node's "not available", a page of
 * HTML, a cursor that loops): the run cannot finish (exit 2), and its reason says what the RPC
 * answered. It said only how far the vault was read ("read through ..."): the error was in the
 * log of the run alone, and on-call looked at the chain's finality or the run's timeout.
 */
describe.each(dialects)("%s store: a nightly run whose vault listing fails", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  it("exits 2 naming the listing's error", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(0);
    const from = await chainSecondAfter(h.world, 200);
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    await c.flush();
    const pruned = "RPC error -32009: Slot 5 was skipped, or missing in long-term storage";
    const listing: { rewrite: Listing | null } = {
      rewrite: (entries, _options, address) => {
        if (address !== vault) return entries;
        throw new AppError("rpc_unavailable", `getSignaturesForAddress: ${pruned}`);
      },
    };
    const to = Math.ceil((h.op.now() + 1) / 1000) * 1000;
    const run = await nightlyAfter(h, c, {
      vaults: [vault],
      from,
      to,
      rpc: listingNode(h.rpc, listing),
    });
    expect(run).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    expect(run.reason).toContain(`${vault}, read through`);
    expect(run.reason).toContain(`last error: getSignaturesForAddress: ${pruned}`);
  });
});
