import {
  findingCount,
  type Statement,
  unreadWhy,
  type VaultStatement,
} from "../ledger/statement.js";
import { BASE, count, type Html, html, short, usdc, utc } from "./html.js";
import type { DashboardPeriod } from "./period.js";
import { periodPicker } from "./period-picker.js";

/** A balance read's slot and, when kept, its time: a past period's page says when it was. */
const readOf = (r: { slot: number; readAt: string | null }) =>
  r.readAt === null ? `slot ${r.slot}` : `slot ${r.slot}, made ${r.readAt}`;

const signed = (units: bigint | null) =>
  units === null ? "—" : `${units > 0n ? "+" : ""}${usdc(units)}`;

/** One credit vault's bank statement: the balance walk, then every line that needs a look. */
function vaultSection(v: VaultStatement): Html {
  const balanced = v.differenceUnits === 0n;
  // Whole as far as the history goes; a lock not due yet is said in its own section.
  const read = v.historyRead && v.gaps.length === 0 && v.missingHistory === null;
  return html`<section aria-label="Vault ${v.vault}">
<h2 class="mono">${v.vault}</h2>
<p>${v.keys.length > 0 ? html`API keys ${v.keys.join(", ")}. ` : ""}${
    read
      ? "History read through the end of the period."
      : v.missingHistory && v.historyRead
        ? html`<strong>History before <span class="mono">${short(v.missingHistory.beforeSignature)}</span> not available from the RPC (its oldest transactions are pruned): read the vault from an archival RPC endpoint.</strong>`
        : v.historyRead
          ? // Read through, with gaps: money moved in transactions the RPC never listed.
            html`<strong>History read through the end of the period, with ${count(v.gaps.length)} gaps: money moved in transactions the RPC did not list (below).</strong>`
          : html`<strong>History not read through the end of the period yet${v.readThrough ? ` (read to ${v.readThrough})` : ""}: figures may still move.</strong>`
  }</p>
${
  v.unread
    ? html`<p><strong>${count(v.unread.lines)} transactions of this vault could not be read: ${unreadWhy(v.unread)}. Until they are, the closing balance on chain and the difference are not known.</strong></p>`
    : ""
}
<div class="scroll" tabindex="0" role="region" aria-label="Balance of ${v.vault}">
<table><tbody>
<tr><th scope="row">Opening balance</th><td class="num">${usdc(v.openingUnits)}</td></tr>
<tr><th scope="row">Deposits (${count(v.counts.deposits)})</th><td class="num">${signed(v.depositsUnits)}</td></tr>
<tr><th scope="row">Locks of recorded jobs (${count(v.counts.locks)})</th><td class="num">${signed(-v.locksUnits)}</td></tr>
<tr><th scope="row">Returns and refunds (${count(v.counts.returns)})</th><td class="num">${signed(v.returnsUnits)}</td></tr>
<tr><th scope="row">Unexplained debits (${count(v.counts.unexplained)})</th><td class="num">${signed(-v.unexplainedOutUnits)}</td></tr>
<tr class="total"><th scope="row">Closing balance by the ledger</th><td class="num">${usdc(v.closingByLedgerUnits)}</td></tr>
<tr><th scope="row">Closing balance on chain</th><td class="num">${v.unread ? "not known" : usdc(v.closingOnChainUnits)}</td></tr>
<tr><th scope="row">Difference</th><td class="num">${balanced ? "0.000000" : v.unread ? html`<strong>not known</strong>` : html`<strong>${signed(v.differenceUnits)}</strong>`}</td></tr>
<tr><th scope="row">Net spend (locks − returns + unexplained)</th><td class="num">${usdc(v.netSpendUnits)}</td></tr>
</tbody></table></div>
${
  v.accountSnapshot
    ? html`<p>Decentral's account (GET /v1/account, ${new Date(v.accountSnapshot.takenAt).toISOString()}): ${
        v.accountSnapshot.error !== null
          ? html`not compared: ${v.accountSnapshot.error}`
          : v.accountSnapshot.usdcDifferenceUnits === 0n
            ? html`${usdc(v.accountSnapshot.usdcValueUnits)} USDC, equal to the vault on chain.`
            : html`<strong>${usdc(v.accountSnapshot.usdcValueUnits)} USDC against ${usdc(v.accountSnapshot.vaultUnits)} in the vault on chain (${signed(v.accountSnapshot.usdcDifferenceUnits)}).</strong>`
      }</p>`
    : ""
}
${
  v.unexplained.length > 0
    ? html`<h3>Unexplained debits: money out that no recorded job locked</h3>
