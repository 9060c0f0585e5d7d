import { describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { buildStatement } from "../src/ledger/statement.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { SETTLEMENT_CLOCK_SLACK_SECONDS } from "../src/store/ledger-rules.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import {
  finalizedThrough,
  nightlyOnChain,
  periodEdge,
  vaultReader,
} from "./support/ledger-periods.js";
import { AuthorityType, type Scenario, useAdversaryHarness } from "./support/operator.js";
import { type Listing, listingNode } from "./support/rewriting-node.js";

/**
 * The operator runs the node the ledger reads and lists an entry at a slot it is not at, above
 * the newest line: a new entry, or one it left out before. Once the node answers honestly the
 * ledger must hold its lines in chain order (no gap that never closes, every nightly run
 * exiting 1 for ever), keep the balance read, say whose the vault is now, and still name a
 * theft the node hid. Nor may a listing's date keep a theft from every night's run.
 */
const MADE_UP = 1_000_000_000;

/**
 * The node's lie about `left` (a transaction of the vault): left out of every listing, and
 * then, asked for what is newer than the newest line, listed as new at a made-up slot.
 */
function leftOutThenMadeUp(left: { signature: string; blockTime: number | null }) {
  const listing: { rewrite: Listing | null } = {
    rewrite: (entries) => entries.filter((e) => e.signature !== left.signature),
  };
  const madeUp = () => {
    listing.rewrite = (entries, options) => {
      const kept = entries.filter((e) => e.signature !== left.signature);
      if (!options?.until || options.before) return kept;
      const slot = (kept[0]?.slot ?? 0) + MADE_UP;
      const entry = {
        signature: left.signature,
        slot,
        blockTime: left.blockTime,
        err: null,
        memo: null,
      };
      return [entry, ...kept];
    };
  };
  return { listing, madeUp };
}

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /**
   * The chain's clock: the cases move it on to a period's edge and past the seconds a run waits
   * to be final instead of waiting for them. Their receipts are dated by it
   * (`recordOnChainClock`), as a recorder beside the chain would: on the machine's clock, behind
   * the chain's, a job's credits header span ended before its return.
   */
  const now = () => h.op.now();

  /** A scenario whose receipts are dated by the chain's clock. */
  const scenario = async () => (await h.scenario()).recordOnChainClock();

  const readerOf = (c: Scenario, vault: string, rpc: RpcPool) =>
    vaultReader(h, c, vault, rpc, { now });

  /**
   * The nightly run of [from, to) reading the ledger through `rpc` (the honest node), on the
   * chain's clock; `to` by default the next period edge. It starts once the chain has finalized
   * past its window's end and the 2 s after it that the run reads, as a run after its window.
   * Its time is 30 s, not 10: no case here is about the run's timeout, and on PostgreSQL beside a
   * loaded host a run took 5-9 s of work (no wait for the chain), one past 10 s ending incomplete.
   */
  async function nightly(c: Scenario, vault: string, from: number, to?: number, rpc = h.rpc) {
    const end = to ?? periodEdge(h);
    await finalizedThrough(h, end + SETTLEMENT_CLOCK_SLACK_SECONDS * 1000);
    return nightlyOnChain(h, c, readerOf(c, vault, rpc), now).nightly({ from, to: end }, 30_000);
  }

  /** Key `keyIndex`'s vault: an honest job, `between` (own slots), another honest job. */
  async function jobsAround<T>(keyIndex: number, between: (vault: string) => T) {
    const c = await scenario();
    const { vault } = await c.pinKey(keyIndex);
    const from = periodEdge(h);
    const first = h.op.plan({ keyIndex });
    c.record(first, h.op.honestJob(first));
    h.op.nextSlot();
    const middle = between(vault);
    h.op.nextSlot();
    const next = h.op.plan({ keyIndex });
    c.record(next, h.op.honestJob(next));
    await h.finalized();
    return { c, vault, from, middle };
  }

  it("keeps the balance read once honest after a new entry listed at a made-up slot", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(0);
    const from = periodEdge(h);
    const first = h.op.plan({ keyIndex: 0 });
    c.record(first, h.op.honestJob(first));
    await h.finalized();
    const listing: { rewrite: Listing | null } = {
      rewrite: (entries) => entries.map((e, i) => (i === 0 ? { ...e, slot: e.slot + MADE_UP } : e)),
    };
    await readerOf(c, vault, listingNode(h.rpc, listing)).syncVault(vault);
    h.op.nextSlot();
    const next = h.op.plan({ keyIndex: 0 });
    c.record(next, h.op.honestJob(next));
    await h.finalized();
    const run = await nightly(c, vault, from);
    expect(run.exitCode).toBe(0);
    const cursor = await createLedgerStore(c.store).cursorFigures(vault);
    const account = await h.rpc.getTokenAccount(vault);
    expect(cursor?.balanceUnits).toBe(account.account?.amount);
    expect(cursor?.newestSlot).toBeLessThanOrEqual(cursor!.balanceSlot!);
  });

  it("closes the gaps of a left-out deposit listed later as new at a made-up slot", async () => {
    const donor = h.op.victimVault(100_000n);
    const { c, vault, from, middle } = await jobsAround(1, (vault) =>
      h.op.send([h.op.transfer(donor, vault, 40_000n)]),
    );
    const lie = leftOutThenMadeUp(middle);
    const lying = readerOf(c, vault, listingNode(h.rpc, lie.listing));
    await lying.syncVault(vault);
    lie.madeUp();
    await lying.syncVault(vault);
    const run = await nightly(c, vault, from);
    expect(run.ledger?.gaps).toEqual([]);
    expect(run.ledger?.imbalanced).toEqual([]);
    expect(run.exitCode).toBe(0);
  });

  it("names a left-out theft listed later as new at a made-up slot, and closes its gaps", async () => {
    const { c, vault, from, middle } = await jobsAround(2, (vault) =>
      h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 55_000n)]),
    );
    const lie = leftOutThenMadeUp(middle);
    const lying = readerOf(c, vault, listingNode(h.rpc, lie.listing));
    await lying.syncVault(vault);
    lie.madeUp();
    await lying.syncVault(vault);
    const run = await nightly(c, vault, from);
    expect(run.exitCode).toBe(1);
    expect(run.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ vault, signature: middle.signature, amountUnits: "-55000" }),
    ]);
    expect(run.ledger?.gaps).toEqual([]);
    const s = (
      await buildStatement(
        c.store,
        { from, to: h.op.now(), vault },
        { profile: c.profile, graceSeconds: 0 },
      )
    ).vaults[0]!;
    expect(s.unexplainedOutUnits).toBe(55_000n);
    expect(s.differenceUnits).toBe(0n);
  });

  it("says whose the vault is now when an older line is listed at a made-up slot above the handover", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const first = h.op.plan({ keyIndex: 3 });
    c.record(first, h.op.honestJob(first));
    h.op.nextSlot();
    const deposit = h.op.send([h.op.transfer(h.op.victimVault(100_000n), vault, 40_000n)]);
    h.op.nextSlot();
    h.op.send([h.op.setAuthority(vault, AuthorityType.AccountOwner, h.op.attacker.address)]);
    await h.finalized();
    const lie = leftOutThenMadeUp(deposit);
    const lying = readerOf(c, vault, listingNode(h.rpc, lie.listing));
    await lying.syncVault(vault);
    lie.madeUp();
    await lying.syncVault(vault);
    expect(await createLedgerStore(c.store).ownerNow(vault)).toEqual(
      expect.objectContaining({ owner: h.op.attacker.address }),
    );
  });

  it.each([
    // Past the 2 s after the window's end the run reads for its last credits headers: left
    // listed by that run, judged by the next as listed late.
    ["by the next run, as listed late, when dated past what the run reads", 3, [0, 1]],
    // Within them: read by the run, at its own time, in its own window; not named again.
    ["by the run itself when dated within the seconds it reads past the window", 1, [1, 0]],
  ] as const)(
    "names a theft listed dated after the window it lies in, once its own time is read: %s",
    async (_, listedPastSec, namedBy) => {
      h.op.fund(h.op.vault(4), 1_000_000n);
      const c = await scenario();
      const { vault } = await c.pinKey(4);
      const from = periodEdge(h);
      const first = h.op.plan({ keyIndex: 4 });
      c.record(first, h.op.honestJob(first));
      h.op.nextSlot();
      const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 55_000n)]);
      await h.finalized();
      const to = periodEdge(h);
      // The night's run reads up to its window's end: the node dates the theft just past it.
      const listing: { rewrite: Listing | null } = {
        rewrite: (entries) =>
          entries.map((e) =>
            e.signature === theft.signature ? { ...e, blockTime: to / 1000 + listedPastSec } : e,
          ),
      };
      const runs = [await nightly(c, vault, from, to, listingNode(h.rpc, listing))];
      // The next window ends where its run reads past the date the theft was listed at.
      const next = periodEdge(h, to + listedPastSec * 1000);
      runs.push(await nightly(c, vault, to, next));
      // Named once, by one run (the vault's history before `from`, an earlier case's theft,
      // is the first run's to judge too).
      const naming = runs.map(
        (r) => r.ledger?.unreceiptedDebits.filter((d) => d.signature === theft.signature) ?? [],
      );
      expect(naming.map((n) => n.length)).toEqual(namedBy);
      const by = namedBy.indexOf(1);
      expect(runs[by]!.exitCode).toBe(1);
      expect(naming[by]).toEqual([
        expect.objectContaining(by === 1 ? { listedLate: true } : { beforeWindow: false }),
      ]);
    },
  );
});
