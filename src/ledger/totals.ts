import type { Store } from "../db/client.js";
import type { Profile } from "../verify/profiles.js";
import { buildStatement, ledgerStoreOf } from "./statement.js";

/** Findings of the whole ledger so far, for `/metrics`. */
export interface LedgerTotals {
  /** Unreceipted debits: money out of a credit vault that is no recorded job's lock. */
  unexplained: number;
  unreleasedLocks: number;
  /** Vaults whose closing balance by the ledger differs from the chain's. */
  imbalanced: number;
}

/** How far back `/metrics` counts findings. */
export const LEDGER_TOTALS_WINDOW_MS = 7 * 86_400_000;

/** Counts every finding of every vault's statement over the last `windowMs` before `now`. */
export async function ledgerTotals(
  store: Store,
  profile: Profile,
  graceSeconds: number,
  now = Date.now(),
  windowMs = LEDGER_TOTALS_WINDOW_MS,
): Promise<LedgerTotals> {
  const statement = await buildStatement(
    store,
    { from: Math.max(0, now - windowMs), to: now },
    { profile, graceSeconds },
  );
  let unexplained = 0;
  let unreleasedLocks = 0;
  let imbalanced = 0;
  for (const v of statement.vaults) {
    unexplained += v.counts.unexplained;
    unreleasedLocks += v.counts.unreleasedLocks;
    if (v.differenceUnits !== null && v.differenceUnits !== 0n) imbalanced++;
  }
  return { unexplained, unreleasedLocks, imbalanced };
}

/**
 * Seconds since the least recently read vault's history was read through (the block time it
 * holds, not when it was listed: a node with no block time lists and proves nothing); 0 when
 * the ledger reads no vault yet.
 */
export async function ledgerLagSeconds(store: Store, now = Date.now()): Promise<number> {
  const oldest = await ledgerStoreOf(store).oldestFinalThrough();
  return oldest === null ? 0 : Math.max(0, (now - oldest) / 1000);
}
