import { openStore } from "../src/db/client.js";
import {
  type GroupBy,
  groupByValues,
  reconciliationReport,
} from "../src/reports/reconciliation.js";
import { clientAgent, timedRequest } from "./http-client.js";
import { reportDbDays, reportDbEndAt } from "./report-db.js";
import { percentile, round } from "./stats.js";

export interface ReconciliationFigure {
  groupBy: GroupBy;
  groups: number;
  jobs: number;
  /** Through HTTP (GET /reports/reconciliation, JSON): every repetition, ms. */
  httpMs: number[];
  httpMedianMs: number;
  /** The same report from `reconciliationReport` in this process (the function the route calls). */
  functionMedianMs: number;
}

export interface ReportsResult {
  jobs: number;
  reconciliation: ReconciliationFigure[];
  audit: { lookups: number; p50Ms: number; p99Ms: number; maxMs: number; notFound: number };
}

const from = reportDbEndAt - reportDbDays * 86_400_000;

/**
 * Reconciliation (JSON, each groupBy, over the whole generated month) and `GET /audit/:jobId`
 * for random jobs, both through the real HTTP app (createApp + serve in a child process) with a
 * read token. Each reconciliation is also timed through the function the route calls, here,
 * to tell the query from the HTTP and JSON work.
 */
export async function measureReports(
  appUrl: string,
  token: string,
  dbPath: string,
  jobCount: number,
  options: { repetitions: number; lookups: number },
): Promise<ReportsResult> {
  const agent = clientAgent(1);
  const headers = { authorization: `Bearer ${token}` };
  const reconciliation: ReconciliationFigure[] = [];
  const store = openStore(dbPath);
  try {
    for (const groupBy of groupByValues) {
      const url = `${appUrl}/reports/reconciliation?from=${new Date(from).toISOString()}&to=${new Date(reportDbEndAt).toISOString()}&groupBy=${groupBy}`;
      const httpMs: number[] = [];
      let groups = 0;
      let jobs = 0;
      for (let i = 0; i < options.repetitions; i++) {
        const t = await timedRequest(agent, url, { headers, keep: true });
        if (t.status !== 200) {
          throw new Error(`reconciliation answered HTTP ${t.status}: ${Buffer.concat(t.chunks)}`);
        }
        httpMs.push(round(t.totalMs, 1));
        const body = JSON.parse(Buffer.concat(t.chunks).toString("utf8")) as {
          groups: unknown[];
          totals: { jobs: number };
        };
        groups = body.groups.length;
        jobs = body.totals.jobs;
      }
      const fnMs: number[] = [];
      for (let i = 0; i < options.repetitions; i++) {
        const started = performance.now();
        reconciliationReport(store, { from, to: reportDbEndAt, groupBy });
        fnMs.push(performance.now() - started);
      }
      reconciliation.push({
        groupBy,
        groups,
        jobs,
        httpMs,
        httpMedianMs: round(percentile(httpMs, 50), 1),
        functionMedianMs: round(percentile(fnMs, 50), 1),
      });
    }
  } finally {
    store.close();
  }

  // Deterministic pseudo-random job indexes (the generator names job i `job_<base36 i>`).
  let seed = 7;
  const randomJob = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return `job_${(seed % jobCount).toString(36).padStart(20, "0")}`;
  };
  const lookup = async () => {
    const t = await timedRequest(agent, `${appUrl}/audit/${randomJob()}`, { headers });
    return t;
  };
  for (let i = 0; i < 200; i++) await lookup();
  globalThis.gc?.();
  const times: number[] = [];
  let notFound = 0;
  for (let i = 0; i < options.lookups; i++) {
    const t = await lookup();
    if (t.status !== 200) notFound++;
    times.push(t.totalMs);
  }
  agent.destroy();
  return {
    jobs: jobCount,
    reconciliation,
    audit: {
      lookups: options.lookups,
      p50Ms: round(percentile(times, 50), 3),
      p99Ms: round(percentile(times, 99), 3),
      maxMs: round(Math.max(...times), 3),
      notFound,
    },
  };
}
