import { setTimeout as sleep } from "node:timers/promises";
import type { Store } from "../db/client.js";
import { isoOf } from "../reports/period.js";
import type { Profile } from "../verify/profiles.js";
import type { LedgerReader } from "./reader.js";
import {
  buildStatement,
  defaultGraceSeconds,
  ledgerStoreOf,
  type VaultStatement,
} from "./statement.js";

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
   * out (a lock partly returned shows only the rest). Besides the window's own locks due by
   * the run's read, the locks of the settlement window plus grace before the window that fell
   * due since (`beforeWindow`): the run of their own window read the vault before they were
   * due, so each lock is judged by the first run after it is due.
   */
  unreleasedLocks: {
    vault: string;
    jobId: string;
    signature: string;
    lockUnits: string;
    outstandingUnits: string;
    /** The lock's block time (ISO 8601). */
    lockedAt: string | null;
    dueBy: string | null;
    /** The lock lies before the window: its own window's run read the vault before it was due. */
    beforeWindow: boolean;
  }[];
  /** Recorded jobs whose credits header matches no balance of the vault in their span. */
  creditsHeaderMismatches: { vault: string; jobId: string; headerUnits: string }[];
  /**
   * Movements of a vault's address in another mint, and another mint found there at the
   * balance read (`mint` null: an account that is not a token account).
   */
  foreignMint: {
    vault: string;
    finding: "foreign_mint_movement" | "foreign_mint_balance";
    signature: string | null;
    mint: string | null;
    amountUnits: string | null;
  }[];
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
 * Thrown when the run's time ran out (or it was stopped) while the chain had not finalized
 * past the window's end: says how far it had.
 */
export class LedgerNotFinalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LedgerNotFinalError";
  }
}

/** Longest pause between reads while the chain finalizes the window's last seconds. */
const FINALITY_POLL_MAX_MS = 5_000;
const FINALITY_POLL_MIN_MS = 200;

/**
 * Reads every vault's new history, waits until each was listed after the chain had finalized
 * past the window's end (reading it again meanwhile), then builds the window's statement and
 * keeps its findings, with the locks before the window that fell due since. A vault read that
 * failed or left transactions unread makes the result incomplete; a gap in a vault's history
 * read through the window is a finding. The wait ends with the signal: `LedgerNotFinalError`.
 */
