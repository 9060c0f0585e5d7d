import { describe, expect, it } from "vitest";
import { createEscrowScanner } from "../src/ledger/escrow-scan.js";
import { createLogger } from "../src/log.js";
import { summaryToText } from "../src/nightly/summary-format.js";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { clockPause } from "./support/chain-clock.js";
import { nightlyOnChain, periodEdge } from "./support/ledger-periods.js";
import { nightlyAfter, nightStart } from "./support/nightly-window.js";
import {
  discrepancy,
  type JobPlan,
  type Scenario,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";

/**
 * Round 16: a job's settlement paid out of escrow a second time under its settle memo where the
 * nightly run's escrow scan did not look. After the job's own night was judged (the run that
 * found it counted only its own window's jobs: exit 0, the job left pending); before a receipt
 * imported, or dated back by its completion's `created`, hours after the job (the scan read
 * back from the window's start only); an hour before the job ran, under a job id the operator
 * picked ahead (serve's scan holds an entry for a job not recorded yet an hour, and the nightly
 * read back 17 minutes before its window).
 */

const log = createLogger({ level: "silent" });
const h = useAdversaryHarness();
const now = () => h.op.now();

/** A job whose lock is charged in full (nothing returned), so each payout is the whole lock. */
const wholeLockJob = (keyIndex: number): JobPlan => {
  const plan = h.op.plan({ keyIndex, maxTokens: 300, completionTokens: 300 });
  expect(plan.remainder).toBe(0n);
  return plan;
};

/**
 * A nightly run over [from, to) once the chain is final past `to`, on the chain's clock that dates
 * the scenario's receipts (`nightlyAfter`).
 */
const nightOf = (c: Scenario, vaults: string[], from: number, to: number) =>
  nightlyAfter(h, c, { vaults, from, to });

describe("a second payout made after the job's night was judged", () => {
  it("fails the run that finds it, which judges the earlier window's job and names it", async () => {
    const c = await h.scenario();
    c.recordOnChainClock();
    const from1 = await nightStart(h, c);
    const plan = wholeLockJob(2);
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    // A stream: its settlement named by the jobs API.
    c.record(plan, { escrowTx, settlementTx: null }, { stream: true });
    c.honestJobsApi(plan, { escrowTx, settlementTx: first });
    await c.flush();
    const to1 = Math.ceil((h.op.now() + 1) / 1000) * 1000;
    const night1 = await nightOf(c, [plan.vault], from1, to1);
    expect(night1).toMatchObject({ exitCode: 0 });
    expect(await c.outcome(plan.jobId)).toEqual(verified);

    // The next night: the same lock paid out again under the job's settle memo, beside an
    // honest job of that night.
    const from2 = await nightStart(h, c);
    const second = h.op.send(h.op.settleIxs(plan)).signature;
    const other = h.op.plan({ keyIndex: 2 });
    const txs = h.op.honestJob(other);
    c.record(other, txs);
    c.honestJobsApi(other, txs);
    await c.flush();
    const to2 = Math.ceil((h.op.now() + 1) / 1000) * 1000;
    const night2 = await nightOf(c, [plan.vault], from2, to2);
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
    expect(night2).toMatchObject({
      outcome: "discrepancies",
      exitCode: 1,
      total: 1,
      earlierJobs: [
        { jobId: plan.jobId, verdict: "discrepancy", failingChecks: ["settlement.single"] },
      ],
    });
    expect(night2.byVerdict.verified).toBe(1);
    const text = summaryToText(night2);
    expect(text).toContain("1 jobs of earlier windows NOT verified");
    expect(text).toContain(`${plan.jobId} (an earlier window's, sent back by the escrow scan)`);
    expect(second).not.toBe(first);
  });
});

describe("a job recorded hours after it ran, paid out twice before it was recorded", () => {
  const paidTwice = (keyIndex: number) => {
    const plan = wholeLockJob(keyIndex);
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const lockedAt = now();
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    h.op.send(h.op.settleIxs(plan));
    return { plan, escrowTx, lockedAt, first };
  };

  it("is found by the run of the window its imported receipt was recorded in", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    await c.pinKey(2);
    const from0 = periodEdge(h);
    const { plan, escrowTx, lockedAt, first } = paidTwice(2);
    const to0 = periodEdge(h);
    const { nightly } = nightlyOnChain(h, c, undefined, now, clockPause(h));
    // The lock is no recorded job's yet: the night's run names it.
    expect(await nightly({ from: from0, to: to0 })).toMatchObject({ exitCode: 1 });

    // Two hours on, the receipt is imported (a recorder outage's backlog), dated at the lock.
    h.op.advanceClock(2 * 3_600_000);
    h.op.nextSlot();
    const from1 = periodEdge(h);
    c.record(
      plan,
      { escrowTx, settlementTx: null },
      { stream: true, createdAt: lockedAt, respondedAt: lockedAt } as never,
      "import",
      now(),
    );
    c.honestJobsApi(plan, { escrowTx, settlementTx: first });
    await c.flush();
    const run = await nightly({ from: from1, to: periodEdge(h) });
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
    expect(run).toMatchObject({ outcome: "discrepancies", exitCode: 1, total: 1 });
  });

  it("is found, and reported as paid twice, when the operator's completion dates it back", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from0 = periodEdge(h);
    // The key's first job: its vault is read by no run yet, so the lock is nobody's finding.
    const { plan, escrowTx, lockedAt, first } = paidTwice(3);
    const to0 = periodEdge(h);
    const { nightly } = nightlyOnChain(h, c, undefined, now, clockPause(h));
    expect(await nightly({ from: from0, to: to0 })).toMatchObject({ outcome: "no_jobs" });

    // Two hours on, the operator answers the key's request with that job, the completion's
    // `created` (its date, as ingest stores a `_decentral` completion) at the lock.
    h.op.advanceClock(2 * 3_600_000);
    h.op.nextSlot();
    const from1 = periodEdge(h);
    c.record(
      plan,
      { escrowTx, settlementTx: first },
      { createdAt: lockedAt, respondedAt: null } as never,
      "ingest",
      now(),
    );
    await c.flush();
    const run = await nightly({ from: from1, to: periodEdge(h) });
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
    expect(run).toMatchObject({ outcome: "discrepancies", exitCode: 1, total: 1 });
    // The report's totals are the money that moved: both payouts.
    const { totals } = await reconciliationReport(c.store, {
      from: from0 - 3_600_000,
      to: now() + 3_600_000,
      groupBy: "day",
    });
    expect(totals).toMatchObject({
      workerPaidUnits: 2n * plan.workerShare,
      treasuryPaidUnits: 2n * plan.treasuryShare,
    });
  });
});

describe("a job's settlement paid out of escrow before the job ran", () => {
  it("is found by the nightly run over the job's window when made an hour before it", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    await c.pinKey(2);
    const scanner = createEscrowScanner({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log,
      now,
    });
    await h.finalized();
    await scanner.scanNew();

    // The operator picks the job's id, and pays its charge out under its settle memo first.
    const plan = wholeLockJob(2);
    h.op.send(h.op.settleIxs(plan));
    await h.finalized();
    await scanner.scanNew();
    // 61 minutes on: serve's scan let go of the entry, held an hour for a job not recorded yet.
    h.op.advanceClock(61 * 60_000);
    h.op.nextSlot();
    await h.finalized();
    await scanner.scanNew();

    const from = periodEdge(h);
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    await c.flush();
    await h.finalized();
    expect((await scanner.scanNew()).kept).toEqual([]);
    const { nightly } = nightlyOnChain(h, c, undefined, now, clockPause(h));
    const run = await nightly({ from, to: periodEdge(h) });
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
    expect(run).toMatchObject({ outcome: "discrepancies", exitCode: 1 });
  });
});
