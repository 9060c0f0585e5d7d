import { verdicts } from "../db/schema.js";
import { isoOf } from "../reports/period.js";
import type { NightlySummary } from "./nightly-run.js";

const headline = (s: NightlySummary) =>
  s.outcome === "verified"
    ? `all ${s.total} jobs verified`
    : s.outcome === "discrepancies"
      ? `${s.total - s.byVerdict.verified} of ${s.total} jobs NOT verified`
      : `could not finish: ${s.reason}`;

const counts = (s: NightlySummary) =>
  verdicts.filter((v) => s.byVerdict[v] > 0).map((v) => [v, s.byVerdict[v]] as const);

/** Plain text for a terminal or a log file. */
export function summaryToText(s: NightlySummary): string {
  const lines = [
    `decentral-audit verify ${isoOf(s.from)} .. ${isoOf(s.to)}: ${headline(s)}`,
    `  jobs: ${s.total}${counts(s)
      .map(([v, n]) => `, ${v} ${n}`)
      .join("")}`,
    `  took ${((s.finishedAt - s.startedAt) / 1000).toFixed(1)} s; exit code ${s.exitCode}`,
  ];
  for (const f of s.findings) {
    lines.push(
      `  ${f.jobId}: ${f.verdict}${f.failingChecks.length ? ` (${f.failingChecks.join(", ")})` : ""}`,
    );
  }
  if (s.moreFindings > 0) lines.push(`  ... and ${s.moreFindings} more`);
  return `${lines.join("\n")}\n`;
}

/** Markdown to paste into a ticket or a chat. */
export function summaryToMarkdown(s: NightlySummary): string {
  const icon = s.outcome === "verified" ? "✅" : s.outcome === "discrepancies" ? "❌" : "⚠️";
  const lines = [
    `### ${icon} Nightly verification: ${headline(s)}`,
    "",
    `Window: \`${isoOf(s.from)}\` to \`${isoOf(s.to)}\` (UTC, end exclusive). Exit code ${s.exitCode}.`,
    "",
    "| verdict | jobs |",
    "|---|---:|",
    ...counts(s).map(([v, n]) => `| ${v} | ${n} |`),
    `| **total** | **${s.total}** |`,
  ];
  if (s.findings.length > 0) {
    lines.push("", "| job | verdict | failing checks |", "|---|---|---|");
    for (const f of s.findings) {
      lines.push(`| \`${f.jobId}\` | ${f.verdict} | ${f.failingChecks.join(", ") || "-"} |`);
    }
    if (s.moreFindings > 0) lines.push("", `... and ${s.moreFindings} more.`);
  }
  return `${lines.join("\n")}\n`;
}

/** JSON with ISO instants. */
export function summaryToJson(s: NightlySummary): string {
  return `${JSON.stringify(
    {
      ...s,
      from: isoOf(s.from),
      to: isoOf(s.to),
      startedAt: isoOf(s.startedAt),
      finishedAt: isoOf(s.finishedAt),
    },
    null,
    2,
  )}\n`;
}
