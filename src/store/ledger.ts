import { and, asc, eq, inArray, sql } from "drizzle-orm";
import type { RpcDisagreement } from "../chain/quorum.js";
import type { SqliteStore, Store } from "../db/client.js";
import {
  creditVaults,
  escrowPending,
  escrowScans,
  finalVerdicts,
  jobs,
  ledgerCursors,
} from "../db/schema.js";
import { joinParts, joinSplitSums, splitSum } from "../db/split-sums.js";
import { UNITS_PER_CREDIT } from "../money.js";
import { creditsHeaderMatches as headerMatches } from "../verify/checks/credits.js";
import { keepWithJob, reopenHolders, reopenJobs } from "./job-queue.js";
import {
  type BalanceControl,
  balanceControlOf,
  balanceControlToText,
  type EscrowSteps,
  escrowMemoJobOf,
  escrowStepsOf,
  type ForeignChange,
  type ForeignHolding,
  foreignChangesOf,
  foreignChangesToText,
  foreignHoldingOf,
  foreignHoldingToText,
  gapBetween,
  type HeaderSpanEnd,
  HeaderSpanReading,
  type HealAttempt,
  headerMatchLasts,
  headerSpanCovered,
  headerSpanEnd,
  healedOrder,
  healMakingRoom,
  type JobDebit,
  type JobLockLine,
  jobKeepingLine,
  jobOfUnexplainedDebit,
  jobsALineNames,
  type KeepPair,
  type LineKind,
  laterOf,
  lockOfClosingNamer,
  lockOwner,
  lockTiedToNoVault,
  type MemoJob,
  type MixedMemoLine,
  mayReturnTo,
  memoJobsOf,
  memoJobsOfLine,
  memoJobsToText,
  mixedMemoLineOf,
  namedStepsSelection,
  outstandingOf,
  provisionalLockUnits,
  ROOM_LINES_PER_MOVE,
  settledShareOfLocks,
  settledUnits,
  sharedPaidOut,
  slotChainOrder,
  walkInSlices,
  walkLines,
  walkSync,
  withSharedReturn,
} from "./ledger-rules.js";
import type { HeldRowWaitOptions } from "./pg/group-commit.js";
import { pgTwins } from "./pg-twins.js";
import { perConnectionModule } from "./prepared.js";
import { maxKeptWithPayouts, namedPastVault } from "./receipt-rules.js";
import { writeTurns } from "./write-turns.js";

/**
 * The credit vaults' ledger in the store: `ledger_cursors`, `ledger_lines` and `ledger_daily`
 * (the per-day sums its triggers keep, migration 0006). Every SQL statement of src/ledger lives
 * here. A line's kind is decided when its transaction is read, in the same transaction that
 * writes it (so the per-day sums follow at once):
 *
 * - `lock`: money out by the escrow transaction of a recorded job (its receipt names the
 *   signature, or its jobs-API answer does where the receipt names no escrow) that can pay from
 *   this vault (`canPayFrom`);
 * - `return`: money in whose settle or refund memo names a recorded job that names it as its
 *   settlement, or a job whose lock this vault paid (receipted or not). A credit without that
 *   memo is no job's return, whatever a jobs API names: honest settlements and refunds carry
 *   it (the verifier fails `*.memo` otherwise), and a top-up named as a settlement would
 *   otherwise release a lock never settled;
 * - `deposit`: any other money in (a top-up);
 * - `unexplained`: any other money out: an `unreceipted_debit`;
 * - `none`: the transaction named the vault but moved none of its money.
 *
 * A receipt recorded after the line was read can still explain it: `unexplained` and `deposit`
 * lines (few) are classified again by every ledger round (`review`, which writes the change) and
 * every statement (`reviewLines`, which only reads); so are open locks by every ledger round (a
 * pin set since can show the job does not pay from this vault).
 *
 * A lock is released when the job's returns to the vault plus what its settlement paid out
 * account for it (`outstandingOf`), not by any money back that names the job; what a settlement
 * paid out never accounts for a debit that is no lock.
 */

/** Where a vault's listing stands (see `ledgerCursors` in src/db/schema.ts). */
export interface LedgerCursor {
  vault: string;
  newestSignature: string | null;
  newestSlot: number | null;
  syncTop: string | null;
  syncTopSlot: number | null;
  syncBefore: string | null;
  /**
   * The slot of the line `syncBefore` names (stored by the sync's last page): no entry the
   * sync's next page lists can be later. Null when no sync is under way.
   */
  syncBeforeSlot: number | null;
  syncNumber: number;
  syncIndex: number;
}

/**
 * A line read but left listed: it is kept with a job whose row another database session holds
 * locked (PostgreSQL), and is read again, and kept, once the row is free.
 */
export interface LineWaiting {
  signature: string;
  jobId: string;
}

/** One entry of a getSignaturesForAddress page. */
export interface ListedSignature {
  signature: string;
  slot: number;
  blockTime: number | null;
  err: unknown;
}

/** What a read transaction says about one vault line. */
export interface LineRead {
  signature: string;
  /**
   * The slot of the transaction as read: the line is placed by it from then on. A listing's
   * slot is the node's claim alone (one listing an old transaction as new at a slot above the
   * newest line's kept it above lines the chain ran after it, for good). Null keeps the
   * listing's slot.
   */
  slot?: number | null;
  /**
   * The block time of the transaction as read (under the quorum, when there is one): the line
   * is filed under it from then on. A listing's time may rest on one endpoint alone (one that
   * dated a debit two days early moved it out of its period). Null keeps the listing's time.
   */
  blockTime: number | null;
  succeeded: boolean;
  pre: bigint | null;
  post: bigint | null;
  delta: bigint;
  memo: string | null;
  memoKind: "escrow" | "settle" | "refund" | null;
  memoJobId: string | null;
  /**
   * Every distinct step and job the memos name, when they name more than one (first memo
   * first), else null: the line is judged with each, and is a statement finding.
   */
  memoJobs?: MemoJob[] | null;
  /** The vault address's changes in any other mint or token program; null when none. */
  foreign?: ForeignChange[] | null;
  /** The transaction created the vault's token account; null when not known. */
  opened?: boolean | null;
  /**
   * The vault's owner after the transaction when it is not the escrow authority (the reader
   * judges it against the profile), else null.
   */
  otherOwner?: string | null;
  /**
   * The vault's owner after the transaction whenever the transaction shows it (its token
   * balances name the vault), whoever it is; null when it does not (no token program among its
   * keys, so no token balances at all): unknown, never "the escrow authority".
   */
  ownerAfter?: string | null;
  /**
   * The delegate an Approve or ApproveChecked naming the vault gave it in the transaction
   * (the reader names it, see `ledgerLines.delegate`), else null.
   */
  delegate?: string | null;
  /**
   * Money out of the vault beyond the line's net debit, moved by its transfers and burns from
   * the vault and hidden by money in of the same transaction, else null (see
   * `ledgerLines.hiddenDebitUnits`).
   */
  hiddenDebit?: bigint | null;
  /**
   * Money into the vault that escrow did not pay in, when the net credit holds any, else null
   * (`ledgerLines.depositInUnits`): a deposit, whatever job the line's memo names.
   */
  depositIn?: bigint | null;
  /**
   * Why the entry is no line of the vault's, when its transaction's signature proves it (see
   * `ledgerLines.setAside`): read as moving nothing, and named by the statement. Else null.
   */
  setAside?: string | null;
}

export type { ForeignChange, ForeignHolding, LineKind, MemoJob, MixedMemoLine };

/** A line whose transaction moved the vault's address in another mint. */
export interface ForeignLine {
  signature: string;
  slot: number;
  blockTime: number | null;
  memo: string | null;
  memoJobId: string | null;
  changes: ForeignChange[];
}

/** A line after whose transaction the vault's owner was not the escrow authority. */
export interface OwnerLine {
  signature: string;
  slot: number;
  blockTime: number | null;
  memo: string | null;
  memoJobId: string | null;
  owner: string;
}

/** A line whose transaction gave the vault a delegate (Approve or ApproveChecked). */
export interface DelegateLine {
  signature: string;
  slot: number;
  blockTime: number | null;
  memo: string | null;
  memoJobId: string | null;
  delegate: string;
}

/** A line whose transaction paid money out of the vault that its money in hid. */
export interface HiddenDebitLine {
  signature: string;
  slot: number;
  blockTime: number | null;
  memo: string | null;
  memoJobId: string | null;
  /** The line's net change (what the balances show). */
  deltaUnits: bigint;
  /** What left the vault beyond the net debit (positive). */
  hiddenUnits: bigint;
}

/** A listed entry set aside as no line of the vault's (`LineRead.setAside`). */
export interface SetAsideLine {
  signature: string;
  slot: number;
  blockTime: number | null;
  why: string;
}

/** A transaction fetched over RPC, stored once in `chain_transactions` (shared with the verifier). */
export interface FetchedTransaction {
  signature: string;
  slot: number;
  blockTime: number | null;
  fee: bigint | number;
  succeeded: boolean;
  /** JSON texts. */
  err: string;
  facts: string;
  raw: string;
}

/** A line as the statement reads it; amounts exact. */
export interface LedgerLineRow {
  signature: string;
  ord: number;
  slot: number;
  blockTime: number | null;
  preUnits: bigint | null;
  postUnits: bigint | null;
  deltaUnits: bigint;
  memo: string | null;
  memoKind: "escrow" | "settle" | "refund" | null;
  memoJobId: string | null;
  /** Every step and job the memos name when they name several (`LineRead.memoJobs`). */
  memoJobs?: MemoJob[] | null;
  kind: LineKind | null;
  jobId: string | null;
  /** Money in that escrow did not pay (`LineRead.depositIn`); null when none or not known. */
  depositInUnits?: bigint | null;
}

/** A lock past its due time, with what of it nothing has accounted for yet. */
export interface OverdueLock extends LedgerLineRow {
  outstandingUnits: bigint;
}

/** A line to look at again, with what it is by the receipts recorded now. */
export interface ReviewedLine extends LedgerLineRow {
  now: { kind: LineKind; jobId: string | null };
}

/** Two consecutive movements whose balances do not chain. */
/** The two lines around a gap, by signature: the movement before it and the one after. */
/** A vault's line that is a job's lock (`LedgerStore.lockLinesOf`). */
export interface VaultLockLine {
  signature: string;
  jobId: string;
}

export interface GapLines {
  afterSignature: string;
  beforeSignature: string;
}

export interface StoredGap {
  afterSignature: string;
  beforeSignature: string;
  fromSlot: number;
  toSlot: number;
  missingUnits: bigint;
}

/** A recorded job's credits header against the vault's balances from its lock to its response. */
export interface HeaderCheck {
  jobId: string;
  headerUnits: bigint;
  /** The balances the vault held in that span, oldest first (up to the first that matched). */
  balancesUnits: bigint[];
  matched: boolean;
  /** Every line up to the response is read: a header that matched nothing will match nothing. */
  decided: boolean;
  /** A match stays one whatever is read later (`headerMatchLasts`). */
  lasting: boolean;
}

/**
 * The balances of a header's span (`HeaderSpanReading`), how many first ones surely came
 * before the response, and whether the span is read in full (or, with a header that matched,
 * every line up to its balance is read).
 */
export interface HeaderSpan {
  end: HeaderSpanEnd;
  balances: bigint[];
  ordered: number;
  covered: boolean;
}

/** A span as the verifier's `credits.header` reads it (`CreditsSpan` without the vault). */
export interface CreditSpan {
  balancesUnits: bigint[];
  ordered: number;
  covered: boolean;
}

/** Figures of the cursor the statement uses. */
export interface CursorFigures {
  syncedAt: number | null;
  /**
   * Every transaction with a block time before this instant (ms, whole seconds) is listed: the
   * chain's finalized time when the last completed sync began. Null until a sync records it.
   */
  finalThrough: number | null;
  balanceUnits: bigint | null;
  balanceSlot: number | null;
  /** At the balance read, the address held this instead of credits (`balanceUnits` is 0). */
  balanceForeign: ForeignHolding | null;
  /** Who else than the escrow authority may spend the vault, at the last balance read. */
  balanceControl: BalanceControl | null;
  /** Newest slot listed: the top of the sync in progress, else of the last completed one. */
  newestSlot: number | null;
  /** How far a nightly run has judged the vault's history (ms); null while never judged. */
  judgedThrough: number | null;
  /** When that run took its statements (local clock, ms); null before it was kept. */
  judgedAt: number | null;
  /**
   * The reader's last error on the vault (a sync that failed, or lines it left unread for an
   * amount beyond what the store holds), cleared when a sync lists its pages again; else null.
   */
  lastError: string | null;
}

/** A line listed after a vault's last judgement, with a block time before `judged_through`. */
export interface LateLine {
  signature: string;
  /** Seconds. */
  blockTime: number;
}

/** The oldest line listed for a vault: where the history the ledger holds begins. */
export interface HistoryStart {
  signature: string;
  slot: number;
  blockTime: number | null;
  /** The line's transaction is read. */
  read: boolean;
  /** Its transaction created the vault's account (true), did not (false), not known (null). */
  opened: boolean | null;
}

/** Lines and their sum per kind over a period. */
export type KindSums = Record<LineKind, { lines: number; units: bigint }>;

/** What one `review` round changed. */
export interface ReviewResult {
  /** Lines classified for the first time (read before migration 0006) or classified anew. */
  classified: number;
  /** Locks found released: their returns and settlement account for them (`outstandingOf`). */
  released: number;
  /** Locks whose credits header was decided. */
  headersDecided: number;
  /**
   * Jobs with a final verdict whose `credits.header` waited for this vault's ledger and matches
   * no balance of their span, now read in full: reopened, so the verifier fails the check.
   */
  reopened: number;
  /** Such jobs whose header matches a balance: the check passes in place, the verdict stands. */
  headersPassed: number;
  /** Gaps found by the walk. */
  gaps: number;
}

/** How long one review write transaction decides credits headers before it commits. */
const HEADER_BATCH_MS = 20;
/**
 * How long one review write transaction files lines again, or releases locks, before it
 * commits: a vault of a thousand open locks held SQLite's write lock 1.4 s in one.
 */
const REVIEW_BATCH_MS = 40;
/** A review's steps over the vault's lines, in order (see `review` of the SQLite store). */
type ReviewStep = "unclassified" | "review" | "mixed" | "locks";
/** What a review's batches add to as they go. */
interface ReviewWork {
  result: ReviewResult;
  /** The jobs a lock is filed under after the `locks` step: their locks may be accounted for. */
  openJobs: Set<string>;
}
/** Lines a review's walk reads at a time (`walkLines`), and looks over for one out of slot order
 * first: a few ms of SQLite's. */
const WALK_PAGE = 2000;

/** The lines of one slot around a gap (see `LedgerStore.slotAround`). */
export interface SlotAround {
  slot: number;
  signatures: string[];
  above: string | null;
  below: string | null;
}

/** Where a review's header decisions go on: after this lock's ord, then after this job id. */
interface HeaderPlace {
  lockOrd: bigint;
  /** Null while the vault's locks are decided; "" from the first waiting job on. */
  jobId: string | null;
}

/**
 * A header of h whole credits matches a balance b (base units) when h <= b < h + 1 credit:
 * `x-decentral-credits-remaining` is the balance rounded down to whole credits. One rule for
 * the statement's finding and the verifier's `credits.header` check.
 */
export { UNITS_PER_CREDIT } from "../money.js";
export { creditsHeaderMatches as headerMatches } from "../verify/checks/credits.js";

/** Orders lines: one sync's lines sit between the previous sync's and the next one's. */
const ORD_SPAN = 1_000_000_000;
const DAY = 86_400;

