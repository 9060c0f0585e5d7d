import type { listDiscrepancies } from "../reports/job-listing.js";
import { checkCatalogue, checkNames } from "../verify/check-catalogue.js";
import { BASE, count, type Html, html, raw, short, usdc, utc, verdictBadge } from "./html.js";
import { type DashboardPeriod, shownDays } from "./period.js";
import { endedNote, timeZoneField } from "./period-picker.js";

export type DiscrepancyPage = Awaited<ReturnType<typeof listDiscrepancies>>;

export interface DiscrepancyFilter {
  check?: string;
  verdict?: "discrepancy" | "dropped";
  period: DashboardPeriod | null;
  cursor?: string;
}

/** The query string of a filter (without the cursor), for links that keep it. */
export function discrepancyQuery(f: DiscrepancyFilter): string {
  const parts: string[] = [];
  if (f.period) parts.push(f.period.query);
  if (f.check) parts.push(`check=${encodeURIComponent(f.check)}`);
  if (f.verdict) parts.push(`verdict=${f.verdict}`);
  return parts.join("&");
}

const periods = [
  ["all", "All time"],
  ["day", "Today"],
  ["week", "This week (from Monday)"],
  ["month", "Month to date"],
  ["custom", "Custom range"],
] as const;

/** Jobs flagged in the period (or ever), by verdict: what the pages below walk through. */
export interface FlaggedCounts {
  discrepancy: number;
  dropped: number;
}

/** How many jobs are flagged, said before the first page of them, with what the filters keep. */
function flaggedLine(f: DiscrepancyFilter, n: FlaggedCounts): Html {
  const total = n.discrepancy + n.dropped;
  const where = f.period ? `from ${f.period.firstDay} to ${f.period.lastDay}` : "over all time";
  const narrowed = [
    f.verdict ? `only ${f.verdict} (${count(n[f.verdict])})` : null,
    f.check ? `only those failing ${f.check}` : null,
  ].filter((s) => s !== null);
  return html`<p data-status="flagged"><strong>${count(total)} ${total === 1 ? "job is" : "jobs are"} flagged ${where}</strong>: ${count(n.discrepancy)} discrepancy, ${count(n.dropped)} dropped.${narrowed.length > 0 ? ` The list shows ${narrowed.join(", ")}.` : ""}</p>`;
}

/** Jobs with failing checks, filterable by check, verdict and period, a page at a time. */
export function discrepanciesBody(
  f: DiscrepancyFilter,
  result: DiscrepancyPage,
  flagged: FlaggedCounts | null = null,
): Html {
  const kind = f.period?.kind ?? "all";
  const q = discrepancyQuery(f);
  return html`<h1>Discrepancies</h1>
<form class="filters" method="get" action="${BASE}/discrepancies" aria-label="Filters">
<label>Failing check<select name="check"><option value="">any check</option>${checkNames.map(
    (name) =>
      html`<option value="${name}"${f.check === name ? raw(" selected") : ""}>${name}</option>`,
  )}</select></label>
<label>Verdict<select name="verdict"><option value="">discrepancy or dropped</option>${(
    ["discrepancy", "dropped"] as const
  ).map(
    (v) => html`<option value="${v}"${f.verdict === v ? raw(" selected") : ""}>${v}</option>`,
  )}</select></label>
<label>Period<select name="period">${periods.map(
    ([value, label]) =>
      html`<option value="${value}"${kind === value ? raw(" selected") : ""}>${label}</option>`,
  )}</select></label>
<label>From day (custom)<input type="date" name="from" value="${f.period?.firstDay ?? ""}"></label>
<label>To day, inclusive (custom)<input type="date" name="to" value="${f.period?.lastDay ?? ""}"></label>
${timeZoneField(f.period?.timeZone ?? "UTC")}
<input type="hidden" name="shown" value="${shownDays(f.period)}">
<button class="primary" type="submit">Filter</button>
</form>
${f.period ? endedNote("/discrepancies", f.period) : ""}
${flagged ? flaggedLine(f, flagged) : ""}
${f.check && f.check in checkCatalogue ? html`<p class="note"><strong>${f.check}</strong>: ${checkCatalogue[f.check as keyof typeof checkCatalogue]}</p>` : ""}
${
  result.items.length === 0
    ? html`<p>No job ${f.cursor ? "on this page" : "matches these filters"}.</p>`
    : html`<div class="scroll" tabindex="0" role="region" aria-label="Discrepancies">
<table id="discrepancies"><thead><tr><th scope="col">job</th><th scope="col">recorded</th><th scope="col">verdict</th><th scope="col">failing checks</th><th scope="col">model</th><th scope="col">worker</th><th scope="col" class="num">charged, USDC</th></tr></thead>
<tbody>${result.items.map(
        (job) => html`<tr>
<td class="mono nowrap"><a href="${BASE}/jobs/${encodeURIComponent(job.jobId)}">${job.jobId}</a></td>
<td class="nowrap">${utc(job.createdAt)}</td>
<td>${verdictBadge(job.verdict)}</td>
<td><ul style="margin:0;padding-left:1rem">${job.failingChecks.map(
          (c) =>
            html`<li><strong>${c.name}</strong>: ${c.reason ?? checkCatalogue[c.name as keyof typeof checkCatalogue] ?? "failed"}</li>`,
        )}</ul></td>
<td>${job.model ?? "—"}</td>
<td>${short(job.worker)}</td>
<td class="num">${usdc(job.chargedUnits)}</td>
</tr>`,
      )}</tbody></table></div>`
}
<nav class="pager" aria-label="Pages">
${f.cursor ? html`<a href="${BASE}/discrepancies${q ? `?${q}` : ""}">First page</a>` : ""}
${result.nextCursor ? html`<a href="${BASE}/discrepancies?${q ? `${q}&` : ""}cursor=${encodeURIComponent(result.nextCursor)}" rel="next">Next page</a>` : ""}
</nav>`;
}
