import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { LocalChain } from "./chain.js";
import { DecentralJobs, defaultSimulatorOptions, type SimulatorOptions } from "./decentral-jobs.js";
import { EscrowLedger } from "./escrow-ledger.js";
import {
  FUNDED_API_KEY_COUNT,
  LOW_BALANCE_API_KEY_INDEX,
  type LocalAccounts,
  localApiKey,
  localKeyNames,
  localnetAccounts,
  localSigner,
} from "./keys.js";
import { type LieKind, lieKinds, type RpcLies } from "./lying-rpc.js";
import { RpcEndpoint, type RpcFaults, type RpcStats, snapshotStats } from "./rpc-server.js";
import { createSimulatorApp } from "./simulator.js";

export type { LieKind, LocalAccounts, RpcFaults, RpcLies, RpcStats, SimulatorOptions };

/**
 * The local Decentral world: one chain (LiteSVM), a JSON-RPC front end to it (more on demand,
 * each with its own faults), and the Decentral API simulator settling jobs on that chain.
 */

export interface LocalWorldOptions {
  /** Interface to listen on. Default 127.0.0.1. */
  host?: string;
  /** JSON-RPC port; 0 picks a free port. Default 0. */
  rpcPort?: number;
  /** Decentral API port; 0 picks a free port. Default 0. */
  apiPort?: number;
  /** Wall-clock milliseconds per slot. Default 400. */
  slotMs?: number;
  /** Slots after its own until a transaction is confirmed. Default 1. */
  confirmationSlots?: number;
  /** Slots after its own until a transaction is finalized. Default 32; tests use e.g. 2. */
  finalitySlots?: number;
  /** Slots a blockhash stays valid. Default 150, as on mainnet. */
  blockhashValiditySlots?: number;
  /** Faults of the first JSON-RPC endpoint. Default none. */
  rpcFaults?: Partial<RpcFaults>;
  /**
   * Adds a second JSON-RPC endpoint on the same chain that lies about a share of transactions
   * (`lyingRpcUrl`). Default none; `share` defaults to 0.2, `kinds` to every lie.
   */
  lyingRpc?: Partial<RpcLies> & { port?: number };
  /** Simulator options: fault rate and list, seed, timeouts. */
  simulator?: Partial<SimulatorOptions>;
  /** Clock of the chain in epoch milliseconds; tests pass one they move by hand. Default Date.now. */
  now?: () => number;
}

export interface LocalWorld {
  /** First JSON-RPC endpoint, e.g. http://127.0.0.1:8899. */
  rpcUrl: string;
  /** The lying endpoint when `lyingRpc` was given, else null. */
  lyingRpcUrl: string | null;
  /** Decentral API base, e.g. http://127.0.0.1:8788/v1. */
  decentralBaseUrl: string;
  /** Simulator root (serves `/sim/jobs`). */
  simulatorUrl: string;
  /** Funded API keys (index i = `apiKeys[i]`), deterministic. */
  apiKeys: string[];
  /** A key whose credit vault holds less than any job's lock (every job gets 402). */
  lowBalanceApiKey: string;
  accounts: LocalAccounts;
  /** The chain itself, for tests that need to look below the RPC. */
  chain: LocalChain;
  /** The simulator's job engine (ground truth and options). */
  jobs: DecentralJobs;
  /** Extra JSON-RPC front end over the same chain with its own faults (for RPC pool tests). */
  addRpcEndpoint(faults?: Partial<RpcFaults>): Promise<string>;
  /** Replaces some faults of an endpoint (by its URL). */
  setRpcFaults(url: string, faults: Partial<RpcFaults>): void;
  /** Counters of an endpoint (default: the first one). */
  rpcStats(url?: string): RpcStats;
  /** Changes simulator options (fault rate, fault list, ...) from now on. */
  setSimulatorOptions(options: Partial<SimulatorOptions>): void;
  currentSlot(): number;
  close(): Promise<void>;
}

/** Credits of each funded API key: 1,000,000,000 credits, enough for any benchmark. */
const FUNDED_CREDIT_UNITS = 10_000_000_000_000n;
/** The low-balance key holds 1 credit, below the cheapest lock (2 credits). */
const LOW_BALANCE_UNITS = 10_000n;
/** Float of the escrow vault, so a duplicate settlement can draw on it (1,000,000 USDC). */
const ESCROW_FLOAT_UNITS = 1_000_000_000_000n;
const LAMPORTS_PER_SOL = 1_000_000_000n;

/** Writes the genesis accounts of the reference model. */
function genesis(chain: LocalChain, accounts: LocalAccounts): string[] {
  chain.setLamports(accounts.payer, 1_000_000n * LAMPORTS_PER_SOL);
  chain.setLamports(accounts.treasury.owner, LAMPORTS_PER_SOL);
  for (const worker of accounts.workers) chain.setLamports(worker.address, LAMPORTS_PER_SOL);
  for (const vault of accounts.creditVaults) chain.setLamports(vault.wallet, LAMPORTS_PER_SOL);

  const balances: [string, string, bigint][] = [
    [accounts.escrowVault, accounts.escrowAuthority, ESCROW_FLOAT_UNITS],
    [accounts.treasury.tokenAccount, accounts.treasury.owner, 0n],
    ...accounts.workers.map((w): [string, string, bigint] => [w.tokenAccount, w.address, 0n]),
  ];
  const supply = balances.reduce((sum, [, , amount]) => sum + amount, 0n);
  chain.setMint(accounts.mint, accounts.treasury.owner, supply, accounts.decimals);
  for (const [address, owner, amount] of balances) {
    chain.setTokenAccount(address, accounts.mint, owner, amount);
  }
  const table = [accounts.mint, accounts.escrowVault, accounts.treasury.tokenAccount];
  chain.setLookupTable(accounts.lookupTable, accounts.escrowAuthority, table);
  return table;
}

