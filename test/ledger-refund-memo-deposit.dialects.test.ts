import { describe, expect, it } from "vitest";
import { buildStatement } from "../src/ledger/statement.js";
import { localKeyNames, localSigner } from "../src/localnet/keys.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { periodEdge, vaultReader } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";
import { execSql } from "./support/store.js";

/**
 * The operator keeps a job's lock (moves it out of escrow) and puts the job's refund memo on
 * the customer's own top-up: the whole top-up counted as the job's return, released its lock,
 * and the statement showed returns of 1,000,000, no deposit and no unreleased lock, so the
 * customer's loss of the lock was in no statement. Only what escrow paid into the vault is a
 * return; the rest of the money in is a deposit, and the lock stays out by what escrow kept.
 */

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  async function sync(c: Scenario, vault: string) {
    await c.flush();
    await h.finalized();
    await vaultReader(h, c, vault).syncVault(vault);
  }

  /** The next whole second, the chain's clock moved on past it rather than waited for. */
  const nextSecond = async () => periodEdge(h);

  /** A scenario whose receipts are dated by the chain's clock, which `nextSecond` moves on. */
  const scenario = async () => (await h.scenario()).recordOnChainClock();

  /** The statement of the period from `from`, with every lock still out, due or not yet. */
  async function statementOf(c: Scenario, from: number, vault: string) {
    const st = await buildStatement(
      c.store,
      { from, to: h.op.now() + 1_000, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    const v = st.vaults[0]!;
    return { ...v, out: [...v.unreleasedLocks, ...v.locksNotDue] };
  }

  /**
   * Job of key `keyIndex`: its lock, escrow sending `kept` of it elsewhere, then one transaction
   * under the job's refund memo bringing back `returned` from escrow and the customer's own
   * 1,000,000 from their wallet.
   */
  function topUpUnderRefundMemo(keyIndex: number, kept: bigint, returned: bigint) {
    const plan = h.op.plan({ keyIndex });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    h.op.send([h.op.transfer(h.op.accounts.escrowVault, h.op.attackerAccount(0n), kept)]);
    const user = localSigner(localKeyNames.user(keyIndex));
    const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
    h.op.send(
      [
        ...(returned > 0n ? [h.op.transfer(h.op.accounts.escrowVault, plan.vault, returned)] : []),
        h.op.transfer(wallet, plan.vault, 1_000_000n, { authority: user.address }),
        h.op.memo(`decentral:refund:${plan.jobId}`),
      ],
      { extraSigners: [user] },
    );
    return { plan, escrowTx };
  }

  it("counts a top-up under a job's refund memo as a deposit, the lock unreleased", async () => {
    const c = await scenario();
    const from = await nextSecond();
    const { plan, escrowTx } = topUpUnderRefundMemo(2, 160_000n, 0n);
    expect(plan.lock).toBe(160_000n);
    c.record(plan, { escrowTx, settlementTx: null });
    await sync(c, plan.vault);
    const v = await statementOf(c, from, plan.vault);
    expect(v.returnsUnits).toBe(0n);
    expect(v.depositsUnits).toBe(1_000_000n);
    expect(v.locksUnits).toBe(160_000n);
    expect(v.out).toEqual([
      expect.objectContaining({ jobId: plan.jobId, outstandingUnits: 160_000n }),
    ]);
  });

  it("counts as the return only what escrow paid in beside the customer's top-up", async () => {
    const c = await scenario();
    const from = await nextSecond();
    const { plan, escrowTx } = topUpUnderRefundMemo(3, 120_000n, 40_000n);
    c.record(plan, { escrowTx, settlementTx: null });
    await sync(c, plan.vault);
    const v = await statementOf(c, from, plan.vault);
    expect(v.returnsUnits).toBe(40_000n);
    expect(v.depositsUnits).toBe(1_000_000n);
    expect(v.counts.returns).toBe(1);
    expect(v.out).toEqual([
      expect.objectContaining({ jobId: plan.jobId, outstandingUnits: 120_000n }),
    ]);
  });

  // A migration lists read lines again to be read anew (0033-0038) and keeps their kind: such
  // a line is in the per-kind sums, and was counted again as listed, so `lines` read N+1.
  it("counts a line listed again once among the period's lines", async () => {
    const c = await scenario();
    const from = await nextSecond();
    const { plan, escrowTx } = topUpUnderRefundMemo(2, 160_000n, 0n);
    c.record(plan, { escrowTx, settlementTx: null });
    await sync(c, plan.vault);
    const before = await statementOf(c, from, plan.vault);
    await execSql(
      c.store,
      `UPDATE ledger_lines SET state = 'listed'
       WHERE signature = '${escrowTx}' AND vault = '${plan.vault}'`,
    );
    const after = await statementOf(c, from, plan.vault);
    expect(after.complete).toBe(false);
    expect(after.counts.lines).toBe(before.counts.lines);
  });

  // The operator builds the "buy credits" transaction the customer signs: the customer's
  // 1,000,000 goes to the escrow vault and on from it to the credit vault, under the refund
  // memo of a job whose lock (160,000) it kept. Escrow paid the vault 1,000,000 but lost
  // nothing (or lost only what it paid elsewhere in the same transaction): the whole top-up
  // read as the job's return and the kept lock left no trace.
  it.each([
    ["nothing else", 0n],
    ["160,000 paid elsewhere beside it", 160_000n],
  ])(
    "counts money that only passed through escrow as a deposit, the lock unreleased (%s)",
    async (_, elsewhere) => {
      const c = await scenario();
      const from = await nextSecond();
      const plan = h.op.plan({ keyIndex: 2 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      h.op.send([h.op.transfer(h.op.accounts.escrowVault, h.op.attackerAccount(0n), 160_000n)]);
      const user = localSigner(localKeyNames.user(2));
      const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
      const attacker = h.op.attackerAccount(0n);
      h.op.send(
        [
          h.op.transfer(wallet, h.op.accounts.escrowVault, 1_000_000n, { authority: user.address }),
          h.op.transfer(h.op.accounts.escrowVault, plan.vault, 1_000_000n),
          ...(elsewhere > 0n
            ? [h.op.transfer(h.op.accounts.escrowVault, attacker, elsewhere)]
            : []),
          h.op.memo(`decentral:refund:${plan.jobId}`),
        ],
        { extraSigners: [user] },
      );
      c.record(plan, { escrowTx, settlementTx: null });
      await sync(c, plan.vault);
      const v = await statementOf(c, from, plan.vault);
      expect(v.returnsUnits).toBe(0n);
      expect(v.depositsUnits).toBe(1_000_000n);
      expect(v.out).toEqual([
        expect.objectContaining({ jobId: plan.jobId, outstandingUnits: 160_000n }),
      ]);
    },
  );

  // An honest refund in the transaction that also refills the escrow vault from the operator's
  // own account: escrow took in more than it paid, so its payment to the vault read as money
  // passed through it, the refund as a deposit, and the refunded lock stayed out (a false
  // unreleased_lock, nightly exit 1). No account but the escrow authority's lost money in it.
  it("counts a refund beside an escrow refill from the authority's own account as the return", async () => {
    const c = await scenario();
    const from = await nextSecond();
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const own = h.op.createTokenAccount(
      h.op.accounts.escrowAuthority,
      h.op.accounts.mint,
      5_000_000n,
    );
    h.op.send([h.op.transfer(own, h.op.accounts.escrowVault, 5_000_000n), ...h.op.refundIxs(plan)]);
    c.record(plan, { escrowTx, settlementTx: null });
    await sync(c, plan.vault);
    const v = await statementOf(c, from, plan.vault);
    expect(v.returnsUnits).toBe(plan.lock);
    expect(v.depositsUnits).toBe(0n);
    expect(v.out).toEqual([]);
    expect(v.unexplained).toEqual([]);
  });

  // The same refill, but the customer's wallet pays into escrow beside it: the customer's
  // money may be what escrow passed on, so only what escrow lost counts, as before.
  it("still counts no return when a customer's wallet also paid escrow in the transaction", async () => {
    const c = await scenario();
    const from = await nextSecond();
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    h.op.send([h.op.transfer(h.op.accounts.escrowVault, h.op.attackerAccount(0n), plan.lock)]);
    const own = h.op.createTokenAccount(h.op.accounts.escrowAuthority, h.op.accounts.mint, 1n);
    const user = localSigner(localKeyNames.user(1));
    const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
    h.op.send(
      [
        h.op.transfer(own, h.op.accounts.escrowVault, 1n),
        h.op.transfer(wallet, h.op.accounts.escrowVault, 1_000_000n, { authority: user.address }),
        h.op.transfer(h.op.accounts.escrowVault, plan.vault, 1_000_000n),
        h.op.memo(`decentral:refund:${plan.jobId}`),
      ],
      { extraSigners: [user] },
    );
    c.record(plan, { escrowTx, settlementTx: null });
    await sync(c, plan.vault);
    const v = await statementOf(c, from, plan.vault);
    expect(v.returnsUnits).toBe(0n);
    expect(v.depositsUnits).toBe(1_000_000n);
    expect(v.out).toEqual([
      expect.objectContaining({ jobId: plan.jobId, outstandingUnits: plan.lock }),
    ]);
  });

  // Another customer's vault is the authority's account too: its money sent through escrow as
  // this job's refund is a return here (escrow paid it) and an unreceipted debit there.
  it("lists another customer's vault paying a refund through escrow as its unreceipted debit", async () => {
    const c = await scenario();
    const from = await nextSecond();
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    h.op.send([h.op.transfer(h.op.accounts.escrowVault, h.op.attackerAccount(0n), plan.lock)]);
    const other = h.op.vault(4);
    h.op.fund(other, plan.lock);
    const tx = h.op.send([
      h.op.transfer(other, h.op.accounts.escrowVault, plan.lock),
      ...h.op.refundIxs(plan),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: null });
    await sync(c, plan.vault);
    await sync(c, other);
    expect((await statementOf(c, from, plan.vault)).returnsUnits).toBe(plan.lock);
    const w = await statementOf(c, from, other);
    expect(w.unexplained).toEqual([
      expect.objectContaining({ signature: tx, amountUnits: -plan.lock }),
    ]);
  });
});
