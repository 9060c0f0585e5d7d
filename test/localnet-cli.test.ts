import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { describe, expect, it } from "vitest";
import { listenUrls, localnetOptionsFromFlags } from "../src/localnet/command.js";
import { localnetAccounts } from "../src/localnet/keys.js";
import { cliArgv } from "./support/service-process.js";

const defaults = {
  host: "127.0.0.1",
  rpcPort: "8899",
  apiPort: "8788",
  slotMs: "400",
  finalitySlots: "32",
};

function runCli(args: string[]) {
  return spawn(process.execPath, cliArgv(args), {
    cwd: process.cwd(),
    stdio: ["ignore", "pipe", "pipe"],
  });
}

describe("decentral-audit localnet", () => {
  it("maps flags to world options", () => {
    const options = localnetOptionsFromFlags({
      ...defaults,
      rpcPort: "0",
      faultRate: "0.25",
      faults: "overcharge, wrong-worker",
      rpcLatencyMs: "50",
      rpcRateLimit: "10",
      rpc5xxRate: "0.1",
      rpcBehindRate: "0.2",
      rpcRefuseBatch: true,
      rpcNeverLandRate: "0.05",
    });
    expect(options).toMatchObject({
      rpcPort: 0,
      apiPort: 8788,
      slotMs: 400,
      finalitySlots: 32,
      simulator: { faultRate: 0.25, faults: ["overcharge", "wrong-worker"] },
      rpcFaults: {
        latencyMs: 50,
        rateLimitPerSec: 10,
        http5xxRate: 0.1,
        behindRate: 0.2,
        refuseBatch: true,
        neverLandRate: 0.05,
      },
    });
  });

  it("adds a lying RPC endpoint with --lying-rpc, telling the lies it is given", () => {
    expect(localnetOptionsFromFlags({ ...defaults, lyingRpc: true }).lyingRpc).toMatchObject({
      share: 0.2,
      kinds: ["amount", "memo", "owner", "error", "finality"],
      port: 0,
    });
    expect(
      localnetOptionsFromFlags({ ...defaults, lyingRpc: "0.5", lyingRpcLies: "memo, finality" })
        .lyingRpc,
    ).toMatchObject({ share: 0.5, kinds: ["memo", "finality"] });
    expect(localnetOptionsFromFlags(defaults).lyingRpc).toBeUndefined();
    expect(() =>
      localnetOptionsFromFlags({ ...defaults, lyingRpc: true, lyingRpcLies: "amount,slot" }),
    ).toThrow(/--lying-rpc-lies: unknown lie slot/);
    expect(() => localnetOptionsFromFlags({ ...defaults, lyingRpc: "2" })).toThrow(/--lying-rpc/);
  });

  it("rejects bad flag values naming the flag", () => {
    expect(() => localnetOptionsFromFlags({ ...defaults, faultRate: "1.5" })).toThrow(
      /--fault-rate/,
    );
    expect(() => localnetOptionsFromFlags({ ...defaults, faults: "overcharge,nope" })).toThrow(
      /nope/,
    );
    expect(() => localnetOptionsFromFlags({ ...defaults, rpcPort: "70000" })).toThrow(/--rpc-port/);
    expect(() => localnetOptionsFromFlags({ ...defaults, slotMs: "fast" })).toThrow(/--slot-ms/);
  });

  // `--rpc-rate-limit 0` read as "429 past 0 requests a second" served every request: 0 was the
  // simulator's "no limit", which leaving the flag out already says.
  it("refuses --rpc-rate-limit 0, saying that no limit is the flag left out", () => {
    expect(() => localnetOptionsFromFlags({ ...defaults, rpcRateLimit: "0" })).toThrow(
      '--rpc-rate-limit: expected an integer from 1 to 1000000, got "0" (leave it out for no limit)',
    );
    expect(
      localnetOptionsFromFlags({ ...defaults, rpcRateLimit: "1" }).rpcFaults?.rateLimitPerSec,
    ).toBe(1);
    expect(localnetOptionsFromFlags(defaults).rpcFaults?.rateLimitPerSec).toBeUndefined();
  });

  it("prints one JSON line once ready, serves it, and stops on SIGTERM", async () => {
    const child = runCli(["localnet", "--json", "--rpc-port", "0", "--api-port", "0"]);
    const lines = createInterface({ input: child.stdout! });
    const [first] = (await once(lines, "line")) as [string];
    const ready = JSON.parse(first) as {
      rpcUrl: string;
      decentralBaseUrl: string;
      apiKeys: string[];
      accounts: { mint: string };
    };
    expect(ready.apiKeys.every((k) => /^dcntrl_live_[A-Za-z0-9]{32}$/.test(k))).toBe(true);
    expect(ready.accounts.mint).toBe(localnetAccounts().mint);
    const models = await fetch(`${ready.decentralBaseUrl}/models`, {
      headers: { authorization: `Bearer ${ready.apiKeys[0]}` },
    });
    expect(models.status).toBe(200);
    const slot = await fetch(ready.rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "getSlot" }),
    });
    expect(((await slot.json()) as { result: number }).result).toBeGreaterThan(0);
    child.kill("SIGTERM");
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(0);
  });

  // `--host 0.0.0.0` printed http://0.0.0.0:PORT, which no other machine can use.
  it("prints loopback URLs and each interface's with --host 0.0.0.0, never the wildcard", async () => {
    const child = runCli([
      "localnet",
      "--json",
      "--host",
      "0.0.0.0",
      "--rpc-port",
      "0",
      "--api-port",
      "0",
    ]);
    try {
      const lines = createInterface({ input: child.stdout! });
      const [first] = (await once(lines, "line")) as [string];
      expect(first).not.toContain("0.0.0.0");
      const ready = JSON.parse(first) as { rpcUrl: string; networkUrls?: { rpcUrl: string }[] };
      expect(ready.rpcUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      for (const url of [ready.rpcUrl, ...(ready.networkUrls ?? []).map((n) => n.rpcUrl)]) {
        const slot = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "getSlot" }),
        });
        expect(slot.status).toBe(200);
      }
    } finally {
      child.kill("SIGTERM");
      await once(child, "exit");
    }
  });

  it("gives the URLs of every interface's address for a wildcard host, and any other host as it is", () => {
    const urls = { rpcUrl: "http://0.0.0.0:8899", decentralBaseUrl: "http://0.0.0.0:8788/v1" };
    const nic = (address: string, family: "IPv4" | "IPv6", internal = false) => ({
      address,
      family,
      internal,
      netmask: "",
      mac: "",
      cidr: null,
      ...(family === "IPv6" ? { scopeid: 0 } : {}),
    });
    const interfaces = {
      lo: [nic("127.0.0.1", "IPv4", true), nic("::1", "IPv6", true)],
      eth0: [nic("192.168.1.20", "IPv4"), nic("fd00::20", "IPv6"), nic("fe80::1", "IPv6")],
    } as Parameters<typeof listenUrls>[2];
    expect(listenUrls(urls, "0.0.0.0", interfaces)).toEqual({
      local: { rpcUrl: "http://127.0.0.1:8899", decentralBaseUrl: "http://127.0.0.1:8788/v1" },
      network: [
        {
          address: "192.168.1.20",
          rpcUrl: "http://192.168.1.20:8899",
          decentralBaseUrl: "http://192.168.1.20:8788/v1",
        },
      ],
    });
    const v6 = { rpcUrl: "http://[::]:8899" };
    expect(listenUrls(v6, "::", interfaces)).toEqual({
      local: { rpcUrl: "http://[::1]:8899" },
      network: [
        { address: "192.168.1.20", rpcUrl: "http://192.168.1.20:8899" },
        { address: "fd00::20", rpcUrl: "http://[fd00::20]:8899" },
      ],
    });
    const one = { rpcUrl: "http://192.168.1.20:8899" };
    expect(listenUrls(one, "192.168.1.20", interfaces)).toEqual({ local: one, network: [] });
  });

  it("exits 2 with a message on a bad flag value", async () => {
    const child = runCli(["localnet", "--rpc-behind-rate", "lots"]);
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(2);
    expect(stderr).toContain("--rpc-behind-rate");
  });
});