<div class="scroll" tabindex="0" role="region" aria-label="Unexplained debits">
<table><thead><tr><th scope="col">transaction</th><th scope="col" class="num">amount, USDC</th><th scope="col">memo names</th></tr></thead>
<tbody>${v.unexplained.map(
        (u) =>
          html`<tr><td class="mono">${short(u.signature)}</td><td class="num">${usdc(-u.amountUnits)}</td><td>${
            u.memoJobId
              ? html`<a href="${BASE}/jobs/${encodeURIComponent(u.memoJobId)}">${u.memoJobId}</a>`
              : "—"
          }</td></tr>`,
      )}</tbody></table></div>`
    : ""
}
${
  v.unreleasedLocks.length > 0
    ? html`<h3>Locks never returned or settled in time</h3>
<ul>${v.unreleasedLocks.map(
        (u) =>
          html`<li><a href="${BASE}/jobs/${encodeURIComponent(u.jobId)}">${u.jobId}</a>: ${usdc(u.outstandingUnits)} USDC of ${usdc(u.lockUnits)} still out, locked in <span class="mono">${short(u.signature)}</span>, due by ${u.dueBy ?? "an unknown time"}</li>`,
      )}</ul>`
    : ""
}
${
  v.locksNotDue.length > 0
    ? html`<h3>Locks still out, not due yet</h3>
<p>Their settlement window has not passed in the history read, so whether they come back is not
known yet: a statement of this period built after the last is due (${v.locksNotDue.at(-1)?.dueBy ?? "unknown"}) says.</p>
<ul>${v.locksNotDue.map(
        (u) =>
          html`<li><a href="${BASE}/jobs/${encodeURIComponent(u.jobId)}">${u.jobId}</a>: ${usdc(u.outstandingUnits)} USDC of ${usdc(u.lockUnits)} still out, locked in <span class="mono">${short(u.signature)}</span>, due by ${u.dueBy ?? "an unknown time"}</li>`,
      )}</ul>`
    : ""
}
${
  v.gaps.length > 0
    ? html`<h3>Gaps in the history (balances that do not chain)</h3><p>${count(v.gaps.length)} gaps: read the vault from an archival RPC endpoint.</p>
<ul>${v.gaps.map(
        (g) =>
          html`<li>${signed(g.missingUnits)} USDC moved unseen after ${g.afterSignature === null ? "the vault's start (no movement listed)" : html`${short(g.afterSignature)} (slot ${g.fromSlot})`} and before ${g.beforeSignature === null ? "the balance read" : short(g.beforeSignature)} (slot ${g.toSlot})</li>`,
      )}</ul>`
    : ""
}
${setAsideList(v)}
${otherFindings(v)}
</section>`;
}

/**
 * Entries a node listed as the vault's that their own signatures prove another account's: they
 * move nothing here, but the JSON and CSV name them, and so does the page.
 */
function setAsideList(v: VaultStatement): Html {
  if (v.setAside.length === 0) return html``;
  return html`<h3>Set aside: listed as the vault's, proven another account's (nothing moved)</h3>
<ul>${v.setAside.map(
    (a) =>
      html`<li>${short(a.signature)} (slot ${a.slot}, ${a.blockTime === null ? "no block time given" : utc(a.blockTime * 1000)}): ${a.why}</li>`,
  )}</ul>`;
}

