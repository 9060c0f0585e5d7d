import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { buildProgram } from "../src/cli.js";
import { loadConfig } from "../src/config.js";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import type { StatementJson } from "../src/ledger/statement.js";
import { type LocalWorld, startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { startService } from "../src/main.js";

const quiet = createLogger({ level: "silent" });

let world: LocalWorld;

/** Creates the store the `report` commands read (they refuse a file that is not there). */
function createStore(db: string): void {
  const store = openSqliteStore(db);
  migrateStore(store);
  store.close();
}

/** Tops up key `apiKeyIndex`'s credit vault, then waits until the deposit has a few slots on it. */
async function deposit(apiKeyIndex: number, units: string) {
  await fetch(`${world.simulatorUrl}/sim/deposits`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ apiKeyIndex, units }),
  });
  const target = world.currentSlot() + 4;
  while (world.currentSlot() < target) await new Promise((r) => setTimeout(r, 10));
}
/** `serve` on `db` against the local world, quick rounds, asking the jobs API with key `apiKeyIndex`. */
function serveConfig(db: string, apiKeyIndex: number, more: Record<string, string> = {}) {
  return loadConfig({
    DATABASE_URL: db,
    PORT: "0",
    AUDIT_PROFILE: "localnet",
    SOLANA_RPC_URLS: world.rpcUrl,
    DECENTRAL_BASE_URL: world.decentralBaseUrl,
    LEDGER_POLL_MS: "50",
    VERIFY_POLL_MS: "50",
    DECENTRAL_API_KEY: world.apiKeys[apiKeyIndex]!,
    ...more,
  });
}

/**
 * A streamed completion with key 3 through `serve` at `url`: its headers name no settlement.
 * max_tokens 300 prices the lock as the answer, so a payout takes the whole lock and nothing
 * comes back to the customer's vault.
 */
