import { verdicts } from "../db/schema.js";
import { ledgerFindingCount } from "../ledger/window-check.js";
import { markdownCode, printable } from "../printable-text.js";
import { isoOf } from "../reports/period.js";
import { MAX_SENT_BACK_JUDGED, type NightlySummary, SENT_BACK_MS } from "./nightly-run.js";

/**
 * One line saying what the run found. An empty window says "0 jobs recorded", never "all
 * verified": nothing was proven, and an empty day usually means the recorder stopped.
 */
const headline = (s: NightlySummary) => {
  switch (s.outcome) {
    case "verified":
      return jobsText(s);
    case "no_jobs":
      return "0 jobs recorded in this window, nothing verified";
    case "too_few_jobs":
      return tooFew(s);
    case "discrepancies":
      return `${failedJobs(s) > 0 || othersFailed(s) === 0 ? notVerifiedText(s) : s.total === 0 ? "0 jobs recorded in this window" : jobsText(s)}${othersText(s, "earlier")}${othersText(s, "later")}${findingsOf(s) > 0 ? `, and ${ledgerText(s)}` : ""}`;
    case "ledger_findings":
      return `${s.total === 0 ? "0 jobs recorded in this window" : jobsText(s)}, but ${ledgerText(s)}`;
    case "incomplete":
      return `could not finish: ${s.reason}${foundSoFar(s)}`;
  }
};

/** "2 of 396 jobs NOT verified (and 3 partially verified)". */
const notVerifiedText = (s: NightlySummary) =>
  `${s.total - s.byVerdict.verified - s.byVerdict.partially_verified} of ${s.total} jobs NOT verified${s.byVerdict.partially_verified > 0 ? ` (and ${s.byVerdict.partially_verified} partially verified)` : ""}`;

type OtherWindow = "earlier" | "later";

/** The jobs of earlier or later windows a run names (`earlierJobs`, `laterJobs`). */
const othersOf = (s: NightlySummary, window: OtherWindow) =>
  (window === "earlier" ? s.earlierJobs : s.laterJobs) ?? [];

/** Jobs of `window` windows judged again after their run that are not verified. */
const failedOf = (s: NightlySummary, window: OtherWindow) =>
  othersOf(s, window).filter((j) => ["discrepancy", "dropped", "unverifiable"].includes(j.verdict))
    .length;

/** Jobs of other windows, earlier or later, judged again after their run, not verified. */
const othersFailed = (s: NightlySummary) => failedOf(s, "earlier") + failedOf(s, "later");

/** ", and 2 jobs of earlier windows NOT verified (…)", or "" when none. */
const othersText = (s: NightlySummary, window: OtherWindow) => {
  const n = failedOf(s, window);
  return n > 0 ? `, and ${n} jobs of ${window} windows NOT verified (${whyOf(s, window)})` : "";
};

/**
 * Why jobs of other windows are named: the escrow scan's payouts, judgements since, jobs sent
 * back before the run and judged by it to another verdict, or several of them.
 */
const whyOf = (s: NightlySummary, window: OtherWindow) => {
  const by = new Set(othersOf(s, window).map((j) => j.foundBy));
  const passed = window === "later" ? "; their window's run had passed" : "";
  const why: string[] = [];
  if (by.has("escrow_scan"))
    why.push("a payout out of escrow under their memo found after their run");
  if (by.has("judged_again"))
    why.push(why.length > 0 ? "judged again since" : "judged again after their run");
  if (by.has("sent_back")) {
    why.push(
      why.length > 0
        ? "sent back and judged by this run to another verdict"
        : "sent back to be judged again after their run, and judged by this run to another verdict",
    );
  }
  return `${why.join(", or ")}${passed}`;
};

const foundByText = {
  escrow_scan: "sent back by the escrow scan",
  judged_again: "judged again after its run",
  sent_back: "sent back to be judged again after its run, judged by this run",
} as const;

/**
 * "jobs of other windows sent back to be judged again before this run: 3 judged (1 to another
 * verdict), 2 left to serve's verifier or the next run (...)"; null when the run had none.
 */
