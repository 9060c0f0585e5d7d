import { setTimeout as sleep } from "node:timers/promises";
import { withoutUrlSecrets } from "../chain/url-secrets.js";
import { isBusyError, type Store } from "../db/client.js";
import { isoOf } from "../reports/period.js";
import { SETTLEMENT_CLOCK_SLACK_SECONDS } from "../store/ledger-rules.js";
import type { Profile } from "../verify/profiles.js";
import { ESCROW_PENDING_MS, type EscrowListed } from "./escrow-scan.js";
import type { LedgerReader, VaultSyncResult } from "./reader.js";
import {
  buildStatement,
  defaultGraceSeconds,
  ledgerStoreOf,
  sameDelegate,
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
    /** The debit's block time (ISO 8601). */
    at: string | null;
    /** Before the window: in history of the vault no run had judged (`judgedBefore`). */
    beforeWindow: boolean;
    /**
     * Listed only after the run that judged its time had taken its statements (an endpoint left
     * it out, a node listed it late): judged now, once, whatever its date.
     */
    listedLate?: true;
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
    /**
     * The lock lies before the window: its own window's run read the vault before it was due,
     * or no run had judged that part of the vault's history (`judgedBefore`).
     */
    beforeWindow: boolean;
    /** Listed only after the run that judged its time (see `unreceiptedDebits`). */
    listedLate?: true;
  }[];
  /** Recorded jobs whose credits header matches no balance of the vault in their span. */
  creditsHeaderMismatches: {
    vault: string;
    jobId: string;
    headerUnits: string;
    beforeWindow: boolean;
  }[];
  /**
   * Recorded jobs whose credits header matches no balance read so far, the vault not read past
   * their response yet (`credits_header_undecided`): findings of the run all the same, as a
   * false header may still be one (the next read decides).
   */
  creditsHeaderUndecided: LedgerWindowResult["creditsHeaderMismatches"];
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
    beforeWindow: boolean;
    /** Listed only after the run that judged its time (see `unreceiptedDebits`). */
    listedLate?: true;
  }[];
  /**
   * Transactions after which a vault's owner was not the escrow authority (a SetAuthority gave
   * it away, and each transaction while another owned it): its money is that owner's to spend.
   */
  vaultOwnerChanges: {
    vault: string;
    /**
     * `vault_owner_now`: the vault's newest read transaction showing its owner leaves it
     * another's (said once).
     */
    finding: "vault_owner_changed" | "vault_owner_now";
    signature: string;
    owner: string;
    memoJobId: string | null;
    /** The transaction's block time (ISO 8601). */
    at: string | null;
    beforeWindow: boolean;
    /** Listed only after the run that judged its time (see `unreceiptedDebits`). */
    listedLate?: true;
  }[];
  /**
   * Transactions whose Approve or ApproveChecked gave a vault a delegate, who can spend it
   * alone.
   */
  vaultDelegateApprovals: {
    vault: string;
    signature: string;
    delegate: string;
    memoJobId: string | null;
    /** The transaction's block time (ISO 8601). */
    at: string | null;
    beforeWindow: boolean;
    /** Listed only after the run that judged its time (see `unreceiptedDebits`). */
    listedLate?: true;
  }[];
  /**
   * Vaults the run's balance read found with a delegate that may still spend some of them
   * (what it may spend, `delegatedUnits`): said by every run while it lasts, whether or not a
   * line shows the Approve (a node serving its call with `[]` inner instructions shows none).
   */
  vaultDelegatesNow: { vault: string; delegate: string; delegatedUnits: string }[];
  /**
   * Vaults the run's balance read found owned by another than the escrow authority (`owner`
   * null: the answer named none, so the authority's is not proven): that owner may spend the
   * whole vault alone. Said by every run while it lasts, unless a `vault_owner_changed` or
   * `vault_owner_now` of this run names the same owner (one cause, said once): a node leaving
   * `owner` out of token balances shows the SetAuthority in no line.
   */
  vaultOwnersNow: { vault: string; owner: string | null }[];
  /**
   * Transactions that moved a vault's money under memos naming several jobs, or several steps
   * of one job: nobody can say whose money it was.
   */
  mixedJobMemos: {
    vault: string;
    signature: string;
    amountUnits: string;
    /** Every step and job the memos name, as `<kind>:<job id>`, first memo first. */
    named: string[];
    /** The recorded job the line was filed under, if any. */
    jobId: string | null;
    /** The transaction's block time (ISO 8601). */
    at: string | null;
    beforeWindow: boolean;
    /** Listed only after the run that judged its time (see `unreceiptedDebits`). */
    listedLate?: true;
  }[];
  /** Vaults whose closing balance by the ledger differs from the chain's. */
  imbalanced: { vault: string; differenceUnits: string }[];
  /**
   * Movements missing from a vault's history: the balance after one read transaction is not
   * the balance before the next. Money moved that no line shows, so nothing says it was ours.
   */
  gaps: {
    vault: string;
    /** Null when no movement of the vault is listed (`fromSlot` 0). */
    afterSignature: string | null;
    /** Null when the gap ends at the balance read (at `toSlot`). */
    beforeSignature: string | null;
    fromSlot: number;
    toSlot: number;
    missingUnits: string;
    beforeWindow: boolean;
  }[];
  /**
   * Vaults whose oldest history the RPC no longer has (the oldest line listed is not the vault's
   * creation): what moved before `beforeSignature` (at `before`) is not judged. Said by the run
   * whose judging reaches back to that line, once: read the vault from an archival RPC.
   */
  prunedHistory: { vault: string; beforeSignature: string; before: string | null }[];
  /**
   * Vaults whose history before the window no run had judged, judged by this one from `from`
   * (null: the beginning of the vault's history): a vault learned or configured after it was
   * funded, a night the cron skipped. Findings there say `beforeWindow`.
   */
  judgedBefore: { vault: string; from: string | null }[];
  /**
   * Why the ledger of the window is not complete (a vault not read, transactions unread, the
   * oldest history of a vault not available from the RPC).
   */
  incomplete: string | null;
  /**
   * Jobs the escrow scan sent back to the verifier (a payout out of escrow under a job's memo
   * that the job did not name): the run judges them before its summary, those of earlier
   * windows too. Absent when none.
   */
  escrowSentBack?: string[];
}

