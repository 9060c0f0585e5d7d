import type { AuditRecord } from "../reports/audit-record.js";
import { checkCatalogue } from "../verify/check-catalogue.js";
import { BASE, type Html, html, short, sol, usdc, utc, verdictBadge } from "./html.js";
import type { DashboardSession } from "./sessions.js";

type Check = AuditRecord["checks"][number];
type Tx = AuditRecord["transactions"][number];

/** The verdict's reason in one or a few sentences, read before any detail. */
function verdictReason(r: AuditRecord): Html {
  const failing = r.checks.filter((c) => c.outcome === "fail");
  switch (r.verdict) {
    case "verified":
      return html`<p>Every applicable check passed at <strong>${r.commitment ?? "finalized"}</strong> commitment: the charge and its settlement are proven on chain.</p>`;
    case "partially_verified":
      return html`<p>No check failed, but part of the money could not be proven:</p><ul>${r.unproven.map((u) => html`<li>${u.message}</li>`)}</ul>`;
    case "discrepancy":
    case "dropped":
      return html`<p>${failing.length === 1 ? "One check failed" : `${failing.length} checks failed`}:</p><ul>${failing.map(
        (c) =>
          html`<li><strong>${c.name}</strong>: ${c.reason ?? checkCatalogue[c.name as keyof typeof checkCatalogue] ?? "failed"}</li>`,
      )}</ul>`;
    case "unverifiable":
      return html`<p>The receipt or the chain lacks what a check needs${r.lastError ? html`: ${r.lastError}` : ""}.</p>`;
    default:
      return html`<p>Not final yet${r.lastError ? html`: ${r.lastError}` : ": waiting for the transactions to be finalized"}.</p>`;
  }
}

/**
 * One evidence value. Amounts are decimal strings of base units (the API's convention), so a
 * string of digits is shown in USDC and in base units; lamports and plain numbers as they are.
 */
function evidenceValue(key: string, value: unknown): Html {
  if (typeof value === "string" && /^-?\d+$/.test(value)) {
    if (/lamports/i.test(key)) return html`${value} lamports`;
    if (/bps|slot|count|decimals|index/i.test(key)) return html`${value}`;
    return html`<span class="mono">${usdc(value)} USDC</span> <span class="muted">(${value} units)</span>`;
  }
  if (Array.isArray(value)) {
    return html`${value.map((v, i) => html`${i > 0 ? ", " : ""}${evidenceValue(key, v)}`)}`;
  }
  if (value !== null && typeof value === "object")
    return html`<span class="mono">${JSON.stringify(value)}</span>`;
  return html`<span class="mono">${String(value)}</span>`;
}

function evidence(value: unknown): Html {
  if (value === null || value === undefined) return html`<span class="muted">—</span>`;
  if (typeof value !== "object" || Array.isArray(value)) return evidenceValue("", value);
  const entries = Object.entries(value as Record<string, unknown>);
  return html`<dl class="facts">${entries.map(([k, v]) => html`<dt>${k}</dt><dd>${evidenceValue(k, v)}</dd>`)}</dl>`;
}

function checkRows(checks: Check[], id: string): Html {
  return html`<div class="scroll"><table id="${id}"><thead><tr><th scope="col">check</th><th scope="col">outcome</th><th scope="col">expected</th><th scope="col">actual</th></tr></thead>
<tbody>${checks.map(
    (c) => html`<tr id="check-${c.name}">
<td><strong class="mono">${c.name}</strong><br><span class="muted">${checkCatalogue[c.name as keyof typeof checkCatalogue] ?? ""}</span>${c.reason ? html`<br>${c.reason}` : ""}</td>
<td class="outcome-${c.outcome}">${c.outcome}</td>
<td>${evidence(c.expected)}</td>
<td>${evidence(c.actual)}</td></tr>`,
  )}</tbody></table></div>`;
}

