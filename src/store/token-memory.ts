import type { TokenRow } from "./tokens.js";

/** Tokens remembered per store at most (the oldest forgotten first). */
const MAX_KNOWN = 1000;

/**
 * Tokens a store found live, by hash, with when: what `TokensStore.lastKnown` answers while the
 * database cannot be asked. A revocation this process makes or hears of forgets the token at
 * once; so does a lookup that finds it revoked or gone.
 */
export class KnownTokens {
  private readonly rows = new Map<string, { row: TokenRow; at: number }>();

  /** Notes what a lookup of `hash` found at `at` (ms). */
  found(hash: string, row: TokenRow | undefined, at: number): void {
    this.rows.delete(hash);
    if (!row || row.revokedAt !== null) return;
    if (this.rows.size >= MAX_KNOWN) this.rows.delete(this.rows.keys().next().value as string);
    this.rows.set(hash, { row: { ...row }, at });
  }

  /** Forgets the token `id` (revoked). */
  forget(id: string): void {
    for (const [hash, entry] of this.rows) if (entry.row.id === id) this.rows.delete(hash);
  }

  /** The token found live within `maxAgeMs` of `now`, if any. */
  get(hash: string, now: number, maxAgeMs: number): TokenRow | undefined {
    const entry = this.rows.get(hash);
    return entry && now - entry.at <= maxAgeMs ? { ...entry.row } : undefined;
  }
}
