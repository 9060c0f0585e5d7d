import { clientAgent, timedRequest } from "./http-client.js";
import { reportDbDays, reportDbEndAt } from "./report-db.js";
import { percentile, round } from "./stats.js";

export interface DashboardPageFigure {
  page: string;
  path: string;
  /** Bytes of HTML (or CSV) sent. */
  bytes: number;
  medianMs: number;
  maxMs: number;
}

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/**
 * Every dashboard page over the generated database, through HTTP with a signed-in session, as
 * a browser asks for it: each page is requested `repetitions` times after one warm-up, and
 * the time is request start to the last byte of the rendered page.
 */
export async function measureDashboard(
  appUrl: string,
  token: string,
  options: { repetitions: number },
): Promise<DashboardPageFigure[]> {
  const agent = clientAgent(1);
  const origin = new URL(appUrl).origin;
  const signIn = await timedRequest(agent, `${appUrl}/dashboard/sign-in`, {
    headers: { "content-type": "application/x-www-form-urlencoded", origin },
    body: new URLSearchParams({ token, next: "/dashboard" }).toString(),
  });
  const cookie = String(signIn.headers["set-cookie"] ?? "").split(";")[0] ?? "";
  if (signIn.status !== 303 || !cookie.startsWith("da_session=")) {
    throw new Error(`dashboard sign-in answered HTTP ${signIn.status}`);
  }
  const headers = { cookie };
  const get = async (path: string) => {
    const t = await timedRequest(agent, `${appUrl}${path}`, { headers, keep: true });
    if (t.status !== 200) throw new Error(`${path} answered HTTP ${t.status}`);
    return t;
  };

  // The generated month, as a custom period (its days, inclusive).
  const month = `period=custom&from=${day(reportDbEndAt - reportDbDays * 86_400_000)}&to=${day(reportDbEndAt - 1)}`;
  const firstPage = Buffer.concat((await get("/dashboard/discrepancies")).chunks).toString("utf8");
  const jobPath = /href="(\/dashboard\/jobs\/[^"]+)"/.exec(firstPage)?.[1];
  const workers = Buffer.concat((await get(`/dashboard/workers?${month}`)).chunks).toString("utf8");
  const workerPath = /href="(\/dashboard\/workers\/[^"?]+)/.exec(workers)?.[1];
  if (!jobPath || !workerPath) throw new Error("no job or worker to open in the dashboard");

  const pages: [string, string][] = [
    ["overview (month, by day, chart)", `/dashboard?${month}`],
    ["reconciliation by day", `/dashboard/reconciliation?${month}&groupBy=day`],
    ["reconciliation by model", `/dashboard/reconciliation?${month}&groupBy=model`],
    ["reconciliation by worker", `/dashboard/reconciliation?${month}&groupBy=worker`],
    ["reconciliation by key", `/dashboard/reconciliation?${month}&groupBy=key`],
    ["reconciliation CSV by worker", `/dashboard/reconciliation.csv?${month}&groupBy=worker`],
    ["discrepancies, first page", "/dashboard/discrepancies"],
    ["discrepancies of one check", "/dashboard/discrepancies?check=settlement.split"],
    ["job", jobPath],
    ["workers", `/dashboard/workers?${month}`],
    ["worker statement", `${workerPath}?${month}`],
    ["status", "/dashboard/status"],
  ];
  const figures: DashboardPageFigure[] = [];
  for (const [page, path] of pages) {
    await get(path);
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < options.repetitions; i++) {
      const t = await get(path);
      times.push(t.totalMs);
      bytes = t.bytes;
    }
    figures.push({
      page,
      path,
      bytes,
      medianMs: round(percentile(times, 50), 1),
      maxMs: round(Math.max(...times), 1),
    });
  }
  agent.destroy();
  return figures;
}
