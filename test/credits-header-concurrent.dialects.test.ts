import { beforeAll, describe, expect, it } from "vitest";
import { buildStatement, findingCount, statementToCsv } from "../src/ledger/statement.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { reportsStore } from "../src/store/reports.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { blockTimeLeftOut, periodEdge, vaultReader } from "./support/ledger-periods.js";
import { type JobPlan, type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * A customer running jobs in parallel: another job's lock, or a top-up, lands between a job's
 * lock and its response. Block times are whole seconds 1-2 s off the recorder's clock, so when
 * the chain's clock runs ahead such a line is dated after the response's second, and nothing
 * on chain says whether it came before the response or after. An honest header that counts it
 * is no discrepancy: the job is `partially_verified` (`credits_header_order_unknown`), never
 * `verified`. A header naming a balance the vault held only past the clocks' bound, or never,
 * still fails, however the operator times its settlement.
 */
describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  let shared: { c: Scenario; vault: string };
  beforeAll(async () => {
    const c = await h.scenario();
    const { vault } = await c.pinKey(0);
    shared = { c, vault };
  });

  /** The block's scenario, a period starting now, the chain's clock ~50 ms into a whole second. */
  function start() {
    return { ...shared, from: periodEdge(h) };
  }

  /** The lock of a second job of the same key, landing now (the job is not this test's). */
  function concurrentLock() {
    return h.op.send(h.op.lockIxs(h.op.plan({ keyIndex: 0 }))).signature;
  }

  /**
   * Reads the vault once the chain has finalized past every time the job spans, then verifies:
   * the job's verdict and `credits.header`, its unproven codes and the statement's header
   * findings.
   */
  async function judge(c: Scenario, vault: string, from: number, plan: JobPlan) {
    h.op.advanceClock(4_000);
    await h.finalized();
    await vaultReader(h, c, vault).syncVault(vault);
    await c.verify();
    const statement = await buildStatement(
      c.store,
      { from, to: h.op.now() + 1_000, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    const audit = await reportsStore(c.store).auditRows(plan.jobId);
    return {
      verdict: audit?.job.verdict,
      unproven: audit?.job.unproven ?? [],
      check: await c.check(plan.jobId, "credits.header"),
      mismatches: statement.vaults[0]!.creditsHeaderMismatches.map((m) => m.jobId),
      undecided: statement.vaults[0]!.creditsHeaderUndecided.map((m) => m.jobId),
    };
  }

  /** Not verified, not a discrepancy: the order of the response and a line is not known. */
  function expectOrderUnknown(judged: Awaited<ReturnType<typeof judge>>) {
    expect(judged.check?.outcome).toBe("skip");
    expect(judged.verdict).toBe("partially_verified");
    expect(judged.unproven).toEqual(["credits_header_order_unknown"]);
    expect(judged.mismatches).toEqual([]);
    expect(judged.undecided).toEqual([]);
  }

  it("does not call a discrepancy an honest header counting another job's lock that landed after the settlement and before the response, the chain's clock 1 s ahead", async () => {
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    h.op.advanceClock(500);
    h.op.nextSlot();
    concurrentLock();
    // The operator reads the balance as it answers: after the other job's lock.
    const header = h.op.balance(vault);
    c.record(plan, txs, { creditsRemainingUnits: header }, "ingest", h.op.now() - 1_000);
    expectOrderUnknown(await judge(c, vault, from, plan));
  });

  it("does not call a discrepancy an honest header counting a top-up after the settlement and before the response, the chain's clock 2 s ahead", async () => {
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    h.op.advanceClock(900);
    h.op.nextSlot();
    h.op.fund(vault, 50_000n);
    const header = h.op.balance(vault);
    c.record(plan, txs, { creditsRemainingUnits: header }, "ingest", h.op.now() - 2_000);
    expectOrderUnknown(await judge(c, vault, from, plan));
  });

  it("does not call a discrepancy an honest header counting another job's lock before a settlement that sent nothing back, the chain's clock 1 s ahead, and decides it for good", async () => {
    // The job is charged its whole lock: its settlement has no line in the vault to place
    // the other lock before it, and the vault's history never lists it, so no line of it is
    // still to come that could end the span sooner.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0, completionTokens: 2_000 });
    expect(plan.remainder).toBe(0n);
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    h.op.nextSlot();
    concurrentLock();
    h.op.nextSlot();
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    const header = h.op.balance(vault);
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      h.op.now() - 1_000,
    );
    expectOrderUnknown(await judge(c, vault, from, plan));
    // The next round's review, the verifier having read the settlement, leaves the lock's
    // header decided: not judged again each ledger round.
    await vaultReader(h, c, vault).syncVault(vault);
    const open = await createLedgerStore(c.store).headerChecks(
      vault,
      Math.floor(from / 1000),
      Math.floor(h.op.now() / 1000) + 1,
    );
    expect(open.map((o) => o.jobId)).not.toContain(plan.jobId);
  });

  it("reopens a job verified before the ledger read its vault whose honest header counts a line that may have come after the response: partially_verified, not left verified", async () => {
    // The chain 1 s ahead, as in the first case; the verifier judges the job first (the check
    // waits for the ledger's read, a skip naming the vault), then the ledger's review finds
    // the header's balance only after the other lock: the job is judged again.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    h.op.advanceClock(500);
    h.op.nextSlot();
    concurrentLock();
    const header = h.op.balance(vault);
    c.record(plan, txs, { creditsRemainingUnits: header }, "ingest", h.op.now() - 1_000);
    await c.verify();
    expect(await c.check(plan.jobId, "credits.header")).toMatchObject({
      outcome: "skip",
      expected: { vault },
    });
    expectOrderUnknown(await judge(c, vault, from, plan));
  });

  it("does not verify a header of the balance after another job's lock that landed after the response, the operator holding its settlement back to land after that lock", async () => {
    // The operator answers, then lands the customer's next lock a second later and its own
    // settlement a second after that, within the clocks' bound: by slot order the lock comes
    // before the settlement, but the settlement's place says nothing of the response's.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const recordedAt = h.op.now();
    h.op.advanceClock(1_000);
    h.op.nextSlot();
    concurrentLock();
    // A balance the vault held only after the response.
    const header = h.op.balance(vault);
    h.op.advanceClock(1_000);
    h.op.nextSlot();
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      recordedAt,
    );
    expectOrderUnknown(await judge(c, vault, from, plan));
  });

  it("does not verify a header of the balance after a held-back settlement that landed after another job's lock dated past the response's second", async () => {
    // As above, the header naming the balance after the settlement, which counts the later lock.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const recordedAt = h.op.now();
    h.op.advanceClock(1_000);
    h.op.nextSlot();
    concurrentLock();
    h.op.nextSlot();
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    const header = h.op.balance(vault);
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      recordedAt,
    );
    expectOrderUnknown(await judge(c, vault, from, plan));
  });

  it("does not verify a header of the balance after another job's lock that landed after the response in the held-back settlement's own slot", async () => {
    // The lock and the settlement in one block, the lock first by its place in it.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const recordedAt = h.op.now();
    h.op.advanceClock(1_000);
    h.op.nextSlot();
    concurrentLock();
    const header = h.op.balance(vault);
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      recordedAt,
    );
    expectOrderUnknown(await judge(c, vault, from, plan));
  });

  it("does not let the ledger's review pass a held-back settlement's header the verifier left waiting: judged again, partially_verified", async () => {
    // The sequence above, the verifier judging the job before the ledger read its vault.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const recordedAt = h.op.now();
    h.op.advanceClock(1_000);
    h.op.nextSlot();
    concurrentLock();
    const header = h.op.balance(vault);
    h.op.advanceClock(1_000);
    h.op.nextSlot();
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      recordedAt,
    );
    await c.verify();
    expect(await c.check(plan.jobId, "credits.header")).toMatchObject({ outcome: "skip" });
    expectOrderUnknown(await judge(c, vault, from, plan));
  });

  it("passes and verifies an honest header of the balance after the job's own settlement dated 2 s after the response, no other line between", async () => {
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const recordedAt = h.op.now();
    h.op.advanceClock(2_000);
    h.op.nextSlot();
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    const header = h.op.balance(vault);
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      recordedAt,
    );
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("pass");
    expect(judged.verdict).toBe("verified");
    expect(judged.mismatches).toEqual([]);
  });

  it("passes and verifies an honest header counting another job's lock before the job's settlement, all dated up to the response's second", async () => {
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    h.op.nextSlot();
    concurrentLock();
    h.op.nextSlot();
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    const header = h.op.balance(vault);
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      h.op.now(),
    );
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("pass");
    expect(judged.verdict).toBe("verified");
    expect(judged.mismatches).toEqual([]);
  });

  it("does not call a discrepancy, nor verify, an honest header counting another job's lock the slot order puts before the job's settlement, the chain's clock 2 s ahead: the chain holds what a held-back settlement leaves", async () => {
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    h.op.nextSlot();
    concurrentLock();
    h.op.nextSlot();
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    const header = h.op.balance(vault);
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      h.op.now() - 2_000,
    );
    expectOrderUnknown(await judge(c, vault, from, plan));
  });

  it("fails a header of the balance after a top-up dated past the clocks' bound, though the operator held its settlement back to the bound's last second", async () => {
    // The settlement dated 2 s after the response's second (the most the clocks allow), a
    // top-up the second after: the settlement's timing cannot stretch the span past the bound.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const recordedAt = h.op.now();
    h.op.advanceClock(2_000);
    h.op.nextSlot();
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    h.op.advanceClock(1_000);
    h.op.nextSlot();
    h.op.fund(vault, 50_000n);
    const header = h.op.balance(vault);
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      recordedAt,
    );
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("fail");
    expect(judged.verdict).toBe("discrepancy");
    expect(judged.mismatches).toEqual([plan.jobId]);
  });

  /**
   * The job charged its whole lock (its settlement sends nothing back: no line of the vault),
   * another job's lock between the two, which the node serves with no block time; the header
   * the balance after that lock. `apartMs`: how long after the response the settlement lands.
   */
  async function wholeChargeAfterUndatedLock(apartMs: number) {
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0, completionTokens: 2_000 });
    expect(plan.remainder).toBe(0n);
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const recordedAt = h.op.now();
    h.op.nextSlot();
    const other = concurrentLock();
    const header = h.op.balance(vault);
    h.op.advanceClock(apartMs);
    h.op.nextSlot();
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(
      plan,
      { escrowTx, settlementTx },
      { creditsRemainingUnits: header },
      "ingest",
      recordedAt,
    );
    await h.finalized();
    await vaultReader(h, c, vault, blockTimeLeftOut(h, other)).syncVault(vault);
    return judge(c, vault, from, plan);
  }

  it("verifies an honest header counting another job's lock the node left undated, the slot of a settlement that sent nothing back, dated in the response's second, placing it before", async () => {
    // Its slot below the settlement's, the lock is dated no later than it: before the response.
    // No line of the vault placed it, and the span ended at it: a false discrepancy.
    const judged = await wholeChargeAfterUndatedLock(0);
    expect(judged.check?.outcome).toBe("pass");
    expect(judged.verdict).toBe("verified");
    expect(judged.mismatches).toEqual([]);
  });

  it("does not verify a header counting another job's undated lock before a settlement that sent nothing back, held back past the response's second", async () => {
    // The settlement dated 2 s after the response's second places the lock in the span, not
    // before the response: it may have landed after it.
    expectOrderUnknown(await wholeChargeAfterUndatedLock(2_000));
  });

  /**
   * An honest job settled with money back, then another job's lock before its response, which
   * the node serves with no block time: the header the balance after that lock (`off`: added to
   * it, a false one). `verifyFirst`: the verifier judges the job before the ledger reads the
   * vault, so the ledger's review judges it again.
   */
  async function undatedLockAfterSettlement(off: bigint, verifyFirst: boolean) {
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    h.op.nextSlot();
    const other = concurrentLock();
    const header = h.op.balance(vault) + off;
    c.record(plan, txs, { creditsRemainingUnits: header }, "ingest", h.op.now());
    if (verifyFirst) await c.verify();
    await h.finalized();
    await vaultReader(h, c, vault, blockTimeLeftOut(h, other)).syncVault(vault);
    return { plan, judged: await judge(c, vault, from, plan) };
  }

  it.each([false, true])(
    "does not call a discrepancy an honest header counting another job's lock after the job's settlement that the node left undated (verifier first: %s)",
    async (verifyFirst) => {
      // Undated, the lock may have landed before the response or after it: no line of the
      // vault dated past the response's second ends the span before it.
      const { judged } = await undatedLockAfterSettlement(0n, verifyFirst);
      expect(judged.check?.outcome).toBe("skip");
      expect(judged.verdict).toBe("partially_verified");
      expect(judged.unproven).toContain("credits_header_order_unknown");
      expect(judged.mismatches).toEqual([]);
    },
  );

  it.each([false, true])(
    "fails a header one base unit above the balance after another job's lock the node left undated (verifier first: %s)",
    async (verifyFirst) => {
      const { plan, judged } = await undatedLockAfterSettlement(1n, verifyFirst);
      expect(judged.check?.outcome).toBe("fail");
      expect(judged.verdict).toBe("discrepancy");
      expect(judged.mismatches).toEqual([plan.jobId]);
    },
  );

  it("does not call a discrepancy an honest header of the balance after the job's own settlement that the node left undated", async () => {
    // The settlement's line undated, nothing places it before the response: not verified,
    // and no mismatch either.
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    const header = h.op.balance(vault);
    c.record(plan, txs, { creditsRemainingUnits: header }, "ingest", h.op.now());
    await h.finalized();
    await vaultReader(h, c, vault, blockTimeLeftOut(h, txs.settlementTx)).syncVault(vault);
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("skip");
    expect(judged.verdict).toBe("partially_verified");
    expect(judged.unproven).toContain("credits_header_order_unknown");
    expect(judged.mismatches).toEqual([]);
  });

  it("lists a header matching no balance read so far apart from the mismatches while its span is not read in full, still a finding, then a mismatch once it is", async () => {
    // Read before the chain finalized past the response's second and the clocks' slack: a line
    // dated then may still be listed. A finance user reading the statement must tell that from
    // a header proven false; the nightly run still counts it (the next read decides).
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    const header = h.op.balance(vault) + 1n;
    c.record(plan, txs, { creditsRemainingUnits: header }, "ingest", h.op.now());
    await h.finalized();
    await vaultReader(h, c, vault).syncVault(vault);
    const early = await buildStatement(
      c.store,
      { from, to: h.op.now() + 1_000, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    const v = early.vaults[0]!;
    expect(v.creditsHeaderMismatches).toEqual([]);
    expect(v.creditsHeaderUndecided).toEqual([
      expect.objectContaining({
        finding: "credits_header_undecided",
        jobId: plan.jobId,
        headerUnits: header,
      }),
    ]);
    expect(v.counts).toMatchObject({ creditsHeaderMismatches: 0, creditsHeaderUndecided: 1 });
    expect(findingCount(v)).toBeGreaterThan(0);
    expect(statementToCsv(early)).toContain(`credits_header_undecided,${vault},`);
    const judged = await judge(c, vault, from, plan);
    expect(judged.mismatches).toEqual([plan.jobId]);
    expect(judged.undecided).toEqual([]);
  });

  it("fails a header one base unit above the balance after another job's lock within the clocks' bound", async () => {
    const { c, vault, from } = start();
    const plan = h.op.plan({ keyIndex: 0 });
    const txs = h.op.honestJob(plan);
    h.op.advanceClock(500);
    h.op.nextSlot();
    concurrentLock();
    const header = h.op.balance(vault) + 1n;
    c.record(plan, txs, { creditsRemainingUnits: header }, "ingest", h.op.now() - 1_000);
    const judged = await judge(c, vault, from, plan);
    expect(judged.check?.outcome).toBe("fail");
    expect(judged.verdict).toBe("discrepancy");
    expect(judged.mismatches).toEqual([plan.jobId]);
  });
});
