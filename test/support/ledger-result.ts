import type { LedgerWindowResult } from "../../src/ledger/window-check.js";

/** A credit vaults' ledger read of one vault that found nothing. */
export const cleanLedger: LedgerWindowResult = {
  vaults: 1,
  unreceiptedDebits: [],
  unreleasedLocks: [],
  creditsHeaderMismatches: [],
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
};
