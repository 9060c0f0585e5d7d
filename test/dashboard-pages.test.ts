import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { describe, expect, it, vi } from "vitest";
import { listTokens, revokeToken } from "../src/auth/tokens.js";
import { SESSION_COOKIE, SIGNED_IN_COOKIE } from "../src/dashboard/routes.js";
import { AppError } from "../src/errors.js";
import { HELD_LOCKED, VERDICT_NOT_WRITTEN } from "../src/store/queue-rules.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { createTestApi } from "./support/audit-api-app.js";
import { DASHBOARD_NOW, seedDashboard, WORKERS } from "./support/dashboard-fixtures.js";
import {
  fakeSignature,
  insertChainTransaction,
  insertCheck,
  insertJob,
} from "./support/job-rows.js";
import { signature } from "./support/recorder-fixtures.js";

const ORIGIN = "http://localhost";

async function dashboard(extra: Parameters<typeof createTestApi>[0] = {}) {
  let clock = DASHBOARD_NOW;
  const api = await createTestApi({ now: () => clock, ...extra });
  const seeded = seedDashboard(api.store);
  const signIn = async (token: string) => {
    const res = await api.app.request("/dashboard/sign-in", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", origin: ORIGIN },
      body: new URLSearchParams({ token, next: "/dashboard" }).toString(),
    });
    const setCookie = res.headers.get("set-cookie") ?? "";
    const id = new RegExp(`${SESSION_COOKIE}=([^;]+)`).exec(setCookie)?.[1];
    return { res, setCookie, id, cookie: `${SESSION_COOKIE}=${id}` };
  };
  const page = (path: string, cookie?: string) =>
    api.app.request(path, { headers: cookie ? { cookie } : {} });
  const post = (path: string, cookie: string, form: Record<string, string>, origin = ORIGIN) =>
    api.app.request(path, {
      method: "POST",
      headers: { cookie, origin, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(form).toString(),
    });
  const csrfOf = async (cookie: string) => {
    const text = await (await page("/dashboard", cookie)).text();
    return /name="csrf" value="([0-9a-f]+)"/.exec(text)?.[1] ?? "";
  };
  return {
    ...api,
    ...seeded,
    signIn,
    page,
    post,
    csrfOf,
    tick: (ms: number) => {
      clock += ms;
    },
  };
}

const pages = [
  "/dashboard",
  "/dashboard/reconciliation",
  "/dashboard/reconciliation.csv",
  "/dashboard/discrepancies",
  "/dashboard/jobs/job_underpaidworker",
  "/dashboard/workers",
  `/dashboard/workers/${WORKERS[0]}`,
  "/dashboard/statement",
  "/dashboard/status",
];

describe("dashboard sign-in", () => {
  it("sends /dashboard/ to the overview rather than a JSON 404", async () => {
    const d = await dashboard();
    const res = await d.app.request("/dashboard/");
    expect(res.status).toBe(308);
    expect(res.headers.get("location")).toBe("/dashboard");
    // A period typed or bookmarked with the slash is the one shown.
    const period = await d.app.request("/dashboard/?period=custom&from=2026-11-29&to=2026-11-30");
    expect(period.headers.get("location")).toBe(
      "/dashboard?period=custom&from=2026-11-29&to=2026-11-30",
    );
  });

  // `/dashboard/reconciliation/` (a typed or bookmarked slash) was a JSON 404: only
  // `/dashboard/` was sent on to its page.
  it("sends every page's trailing-slash form to the page, with its query", async () => {
    const d = await dashboard();
    for (const path of pages) {
      const res = await d.app.request(`${path}/?period=last-7-days`);
      expect(res.status, path).toBe(308);
      expect(res.headers.get("location"), path).toBe(`${path}?period=last-7-days`);
    }
    const { cookie } = await d.signIn(d.tokens.read);
    const followed = await d.page("/dashboard/reconciliation/", cookie);
    expect(followed.status).toBe(308);
    const shown = await d.page(followed.headers.get("location") ?? "", cookie);
    expect(shown.status).toBe(200);
    expect(shown.headers.get("content-type")).toContain("text/html");
    // No page there: still the 404 it was, and a form's POST is not redirected.
    expect((await d.page("/dashboard/nothing/", cookie)).status).toBe(404);
    expect((await d.app.request("/dashboard/sign-out/", { method: "POST" })).status).not.toBe(308);
  });

  it("marks the cookie Secure behind a TLS reverse proxy, and not over plain HTTP", async () => {
    const d = await dashboard();
    const signIn = (headers: Record<string, string>) =>
      d.app.request("/dashboard/sign-in", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
        body: new URLSearchParams({ token: d.tokens.read, next: "/dashboard" }).toString(),
      });
    const proxied = await signIn({
      "x-forwarded-proto": "https",
      "x-forwarded-host": "audit.example",
      origin: "https://audit.example",
    });
    expect(proxied.status).toBe(303);
    expect(proxied.headers.get("set-cookie")).toMatch(/; Secure/);
    const plain = await signIn({ origin: ORIGIN });
    expect(plain.headers.get("set-cookie")).not.toMatch(/Secure/);
  });

  it("exchanges a read token for an HttpOnly, SameSite=Strict cookie with an expiry, stored hashed", async () => {
    const d = await dashboard();
    const { res, setCookie, id } = await d.signIn(d.tokens.read);
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/dashboard");
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    expect(setCookie).toMatch(/Max-Age=28800/);
    expect(setCookie).toMatch(/Path=\/dashboard/);
    expect(setCookie).not.toContain(d.tokens.read);
    const rows = d.store.sqlite.prepare("SELECT id_hash FROM dashboard_sessions").pluck().all();
    expect(rows).toEqual([
      createHash("sha256")
        .update(id ?? "")
        .digest("hex"),
    ]);
  });

  it("ends the browser's session before when it signs in again", async () => {
    const d = await dashboard();
    const first = await d.signIn(d.tokens.admin);
    const again = await d.app.request("/dashboard/sign-in", {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        origin: ORIGIN,
        cookie: first.cookie,
      },
      body: new URLSearchParams({ token: d.tokens.read, next: "/dashboard" }).toString(),
    });
    expect(again.status).toBe(303);
    const second = new RegExp(`${SESSION_COOKIE}=([^;]+)`).exec(
      again.headers.get("set-cookie") ?? "",
    )?.[1];
    expect(second).toMatch(/./);
    expect((await d.page("/dashboard", `${SESSION_COOKIE}=${second}`)).status).toBe(200);
    const old = await d.page("/dashboard", first.cookie);
    expect(old.status).toBe(303);
    expect(old.headers.get("location")).toMatch(/^\/dashboard\/sign-in/);
    const rows = d.store.sqlite.prepare("SELECT count(*) FROM dashboard_sessions").pluck().get();
    expect(rows).toBe(1);
  });

  it("refuses a wrong token with a clear message and no cookie", async () => {
    const d = await dashboard();
    const { res, setCookie } = await d.signIn("da_read_not-a-real-token");
    expect(res.status).toBe(401);
    expect(setCookie).toBe("");
    expect(await res.text()).toContain("That token is unknown or revoked");
  });

  it("says a token pasted with its Bearer scheme is to be pasted alone, not that it is revoked", async () => {
    const d = await dashboard();
    const { res, setCookie } = await d.signIn(`Bearer ${d.tokens.read}`);
    expect(res.status).toBe(400);
    expect(setCookie).toBe("");
    const page = await res.text();
    expect(page).toContain(
      "Paste the token alone (da_...), without &quot;Bearer &quot; before it.",
    );
    expect(page).not.toContain(d.tokens.read);
  });

  it("refuses an ingest token, which cannot read reports", async () => {
    const d = await dashboard();
    const { res } = await d.signIn(d.tokens.ingest);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("cannot read reports");
  });

  it("refuses a sign-in posted from another origin", async () => {
    const d = await dashboard();
    const res = await d.app.request("/dashboard/sign-in", {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        origin: "https://evil.example",
      },
      body: new URLSearchParams({ token: d.tokens.read }).toString(),
    });
    expect(res.status).toBe(403);
  });

  it("reads no form larger than 16 KiB", async () => {
    const d = await dashboard();
    const res = await d.app.request("/dashboard/sign-in", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", origin: ORIGIN },
      body: new URLSearchParams({ token: "x".repeat(20_000) }).toString(),
    });
    expect(res.status).toBe(413);
  });

  it("answers 400, not 500, to a form body that cannot be read, signed in or not", async () => {
    const d = await dashboard();
    const broken = (path: string, cookie?: string) =>
      d.app.request(path, {
        method: "POST",
        headers: {
          "content-type": "multipart/form-data; boundary=zz",
          origin: ORIGIN,
          ...(cookie ? { cookie } : {}),
        },
        body: "x",
      });
    const signIn = await broken("/dashboard/sign-in");
    expect(signIn.status).toBe(400);
    expect(await signIn.text()).toContain("This form&#39;s body could not be read");
    const { cookie } = await d.signIn(d.tokens.admin);
    for (const path of ["/dashboard/sign-out", "/dashboard/jobs/job_underpaidworker/reverify"]) {
      expect((await broken(path, cookie)).status, path).toBe(400);
    }
  });

  it("never follows a next that leaves the dashboard", async () => {
    const d = await dashboard();
    const res = await d.app.request("/dashboard/sign-in", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", origin: ORIGIN },
      body: new URLSearchParams({ token: d.tokens.read, next: "//evil.example/x" }).toString(),
    });
    expect(res.headers.get("location")).toBe("/dashboard");
  });

  // A gzipped form was read as plain text (a sign-in then said the token was wrong), where the
  // API answers such a body 415.
  it("answers 415 to a form sent with a content-encoding, as the API does", async () => {
    const d = await dashboard();
    const form = new URLSearchParams({ token: d.tokens.read, next: "/dashboard" }).toString();
    for (const encoding of ["gzip", "br", "identity, gzip"]) {
      const res = await d.app.request("/dashboard/sign-in", {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          "content-encoding": encoding,
          origin: ORIGIN,
        },
        body: gzipSync(form),
      });
      expect(res.status, encoding).toBe(415);
      expect(res.headers.get("set-cookie"), encoding).toBeNull();
      expect(await res.text()).toContain("which is not decoded; send it uncompressed");
    }
    const { cookie } = await d.signIn(d.tokens.admin);
    const csrf = await d.csrfOf(cookie);
    const res = await d.app.request("/dashboard/sign-out", {
      method: "POST",
      headers: {
        cookie,
        origin: ORIGIN,
        "content-type": "application/x-www-form-urlencoded",
        "content-encoding": "gzip",
      },
      body: gzipSync(new URLSearchParams({ csrf }).toString()),
    });
    expect(res.status).toBe(415);
    // Still signed in: the compressed sign-out did nothing.
    expect((await d.page("/dashboard", cookie)).status).toBe(200);
  });

  // `/dashboard/../../evil` was followed as written, and the browser resolved it to `/evil`.
  it("resolves a next's dot segments and keeps it under the dashboard", async () => {
    const d = await dashboard();
    const follow = async (next: string) => {
      const res = await d.app.request("/dashboard/sign-in", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", origin: ORIGIN },
        body: new URLSearchParams({ token: d.tokens.read, next }).toString(),
      });
      return res.headers.get("location");
    };
    for (const next of [
      "/dashboard/../../evil",
      "/dashboard/..",
      "/dashboard/%2e%2e/evil",
      "/dashboard/.%2E/x?y=1",
    ]) {
      expect(await follow(next), next).toBe("/dashboard");
    }
    expect(await follow("/dashboard/jobs/../reconciliation?from=1")).toBe(
      "/dashboard/reconciliation?from=1",
    );
    expect(await follow("/dashboard/jobs/job_1")).toBe("/dashboard/jobs/job_1");
    // Signed in already, the sign-in page sends a next on the same way.
    const { cookie } = await d.signIn(d.tokens.read);
    const page = await d.page("/dashboard/sign-in?next=/dashboard/../../evil", cookie);
    expect(page.headers.get("location")).toBe("/dashboard");
  });
});

