import { describe, expect, it } from "vitest";
import type { AddressSignatureInfo, RpcPool } from "../src/chain/rpc-pool.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { buildStatement } from "../src/ledger/statement.js";
import { createLogger } from "../src/log.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { type AdversaryHarness, type Scenario, useAdversaryHarness } from "./support/operator.js";
import { type Listing, listingNode } from "./support/rewriting-node.js";

/**
 * A node whose `before` cursor loops: asked for the page below a signature, it answers a page
 * the sync has listed already (it ignores `before`, or serves the signature again). Entries of
 * one slot pass the chain-order check, and the store keeps nothing new of them: the sync asked
 * the same page again and again, for ever in `serve`'s ledger round, and up to the nightly
 * run's `--timeout` (416 calls in 8 s) which then said only "reading the credit vaults'
 * history", the node's fault unnamed.
 */
const log = createLogger({ level: "silent" });

function readerOf(c: Scenario, vault: string, rpc: RpcPool) {
  return createLedgerReader({
    store: c.store,
    rpc,
    profile: c.profile,
    log,
    custody: { vaults: [vault], byKey: {} },
    options: { pageSize: 2 },
  });
}

/** Three jobs of `vault`'s key in one slot: six entries the chain lists at one slot. */
async function jobsInOneSlot(h: AdversaryHarness, c: Scenario) {
  const { vault } = await c.pinKey(0);
  h.op.nextSlot();
  h.op.inOneSlot(() => {
    for (let i = 0; i < 3; i++) {
      const plan = h.op.plan({ keyIndex: 0 });
      c.record(plan, h.op.honestJob(plan));
    }
  });
  await h.finalized();
  return vault;
}

/** How a sync of `vault` ended within 5 s: "synced", its error's message, or "still listing". */
const syncOutcome = (reader: ReturnType<typeof readerOf>, vault: string) =>
  Promise.race([
    reader.syncVault(vault).then(
      () => "synced",
      (error: Error) => error.message,
    ),
    new Promise<"still listing">((resolve) => setTimeout(() => resolve("still listing"), 5_000)),
  ]);

describe.each(dialects)("%s store: a node whose listing cursor loops", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  it("fails the sync naming the page listed again, when the node ignores `before`", async () => {
    const c = await h.scenario();
    const vault = await jobsInOneSlot(h, c);
    let first: AddressSignatureInfo[] | null = null;
    let asked = 0;
    const listing: { rewrite: Listing | null } = {
      rewrite: (entries, options) => {
        asked++;
        if (options?.before === undefined) first = entries;
        return options?.before === undefined ? entries : (first ?? entries);
      },
    };
    const reader = readerOf(c, vault, listingNode(h.rpc, listing));
    const outcome = await syncOutcome(reader, vault);
    expect(outcome).toMatch(/getSignaturesForAddress .*: listed .* again/);
    expect(asked).toBeLessThan(5);
    // Honest again, the vault is listed whole.
    listing.rewrite = null;
    await reader.syncVault(vault);
    const chain = h.world.chain
      .signaturesForAddress(vault, { limit: 1000, commitment: "finalized" })
      .map((e) => e.signature);
    const statement = await buildStatement(
      c.store,
      { from: 0, to: Date.now(), vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    expect(statement.vaults[0]?.counts.lines).toBe(chain.length);
    expect(statement.vaults[0]?.gaps).toEqual([]);
  });

  it("fails the sync when the page below a signature repeats entries listed above it", async () => {
    const c = await h.scenario();
    const vault = await jobsInOneSlot(h, c);
    let asked = 0;
    const listed: AddressSignatureInfo[] = [];
    const listing: { rewrite: Listing | null } = {
      // Two pages as the chain lists them, then the first page again below the second's last
      // entry: never the cursor's own signature, never a new entry.
      rewrite: (entries) => {
        asked++;
        if (listed.length >= 4) return listed.slice(0, 2);
        listed.push(...entries);
        return entries;
      },
    };
    const reader = readerOf(c, vault, listingNode(h.rpc, listing));
    const outcome = await syncOutcome(reader, vault);
    expect(outcome).toMatch(/getSignaturesForAddress .*: listed .* again/);
    expect(asked).toBeLessThan(6);
  });
});
