import { timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { isDatabaseAway, statusOf } from "../api/error-handler.js";
import type { AppMetrics } from "../api/metrics.js";
import { probeRpc, type ReadinessProbes } from "../api/ops-routes.js";
import {
  notUtf8Message,
  notUtf8PathMessage,
  notUtf8QueryParameter,
  pathIsUtf8,
  unnamedMessage,
  unnamedQueryParameter,
} from "../api/query-utf8.js";
import { readTurn } from "../api/read-turn.js";
import { authenticateToken, roleSatisfies } from "../auth/tokens.js";
import { isBase58OfLength } from "../chain/base58.js";
import type { Store } from "../db/client.js";
import { isAppError } from "../errors.js";
import { timeZoneOf } from "../instant.js";
import { buildStatement } from "../ledger/statement.js";
import type { Logger } from "../log.js";
import { printable } from "../printable-text.js";
import { createReadGate, type ReadGate } from "../read-gate.js";
import { codingsOf } from "../recorder/content-codings.js";
import { jobIdPattern, jobIdRule } from "../recorder/receipt-input.js";
import { auditRecord, type ExplorerCluster } from "../reports/audit-record.js";
import { type FailingVerdict, failingVerdicts, listDiscrepancies } from "../reports/job-listing.js";
import {
  type GroupBy,
  groupByValues,
  reconciliationReport,
  reconciliationToCsv,
} from "../reports/reconciliation.js";
import { createOpsStore } from "../store/ops.js";
import { checkNames } from "../verify/check-catalogue.js";
import type { Profile } from "../verify/profiles.js";
import { dashboardCss } from "./assets.js";
import { type DiscrepancyFilter, discrepanciesBody } from "./discrepancies-page.js";
import { BASE, type Html, html, type NavPage, page } from "./html.js";
import { jobBody } from "./job-page.js";
import { overviewBody } from "./overview-page.js";
import { datesEdited, PeriodError, periodOf } from "./period.js";
import { reconciliationBody, type SortKey, sortKeys } from "./reconciliation-page.js";
import {
  createSession,
  type DashboardSession,
  deleteSession,
  findSession,
  SESSION_TTL_MS,
} from "./sessions.js";
import { signInBody } from "./sign-in-page.js";
import { statementBody } from "./statement-page.js";
import { type EndpointHealth, statusBody, storeStatus } from "./status-page.js";
import { workerStatementBody, workersBody } from "./workers-page.js";

/** The name of the session cookie; its value is the session id, which only the browser holds. */
export const SESSION_COOKIE = "da_session";

/**
 * A cookie that outlives the session, holding nothing but "1": the browser drops the session
 * cookie at its expiry, and without this a page asked for afterwards could not tell a person
 * whose session expired from one who never signed in. Removed at sign-out.
 */
export const SIGNED_IN_COOKIE = "da_signed_in";
const SIGNED_IN_MAX_AGE_S = 30 * 24 * 3600;

/** What the dashboard needs; the same store and probes as the API, so both show one truth. */
export interface DashboardDeps {
  store: Store;
  now: () => number;
  explorer: ExplorerCluster;
  verifier?: { reverify(jobId: string): Promise<void> | void };
  readiness?: ReadinessProbes;
  metrics?: AppMetrics;
  /** How long a sign-in lasts; default 8 hours. */
  sessionTtlMs?: number;
  /** The credit vaults' statement; without it the statement page says the ledger is off. */
  statement?: { profile: Profile; graceSeconds: number };
  /** Where pages take turns with the API's readers (src/read-gate.ts); default one of its own. */
  readGate?: ReadGate;
}

interface DashboardEnv {
  Variables: { requestId: string; log: Logger; session: DashboardSession };
}

type Ctx = Context<DashboardEnv>;

/**
 * No script runs on these pages, nothing loads from elsewhere, no page can be framed, and no
 * page is cached: they show money and evidence.
 */
const CSP =
  "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

function render(c: Ctx, status: ContentfulStatusCode, title: string, current: NavPage, body: Html) {
  const session = c.get("session") ?? null;
  // The navigation keeps the time zone a person reads the figures in.
  const zone = timeZoneOf(c.req.query("timeZone") ?? "");
  const navQuery = zone && zone !== "UTC" ? `timeZone=${encodeURIComponent(zone)}` : undefined;
  return c.html(page({ title, current, session, body, navQuery }), status);
}

/**
 * The page for a job id no job can have (a typo, a cut paste), told as `GET /audit/{jobId}`
 * tells it (400 naming jobId), not as "no job", as if the id were right and the job not yet
 * recorded. Null for an id of a job's shape.
 */
function badJobIdPage(c: Ctx, jobId: string) {
  return jobIdPattern.test(jobId) ? null : messagePage(c, 400, "Bad job id", `jobId: ${jobIdRule}`);
}

function messagePage(c: Ctx, status: ContentfulStatusCode, title: string, message: string) {
  return render(
    c,
    status,
    title,
    "job",
    html`<h1>${title}</h1><p class="error" role="alert">${message}</p><p><a href="${BASE}">Back to the overview</a></p>`,
  );
}

type Form = Record<string, string | File>;

/** A form naming a field more than once: which of its values was meant cannot be told. */
class RepeatedField {
  constructor(readonly name: string) {}
}

/**
 * The posted form; null when its body is not one (a multipart body without its parts). A field
 * given more than once is refused: read as its last, a `token` pasted after another decided
 * which session opened.
 */
async function formOf(c: Ctx): Promise<Form | RepeatedField | null> {
  let fields: Record<string, string | File | (string | File)[]>;
  try {
    fields = await c.req.parseBody({ all: true });
  } catch {
    return null;
  }
  const form: Form = {};
  for (const [name, value] of Object.entries(fields)) {
    if (Array.isArray(value)) return new RepeatedField(name);
    form[name] = value;
  }
  return form;
}

function badForm(c: Ctx, read: RepeatedField | null) {
  const name = read === null ? "" : printable(read.name.slice(0, 100));
  return messagePage(
    c,
    400,
    "Bad request",
    read === null
      ? "This form's body could not be read. Reload the page and try again."
      : `This form gives the field ${name} more than once; give it once. Reload the page and try again.`,
  );
}

/**
 * Only paths of this dashboard are followed after sign-in, so `next` cannot send anyone away.
 * Its dot segments are resolved first (`%2e` too, as a browser does): `/dashboard/../../evil`
 * passed as a path of the dashboard and the browser followed it to `/evil`.
 */
function safeNext(next: unknown): string {
  if (typeof next !== "string") return BASE;
  if (!/^\/dashboard(?:[/?][^\\\s]*)?$/.test(next)) return BASE;
  const url = new URL(next, "http://dashboard.invalid");
  const path = url.pathname;
  return path === BASE || path.startsWith(`${BASE}/`) ? `${path}${url.search}` : BASE;
}

/**
 * The page a refused POST came from, to return to after signing in: the Referer when it is a
 * page of this dashboard on this host, else the job page of a "Verify again", else the overview.
 * Only a page is returned to; the action itself is never replayed.
 */
function pageBeforePost(c: Ctx): string {
  const referer = c.req.header("referer");
  if (referer) {
    try {
      const url = new URL(referer);
      if (url.host === new URL(c.req.url).host || url.host === c.req.header("host")) {
        const back = safeNext(`${url.pathname}${url.search}`);
        if (back !== BASE || url.pathname === BASE) return back;
      }
    } catch {
      // Not a URL: fall through to the action's own page.
    }
  }
  const job = /^(\/dashboard\/jobs\/[^/]+)\/reverify$/.exec(new URL(c.req.url).pathname);
  return job?.[1] ? safeNext(job[1]) : BASE;
}

/**
 * A state-changing request must come from our own pages. Browsers send `Origin` on every POST;
 * it must name this host (as the client addressed it: `Host`, or `X-Forwarded-Host` behind a
 * reverse proxy). A request without `Origin` (not a browser) passes here and still needs the
 * session's CSRF token.
 */
function sameOrigin(c: Ctx): boolean {
  const origin = c.req.header("origin");
  if (origin === undefined) return true;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return false;
  }
  const forwarded = c.req.header("x-forwarded-host")?.split(",")[0]?.trim();
  return host === (c.req.header("host") ?? new URL(c.req.url).host) || host === forwarded;
}

