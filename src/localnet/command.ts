import { networkInterfaces } from "node:os";
import type { Command } from "commander";
import { AppError } from "../errors.js";
import { isSimFault, type SimFault, simFaults } from "./decentral-jobs.js";
import { isLieKind, type LieKind, lieKinds } from "./lying-rpc.js";
import type { LocalWorldOptions } from "./world.js";

/** The `decentral-audit localnet` command: the local chain, its RPC and the Decentral simulator. */

interface LocalnetFlags {
  json?: boolean;
  host: string;
  rpcPort: string;
  apiPort: string;
  slotMs: string;
  finalitySlots: string;
  faultRate?: string;
  faults?: string;
  seed?: string;
  rpcLatencyMs?: string;
  rpcRateLimit?: string;
  rpc5xxRate?: string;
  rpcBehindRate?: string;
  rpcRefuseBatch?: boolean;
  rpcNeverLandRate?: string;
  /** `true` when given without a share. */
  lyingRpc?: string | boolean;
  lyingRpcLies?: string;
  lyingRpcPort?: string;
}

function bad(flag: string, message: string): never {
  throw new AppError("validation_failed", `--${flag}: ${message}`, { field: flag });
}

function integer(flag: string, text: string, min: number, max: number, hint = ""): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < min || value > max) {
    bad(flag, `expected an integer from ${min} to ${max}, got ${JSON.stringify(text)}${hint}`);
  }
  return value;
}

/**
 * A share written as a decimal (`0.25`, `.5`, `1`): `Number` read `0x1` as 1 and `1e-1` as 0.1,
 * where every other number the program takes is plain decimal digits.
 */
function share(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(text.trim()) || value < 0 || value > 1) {
    bad(flag, `expected a number from 0 to 1, got ${JSON.stringify(text)}`);
  }
  return value;
}

/** Validates the flags into world options; throws AppError naming the first bad flag. */
export function localnetOptionsFromFlags(flags: LocalnetFlags): LocalWorldOptions {
  let faults: SimFault[] | undefined;
  if (flags.faults !== undefined) {
    const names = flags.faults
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    const unknown = names.filter((n) => !isSimFault(n));
    if (names.length === 0 || unknown.length > 0) {
      bad(
        "faults",
        `unknown fault ${unknown.join(", ") || "(none)"}; known: ${simFaults.join(", ")}`,
      );
    }
    faults = names as SimFault[];
  }
  const faultRate = share("fault-rate", flags.faultRate);
  const rpcFaults: LocalWorldOptions["rpcFaults"] = {};
  if (flags.rpcLatencyMs !== undefined) {
    rpcFaults.latencyMs = integer("rpc-latency-ms", flags.rpcLatencyMs, 0, 60_000);
  }
  if (flags.rpcRateLimit !== undefined) {
    // 0 was the simulator's "no limit": read as "429 past 0 a second", it served every request.
    rpcFaults.rateLimitPerSec = integer(
      "rpc-rate-limit",
      flags.rpcRateLimit,
      1,
      1_000_000,
      " (leave it out for no limit)",
    );
  }
  const http5xxRate = share("rpc-5xx-rate", flags.rpc5xxRate);
  if (http5xxRate !== undefined) rpcFaults.http5xxRate = http5xxRate;
  const behindRate = share("rpc-behind-rate", flags.rpcBehindRate);
  if (behindRate !== undefined) rpcFaults.behindRate = behindRate;
  const neverLandRate = share("rpc-never-land-rate", flags.rpcNeverLandRate);
  if (neverLandRate !== undefined) rpcFaults.neverLandRate = neverLandRate;
  if (flags.rpcRefuseBatch) rpcFaults.refuseBatch = true;
  let lyingRpc: LocalWorldOptions["lyingRpc"];
  const lying = flags.lyingRpc !== undefined && flags.lyingRpc !== false;
  // Ignored, they started a chain with no lying endpoint, where one was asked for.
  if (!lying && flags.lyingRpcLies !== undefined) bad("lying-rpc-lies", "only with --lying-rpc");
  if (!lying && flags.lyingRpcPort !== undefined) bad("lying-rpc-port", "only with --lying-rpc");
  if (flags.lyingRpc !== undefined && flags.lyingRpc !== false) {
    const lieShare = flags.lyingRpc === true ? 0.2 : share("lying-rpc", flags.lyingRpc);
    let kinds: LieKind[] = [...lieKinds];
    if (flags.lyingRpcLies !== undefined) {
      const names = flags.lyingRpcLies
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
      const unknown = names.filter((n) => !isLieKind(n));
      if (names.length === 0 || unknown.length > 0) {
        bad(
          "lying-rpc-lies",
          `unknown lie ${unknown.join(", ") || "(none)"}; known: ${lieKinds.join(", ")}`,
        );
      }
      kinds = names as LieKind[];
    }
    lyingRpc = {
      share: lieShare ?? 0.2,
      kinds,
      port: integer("lying-rpc-port", flags.lyingRpcPort ?? "0", 0, 65_535),
      ...(flags.seed === undefined ? {} : { seed: `${flags.seed}/lies` }),
    };
  }
  return {
    ...(lyingRpc ? { lyingRpc } : {}),
    host: flags.host,
    rpcPort: integer("rpc-port", flags.rpcPort, 0, 65_535),
    apiPort: integer("api-port", flags.apiPort, 0, 65_535),
    slotMs: integer("slot-ms", flags.slotMs, 1, 60_000),
    finalitySlots: integer("finality-slots", flags.finalitySlots, 1, 10_000),
    rpcFaults,
    simulator: {
      ...(faultRate === undefined ? {} : { faultRate }),
      ...(faults === undefined ? {} : { faults }),
      ...(flags.seed === undefined ? {} : { seed: flags.seed }),
    },
  };
}

