import type { TokenAccountRead } from "../chain/rpc-pool.js";
import type { Config } from "../config.js";
import type { Store } from "../db/client.js";
import { deadlineSignal } from "../deadline.js";
import type { Logger } from "../log.js";
import { isStorableUnits, MAX_STORED_UNITS, parseUnits } from "../money.js";
import { keyFingerprint } from "../recorder/key-fingerprint.js";
import { withoutKey } from "../recorder/without-key.js";
import {
  type AccountSnapshot,
  createAccountSnapshotsStore,
  type NewAccountSnapshot,
} from "../store/account-snapshots.js";
import { UNITS_PER_CREDIT } from "../store/ledger.js";
import type { CustodyConfig } from "../verify/custody.js";
import type { Profile } from "../verify/profiles.js";
import { creditBalanceOf } from "./reader.js";

/**
 * Account snapshots: what Decentral says the key has left (`GET /v1/account`:
 * `credits_remaining`, `usdc_value`) against what the key's credit vault holds on chain at the
 * same moment. The balance is read at finalized just before and just after the call; when the
 * two reads differ (a job moved the vault meanwhile) the snapshot is taken again, up to three
 * times, and the last one is kept with the balance after. Every snapshot and its difference is
 * kept; a difference other than 0 on a quiet vault means the account reports money the chain
 * does not hold (or hides money it does). While jobs run, the finalized balance lags the API's
 * view by a few seconds: compare snapshots taken at quiet moments (the nightly hour).
 */

export interface AccountSnapshotDeps {
  store: Store;
  rpc: { getTokenAccount(address: string): Promise<TokenAccountRead> };
  /** The protocol profile: its credit mint is what the vault's balance counts. */
  profile: Profile;
  /** Decentral's API root, e.g. https://api.usedecentral.org/v1 (`DECENTRAL_BASE_URL`). */
  baseUrl: string;
  /** `DECENTRAL_API_KEY`: the key whose account is asked. */
  apiKey: string;
  /** Configured vaults (`CREDIT_VAULTS`): a key's pinned vault, or the one vault of a deployment. */
  custody?: CustodyConfig;
  log: Logger;
  fetch?: typeof fetch;
  now?: () => number;
  /** `ACCOUNT_SNAPSHOT_INTERVAL_MS` for `start()`. Default 3,600,000 (hourly). */
  intervalMs?: number;
}

export interface AccountSnapshotter {
  /** Asks the account and the chain now, keeps the snapshot and returns it. */
  take(): Promise<AccountSnapshot>;
  /** Takes one at once, then every `intervalMs`, until `stop()`. */
  start(): void;
  stop(): Promise<void>;
}

/**
 * The snapshotter the configuration asks for, or null without `DECENTRAL_API_KEY` (there is no
 * account to ask). `serve` keeps one for the admin route and the background work one for the
 * schedule (`ACCOUNT_SNAPSHOT_INTERVAL_MS`).
 */
export function configuredAccountSnapshotter(
  config: Pick<
    Config,
    "DECENTRAL_API_KEY" | "DECENTRAL_BASE_URL" | "CREDIT_VAULTS" | "ACCOUNT_SNAPSHOT_INTERVAL_MS"
  >,
  deps: Pick<AccountSnapshotDeps, "store" | "profile" | "rpc" | "log">,
): AccountSnapshotter | null {
  if (!config.DECENTRAL_API_KEY) return null;
  return createAccountSnapshotter({
    ...deps,
    baseUrl: config.DECENTRAL_BASE_URL,
    apiKey: config.DECENTRAL_API_KEY,
    custody: config.CREDIT_VAULTS,
    intervalMs: config.ACCOUNT_SNAPSHOT_INTERVAL_MS,
  });
}

const ATTEMPTS = 3;

/** `{"credits_remaining": 1234, "usdc_value": "12.345678"}` in base units. */
function parseAccount(body: unknown): { credits: number; usdcUnits: bigint } {
  const b = body as { credits_remaining?: unknown; usdc_value?: unknown } | null;
  const credits = b?.credits_remaining;
  const usdc = b?.usdc_value;
  if (typeof credits !== "number" || !Number.isSafeInteger(credits)) {
    throw new Error("/v1/account: credits_remaining is not an integer");
  }
  if (typeof usdc !== "string" && typeof usdc !== "number") {
    throw new Error("/v1/account: usdc_value is missing");
  }
  const usdcUnits = parseUnits(String(usdc));
  if (usdcUnits > MAX_STORED_UNITS) throw new Error(`/v1/account: usdc_value ${usdc} is too large`);
  return { credits, usdcUnits };
}