describe("dashboard pages", () => {
  it.each(pages)("%s redirects to sign-in without a session", async (path) => {
    const d = await dashboard();
    const res = await d.page(path);
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe(`/dashboard/sign-in?next=${encodeURIComponent(path)}`);
  });

  it.each(pages)("%s answers 200 with a session, and never shows the token", async (path) => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    const res = await d.page(path, cookie);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain(d.tokens.read);
    if (!path.endsWith(".csv")) {
      expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(text).not.toMatch(/<script|https?:\/\/(?!explorer\.solana\.com)[^"]*\.(css|js)/);
    }
  });

  it("a state-changing POST without a session is 401", async () => {
    const d = await dashboard();
    const res = await d.post("/dashboard/jobs/job_underpaidworker/reverify", "", {});
    expect(res.status).toBe(401);
  });

  it("the API keeps taking bearer tokens only: a session cookie does not open it", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    const res = await d.app.request("/reports/reconciliation?from=2026-11-01&to=2026-11-21", {
      headers: { cookie },
    });
    expect(res.status).toBe(401);
  });

  it("shows month to date by default, with the API's totals", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    const html = await (await d.page("/dashboard", cookie)).text();
    const api = (await (
      await d.get("/reports/reconciliation?from=2026-11-01&to=2026-11-21")
    ).json()) as { totals: Record<string, string | number> };
    for (const key of [
      "chargedUnits",
      "escrowedUnits",
      "workerPaidUnits",
      "treasuryPaidUnits",
      "refundedUnits",
      "unaccountedUnits",
    ]) {
      const usdc = api.totals[key.replace("Units", "Usdc")];
      expect(html).toContain(`data-figure="${key}" aria-labelledby="${key}-label">${usdc}<`);
    }
    expect(html).toContain(`data-count="verified">${api.totals.verified}<`);
    expect(html).toContain(`data-count="discrepancies">1<`);
    expect(html).toContain("Showing 2026-11-01 00:00 UTC up to 2026-11-20 24:00 UTC");
    expect(html).toContain("Figures before <strong>2026-11-20 11:00 UTC</strong> are final");
    expect(html).toContain('<svg class="chart"');
  });

  it("takes day, week and custom periods in UTC, and says what is wrong with a bad one", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    expect(await (await d.page("/dashboard?period=day", cookie)).text()).toContain(
      "Showing 2026-11-20 00:00 UTC up to 2026-11-20 24:00 UTC",
    );
    // 2026-11-20 is a Friday; the week starts on Monday the 16th.
    expect(await (await d.page("/dashboard?period=week", cookie)).text()).toContain(
      "Showing 2026-11-16 00:00 UTC",
    );
    const custom = await (
      await d.page("/dashboard?period=custom&from=2026-10-01&to=2026-10-31", cookie)
    ).text();
    expect(custom).toContain("Showing 2026-10-01 00:00 UTC up to 2026-10-31 24:00 UTC");
    expect(custom).toContain('data-count="verified">1<');
    const bad = await d.page("/dashboard?period=custom&from=2026-02-30&to=2026-03-01", cookie);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain("2026-02-30 is no day of the calendar");
    // Not a worker address: refused, not shown as an empty statement.
    const notWorker = await d.page("/dashboard/workers/..%2F..", cookie);
    expect(notWorker.status).toBe(400);
    expect(await notWorker.text()).toContain("A worker address is a base58 address");
    // A mistyped filter in a link: said, not shown as every flagged job or as none.
    for (const [query, said] of [
      ["verdict=droped", "verdict must be one of"],
      ["check=settlement.splt", "check must be the name of a check"],
    ]) {
      const filtered = await d.page(`/dashboard/discrepancies?${query}`, cookie);
      expect(filtered.status, query).toBe(400);
      expect(await filtered.text(), query).toContain(said);
    }
    const known = "/dashboard/discrepancies?verdict=dropped&check=settlement.split";
    expect((await d.page(known, cookie)).status).toBe(200);
  });

  it("uses dates typed into the picker whatever its menu says, and a menu changed alone", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    // The form as the month page sends it: the menu left on month, the dates typed over.
    const typed = await d.page(
      "/dashboard/reconciliation?period=month&from=2026-10-31&to=2026-10-31&shown=2026-11-01..2026-11-20",
      cookie,
    );
    const html = await typed.text();
    expect(html).toContain("Showing 2026-10-31 00:00 UTC up to 2026-10-31 24:00 UTC");
    expect(html).toContain('<option value="custom" selected>');
    expect(html).toContain('name="shown" value="2026-10-31..2026-10-31"');
    // The menu changed, the dates left as shown: the menu's period.
    const menu = await (
      await d.page(
        "/dashboard?period=day&from=2026-11-01&to=2026-11-20&shown=2026-11-01..2026-11-20",
        cookie,
      )
    ).text();
    expect(menu).toContain("Showing 2026-11-20 00:00 UTC up to 2026-11-20 24:00 UTC");
    // A date typed wrong is refused with a message, not dropped.
    const half = await d.page(
      "/dashboard?period=month&from=&to=2026-11-03&shown=2026-11-01..2026-11-20",
      cookie,
    );
    expect(half.status).toBe(400);
    expect(await half.text()).toContain("from: a date is needed");
    // Discrepancies: dates typed under "All time" filter by them.
    const all = await (
      await d.page(
        "/dashboard/discrepancies?period=all&from=2026-10-01&to=2026-10-02&shown=",
        cookie,
      )
    ).text();
    expect(all).toContain('<option value="custom" selected>');
    expect(all).toContain('name="from" value="2026-10-01"');
  });

  it("the reconciliation table's total row and CSV are the API's", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    const q = "from=2026-11-01&to=2026-11-21&groupBy=model";
    const apiCsv = await (await d.get(`/reports/reconciliation?${q}&format=csv`)).text();
    const csv = await d.page("/dashboard/reconciliation.csv?period=month&groupBy=model", cookie);
    expect(csv.headers.get("content-disposition")).toContain("attachment");
    expect(await csv.text()).toBe(apiCsv);
    const html = await (await d.page("/dashboard/reconciliation?groupBy=model", cookie)).text();
    const total = /<tr class="total">([\s\S]*?)<\/tr>/.exec(html)?.[1] ?? "";
    const api = (await (await d.get(`/reports/reconciliation?${q}`)).json()) as {
      totals: Record<string, string>;
    };
    expect(total).toContain(`data-col="chargedUnits">${api.totals.chargedUsdc}<`);
    expect(total).toContain(`data-col="unaccountedUnits">${api.totals.unaccountedUsdc}<`);
  });

  it("escapes what receipts carry: a model name cannot inject markup", async () => {
    const d = await dashboard();
    insertJob(d.store, {
      jobId: "job_hostile",
      createdAt: Date.UTC(2026, 10, 3),
      model: '<img src=x onerror="alert(1)">',
      tags: { team: "</dd><script>alert(1)</script>" },
    });
    const { cookie } = await d.signIn(d.tokens.read);
    const table = await (await d.page("/dashboard/reconciliation?groupBy=model", cookie)).text();
    expect(table).toContain("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;");
    expect(table).not.toContain("<img");
    const job = await (await d.page("/dashboard/jobs/job_hostile", cookie)).text();
    expect(job).not.toContain("<script>");
  });

  it("sorts the reconciliation table by any column", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    const html = await (
      await d.page(
        "/dashboard/reconciliation?period=month&groupBy=day&sort=chargedUnits&dir=desc",
        cookie,
      )
    ).text();
    const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(html)?.[1] ?? "";
    const charged = [...body.matchAll(/data-col="chargedUnits">([\d.]+)</g)].map((m) =>
      BigInt((m[1] ?? "").replace(".", "")),
    );
    expect(charged).toHaveLength(20);
    expect(charged).toEqual([...charged].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0)));
    // The 18th carries the underpaid job's charge on top of its own two.
    expect(/<tbody>\s*<tr><td>(2026-11-\d\d)</.exec(html)?.[1]).toBe("2026-11-18");
    expect(html).toContain('aria-sort="descending"');
  });

  it("filters discrepancies by check and verdict, pages them, and links each to its job", async () => {
    const d = await dashboard();
    for (let i = 0; i < 55; i++) {
      insertJob(d.store, {
        jobId: `job_bulk_${i}`,
        verdict: "discrepancy",
        createdAt: Date.UTC(2026, 10, 5, 0, i),
      });
      insertCheck(d.store, `job_bulk_${i}`, "charge.matches_price", "fail", {
        reason: "overcharged",
      });
    }
    const { cookie } = await d.signIn(d.tokens.read);
    const split = await (
      await d.page("/dashboard/discrepancies?check=settlement.split", cookie)
    ).text();
    expect(split).toContain('href="/dashboard/jobs/job_underpaidworker"');
    expect(split).toContain("the worker&#39;s share matches no allowed payout rate");
    expect(split).not.toContain("job_bulk_");
    const dropped = await (await d.page("/dashboard/discrepancies?verdict=dropped", cookie)).text();
    expect(dropped).toContain("job_phantom_settlement");
    expect(dropped).not.toContain("job_underpaidworker");
    const first = await (
      await d.page("/dashboard/discrepancies?check=charge.matches_price", cookie)
    ).text();
    expect([...first.matchAll(/href="\/dashboard\/jobs\/job_bulk_/g)]).toHaveLength(50);
    const next = /href="(\/dashboard\/discrepancies\?[^"]*cursor=[^"]+)"/.exec(first)?.[1] ?? "";
    const second = await (await d.page(next.replaceAll("&amp;", "&"), cookie)).text();
    expect([...second.matchAll(/href="\/dashboard\/jobs\/job_bulk_/g)]).toHaveLength(5);
  });

  it("says how many jobs are flagged in the period, by verdict, before the list", async () => {
    const d = await dashboard();
    insertJob(d.store, {
      jobId: "job_flagged_october",
      verdict: "discrepancy",
      createdAt: Date.UTC(2026, 9, 20),
    });
    const { cookie } = await d.signIn(d.tokens.read);
    const api = (await (
      await d.get("/reports/reconciliation?from=2026-11-01&to=2026-11-21&groupBy=day")
    ).json()) as { totals: { discrepancies: number; dropped: number } };
    const { discrepancies, dropped } = api.totals;
    expect(discrepancies + dropped).toBeGreaterThan(1);
    const line = (html: string) =>
      /<p data-status="flagged">(.*?)<\/p>/s.exec(html)?.[1]?.replace(/<[^>]+>/g, "") ?? null;
    const month = await (await d.page("/dashboard/discrepancies?period=month", cookie)).text();
    expect(line(month)).toBe(
      `${discrepancies + dropped} jobs are flagged from 2026-11-01 to 2026-11-20: ${discrepancies} discrepancy, ${dropped} dropped.`,
    );
    const ever = await (await d.page("/dashboard/discrepancies?verdict=dropped", cookie)).text();
    expect(line(ever)).toBe(
      `${discrepancies + dropped + 1} jobs are flagged over all time: ${discrepancies + 1} discrepancy, ${dropped} dropped. The list shows only dropped (${dropped}).`,
    );
  });

  it("a job page gives the reason first, then each check with USDC and base units, transactions and the receipt", async () => {
    const d = await dashboard({ explorer: { cluster: "custom", rpcUrl: "http://127.0.0.1:8899" } });
    const { cookie } = await d.signIn(d.tokens.read);
    const html = await (await d.page("/dashboard/jobs/job_underpaidworker", cookie)).text();
    const reason = html.indexOf("the worker&#39;s share matches no allowed payout rate");
    expect(reason).toBeGreaterThan(0);
    expect(reason).toBeLessThan(html.indexOf("<h2>Checks</h2>"));
    expect(html).toContain('0.340000 USDC</span> <span class="muted">(340000 units)');
    expect(html).toContain('0.306000 USDC</span> <span class="muted">(306000 units)');
    expect(html).toContain("https://explorer.solana.com/tx/");
    expect(html).toContain("-0.800000");
    expect(html).toContain("What the jobs API said");
    expect(html).toContain("[&quot;worker&quot;]");
    expect(html).not.toContain("Verify again");
    expect((await d.page("/dashboard/jobs/job_nope", cookie)).status).toBe(404);
  });

  // The API answered 400 naming jobId for an id no job can have; the dashboard said "No job
  // ... is recorded" (404), as if the id were right and the job not recorded yet.
  it("a job id of no job's shape is a 400 page naming jobId's rule, as GET /audit answers", async () => {
    const reverify = vi.fn();
    const d = await dashboard({ verifier: { reverify } });
    const { cookie } = await d.signIn(d.tokens.admin);
    const csrf = await d.csrfOf(cookie);
    for (const id of ["JOB_X", "job_a-b", "job_", "8fx2kp3m9q", `job_${"a".repeat(121)}`]) {
      const api = await d.get(`/audit/${id}`);
      expect(api.status, id).toBe(400);
      const { message } = ((await api.json()) as { error: { message: string } }).error;
      for (const res of [
        await d.page(`/dashboard/jobs/${id}`, cookie),
        await d.post(`/dashboard/jobs/${id}/reverify`, cookie, { csrf }),
      ]) {
        expect(res.status, id).toBe(400);
        const html = await res.text();
        expect(html, id).toContain("<title>Bad job id");
        expect(html, id).toContain(message);
      }
    }
    expect(reverify).not.toHaveBeenCalled();
    // An id of the right shape and no job is still "no such job".
    expect((await d.page(`/dashboard/jobs/job_${"a".repeat(120)}`, cookie)).status).toBe(404);
  });

  it("a job page says which profile reached the verdict", async () => {
    // The audit record named it; the page did not, so after a profile change a reader could
    // not tell a verdict judged under the new profile from one still waiting to be judged again.
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    d.store.sqlite
      .prepare("UPDATE jobs SET verdict_profile = ? WHERE job_id = ?")
      .run("localnet@2d63503b9d1c5483", "job_underpaidworker");
    const html = await (await d.page("/dashboard/jobs/job_underpaidworker", cookie)).text();
    expect(html).toContain('under profile <span class="mono">localnet@2d63503b9d1c5483</span>');
  });

  it("a job settled twice lists both settlements with their money movements, the jobs API's too", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    const second = fakeSignature("job_twice:second");
    const job = insertJob(d.store, {
      jobId: "job_twice",
      verdict: "discrepancy",
      apiCheckedAt: DASHBOARD_NOW - 60_000,
      apiStatus: "settled",
      apiSettlementTx: second,
      workerPaidUnits: 272_000n,
    });
    const paid = (units: string) => ({
      account: "WorkerAta",
      owner: "Worker",
      mint: "Mint",
      programId: "Tok",
      decimals: 6,
      pre: "0",
      post: units,
      delta: units,
    });
    insertChainTransaction(d.store, job.settlementTx!, { tokenChanges: [paid("136000")] });
    insertChainTransaction(d.store, second, { tokenChanges: [paid("136001")] });
    const html = await (await d.page("/dashboard/jobs/job_twice", cookie)).text();
    const section = html.slice(
      html.indexOf("<h2>Transactions</h2>"),
      html.indexOf("<h2>Receipt</h2>"),
    );
    expect(section).toContain(job.settlementTx!);
    expect(section).toContain(second);
    expect(section).toContain("Settlement, named by the jobs API");
    expect(section).toContain("0.136000");
    expect(section).toContain("0.136001");
  });
});

describe("dashboard actions", () => {
  it("an admin verifies a job again, with the CSRF token; without it, or from elsewhere, it is refused", async () => {
    const reverify = vi.fn();
    const d = await dashboard({ verifier: { reverify } });
    const { cookie } = await d.signIn(d.tokens.admin);
    const path = "/dashboard/jobs/job_underpaidworker/reverify";
    expect(await (await d.page("/dashboard/jobs/job_underpaidworker", cookie)).text()).toContain(
      "Verify again",
    );
    const csrf = await d.csrfOf(cookie);
    expect((await d.post(path, cookie, {})).status).toBe(403);
    expect((await d.post(path, cookie, { csrf: "0".repeat(64) })).status).toBe(403);
    expect((await d.post(path, cookie, { csrf }, "https://evil.example")).status).toBe(403);
    expect(reverify).not.toHaveBeenCalled();
    const ok = await d.post(path, cookie, { csrf });
    expect(ok.status).toBe(303);
    expect(ok.headers.get("location")).toBe("/dashboard/jobs/job_underpaidworker?reverify=queued");
    expect(reverify).toHaveBeenCalledWith("job_underpaidworker");
    const queued = "A fresh verification is queued";
    const after = await d.page("/dashboard/jobs/job_underpaidworker?reverify=queued", cookie);
    expect(await after.text()).toContain(queued);
    // The same link given to a reader, who queued nothing, says nothing of the kind; a value of
    // no redirect's is refused.
    const reader = (await d.signIn(d.tokens.read)).cookie;
    const shown = await d.page("/dashboard/jobs/job_underpaidworker?reverify=queued", reader);
    expect(shown.status).toBe(200);
    expect(await shown.text()).not.toContain(queued);
    const bogus = await d.page("/dashboard/jobs/job_underpaidworker?reverify=bogus", cookie);
    expect(bogus.status).toBe(400);
    expect(await bogus.text()).toContain("reverify");
  });

  it("a verification again that is refused shows why, naming the job", async () => {
    const message = "job job_underpaidworker: a row of it is held locked by another session";
    const reverify = vi.fn(async () => {
      throw new AppError("locked", message, { jobId: "job_underpaidworker" });
    });
    const d = await dashboard({ verifier: { reverify } });
    const { cookie } = await d.signIn(d.tokens.admin);
    const csrf = await d.csrfOf(cookie);
    const res = await d.post("/dashboard/jobs/job_underpaidworker/reverify", cookie, { csrf });
    expect(res.status).toBe(423);
    expect(await res.text()).toContain(message);
  });

  it("a read session cannot verify again", async () => {
    const reverify = vi.fn();
    const d = await dashboard({ verifier: { reverify } });
    const { cookie } = await d.signIn(d.tokens.read);
    const csrf = await d.csrfOf(cookie);
    const res = await d.post("/dashboard/jobs/job_underpaidworker/reverify", cookie, { csrf });
    expect(res.status).toBe(403);
    expect(reverify).not.toHaveBeenCalled();
  });

  it("signing out ends the session: its cookie opens nothing after", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    expect((await d.post("/dashboard/sign-out", cookie, {})).status).toBe(403);
    const out = await d.post("/dashboard/sign-out", cookie, { csrf: await d.csrfOf(cookie) });
    expect(out.status).toBe(303);
    expect(out.headers.get("set-cookie")).toMatch(/da_session=;/);
    expect((await d.page("/dashboard", cookie)).status).toBe(303);
  });

  it("a session ends at its expiry and when its token is revoked", async () => {
    const d = await dashboard();
    const a = await d.signIn(d.tokens.read);
    d.tick(8 * 3600_000 + 1);
    const expired = await d.page("/dashboard", a.cookie);
    expect(expired.status).toBe(303);
    expect(expired.headers.get("location")).toContain("expired=1");
    const b = await d.signIn(d.tokens.read);
    expect((await d.page("/dashboard", b.cookie)).status).toBe(200);
    const id = (await listTokens(d.store)).find((t) => t.role === "read")?.id ?? "";
    await revokeToken(d.store, id);
    expect((await d.page("/dashboard", b.cookie)).status).toBe(303);
  });
});

describe("an expired session", () => {
  it("a POST after expiry shows the sign-in form saying so, and signing in returns to the page, not the action", async () => {
    const reverify = vi.fn();
    const d = await dashboard({ verifier: { reverify } });
    const { cookie } = await d.signIn(d.tokens.admin);
    const csrf = await d.csrfOf(cookie);
    d.tick(8 * 3600_000 + 1);
    const res = await d.app.request("/dashboard/jobs/job_underpaidworker/reverify", {
      method: "POST",
      headers: {
        cookie,
        origin: ORIGIN,
        referer: `${ORIGIN}/dashboard/jobs/job_underpaidworker`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ csrf }).toString(),
    });
    expect(res.status).toBe(401);
    const html = await res.text();
    expect(html).toContain('<label for="token">Access token</label>');
    expect(html).toContain("Your session expired, so this action was not done");
    expect(html).toContain('name="next" value="/dashboard/jobs/job_underpaidworker"');
    expect(reverify).not.toHaveBeenCalled();
    // Without a Referer, a "Verify again" still returns to its job.
    const bare = await d.post("/dashboard/jobs/job_underpaidworker/reverify", cookie, { csrf });
    expect(await bare.text()).toContain('name="next" value="/dashboard/jobs/job_underpaidworker"');
    const back = await d.app.request("/dashboard/sign-in", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", origin: ORIGIN },
      body: new URLSearchParams({
        token: d.tokens.admin,
        next: "/dashboard/jobs/job_underpaidworker",
      }).toString(),
    });
    expect(back.status).toBe(303);
    expect(back.headers.get("location")).toBe("/dashboard/jobs/job_underpaidworker");
    expect(reverify).not.toHaveBeenCalled();
  });

  it("a page asked for after the browser dropped the expired cookie still says the session expired", async () => {
    const d = await dashboard();
    const { setCookie } = await d.signIn(d.tokens.read);
    expect(setCookie).toContain(`${SIGNED_IN_COOKIE}=1`);
    // The browser keeps only the long-lived mark once the session cookie's Max-Age has passed.
    const res = await d.page("/dashboard/reconciliation?groupBy=model", `${SIGNED_IN_COOKIE}=1`);
    expect(res.status).toBe(303);
    const location = res.headers.get("location") ?? "";
    expect(location).toContain("expired=1");
    const signInPage = await (await d.page(location)).text();
    expect(signInPage).toContain("Your session expired");
    expect(signInPage).toContain('name="next" value="/dashboard/reconciliation?groupBy=model"');
    // Never signed in: no word of an expiry.
    expect((await d.page("/dashboard")).headers.get("location")).not.toContain("expired");
  });
});