export interface LedgerStore {
  /** Vaults pinned to API keys (`credit_vaults`), sorted. */
  pinnedVaults(): Promise<string[]>;
  /** Every vault a statement covers: the ledger's and the pinned ones, sorted. */
  statementVaults(): Promise<string[]>;
  /** Fingerprints of the API keys pinned to a vault. */
  keysOf(vault: string): Promise<string[]>;
  /** The vault's cursor, created empty the first time. */
  cursor(vault: string, now: number): Promise<LedgerCursor>;
  /**
   * Stores one listed page with the cursor's move, in one IMMEDIATE transaction. Returns false
   * when the cursor moved since `seen` was read: another process stored this page first.
   * `finalThrough` is the block time (ms) of the chain's finalized slot read before the page was
   * asked for: the first page of a sync keeps it, and the sync's last page makes it the
   * cursor's `finalThrough` (a sync another process began keeps the time read before its own
   * first page, which fixed the newest signature it lists).
   */
  storePage(
    vault: string,
    seen: LedgerCursor,
    page: readonly ListedSignature[],
    last: boolean,
    now: number,
    finalThrough?: number | null,
  ): Promise<boolean>;
  /**
   * The vault's gaps the walk stored (a movement whose balance before is not the one before
   * it's after), newest first, at most `limit`: the two lines around each, by signature.
   */
  storedGaps(vault: string, limit: number): Promise<GapLines[]>;
  /** Which of `signatures` the vault holds a line of. */
  heldLines(vault: string, signatures: readonly string[]): Promise<Set<string>>;
  /**
   * Where the listing of the vault's held history stands: the line its next page goes on below
   * (null: the newest), kept across processes.
   */
  relistBelow(vault: string): Promise<string | null>;
  /** Stores where the listing of the vault's held history stands (its cursor exists). */
  setRelistBelow(vault: string, below: string | null): Promise<void>;
  /** The vault's line just below the line of `signature` in its order, or null (none, or not held). */
  lineBelow(vault: string, signature: string): Promise<string | null>;
  /** Whether `signature` is among the vault's `lines` lines just below the line of `top`. */
  heldWithinBelow(vault: string, top: string, signature: string, lines: number): Promise<boolean>;
  /**
   * Inserts the entries of `listing` (what the chain lists between a gap's two lines, newest
   * first) the vault does not hold, in chain order between them, in one write transaction; the
   * walk then compares the lines from the earlier one again. When they do not fit between the
   * two, the lines above move up first, a slice per transaction (`healMakingRoom`; stops when
   * `signal` aborts). Nothing while a sync is listing (its pages go on from the cursor's ords),
   * when the two lines are no longer both held, or the listing holds nothing new. Returns the
   * lines inserted.
   */
  healGap(
    vault: string,
    gap: GapLines,
    listing: readonly ListedSignature[],
    now: number,
    signal?: AbortSignal,
  ): Promise<number>;
  /**
   * When a gap's two lines are of one slot and that slot's lines are held together: the slot,
   * its lines' signatures (ord order), and the lines just above and below them (null: none).
   */
  slotAround(vault: string, gap: GapLines): Promise<SlotAround | null>;
  /**
   * Puts the lines of the slot holding both of a gap's lines in `order` (the chain's, as a
   * listing gives it, oldest first) when their balances chain in it (`slotChainOrder`), in one
   * write transaction; the walk then compares the lines from below the slot again. Nothing
   * while a sync is listing, when the slot's lines are not together, the newest line is among
   * them, or no movement above them is read. Returns whether lines moved.
   */
  reorderSlot(vault: string, gap: GapLines, order: readonly string[]): Promise<boolean>;
  /**
   * Signatures listed and not read yet, oldest first; with `throughSec`, only those whose
   * listed block time is at most it (or not known).
   */
  listedSignatures(vault: string, throughSec?: number): Promise<string[]>;
  /** A transaction the verifier or an earlier read already fetched, as stored. */
  storedTransaction(
    signature: string,
  ): Promise<{ signature: string; facts: string; raw: string | null } | undefined>;
  /**
   * `storedTransaction` of each of `signatures`, by signature (those not stored, or stored
   * without facts, absent): one read for a part of the reader's listing, not one per line.
   */
  storedTransactions(
    signatures: readonly string[],
  ): Promise<Map<string, { signature: string; facts: string; raw: string | null }>>;
  /**
   * The vault's locks of `jobIds` as read so far: its debits under one's escrow memo, and the
   * lines kept with one as its lock (the signature, and the job). Where the profile names no
   * escrow, what they credited is how escrow is known (see `depositInOf`).
   */
  lockLinesOf(vault: string, jobIds: readonly string[]): Promise<VaultLockLine[]>;
  /**
   * Writes read lines (oldest first) with the transactions fetched for them, classifying each
   * and marking the locks their returns release, in one IMMEDIATE transaction.
   */
  recordReads(
    vault: string,
    reads: readonly LineRead[],
    fetched: readonly FetchedTransaction[],
    now: number,
  ): Promise<LineWaiting[]>;
  /** Highest slot listed for the vault, or null. */
  newestListedSlot(vault: string): Promise<number | null>;
  /** The balance read; `foreign` what the address held when it was not credits. */
  setBalance(
    vault: string,
    balance: { amount: bigint; slot: number; foreign?: ForeignHolding | null },
    at: number,
  ): Promise<void>;
  /**
   * Who else than the escrow authority may spend the vault, as the balance read found it (null:
   * nobody, or the address holds no credit account): kept on every read, whether or not the
   * balance itself is kept, so the statement says what the nightly run's read says.
   */
  setControl(vault: string, control: BalanceControl | null, at: number): Promise<void>;
  setError(vault: string, message: string, at: number): Promise<void>;
  /**
   * After a read: classifies lines read without a kind, classifies `unexplained` and `deposit`
   * lines and open locks again, releases the locks their returns and settlement account for,
   * decides the credits header of new locks, walks new movements for gaps, and reopens the jobs
   * whose `credits.header` waited for the ledger to read this far (`reopenJobs`). On SQLite in
   * short write transactions one after another, each line (or each job's release) judged whole
   * in one from what is committed; on PostgreSQL the filing and releases in one transaction.
   */
  review(vault: string, now?: number): Promise<ReviewResult>;
  /**
   * For the verifier's `credits.header`: per job, the balances of `vault` after each line from
   * the job's lock (`lockTx`) through its response (`recordedAt` and `respondedAt`, ms;
   * `headerSpanEnd`), how many
   * first ones surely came before the response, and whether the ledger has read that whole span
   * (the chain had finalized past its last second when it was listed). A lock the ledger has not
   * read gives no balance, not covered.
   */
  creditSpans(
    requests: readonly {
      jobId: string;
      vault: string;
      lockTx: string;
      recordedAt: number;
      /** When the response came (`jobs.responded_at`), null when not known. */
      respondedAt: number | null;
      /** The settlement the receipt names (`headerSpanEnd`); none when absent. */
      settlementTx?: string | null;
    }[],
  ): Promise<Map<string, CreditSpan>>;
  /**
   * The least recent `final_through` of any vault (0 for one never read through a time), null
   * with no vault. Not `synced_at`: a sync with no block time lists but proves no time.
   */
  oldestFinalThrough(): Promise<number | null>;
  /**
   * Raises the vault's `judged_through` to `through` (ms) and `judged_at` to `at` (when the run
   * took its statements), never lowers either: two nightly runs at once keep the later marks.
   */
  markJudged(vault: string, through: number, at: number): Promise<void>;
  /**
   * The vault's lines listed after `since` (ms, `listed_at`) whose block time is before
   * `beforeSec`: no statement of the run that judged that time held them.
   */
  listedSince(vault: string, since: number, beforeSec: number): Promise<LateLine[]>;
  /** The vault's oldest line listed, or null when none is. */
  historyStart(vault: string): Promise<HistoryStart | null>;
  /** Records whether a read line's transaction created the vault's account. */
  setOpened(vault: string, signature: string, opened: boolean): Promise<void>;

  /**
   * The latest recording time (ms) of the jobs dated in [from, to) recorded at or after `to`
   * (an ingest or import after the window's end), or null when none is: their credits headers
   * span the vaults' lines up to 2 s past it. Read by the partial index `jobs_recorded_late`.
   */
  latestRecordedAfter(from: number, to: number): Promise<number | null>;
  /**
   * The earliest date (ms) of the jobs recorded in [from, to) and dated before `from` (an
   * import, a receipt ingested late: the window counts them), or null when none is. Read by the
   * partial index `jobs_recorded_late`.
   */
  earliestDatedBefore(from: number, to: number): Promise<number | null>;
  /**
   * How many jobs are dated in [from, to), whenever and by whatever clock they were recorded: a
   * count that grows only as jobs are recorded into the window (`jobs_created_at`).
   */
  countDatedIn(from: number, to: number): Promise<number>;
  // What a statement reads (whole seconds: [fromSec, toSec)).
  cursorFigures(vault: string): Promise<CursorFigures | undefined>;
  /** Opening balance at `fromSec` (first movement's balance before + every delta before), or null. */
  openingUnits(vault: string, fromSec: number): Promise<bigint | null>;
  /** Lines and sums per kind stored for the period: whole days from `ledger_daily`. */
  periodSums(vault: string, fromSec: number, toSec: number): Promise<KindSums>;
  /**
   * Lines listed and not read yet: in the period, those not in its per-kind sums (a line a
   * migration listed again keeps its kind, and is counted there until it is read again); up to
   * its end (or of unknown time), with
   * lines read but not classified yet, which the next ledger round classifies: what keeps the
   * period from being read; and in the whole history, likewise.
   */
  pendingCounts(
    vault: string,
    fromSec: number,
    toSec: number,
  ): Promise<{ inPeriod: number; upTo: number; all: number }>;
  /** `unexplained` and `deposit` lines of the period, with what they are now. */
  reviewLines(vault: string, fromSec: number, toSec: number): Promise<ReviewedLine[]>;
  /**
   * Locks of the period not released by the line flags whose due time (`block time + windowSeconds`)
   * is before `asOfSec`, checked again now (a return or settlement recorded since), each with
   * what is still out of it (`outstandingOf`). Extra locks (lines a late receipt turned into
   * locks) are checked the same way.
   */
  overdueLocks(
    vault: string,
    fromSec: number,
    toSec: number,
    windowSeconds: number,
    asOfSec: number,
    extra?: readonly LedgerLineRow[],
  ): Promise<OverdueLock[]>;
  /** Credits-header checks of the period's locks not known to match (stored or new ones). */
  headerChecks(
    vault: string,
    fromSec: number,
    toSec: number,
    extra?: readonly LedgerLineRow[],
  ): Promise<HeaderCheck[]>;
  /** Lines of the period that moved the vault's address in another mint, oldest first. */
  foreignLines(vault: string, fromSec: number, toSec: number): Promise<ForeignLine[]>;
  /**
   * Lines of the period after whose transaction the vault's owner was not the escrow
   * authority, oldest first.
   */
  ownerLines(vault: string, fromSec: number, toSec: number): Promise<OwnerLine[]>;
  /**
   * The vault's newest read line (by `ord`) whose owner after its transaction is known, when
   * that owner was not the escrow authority: the vault is another's now, whatever period a
   * statement covers. A later line that does not show the owner (a SOL transfer carries no
   * token balances) leaves it so. Of the lines read before owner_after was kept, those naming
   * another owner know it (migration 0024); the others know none.
   */
  ownerNow(vault: string): Promise<OwnerLine | null>;
  /**
   * The vault's newest read line whose owner after its transaction is known (the escrow
   * authority's or another's), its signature and listed slot, else null: a balance read older
   * than its transaction says less. The slot is the listing's, which a node may make up.
   */
  ownerShownLine(vault: string): Promise<{ signature: string; slot: number } | null>;
  /**
   * Lines of the period that moved the vault's money under memos naming several jobs (or
   * several steps of one), oldest first.
   */
  mixedMemoLines(vault: string, fromSec: number, toSec: number): Promise<MixedMemoLine[]>;
  /** Lines of the period whose transaction gave the vault a delegate, oldest first. */
  delegateLines(vault: string, fromSec: number, toSec: number): Promise<DelegateLine[]>;
  /** Lines of the period that paid money out of the vault hidden by money in, oldest first. */
  hiddenDebitLines(vault: string, fromSec: number, toSec: number): Promise<HiddenDebitLine[]>;
  /**
   * Entries of the period set aside as no line of the vault's, oldest first. One with no block
   * time (the node gave none) is in each period it may be of: dated between the nearest dated
   * lines below and above it, so in every period that those times leave open.
   */
  setAsideLines(vault: string, fromSec: number, toSec: number): Promise<SetAsideLine[]>;
  /** Gaps between movements whose later line is in the period. */
  gaps(vault: string, fromSec: number, toSec: number): Promise<StoredGap[]>;
  /**
   * The chain's balance at `toSec`: the balance before the first movement at or after it, else
   * the balance after the last movement before it.
   */
  movementAround(
    vault: string,
    toSec: number,
  ): Promise<{ next: bigint | null; last: bigint | null }>;
  /** The balance after the last movement read before `toSec`; null when none. */
  lastMovementBefore(vault: string, toSec: number): Promise<bigint | null>;
  /** The vault's newest movement read (in the chain's order), null when none. */
  newestMovement(vault: string): Promise<NewestMovement | null>;
  /** Where the escrow vault's memo scan stands (src/ledger/escrow-scan.ts); null before its first. */
  escrowScanOf(vault: string): Promise<EscrowScanState | null>;
  /**
   * How far the escrow scan of `vault` has read, and which of `jobIds` have entries held
   * pending (a payout the scan has not judged yet): what a clean verdict waits for.
   */
  escrowCoverage(vault: string, jobIds: readonly string[]): Promise<EscrowCoverage>;
  /**
   * The entries of `vault` (the profile's escrow vault: one of a vault no longer scanned is
   * fetched again by no scan) held for `jobIds` whose transaction no endpoint served when the scan last asked
   * (`escrow_pending.unread`), by job: a payout out of escrow under the job's memo may be among
   * them, so the job is not judged meanwhile.
   */
  escrowUnread(vault: string, jobIds: readonly string[]): Promise<Map<string, EscrowUnread[]>>;
  /** When the earliest recorded job was dated (ms), null with none: how far a first scan reads. */
  earliestJobAt(): Promise<number | null>;
  /**
   * Of `pairs` (a transaction and a job its memo names), as `escrowStepsOf` splits them: those
   * of recorded jobs that neither name the transaction nor keep it already, by whether the job
   * names its closing step yet, and those of jobs not recorded. One read.
   */
  unnamedSteps(pairs: readonly KeepPair[]): Promise<EscrowSteps>;
  /** When the escrow scan of `vault` last wrote (ms, null before its first) and what it holds. */
  escrowScanFigures(vault: string): Promise<{ scannedAt: number | null; pending: number }>;
  /**
   * Up to `limit` of `vault`'s pending escrow entries ready to be judged, oldest first, after
   * `after` (a page's last row, null for the first): their job is recorded now and names its
   * closing step, or they were held since before `unclosedBefore` (ms). Not those a recorded
   * job's own step holds (`escrow_pending.named_by`): the job's claim judges them.
   */
  pendingEscrowSteps(
    vault: string,
    limit: number,
    unclosedBefore: number,
    after: PendingEscrowStep | null,
  ): Promise<PendingEscrowStep[]>;
  /**
   * Up to `limit` of the signatures jobs named past their kept conflict signatures (held under
   * `namedPastVault`), those not fetched yet first, then oldest first: for the escrow scan to
   * read, and keep those that paid out
   * of escrow or of the job's credit vault (`creditVault`: its key's pinned vault, null when none
   * is; never the vault a receipt declares, which is the operator's word).
   */
  namedPastSteps(limit: number): Promise<NamedPastStep[]>;
  /**
   * In one transaction: keeps each of `change.keep` with its job, guarded as a ledger line's
   * (`keepWithJob`: up to `maxKeptWithPayouts`, none the job names: each paid out of escrow or
   * of the job's vault), and sends the jobs that gained one back to the verifier; holds
   * `change.hold` as pending (a row already held keeps its first listing time; an `unread` one
   * writes why), drops `change.release` (rows of `vault`) and `change.releasePast` (rows named
   * past a job's kept signatures), every pending row of `vault` listed before
   * `change.pruneBefore` but the unread ones and those a recorded job's own step holds
   * (`namedBy`), and every one named past a job's kept signatures
   * held since before then that was fetched and not served (`change.unreadPast` marks those);
   * with `state`, writes where the scan of `vault` stands.
   * A job whose entry turned unread, or whose unread entry was dropped, goes back to the
   * verifier too (`unreadChanged`). Returns the jobs that gained.
   */
  keepEscrowSteps(
    vault: string,
    change: EscrowScanChange,
    state: EscrowScanState | null,
    now: number,
  ): Promise<{ gained: string[]; unreadChanged: string[] }>;
}

/**
 * A pending escrow entry, with when it was first held (its place in the pending pages). Not one
 * a recorded job's own step holds (`escrow_pending.named_by`): its job's claim judges those.
 */
export interface PendingEscrowStep extends KeepPair {
  listedAt: number;
}

/** A signature a job named past its kept ones, held for the escrow scan, and the job's vault. */
export interface NamedPastStep extends KeepPair {
  creditVault: string | null;
}

/** An escrow entry of a recorded job whose transaction no endpoint served when last asked. */
export interface EscrowUnread {
  signature: string;
  /** The last fetch's error, or that k endpoints answered "not found". */
  reason: string;
  /** The endpoints' answers when they disagreed on it (an `RpcDisagreement`), else null. */
  disagreement: RpcDisagreement | null;
}

/**
 * An entry held pending: `unread` when its job is recorded and its transaction not served;
 * `namedBy` the recorded job whose own step it is (read final by the verifier), when it is one:
 * such a row is not pruned (`escrow_pending.named_by`).
 */
export type HeldEscrowStep = KeepPair & {
  blockTime: number | null;
  unread?: Omit<EscrowUnread, "signature">;
  namedBy?: string;
};

/** What one step of the escrow scan writes (`keepEscrowSteps`). */
export interface EscrowScanChange {
  keep: readonly KeepPair[];
  hold: readonly HeldEscrowStep[];
  release: readonly KeepPair[];
  /**
   * Signatures named past a job's kept ones that were fetched and not served, with why: they go
   * behind the ones not fetched yet, and may be pruned an hour after they were named.
   */
  unreadPast?: readonly (KeepPair & { reason: string })[];
  /**
   * Signatures named past a job's kept ones that were read: they go. `release` drops only rows
   * of the scanned vault: a listing entry under the job's memo read and not kept (a second lock
   * paid into escrow) dropped the one named past too, unread by its rule (out of the key's vault).
   */
  releasePast?: readonly KeepPair[];
  pruneBefore: number;
}

/**
 * Where a scan of the escrow vault's memos stands: the newest entry of the last completed scan
 * (`until` of the next, null before one), and the scan in progress, listed newest first: its
 * first entry (`syncTop`, the cursor once it completes) and the oldest it judged (`syncBefore`).
 */
export interface EscrowScanState {
  newestSignature: string | null;
  newestSlot: number | null;
  syncTop: string | null;
  syncTopSlot: number | null;
  syncBefore: string | null;
  /** The finalized slot when the last completed scan began (null before one, or unknown). */
  coveredSlot: number | null;
  /** The same for the scan in progress. */
  syncCoveredSlot: number | null;
}

/**
 * How far the escrow scan has read, for a verdict waiting on it: the finalized slot when its
 * last completed scan began, and the jobs among those asked about with entries held pending.
 */
export interface EscrowCoverage {
  coveredSlot: number | null;
  pending: Set<string>;
  /** When a scan last wrote where it stands (ms); null before any. */
  scannedAt: number | null;
}

/** A vault's newest movement read: where its history ends, and the balance after it. */
export interface NewestMovement {
  signature: string;
  slot: number;
  /** Seconds; null when the node gave none. */
  blockTime: number | null;
  postUnits: bigint | null;
}

type Big = bigint | null;
interface LineDb {
  signature: string;
  ord: bigint;
  slot: bigint;
  block_time: Big;
  pre_units: Big;
  post_units: Big;
  delta_units: Big;
  memo: string | null;
  memo_kind: "escrow" | "settle" | "refund" | null;
  memo_job_id: string | null;
  memo_jobs: string | null;
  kind: LineKind | null;
  job_id: string | null;
  deposit_in_units: Big;
  state?: "listed" | "read";
  succeeded?: bigint | null;
}

