import type { LedgerWindowResult } from "../../src/ledger/window-check.js";

/** `value` frozen, and each list it holds: a push into one throws. */
function frozen<T extends object>(value: T): T {
  for (const member of Object.values(value)) if (Array.isArray(member)) Object.freeze(member);
  return Object.freeze(value);
}

/**
 * A credit vaults' ledger read of one vault that found nothing. Frozen, its lists too: the files
 * of the shared-imports project share this one object, and a lock one of them pushed into a
 * copy's `unreleasedLocks` (a spread shares the list) was found by every later nightly of its
 * worker (`ledger_findings` where `no_jobs` was due). A test spreads it and gives the lists it
 * fills lists of their own.
 */
export const cleanLedger: LedgerWindowResult = frozen({
  vaults: 1,
  unreceiptedDebits: [],
  unreleasedLocks: [],
  creditsHeaderMismatches: [],
  creditsHeaderUndecided: [],
  foreignMint: [],
  vaultOwnerChanges: [],
  vaultDelegateApprovals: [],
  vaultDelegatesNow: [],
  vaultOwnersNow: [],
  mixedJobMemos: [],
  imbalanced: [],
  gaps: [],
  prunedHistory: [],
  judgedBefore: [],
  incomplete: null,
});
