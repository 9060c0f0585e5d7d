import type { Store } from "../db/client.js";
import { dataCompleteUntil } from "../reports/reconciliation.js";
import { dashboardStore } from "../store/dashboard.js";
import { createOpsStore, type RpcTrouble } from "../store/ops.js";
import type { ProfileStatus } from "../verify/profile-status.js";
import { count, type Html, html, utc } from "./html.js";
import { rpcTroubleNote } from "./period-picker.js";

/** One RPC endpoint's request counts by outcome, from the pool's counters. */
export interface EndpointHealth {
  endpoint: string;
  outcomes: Record<string, number>;
}

export interface StatusFacts {
  queueDepth: number;
  /** Age of the oldest job without a final verdict: how far back reports are complete. */
  lagSeconds: number;
  /** How long the open job due soonest has waited past its due time (what /readyz judges). */
  behindSeconds: number;
  maxLagSeconds: number;
  rpc: { ok: boolean; detail?: string };
  /** Jobs whose last round ended in RPC trouble, retried with backoff (never "behind"). */
  rpcTrouble: RpcTrouble;
  endpoints: EndpointHealth[];
  lastRun: {
    status: string;
    windowFrom: number | null;
    windowTo: number | null;
    startedAt: number;
    finishedAt: number | null;
    byVerdict: Record<string, number> | null;
    /**
     * How the nightly ended (`ledger_findings`, `incomplete`...) and what cron was told; null on
     * a run still going or recorded before the outcome was kept, which shows its status.
     */
    outcome: string | null;
    exitCode: number | null;
    reason: string | null;
    ledgerFindings: number | null;
  } | null;
  profile: ProfileStatus | null;
}

/** Queue depth, lag and the last nightly run, read from the store (the queue is durable). */
export async function storeStatus(store: Store, now: number) {
  const dashboard = dashboardStore(store);
  const queueDepth = await dashboard.queueDepth();
  const lagSeconds = Math.max(0, Math.round((now - (await dataCompleteUntil(store, now))) / 1000));
  const dueAt = await createOpsStore(store).oldestDueAt();
  const behindSeconds = dueAt === null ? 0 : Math.max(0, Math.round((now - dueAt) / 1000));
  const run = await dashboard.lastNightlyRun();
  let lastRun: StatusFacts["lastRun"] = null;
  if (run) {
    const { summary, ...rest } = run;
    const parsed = (typeof summary === "object" ? summary : null) as Record<string, unknown> | null;
    const byVerdict =
      parsed && typeof parsed.byVerdict === "object" && parsed.byVerdict !== null
        ? (parsed.byVerdict as Record<string, number>)
        : null;
    const text = (v: unknown) => (typeof v === "string" ? v : null);
    const number = (v: unknown) => (typeof v === "number" ? v : null);
    lastRun = {
      ...rest,
      byVerdict,
      outcome: text(parsed?.outcome),
      exitCode: number(parsed?.exitCode),
      reason: text(parsed?.reason),
      ledgerFindings: number(parsed?.ledgerFindings),
    };
  }
  return { queueDepth, lagSeconds, behindSeconds, lastRun };
}

const okText = (ok: boolean) =>
  ok
    ? html`<strong class="outcome-pass">OK</strong>`
    : html`<strong class="outcome-fail">failing</strong>`;