const num = (v: Big) => (v === null ? null : Number(v));
const LINE_COLUMNS = `signature, ord, slot, block_time, pre_units, post_units, delta_units, memo,
  memo_kind, memo_job_id, memo_jobs, kind, job_id, deposit_in_units`;

function toLine(r: LineDb): LedgerLineRow {
  return {
    signature: r.signature,
    ord: Number(r.ord),
    slot: Number(r.slot),
    blockTime: num(r.block_time),
    preUnits: r.pre_units,
    postUnits: r.post_units,
    deltaUnits: r.delta_units ?? 0n,
    memo: r.memo,
    memoKind: r.memo_kind,
    memoJobId: r.memo_job_id,
    memoJobs: memoJobsOf(r.memo_jobs),
    kind: r.kind,
    jobId: r.job_id,
    // Only when some: rows read before it was kept, and most lines, hold none.
    ...(r.deposit_in_units === null ? {} : { depositInUnits: r.deposit_in_units }),
  };
}

const emptySums = (): KindSums => ({
  lock: { lines: 0, units: 0n },
  return: { lines: 0, units: 0n },
  deposit: { lines: 0, units: 0n },
  unexplained: { lines: 0, units: 0n },
  none: { lines: 0, units: 0n },
});

/** The columns of a line a statement finding names (its transaction and memo). */
interface FindingRow {
  signature: string;
  slot: bigint;
  block_time: Big;
  memo: string | null;
  memo_job_id: string | null;
}

function findingLineOf(r: FindingRow) {
  return {
    signature: r.signature,
    slot: Number(r.slot),
    blockTime: num(r.block_time),
    memo: r.memo,
    memoJobId: r.memo_job_id,
  };
}

/** The ledger store of either dialect (`options`: PostgreSQL's wait for a held job row). */
export function createLedgerStore(store: Store, options: HeldRowWaitOptions = {}): LedgerStore {
  return store.kind === "postgres"
    ? pgTwins().createPgLedgerStore(store, options)
    : sqliteLedgerStore(store);
}

const sqliteLedgerStore = perConnectionModule(createSqliteLedgerStore);

/** A row of `jobLockLines`. */
interface JobLockDb {
  signature: string;
  vault: string;
  slot: bigint;
  delta_units: bigint;
  facts: string | null;
}