/**
 * What the escrow scans of one nightly run listed so far (`escrowFirst`, then each read of the
 * vaults): a later scan of the run lists only what is newer. Start a run with
 * `{ newest: null, dated: null }`.
 */
export interface EscrowRun {
  /** The newest entry a scan of the run listed; null before one listed any. */
  newest: EscrowListed | null;
  /**
   * How many jobs were dated in the window when the run's last scan that listed the whole range
   * began (`countDatedIn`); null before one did.
   */
  dated: number | null;
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
/** A vault statement's credits headers matching no balance of a span read in full. */
const decidedHeaders = (v: VaultStatement) => v.creditsHeaderMismatches;
/** ... and those matching none read so far of a span not read in full yet. */
const undecidedHeaders = (v: VaultStatement) => v.creditsHeaderUndecided;

const FINALITY_POLL_MAX_MS = 5_000;
/** How much earlier than a window job's lock can be the nightly's escrow scan reads from. */
const ESCROW_SCAN_SLACK_MS = 5 * 60_000;
/** A read of the vaults this long is said beside a wait for finality it may have caused. */
const SLOW_READ_MS = 10_000;
const FINALITY_POLL_MIN_MS = 200;

/**
 * How far past the window's end the run reads every line and waits for finality: a credits
 * header's span runs through the lines the chain dated up to `SETTLEMENT_CLOCK_SLACK_SECONDS`
 * after the response's second (`headerSpanEnd`), so that of a job recorded in the window's last
 * seconds is read in full only then. Read through the window's end, it stayed a skip ("not read
 * past the response") and the run counted the job verified, a false header and all. Those
 * lines are read for the headers' spans only (`spansUntil`): the statements keep the window's
 * bounds, and an entry a node lists there is judged as one past the window (a foreign one set
 * aside when read, named by the next window's statement), not a read of this run that failed.
 */
const HEADER_SPAN_PAST_END_MS = SETTLEMENT_CLOCK_SLACK_SECONDS * 1000;

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
  /**
   * The pause between reads while the chain finalizes the window's last seconds (a timer of
   * `ms`, ended by `signal`): a test whose chain runs on a clock it moves on passes one moving
   * that clock instead of waiting.
   */
  pause?: (ms: number, signal?: AbortSignal) => Promise<unknown>;
}) {
  const pauseFor =
    deps.pause ??
    ((ms: number, signal?: AbortSignal) => sleep(ms, undefined, signal ? { signal } : {}));
  const options = {
    profile: deps.profile,
    ...(deps.graceSeconds === undefined ? {} : { graceSeconds: deps.graceSeconds }),
    ...(deps.now ? { now: deps.now } : {}),
  };
  const ledger = ledgerStoreOf(deps.store);

  /**
   * How far past the window's end the run reads transactions, and only while a lock up to the
   * window's end is still out: the last lock of the window is due a settlement window later,
   * and a return within the grace after that is in time. The traffic after the window (listed
   * too when the run reads long after it) is judged by no statement of this run: it stays
   * listed for the next read.
   */
  const judgedPastEndMs =
    (deps.profile.settlementWindowSeconds + (deps.graceSeconds ?? defaultGraceSeconds)) * 1000;

  /**
   * How many lines of `vault` listed up to `through` (`spanEndOf`) past the window's end are not
   * read. The window's statement holds none of them, but a credits header of its
   * last seconds spans them: one the node did not serve left that header a skip, and the run
   * counted the job verified, its statement complete.
   */
  async function spanLinesUnread(vault: string, through: number): Promise<number> {
    const untilSec = Math.ceil(through / 1000);
    return (await ledger.pendingCounts(vault, untilSec, untilSec)).upTo;
  }

  /**
   * Reads the vaults until every one that reads without error was listed with the chain
   * finalized through `to` and the credits headers' span past it (`HEADER_SPAN_PAST_END_MS`).
   * A run at the window's end (a cron at the boundary, `--to` now) comes before the chain has
   * finalized its last seconds: a debit then is not listed yet, and the next window starts
   * after it, so no run would ever see it.
   */
  /**
   * Through when the credits headers of the window's jobs span the vaults' lines: 2 s past the
   * window's end (`HEADER_SPAN_PAST_END_MS`), or past the latest recording of a job dated in the
   * window and ingested or imported after its end, whose span runs 2 s past its response's
   * recording (`headerSpanEnd`). Read only through the window's end plus 2 s, such a header
   * stayed a skip and the run counted the job verified, a false header and all.
   */
  async function spanEndOf(window: { from: number; to: number }) {
    const late = await ledger.latestRecordedAfter(window.from, window.to);
    return {
      last: late,
      through: Math.max(window.to, late ?? window.to) + HEADER_SPAN_PAST_END_MS,
    };
  }

  async function readThrough(
    to: number,
    span: { last: number | null; through: number },
    signal?: AbortSignal,
  ): Promise<VaultSyncResult[]> {
    const opts = signal ? { signal } : {};
    const clock = deps.now ?? Date.now;
    if (to > clock()) {
      // A window that has not ended cannot have been finalized through its end: said at once,
      // not after waiting out the run's timeout.
      throw new LedgerNotFinalError(
        `the window ends at ${isoOf(to)}, later than now: its credit vaults cannot be read through it yet`,
      );
    }
    const { through } = span;
    /** Reads in a row that proved nothing though the chain was final past `through`. */
    let unproven = 0;
    for (;;) {
      const readStarted = clock();
      const results = await deps.reader.syncAll({
        ...opts,
        readUntil: to,
        spansUntil: through,
        releasesUntil: to + judgedPastEndMs,
      });
      const readTook = clock() - readStarted;
      const read = new Map(results.map((r) => [r.vault, r]));
      signal?.throwIfAborted();
      const behind: {
        vault: string;
        finalThrough: number | null;
        noBlockTime: string | null;
        chainFinalThrough: number | null;
      }[] = [];
      for (const vault of await deps.reader.vaults()) {
        const finalThrough = (await ledger.cursorFigures(vault))?.finalThrough ?? null;
        if (finalThrough !== null && finalThrough >= through) continue;
        // A read that failed is not waited for: the statement says the vault is not read.
        const result = read.get(vault);
        if (!result) return results;
        behind.push({
          vault,
          finalThrough,
          noBlockTime: result.noBlockTime,
          chainFinalThrough: result.chainFinalThrough ?? null,
        });
      }
      if (behind.length === 0) return results;
      // How long the chain still needs to finalize through `through`, by the time the node gave
      // before each listing. A listing that proved none for its vault though the chain was final
      // past it (an entry set aside as another account's, a node that did not hold the newest
      // line) waits for a read, not for the chain: read again soon, then less often while the
      // node keeps proving nothing. Measured from the vault's last proven time instead, the run
      // slept up to 5 s for seconds the chain had finalized already.
      const lag = Math.max(
        ...behind.map((b) => through - (b.chainFinalThrough ?? b.finalThrough ?? 0)),
      );
      unproven = lag > 0 ? 0 : unproven + 1;
      const pause =
        lag > 0
          ? Math.min(FINALITY_POLL_MAX_MS, Math.max(FINALITY_POLL_MIN_MS, lag))
          : Math.min(FINALITY_POLL_MAX_MS, FINALITY_POLL_MIN_MS * 2 ** (unproven - 1));
      try {
        await pauseFor(pause, signal);
      } catch (error) {
        if (!signal?.aborted) throw error;
        const listed = behind
          .map(
            (b) =>
              `${b.vault} through ${b.finalThrough === null ? "nothing" : isoOf(b.finalThrough)}`,
          )
          .join(", ");
        // A node that gives no block time proves no finalized time however long the run waits:
        // the message names the endpoint, not the chain, as what held the run back.
        const cause = behind.find((b) => b.noBlockTime !== null)?.noBlockTime;
        throw new LedgerNotFinalError(
          `the chain had not finalized past ${isoOf(through)}, ${spanText(to, span.last)}, when the credit vaults were last read: listed ${listed}${cause ? `; the RPC endpoint proves no finalized time: ${cause}` : ""}${slowRead(results, readTook)}`,
        );
      }
    }
  }

  /**
   * A read long enough to be what held the run back, said with what it did: a vault's first
   * read lists its whole history (16,000 transactions took 110 s), and the listing's finalized
   * time is the one read before its first page, so the chain looked behind when the read was.
   */
  function slowRead(results: VaultSyncResult[], took: number): string {
    if (took < SLOW_READ_MS) return "";
    const sum = (key: "listed" | "fetched") => results.reduce((n, r) => n + r[key], 0);
    return `; that read took ${(took / 1000).toFixed(1)} s (${sum("listed")} lines listed, ${sum("fetched")} transactions fetched), the finalized time each listing holds being the one read before it began: a vault's first read lists its whole history, and the next run goes on from where this one stopped`;
  }

  /**
   * The escrow vault's payouts under a window job's memo that the job does not name
   * (src/ledger/escrow-scan.ts): kept with the job, which goes back to the verifier. Read from
   * as early as a payout under a window job's memo is looked for: the window's earliest job is
   * its start, or the date of a job recorded in it and dated before it (an import, a receipt
   * ingested late: read from the window's start only, a second payout of such a job was never
   * found); its lock may come up to the settlement window and `receiptTimeSkewSeconds` before
   * its date (`receipt.time`), and a payout made before the lock as early as serve's scan holds
   * an entry for a job not recorded yet (`ESCROW_PENDING_MS`). What it sent back, and why it
   * fell short or null.
   */
  async function scanEscrow(window: {
    from: number;
    to: number;
    signal?: AbortSignal;
    escrow?: EscrowRun;
  }) {
    const escrow = deps.reader.escrow;
    if (escrow === undefined) return { unread: null, sentBack: [] };
    const earliest = await ledger.earliestDatedBefore(window.from, window.to);
    const lockedFrom =
      Math.min(window.from, earliest ?? window.from) -
      (deps.profile.settlementWindowSeconds + deps.profile.receiptTimeSkewSeconds) * 1000 -
      ESCROW_PENDING_MS -
      ESCROW_SCAN_SLACK_MS;
    const run = window.escrow;
    // A scan after the run's first lists only what is newer than what the run listed: the
    // rest was judged, or held (`escrow_pending`, judged by the scan's first step once its job
    // is recorded or read), and a transaction read and not kept is not read again. Not when a
    // job dated in the window was recorded since that listing began (an import during the
    // run): an entry under its memo older than `ESCROW_PENDING_MS` was held for no job, and only
    // listing it again judges it. Told by the window's count of jobs, not by recording times:
    // a host importing with its clock minutes behind dated its recordings before the listing.
    const dated = run ? await ledger.countDatedIn(window.from, window.to) : null;
    const after = run?.newest && run.dated === dated ? run.newest : null;
    try {
      const scanned = await escrow.scanSince(lockedFrom, window.signal, after);
      if (run) {
        run.newest = scanned.newest ?? null;
        if (after === null) run.dated = dated;
      }
      return {
        unread: scanned.unread === null ? null : `escrow: ${scanned.unread}`,
        sentBack: [...scanned.kept, ...scanned.heldBack],
        failed: false,
      };
    } catch (error) {
      if (window.signal?.aborted || isBusyError(error)) throw error;
      return {
        unread: `escrow: the escrow vault's payouts under the window's jobs' memos were not read (${error instanceof Error ? error.message : String(error)})`,
        sentBack: [],
        failed: true,
      };
    }
  }

  /**
   * The escrow scan of the window alone, before the run judges its jobs: the jobs it sent back,
   * and why it could not read the escrow vault (null when it did). A run with no scan of
   * `serve`'s running beside it judges its jobs at once: judged before a scan that then failed,
   * a job paid out twice was written `verified` (and `/audit` said so) however the run ended.
   */
  async function escrowFirst(window: {
    from: number;
    to: number;
    signal?: AbortSignal;
    escrow?: EscrowRun;
  }) {
    const scanned = await scanEscrow(window);
    return { failed: scanned.failed ? scanned.unread : null, sentBack: scanned.sentBack };
  }

  /** What each run judged in full: marked once the run's summary stands (`commit`). */
  const marks = new WeakMap<LedgerWindowResult, { vault: string; through: number; at: number }[]>();

  const check = async (window: {
    from: number;
    to: number;
    signal?: AbortSignal;
    /** The run's escrow scans so far (`escrowFirst`'s): this one lists only what is newer. */
    escrow?: EscrowRun;
  }): Promise<LedgerWindowResult> => {
    const span = await spanEndOf(window);
    const reads = await readThrough(window.to, span, window.signal);
    window.signal?.throwIfAborted();
    const escrow = await scanEscrow(window);
    // Every line listed by now is in the statements below when its time is: a line listed
    // later is judged by the next run whatever its time (`listedLate`).
    const takenAt = (deps.now ?? Date.now)();
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
    // The part of each vault's history no run has judged: before the window when the vault
    // was learned (or configured) after it first moved, or a night's run did not run. Judged
    // now, from the mark (the beginning of the history when none), like the window itself.
    const earlier: VaultStatement[] = [];
    const earlierLocks: VaultStatement[] = [];
    const judgedBefore: LedgerWindowResult["judgedBefore"] = [];
    // Lines listed after the last judgement of their vault with a time it had judged: an
    // endpoint that left a debit out until the night's run had passed, a node listing late.
    const late: VaultStatement[] = [];
    const lateSignatures = new Set<string>();
    for (const v of statement.vaults) {
      const figures = await ledger.cursorFigures(v.vault);
      if (figures?.judgedThrough == null || figures.judgedAt == null) continue;
      const listed = await ledger.listedSince(
        v.vault,
        figures.judgedAt,
        Math.ceil(figures.judgedThrough / 1000),
      );
      if (listed.length === 0) continue;
      window.signal?.throwIfAborted();
      for (const l of listed) lateSignatures.add(`${v.vault} ${l.signature}`);
      const part = await buildStatement(
        deps.store,
        {
          from: Math.min(...listed.map((l) => l.blockTime)) * 1000,
          to: figures.judgedThrough,
          vault: v.vault,
        },
        options,
      );
      late.push(...part.vaults);
    }
    for (const v of statement.vaults) {
      const judged = (await ledger.cursorFigures(v.vault))?.judgedThrough ?? null;
      if (judged !== null && judged >= window.from) continue;
      window.signal?.throwIfAborted();
      const from = judged ?? 0;
      const part = await buildStatement(
        deps.store,
        { from, to: window.from, vault: v.vault },
        options,
      );
      earlier.push(...part.vaults);
      // The last run's own lookback locks: not due when it ran (what this run's lookback also
      // covers is one finding: see the filter below).
      if (judged !== null && judged < window.from) {
        const locks = await buildStatement(
          deps.store,
          { from: judged - lookbackMs, to: judged, vault: v.vault },
          options,
        );
        earlierLocks.push(...locks.vaults);
      }
      judgedBefore.push({ vault: v.vault, from: judged === null ? null : isoOf(judged) });
    }
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
    const debitsOf = (vaults: VaultStatement[], beforeWindow: boolean) =>
      vaults.flatMap((v) =>
        v.unexplained.map((l) => ({
          vault: v.vault,
          signature: l.signature,
          amountUnits: l.amountUnits.toString(),
          memo: l.memo,
          memoJobId: l.memoJobId,
          at: l.blockTime === null ? null : isoOf(l.blockTime * 1000),
          beforeWindow,
        })),
      );
    const mismatchesOf = (
      vaults: VaultStatement[],
      beforeWindow: boolean,
      of: (
        v: VaultStatement,
      ) => VaultStatement["creditsHeaderMismatches" | "creditsHeaderUndecided"],
    ) =>
      vaults.flatMap((v) =>
        of(v).map((m) => ({
          vault: v.vault,
          jobId: m.jobId,
          headerUnits: m.headerUnits.toString(),
          beforeWindow,
        })),
      );
    const foreignOf = (vaults: VaultStatement[], beforeWindow: boolean) =>
      vaults.flatMap((v) =>
        v.foreignMint.flatMap((f): LedgerWindowResult["foreignMint"] =>
          f.finding === "foreign_mint_balance"
            ? // What the address holds now: said once, by the window's statement.
              beforeWindow
              ? []
              : [
                  {
                    vault: v.vault,
                    finding: f.finding,
                    signature: null,
                    mint: f.mint,
                    amountUnits: f.amountUnits === null ? null : f.amountUnits.toString(),
                    beforeWindow,
                  },
                ]
            : f.changes.map((c) => ({
                vault: v.vault,
                finding: f.finding,
                signature: f.signature,
                mint: c.mint,
                amountUnits: c.amountUnits.toString(),
                beforeWindow,
              })),
        ),
      );
    const ownersOf = (vaults: VaultStatement[], beforeWindow: boolean) =>
      vaults.flatMap((v) =>
        // Whose the vault is now: said once, by the window's statement.
        v.ownerChanges.flatMap((o) =>
          o.finding === "vault_owner_now" && beforeWindow
            ? []
            : [
                {
                  vault: v.vault,
                  finding: o.finding,
                  signature: o.signature,
                  owner: o.owner,
                  memoJobId: o.memoJobId,
                  at: o.blockTime === null ? null : isoOf(o.blockTime * 1000),
                  beforeWindow,
                },
              ],
        ),
      );
    const delegatesOf = (vaults: VaultStatement[], beforeWindow: boolean) =>
      vaults.flatMap((v) =>
        v.delegateApprovals.map((d) => ({
          vault: v.vault,
          signature: d.signature,
          delegate: d.delegate,
          approvedUnits: d.approvedUnits,
          memoJobId: d.memoJobId,
          at: d.blockTime === null ? null : isoOf(d.blockTime * 1000),
          beforeWindow,
        })),
      );
    const mixedOf = (vaults: VaultStatement[], beforeWindow: boolean) =>
      vaults.flatMap((v) =>
        v.mixedMemos.map((m) => ({
          vault: v.vault,
          signature: m.signature,
          amountUnits: m.amountUnits.toString(),
          named: m.named.map((n) => `${n.kind}:${n.jobId}`),
          jobId: m.jobId,
          at: m.blockTime === null ? null : isoOf(m.blockTime * 1000),
          beforeWindow,
        })),
      );
    const gapsOf = (vaults: VaultStatement[], beforeWindow: boolean) =>
      vaults.flatMap((v) =>
        v.gaps.map((g) => ({
          vault: v.vault,
          ...g,
          missingUnits: g.missingUnits.toString(),
          beforeWindow,
        })),
      );
    // A lock in two of the statements before the window is one finding. Each is named by the
    // run whose window holds its due time: one of the window due after its end, which this run
    // read after it fell due (a run minutes after its window's end), is the next run's, whose
    // look back holds it; named by both, each night named the locks of its last settlement
    // window plus grace twice.
    const seen = new Set<string>();
    const unreleasedLocks = [
      ...locksOf(earlier, true),
      ...locksOf(earlierLocks, true),
      ...locksOf(before.vaults, true),
      ...locksOf(statement.vaults, false),
    ].filter((u) => {
      if (u.dueBy !== null && Date.parse(u.dueBy) >= window.to) return false;
      const key = `${u.vault} ${u.signature} ${u.jobId}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });

    // A vault not read through the window (or through what came before it, when that is
    // judged now) is "could not finish"; one read with a gap in it is a finding (below), like
    // a closing balance off the chain's. So is a vault whose oldest history the RPC no longer
    // has: never called clean, said by the run that judges the part reaching back to it, and
    // not again (a node that pruned it will not give it back; every night "could not finish"
    // would hide every other finding of the vault).
    const problems = new Map<string, string>();
    const prunedHistory: LedgerWindowResult["prunedHistory"] = [];
    for (const v of [...earlier, ...statement.vaults]) {
      if (problems.has(v.vault)) continue;
      if (!v.historyRead) {
        // The listing's own failure (no line waiting for a transaction holds it): a pruned
        // node's "not available", a page of HTML, a cursor that loops. Unsaid, the reason read
        // "read through ..." alone, the RPC's answer in the run's log only.
        const listing =
          v.unread === null ? ((await ledger.cursorFigures(v.vault))?.lastError ?? null) : null;
        problems.set(v.vault, `${v.vault}, ${unread(v, window.to, listing)}`);
      }
      // Both closings known and no difference: the ledger was written during each read of the
      // statement (`buildStatement`), its figures of two states. Judged clean and marked, a
      // closing off the chain's in the window was never said, by this run or a later one.
      else if (movedUnderReads(v)) {
        problems.set(v.vault, `${v.vault}, written by a ledger round during each statement read`);
      } else if (v.missingHistory && !prunedHistory.some((p) => p.vault === v.vault)) {
        prunedHistory.push({
          vault: v.vault,
          beforeSignature: v.missingHistory.beforeSignature,
          before: v.missingHistory.blockTime,
        });
      }
    }
    for (const v of statement.vaults) {
      if (problems.has(v.vault)) continue;
      const unreadPast = await spanLinesUnread(v.vault, span.through);
      if (unreadPast > 0) {
        problems.set(
          v.vault,
          `${v.vault}, ${unreadPast} transaction(s) listed ${unreadPastText(span)} not read: the credits headers of its ${span.last === null ? "last jobs" : `jobs (one recorded at ${isoOf(span.last)})`} span them`,
        );
      }
    }
    // What the statements above report already is one finding; the rest of a late line's
    // statement was judged by the run that judged its time.
    const lateOnes = <T extends { vault: string; signature: string | null }>(found: T[], of: T[]) =>
      of
        .filter((f) => lateSignatures.has(`${f.vault} ${f.signature}`))
        .filter((f) => !found.some((g) => g.vault === f.vault && g.signature === f.signature))
        .map((f) => ({ ...f, listedLate: true as const }));
    const debits = [...debitsOf(earlier, true), ...debitsOf(statement.vaults, false)];
    const foreign = [...foreignOf(earlier, true), ...foreignOf(statement.vaults, false)];
    const owners = [...ownersOf(earlier, true), ...ownersOf(statement.vaults, false)];
    const delegates = [...delegatesOf(earlier, true), ...delegatesOf(statement.vaults, false)];
    const mixed = [...mixedOf(earlier, true), ...mixedOf(statement.vaults, false)];
    const result: LedgerWindowResult = {
      vaults: statement.vaults.length,
      unreceiptedDebits: [...debits, ...lateOnes(debits, debitsOf(late, true))],
      unreleasedLocks: [...unreleasedLocks, ...lateOnes(unreleasedLocks, locksOf(late, true))],
      creditsHeaderMismatches: [
        ...mismatchesOf(earlier, true, decidedHeaders),
        ...mismatchesOf(statement.vaults, false, decidedHeaders),
      ],
      creditsHeaderUndecided: [
        ...mismatchesOf(earlier, true, undecidedHeaders),
        ...mismatchesOf(statement.vaults, false, undecidedHeaders),
      ],
      foreignMint: [...foreign, ...lateOnes(foreign, foreignOf(late, true))],
      vaultOwnerChanges: [
        ...owners,
        // The window's `vault_owner_now` may name a transaction listed late: still said.
        ...lateOnes(
          owners.filter((o) => o.finding === "vault_owner_changed"),
          ownersOf(late, true),
        ),
      ],
      vaultDelegateApprovals: [...delegates, ...lateOnes(delegates, delegatesOf(late, true))].map(
        ({ approvedUnits: _, ...d }) => d,
      ),
      // One cause said once: an Approve this run names already gave the vault that delegate what
      // the read finds it may spend (spent in part since, the read says what is left).
      vaultDelegatesNow: reads.flatMap((r) =>
        r.delegate &&
        !sameDelegate(
          delegates.filter((d) => d.vault === r.vault),
          r.delegate,
        )
          ? [
              {
                vault: r.vault,
                delegate: r.delegate.address,
                delegatedUnits: r.delegate.amountUnits.toString(),
              },
            ]
          : [],
      ),
      vaultOwnersNow: reads.flatMap((r) =>
        r.otherOwner && !owners.some((o) => o.vault === r.vault && o.owner === r.otherOwner?.owner)
          ? [{ vault: r.vault, owner: r.otherOwner.owner }]
          : [],
      ),
      mixedJobMemos: [...mixed, ...lateOnes(mixed, mixedOf(late, true))],
      imbalanced: statement.vaults
        .filter((v) => v.differenceUnits !== null && v.differenceUnits !== 0n)
        .map((v) => ({ vault: v.vault, differenceUnits: String(v.differenceUnits) })),
      gaps: [...gapsOf(earlier, true), ...gapsOf(statement.vaults, false)],
      prunedHistory: prunedHistory.filter((p) => !problems.has(p.vault)),
      judgedBefore,
      incomplete:
        [
          problems.size === 0
            ? null
            : `ledger: the history of ${problems.size} credit vault(s) is not read through the window's end (${[...problems.values()].join("; ")})`,
          escrow.unread,
        ]
          .filter((part) => part !== null)
          .join("; ") || null,
      ...(escrow.sentBack.length > 0 ? { escrowSentBack: [...new Set(escrow.sentBack)] } : {}),
    };
    marks.set(
      result,
      statement.vaults
        .filter((v) => !problems.has(v.vault))
        .map((v) => ({ vault: v.vault, through: window.to, at: takenAt })),
    );
    return result;
  };

  /**
   * Marks every vault the run judged in full as judged through the window's end: called once
   * the run's summary stands and is not "could not finish", so a later run never skips history
   * whose findings no summary reported. Never lowers a mark.
   */
  async function commit(result: LedgerWindowResult) {
    for (const m of marks.get(result) ?? []) await ledger.markJudged(m.vault, m.through, m.at);
  }

  return Object.assign(check, { commit, escrowFirst });
}

