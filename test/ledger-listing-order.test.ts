import { randomBytes } from "node:crypto";
import bs58 from "bs58";
import { describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { buildStatement } from "../src/ledger/statement.js";
import { createLogger } from "../src/log.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { chainSecondAfter, finalizedPast } from "./support/finality.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";
import { type Listing, listingNode } from "./support/rewriting-node.js";

/**
 * The operator runs the node the ledger reads and lists a vault's transactions out of chain
 * order: a page with a newer entry below older ones, or a gap's listing holding a transaction
 * from after the gap under a slot inside it. Once the node answers honestly again, the ledger
 * must hold every line in chain order: no gap that never heals (every nightly run exits 1 for
 * ever), and the theft between the gap's lines named.
 */
const log = createLogger({ level: "silent" });

const h = useAdversaryHarness();

function readerOf(c: Scenario, vault: string, rpc: RpcPool, clock: { t: number }) {
  return createLedgerReader({
    store: c.store,
    rpc,
    profile: c.profile,
    log,
    custody: { vaults: [vault], byKey: {} },
    now: () => clock.t,
  });
}

/** Syncs until nothing more is listed, a gap's wait passed each time. */
async function syncHonestly(c: Scenario, vault: string, clock: { t: number }) {
  const reader = readerOf(c, vault, h.rpc, clock);
  for (let i = 0; i < 4; i++) {
    await reader.syncVault(vault);
    clock.t += 2 * 3_600_000;
  }
}

async function statementOf(c: Scenario, vault: string, from: number) {
  const s = await buildStatement(
    c.store,
    { from, to: Date.now(), vault },
    { profile: c.profile, graceSeconds: 0 },
  );
  return s.vaults[0]!;
}

describe("a node listing a vault out of chain order", () => {
  it("a deposit listed as the newest entry above two later jobs leaves no gap once honest", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(0);
    const from = await chainSecondAfter(h.world);
    const first = h.op.plan({ keyIndex: 0 });
    c.record(first, h.op.honestJob(first));
    const donor = h.op.victimVault(100_000n);
    h.op.nextSlot();
    const deposit = h.op.send([h.op.transfer(donor, vault, 40_000n)]);
    h.op.nextSlot();
    const next = h.op.plan({ keyIndex: 0 });
    c.record(next, h.op.honestJob(next));
    await h.finalized();
    const listing: { rewrite: Listing | null } = {
      // The deposit moved to the top of the page, its slot kept.
      rewrite: (entries) => [
        ...entries.filter((e) => e.signature === deposit.signature),
        ...entries.filter((e) => e.signature !== deposit.signature),
      ],
    };
    const clock = { t: Date.now() };
    // The sync fails, naming the entry: nothing of the page is stored.
    await expect(
      readerOf(c, vault, listingNode(h.rpc, listing), clock).syncVault(vault),
    ).rejects.toThrow(/listed at slot \d+ below an entry at slot/);
    await syncHonestly(c, vault, clock);
    const s = await statementOf(c, vault, from);
    expect(s.gaps).toEqual([]);
    expect(s.depositsUnits).toBe(40_000n);
    expect(s.differenceUnits).toBe(0n);
  });

  it("a later deposit a gap's listing places inside the gap leaves the theft named once honest", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(1);
    const from = await chainSecondAfter(h.world);
    const first = h.op.plan({ keyIndex: 1 });
    c.record(first, h.op.honestJob(first));
    const theft = h.op.send([
      h.op.transfer(vault, h.op.attackerAccount(0n), 55_000n),
      h.op.memo(`decentral:settle:${first.jobId}`),
    ]);
    const next = h.op.plan({ keyIndex: 1 });
    c.record(next, h.op.honestJob(next));
    await h.finalized();
    const hidden = new Set([theft.signature]);
    const listing: { rewrite: Listing | null } = {
      rewrite: (entries) => entries.filter((e) => !hidden.has(e.signature)),
    };
    const clock = { t: Date.now() };
    const lying = readerOf(c, vault, listingNode(h.rpc, listing), clock);
    await lying.syncVault(vault);
    expect((await statementOf(c, vault, from)).gaps).toHaveLength(1);

    // A deposit after the gap: the node leaves it out of the new listing and lists it within
    // the gap's listing under the theft's slot, the theft still left out.
    const deposit = h.op.send([h.op.transfer(h.op.victimVault(100_000n), vault, 40_000n)]);
    await h.finalized();
    hidden.add(deposit.signature);
    listing.rewrite = (entries, options) => {
      const kept = entries.filter((e) => !hidden.has(e.signature));
      if (!options?.before || !options.until) return kept;
      return [
        { signature: deposit.signature, slot: theft.slot, blockTime: null, err: null, memo: null },
        ...kept,
      ];
    };
    clock.t += 2 * 3_600_000;
    await lying.syncVault(vault).catch(() => undefined);

    await syncHonestly(c, vault, clock);
    const s = await statementOf(c, vault, from);
    expect(s.gaps).toEqual([]);
    expect(s.unexplainedOutUnits).toBe(55_000n);
    expect(s.depositsUnits).toBe(40_000n);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("a node listing a transaction older than the newest line as new", () => {
  it("stores it not above the newest line, and the gap's listing places it in chain order", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(3);
    const from = await chainSecondAfter(h.world);
    const first = h.op.plan({ keyIndex: 3 });
    c.record(first, h.op.honestJob(first));
    h.op.nextSlot();
    const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 55_000n)]);
    h.op.nextSlot();
    const next = h.op.plan({ keyIndex: 3 });
    c.record(next, h.op.honestJob(next));
    await h.finalized();
    const hidden = new Set([theft.signature]);
    const listing: { rewrite: Listing | null } = {
      rewrite: (entries) => entries.filter((e) => !hidden.has(e.signature)),
    };
    const clock = { t: Date.now() };
    const lying = readerOf(c, vault, listingNode(h.rpc, listing), clock);
    await lying.syncVault(vault);
    // The next sync's listing (newer than the newest line) holds the theft, at its own slot.
    listing.rewrite = (entries, options) =>
      options?.until && !options.before
        ? [
            {
              signature: theft.signature,
              slot: theft.slot,
              blockTime: theft.blockTime,
              err: null,
              memo: null,
            },
            ...entries,
          ]
        : entries;
    // Below the newest line's slot it is no new line: the sync's listing ends there, and the
    // gap's listing (honest) puts it in its place, once. (The first sync listed the gap again
    // as soon as it found it, to nothing: the next listing waits its minute.)
    clock.t += 61_000;
    expect((await lying.syncVault(vault)).listed).toBe(1);
    await syncHonestly(c, vault, clock);
    const s = await statementOf(c, vault, from);
    expect(s.gaps).toEqual([]);
    expect(s.unexplainedOutUnits).toBe(55_000n);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("a node listing a new entry at a made-up slot above the chain's", () => {
  it("cannot end every later sync's listing: a theft after it is listed and named", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(2);
    const from = await chainSecondAfter(h.world);
    const first = h.op.plan({ keyIndex: 2 });
    c.record(first, h.op.honestJob(first));
    await h.finalized();
    const listing: { rewrite: Listing | null } = {
      // The newest entry listed at a slot the chain has not reached.
      rewrite: (entries) =>
        entries.map((e, i) => (i === 0 ? { ...e, slot: e.slot + 1_000_000_000 } : e)),
    };
    const clock = { t: Date.now() };
    await readerOf(c, vault, listingNode(h.rpc, listing), clock)
      .syncVault(vault)
      .catch(() => undefined);
    // The node turns honest; the operator then takes money out of the vault.
    h.op.nextSlot();
    const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 55_000n)]);
    h.op.nextSlot();
    const next = h.op.plan({ keyIndex: 2 });
    c.record(next, h.op.honestJob(next));
    await h.finalized();
    await syncHonestly(c, vault, clock);
    const s = await statementOf(c, vault, from);
    expect(s.unexplainedOutUnits).toBe(55_000n);
    expect(theft.signature).toBeTruthy();
  });
});

