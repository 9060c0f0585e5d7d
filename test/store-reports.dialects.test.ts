import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { verdicts } from "../src/db/schema.js";
import { auditRecord } from "../src/reports/audit-record.js";
import { listDiscrepancies, listJobs } from "../src/reports/job-listing.js";
import {
  countJobsByVerdict,
  dataCompleteUntil,
  groupByValues,
  reconciliationReport,
} from "../src/reports/reconciliation.js";
import { recomputeRollups } from "../src/reports/rollup-recompute.js";
import { createReportsStore } from "../src/store/reports.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import {
  dropRollups,
  jobRow,
  seedMixed,
  seedRows,
  signatureOf,
  updateJobs,
} from "./support/seed-reports.js";

const DAY = 86_400_000;
const HOUR = 3_600_000;
const start = Date.UTC(2026, 10, 1);
const explorer = { cluster: "devnet" } as const;

/** Whole days, a period with ragged ends (partial hours and whole hours of partial days), one day inside an hour. */
const periods = {
  month: { from: start - 3 * DAY, to: start + 27 * DAY },
  ragged: { from: start + 2 * HOUR + 17 * 60_000, to: start + 4 * DAY + 7 * HOUR + 1234 },
  inside: { from: start + DAY + 10 * 60_000, to: start + DAY + 50 * 60_000 },
};

/** A report's figures without the instants it was made at. */
async function figures(store: Store, query: Parameters<typeof reconciliationReport>[1]) {
  const report = await reconciliationReport(store, query, () => 0);
  return { groups: report.groups, totals: report.totals };
}

/** A job with two conflicting receipts, four checks (two failing) and both transactions stored. */
async function seedAudited(store: Store) {
  const jobId = "job_audited";
  await seedRows(store, "jobs", [
    jobRow({
      jobId,
      createdAt: start + 5 * HOUR,
      verdict: "discrepancy",
      tags: { service: "search", team: "ml" },
      unproven: ["usage_unknown"],
      stream: true,
      chargedUnits: 9_007_199_254_740_991n,
      conflictSignatures: [signatureOf("other")],
      lastError: "rpc https://user:secret@rpc.example/ timed out",
    }),
  ]);
  await seedRows(store, "receiptConflicts", [
    {
      jobId,
      source: "ingest",
      receipt: { worker: "X", amounts: { charged: "5" } },
      differences: ["worker"],
      receivedAt: start + 6 * HOUR,
    },
    {
      jobId,
      source: "import",
      receipt: { settlementTx: "Y" },
      differences: ["settlementTx"],
      receivedAt: start + 7 * HOUR,
    },
  ]);
  await seedRows(store, "checkResults", [
    {
      jobId,
      name: "settlement.split",
      outcome: "fail",
      reason: "split off",
      expected: { worker: "75" },
      actual: { worker: "70", extra: [1, 2] },
      checkedAt: start + 8 * HOUR,
      runId: 3,
    },
    { jobId, name: "escrow.exists", outcome: "pass", checkedAt: start + 8 * HOUR },
    {
      jobId,
      name: "jobs_api.matches_receipt",
      outcome: "fail",
      reason: "api differs",
      expected: "a",
      actual: null,
      checkedAt: start + 8 * HOUR,
    },
    { jobId, name: "Settlement.case", outcome: "skip", checkedAt: start + 8 * HOUR },
  ]);
  const tx = (seed: string, slot: number) => ({
    signature: signatureOf(`${jobId}:${seed}`),
    state: "finalized" as const,
    commitment: "finalized" as const,
    slot,
    blockTime: 1_790_000_000 + slot,
    feeLamports: 5_000n,
    succeeded: true,
    err: null,
    facts: {
      tokenChanges: [
        { account: "A", owner: "O", mint: "M", preUnits: "10", postUnits: "4", deltaUnits: "-6" },
      ],
      memo: "escrow job",
    },
    firstSeenAt: start + 6 * HOUR,
    fetchedAt: start + 6 * HOUR + 1,
  });
  await seedRows(store, "chainTransactions", [tx("escrow", 1000), tx("settle", 1200)]);
  return jobId;
}

