import { createHash } from "node:crypto";

/**
 * Deterministic "model output": the same prompt and model always give the same text and token
 * counts, so tests and benchmarks are reproducible. One word counts as one token.
 */

const vocabulary = [
  "the",
  "ledger",
  "settles",
  "every",
  "job",
  "on",
  "chain",
  "escrow",
  "locks",
  "credits",
  "before",
  "routing",
  "a",
  "worker",
  "earns",
  "its",
  "share",
  "treasury",
  "keeps",
  "rest",
  "proof",
  "of",
  "inference",
  "is",
  "final",
  "after",
  "slots",
  "pass",
  "and",
  "each",
  "signature",
  "names",
  "one",
  "transaction",
  "only",
  "balances",
  "move",
  "in",
  "base",
  "units",
];

/** Completion tokens a prompt yields before `max_tokens` caps it: 50..2,500. */
export function naturalCompletionTokens(model: string, promptText: string): number {
  const digest = createHash("sha256").update(model).update("\0").update(promptText).digest();
  // Skewed so that roughly half the jobs pass the 500 tokens a request's base price covers.
  const r = digest.readUInt32BE(0) / 0x1_0000_0000;
  return 50 + Math.floor(r * r * 2451);
}

/** Rough prompt token count (about four characters per token, at least one per message). */
export function promptTokenCount(promptText: string, messages: number): number {
  return Math.max(messages, Math.ceil(promptText.length / 4));
}

/** A prompt's fingerprint, from which its completion is regenerated on demand. */
export function promptDigest(promptText: string): Buffer {
  return createHash("sha256").update(promptText).digest();
}

/** The `count` words of the completion for a prompt digest, deterministic. */
export function completionWords(digest: Uint8Array, count: number): string[] {
  const words: string[] = [];
  for (let i = 0; i < count; i++) {
    const b = digest[i % digest.length]! ^ (i * 31);
    words.push(vocabulary[(b + i) % vocabulary.length]!);
  }
  return words;
}
