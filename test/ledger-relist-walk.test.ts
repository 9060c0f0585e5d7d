import { createHash } from "node:crypto";
import bs58 from "bs58";
import { describe, expect, it } from "vitest";
import type { AddressSignatureInfo, RpcPool } from "../src/chain/rpc-pool.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { vaultReader } from "./support/ledger-periods.js";
import { type AdversaryHarness, useAdversaryHarness } from "./support/operator.js";

/**
 * Each sync lists a page of the vault's held history again, going on below where the last one
 * ended. The operator runs the node and lists a page of entries the vault holds none of: the
 * walk must go on below (the held lines are in the chain's order), not back to the newest line
 * where the node would keep it.
 */
const PAGE = 3;

/** `rpc` counting getSignaturesForAddress calls; `walk` answers the listings of held history. */
function walkingNode(
  h: AdversaryHarness,
  walk: {
    rewrite: ((before: string, page: AddressSignatureInfo[]) => AddressSignatureInfo[]) | null;
  },
) {
  const calls: { before?: string; until?: string }[] = [];
  const node = new Proxy(h.rpc, {
    get(target, key, receiver) {
      if (key !== "getSignaturesForAddress") return Reflect.get(target, key, receiver);
      return async (...args: Parameters<RpcPool["getSignaturesForAddress"]>) => {
        const [, o] = args;
        calls.push({
          ...(o?.before ? { before: o.before } : {}),
          ...(o?.until ? { until: o.until } : {}),
        });
        const page = await target.getSignaturesForAddress(...args);
        return o?.before && !o.until && walk.rewrite ? walk.rewrite(o.before, page) : page;
      };
    },
  });
  return { node, calls };
}

describe("the listing of held history again", () => {
  const h = useAdversaryHarness();

  /** Four honest jobs of key `keyIndex`'s vault, finalized, and its history (newest first). */
  async function fourJobs(keyIndex: number) {
    const c = await h.scenario();
    const { vault } = await c.pinKey(keyIndex);
    for (let i = 0; i < 4; i++) {
      const plan = h.op.plan({ keyIndex });
      c.record(plan, h.op.honestJob(plan));
      h.op.nextSlot();
    }
    await h.finalized();
    const history = (await h.rpc.getSignaturesForAddress(vault, { limit: 100 })).map(
      (e) => e.signature,
    );
    return { c, vault, history };
  }

  it("goes on below a page that holds no line of the vault's, not back to the newest", async () => {
    const { c, vault, history } = await fourJobs(0);
    expect(history.length).toBeGreaterThan(3 * PAGE);
    const walk: Parameters<typeof walkingNode>[1] = { rewrite: null };
    const { node, calls } = walkingNode(h, walk);
    const reader = vaultReader(h, c, vault, node, { options: { pageSize: PAGE } });
    const ledger = createLedgerStore(c.store);
    await reader.syncVault(vault);
    // The first listing of held history: below the newest line, to the page's last line.
    await reader.syncVault(vault);
    expect(await ledger.relistBelow(vault)).toBe(history[PAGE]);
    // The node lists a full page of made-up entries below it.
    walk.rewrite = (before, page) =>
      page.map((e, i) => ({
        ...e,
        signature: bs58.encode(createHash("sha512").update(`${before}:${i}`).digest()),
      }));
    await reader.syncVault(vault);
    expect(await ledger.relistBelow(vault)).toBe(history[PAGE + 1]);
    // Honest again: the walk goes on from there to the oldest line.
    walk.rewrite = null;
    calls.length = 0;
    await reader.syncVault(vault);
    expect(calls.at(-1)).toEqual({ before: history[PAGE + 1] });
    expect(await ledger.relistBelow(vault)).toBe(history[2 * PAGE + 1]);
  });

  it("goes on no further than a page reaches, whichever held line a node ends it with", async () => {
    const { c, vault, history } = await fourJobs(2);
    expect(history.length).toBeGreaterThan(3 * PAGE);
    const walk: Parameters<typeof walkingNode>[1] = { rewrite: null };
    const { node } = walkingNode(h, walk);
    const reader = vaultReader(h, c, vault, node, { options: { pageSize: PAGE } });
    const ledger = createLedgerStore(c.store);
    await reader.syncVault(vault);
    await reader.syncVault(vault);
    expect(await ledger.relistBelow(vault)).toBe(history[PAGE]);
    /** A full page of made-up entries ending with the held line `last`. */
    const endingWith = (last: string) => (before: string, page: AddressSignatureInfo[]) => [
      ...page.slice(1).map((e, i) => ({
        ...e,
        signature: bs58.encode(createHash("sha512").update(`${before}:${i}`).digest()),
      })),
      { ...page[0]!, signature: last },
    ];
    // Ended with the oldest line: the history between would never be listed again this walk.
    walk.rewrite = endingWith(history.at(-1)!);
    await reader.syncVault(vault);
    expect(await ledger.relistBelow(vault)).toBe(history[PAGE + 1]);
    // Ended with the newest line: the walk would go back up, and a node doing it each time
    // would keep it at the top.
    walk.rewrite = endingWith(history[0]!);
    await reader.syncVault(vault);
    expect(await ledger.relistBelow(vault)).toBe(history[PAGE + 2]);
  });

  it("goes on below a short page that leaves out the lines held below it", async () => {
    const { c, vault, history } = await fourJobs(1);
    const walk: Parameters<typeof walkingNode>[1] = { rewrite: null };
    const { node } = walkingNode(h, walk);
    const reader = vaultReader(h, c, vault, node, { options: { pageSize: PAGE } });
    const ledger = createLedgerStore(c.store);
    await reader.syncVault(vault);
    // The node ends the listing early: one entry, as if nothing held were older.
    walk.rewrite = (_before, page) => page.slice(0, 1);
    await reader.syncVault(vault);
    expect(await ledger.relistBelow(vault)).toBe(history[2]);
  });

  it("costs one listing call a round for the new entries and one for the walk's page, and one a round once it ends", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(3);
    for (let i = 0; i < 4; i++) {
      const plan = h.op.plan({ keyIndex: 3 });
      c.record(plan, h.op.honestJob(plan));
      h.op.nextSlot();
    }
    await h.finalized();
    const lines = (await h.rpc.getSignaturesForAddress(vault, { limit: 100 })).length;
    const { node, calls } = walkingNode(h, { rewrite: null });
    let clock = Date.now();
    const reader = vaultReader(h, c, vault, node, {
      now: () => clock,
      options: { pageSize: PAGE },
    });
    await reader.syncVault(vault);
    // The first listing: every page once, the last one short (or empty).
    expect(calls.length).toBe(Math.floor(lines / PAGE) + 1);
    const perRound: number[] = [];
    for (let round = 0; round < 6; round++) {
      calls.length = 0;
      await reader.syncVault(vault);
      perRound.push(calls.length);
    }
    // Walking (the pages below the newest line, the last one short), then ended for a minute.
    const walk = Math.ceil((lines - 1) / PAGE);
    expect(perRound).toEqual([...Array(walk).fill(2), ...Array(6 - walk).fill(1)]);
    clock += 61_000;
    calls.length = 0;
    await reader.syncVault(vault);
    expect(calls.length).toBe(2);
  });
});
