import { existsSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { chromium } from "playwright-core";
import { describe, expect, it, onTestFinished } from "vitest";
import { dashboardCss } from "../src/dashboard/assets.js";
import { page as dashboardPage } from "../src/dashboard/html.js";
import { periodOf } from "../src/dashboard/period.js";
import { statementBody } from "../src/dashboard/statement-page.js";
import { createTestApi } from "./support/audit-api-app.js";
import { DASHBOARD_NOW, seedDashboard } from "./support/dashboard-fixtures.js";
import { insertCheck, insertJob } from "./support/job-rows.js";
import { signature } from "./support/recorder-fixtures.js";
import { statementWithMemo } from "./support/statement-fixtures.js";

/**
 * Names that receipts carry, as long as ingest takes them, in a real browser: a page must keep
 * every figure readable beside them.
 */

const chromiumPath = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser"]
  .filter((p): p is string => Boolean(p))
  .find((p) => existsSync(p));
const inCi = Boolean(process.env.CI) && process.env.CI !== "false";

/** The dashboard over HTTP, signed in with a read token in Chromium. */
async function signedInPage(api: Awaited<ReturnType<typeof createTestApi>>, width: number) {
  if (!chromiumPath) throw new Error("CI is set, so the browser test must run: no Chromium");
  const server = serve({ fetch: api.app.fetch, port: 0, hostname: "127.0.0.1" });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  onTestFinished(() => browser.close());
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  await page.goto(`${base}/dashboard`);
  await page.getByLabel("Access token").fill(api.tokens.read);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/dashboard$/);
  return { page, base };
}

describe.skipIf(!chromiumPath && !inCi)("a long model name in Chromium", () => {
  it.each([1280, 1920])(
    "leaves every figure of the reconciliation table readable at %i px",
    async (width) => {
      const api = await createTestApi({ now: () => DASHBOARD_NOW });
      seedDashboard(api.store);
      // 200 characters, the most ingest takes, in words and in one piece: a backend's (or a
      // caller's) model name.
      const models = ["qwen3-8b-instruct ".repeat(11).trim(), "W".repeat(200)];
      const res = await api.app.request("/jobs", {
        method: "POST",
        headers: { ...api.bearer(api.tokens.ingest), "content-type": "application/json" },
        body: JSON.stringify(
          models.map((model, i) => ({
            job_id: `job_longmodel${i}`,
            escrow_tx: signature(),
            model,
            created_at: "2026-11-19T10:00:00Z",
          })),
        ),
      });
      expect(res.status, await res.clone().text()).toBe(200);
      const { page, base } = await signedInPage(api, width);
      await page.goto(`${base}/dashboard/reconciliation?groupBy=model`);
      // Each figure of the total row, scrolled to, is what the browser shows at its place: the
      // group column (sticky, so names stay beside the figures) covered every one of them.
      const hidden = await page.evaluate<string[]>(`
        [...document.querySelectorAll("#reconciliation tfoot td.num")]
          .filter((cell) => {
            cell.scrollIntoView({ block: "center", inline: "end" });
            const r = cell.getBoundingClientRect();
            const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
            return !(hit !== null && cell.contains(hit));
          })
          .map((cell) => cell.dataset.col)
      `);
      expect(hidden).toEqual([]);
      // The names are shown whole, not cut.
      const shown = await page.locator("#reconciliation tbody").textContent();
      for (const model of models) expect(shown).toContain(model);
    },
    60_000,
  );

  it("keeps a job page within a phone's screen when the response names a long model", async () => {
    const api = await createTestApi({ now: () => DASHBOARD_NOW });
    seedDashboard(api.store);
    // The model the operator's response named (kept up to 200 characters) is quoted in the
    // failing check's reason, which the verdict box shows first.
    const named = "W".repeat(200);
    insertJob(api.store, {
      jobId: "job_othermodel",
      verdict: "discrepancy",
      model: "qwen3-8b",
      responseModel: named,
      createdAt: Date.UTC(2026, 10, 10),
    });
    insertCheck(api.store, "job_othermodel", "charge.model", "fail", {
      reason: `the caller asked for qwen3-8b but the response names ${named}`,
    });
    const { page, base } = await signedInPage(api, 390);
    await page.goto(`${base}/dashboard/jobs/job_othermodel`);
    await expect(page.locator(".verdict-box").textContent()).resolves.toContain(named);
    // Nothing but the tables' own scroll boxes is wider than the screen, as on the overview.
    const overflow = await page.evaluate<number>(
      "document.documentElement.scrollWidth - document.documentElement.clientWidth",
    );
    expect(overflow).toBeLessThanOrEqual(0);
  }, 60_000);

  it("keeps a vault statement within a phone's screen when a memo names a long job id", async () => {
    if (!chromiumPath) throw new Error("CI is set, so the browser test must run: no Chromium");
    // The operator writes the memos: one names a job id of 400 characters in one piece, on a
    // transaction that handed the vault to another owner (the "Other findings" list).
    const memoJobId = `job_${"w".repeat(396)}`;
    const statement = statementWithMemo(memoJobId, { ownerChangedUnderMemo: true });
    const shown = dashboardPage({
      title: "Credit vault statement",
      current: "statement",
      body: statementBody(periodOf({ period: "day" }, DASHBOARD_NOW), statement),
    });
    const browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
    });
    onTestFinished(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 390, height: 900 } });
    await page.setContent(String(shown));
    await page.addStyleTag({ content: dashboardCss });
    await expect(page.locator("main").textContent()).resolves.toContain(memoJobId);
    const overflow = await page.evaluate<number>(
      "document.documentElement.scrollWidth - document.documentElement.clientWidth",
    );
    expect(overflow).toBeLessThanOrEqual(0);
  }, 60_000);
});