/** Walks every page of the job listing both ways, three at a time, and expects `ascending`. */
async function expectKeysetWalk(store: Store, ascending: string[]) {
  for (const order of ["asc", "desc"] as const) {
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await listJobs(store, {}, { limit: 3, order, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((j) => j.jobId));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(seen, order).toEqual(order === "asc" ? ascending : [...ascending].reverse());
  }
}

describe.each(dialects)("%s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("reconciles from the rollups exactly as from the jobs, every groupBy, whole and ragged periods, one worker", async () => {
    const store = await stores.open();
    await seedMixed(store, 7, 700, start, 6);
    for (const [name, period] of Object.entries(periods)) {
      for (const groupBy of groupByValues) {
        for (const worker of [undefined, "WorkerB2222222222222222222222"]) {
          const query = { ...period, groupBy, ...(worker ? { worker } : {}) };
          const rolled = await figures(store, query);
          const scratch = await figures(store, { ...query, source: "jobs" });
          expect(rolled, `${name} by ${groupBy}${worker ? " for one worker" : ""}`).toEqual(
            scratch,
          );
          if (name !== "inside") expect(rolled.totals.jobs).toBeGreaterThan(0);
        }
      }
    }
    const check = await recomputeRollups(store);
    expect(check.differenceCount).toBe(0);
    expect(check.days).toBeGreaterThan(5);
  });

  it("reads the jobs while the rollups still owe a backfill", async () => {
    const store = await stores.open();
    await seedMixed(store, 11, 200, start, 3);
    const query = { ...periods.ragged, groupBy: "worker" as const };
    const before = await figures(store, query);
    const counted = await countJobsByVerdict(store, periods.month.from, periods.month.to);
    expect(before.totals.jobs).toBeGreaterThan(0);
    await dropRollups(store);
    expect(await createReportsStore(store).rollupsComplete()).toBe(false);
    expect(await figures(store, query)).toEqual(before);
    expect(await figures(store, { ...query, groupBy: "day" })).toEqual(
      await figures(store, { ...query, groupBy: "day", source: "jobs" }),
    );
    expect(await countJobsByVerdict(store, periods.month.from, periods.month.to)).toEqual(counted);
  });

  it("keeps money as exact bigints and groups absent, empty and named dimensions apart", async () => {
    const store = await stores.open();
    const big = 4_000_000_000_000_000_123n;
    await seedRows(store, "jobs", [
      jobRow({
        jobId: "a",
        createdAt: start + HOUR,
        model: "m",
        chargedUnits: big,
        escrowedUnits: big,
      }),
      jobRow({
        jobId: "b",
        createdAt: start + 2 * HOUR + 5,
        model: "m",
        chargedUnits: big,
        escrowedUnits: big,
      }),
      jobRow({ jobId: "c", createdAt: start + 3 * HOUR, model: "", chargedUnits: 1n }),
      jobRow({
        jobId: "d",
        createdAt: start + 4 * HOUR,
        model: null,
        chargedUnits: 2n,
        verdict: "dropped",
      }),
      jobRow({ jobId: "e", createdAt: start + 4 * HOUR, model: null, verdict: "pending" }),
    ]);
    const report = await reconciliationReport(store, {
      from: start,
      to: start + DAY,
      groupBy: "model",
    });
    expect(report.groups.map((g) => [g.group, g.jobs, g.chargedUnits])).toEqual([
      [null, 2, 2n],
      ["", 1, 1n],
      ["m", 2, 2n * big],
    ]);
    expect(report.totals.chargedUnits).toBe(2n * big + 3n);
    expect(report.totals.disputedChargedUnits).toBe(2n);
    expect(report.totals.pending).toBe(1);
    // A ragged period cuts through the hour of job b: it is read from the jobs.
    const ragged = await reconciliationReport(store, {
      from: start + 30 * 60_000,
      to: start + 2 * HOUR + 6,
      groupBy: "day",
    });
    expect(ragged.groups).toEqual([
      expect.objectContaining({ group: "2026-11-01", jobs: 2, chargedUnits: 2n * big }),
    ]);
  });

  it("reports a payout of a receipt without a worker under the worker the jobs API named", async () => {
    const store = await stores.open();
    const paid = "WorkerPaid111111111111111111111";
    const named = "WorkerNamed22222222222222222222";
    // Figures of jobRow: 80,000 charged, 60,000 to the worker. Days 0 and 2 whole, day 1 cut
    // by the ragged period's edges: rollup days, rollup hours and partial hours all count.
    const at = [start + 3 * HOUR, start + 2 * HOUR + 20 * 60_000, start + 2 * DAY + HOUR];
    await seedRows(store, "jobs", [
      ...at.map((createdAt, i) =>
        jobRow({ jobId: `unnamed_${i}`, createdAt, worker: null, apiWorker: paid }),
      ),
      // Named by the receipt: its own worker, whatever the jobs API says.
      jobRow({ jobId: "named", createdAt: start + 3 * HOUR, worker: named, apiWorker: paid }),
      jobRow({ jobId: "nobody", createdAt: start + 3 * HOUR, worker: null, apiWorker: null }),
      // The jobs API answers after the receipt was recorded and judged.
      jobRow({ jobId: "late_answer", createdAt: start + 4 * HOUR, worker: null, apiWorker: null }),
    ]);
    await updateJobs(store, ["late_answer"], { apiWorker: paid });
    for (const period of [periods.month, periods.ragged]) {
      const query = { ...period, groupBy: "worker" as const };
      const rolled = await figures(store, query);
      expect(rolled).toEqual(await figures(store, { ...query, source: "jobs" }));
      const inPeriod = (createdAt: number) => createdAt >= period.from && createdAt < period.to;
      const paidJobs = [...at, start + 4 * HOUR].filter(inPeriod).length;
      expect(rolled.groups.map((g) => [g.group, g.jobs, g.workerPaidUnits])).toEqual([
        [null, 1, 60_000n],
        [named, 1, 60_000n],
        [paid, paidJobs, BigInt(paidJobs) * 60_000n],
      ]);
      // The statement of the worker paid, by day and by model.
      for (const groupBy of ["day", "model"] as const) {
        const one = { ...period, groupBy, worker: paid };
        const statement = await figures(store, one);
        expect(statement.totals.workerPaidUnits).toBe(BigInt(paidJobs) * 60_000n);
        expect(statement).toEqual(await figures(store, { ...one, source: "jobs" }));
      }
    }
    const listed = await listJobs(store, { worker: paid }, { limit: 10, order: "asc" });
    expect(listed.items.map((j) => j.jobId).sort()).toEqual(
      ["late_answer", "unnamed_0", "unnamed_1", "unnamed_2"].sort(),
    );
    expect((await recomputeRollups(store)).differenceCount).toBe(0);
  });

  it("counts jobs by verdict from whole days, whole hours and partial hours, and says until when data is complete", async () => {
    const store = await stores.open();
    const rows = [
      ...Array.from({ length: 3 }, (_, i) =>
        jobRow({ jobId: `v${i}`, createdAt: start + DAY + i * HOUR, verdict: "verified" }),
      ),
      jobRow({ jobId: "p0", createdAt: start + 2 * DAY + 90 * 60_000, verdict: "pending" }),
      jobRow({
        jobId: "p1",
        createdAt: start + 2 * DAY + 30 * 60_000,
        verdict: "awaiting_finality",
      }),
      jobRow({ jobId: "x0", createdAt: start + 2 * DAY + 45 * 60_000, verdict: "discrepancy" }),
      jobRow({ jobId: "x1", createdAt: start + 3 * DAY + 5 * HOUR, verdict: "dropped" }),
      jobRow({ jobId: "u0", createdAt: start + 10 * 60_000, verdict: "unverifiable" }),
    ];
    await seedRows(store, "jobs", rows);
    const counts = await countJobsByVerdict(
      store,
      start + 5 * 60_000,
      start + 3 * DAY + 5 * HOUR + 1,
    );
    expect(counts).toEqual({
      ...Object.fromEntries(verdicts.map((v) => [v, 0])),
      verified: 3,
      pending: 1,
      awaiting_finality: 1,
      discrepancy: 1,
      dropped: 1,
      unverifiable: 1,
    });
    const narrower = await countJobsByVerdict(
      store,
      start + 2 * DAY + 40 * 60_000,
      start + 3 * DAY,
    );
    expect(narrower).toMatchObject({
      pending: 1,
      awaiting_finality: 0,
      discrepancy: 1,
      verified: 0,
    });
    const now = start + 10 * DAY;
    expect(await dataCompleteUntil(store, now)).toBe(start + 2 * DAY + 30 * 60_000);
    const reports = createReportsStore(store);
    expect(await reports.rollupsComplete()).toBe(true);
    expect(await reports.rollupDayBounds()).toEqual({ first: start / DAY, last: start / DAY + 3 });
  });

  it("calls no figure final past a job whose credits header still waits for the ledger", async () => {
    const store = await stores.open();
    const vault = "CrEdiTVau1t1111111111111111111111111111111";
    const header = { creditsRemainingUnits: 990_000n };
    await seedRows(store, "jobs", [
      jobRow({ jobId: "waits", createdAt: start + 2 * HOUR, ...header }),
      jobRow({ jobId: "passed", createdAt: start + HOUR, ...header }),
      jobRow({ jobId: "noheader", createdAt: start + 30 * 60_000 }),
      jobRow({ jobId: "novault", createdAt: start + 40 * 60_000, ...header }),
      jobRow({ jobId: "unread", createdAt: start + 20 * 60_000, ...header }),
    ]);
    // The vault is a key's (the ledger reads every pinned vault); the account the lock of
    // "unread" drew on is nobody's, configured nowhere: no ledger round ever reads it.
    await seedRows(store, "creditVaults", [
      { keyFingerprint: "key1", vault, source: "learned", pinnedAt: start },
    ]);
    const check = (jobId: string, outcome: "pass" | "skip", expected: unknown) => ({
      jobId,
      name: "credits.header",
      outcome,
      reason: outcome === "skip" ? "waiting" : null,
      expected,
      checkedAt: start + 3 * HOUR,
    });
    await seedRows(store, "checkResults", [
      // Verified with the check left a skip until the ledger reads the vault past the response:
      // that read may reopen the job and fail it, so its figures are not final yet.
      check("waits", "skip", { headerUnits: "990000", vault }),
      check("passed", "pass", { headerUnits: "990000", vault }),
      // Skips no ledger read ever turns into a verdict: final as they stand.
      check("noheader", "skip", null),
      check("novault", "skip", null),
      // The operator locked from an account the ledger never reads: the wait never ends, and
      // would hold every report's figures from final for good.
      check("unread", "skip", {
        headerUnits: "990000",
        vault: "NoBodysAccount1111111111111111111111111111",
      }),
    ]);
    const now = start + 10 * DAY;
    expect(await dataCompleteUntil(store, now)).toBe(start + 2 * HOUR);
    const report = await reconciliationReport(
      store,
      { from: start, to: start + DAY, groupBy: "day" },
      () => now,
    );
    expect(report.dataCompleteUntil).toBe(start + 2 * HOUR);
    // Its verdict is written, though: the verifier owes nothing (the verification lag).
    expect(await createReportsStore(store).oldestOpenJob(now)).toBe(now);
  });

  it("says data is complete now when no job is open, and has no bounds when empty", async () => {
    const store = await stores.open();
    const reports = createReportsStore(store);
    expect(await reports.rollupDayBounds()).toBeNull();
    expect(await reports.dataCompleteUntil(123)).toBe(123);
    expect(await reports.groupSums({ from: start, to: start + DAY, groupBy: "key" })).toEqual([]);
    await seedRows(store, "jobs", [jobRow({ jobId: "done", createdAt: start })]);
    expect(await reports.dataCompleteUntil(start + 5)).toBe(start + 5);
  });

  it("reads the audit rows with the stored value types: bigint money, numbers for times, JSON parsed", async () => {
    const store = await stores.open();
    const jobId = await seedAudited(store);
    const reports = createReportsStore(store);
    expect(await reports.auditRows("job_unknown")).toBeNull();
    const rows = await reports.auditRows(jobId);
    expect(rows).not.toBeNull();
    const { job, conflicts, checks } = rows!;
    expect(job.chargedUnits).toBe(9_007_199_254_740_991n);
    expect(typeof job.escrowedUnits).toBe("bigint");
    expect(job.createdAt).toBe(start + 5 * HOUR);
    expect(job.stream).toBe(true);
    expect(job.tags).toEqual({ service: "search", team: "ml" });
    expect(job.unproven).toEqual(["usage_unknown"]);
    expect(conflicts.map((c) => [c.source, c.differences, c.receivedAt])).toEqual([
      ["ingest", ["worker"], start + 6 * HOUR],
      ["import", ["settlementTx"], start + 7 * HOUR],
    ]);
    expect(conflicts[0]!.receipt).toEqual({ worker: "X", amounts: { charged: "5" } });
    expect(checks.map((c) => c.name)).toEqual([
      "Settlement.case",
      "escrow.exists",
      "jobs_api.matches_receipt",
      "settlement.split",
    ]);
    expect(checks[3]).toMatchObject({
      outcome: "fail",
      expected: { worker: "75" },
      actual: { worker: "70", extra: [1, 2] },
      runId: 3,
      checkedAt: start + 8 * HOUR,
    });
    const { escrow, settlement } = rows!.transactions;
    expect(settlement).toMatchObject({ slot: 1200, feeLamports: 5_000n });
    expect(escrow).toEqual({
      state: "finalized",
      commitment: "finalized",
      slot: 1000,
      blockTime: 1_790_001_000,
      feeLamports: 5_000n,
      succeeded: true,
      err: null,
      facts: {
        tokenChanges: [
          { account: "A", owner: "O", mint: "M", preUnits: "10", postUnits: "4", deltaUnits: "-6" },
        ],
        memo: "escrow job",
      },
      fetchedAt: start + 6 * HOUR + 1,
    });
    const record = await auditRecord(store, jobId, explorer);
    expect(record?.lastError).not.toContain("secret");
  });

  it("reads a streamed job's settlement from the jobs API's signature, an unknown signature as null, and a fee to the lamport", async () => {
    const store = await stores.open();
    const apiSettlement = signatureOf("streamed:api-settle");
    await seedRows(store, "jobs", [
      jobRow({ jobId: "streamed", settlementTx: null, apiSettlementTx: apiSettlement }),
      jobRow({ jobId: "no_settlement", settlementTx: null }),
    ]);
    const fee = 9_007_199_254_740_991n;
    await seedRows(store, "chainTransactions", [
      {
        signature: apiSettlement,
        state: "finalized",
        commitment: "finalized",
        slot: 7,
        feeLamports: fee,
        succeeded: true,
        facts: { memo: "settle" },
        firstSeenAt: start,
        fetchedAt: start + 1,
      },
    ]);
    const reports = createReportsStore(store);
    const streamed = (await reports.auditRows("streamed"))!;
    expect(streamed.conflicts).toEqual([]);
    expect(streamed.checks).toEqual([]);
    expect(streamed.transactions.escrow).toBeNull();
    expect(streamed.transactions.settlement).toMatchObject({
      slot: 7,
      feeLamports: fee,
      facts: { memo: "settle" },
      err: null,
    });
    expect((await reports.auditRows("no_settlement"))!.transactions).toEqual({
      escrow: null,
      settlement: null,
      named: new Map(),
    });
  });

  it("reads every transaction a job names: the jobs API's second settlement and lock, and a conflicting receipt's", async () => {
    const store = await stores.open();
    const sig = (seed: string) => signatureOf(`twice:${seed}`);
    await seedRows(store, "jobs", [
      jobRow({
        jobId: "twice",
        escrowTx: sig("escrow"),
        settlementTx: sig("settle"),
        apiEscrowTx: sig("api-escrow"),
        apiSettlementTx: sig("api-settle"),
        conflictSignatures: [sig("conflict"), sig("settle"), sig("never-fetched")],
      }),
    ]);
    const fee = 9_007_199_254_740_991n;
    await seedRows(
      store,
      "chainTransactions",
      ["escrow", "settle", "api-escrow", "api-settle", "conflict", "unrelated"].map((seed, i) => ({
        signature: sig(seed),
        state: "finalized" as const,
        commitment: "finalized" as const,
        slot: i,
        feeLamports: fee - BigInt(i),
        succeeded: true,
        facts: { memo: seed },
        firstSeenAt: start,
        fetchedAt: start + 1,
      })),
    );
    const { named } = (await createReportsStore(store).auditRows("twice"))!.transactions;
    expect(
      [...named]
        .map(([s, t]) => [s, t.slot, t.feeLamports, t.facts])
        .sort((a, b) => Number(a[1]) - Number(b[1])),
    ).toEqual(
      ["escrow", "settle", "api-escrow", "api-settle", "conflict"].map((seed, i) => [
        sig(seed),
        i,
        fee - BigInt(i),
        { memo: seed },
      ]),
    );
  });

  it("lists jobs by keyset in both orders, ties broken by job id bytewise, with every filter", async () => {
    const store = await stores.open();
    const t = start + 3 * HOUR;
    const ids = ["job_B", "job_a", "job-c", "job.d", "jobZ", "job_b"];
    await seedRows(store, "jobs", [
      ...ids.map((jobId) => jobRow({ jobId, createdAt: t, tags: { id: jobId } })),
      jobRow({
        jobId: "early",
        createdAt: t - 1,
        model: "other",
        worker: "W2",
        keyFingerprint: "kf_9",
        verdict: "dropped",
      }),
      jobRow({ jobId: "late", createdAt: t + 1, verdict: "pending" }),
    ]);
    const bytewise = [...ids].sort();
    await expectKeysetWalk(store, ["early", ...bytewise, "late"]);
    const page = await listJobs(store, { from: t, to: t + 1 }, { limit: 2, order: "asc" });
    expect(page.items.map((j) => j.jobId)).toEqual(bytewise.slice(0, 2));
    expect(page.items[0]).toMatchObject({
      tags: { id: bytewise[0] },
      chargedUnits: "80000",
      createdAt: new Date(t).toISOString(),
    });
    for (const filter of [
      { model: "other" },
      { worker: "W2" },
      { keyFingerprint: "kf_9" },
      { verdict: "dropped" as const },
    ]) {
      expect((await listJobs(store, filter, { limit: 10 })).items.map((j) => j.jobId)).toEqual([
        "early",
      ]);
    }
    const rows = await createReportsStore(store).jobRows({ verdict: "pending" }, null, "desc", 5);
    expect(rows).toEqual([
      expect.objectContaining({
        job_id: "late",
        charged_units: null,
        verdict_at: null,
        tags: "{}",
      }),
    ]);
    expect(Number(rows[0]!.created_at)).toBe(t + 1);
  });

  it("lists discrepancies with their failing checks, by check name, in pages", async () => {
    const store = await stores.open();
    const jobId = await seedAudited(store);
    await seedRows(store, "jobs", [
      jobRow({ jobId: "dropped1", createdAt: start + 6 * HOUR, verdict: "dropped" }),
      jobRow({ jobId: "clean_discrepancy", createdAt: start + 7 * HOUR, verdict: "discrepancy" }),
      jobRow({ jobId: "verified_with_fail", createdAt: start + 8 * HOUR, verdict: "verified" }),
    ]);
    await seedRows(store, "checkResults", [
      {
        jobId: "dropped1",
        name: "settlement.exists",
        outcome: "fail",
        reason: "never landed",
        checkedAt: start,
      },
      { jobId: "verified_with_fail", name: "settlement.exists", outcome: "fail", checkedAt: start },
    ]);
    const all = await listDiscrepancies(store, {}, { limit: 1 });
    expect(all.items.map((j) => j.jobId)).toEqual(["dropped1"]);
    const rest = await listDiscrepancies(store, {}, { limit: 5, cursor: all.nextCursor! });
    expect(rest.items.map((j) => j.jobId)).toEqual([jobId]);
    expect(rest.items[0]!.failingChecks).toEqual([
      { name: "jobs_api.matches_receipt", reason: "api differs", expected: "a", actual: null },
      {
        name: "settlement.split",
        reason: "split off",
        expected: { worker: "75" },
        actual: { worker: "70", extra: [1, 2] },
      },
    ]);
    const byCheck = await listDiscrepancies(store, { check: "settlement.exists" }, { limit: 5 });
    expect(byCheck.items.map((j) => j.jobId)).toEqual(["dropped1"]);
    const failing = await createReportsStore(store).failingChecks(jobId);
    expect(failing.map((c) => [c.name, c.expected, c.actual])).toEqual([
      ["jobs_api.matches_receipt", '"a"', null],
      ["settlement.split", '{"worker":"75"}', '{"worker":"70","extra":[1,2]}'],
    ]);
  });
});

