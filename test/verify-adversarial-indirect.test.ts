import { describe, expect, it, onTestFinished } from "vitest";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { AuthorityType, discrepancy, useAdversaryHarness, verified } from "./support/operator.js";

/**
 * The operator reaches the customer's money by a way round: a delegate it named in a
 * transaction of its own, pay that passes through the worker's account, accounts a lookup table
 * loads, a memo naming two jobs, the treasury's owner named as the worker, a second lock signed
 * before it is named and sent after it was given up (a durable nonce keeps a transaction valid
 * that long). Each job must fail the check naming the fraud, or, where the money moved exactly
 * as the receipt says, verify.
 */

const h = useAdversaryHarness();

describe("a delegate of the credit vault", () => {
  it("catches the delegate's transfer to the attacker named as the job's lock", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const delegate = h.op.attacker.address;
    // Made a delegate in a transaction of its own, then spending in another, signing alone.
    h.op.send([h.op.approve(plan.vault, delegate, plan.lock)]);
    const escrowTx = h.op.send([
      h.op.transfer(plan.vault, h.op.attackerAccount(0n), plan.lock, { authority: delegate }),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source", "escrow.vault")]);
  });
});

describe("a credit vault handed to a multisig the escrow authority is a member of", () => {
  it("catches the lock the multisig signs by another member: the vault is no longer the escrow authority's", async () => {
    const c = await h.scenario();
    await c.pinKey(2);
    const plan = h.op.plan({ keyIndex: 2 });
    const attacker = h.op.attacker.address;
    const multisig = h.op.createMultisig([h.op.escrowAuthority.address, attacker], 1);
    h.op.send([h.op.setAuthority(plan.vault, AuthorityType.AccountOwner, multisig)]);
    onTestFinished(() => {
      h.op.send([
        {
          ...h.op.setAuthority(
            plan.vault,
            AuthorityType.AccountOwner,
            h.op.escrowAuthority.address,
          ),
          accounts: [
            { address: plan.vault, signer: false, writable: true },
            { address: multisig, signer: false, writable: false },
            { address: attacker, signer: true, writable: false },
          ],
        },
      ]);
    });
    const escrowTx = h.op.send([
      h.op.multisigTransfer(plan.vault, h.op.accounts.escrowVault, plan.lock, multisig, [attacker]),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
    expect(await c.check(plan.jobId, "escrow.source")).toMatchObject({
      actual: { vault: plan.vault, owner: multisig },
    });
  });
});

describe("a settlement whose worker's pay passes on within it", () => {
  it("verifies a worker paid more whose surplus goes back to escrow: its net is its share", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const surplus = 30_000n;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, { workerShare: plan.workerShare + surplus }),
      h.op.transfer(plan.worker.tokenAccount, h.op.accounts.escrowVault, surplus, {
        authority: plan.worker.address,
      }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    const moved = h.op.deltas(settlementTx);
    expect(moved.get(plan.worker.tokenAccount)?.delta).toBe(plan.workerShare);
    expect(moved.get(plan.vault)?.delta).toBe(plan.remainder);
    expect(moved.get(h.op.accounts.escrowVault)?.delta).toBe(-plan.lock);
  });

  it("catches a worker paid part of the remainder that it passes to the attacker", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const taken = 30_000n;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, {
        workerShare: plan.workerShare + taken,
        remainder: plan.remainder - taken,
      }),
      h.op.transfer(plan.worker.tokenAccount, h.op.attackerAccount(0n), taken, {
        authority: plan.worker.address,
      }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("charge.matches_price", "settlement.recipients", "settlement.split"),
    ]);
  });
});

describe("a key's lock and settlement with every account loaded from a lookup table", () => {
  it("learns the key's vault from them, and catches its next lock from another key's vault the table loads", async () => {
    const c = await h.scenario();
    const first = h.op.plan({ keyIndex: 3 });
    const table = h.op.lookupTable([
      first.vault,
      h.op.vault(2),
      h.op.accounts.escrowVault,
      first.worker.tokenAccount,
      h.op.accounts.treasury.tokenAccount,
      h.op.accounts.mint,
    ]);
    const v0 = { version: 0 as const, lookupTables: [table] };
    c.record(first, {
      escrowTx: h.op.send(h.op.lockIxs(first), v0).signature,
      settlementTx: h.op.send(h.op.settleIxs(first), v0).signature,
    });
    expect(await c.verdicts(first.jobId)).toEqual([verified]);
    const next = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(h.op.lockIxs(next, { from: h.op.vault(2) }), v0).signature;
    const settlementTx = h.op.send(
      [
        ...h.op.payoutIxs(next, { remainderTo: h.op.vault(2) }),
        h.op.memo(`decentral:settle:${next.jobId}`),
      ],
      v0,
    ).signature;
    c.record(next, { escrowTx, settlementTx });
    expect(await c.verdicts(next.jobId)).toEqual([discrepancy("escrow.source")]);
  });
});

describe("one memo naming two jobs", () => {
  it("fails the lock of each job it names, by space or by line", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const [a, b] = [h.op.plan({ keyIndex: 1 }), h.op.plan({ keyIndex: 1 })];
    const lockNaming = (separator: string) =>
      h.op.send([
        h.op.transfer(a.vault, h.op.accounts.escrowVault, a.lock),
        h.op.memo(`decentral:escrow:${a.jobId}${separator}decentral:escrow:${b.jobId}`),
      ]).signature;
    c.record(a, {
      escrowTx: lockNaming(" "),
      settlementTx: h.op.send(h.op.settleIxs(a)).signature,
    });
    c.record(b, {
      escrowTx: lockNaming("\n"),
      settlementTx: h.op.send(h.op.settleIxs(b)).signature,
    });
    expect(await c.verdicts(a.jobId, b.jobId)).toEqual([
      discrepancy("escrow.memo"),
      discrepancy("escrow.memo"),
    ]);
  });
});

describe("a receipt naming the treasury's owner as the worker", () => {
  it("does not take the treasury's share for the worker's pay", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    c.record(plan, h.op.honestJob(plan), { worker: h.op.accounts.treasury.owner });
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("settlement.recipients", "settlement.split"),
    ]);
  });
});

describe("a second lock signed before it is named and sent after it was given up", () => {
  it("is judged once it lands and the job is verified again: the job was locked twice", async () => {
    // Dropped after 30 slots, within the 150 a blockhash stays valid: sent later, as a
    // transaction on a durable nonce can be at any time.
    const c = await h.scenario({ ...localnetProfile, dropAfterSlots: 30 });
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    const second = h.op.signOnly(h.op.lockIxs(plan));
    c.record(plan, txs);
    // The jobs API names the unsent lock once, then the receipt's again.
    c.jobsApi(plan.jobId, {
      status: "settled",
      credits_charged: Number(plan.charge / 10_000n),
      worker_address: plan.worker.address,
      on_chain: { escrow_tx: second.signature, settlement_tx: txs.settlementTx },
    });
    c.honestJobsApi(plan, txs);
    await h.finalized();
    expect((await c.verdicts(plan.jobId))[0]?.verdict).toBe("dropped");

    const before = h.op.balance(plan.vault);
    h.op.sendSigned(second);
    expect(before - h.op.balance(plan.vault)).toBe(plan.lock);
    await h.finalized();
    await createJobQueueStore(c.store).reverify(plan.jobId, Date.now());
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.single")]);
  });
});