/** The service's health as an operator reads it. */
export function statusBody(s: StatusFacts): Html {
  const run = s.lastRun;
  return html`<h1>Status</h1>
<h2>Verification</h2>
<dl class="facts">
<dt>queue depth</dt><dd data-status="queue">${count(s.queueDepth)} jobs waiting for a final verdict</dd>
<dt>verifier behind schedule</dt><dd data-status="behind">${okText(s.behindSeconds <= s.maxLagSeconds)} ${count(s.behindSeconds)} s (the job due soonest, past its due time; at most ${count(s.maxLagSeconds)} s is ready)</dd>
<dt>waiting on RPC trouble</dt><dd data-status="rpc-waiting">${okText(s.rpcTrouble.jobs === 0)} ${count(s.rpcTrouble.jobs)} jobs (retried with backoff, so never behind schedule; their figures cannot move until the RPC answers)</dd>
<dt>verification lag</dt><dd data-status="lag">${count(s.lagSeconds)} s (the oldest job without a final verdict: reports are complete up to then)</dd>
</dl>
${rpcTroubleNote(s.rpcTrouble)}
<h2>Solana RPC</h2>
<p>Probe (<span class="mono">getSlot</span> at finalized): ${okText(s.rpc.ok)}${s.rpc.detail ? html` — ${s.rpc.detail}` : ""}</p>
${
  s.endpoints.length === 0
    ? html`<p class="muted">No RPC request counted yet in this process.</p>`
    : html`<div class="scroll"><table><thead><tr><th scope="col">endpoint</th><th scope="col">requests by outcome since start</th></tr></thead><tbody>${s.endpoints.map(
        (e) =>
          html`<tr><td class="mono">${e.endpoint}</td><td>${Object.entries(e.outcomes)
            .map(([o, n]) => `${o}: ${count(n)}`)
            .join(", ")}</td></tr>`,
      )}</tbody></table></div>`
}
<h2>Last nightly run</h2>
${
  run
    ? html`<dl class="facts">
<dt>outcome</dt><dd data-status="run">${
        run.outcome === null
          ? run.status
          : html`<strong class="${run.exitCode === 0 ? "outcome-pass" : "outcome-fail"}">${run.outcome}</strong>${
              run.exitCode === null ? "" : ` (exit ${run.exitCode})`
            }`
      }</dd>
${run.reason ? html`<dt>why</dt><dd data-status="run-reason">${run.reason}</dd>` : ""}
<dt>window</dt><dd>${run.windowFrom === null ? "from the first job" : utc(run.windowFrom)} to ${run.windowTo === null ? "open-ended" : utc(run.windowTo)}</dd>
<dt>ran</dt><dd>${utc(run.startedAt)} to ${utc(run.finishedAt)}</dd>
${
  run.byVerdict
    ? html`<dt>verdicts</dt><dd>${
        Object.entries(run.byVerdict)
          .filter(([, n]) => n > 0)
          .map(([v, n]) => `${v}: ${count(n)}`)
          .join(", ") || "no job in the window"
      }</dd>`
    : ""
}
${
  run.ledgerFindings === null
    ? ""
    : html`<dt>credit vaults' ledger</dt><dd data-status="run-ledger">${count(run.ledgerFindings)} findings (money no receipt explains, locks not returned, history or balances off the chain's)</dd>`
}
</dl>`
    : html`<p class="muted">No nightly verification has run on this database (<span class="mono">decentral-audit verify</span> or <span class="mono">VERIFY_CRON</span>).</p>`
}
<h2>Protocol profile</h2>
${
  s.profile
    ? html`<p>Profile <strong class="mono">${s.profile.name}</strong>.</p>
<h3>What it cannot check for any job</h3>
${
  s.profile.gaps.length === 0
    ? html`<p>Nothing: every check applies.</p>`
    : html`<ul>${s.profile.gaps.map((g) => html`<li><strong class="mono">${g.check}</strong>: ${g.reason}</li>`)}</ul>`
}
<h3>Treasury</h3>
<p>${
        s.profile.treasury.source === "profile"
          ? html`pinned by the profile: <span class="mono">${s.profile.treasury.address}</span>`
          : s.profile.treasury.source === "learned"
            ? html`learned from ${count(s.profile.treasury.settlements)} settlements: <span class="mono">${s.profile.treasury.address}</span>`
            : html`still being learned: ${count(s.profile.treasury.needed)} settlements must agree on one address`
      }</p>`
    : html`<p class="muted">No profile is loaded in this process.</p>`
}`;
}
