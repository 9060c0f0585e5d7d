import { describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { buildStatement } from "../src/ledger/statement.js";
import { summaryToText } from "../src/nightly/summary-format.js";
import { clockPause } from "./support/chain-clock.js";
import { nightlyOnChain, periodEdge, vaultReader } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";
import { rewritingNode } from "./support/rewriting-node.js";

/**
 * The operator runs the node the ledger reads, and a theft of 55,000 from the credit vault
 * sits between honest jobs. The node leaves it out of the address listing (an index that lags,
 * or lies), or of the balance read too: the nightly run must exit 1 the first time it can see the
 * theft at all. A node leaving the vault out of the theft's token balances serves an answer its
 * line cannot be read from: the run cannot finish (exit 2) and names it.
 */
const stolen = 55_000n;

const h = useAdversaryHarness();

/** `rpc` whose listing leaves out `hidden`, and whose balance read adds `lag.units`. */
function laggingNode(rpc: RpcPool, hidden: Set<string>, lag = { units: 0n }): RpcPool {
  return new Proxy(rpc, {
    get(target, key, receiver) {
      if (key === "getTokenAccount") {
        return async (...args: Parameters<RpcPool["getTokenAccount"]>) => {
          const read = await target.getTokenAccount(...args);
          const amount = read.account?.amount;
          if (read.account == null || amount == null || lag.units === 0n) return read;
          return { ...read, account: { ...read.account, amount: amount + lag.units } };
        };
      }
      if (key !== "getSignaturesForAddress") return Reflect.get(target, key, receiver);
      return async (...args: Parameters<RpcPool["getSignaturesForAddress"]>) =>
        (await target.getSignaturesForAddress(...args)).filter((e) => !hidden.has(e.signature));
    },
  });
}

/**
 * Key `keyIndex`'s vault (each test its own: the ledger reads a vault's whole history) with one
 * honest job, then the theft, then (`after`) another honest job. The window opens at a whole
 * second the chain's clock is moved on to (its receipts are dated by that clock), instead of
 * one waited for.
 */
async function theftBetweenJobs(keyIndex: number, after: boolean, ownSlots = false) {
  const c = (await h.scenario()).recordOnChainClock();
  const { vault } = await c.pinKey(keyIndex);
  const from = periodEdge(h);
  const thief = h.op.attackerAccount(0n);
  const plan = h.op.plan({ keyIndex });
  c.record(plan, h.op.honestJob(plan));
  if (ownSlots) h.op.nextSlot();
  const theft = h.op.send([
    h.op.transfer(vault, thief, stolen),
    h.op.memo(`decentral:settle:${plan.jobId}`),
  ]).signature;
  if (ownSlots) h.op.nextSlot();
  if (after) {
    const next = h.op.plan({ keyIndex });
    c.record(next, h.op.honestJob(next));
  }
  await h.finalized();
  return { c, vault, from, to: h.op.now(), theft };
}

/**
 * The nightly run of [from, to) reading the ledger through `rpc`, on the chain's clock, which
 * its pauses for the chain to finalize 2 s past `to` move on instead of waiting.
 */
function nightly(c: Scenario, vault: string, rpc: RpcPool, from: number, to: number) {
  const now = () => h.op.now();
  const reader = vaultReader(h, c, vault, rpc, { now });
  return nightlyOnChain(h, c, reader, now, clockPause(h)).nightly({ from, to });
}

describe("a theft the ledger's node hides", () => {
  it("shows a gap while the listing leaves it out between two read movements, and names it once listed", async () => {
    const { c, vault, from, to, theft } = await theftBetweenJobs(0, true);
    const hidden = new Set([theft]);
    const rpc = laggingNode(h.rpc, hidden);
    const first = await nightly(c, vault, rpc, from, to);
    expect(first.exitCode).toBe(1);
    expect(first.ledger?.gaps).toEqual([
      expect.objectContaining({ vault, missingUnits: String(-stolen), beforeWindow: false }),
    ]);
    expect(first.ledger?.imbalanced).toEqual([{ vault, differenceUnits: String(-stolen) }]);
    // The node lists it now, though it is older than the newest signature read: the gap's
    // signatures are listed again and the theft takes its place between the two jobs.
    hidden.clear();
    const second = await nightly(c, vault, rpc, from, to);
    expect(second.exitCode).toBe(1);
    expect(second.ledger?.gaps).toEqual([]);
    expect(second.ledger?.imbalanced).toEqual([]);
    expect(second.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({
        vault,
        signature: theft,
        amountUnits: String(-stolen),
        memo: expect.stringContaining("decentral:settle:"),
      }),
    ]);
    // The job whose settle memo the theft carries fails, and the ledger names the theft.
    expect(summaryToText(second)).toContain(
      "1 of 2 jobs NOT verified, and the credit vaults' ledger has 1 findings (1 unreceipted debits)",
    );
    // A statement over the period, built from the lines, shows it too, and balances.
    const s = (
      await buildStatement(c.store, { from, to, vault }, { profile: c.profile, graceSeconds: 0 })
    ).vaults[0]!;
    expect(s.gaps).toEqual([]);
    expect(s.unexplainedOutUnits).toBe(stolen);
    expect(s.differenceUnits).toBe(0n);
  });

  it("lists it late once the node shows it, when listing and balance read both hid the newest", async () => {
    const { c, vault, from, to, theft } = await theftBetweenJobs(1, false);
    const hidden = new Set([theft]);
    const lag = { units: stolen };
    const rpc = laggingNode(h.rpc, hidden, lag);
    // A node whose every answer agrees on a chain without the theft cannot be caught alone
    // (RPC_QUORUM is the answer to that): the first run sees nothing, and judges the window.
    const first = await nightly(c, vault, rpc, from, to);
    expect(first.exitCode).toBe(0);
    expect(first.ledger?.unreceiptedDebits).toEqual([]);
    hidden.clear();
    lag.units = 0n;
    // The next night's run, over the window after it: the theft is dated in the window the
    // first run judged, and the node lists it only now. That run names it, marked listed late.
    const next = periodEdge(h);
    const second = await nightly(c, vault, rpc, to, next);
    expect(second.exitCode).toBe(1);
    expect(second.outcome).toBe("ledger_findings");
    expect(second.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({
        vault,
        signature: theft,
        amountUnits: String(-stolen),
        listedLate: true,
      }),
    ]);
    const text = summaryToText(second);
    expect(text).toContain("the credit vaults' ledger has 1 findings (1 unreceipted debits)");
    expect(text).toContain(
      `unreceipted debit of ${stolen} units from vault ${vault} in ${theft} (memo names`,
    );
    expect(text).toContain("listed only after the run that judged its time");
  });

  it("names the theft's transaction unread while its token balances leave the vault out, no deposit made up, and the theft once they do not", async () => {
    const { c, vault, from, to, theft } = await theftBetweenJobs(2, false);
    type Served = {
      transaction: { message: { accountKeys: string[] } };
      meta: {
        preTokenBalances: { accountIndex: number }[];
        postTokenBalances: { accountIndex: number }[];
      };
    };
    const lying = { on: true };
    const rpc = rewritingNode(h.rpc, (signature) =>
      signature !== theft || !lying.on
        ? undefined
        : (result: Served) => {
            const i = result.transaction.message.accountKeys.indexOf(vault);
            const meta = result.meta;
            meta.preTokenBalances = meta.preTokenBalances.filter((b) => b.accountIndex !== i);
            meta.postTokenBalances = meta.postTokenBalances.filter((b) => b.accountIndex !== i);
          },
    );
    const statement = async () =>
      (await buildStatement(c.store, { from, to, vault }, { profile: c.profile, graceSeconds: 0 }))
        .vaults[0]!;
    // Read as the vault's net change of 0 plus a payout that money in hid, the theft showed a
    // deposit of 55,000 nothing made, and a gap as if a transaction were left out.
    const run = await nightly(c, vault, rpc, from, to);
    expect(run.exitCode).toBe(2);
    expect(run.outcome).toBe("incomplete");
    expect(run.ledger?.incomplete).toContain(
      `line ${theft} not read: its token balances leave the vault out, while the instructions served move ${stolen} out of it`,
    );
    const told = await statement();
    expect(told.depositsUnits).toBe(0n);
    expect(told.unexplained).toEqual([]);
    expect(told.complete).toBe(false);
    expect(told.differenceUnits).toBeNull();
    expect(told.unread).toEqual({
      lines: 1,
      why: expect.stringContaining(`line ${theft} not read`),
    });
    // The node serves the vault's balances: the theft is the vault's debit, and nothing else.
    lying.on = false;
    const again = await nightly(c, vault, rpc, from, to);
    expect(again.exitCode).toBe(1);
    expect(again.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ vault, signature: theft, amountUnits: String(-stolen) }),
    ]);
    expect(again.ledger?.gaps).toEqual([]);
    const s = await statement();
    expect(s.depositsUnits).toBe(0n);
    expect(s.unexplainedOutUnits).toBe(stolen);
    expect(s.gaps).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
  });

  it("heals an honest lag: a deposit listed late between two jobs leaves the statement complete", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { vault } = await c.pinKey(3);
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 3 });
    c.record(plan, h.op.honestJob(plan));
    const donor = h.op.victimVault(100_000n);
    const deposit = h.op.send([h.op.transfer(donor, vault, 40_000n)]).signature;
    const next = h.op.plan({ keyIndex: 3 });
    c.record(next, h.op.honestJob(next));
    await h.finalized();
    const to = h.op.now();
    const hidden = new Set([deposit]);
    const rpc = laggingNode(h.rpc, hidden);
    const first = await nightly(c, vault, rpc, from, to);
    expect(first.exitCode).toBe(1);
    expect(first.ledger?.gaps).toEqual([expect.objectContaining({ vault, missingUnits: "40000" })]);
    expect(first.ledger?.imbalanced).toEqual([{ vault, differenceUnits: "40000" }]);
    // The operator reads both findings, the gap among them, in the run's count and lines.
    const text = summaryToText(first);
    expect(text).toContain(
      "all 2 jobs verified, but the credit vaults' ledger has 2 findings (1 vaults off the chain's balance, 1 history gaps)",
    );
    expect(text).toContain(`gap in vault ${vault}'s history: 40000 units moved between`);
    // The node's index catches up: the deposit is listed, read, and the gap closes.
    hidden.clear();
    const second = await nightly(c, vault, rpc, from, to);
    expect(second.ledger?.gaps).toEqual([]);
    expect(second.ledger?.imbalanced).toEqual([]);
    expect(second.exitCode).toBe(0);
    expect(summaryToText(second)).not.toContain("ledger has");
    const s = (
      await buildStatement(c.store, { from, to, vault }, { profile: c.profile, graceSeconds: 0 })
    ).vaults[0]!;
    expect(s.complete).toBe(true);
    expect(s.depositsUnits).toBe(40_000n);
    expect(s.gaps).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
  });

  it("lists a gap a node keeps leaving out again only now and then, not every round", async () => {
    h.op.fund(h.op.vault(4), 1_000_000n);
    // Each movement in a slot of its own: a gap between two lines of one slot is listed again
    // as that slot too (a reordered slot), a listing this test does not count.
    const { c, vault, theft } = await theftBetweenJobs(4, true, true);
    const rpc = laggingNode(h.rpc, new Set([theft]));
    let relistings = 0;
    const counting = new Proxy(rpc, {
      get(target, key, receiver) {
        if (key !== "getSignaturesForAddress") return Reflect.get(target, key, receiver);
        return (...args: Parameters<RpcPool["getSignaturesForAddress"]>) => {
          if (args[1]?.before && args[1]?.until) relistings++;
          return target.getSignaturesForAddress(...args);
        };
      },
    });
    let clock = Date.now();
    const reader = vaultReader(h, c, vault, counting, { now: () => clock });
    // The sync that reads the lines finds the gap and lists it again at once.
    await reader.syncVault(vault);
    expect(relistings).toBe(1);
    await reader.syncVault(vault);
    expect(relistings).toBe(1);
    await reader.syncVault(vault);
    expect(relistings).toBe(1);
    clock += 61_000;
    await reader.syncVault(vault);
    expect(relistings).toBe(2);
    // Twice as long the next time.
    clock += 61_000;
    await reader.syncVault(vault);
    expect(relistings).toBe(2);
    clock += 61_000;
    await reader.syncVault(vault);
    expect(relistings).toBe(3);
  });

  it("lists every gap again in turn across nightly runs, each with a fresh reader, not the newest 3 each time", async () => {
    h.op.fund(h.op.vault(4), 1_000_000n);
    const c = await h.scenario();
    const { vault } = await c.pinKey(4);
    // Four thefts the node leaves out, each between two honest jobs: four gaps.
    const hidden = new Set<string>();
    // Each movement in a slot of its own: a gap between two lines of one slot is listed again
    // as that slot too (a reordered slot), a listing this test does not count.
    for (let i = 0; i < 4; i++) {
      const plan = h.op.plan({ keyIndex: 4 });
      c.record(plan, h.op.honestJob(plan));
      h.op.nextSlot();
      hidden.add(h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 1_000n)]).signature);
      h.op.nextSlot();
    }
    const last = h.op.plan({ keyIndex: 4 });
    c.record(last, h.op.honestJob(last));
    await h.finalized();
    const relisted = new Set<string>();
    const rpc = new Proxy(laggingNode(h.rpc, hidden), {
      get(target, key, receiver) {
        if (key !== "getSignaturesForAddress") return Reflect.get(target, key, receiver);
        return (...args: Parameters<RpcPool["getSignaturesForAddress"]>) => {
          if (args[1]?.before && args[1]?.until) relisted.add(args[1].before);
          return target.getSignaturesForAddress(...args);
        };
      },
    });
    const freshReader = () => vaultReader(h, c, vault, rpc);
    // The first run reads the lines, finds the gaps and lists 3 of them again; each later run
    // lists 3 of them again, taking turns.
    await freshReader().syncVault(vault);
    expect(relisted.size).toBe(3);
    await freshReader().syncVault(vault);
    expect(relisted.size).toBe(4);
  });
});
