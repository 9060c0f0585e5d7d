import { describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { periodOf } from "../src/dashboard/period.js";
import { statementBody } from "../src/dashboard/statement-page.js";
import { buildStatement, statementToCsv, statementToJson } from "../src/ledger/statement.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { SETTLEMENT_CLOCK_SLACK_SECONDS } from "../src/store/ledger-rules.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import {
  finalizedThrough,
  nightlyOnChain,
  periodEdge,
  vaultReader,
} from "./support/ledger-periods.js";
import { useAdversaryHarness } from "./support/operator.js";
import { type Listing, listingNode, rewritingNode } from "./support/rewriting-node.js";

/**
 * The operator's node lists another vault's transaction as new, dated after the night's
 * window: stored unjudged by that run (read by it for the credits headers' spans when within
 * the 2 s after the window's end). Once read, its own signature proves it is not the vault's:
 * it is set aside, named by the statement of the window its time is in, and the runs finish,
 * not exit 2 from then on. The chain's clock is moved on to each period's edge and past the
 * seconds a run waits to be final, not waited for; receipts and runs keep that clock.
 */
describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  // Each case its own key's vault: the other's lines are no receipt's in a case's store.
  it.each([
    ["past the seconds the run reads after its window's end, stored unjudged by that run", true, 0],
    [
      "within the seconds the run reads after its window's end, set aside by that run's read",
      false,
      1,
    ],
  ] as const)(
    "sets aside an entry listed past a run's window that is not the vault's (%s), named by the next run's statement alone, and both runs finish",
    async (_, pastRead, keyIndex) => {
      const c = (await h.scenario()).recordOnChainClock();
      const { vault } = await c.pinKey(keyIndex);
      const from = periodEdge(h);
      const mine = h.op.plan({ keyIndex });
      c.record(mine, h.op.honestJob(mine));
      await h.finalized();
      const firstTo = periodEdge(h);
      // The run reads the lines of the 2 s after its window's end, for its last credits headers.
      const spansUntil = firstTo + SETTLEMENT_CLOCK_SLACK_SECONDS * 1000;
      if (pastRead) periodEdge(h, spansUntil);
      const other = h.op.plan({ keyIndex: 2 });
      const otherTxs = h.op.honestJob(other);
      // Another key's job, no receipt of it here: its vault is not read.
      await h.finalized();
      const [foreign] = (await h.rpc.getSignaturesForAddress(h.op.vault(2), { limit: 10 })).filter(
        (e) => e.signature === otherTxs.settlementTx,
      );
      if (pastRead) expect(foreign!.blockTime! * 1000).toBeGreaterThanOrEqual(spansUntil);
      else expect(foreign!.blockTime! * 1000).toBeLessThan(spansUntil);
      expect(foreign!.blockTime! * 1000).toBeGreaterThanOrEqual(firstTo);
      // The vault's first listing (a run lists the escrow vault's before its jobs).
      const listing: { rewrite: Listing | null } = {
        rewrite: (entries, _, address) => {
          if (address !== vault) return entries;
          listing.rewrite = null;
          return [foreign!, ...entries];
        },
      };
      const now = () => h.op.now();
      const reader = vaultReader(h, c, vault, listingNode(h.rpc, listing), { now });
      // When each read of the vault started and ended, on the machine's monotonic clock.
      const reads: { start: number; end: number }[] = [];
      const syncAll = reader.syncAll.bind(reader);
      reader.syncAll = async (...args: Parameters<typeof syncAll>) => {
        const start = performance.now();
        try {
          return await syncAll(...args);
        } finally {
          reads.push({ start, end: performance.now() });
        }
      };
      const { nightly } = nightlyOnChain(h, c, reader, now);
      const statementOf = async (window: { from: number; to: number }) =>
        (
          await buildStatement(
            c.store,
            { ...window, vault },
            { profile: c.profile, graceSeconds: 0 },
          )
        ).vaults[0];
      // Each run starts once the chain has finalized past what it reads: it reads the vault once.
      await finalizedThrough(h, spansUntil);
      const first = await nightly({ from, to: firstTo });
      expect(first.exitCode).toBe(0);
      expect((await statementOf({ from, to: firstTo }))?.setAside).toEqual([]);
      const ledger = createLedgerStore(c.store);
      expect((await ledger.listedSignatures(vault)).includes(otherTxs.settlementTx)).toBe(pastRead);

      // The next window ends 5 s and more past what the first run proved final.
      const to = periodEdge(h, spansUntil + 4_000);
      await finalizedThrough(h, to + SETTLEMENT_CLOCK_SLACK_SECONDS * 1000);
      const readBefore = reads.length;
      const second = await nightly({ from: firstTo, to });
      // A read that set the entry aside proved no finalized time, the chain final past the
      // window all the same: the run reads again soon, not after waiting 5 s for the chain.
      const secondReads = reads.slice(readBefore);
      expect(secondReads.length).toBe(pastRead ? 2 : 1);
      for (let i = 1; i < secondReads.length; i++) {
        expect(secondReads[i]!.start - secondReads[i - 1]!.end).toBeLessThan(2_500);
      }
      expect(second.exitCode).toBe(0);
      expect(await ledger.listedSignatures(vault)).toEqual([]);
      const named = [
        expect.objectContaining({
          signature: otherTxs.settlementTx,
          slot: foreign!.slot,
          why: expect.stringContaining("none of them the vault"),
        }),
      ];
      expect((await statementOf({ from: firstTo, to }))?.setAside).toEqual(named);
      const s = await statementOf({ from, to });
      expect(s?.unread).toBeNull();
      expect(s?.setAside).toEqual(named);
    },
  );

  it("names an entry set aside whose block time the node left out in the statements of the periods it may be of", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { vault } = await c.pinKey(0);
    const from = periodEdge(h);
    const mine = h.op.plan({ keyIndex: 0 });
    c.record(mine, h.op.honestJob(mine));
    const other = h.op.plan({ keyIndex: 2 });
    const otherTxs = h.op.honestJob(other);
    const to = periodEdge(h);
    await finalizedThrough(h, to);
    const [foreign] = (await h.rpc.getSignaturesForAddress(h.op.vault(2), { limit: 10 })).filter(
      (e) => e.signature === otherTxs.settlementTx,
    );
    // The node lists another vault's transaction as this one's newest, with no block time, and
    // serves it first not at all (stored unread), then with no block time: set aside, undated.
    const listing: { rewrite: Listing | null } = {
      rewrite: (entries) => {
        listing.rewrite = null;
        return [{ ...foreign!, blockTime: null }, ...entries];
      },
    };
    let served = false;
    const undated = rewritingNode<{ blockTime: number | null }>(
      listingNode(h.rpc, listing),
      (signature) =>
        signature === foreign!.signature
          ? (result) => {
              result.blockTime = null;
            }
          : undefined,
    );
    const node = new Proxy(undated, {
      get(target, key, receiver) {
        if (key !== "getTransaction") return Reflect.get(target, key, receiver);
        return async (...args: Parameters<RpcPool["getTransaction"]>) =>
          args[0] === foreign!.signature && !served ? null : target.getTransaction(...args);
      },
    });
    const reader = vaultReader(h, c, vault, node);
    await reader.syncVault(vault);
    const ledger = createLedgerStore(c.store);
    expect(await ledger.listedSignatures(vault)).toEqual([foreign!.signature]);
    served = true;
    await reader.syncVault(vault);
    expect(await ledger.listedSignatures(vault)).toEqual([]);

    // The entry as the statement's JSON, its CSV and the dashboard's page name it.
    const setAsideOf = async (fromMs: number, toMs: number) => {
      const statement = await buildStatement(
        c.store,
        { from: fromMs, to: toMs, vault },
        { profile: c.profile, graceSeconds: 0 },
      );
      const json = statementToJson(statement).vaults[0]?.setAside ?? [];
      const csv = statementToCsv(statement)
        .split("\n")
        .filter((row) => row.startsWith("set_aside,"));
      const page = String(statementBody(periodOf({ period: "day" }, fromMs), statement));
      const shown = page.includes(`title="${foreign!.signature}"`);
      return [...json.map((a) => `${a.signature} ${a.blockTime}`), `csv ${csv.length}`, shown];
    };
    const named = [`${foreign!.signature} null`, "csv 1", true];
    // Above the job's lines, dated in the period: it may be of the period or of any later one.
    expect(await setAsideOf(from, to)).toEqual(named);
    expect(await setAsideOf(to + 60_000, to + 120_000)).toEqual(named);
    // Before the job's lines it cannot be.
    expect(await setAsideOf(from - 60_000, from)).toEqual(["csv 0", false]);
  });
});
