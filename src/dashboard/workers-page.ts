import type { ReconciliationReport } from "../reports/reconciliation.js";
import type { RpcTrouble } from "../store/ops.js";
import { BASE, count, type Html, html, sol, usdc } from "./html.js";
import type { DashboardPeriod } from "./period.js";
import { completeness, periodPicker } from "./period-picker.js";

/** Every worker paid in the period, with a link to its statement. */
export function workersBody(
  period: DashboardPeriod,
  report: ReconciliationReport,
  trouble: RpcTrouble | null = null,
): Html {
  const groups = [...report.groups].sort((a, b) =>
    a.workerPaidUnits === b.workerPaidUnits ? 0 : a.workerPaidUnits > b.workerPaidUnits ? -1 : 1,
  );
  return html`<h1>Workers</h1>
${periodPicker("/workers", period)}
${completeness(report, trouble)}
<div class="scroll" tabindex="0" role="region" aria-label="Workers">
<table><thead><tr><th scope="col">worker</th><th scope="col" class="num">jobs</th><th scope="col" class="num">verified</th><th scope="col" class="num">flagged</th><th scope="col" class="num">charged, USDC</th><th scope="col" class="num">paid to the worker, USDC</th></tr></thead>
<tbody>${groups.map(
    (g) =>
      html`<tr><td class="mono">${
        g.group === null
          ? html`<em>not recorded</em>`
          : html`<a href="${BASE}/workers/${encodeURIComponent(g.group)}?${period.query}">${g.group}</a>`
      }</td><td class="num">${count(g.jobs)}</td><td class="num">${count(g.verified)}</td><td class="num">${count(g.discrepancies + g.dropped)}</td><td class="num">${usdc(g.chargedUnits)}</td><td class="num">${usdc(g.workerPaidUnits)}</td></tr>`,
  )}</tbody>
<tfoot><tr class="total"><td>total</td><td class="num">${count(report.totals.jobs)}</td><td class="num">${count(report.totals.verified)}</td><td class="num">${count(report.totals.discrepancies + report.totals.dropped)}</td><td class="num">${usdc(report.totals.chargedUnits)}</td><td class="num">${usdc(report.totals.workerPaidUnits)}</td></tr></tfoot>
</table></div>`;
}

/** One worker's payout statement: per day and in total (the API's worker statement). */
export function workerStatementBody(
  worker: string,
  period: DashboardPeriod,
  report: ReconciliationReport,
  trouble: RpcTrouble | null = null,
): Html {
  const t = report.totals;
  return html`<h1>Worker statement</h1>
<p class="mono">${worker}</p>
${periodPicker(`/workers/${encodeURIComponent(worker)}`, period)}
${completeness(report, trouble)}
<div class="cards">
<div class="card"><div class="label">Paid to this worker, USDC</div><div class="value">${usdc(t.workerPaidUnits)}</div><div class="sub">${t.workerPaidUnits.toString()} base units</div></div>
<div class="card"><div class="label">Of which on verified jobs</div><div class="value">${usdc(t.verifiedWorkerPaidUnits)}</div><div class="sub">on disputed jobs: ${usdc(t.disputedWorkerPaidUnits)}</div></div>
<div class="card"><div class="label">Charged on its jobs</div><div class="value">${usdc(t.chargedUnits)}</div><div class="sub">${count(t.jobs)} jobs</div></div>
</div>
<h2>Per day, USDC</h2>
<div class="scroll" tabindex="0" role="region" aria-label="Statement per day">
<table><thead><tr><th scope="col">day</th><th scope="col" class="num">jobs</th><th scope="col" class="num">verified</th><th scope="col" class="num">flagged</th><th scope="col" class="num">charged</th><th scope="col" class="num">paid to worker</th><th scope="col" class="num">treasury</th><th scope="col" class="num">fees (SOL)</th></tr></thead>
<tbody>${report.groups.map(
    (g) =>
      html`<tr><td>${g.group ?? "—"}</td><td class="num">${count(g.jobs)}</td><td class="num">${count(g.verified)}</td><td class="num">${count(g.discrepancies + g.dropped)}</td><td class="num">${usdc(g.chargedUnits)}</td><td class="num">${usdc(g.workerPaidUnits)}</td><td class="num">${usdc(g.treasuryPaidUnits)}</td><td class="num">${sol(g.feesLamports)}</td></tr>`,
  )}</tbody>
<tfoot><tr class="total"><td>total</td><td class="num">${count(t.jobs)}</td><td class="num">${count(t.verified)}</td><td class="num">${count(t.discrepancies + t.dropped)}</td><td class="num">${usdc(t.chargedUnits)}</td><td class="num">${usdc(t.workerPaidUnits)}</td><td class="num">${usdc(t.treasuryPaidUnits)}</td><td class="num">${sol(t.feesLamports)}</td></tr></tfoot>
</table></div>`;
}
