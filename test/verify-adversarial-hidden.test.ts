import bs58 from "bs58";
import { describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { discrepancy, useAdversaryHarness } from "./support/operator.js";
import { rewritingNode } from "./support/rewriting-node.js";

/**
 * The operator hides one fraud behind another, or serves (from the node it runs) instructions that disagree with the balances
 * in one direction only. Each job whose money went wrong must not be verified, whatever the
 * sum of the vault's movements shows.
 */

const h = useAdversaryHarness();

type Served = {
  transaction: {
    message: { accountKeys: string[]; instructions: { accounts: number[]; data: string }[] };
  };
};

/** `rpc`, its getTransaction answers for the signatures named rewritten as told. */
function lyingNode(rpc: RpcPool, rewrites: Map<string, (result: Served) => void>): RpcPool {
  return rewritingNode(rpc, (signature) => rewrites.get(signature));
}

/**
 * Serves the TransferChecked into `destination` as moving `amount`, and leaves out every
 * instruction into `dropTo`: the instructions then say what an honest step moves, while the
 * balances still show what moved.
 */
const rewriteTransfer =
  (destination: string, amount: bigint, dropTo?: string) => (result: Served) => {
    const { accountKeys, instructions } = result.transaction.message;
    const dest = (ix: { accounts: number[] }) => accountKeys[ix.accounts[2] ?? -1];
    const kept = instructions.filter((ix) => dropTo === undefined || dest(ix) !== dropTo);
    for (const ix of kept) {
      const data = bs58.decode(ix.data);
      if (data[0] !== 12 || dest(ix) !== destination) continue;
      new DataView(data.buffer, data.byteOffset).setBigUint64(1, amount, true);
      ix.data = bs58.encode(data);
    }
    result.transaction.message.instructions = kept;
  };

describe("two frauds where one hides the other", () => {
  it("fails both jobs when an over-refund covers an overcharge, and the next lock refills escrow", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const a = h.op.plan({ keyIndex: 1 });
    const b = h.op.plan({ keyIndex: 1 });
    const x = 50_000n;
    const before = h.op.balance(a.vault);
    // A: the worker is paid x over its share, the vault x over its remainder: the vault's
    // movement is exactly the honest one, escrow's float pays x.
    const escrowA = h.op.send(h.op.lockIxs(a)).signature;
    const settleA = h.op.send([
      ...h.op.payoutIxs(a, { workerShare: a.workerShare + x, remainder: a.remainder + x }),
      h.op.memo(`decentral:settle:${a.jobId}`),
    ]).signature;
    // B: its lock takes x more from the vault, and the honest settlement leaves it in escrow.
    const escrowB = h.op.send(h.op.lockIxs(b, { amount: b.lock + x })).signature;
    const settleB = h.op.send(h.op.settleIxs(b)).signature;
    expect(before - h.op.balance(a.vault)).toBe(a.charge + b.charge);
    c.record(a, { escrowTx: escrowA, settlementTx: settleA });
    c.record(b, { escrowTx: escrowB, settlementTx: settleB });
    expect(await c.verdicts(a.jobId, b.jobId)).toEqual([
      discrepancy("charge.matches_price", "escrow.covers_charge", "settlement.split"),
      discrepancy("settlement.conserves_lock"),
    ]);
  });
});

describe("a second job's lock paying the first's shortfall", () => {
  it("fails both jobs: a lock short of the price, its whole remainder paid from the next over-lock", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const a = h.op.plan({ keyIndex: 1 });
    const b = h.op.plan({ keyIndex: 1 });
    const x = 30_000n;
    const before = h.op.balance(a.vault);
    // A locks x short (still above its charge) and gets the whole remainder of an honest lock
    // back; B locks x over, and its honest settlement leaves x in escrow to cover A.
    const escrowA = h.op.send(h.op.lockIxs(a, { amount: a.lock - x })).signature;
    const settleA = h.op.send(h.op.settleIxs(a)).signature;
    const escrowB = h.op.send(h.op.lockIxs(b, { amount: b.lock + x })).signature;
    const settleB = h.op.send(h.op.settleIxs(b)).signature;
    expect(before - h.op.balance(a.vault)).toBe(a.charge + b.charge);
    c.record(a, { escrowTx: escrowA, settlementTx: settleA });
    c.record(b, { escrowTx: escrowB, settlementTx: settleB });
    const [outA, outB] = await c.verdicts(a.jobId, b.jobId);
    expect([outA?.verdict, outB?.verdict]).toEqual(["discrepancy", "discrepancy"]);
    expect(outA?.failing).toContain("settlement.conserves_lock");
    expect(outB?.failing).toContain("settlement.conserves_lock");
  });
});

describe("a node serving instructions that disagree with the balances one way only", () => {
  it("does not verify a settlement whose short remainder the node serves as whole", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const thief = h.op.attackerAccount(0n);
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, { remainder: plan.remainder - 7_000n }),
      h.op.transfer(h.op.accounts.escrowVault, thief, 7_000n),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    await c.flush();
    await h.finalized();
    const node = lyingNode(
      h.rpc,
      new Map([[settlementTx, rewriteTransfer(plan.vault, plan.remainder, thief)]]),
    );
    const summary = await c.verifierOver(node).runUntilSettled({}, { timeoutMs: 20_000 });
    expect(summary.status).toBe("completed");
    expect(await c.outcome(plan.jobId)).toEqual(
      discrepancy("charge.matches_price", "settlement.recipients", "settlement.split"),
    );
  });

  it("does not verify a lock over the price the node serves as the price", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan, { amount: plan.lock + 9_000n })).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    await c.flush();
    await h.finalized();
    const node = lyingNode(
      h.rpc,
      new Map([[escrowTx, rewriteTransfer(h.op.accounts.escrowVault, plan.lock)]]),
    );
    const summary = await c.verifierOver(node).runUntilSettled({}, { timeoutMs: 20_000 });
    expect(summary.status).toBe("completed");
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.conserves_lock"));
  });
});