describe("a node that does not hold the newest line", () => {
  it("lists past it: its entries below it end the listing, and the read-through time stays", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(2);
    const first = h.op.plan({ keyIndex: 2 });
    c.record(first, h.op.honestJob(first));
    await h.finalized();
    const clock = { t: Date.now() };
    await readerOf(c, vault, h.rpc, clock).syncVault(vault);
    const cursor = await createLedgerStore(c.store).cursor(vault, clock.t);
    const before = (await statementOf(c, vault, 0)).readThrough;
    expect(before).not.toBeNull();
    // The chain finalizes a later second, nothing of the vault in it.
    await finalizedPast(h.world, (await chainSecondAfter(h.world)) + 1);
    // The node's index lacks the newest line: asked until it, it lists on past it.
    const lagging = new Proxy(h.rpc, {
      get(target, key, receiver) {
        if (key !== "getSignaturesForAddress") return Reflect.get(target, key, receiver);
        return async (...args: Parameters<RpcPool["getSignaturesForAddress"]>) => {
          const { until: _until, ...rest } = args[1] ?? {};
          const all = await target.getSignaturesForAddress(args[0], rest);
          return all.filter((e) => e.signature !== cursor.newestSignature);
        };
      },
    });
    const r = await readerOf(c, vault, lagging, clock).syncVault(vault);
    expect((await statementOf(c, vault, 0)).readThrough).toBe(before);
    expect(r.noBlockTime).toMatch(/listed past the newest line/);
  });
});

describe("a gap's listing the node pads with entries it does not serve", () => {
  it("stops fetching them once the sync's signal ends it", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(3);
    const first = h.op.plan({ keyIndex: 3 });
    c.record(first, h.op.honestJob(first));
    const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 1_000n)]);
    const next = h.op.plan({ keyIndex: 3 });
    c.record(next, h.op.honestJob(next));
    await h.finalized();
    const fakes = Array.from({ length: 400 }, () => bs58.encode(randomBytes(64)));
    const listing: { rewrite: Listing | null } = {
      rewrite: (entries, options) => {
        const kept = entries.filter((e) => e.signature !== theft.signature);
        if (!options?.before || !options.until) return kept;
        const pad = fakes.map((signature) => ({
          signature,
          slot: theft.slot,
          blockTime: null,
          err: null,
          memo: null,
        }));
        return [...pad, ...kept];
      },
    };
    const clock = { t: Date.now() };
    const lying = listingNode(h.rpc, listing);
    await readerOf(c, vault, lying, clock).syncVault(vault);
    // The next sync lists the gap again; the run's deadline passes as the padding is fetched.
    const stop = new AbortController();
    let asked = 0;
    const counting = new Proxy(lying, {
      get(target, key, receiver) {
        if (key !== "getTransaction") return Reflect.get(target, key, receiver);
        return async (...args: Parameters<RpcPool["getTransaction"]>) => {
          if (fakes.includes(args[0])) {
            asked++;
            stop.abort(new Error("deadline"));
          }
          return target.getTransaction(...args);
        };
      },
    });
    clock.t += 2 * 3_600_000;
    await expect(
      readerOf(c, vault, counting, clock).syncVault(vault, { signal: stop.signal }),
    ).rejects.toThrow(/deadline/);
    expect(asked).toBeLessThanOrEqual(8);
  });
});
