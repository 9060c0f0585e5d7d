import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { generateJobs, generateJobsSql } from "../bench/generate-jobs.js";
import { ensureReportDb } from "../bench/report-db.js";
import { createApp } from "../src/api/app.js";
import { createToken } from "../src/auth/tokens.js";
import { openSqliteStore } from "../src/db/client.js";
import { createLogger } from "../src/log.js";
import { auditRecord } from "../src/reports/audit-record.js";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { recomputeRollups } from "../src/reports/rollup-recompute.js";
import { createTestStore } from "./support/store.js";

const endAt = Date.UTC(2026, 10, 1);
const from = endAt - 30 * 86_400_000;

describe("the benchmark's job generator", () => {
  it("writes jobs whose amounts reconcile: nothing unaccounted among final jobs", async () => {
    const store = createTestStore();
    generateJobs(store, { count: 2000, endAt });
    const report = await reconciliationReport(store, { from, to: endAt, groupBy: "model" });
    expect(report.totals.jobs).toBe(2000);
    expect(report.totals.verified + report.totals.discrepancies + report.totals.pending).toBe(2000);
    expect(report.totals.unaccountedUnits).toBe(0n);
    expect(report.totals.workerPaidUnits + report.totals.treasuryPaidUnits).toBe(
      report.totals.chargedUnits,
    );
  });

  it("writes the same shape of jobs with set-based SQL, rolled up like any other write", async () => {
    const store = createTestStore();
    generateJobsSql(store, { count: 3000, endAt });
    const report = await reconciliationReport(store, { from, to: endAt, groupBy: "worker" });
    expect(report.totals.jobs).toBe(3000);
    expect(report.groups.length).toBe(60);
    expect(report.totals.verified).toBeGreaterThan(2850);
    expect(report.totals.unaccountedUnits).toBe(0n);
    expect(report.totals.workerPaidUnits + report.totals.treasuryPaidUnits).toBe(
      report.totals.chargedUnits,
    );
    expect((await recomputeRollups(store)).differenceCount).toBe(0);
  });

  it("makes a reduced-index database over which every report the benchmark asks answers", async () => {
    // The 10M report database keeps only the indexes on jobs the report path reads: a store
    // statement reading through another (INDEXED BY) fails to prepare there.
    const dir = mkdtempSync(join(tmpdir(), "report-db-"));
    const store = openSqliteStore(ensureReportDb(500, undefined, "sql", dir).path);
    try {
      const app = createApp({ store, log: createLogger({ level: "silent" }) });
      const token = (await createToken(store, { role: "read", name: "bench" })).token;
      const headers = { authorization: `Bearer ${token}` };
      const worker = store.sqlite.prepare("SELECT worker FROM jobs LIMIT 1").pluck().get();
      const period = `from=${new Date(from).toISOString()}&to=${new Date(endAt).toISOString()}`;
      for (const path of [
        ...["day", "model", "worker", "key"].map(
          (groupBy) => `/reports/reconciliation?${period}&groupBy=${groupBy}`,
        ),
        `/reports/workers/${worker}?${period}`,
      ]) {
        const answer = await app.request(path, { headers });
        expect([path, answer.status, await answer.text()]).toMatchObject([path, 200, /"totals"/]);
      }
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("gives job i of the set-based generator the draws and amounts generateJobs gives job i", () => {
    const byRow = createTestStore();
    const bySql = createTestStore();
    generateJobs(byRow, { count: 2000, endAt, withEvidence: false });
    generateJobsSql(bySql, { count: 2000, endAt });
    const columns = `model, worker, key_fingerprint, prompt_tokens, completion_tokens, max_tokens,
      stream, http_status, latency_ms, ttfb_ms, verdict, commitment, escrowed_units, charged_units,
      worker_paid_units, treasury_paid_units, refunded_units, expected_charge_units,
      fees_lamports, credits_remaining_units, created_at / 1000 AS created_s`;
    const rows = (s: typeof byRow) =>
      s.sqlite.prepare(`select ${columns} from jobs order by rowid`).all() as unknown[];
    const sqlRows = rows(bySql);
    expect(sqlRows).toEqual(rows(byRow));
    // Every model, worker and key is drawn, and the verdicts mix as in generateJobs.
    const distinct = (column: string) =>
      bySql.sqlite.prepare(`select count(distinct ${column}) from jobs`).pluck().get();
    expect([distinct("model"), distinct("worker"), distinct("key_fingerprint")]).toEqual([
      4, 60, 25,
    ]);
  });

  it("gives every job an audit record with both transactions, their movements and its checks", async () => {
    const store = createTestStore();
    generateJobs(store, { count: 50, endAt });
    const record = await auditRecord(store, `job_${(7).toString(36).padStart(20, "0")}`, {
      cluster: "mainnet-beta",
    });
    expect(record?.escrow?.state).toBe("finalized");
    expect(record?.escrow?.tokenMovements.length).toBe(2);
    expect(record?.settlement?.tokenMovements.length).toBeGreaterThanOrEqual(2);
    expect(record?.checks.length).toBeGreaterThan(10);
  });

  it("generates the same rows for the same seed", () => {
    const a = createTestStore();
    const b = createTestStore();
    generateJobs(a, { count: 300, endAt, withEvidence: false });
    generateJobs(b, { count: 300, endAt, withEvidence: false });
    const rows = (s: typeof a) =>
      s.sqlite.prepare("select * from jobs order by job_id").all() as unknown[];
    expect(rows(a)).toEqual(rows(b));
  });
});
