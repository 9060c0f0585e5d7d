import { describe, expect, it } from "vitest";
import { localnetProfile } from "../src/verify/profiles.js";
import { discrepancy, type JobPlan, useAdversaryHarness } from "./support/operator.js";

/**
 * A Token-2022 credit mint whose transfer fee the operator (its fee authority) raises from
 * nothing: the new fee applies two epochs later, so a lock made just before that epoch moves
 * whole and its release, a moment after, pays the fee out of every transfer, held back in the
 * receiving accounts for the fee authority to withdraw. The release must fail, whatever the lock
 * showed. The chain's clock jumps two epochs ahead here: a world of its own.
 */

const h = useAdversaryHarness();
const EPOCH_SLOTS = 432_000;

describe("a transfer fee that starts between a lock and its release", () => {
  it("fails the settlement's conservation and the refund's completeness", async () => {
    const op = h.op;
    const mint = op.createToken2022Mint({ transferFeeBps: 0 });
    const escrow = op.createToken2022Account(op.escrowAuthority.address, mint);
    const vault = op.createToken2022Account(op.escrowAuthority.address, mint, 10_000_000n);
    const treasury = op.createToken2022Account(op.treasuryOwner.address, mint);
    const worker = op.createToken2022Account(op.worker(0).address, mint);
    const c = await h.scenario({ ...localnetProfile, usdcMint: mint, escrowVault: escrow });
    const onMint = (p: JobPlan): JobPlan => ({
      ...p,
      vault,
      worker: { ...p.worker, tokenAccount: worker },
    });
    const settled = onMint(op.plan({ keyIndex: 1 }));
    const refunded = onMint(op.plan({ keyIndex: 1 }));
    const lock = (p: JobPlan) =>
      op.send([
        op.transfer2022(vault, escrow, p.lock, mint),
        op.memo(`decentral:escrow:${p.jobId}`),
      ]).signature;

    op.send([op.setTransferFeeIx(mint, 100)]);
    const slot = op.chain.currentSlot();
    const feeEpochStart = (Math.floor(slot / EPOCH_SLOTS) + 2) * EPOCH_SLOTS;
    op.advanceClock((feeEpochStart - slot - 100) * op.chain.slotMs);
    const locks = [lock(settled), lock(refunded)];
    for (const signature of locks) {
      expect(op.deltas(signature).get(escrow)?.delta).toBe(settled.lock);
    }
    op.advanceClock(200 * op.chain.slotMs);
    expect(op.chain.currentSlot()).toBeGreaterThan(feeEpochStart);

    const settlementTx = op.send([
      op.transfer2022(escrow, worker, settled.workerShare, mint),
      op.transfer2022(escrow, treasury, settled.treasuryShare, mint),
      op.transfer2022(escrow, vault, settled.remainder, mint),
      op.memo(`decentral:settle:${settled.jobId}`),
    ]).signature;
    const refundTx = op.send([
      op.transfer2022(escrow, vault, refunded.lock, mint),
      op.memo(`decentral:refund:${refunded.jobId}`),
    ]).signature;
    // 1% of the remainder, 40,000, stayed in the vault's account for the fee authority.
    expect(op.deltas(settlementTx).get(vault)?.delta).toBe(settled.remainder - 400n);

    c.record(settled, { escrowTx: locks[0]!, settlementTx }, {}, "ingest", op.now());
    c.record(
      refunded,
      { escrowTx: locks[1]!, settlementTx: refundTx },
      { httpStatus: 504, completionTokens: null, promptTokens: null, totalTokens: null },
      "ingest",
      op.now(),
    );
    expect(await c.verdicts(settled.jobId, refunded.jobId)).toEqual([
      discrepancy("charge.matches_price", "settlement.conserves_lock"),
      discrepancy("refund.complete"),
    ]);
  });
});