// `--lying-rpc-lies amount` without `--lying-rpc` started a chain with no lying endpoint at all:
// a test of "does the audit catch a lying RPC" ran against honest RPC only, and passed.
describe("localnet flags that need --lying-rpc", () => {
  it.each([
    [{ lyingRpcLies: "amount" }, "lying-rpc-lies"],
    [{ lyingRpcPort: "9000" }, "lying-rpc-port"],
  ])("refuses %o without --lying-rpc, naming the flag", (flags, named) => {
    expect(() => localnetOptionsFromFlags({ ...defaults, ...flags })).toThrow(
      `--${named}: only with --lying-rpc`,
    );
    expect(
      localnetOptionsFromFlags({ ...defaults, ...flags, lyingRpc: true }).lyingRpc,
    ).toBeDefined();
  });
});

// `--lying-rpc 0x1` made every transaction a lie and `--fault-rate 1e-1` read as 0.1: a share
// is plain decimal, as every other number the program takes.
describe("localnet shares", () => {
  it("are read only as plain decimals", () => {
    for (const text of ["0x1", "1e-1", "0b1", "Infinity", " ", "-0", "+0.5"]) {
      expect(() => localnetOptionsFromFlags({ ...defaults, lyingRpc: text }), text).toThrow(
        /--lying-rpc: expected a number from 0 to 1/,
      );
      expect(() => localnetOptionsFromFlags({ ...defaults, faultRate: text }), text).toThrow(
        /--fault-rate/,
      );
    }
    for (const [text, value] of [
      ["0.25", 0.25],
      [".5", 0.5],
      ["1", 1],
      [" 0 ", 0],
      ["1.", 1],
    ]) {
      expect(
        localnetOptionsFromFlags({ ...defaults, faultRate: text as string }).simulator,
      ).toMatchObject({ faultRate: value });
    }
  });
});