/** Starts the chain, its first JSON-RPC endpoint and the Decentral simulator. */
export async function startLocalWorld(options: LocalWorldOptions = {}): Promise<LocalWorld> {
  const host = options.host ?? "127.0.0.1";
  const chain = new LocalChain({
    slotMs: options.slotMs ?? 400,
    confirmationSlots: options.confirmationSlots ?? 1,
    finalitySlots: options.finalitySlots ?? 32,
    blockhashValiditySlots: options.blockhashValiditySlots,
    now: options.now,
  });
  const accounts = localnetAccounts();
  const lookupTable = genesis(chain, accounts);
  const ledger = new EscrowLedger(
    chain,
    accounts,
    localSigner(localKeyNames.payer),
    localSigner(localKeyNames.escrowAuthority),
    lookupTable,
  );
  // The credit vaults are created and funded by transactions, not written at genesis: a
  // vault's history then starts with its creation, which the ledger needs to call it whole.
  for (const v of accounts.creditVaults) {
    const units =
      v.apiKeyIndex === LOW_BALANCE_API_KEY_INDEX ? LOW_BALANCE_UNITS : FUNDED_CREDIT_UNITS;
    ledger.openVault(v.vault, v.apiKeyIndex, units);
  }
  const simulatorOptions: SimulatorOptions = {
    ...defaultSimulatorOptions,
    seed: randomUUID(),
    ...options.simulator,
  };
  const jobs = new DecentralJobs(chain, ledger, accounts, simulatorOptions);
  // Periodic top-ups of every funded key's vault, as customers paying in on a schedule.
  const topUps =
    simulatorOptions.topUpEveryMs > 0
      ? setInterval(() => {
          for (let i = 0; i < FUNDED_API_KEY_COUNT; i++) {
            jobs.deposit(i, simulatorOptions.topUpUnits);
          }
        }, simulatorOptions.topUpEveryMs)
      : undefined;
  topUps?.unref();
  const allKeys = Array.from({ length: LOW_BALANCE_API_KEY_INDEX + 1 }, (_, i) => localApiKey(i));
  const app = createSimulatorApp(jobs, allKeys);

  const endpoints: RpcEndpoint[] = [];
  const addRpcEndpoint = async (faults: Partial<RpcFaults> = {}, port = 0) => {
    const endpoint = new RpcEndpoint(chain, faults, `${simulatorOptions.seed}/${endpoints.length}`);
    await endpoint.listen(host, port);
    endpoints.push(endpoint);
    return endpoint.url;
  };
  const rpcUrl = await addRpcEndpoint(options.rpcFaults, options.rpcPort ?? 0);
  let lyingRpcUrl: string | null = null;
  if (options.lyingRpc) {
    const { port, ...lies } = options.lyingRpc;
    lyingRpcUrl = await addRpcEndpoint(
      {
        lies: {
          share: lies.share ?? 0.2,
          kinds: lies.kinds ?? [...lieKinds],
          seed: lies.seed ?? `${simulatorOptions.seed}/lies`,
        },
      },
      port ?? 0,
    );
  }

  let apiServer: ServerType;
  try {
    apiServer = await new Promise<ServerType>((resolve, reject) => {
      const server = serve({ fetch: app.fetch, port: options.apiPort ?? 0, hostname: host }, () =>
        resolve(server),
      );
      server.once("error", reject);
    });
  } catch (error) {
    await Promise.all(endpoints.map((e) => e.close()));
    throw error;
  }
  const apiPort = (apiServer.address() as AddressInfo).port;
  const simulatorUrl = `http://${host.includes(":") ? `[${host}]` : host}:${apiPort}`;

  const endpointFor = (url?: string): RpcEndpoint => {
    const endpoint = url === undefined ? endpoints[0] : endpoints.find((e) => e.url === url);
    if (!endpoint) throw new Error(`no RPC endpoint at ${url}`);
    return endpoint;
  };

  return {
    rpcUrl,
    lyingRpcUrl,
    decentralBaseUrl: `${simulatorUrl}/v1`,
    simulatorUrl,
    apiKeys: allKeys.slice(0, FUNDED_API_KEY_COUNT),
    lowBalanceApiKey: allKeys[LOW_BALANCE_API_KEY_INDEX]!,
    accounts,
    chain,
    jobs,
    addRpcEndpoint: (faults) => addRpcEndpoint(faults),
    setRpcFaults(url, faults) {
      const endpoint = endpointFor(url);
      endpoint.faults = { ...endpoint.faults, ...faults };
    },
    rpcStats: (url) => snapshotStats(endpointFor(url).stats),
    setSimulatorOptions(partial) {
      Object.assign(jobs.options, partial);
    },
    currentSlot: () => chain.currentSlot(),
    async close() {
      clearInterval(topUps);
      const server = apiServer as ServerType & { closeAllConnections?: () => void };
      server.closeAllConnections?.();
      await Promise.all([
        new Promise<void>((resolve) => apiServer.close(() => resolve())),
        ...endpoints.map((e) => e.close()),
      ]);
    },
  };
}