describe("the same rows on both dialects", () => {
  const sqlite = useDialectStores("sqlite");
  const postgres = useDialectStores("postgres");

  it("give identical reconciliations, verdict counts, listings and audit records", async () => {
    const lite = await sqlite.open();
    const pg = await postgres.open();
    for (const store of [lite, pg]) {
      await seedMixed(store, 42, 900, start - DAY, 8);
      await seedAudited(store);
    }
    for (const [name, period] of Object.entries(periods)) {
      for (const groupBy of groupByValues) {
        for (const worker of [undefined, "WorkerA1111111111111111111111111111111111111"]) {
          const query = { ...period, groupBy, ...(worker ? { worker } : {}) };
          const onPg = await figures(pg, query);
          expect(onPg, `${name} by ${groupBy}${worker ? " for one worker" : ""}`).toEqual(
            await figures(lite, query),
          );
          if (name !== "inside") expect(onPg.totals.jobs).toBeGreaterThan(0);
        }
      }
      expect(await countJobsByVerdict(pg, period.from, period.to), name).toEqual(
        await countJobsByVerdict(lite, period.from, period.to),
      );
    }
    expect(await dataCompleteUntil(pg, start + 30 * DAY)).toBe(
      await dataCompleteUntil(lite, start + 30 * DAY),
    );
    const liteReports = createReportsStore(lite);
    const pgReports = createReportsStore(pg);
    expect(await pgReports.rollupDayBounds()).toEqual(await liteReports.rollupDayBounds());
    for (const order of ["asc", "desc"] as const) {
      const request = { limit: 50, order };
      const period = { from: start, to: start + 3 * DAY };
      let a = await listJobs(lite, period, request);
      let b = await listJobs(pg, period, request);
      for (let pages = 0; ; pages++) {
        expect(b).toEqual(a);
        const cursor = a.nextCursor;
        if (!cursor) {
          expect(pages).toBeGreaterThan(2);
          break;
        }
        a = await listJobs(lite, period, { ...request, cursor });
        b = await listJobs(pg, period, { ...request, cursor });
      }
    }
    expect(await listDiscrepancies(pg, {}, { limit: 40 })).toEqual(
      await listDiscrepancies(lite, {}, { limit: 40 }),
    );
    expect(await auditRecord(pg, "job_audited", explorer)).toEqual(
      await auditRecord(lite, "job_audited", explorer),
    );
    expect(await auditRecord(pg, "job_42_00003", explorer)).toEqual(
      await auditRecord(lite, "job_42_00003", explorer),
    );
  });
});