function csrfMatches(expected: string, presented: unknown): boolean {
  if (typeof presented !== "string") return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The period picker's fields, which every page with a period takes. */
const periodFields: readonly string[] = ["period", "from", "to", "shown", "timeZone", "start"];

/**
 * Middleware of a page that takes only these query parameters: any other is a 400 naming it, as
 * the API refuses it. Ignored, a mistyped filter (`?modle=x`, `?groupby=model`) showed the page
 * unfiltered as if it had been read.
 */
function takes(...names: readonly string[]): MiddlewareHandler<DashboardEnv> {
  return async (c, next) => {
    const unknown = Object.keys(c.req.queries()).find((name) => !names.includes(name));
    if (unknown !== undefined) {
      const known = names.length > 0 ? names.join(", ") : "none";
      throw new PeriodError(
        unknown,
        `${unknown}: unknown query parameter; this page takes ${known}. Check the link.`,
      );
    }
    await next();
  };
}

function queryOf(c: Ctx) {
  const q = c.req.query();
  return {
    period: q.period,
    from: q.from,
    to: q.to,
    shown: q.shown,
    timeZone: q.timeZone,
    start: q.start,
  };
}

/**
 * The finance dashboard under `/dashboard`: server-rendered pages over the same report and
 * audit functions as the API. A browser signs in with an access token and gets a session
 * cookie (HttpOnly, SameSite=Strict, with an expiry); the API keeps taking bearer tokens.
 */
export function dashboardRoutes(deps: DashboardDeps) {
  const ttl = deps.sessionTtlMs ?? SESSION_TTL_MS;
  const app = new Hono<DashboardEnv>();
  const ops = createOpsStore(deps.store);

  app.use("*", async (c, next) => {
    await next();
    c.header("content-security-policy", CSP);
    c.header("x-content-type-options", "nosniff");
    c.header("x-frame-options", "DENY");
    c.header("referrer-policy", "same-origin");
    if (!c.req.path.startsWith(`${BASE}/assets/`)) c.header("cache-control", "no-store");
  });

  app.onError((error, c) => {
    if (error instanceof PeriodError) {
      const title = periodFields.includes(error.field) ? "Bad period" : "Bad link";
      return messagePage(c, 400, title, error.message);
    }
    if (isAppError(error)) {
      const status = statusOf(error.code);
      if (status < 500) return messagePage(c, status, "Cannot show this page", error.message);
    }
    if (isDatabaseAway(error)) {
      // Another process holds the write lock past the wait (a long import), or the database is
      // away: nothing is wrong with the request, and trying again shortly is the remedy, as the
      // JSON API's 503 says.
      c.get("log")?.warn({ err: error }, "dashboard page: database unavailable");
      c.header("retry-after", "1");
      return messagePage(
        c,
        503,
        "Try again in a moment",
        "The audit database is busy or unavailable; nothing was changed. Try again shortly.",
      );
    }
    c.get("log")?.error({ err: error }, "dashboard page failed");
    return messagePage(
      c,
      500,
      "Something went wrong",
      `The page could not be built (request ${c.get("requestId") ?? "?"}).`,
    );
  });

  // The dashboard's forms carry a token and a few short fields; nothing bigger is read.
  // Registered for every method and applied to POST here: registered for POST alone, it made
  // every path under /dashboard look as if it took POST, so a mistyped page got a JSON 405
  // ("it takes POST") instead of a 404.
  const formLimit = bodyLimit({
    maxSize: 16 * 1024,
    onError: (c) =>
      messagePage(
        c as Ctx,
        413,
        "Too large",
        "This form was larger than any form of the dashboard.",
      ),
  });
  app.use("*", async (c, next) => {
    if (c.req.method !== "POST") return next();
    // Nothing decodes a compressed form: read as it is, a gzipped sign-in was a wrong token.
    // Refused as the API refuses such a body.
    const encoding = c.req.header("content-encoding");
    if (codingsOf(encoding).length > 0) {
      return messagePage(
        c as Ctx,
        415,
        "Unsupported media type",
        `This form was sent with content-encoding ${JSON.stringify(printable(encoding?.trim() ?? ""))}, which is not decoded; send it uncompressed.`,
      );
    }
    return formLimit(c, next);
  });

  // A link naming a filter twice (`groupBy=model&groupBy=key`, a hand-edited bookmark) was
  // shown by one of them without a word, where the API refuses it: which was meant is unknown.
  app.use("*", async (c, next) => {
    // Kept as the characters sent, `?check=%FF` was read as a check of that name.
    if (!pathIsUtf8(c.req.url))
      throw new PeriodError("path", `${notUtf8PathMessage}. Check the link.`);
    const notUtf8 = notUtf8QueryParameter(c.req.url);
    if (notUtf8) throw new PeriodError(notUtf8.name, `${notUtf8Message(notUtf8)}. Check the link.`);
    const unnamed = unnamedQueryParameter(c.req.url);
    if (unnamed !== undefined) {
      throw new PeriodError("query", `${unnamedMessage(unnamed)}. Check the link.`);
    }
    for (const [name, values] of Object.entries(c.req.queries())) {
      if (values.length > 1) {
        throw new PeriodError(name, `${name} is given more than once in the link; give it once`);
      }
    }
    await next();
  });

  app.get("/assets/dashboard.css", takes("v"), (c) =>
    c.body(dashboardCss, 200, {
      "content-type": "text/css; charset=utf-8",
      "cache-control": "public, max-age=31536000, immutable",
    }),
  );

  // serve speaks plain HTTP: behind a TLS reverse proxy the browser's scheme is the proxy's
  // X-Forwarded-Proto. Claimed falsely by a plain-HTTP client, it only keeps its own cookie from
  // coming back.
  const cookieSecure = (c: Ctx) =>
    new URL(c.req.url).protocol === "https:" ||
    c.req.header("x-forwarded-proto")?.split(",")[0]?.trim().toLowerCase() === "https";

  app.get("/sign-in", takes("next", "signedOut", "expired"), async (c) => {
    const id = getCookie(c, SESSION_COOKIE);
    if (id && (await findSession(deps.store, id, deps.now())))
      return c.redirect(safeNext(c.req.query("next")), 303);
    const notice = c.req.query("signedOut")
      ? "You are signed out."
      : c.req.query("expired")
        ? "Your session expired. Sign in again to go back to the page you were on."
        : undefined;
    return render(
      c,
      200,
      "Sign in",
      "sign-in",
      signInBody({ next: safeNext(c.req.query("next")), notice }),
    );
  });

  app.post("/sign-in", takes(), async (c) => {
    if (!sameOrigin(c))
      return messagePage(c, 403, "Refused", "This sign-in did not come from this site.");
    const form = await formOf(c);
    if (form === null || form instanceof RepeatedField) return badForm(c, form);
    const next = safeNext(form.next);
    const token = typeof form.token === "string" ? form.token.trim() : "";
    const refuse = (status: ContentfulStatusCode, error: string) =>
      render(c, status, "Sign in", "sign-in", signInBody({ next, error }));
    if (token === "") return refuse(400, "Paste an access token to sign in.");
    // Copied from a curl line's `Authorization: Bearer da_...`: the token is fine, its scheme
    // is not part of it, and "unknown or revoked" sent the user to look for a revoked token.
    if (/^bearer\s/i.test(token)) {
      return refuse(400, 'Paste the token alone (da_...), without "Bearer " before it.');
    }
    const held = await authenticateToken(deps.store, token, deps.now);
    if (!held)
      return refuse(401, "That token is unknown or revoked. Check that you pasted all of it.");
    if (!roleSatisfies(held.role, "read")) {
      return refuse(
        403,
        `A token of role ${held.role} cannot read reports: sign in with a read or admin token.`,
      );
    }
    // The browser's session before this one ends here: left live, a cookie copied from this
    // browser kept its access for the rest of its day, whoever signs in on it now.
    const before = getCookie(c, SESSION_COOKIE);
    if (before) await deleteSession(deps.store, before);
    const { sessionId, expiresAt } = await createSession(deps.store, held.id, deps.now(), ttl);
    setCookie(c, SESSION_COOKIE, sessionId, {
      path: BASE,
      httpOnly: true,
      sameSite: "Strict",
      secure: cookieSecure(c),
      maxAge: Math.floor(ttl / 1000),
      expires: new Date(expiresAt),
    });
    setCookie(c, SIGNED_IN_COOKIE, "1", {
      path: BASE,
      httpOnly: true,
      sameSite: "Strict",
      secure: cookieSecure(c),
      maxAge: SIGNED_IN_MAX_AGE_S,
    });
    c.get("log")?.info({ tokenId: held.id, role: held.role }, "dashboard sign-in");
    return c.redirect(next, 303);
  });

  // Every other route needs a live session.
  app.use("*", async (c, next) => {
    const id = getCookie(c, SESSION_COOKIE);
    const session = id ? await findSession(deps.store, id, deps.now()) : null;
    if (!session) {
      // A session cookie the store no longer knows, or the mark of one the browser dropped at
      // its expiry: the person was signed in, and is told the session expired (once).
      const expired = Boolean(id) || getCookie(c, SIGNED_IN_COOKIE) !== undefined;
      if (id) deleteCookie(c, SESSION_COOKIE, { path: BASE });
      deleteCookie(c, SIGNED_IN_COOKIE, { path: BASE });
      if (c.req.method === "GET" || c.req.method === "HEAD") {
        const url = new URL(c.req.url);
        const params = new URLSearchParams({ next: `${url.pathname}${url.search}` });
        if (expired) params.set("expired", "1");
        return c.redirect(`${BASE}/sign-in?${params}`, 303);
      }
      // A POST is not replayed after sign-in (it could act twice, or on a stale page): the
      // form is shown here, and signing in returns to the page the action was taken from.
      const signingOut = new URL(c.req.url).pathname === `${BASE}/sign-out`;
      const notice = signingOut
        ? "You are signed out: your session had already ended."
        : expired
          ? "Your session expired, so this action was not done. Sign in again to go back to the page you were on, then do it again."
          : "Sign in first: this action needs a session.";
      return render(c, 401, "Sign in", "sign-in", signInBody({ next: pageBeforePost(c), notice }));
    }
    c.set("session", session);
    if (c.req.method === "POST") {
      const form = await formOf(c);
      if (form === null || form instanceof RepeatedField) return badForm(c, form);
      if (!sameOrigin(c) || !csrfMatches(session.csrf, form.csrf)) {
        return messagePage(
          c,
          403,
          "Refused",
          "This form did not come from this dashboard (CSRF check failed). Reload the page and try again.",
        );
      }
    }
    await next();
  });

  // Pages take turns with the API's readers, once signed in: a burst of them held the event
  // loop for seconds.
  app.use(
    "*",
    readTurn(deps.readGate ?? createReadGate(), "dashboard", (c: Ctx, seconds) =>
      messagePage(
        c,
        503,
        "Busy",
        `Too many pages and reports are being read at once. Reload the page in ${seconds} second${seconds === 1 ? "" : "s"}.`,
      ),
    ),
  );

  app.post("/sign-out", takes(), async (c) => {
    const id = getCookie(c, SESSION_COOKIE);
    if (id) await deleteSession(deps.store, id);
    deleteCookie(c, SESSION_COOKIE, { path: BASE, secure: cookieSecure(c) });
    deleteCookie(c, SIGNED_IN_COOKIE, { path: BASE, secure: cookieSecure(c) });
    return c.redirect(`${BASE}/sign-in?signedOut=1`, 303);
  });

  app.get("/", takes(...periodFields), async (c) => {
    const period = periodOf(queryOf(c), deps.now());
    const report = await reconciliationReport(
      deps.store,
      { from: period.from, to: period.to, groupBy: "day", timeZone: period.timeZone },
      deps.now,
    );
    const trouble = await ops.rpcTrouble();
    return render(c, 200, "Overview", "overview", overviewBody(period, report, trouble));
  });

  const groupByOf = (c: Ctx): GroupBy => {
    const g = c.req.query("groupBy") ?? "day";
    if (!(groupByValues as readonly string[]).includes(g)) {
      throw new PeriodError("groupBy", `groupBy must be one of ${groupByValues.join(", ")}`);
    }
    return g as GroupBy;
  };

  app.get("/reconciliation", takes(...periodFields, "groupBy", "sort", "dir"), async (c) => {
    const period = periodOf(queryOf(c), deps.now());
    const groupBy = groupByOf(c);
    // A column or direction the table has not (a mistyped link) is said, not shown unsorted.
    const sortText = c.req.query("sort") ?? "group";
    if (!(sortKeys as readonly string[]).includes(sortText)) {
      throw new PeriodError("sort", "sort must be the name of a column of the table");
    }
    const sort = sortText as SortKey;
    const dirText = c.req.query("dir") ?? "asc";
    if (dirText !== "asc" && dirText !== "desc") {
      throw new PeriodError("dir", "dir must be asc or desc");
    }
    const dir = dirText;
    const report = await reconciliationReport(
      deps.store,
      { from: period.from, to: period.to, groupBy, timeZone: period.timeZone },
      deps.now,
    );
    return render(
      c,
      200,
      "Reconciliation",
      "reconciliation",
      reconciliationBody(period, report, sort, dir, await ops.rpcTrouble()),
    );
  });

  // The API's CSV for the same query: the same function over the same figures, byte for byte.
  app.get("/reconciliation.csv", takes(...periodFields, "groupBy"), async (c) => {
    const period = periodOf(queryOf(c), deps.now());
    const groupBy = groupByOf(c);
    const report = await reconciliationReport(
      deps.store,
      { from: period.from, to: period.to, groupBy, timeZone: period.timeZone },
      deps.now,
    );
    return c.body(reconciliationToCsv(report), 200, {
      "content-type": "text/csv; charset=utf-8; header=present",
      "content-disposition": `attachment; filename="reconciliation-${groupBy}-${period.firstDay}-to-${period.lastDay}.csv"`,
    });
  });

  app.get("/discrepancies", takes(...periodFields, "check", "verdict", "cursor"), async (c) => {
    const q = c.req.query();
    // A filter the form cannot give (a mistyped link) is said, not shown as every flagged job
    // (an unknown verdict) or as none (an unknown check), as the API refuses it.
    if (q.verdict && !(failingVerdicts as readonly string[]).includes(q.verdict)) {
      throw new PeriodError("verdict", `verdict must be one of ${failingVerdicts.join(", ")}`);
    }
    if (q.check && !(checkNames as readonly string[]).includes(q.check)) {
      throw new PeriodError("check", "check must be the name of a check (see the menu)");
    }
    // As the API refuses it: a pager link built with an empty cursor showed the first page
    // again, over and over, as if it were the next.
    if (q.cursor === "") {
      throw new PeriodError("cursor", "cursor is empty; leave it out for the first page");
    }
    const filter: DiscrepancyFilter = {
      check: q.check || undefined,
      verdict: q.verdict ? (q.verdict as FailingVerdict) : undefined,
      // All time unless a period is chosen or dates were typed (a custom range).
      period:
        (!q.period || q.period === "all") && !datesEdited(queryOf(c), deps.now())
          ? null
          : periodOf(queryOf(c), deps.now()),
      cursor: q.cursor || undefined,
    };
    const result = await listDiscrepancies(
      deps.store,
      {
        from: filter.period?.from,
        to: filter.period?.to,
        check: filter.check,
        verdict: filter.verdict,
      },
      { limit: 50, cursor: filter.cursor, period: filter.period?.query },
    );
    // Counted from the report's verdict counts (the rollups), or over all time by verdict.
    const flagged = filter.period
      ? await reconciliationReport(
          deps.store,
          {
            from: filter.period.from,
            to: filter.period.to,
            groupBy: "day",
            timeZone: filter.period.timeZone,
          },
          deps.now,
        ).then((r) => ({ discrepancy: r.totals.discrepancies, dropped: r.totals.dropped }))
      : {
          discrepancy: await ops.countJobsWithVerdict("discrepancy"),
          dropped: await ops.countJobsWithVerdict("dropped"),
        };
    return render(
      c,
      200,
      "Discrepancies",
      "discrepancies",
      discrepanciesBody(filter, result, flagged),
    );
  });

  app.get("/jobs/:jobId", takes("reverify"), async (c) => {
    const jobId = c.req.param("jobId");
    const bad = badJobIdPage(c, jobId);
    if (bad) return bad;
    const record = await auditRecord(deps.store, jobId, deps.explorer);
    if (!record) return messagePage(c, 404, "No such job", `No job ${jobId} is recorded.`);
    // Set by the redirect after an admin's "Verify again": a link carrying it otherwise told a
    // reader a verification was queued when none was.
    const reverify = c.req.query("reverify");
    if (reverify !== undefined && reverify !== "queued") {
      return messagePage(c, 400, "Bad link", "reverify: only queued, set after Verify again.");
    }
    const flash =
      reverify === "queued" && c.get("session").role === "admin"
        ? "A fresh verification is queued; reload in a few seconds to see its verdict."
        : null;
    return render(c, 200, `Job ${jobId}`, "job", jobBody(record, c.get("session"), flash));
  });

  app.post("/jobs/:jobId/reverify", takes(), async (c) => {
    const jobId = c.req.param("jobId");
    if (c.get("session").role !== "admin") {
      return messagePage(
        c,
        403,
        "Not allowed",
        "Only an admin token may ask for a fresh verification.",
      );
    }
    const bad = badJobIdPage(c, jobId);
    if (bad) return bad;
    if (!(await auditRecord(deps.store, jobId, deps.explorer))) {
      return messagePage(c, 404, "No such job", `No job ${jobId} is recorded.`);
    }
    if (!deps.verifier)
      return messagePage(c, 409, "Cannot verify here", "No verifier runs in this process.");
    // Awaited: refused (a row of the job held locked by another session), the admin is told
    // why; not awaited, the refusal was a rejection no one handled, and the process ended.
    await deps.verifier.reverify(jobId);
    c.get("log")?.info({ jobId, tokenId: c.get("session").tokenId }, "dashboard reverify");
    return c.redirect(`${BASE}/jobs/${encodeURIComponent(jobId)}?reverify=queued`, 303);
  });

  app.get("/statement", takes(...periodFields, "vault"), async (c) => {
    const period = periodOf(queryOf(c), deps.now());
    // One vault, as `GET /reports/statement?vault=` gives it; a vault that is no address is
    // said, not ignored (the page would show every vault as if they were the one asked for).
    const vault = c.req.query("vault");
    if (vault !== undefined && !isBase58OfLength(vault, 32)) {
      return messagePage(c, 400, "Bad vault", "A credit vault is a base58 address.");
    }
    const statement = deps.statement
      ? await buildStatement(
          deps.store,
          { from: period.from, to: period.to, ...(vault ? { vault } : {}) },
          {
            profile: deps.statement.profile,
            graceSeconds: deps.statement.graceSeconds,
            now: deps.now,
          },
        )
      : null;
    return render(
      c,
      200,
      "Credit vault statement",
      "statement",
      statementBody(period, statement, vault),
    );
  });

  app.get("/workers", takes(...periodFields), async (c) => {
    const period = periodOf(queryOf(c), deps.now());
    const report = await reconciliationReport(
      deps.store,
      { from: period.from, to: period.to, groupBy: "worker", timeZone: period.timeZone },
      deps.now,
    );
    const trouble = await ops.rpcTrouble();
    return render(c, 200, "Workers", "workers", workersBody(period, report, trouble));
  });

  app.get("/workers/:address", takes(...periodFields), async (c) => {
    const worker = c.req.param("address");
    // A receipt's worker is always a base58 address, as the API's worker statement checks.
    if (!isBase58OfLength(worker, 32))
      return messagePage(c, 400, "Bad worker", "A worker address is a base58 address.");
    const period = periodOf(queryOf(c), deps.now());
    const report = await reconciliationReport(
      deps.store,
      { from: period.from, to: period.to, groupBy: "day", worker, timeZone: period.timeZone },
      deps.now,
    );
    return render(
      c,
      200,
      "Worker statement",
      "workers",
      workerStatementBody(worker, period, report, await ops.rpcTrouble()),
    );
  });

  app.get("/status", takes(), async (c) => {
    const at = deps.now();
    const fromStore = await storeStatus(deps.store, at);
    const rpcTrouble = await ops.rpcTrouble();
    const rpc = await probeRpc(deps.readiness);
    const endpoints = deps.metrics ? await endpointHealth(deps.metrics) : [];
    return render(
      c,
      200,
      "Status",
      "status",
      statusBody({
        ...fromStore,
        maxLagSeconds: deps.readiness?.maxLagSeconds ?? 3600,
        rpc,
        rpcTrouble,
        endpoints,
        profile: (await deps.readiness?.profile?.()) ?? null,
      }),
    );
  });

  return app;
}

/**
 * Request counts per endpoint and outcome, from the RPC pool's counter in the metrics. Only
 * that one metric is collected: the others count jobs by scanning the table.
 */
async function endpointHealth(metrics: AppMetrics): Promise<EndpointHealth[]> {
  const counter = metrics.registry.getSingleMetric("decentral_audit_rpc_requests_total");
  const values = counter ? (await counter.get()).values : [];
  const byEndpoint = new Map<string, Record<string, number>>();
  for (const v of values) {
    const endpoint = String(v.labels.endpoint ?? "?");
    const outcome = String(v.labels.outcome ?? "?");
    const outcomes = byEndpoint.get(endpoint) ?? {};
    outcomes[outcome] = (outcomes[outcome] ?? 0) + v.value;
    byEndpoint.set(endpoint, outcomes);
  }
  return [...byEndpoint].map(([endpoint, outcomes]) => ({ endpoint, outcomes }));
}
