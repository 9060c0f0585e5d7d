import { openSqliteStore } from "../src/db/client.js";
import {
  type GroupBy,
  groupByValues,
  type ReconciliationQuery,
  reconciliationReport,
} from "../src/reports/reconciliation.js";
import { clientAgent, timedRequest } from "./http-client.js";
import { reportDbDays, reportDbEndAt } from "./report-db.js";
import { percentile, round } from "./stats.js";

export interface ReconciliationFigure {
  /** A groupBy, or `worker statement` (GET /reports/workers/{address}, by day). */
  groupBy: GroupBy | "worker statement";
  /** `month`: the generated 30 UTC days; `ragged`: 07:30 of the first day to 16:45 of the last. */
  period: "month" | "ragged";
  groups: number;
  jobs: number;
  /** Through HTTP (GET /reports/reconciliation, JSON) from the rollups: every request after the first, ms. */
  httpMs: number[];
  /** The case's first request. */
  firstMs: number;
  httpMedianMs: number;
  httpP99Ms: number;
  /** The same report from `reconciliationReport` in this process (the function the route calls). */
  functionMedianMs: number;
  /** The same report aggregated from scratch over `jobs` (`source: "jobs"`), side by side. */
  fromScratchMedianMs: number;
}

export interface ReportsResult {
  jobs: number;
  reconciliation: ReconciliationFigure[];
  audit: { lookups: number; p50Ms: number; p99Ms: number; maxMs: number; notFound: number };
}

const from = reportDbEndAt - reportDbDays * 86_400_000;

/**
 * Reconciliation (JSON, each groupBy, over the whole generated month, and by model over a
 * period that starts and ends inside a day), a worker statement, and `GET /audit/:jobId` for
 * random jobs, all through the real HTTP app (createApp + serve in a child process) with a
 * read token. Each report is also timed through the function the route calls, here, from the
 * rollups and from scratch over `jobs`, side by side.
 */
export async function measureReports(
  appUrl: string,
  token: string,
  dbPath: string,
  jobCount: number,
  options: {
    repetitions: number;
    scratchRepetitions: number;
    lookups: number;
    /** The generator's name of job number i. */
    jobIdOf: (i: number) => string;
  },
): Promise<ReportsResult> {
  let agent = clientAgent(1);
  const headers = { authorization: `Bearer ${token}` };
  const reconciliation: ReconciliationFigure[] = [];
  const queries: ReconciliationQuery[] = [];
  const store = openSqliteStore(dbPath);
  const worker = store.sqlite
    .prepare("SELECT worker FROM jobs WHERE worker IS NOT NULL LIMIT 1")
    .pluck()
    .get() as string;
  const ragged = { from: from + 7.5 * 3_600_000, to: reportDbEndAt - 7.25 * 3_600_000 };
  const cases = [
    ...groupByValues.map((groupBy) => ({ groupBy, period: "month" as const })),
    { groupBy: "model" as const, period: "ragged" as const },
    { groupBy: "worker statement" as const, period: "month" as const },
  ];
  try {
    for (const c of cases) {
      const p = c.period === "month" ? { from, to: reportDbEndAt } : ragged;
      const range = `from=${new Date(p.from).toISOString()}&to=${new Date(p.to).toISOString()}`;
      const url =
        c.groupBy === "worker statement"
          ? `${appUrl}/reports/workers/${worker}?${range}`
          : `${appUrl}/reports/reconciliation?${range}&groupBy=${c.groupBy}`;
      const httpMs: number[] = [];
      let groups = 0;
      let jobs = 0;
      // The first request of a case (statements prepared, pages read into the cache) is
      // reported apart as `firstMs`, not in the percentiles of the requests that follow.
      let firstMs = 0;
      for (let i = 0; i <= options.repetitions; i++) {
        const t = await timedRequest(agent, url, { headers, keep: true });
        if (t.status !== 200) {
          throw new Error(`${url} answered HTTP ${t.status}: ${Buffer.concat(t.chunks)}`);
        }
        if (i === 0) firstMs = round(t.totalMs, 2);
        else httpMs.push(round(t.totalMs, 2));
        const body = JSON.parse(Buffer.concat(t.chunks).toString("utf8")) as {
          groups?: unknown[];
          days?: unknown[];
          totals: { jobs: number };
        };
        groups = (body.groups ?? body.days ?? []).length;
        jobs = body.totals.jobs;
      }
      const query = {
        ...p,
        groupBy: c.groupBy === "worker statement" ? ("day" as const) : c.groupBy,
        ...(c.groupBy === "worker statement" ? { worker } : {}),
      };
      queries.push(query);
      reconciliation.push({
        groupBy: c.groupBy,
        period: c.period,
        groups,
        jobs,
        httpMs,
        firstMs,
        httpMedianMs: round(percentile(httpMs, 50), 2),
        httpP99Ms: round(percentile(httpMs, 99), 2),
        functionMedianMs: 0,
        fromScratchMedianMs: 0,
      });
    }
    // In-process timings after every HTTP request: a pause longer than the server's keep-alive
    // timeout between requests would make the agent reuse a socket the server has closed.
    const time = async (
      query: ReconciliationQuery,
      source: "rollups" | "jobs",
      repetitions: number,
    ) => {
      const ms: number[] = [];
      for (let i = 0; i < repetitions; i++) {
        const started = performance.now();
        await reconciliationReport(store, { ...query, source });
        ms.push(performance.now() - started);
      }
      return round(percentile(ms, 50), 2);
    };
    for (const [i, figure] of reconciliation.entries()) {
      const query = queries[i] as ReconciliationQuery;
      figure.functionMedianMs = await time(query, "rollups", 20);
      figure.fromScratchMedianMs = await time(query, "jobs", options.scratchRepetitions);
    }
  } finally {
    store.close();
  }

  // The in-process timings outlast the server's keep-alive timeout: fresh connections.
  agent.destroy();
  agent = clientAgent(1);

  // Deterministic pseudo-random job indexes (the generator names job i `job_<base36 i>`).
  let seed = 7;
  const randomJob = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return options.jobIdOf(seed % jobCount);
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