export function ledgerWindowCheck(deps: {
  store: Store;
  reader: LedgerReader;
  profile: Profile;
  graceSeconds?: number;
  now?: () => number;
}) {
  const options = {
    profile: deps.profile,
    ...(deps.graceSeconds === undefined ? {} : { graceSeconds: deps.graceSeconds }),
    ...(deps.now ? { now: deps.now } : {}),
  };
  const ledger = ledgerStoreOf(deps.store);

  /**
   * Reads the vaults until every one that reads without error was listed with the chain
   * finalized through `to`. A run at the window's end (a cron at the boundary, `--to` now)
   * comes before the chain has finalized its last seconds: a debit then is not listed yet,
   * and the next window starts after it, so no run would ever see it.
   */
  async function readThrough(to: number, signal?: AbortSignal) {
    const opts = signal ? { signal } : {};
    const clock = deps.now ?? Date.now;
    if (to > clock()) {
      // A window that has not ended cannot have been finalized through its end: said at once,
      // not after waiting out the run's timeout.
      throw new LedgerNotFinalError(
        `the window ends at ${isoOf(to)}, later than now: its credit vaults cannot be read through it yet`,
      );
    }
    for (;;) {
      const read = new Map((await deps.reader.syncAll(opts)).map((r) => [r.vault, r]));
      signal?.throwIfAborted();
      const behind: { vault: string; finalThrough: number | null; noBlockTime: string | null }[] =
        [];
      for (const vault of await deps.reader.vaults()) {
        const finalThrough = (await ledger.cursorFigures(vault))?.finalThrough ?? null;
        if (finalThrough !== null && finalThrough >= to) continue;
        // A read that failed is not waited for: the statement says the vault is not read.
        const result = read.get(vault);
        if (!result) return;
        behind.push({ vault, finalThrough, noBlockTime: result.noBlockTime });
      }
      if (behind.length === 0) return;
      const lag = Math.max(...behind.map((b) => to - (b.finalThrough ?? 0)));
      const pause = Math.min(FINALITY_POLL_MAX_MS, Math.max(FINALITY_POLL_MIN_MS, lag));
      try {
        await sleep(pause, undefined, opts);
      } catch (error) {
        if (!signal?.aborted) throw error;
        const through = behind
          .map(
            (b) =>
              `${b.vault} through ${b.finalThrough === null ? "nothing" : isoOf(b.finalThrough)}`,
          )
          .join(", ");
        // A node that gives no block time proves no finalized time however long the run waits:
        // the message names the endpoint, not the chain, as what held the run back.
        const cause = behind.find((b) => b.noBlockTime !== null)?.noBlockTime;
        throw new LedgerNotFinalError(
          `the chain had not finalized past the window's end (${isoOf(to)}) when the credit vaults were last read: listed ${through}${cause ? `; the RPC endpoint proves no finalized time: ${cause}` : ""}`,
        );
      }
    }
  }

  return async (window: {
    from: number;
    to: number;
    signal?: AbortSignal;
  }): Promise<LedgerWindowResult> => {
    await readThrough(window.to, window.signal);
    window.signal?.throwIfAborted();
    const statement = await buildStatement(deps.store, window, options);
    // The locks of the settlement window plus grace before the window were not due when the
    // run of their own window read the vault: judged now, by the first run after they are.
    const lookbackMs =
      (deps.profile.settlementWindowSeconds + (deps.graceSeconds ?? defaultGraceSeconds)) * 1000;
    const before = await buildStatement(
      deps.store,
      { from: window.from - lookbackMs, to: window.from },
      options,
    );
    const locksOf = (vaults: VaultStatement[], beforeWindow: boolean) =>
      vaults.flatMap((v) =>
        v.unreleasedLocks.map((u) => ({
          vault: v.vault,
          jobId: u.jobId,
          signature: u.signature,
          lockUnits: u.lockUnits.toString(),
          outstandingUnits: u.outstandingUnits.toString(),
          lockedAt: u.lockedAt,
          dueBy: u.dueBy,
          beforeWindow,
        })),
      );
    // A vault not read through the window is "could not finish"; one read with a gap in it is
    // a finding (below), like a closing balance off the chain's.
    const notRead = statement.vaults.filter((v) => !v.historyRead);
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
      unreleasedLocks: [...locksOf(before.vaults, true), ...locksOf(statement.vaults, false)],
      creditsHeaderMismatches: statement.vaults.flatMap((v) =>
        v.creditsHeaderMismatches.map((m) => ({
          vault: v.vault,
          jobId: m.jobId,
          headerUnits: m.headerUnits.toString(),
        })),
      ),
      foreignMint: statement.vaults.flatMap((v) =>
        v.foreignMint.flatMap((f): LedgerWindowResult["foreignMint"] =>
          f.finding === "foreign_mint_balance"
            ? [
                {
                  vault: v.vault,
                  finding: f.finding,
                  signature: null,
                  mint: f.mint,
                  amountUnits: f.amountUnits === null ? null : f.amountUnits.toString(),
                },
              ]
            : f.changes.map((c) => ({
                vault: v.vault,
                finding: f.finding,
                signature: f.signature,
                mint: c.mint,
                amountUnits: c.amountUnits.toString(),
              })),
        ),
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
          : `ledger: the history of ${notRead.length} credit vault(s) is not read through the window's end (${notRead.map((v) => `${v.vault}, ${unread(v, window.to)}`).join("; ")})`,
    };
  };
}

/**
 * Why a vault's history is not read up to `to`: the chain not listed that far, or transactions
 * listed but not read (RPC trouble, a pruned transaction, an amount beyond what the store holds:
 * the sync's log names which).
 */
function unread(v: VaultStatement, to: number): string {
  if (v.readThrough === null || Date.parse(v.readThrough) < to) {
    return `read through ${v.readThrough ?? "nothing"}`;
  }
  return `listed through ${v.readThrough}, ${v.counts.pending} listed transaction(s) not read`;
}