export function sentBackText(s: NightlySummary): string | null {
  const b = s.sentBackElsewhere;
  if (!b) return null;
  const changed = b.changed > 0 ? ` (${b.changed} to another verdict than before)` : "";
  const left =
    b.left > 0
      ? `, ${b.left} left for serve's verifier or the next run (leased by another verifier, waiting for what they need, or past this run's ${MAX_SENT_BACK_JUDGED} jobs or its time for them: half what its window left, at most ${SENT_BACK_MS / 1000} s)`
      : "";
  const unread = b.unread ? `; ${b.unread}` : "";
  return `jobs of other windows sent back to be judged again before this run: ${b.judged} judged${changed}${left}${unread}`;
}

/** "job_x (an earlier window's, judged again after its run): discrepancy (settlement.single)". */
const otherLines = (s: NightlySummary, code: (text: string) => string) =>
  (["earlier", "later"] as const).flatMap((window) =>
    othersOf(s, window).map(
      (j) =>
        `${code(j.jobId)} (${window === "earlier" ? "an earlier" : "a later"} window's, ${foundByText[j.foundBy]}): ${j.verdict}${j.failingChecks.length ? ` (${j.failingChecks.join(", ")})` : ""}`,
    ),
  );

/** Jobs that failed a check: those the headline says are NOT verified. */
const failedJobs = (s: NightlySummary) =>
  s.byVerdict.discrepancy + s.byVerdict.dropped + s.byVerdict.unverifiable;

/**
 * What a run that could not finish had found already: its headline, the one line many read,
 * said "could not finish" alone while jobs had failed and money had left a vault unexplained.
 */
const foundSoFar = (s: NightlySummary) => {
  const found = [
    ...(failedJobs(s) > 0 ? [`${failedJobs(s)} of ${s.total} jobs NOT verified`] : []),
    ...(findingsOf(s) > 0 ? [ledgerText(s)] : []),
  ];
  return found.length > 0 ? `; found so far: ${found.join(", and ")}` : "";
};

/** "the credit vaults' ledger has 150 findings (148 unreceipted debits, 2 unreleased locks)". */
const ledgerText = (s: NightlySummary) =>
  `the credit vaults' ledger has ${findingsOf(s)} findings (${findingKinds(s).join(", ")})`;

/** Each kind of ledger finding the run has, with its count: what a count alone hid. */
function findingKinds(s: NightlySummary): string[] {
  const l = s.ledger;
  if (!l) return [];
  const kinds: [number, string][] = [
    [l.unreceiptedDebits.length, "unreceipted debits"],
    [l.unreleasedLocks.length, "unreleased locks"],
    [l.creditsHeaderMismatches.length, "credits-header mismatches"],
    [l.creditsHeaderUndecided.length, "credits headers not decided yet"],
    [l.foreignMint.length, "other-mint findings"],
    [l.vaultOwnerChanges.length + l.vaultOwnersNow.length, "vault owner findings"],
    [l.vaultDelegateApprovals.length + l.vaultDelegatesNow.length, "vault delegate findings"],
    [l.mixedJobMemos.length, "movements under several jobs' memos"],
    [l.imbalanced.length, "vaults off the chain's balance"],
    [l.gaps.length, "history gaps"],
    [l.prunedHistory.length, "pruned histories"],
  ];
  return kinds.filter(([n]) => n > 0).map(([n, kind]) => `${n} ${kind}`);
}

/** What a run whose jobs all passed says of them: partially verified ones named. */
const jobsText = (s: NightlySummary) =>
  s.byVerdict.partially_verified > 0
    ? `${s.byVerdict.verified} of ${s.total} jobs verified, ${s.byVerdict.partially_verified} partially verified (no check failed; ${unprovenText(s)})`
    : `all ${s.total} jobs verified`;

/** The `--min-jobs` finding, or null when the window holds enough jobs. */
export function tooFewJobs(s: NightlySummary): string | null {
  return s.total < s.minJobs ? tooFew(s) : null;
}

const tooFew = (s: NightlySummary) =>
  `${s.total} jobs recorded, fewer than --min-jobs ${s.minJobs}`;

/** A second finding the headline does not carry (too few jobs beside discrepancies). */
const alsoTooFew = (s: NightlySummary) =>
  s.outcome !== "too_few_jobs" && s.outcome !== "incomplete" ? tooFewJobs(s) : null;

const icons: Record<NightlySummary["outcome"], string> = {
  verified: "✅",
  no_jobs: "⚪",
  too_few_jobs: "❌",
  discrepancies: "❌",
  ledger_findings: "❌",
  incomplete: "⚠️",
};

