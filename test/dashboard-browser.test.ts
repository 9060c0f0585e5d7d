import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { loadConfig } from "../src/config.js";
import { deleteSession } from "../src/dashboard/sessions.js";
import { driveTraffic, planTraffic } from "../src/demo/traffic.js";
import { type LocalWorld, startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { type Service, startService } from "../src/main.js";

/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core (no browser
 * download), against `serve` on a file database, with traffic through the recording proxy
 * that includes every kind of fraud the simulator can commit. Screenshots of each page land in
 * test-output/dashboard/.
 */

function findChromium(): string | null {
  const candidates = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser"];
  for (const path of candidates) if (path && existsSync(path)) return path;
  try {
    const found = execFileSync("which", ["chromium"], { encoding: "utf8" }).trim();
    return found || null;
  } catch {
    return null;
  }
}

const chromiumPath = findChromium();
const inCi = Boolean(process.env.CI) && process.env.CI !== "false";
const skipReason =
  "SKIPPED: no Chromium found (install it with `apt-get install -y chromium`, or set CHROMIUM_PATH)";
if (!chromiumPath && !inCi) {
  console.warn(`\n[dashboard-browser] browser tests ${skipReason}\n`);
}
const shots = join(process.cwd(), "test-output", "dashboard");

describe.skipIf(!chromiumPath && !inCi)(
  chromiumPath ? "the dashboard in Chromium" : `the dashboard in Chromium: ${skipReason}`,
  () => {
    let world: LocalWorld;
    let service: Service;
    let browser: Browser;
    let dir: string;
    let token: string;

    beforeAll(async () => {
      // Under CI a missing browser is a failure, never a silent pass.
      if (!chromiumPath) {
        throw new Error(
          "CI is set, so the browser tests must run, but no Chromium was found (apt-get install -y chromium, or set CHROMIUM_PATH)",
        );
      }
      mkdirSync(shots, { recursive: true });
      dir = mkdtempSync(join(tmpdir(), "dashboard-browser-"));
      world = await startLocalWorld({ host: "127.0.0.1", slotMs: 10, finalitySlots: 4 });
      const config = loadConfig(
        {},
        {
          DATABASE_URL: join(dir, "audit.db"),
          SOLANA_RPC_URLS: world.rpcUrl,
          DECENTRAL_BASE_URL: world.decentralBaseUrl,
          AUDIT_PROFILE: "localnet",
          HOST: "127.0.0.1",
          PORT: "0",
          RPC_RATE_LIMIT: "1000",
          RPC_CONCURRENCY: "8",
          VERIFY_POLL_MS: "50",
        },
      );
      service = await startService(config, createLogger({ level: "silent" }));
      const from = Date.now();
      await driveTraffic(
        planTraffic(16, 4),
        {
          baseUrl: `${service.url}/v1`,
          apiKeys: world.apiKeys,
          lowBalanceApiKey: world.lowBalanceApiKey,
        },
        { concurrency: 4 },
      );
      const run = await service.verifier.runUntilSettled({ from }, { timeoutMs: 45_000 });
      if (run.status !== "completed") throw new Error(`verification ${run.status}`);
      token = (await createToken(service.store, { role: "read", name: "controller" })).token;
      browser = await chromium.launch({
        executablePath: chromiumPath,
        args: ["--no-sandbox", "--disable-dev-shm-usage"],
      });
    }, 120_000);

    afterAll(async () => {
      await browser?.close();
      await service?.close();
      await world?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const api = async (path: string) => {
      const res = await fetch(`${service.url}${path}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.status).toBe(200);
      return res;
    };

    async function signIn(page: Page, withToken: string) {
      await page.goto(`${service.url}/dashboard`);
      expect(new URL(page.url()).pathname).toBe("/dashboard/sign-in");
      await page.getByLabel("Access token").fill(withToken);
      await page.getByRole("button", { name: "Sign in" }).click();
    }

    it("a controller signs in, reads the month, opens a discrepancy, downloads the CSV and signs out", async () => {
      const context = await browser.newContext({
        viewport: { width: 1280, height: 900 },
        acceptDownloads: true,
      });
      const page = await context.newPage();

      // A wrong token is refused with a clear message.
      await signIn(page, "da_read_this-is-not-a-token");
      await expect(page.locator("#sign-in-error").textContent()).resolves.toContain(
        "That token is unknown or revoked",
      );
      await page.screenshot({ path: join(shots, "sign-in-refused.png"), fullPage: true });

      await signIn(page, token);
      await page.waitForURL(`${service.url}/dashboard`);
      expect(await page.content()).not.toContain(token);
      const cookies = await context.cookies();
      const session = cookies.find((c) => c.name === "da_session");
      expect(session?.httpOnly).toBe(true);
      expect(session?.sameSite).toBe("Strict");
      expect(session?.expires).toBeGreaterThan(Date.now() / 1000);
      // Page scripts are the browser's here, so these are written as its expressions.
      const storage = await page.evaluate(
        "({ local: localStorage.length, session: sessionStorage.length, cookie: document.cookie })",
      );
      expect(storage).toEqual({ local: 0, session: 0, cookie: "" });

      // The overview's totals are the JSON report's for the same period.
      const firstDay = await page.locator('input[name="from"]').inputValue();
      const lastDay = await page.locator('input[name="to"]').inputValue();
      const to = new Date(Date.parse(lastDay) + 86_400_000).toISOString().slice(0, 10);
      const report = (await (
        await api(`/reports/reconciliation?from=${firstDay}&to=${to}`)
      ).json()) as { totals: Record<string, string | number> };
      for (const key of [
        "chargedUnits",
        "escrowedUnits",
        "workerPaidUnits",
        "treasuryPaidUnits",
        "refundedUnits",
        "unaccountedUnits",
      ]) {
        const shown = await page.locator(`[data-figure="${key}"]`).textContent();
        expect(shown, key).toBe(report.totals[key.replace(/Units$/, "Usdc")]);
      }
      for (const key of ["verified", "discrepancies", "dropped", "partiallyVerified"]) {
        const shown = await page.locator(`[data-count="${key}"]`).textContent();
        expect(Number(shown), key).toBe(report.totals[key]);
      }
      expect(Number(report.totals.discrepancies)).toBeGreaterThan(0);
      await page.screenshot({ path: join(shots, "overview-1280.png"), fullPage: true });

      // The keyboard reaches the skip link first, and focus is visible.
      await page.keyboard.press("Tab");
      expect(await page.evaluate("document.activeElement?.textContent")).toBe("Skip to content");

      // A discrepancy, opened from the list, shows its failing check.
      await page.getByRole("link", { name: "Discrepancies", exact: true }).click();
      await page.waitForURL(/\/dashboard\/discrepancies/);
      await page.screenshot({ path: join(shots, "discrepancies.png"), fullPage: true });
      const row = page.locator("#discrepancies tbody tr").first();
      const failing = (await row.locator("li strong").first().textContent()) ?? "";
      expect(failing).toMatch(/^[a-z_]+\.[a-z_]+$/);
      await row.locator("td a").first().click();
      await page.waitForURL(/\/dashboard\/jobs\//);
      await expect(page.locator(".verdict-box").textContent()).resolves.toContain(failing);
      await expect(
        page.locator(`#check-${failing.replace(".", "\\.")} .outcome-fail`).textContent(),
      ).resolves.toBe("fail");
      await page.screenshot({ path: join(shots, "job.png"), fullPage: true });

      // The CSV downloaded from the reconciliation page is the API's CSV for the same query.
      await page.getByRole("link", { name: "Reconciliation", exact: true }).click();
      await page.waitForURL(/\/dashboard\/reconciliation/);
      await page.locator('select[name="groupBy"]').selectOption("model");
      await page.getByRole("button", { name: "Show" }).click();
      await page.waitForURL(/groupBy=model/);
      await page.screenshot({ path: join(shots, "reconciliation.png"), fullPage: true });
      const totalCharged = await page.locator('tr.total td[data-col="chargedUnits"]').textContent();
      expect(totalCharged).toBe(report.totals.chargedUsdc);
      const [download] = await Promise.all([
        page.waitForEvent("download"),
        page.getByRole("link", { name: "Download CSV" }).click(),
      ]);
      const csv = readFileSync((await download.path()) ?? "", "utf8");
      const apiCsv = await (
        await api(`/reports/reconciliation?from=${firstDay}&to=${to}&groupBy=model&format=csv`)
      ).text();
      // The same report but for the instant each was read (generatedAt, dataCompleteUntil: the
      // two columns before the last, timeZone).
      const untimed = (text: string) => text.replace(/,[^,]*,[^,]*(,[^,]*\r\n)/g, "$1");
      expect(untimed(csv)).toBe(untimed(apiCsv));

      await page.getByRole("link", { name: "Workers", exact: true }).click();
      await page.waitForURL(/\/dashboard\/workers/);
      await page.screenshot({ path: join(shots, "workers.png"), fullPage: true });
      await page.locator("table tbody tr td a").first().click();
      await page.waitForURL(/\/dashboard\/workers\/[^/?]+/);
      await page.screenshot({ path: join(shots, "worker-statement.png"), fullPage: true });
      await page.getByRole("link", { name: "Status", exact: true }).click();
      await page.waitForURL(/\/dashboard\/status/);
      await expect(page.locator('[data-status="queue"]').textContent()).resolves.toContain(
        "0 jobs waiting",
      );
      await expect(page.getByText(/^ok: \d+/).count()).resolves.toBe(1);
      await page.screenshot({ path: join(shots, "status.png"), fullPage: true });

      // Signed out, the same browser is refused every page.
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL(/\/dashboard\/sign-in\?signedOut=1/);
      await page.goto(`${service.url}/dashboard/reconciliation`);
      expect(new URL(page.url()).pathname).toBe("/dashboard/sign-in");
      await context.close();
    });

    it("an admin verifies a job again from its page, and the form's CSRF token is accepted", async () => {
      const admin = (await createToken(service.store, { role: "admin", name: "ops" })).token;
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      await signIn(page, admin);
      await page.waitForURL(`${service.url}/dashboard`);
      await page.goto(`${service.url}/dashboard/discrepancies`);
      await page.locator("#discrepancies tbody tr td a").first().click();
      await page.waitForURL(/\/dashboard\/jobs\//);
      await page.getByRole("button", { name: "Verify again" }).click();
      await page.waitForURL(/reverify=queued/);
      await expect(page.locator(".flash").textContent()).resolves.toContain(
        "A fresh verification is queued",
      );
      await page.screenshot({ path: join(shots, "job-admin-reverify.png") });
      await context.close();
    });

    it("shows the dates typed into the picker without the menu switched to a custom range", async () => {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      await signIn(page, token);
      await page.waitForURL(`${service.url}/dashboard`);
      await page.goto(`${service.url}/dashboard/reconciliation`);
      await page.getByLabel("From day (custom)").fill("2026-10-31");
      await page.getByLabel("To day, inclusive (custom)").fill("2026-10-31");
      await page.getByRole("button", { name: "Show" }).click();
      await page.waitForURL(/from=2026-10-31/);
      await expect(page.locator(".note").first().textContent()).resolves.toContain(
        "Showing 2026-10-31 00:00 UTC up to 2026-10-31 24:00 UTC",
      );
      await expect(page.getByLabel("Period (UTC)").inputValue()).resolves.toBe("custom");
      await expect(page.getByLabel("From day (custom)").inputValue()).resolves.toBe("2026-10-31");
      await context.close();
    });

    it("after the session expires, the sign-in form says so and returns to the page, for a button or a link", async () => {
      const admin = (await createToken(service.store, { role: "admin", name: "ops2" })).token;
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      await signIn(page, admin);
      await page.waitForURL(`${service.url}/dashboard`);
      await page.goto(`${service.url}/dashboard/discrepancies`);
      await page.locator("#discrepancies tbody tr td a").first().click();
      await page.waitForURL(/\/dashboard\/jobs\//);
      const jobUrl = page.url();
      const endSession = async () => {
        const cookie = (await context.cookies()).find((k) => k.name === "da_session");
        await deleteSession(service.store, cookie?.value ?? "");
      };
      await endSession();
      await page.getByRole("button", { name: "Verify again" }).click();
      await page.waitForLoadState("load");
      await expect(page.locator(".flash").textContent()).resolves.toContain(
        "Your session expired, so this action was not done",
      );
      await page.getByLabel("Access token").fill(admin);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.waitForURL(jobUrl);
      expect(page.url()).not.toContain("reverify=queued");
      // The browser drops the session cookie itself at its Max-Age.
      await endSession();
      await context.clearCookies({ name: "da_session" });
      await page.goto(`${service.url}/dashboard/reconciliation?groupBy=model`);
      expect(new URL(page.url()).pathname).toBe("/dashboard/sign-in");
      await expect(page.locator(".flash").textContent()).resolves.toContain("Your session expired");
      await page.getByLabel("Access token").fill(admin);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.waitForURL(/\/dashboard\/reconciliation\?groupBy=model$/);
      await context.close();
    });

    it("reads at 390 px wide", async () => {
      const context = await browser.newContext({
        viewport: { width: 390, height: 844 },
        deviceScaleFactor: 2,
      });
      const page = await context.newPage();
      await signIn(page, token);
      await page.waitForURL(`${service.url}/dashboard`);
      // Nothing but the tables' own scroll boxes is wider than the screen.
      const overflow = await page.evaluate<number>(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth",
      );
      expect(overflow).toBeLessThanOrEqual(0);
      await page.screenshot({ path: join(shots, "overview-390.png"), fullPage: true });
      await context.close();
    });
  },
);