/** Failing checks in full first; passed and skipped ones folded, open when nothing failed. */
function checksSection(checks: Check[]): Html {
  const byName = [...checks].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const failing = byName.filter((c) => c.outcome === "fail");
  const passed = byName.filter((c) => c.outcome === "pass");
  const skipped = byName.filter((c) => c.outcome === "skip");
  if (checks.length === 0) return html`<p class="muted">No check has run on this job yet.</p>`;
  return html`${failing.length > 0 ? checkRows(failing, "failing-checks") : html`<p>No check failed.</p>`}
${passed.length > 0 ? html`<details${failing.length === 0 ? html` open` : ""}><summary>${passed.length} checks passed</summary>${checkRows(passed, "passed-checks")}</details>` : ""}
${skipped.length > 0 ? html`<details><summary>${skipped.length} checks skipped, each with why</summary>${checkRows(skipped, "skipped-checks")}</details>` : ""}`;
}

/**
 * A job judged again: the checks the verdict it left was reached on, folded and said to be no
 * longer current.
 */
function previousChecksSection(r: AuditRecord): Html {
  const previous = r.rejudging?.previousChecks ?? [];
  if (previous.length === 0) return html``;
  const byName = [...previous].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return html`<details id="previous-checks"><summary>${previous.length} checks of the verdict it left (${verdictBadge(r.rejudging!.previousVerdict)}), no longer current</summary>${checkRows(byName, "previous-checks-table")}</details>`;
}

/** A transaction's heading: the step it was named for, and by whom. */
function transactionTitle(tx: Tx): string {
  const steps = [
    ...new Set(
      tx.namedAs.map((n) =>
        n.endsWith("escrow") ? "Escrow" : n.endsWith("settlement") ? "Settlement" : null,
      ),
    ),
  ].filter((s) => s !== null);
  const by = [
    ...new Set(
      tx.namedAs.map((n) =>
        n.startsWith("receipt")
          ? "the receipt"
          : n.startsWith("jobs API")
            ? "the jobs API"
            : "a conflicting receipt",
      ),
    ),
  ];
  return `${steps.length > 0 ? steps.join(" and ") : "Transaction"}, named by ${by.join(", ")}`;
}

/**
 * Every transaction the job names, each with its money movements: a second settlement (named
 * by the jobs API) or a second lock is counted in the amounts like the first, so the section
 * shows every one the amounts count and a reader can add the amounts up from it.
 */
function transactionsSection(txs: Tx[]): Html {
  if (txs.length === 0) return html`<p class="muted">No transaction is named.</p>`;
  const counted = txs.filter((t) => t.countedInAmounts).length;
  return html`<p>${txs.length === 1 ? "One transaction is named" : `${txs.length} transactions are named`}; the amounts above count ${counted === txs.length ? (txs.length === 1 ? "it" : "all of them") : `${counted} of them (each other one says why not)`}.</p>
${txs.map((t) => transaction(t))}`;
}