/** Hosts that listen on every interface: no other machine can use them in a URL. */
const ANY_HOST = new Set(["0.0.0.0", "::", "[::]", "0:0:0:0:0:0:0:0"]);

/**
 * The URLs localnet prints, usable as printed. Listening on every interface (`--host 0.0.0.0`
 * or `::`), it printed `http://0.0.0.0:8899`, which another machine cannot use (as Vite and
 * Next do): `local`, the URLs on this machine's loopback; `network`, one set for each address
 * of this machine's interfaces (IPv4 for 0.0.0.0, both families for ::). Any other host is
 * printed as it is, with no network URLs.
 */
export function listenUrls<T extends Record<string, string | undefined>>(
  urls: T,
  host: string,
  interfaces: ReturnType<typeof networkInterfaces> = networkInterfaces(),
): { local: T; network: ({ address: string } & T)[] } {
  if (!ANY_HOST.has(host)) return { local: urls, network: [] };
  const v6 = host !== "0.0.0.0";
  const on = (address: string) => {
    const spelled = address.includes(":") ? `[${address}]` : address;
    return Object.fromEntries(
      Object.entries(urls).map(([key, url]) => {
        if (url === undefined) return [key, url];
        const u = new URL(url);
        u.hostname = spelled;
        return [key, u.toString().replace(/\/$/, url.endsWith("/") ? "/" : "")];
      }),
    ) as T;
  };
  const network = Object.values(interfaces)
    .flatMap((list) => list ?? [])
    .filter((i) => !i.internal && (i.family === "IPv4" || (v6 && !i.address.startsWith("fe80"))))
    .map((i) => ({ address: i.address, ...on(i.address) }));
  return { local: on(v6 ? "::1" : "127.0.0.1"), network };
}

