import { RECORDING_MARGIN_MS } from "../reports/period.js";
import { BASE, type Html, html, raw } from "./html.js";
import type { DashboardPeriod } from "./period.js";

const options = [
  ["day", "Today"],
  ["week", "This week (from Monday)"],
  ["month", "Month to date"],
  ["custom", "Custom range"],
] as const;

/**
 * The period picker (a plain GET form, so every view is a link that can be shared or
 * bookmarked). `extra` carries the page's other filters through a change of period.
 */
export function periodPicker(
  action: string,
  period: DashboardPeriod,
  extra: Html | string = "",
): Html {
  return html`<form class="filters" method="get" action="${BASE}${action}" aria-label="Period">
<label>Period (UTC)
<select name="period">${options.map(
    ([value, label]) =>
      html`<option value="${value}"${period.kind === value ? raw(" selected") : ""}>${label}</option>`,
  )}</select></label>
<label>From day (custom)<input type="date" name="from" value="${period.firstDay}"></label>
<label>To day, inclusive (custom)<input type="date" name="to" value="${period.lastDay}"></label>
${extra}
<button class="primary" type="submit">Show</button>
</form>
<p class="note">Showing ${period.firstDay} 00:00 UTC up to ${period.lastDay} 24:00 UTC.</p>`;
}

/**
 * When the figures stop moving, said plainly: every job before `dataCompleteUntil` has a final
 * verdict.
 */
export function completeness(report: {
  dataCompleteUntil: number;
  to: number;
  generatedAt: number;
}): Html {
  const at = (ms: number) => {
    const iso = new Date(ms).toISOString();
    return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
  };
  if (report.dataCompleteUntil >= report.to) {
    return html`<p class="final">Every job of this period has a final verdict: these figures are final.</p>`;
  }
  // With no job open it stands `RECORDING_MARGIN_MS` before now: a receipt committing now
  // may still carry a time just before it.
  if (report.dataCompleteUntil >= report.generatedAt - RECORDING_MARGIN_MS) {
    return html`<p class="final">Every job recorded so far has a final verdict: figures before <strong>${at(report.dataCompleteUntil)}</strong> are final; jobs recorded since will be added.</p>`;
  }
  return html`<p class="final open">Figures before <strong>${at(report.dataCompleteUntil)}</strong> are final; jobs after that are still being verified and may move.</p>`;
}
