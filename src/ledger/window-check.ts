import type { Store } from "../db/client.js";
import type { Profile } from "../verify/profiles.js";
import type { LedgerReader } from "./reader.js";
import { buildStatement } from "./statement.js";

/** What the ledger says about a window, for the nightly `verify` summary. */
export interface LedgerWindowResult {
  vaults: number;
  /** Money out of a credit vault that is no recorded job's lock. */
  unreceiptedDebits: {
    vault: string;
    signature: string;
    amountUnits: string;
    memo: string | null;
    memoJobId: string | null;
  }[];
  /**
   * Recorded jobs' locks that nothing returned or settled in time, with what of each is still
   * out (a lock partly returned shows only the rest).
   */
  unreleasedLocks: {
    vault: string;
    jobId: string;
    signature: string;
    lockUnits: string;
    outstandingUnits: string;
  }[];
  /** Recorded jobs whose credits header matches no balance of the vault in their span. */
  creditsHeaderMismatches: { vault: string; jobId: string; headerUnits: string }[];
  /** Vaults whose closing balance by the ledger differs from the chain's. */
  imbalanced: { vault: string; differenceUnits: string }[];
  /**
   * Movements missing from a vault's history: the balance after one read transaction is not
   * the balance before the next. Money moved that no line shows, so nothing says it was ours.
   */
  gaps: {
    vault: string;
    afterSignature: string;
    beforeSignature: string;
    fromSlot: number;
    toSlot: number;
    missingUnits: string;
  }[];
  /** Why the ledger of the window is not complete (a vault not read, transactions unread). */
  incomplete: string | null;
}

/**
 * Reads every vault's new history, then builds the window's statement and keeps its findings.
 * A vault read that failed or left transactions unread makes the result incomplete; a gap in a
 * vault's history read through the window is a finding.
 */
export function ledgerWindowCheck(deps: {
  store: Store;
  reader: LedgerReader;
  profile: Profile;
  graceSeconds?: number;
  now?: () => number;
}) {
  return async (window: {
    from: number;
    to: number;
    signal?: AbortSignal;
  }): Promise<LedgerWindowResult> => {
    await deps.reader.syncAll(window.signal ? { signal: window.signal } : {});
    window.signal?.throwIfAborted();
    const statement = await buildStatement(deps.store, window, {
      profile: deps.profile,
      ...(deps.graceSeconds === undefined ? {} : { graceSeconds: deps.graceSeconds }),
      ...(deps.now ? { now: deps.now } : {}),
    });
    // A vault not read through the window is "could not finish"; one read with a gap in it is
    // a finding (below), like a closing balance off the chain's.
    const notRead = statement.vaults.filter((v) => !v.historyRead).map((v) => v.vault);
    return {
      vaults: statement.vaults.length,
      unreceiptedDebits: statement.vaults.flatMap((v) =>
        v.unexplained.map((l) => ({
          vault: v.vault,
          signature: l.signature,
          amountUnits: l.amountUnits.toString(),
          memo: l.memo,
          memoJobId: l.memoJobId,
        })),
      ),
      unreleasedLocks: statement.vaults.flatMap((v) =>
        v.unreleasedLocks.map((u) => ({
          vault: v.vault,
          jobId: u.jobId,
          signature: u.signature,
          lockUnits: u.lockUnits.toString(),
          outstandingUnits: u.outstandingUnits.toString(),
        })),
      ),
      creditsHeaderMismatches: statement.vaults.flatMap((v) =>
        v.creditsHeaderMismatches.map((m) => ({
          vault: v.vault,
          jobId: m.jobId,
          headerUnits: m.headerUnits.toString(),
        })),
      ),
      imbalanced: statement.vaults
        .filter((v) => v.differenceUnits !== null && v.differenceUnits !== 0n)
        .map((v) => ({ vault: v.vault, differenceUnits: String(v.differenceUnits) })),
      gaps: statement.vaults.flatMap((v) =>
        v.gaps.map((g) => ({ vault: v.vault, ...g, missingUnits: g.missingUnits.toString() })),
      ),
      incomplete:
        notRead.length === 0
          ? null
          : `ledger: the history of ${notRead.length} credit vault(s) is not read through the window's end (${notRead.join(", ")})`,
    };
  };
}