export function createAccountSnapshotter(deps: AccountSnapshotDeps): AccountSnapshotter {
  const snapshots = createAccountSnapshotsStore(deps.store);
  const now = deps.now ?? Date.now;
  const doFetch = deps.fetch ?? fetch;
  const authorization = `Bearer ${deps.apiKey}`;
  const fingerprint = keyFingerprint(authorization) ?? "";
  const intervalMs = deps.intervalMs ?? 3_600_000;
  /** Aborted by `stop()`: a call in flight ends at once instead of at its timeout. */
  const stopping = new AbortController();

  async function vaultOfKey(): Promise<string | null> {
    const configured = deps.custody?.byKey[fingerprint];
    if (configured) return configured;
    const pinned = await snapshots.pinnedVaultOf(fingerprint);
    if (pinned) return pinned;
    const vaults = deps.custody?.vaults ?? [];
    return vaults.length === 1 ? vaults[0]! : null;
  }

  async function askAccount() {
    const asking = deadlineSignal(10_000, stopping.signal);
    try {
      const res = await doFetch(`${deps.baseUrl.replace(/\/$/, "")}/account`, {
        headers: { authorization },
        signal: asking.signal,
      });
      if (!res.ok) throw new Error(`/v1/account answered HTTP ${res.status}`);
      return parseAccount(await res.json());
    } finally {
      asking.clear();
    }
  }

  async function measure(): Promise<NewAccountSnapshot> {
    const base = {
      takenAt: now(),
      keyFingerprint: fingerprint,
      vault: null as string | null,
      creditsRemaining: null,
      usdcValueUnits: null,
      vaultUnits: null,
      vaultSlot: null,
      creditsDifference: null,
      usdcDifferenceUnits: null,
      error: null,
    };
    const vault = await vaultOfKey();
    let account: { credits: number; usdcUnits: bigint } | null = null;
    try {
      let before = vault ? await creditBalanceOf(deps.rpc, deps.profile, vault) : null;
      for (let attempt = 1; ; attempt++) {
        const takenAt = now();
        account = await askAccount();
        if (!vault || !before) {
          return {
            ...base,
            takenAt,
            creditsRemaining: account.credits,
            usdcValueUnits: account.usdcUnits,
            error: "the key's credit vault is not known yet (CREDIT_VAULTS, or a first lock)",
          };
        }
        const after = await creditBalanceOf(deps.rpc, deps.profile, vault);
        // A balance no store column holds (another mint's authority can mint any u64) is this
        // snapshot's error, kept like any other, instead of a write failing every hour.
        if (!isStorableUnits(after.amount)) {
          throw new Error(`the vault's balance ${after.amount} is beyond what the store holds`);
        }
        if (after.amount === before.amount || attempt >= ATTEMPTS) {
          return {
            ...base,
            takenAt,
            vault,
            creditsRemaining: account.credits,
            usdcValueUnits: account.usdcUnits,
            vaultUnits: after.amount,
            vaultSlot: after.slot,
            creditsDifference: account.credits - Number(after.amount / UNITS_PER_CREDIT),
            usdcDifferenceUnits: account.usdcUnits - after.amount,
            // Another mint at the vault's address holds no credits: compared as 0, and said.
            error: after.foreign
              ? `the vault's address holds another mint (${after.foreign.mint ?? "not a token account"}), not credits: compared as 0`
              : after.amount === before.amount
                ? null
                : "the vault moved during every attempt: compared with the balance after",
          };
        }
        before = after;
      }
    } catch (error) {
      return {
        ...base,
        vault,
        creditsRemaining: account?.credits ?? null,
        usdcValueUnits: account?.usdcUnits ?? null,
        // An answer quoted in an error (a value that is no amount) may echo the key: the error
        // is stored and shown to every read token.
        error: withoutKey(error instanceof Error ? error.message : String(error), authorization),
      };
    }
  }

  async function take() {
    const snapshot = await snapshots.record(await measure());
    const fields = {
      vault: snapshot.vault,
      creditsDifference: snapshot.creditsDifference,
      usdcDifferenceUnits: snapshot.usdcDifferenceUnits?.toString() ?? null,
    };
    if (snapshot.error) deps.log.warn({ ...fields, err: snapshot.error }, "account snapshot");
    else if (snapshot.usdcDifferenceUnits !== 0n || snapshot.creditsDifference !== 0) {
      deps.log.warn(fields, "account snapshot: /v1/account differs from the credit vault");
    } else deps.log.info(fields, "account snapshot");
    return snapshot;
  }

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | null = null;
  let stopped = true;
  const tick = () => {
    if (stopped) return;
    running = take()
      .catch((error) =>
        deps.log.error(
          { err: withoutKey(String(error), authorization) },
          "account snapshot failed",
        ),
      )
      .finally(() => {
        running = null;
        if (!stopped) timer = setTimeout(tick, intervalMs);
      });
  };

  return {
    take,
    start() {
      if (!stopped) return;
      stopped = false;
      tick();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      stopping.abort();
      await running;
    },
  };
}

/** A snapshot as JSON: amounts as decimal strings of base units, instants as ISO 8601. */
export function accountSnapshotToJson(s: AccountSnapshot) {
  return {
    id: s.id,
    takenAt: new Date(s.takenAt).toISOString(),
    keyFingerprint: s.keyFingerprint,
    vault: s.vault,
    creditsRemaining: s.creditsRemaining,
    usdcValueUnits: s.usdcValueUnits?.toString() ?? null,
    vaultUnits: s.vaultUnits?.toString() ?? null,
    vaultSlot: s.vaultSlot,
    creditsDifference: s.creditsDifference,
    usdcDifferenceUnits: s.usdcDifferenceUnits?.toString() ?? null,
    error: s.error,
  };
}

export type AccountSnapshotJson = ReturnType<typeof accountSnapshotToJson>;