describe("status page", () => {
  it("shows queue depth, lag, RPC health, the last nightly run and the profile's gaps", async () => {
    const d = await dashboard({
      readiness: {
        rpc: async () => {
          throw new Error("connection refused");
        },
        profile: async () => ({
          name: "decentral-mainnet",
          id: "decentral-mainnet@0123456789abcdef",
          gaps: [
            {
              check: "escrow.program, refund.program",
              reason: "the job_escrow program id is not known",
            },
          ],
          treasury: { source: "learning", candidates: [], needed: 20 },
        }),
      },
    });
    d.store.sqlite
      .prepare(
        `INSERT INTO verification_runs (trigger, status, window_from, window_to, started_at, finished_at, owner, summary)
         VALUES ('verify', 'completed', ?, ?, ?, ?, 'test', ?)`,
      )
      .run(
        Date.UTC(2026, 10, 19),
        Date.UTC(2026, 10, 20),
        Date.UTC(2026, 10, 20, 2),
        Date.UTC(2026, 10, 20, 2, 1),
        JSON.stringify({ byVerdict: { verified: 3, discrepancy: 1 } }),
      );
    const { cookie } = await d.signIn(d.tokens.read);
    const html = await (await d.page("/dashboard/status", cookie)).text();
    expect(html).toContain('data-status="queue">1 jobs waiting');
    expect(html).toContain("3,600 s (the oldest job");
    expect(html).toContain("s (the job due soonest, past its due time");
    expect(html).toContain("connection refused");
    expect(html).toContain('data-status="run">completed');
    expect(html).toContain("verified: 3, discrepancy: 1");
    expect(html).toContain("the job_escrow program id is not known");
  });
});

