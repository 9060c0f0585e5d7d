import type { Store } from "../db/client.js";
import { formatUnits } from "../money.js";
import { listDiscrepancies } from "../reports/job-listing.js";
import {
  type ReconciliationFigures,
  type ReconciliationReport,
  reconciliationReport,
} from "../reports/reconciliation.js";

/**
 * The demo's terminal report: the reconciliation table of the run grouped by model, and every
 * job with a failing check, named by what its failing checks say went wrong. Laid out for an
 * 80-100 column terminal; amounts are USDC with six decimals, computed from bigint units.
 */

/** A job with failing checks, as the report lists it. */
export interface Finding {
  jobId: string;
  verdict: string;
  /** What went wrong, read from the failing checks (not from the simulator). */
  label: string;
  failingChecks: { name: string; reason: string | null }[];
}

/**
 * The first failing check in this order names the finding: the most specific evidence first
 * (a replayed signature also breaks the memo check; a second settlement also makes the jobs
 * API disagree with the headers).
 */
const labelsByCheck: [check: string, label: (verdict: string) => string][] = [
  ["signatures.unique", () => "replayed escrow"],
  ["settlement.single", () => "settled twice"],
  ["escrow.single", () => "locked twice"],
  ["settlement.succeeded", () => "failed settlement"],
  ["settlement.worker_paid", () => "wrong worker paid"],
  ["settlement.split", () => "payout split off"],
  ["charge.matches_price", () => "wrong charge"],
  ["settlement.conserves_lock", () => "escrow leaked"],
  ["settlement.recipients", () => "unknown payee"],
  [
    "settlement.exists",
    (verdict) => (verdict === "dropped" ? "phantom settlement" : "never settled"),
  ],
  ["refund.complete", () => "partial refund"],
  ["refund.not_settled", () => "charged for no answer"],
  ["refund.single", () => "refunded twice"],
  ["receipt.time", () => "receipt misdated"],
  ["signatures.explained", () => "unexplained movement"],
  ["jobs_api.matches_chain", () => "jobs API disagrees"],
];

/** A short label of what went wrong, from the names of the failing checks. */
export function findingLabel(verdict: string, failing: readonly string[]): string {
  for (const [check, label] of labelsByCheck) {
    if (failing.includes(check)) return label(verdict);
  }
  return failing[0] ?? verdict;
}

/** The run's reconciliation, grouped by model. */
export function runReconciliation(
  store: Store,
  from: number,
  to: number,
): Promise<ReconciliationReport> {
  return reconciliationReport(store, { from, to, groupBy: "model" });
}

/** Every job of the run with a failing check (discrepancy or dropped), oldest first. */
export async function runFindings(store: Store, from: number): Promise<Finding[]> {
  const findings: Finding[] = [];
  let cursor: string | undefined;
  do {
    const page = await listDiscrepancies(
      store,
      { from },
      { limit: 500, order: "asc", ...(cursor === undefined ? {} : { cursor }) },
    );
    for (const item of page.items) {
      const names = item.failingChecks.map((c) => c.name);
      findings.push({
        jobId: item.jobId,
        verdict: item.verdict,
        label: findingLabel(item.verdict, names),
        failingChecks: item.failingChecks.map((c) => ({ name: c.name, reason: c.reason })),
      });
    }
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined);
  return findings;
}

/** Lays out rows as columns: the first left-aligned, the others right-aligned. */
function columns(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows.map((row) =>
    row
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join(" ")
      .trimEnd(),
  );
}

function figureCells(f: ReconciliationFigures): string[] {
  return [
    String(f.jobs),
    String(f.verified),
    String(f.partiallyVerified),
    String(f.discrepancies + f.dropped),
    formatUnits(f.escrowedUnits),
    formatUnits(f.chargedUnits),
    formatUnits(f.workerPaidUnits),
    formatUnits(f.treasuryPaidUnits),
    formatUnits(f.refundedUnits),
    formatUnits(f.unaccountedUnits),
  ];
}

/** The reconciliation table: one row per model and a total row, with a legend. */
export function formatReconciliation(report: ReconciliationReport): string[] {
  const header = [
    "model",
    "jobs",
    "ok",
    "partial",
    "flagged",
    "escrowed",
    "charged",
    "worker",
    "treasury",
    "refunded",
    "unaccounted",
  ];
  const body = report.groups.map((g) => [g.group ?? "(none)", ...figureCells(g)]);
  const total = ["total", ...figureCells(report.totals)];
  const lines = columns([header, ...body, total]);
  const rule = "-".repeat(Math.max(...lines.map((l) => l.length)));
  const t = report.totals;
  const notes = [
    "ok = verified; partial = no check failed but a money fact is unproven (a stream without",
    "usage: its charge is bounded by the lock only); flagged = discrepancy or dropped.",
    "Amounts in USDC, read from the chain; each on-chain movement counted once.",
    `Charged on verified jobs ${formatUnits(report.totals.verifiedChargedUnits)}, on flagged jobs ${formatUnits(report.totals.disputedChargedUnits)}.`,
    "unaccounted = escrowed - worker - treasury - refunded: above 0 stayed in escrow or got",
    "lost; below 0 was paid out beyond the lock (e.g. by a second settlement).",
  ];
  const open = t.pending + t.unverifiable;
  if (open > 0) notes.push(`${t.pending} jobs not final, ${t.unverifiable} unverifiable.`);
  return [lines[0]!, rule, ...lines.slice(1, -1), rule, lines.at(-1)!, ...notes];
}

/** Breaks `prefix` + `text` into lines of at most `width` characters at spaces; later ones get `indent`. */
function wrap(prefix: string, text: string, width: number, indent: string): string[] {
  const lines: string[] = [];
  let line = prefix;
  let empty = true;
  for (const word of text.split(" ").filter((w) => w !== "")) {
    if (!empty && line.length + 1 + word.length > width) {
      lines.push(line);
      line = indent + word;
    } else {
      line = empty ? line + word : `${line} ${word}`;
    }
    empty = false;
  }
  lines.push(line);
  return lines;
}

/**
 * The findings, two or more lines each: job id, verdict and label (plus what the simulator
 * injected, when known), then each failing check with its reason, wrapped at `width`.
 */
export function formatFindings(
  findings: readonly Finding[],
  injected: ReadonlyMap<string, string | null> = new Map(),
  width = 100,
): string[] {
  if (findings.length === 0) return ["  none"];
  const idWidth = Math.max(...findings.map((f) => f.jobId.length));
  const labelWidth = Math.max(...findings.map((f) => f.label.length));
  const lines: string[] = [];
  for (const f of findings) {
    const fault = injected.get(f.jobId);
    const tail = fault === undefined ? "" : `  injected: ${fault ?? "none"}`;
    lines.push(
      `  ${f.jobId.padEnd(idWidth)}  ${f.verdict.padEnd(11)}  ${f.label.padEnd(labelWidth)}${tail}`,
    );
    for (const check of f.failingChecks) {
      const text = `${check.name}: ${check.reason ?? "failed"}`;
      lines.push(...wrap("      x ", text, width, "        "));
    }
  }
  return lines;
}
