import { describe, expect, it } from "vitest";
import {
  AuditRecordSchema,
  JobSummarySchema,
  ReconciliationSchema,
} from "../src/api/openapi-schemas.js";
import { jobBody } from "../src/dashboard/job-page.js";
import { completeness } from "../src/dashboard/period-picker.js";
import type { DashboardSession } from "../src/dashboard/sessions.js";
import type { Store } from "../src/db/client.js";
import { createLogger } from "../src/log.js";
import type { SettlingEngine } from "../src/nightly/nightly-run.js";
import { runVerifyCommand } from "../src/nightly/verify-command.js";
import { auditRecord } from "../src/reports/audit-record.js";
import { listJobs } from "../src/reports/job-listing.js";
import { reconciliationReport, reconciliationToJson } from "../src/reports/reconciliation.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { reportsStore } from "../src/store/reports.js";
import { createVerifier } from "../src/verify/engine.js";
import { profileStatus } from "../src/verify/profile-status.js";
import { localnetProfile, type Profile, profileId } from "../src/verify/profiles.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

/**
 * A finance user who fixes a price in the profile expects every verdict to be the fixed
 * profile's. Each verdict says which profile wrote it, and a verifier started under another
 * profile judges the final verdicts of the old one again: before, a job verified under the old
 * price stayed `verified` for good, and `verify` counted it verified under the new profile.
 */

const log = createLogger({ level: "silent" });
const DAY = 86_400_000;
const explorer = { cluster: "mainnet-beta" } as const;

/** localnet with one more model priced: every job's verdict stays, the profile is another. */
const widened: Profile = {
  ...localnetProfile,
  pricing: {
    ...localnetProfile.pricing,
    "gemma-3-27b": { creditsPerRequest: 12, creditsPer1kTokens: 6, includedTokens: 500 },
  },
};

/** localnet with `qwen3-8b` (the harness's model) priced one credit more a request. */
const repriced: Profile = {
  ...localnetProfile,
  pricing: {
    ...localnetProfile.pricing,
    "qwen3-8b": { creditsPerRequest: 9, creditsPer1kTokens: 4, includedTokens: 500 },
  },
};