describe("jobs waiting on RPC trouble", () => {
  it("the overview, reconciliation and status pages say how many, since when and the last error", async () => {
    const d = await dashboard();
    insertJob(d.store, {
      jobId: "job_rpc_down",
      verdict: "error",
      createdAt: DASHBOARD_NOW - 3_600_000,
      lastError: "all RPC endpoints failed: fetch failed (https://rpc.example/?api-key=secret)",
      chargedUnits: null,
      escrowedUnits: null,
    });
    const { cookie } = await d.signIn(d.tokens.read);
    for (const path of ["/dashboard", "/dashboard/reconciliation", "/dashboard/status"]) {
      const html = await (await d.page(path, cookie)).text();
      const note = /<p class="error" role="alert" data-status="rpc-trouble">(.*?)<\/p>/s.exec(html);
      expect({ path, note: note?.[1] ?? null }).toEqual({
        path,
        note: expect.stringContaining("1 job is waiting on Solana RPC trouble"),
      });
      expect(note![1]).toContain("recorded 2026-11-20 11:00 UTC");
      expect(note![1]).toContain("all RPC endpoints failed: fetch failed");
      expect(note![1]).not.toContain("secret");
    }
    const status = await (await d.page("/dashboard/status", cookie)).text();
    expect(status).toMatch(
      /data-status="rpc-waiting"><strong class="outcome-fail">failing<\/strong> 1 jobs/,
    );
  });

  it("says a job parked on a database row another session held as that, not as RPC trouble", async () => {
    const d = await dashboard();
    insertJob(d.store, {
      jobId: "job_parked_held",
      verdict: "error",
      createdAt: DASHBOARD_NOW - 3_600_000,
      lastError: `${VERDICT_NOT_WRITTEN}job job_k: its row ${HELD_LOCKED} (waited 3 times 1000 ms); parked`,
      chargedUnits: null,
      escrowedUnits: null,
    });
    const { cookie } = await d.signIn(d.tokens.read);
    const html = await (await d.page("/dashboard", cookie)).text();
    expect(html).not.toContain('data-status="rpc-trouble"');
    const note = /<p class="error" role="alert" data-status="held-row">(.*?)<\/p>/s.exec(html);
    expect(note?.[1]).toContain("1 job is waiting for a database row another session holds locked");
    expect(note?.[1]).toContain("job job_k: its row");
  });
});

