import { createHash } from "node:crypto";
import { z } from "zod";
import { canonicalJson } from "../canonical-json.js";
import { isBase58OfLength } from "../chain/base58.js";
import { AppError } from "../errors.js";
import { readTextAtMost } from "../file-input.js";

/**
 * A protocol profile: everything the checks need to know about how Decentral moves money on a
 * cluster. Profiles are data, so a new deployment (or the real program layout, once known) is a
 * new JSON file, not new code. A field set to null means "unknown": checks that need it are
 * skipped with a reason instead of guessed.
 */

/** An account address: base58 of 32 bytes (43 characters of `1` are 43 bytes, no address). */
const base58Address = z
  .string()
  .refine((value) => isBase58OfLength(value, 32), "must be a base58 address of 32 bytes");

const bps = z.number().int().min(0).max(10_000);

const modelPriceSchema = z.object({
  /** Credits charged for a request up to `includedTokens` completion tokens. */
  creditsPerRequest: z.number().int().nonnegative(),
  /** Credits per started 1,000 completion tokens beyond `includedTokens`. */
  creditsPer1kTokens: z.number().int().nonnegative(),
  /** Completion tokens covered by `creditsPerRequest`. Default 500. */
  includedTokens: z.number().int().nonnegative().default(500),
  /**
   * `false` when the model bills no reasoning or rejected prediction tokens: it does not
   * reason (out of sight or in its answer's reasoning text), and takes no predicted outputs.
   * Such tokens its usage names then fail `usage.consistent` instead of lifting the bound the
   * answer's bytes set. Unset: the model may have them, and nobody can count them.
   */
  hiddenTokens: z.boolean().optional(),
});

export const profileSchema = z.object({
  name: z.string().min(1),
  /** Cluster name used for explorer links (`mainnet-beta`, `devnet`, or `custom`). */
  cluster: z.string().min(1),
  /** The credit token (USDC) mint. */
  usdcMint: base58Address,
  /** Token programs the mint may live under: classic SPL Token and Token-2022. */
  tokenPrograms: z.array(base58Address).min(1),
  /** Owner of the credit vaults and the escrow vault, when known. */
  escrowAuthority: base58Address.nullable().default(null),
  /** The token account that holds locked credits between escrow and settlement, when known. */
  escrowVault: base58Address.nullable().default(null),
  /** The treasury: its wallet or its token account, when known. */
  treasury: base58Address.nullable().default(null),
  /** Program ids of the four Decentral programs; null while not public. */
  programs: z
    .object({
      jobEscrow: base58Address.nullable().default(null),
      settlement: base58Address.nullable().default(null),
      staking: base58Address.nullable().default(null),
      workerRegistry: base58Address.nullable().default(null),
    })
    .default({ jobEscrow: null, settlement: null, staking: null, workerRegistry: null }),
  /** How a transaction names its job: SPL Memo texts `<prefix><job_id>`. */
  memo: z
    .object({
      escrowPrefix: z.string().min(1).default("decentral:escrow:"),
      settlePrefix: z.string().min(1).default("decentral:settle:"),
      refundPrefix: z.string().min(1).default("decentral:refund:"),
    })
    .default({
      escrowPrefix: "decentral:escrow:",
      settlePrefix: "decentral:settle:",
      refundPrefix: "decentral:refund:",
    }),
  payout: z
    .object({
      /** Worker shares allowed, in basis points of the charge (75% unstaked, 85% staked). */
      ratesBps: z.array(bps).min(1).default([7500, 8500]),
      /** A worker's rate pinned by wallet, when known (e.g. from the staking program). */
      workerRatesBps: z.record(base58Address, bps).default({}),
    })
    .default({ ratesBps: [7500, 8500], workerRatesBps: {} }),
  /** Prices per model id; a model not listed has its price check skipped. */
  pricing: z.record(z.string().min(1), modelPriceSchema).default({}),
  /** Completion tokens the escrow lock assumes when the request sets no `max_tokens`. */
  defaultMaxTokens: z.number().int().positive().default(2000),
  /** A job must be settled (or refunded) within this many seconds of its escrow. */
  // At most a year (as LEDGER_GRACE_SECONDS): a window near 2^53 s put a lock's due time past
  // the last instant a Date holds, and every statement failed "Invalid time value".
  settlementWindowSeconds: z.number().int().positive().max(31_536_000).default(120),
  /**
   * How far a receipt's time may stray from its escrow's block time beyond the job's own span
   * (lock before the answer, settlement window after): recorders' clocks and the chain's block
   * times are estimates. Reports count a job in the period of its receipt's time.
   */
  receiptTimeSkewSeconds: z.number().int().nonnegative().max(31_536_000).default(600),
  /**
   * A signature still unseen this many slots after we first looked for it is dropped: its
   * blockhash (valid ~150 blocks) has expired, so it can never land. Includes a margin.
   */
  dropAfterSlots: z.number().int().positive().default(300),
  /**
   * With `treasury` unknown: agreeing settlements (one payee besides worker and credit vault,
   * the same address each time) needed before that address is pinned as the treasury.
   */
  treasuryLearnAfter: z.number().int().positive().default(5),
  /** USDC base units per credit (1 credit = $0.01 = 10,000 base units). */
  unitsPerCredit: z.number().int().positive().default(10_000),
});