/** What partially verified jobs left unproven, e.g. "usage_unknown 3". */
const unprovenText = (s: NightlySummary) =>
  Object.entries(s.unproven)
    .map(([code, n]) => `${code} ${n}`)
    .join(", ") || "unproven money checks";

/** The profile's gaps, said once for the whole run rather than on every job. */
const gapLines = (s: NightlySummary) =>
  (s.profile?.gaps ?? []).map(
    (g) => `profile ${s.profile!.name} cannot check ${g.check}: ${g.reason}`,
  );

/**
 * "1200 jobs judged under another profile, queued again and judged under localnet@…"; when a
 * process under another profile judged jobs of the window during the run (it may have taken
 * those queued again), "… queued again to be judged under localnet@…" only.
 */
const rejudgedText = (s: NightlySummary) => {
  if (!s.rejudged) return null;
  const under = s.profile?.id ?? "this run's profile";
  const taken = s.judgedElsewhere?.length ? "to be judged" : "and judged";
  return `${s.rejudged} jobs judged under another profile, queued again ${taken} under ${under}`;
};

const findingsOf = (s: NightlySummary) => (s.ledger ? ledgerFindingCount(s.ledger) : 0);

/**
 * How a line shows text it did not write (a job id from a receipt, the text after a memo's
 * prefix, which the operator wrote): inert, so it cannot forge lines, links or terminal output.
 */
type Show = (text: string) => string;

/** A debit's size: the ledger keeps money out as a negative amount, the sentence says "of". */
const unitsOut = (amountUnits: string) => amountUnits.replace(/^-/, "");

/**
 * The vaults whose history before the window this run judged (never judged, or judged last
 * before the window began): said so that findings before the window are not a surprise.
 */
function judgedText(s: NightlySummary): string {
  const judged = s.ledger?.judgedBefore ?? [];
  if (judged.length === 0) return "";
  const never = judged.filter((j) => j.from === null).length;
  return `; history before the window judged for ${judged.length} (${never} from its beginning)`;
}

/** Why a finding dated in history a run had judged is reported now. */
const LISTED_LATE =
  "listed only after the run that judged its time: an RPC endpoint had left it out or listed it late";

