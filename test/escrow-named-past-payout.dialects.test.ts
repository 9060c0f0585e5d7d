import { randomBytes } from "node:crypto";
import bs58 from "bs58";
import { describe, expect, it } from "vitest";
import { createEscrowScanner, NAMED_PAST_RETRY_MS } from "../src/ledger/escrow-scan.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { createLogger } from "../src/log.js";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { maxKeptSignatures } from "../src/store/receipt-rules.js";
import { chainTruth, moneyOf } from "./support/chain-truth.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { periodEdge } from "./support/ledger-periods.js";
import { type JobPlan, type Scenario, useAdversaryHarness } from "./support/operator.js";
import { withholdingNode } from "./support/rewriting-node.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A job keeps `maxKeptSignatures` further signatures on its row. An operator who names that
 * many harmless memo-only transactions for a job (conflicting receipts), then a payout out of
 * escrow with no memo, must not get the payout out of every job's figures: the reports' totals
 * read below what left escrow. The escrow scan reads what was named past the kept ones and
 * keeps each that paid out of escrow with the job.
 */

const hour = 3_600_000;

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** A report's money but fees (the harmless transactions' fees are no job's figure). */
  const moneyButFees = (row: Parameters<typeof moneyOf>[0]) => {
    const { feesLamports: _, ...money } = moneyOf(row);
    return money;
  };

  /**
   * One escrow scan, its pages of 50; `aheadMs`: its clock that far ahead of the machine's;
   * `rpc`: the node it asks (the harness's).
   */
  const scanEscrow = (c: Scenario, aheadMs = 0, rpc = h.rpc) =>
    createEscrowScanner({
      store: c.store,
      rpc,
      profile: c.profile,
      log: createLogger({ level: "silent" }),
      pageSize: 50,
      now: () => Date.now() + aheadMs,
    }).scanNew();

  /** `count` harmless memo-only transactions naming the job in their text. */
  const harmless = (plan: JobPlan, count: number, from = 0) =>
    Array.from(
      { length: count },
      (_, i) => h.op.send([h.op.memo(`hello ${from + i} ${plan.jobId}`)]).signature,
    );

  /** `count` signatures nothing lands (three zero bytes: `111…` sorts before real ones). */
  const madeUp = (count: number) =>
    Array.from({ length: count }, () =>
      bs58.encode(Buffer.concat([Buffer.alloc(3), randomBytes(61)])),
    );

  /**
   * `named` in conflicting receipts of `plan`, ten to a receipt (as a header naming several
   * steps brings them), as its `step` (the other step the job's own `txs`).
   */
  function nameInTens(
    c: Scenario,
    plan: JobPlan,
    txs: { escrowTx: string; settlementTx: string },
    step: "escrowTx" | "settlementTx",
    named: readonly string[],
  ) {
    for (let i = 0; i < named.length; i += 10) {
      const [first, ...others] = named.slice(i, i + 10);
      c.recordConflict(
        plan,
        { escrowTx: txs.escrowTx, settlementTx: txs.settlementTx, [step]: first! },
        others.length > 0 ? { otherSignatures: { [step]: others } } : {},
      );
    }
  }

  /**
   * The report's money but fees equals the chain's over `signatures`, but for `unreturned`
   * the chain counts refunded and the report reads unaccounted.
   */
  async function expectReportEqualsChain(
    c: Scenario,
    from: number,
    signatures: string[],
    unreturned = 0n,
  ) {
    const r = await reconciliationReport(c.store, { from, to: h.op.now() + hour, groupBy: "key" });
    const { feesLamports: _, ...chain } = chainTruth(h.op, signatures);
    expect(moneyButFees(r.totals)).toEqual({
      ...chain,
      refundedUnits: chain.refundedUnits - unreturned,
    });
  }

  it.each([
    ["conflicting receipts", "receipts"],
    ["jobs API answers naming it, then dropping it", "answers"],
  ] as const)(
    "counts a memo-less payout out of escrow named past the job's kept signatures by %s",
    async (_how, how) => {
      const c = (await h.scenario()).recordOnChainClock();
      const from = periodEdge(h);
      const plan = h.op.plan({ keyIndex: 3 });
      const txs = h.op.honestJob(plan);
      const junk = harmless(plan, maxKeptSignatures);
      const payout = h.op.send(h.op.payoutIxs(plan)).signature;
      c.record(plan, txs);
      if (how === "receipts") {
        for (const settlementTx of [...junk, payout]) {
          c.recordConflict(plan, { escrowTx: txs.escrowTx, settlementTx });
        }
      } else {
        // Each answer drops the one before: the junk, the payout, then the honest settlement.
        c.jobsApiSettlements(plan, txs.escrowTx, [...junk, payout]);
        c.honestJobsApi(plan, txs);
      }
      await c.flush();
      await h.finalized();
      expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual(junk);
      // Judged before the scan too: the scan's keep sends the job back.
      await c.verify();
      await scanEscrow(c);
      const [outcome] = await c.verdicts(plan.jobId);
      expect(outcome?.failing).toContain("signatures.explained");

      await expectReportEqualsChain(c, from, [txs.escrowTx, txs.settlementTx, payout]);
      expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([...junk, payout]);
    },
  );

  it("keeps the payout however many harmless transactions are named past the kept ones", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(plan);
    const kept = harmless(plan, maxKeptSignatures);
    // More than a scan reads of them at once (its page, 50 here): the payout may be in the next.
    const past = harmless(plan, 60, maxKeptSignatures);
    const payout = h.op.send(h.op.payoutIxs(plan)).signature;
    c.record(plan, txs);
    nameInTens(c, plan, txs, "settlementTx", [...kept, ...past, payout]);
    await c.flush();
    await h.finalized();
    await scanEscrow(c);
    await scanEscrow(c);
    // The payout alone kept, past the full list; every one held read and gone.
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([...kept, payout]);
    expect(await createLedgerStore(c.store).namedPastSteps(1000)).toEqual([]);
    await c.verify();
    await expectReportEqualsChain(c, from, [txs.escrowTx, txs.settlementTx, payout]);
  });

  it("keeps a refund the vault's ledger read under the job's memo past the kept ones", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refund = h.op.send(h.op.refundIxs(plan)).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    const junk = harmless(plan, maxKeptSignatures);
    c.record(plan, { escrowTx, settlementTx });
    c.jobsApiSettlements(plan, escrowTx, junk);
    c.honestJobsApi(plan, { escrowTx, settlementTx });
    await c.flush();
    await h.finalized();
    await createLedgerReader({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log: createLogger({ level: "silent" }),
      custody: { vaults: [plan.vault], byKey: {} },
    }).syncVault(plan.vault);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual(junk);
    await scanEscrow(c);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([...junk, refund]);
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.failing).toContain("signatures.explained");
    // Refunded whole, then settled: back into the vault 40,000 more than the lock took. No key
    // pins the vault, so the job's lock alone knows it for a customer's, and a return into it
    // counts up to what the lock took (the refund); the settlement's remainder beyond it reads
    // unaccounted, as it would into an account of the operator's.
    await expectReportEqualsChain(c, from, [escrowTx, refund, settlementTx], plan.remainder);
  });

  it("keeps a second lock with no memo out of the key's pinned vault, named past the kept ones", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    await c.pinKey(3);
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(plan);
    const junk = harmless(plan, maxKeptSignatures);
    // The lock's transfer alone: out of the customer's vault into escrow, no memo.
    const secondLock = h.op.send(h.op.lockIxs(plan).slice(0, 1)).signature;
    c.record(plan, txs);
    for (const escrowTx of [...junk, secondLock]) {
      c.recordConflict(plan, { escrowTx, settlementTx: txs.settlementTx });
    }
    await c.flush();
    await h.finalized();
    await scanEscrow(c);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([...junk, secondLock]);
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome?.failing).toContain("signatures.explained");
    await expectReportEqualsChain(c, from, [txs.escrowTx, txs.settlementTx, secondLock]);
  });

  /**
   * A job of key 3, the key's vault pinned first, with `maxKeptSignatures` harmless transactions
   * and a second lock out of the key's vault into escrow under the job's memo (the escrow
   * listing names it too); `kept` checks the lock was kept and the report equals the chain.
   */
  async function jobWithSecondLock() {
    const c = (await h.scenario()).recordOnChainClock();
    await c.pinKey(3);
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(plan);
    const junk = harmless(plan, maxKeptSignatures);
    const secondLock = h.op.send(h.op.lockIxs(plan)).signature;
    const kept = async () => {
      const job = await readJob(c.store, plan.jobId);
      expect(job?.conflictSignatures).toEqual([...junk, secondLock]);
      await c.verify();
      await expectReportEqualsChain(c, from, [txs.escrowTx, txs.settlementTx, secondLock]);
    };
    return { c, plan, txs, junk, secondLock, kept };
  }

  it("keeps a second lock under the job's memo named past behind more made-up names than a scan reads", async () => {
    const { c, plan, txs, junk, secondLock, kept } = await jobWithSecondLock();
    c.record(plan, txs);
    nameInTens(c, plan, txs, "escrowTx", [...junk, ...madeUp(60), secondLock]);
    await c.flush();
    await h.finalized();
    // The first scan's page (50) reads made-up names; its listing reads the lock under the
    // job's memo, which paid nothing out of escrow: not kept by that rule, and still held for
    // the second scan, which reads it by the named-past one.
    await scanEscrow(c);
    await scanEscrow(c);
    await kept();
  });

  it.each([
    ["named past the kept ones too", true, false],
    ["named past the kept ones too, the job judged before the scan", true, true],
    ["only listed", false, false],
  ])(
    "holds the job for a second payout under its memo no endpoint serves, %s, until one does",
    async (_how, namedPast, judgedFirst) => {
      const c = (await h.scenario()).recordOnChainClock();
      const from = periodEdge(h);
      const plan = h.op.plan({ keyIndex: 3 });
      const txs = h.op.honestJob(plan);
      const junk = harmless(plan, maxKeptSignatures);
      const second = h.op.send(h.op.settleIxs(plan)).signature;
      c.record(plan, txs);
      nameInTens(c, plan, txs, "settlementTx", namedPast ? [...junk, second] : junk);
      await c.flush();
      await h.finalized();
      const withheld = new Set([second]);
      const rpc = withholdingNode(h.rpc, withheld);
      if (judgedFirst) {
        // Judged on its kept signatures; the scan's named-past rule then finds the payout not
        // served before its listing does, and the listing's unread entry sends the job back.
        await c.verify();
        expect((await readJob(c.store, plan.jobId))?.verdict).toBe("discrepancy");
      }
      const unread = async () =>
        (
          (await createLedgerStore(c.store).escrowUnread(c.profile.escrowVault!, [plan.jobId])).get(
            plan.jobId,
          ) ?? []
        ).map((e) => e.signature);
      // Not served now, nor two hours on: the listing's entry is held, however long.
      await scanEscrow(c, 0, rpc);
      await scanEscrow(c, 2 * hour, rpc);
      expect(await unread()).toEqual([second]);
      // The job is not judged without it.
      await c.verifierOver(h.rpc).runUntilSettled({ jobIds: [plan.jobId] }, { timeoutMs: 1_000 });
      expect((await readJob(c.store, plan.jobId))?.verdict).toBe("awaiting_finality");
      withheld.clear();
      await scanEscrow(c, 2 * hour, rpc);
      await scanEscrow(c, 2 * hour, rpc);
      expect(await unread()).toEqual([]);
      expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([...junk, second]);
      const [outcome] = await c.verdicts(plan.jobId);
      expect(outcome?.failing).toContain("settlement.single");
      await expectReportEqualsChain(c, from, [txs.escrowTx, txs.settlementTx, second]);
    },
  );

  it("keeps a second lock named past the kept ones that the listing held first, its job not recorded yet", async () => {
    const { c, plan, txs, junk, secondLock, kept } = await jobWithSecondLock();
    await h.finalized();
    // The listing holds the job's entries, the lock among them, until the job is recorded.
    await scanEscrow(c);
    c.record(plan, txs);
    nameInTens(c, plan, txs, "escrowTx", [...junk, secondLock]);
    await c.flush();
    // The listing's rule keeps no lock (it paid nothing out of escrow); the named-past rule
    // keeps it, out of the key's pinned vault.
    await scanEscrow(c);
    await kept();
  });

  it("keeps nothing moved out of a vault the receipt declares that is not its key's pin", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    await c.pinKey(3);
    const plan = h.op.plan({ keyIndex: 3 });
    const other = h.op.plan({ keyIndex: 2 });
    const txs = h.op.honestJob(plan);
    const junk = harmless(plan, maxKeptSignatures);
    // Out of another key's vault (the operator declares it as this job's), into escrow.
    const moved = h.op.send(h.op.lockIxs(other, { amount: 1n }).slice(0, 1)).signature;
    c.record(plan, txs, { creditVault: other.vault });
    for (const escrowTx of [...junk, moved]) {
      c.recordConflict(plan, { escrowTx, settlementTx: txs.settlementTx });
    }
    await c.flush();
    await h.finalized();
    await scanEscrow(c);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual(junk);
    expect(await createLedgerStore(c.store).namedPastSteps(10)).toEqual([]);
  });

  it("asks a scanner's later rounds for a name past the kept ones that was not served only after a while", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const plan = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    nameInTens(c, plan, txs, "escrowTx", [...harmless(plan, maxKeptSignatures), ...madeUp(60)]);
    await c.flush();
    await h.finalized();
    let aheadMs = 0;
    const scanner = createEscrowScanner({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log: createLogger({ level: "silent" }),
      pageSize: 50,
      now: () => Date.now() + aheadMs,
    });
    const fetched: number[] = [];
    for (const ahead of [0, 0, 0, NAMED_PAST_RETRY_MS]) {
      aheadMs = ahead;
      fetched.push((await scanner.scanNew()).fetched);
    }
    // A page of 50 not served (and the first listing's entries naming no job: earlier cases'),
    // then the 10 left; none asked again until the wait is over (each round fetched its page of
    // 50 again for the hour they are held).
    expect(fetched[0]).toBeGreaterThanOrEqual(50);
    expect(fetched.slice(1)).toEqual([10, 0, 50]);
    expect(await createLedgerStore(c.store).namedPastSteps(1000)).toHaveLength(60);
  });

  it("reads a payout named with more made-up signatures than a scan reads, however late the scan", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const plan = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(plan);
    const kept = harmless(plan, maxKeptSignatures);
    const payout = h.op.send(h.op.payoutIxs(plan)).signature;
    // Signatures nothing lands, held first.
    c.record(plan, txs);
    nameInTens(c, plan, txs, "escrowTx", [...kept, ...madeUp(60), payout]);
    await c.flush();
    await h.finalized();
    // Two hours on: each page read goes, but none before it was read once.
    await scanEscrow(c, 2 * hour);
    await scanEscrow(c, 2 * hour);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([...kept, payout]);
    await scanEscrow(c, 2 * hour);
    expect(await createLedgerStore(c.store).namedPastSteps(1000)).toEqual([]);
  });
});