export type Profile = z.infer<typeof profileSchema>;
export type ProfileInput = z.input<typeof profileSchema>;

export const SPL_TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
export const TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";

/**
 * The reference model served by `decentral-audit localnet` (PROTOCOL.md section 2). The
 * addresses are those of the deterministic local keys (`src/localnet/keys.ts`), written out as
 * data so the profile reads like any JSON profile; a test asserts they still match the keys.
 */
export const localnetProfile: Profile = profileSchema.parse({
  name: "localnet",
  cluster: "custom",
  usdcMint: "7rupWNPx2KZpVkoyNiYTxhzH7AnxGm46n1DXG4yUziV1",
  tokenPrograms: [SPL_TOKEN_PROGRAM, TOKEN_2022_PROGRAM],
  escrowAuthority: "EZshmQRpaT2nQQaR2egEeei61o2m2cnCH4pWjMAHD2p5",
  escrowVault: "Gp34c9cnZUEhVTJVVDfciifWxmmJEtzt1UjvAd4Rtxb3",
  treasury: "888M3gji5G1iLZQh64Sevd41hMbcecoBcM5jEw6Rmoqt",
  payout: {
    ratesBps: [7500, 8500],
    // Workers 0 and 1 are staked (85%), 2 and 3 are not (75%).
    workerRatesBps: {
      "2Y4BJPGRTuBRAKwbJLQNrDSCHMnthBbYApziWizPm3B5": 8500,
      Bjiv9vXpvefh5utsg2YV37kGca6qTuFZgHLLAq3ZZ3QX: 8500,
      DcrtuEi23DAjQ9t2QJ9wFXDSZRU26jC5cVx4Dejivmwe: 7500,
      HY2N5FZWDiMAwsxiHeLM7dH8aN2KfxEMJbPGoG8rTCVe: 7500,
    },
  },
  pricing: {
    "phi-4-mini": { creditsPerRequest: 2, creditsPer1kTokens: 1 },
    "qwen3-8b": { creditsPerRequest: 8, creditsPer1kTokens: 4 },
    "mistral-small-3.1-24b": { creditsPerRequest: 16, creditsPer1kTokens: 8 },
    "llama-3.3-70b": { creditsPerRequest: 40, creditsPer1kTokens: 20 },
  },
} satisfies ProfileInput);

/**
 * Decentral on Solana mainnet, from the public docs: real USDC, the 75/85 split and the 120 s
 * window. Program ids, vaults and the treasury are not public, so checks that need them skip.
 */
export const decentralMainnetProfile: Profile = profileSchema.parse({
  name: "decentral-mainnet",
  cluster: "mainnet-beta",
  usdcMint: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
  tokenPrograms: [SPL_TOKEN_PROGRAM],
  pricing: {
    "qwen3-8b": { creditsPerRequest: 8, creditsPer1kTokens: 4 },
    "llama-3.3-70b": { creditsPerRequest: 40, creditsPer1kTokens: 20 },
  },
} satisfies ProfileInput);

export const builtinProfiles: Readonly<Record<string, Profile>> = {
  localnet: localnetProfile,
  "decentral-mainnet": decentralMainnetProfile,
};

/** The most a profile file may hold: a few kilobytes are a profile with every model priced. */
const MAX_PROFILE_BYTES = 1024 * 1024;

/**
 * How a refused profile is named: by the setting that chose it, as every other bad setting is
 * (`PORT: ...`), since the value alone (`mainnet`, a path) does not say which flag to fix.
 */
const PROFILE_SETTING = "AUDIT_PROFILE (--profile)";

/**
 * Returns a built-in profile by name, or reads and validates a JSON profile file. A bad file is
 * rejected with an error naming the first wrong field (`validation_failed`, `details.field`).
 */