/** Registers `localnet` on the program. */
export function registerLocalnetCommand(program: Command): void {
  program
    .command("localnet")
    .description("run a local Solana chain (JSON-RPC) and a Decentral API simulator settling on it")
    .option("--json", "print one JSON line with URLs, API keys and accounts once ready")
    .option("--host <host>", "interface to listen on", "127.0.0.1")
    .option("--rpc-port <port>", "JSON-RPC port (0 picks a free port)", "8899")
    .option("--api-port <port>", "Decentral API port (0 picks a free port)", "8788")
    .option("--slot-ms <ms>", "wall-clock milliseconds per slot", "400")
    .option("--finality-slots <n>", "slots until a transaction is finalized", "32")
    .option("--fault-rate <x>", "share (0..1) of jobs given a simulator fault")
    .option(
      "--faults <names>",
      `faults drawn at --fault-rate, comma-separated (${simFaults.join(", ")})`,
    )
    .option("--seed <text>", "seed of job ids and fault draws")
    .option("--rpc-latency-ms <ms>", "latency added to every RPC response")
    .option(
      "--rpc-rate-limit <n>",
      "RPC requests per second (at least 1) answered before HTTP 429 (default: no limit)",
    )
    .option("--rpc-5xx-rate <x>", "share (0..1) of RPC requests answered HTTP 5xx")
    .option("--rpc-behind-rate <x>", "share (0..1) of RPC requests answered -32005 node is behind")
    .option("--rpc-refuse-batch", "refuse JSON-RPC batch arrays")
    .option(
      "--rpc-never-land-rate <x>",
      "share (0..1) of sent transactions acknowledged but never landed",
    )
    .option(
      "--lying-rpc [share]",
      "add a second JSON-RPC endpoint on the same chain that lies about a share (0..1, default 0.2) of transactions",
    )
    .option("--lying-rpc-lies <kinds>", `lies it tells, comma-separated (${lieKinds.join(", ")})`)
    .option("--lying-rpc-port <port>", "port of the lying endpoint (0 picks a free port)")
    .action(async (flags: LocalnetFlags) => {
      const options = localnetOptionsFromFlags(flags);
      // LiteSVM and the Solana SDKs load only when the local world starts.
      const { startLocalWorld } = await import("./world.js");
      const world = await startLocalWorld(options).catch((error: unknown) => {
        if ((error as { code?: unknown }).code === "EADDRINUSE") {
          throw new AppError(
            "conflict",
            `${(error as Error).message}: pick another --rpc-port/--api-port`,
          );
        }
        throw error;
      });
      const { local, network } = listenUrls(
        {
          rpcUrl: world.rpcUrl,
          ...(world.lyingRpcUrl ? { lyingRpcUrl: world.lyingRpcUrl } : {}),
          decentralBaseUrl: world.decentralBaseUrl,
          simulatorUrl: world.simulatorUrl,
        } as {
          rpcUrl: string;
          lyingRpcUrl?: string;
          decentralBaseUrl: string;
          simulatorUrl: string;
        },
        flags.host,
      );
      if (flags.json) {
        console.log(
          JSON.stringify({
            ...local,
            ...(network.length > 0 ? { networkUrls: network } : {}),
            apiKeys: world.apiKeys,
            lowBalanceApiKey: world.lowBalanceApiKey,
            accounts: world.accounts,
            slotMs: options.slotMs,
            finalitySlots: options.finalitySlots,
          }),
        );
      } else {
        console.log(
          [
            `local chain JSON-RPC  ${local.rpcUrl}`,
            ...(local.lyingRpcUrl ? [`lying JSON-RPC        ${local.lyingRpcUrl}`] : []),
            `Decentral API         ${local.decentralBaseUrl}`,
            `ground truth          ${local.simulatorUrl}/sim/jobs`,
            ...network.map(
              (n) =>
                `on ${n.address}`.padEnd(22) +
                `JSON-RPC ${n.rpcUrl}, Decentral API ${n.decentralBaseUrl}`,
            ),
            `USDC mint             ${world.accounts.mint}`,
            `API keys              ${world.apiKeys.join("\n                      ")}`,
            `low-balance key       ${world.lowBalanceApiKey}`,
            "Ctrl-C to stop",
          ].join("\n"),
        );
      }
      const stop = async () => {
        await world.close();
        process.exit(0);
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