describe("postgres: a database whose text sorts linguistically", () => {
  const postgres = useDialectStores("postgres");

  it("still pages jobs and orders check names bytewise, as SQLite does", async () => {
    const store = await postgres.open();
    if (store.kind !== "postgres") throw new Error("expected PostgreSQL");
    // As on a server initialised with an en_US locale: ids and names compare by language rules.
    await store.pool.query(`ALTER TABLE jobs ALTER COLUMN job_id TYPE text COLLATE "en-x-icu";
      ALTER TABLE check_results ALTER COLUMN name TYPE text COLLATE "en-x-icu"`);
    const t = start + 3 * HOUR;
    const ids = ["job_B", "job_a", "job-c", "job.d", "jobZ", "job_b"];
    await seedRows(
      store,
      "jobs",
      ids.map((jobId) => jobRow({ jobId, createdAt: t })),
    );
    await expectKeysetWalk(store, [...ids].sort());
    const jobId = await seedAudited(store);
    const rows = await createReportsStore(store).auditRows(jobId);
    expect(rows?.checks.map((c) => c.name)).toEqual([
      "Settlement.case",
      "escrow.exists",
      "jobs_api.matches_receipt",
      "settlement.split",
    ]);
  });
});

describe.each(dialects)("%s: groups a job has left", (dialect) => {
  const stores = useDialectStores(dialect);

  it("are not listed as groups of no job and no money", async () => {
    const store = await stores.open();
    const worker = "DcrtuEi23DAjQ9t2QJ9wFXDSZRU26jC5cVx4Dejivmwe";
    // Recorded without a worker, then named one by the jobs API; and moved to another model.
    await seedRows(store, "jobs", [
      jobRow({
        jobId: "job_moved",
        createdAt: start + 3 * HOUR,
        worker: null,
        model: "phi-4-mini",
      }),
    ]);
    await updateJobs(store, ["job_moved"], { apiWorker: worker, model: "qwen3-8b" });
    // Whole days (rollups) and ragged ends (hour rollups and jobs) alike.
    for (const [from, to] of [
      [start, start + DAY],
      [start + 90 * 60_000, start + 10 * HOUR + 5 * 60_000],
    ] as const) {
      const byWorker = await reconciliationReport(store, { from, to, groupBy: "worker" });
      expect(byWorker.groups.map((g) => [g.group, g.jobs])).toEqual([[worker, 1]]);
      const byModel = await reconciliationReport(store, { from, to, groupBy: "model" });
      expect(byModel.groups.map((g) => [g.group, g.jobs])).toEqual([["qwen3-8b", 1]]);
    }
  });
});

