import { UNITS_PER_CREDIT } from "../money.js";

/** Pricing of one model on the local Decentral network (PROTOCOL.md section 2). */
export interface ModelEntry {
  id: string;
  tier: "lite" | "standard" | "pro" | "max";
  creditsPerRequest: number;
  creditsPer1kTokens: number;
  /** Completion tokens covered by `creditsPerRequest`. */
  includedTokens: number;
}

/** The simulator's model catalog, exactly as `GET /v1/models` serves it. */
export const modelCatalog: readonly ModelEntry[] = [
  {
    id: "phi-4-mini",
    tier: "lite",
    creditsPerRequest: 2,
    creditsPer1kTokens: 1,
    includedTokens: 500,
  },
  {
    id: "qwen3-8b",
    tier: "standard",
    creditsPerRequest: 8,
    creditsPer1kTokens: 4,
    includedTokens: 500,
  },
  {
    id: "mistral-small-3.1-24b",
    tier: "pro",
    creditsPerRequest: 16,
    creditsPer1kTokens: 8,
    includedTokens: 500,
  },
  {
    id: "llama-3.3-70b",
    tier: "max",
    creditsPerRequest: 40,
    creditsPer1kTokens: 20,
    includedTokens: 500,
  },
];

/** Completion tokens the escrow lock assumes when a request sets no `max_tokens`. */
export const DEFAULT_MAX_TOKENS = 2000;

/** The catalog entry for a model id, or undefined. */
export function findModel(id: string): ModelEntry | undefined {
  return modelCatalog.find((m) => m.id === id);
}

/**
 * Price of a job in credits: `credits_per_request + credits_per_1k_tokens *
 * ceil(max(0, completion_tokens - included) / 1000)`.
 */
export function priceCredits(model: ModelEntry, completionTokens: number): bigint {
  const extra = Math.max(0, completionTokens - model.includedTokens);
  return (
    BigInt(model.creditsPerRequest) +
    BigInt(model.creditsPer1kTokens) * BigInt(Math.ceil(extra / 1000))
  );
}

/** Price of a job in USDC base units. */
export function priceUnits(model: ModelEntry, completionTokens: number): bigint {
  return priceCredits(model, completionTokens) * UNITS_PER_CREDIT;
}