describe("the credit vault statement page", () => {
  it("shows each known vault's balance walk for the period, or says the ledger is off", async () => {
    const off = await dashboard();
    const offCookie = (await off.signIn(off.tokens.read)).cookie;
    const offHtml = await (await off.page("/dashboard/statement", offCookie)).text();
    expect(offHtml).toContain("The credit vault ledger is not read by this service");

    const vault = "Gp34c9cnZUEhVTJVVDfciifWxmmJEtzt1UjvAd4Rtxb3";
    const d = await dashboard({ statement: { profile: localnetProfile, graceSeconds: 300 } });
    d.store.sqlite
      .prepare(
        "INSERT INTO credit_vaults (key_fingerprint, vault, source, job_id, pinned_at) VALUES (?, ?, 'configured', NULL, ?)",
      )
      .run("0123456789abcdef", vault, DASHBOARD_NOW);
    const { cookie } = await d.signIn(d.tokens.read);
    const res = await d.page("/dashboard/statement?period=month", cookie);
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain("Credit vault statement");
    expect(html).toContain(vault);
    expect(html).toContain("Closing balance by the ledger");
    expect(html).toContain("API keys 0123456789abcdef");
    // The statement the page shows is the API's for the same period.
    const api = (await (
      await d.get(`/reports/statement?from=2026-11-01&to=2026-11-21&vault=${vault}`)
    ).json()) as { vaults: { vault: string }[] };
    expect(api.vaults.map((v) => v.vault)).toEqual([vault]);
  });

  it("shows only the vault asked for, and refuses one that is no address", async () => {
    const [one, other] = [
      "Gp34c9cnZUEhVTJVVDfciifWxmmJEtzt1UjvAd4Rtxb3",
      "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
    ];
    const d = await dashboard({ statement: { profile: localnetProfile, graceSeconds: 300 } });
    const pin = d.store.sqlite.prepare(
      "INSERT INTO credit_vaults (key_fingerprint, vault, source, job_id, pinned_at) VALUES (?, ?, 'configured', NULL, ?)",
    );
    pin.run("0123456789abcdef", one, DASHBOARD_NOW);
    pin.run("fedcba9876543210", other, DASHBOARD_NOW);
    const { cookie } = await d.signIn(d.tokens.read);
    const html = await (await d.page(`/dashboard/statement?vault=${other}`, cookie)).text();
    expect(html).toContain(other);
    expect(html).not.toContain(one);
    const bad = await d.page("/dashboard/statement?vault=bad", cookie);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain("A credit vault is a base58 address");
  });
});