describe.each(dialects)("%s: a final job the settlement backfill still asks about", (dialect) => {
  const stores = useDialectStores(dialect);

  it("holds back the instant before which figures are called final, until it is answered", async () => {
    const store = await stores.open();
    // A stream judged unverifiable (nothing named its settlement in time) and an ingested job
    // verified on its receipt alone: the jobs API answer the backfill still asks for sends
    // either back to the verifier, which may judge it again with other figures.
    await seedRows(store, "jobs", [
      jobRow({ jobId: "asked", createdAt: start + 2 * HOUR, verdict: "unverifiable" }),
      jobRow({ jobId: "ingested", createdAt: start + 3 * HOUR }),
      jobRow({ jobId: "answered", createdAt: start + HOUR }),
    ]);
    await updateJobs(store, ["asked", "ingested"], {
      backfillState: "pending",
      backfillNextAt: start + DAY,
    });
    await updateJobs(store, ["answered"], { backfillState: "done" });
    const now = start + 10 * DAY;
    expect(await dataCompleteUntil(store, now)).toBe(start + 2 * HOUR);
    await updateJobs(store, ["asked"], { backfillState: "gave_up" });
    expect(await dataCompleteUntil(store, now)).toBe(start + 3 * HOUR);
    await updateJobs(store, ["ingested"], { backfillState: "done" });
    expect(await dataCompleteUntil(store, now)).toBe(now);
  });
});