/** One line per ledger finding of the window (none when the run read no ledger). */
function ledgerLines(s: NightlySummary, show: Show): string[] {
  if (!s.ledger) return [];
  return [
    ...s.ledger.unreceiptedDebits.map(
      (d) =>
        `unreceipted debit of ${unitsOut(d.amountUnits)} units from vault ${d.vault} in ${d.signature}${d.memoJobId ? ` (memo names ${show(d.memoJobId)})` : ""}${d.listedLate ? ` (at ${d.at ?? "an unknown time"}, ${LISTED_LATE})` : d.beforeWindow ? ` (at ${d.at ?? "an unknown time"}, before the window: history of the vault no run had judged)` : ""}`,
    ),
    ...s.ledger.unreleasedLocks.map(
      (u) =>
        `unreleased lock of ${u.lockUnits} units (${u.outstandingUnits} still out) by job ${show(u.jobId)} from vault ${u.vault} in ${u.signature}` +
        ` (locked ${u.lockedAt ?? "at an unknown time"}${u.listedLate ? `, ${LISTED_LATE}` : u.beforeWindow ? ", before the window: not yet due when its own window's run read the vault, or in history no run had judged" : ""})`,
    ),
    ...s.ledger.creditsHeaderMismatches.map(
      (m) =>
        `job ${show(m.jobId)}'s credits header (${m.headerUnits} units) matches no balance of vault ${m.vault} between its lock and its response${m.beforeWindow ? " (before the window)" : ""}`,
    ),
    ...s.ledger.creditsHeaderUndecided.map(
      (m) =>
        `job ${show(m.jobId)}'s credits header (${m.headerUnits} units) matches no balance of vault ${m.vault} read so far between its lock and its response: not decided until the vault is read past the response${m.beforeWindow ? " (before the window)" : ""}`,
    ),
    ...s.ledger.foreignMint.map((f) =>
      f.finding === "foreign_mint_movement"
        ? `vault ${f.vault}'s address moved ${f.amountUnits} units of another mint (${f.mint}) in ${f.signature}: not credits, never counted${f.listedLate ? ` (${LISTED_LATE})` : f.beforeWindow ? " (before the window)" : ""}`
        : `vault ${f.vault}'s address holds ${f.amountUnits ?? "an account"} of another mint (${f.mint ?? "not a token account"}) instead of credits: closed and opened again`,
    ),
    ...s.ledger.vaultOwnerChanges.map((o) =>
      o.finding === "vault_owner_now"
        ? `vault ${o.vault} is owned now by ${o.owner}, not the escrow authority (its newest transaction, ${o.signature}, shows it): that owner can spend its credits alone`
        : `vault ${o.vault} was owned by ${o.owner}, not the escrow authority, after ${o.signature}: that owner can spend its credits alone${o.memoJobId ? ` (memo names ${show(o.memoJobId)})` : ""}${o.listedLate ? ` (at ${o.at ?? "an unknown time"}, ${LISTED_LATE})` : o.beforeWindow ? ` (at ${o.at ?? "an unknown time"}, before the window)` : ""}`,
    ),
    ...s.ledger.vaultDelegateApprovals.map(
      (d) =>
        `vault ${d.vault} was given a delegate, ${d.delegate}, by an Approve in ${d.signature}: that delegate can spend its credits alone${d.memoJobId ? ` (memo names ${show(d.memoJobId)})` : ""}${d.listedLate ? ` (at ${d.at ?? "an unknown time"}, ${LISTED_LATE})` : d.beforeWindow ? ` (at ${d.at ?? "an unknown time"}, before the window)` : ""}`,
    ),
    ...s.ledger.vaultDelegatesNow.map(
      (d) =>
        `vault ${d.vault} has a delegate now, ${d.delegate}, that may spend ${d.delegatedUnits} units of its credits alone (the balance read shows it, whether or not a transaction read shows the Approve)`,
    ),
    ...s.ledger.vaultOwnersNow.map((o) =>
      o.owner === null
        ? `vault ${o.vault} was read with no owner named: that it is the escrow authority's is not proven (whoever owns it may spend its credits alone)`
        : `vault ${o.vault} is owned now by ${o.owner}, not the escrow authority: that owner may spend its credits alone (the balance read shows it, whether or not a transaction read shows the SetAuthority)`,
    ),
    ...s.ledger.mixedJobMemos.map(
      (m) =>
        `${unitsOut(m.amountUnits)} units moved ${m.amountUnits.startsWith("-") ? "out of" : "into"} vault ${m.vault} in ${m.signature} under memos naming ${m.named.map((n) => show(n)).join(", ")}: nobody can say whose money it was${m.listedLate ? ` (at ${m.at ?? "an unknown time"}, ${LISTED_LATE})` : m.beforeWindow ? ` (at ${m.at ?? "an unknown time"}, before the window)` : ""}`,
    ),
    ...s.ledger.imbalanced.map(
      (b) => `vault ${b.vault} closes ${b.differenceUnits} units off the chain's balance`,
    ),
    ...s.ledger.gaps.map(
      (g) =>
        `gap in vault ${g.vault}'s history: ${g.missingUnits} units moved between ` +
        `${g.afterSignature ?? "the vault's start (no movement listed)"} and ${g.beforeSignature ?? "the balance read"} (slots ${g.fromSlot}..${g.toSlot}) in ` +
        `transactions not read; read the range from an archival RPC${g.beforeWindow ? " (before the window)" : ""}`,
    ),
    ...s.ledger.prunedHistory.map(
      (p) =>
        `vault ${p.vault}'s history before ${p.beforeSignature} (${p.before ?? "at an unknown time"}) ` +
        "is not available from the RPC (pruned), or that transaction came without the token " +
        "balances that would show the vault's creation: what moved before it is not judged; " +
        "read the vault from an archival RPC",
    ),
  ];
}

/**
 * The closing writes the run could not store: its outcome stands (exit code unchanged), but cron's
 * operator is told why the status page or the next night may not show this night as judged.
 */
const notStoredText = (s: NightlySummary) =>
  s.notStored && s.notStored.length > 0
    ? `not stored, the database's write lock held as the run closed (or the database away): ${s.notStored.join("; ")}`
    : null;

const counts = (s: NightlySummary) =>
  verdicts.filter((v) => s.byVerdict[v] > 0).map((v) => [v, s.byVerdict[v]] as const);