function createSqliteLedgerStore(store: SqliteStore): LedgerStore {
  const { db, sqlite } = store;
  // Its write transactions leave the lock to another process's writer now and then.
  const turns = writeTurns(store);
  // Raw statements below read with safe integers (sums over a whole history, amounts as
  // bigint) or run on the read path of every line, where drizzle's mapping was not needed.
  const big = (text: string) => sqlite.prepare(text).safeIntegers(true);
  /** A statement of one vault's lines' signatures. */
  const signatures = (text: string) => {
    const statement = sqlite.prepare(text).pluck();
    return (vault: string) => statement.all(vault) as string[];
  };

  const pinned = db
    .selectDistinct({ vault: creditVaults.vault })
    .from(creditVaults)
    .orderBy(asc(creditVaults.vault))
    .prepare();
  const keys = db
    .select({ key: creditVaults.keyFingerprint })
    .from(creditVaults)
    .where(eq(creditVaults.vault, sql.placeholder("vault")))
    .orderBy(asc(creditVaults.keyFingerprint))
    .prepare();
  // A UNION of two tables: not expressible with the builder's typed select.
  const everyVault = sqlite
    .prepare("SELECT vault FROM ledger_cursors UNION SELECT vault FROM credit_vaults ORDER BY 1")
    .pluck();
  const insertCursor = db
    .insert(ledgerCursors)
    .values({ vault: sql.placeholder("vault"), updatedAt: sql.placeholder("at") })
    .onConflictDoNothing()
    .prepare();
  const selectCursor = db
    .select({
      vault: ledgerCursors.vault,
      newestSignature: ledgerCursors.newestSignature,
      newestSlot: ledgerCursors.newestSlot,
      syncTop: ledgerCursors.syncTop,
      syncTopSlot: ledgerCursors.syncTopSlot,
      syncBefore: ledgerCursors.syncBefore,
      // Named with their table: the builder writes a column of the one table selected from
      // bare ("vault"), which inside this subquery is ledger_lines' own, so it matched every line
      // of every vault and read them all (SQLite: a scan of ledger_lines at every cursor read).
      syncBeforeSlot: sql<number | null>`(SELECT slot FROM ledger_lines
        WHERE ledger_lines.vault = ledger_cursors.vault
          AND ledger_lines.signature = ledger_cursors.sync_before)`.mapWith(Number),
      syncNumber: ledgerCursors.syncNumber,
      syncIndex: ledgerCursors.syncIndex,
    })
    .from(ledgerCursors)
    .where(eq(ledgerCursors.vault, sql.placeholder("vault")))
    .prepare();
  const setBalance = db
    .update(ledgerCursors)
    .set({
      balanceUnits: sql`${sql.placeholder("amount")}`,
      balanceSlot: sql`${sql.placeholder("slot")}`,
      balanceAt: sql`${sql.placeholder("at")}`,
      balanceForeign: sql`${sql.placeholder("foreign")}`,
      updatedAt: sql`${sql.placeholder("at")}`,
    })
    .where(eq(ledgerCursors.vault, sql.placeholder("vault")))
    .prepare();
  const setControl = db
    .update(ledgerCursors)
    .set({
      balanceControl: sql`${sql.placeholder("control")}`,
      updatedAt: sql`${sql.placeholder("at")}`,
    })
    .where(eq(ledgerCursors.vault, sql.placeholder("vault")))
    .prepare();
  const setError = db
    .update(ledgerCursors)
    .set({
      lastError: sql`${sql.placeholder("message")}`,
      updatedAt: sql`${sql.placeholder("at")}`,
    })
    .where(eq(ledgerCursors.vault, sql.placeholder("vault")))
    .prepare();

  // The listing's hot path: one insert per signature, up to 1,000 per page.
  const insertLine = sqlite.prepare(
    `INSERT INTO ledger_lines (vault, signature, ord, slot, block_time, succeeded, listed_at)
     VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (vault, signature) DO NOTHING`,
  );
  const advance = sqlite.prepare(
    `UPDATE ledger_cursors SET sync_top = ?, sync_top_slot = ?, sync_before = ?,
       sync_index = ?, pages_read = pages_read + 1, last_error = NULL, updated_at = ?
     WHERE vault = ?`,
  );
  const complete = sqlite.prepare(
    `UPDATE ledger_cursors SET newest_signature = ?, newest_slot = ?, sync_top = NULL,
       sync_top_slot = NULL, sync_before = NULL, sync_index = 0, sync_number = sync_number + 1,
       pages_read = pages_read + 1, synced_at = ?, final_through = ?, sync_final_through = NULL,
       last_error = NULL, updated_at = ?
     WHERE vault = ?`,
  );
  const setSyncFinal = sqlite.prepare(
    "UPDATE ledger_cursors SET sync_final_through = ? WHERE vault = ?",
  );
  const finalOf = big(
    "SELECT final_through, sync_final_through FROM ledger_cursors WHERE vault = ?",
  );
  const listedLines = sqlite
    .prepare("SELECT signature FROM ledger_lines WHERE vault = ? AND state = 'listed' ORDER BY ord")
    .pluck();
  const listedLinesThrough = sqlite
    .prepare(
      `SELECT signature FROM ledger_lines WHERE vault = ? AND state = 'listed'
         AND (block_time IS NULL OR block_time <= ?) ORDER BY ord`,
    )
    .pluck();
  const storedTx = sqlite.prepare(
    "SELECT signature, facts, raw FROM chain_transactions WHERE signature = ? AND facts IS NOT NULL",
  );
  // The facts alone (a lock's sources), without the raw answer, which is several times larger.
  const storedFacts = sqlite
    .prepare("SELECT facts FROM chain_transactions WHERE signature = ? AND facts IS NOT NULL")
    .pluck();
  // Shared with the verifier: the same row shape it writes once a transaction is finalized; an
  // upsert that keeps a row already holding facts (CASE-free, but its WHERE is on the conflict).
  const upsertTx = sqlite.prepare(
    `INSERT INTO chain_transactions (signature, state, commitment, slot, block_time, fee_lamports,
       succeeded, err, facts, raw, first_seen_at, fetched_at)
     VALUES (?, 'finalized', 'finalized', ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (signature) DO UPDATE SET state = 'finalized', commitment = 'finalized',
       slot = excluded.slot, block_time = excluded.block_time,
       fee_lamports = excluded.fee_lamports, succeeded = excluded.succeeded, err = excluded.err,
       facts = excluded.facts, raw = excluded.raw, fetched_at = excluded.fetched_at
     WHERE chain_transactions.facts IS NULL`,
  );
  // The transactions about to be stored whose row gave them up (dropped, pruned): no row that
  // holds facts is either (see `reopenHolders`). Raw SQL: json_each, as `upsertTx`'s rows.
  const givenUpAmong = sqlite
    .prepare(
      `SELECT signature FROM chain_transactions
       WHERE signature IN (SELECT value FROM json_each(?)) AND state IN ('dropped', 'pruned')`,
    )
    .pluck() as unknown as { all(signatures: string): string[] };
  const readLine = sqlite.prepare(
    `UPDATE ledger_lines SET state = 'read', slot = coalesce(?, slot),
       block_time = coalesce(?, block_time), succeeded = ?,
       pre_units = ?, post_units = ?, delta_units = ?, memo = ?, memo_kind = ?, memo_job_id = ?,
       memo_jobs = ?, foreign_changes = ?, opened = ?, other_owner = ?, owner_after = ?, delegate = ?,
       hidden_debit_units = ?, deposit_in_units = ?, set_aside = ?,
       listed_at = CASE WHEN delta_units IS NOT NULL AND ? IS NOT NULL AND hidden_debit_units IS NOT ?
         THEN ? WHEN ? < block_time THEN ? ELSE listed_at END
     WHERE vault = ? AND signature = ? AND state = 'listed'`,
  );
  // A line set aside is not the vault's newest (the next sync's `until`): the line below it is.
  const newestBelowSetAside = sqlite.prepare(
    `UPDATE ledger_cursors SET (newest_signature, newest_slot) = (
       SELECT b.signature, b.slot FROM ledger_lines a
       JOIN ledger_lines b ON b.vault = a.vault AND b.ord < a.ord AND b.set_aside IS NULL
       WHERE a.vault = ? AND a.signature = ? ORDER BY b.ord DESC LIMIT 1)
     WHERE vault = ? AND newest_signature = ?`,
  );
  // The cursor's slots of a line are its transaction's once read (see `LineRead.slot`).
  const readSlot = sqlite.prepare(
    `UPDATE ledger_cursors SET
       newest_slot = CASE WHEN newest_signature = ? THEN ? ELSE newest_slot END,
       sync_top_slot = CASE WHEN sync_top = ? THEN ? ELSE sync_top_slot END
     WHERE vault = ?`,
  );
  const foreignPeriod = big(
    `SELECT signature, slot, block_time, memo, memo_job_id, foreign_changes FROM ledger_lines
     WHERE vault = ? AND foreign_changes IS NOT NULL AND block_time >= ? AND block_time < ?
     ORDER BY ord`,
  );
  const ownerPeriod = big(
    `SELECT signature, slot, block_time, memo, memo_job_id, other_owner FROM ledger_lines
     WHERE vault = ? AND other_owner IS NOT NULL AND block_time >= ? AND block_time < ?
     ORDER BY ord`,
  );
  // The newest line that knows the vault's owner: one that does not show it (a SOL transfer
  // carries no token balances) says nothing of whose the vault is.
  const newestKnownOwner = big(
    `SELECT signature, slot, block_time, memo, memo_job_id, other_owner FROM ledger_lines
     WHERE vault = ? AND owner_after IS NOT NULL AND state = 'read' ORDER BY ord DESC LIMIT 1`,
  );
  const delegatePeriod = big(
    `SELECT signature, slot, block_time, memo, memo_job_id, delegate FROM ledger_lines
     WHERE vault = ? AND delegate IS NOT NULL AND block_time >= ? AND block_time < ?
     ORDER BY ord`,
  );
  // An entry with no block time is in each period its neighbours' block times leave open (see
  // `setAsideLines`): the nearest dated lines below and above it, in chain order.
  const setAsidePeriod = big(
    `SELECT signature, slot, block_time, set_aside FROM ledger_lines a
       INDEXED BY ledger_lines_set_aside
     WHERE vault = @vault AND set_aside IS NOT NULL AND (
       (block_time >= @from AND block_time < @to)
       OR (block_time IS NULL
         AND coalesce((SELECT b.block_time FROM ledger_lines b WHERE b.vault = a.vault
           AND b.ord < a.ord AND b.block_time IS NOT NULL ORDER BY b.ord DESC LIMIT 1), @from) < @to
         AND coalesce((SELECT b.block_time FROM ledger_lines b WHERE b.vault = a.vault
           AND b.ord > a.ord AND b.block_time IS NOT NULL ORDER BY b.ord LIMIT 1), @from) >= @from))
     ORDER BY ord`,
  );
  const hiddenDebitPeriod = big(
    `SELECT signature, slot, block_time, memo, memo_job_id, delta_units, hidden_debit_units
     FROM ledger_lines INDEXED BY ledger_lines_hidden_debit
     WHERE vault = ? AND hidden_debit_units IS NOT NULL AND block_time >= ? AND block_time < ?
     ORDER BY ord`,
  );
  // Money of the vault moved under memos naming several jobs: the period's findings, and every
  // such line of the vault, judged again each round with each job it names (a job recorded
  // after the line was read is kept with it then).
  const mixedPeriod = big(
    `SELECT ${LINE_COLUMNS} FROM ledger_lines
     WHERE vault = ? AND memo_jobs IS NOT NULL AND block_time >= ? AND block_time < ?
       AND state = 'read' AND delta_units <> 0
     ORDER BY ord`,
  );
  // Each review's few lines of a kind read by their partial indexes (`INDEXED BY`): with no
  // statistics, SQLite took `ledger_lines_order` and read every line of the vault, 0.7 s of a
  // review's write transaction at 200,000 lines.
  const mixedAll = signatures(
    `SELECT signature FROM ledger_lines INDEXED BY ledger_lines_memo_jobs
     WHERE vault = ? AND memo_jobs IS NOT NULL AND state = 'read' AND kind IS NOT NULL
     ORDER BY ord`,
  );
  const newestListedSlot = sqlite
    .prepare("SELECT max(slot) FROM ledger_lines WHERE vault = ?")
    .pluck();

  // Classification: the recorded jobs that name a signature as their lock (with what ties each
  // to a vault, whether the receipt itself names it, and whether the receipt names an escrow at
  // all), or whether the job a credit's memo names names it as its return.
  const lockJobs = sqlite.prepare(
    `SELECT j.job_id, j.key_fingerprint, j.credit_vault, cv.vault AS pinned, 1 AS by_receipt,
       1 AS receipt_escrow
       FROM jobs j LEFT JOIN credit_vaults cv ON cv.key_fingerprint = j.key_fingerprint
       WHERE j.escrow_tx = @sig
     UNION ALL SELECT j.job_id, j.key_fingerprint, j.credit_vault, cv.vault AS pinned, 0,
       j.escrow_tx IS NOT NULL
       FROM jobs j LEFT JOIN credit_vaults cv ON cv.key_fingerprint = j.key_fingerprint
       WHERE j.api_escrow_tx = @sig AND j.api_escrow_tx IS NOT j.escrow_tx`,
  );
  // The jobs naming a debit as their settlement or refund (`lockOfClosingNamer`).
  const closingJobs = sqlite.prepare(
    `SELECT j.job_id, j.key_fingerprint, j.credit_vault, cv.vault AS pinned, 1 AS by_receipt,
       j.escrow_tx IS NOT NULL AS receipt_escrow
       FROM jobs j LEFT JOIN credit_vaults cv ON cv.key_fingerprint = j.key_fingerprint
       WHERE j.settlement_tx = @sig
     UNION ALL SELECT j.job_id, j.key_fingerprint, j.credit_vault, cv.vault AS pinned, 0,
       j.escrow_tx IS NOT NULL
       FROM jobs j LEFT JOIN credit_vaults cv ON cv.key_fingerprint = j.key_fingerprint
       WHERE j.api_settlement_tx = @sig AND j.api_settlement_tx IS NOT j.settlement_tx`,
  );
  const namesReturn = sqlite.prepare(
    `SELECT j.key_fingerprint, j.credit_vault, cv.vault AS pinned
       FROM jobs j LEFT JOIN credit_vaults cv ON cv.key_fingerprint = j.key_fingerprint
       WHERE j.job_id = @job AND (j.settlement_tx = @sig OR j.api_settlement_tx = @sig)`,
  );
  const vaultPinned = sqlite.prepare("SELECT 1 FROM credit_vaults WHERE vault = ? LIMIT 1");
  // The vault paid a lock of the job: a debit with its escrow memo, or its recorded lock.
  // Here and below, a line naming a job in its memo is found by `ledger_lines_memo_job`: the
  // planner took `ledger_lines_vault_memo` instead, whose range on delta_units reads every lock
  // (or return) of the vault for each job, and a ledger review, which asks this per open lock
  // inside its write transaction, held SQLite's write lock for seconds (proxied receipts
  // waited 30 s behind it at 10,000 jobs).
  const lockedHere = sqlite.prepare(
    `SELECT 1 FROM ledger_lines INDEXED BY ledger_lines_memo_job
     WHERE vault = @vault AND memo_kind = 'escrow' AND delta_units < 0 AND memo_job_id = @job
     UNION ALL SELECT 1 FROM ledger_lines WHERE vault = @vault AND job_id = @job AND kind = 'lock'
     LIMIT 1`,
  );
  const setKind = sqlite.prepare(
    "UPDATE ledger_lines SET kind = ?, job_id = ? WHERE vault = ? AND signature = ?",
  );
  // What accounts for a job's debits of a vault (see `outstandingOf`): its debits, the returns
  // the vault took for it, and what its settlement paid out as the verifier read it.
  // Every lock line of a job, in every vault the ledger reads (`settledShareOfLocks`).
  const jobLockLines = big(
    `SELECT l.signature, l.vault, l.slot, l.delta_units, c.facts FROM ledger_lines l
       LEFT JOIN chain_transactions c ON c.signature = l.signature AND c.facts IS NOT NULL
     WHERE l.vault IN (SELECT vault FROM ledger_cursors) AND l.job_id = ? AND l.kind = 'lock'
       AND l.delta_units < 0`,
  );
  const debitsOfJob = big(
    `SELECT signature, ord, delta_units, kind, released FROM ledger_lines
     WHERE vault = ? AND job_id = ? AND delta_units < 0 AND kind IN ('lock', 'unexplained')`,
  );
  // A line counts once: as the return of the job it was filed under, else (a deposit until its
  // lock is read, say) for the job its settle or refund memo names.
  // Only what escrow paid in: the customer's own money in the same line is a deposit.
  const returnedToVault = big(
    `SELECT coalesce(sum(units), 0) FROM (
       SELECT delta_units - coalesce(deposit_in_units, 0) AS units FROM ledger_lines
       WHERE vault = @vault AND job_id = @job AND kind = 'return'
       UNION ALL SELECT delta_units - coalesce(deposit_in_units, 0) FROM ledger_lines
       INDEXED BY ledger_lines_memo_job
       WHERE vault = @vault AND memo_kind IN ('settle', 'refund') AND delta_units > 0
         AND memo_job_id = @job AND kind IS NOT 'return')`,
  ).pluck();
  // What the other decided jobs naming this job's settlement read it paying out beyond their
  // own locks (`sharedOverflowUnits`). Each side of the OR states the partial index's
  // predicate (`jobs_api_settlement_tx`: a jobs API settlement the receipt does not name; one
  // it names is found by `jobs_settlement_tx`), or SQLite cannot use it and read every decided
  // job instead, once per open lock in a review's write transaction: 4.9 ms a lock at 2,600
  // decided jobs, the write lock held 1.3 s a round for one vault of 360 open locks.
  const sharedOverflowSql = `SELECT coalesce(sum(o.charged_units
       - coalesce(o.escrow_paid_units, o.charged_units)), 0) FROM jobs o
     WHERE o.job_id <> j.job_id
       AND o.verdict IN (${finalVerdicts.map((v) => `'${v}'`).join(", ")})
       AND (o.settlement_tx IN (j.settlement_tx, j.api_settlement_tx)
         OR (o.api_settlement_tx IN (j.settlement_tx, j.api_settlement_tx)
           AND o.api_settlement_tx IS NOT NULL AND o.api_settlement_tx IS NOT o.settlement_tx))`;
  // The settlement landed: the verifier's row of it, a line of this vault it moved, or a line
  // of this vault bringing money back with the job's settle memo (see `JobSettlement`).
  const jobPaid = big(
    `SELECT j.key_fingerprint, j.credit_vault, j.settlement_tx, j.api_settlement_tx,
       coalesce(j.escrow_paid_units, j.charged_units) AS paid_out_units,
       j.shared_return_units, (${sharedOverflowSql}) AS shared_overflow_units, cv.vault AS pinned,
       j.escrow_tx IS NOT NULL AS receipt_escrow,
       j.verdict IN (${finalVerdicts.map((v) => `'${v}'`).join(", ")}) AS decided,
       EXISTS (SELECT 1 FROM ledger_lines l WHERE l.vault = @vault AND l.signature = j.escrow_tx)
         AS receipt_lock,
       EXISTS (SELECT 1 FROM chain_transactions c WHERE c.state = 'finalized' AND c.succeeded = 1
           AND c.signature IN (j.settlement_tx, j.api_settlement_tx))
         OR EXISTS (SELECT 1 FROM ledger_lines l WHERE l.vault = @vault AND l.state = 'read'
           AND l.succeeded = 1 AND l.signature IN (j.settlement_tx, j.api_settlement_tx))
         OR EXISTS (SELECT 1 FROM ledger_lines l INDEXED BY ledger_lines_memo_job
           WHERE l.vault = @vault AND l.memo_kind = 'settle' AND l.delta_units > 0
           AND coalesce(l.deposit_in_units, 0) < l.delta_units
           AND l.memo_job_id = j.job_id AND l.state = 'read' AND l.succeeded = 1)
         AS landed
     FROM jobs j LEFT JOIN credit_vaults cv ON cv.key_fingerprint = j.key_fingerprint
     WHERE j.job_id = @job`,
  );
  const setReleased = sqlite.prepare(
    "UPDATE ledger_lines SET released = 1 WHERE vault = ? AND signature = ?",
  );

  // The lines a review judges again, by signature (each read whole when its batch comes).
  const unclassified = signatures(
    `SELECT signature FROM ledger_lines INDEXED BY ledger_lines_unclassified
     WHERE vault = ? AND state = 'read' AND kind IS NULL ORDER BY ord`,
  );
  const reviewAll = signatures(
    `SELECT signature FROM ledger_lines INDEXED BY ledger_lines_review
     WHERE vault = ? AND kind IN ('unexplained', 'deposit') ORDER BY ord`,
  );
  const reviewPeriod = big(
    `SELECT ${LINE_COLUMNS} FROM ledger_lines
     WHERE vault = ? AND kind IN ('unexplained', 'deposit') AND block_time >= ? AND block_time < ?
     ORDER BY ord`,
  );
  const openLocksAll = signatures(
    `SELECT signature FROM ledger_lines INDEXED BY ledger_lines_open_locks
     WHERE vault = ? AND kind = 'lock' AND released = 0`,
  );
  // Locks that only a jobs API answer names, of a job whose receipt names another escrow, were
  // filed so before such an answer stopped making a lock (`canPayFrom`): the released ones,
  // which `openLocksAll` leaves out, are filed again too. Few: the jobs whose answer names
  // another escrow than the receipt, read through the partial index `jobs_api_escrow_tx` (its
  // predicate, then the rest).
  const answerOnlyLocks = signatures(
    `SELECT signature FROM ledger_lines WHERE vault = ? AND kind = 'lock' AND released = 1
       AND signature IN (SELECT api_escrow_tx FROM jobs
         WHERE api_escrow_tx IS NOT NULL AND api_escrow_tx IS NOT escrow_tx
           AND escrow_tx IS NOT NULL)`,
  );
  const openLocksPeriod = big(
    `SELECT ${LINE_COLUMNS} FROM ledger_lines WHERE vault = ? AND kind = 'lock' AND released = 0
       AND block_time >= ? AND block_time < ? ORDER BY ord`,
  );
  const headerOpenAll = big(
    `SELECT ${LINE_COLUMNS} FROM ledger_lines INDEXED BY ledger_lines_header_open
     WHERE vault = ? AND kind = 'lock'
       AND (header_ok IS NULL OR header_ok = 0) AND header_ok IS NULL AND ord > ? ORDER BY ord`,
  );
  const headerOpenPeriod = big(
    `SELECT ${LINE_COLUMNS} FROM ledger_lines WHERE vault = ? AND kind = 'lock'
       AND (header_ok IS NULL OR header_ok = 0) AND block_time >= ? AND block_time < ? ORDER BY ord`,
  );
  const headerOf = big(
    `SELECT credits_remaining_units, recorded_at, responded_at, settlement_tx FROM jobs
     WHERE job_id = ?`,
  );
  /** Balances after each line from the lock on, while within the job's span (a page at a time). */
  const linesFrom = big(
    `SELECT ${LINE_COLUMNS}, state FROM ledger_lines WHERE vault = ? AND ord >= ? ORDER BY ord
     LIMIT 256`,
  );
  const lockLine = big("SELECT ord, state FROM ledger_lines WHERE vault = ? AND signature = ?");
  const settlementLine = big(
    `SELECT ord, block_time, state, succeeded, memo_kind, memo_job_id, memo_jobs, deposit_in_units,
       EXISTS (SELECT 1 FROM ledger_lines e INDEXED BY ledger_lines_memo_job
         WHERE e.memo_job_id = @job AND e.vault = l.vault AND e.ord < l.ord
           AND e.memo_kind IN ('settle', 'refund') AND e.succeeded = 1) AS settled_before
     FROM ledger_lines l WHERE vault = @vault AND signature = @signature`,
  );
  // A named settlement the vault's history never lists (`NamedSettlement.outside`).
  const settlementOutside = big(
    `SELECT c.slot, c.block_time FROM chain_transactions c WHERE c.signature = @signature
       AND c.state = 'finalized' AND c.facts IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM json_each(c.facts, '$.accounts') a WHERE a.value = @vault)`,
  );
  // The same span judged inside the review's write transaction, in SQL over `ledger_lines_order`:
  // a late receipt (an import, recorded months after its lock) spans every line since its lock,
  // and reading each line into the program held the write lock for seconds on a busy vault.
  const spanEndOrd = big(
    `SELECT min(ord) FROM ledger_lines WHERE vault = ? AND ord > max(?, ?) AND slot >= ?
       AND block_time > ?`,
  ).pluck();
  // The first line past the part of a span surely before the response (`HeaderSpanReading`):
  // not the job's settlement, nor one read to move none of the vault's money.
  const spanOrderedEndOrd = big(
    `SELECT min(ord) FROM ledger_lines WHERE vault = ? AND ord > max(?, ?) AND ord <> ?
       AND slot >= ? AND (block_time IS NULL OR block_time > ?)
       AND (state <> 'read' OR post_units IS NOT NULL)`,
  ).pluck();
  const spanMatch = big(
    `SELECT ord, post_units FROM ledger_lines WHERE vault = ? AND ord >= ? AND ord < ?
       AND post_units >= ? AND post_units < ? ORDER BY ord LIMIT 1`,
  );
  const spanUnread = big(
    `SELECT EXISTS (SELECT 1 FROM ledger_lines WHERE vault = ? AND ord >= ? AND ord < ?
       AND state = 'listed')`,
  ).pluck();
  // Jobs whose credits.header waited for this vault's ledger (the verifier's skip names the
  // vault): a json field in check_results, which the builder cannot express as a join key.
  // Read from the few waiting checks (`check_results_header_waiting`, whose terms are all
  // here), in job order, each job then by its key: joined from `jobs`, SQLite read every
  // final job by verdict (about 4 s a vault at a million jobs, inside the write).
  const headerWaiting = big(
    `SELECT j.job_id, coalesce(j.escrow_tx, j.api_escrow_tx) AS lock_tx, j.recorded_at,
       j.responded_at, j.credits_remaining_units, j.settlement_tx
     FROM check_results c INDEXED BY check_results_header_waiting
     CROSS JOIN jobs j ON j.job_id = c.job_id
     WHERE c.outcome = 'skip' AND c.name = 'credits.header' AND c.expected IS NOT NULL
       AND json_extract(c.expected, '$.vault') = ?
       AND j.verdict IN (${finalVerdicts.map((v) => `'${v}'`).join(", ")})
       AND j.credits_remaining_units IS NOT NULL AND c.job_id > ?
     ORDER BY c.job_id`,
  );
  // A credits.header that waited for the ledger and matches: the verifier's skip becomes a pass.
  const passHeader = sqlite.prepare(
    `UPDATE check_results SET outcome = 'pass', reason = NULL, expected = ?, actual = ?,
       checked_at = ? WHERE job_id = ? AND name = 'credits.header' AND outcome = 'skip'`,
  );
  const setHeader = sqlite.prepare(
    "UPDATE ledger_lines SET header_ok = ? WHERE vault = ? AND signature = ?",
  );
  const cursorRow = big(
    `SELECT synced_at, final_through, balance_units, balance_slot, balance_foreign, balance_control,
       coalesce(sync_top_slot, newest_slot) AS slot, chained_ord, judged_through, judged_at,
       last_error
     FROM ledger_cursors WHERE vault = ?`,
  );
  const markJudged = sqlite.prepare(
    `UPDATE ledger_cursors SET judged_through = max(coalesce(judged_through, 0), ?),
       judged_at = max(coalesce(judged_at, 0), ?)
     WHERE vault = ?`,
  );
  const listedSince = big(
    `SELECT signature, block_time FROM ledger_lines INDEXED BY ledger_lines_listed
     WHERE vault = ? AND listed_at > ? AND block_time < ? ORDER BY listed_at, signature`,
  );
  const oldestLine = big(
    `SELECT signature, slot, block_time, state, opened FROM ledger_lines INDEXED BY
       ledger_lines_order WHERE vault = ? ORDER BY ord LIMIT 1`,
  );
  const setOpened = sqlite.prepare(
    "UPDATE ledger_lines SET opened = ? WHERE vault = ? AND signature = ?",
  );
  /** The cursor's `final_through`: how far the listing holds every transaction. */
  const finalThroughOf = (vault: string) =>
    num((cursorRow.get(vault) as { final_through: Big } | undefined)?.final_through ?? null);
  const movementAtOrBefore = big(
    `SELECT ${LINE_COLUMNS} FROM ledger_lines WHERE vault = ? AND ord <= ? AND state = 'read'
       AND delta_units <> 0 ORDER BY ord DESC LIMIT 1`,
  );
  const walkFrom = big(
    `SELECT ${LINE_COLUMNS}, state FROM ledger_lines WHERE vault = ? AND ord > ? ORDER BY ord
     LIMIT ${WALK_PAGE}`,
  );
  const setGap = sqlite.prepare(
    `UPDATE ledger_lines SET gap_after_signature = ?, gap_after_slot = ?, gap_units = ?
     WHERE vault = ? AND signature = ?`,
  );
  const setChained = sqlite.prepare("UPDATE ledger_cursors SET chained_ord = ? WHERE vault = ?");
  const relistBelow = sqlite
    .prepare("SELECT relist_below FROM ledger_cursors WHERE vault = ?")
    .pluck();
  const setRelistBelow = sqlite.prepare(
    "UPDATE ledger_cursors SET relist_below = ? WHERE vault = ?",
  );
  const heldLineBelow = sqlite
    .prepare(
      `SELECT b.signature FROM ledger_lines a JOIN ledger_lines b ON b.vault = a.vault AND b.ord < a.ord
       WHERE a.vault = ? AND a.signature = ? ORDER BY b.ord DESC LIMIT 1`,
    )
    .pluck();
  const heldWithin = sqlite
    .prepare(
      `SELECT 1 FROM (SELECT b.signature FROM ledger_lines a
         JOIN ledger_lines b ON b.vault = a.vault AND b.ord < a.ord
         WHERE a.vault = ? AND a.signature = ? ORDER BY b.ord DESC LIMIT ?) WHERE signature = ?`,
    )
    .pluck();
  // min() of a NULL mark (nothing compared yet) stays NULL.
  const lowerChained = sqlite.prepare(
    "UPDATE ledger_cursors SET chained_ord = min(chained_ord, ?) WHERE vault = ?",
  );
  const storedGaps = big(
    `SELECT signature, slot, gap_after_signature, gap_after_slot, gap_units FROM ledger_lines
     WHERE vault = ? AND gap_units IS NOT NULL AND block_time >= ? AND block_time < ? ORDER BY ord`,
  );
  // INDEXED BY: lines above the walk are few; by time the planner could scan the whole vault.
  const tailFrom = big(
    `SELECT ${LINE_COLUMNS}, state FROM ledger_lines INDEXED BY ledger_lines_order
     WHERE vault = ? AND ord > ?
       AND state = 'read' AND delta_units <> 0 AND block_time < ? ORDER BY ord`,
  );

  // Sums need safe integers (a whole history of a vault), each in two parts: a day's or a
  // history's sum may pass 2^63 (src/db/split-sums.ts).
  const dailySums = big(
    `SELECT kind, sum(lines) AS lines, sum(units_lo) AS units_lo, sum(units_hi) AS units_hi
     FROM ledger_daily WHERE vault = ? AND day >= ? AND day < ? GROUP BY kind`,
  );
  const lineSums = big(
    `SELECT kind, count(*) AS lines, ${splitSum("delta_units", "units")} FROM ledger_lines
     WHERE vault = ? AND block_time >= ? AND block_time < ? AND kind IS NOT NULL GROUP BY kind`,
  );
  // One exact total (`units` in two parts) of a statement's first row.
  const total = (text: string) => {
    const statement = big(text);
    return (...params: unknown[]): bigint =>
      joinSplitSums(statement.get(...params) as Record<string, bigint>, ["units"]).units!;
  };
  // Money escrow did not pay in, inside lines filed as returns: the period's deposits.
  const returnDepositIn = total(
    `SELECT ${splitSum("deposit_in_units", "units")} FROM ledger_lines INDEXED BY ledger_lines_deposit_in
     WHERE vault = ? AND deposit_in_units IS NOT NULL AND block_time >= ? AND block_time < ?
       AND kind = 'return'`,
  );
  const dailyTotalBefore = total(
    `SELECT coalesce(sum(units_lo), 0) AS units_lo, coalesce(sum(units_hi), 0) AS units_hi
     FROM ledger_daily WHERE vault = ? AND day < ?`,
  );
  // Lines read but not classified yet (before a review round) still count in the opening.
  const lineTotalBetween = total(
    `SELECT ${splitSum("delta_units", "units")} FROM ledger_lines WHERE vault = ? AND state = 'read'
       AND block_time >= ? AND block_time < ? AND kind IS NOT NULL`,
  );
  const unclassifiedBefore = total(
    `SELECT ${splitSum("delta_units", "units")} FROM ledger_lines INDEXED BY ledger_lines_unclassified
     WHERE vault = ? AND state = 'read' AND kind IS NULL AND block_time < ?`,
  );
  const firstMovement = big(
    `SELECT pre_units FROM ledger_lines WHERE vault = ? AND state = 'read' AND delta_units <> 0
     ORDER BY ord LIMIT 1`,
  ).pluck();
  const listedInPeriod = sqlite
    .prepare(
      `SELECT count(*) FROM ledger_lines WHERE state = 'listed' AND vault = ?
         AND block_time >= ? AND block_time < ? AND kind IS NULL`,
    )
    .pluck();
  const listedAll = sqlite
    .prepare("SELECT count(*) FROM ledger_lines WHERE state = 'listed' AND vault = ?")
    .pluck();
  // `recordedAfterDate` written out: the term of the partial index `jobs_recorded_late`.
  const latestRecordedAfter = sqlite
    .prepare(
      `SELECT max(recorded_at) FROM jobs WHERE created_at < recorded_at
         AND recorded_at >= @to AND created_at >= @from AND created_at < @to`,
    )
    .pluck();
  const countDatedIn = sqlite
    .prepare("SELECT count(*) FROM jobs WHERE created_at >= @from AND created_at < @to")
    .pluck();
  const earliestDatedBefore = sqlite
    .prepare(
      `SELECT min(created_at) FROM jobs WHERE created_at < recorded_at
         AND recorded_at >= @from AND recorded_at < @to AND created_at < @from`,
    )
    .pluck();
  const listedUpTo = sqlite
    .prepare(
      `SELECT count(*) FROM ledger_lines WHERE state = 'listed' AND vault = ?
         AND (block_time < ? OR block_time IS NULL)`,
    )
    .pluck();
  // Lines read before migration 0006 wait for the next ledger round to get their kind. INDEXED
  // BY: the planner took (state, vault) and counted every read line (1 s over 1M lines).
  const unclassifiedAll = sqlite
    .prepare(
      `SELECT count(*) FROM ledger_lines INDEXED BY ledger_lines_unclassified
       WHERE vault = ? AND state = 'read' AND kind IS NULL`,
    )
    .pluck();
  const nextMovement = big(
    `SELECT pre_units FROM ledger_lines WHERE vault = ? AND block_time >= ? AND state = 'read'
       AND delta_units <> 0 ORDER BY block_time, ord LIMIT 1`,
  ).pluck();
  const lastMovement = big(
    `SELECT post_units FROM ledger_lines WHERE vault = ? AND block_time < ? AND state = 'read'
       AND delta_units <> 0 ORDER BY block_time DESC, ord DESC LIMIT 1`,
  ).pluck();
  const newestMovement = big(
    `SELECT ${LINE_COLUMNS} FROM ledger_lines WHERE vault = ? AND state = 'read'
       AND delta_units <> 0 ORDER BY ord DESC LIMIT 1`,
  );
  const oldestFinal = sqlite
    .prepare("SELECT min(coalesce(final_through, 0)) FROM ledger_cursors")
    .pluck();

  /** A read line as classification reads it. */
  type Classified = {
    signature: string;
    delta: bigint;
    memoKind: LineRead["memoKind"];
    memoJobId: string | null;
    memoJobs?: readonly MemoJob[] | null;
    /** Money in escrow did not pay (`LineRead.depositIn`). */
    depositIn?: bigint | null;
  };

  /**
   * What a read line is, by the receipts recorded now. Memos naming several jobs are read in
   * order: money in is the return of the first job it can be, money out that is no lock the
   * debit of the first job whose escrow memo it carries.
   */
  function classify(vault: string, line: Classified): { kind: LineKind; jobId: string | null } {
    if (line.delta === 0n) return { kind: "none", jobId: null };
    const named = memoJobsOfLine(line);
    if (line.delta < 0n) {
      type Namer = {
        job_id: string;
        key_fingerprint: string | null;
        credit_vault: string | null;
        pinned: string | null;
        by_receipt: number;
        receipt_escrow: number;
      };
      const tied = (namers: Namer[]) =>
        namers.map((j) => ({
          jobId: j.job_id,
          tie: {
            keyFingerprint: j.key_fingerprint,
            declaredVault: j.credit_vault,
            pinnedVault: j.pinned,
            receiptNamesLock: j.by_receipt === 1,
            receiptNamesEscrow: j.receipt_escrow === 1,
          },
        }));
      const namers = lockJobs.all({ sig: line.signature }) as Namer[];
      if (namers.length > 0) {
        const pinned = vaultPinned.get(vault) !== undefined;
        const job = lockOwner(tied(namers), escrowMemoJobOf(line), vault, pinned);
        if (job !== undefined) return { kind: "lock", jobId: job.jobId };
      }
      if (named.some((m) => m.kind === "escrow")) {
        const closers = closingJobs.all({ sig: line.signature }) as Namer[];
        if (closers.length > 0) {
          const pinned = vaultPinned.get(vault) !== undefined;
          const job = lockOfClosingNamer(tied(closers), line, vault, pinned);
          if (job !== undefined) return { kind: "lock", jobId: job.jobId };
        }
      }
      return { kind: "unexplained", jobId: jobOfUnexplainedDebit(named) };
    }
    // Money in under any memo of a job whose lock this vault paid is that job's: a settle or
    // refund memo names its return, and an escrow memo on money coming back is no honest step
    // at all (filed as a deposit, it gave the vault back more than its lock unseen). Money
    // escrow paid none of (the customer's own top-up under a job's memo) is a deposit.
    if ((line.depositIn ?? 0n) >= line.delta) return { kind: "deposit", jobId: null };
    for (const m of named) {
      if (returnOf(vault, line.signature, m.jobId)) return { kind: "return", jobId: m.jobId };
    }
    return { kind: "deposit", jobId: null };
  }

  /** Whether money into `vault` in `sig` under `job`'s settle or refund memo is its return. */
  function returnOf(vault: string, sig: string, job: string): boolean {
    if (lockedHere.get({ vault, job }) !== undefined) return true;
    const namer = namesReturn.get({ job, sig }) as
      | { key_fingerprint: string | null; credit_vault: string | null; pinned: string | null }
      | undefined;
    return (
      namer !== undefined &&
      mayReturnTo(
        {
          keyFingerprint: namer.key_fingerprint,
          declaredVault: namer.credit_vault,
          pinnedVault: namer.pinned,
        },
        vault,
        vaultPinned.get(vault) !== undefined,
      )
    );
  }

  /**
   * The jobs a read line filed as `c` is kept with (`jobKeepingLine`): the job it is filed
   * under, and, when its memos name several, each job it would be filed under were that job's
   * memo its only one. The first memo alone decided before, so a refund naming another job id
   * first gave a job's vault back more than its lock, and the job passed.
   */
  function keepersOf(
    vault: string,
    line: Classified,
    c: { kind: LineKind; jobId: string | null },
  ): string[] {
    const keepers = new Set<string>();
    const filed = jobKeepingLine(c);
    if (filed !== null) keepers.add(filed);
    for (const m of line.memoJobs ?? []) {
      if (keepers.has(m.jobId)) continue;
      const alone = classify(vault, {
        ...line,
        memoKind: m.kind,
        memoJobId: m.jobId,
        memoJobs: null,
      });
      if (jobKeepingLine(alone) === m.jobId) keepers.add(m.jobId);
    }
    return [...keepers];
  }

  /** Keeps the line with each of its keepers that lacks it, sending that job back to the verifier. */
  function keepWithKeepers(
    vault: string,
    line: Classified,
    c: { kind: LineKind; jobId: string | null },
    now: number,
  ) {
    for (const keeper of keepersOf(vault, line, c)) {
      if (keepWithJob(store, keeper, line.signature, now)) {
        reopenJobs(store, { jobIds: [keeper] }, now);
      }
    }
  }

  const classifyRow = (vault: string, r: LedgerLineRow) =>
    classify(vault, {
      signature: r.signature,
      delta: r.deltaUnits,
      memoKind: r.memoKind,
      memoJobId: r.memoJobId,
      memoJobs: r.memoJobs ?? null,
      depositIn: r.depositInUnits ?? null,
    });

  /**
   * What is still out of each debit of `job` in `vault` (`outstandingOf`), with the lines
   * `extra` adds as its locks (a statement's late locks), and which of them the flags release.
   */
  function outstanding(
    vault: string,
    job: string,
    extra: readonly LedgerLineRow[],
    provisional: boolean,
  ): { out: Map<string, bigint>; released: Set<string> } {
    const rows = debitsOfJob.all(vault, job) as {
      signature: string;
      ord: bigint;
      delta_units: bigint;
      kind: LineKind;
      released: bigint;
    }[];
    const late = new Set(extra.map((l) => l.signature));
    const debits: JobDebit[] = rows.map((r) => ({
      signature: r.signature,
      ord: Number(r.ord),
      units: -r.delta_units,
      lock: r.kind === "lock" || late.has(r.signature),
    }));
    const stored = new Set(rows.map((r) => r.signature));
    for (const l of extra) {
      if (stored.has(l.signature) || l.deltaUnits >= 0n) continue;
      debits.push({ signature: l.signature, ord: l.ord, units: -l.deltaUnits, lock: true });
    }
    let returned = returnedToVault.get({ vault, job }) as bigint;
    const paid = jobPaid.get({ vault, job }) as
      | {
          key_fingerprint: string | null;
          credit_vault: string | null;
          settlement_tx: string | null;
          api_settlement_tx: string | null;
          paid_out_units: bigint | null;
          shared_return_units: bigint | null;
          shared_overflow_units: bigint;
          pinned: string | null;
          receipt_escrow: bigint;
          decided: bigint;
          receipt_lock: bigint;
          landed: bigint;
        }
      | undefined;
    let locked = debits.reduce((sum, d) => (d.lock ? sum + d.units : sum), 0n);
    // Counted settled before the verifier decides: only what the locks put into escrow, less
    // what came back of it (the returns below cover that part).
    if (provisional && paid && paid.decided !== 1n && paid.landed === 1n) {
      const settlementFacts = [paid.settlement_tx, paid.api_settlement_tx].flatMap((sig) => {
        const facts = sig === null ? undefined : (storedFacts.get(sig) as string | undefined);
        return facts === undefined ? [] : [facts];
      });
      locked = debits.reduce(
        (sum, d) =>
          d.lock
            ? sum +
              provisionalLockUnits(
                d.units,
                vault,
                (storedFacts.get(d.signature) as string | undefined) ?? null,
                settlementFacts,
              )
            : sum,
        0n,
      );
      locked = locked > returned ? locked - returned : 0n;
    }
    const tie = paid && {
      keyFingerprint: paid.key_fingerprint,
      declaredVault: paid.credit_vault,
      pinnedVault: paid.pinned,
      receiptNamesLock: paid.receipt_lock === 1n,
      receiptNamesEscrow: paid.receipt_escrow === 1n,
    };
    if (paid && tie) {
      returned = withSharedReturn(
        returned,
        { tie, decided: paid.decided === 1n, sharedReturnUnits: paid.shared_return_units },
        vault,
        vaultPinned.get(vault) !== undefined,
      );
    }
    let settled = paid
      ? settledUnits(
          {
            tie: tie!,
            decided: paid.decided === 1n,
            paidOutUnits: sharedPaidOut(paid.paid_out_units, paid.shared_overflow_units),
            landed: paid.landed === 1n,
          },
          vault,
          vaultPinned.get(vault) !== undefined,
          locked,
          provisional,
        )
      : 0n;
    // A lock of a job tied to no vault may be filed in each vault it drew on: what the
    // settlement paid out accounts for every vault's part of every lock of the job in turn,
    // once (`settledShareOfLocks`), with this statement's late locks of the vault.
    if (
      settled > 0n &&
      paid &&
      lockTiedToNoVault({ pinnedVault: paid.pinned, declaredVault: paid.credit_vault })
    ) {
      const lines: JobLockLine[] = (jobLockLines.all(job) as JobLockDb[]).map((r) => ({
        signature: r.signature,
        vault: r.vault,
        slot: Number(r.slot),
        units: -r.delta_units,
        facts: r.facts,
      }));
      for (const l of extra) {
        if (
          l.deltaUnits >= 0n ||
          lines.some((o) => o.vault === vault && o.signature === l.signature)
        )
          continue;
        const facts = storedFacts.get(l.signature) as string | undefined;
        lines.push({
          signature: l.signature,
          vault,
          slot: l.slot,
          units: -l.deltaUnits,
          facts: facts ?? null,
        });
      }
      const share = settledShareOfLocks(settled, vault, lines);
      if (share !== null) settled = share;
    }
    return {
      out: outstandingOf(debits, returned, settled),
      released: new Set(rows.filter((r) => r.released === 1n).map((r) => r.signature)),
    };
  }

  /** Releases the debits of `job` in `vault` nothing is still out of; how many it released. */
  function releaseAccounted(vault: string, job: string): number {
    const { out, released } = outstanding(vault, job, [], false);
    let count = 0;
    for (const [signature, left] of out) {
      if (left !== 0n || released.has(signature)) continue;
      setReleased.run(vault, signature);
      count++;
    }
    return count;
  }

  /**
   * Stores a line's kind and the releases it causes (inside a write transaction). A line kept
   * with a job that did not name it (`jobKeepingLine`) sends that job back to the verifier.
   */
  function applyKind(
    vault: string,
    line: Classified,
    c: { kind: LineKind; jobId: string | null },
    now: number,
  ): number {
    setKind.run(c.kind, c.jobId, vault, line.signature);
    keepWithKeepers(vault, line, c, now);
    // Money back naming a job, or a debit of a job, may account for that job's debits now.
    let released = 0;
    for (const job of jobsALineNames(line, c.jobId)) released += releaseAccounted(vault, job);
    return released;
  }

  /**
   * Where the span of `jobId` whose response came at `times` (its row's `recorded_at` and
   * `responded_at`) and whose receipt names `settlementTx` ends among `vault`'s lines
   * (`headerSpanEnd`).
   */
  function spanEndOf(
    vault: string,
    jobId: string,
    times: { recorded_at: bigint; responded_at: bigint | null },
    settlementTx: string | null,
  ): HeaderSpanEnd {
    const line =
      settlementTx === null
        ? undefined
        : (settlementLine.get({ vault, signature: settlementTx, job: jobId }) as
            | {
                ord: bigint;
                block_time: bigint | null;
                state: "listed" | "read";
                succeeded: bigint | null;
                memo_kind: MemoJob["kind"] | null;
                memo_job_id: string | null;
                memo_jobs: string | null;
                settled_before: bigint;
                deposit_in_units: bigint | null;
              }
            | undefined);
    const outside =
      settlementTx === null || line !== undefined
        ? undefined
        : (settlementOutside.get({ vault, signature: settlementTx }) as
            | { slot: bigint | null; block_time: bigint | null }
            | undefined);
    const respondedAt = num(times.responded_at);
    return headerSpanEnd({ recordedAt: Number(times.recorded_at), respondedAt }, jobId, {
      named: settlementTx !== null,
      outside: outside !== undefined,
      outsideAt:
        outside?.slot == null
          ? null
          : { slot: Number(outside.slot), blockTime: num(outside.block_time) },
      line: line
        ? {
            ord: Number(line.ord),
            blockTime: line.block_time === null ? null : Number(line.block_time),
            state: line.state,
            succeeded: line.succeeded === null ? null : line.succeeded === 1n,
            memoKind: line.memo_kind,
            memoJobId: line.memo_job_id,
            memoJobs: memoJobsOf(line.memo_jobs),
            settledBefore: line.settled_before === 1n,
            depositInUnits: line.deposit_in_units,
          }
        : null,
    });
  }

  /**
   * The vault's balance after each line from the lock at `lockOrd` through the job's response
   * (`end`), how many first ones surely came before it (`HeaderSpanReading`), and whether every
   * line of that span is read and the history listed past it.
   */
  function spanFrom(
    vault: string,
    lockOrd: number,
    end: HeaderSpanEnd,
    finalThrough: number | null,
    header: bigint | null = null,
  ): HeaderSpan {
    const span = new HeaderSpanReading(end);
    let ord = lockOrd;
    let spanEnded = false;
    while (!spanEnded) {
      const rows = linesFrom.all(vault, ord) as LineDb[];
      for (const r of rows) {
        const postUnits = r.post_units;
        const line = {
          ord: Number(r.ord),
          slot: Number(r.slot),
          blockTime: num(r.block_time),
          state: r.state ?? null,
        };
        if (!span.take({ ...line, postUnits })) {
          spanEnded = true;
          break;
        }
        ord = Number(r.ord) + 1;
        // Every reader stops at the balance its header matches: what lies past it is never
        // asked, and a receipt recorded long after its lock spans every line between.
        if (header !== null && postUnits !== null && headerMatches(header, postUnits)) {
          return { end, balances: span.balances, ordered: span.ordered, covered: !span.unread };
        }
      }
      if (rows.length < 256) break;
    }
    // Past the span, or the history is listed through its end (the chain had finalized past
    // it when it was listed): nothing more will match.
    const covered = !span.unread && headerSpanCovered(end, spanEnded, finalThrough);
    return { end, balances: span.balances, ordered: span.ordered, covered };
  }

  /**
   * What `spanFrom` with a header decides, without carrying the span's lines into the program:
   * the first balance the header matches and whether it surely came before the response, and
   * whether the span is read in full (up to that balance, when it did not).
   */
  function headerSpan(
    vault: string,
    lockOrd: bigint,
    end: HeaderSpanEnd,
    finalThrough: number | null,
    header: bigint,
  ): { matched: bigint | null; ordered: boolean; lasting: boolean; covered: boolean } {
    const endOrd = spanEndOrd.get(vault, lockOrd, end.throughOrd, end.throughSlot, end.until) as
      | bigint
      | null;
    // Past every ord: the span runs to the newest line.
    const upper = endOrd ?? 1n << 62n;
    const match = spanMatch.get(vault, lockOrd, upper, header, header + UNITS_PER_CREDIT) as
      | { ord: bigint; post_units: bigint }
      | undefined;
    const orderedUpper =
      (spanOrderedEndOrd.get(
        vault,
        lockOrd,
        end.orderedThroughOrd,
        end.throughOrd,
        end.orderedThroughSlot,
        end.orderedUntil,
      ) as bigint | null) ?? 1n << 62n;
    if (match !== undefined && match.ord < orderedUpper) {
      return { matched: match.post_units, ordered: true, lasting: true, covered: true };
    }
    const unread = (spanUnread.get(vault, lockOrd, match?.ord ?? upper) as bigint) !== 0n;
    if (match !== undefined) {
      const lasting = headerMatchLasts(end, false);
      return { matched: match.post_units, ordered: false, lasting, covered: !unread };
    }
    const covered = !unread && headerSpanCovered(end, endOrd !== null, finalThrough);
    return { matched: null, ordered: false, lasting: false, covered };
  }

  /** The credits header of the lock at `lock` against the balances up to the job's response. */
  function headerCheck(
    vault: string,
    lock: LedgerLineRow,
    finalThrough: number | null,
  ): HeaderCheck | null {
    if (lock.jobId === null) return null;
    const job = headerOf.get(lock.jobId) as
      | {
          credits_remaining_units: Big;
          recorded_at: bigint;
          responded_at: bigint | null;
          settlement_tx: string | null;
        }
      | undefined;
    const header = job?.credits_remaining_units ?? null;
    if (!job || header === null) return null;
    const end = spanEndOf(vault, lock.jobId, job, job.settlement_tx);
    // The statement's finding: a balance of the whole span, its order with the response known
    // or not (the verifier's check tells the two apart).
    const span = spanFrom(vault, lock.ord, end, finalThrough, header);
    const at = span.balances.findIndex((b) => headerMatches(header, b));
    return {
      jobId: lock.jobId,
      headerUnits: header,
      balancesUnits: at >= 0 ? span.balances.slice(0, at) : span.balances,
      matched: at >= 0,
      decided: at >= 0 || span.covered,
      lasting: at >= 0 && headerMatchLasts(end, at < span.ordered),
    };
  }

  /** The span of a job's lock (`signature`) in `vault`; nothing known while it is not read. */
  function spanOfLock(
    vault: string,
    jobId: string,
    signature: string,
    times: { recorded_at: bigint; responded_at: bigint | null },
    settlementTx: string | null,
    finalThrough: number | null,
    header: bigint | null = null,
  ): HeaderSpan {
    const lock = lockLine.get(vault, signature) as { ord: bigint; state: string } | undefined;
    const end = spanEndOf(vault, jobId, times, settlementTx);
    if (lock?.state !== "read") return { end, balances: [], ordered: 0, covered: false };
    return spanFrom(vault, Number(lock.ord), end, finalThrough, header);
  }

  // A line's slot as its transaction tells it: the line's own once read (`LineRead.slot`),
  // else its stored transaction's (a line read before the slot was kept), else the listing's.
  // The lowest read line of the walk's next page above `from` held just above a line of a later
  // slot. Over every line above, far back 200,000, it held the write lock 300 ms at once.
  const outOfPlace = big(
    `SELECT signature, ord, slot FROM (
       SELECT l.signature, l.ord, l.state, coalesce(c.slot, l.slot) AS slot,
         lag(coalesce(c.slot, l.slot)) OVER (ORDER BY l.ord) AS below
       FROM ledger_lines l INDEXED BY ledger_lines_order
         LEFT JOIN chain_transactions c ON c.signature = l.signature
       WHERE l.vault = @vault AND l.ord >= coalesce(
         (SELECT max(ord) FROM ledger_lines WHERE vault = @vault AND ord <= @from), @from)
         AND l.ord <= coalesce((SELECT ord FROM ledger_lines WHERE vault = @vault AND ord > @from
           ORDER BY ord LIMIT 1 OFFSET ${WALK_PAGE - 1}), ${Number.MAX_SAFE_INTEGER}))
     WHERE state = 'read' AND ord > @from AND below > slot ORDER BY ord LIMIT 1`,
  );
  const placeAbove = big(
    `SELECT l.ord FROM ledger_lines l INDEXED BY ledger_lines_order
       LEFT JOIN chain_transactions c ON c.signature = l.signature
     WHERE l.vault = ? AND l.ord < ? AND coalesce(c.slot, l.slot) <= ?
     ORDER BY l.ord DESC LIMIT 1`,
  ).pluck();
  const lowestOrd = big("SELECT min(ord) FROM ledger_lines WHERE vault = ?").pluck();
  const shiftBetween = sqlite.prepare(
    "UPDATE ledger_lines SET ord = ord + 1 WHERE vault = ? AND ord > ? AND ord < ?",
  );

  /**
   * Moves each read line of the walk's next page above `afterOrd` held just above a line of a
   * later slot down to its place by its transaction's slot (`LineRead.slot`): just above the
   * nearest line below it of its slot or an earlier one (or below the lowest), the lines between
   * moving up one ord each; returns where the walk must start. Lines are held in listing order,
   * and a node listing an old transaction as new at a made-up slot above the newest line kept it
   * above lines the chain ran after it: gaps on both sides of it that listing them again never
   * closed, and every nightly run exited 1 from then on. Each move leaves fewer lines out of
   * slot order, so it ends. Sums do not depend on the order; within a slot, a gap between its
   * lines is put right by listing the slot again (`slotChainOrder`).
   */
  function placeBySlot(vault: string, afterOrd: number): number {
    let from = afterOrd;
    for (;;) {
      const r = outOfPlace.get({ vault, from }) as
        | { signature: string; ord: bigint; slot: bigint }
        | undefined;
      if (r === undefined) return from;
      const above = placeAbove.get(vault, r.ord, r.slot) as bigint | undefined;
      const after = Number(above ?? (lowestOrd.get(vault) as bigint) - 1n);
      shiftBetween.run(vault, after, r.ord);
      setOrd.run(after + 1, vault, r.signature);
      clearGapsAbove.run(vault, after);
      from = Math.min(from, after);
    }
  }

  /**
   * Walks on from the cursor's mark for a slice (`walkLines`), placing each page's lines by slot
   * first (`placeBySlot`), storing the gaps it finds and counting them in `result`, and moves the
   * mark: whether lines are left.
   */
  function walkOn(vault: string, result: ReviewResult): boolean {
    const cursor = cursorRow.get(vault) as { chained_ord: Big } | undefined;
    const chained = num(cursor?.chained_ord ?? null) ?? -1;
    const movementAt = (ord: number) => {
      const row = movementAtOrBefore.get(vault, ord) as LineDb | undefined;
      return row ? toLine(row) : null;
    };
    const { walked, more, gaps } = walkSync(
      walkLines(chained, movementAt(chained), toLine, WALK_PAGE),
      (ord) => {
        const from = placeBySlot(vault, ord);
        const rows = walkFrom.all(vault, from) as LineDb[];
        return from < ord ? { rows, restart: { from, prev: movementAt(from) } } : { rows };
      },
    );
    for (const gap of gaps) {
      setGap.run(gap.afterSignature, gap.fromSlot, gap.missingUnits, vault, gap.beforeSignature);
      result.gaps++;
    }
    if (walked !== chained) setChained.run(walked, vault);
    return more;
  }
  const walkOnTx = sqlite.transaction(walkOn);

  const gapLines = sqlite.prepare(
    `SELECT gap_after_signature AS after, signature AS before FROM ledger_lines
     WHERE vault = ? AND gap_units IS NOT NULL ORDER BY ord DESC LIMIT ?`,
  );
  const ordOf = big("SELECT ord, slot FROM ledger_lines WHERE vault = ? AND signature = ?");
  const linesBetween = big(
    "SELECT signature, ord FROM ledger_lines WHERE vault = ? AND ord > ? AND ord < ? ORDER BY ord",
  );
  const heldLine = sqlite
    .prepare("SELECT 1 FROM ledger_lines WHERE vault = ? AND signature = ?")
    .pluck();
  // As `lockedHere` finds a job's lock of the vault, by `ledger_lines_memo_job`.
  const lockLinesOfJob = sqlite.prepare(
    `SELECT signature, memo_job_id AS jobId FROM ledger_lines INDEXED BY ledger_lines_memo_job
     WHERE vault = @vault AND memo_kind = 'escrow' AND delta_units < 0 AND memo_job_id = @job
     UNION SELECT signature, job_id FROM ledger_lines WHERE vault = @vault AND job_id = @job
       AND kind = 'lock'`,
  );
  // Room for a heal (`healMakingRoom`): the first line from the later one up with `room` free
  // ords above it, then the lines below it moved up into those a slice at a time.
  const roomTopFrom = big(
    `SELECT a.ord FROM ledger_lines a WHERE a.vault = ? AND a.ord >= ? AND NOT EXISTS
       (SELECT 1 FROM ledger_lines b WHERE b.vault = a.vault AND b.ord > a.ord AND b.ord <= a.ord + ?)
     ORDER BY a.ord LIMIT 1`,
  );
  const lineWithin = sqlite
    .prepare("SELECT 1 FROM ledger_lines WHERE vault = ? AND ord > ? AND ord <= ? LIMIT 1")
    .pluck();
  const sliceBottom = big(
    `SELECT ord FROM ledger_lines WHERE vault = ? AND ord >= ? AND ord <= ?
     ORDER BY ord DESC LIMIT 1 OFFSET ${ROOM_LINES_PER_MOVE - 1}`,
  );
  const moveLines = sqlite.prepare(
    "UPDATE ledger_lines SET ord = ord + ? WHERE vault = ? AND ord >= ? AND ord <= ?",
  );
  const moveChained = sqlite.prepare(
    `UPDATE ledger_cursors SET chained_ord = chained_ord + ?
     WHERE vault = ? AND chained_ord >= ? AND chained_ord <= ?`,
  );
  const setOrd = sqlite.prepare(
    "UPDATE ledger_lines SET ord = ? WHERE vault = ? AND signature = ?",
  );
  // By the few gaps' own index: by `ord` it read every line above, far back 200,000 of them.
  const clearGapsAbove = sqlite.prepare(
    `UPDATE ledger_lines INDEXED BY ledger_lines_gaps
     SET gap_after_signature = NULL, gap_after_slot = NULL, gap_units = NULL
     WHERE vault = ? AND gap_units IS NOT NULL AND ord > ?`,
  );
  const slotLines = big(
    `SELECT signature, ord, state, pre_units, post_units, delta_units FROM ledger_lines
     WHERE vault = ? AND slot = ? ORDER BY ord`,
  );
  const linesWithin = big(
    "SELECT count(*) AS n FROM ledger_lines WHERE vault = ? AND ord >= ? AND ord <= ?",
  );
  const lineAbove = big(
    "SELECT signature FROM ledger_lines WHERE vault = ? AND ord > ? ORDER BY ord LIMIT 1",
  );
  const lineBelow = big(
    "SELECT signature FROM ledger_lines WHERE vault = ? AND ord < ? ORDER BY ord DESC LIMIT 1",
  );
  const movementAbove = big(
    `SELECT state, pre_units FROM ledger_lines WHERE vault = ? AND ord > ?
       AND (state = 'listed' OR delta_units <> 0) ORDER BY ord LIMIT 1`,
  );
  /** The held lines of the one slot of a gap's two lines, when they are together; else null. */
  function slotBlock(vault: string, gap: GapLines) {
    const earlier = ordOf.get(vault, gap.afterSignature) as { ord: Big; slot: Big } | undefined;
    const later = ordOf.get(vault, gap.beforeSignature) as { ord: Big; slot: Big } | undefined;
    if (!earlier || !later || earlier.slot !== later.slot) return null;
    const lines = (
      slotLines.all(vault, earlier.slot) as {
        signature: string;
        ord: bigint;
        state: string;
        pre_units: bigint | null;
        post_units: bigint | null;
        delta_units: bigint | null;
      }[]
    ).map((r) => ({
      signature: r.signature,
      ord: Number(r.ord),
      read: r.state === "read",
      preUnits: r.pre_units,
      postUnits: r.post_units,
      deltaUnits: r.delta_units,
    }));
    const low = lines[0]!.ord;
    const high = lines.at(-1)!.ord;
    const within = linesWithin.get(vault, low, high) as { n: bigint };
    if (Number(within.n) !== lines.length) return null;
    return { slot: Number(earlier.slot), lines, low, high };
  }
  const reorderSlotTx = sqlite.transaction(
    (vault: string, gap: GapLines, order: readonly string[]): boolean => {
      const current = selectCursor.get({ vault });
      if (!current || current.syncBefore !== null) return false;
      const block = slotBlock(vault, gap);
      if (block === null) return false;
      const { lines, low, high } = block;
      if (lines.some((l) => l.signature === current.newestSignature)) return false;
      const next = movementAbove.get(vault, high) as
        | { state: string; pre_units: bigint | null }
        | undefined;
      if (next?.state !== "read" || next.pre_units === null) return false;
      const below = movementAtOrBefore.get(vault, low - 1) as LineDb | undefined;
      const before = below ? toLine(below).postUnits : null;
      const placed = slotChainOrder(before, next.pre_units, lines, order);
      if (placed === null) return false;
      for (const l of placed) setOrd.run(l.ord, vault, l.signature);
      clearGapsAbove.run(vault, low - 1);
      const cursor = cursorRow.get(vault) as { chained_ord: Big } | undefined;
      const chained = num(cursor?.chained_ord ?? null);
      setChained.run(Math.min(chained ?? low - 1, low - 1), vault);
      return true;
    },
  );

  const healGapTx = sqlite.transaction(
    (vault: string, gap: GapLines, listing: readonly ListedSignature[], t: number): HealAttempt => {
      const none = { inserted: 0 };
      // A sync in progress numbers its next pages from the cursor: healed another time.
      const current = selectCursor.get({ vault });
      if (!current || current.syncBefore !== null) return none;
      const earlier = ordOf.get(vault, gap.afterSignature) as { ord: Big; slot: Big } | undefined;
      const later = ordOf.get(vault, gap.beforeSignature) as { ord: Big; slot: Big } | undefined;
      if (!earlier || !later) return none;
      const afterOrd = Number(earlier.ord);
      const beforeOrd = Number(later.ord);
      if (afterOrd >= beforeOrd) return none;
      // Only what the chain can hold between the two: a slot outside theirs is no such line.
      const within = listing.filter(
        (e) => e.slot >= Number(earlier.slot) && e.slot <= Number(later.slot),
      );
      const held = new Set(
        within
          .filter((e) => heldLine.get(vault, e.signature) !== undefined)
          .map((e) => e.signature),
      );
      const between = (
        linesBetween.all(vault, afterOrd, beforeOrd) as { signature: string; ord: Big }[]
      ).map((r) => ({ signature: r.signature, ord: Number(r.ord) }));
      const healed = healedOrder(afterOrd, beforeOrd, between, within, held);
      if (healed === null) return none;
      if (healed.shiftBy > 0) return { lacking: healed.shiftBy };
      let inserted = 0;
      for (const line of healed.lines) {
        if (line.entry === undefined) {
          setOrd.run(line.ord, vault, line.signature);
          continue;
        }
        const e = line.entry;
        insertLine.run(
          vault,
          e.signature,
          line.ord,
          e.slot,
          e.blockTime,
          e.err === null ? 1 : 0,
          t,
        );
        inserted++;
      }
      // The walk compares every movement from the earlier line again, and finds the gaps that
      // are still there. Its mark is lowered, never raised: lines above it that it has not
      // compared yet (below another heal's, or not read yet) were taken as compared.
      clearGapsAbove.run(vault, afterOrd);
      lowerChained.run(afterOrd, vault);
      return { inserted };
    },
  );
  const moveUpTx = sqlite.transaction(
    (vault: string, gap: GapLines, top: number, room: number): number | null => {
      const later = ordOf.get(vault, gap.beforeSignature) as { ord: Big } | undefined;
      if (!later || Number(later.ord) > top) return null;
      if (lineWithin.get(vault, top, top + room) !== undefined) return null;
      const slice = sliceBottom.get(vault, later.ord, top) as { ord: Big } | undefined;
      const bottom = slice ? Number(slice.ord) : Number(later.ord);
      moveLines.run(room, vault, bottom, top);
      // The walk's mark moves with its line, so it neither skips nor repeats a comparison.
      moveChained.run(room, vault, bottom, top);
      return bottom > Number(later.ord) ? bottom - 1 : null;
    },
  );

  const storePageTx = sqlite.transaction(
    (
      vault: string,
      seen: LedgerCursor,
      page: readonly ListedSignature[],
      last: boolean,
      t: number,
      finalThrough: number | null,
    ) => {
      const current = selectCursor.get({ vault });
      if (
        !current ||
        current.syncBefore !== seen.syncBefore ||
        current.syncNumber !== seen.syncNumber ||
        current.newestSignature !== seen.newestSignature
      ) {
        return false;
      }
      page.forEach((entry, i) => {
        const ord = (seen.syncNumber + 1) * ORD_SPAN - (seen.syncIndex + i) - 1;
        insertLine.run(
          vault,
          entry.signature,
          ord,
          entry.slot,
          entry.blockTime,
          entry.err === null ? 1 : 0,
          t,
        );
      });
      const top = seen.syncTop ?? page[0]?.signature ?? null;
      const topSlot = seen.syncTopSlot ?? page[0]?.slot ?? null;
      // The sync lists everything up to its first page's newest entry: what was final before
      // that page was asked for is listed once the sync completes.
      const final = finalOf.get(vault) as { final_through: Big; sync_final_through: Big };
      const listedFinal = seen.syncBefore === null ? finalThrough : num(final.sync_final_through);
      if (last) {
        complete.run(
          top ?? seen.newestSignature,
          top ? topSlot : seen.newestSlot,
          t,
          laterOf(num(final.final_through), listedFinal),
          t,
          vault,
        );
      } else {
        advance.run(top, topSlot, page.at(-1)!.signature, seen.syncIndex + page.length, t, vault);
        if (seen.syncBefore === null) setSyncFinal.run(listedFinal, vault);
      }
      return true;
    },
  );

  const recordReadsTx = sqlite.transaction(
    (
      vault: string,
      reads: readonly LineRead[],
      fetched: readonly FetchedTransaction[],
      t: number,
    ) => {
      const givenUp =
        fetched.length === 0
          ? []
          : givenUpAmong.all(JSON.stringify(fetched.map((f) => f.signature)));
      for (const f of fetched) {
        upsertTx.run(
          f.signature,
          f.slot,
          f.blockTime,
          f.fee,
          f.succeeded ? 1 : 0,
          f.err,
          f.facts,
          f.raw,
          t,
          t,
        );
      }
      for (const l of reads) {
        const changed = readLine.run(
          l.slot ?? null,
          l.blockTime,
          l.succeeded ? 1 : 0,
          l.pre,
          l.post,
          l.delta,
          l.memo,
          l.memoKind,
          l.memoJobId,
          memoJobsToText(l.memoJobs),
          foreignChangesToText(l.foreign),
          l.opened == null ? null : l.opened ? 1 : 0,
          l.otherOwner ?? null,
          // A line naming another owner knows the owner, however it was read.
          l.ownerAfter ?? l.otherOwner ?? null,
          l.delegate ?? null,
          l.hiddenDebit ?? null,
          l.depositIn ?? null,
          l.setAside ?? null,
          // A line read before, read again (listed again by a migration), that pays out credits
          // its first reading did not see: listed now, so the next nightly run judges it even
          // where a run judged its time already (`listedSince`).
          l.hiddenDebit ?? null,
          l.hiddenDebit ?? null,
          t,
          // So is a line read earlier than it was listed: a node dating a theft just past a
          // night's window kept the run from reading it, and its own time then fell in the
          // window that run had judged, named by no run.
          l.blockTime,
          t,
          vault,
          l.signature,
        ).changes;
        // Another process read it first: its kind is written already.
        if (changed === 0) continue;
        if (l.slot != null) readSlot.run(l.signature, l.slot, l.signature, l.slot, vault);
        applyKind(vault, l, classify(vault, l), t);
        if (l.setAside != null) newestBelowSetAside.run(vault, l.signature, vault, l.signature);
      }
      // Found on chain after all: the jobs judged without them are judged again.
      reopenHolders(store, givenUp, t);
    },
  );

  // A line as it stands now, whatever it was when a review listed it for a step.
  const lineNow = big(
    `SELECT ${LINE_COLUMNS}, state FROM ledger_lines WHERE vault = ? AND signature = ?`,
  );

  /** Writes what `line` is by the receipts and pins recorded now, when that changed. */
  function classifyAgain(vault: string, line: LedgerLineRow, now: number, result: ReviewResult) {
    const c = classifyRow(vault, line);
    if (line.kind !== null && c.kind === line.kind && c.jobId === line.jobId) return c;
    const moved = {
      signature: line.signature,
      delta: line.deltaUnits,
      memoKind: line.memoKind,
      memoJobId: line.memoJobId,
      memoJobs: line.memoJobs ?? null,
    };
    result.released += applyKind(vault, moved, c, now);
    result.classified++;
    return c;
  }

  /**
   * One write transaction of a review's `step` over the lines it listed (`signatures`), each as
   * it stands now, from `from` on until `REVIEW_BATCH_MS` is spent: where the next one goes on
   * (`signatures.length` when done). Each line is judged whole in one transaction, from what is
   * committed, so a split changes no line's outcome: a line another writer judged in between
   * is judged again to the same answer, and a lock is released only while its row says it is
   * not (`releaseAccounted`), never twice.
   */
  const reviewBatchTx = sqlite.transaction(
    (
      vault: string,
      now: number,
      step: ReviewStep,
      signatures: readonly string[],
      from: number,
      work: ReviewWork,
    ): number => {
      const started = performance.now();
      let at = from;
      while (at < signatures.length) {
        const r = lineNow.get(vault, signatures[at++]) as LineDb | undefined;
        // Lines are never deleted, nor read lines listed again, but for a migration.
        if (r !== undefined && (step !== "unclassified" || r.state === "read")) {
          const line = toLine(r);
          if (step === "mixed") {
            if (line.kind !== null) {
              keepWithKeepers(
                vault,
                { ...line, delta: line.deltaUnits },
                { kind: line.kind, jobId: line.jobId },
                now,
              );
            }
          } else {
            const c = classifyAgain(vault, line, now, work.result);
            if (step === "locks" && c.kind === "lock" && c.jobId !== null) {
              work.openJobs.add(c.jobId);
            }
          }
        }
        if (performance.now() - started >= REVIEW_BATCH_MS) break;
      }
      return at;
    },
  );

  /**
   * Releases the locks of `jobs` (from `from` on) that are accounted for now, until
   * `REVIEW_BATCH_MS` is spent: where the next transaction goes on.
   */
  const releaseBatchTx = sqlite.transaction(
    (vault: string, jobs: readonly string[], from: number, result: ReviewResult): number => {
      const started = performance.now();
      let at = from;
      while (at < jobs.length) {
        result.released += releaseAccounted(vault, jobs[at++]!);
        if (performance.now() - started >= REVIEW_BATCH_MS) break;
      }
      return at;
    },
  );

  /**
   * Decides credits headers after `from` (locks by ord, then waiting jobs by id) until
   * `HEADER_BATCH_MS` is spent, adding to `result`; the place to go on from, or null when done.
   * Each late receipt's span runs from its lock to its recording (an import: every line since),
   * so a review decides them a batch per write transaction and lets other writers in between.
   */
  const headerBatchTx = sqlite.transaction(
    (vault: string, now: number, from: HeaderPlace, result: ReviewResult): HeaderPlace | null => {
      const started = performance.now();
      const spent = () => performance.now() - started >= HEADER_BATCH_MS;
      const cursor = cursorRow.get(vault) as { final_through: Big } | undefined;
      const finalThrough = num(cursor?.final_through ?? null);
      if (from.jobId === null) {
        for (const r of headerOpenAll.all(vault, from.lockOrd) as LineDb[]) {
          const line = toLine(r);
          const job =
            line.jobId === null
              ? undefined
              : (headerOf.get(line.jobId) as
                  | {
                      credits_remaining_units: bigint | null;
                      recorded_at: bigint;
                      responded_at: bigint | null;
                      settlement_tx: string | null;
                    }
                  | undefined);
          const header = job?.credits_remaining_units ?? null;
          const span =
            job === undefined || header === null
              ? null
              : headerSpan(
                  vault,
                  BigInt(line.ord),
                  spanEndOf(vault, line.jobId!, job, job.settlement_tx),
                  finalThrough,
                  header,
                );
          // A match that may not last (`headerMatchLasts`) waits, as one not decided does.
          const ok = span === null || (span.matched !== null && span.lasting);
          const off = span !== null && span.matched === null && span.covered;
          if (ok || off) {
            setHeader.run(ok ? 1 : 0, vault, line.signature);
            result.headersDecided++;
          }
          if (spent()) return { lockOrd: BigInt(line.ord), jobId: null };
        }
      }
      // The same span the verifier reads. A header that matches a balance surely before the
      // response passes where it stands: the verdict it had stays right, and reopening every
      // honest job verified before the ledger read its vault would verify it twice and flip it
      // to pending meanwhile. A header that matches none in a span now read in full, or only a
      // balance that may have come after the response, changes the verdict: reopened.
      const reopen: string[] = [];
      let next: HeaderPlace | null = null;
      for (const j of headerWaiting.all(vault, from.jobId ?? "") as {
        job_id: string;
        lock_tx: string | null;
        recorded_at: bigint;
        responded_at: bigint | null;
        credits_remaining_units: bigint;
        settlement_tx: string | null;
      }[]) {
        if (j.lock_tx === null) continue;
        const lock = lockLine.get(vault, j.lock_tx) as { ord: bigint; state: string } | undefined;
        // Nothing known while the lock is not read.
        if (lock?.state !== "read") continue;
        const span = headerSpan(
          vault,
          lock.ord,
          spanEndOf(vault, j.job_id, j, j.settlement_tx),
          finalThrough,
          j.credits_remaining_units,
        );
        if (span.matched !== null && span.ordered) {
          passHeader.run(
            JSON.stringify({ headerUnits: j.credits_remaining_units.toString(), vault }),
            JSON.stringify({ balanceUnits: span.matched.toString() }),
            now,
            j.job_id,
          );
          result.headersPassed++;
        } else if (span.covered) {
          reopen.push(j.job_id);
        }
        if (spent()) {
          next = { lockOrd: from.lockOrd, jobId: j.job_id };
          break;
        }
      }
      result.reopened += reopenJobs(store, { jobIds: reopen }, now);
      return next;
    },
  );

  const escrowScanRow = db
    .select({
      newestSignature: escrowScans.newestSignature,
      newestSlot: escrowScans.newestSlot,
      syncTop: escrowScans.syncTop,
      syncTopSlot: escrowScans.syncTopSlot,
      syncBefore: escrowScans.syncBefore,
      coveredSlot: escrowScans.coveredSlot,
      syncCoveredSlot: escrowScans.syncCoveredSlot,
    })
    .from(escrowScans)
    .where(eq(escrowScans.vault, sql.placeholder("vault")))
    .prepare();
  const coveredSlotOf = sqlite.prepare(
    "SELECT covered_slot AS coveredSlot, updated_at AS scannedAt FROM escrow_scans WHERE vault = ?",
  );
  const earliestJob = sqlite.prepare("SELECT min(created_at) FROM jobs").pluck();
  const writeEscrowScan = sqlite.prepare(
    `INSERT INTO escrow_scans (vault, newest_signature, newest_slot, sync_top, sync_top_slot,
       sync_before, covered_slot, sync_covered_slot, kept, updated_at)
     VALUES (@vault, @newestSignature, @newestSlot, @syncTop, @syncTopSlot, @syncBefore,
       @coveredSlot, @syncCoveredSlot, @kept, @now)
     ON CONFLICT (vault) DO UPDATE SET newest_signature = excluded.newest_signature,
       newest_slot = excluded.newest_slot, sync_top = excluded.sync_top,
       sync_top_slot = excluded.sync_top_slot, sync_before = excluded.sync_before,
       covered_slot = excluded.covered_slot, sync_covered_slot = excluded.sync_covered_slot,
       kept = kept + excluded.kept, updated_at = excluded.updated_at`,
  );
  const unreadOf = sqlite
    .prepare(
      "SELECT unread FROM escrow_pending WHERE job_id = @job AND signature = @signature AND vault = @vault",
    )
    .pluck();
  // A row held already keeps its first time; an unread hold writes why, and a hold from a
  // recorded job's own step (`named_by`) makes a listing's row one that is not pruned.
  const holdPending = sqlite.prepare(
    `INSERT INTO escrow_pending (job_id, signature, vault, block_time, listed_at, unread,
       disagreement, named_by)
     VALUES (@job, @signature, @vault, @blockTime, @now, @unread, @disagreement, @namedBy)
     ON CONFLICT (job_id, signature, vault) DO UPDATE SET
       unread = CASE WHEN excluded.unread IS NOT NULL THEN excluded.unread ELSE unread END,
       disagreement = CASE WHEN excluded.unread IS NOT NULL THEN excluded.disagreement
         ELSE disagreement END,
       named_by = coalesce(named_by, excluded.named_by)
     WHERE excluded.unread IS NOT NULL OR (named_by IS NULL AND excluded.named_by IS NOT NULL)`,
  );
  const releasePending = sqlite
    .prepare(
      `DELETE FROM escrow_pending WHERE job_id = @job AND signature = @signature AND vault = @vault
       RETURNING unread`,
    )
    .pluck();
  // Not those a recorded job's own step holds (`named_by`): kept until their job is recorded.
  // INDEXED BY the index without them: walking escrow_pending_listed, each write read every
  // one held before the hour (made-up memos can mark any number).
  const prunePending = sqlite.prepare(
    `DELETE FROM escrow_pending INDEXED BY escrow_pending_unmarked
     WHERE vault = @vault AND listed_at < @before AND unread IS NULL AND named_by IS NULL`,
  );
  // Only those fetched once: each named signature is read at least once, however many came.
  // (Named-past rows are never marked: the index without the marked ones holds them all.)
  const pruneNamedPast = sqlite.prepare(
    `DELETE FROM escrow_pending INDEXED BY escrow_pending_unmarked
     WHERE vault = @vault AND listed_at < @before AND unread IS NOT NULL AND named_by IS NULL`,
  );
  const unreadNamedPast = sqlite.prepare(
    `UPDATE escrow_pending SET unread = @reason
     WHERE job_id = @job AND signature = @signature AND vault = @vault`,
  );
  // The ones not fetched yet first: a page of made-up names, never served, holds none behind it.
  const namedPastRows = sqlite.prepare(
    `SELECT p.job_id AS job, p.signature, v.vault AS creditVault
     FROM escrow_pending p INDEXED BY escrow_pending_unmarked JOIN jobs j ON j.job_id = p.job_id
       LEFT JOIN credit_vaults v ON v.key_fingerprint = j.key_fingerprint
     WHERE p.vault = @vault AND p.named_by IS NULL
     ORDER BY p.unread IS NOT NULL, p.listed_at, p.job_id, p.signature LIMIT @limit`,
  );
  const unreadEntries = sqlite.prepare(
    `SELECT job_id AS jobId, signature, unread AS reason, disagreement
     FROM escrow_pending WHERE job_id IN (SELECT value FROM json_each(@ids)) AND vault = @vault
       AND unread IS NOT NULL
     ORDER BY job_id, signature`,
  );
  // Not the rows a recorded job's own step holds (`named_by`): their job's claim judges them,
  // found by the primary key (src/store/job-queue.ts). Walked here, every page read each one
  // whose job is not recorded (made-up memos can mark any number) before reaching the next.
  const pendingRecorded = sqlite.prepare(
    `SELECT p.job_id AS job, p.signature, p.listed_at AS listedAt
     FROM escrow_pending p INDEXED BY escrow_pending_unmarked
     WHERE p.vault = @vault AND p.named_by IS NULL AND EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = p.job_id
       AND (j.settlement_tx IS NOT NULL OR j.api_settlement_tx IS NOT NULL
         OR (CASE WHEN json_type(j.conflict_signatures) = 'array'
           THEN json_array_length(j.conflict_signatures) ELSE 0 END) > 0
         OR p.listed_at < @unclosedBefore))
       AND (@afterAt IS NULL OR (p.listed_at, p.job_id, p.signature) > (@afterAt, @afterJob, @afterSig))
     ORDER BY p.listed_at, p.job_id, p.signature LIMIT @limit`,
  );
  const escrowFigures = sqlite.prepare(
    `SELECT (SELECT updated_at FROM escrow_scans WHERE vault = @vault) AS scannedAt,
       (SELECT count(*) FROM escrow_pending WHERE vault = @vault) AS pending`,
  );
  const keepEscrowTx = sqlite.transaction(
    (vault: string, change: EscrowScanChange, state: EscrowScanState | null, now: number) => {
      const gained = new Set<string>();
      for (const { job, signature } of change.keep) {
        if (keepWithJob(store, job, signature, now, maxKeptWithPayouts)) gained.add(job);
      }
      // A job whose entry turns unread is not judged until it is read; one whose unread entry
      // goes is judged again without it.
      const unreadChanged = new Set<string>();
      for (const p of change.release) {
        const { job, signature } = p;
        if (releasePending.get({ job, signature, vault }) != null) unreadChanged.add(job);
      }
      for (const { job, signature } of change.releasePast ?? []) {
        releasePending.get({ job, signature, vault: namedPastVault });
      }
      prunePending.run({ vault, before: change.pruneBefore });
      for (const p of change.unreadPast ?? []) {
        unreadNamedPast.run({ ...p, vault: namedPastVault });
      }
      pruneNamedPast.run({ vault: namedPastVault, before: change.pruneBefore });
      for (const p of change.hold) {
        const { job, signature, blockTime } = p;
        if (p.unread !== undefined && unreadOf.get({ job, signature, vault }) == null) {
          unreadChanged.add(job);
        }
        holdPending.run({
          job,
          signature,
          blockTime,
          vault,
          now,
          unread: p.unread?.reason ?? null,
          disagreement: p.unread?.disagreement ? JSON.stringify(p.unread.disagreement) : null,
          namedBy: p.namedBy ?? null,
        });
      }
      const reopen = [...new Set([...gained, ...unreadChanged])];
      if (reopen.length > 0) reopenJobs(store, { jobIds: reopen }, now);
      if (state !== null) writeEscrowScan.run({ vault, ...state, kept: gained.size, now });
      return { gained: [...gained], unreadChanged: [...unreadChanged] };
    },
  );

  return {
    async pinnedVaults() {
      return pinned.all().map((r) => r.vault);
    },
    async statementVaults() {
      return everyVault.all() as string[];
    },
    async keysOf(vault) {
      return keys.all({ vault }).map((r) => r.key);
    },
    async escrowScanOf(vault) {
      return escrowScanRow.get({ vault }) ?? null;
    },
    async escrowCoverage(vault, jobIds) {
      const scan = coveredSlotOf.get(vault) as
        | { coveredSlot: number | bigint | null; scannedAt: number | bigint }
        | undefined;
      const coveredSlot = scan?.coveredSlot ?? null;
      const held =
        jobIds.length === 0
          ? []
          : db
              .selectDistinct({ jobId: escrowPending.jobId })
              .from(escrowPending)
              .where(and(eq(escrowPending.vault, vault), inArray(escrowPending.jobId, [...jobIds])))
              .all();
      const pending = new Set(held.map((r) => r.jobId));
      return {
        coveredSlot: coveredSlot === null ? null : Number(coveredSlot),
        pending,
        scannedAt: scan ? Number(scan.scannedAt) : null,
      };
    },
    async escrowUnread(vault, jobIds) {
      const byJob = new Map<string, EscrowUnread[]>();
      if (jobIds.length === 0) return byJob;
      const rows = unreadEntries.all({ vault, ids: JSON.stringify(jobIds) }) as {
        jobId: string;
        signature: string;
        reason: string;
        disagreement: string | null;
      }[];
      for (const r of rows) {
        const entry: EscrowUnread = {
          signature: r.signature,
          reason: r.reason,
          disagreement: r.disagreement === null ? null : JSON.parse(r.disagreement),
        };
        byJob.set(r.jobId, [...(byJob.get(r.jobId) ?? []), entry]);
      }
      return byJob;
    },
    async earliestJobAt() {
      return (earliestJob.get() as number | null) ?? null;
    },
    async unnamedSteps(pairs) {
      if (pairs.length === 0) return { open: [], unclosed: [], absent: [] };
      const rows = db
        .select(namedStepsSelection(jobs))
        .from(jobs)
        .where(inArray(jobs.jobId, [...new Set(pairs.map((p) => p.job))]))
        .all();
      return escrowStepsOf(pairs, rows);
    },
    async pendingEscrowSteps(vault, limit, unclosedBefore, after) {
      return (
        pendingRecorded.all({
          vault,
          limit,
          unclosedBefore,
          afterAt: after?.listedAt ?? null,
          afterJob: after?.job ?? null,
          afterSig: after?.signature ?? null,
        }) as { job: string; signature: string; listedAt: number | bigint }[]
      ).map((r) => ({ ...r, listedAt: Number(r.listedAt) }));
    },
    async namedPastSteps(limit) {
      return namedPastRows.all({ vault: namedPastVault, limit }) as NamedPastStep[];
    },
    async escrowScanFigures(vault) {
      return escrowFigures.get({ vault }) as { scannedAt: number | null; pending: number };
    },
    async keepEscrowSteps(vault, change, state, now) {
      return turns.run(() => keepEscrowTx.immediate(vault, change, state, now));
    },
    async cursor(vault, now) {
      insertCursor.run({ vault, at: now });
      return selectCursor.get({ vault })!;
    },
    async storePage(vault, seen, page, last, now, finalThrough = null) {
      return turns.run(() => storePageTx.immediate(vault, seen, page, last, now, finalThrough));
    },
    async storedGaps(vault, limit) {
      return (gapLines.all(vault, limit) as { after: string; before: string }[]).map((g) => ({
        afterSignature: g.after,
        beforeSignature: g.before,
      }));
    },
    async heldLines(vault, signatures) {
      return new Set(signatures.filter((s) => heldLine.get(vault, s) !== undefined));
    },
    async relistBelow(vault) {
      return (relistBelow.get(vault) as string | null | undefined) ?? null;
    },
    async setRelistBelow(vault, below) {
      setRelistBelow.run(below, vault);
    },
    async lineBelow(vault, signature) {
      return (heldLineBelow.get(vault, signature) as string | undefined) ?? null;
    },
    async heldWithinBelow(vault, top, signature, lines) {
      return heldWithin.get(vault, top, lines, signature) !== undefined;
    },
    async healGap(vault, gap, listing, now, signal) {
      return healMakingRoom(
        {
          heal: () => turns.run(() => healGapTx.immediate(vault, gap, listing, now)),
          roomTop: async (room) => {
            const later = ordOf.get(vault, gap.beforeSignature) as { ord: Big } | undefined;
            if (!later) return null;
            const top = roomTopFrom.get(vault, later.ord, room) as { ord: Big } | undefined;
            return top ? Number(top.ord) : null;
          },
          moveUp: (top, room) => turns.run(() => moveUpTx.immediate(vault, gap, top, room)),
        },
        signal,
      );
    },
    async slotAround(vault, gap) {
      const block = slotBlock(vault, gap);
      if (block === null) return null;
      const above = lineAbove.get(vault, block.high) as { signature: string } | undefined;
      const below = lineBelow.get(vault, block.low) as { signature: string } | undefined;
      return {
        slot: block.slot,
        signatures: block.lines.map((l) => l.signature),
        above: above?.signature ?? null,
        below: below?.signature ?? null,
      };
    },
    async reorderSlot(vault, gap, order) {
      return turns.run(() => reorderSlotTx.immediate(vault, gap, order));
    },
    async listedSignatures(vault, throughSec) {
      if (throughSec !== undefined) return listedLinesThrough.all(vault, throughSec) as string[];
      return listedLines.all(vault) as string[];
    },
    async storedTransaction(signature) {
      return storedTx.get(signature) as
        | { signature: string; facts: string; raw: string | null }
        | undefined;
    },
    async lockLinesOf(vault, jobIds) {
      return jobIds.flatMap((job) => lockLinesOfJob.all({ vault, job }) as VaultLockLine[]);
    },
    async storedTransactions(signatures) {
      const out = new Map<string, { signature: string; facts: string; raw: string | null }>();
      for (const signature of signatures) {
        const row = storedTx.get(signature) as
          | { signature: string; facts: string; raw: string | null }
          | undefined;
        if (row) out.set(signature, row);
      }
      return out;
    },
    async recordReads(vault, reads, fetched, now) {
      // One writer at a time: no row is held by another session.
      if (reads.length > 0 || fetched.length > 0) {
        await turns.run(() => recordReadsTx.immediate(vault, reads, fetched, now));
      }
      return [];
    },
    async newestListedSlot(vault) {
      return newestListedSlot.get(vault) as number | null;
    },
    async setBalance(vault, balance, at) {
      setBalance.run({
        vault,
        amount: balance.amount,
        slot: balance.slot,
        at,
        foreign: foreignHoldingToText(balance.foreign),
      });
    },
    async setControl(vault, control, at) {
      setControl.run({ vault, control: balanceControlToText(control, at), at });
    },
    async setError(vault, message, at) {
      setError.run({ vault, message, at });
    },
    async review(vault, now = Date.now()) {
      const result: ReviewResult = {
        classified: 0,
        released: 0,
        headersDecided: 0,
        reopened: 0,
        headersPassed: 0,
        gaps: 0,
      };
      const work: ReviewWork = { result, openJobs: new Set() };
      let wrote = false;
      /** Runs `batch` from 0 until it is through `items`, a write transaction at a time. */
      const inBatches = async <T>(
        items: readonly T[],
        batch: (items: readonly T[], from: number) => number,
      ) => {
        for (let from = 0; from < items.length; wrote = true) {
          // Between transactions a moment for the writers that wait: the receipt writers try
          // again every few milliseconds (src/recorder/receipt-writer.ts).
          if (wrote) await new Promise((resolve) => setTimeout(resolve, HEADER_BATCH_MS / 2));
          const at = from;
          from = await turns.run(() => batch(items, at));
        }
      };
      // Each step lists its lines when the one before is through (read outside any write
      // transaction), then judges them a batch per write transaction, in the order one
      // transaction took them: lines read without a kind, `unexplained` and `deposit` lines
      // (a receipt recorded since can explain one), lines whose memos name several jobs (each
      // other job it names that is recorded only now is kept with it now), and open locks.
      // An open lock read before either key was pinned is checked again: a job that cannot pay
      // from this vault now (its key pinned elsewhere, the vault pinned to another key) does not
      // keep another customer's debit as its lock; nor does a job whose receipt names another
      // escrow keep one only its jobs API answer named, released or not (`answerOnlyLocks`).
      // Then, once every lock is filed anew, the locks that are accounted for now.
      const steps: [ReviewStep, () => string[]][] = [
        ["unclassified", () => unclassified(vault)],
        ["review", () => reviewAll(vault)],
        ["mixed", () => mixedAll(vault)],
        ["locks", () => [...openLocksAll(vault), ...answerOnlyLocks(vault)]],
      ];
      for (const [step, listed] of steps) {
        await inBatches(listed(), (signatures, from) =>
          reviewBatchTx.immediate(vault, now, step, signatures, from, work),
        );
      }
      await inBatches([...work.openJobs], (jobs, from) =>
        releaseBatchTx.immediate(vault, jobs, from, result),
      );
      if (wrote) await new Promise((resolve) => setTimeout(resolve, HEADER_BATCH_MS / 2));
      const walking = await turns.run(() => walkOnTx.immediate(vault, result));
      await walkInSlices(walking, () => turns.run(() => walkOnTx.immediate(vault, result)));
      let place: HeaderPlace | null = { lockOrd: -1n, jobId: null };
      for (let first = true; place !== null; first = false) {
        // Between batches a moment for the writers that wait: the receipt writers try again
        // every few milliseconds (src/recorder/receipt-writer.ts).
        if (!first) await new Promise((resolve) => setTimeout(resolve, HEADER_BATCH_MS / 2));
        const from: HeaderPlace = place;
        place = await turns.run((): HeaderPlace | null =>
          headerBatchTx.immediate(vault, now, from, result),
        );
      }
      return result;
    },
    async creditSpans(requests) {
      const out = new Map<string, CreditSpan>();
      const finalThrough = new Map<string, number | null>();
      for (const r of requests) {
        if (!finalThrough.has(r.vault)) finalThrough.set(r.vault, finalThroughOf(r.vault));
        const span = spanOfLock(
          r.vault,
          r.jobId,
          r.lockTx,
          {
            recorded_at: BigInt(r.recordedAt),
            responded_at: r.respondedAt === null ? null : BigInt(r.respondedAt),
          },
          r.settlementTx ?? null,
          finalThrough.get(r.vault)!,
        );
        out.set(r.jobId, {
          balancesUnits: span.balances,
          ordered: span.ordered,
          covered: span.covered,
        });
      }
      return out;
    },
    async oldestFinalThrough() {
      return num(oldestFinal.get() as Big);
    },
    async markJudged(vault, through, at) {
      markJudged.run(through, at, vault);
    },
    async listedSince(vault, since, beforeSec) {
      const rows = listedSince.all(vault, since, beforeSec) as {
        signature: string;
        block_time: bigint;
      }[];
      return rows.map((r) => ({ signature: r.signature, blockTime: Number(r.block_time) }));
    },
    async historyStart(vault) {
      const r = oldestLine.get(vault) as
        | { signature: string; slot: bigint; block_time: Big; state: string; opened: Big }
        | undefined;
      if (!r) return null;
      return {
        signature: r.signature,
        slot: Number(r.slot),
        blockTime: num(r.block_time),
        read: r.state === "read",
        opened: r.opened === null ? null : r.opened === 1n,
      };
    },
    async setOpened(vault, signature, opened) {
      setOpened.run(opened ? 1 : 0, vault, signature);
    },

    async cursorFigures(vault) {
      const r = cursorRow.get(vault) as
        | {
            synced_at: Big;
            final_through: Big;
            balance_units: Big;
            balance_slot: Big;
            balance_foreign: string | null;
            balance_control: string | null;
            slot: Big;
            judged_through: Big;
            judged_at: Big;
            last_error: string | null;
          }
        | undefined;
      if (!r) return undefined;
      return {
        syncedAt: num(r.synced_at),
        finalThrough: num(r.final_through),
        balanceUnits: r.balance_units,
        balanceSlot: num(r.balance_slot),
        balanceForeign: foreignHoldingOf(r.balance_foreign),
        balanceControl: balanceControlOf(r.balance_control),
        newestSlot: num(r.slot),
        judgedThrough: num(r.judged_through),
        judgedAt: num(r.judged_at),
        lastError: r.last_error,
      };
    },
    async openingUnits(vault, fromSec) {
      const first = firstMovement.get(vault) as bigint | undefined;
      if (first === undefined) return null;
      const day = Math.floor(fromSec / DAY);
      const whole = dailyTotalBefore(vault, day);
      const partial = lineTotalBetween(vault, day * DAY, fromSec);
      const unread = unclassifiedBefore(vault, fromSec);
      return first + whole + partial + unread;
    },
    async periodSums(vault, fromSec, toSec) {
      const sums = emptySums();
      const add = (
        rows: { kind: LineKind; lines: bigint; units_lo: bigint; units_hi: bigint }[],
      ) => {
        for (const r of rows) {
          sums[r.kind].lines += Number(r.lines);
          sums[r.kind].units += joinParts(r.units_hi, r.units_lo);
        }
      };
      const firstDay = Math.ceil(fromSec / DAY);
      const endDay = Math.floor(toSec / DAY);
      if (firstDay >= endDay) {
        add(lineSums.all(vault, fromSec, toSec) as never);
      } else {
        add(dailySums.all(vault, firstDay, endDay) as never);
        add(lineSums.all(vault, fromSec, firstDay * DAY) as never);
        add(lineSums.all(vault, endDay * DAY, toSec) as never);
      }
      const depositIn = returnDepositIn(vault, fromSec, toSec);
      sums.return.units -= depositIn;
      sums.deposit.units += depositIn;
      return sums;
    },
    async latestRecordedAfter(from, to) {
      return latestRecordedAfter.get({ from, to }) as number | null;
    },
    async earliestDatedBefore(from, to) {
      return earliestDatedBefore.get({ from, to }) as number | null;
    },
    async countDatedIn(from, to) {
      return countDatedIn.get({ from, to }) as number;
    },
    async pendingCounts(vault, fromSec, toSec) {
      // Unclassified lines are few (read before migration 0006): counted whatever their time.
      const unclassified = unclassifiedAll.get(vault) as number;
      return {
        inPeriod: listedInPeriod.get(vault, fromSec, toSec) as number,
        upTo: (listedUpTo.get(vault, toSec) as number) + unclassified,
        all: (listedAll.get(vault) as number) + unclassified,
      };
    },
    async reviewLines(vault, fromSec, toSec) {
      return (reviewPeriod.all(vault, fromSec, toSec) as LineDb[]).map((r) => {
        const line = toLine(r);
        return { ...line, now: classifyRow(vault, line) };
      });
    },
    async overdueLocks(vault, fromSec, toSec, windowSeconds, asOfSec, extra = []) {
      const candidates = [
        ...(openLocksPeriod.all(vault, fromSec, toSec) as LineDb[]).map(toLine),
        ...extra,
      ];
      const byJob = new Map<string, Map<string, bigint>>();
      const due: OverdueLock[] = [];
      for (const l of candidates) {
        if (l.blockTime === null || l.blockTime + windowSeconds >= asOfSec || l.jobId === null) {
          continue;
        }
        let out = byJob.get(l.jobId);
        if (!out) {
          out = outstanding(
            vault,
            l.jobId,
            extra.filter((e) => e.jobId === l.jobId),
            true,
          ).out;
          byJob.set(l.jobId, out);
        }
        const left = out.get(l.signature) ?? -l.deltaUnits;
        if (left > 0n) due.push({ ...l, outstandingUnits: left });
      }
      return due;
    },
    async headerChecks(vault, fromSec, toSec, extra = []) {
      const finalThrough = finalThroughOf(vault);
      const out: HeaderCheck[] = [];
      for (const line of [
        ...(headerOpenPeriod.all(vault, fromSec, toSec) as LineDb[]).map(toLine),
        ...extra,
      ]) {
        const check = headerCheck(vault, line, finalThrough);
        if (check) out.push(check);
      }
      return out;
    },
    async foreignLines(vault, fromSec, toSec) {
      return (
        foreignPeriod.all(vault, fromSec, toSec) as (FindingRow & { foreign_changes: string })[]
      ).map((r) => ({ ...findingLineOf(r), changes: foreignChangesOf(r.foreign_changes) }));
    },
    async ownerLines(vault, fromSec, toSec) {
      return (
        ownerPeriod.all(vault, fromSec, toSec) as (FindingRow & { other_owner: string })[]
      ).map((r) => ({ ...findingLineOf(r), owner: r.other_owner }));
    },
    async ownerNow(vault) {
      const r = newestKnownOwner.get(vault) as
        | (FindingRow & { other_owner: string | null })
        | undefined;
      if (r?.other_owner == null) return null;
      return { ...findingLineOf(r), owner: r.other_owner };
    },
    async ownerShownLine(vault) {
      const r = newestKnownOwner.get(vault) as FindingRow | undefined;
      return r === undefined ? null : { signature: r.signature, slot: Number(r.slot) };
    },
    async mixedMemoLines(vault, fromSec, toSec) {
      return (mixedPeriod.all(vault, fromSec, toSec) as LineDb[]).map((r) =>
        mixedMemoLineOf(toLine(r)),
      );
    },
    async delegateLines(vault, fromSec, toSec) {
      return (
        delegatePeriod.all(vault, fromSec, toSec) as (FindingRow & { delegate: string })[]
      ).map((r) => ({ ...findingLineOf(r), delegate: r.delegate }));
    },
    async hiddenDebitLines(vault, fromSec, toSec) {
      return (
        hiddenDebitPeriod.all(vault, fromSec, toSec) as (FindingRow & {
          delta_units: bigint | null;
          hidden_debit_units: bigint;
        })[]
      ).map((r) => ({
        ...findingLineOf(r),
        deltaUnits: r.delta_units ?? 0n,
        hiddenUnits: r.hidden_debit_units,
      }));
    },
    async setAsideLines(vault, fromSec, toSec) {
      return (
        setAsidePeriod.all({ vault, from: fromSec, to: toSec }) as {
          signature: string;
          slot: bigint;
          block_time: bigint | null;
          set_aside: string;
        }[]
      ).map((r) => ({
        signature: r.signature,
        slot: Number(r.slot),
        blockTime: r.block_time === null ? null : Number(r.block_time),
        why: r.set_aside,
      }));
    },
    async gaps(vault, fromSec, toSec) {
      const out: StoredGap[] = (
        storedGaps.all(vault, fromSec, toSec) as {
          signature: string;
          slot: bigint;
          gap_after_signature: string;
          gap_after_slot: bigint;
          gap_units: bigint;
        }[]
      ).map((g) => ({
        afterSignature: g.gap_after_signature,
        beforeSignature: g.signature,
        fromSlot: Number(g.gap_after_slot),
        toSlot: Number(g.slot),
        missingUnits: g.gap_units,
      }));
      // Movements above the walk's position (unread lines below them) are compared here.
      const chained =
        num((cursorRow.get(vault) as { chained_ord: Big } | undefined)?.chained_ord ?? null) ?? -1;
      const tail = (tailFrom.all(vault, chained, toSec) as LineDb[]).map(toLine);
      if (tail.length > 0) {
        const prevRow = movementAtOrBefore.get(vault, chained) as LineDb | undefined;
        let prev = prevRow ? toLine(prevRow) : null;
        for (const line of tail) {
          const gap = gapBetween(prev, line);
          if (gap && line.blockTime !== null && line.blockTime >= fromSec) out.push(gap);
          prev = line;
        }
      }
      return out;
    },
    async movementAround(vault, toSec) {
      const next = nextMovement.get(vault, toSec) as bigint | undefined;
      if (next !== undefined) return { next, last: null };
      const last = lastMovement.get(vault, toSec) as bigint | undefined;
      return { next: null, last: last ?? null };
    },
    async lastMovementBefore(vault, toSec) {
      return (lastMovement.get(vault, toSec) as bigint | undefined) ?? null;
    },
    async newestMovement(vault) {
      const row = newestMovement.get(vault) as LineDb | undefined;
      if (row === undefined) return null;
      const line = toLine(row);
      return {
        signature: line.signature,
        slot: line.slot,
        blockTime: line.blockTime,
        postUnits: line.postUnits,
      };
    },
  };
}