function streamWholeLock(url: string, fault: string | null) {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${world.apiKeys[3]}`,
      "content-type": "application/json",
      ...(fault ? { "x-sim-fault": fault } : {}),
    },
    body: JSON.stringify({
      model: "qwen3-8b",
      stream: true,
      max_tokens: 300,
      messages: [{ role: "user", content: "hi" }],
    }),
  });
}

/**
 * `serve` on a new database asking the jobs API with key `apiKeyIndex`, its ledger and escrow
 * scan every 3 s (their own pace, not the tests' 50 ms) and its verifier every 50 ms, with a
 * read token's headers.
 */
async function slowLedgerServe(dbName: string, apiKeyIndex: number) {
  const db = join(dir, dbName);
  const config = serveConfig(db, apiKeyIndex, { LEDGER_POLL_MS: "3000", VERIFY_POLL_MS: "50" });
  const service = await startService(config, quiet);
  const token = (await createToken(service.store, { role: "read", name: "finance" })).token;
  return { service, auth: { headers: { authorization: `Bearer ${token}` } } };
}

/** A verdict a job keeps: not one the verifier still works on. */
const final = (v: string | undefined) =>
  v !== undefined && !["pending", "awaiting_finality", "error"].includes(v);

/**
 * Every verdict each job showed on `/audit`, in order, read as often as a backend polling it
 * would (every 25 ms, about 30 s at most) until `done` says of the last ones read.
 */
async function verdictsSeen(
  url: string,
  auth: RequestInit,
  jobIds: readonly string[],
  done: (last: Map<string, string | undefined>) => boolean,
): Promise<Map<string, string[]>> {
  const seen = new Map(jobIds.map((id) => [id, [] as string[]]));
  const last = () => new Map([...seen].map(([id, verdicts]) => [id, verdicts.at(-1)]));
  for (let i = 0; i < 800 && !done(last()); i++) {
    for (const [jobId, verdicts] of seen) {
      const answer = await fetch(`${url}/audit/${jobId}`, auth);
      if (answer.status !== 200) continue;
      const { verdict } = (await answer.json()) as { verdict: string };
      if (verdicts.at(-1) !== verdict) verdicts.push(verdict);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return seen;
}

let dir: string;
beforeAll(async () => {
  world = await startLocalWorld({ slotMs: 10, finalitySlots: 3 });
  dir = mkdtempSync(join(tmpdir(), "ledger-serve-"));
});
afterAll(async () => {
  await world?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the ledger in serve and in the CLI", () => {
  it("serve reads a configured vault's history on its own and shows its statement and metrics", async () => {
    const vault = world.accounts.creditVaults[0]!.vault;
    const db = join(dir, "serve.db");
    const service = await startService(serveConfig(db, 0, { CREDIT_VAULTS: vault }), quiet);
    try {
      const token = (await createToken(service.store, { role: "read", name: "finance" })).token;
      const res = await fetch(`${service.url}/v1/chat/completions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${world.apiKeys[0]}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ model: "qwen3-8b", messages: [{ role: "user", content: "hi" }] }),
      });
      expect(res.status).toBe(200);
      await res.text();
      const auth = { headers: { authorization: `Bearer ${token}` } };
      let vaultStatement: StatementJson["vaults"][number] | undefined;
      for (let i = 0; i < 200; i++) {
        const body = (await (
          await fetch(`${service.url}/reports/statement?from=0&to=${Date.now()}`, auth)
        ).json()) as StatementJson;
        vaultStatement = body.vaults.find((v) => v.vault === vault);
        if (vaultStatement?.counts.returns === 1) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(vaultStatement).toMatchObject({
        counts: { locks: 1, returns: 1, unexplained: 0 },
        differenceUnits: "0",
      });
      const metrics = await (await fetch(`${service.url}/metrics`, auth)).text();
      expect(metrics).toContain("decentral_audit_ledger_lag_seconds");
      expect(metrics).toContain('decentral_audit_ledger_unexplained{finding="unreceipted_debit"}');
      // With DECENTRAL_API_KEY, serve asks /v1/account once at start (then hourly); it takes
      // it again while the job above moves the vault, so it may land a little later.
      let snapshots: { vault: string | null }[] = [];
      for (let i = 0; i < 200 && snapshots.length === 0; i++) {
        const body = (await (
          await fetch(`${service.url}/reports/account-snapshots`, auth)
        ).json()) as { snapshots: { vault: string | null }[] };
        snapshots = body.snapshots;
        if (snapshots.length === 0) await new Promise((r) => setTimeout(r, 50));
      }
      expect(snapshots.at(-1)).toMatchObject({ vault });
    } finally {
      await service.close();
    }
  });

  it("serve finds a streamed job's second payout out of escrow, which no credit vault shows, and judges the job on it", async () => {
    const db = join(dir, "escrow-scan.db");
    const service = await startService(serveConfig(db, 3), quiet);
    try {
      const token = (await createToken(service.store, { role: "read", name: "finance" })).token;
      const res = await streamWholeLock(service.url, "double-settle");
      expect(res.status).toBe(200);
      const jobId = res.headers.get("x-decentral-job-id")!;
      expect(res.headers.get("x-decentral-settlement-tx")).toBeNull();
      await res.text();
      const auth = { headers: { authorization: `Bearer ${token}` } };
      let record: { verdict: string; checks: { name: string; outcome: string }[] } | undefined;
      for (let i = 0; i < 300; i++) {
        const answer = await fetch(`${service.url}/audit/${jobId}`, auth);
        if (answer.status === 200) {
          record = (await answer.json()) as typeof record;
          if (record?.verdict === "discrepancy") break;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(record?.verdict).toBe("discrepancy");
      expect(record?.checks.filter((c) => c.outcome === "fail").map((c) => c.name)).toContain(
        "settlement.single",
      );
      const metrics = await (await fetch(`${service.url}/metrics`, auth)).text();
      const lag = /^decentral_audit_escrow_scan_lag_seconds (\S+)$/m.exec(metrics)?.[1];
      expect(Number(lag)).toBeLessThan(60);
      expect(metrics).toMatch(/^decentral_audit_escrow_pending \d+$/m);
    } finally {
      await service.close();
    }
  });

  it("serve never shows a streamed job paid out twice at once as verified: its clean verdict waits for the escrow scan to read past it", async () => {
    // The scan every 3 s (its normal pace), the verifier every 50 ms: judged on the
    // transactions the job names, the job was `verified` until the next scan found the second
    // payout. A backend reading /audit meanwhile was told a falsehood.
    const { service, auth } = await slowLedgerServe("escrow-cover.db", 3);
    try {
      const stream = async (fault: string | null) => {
        const res = await streamWholeLock(service.url, fault);
        expect(res.status).toBe(200);
        await res.text();
        return res.headers.get("x-decentral-job-id")!;
      };
      const twice = await stream("double-settle");
      const honest = await stream(null);
      // Every verdict each job showed, read as often as a backend polling it would.
      const seen = await verdictsSeen(
        service.url,
        auth,
        [twice, honest],
        (last) => last.get(twice) === "discrepancy" && final(last.get(honest)),
      );
      expect(seen.get(twice)!.filter(final)).toEqual(["discrepancy"]);
      // An honest one is let through once the scan has read past it (partially verified here:
      // key 3's vault is not tied to the customer).
      expect(seen.get(honest)!.filter(final)).toEqual(["partially_verified"]);
    } finally {
      await service.close();
    }
  });

  it("serve never shows a job whose credits header is off as verified: its verdict waits for the ledger's read of the vault", async () => {
    // The ledger every 3 s, the verifier every 50 ms: judged before the ledger had read the
    // vault past the response, the job was clean until the next round found the header off.
    // The key's first job: its vault is learned by that very verdict.
    const { service, auth } = await slowLedgerServe("credits-cover.db", 2);
    try {
      const complete = async (stream: boolean, fault: string | null) => {
        const res = await fetch(`${service.url}/v1/chat/completions`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${world.apiKeys[2]}`,
            "content-type": "application/json",
            ...(fault ? { "x-sim-fault": fault } : {}),
          },
          body: JSON.stringify({
            model: "qwen3-8b",
            stream,
            messages: [{ role: "user", content: "hi" }],
          }),
        });
        expect(res.status).toBe(200);
        await res.text();
        return res.headers.get("x-decentral-job-id")!;
      };
      const off = [
        await complete(false, "credits-header-off"),
        await complete(true, "credits-header-off"),
      ];
      const honest = await complete(false, null);
      const seen = await verdictsSeen(
        service.url,
        auth,
        [...off, honest],
        (last) => off.every((id) => last.get(id) === "discrepancy") && final(last.get(honest)),
      );
      for (const id of off) expect(seen.get(id)!.filter(final)).toEqual(["discrepancy"]);
      expect(seen.get(honest)!.filter(final)).toHaveLength(1);
      expect(["verified", "partially_verified"]).toContain(seen.get(honest)!.filter(final)[0]);
    } finally {
      await service.close();
    }
  });

  it("report statement --sync reads the history itself and writes the CSV", async () => {
    const vault = world.accounts.creditVaults[1]!.vault;
    const db = join(dir, "cli.db");
    createStore(db);
    const out = join(dir, "statement.csv");
    await deposit(1, "1234567");
    vi.spyOn(console, "log").mockImplementation(() => {});
    const to = new Date(Date.now() + 1000).toISOString();
    await buildProgram().parseAsync([
      ...["node", "decentral-audit", "report", "statement", "--from", "2026-01-01"],
      ...["--to", to, "--vault", vault, "--sync", "--rpc", world.rpcUrl],
      ...["--profile", "localnet", "--db", db, "--format", "csv", "--out", out],
    ]);
    vi.restoreAllMocks();
    const [header, row] = readFileSync(out, "utf8").split("\r\n");
    expect(header).toMatch(/^row,vault,openingUnits,depositsUnits,/);
    // The history starts with the vault's creation, which paid its first 10,000,000 credits.
    expect(row).toMatch(new RegExp(`^vault,${vault},0,10000001234567,0,0,0,0,`));
    expect(row!.split(",")[10]).toBe("0");
  });

  it("report statement --sync reads under the quorum: one endpoint alone stores no transaction", async () => {
    const vault = world.accounts.creditVaults[1]!.vault;
    const db = join(dir, "cli-quorum.db");
    createStore(db);
    await deposit(1, "1000");
    const saved = { ...process.env };
    process.env.RPC_QUORUM = "2";
    // The second endpoint answers nothing: no fact can be agreed by two.
    const dead = createServer((_req, res) => res.destroy());
    await new Promise<void>((resolve) => dead.listen(0, "127.0.0.1", resolve));
    const deadUrl = `http://127.0.0.1:${(dead.address() as AddressInfo).port}`;
    vi.spyOn(console, "log").mockImplementation(() => {});
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      await buildProgram()
        .parseAsync([
          ...["node", "decentral-audit", "report", "statement", "--from", "2026-01-01"],
          ...["--vault", vault, "--sync", "--rpc", `${world.rpcUrl},${deadUrl}`],
          ...["--profile", "localnet", "--db", db, "--format", "json"],
        ])
        .catch(() => {});
    } finally {
      vi.restoreAllMocks();
      process.env = saved;
      dead.close();
    }
    const store = openSqliteStore(db);
    const stored = store.sqlite.prepare("SELECT count(*) FROM chain_transactions").pluck().get();
    store.close();
    expect(stored).toBe(0);
  });

  it("report account-snapshot compares the account with the vault, exits 1 on a difference, and lists what it kept", async () => {
    const vault = world.accounts.creditVaults[2]!.vault;
    const db = join(dir, "snapshots.db");
    createStore(db);
    const saved = { ...process.env };
    process.env.DECENTRAL_API_KEY = world.apiKeys[2]!;
    process.env.CREDIT_VAULTS = vault;
    const out: string[] = [];
    const write = vi
      .spyOn(process.stdout, "write")
      .mockImplementation((chunk: string | Uint8Array) => out.push(String(chunk)) > 0);
    const run = async (...args: string[]) => {
      out.length = 0;
      process.exitCode = undefined;
      await buildProgram().parseAsync([
        ...["node", "decentral-audit", "report", "account-snapshot", "--db", db],
        ...["--rpc", world.rpcUrl, "--upstream", world.decentralBaseUrl, "--profile", "localnet"],
        ...args,
      ]);
      const code = process.exitCode;
      process.exitCode = undefined;
      return { code, json: JSON.parse(out.join("")) };
    };
    try {
      const honest = await run();
      expect(honest.code).toBeUndefined();
      expect(honest.json).toMatchObject({ vault, usdcDifferenceUnits: "0", error: null });
      await fetch(`${world.simulatorUrl}/sim/account-balance-off`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ on: true }),
      });
      const off = await run();
      expect(off.code).toBe(1);
      expect(off.json).toMatchObject({ vault, usdcDifferenceUnits: "50000", creditsDifference: 5 });
      const listed = await run("--list");
      expect(
        listed.json.snapshots.map((s: { usdcDifferenceUnits: string }) => s.usdcDifferenceUnits),
      ).toEqual(["50000", "0"]);
    } finally {
      write.mockRestore();
      process.env = saved;
      await fetch(`${world.simulatorUrl}/sim/account-balance-off`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ on: false }),
      });
    }
  });
});
