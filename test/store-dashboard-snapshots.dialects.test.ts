import { describe, expect, it } from "vitest";
import {
  createAccountSnapshotsStore,
  type NewAccountSnapshot,
} from "../src/store/account-snapshots.js";
import { createDashboardStore } from "../src/store/dashboard.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { jobRow, seedRows } from "./support/seed-reports.js";

const start = Date.UTC(2026, 10, 1);

/** A snapshot that compared the account with its vault, at `takenAt`. */
function snapshot(
  vault: string | null,
  takenAt: number,
  extra: Partial<NewAccountSnapshot> = {},
): NewAccountSnapshot {
  return {
    takenAt,
    keyFingerprint: "kf_0001",
    vault,
    creditsRemaining: 1_250,
    usdcValueUnits: 12_500_000n,
    vaultUnits: 12_400_000n,
    vaultSlot: 345_678_901,
    creditsDifference: -10,
    usdcDifferenceUnits: -100_000n,
    error: null,
    ...extra,
  };
}

describe.each(dialects)("%s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("shows the queue depth and the last run started by verify or the cron", async () => {
    const store = await stores.open();
    const dashboard = createDashboardStore(store);
    expect(await dashboard.queueDepth()).toBe(0);
    expect(await dashboard.lastNightlyRun()).toBeNull();
    await seedRows(store, "jobs", [
      jobRow({ jobId: "a", verdict: "pending" }),
      jobRow({ jobId: "b", verdict: "awaiting_finality" }),
      jobRow({ jobId: "c", verdict: "error" }),
      jobRow({ jobId: "d", verdict: "verified" }),
      jobRow({ jobId: "e", verdict: "unverifiable" }),
    ]);
    await seedRows(store, "verificationRuns", [
      {
        trigger: "cron",
        status: "completed",
        windowFrom: 1,
        windowTo: 2,
        startedAt: start,
        finishedAt: start + 5,
        owner: "h:1",
        summary: { verified: 3 },
      },
      {
        trigger: "verify",
        status: "failed",
        windowFrom: start - 10,
        windowTo: start,
        startedAt: start + 100,
        finishedAt: null,
        owner: "h:2",
        summary: null,
      },
      { trigger: "serve", status: "running", startedAt: start + 200, owner: "h:3" },
      { trigger: "reverify", status: "completed", startedAt: start + 300, owner: "h:4" },
    ]);
    expect(await dashboard.queueDepth()).toBe(3);
    expect(await dashboard.lastNightlyRun()).toEqual({
      status: "failed",
      windowFrom: start - 10,
      windowTo: start,
      startedAt: start + 100,
      finishedAt: null,
      summary: null,
    });
    await seedRows(store, "verificationRuns", [
      {
        trigger: "cron",
        status: "completed",
        windowFrom: 7,
        windowTo: 8,
        startedAt: start + 400,
        finishedAt: start + 450,
        owner: "h:5",
        summary: { verified: 9, failing: ["x"] },
      },
    ]);
    expect(await dashboard.lastNightlyRun()).toMatchObject({
      status: "completed",
      summary: { verified: 9, failing: ["x"] },
    });
  });

  it("keeps account snapshots and reads them newest first, per vault, in a window, and the latest comparison of each vault", async () => {
    const store = await stores.open();
    const snapshots = createAccountSnapshotsStore(store);
    const first = await snapshots.record(snapshot("VaultA", start));
    expect(first).toEqual({ id: expect.any(Number), ...snapshot("VaultA", start) });
    expect(typeof first.usdcValueUnits).toBe("bigint");
    const second = await snapshots.record(
      snapshot("VaultA", start + 2000, { usdcDifferenceUnits: 0n }),
    );
    const failed = await snapshots.record(
      snapshot("VaultA", start + 3000, {
        creditsRemaining: null,
        usdcValueUnits: null,
        vaultUnits: null,
        vaultSlot: null,
        creditsDifference: null,
        usdcDifferenceUnits: null,
        error: "account endpoint answered 503",
      }),
    );
    const other = await snapshots.record(snapshot("VaultB", start + 1000));
    const noVault = await snapshots.record(
      snapshot(null, start + 4000, { keyFingerprint: "kf_0002" }),
    );
    // Taken out of order: a later id with an earlier time.
    const backdated = await snapshots.record(snapshot("VaultA", start + 1000));
    expect(new Set([first.id, second.id, failed.id, other.id, noVault.id, backdated.id]).size).toBe(
      6,
    );

    expect((await snapshots.list()).map((s) => s.id)).toEqual(
      [first, second, failed, other, noVault, backdated].map((s) => s.id).sort((a, b) => b - a),
    );
    expect((await snapshots.list({ limit: 2 })).map((s) => s.id)).toEqual([
      backdated.id,
      noVault.id,
    ]);
    expect((await snapshots.list({ vault: "VaultA" })).map((s) => s.id)).toEqual([
      failed.id,
      second.id,
      backdated.id,
      first.id,
    ]);
    expect(await snapshots.latestIn("VaultA", start, start + 2000)).toEqual(backdated);
    expect(await snapshots.latestIn("VaultA", start + 2000, start + 2001)).toEqual(second);
    expect(await snapshots.latestIn("VaultC", start, start + 10_000)).toBeUndefined();
    const latest = await snapshots.latestPerVault();
    expect(latest.sort((a, b) => a.id - b.id)).toEqual([other, backdated]);

    expect(await snapshots.pinnedVaultOf("kf_0001")).toBeNull();
    await seedRows(store, "creditVaults", [
      { keyFingerprint: "kf_0001", vault: "VaultA", source: "configured", pinnedAt: start },
    ]);
    expect(await snapshots.pinnedVaultOf("kf_0001")).toBe("VaultA");
  });
});
