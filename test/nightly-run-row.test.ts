import { describe, expect, it } from "vitest";
import { createApp } from "../src/api/app.js";
import { createToken } from "../src/auth/tokens.js";
import { SESSION_COOKIE } from "../src/dashboard/routes.js";
import type { Store } from "../src/db/client.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { type NightlyOptions, runNightlyVerification } from "../src/nightly/nightly-run.js";
import { createDashboardStore } from "../src/store/dashboard.js";
import { createVerifier } from "../src/verify/engine.js";
import type { Profile } from "../src/verify/profiles.js";
import { finalizedNow } from "./support/finality.js";
import { vaultReader } from "./support/ledger-periods.js";
import { useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

const log = createLogger({ level: "silent" });

const h = useAdversaryHarness();

/** The "Last nightly run" section of /dashboard/status as a reader signed in sees it, as text. */
async function lastNightlyRunOnStatusPage(store: Store): Promise<string> {
  const app = createApp({ store, log });
  const { token } = await createToken(store, { role: "read", name: "operator" });
  const signIn = await app.request("/dashboard/sign-in", {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      origin: "http://localhost",
    },
    body: new URLSearchParams({ token, next: "/dashboard/status" }).toString(),
  });
  const id = new RegExp(`${SESSION_COOKIE}=([^;]+)`).exec(
    signIn.headers.get("set-cookie") ?? "",
  )?.[1];
  const res = await app.request("/dashboard/status", {
    headers: { cookie: `${SESSION_COOKIE}=${id}` },
  });
  expect(res.status).toBe(200);
  const page = await res.text();
  const section = /<h2>Last nightly run<\/h2>(.*?)<h2>/s.exec(page)?.[1] ?? "";
  return section
    .replace(/<[^>]+>/g, " ")
    .replace(/&#39;/g, "'")
    .replace(/\s+/g, " ")
    .trim();
}

async function night(
  { store, profile }: { store: Store; profile: Profile },
  window: { from: number; to: number },
  ledger: NightlyOptions["ledger"],
  timeoutMs = 20_000,
  jobsTakeMs = 0,
) {
  const verifier = createVerifier({
    store,
    rpc: h.rpc,
    profile,
    log,
    options: quickVerifierOptions,
  });
  // Jobs that take `jobsTakeMs` of the run to settle (one whose signature waits to be dropped).
  const engine: typeof verifier = Object.create(verifier);
  engine.runUntilSettled = async (range, options) => {
    await new Promise((resolve) => setTimeout(resolve, jobsTakeMs));
    return verifier.runUntilSettled(range, {
      ...options,
      timeoutMs: Math.max(1, (options?.timeoutMs ?? timeoutMs) - jobsTakeMs),
    });
  };
  return runNightlyVerification(store, engine, { ...window, timeoutMs, ledger });
}

/** A vault's history that never finishes listing: the run's time runs out in the ledger. */
const endless = async ({ signal }: { signal?: AbortSignal }) =>
  new Promise<never>((_, reject) => {
    signal?.addEventListener("abort", () => reject(new Error("aborted")));
  });

/** A scenario with key 1 pinned by an honest job, and a window around it, final on chain. */
async function pinnedWindow() {
  const c = await h.scenario();
  const from = Date.now() - 5_000;
  await c.pinKey(1);
  return { c, from, to: await finalizedNow(h.world) };
}

describe("a nightly run's row and the status page after the jobs settled", () => {
  it("say ledger_findings, exit 1, when every job verified but a credit vault paid out unreceipted", async () => {
    // The run row was finished `completed` when the jobs settled, before the ledger was read:
    // the page said "outcome completed, verified: 1" after cron was told 1.
    const vault = h.op.vault(0);
    const c = await h.scenario();
    const from = Date.now() - 5_000;
    await c.pinKey(0);
    h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 250_000n)]);
    const to = await finalizedNow(h.world);
    const reader = vaultReader(h, c, vault);
    const summary = await night(
      c,
      { from, to },
      ledgerWindowCheck({ store: c.store, reader, profile: c.profile, graceSeconds: 0 }),
    );
    expect(summary).toMatchObject({ outcome: "ledger_findings", exitCode: 1, reason: null });
    expect(summary.byVerdict.verified).toBe(1);

    const row = await createDashboardStore(c.store).lastNightlyRun();
    expect(row?.summary).toMatchObject({
      outcome: "ledger_findings",
      exitCode: 1,
      reason: null,
      ledgerFindings: 1,
      byVerdict: expect.objectContaining({ verified: 1 }),
    });
    expect(row?.finishedAt).toBe(summary.finishedAt);
    const section = await lastNightlyRunOnStatusPage(c.store);
    expect(section).toMatch(/^outcome ledger_findings \(exit 1\) /);
    expect(section).toContain("verdicts verified: 1");
    expect(section).toContain("credit vaults' ledger 1 findings");
  });

  it("say incomplete, exit 2, and why, when the run ran out of time reading the vaults' history", async () => {
    const { c, from, to } = await pinnedWindow();
    const summary = await night(c, { from, to }, endless, 3_000);
    expect(summary).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    expect(summary.reason).toMatch(/^timed out after 3 s \(reading the credit vaults' history\)/);

    const row = await createDashboardStore(c.store).lastNightlyRun();
    // The row closed `completed`: a run out of time in the ledger read as one that finished.
    expect(row?.status).toBe("timed_out");
    expect(row?.summary).toMatchObject({
      outcome: "incomplete",
      exitCode: 2,
      reason: summary.reason,
      ledgerFindings: null,
    });
    const section = await lastNightlyRunOnStatusPage(c.store);
    expect(section).toMatch(/^outcome incomplete \(exit 2\) why timed out after 3 s/);
    expect(section).not.toContain("credit vaults' ledger");
  });

  it("says the jobs took the run's time when the read of the vaults had little of it left", async () => {
    const { c, from, to } = await pinnedWindow();
    const summary = await night(c, { from, to }, endless, 3_000, 2_400);
    expect(summary).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    // "(reading the credit vaults' history)" alone sent on-call to the ledger's RPC calls.
    expect(summary.reason).toMatch(
      /^timed out after 3 s \(reading the credit vaults' history\); the jobs took 2\.\d s of it, leaving the read 0\.\d s$/,
    );
  });
});