describe("dashboard links it cannot honour", () => {
  // A filter named twice was shown by one of its values, and an unknown sort column or
  // direction as the default order, each without a word; the API refuses all three.
  it("says a filter given twice, or a sort it has not, instead of picking one", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    for (const [path, named] of [
      ["/dashboard/reconciliation?groupBy=model&groupBy=key", "groupBy is given more than once"],
      [
        "/dashboard/reconciliation?period=custom&from=2026-11-01&to=2026-11-05&from=2026-11-02",
        "from is given more than once",
      ],
      ["/dashboard/discrepancies?check=settlement.split&check=escrow.exists", "check is given"],
      ["/dashboard/reconciliation?sort=bogus", "sort must be the name of a column"],
      ["/dashboard/reconciliation?sort=chargedUnits&dir=sideways", "dir must be asc or desc"],
    ] as const) {
      const res = await d.page(path, cookie);
      expect(res.status, path).toBe(400);
      expect(await res.text(), path).toContain(named);
    }
    const sorted = await d.page("/dashboard/reconciliation?sort=chargedUnits&dir=desc", cookie);
    expect(sorted.status).toBe(200);
  });

  // Every path under /dashboard looked as if it took POST (the form size limit's registration),
  // so a mistyped page answered a JSON 405 saying so.
  it("answers a page that does not exist with a 404, not a 405 that says it takes POST", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    for (const path of ["/dashboard/nope", "/dashboard/jobs"]) {
      const res = await d.page(path, cookie);
      expect(res.status, path).toBe(404);
      expect(res.headers.get("allow"), path).toBeNull();
    }
    const wrongMethod = await d.page("/dashboard/sign-out", cookie);
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("POST");
  });
});

// A mistyped link (`?modle=x`, `?groupby=model`) showed the page unfiltered, as if the filter
// had been read, where the API refuses a parameter a route does not take with a 400 naming it.
describe("dashboard query parameters", () => {
  it("refuses one a page does not take, naming it, and takes every one its own links carry", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    for (const path of [...pages, "/dashboard/sign-in"]) {
      const res = await d.page(`${path}?modle=x`, cookie);
      expect(res.status, path).toBe(400);
      const text = await res.text();
      expect(text, path).toContain("modle");
      expect(text, path).toContain("unknown query parameter");
    }
    const bad = await d.page("/dashboard/reconciliation?period=day&groupby=model", cookie);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain("groupby");
    // Without a session the link is kept through sign-in, then refused the same way.
    const anonymous = await d.page("/dashboard?modle=x");
    expect(anonymous.status).toBe(303);
    // Every parameter the pages' own links and forms carry is still taken.
    for (const path of [
      "/dashboard?period=custom&from=2026-11-01&to=2026-11-05&shown=2026-11-01..2026-11-05",
      "/dashboard/reconciliation?period=week&groupBy=model&sort=chargedUnits&dir=desc",
      "/dashboard/reconciliation.csv?period=week&groupBy=model",
      "/dashboard/discrepancies?check=settlement.split&verdict=discrepancy&period=all",
      "/dashboard/jobs/job_underpaidworker?reverify=queued",
      "/dashboard/statement?period=month&vault=9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
      `/dashboard/workers/${WORKERS[0]}?period=day`,
      "/dashboard/assets/dashboard.css?v=1",
      "/dashboard/sign-in?next=/dashboard&expired=1&signedOut=1",
    ]) {
      const res = await d.page(path, cookie);
      expect(res.status, path).toBeLessThan(400);
    }
  });

  it("refuses one on a form's POST, as no form of the dashboard posts any", async () => {
    const d = await dashboard({ verifier: { reverify: vi.fn() } });
    const { cookie } = await d.signIn(d.tokens.admin);
    const csrf = await d.csrfOf(cookie);
    const res = await d.post("/dashboard/jobs/job_underpaidworker/reverify?all=1", cookie, {
      csrf,
    });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("all");
  });
});

/** 55 jobs failing charge.matches_price on 2026-11-20, a second apart: two pages of them. */
function flagJobs(store: Parameters<typeof insertJob>[0], name: string) {
  for (let i = 0; i < 55; i++) {
    const jobId = `job_${name}_${String(i).padStart(2, "0")}`;
    insertJob(store, {
      jobId,
      verdict: "discrepancy",
      createdAt: Date.UTC(2026, 10, 20, 1) + i * 1000,
    });
    insertCheck(store, jobId, "charge.matches_price", "fail");
  }
}

