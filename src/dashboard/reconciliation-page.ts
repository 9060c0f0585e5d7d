import { reportFigures } from "../db/rollups.js";
import {
  type GroupBy,
  groupByValues,
  type ReconciliationFigures,
  type ReconciliationGroup,
  type ReconciliationReport,
} from "../reports/reconciliation.js";
import type { RpcTrouble } from "../store/ops.js";
import { BASE, count, type Html, html, raw, sol, usdc } from "./html.js";
import type { DashboardPeriod } from "./period.js";
import { completeness, periodPicker } from "./period-picker.js";

type Column = {
  key: keyof ReconciliationFigures;
  label: string;
  kind: "count" | "usdc" | "sol";
};

/** The table's columns, every one sortable: the figures of `reportFigures` marked for it. */
export const reconciliationTableColumns: readonly Column[] = reportFigures
  .filter((f) => f.dashboard)
  .map((f) => ({
    key: f.key,
    label: f.label,
    kind: f.kind === "count" ? "count" : f.kind === "lamports" ? "sol" : "usdc",
  }));

export const sortKeys = ["group", ...reconciliationTableColumns.map((c) => c.key)] as const;
export type SortKey = (typeof sortKeys)[number];

const groupLabel: Record<GroupBy, string> = {
  day: "day",
  model: "model",
  worker: "worker",
  key: "API key fingerprint",
};

/** Sorts groups by a column; amounts compare as bigints, groups as text, nulls first. */
export function sortGroups(
  groups: readonly ReconciliationGroup[],
  sort: SortKey,
  dir: "asc" | "desc",
): ReconciliationGroup[] {
  const sign = dir === "asc" ? 1 : -1;
  return [...groups].sort((a, b) => {
    const x = sort === "group" ? a.group : a[sort];
    const y = sort === "group" ? b.group : b[sort];
    if (x === y) return 0;
    if (x === null) return -sign;
    if (y === null) return sign;
    return (x < y ? -1 : 1) * sign;
  });
}

function cell(f: ReconciliationFigures, c: Column): Html {
  const v = f[c.key];
  const text =
    c.kind === "count"
      ? count(v as number)
      : c.kind === "sol"
        ? sol(v as bigint)
        : usdc(v as bigint);
  return html`<td class="num" data-col="${c.key}">${text}</td>`;
}

/** The reconciliation table with its picker, sortable headers, total row and CSV link. */
export function reconciliationBody(
  period: DashboardPeriod,
  report: ReconciliationReport,
  sort: SortKey,
  dir: "asc" | "desc",
  trouble: RpcTrouble | null = null,
): Html {
  const base = `${period.query}&groupBy=${report.groupBy}`;
  const header = (key: SortKey, label: string, numeric: boolean) => {
    const active = sort === key;
    const next = active && dir === "asc" ? "desc" : "asc";
    const ariaSort = active ? (dir === "asc" ? "ascending" : "descending") : "none";
    return html`<th scope="col"${numeric ? raw(' class="num"') : ""} aria-sort="${ariaSort}"><a href="${BASE}/reconciliation?${base}&sort=${key}&dir=${next}">${label}${active ? (dir === "asc" ? " ▲" : " ▼") : ""}</a></th>`;
  };
  const groupCell = (g: ReconciliationGroup) => {
    if (g.group === null) return html`<td><em>not recorded</em></td>`;
    if (report.groupBy === "worker") {
      return html`<td class="mono"><a href="${BASE}/workers/${encodeURIComponent(g.group)}?${period.query}">${g.group}</a></td>`;
    }
    return html`<td${report.groupBy === "key" ? raw(' class="mono"') : ""}>${g.group}</td>`;
  };
  const rows = sortGroups(report.groups, sort, dir);
  return html`<h1>Reconciliation</h1>
${periodPicker(
  "/reconciliation",
  period,
  html`<label>Group by<select name="groupBy">${groupByValues.map(
    (g) =>
      html`<option value="${g}"${g === report.groupBy ? raw(" selected") : ""}>${groupLabel[g]}</option>`,
  )}</select></label>`,
)}
${completeness(report, trouble)}
<p><a class="button" href="${BASE}/reconciliation.csv?${base}" download>Download CSV</a>
<span class="muted">the API's CSV of this period and grouping (amounts in base units and USDC).</span></p>
<div class="scroll" tabindex="0" role="region" aria-label="Reconciliation table">
<table id="reconciliation" class="wide">
<caption class="muted" style="text-align:left;padding:.4rem">Amounts in USDC, six decimals; ${count(report.groups.length)} ${groupLabel[report.groupBy]} groups</caption>
<thead><tr>${header("group", groupLabel[report.groupBy], false)}${reconciliationTableColumns.map((c) => header(c.key, c.label, true))}</tr></thead>
<tbody>
${rows.map((g) => html`<tr>${groupCell(g)}${reconciliationTableColumns.map((c) => cell(g, c))}</tr>`)}
</tbody>
<tfoot><tr class="total"><td>total</td>${reconciliationTableColumns.map((c) => cell(report.totals, c))}</tr></tfoot>
</table>
</div>`;
}