/** Findings beyond the debits and locks: each says what it is and where to look. */
function otherFindings(v: VaultStatement): Html {
  const jobLink = (jobId: string | null) =>
    jobId
      ? html` (memo names <a href="${BASE}/jobs/${encodeURIComponent(jobId)}">${jobId}</a>)`
      : "";
  const items: Html[] = [
    ...v.creditsHeaderMismatches.map(
      (m) =>
        html`<li><a href="${BASE}/jobs/${encodeURIComponent(m.jobId)}">${m.jobId}</a>: its credits-remaining header says ${usdc(m.headerUnits)} USDC, a balance the vault never held then</li>`,
    ),
    ...v.creditsHeaderUndecided.map(
      (m) =>
        html`<li><a href="${BASE}/jobs/${encodeURIComponent(m.jobId)}">${m.jobId}</a>: its credits-remaining header says ${usdc(m.headerUnits)} USDC, a balance the vault held in none of the transactions read so far (not decided: the vault is not read past its response yet)</li>`,
    ),
    ...v.ownerChanges.map((o) =>
      o.finding === "vault_owner_now"
        ? html`<li>The vault is owned now by <span class="mono">${o.owner}</span>, not the escrow authority (its newest transaction, <span class="mono">${short(o.signature)}</span>, shows it): that owner can spend it alone</li>`
        : html`<li><span class="mono">${short(o.signature)}</span> left the vault owned by <span class="mono">${o.owner}</span>, not the escrow authority: that owner can spend it alone${jobLink(o.memoJobId)}</li>`,
    ),
    ...v.delegateApprovals.map(
      (d) =>
        html`<li><span class="mono">${short(d.signature)}</span> gave the vault a delegate, <span class="mono">${d.delegate}</span>, who can spend ${d.approvedUnits === null ? "it" : `${usdc(d.approvedUnits)} USDC of it`} alone${jobLink(d.memoJobId)}</li>`,
    ),
    // From the last balance read: no transaction read shows how it came to be.
    ...(v.ownerRead
      ? [
          v.ownerRead.owner === null
            ? html`<li>The vault's last balance read (${readOf(v.ownerRead)}) named no owner: that the escrow authority owns it is not proven</li>`
            : html`<li>The vault is owned by <span class="mono">${v.ownerRead.owner}</span>, not the escrow authority, by its last balance read (${readOf(v.ownerRead)}): that owner can spend it alone</li>`,
        ]
      : []),
    ...(v.delegateRead
      ? [
          html`<li>The vault has a delegate, <span class="mono">${v.delegateRead.delegate}</span>, who can spend ${usdc(v.delegateRead.delegatedUnits)} USDC of it alone, by its last balance read (${readOf(v.delegateRead)})</li>`,
        ]
      : []),
    ...v.mixedMemos.map(
      (m) =>
        html`<li><span class="mono">${short(m.signature)}</span> moved ${usdc(m.amountUnits < 0n ? -m.amountUnits : m.amountUnits)} USDC ${m.amountUnits < 0n ? "out of" : "into"} the vault under memos naming several jobs (${m.named.map((n) => `${n.kind}:${n.jobId}`).join(", ")}): nobody can say whose money it was</li>`,
    ),
    ...v.foreignMint.map((f) =>
      f.finding === "foreign_mint_movement"
        ? html`<li><span class="mono">${short(f.signature)}</span> moved another mint at the vault's address (not credits, not counted)${jobLink(f.memoJobId)}</li>`
        : html`<li>The vault's address holds ${f.amountUnits === null ? "an amount" : usdc(f.amountUnits)} of another mint, <span class="mono">${f.mint ?? f.programId}</span> (not credits, not counted)</li>`,
    ),
  ];
  if (items.length === 0) return html``;
  return html`<h3>Other findings</h3><ul>${items}</ul>`;
}

/**
 * A vault with unread lines may hide a finding in them, and a lock not due yet may turn into
 * one: "no finding" is not known then.
 */
function findingsLine(findings: number, unreadVaults: number, locksNotDue: number): Html {
  const said =
    findings === 0
      ? unreadVaults === 0 && locksNotDue === 0
        ? html`No finding in this period.`
        : html`No finding in what is read and due.`
      : html`<strong>${count(findings)} findings in this period.</strong>`;
  const notDue =
    locksNotDue === 0
      ? ""
      : html` <strong>${count(locksNotDue)} ${locksNotDue === 1 ? "lock is" : "locks are"} still out and not due yet: whether ${locksNotDue === 1 ? "it comes" : "they come"} back is not known.</strong>`;
  if (unreadVaults === 0) return html`${said}${notDue}`;
  return html`${said} <strong>${count(unreadVaults)} ${unreadVaults === 1 ? "vault has" : "vaults have"} transactions not read yet: what they hold is not known.</strong>${notDue}`;
}

/** Every credit vault's statement for the period, like a bank reconciliation. */
export function statementBody(
  period: DashboardPeriod,
  statement: Statement | null,
  vault?: string,
): Html {
  if (statement === null) {
    return html`<h1>Credit vault statement</h1>
<p>The credit vault ledger is not read by this service (LEDGER_POLL_MS is 0, or no profile).</p>`;
  }
  const findings = statement.vaults.reduce((n, v) => n + findingCount(v), 0);
  return html`<h1>Credit vault statement</h1>
${periodPicker(
  "/statement",
  period,
  // The vault asked for goes along with a change of period: without it, the next period showed
  // every vault under a page that had been one vault's.
  vault ? html`<input type="hidden" name="vault" value="${vault}">` : "",
)}
<p>Every movement of each credit vault, from the chain: opening balance + deposits − locks +
returns − unexplained debits = closing balance, and the closing balance compared with the chain.
${findingsLine(
  findings,
  statement.vaults.filter((v) => v.unread !== null).length,
  statement.vaults.reduce((n, v) => n + v.locksNotDue.length, 0),
)}</p>
${statement.vaults.length === 0 ? html`<p>No credit vault is known yet (none configured, none learned from a lock).</p>` : ""}
${statement.vaults.map(vaultSection)}`;
}
