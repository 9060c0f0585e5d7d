import { describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { buildStatement } from "../src/ledger/statement.js";
import { clockPause } from "./support/chain-clock.js";
import { nightlyOnChain, periodEdge, vaultReader } from "./support/ledger-periods.js";
import { useAdversaryHarness } from "./support/operator.js";
import { rewritingNode } from "./support/rewriting-node.js";

/**
 * The operator runs the node the ledger reads. Between two honest jobs of one key, a movement
 * of the credit vault (a theft of 55,000, or a customer's top-up of 40,000) whose answer the node
 * serves with the vault's token balances made inconsistent with the instructions it serves. A
 * statement totals only money that moved: such a line is named unread (the run exits 2), never
 * read as a figure nobody moved; served honestly, it is read as what it was.
 */
const stolen = 55_000n;
const toppedUp = 40_000n;

const h = useAdversaryHarness();

type Balance = {
  accountIndex: number;
  mint: string;
  owner?: string;
  uiTokenAmount: { amount: string; decimals: number; uiAmount: number | null };
};
type Served = {
  transaction: { message: { accountKeys: string[] } };
  meta: { err: unknown; preTokenBalances: Balance[]; postTokenBalances: Balance[] };
};

/** The vault's own entries in a served answer's token balances. */
const vaultEntries = (r: Served, vault: string) => {
  const i = r.transaction.message.accountKeys.indexOf(vault);
  const of = (list: Balance[]) => list.filter((b) => b.accountIndex === i);
  return { i, pre: of(r.meta.preTokenBalances), post: of(r.meta.postTokenBalances) };
};

/**
 * Key `keyIndex`'s vault (funded anew) with an honest job, then `move` (a theft, or a top-up),
 * then another honest job; the node rewrites `move`'s answer with `lie` while `lying.on`. The
 * window opens at a whole second the chain's clock is moved on to.
 */
async function movedBetweenJobs(
  keyIndex: number,
  kind: "theft" | "topUp",
  lie: (r: Served, vault: string) => void,
) {
  h.op.fund(h.op.vault(keyIndex), 1_000_000n);
  const c = (await h.scenario()).recordOnChainClock();
  const { vault } = await c.pinKey(keyIndex);
  const from = periodEdge(h);
  const plan = h.op.plan({ keyIndex });
  c.record(plan, h.op.honestJob(plan));
  h.op.nextSlot();
  const move =
    kind === "theft"
      ? h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), stolen)]).signature
      : h.op.send([h.op.transfer(h.op.victimVault(100_000n), vault, toppedUp)]).signature;
  h.op.nextSlot();
  const next = h.op.plan({ keyIndex });
  c.record(next, h.op.honestJob(next));
  await h.finalized();
  const to = h.op.now();
  const lying = { on: true };
  const rpc: RpcPool = rewritingNode(h.rpc, (signature) =>
    signature !== move || !lying.on ? undefined : (r: Served) => lie(r, vault),
  );
  const now = () => h.op.now();
  const nightly = () =>
    nightlyOnChain(h, c, vaultReader(h, c, vault, rpc, { now }), now, clockPause(h)).nightly({
      from,
      to,
    });
  const statement = async () =>
    (await buildStatement(c.store, { from, to, vault }, { profile: c.profile, graceSeconds: 0 }))
      .vaults[0]!;
  return { vault, move, lying, nightly, statement };
}

/**
 * A run's findings dated in its window: a key's vault used by an earlier test holds that test's
 * jobs, whose receipts are in another store, before the window.
 */
const inWindow = <T extends { beforeWindow: boolean }>(found: T[] | undefined) =>
  found?.filter((f) => !f.beforeWindow);

/** The run and statement while the node lies: `move` unread for `why`, no figure made up. */
async function expectUnread(
  w: Awaited<ReturnType<typeof movedBetweenJobs>>,
  why: string,
): Promise<void> {
  const run = await w.nightly();
  expect(run.exitCode).toBe(2);
  expect(run.outcome).toBe("incomplete");
  expect(run.ledger?.incomplete).toContain(`line ${w.move} not read: ${why}`);
  expect(inWindow(run.ledger?.unreceiptedDebits)).toEqual([]);
  const s = await w.statement();
  expect(s.depositsUnits).toBe(0n);
  expect(s.unexplainedOutUnits).toBe(0n);
  expect(s.unexplained).toEqual([]);
  expect(s.complete).toBe(false);
  expect(s.differenceUnits).toBeNull();
  expect(s.unread).toEqual({ lines: 1, why: expect.stringContaining(`line ${w.move} not read`) });
}