function transaction(tx: Tx): Html {
  return html`<h3>${transactionTitle(tx)}</h3>
${tx.countedInAmounts ? "" : html`<p><strong>Not counted in this job's amounts</strong>: ${tx.notCountedBecause}.</p>`}
<dl class="facts">
<dt>signature</dt><dd><span class="mono">${tx.signature}</span><br><a href="${tx.explorerUrl}" rel="noopener noreferrer" target="_blank">Open in Solana Explorer<span class="muted"> (new tab)</span></a></dd>
<dt>state</dt><dd>${tx.state}${tx.commitment && tx.commitment !== tx.state ? ` at ${tx.commitment}` : ""}${tx.succeeded === false ? html` — <strong class="outcome-fail">failed</strong> ${tx.err ? JSON.stringify(tx.err) : ""}` : ""}</dd>
<dt>slot, block time</dt><dd>${tx.slot ?? "—"}, ${utc(tx.blockTime)}</dd>
<dt>fee</dt><dd>${tx.feeLamports === null ? "—" : `${sol(tx.feeLamports)} SOL (${tx.feeLamports} lamports)`}</dd>
</dl>
${
  tx.tokenMovements.length === 0
    ? html`<p class="muted">No token movements recorded.</p>`
    : html`<div class="scroll"><table><caption class="muted" style="text-align:left;padding:.3rem">Money movements</caption><thead><tr><th scope="col">account</th><th scope="col">owner</th><th scope="col" class="num">change</th><th scope="col" class="num">before</th><th scope="col" class="num">after</th></tr></thead>
<tbody>${tx.tokenMovements.map((m) => {
        const isUsdc = m.decimals === 6;
        const amount = (v: string) =>
          isUsdc && /^-?\d+$/.test(v)
            ? html`${usdc(v)}<br><span class="muted">${v} units</span>`
            : html`${v}`;
        return html`<tr><td>${short(m.account)}</td><td>${short(m.owner)}</td><td class="num">${amount(m.delta)}</td><td class="num">${amount(m.pre)}</td><td class="num">${amount(m.post)}</td></tr>`;
      })}</tbody></table></div>`
}`;
}

function facts(rows: [string, Html | string | number | null | boolean][]): Html {
  return html`<dl class="facts">${rows.map(
    ([k, v]) =>
      html`<dt>${k}</dt><dd>${v === null || v === "" ? html`<span class="muted">—</span>` : typeof v === "boolean" ? (v ? "yes" : "no") : v}</dd>`,
  )}</dl>`;
}

/**
 * A job judged again: the verdict it had, when and under which profile, and why it was sent
 * back. Its verdict stays open meanwhile: new evidence may overturn the one it had.
 */
function rejudgingReason(r: AuditRecord): Html {
  const j = r.rejudging;
  if (j === null) return html``;
  const at = j.previousVerdictAt ? ` reached ${utc(j.previousVerdictAt)}` : "";
  const under = j.previousVerdictProfile
    ? html` under profile <span class="mono">${j.previousVerdictProfile}</span>`
    : "";
  return html`<p data-rejudging="${j.reason}"><strong>Being judged again.</strong> It was ${verdictBadge(j.previousVerdict)}${at}${under}: ${j.message}. Until the new verdict it counts as not final.</p>`;
}

/** The audit record as a person reads it: the verdict and why first, then the evidence. */
export function jobBody(r: AuditRecord, session: DashboardSession, flash: string | null): Html {
  const tone =
    r.verdict === "verified" ? "good" : r.verdict === "partially_verified" ? "partial" : "bad";
  const a = r.amounts;
  const rc = r.receipt;
  return html`<h1>Job <span class="mono">${r.jobId}</span></h1>
${flash ? html`<p class="flash" role="status">${flash}</p>` : ""}
<section class="verdict-box ${tone}" aria-labelledby="verdict-heading">
<h2 id="verdict-heading" style="margin:0">Verdict: ${verdictBadge(r.verdict)} ${r.rejudging ? "" : html`<span class="muted" style="font-size:.9rem;font-weight:400">${r.verdictAt ? `reached ${utc(r.verdictAt)}` : ""}${r.verdictProfile ? html` under profile <span class="mono">${r.verdictProfile}</span>` : ""}</span>`}</h2>
${rejudgingReason(r)}
${verdictReason(r)}
${
  session.role === "admin"
    ? html`<form method="post" action="${BASE}/jobs/${encodeURIComponent(r.jobId)}/reverify" style="margin-top:.6rem"><input type="hidden" name="csrf" value="${session.csrf}"><button class="primary" type="submit">Verify again</button></form>`
    : ""
}
</section>
<h2>Amounts</h2>
${facts([
  [
    "charged",
    a.chargedUnits === null ? null : `${usdc(a.chargedUnits)} USDC (${a.chargedUnits} units)`,
  ],
  [
    "expected charge (price × usage)",
    a.expectedChargeUnits === null
      ? null
      : `${usdc(a.expectedChargeUnits)} USDC (${a.expectedChargeUnits} units)`,
  ],
  [
    "escrowed",
    a.escrowedUnits === null ? null : `${usdc(a.escrowedUnits)} USDC (${a.escrowedUnits} units)`,
  ],
  [
    "paid to the worker",
    a.workerPaidUnits === null
      ? null
      : `${usdc(a.workerPaidUnits)} USDC (${a.workerPaidUnits} units)`,
  ],
  [
    "paid to the treasury",
    a.treasuryPaidUnits === null
      ? null
      : `${usdc(a.treasuryPaidUnits)} USDC (${a.treasuryPaidUnits} units)`,
  ],
  [
    "refunded",
    a.refundedUnits === null ? null : `${usdc(a.refundedUnits)} USDC (${a.refundedUnits} units)`,
  ],
  [
    "network fees",
    a.feesLamports === null ? null : `${sol(a.feesLamports)} SOL (${a.feesLamports} lamports)`,
  ],
])}
<h2>Checks</h2>
${r.rejudging && r.checks.length === 0 ? html`<p class="muted">No check of the new judgement has run yet.</p>` : checksSection(r.checks)}
${previousChecksSection(r)}
<h2>Transactions</h2>
${transactionsSection(r.transactions)}
<h2>Receipt</h2>
${facts([
  ["source", rc.source],
  ["recorded", utc(rc.recordedAt)],
  ["model asked for", rc.model],
  ["model answered", rc.responseModel],
  [
    "worker",
    rc.decentral.worker
      ? html`<a class="mono" href="${BASE}/workers/${encodeURIComponent(rc.decentral.worker)}">${rc.decentral.worker}</a>`
      : null,
  ],
  [
    "escrow signature",
    rc.decentral.escrowTx ? html`<span class="mono">${rc.decentral.escrowTx}</span>` : null,
  ],
  [
    "settlement signature",
    rc.decentral.settlementTx ? html`<span class="mono">${rc.decentral.settlementTx}</span>` : null,
  ],
  [
    "credits remaining",
    rc.decentral.creditsRemainingUnits === null
      ? null
      : `${usdc(rc.decentral.creditsRemainingUnits)} USDC`,
  ],
  ["credit vault", rc.creditVault ? html`<span class="mono">${rc.creditVault}</span>` : null],
  [
    "usage (prompt + completion tokens)",
    rc.usage.totalTokens === null
      ? null
      : `${rc.usage.promptTokens ?? "?"} + ${rc.usage.completionTokens ?? "?"} = ${rc.usage.totalTokens}`,
  ],
  ["streamed", rc.stream],
  ["HTTP status", rc.httpStatus],
  [
    "API key fingerprint",
    rc.keyFingerprint ? html`<span class="mono">${rc.keyFingerprint}</span>` : null,
  ],
  ["tags", Object.keys(rc.tags ?? {}).length ? JSON.stringify(rc.tags) : null],
  ["capture", rc.captureState],
])}
<h2>What the jobs API said</h2>
${
  r.jobsApi
    ? facts([
        ["status", r.jobsApi.status],
        [
          "credits charged",
          r.jobsApi.creditsChargedUnits === null
            ? null
            : `${usdc(r.jobsApi.creditsChargedUnits)} USDC (${r.jobsApi.creditsChargedUnits} units)`,
        ],
        [
          "escrow signature",
          r.jobsApi.escrowTx ? html`<span class="mono">${r.jobsApi.escrowTx}</span>` : null,
        ],
        [
          "settlement signature",
          r.jobsApi.settlementTx ? html`<span class="mono">${r.jobsApi.settlementTx}</span>` : null,
        ],
        ["worker", r.jobsApi.worker ? html`<span class="mono">${r.jobsApi.worker}</span>` : null],
        ["asked", utc(r.jobsApi.checkedAt)],
      ])
    : html`<p class="muted">The jobs API was not asked about this job.</p>`
}
<h2>Conflicting receipts</h2>
${
  r.conflicts.length === 0
    ? html`<p class="muted">None: every receipt of this job agreed.</p>`
    : html`<ul>${r.conflicts.map(
        (c) =>
          html`<li>${utc(c.receivedAt)} from ${c.source}: <span class="mono">${JSON.stringify(c.differences)}</span></li>`,
      )}</ul>`
}
<p class="muted">The same record as JSON: <span class="mono">GET /audit/${r.jobId}</span> with a read token.</p>`;
}