describe.each(dialects)("a changed profile on %s", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  const verifierOf = (store: Store, profile: Profile) =>
    createVerifier({ store, rpc: h.rpc, profile, log, options: quickVerifierOptions });

  /** The first step of the sweep of a verifier started under `profile` at `before`. */
  const sweepStep = (store: Store, profile: Profile, before: number) =>
    createJobQueueStore(store).reopenJudgedElsewhere({
      judgedBy: profileId(profile),
      before,
      after: null,
      scan: 100,
      limit: 100,
      filter: null,
      t: Date.now(),
    });

  /** Money the report of the day counts for the store's jobs. */
  async function moneyOf(store: Store) {
    const now = Date.now();
    const [sums] = await reportsStore(store).groupSums({
      from: now - DAY,
      to: now + DAY,
      groupBy: "key",
    });
    return sums?.sums;
  }

  it("a job verified under localnet, the price then edited, is judged again by `verify` under the new price", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 1 });
    const jobId = c.record(plan, h.op.honestJob(plan));
    await c.verify();
    const before = await auditRecord(c.store, jobId, explorer);
    expect(before).toMatchObject({
      verdict: "verified",
      verdictProfile: profileId(localnetProfile),
    });
    const money = await moneyOf(c.store);

    // `verify` started under the edited profile.
    const summary = await verifierOf(c.store, repriced).runUntilSettled({}, { timeoutMs: 20_000 });
    expect(summary).toMatchObject({ status: "completed", rejudged: 1 });
    expect(await c.outcome(jobId)).toEqual({
      verdict: "discrepancy",
      failing: ["charge.matches_price"],
    });
    const after = await auditRecord(c.store, jobId, explorer);
    expect(after?.verdictProfile).toBe(profileId(repriced));
    expect(profileId(repriced)).not.toBe(profileId(localnetProfile));
    // The report's money is what moved on chain, whichever profile judged it.
    const moved = await moneyOf(c.store);
    const movedKeys = [
      "charged_units",
      "escrowed_units",
      "worker_paid_units",
      "treasury_paid_units",
      "refunded_units",
      "fees_lamports",
    ];
    for (const key of movedKeys) expect(moved?.[key], key).toBe(money?.[key]);
    expect(moved?.charged_units).toBe(plan.charge);
    // Judged again, the job is a discrepancy: its money is now counted as disputed.
    expect(moved?.disputed_charged_units).toBe(plan.charge);
    expect(
      await createJobQueueStore(c.store).countJudgedElsewhere({}, profileId(repriced)),
    ).toEqual([]);

    // Started again under the same profile: nothing to judge again.
    const again = await verifierOf(c.store, repriced).runUntilSettled({}, { timeoutMs: 20_000 });
    expect(again.rejudged).toBe(0);
  }, 60_000);

  it("`serve` started under the edited profile judges the old verdicts again", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 2 });
    const jobId = c.record(plan, h.op.honestJob(plan));
    await c.verify();
    expect((await c.outcome(jobId)).verdict).toBe("verified");

    const serve = verifierOf(c.store, repriced);
    serve.start();
    try {
      await expect
        .poll(async () => (await auditRecord(c.store, jobId, explorer))?.verdictProfile, {
          timeout: 20_000,
        })
        .toBe(profileId(repriced));
    } finally {
      await serve.stop();
    }
    expect(await c.outcome(jobId)).toEqual({
      verdict: "discrepancy",
      failing: ["charge.matches_price"],
    });
  }, 60_000);

  it("a verdict another profile writes after the verifier started is left to it and counted apart", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 3 });
    const jobId = c.record(plan, h.op.honestJob(plan));
    await c.flush();
    // Two processes, two profiles: the repriced verifier starts first, then the old one judges.
    const queue = createJobQueueStore(c.store);
    const newer = verifierOf(c.store, repriced);
    const started = Date.now();
    await verifierOf(c.store, localnetProfile).runUntilSettled({}, { timeoutMs: 20_000 });
    expect(await queue.countJudgedElsewhere({}, profileId(repriced))).toEqual([
      { profile: profileId(localnetProfile), jobs: 1 },
    ]);
    // A sweep begun before that verdict leaves it: judged once, never back and forth.
    const slice = await sweepStep(c.store, repriced, started - 1);
    expect(slice).toEqual({ reopened: [], last: jobId, end: true, held: [] });
    expect((await c.outcome(jobId)).verdict).toBe("verified");
    // Its next start takes it.
    expect((await newer.runUntilSettled({}, { timeoutMs: 20_000 })).rejudged).toBe(1);
  }, 60_000);

  /** `verify --since 1h` over the store with `engine`, under `profile`: exit code and text. */
  async function verifyCommand(store: Store, engine: SettlingEngine, profile: Profile) {
    const out: string[] = [];
    const code = await runVerifyCommand(
      store,
      engine,
      { since: "1h", timeout: "30s" },
      { out: (t) => out.push(t), err: () => {}, progress: false },
      { profile: () => profileStatus(store, profile) },
    );
    return { code, text: out.join("") };
  }

  it("the nightly summary says how many jobs another profile had judged and were judged again", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 1 });
    c.record(plan, h.op.honestJob(plan));
    await c.verify();
    const { code, text } = await verifyCommand(c.store, verifierOf(c.store, widened), widened);
    expect(text).toContain("all 1 jobs verified");
    expect(text).toContain(
      `1 jobs judged under another profile, queued again and judged under ${profileId(widened)}`,
    );
    expect(code).toBe(0);
  }, 60_000);

  it("the nightly summary does not say a job queued again was judged under its profile when another profile judged it", async () => {
    // serve under the old profile took the job the run had queued again, and judged it first.
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 3 });
    c.record(plan, h.op.honestJob(plan));
    await c.verify();
    const engine: SettlingEngine = {
      async runUntilSettled(filter, opts) {
        const result = await verifierOf(c.store, widened).runUntilSettled(filter, opts);
        await verifierOf(c.store, localnetProfile).runUntilSettled({}, { timeoutMs: 20_000 });
        return result;
      },
    };
    const { code, text } = await verifyCommand(c.store, engine, widened);
    expect(text).toContain(
      `1 jobs judged under another profile, queued again to be judged under ${profileId(widened)}`,
    );
    expect(text).not.toContain("queued again and judged under");
    expect(code).toBe(2);
  }, 60_000);

  it("the nightly summary does not call verified under its profile a job another profile judged during the run", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 2 });
    const jobId = c.record(plan, h.op.honestJob(plan));
    await c.flush();
    const newer = verifierOf(c.store, widened);
    // The run under `widened` settles; a process under localnet, started meanwhile, judges
    // the job again before the summary is read.
    const engine: SettlingEngine = {
      async runUntilSettled(filter, opts) {
        const result = await newer.runUntilSettled(filter, opts);
        await verifierOf(c.store, localnetProfile).runUntilSettled({}, { timeoutMs: 20_000 });
        return result;
      },
    };
    const { code, text } = await verifyCommand(c.store, engine, widened);
    expect((await auditRecord(c.store, jobId, explorer))?.verdictProfile).toBe(
      profileId(localnetProfile),
    );
    expect(text).not.toContain("all 1 jobs verified");
    expect(text).toContain(
      `1 jobs judged under another profile than ${profileId(widened)} (${profileId(localnetProfile)}: 1)`,
    );
    expect(code).toBe(2);
  }, 60_000);

  /** The verdict as a build before profiles were recorded left it: `verdict_profile` null. */
  async function forgetProfile(store: Store, jobId: string) {
    const update = "UPDATE jobs SET verdict_profile = NULL WHERE job_id =";
    if (store.kind === "postgres") await store.pool.query(`${update} $1`, [jobId]);
    else store.sqlite.prepare(`${update} ?`).run(jobId);
  }

  it("a verdict written before profiles were recorded is judged again once under a changed profile", async () => {
    // Before, a job verified by an older build stayed `verified` for good after a price edit:
    // only verdicts naming another profile were swept.
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 1 });
    const jobId = c.record(plan, h.op.honestJob(plan));
    await c.verify();
    await forgetProfile(c.store, jobId);
    expect((await auditRecord(c.store, jobId, explorer))?.verdictProfile).toBeNull();

    const summary = await verifierOf(c.store, repriced).runUntilSettled({}, { timeoutMs: 20_000 });
    expect(summary.rejudged).toBe(1);
    expect(await c.outcome(jobId)).toEqual({
      verdict: "discrepancy",
      failing: ["charge.matches_price"],
    });
    expect((await auditRecord(c.store, jobId, explorer))?.verdictProfile).toBe(profileId(repriced));
    // Its profile now recorded, the next start under the same profile judges nothing again.
    const again = await verifierOf(c.store, repriced).runUntilSettled({}, { timeoutMs: 20_000 });
    expect(again.rejudged).toBe(0);
  }, 60_000);

  it("the nightly summary does not call verified a verdict of no recorded profile its run did not reach", async () => {
    // Before, the nightly counted only verdicts naming another profile: one written before
    // profiles were recorded, which the sweep judges again, was "verified" when the run ended
    // before the sweep reached it.
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 1 });
    const jobId = c.record(plan, h.op.honestJob(plan));
    await c.verify();
    await forgetProfile(c.store, jobId);
    expect(await createJobQueueStore(c.store).countJudgedElsewhere({}, profileId(widened))).toEqual(
      [{ profile: null, jobs: 1 }],
    );
    // The run ends before its sweep reached the job.
    const engine: SettlingEngine = { runUntilSettled: async () => ({ status: "completed" }) };
    const { code, text } = await verifyCommand(c.store, engine, widened);
    expect(text).not.toContain("all 1 jobs verified");
    expect(text).toContain(
      `1 jobs judged under another profile than ${profileId(widened)} (no profile recorded: 1)`,
    );
    expect(code).toBe(2);
  }, 60_000);

  it("a partially verified job sent back shows no unproven codes beside its open verdict", async () => {
    // Before, a reopen left `unproven`: GET /audit/:jobId listed the verdict it left's codes
    // beside `pending` as the current ones.
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 3 });
    const jobId = c.record(plan, h.op.honestJob(plan));
    await c.verify();
    const partial = `UPDATE jobs SET verdict = 'partially_verified', unproven = '["usage_unknown"]' WHERE job_id =`;
    if (c.store.kind === "postgres") await c.store.pool.query(`${partial} $1`, [jobId]);
    else c.store.sqlite.prepare(`${partial} ?`).run(jobId);
    expect((await auditRecord(c.store, jobId, explorer))?.unproven).toHaveLength(1);

    await sweepStep(c.store, repriced, Date.now());
    const rejudged = await auditRecord(c.store, jobId, explorer);
    expect(rejudged?.verdict).toBe("pending");
    expect(rejudged?.rejudging?.previousVerdict).toBe("partially_verified");
    expect(rejudged?.unproven).toEqual([]);
  }, 60_000);

  it("a job judged again shows the checks of the verdict it left apart from the current ones", async () => {
    // Before, `checks` kept the old run's rows while the job was judged again: a client could
    // not tell that they no longer stood behind any verdict.
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 2 });
    const jobId = c.record(plan, h.op.honestJob(plan));
    await c.verify();
    const judged = await auditRecord(c.store, jobId, explorer);
    expect(judged?.checks.length).toBeGreaterThan(0);
    expect(judged?.checks.some((ch) => ch.outcome === "fail")).toBe(false);
    await sweepStep(c.store, repriced, Date.now());

    const rejudged = await auditRecord(c.store, jobId, explorer);
    expect(rejudged?.verdict).toBe("pending");
    expect(rejudged?.checks).toEqual([]);
    expect(rejudged?.rejudging?.previousChecks).toEqual(judged?.checks);
    expect(AuditRecordSchema.safeParse(JSON.parse(JSON.stringify(rejudged))).success).toBe(true);
    const page = String(jobBody(rejudged!, { role: "read" } as DashboardSession, null));
    expect(page).toContain("No check of the new judgement has run yet.");
    expect(page).toContain(`${judged?.checks.length} checks of the verdict it left`);
    expect(page).toContain("no longer current");

    // Judged again: its checks are the new verdict's, nothing kept apart.
    await verifierOf(c.store, repriced).runUntilSettled({}, { timeoutMs: 20_000 });
    const after = await auditRecord(c.store, jobId, explorer);
    expect(after?.rejudging).toBeNull();
    expect(after?.checks.find((ch) => ch.name === "charge.matches_price")?.outcome).toBe("fail");
  }, 60_000);

  it("a job sent back shows the verdict it had and why, and reports say what their jobs not final were", async () => {
    // A job sent back showed only `pending` until judged again: verified money left the
    // figures with nothing saying why, and a job reopened by evidence of fraud looked the same
    // as one reopened by a profile edit.
    const c = await h.scenario();
    const [byAnswer, byProfile] = [1, 2].map((keyIndex) => h.op.plan({ keyIndex }));
    const txs = [byAnswer, byProfile].map((plan) => h.op.honestJob(plan!));
    c.record(byAnswer!, txs[0]!);
    c.record(byProfile!, txs[1]!);
    await c.verify();
    const judgedAt = (await auditRecord(c.store, byProfile!.jobId, explorer))?.verdictAt;
    // The jobs API then says the job charged twice what the chain shows: new evidence.
    c.jobsApi(byAnswer!.jobId, {
      status: "settled",
      credits_charged: Number(byAnswer!.charge / 10_000n) * 2,
      worker_address: byAnswer!.worker.address,
      on_chain: { escrow_tx: txs[0]!.escrowTx, settlement_tx: txs[0]!.settlementTx },
    });
    await c.flush();
    // And a verifier under the repriced profile starts: its sweep's first step.
    await sweepStep(c.store, repriced, Date.now());

    const evidence = await auditRecord(c.store, byAnswer!.jobId, explorer);
    expect(evidence).toMatchObject({
      verdict: "pending",
      rejudging: {
        previousVerdict: "verified",
        previousVerdictProfile: profileId(localnetProfile),
        reason: "evidence",
        message: expect.stringContaining("may not hold"),
      },
    });
    const swept = await auditRecord(c.store, byProfile!.jobId, explorer);
    expect(swept).toMatchObject({
      verdict: "pending",
      rejudging: { previousVerdict: "verified", previousVerdictAt: judgedAt, reason: "profile" },
    });
    expect(AuditRecordSchema.safeParse(JSON.parse(JSON.stringify(swept))).success).toBe(true);
    const listed = await listJobs(c.store, {}, { limit: 10 });
    const rows = listed.items.map((j) => [
      j.verdict,
      j.rejudging?.previousVerdict,
      j.rejudging?.reason,
    ]);
    expect(rows.map((r) => r.join(" ")).sort()).toEqual([
      "pending verified evidence",
      "pending verified profile",
    ]);
    expect(JobSummarySchema.safeParse(listed.items[0]).success).toBe(true);
    const period = { from: Date.now() - DAY, to: Date.now() + DAY, groupBy: "day" as const };
    const report = await reconciliationReport(c.store, period);
    expect(report.totals).toMatchObject({ verified: 0, pending: 2 });
    expect(report.rejudging).toMatchObject({
      jobs: 2,
      byPreviousVerdict: { verified: 2, discrepancy: 0 },
      byReason: { evidence: 1, profile: 1, reverify: 0, upgrade: 0 },
      previouslyVerifiedChargedUnits: byAnswer!.charge + byProfile!.charge,
    });
    // A worker's statement reads them as its sums do.
    const byWorker = await reconciliationReport(c.store, { ...period, worker: "nobody" });
    expect(byWorker.rejudging.jobs).toBe(0);
    const worker = listed.items[0]!.worker!;
    expect((await reconciliationReport(c.store, { ...period, worker })).rejudging.jobs).toBe(2);
    const json = reconciliationToJson(report);
    expect(ReconciliationSchema.safeParse(json).success).toBe(true);
    expect(json.rejudging.previouslyVerifiedChargedUnits).toBe(
      String(byAnswer!.charge + byProfile!.charge),
    );
    // The dashboard says so beside the figures and on the job's page.
    expect(String(completeness(report))).toContain(
      "2 jobs that had a final verdict are being judged again",
    );
    const page = String(jobBody(evidence!, { role: "read" } as DashboardSession, null));
    expect(page).toContain("Being judged again.");
    expect(page).toContain('data-rejudging="evidence"');

    // Judged again: the new verdicts stand alone.
    await verifierOf(c.store, repriced).runUntilSettled({}, { timeoutMs: 20_000 });
    expect((await c.outcome(byAnswer!.jobId)).failing).toContain("jobs_api.matches_chain");
    expect((await auditRecord(c.store, byAnswer!.jobId, explorer))?.rejudging).toBeNull();
    expect((await reconciliationReport(c.store, period)).rejudging.jobs).toBe(0);
  }, 60_000);
});