/**
 * What the read past the window's end (`spanEndOf`) is for: the window's end and the 2 s its last
 * jobs' credits headers span, or the latest recording of a job dated in it, recorded after it.
 */
function spanText(to: number, last: number | null): string {
  const past = `the ${SETTLEMENT_CLOCK_SLACK_SECONDS} s`;
  return last === null
    ? `the window's end (${isoOf(to)}) and ${past} its last credits headers span`
    : `the latest recording (${isoOf(last)}) of a job dated in the window ending ${isoOf(to)} and ${past} its credits header spans`;
}

/** Where the lines a run reads past its window's end for the credits headers' spans lie. */
function unreadPastText(span: { last: number | null; through: number }): string {
  return span.last === null
    ? `in the ${SETTLEMENT_CLOCK_SLACK_SECONDS} s after the window's end`
    : `after the window's end through ${isoOf(span.through)}`;
}

/** The statement gave up on a state the ledger held still (see `buildStatement`). */
function movedUnderReads(v: VaultStatement): boolean {
  return (
    v.closingByLedgerUnits !== null && v.closingOnChainUnits !== null && v.differenceUnits === null
  );
}

/**
 * Why a vault's history is not read up to `to`: the chain not listed that far, or transactions
 * listed but not read (RPC trouble, a pruned transaction, an amount beyond what the store holds,
 * a job row another database session holds locked), with the reader's last error on the vault
 * when it recorded one (`listingError`: the listing's, when no line waits for a transaction):
 * the run's reason says which, not only the sync's log.
 */
function unread(v: VaultStatement, to: number, listingError: string | null): string {
  const error = v.unread?.why ?? (listingError === null ? null : withoutUrlSecrets(listingError));
  const why = error ? `, last error: ${error}` : "";
  if (v.readThrough === null || Date.parse(v.readThrough) < to) {
    return `read through ${v.readThrough ?? "nothing"}${why}`;
  }
  return `listed through ${v.readThrough}, with transactions listed but not read (${v.counts.pending} of any time)${why}`;
}

/** How many findings a window's ledger check made (what makes a nightly run exit 1). */
export function ledgerFindingCount(ledger: LedgerWindowResult): number {
  return (
    ledger.unreceiptedDebits.length +
    ledger.unreleasedLocks.length +
    ledger.creditsHeaderMismatches.length +
    ledger.creditsHeaderUndecided.length +
    ledger.foreignMint.length +
    ledger.vaultOwnerChanges.length +
    ledger.vaultDelegateApprovals.length +
    ledger.vaultDelegatesNow.length +
    ledger.vaultOwnersNow.length +
    ledger.mixedJobMemos.length +
    ledger.imbalanced.length +
    ledger.gaps.length +
    ledger.prunedHistory.length
  );
}
