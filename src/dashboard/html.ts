import { html as escapedHtml, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import type { Verdict } from "../db/schema.js";
import { formatUnits } from "../money.js";
import { hasUnprintable, printable, printableMarked } from "../printable-text.js";
import { dashboardCssVersion } from "./assets.js";
import type { DashboardSession } from "./sessions.js";

/** What `html` returns; interpolated values are escaped, nested fragments are not. */
export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

export { raw };

/**
 * A template's text up to a value inside a quoted attribute or the page's title, where markup
 * is no markup.
 */
const markupless = /=\s*"[^"]*$|<title>[^<]*$/;

/**
 * A value shown visibly: text holding characters that show as nothing (a zero-width space, a
 * bidi mark, a control; see `printable`) has each as its `\u200b` escape, marked on the page,
 * so "qwen3-8b\u200b", stored before such names were refused, is not read as a second
 * "qwen3-8b". In an attribute the escape is plain text.
 */
function visible(value: unknown, plainText: boolean): unknown {
  if (Array.isArray(value)) return value.map((v) => visible(v, plainText));
  if (typeof value !== "string" || !hasUnprintable(value)) return value;
  if (plainText) return printable(value);
  const escaped = escapedHtml`${value}`.toString();
  return raw(
    printableMarked(
      escaped,
      // No quote in it: even inside an attribute the template did not show, it closes none.
      (code) => `<span class=unprintable>${code}</span>`,
    ),
  );
}

/**
 * Hono's `html`, every interpolated text shown visibly (`visible`) and then escaped: each page
 * prints names and reasons that receipts and the chain carry.
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  return escapedHtml(
    strings,
    ...values.map((v, i) => visible(v, markupless.test(strings.slice(0, i + 1).join("")))),
  );
}

/** Where the dashboard is mounted. */
export const BASE = "/dashboard";

/** The pages of the navigation, in order. */
const nav = [
  ["overview", "Overview", `${BASE}`],
  ["reconciliation", "Reconciliation", `${BASE}/reconciliation`],
  ["discrepancies", "Discrepancies", `${BASE}/discrepancies`],
  ["workers", "Workers", `${BASE}/workers`],
  ["statement", "Statement", `${BASE}/statement`],
  ["status", "Status", `${BASE}/status`],
] as const;
export type NavPage = (typeof nav)[number][0] | "job" | "sign-in";

/** A verdict in words a controller reads. */
export const verdictLabel: Record<Verdict, string> = {
  pending: "pending",
  awaiting_finality: "awaiting finality",
  error: "retrying (RPC error)",
  rpc_disagreement: "waiting (RPC endpoints disagree)",
  verified: "verified",
  partially_verified: "partially verified",
  discrepancy: "discrepancy",
  dropped: "dropped",
  unverifiable: "unverifiable",
};

export const verdictBadge = (verdict: Verdict): Html =>
  html`<span class="verdict v-${verdict}">${verdictLabel[verdict]}</span>`;

/** USDC with six decimals, exact (bigint or decimal string of base units). */
export function usdc(units: bigint | string | null): string {
  if (units === null || units === "") return "—";
  return formatUnits(typeof units === "bigint" ? units : BigInt(units));
}

/** Lamports as SOL with nine decimals, exact. */
export function sol(lamports: bigint | string | null): string {
  if (lamports === null || lamports === "") return "—";
  return formatUnits(typeof lamports === "bigint" ? lamports : BigInt(lamports), 9);
}

/** `2026-11-27 02:00 UTC`: an instant as a controller writes it. */
export function utc(ms: number | string | null): string {
  if (ms === null) return "—";
  const iso = typeof ms === "string" ? ms : new Date(ms).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

/** Integers with thin grouping, e.g. 1,000,000 jobs. */
export const count = (n: number) => n.toLocaleString("en-US");

/** A long address or signature, shortened for tables; the full text stays in `title`. */
export const short = (text: string | null): Html =>
  text === null
    ? html`—`
    : text.length <= 16
      ? html`<span class="mono">${text}</span>`
      : html`<span class="mono" title="${text}">${text.slice(0, 6)}…${text.slice(-6)}</span>`;

/** The shell of every page: skip link, navigation, who is signed in, sign out. */
export function page(opts: {
  title: string;
  current: NavPage;
  session?: DashboardSession | null;
  body: Html;
  /** A query the navigation links keep (the time zone of the page's period). */
  navQuery?: string;
}): Html {
  const session = opts.session ?? null;
  const navQuery = opts.navQuery ? `?${opts.navQuery}` : "";
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${opts.title} · decentral-audit</title>
<link rel="stylesheet" href="${BASE}/assets/dashboard.css?v=${dashboardCssVersion}">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="${BASE}">decentral-audit</a>
  ${
    session
      ? html`<nav aria-label="Dashboard"><ul>${nav.map(
          ([key, label, href]) =>
            html`<li><a href="${href}${key === "status" ? "" : navQuery}"${opts.current === key ? raw(' aria-current="page"') : ""}>${label}</a></li>`,
        )}</ul></nav>
  <span class="who">${session.tokenName} (${session.role})</span>
  <form method="post" action="${BASE}/sign-out"><input type="hidden" name="csrf" value="${session.csrf}"><button type="submit">Sign out</button></form>`
      : ""
  }
</header>
<main id="main" tabindex="-1">
${opts.body}
</main>
</body>
</html>`;
}