export function loadProfile(nameOrPath: string): Profile {
  // Own properties only: "toString" or "__proto__" is not a profile name.
  if (Object.hasOwn(builtinProfiles, nameOrPath)) return builtinProfiles[nameOrPath]!;
  let text: string | null;
  try {
    text = readTextAtMost(nameOrPath, MAX_PROFILE_BYTES);
  } catch (cause) {
    if ((cause as { code?: unknown }).code === "ETIMEDOUT") {
      throw new AppError(
        "bad_request",
        `${PROFILE_SETTING}: profile file ${(cause as Error).message} (a pipe whose writer stopped?)`,
        { field: "AUDIT_PROFILE" },
        { cause },
      );
    }
    throw new AppError(
      "bad_request",
      `${PROFILE_SETTING}: profile ${JSON.stringify(nameOrPath)} is neither a built-in profile (${Object.keys(builtinProfiles).join(", ")}) nor a readable file`,
      { field: "AUDIT_PROFILE" },
      { cause },
    );
  }
  if (text === null) {
    throw new AppError(
      "validation_failed",
      `${PROFILE_SETTING}: profile file ${nameOrPath} is larger than ${MAX_PROFILE_BYTES / 1024 / 1024} MiB: no profile is (is it a device or an endless pipe?)`,
      { field: "AUDIT_PROFILE" },
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    // Never the parser's message: it quotes the file's text, so `--profile /etc/passwd` printed
    // its first line (a secrets file named by mistake would print part of it).
    throw new AppError(
      "validation_failed",
      `${PROFILE_SETTING}: profile file ${nameOrPath} is not valid JSON`,
      { field: "(file)" },
    );
  }
  return parseProfile(data, `${PROFILE_SETTING}: profile file ${nameOrPath}`);
}

/**
 * Why the profile a setting names is refused, without the setting's name (the caller names it),
 * or null when it loads: a configuration with other bad keys names it among them.
 */
export function profileRefusal(nameOrPath: string): string | null {
  try {
    loadProfile(nameOrPath);
    return null;
  } catch (error) {
    if (!(error instanceof AppError)) throw error;
    return error.message.startsWith(`${PROFILE_SETTING}: `)
      ? error.message.slice(PROFILE_SETTING.length + 2)
      : error.message;
  }
}

/** Validates profile data; the error names every wrong field by its dotted path. */
export function parseProfile(data: unknown, source = "profile"): Profile {
  const parsed = profileSchema.safeParse(data);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => ({
    field: issue.path.map(String).join(".") || "(root)",
    message: issue.message,
  }));
  const first = issues[0]!;
  throw new AppError(
    "validation_failed",
    `${source}: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`,
    { field: first.field, issues },
  );
}

/**
 * Which profile judged a verdict: its name and the first 16 hex digits of the SHA-256 of its
 * effective content (defaults filled in, keys in order), e.g. `localnet@2d63503b9d1c5483`. A price, a
 * treasury or any other field a check reads edited gives another id; the same content written in
 * another key order, or with a default spelt out, gives the same one, and so does another
 * `cluster` (explorer links and a start-up warning only) or another order of the lists the
 * checks read as sets (`tokenPrograms`, `payout.ratesBps`): it judges nothing again.
 */
export function profileId(profile: Profile): string {
  const { cluster: _links, ...judging } = profile;
  const sets = {
    tokenPrograms: [...judging.tokenPrograms].sort(),
    payout: { ...judging.payout, ratesBps: [...judging.payout.ratesBps].sort((a, b) => a - b) },
  };
  const digest = createHash("sha256")
    .update(canonicalJson({ ...judging, ...sets }))
    .digest("hex");
  return `${profile.name}@${digest.slice(0, 16)}`;
}

/** Price of a job in base units for the given completion tokens, or null if the model is unpriced. */
export function priceUnits(
  profile: Profile,
  model: string | null,
  completionTokens: number,
): bigint | null {
  if (model === null) return null;
  const price = Object.hasOwn(profile.pricing, model) ? profile.pricing[model] : undefined;
  // Usage comes from a response body: a count that is not a plain integer has no price.
  if (!price || !Number.isSafeInteger(completionTokens) || completionTokens < 0) return null;
  const extra = Math.max(0, completionTokens - price.includedTokens);
  const credits =
    BigInt(price.creditsPerRequest) +
    BigInt(price.creditsPer1kTokens) * BigInt(Math.ceil(extra / 1000));
  return credits * BigInt(profile.unitsPerCredit);
}