describe.each(dialects)(
  "%s: a job left partially verified until the treasury is learned",
  (dialect) => {
    const stores = useDialectStores(dialect);

    it("holds back the instant before which figures are called final, until it is decided again", async () => {
      const store = await stores.open();
      // A profile that pins no treasury (decentral-mainnet) leaves its first settlements partially
      // verified: once enough agree, the treasury is pinned and they are decided again, and one
      // that paid another address turns discrepancy, its money moving to the disputed figures.
      await seedRows(store, "jobs", [
        jobRow({
          jobId: "waits",
          createdAt: start + 2 * HOUR,
          verdict: "partially_verified",
          unproven: ["usage_unknown", "treasury_unknown"],
        }),
        // Left unproven by its own data: no pin decides it again, so it is final as it stands.
        jobRow({
          jobId: "usage",
          createdAt: start + HOUR,
          verdict: "partially_verified",
          unproven: ["usage_unknown"],
        }),
        jobRow({ jobId: "done", createdAt: start + 30 * 60_000 }),
      ]);
      const now = start + 10 * DAY;
      expect(await dataCompleteUntil(store, now)).toBe(start + 2 * HOUR);
      const report = await reconciliationReport(
        store,
        { from: start, to: start + DAY, groupBy: "day" },
        () => now,
      );
      expect(report.dataCompleteUntil).toBe(start + 2 * HOUR);
      // The verifier owes nothing meanwhile: the verification lag is not this.
      expect(await createReportsStore(store).oldestOpenJob(now)).toBe(now);
      // Decided again once the treasury is pinned: final from then on.
      await updateJobs(store, ["waits"], { verdict: "discrepancy", unproven: null });
      expect(await dataCompleteUntil(store, now)).toBe(now);
    });
  },
);