/** Plain text for a terminal or a log file. */
export function summaryToText(s: NightlySummary): string {
  const lines = [
    `decentral-audit verify ${isoOf(s.from)} .. ${isoOf(s.to)}: ${headline(s)}`,
    s.countsUnknown
      ? "  jobs: not known (the database did not answer)"
      : `  jobs: ${s.total}${counts(s)
          .map(([v, n]) => `, ${v} ${n}`)
          .join("")}`,
    `  took ${((s.finishedAt - s.startedAt) / 1000).toFixed(1)} s; exit code ${s.exitCode}`,
  ];
  const also = alsoTooFew(s);
  if (also) lines.splice(2, 0, `  also: ${also}`);
  if (s.byVerdict.partially_verified > 0 && s.outcome !== "verified") {
    lines.splice(2, 0, `  partially verified: ${unprovenText(s)}`);
  }
  const rejudged = rejudgedText(s);
  if (rejudged) lines.push(`  ${rejudged}`);
  const sentBack = sentBackText(s);
  if (sentBack) lines.push(`  ${sentBack}`);
  for (const gap of gapLines(s)) lines.push(`  ${gap}`);
  for (const f of s.findings) {
    lines.push(
      `  ${printable(f.jobId)}: ${f.verdict}${f.failingChecks.length ? ` (${f.failingChecks.join(", ")})` : ""}`,
    );
  }
  if (s.moreFindings > 0) lines.push(`  ... and ${s.moreFindings} more`);
  for (const line of otherLines(s, printable)) lines.push(`  ${line}`);
  if (s.ledger) lines.push(`  ledger: ${s.ledger.vaults} credit vaults read${judgedText(s)}`);
  for (const line of ledgerLines(s, printable)) lines.push(`  ${line}`);
  const unstored = notStoredText(s);
  if (unstored) lines.push(`  ${unstored}`);
  // Every line is one line of plain text: no escape sequence reaches the terminal.
  return `${lines.map(printable).join("\n")}\n`;
}

/** Markdown to paste into a ticket or a chat. */
export function summaryToMarkdown(s: NightlySummary): string {
  const also = alsoTooFew(s);
  const lines = [
    `### ${icons[s.outcome]} Nightly verification: ${headline(s)}`,
    "",
    `Window: \`${isoOf(s.from)}\` to \`${isoOf(s.to)}\` (UTC, end exclusive). Exit code ${s.exitCode}.`,
    ...(also ? ["", `Also: ${also}.`] : []),
    "",
    "| verdict | jobs |",
    "|---|---:|",
    ...counts(s).map(([v, n]) => `| ${v} | ${n} |`),
    `| **total** | **${s.countsUnknown ? "not known (the database did not answer)" : s.total}** |`,
  ];
  if (s.findings.length > 0) {
    lines.push("", "| job | verdict | failing checks |", "|---|---|---|");
    for (const f of s.findings) {
      lines.push(
        `| ${markdownCode(f.jobId)} | ${f.verdict} | ${f.failingChecks.join(", ") || "-"} |`,
      );
    }
    if (s.moreFindings > 0) lines.push("", `... and ${s.moreFindings} more.`);
  }
  if (s.byVerdict.partially_verified > 0) {
    lines.push("", `Partially verified (no check failed, not proven in full): ${unprovenText(s)}.`);
  }
  const rejudged = rejudgedText(s);
  if (rejudged) lines.push("", `${rejudged}.`);
  const sentBack = sentBackText(s);
  if (sentBack) lines.push("", `${sentBack}.`);
  const others = otherLines(s, markdownCode);
  if (others.length > 0) lines.push("", ...others.map((l) => `- ${l}`));
  const gaps = gapLines(s);
  if (gaps.length > 0) lines.push("", ...gaps.map((g) => `- ${g}`));

  const ledger = ledgerLines(s, markdownCode);
  if (ledger.length > 0) lines.push("", "Credit vault ledger:", "", ...ledger.map((l) => `- ${l}`));
  const unstored = notStoredText(s);
  if (unstored) lines.push("", `${unstored}.`);
  return `${lines.map(printable).join("\n")}\n`;
}

/** JSON with ISO instants, led by the same headline as the text. */
export function summaryToJson(s: NightlySummary): string {
  return `${JSON.stringify(
    {
      headline: headline(s),
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
