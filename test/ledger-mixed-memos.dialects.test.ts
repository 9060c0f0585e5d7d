import { describe, expect, it } from "vitest";
import { buildStatement, findingCount } from "../src/ledger/statement.js";
import { ledgerFindingCount } from "../src/ledger/window-check.js";
import { summaryToText } from "../src/nightly/summary-format.js";
import { SETTLEMENT_CLOCK_SLACK_SECONDS } from "../src/store/ledger-rules.js";
import { finalizedPastOnClock } from "./support/chain-clock.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { nightlyOnChain, periodEdge, vaultReader } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A refund of a job's whole lock sent back to its vault under two memos, another job id's
 * first and the job's second, then the job settled as usual (its receipt and jobs API naming
 * only the lock and the settlement): the vault got back more than the lock. Only the first memo
 * was read, so the refund was nobody's return, the job passed and the statement found nothing.
 * With the job's memo alone it is kept with the job (`jobKeepingLine`); among others it must be
 * too, and money moved under memos naming several jobs is a finding of its own.
 */

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  const readerOf = (c: Scenario, vault: string) => vaultReader(h, c, vault);

  /** Reads the vault as the ledger round does. */
  async function sync(c: Scenario, vault: string) {
    await c.flush();
    await h.finalized();
    await readerOf(c, vault).syncVault(vault);
  }

  /**
   * A scenario whose receipts are dated by the chain's clock, which the tests move on to a
   * period's edge instead of waiting for it.
   */
  const scenario = async () => (await h.scenario()).recordOnChainClock();

  /** The next whole second, the chain's clock moved on to it: a period holding only what follows. */
  const nextSecond = () => periodEdge(h);

  /** The lock, the refund under `memos` and the settlement of a job of key 3, sent. */
  function refundedThenSettled(memos: (jobId: string) => string[]) {
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refund = h.op.send([
      h.op.transfer(h.op.accounts.escrowVault, plan.vault, plan.lock),
      ...memos(plan.jobId).map((m) => h.op.memo(m)),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    return { plan, txs: { escrowTx, settlementTx }, refund };
  }

  const twoJobs = (jobId: string) => ["decentral:refund:job_zzzz", `decentral:refund:${jobId}`];

  it.each([
    ["before", true],
    ["after", false],
  ])(
    "judges a refund whose first memo names another job with the job the second names, read %s the receipt",
    async (_, early) => {
      const c = await scenario();
      const from = nextSecond();
      const { plan, txs, refund } = refundedThenSettled(twoJobs);
      if (early) await sync(c, plan.vault);
      c.record(plan, txs);
      c.honestJobsApi(plan, txs);
      await h.finalized();
      await sync(c, plan.vault);
      expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([refund]);
      const verdicts = await c.verdicts(plan.jobId);
      expect(verdicts[0]?.verdict).toBe("discrepancy");
      expect(verdicts[0]?.failing).toEqual(expect.arrayContaining(["refund.not_settled"]));

      const statement = await buildStatement(
        c.store,
        { from, to: h.op.now() + 1_000, vault: plan.vault },
        { profile: c.profile, graceSeconds: 0 },
      );
      const v = statement.vaults[0]!;
      expect(v.mixedMemos).toEqual([
        expect.objectContaining({
          finding: "mixed_job_memos",
          signature: refund,
          amountUnits: plan.lock,
          named: [
            { kind: "refund", jobId: "job_zzzz" },
            { kind: "refund", jobId: plan.jobId },
          ],
          kind: "return",
          jobId: plan.jobId,
        }),
      ]);
      expect(findingCount(v)).toBeGreaterThan(0);
    },
  );

  it("keeps with the job money sent back under its escrow memo: no honest step, not a deposit", async () => {
    const c = await scenario();
    const { plan, txs, refund } = refundedThenSettled((jobId) => [`decentral:escrow:${jobId}`]);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    await h.finalized();
    await sync(c, plan.vault);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([refund]);
    const verdicts = await c.verdicts(plan.jobId);
    expect(verdicts[0]?.verdict).toBe("discrepancy");
    expect(verdicts[0]?.failing).toEqual(expect.arrayContaining(["escrow.single"]));
  });

  it("makes the nightly run exit 1 on such a refund", async () => {
    const c = await scenario();
    const from = nextSecond();
    const { plan, txs, refund } = refundedThenSettled(twoJobs);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    await c.flush();
    await h.finalized();
    // The run at the window's end, the chain's clock moved on past what the credits headers
    // of its last second span, as waiting for it would leave the chain.
    const to = h.op.now();
    await finalizedPastOnClock(h, to + SETTLEMENT_CLOCK_SLACK_SECONDS * 1000);
    const run = await nightlyOnChain(h, c, readerOf(c, plan.vault), () => h.op.now()).nightly(
      { from, to },
      15_000,
    );
    expect(run.exitCode).toBe(1);
    // Earlier tests' refunds to the same vault are findings too (history no run had judged).
    expect(run.ledger?.mixedJobMemos.filter((m) => !m.beforeWindow)).toEqual([
      expect.objectContaining({
        vault: plan.vault,
        signature: refund,
        named: ["refund:job_zzzz", `refund:${plan.jobId}`],
        jobId: plan.jobId,
      }),
    ]);
    expect(ledgerFindingCount(run.ledger!)).toBeGreaterThan(0);
    // The summary's count of ledger findings is the sum of the kinds it lists, this one among
    // them: the job's discrepancy alone made exit 1 with the movement left out of the count.
    const head = /ledger has (\d+) findings \(([^)]*)\)/.exec(summaryToText(run));
    expect(head?.[2]).toContain("movements under several jobs' memos");
    const listed = head![2]!.split(", ").reduce((sum, kind) => sum + Number.parseInt(kind, 10), 0);
    expect(Number(head![1])).toBe(listed);
    expect((await c.verdicts(plan.jobId))[0]?.verdict).toBe("discrepancy");
  });

  it("finds nothing in a refund naming its job twice, nor in an honest job", async () => {
    const c = await scenario();
    const from = nextSecond();
    const honest = h.op.plan({ keyIndex: 3 });
    const honestTxs = h.op.honestJob(honest);
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refund = h.op.send([
      ...h.op.refundIxs(plan),
      h.op.memo(`decentral:refund:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refund }, { httpStatus: 504 });
    c.record(honest, honestTxs);
    c.honestJobsApi(honest, honestTxs);
    await sync(c, plan.vault);
    const statement = await buildStatement(
      c.store,
      { from, to: h.op.now() + 1_000, vault: plan.vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    expect(statement.vaults[0]!.mixedMemos).toEqual([]);
    expect((await readJob(c.store, honest.jobId))?.conflictSignatures).toBeNull();
  });
});
