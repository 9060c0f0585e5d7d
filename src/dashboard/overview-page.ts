import { zoneDateOf, zoneDayStarts } from "../instant.js";
import type { ReconciliationFigures, ReconciliationReport } from "../reports/reconciliation.js";
import type { RpcTrouble } from "../store/ops.js";
import { type ChartDay, chargedVsVerifiedChart } from "./chart.js";
import { BASE, count, type Html, html, sol, usdc } from "./html.js";
import type { DashboardPeriod } from "./period.js";
import { completeness, periodPicker } from "./period-picker.js";

/** The verdict counts in the order a controller reads them, with their bar colours. */
export const verdictCounts = [
  ["verified", "verified", "#1b7f3b"],
  ["partiallyVerified", "partially verified", "#7a5c00"],
  ["discrepancies", "discrepancy", "#b3261e"],
  ["dropped", "dropped", "#6b2fa3"],
  ["unverifiable", "unverifiable", "#4a4f55"],
  ["pending", "not final yet", "#0b57d0"],
] as const;

const moneyCards = [
  ["chargedUnits", "Charged"],
  ["escrowedUnits", "Escrowed"],
  ["workerPaidUnits", "Paid to workers"],
  ["treasuryPaidUnits", "Paid to the treasury"],
  ["refundedUnits", "Refunded"],
  ["unaccountedUnits", "Unaccounted"],
] as const;

function card(id: string, label: string, value: string, sub: Html | string): Html {
  return html`<div class="card"><div class="label" id="${id}-label">${label}</div><div class="value" data-figure="${id}" aria-labelledby="${id}-label">${value}</div><div class="sub">${sub}</div></div>`;
}

/** One bar of verdict counts; widths are shares of the job count (counts, never money). */
export function verdictBar(t: ReconciliationFigures, query: string): Html {
  const parts = verdictCounts.filter(([key]) => t[key] > 0);
  return html`<div class="bar" role="img" aria-label="${verdictCounts
    .map(([key, label]) => `${label} ${t[key]}`)
    .join(", ")}">${parts.map(
    ([key, , colour]) =>
      html`<span style="width:${((t[key] * 100) / Math.max(t.jobs, 1)).toFixed(3)}%;background:${colour}"></span>`,
  )}</div>
<ul class="legend">${verdictCounts.map(([key, label, colour]) => {
    const n = html`<strong data-count="${key}">${count(t[key])}</strong>`;
    const link =
      key === "discrepancies" || key === "dropped"
        ? html`<a href="${BASE}/discrepancies?verdict=${key === "dropped" ? "dropped" : "discrepancy"}${query ? `&${query}` : ""}">${n} ${label}</a>`
        : html`${n} ${label}`;
    return html`<li><i style="background:${colour}"></i>${link}</li>`;
  })}</ul>`;
}

/** Every day of the period, in the report's time zone, zero where no job was recorded. */
function chartDays(report: ReconciliationReport): ChartDay[] {
  const byDay = new Map(report.groups.map((g) => [g.group, g]));
  return zoneDayStarts(report.timeZone, report.from, report.to).map((start) => {
    const day = zoneDateOf(report.timeZone, start);
    const g = byDay.get(day);
    return { day, charged: g?.chargedUnits ?? 0n, verified: g?.verifiedChargedUnits ?? 0n };
  });
}

/** The overview: the money of the period, its verdicts, and charged vs verified per day. */
export function overviewBody(
  period: DashboardPeriod,
  report: ReconciliationReport,
  trouble: RpcTrouble | null = null,
): Html {
  const t = report.totals;
  const q = period.query;
  return html`<h1>Overview</h1>
${periodPicker("", period)}
${completeness(report, trouble)}
<h2>Money, USDC</h2>
<div class="cards">
${moneyCards.map(([key, label]) => card(key, label, usdc(t[key]), `${t[key].toString()} base units`))}
${card("feesLamports", "Network fees", `${sol(t.feesLamports)} SOL`, `${t.feesLamports.toString()} lamports`)}
</div>
<div class="cards" style="margin-top:.75rem">
${card("verifiedChargedUnits", "Charged on verified jobs", usdc(t.verifiedChargedUnits), "every applicable check passed")}
${card("disputedChargedUnits", "Charged on disputed jobs", usdc(t.disputedChargedUnits), html`a failing check or a dropped signature: <a href="${BASE}/discrepancies${q ? `?${q}` : ""}">see the discrepancies</a>`)}
</div>
<h2>Verdicts of ${count(t.jobs)} jobs</h2>
${verdictBar(t, q)}
<h2>Charged vs verified, per day</h2>
${chargedVsVerifiedChart(chartDays(report))}
<p><a href="${BASE}/reconciliation${q ? `?${q}` : ""}">Open the reconciliation table</a> to see these figures by day, model, worker or key and download them as CSV.</p>`;
}
