import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/api/app.js";
import { createMetrics } from "../src/api/metrics.js";
import { createToken } from "../src/auth/tokens.js";
import { createRpcPool, type RpcPool } from "../src/chain/rpc-pool.js";
import {
  type AccountSnapshotJson,
  createAccountSnapshotter,
} from "../src/ledger/account-snapshots.js";
import { buildStatement, type StatementJson } from "../src/ledger/statement.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { useStarted } from "./support/started-life.js";
import { createTestStore } from "./support/store.js";
import { runRecordedJob } from "./support/verify-jobs.js";

const log = createLogger({ level: "silent" });

const world = useStarted(() => startLocalWorld({ slotMs: 10, finalitySlots: 3 }));
let rpc: RpcPool;
beforeAll(() => {
  rpc = createRpcPool({
    endpoints: [{ url: world.rpcUrl, rateLimitPerSec: 500, concurrency: 8, timeoutMs: 2000 }],
    backoffBaseMs: 10,
    backoffMaxMs: 50,
  });
});
afterAll(async () => {
  await rpc?.close();
});

async function finalized() {
  const target = world.currentSlot() + 4;
  while (world.currentSlot() < target) await new Promise((r) => setTimeout(r, 10));
}

async function balanceOff(on: boolean) {
  const res = await fetch(`${world.simulatorUrl}/sim/account-balance-off`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ on }),
  });
  expect(res.status).toBe(200);
}

describe("GET /v1/account snapshots against the credit vault", () => {
  it("keeps every snapshot with its difference: 0 when the account tells the truth, the extra credits under account-balance-off", async () => {
    const store = createTestStore();
    const vault = world.accounts.creditVaults[2]!.vault;
    await runRecordedJob(world, store, { apiKeyIndex: 2 });
    await finalized();
    const snapshotter = createAccountSnapshotter({
      store,
      profile: localnetProfile,
      rpc,
      baseUrl: world.decentralBaseUrl,
      apiKey: world.apiKeys[2]!,
      custody: { vaults: [vault], byKey: {} },
      log,
    });

    const honest = await snapshotter.take();
    expect(honest).toMatchObject({
      vault,
      vaultUnits: world.chain.tokenAmount(vault),
      usdcDifferenceUnits: 0n,
      creditsDifference: 0,
      error: null,
    });

    await balanceOff(true);
    try {
      const off = await snapshotter.take();
      expect(off).toMatchObject({ vault, usdcDifferenceUnits: 50_000n, creditsDifference: 5 });
      expect(off.usdcValueUnits).toBe(world.chain.tokenAmount(vault)! + 50_000n);
    } finally {
      await balanceOff(false);
    }

    // The statement of the period shows the newest snapshot; /metrics its difference.
    const statement = await buildStatement(
      store,
      { from: 0, to: Date.now() + 1, vault },
      { profile: localnetProfile, graceSeconds: 0 },
    );
    expect(statement.vaults[0]!.accountSnapshot).toMatchObject({ usdcDifferenceUnits: 50_000n });
    const metrics = await createMetrics({ store }).registry.metrics();
    expect(metrics).toContain(
      `decentral_audit_account_snapshot_difference_units{vault="${vault}"} 50000`,
    );

    // On demand over HTTP (admin), listed for a read token, every snapshot kept.
    const app = createApp({
      store,
      log,
      statement: {
        profile: localnetProfile,
        graceSeconds: 0,
        takeAccountSnapshot: () => snapshotter.take(),
      },
    });
    const admin = (await createToken(store, { role: "admin", name: "ops" })).token;
    const read = (await createToken(store, { role: "read", name: "finance" })).token;
    const auth = (token: string, method = "GET") => ({
      method,
      headers: { authorization: `Bearer ${token}` },
    });
    const taken = await app.request("/reports/account-snapshots", auth(admin, "POST"));
    expect(taken.status).toBe(201);
    expect(await taken.json()).toMatchObject({ vault, usdcDifferenceUnits: "0" });
    expect((await app.request("/reports/account-snapshots", auth(read, "POST"))).status).toBe(403);
    const list = (await (
      await app.request(`/reports/account-snapshots?vault=${vault}`, auth(read))
    ).json()) as { snapshots: AccountSnapshotJson[] };
    expect(list.snapshots.map((s) => s.usdcDifferenceUnits)).toEqual(["0", "50000", "0"]);
    const json = (await (
      await app.request(`/reports/statement?from=0&to=${Date.now() + 1}&vault=${vault}`, auth(read))
    ).json()) as StatementJson;
    expect(json.vaults[0]!.accountSnapshot).toMatchObject({ usdcDifferenceUnits: "0" });
  });

  it("answers 409 when the service has no API key to ask the account with", async () => {
    const store = createTestStore();
    const app = createApp({ store, log, statement: { profile: localnetProfile, graceSeconds: 0 } });
    const admin = (await createToken(store, { role: "admin", name: "ops" })).token;
    const res = await app.request("/reports/account-snapshots", {
      method: "POST",
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: "conflict" } });
  });

  it("keeps a snapshot that compared nothing when the key's vault is not known yet", async () => {
    const store = createTestStore();
    const snapshot = await createAccountSnapshotter({
      store,
      profile: localnetProfile,
      rpc,
      baseUrl: world.decentralBaseUrl,
      apiKey: world.apiKeys[3]!,
      log,
    }).take();
    expect(snapshot).toMatchObject({ vault: null, usdcDifferenceUnits: null });
    expect(snapshot.error).toMatch(/not known/);
    expect(snapshot.creditsRemaining).toBeGreaterThan(0);
  });
});

