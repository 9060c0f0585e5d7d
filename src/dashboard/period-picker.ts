import { withoutUrlSecrets } from "../chain/url-secrets.js";
import { finalVerdicts, type RejudgeReason, rejudgeReasons } from "../db/schema.js";
import { RECORDING_MARGIN_MS } from "../reports/period.js";
import type { Rejudging } from "../reports/reconciliation.js";
import type { RpcTrouble } from "../store/ops.js";
import { refusalOf } from "../store/queue-rules.js";
import { BASE, count, type Html, html, raw, usdc, utc } from "./html.js";
import { type DashboardPeriod, shownDays } from "./period.js";

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
<label>Period (${period.timeZone})
<select name="period">${options.map(
    ([value, label]) =>
      html`<option value="${value}"${period.kind === value ? raw(" selected") : ""}>${label}</option>`,
  )}</select></label>
<label>From day (custom)<input type="date" name="from" value="${period.firstDay}"></label>
<label>To day, inclusive (custom)<input type="date" name="to" value="${period.lastDay}"></label>
${timeZoneField(period.timeZone)}
<input type="hidden" name="shown" value="${shownDays(period)}">
${extra}
<button class="primary" type="submit">Show</button>
</form>
${endedNote(action, period)}
<p class="note">Showing ${period.firstDay} 00:00 ${period.timeZone} up to ${period.lastDay} 24:00 ${period.timeZone}${period.timeZone === "UTC" ? "" : ` (${utc(period.from)} to ${utc(period.to)})`}.</p>`;
}

const runningLabel: Record<string, string> = {
  day: "today",
  week: "this week",
  month: "month to date",
};

/**
 * Said above a period a link named before it ended (see `DashboardPeriod.ended`): the whole of
 * it is shown, and the one running now is a link away.
 */
export function endedNote(action: string, period: DashboardPeriod): Html {
  if (!period.ended) return html``;
  const label = runningLabel[period.kind] ?? period.kind;
  const zone = period.timeZone === "UTC" ? "" : `&timeZone=${encodeURIComponent(period.timeZone)}`;
  return html`<p class="note" role="status" data-status="period-ended">This link names the ${period.kind} that began ${period.firstDay}, which has ended: showing all of it, ${period.firstDay} to ${period.lastDay}. <a href="${BASE}${action}?period=${period.kind}${zone}">Show ${label} now</a>.</p>`;
}

/** The time zone whose days a period is made of: an IANA name, as the API's `timeZone`. */
export function timeZoneField(timeZone: string): Html {
  return html`<label>Time zone (IANA, e.g. America/New_York)<input type="text" name="timeZone" value="${timeZone}" size="18" spellcheck="false" autocomplete="off"></label>`;
}

/**
 * Jobs waiting on RPC trouble, said so: they are retried with backoff and never look overdue,
 * so without this the figures read as merely in progress while they cannot move at all.
 */
export function rpcTroubleNote(trouble: RpcTrouble | null): Html {
  if (trouble === null) return html``;
  return html`${rpcWaitNote(trouble)}${heldRowNote(trouble.heldRows)}`;
}

/**
 * Jobs parked as `error` because their verdict write was refused on a database row another
 * session held locked: said as what happened, not as RPC trouble.
 */
function heldRowNote(held: RpcTrouble["heldRows"]): Html {
  if (held.jobs === 0) return html``;
  const n = held.jobs === 1 ? "1 job is" : `${count(held.jobs)} jobs are`;
  const refusal = held.lastError === null ? "" : refusalOf(held.lastError);
  return html`<p class="error" role="alert" data-status="held-row"><strong>${n} waiting for a database row another session holds locked</strong>: the verdict was not written (not RPC trouble); it is written again once the row is free${refusal ? html`: <span class="mono">${refusal}</span>` : ""}. <a href="${BASE}/status">See the status page</a>.</p>`;
}

function rpcWaitNote(trouble: RpcTrouble): Html {
  if (trouble.jobs === 0) return html``;
  const n = trouble.jobs === 1 ? "1 job is" : `${count(trouble.jobs)} jobs are`;
  return html`<p class="error" role="alert" data-status="rpc-trouble"><strong>${n} waiting on Solana RPC trouble</strong>: the chain could not be read (or its endpoints disagreed), so their figures cannot move until the RPC answers. The oldest was recorded ${utc(trouble.oldestCreatedAt)}; the last attempt, ${utc(trouble.lastAt)}, failed${trouble.lastError ? html`: <span class="mono">${withoutUrlSecrets(trouble.lastError)}</span>` : ""}. <a href="${BASE}/status">See the status page</a>.</p>`;
}

/**
 * When the figures stop moving, said plainly: every job before `dataCompleteUntil` has a final
 * verdict. Jobs waiting on RPC trouble are named: their figures are stalled, not in progress.
 */
export function completeness(
  report: {
    dataCompleteUntil: number;
    to: number;
    generatedAt: number;
    rejudging?: Rejudging;
  },
  trouble: RpcTrouble | null = null,
): Html {
  const open =
    report.dataCompleteUntil < report.to &&
    report.dataCompleteUntil < report.generatedAt - RECORDING_MARGIN_MS;
  return html`${finalness(report)}
${rejudgingNote(report.rejudging)}
${open ? rpcTroubleNote(trouble) : ""}`;
}

/** How far the figures are final, in one sentence. */
function finalness(report: { dataCompleteUntil: number; to: number; generatedAt: number }): Html {
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

/** How each reason to judge a job again reads in a sentence. */
const rejudgeReasonLabels: Record<RejudgeReason, string> = {
  profile: "the profile changed",
  reverify: "verified again by hand",
  upgrade: "a rule of this version",
  evidence: "new evidence",
};

/**
 * Jobs that had a final verdict and are judged again, said so: the figures count them as not
 * final, so verified money seems to vanish from them; this says what they were and why.
 */
export function rejudgingNote(r: Rejudging | undefined): Html {
  if (r === undefined || r.jobs === 0) return html``;
  const n =
    r.jobs === 1
      ? "1 job that had a final verdict is"
      : `${count(r.jobs)} jobs that had a final verdict are`;
  const were = finalVerdicts
    .filter((v) => r.byPreviousVerdict[v] > 0)
    .map((v) => `${count(r.byPreviousVerdict[v])} ${v.replace("_", " ")}`)
    .join(", ");
  const why = rejudgeReasons
    .filter((reason) => r.byReason[reason] > 0)
    .map((reason) => `${count(r.byReason[reason])} ${rejudgeReasonLabels[reason]}`)
    .join(", ");
  const verifiedMoney =
    r.previouslyVerifiedChargedUnits > 0n
      ? html` (${usdc(r.previouslyVerifiedChargedUnits)} USDC charged on those that were verified)`
      : "";
  return html`<p class="final open" data-status="rejudging"><strong>${n} being judged again</strong> and count as not final until then. They were ${were}${verifiedMoney}; sent back by ${why}. New evidence may overturn the verdict a job had.</p>`;
}