describe("dashboard discrepancies pager", () => {
  it("refuses an empty cursor, as the API does, instead of showing the first page again", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    const res = await d.page("/dashboard/discrepancies?verdict=discrepancy&cursor=", cookie);
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("cursor is empty");
  });

  // A cursor continues only its own query: a next-page link of "Month to date" names the period
  // as the menu does, so it still continues after midnight, when the month runs a day further;
  // the same cursor under another filter is refused as the API refuses it.
  it("follows a next-page link of a period that runs to today after midnight, and refuses it under another filter", async () => {
    const d = await dashboard();
    flagJobs(d.store, "pager");
    const { cookie } = await d.signIn(d.tokens.read);
    const query = "period=month&check=charge.matches_price";
    const first = await (await d.page(`/dashboard/discrepancies?${query}`, cookie)).text();
    const next = (
      /href="(\/dashboard\/discrepancies\?[^"]*cursor=[^"]+)"/.exec(first)?.[1] ?? ""
    ).replaceAll("&amp;", "&");
    expect(next).toContain("period=month");
    // A sign-in lasts 8 hours: the link is followed the next day, after signing in again.
    d.tick(24 * 3600_000);
    const { cookie: later } = await d.signIn(d.tokens.read);
    const second = await d.page(next, later);
    expect(second.status).toBe(200);
    expect([
      ...(await second.text()).matchAll(/href="\/dashboard\/jobs\/job_pager_/g),
    ]).toHaveLength(5);
    const other = await d.page(next.replace("period=month", "period=day"), later);
    expect(other.status).toBe(400);
    expect(await other.text()).toContain("another query");
  });
});

describe("a link to a period that runs to today, followed after it ended", () => {
  it("shows the month it was made in, whole, says so, and its next page continues", async () => {
    const d = await dashboard();
    flagJobs(d.store, "late");
    // A job of 30 November, after the link was made: the month it names holds it.
    insertJob(d.store, { jobId: "job_nov30", createdAt: Date.UTC(2026, 10, 30, 22) });
    const { cookie } = await d.signIn(d.tokens.read);
    const first = await (await d.page("/dashboard/discrepancies?period=month", cookie)).text();
    const next = (
      /href="(\/dashboard\/discrepancies\?[^"]*cursor=[^"]+)"/.exec(first)?.[1] ?? ""
    ).replaceAll("&amp;", "&");
    const overview = await (await d.page("/dashboard", cookie)).text();
    const link = (
      /href="(\/dashboard\/reconciliation\?[^"]*)"/.exec(overview)?.[1] ?? ""
    ).replaceAll("&amp;", "&");
    // Followed on 2 December, when month to date is December's first two days.
    d.tick(12 * 24 * 3600_000);
    const { cookie: later } = await d.signIn(d.tokens.read);
    const second = await d.page(next, later);
    expect(second.status).toBe(200);
    const text = await second.text();
    expect([...text.matchAll(/href="\/dashboard\/jobs\/job_late_/g)]).toHaveLength(5);
    expect(text).toContain("which has ended: showing all of it, 2026-11-01 to 2026-11-30");
    expect(text).toContain(
      '<a href="/dashboard/discrepancies?period=month">Show month to date now</a>',
    );
    const table = await (await d.page(link, later)).text();
    expect(table).toContain("Showing 2026-11-01 00:00 UTC up to 2026-11-30 24:00 UTC");
    const api = (await (
      await d.get("/reports/reconciliation?from=2026-11-01&to=2026-12-01")
    ).json()) as { totals: { chargedUsdc: string; jobs: number } };
    const total = /<tr class="total">([\s\S]*?)<\/tr>/.exec(table)?.[1] ?? "";
    expect(total).toContain(`data-col="chargedUnits">${api.totals.chargedUsdc}<`);
    expect(total).toContain(`data-col="jobs">${api.totals.jobs}<`);
    // Month to date as such is the running month; a start after today is refused.
    const now = await (await d.page("/dashboard?period=month", later)).text();
    expect(now).toContain("Showing 2026-12-01 00:00 UTC up to 2026-12-02 24:00 UTC");
    const ahead = await d.page("/dashboard?period=month&start=2027-01-01", later);
    expect(ahead.status).toBe(400);
    expect(await ahead.text()).toContain("start: 2027-01-01 is after today");
  });
});

// `period=week&start=1970-01-01` (a Thursday) showed a week from 1969-12-29, before the epoch
// every date field refuses; a mid-month `start` was moved to the 1st without a word.
describe("a link's start that is not the first day of its period", () => {
  it("is a 400 page naming start; a Monday or a 1st is shown", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    for (const [query, says] of [
      ["period=week&start=1970-01-01", "start: 1970-01-01 is not the first day of a week:"],
      [
        "period=week&start=2026-11-04",
        "start: 2026-11-04 is not the first day of a week (that week starts 2026-11-02)",
      ],
      [
        "period=month&start=2026-10-15",
        "start: 2026-10-15 is not the first day of a month (that month starts 2026-10-01)",
      ],
    ] as const) {
      const res = await d.page(`/dashboard?${query}`, cookie);
      expect(res.status, query).toBe(400);
      expect(await res.text(), query).toContain(says);
    }
    for (const query of [
      "period=week&start=1970-01-05",
      "period=week&start=2026-11-02",
      "period=month&start=2026-10-01",
      "period=day&start=2026-11-04",
    ]) {
      expect((await d.page(`/dashboard?${query}`, cookie)).status, query).toBe(200);
    }
    const week = await (await d.page("/dashboard?period=week&start=2026-11-02", cookie)).text();
    expect(week).toContain("2026-11-08 24:00 UTC");
  });
});

describe("the statement page's period picker", () => {
  it("keeps the vault asked for through a change of period", async () => {
    const vault = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
    const d = await dashboard({ statement: { profile: localnetProfile, graceSeconds: 300 } });
    const { cookie } = await d.signIn(d.tokens.read);
    const html = await (await d.page(`/dashboard/statement?vault=${vault}`, cookie)).text();
    const form = /<form class="filters"[\s\S]*?<\/form>/.exec(html)?.[0] ?? "";
    expect(form).toContain(`<input type="hidden" name="vault" value="${vault}">`);
  });
});

// A sign-in form naming `token` twice signed in with the last one: a read token pasted after an
// admin one (a script building the body, a field a page injected) decided which session opened.
describe("a dashboard form naming a field twice", () => {
  it("is refused naming the field, signing no one in, and acting on nothing", async () => {
    const d = await dashboard();
    const body = new URLSearchParams([
      ["token", "not-a-token"],
      ["token", d.tokens.read],
    ]).toString();
    const res = await d.app.request("/dashboard/sign-in", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", origin: ORIGIN },
      body,
    });
    expect(res.status).toBe(400);
    expect(res.headers.get("set-cookie") ?? "").not.toContain(SESSION_COOKIE);
    expect(await res.text()).toContain("field token more than once");
    const { cookie } = await d.signIn(d.tokens.admin);
    const csrf = await d.csrfOf(cookie);
    const reverify = await d.app.request("/dashboard/jobs/job_underpaidworker/reverify", {
      method: "POST",
      headers: { cookie, origin: ORIGIN, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams([
        ["csrf", csrf],
        ["csrf", csrf],
      ]).toString(),
    });
    expect(reverify.status).toBe(400);
    expect(await reverify.text()).toContain("field csrf more than once");
  });
});