/** Once the node serves `move` honestly: it is read as the theft or top-up it was. */
async function expectReadAsMoved(
  w: Awaited<ReturnType<typeof movedBetweenJobs>>,
  kind: "theft" | "topUp",
): Promise<void> {
  w.lying.on = false;
  const run = await w.nightly();
  expect(run.ledger?.gaps).toEqual([]);
  const s = await w.statement();
  expect(s.gaps).toEqual([]);
  expect(s.differenceUnits).toBe(0n);
  if (kind === "theft") {
    expect(run.exitCode).toBe(1);
    expect(inWindow(run.ledger?.unreceiptedDebits)).toEqual([
      expect.objectContaining({ vault: w.vault, signature: w.move, amountUnits: String(-stolen) }),
    ]);
    expect(s.depositsUnits).toBe(0n);
    expect(s.unexplainedOutUnits).toBe(stolen);
  } else {
    expect(run.exitCode).toBe(0);
    expect(s.depositsUnits).toBe(toppedUp);
    expect(s.unexplainedOutUnits).toBe(0n);
  }
}

describe("a vault's movement whose token balances a node makes disagree with its instructions", () => {
  it("a theft whose balances show the vault unchanged is unread, not a deposit and a payout", async () => {
    const w = await movedBetweenJobs(0, "theft", (r, vault) => {
      const { pre, post } = vaultEntries(r, vault);
      post[0]!.uiTokenAmount = { ...pre[0]!.uiTokenAmount };
    });
    await expectUnread(
      w,
      `its token balances show no change of the vault's credits, while the instructions served move ${stolen} out of it`,
    );
    await expectReadAsMoved(w, "theft");
  });

  it("a theft whose balances show the vault losing less than it paid out is unread, not a deposit and a payout", async () => {
    const w = await movedBetweenJobs(1, "theft", (r, vault) => {
      const { pre, post } = vaultEntries(r, vault);
      const amount = String(BigInt(pre[0]!.uiTokenAmount.amount) - 5_000n);
      post[0]!.uiTokenAmount = { ...post[0]!.uiTokenAmount, amount, uiAmount: null };
    });
    await expectUnread(
      w,
      `the vault's credit balance fell by 5000, less than the instructions served take out of it (${stolen} net)`,
    );
    await expectReadAsMoved(w, "theft");
  });

  it("a theft whose balances name the vault in another mint is unread, not a deposit and a payout", async () => {
    const other = h.op.createFakeMint();
    const w = await movedBetweenJobs(2, "theft", (r, vault) => {
      const { pre, post } = vaultEntries(r, vault);
      for (const b of [...pre, ...post]) b.mint = other;
    });
    await expectUnread(
      w,
      `its token balances show no change of the vault's credits, while the instructions served move ${stolen} out of it`,
    );
    await expectReadAsMoved(w, "theft");
  });

  it("a top-up whose balances leave the vault out is unread, not a payout nobody made", async () => {
    const w = await movedBetweenJobs(3, "topUp", (r, vault) => {
      const { i } = vaultEntries(r, vault);
      r.meta.preTokenBalances = r.meta.preTokenBalances.filter((b) => b.accountIndex !== i);
      r.meta.postTokenBalances = r.meta.postTokenBalances.filter((b) => b.accountIndex !== i);
    });
    await expectUnread(
      w,
      `its token balances leave the vault out, while the instructions served move ${toppedUp} into it`,
    );
    await expectReadAsMoved(w, "topUp");
  });

  it("a theft whose balances name the vault before and not after is unread, not its whole balance paid out", async () => {
    const w = await movedBetweenJobs(3, "theft", (r, vault) => {
      const { i } = vaultEntries(r, vault);
      r.meta.postTokenBalances = r.meta.postTokenBalances.filter((b) => b.accountIndex !== i);
    });
    await expectUnread(
      w,
      "its token balances name the vault before the transaction and not after it, while no instruction served closes it",
    );
    await expectReadAsMoved(w, "theft");
  });

  it("a theft served as failed whose balances moved is still the vault's debit of what moved, and no deposit", async () => {
    const w = await movedBetweenJobs(4, "theft", (r) => {
      r.meta.err = { InstructionError: [0, { Custom: 1 }] };
    });
    const run = await w.nightly();
    expect(run.exitCode).toBe(1);
    expect(run.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ vault: w.vault, signature: w.move, amountUnits: String(-stolen) }),
    ]);
    const s = await w.statement();
    expect(s.depositsUnits).toBe(0n);
    expect(s.unexplainedOutUnits).toBe(stolen);
    expect(s.gaps).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
  });
});
