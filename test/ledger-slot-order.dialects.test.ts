import { describe, expect, it } from "vitest";
import type { AddressSignatureInfo, RpcPool } from "../src/chain/rpc-pool.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { buildStatement } from "../src/ledger/statement.js";
import { createLogger } from "../src/log.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * The operator runs the node the ledger reads and lists the entries of one slot in another
 * order than the chain ran them: slot order holds, so the sync stores them where listed, and
 * their balances break between them. Listing the gap again shows nothing between two lines of
 * one slot, and every nightly run exited 1 from then on. Once the node answers honestly the
 * slot's lines must stand in the one order their balances chain in, no gap left, no money
 * counted twice or left out.
 */
const log = createLogger({ level: "silent" });
/** Slots long enough that a burst sent at a slot's start lands in that one slot. */
const SLOT_MS = 1_000;

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({
    openStore: () => stores.open(),
    chain: { slotMs: SLOT_MS, finalitySlots: 1 },
  });

  /** `rpc` whose address listing puts the entries of `slot` in reverse order (while set). */
  function slotReversingNode(rpc: RpcPool, lie: { slot: number | null }): RpcPool {
    return new Proxy(rpc, {
      get(target, key, receiver) {
        if (key !== "getSignaturesForAddress") return Reflect.get(target, key, receiver);
        return async (...args: Parameters<RpcPool["getSignaturesForAddress"]>) => {
          const entries = await target.getSignaturesForAddress(...args);
          if (lie.slot === null) return entries;
          const inSlot = entries.filter((e) => e.slot === lie.slot).reverse();
          let i = 0;
          return entries.map((e): AddressSignatureInfo => (e.slot === lie.slot ? inSlot[i++]! : e));
        };
      },
    });
  }

  /** Moves the chain's clock to just after the next slot begins. */
  function slotStart() {
    const slot = h.world.chain.currentSlot();
    while (h.world.chain.currentSlot() === slot) h.op.advanceClock(1);
  }

  function readerOf(c: Scenario, vault: string, rpc: RpcPool, pageSize = 1000) {
    return createLedgerReader({
      store: c.store,
      rpc,
      profile: c.profile,
      log,
      options: { pageSize },
      custody: { vaults: [vault], byKey: {} },
      // The chain's clock, past every heal wait.
      now: () => h.op.now() + 2 * 3_600_000,
    });
  }

  async function statementOf(c: Scenario, vault: string, from: number) {
    const s = await buildStatement(
      c.store,
      { from, to: h.op.now() + 1_000, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    return s.vaults[0]!;
  }

  it("a slot listed in reverse closes its gaps once the node is honest", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(0);
    slotStart();
    const from = (h.world.chain.blockTime(h.world.chain.currentSlot()) ?? 0) * 1000;
    const first = h.op.plan({ keyIndex: 0 });
    c.record(first, h.op.honestJob(first));
    const donor = h.op.victimVault(100_000n);
    slotStart();
    // One slot: a deposit, then a job's lock and settlement.
    const deposit = h.op.send([h.op.transfer(donor, vault, 40_000n)]);
    const second = h.op.plan({ keyIndex: 0 });
    const secondTxs = h.op.honestJob(second);
    c.record(second, secondTxs);
    for (const tx of [secondTxs.escrowTx, secondTxs.settlementTx]) {
      expect(h.world.chain.transaction(tx)?.slot).toBe(deposit.slot);
    }
    slotStart();
    const third = h.op.plan({ keyIndex: 0 });
    c.record(third, h.op.honestJob(third));
    h.op.advanceClock(3 * SLOT_MS);
    await c.flush();

    const lie = { slot: deposit.slot as number | null };
    const lying = readerOf(c, vault, slotReversingNode(h.rpc, lie));
    await lying.syncVault(vault);
    const lied = await statementOf(c, vault, from);
    expect(lied.gaps.length).toBeGreaterThan(0);

    lie.slot = null;
    const honest = readerOf(c, vault, h.rpc);
    for (let i = 0; i < 3; i++) await honest.syncVault(vault);
    const s = await statementOf(c, vault, from);
    expect(s.gaps).toEqual([]);
    expect(s.depositsUnits).toBe(40_000n);
    expect(s.differenceUnits).toBe(0n);
    expect(s.unexplainedOutUnits).toBe(0n);
  });

  it("a sync resumed by a later call refuses a page above the line it starts below", async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(1);
    slotStart();
    const from = (h.world.chain.blockTime(h.world.chain.currentSlot()) ?? 0) * 1000;
    const donor = h.op.victimVault(500_000n);
    const deposits: ReturnType<typeof h.op.send>[] = [];
    for (const units of [10_000n, 20_000n, 30_000n, 40_000n]) {
      slotStart();
      deposits.push(h.op.send([h.op.transfer(donor, vault, units)]));
    }
    h.op.advanceClock(3 * SLOT_MS);
    await c.flush();
    // The first call stores one page of two and ends (the node fails the next page).
    const lie: { page: ((before: string) => AddressSignatureInfo[]) | null } = { page: null };
    const node = new Proxy(h.rpc, {
      get(target, key, receiver) {
        if (key !== "getSignaturesForAddress") return Reflect.get(target, key, receiver);
        return async (...args: Parameters<RpcPool["getSignaturesForAddress"]>) => {
          const before = args[1]?.before;
          if (before !== undefined && lie.page !== null) return lie.page(before);
          return target.getSignaturesForAddress(...args);
        };
      },
    });
    lie.page = () => {
      throw new Error("node: connection reset");
    };
    await expect(readerOf(c, vault, node, 2).syncVault(vault)).rejects.toThrow(/reset/);
    // A deposit after; the resumed sync's page lists it at the top, at its own later slot.
    slotStart();
    const late = h.op.send([h.op.transfer(donor, vault, 50_000n)]);
    h.op.advanceClock(3 * SLOT_MS);
    lie.page = () =>
      [late, deposits[1]!, deposits[0]!].map((t) => ({
        signature: t.signature,
        slot: t.slot,
        blockTime: t.blockTime,
        err: null,
        memo: null,
      }));
    await expect(readerOf(c, vault, node, 2).syncVault(vault)).rejects.toThrow(
      /listed at slot \d+ below an entry at slot/,
    );
    lie.page = null;
    const honest = readerOf(c, vault, h.rpc);
    for (let i = 0; i < 3; i++) await honest.syncVault(vault);
    const s = await statementOf(c, vault, from);
    expect(s.gaps).toEqual([]);
    expect(s.depositsUnits).toBe(150_000n);
    expect(s.differenceUnits).toBe(0n);
  });
});