describe("names holding characters that show as nothing", () => {
  // Stored before such names were refused at ingest: a zero-width space, a bidi mark.
  const lookAlikes = ["qwen3-8b\u200b", "qwen3-8b\u202e"];

  it("are shown with each such character as its escape, on the pages and in the CSV", async () => {
    const d = await dashboard();
    for (const [i, model] of lookAlikes.entries()) {
      const jobId = `job_lookalike_${i}\u200b`;
      insertJob(d.store, {
        jobId,
        model,
        verdict: "discrepancy",
        createdAt: Date.UTC(2026, 10, 4),
      });
      insertCheck(d.store, jobId, "settlement.split", "fail", { reason: "paid \u2066twice\u2069" });
    }
    const { cookie } = await d.signIn(d.tokens.read);
    const mark = (code: string) => `<span class=unprintable>${code}</span>`;
    const table = await (await d.page("/dashboard/reconciliation?groupBy=model", cookie)).text();
    expect(table).toContain(`<td>qwen3-8b${mark("\\u200b")}</td>`);
    expect(table).toContain(`<td>qwen3-8b${mark("\\u202e")}</td>`);
    expect(table).not.toMatch(/[\u200b\u202e\u2066\u2069]/);
    const flagged = await (await d.page("/dashboard/discrepancies?period=month", cookie)).text();
    expect(flagged).toContain(`job_lookalike_0${mark("\\u200b")}</a>`);
    // In an attribute the escape is plain text: markup there would be text or break it.
    expect(flagged).toContain('href="/dashboard/jobs/job_lookalike_0%E2%80%8B"');
    expect(flagged).toContain(`paid ${mark("\\u2066")}twice${mark("\\u2069")}`);
    expect(flagged).not.toMatch(/[\u200b\u202e\u2066\u2069]/);
    // No job id holds such a character (ingest refuses it, as GET /audit does): its page is
    // refused as a bad id, echoing none of it.
    const job = await d.page("/dashboard/jobs/job_lookalike_1%E2%80%8B", cookie);
    expect(job.status).toBe(400);
    expect(await job.text()).not.toMatch(/[\u200b\u202e\u2066\u2069]|lookalike/);
    const csv = await (await d.page("/dashboard/reconciliation.csv?groupBy=model", cookie)).text();
    const groups = csv.split("\r\n").map((line) => line.split(",")[1]);
    expect(groups).toContain("qwen3-8b\\u200b");
    expect(groups).toContain("qwen3-8b\\u202e");
    expect(groups).toContain("qwen3-8b");
    expect(csv).toBe(
      await (
        await d.get(
          "/reports/reconciliation?from=2026-11-01&to=2026-11-21&groupBy=model&format=csv",
        )
      ).text(),
    );
  });
});

describe("text sent to the ingest API", () => {
  it("is escaped on every page that prints it: job id, model, tags", async () => {
    const d = await dashboard();
    const hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>';
    // The ingest API takes job ids of letters and digits only; a stored row may hold any.
    const jobId = "job_hostile1";
    insertJob(d.store, { jobId: `job_${hostile}`, verdict: "discrepancy", model: hostile });
    const res = await d.app.request("/jobs", {
      method: "POST",
      headers: { ...d.bearer(d.tokens.ingest), "content-type": "application/json" },
      body: JSON.stringify({
        job_id: jobId,
        escrow_tx: signature(),
        model: hostile,
        tags: { team: hostile },
        created_at: "2026-11-19T10:00:00Z",
      }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    insertCheck(d.store, jobId, "settlement.split", "fail", { reason: hostile });
    d.store.sqlite.prepare("UPDATE jobs SET verdict = 'discrepancy' WHERE job_id = ?").run(jobId);
    const { cookie } = await d.signIn(d.tokens.read);
    for (const path of [
      "/dashboard/reconciliation?groupBy=model",
      "/dashboard/discrepancies",
      `/dashboard/jobs/${encodeURIComponent(jobId)}`,
    ]) {
      const page = await d.page(path, cookie);
      expect(page.status, path).toBe(200);
      const text = await page.text();
      expect(text, path).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
      expect(text.match(/.{0,80}(?:<script|<img).{0,40}/g) ?? [], path).toEqual([]);
    }
    // Its own page is refused as an id of no job's shape, echoing none of it.
    const refused = await d.page(`/dashboard/jobs/${encodeURIComponent(`job_${hostile}`)}`, cookie);
    expect(refused.status).toBe(400);
    expect(await refused.text()).not.toMatch(/<script|<img|alert\(/);
  });
});

describe("the dashboard in a time zone", () => {
  const zone = "timeZone=America%2FNew_York";

  it("reads its days in the zone asked for, as the API does, and keeps the zone in its links and CSV", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    const custom = `period=custom&from=2026-11-02&to=2026-11-10&${zone}`;
    const api = `from=2026-11-02&to=2026-11-11&${zone}`;
    const table = await (await d.page(`/dashboard/reconciliation?${custom}`, cookie)).text();
    expect(table).toContain("Showing 2026-11-02 00:00 America/New_York up to 2026-11-10 24:00");
    const json = (await (await d.get(`/reports/reconciliation?${api}`)).json()) as {
      groups: { group: string; chargedUsdc: string }[];
      totals: { chargedUsdc: string };
    };
    // A job at 03:00 UTC is the day before in New York: the groups are New York's days.
    const shown = [
      ...table.matchAll(/<tr><td>(2026-11-\d\d)<\/td><td class="num" data-col="jobs">/g),
    ];
    expect(shown.map((m) => m[1])).toEqual(json.groups.map((g) => g.group));
    expect(json.groups[0]?.group).toBe("2026-11-02");
    const total = /<tr class="total">([\s\S]*?)<\/tr>/.exec(table)?.[1] ?? "";
    expect(total).toContain(`data-col="chargedUnits">${json.totals.chargedUsdc}<`);
    // Sort links and the CSV link keep the zone.
    const linked = `${custom}&groupBy=day`.replaceAll("&", "&amp;");
    expect(table).toContain(`href="/dashboard/reconciliation?${linked}&sort=group`);
    expect(table).toContain(`href="/dashboard/reconciliation.csv?${linked}"`);
    expect(table).toContain(`<a href="/dashboard/workers?${zone}">Workers</a>`);
    const csv = await (
      await d.page(`/dashboard/reconciliation.csv?${custom}&groupBy=day`, cookie)
    ).text();
    expect(csv).toBe(await (await d.get(`/reports/reconciliation?${api}&format=csv`)).text());
    expect(csv.split("\r\n")[1]).toMatch(/,America\/New_York$/);
    // The overview's chart and totals alike.
    const overview = await (await d.page(`/dashboard?${custom}`, cookie)).text();
    expect(overview).toContain(
      `data-figure="chargedUnits" aria-labelledby="chargedUnits-label">${json.totals.chargedUsdc}<`,
    );
  });

  it("takes month to date from the zone's today, and refuses a zone it does not know", async () => {
    const d = await dashboard();
    const { cookie } = await d.signIn(d.tokens.read);
    // 2026-11-20 12:00 UTC is already the 21st at Kiritimati (+14).
    const far = await (
      await d.page("/dashboard?period=month&timeZone=Pacific/Kiritimati", cookie)
    ).text();
    expect(far).toContain("Showing 2026-11-01 00:00 Pacific/Kiritimati up to 2026-11-21 24:00");
    const bad = await d.page("/dashboard?period=month&timeZone=Mars/Olympus", cookie);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain("timeZone: no time zone named");
  });
});