describe("account snapshots beyond what the store holds", () => {
  it("keeps a snapshot naming a vault balance no column holds as its error", async () => {
    const store = createTestStore();
    const vault = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin";
    const snapshotter = createAccountSnapshotter({
      store,
      profile: localnetProfile,
      // A balance of the credit mint beyond what a column holds (a u64 can be).
      rpc: {
        getTokenAccount: async () => ({
          slot: 7,
          account: {
            programId: localnetProfile.tokenPrograms[0]!,
            mint: localnetProfile.usdcMint,
            amount: 2n ** 63n + 7n,
          },
        }),
      },
      baseUrl: "http://account.invalid/v1",
      apiKey: "key",
      custody: { vaults: [vault], byKey: {} },
      fetch: async () => Response.json({ credits_remaining: 5, usdc_value: "0.05" }),
      log,
    });
    const snapshot = await snapshotter.take();
    expect(snapshot).toMatchObject({ vault, vaultUnits: null, usdcValueUnits: 50_000n });
    expect(snapshot.error).toContain("9223372036854775815 is beyond what the store holds");
  });

  it("keeps an answer that echoes the key out of the stored error and the log", async () => {
    const store = createTestStore();
    const apiKey = "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345";
    const lines: string[] = [];
    const snapshotter = createAccountSnapshotter({
      store,
      profile: localnetProfile,
      rpc: { getTokenAccount: async () => ({ slot: 7, account: null }) },
      baseUrl: "http://account.invalid/v1",
      apiKey,
      custody: { vaults: [], byKey: {} },
      fetch: async () => Response.json({ credits_remaining: 5, usdc_value: `echo ${apiKey}` }),
      log: createLogger({ level: "info" }, { write: (line: string) => lines.push(line) }),
    });
    const snapshot = await snapshotter.take();
    expect(snapshot.error).toContain("[redacted]");
    expect(
      JSON.stringify(store.sqlite.prepare("SELECT * FROM account_snapshots").all()),
    ).not.toContain(apiKey);
    expect(lines.join("\n")).toContain("account snapshot");
    expect(lines.join("\n")).not.toContain(apiKey);
  });
});
