import { factsFromJson } from "../chain/facts-json.js";
import { withoutUrlSecrets } from "../chain/url-secrets.js";
import type { Store } from "../db/client.js";
import { printable } from "../printable-text.js";
import { csvCell, csvNameCell, csvTextCell } from "../reports/csv-cell.js";
import { isoOf } from "../reports/period.js";
import {
  type AccountSnapshot,
  type AccountSnapshotsStore,
  createAccountSnapshotsStore,
} from "../store/account-snapshots.js";
import {
  createLedgerStore,
  type LedgerLineRow,
  type LedgerStore,
  type LineKind,
  type SetAsideLine,
} from "../store/ledger.js";
import type { MixedMemoLine } from "../store/ledger-rules.js";
import { createSignatureStore, pairKey } from "../store/signatures.js";
import type { Profile } from "../verify/profiles.js";
import { accountSnapshotToJson } from "./account-snapshots.js";
import { approvedOf } from "./reader.js";

/**
 * The statement of a credit vault for a period, as a bank reconciliation: opening balance +
 * deposits - locks + returns (- unexplained debits + unexplained credits) = closing balance,
 * every line tied to a recorded job or called what it is, and the closing balance compared
 * with the chain's own figure. Lines are classified when read (src/store/ledger.ts), and the
 * ones a later receipt could explain again when the statement is built:
 *
 * - `lock`: money out by the escrow transaction of a recorded job;
 * - `return`: money in by the settlement or refund of a recorded job, or money in whose memo
 *   settles or refunds a job whose lock this vault paid (receipted or not);
 * - `deposit`: any other money in (a top-up);
 * - `unexplained`: any other money out: an `unreceipted_debit`, the finding this exists for.
 *
 * A line is the vault's net change in its transaction. Money its transfers and burns took out
 * of the vault beyond that (a payout inside a top-up: 1,000,000 in and 300,000 out is a net
 * deposit of 700,000) is an `unreceipted_debit` of what left beyond the net debit, whatever the
 * line is filed as, and the money in that hid it counts among the deposits: a line of money in
 * only is what a Decentral step or top-up moves.
 *
 * A recorded job's lock that its returns and settlement do not account for within the profile's
 * settlement window plus `graceSeconds` is an `unreleased_lock` finding, with what is still out.
 *
 * Only the profile's credit mint (under a token program it allows) is the vault's money. The
 * vault's address moving another mint (closed and opened again in a token of the same
 * decimals, say) is a `foreign_mint_movement` finding, never a line's amount; and a balance
 * read that found another mint there is a `foreign_mint_balance` finding and 0 credits.
 *
 * Every credit vault is owned by the profile's escrow authority. A transaction after which the
 * vault's owner is another (a SetAuthority, moving nothing, and every transaction after it) is
 * a `vault_owner_changed` finding: the vault's money is that owner's to spend, though every
 * line of it may still sum; while the newest read transaction showing the owner leaves it so,
 * every statement says `vault_owner_now` too. So is a delegate: a transaction whose Approve or ApproveChecked
 * names the vault is a `vault_delegate_approved` finding, naming the delegate.
 *
 * A transaction moving the vault's money whose memos name several jobs, or several steps of one
 * job, is a `mixed_job_memos` finding: nobody can say whose money it is. The line is still
 * filed (the first job it can be a lock or return of) and kept with each job it names.
 */

export type { LineKind };

export interface StatementLine {
  signature: string;
  slot: number;
  blockTime: number | null;
  /** Change of the vault's balance: negative out, positive in. */
  amountUnits: bigint;
  kind: LineKind;
  /** The recorded job the line belongs to (lock or return), else null. */
  jobId: string | null;
  memo: string | null;
  /** The job the memo names, recorded or not. */
  memoJobId: string | null;
}

export interface UnexplainedLine extends StatementLine {
  finding: "unreceipted_debit";
  /** The job its memo names once that job holds the transaction and is judged (`nameJudgedJobs`). */
  jobId: string | null;
}

export interface UnreleasedLock {
  finding: "unreleased_lock";
  jobId: string;
  signature: string;
  lockUnits: bigint;
  /**
   * What of the lock nothing accounts for yet: the lock less what the job's returns brought back
   * and its settlement paid out (the whole lock when nothing did).
   */
  outstandingUnits: bigint;
  lockedAt: string | null;
  /** When the return was due: the lock's block time + settlement window + grace. */
  dueBy: string | null;
}

/**
 * A lock of the period still out whose due time (block time + settlement window + grace) the
 * history read has not passed: no statement can call it released or unreleased yet, so the
 * period is not `complete` while one is. Not a finding: once due, it is released or an
 * `unreleased_lock`.
 */
export interface LockNotDue extends Omit<UnreleasedLock, "finding"> {
  finding: "lock_not_due";
}

/**
 * Two consecutive movements whose balances do not chain (the first's balance after is not the
 * second's balance before): transactions between them are missing from the history read, e.g.
 * pruned by a non-archival node, or left out by an endpoint. Not fraud by itself, but a
 * statement with a gap cannot show that nothing else moved: it is not `complete`, and the
 * nightly run counts it as a finding. Read the range again from an archival node.
 */
export interface LedgerGap {
  /**
   * The movement before the gap; null when no movement of the vault is listed at all (`fromSlot`
   * 0), yet the balance read holds credits: whatever brought them in, and took any out, unseen.
   */
  afterSignature: string | null;
  /**
   * The movement after the gap; null when the gap ends at the vault's balance read (`toSlot`
   * its slot): the newest movement read does not hold the balance read after it.
   */
  beforeSignature: string | null;
  fromSlot: number;
  toSlot: number;
  /** What moved unseen between them: the second's balance before - the first's after. */
  missingUnits: bigint;
}

/**
 * A recorded job whose `x-decentral-credits-remaining` matches no balance the vault held from
 * its lock until its response was recorded (whole credits: a balance b matches a header of h
 * units when h <= b < h + 10,000).
 */
export interface CreditsHeaderMismatch {
  finding: "credits_header_mismatch";
  jobId: string;
  headerUnits: bigint;
  /** The balances the vault held in that span, oldest first. */
  balancesUnits: bigint[];
}

/**
 * A recorded job whose credits header matches no balance of the vault read so far in its span,
 * the span not read in full yet: the chain had not finalized past its response (and the clocks'
 * slack) when the vault was listed, a line of it is listed but not read, or the settlement its
 * receipt names is not read. Not a mismatch yet, and not matched either: the next read of the
 * vault decides it.
 */
export interface CreditsHeaderUndecided {
  finding: "credits_header_undecided";
  jobId: string;
  headerUnits: bigint;
  /** The balances read so far in that span, oldest first. */
  balancesUnits: bigint[];
}

/**
 * A transaction that moved the vault's address in a mint (or token program) other than the
 * credits': what is there is not credits, whatever its decimals or memo. Never summed.
 */
export interface ForeignMintMovement {
  finding: "foreign_mint_movement";
  signature: string;
  slot: number;
  blockTime: number | null;
  memo: string | null;
  memoJobId: string | null;
  changes: { mint: string; programId: string | null; amountUnits: bigint }[];
}

/**
 * The vault's address, at the last balance read, held a token account of another mint (or
 * program) instead of credits: the account was closed and opened again. Its closing balance
 * on chain counts 0 credits.
 */
export interface ForeignMintBalance {
  finding: "foreign_mint_balance";
  mint: string | null;
  programId: string;
  amountUnits: bigint | null;
  slot: number | null;
}

export type ForeignMintFinding = ForeignMintMovement | ForeignMintBalance;

/**
 * A transaction after which the vault's owner is not the escrow authority, the owner of every
 * credit vault: the owner named can spend the vault's whole balance alone, and what a job
 * returns there is not the customer's. Moved money or not (the SetAuthority itself moves none).
 */
export interface VaultOwnerChanged {
  finding: "vault_owner_changed";
  signature: string;
  slot: number;
  blockTime: number | null;
  /** The vault's owner after the transaction. */
  owner: string;
  memo: string | null;
  memoJobId: string | null;
}

/**
 * The vault's newest read transaction that shows its owner (a SOL transfer to the vault shows
 * none) left it owned by another than the escrow authority: the vault is that owner's now,
 * whatever period the statement covers, and this is said by every statement until a
 * transaction gives it back (a `vault_owner_changed` is said only by the period holding its
 * transaction). The transaction named is the newest that shows it.
 */
export interface VaultOwnerNow {
  finding: "vault_owner_now";
  signature: string;
  slot: number;
  blockTime: number | null;
  /** The vault's owner after its newest read transaction that shows it. */
  owner: string;
  memo: string | null;
  memoJobId: string | null;
}

/**
 * A transaction whose Approve or ApproveChecked gave the vault a delegate: the delegate can
 * spend up to what was approved (the whole balance, often) alone, and nothing moves until it
 * does. A later Revoke is no finding; the approval stays one.
 */
export interface VaultDelegateApproved {
  finding: "vault_delegate_approved";
  signature: string;
  slot: number;
  blockTime: number | null;
  /**
   * The delegate: the instruction's accounts other than the vault, its owner and the credit
   * mint (space-separated when more), or `<kind>(<accounts>)` when none is left.
   */
  delegate: string;
  /**
   * What the transaction's last Approve of the vault let the delegate spend; null when the
   * stored transaction does not tell.
   */
  approvedUnits: bigint | null;
  memo: string | null;
  memoJobId: string | null;
}

/**
 * The vault's last balance read (`getAccountInfo`, the one the nightly run's `vaultOwnersNow`
 * reads) found its credit account owned by another than the escrow authority, or naming no
 * owner (`owner` null: the authority's is not proven): that owner may spend it alone. Said by
 * every statement while the read says so, unless its `vault_owner_now` names the same owner
 * (one cause, said once): a node leaving `owner` out of token balances shows no line of it.
 */
export interface VaultOwnerRead {
  finding: "vault_owner_read";
  owner: string | null;
  /** The balance read's slot. */
  slot: number;
  /** When the read was made (ISO 8601), null for a read kept before its time was. */
  readAt: string | null;
}

/**
 * The vault's last balance read found a delegate that may still spend `delegatedUnits` of it
 * alone (the nightly run's `vaultDelegatesNow`). Said by every statement while the read says
 * so, unless an Approve of the period gave the same delegate that very amount
 * (`vault_delegate_approved`): an Approve inside a call a node served with `[]` inner
 * instructions shows in no line, and an Approve partly spent since says nothing of what is left.
 */
export interface VaultDelegateRead {
  finding: "vault_delegate_read";
  delegate: string;
  delegatedUnits: bigint;
  /** The balance read's slot. */
  slot: number;
  /** When the read was made (ISO 8601), null for a read kept before its time was. */
  readAt: string | null;
}

/**
 * A transaction that moved the vault's money under memos naming several jobs or several steps
 * of one job (`refund:job_zzzz` and `refund:<A>`, say): whose money it is cannot be told.
 */
export type MixedJobMemos = MixedMemoLine & { finding: "mixed_job_memos" };

export interface VaultStatement {
  vault: string;
  /** Fingerprints of the API keys pinned to this vault. */
  keys: string[];
  /**
   * The history holds every transaction before this moment: the block time of the chain's
   * finalized slot when the last completed sync began (a few seconds behind the clock: a newer
   * transaction may not be final yet); null if never read so.
   */
  readThrough: string | null;
  /**
   * True when the history is read through `to` (the chain had finalized past `to` when it was
   * listed) and every transaction listed up to `to` is read.
   */
  historyRead: boolean;
  /**
   * True when the history is read (`historyRead`), it has no gap in the period, nothing of
   * the period lies before the history the RPC gave (`missingHistory`), and no lock of the
   * period is still out before its due time (`locksNotDue`): its findings will not change.
   */
  complete: boolean;
  /**
   * The oldest line the RPC listed is not the creation of the vault's account (a node that
   * pruned the vault's oldest transactions), and the period reaches back to it: the history
   * before that line is not available from the RPC, so the opening balance is that line's
   * balance before, which says nothing of what moved earlier. Null otherwise.
   */
  missingHistory: { beforeSignature: string; slot: number; blockTime: string | null } | null;
  /**
   * The chain's balance at `from`: the lines before it plus what moved unseen in their gaps,
   * the previous period's closing on chain. Null when the vault never moved and was never read.
   */
  openingUnits: bigint | null;
  depositsUnits: bigint;
  locksUnits: bigint;
  returnsUnits: bigint;
  unexplainedOutUnits: bigint;
  /** Locks - returns + unexplained debits: what the period cost, deposits aside. */
  netSpendUnits: bigint;
  closingByLedgerUnits: bigint | null;
  /** Null while a transaction listed up to `to` is not read (`unread`): not known then. */
  closingOnChainUnits: bigint | null;
  /**
   * Where the chain's closing figure comes from: `next_transaction` (the vault's balance before
   * its first movement at or after `to`), `balance_read` (getAccountInfo at finalized, in the
   * credit mint only, taken when every transaction up to its slot was listed),
   * `last_transaction` (the balance after the last movement before `to`; also when the first
   * movement after `to` does not chain from it, a gap across the edge), or null when the
   * vault never moved and was never read, or a transaction up to `to` is not read.
   */
  closingOnChainSource: "next_transaction" | "balance_read" | "last_transaction" | null;
  /**
   * Closing on chain - closing by ledger: 0 when the ledger holds every movement; null when
   * either is not known (a transaction up to `to` not read, say), or when the ledger wrote the
   * vault during each of the statement's reads of it (then `complete` is false too).
   */
  differenceUnits: bigint | null;
  /**
   * Transactions listed up to `to` (or of unknown time) whose lines are not read: the RPC did
   * not serve them yet, or they hold an amount beyond what the store holds (a balance above
   * 2^53 - 1 base units leaves every later line unread too). `why` is the reader's last error
   * on the vault, which names such an amount; null when it recorded none. Null when every
   * transaction up to `to` is read.
   */
  unread: { lines: number; why: string | null } | null;
  counts: {
    lines: number;
    deposits: number;
    locks: number;
    returns: number;
    unexplained: number;
    unreleasedLocks: number;
    /** Locks of the period still out, not due yet (`locksNotDue`). */
    locksNotDue: number;
    creditsHeaderMismatches: number;
    /** Headers matching no balance read so far, the span not read in full (`creditsHeaderUndecided`). */
    creditsHeaderUndecided: number;
    /** Foreign-mint findings (`foreignMint`). */
    foreignMint: number;
    /** Transactions after which another than the escrow authority owned the vault. */
    ownerChanges: number;
    /** Transactions that gave the vault a delegate. */
    delegateApprovals: number;
    /** Transactions that moved the vault's money under memos naming several jobs. */
    mixedMemos: number;
    /** Listed transactions not read yet (RPC trouble or pruned): the statement waits for them. */
    pending: number;
    /** Transactions naming the vault that moved none of its money (failed ones included). */
    noMovement: number;
  };
  unexplained: UnexplainedLine[];
  unreleasedLocks: UnreleasedLock[];
  /** Locks of the period still out whose due time the history read has not passed. */
  locksNotDue: LockNotDue[];
  /** Headers matching no balance of their span, read in full. */
  creditsHeaderMismatches: CreditsHeaderMismatch[];
  /** Headers matching no balance read so far of a span not read in full yet. */
  creditsHeaderUndecided: CreditsHeaderUndecided[];
  /** Movements of the vault's address in another mint, and another mint found there now. */
  foreignMint: ForeignMintFinding[];
  /** Transactions after which the vault's owner was not the escrow authority. */
  ownerChanges: (VaultOwnerChanged | VaultOwnerNow)[];
  /** Transactions whose Approve or ApproveChecked gave the vault a delegate. */
  delegateApprovals: VaultDelegateApproved[];
  /** Another owner, or none named, at the last balance read (`vault_owner_read`), else null. */
  ownerRead: VaultOwnerRead | null;
  /** A delegate that may still spend the vault at the last balance read, else null. */
  delegateRead: VaultDelegateRead | null;
  /** Transactions that moved the vault's money under memos naming several jobs. */
  mixedMemos: MixedJobMemos[];
  /**
   * Entries a node listed as the vault's whose transactions' own signatures prove they name no
   * account of it: set aside (read as moving nothing, among `noMovement`), each with why.
   */
  setAside: SetAsideLine[];
  gaps: LedgerGap[];
  /**
   * The newest `GET /v1/account` snapshot of the vault's key taken in the period: what Decentral
   * said against the vault's balance at that moment, and the difference (0 when they agree).
   */
  accountSnapshot: AccountSnapshot | null;
}

/**
 * The findings of a vault's statement: each line or job that needs a look, a closing balance
 * off the chain's, a gap or missing history (the kinds the nightly run counts, over the whole
 * period rather than its window's rules of what is new).
 */
export function findingCount(v: VaultStatement): number {
  return (
    (v.differenceUnits !== null && v.differenceUnits !== 0n ? 1 : 0) +
    v.unexplained.length +
    v.unreleasedLocks.length +
    v.creditsHeaderMismatches.length +
    v.creditsHeaderUndecided.length +
    v.foreignMint.length +
    v.ownerChanges.length +
    v.delegateApprovals.length +
    (v.ownerRead ? 1 : 0) +
    (v.delegateRead ? 1 : 0) +
    v.mixedMemos.length +
    v.gaps.length +
    (v.missingHistory ? 1 : 0)
  );
}

export interface Statement {
  from: number;
  to: number;
  generatedAt: number;
  vaults: VaultStatement[];
}

export interface StatementQuery {
  from: number;
  to: number;
  /** Only this vault; default every vault the ledger reads. */
  vault?: string;
}

export interface StatementOptions {
  profile: Profile;
  /** Seconds after the settlement window before an unreturned lock is a finding. Default 300. */
  graceSeconds?: number;
  now?: () => number;
}

/** Seconds after the settlement window before an unreturned lock is a finding, by default. */
export const defaultGraceSeconds = 300;

const DAY_SECONDS = 86_400;

const ledgerStores = new WeakMap<Store, LedgerStore>();
const snapshotStores = new WeakMap<Store, AccountSnapshotsStore>();

/**
 * The ledger store of an open store, created once per store (its statements are prepared when
 * it is created), so every statement built on that store reuses them.
 */
export function ledgerStoreOf(store: Store): LedgerStore {
  let ledger = ledgerStores.get(store);
  if (!ledger) {
    ledger = createLedgerStore(store);
    ledgerStores.set(store, ledger);
  }
  return ledger;
}

/**
 * Names on each unreceipted debit the job its memo names once that job holds the transaction
 * among its steps (any role, its conflicting receipts' signatures included: a second lock a
 * jobs API answer named, a line the ledger kept with it) and has been judged with it (a final
 * verdict): its audit record says what the debit did. A job still to be judged, or one whose
 * memo alone names it, is not named.
 */
async function nameJudgedJobs(store: Store, lines: UnexplainedLine[]): Promise<void> {
  const named = lines.filter((l) => l.memoJobId !== null);
  if (named.length === 0) return;
  const pairs = named.map((l) => ({ jobId: l.memoJobId!, signature: l.signature }));
  const judged = await createSignatureStore(store).namesAny(pairs, { judged: true });
  for (const l of named) if (judged.has(pairKey(l.memoJobId!, l.signature))) l.jobId = l.memoJobId;
}

function snapshotsOf(store: Store): AccountSnapshotsStore {
  let snapshots = snapshotStores.get(store);
  if (!snapshots) {
    snapshots = createAccountSnapshotsStore(store);
    snapshotStores.set(store, snapshots);
  }
  return snapshots;
}

/**
 * Builds the statement of every (or one) vault for `[from, to)`. Amounts are exact bigints.
 * Whole days come from the per-day sums, partial days from their lines; only the few lines a
 * later receipt could explain (unexplained debits, deposits), locks not released, credits
 * headers not known to match and movements above the gap walk are read one by one.
 */
export async function buildStatement(
  store: Store,
  query: StatementQuery,
  options: StatementOptions,
): Promise<Statement> {
  const ledger = ledgerStoreOf(store);
  const now = options.now ?? Date.now;
  const graceSeconds = options.graceSeconds ?? defaultGraceSeconds;
  // Block times are whole seconds: [from, to) in ms is [ceil(from/1000), ceil(to/1000)) in s.
  const fromSec = Math.ceil(query.from / 1000);
  const toSec = Math.ceil(query.to / 1000);
  const windowSeconds = options.profile.settlementWindowSeconds + graceSeconds;
  const vaults = query.vault ? [query.vault] : await ledger.statementVaults();

  // What a ledger round changes when it lists or reads lines of a vault: its cursor (pages,
  // balance, errors), its lines waiting to be read, and the kinds its review files lines under
  // again (a lock read before its receipt, an open lock whose key was pinned since): the sums by
  // kind of the whole UTC days around the period, from the per-day rows alone. A review between
  // the period's sums and its lines made the lock an unexplained debit in the sums and listed no
  // line of it.
  const dayStart = Math.floor(fromSec / DAY_SECONDS) * DAY_SECONDS;
  const dayEnd = Math.ceil(toSec / DAY_SECONDS) * DAY_SECONDS;
  const ledgerState = async (vault: string) =>
    JSON.stringify(
      [
        await ledger.cursorFigures(vault),
        await ledger.pendingCounts(vault, fromSec, toSec),
        await ledger.periodSums(vault, dayStart, Math.max(dayEnd, dayStart + DAY_SECONDS)),
      ],
      (_key, value) => (typeof value === "bigint" ? value.toString() : value),
    );
  const out: VaultStatement[] = [];
  for (const vault of vaults) {
    // A vault's figures come from several reads, not one snapshot: a ledger round that stored
    // or read lines of the vault between two of them gave a closing by the ledger off the
    // chain's by what it wrote, a difference no history holds. Built again while the ledger
    // moved under it, so the answer is one state the ledger held.
    let statement = await vaultStatement(vault);
    for (let tries = 1; tries < 5 && statement.moved; tries++) {
      statement = await vaultStatement(vault);
    }
    // Moved under every read (a busy vault whose statement outlasts a round): its closings are
    // of two states, their difference is no finding. Not known, and not complete, this time.
    out.push(
      statement.moved
        ? { ...statement.figures, complete: false, differenceUnits: null }
        : statement.figures,
    );
  }
  return { from: query.from, to: query.to, generatedAt: now(), vaults: out };

  /** The slot of `line`'s stored transaction, or null when it is not known. */
  async function transactionSlotOf(line: { signature: string } | null): Promise<number | null> {
    if (line === null) return null;
    const row = (await ledger.storedTransactions([line.signature])).get(line.signature);
    if (!row) return null;
    try {
      return factsFromJson(row.facts).slot;
    } catch {
      return null;
    }
  }

  async function vaultStatement(
    vault: string,
  ): Promise<{ figures: VaultStatement; moved: boolean }> {
    const state = await ledgerState(vault);
    const cursor = await ledger.cursorFigures(vault);

    /** The gap from the newest movement to the balance read, when they do not chain. */
    async function tailGapOf(unread: number, covers: boolean): Promise<LedgerGap | null> {
      // A line not read yet may hold the movement; a balance read below a listed line is older.
      if (unread > 0 || !covers) return null;
      const newest = await ledger.newestMovement(vault);
      const read = cursor?.balanceUnits;
      // No movement listed: the account held nothing the ledger saw, and an account that
      // holds credits got them in a transaction naming it. Left out, a listing that served
      // none of the vault's transactions made every statement open and close on the balance
      // read, `complete`, whatever was taken from it.
      const after = newest === null ? 0n : newest.postUnits;
      if (after === null || read == null || after === read) return null;
      return {
        afterSignature: newest?.signature ?? null,
        beforeSignature: null,
        fromSlot: newest?.slot ?? 0,
        toSlot: cursor!.balanceSlot!,
        missingUnits: read - after,
      };
    }
    // How far the history is whole: a lock is judged only once the chain had finalized past its
    // due time when the vault was listed, so a return that landed in time is never missed.
    const finalThrough = cursor?.finalThrough ?? null;
    const asOf = finalThrough === null ? Number.NEGATIVE_INFINITY : Math.floor(finalThrough / 1000);
    const sums = await ledger.periodSums(vault, fromSec, toSec);
    const pending = await ledger.pendingCounts(vault, fromSec, toSec);
    const balanceCovers =
      cursor?.balanceUnits != null &&
      cursor.balanceSlot != null &&
      (cursor.newestSlot === null || cursor.newestSlot <= cursor.balanceSlot);
    // The balance read after the newest movement, when it does not chain from it: a movement
    // the listing left out, somewhere after that movement and up to the read. The read was
    // taken before the chain's finalized time the same sync listed at (`finalThrough`), so a
    // period ending by then cannot say on which side of its end the movement lies, like a gap
    // across the edge: each such period lists the gap and closes on the newest movement, the
    // one reaching past the read holds its money, and a period after it opens on the read.
    // Closed on the read instead, every period since the newest movement opened on that
    // movement and closed on the read: the money was a difference of each, every one
    // `complete`, and a month's weekly statements counted it four times.
    const tailGap = await tailGapOf(pending.all, balanceCovers);
    const readSec = finalThrough === null ? null : Math.floor(finalThrough / 1000);
    let opening = await ledger.openingUnits(vault, fromSec);
    if (opening !== null) {
      // The lines' sum misses what moved in the gaps before the period: the chain's balance at
      // `from` holds it. Left out, every later period opened off the previous one's closing on
      // chain and closed off the chain by the gap, `complete` and with no gap to say why.
      for (const g of await ledger.gaps(vault, 0, fromSec)) opening += g.missingUnits;
      if (tailGap !== null && readSec !== null && fromSec > readSec) {
        opening += tailGap.missingUnits;
      }
    } else if (tailGap !== null) {
      // No movement listed, a balance held: nothing the ledger saw before the read.
      opening = readSec !== null && fromSec > readSec ? tailGap.missingUnits : 0n;
    } else if (cursor?.balanceUnits != null) {
      opening = cursor.balanceUnits;
    }

    const totals = {
      deposits: sums.deposit.units,
      locks: -sums.lock.units,
      returns: sums.return.units,
      unexplainedOut: -sums.unexplained.units,
    };
    const counts = {
      lines:
        sums.lock.lines +
        sums.return.lines +
        sums.deposit.lines +
        sums.unexplained.lines +
        sums.none.lines +
        pending.inPeriod,
      deposits: sums.deposit.lines,
      locks: sums.lock.lines,
      returns: sums.return.lines,
      unexplained: sums.unexplained.lines,
      unreleasedLocks: 0,
      locksNotDue: 0,
      creditsHeaderMismatches: 0,
      creditsHeaderUndecided: 0,
      foreignMint: 0,
      ownerChanges: 0,
      delegateApprovals: 0,
      mixedMemos: 0,
      pending: pending.all,
      noMovement: sums.none.lines,
    };

    // A receipt recorded since a line was read can explain it: move it to what it is now.
    const unexplained: UnexplainedLine[] = [];
    const lateLocks: LedgerLineRow[] = [];
    const bucket = (kind: LineKind) =>
      kind === "lock"
        ? {
            add: (u: bigint) => {
              totals.locks -= u;
              counts.locks++;
            },
          }
        : kind === "return"
          ? {
              add: (u: bigint) => {
                totals.returns += u;
                counts.returns++;
              },
            }
          : kind === "deposit"
            ? {
                add: (u: bigint) => {
                  totals.deposits += u;
                  counts.deposits++;
                },
              }
            : {
                add: (u: bigint) => {
                  totals.unexplainedOut -= u;
                  counts.unexplained++;
                },
              };
    const unbucket = (kind: LineKind, u: bigint) => {
      if (kind === "lock") {
        totals.locks += u;
        counts.locks--;
      } else if (kind === "return") {
        totals.returns -= u;
        counts.returns--;
      } else if (kind === "deposit") {
        totals.deposits -= u;
        counts.deposits--;
      } else {
        totals.unexplainedOut += u;
        counts.unexplained--;
      }
    };
    for (const line of await ledger.reviewLines(vault, fromSec, toSec)) {
      if (line.now.kind !== line.kind && line.kind !== null) {
        unbucket(line.kind, line.deltaUnits);
        bucket(line.now.kind).add(line.deltaUnits);
        if (line.now.kind === "lock")
          lateLocks.push({ ...line, kind: "lock", jobId: line.now.jobId });
      }
      if (line.now.kind !== "unexplained") continue;
      unexplained.push({
        signature: line.signature,
        slot: line.slot,
        blockTime: line.blockTime,
        amountUnits: line.deltaUnits,
        memo: line.memo,
        memoJobId: line.memoJobId,
        kind: "unexplained",
        jobId: null,
        finding: "unreceipted_debit",
      });
    }

    // A payout hidden by money in of the same transaction: an unreceipted debit (of the line's
    // own entry when it is one already), and the money in that hid it a deposit, so the
    // figures still sum to the closing balance.
    for (const h of await ledger.hiddenDebitLines(vault, fromSec, toSec)) {
      totals.deposits += h.hiddenUnits;
      totals.unexplainedOut += h.hiddenUnits;
      const listed = unexplained.find((u) => u.signature === h.signature);
      if (listed) {
        listed.amountUnits -= h.hiddenUnits;
        continue;
      }
      counts.unexplained++;
      unexplained.push({
        signature: h.signature,
        slot: h.slot,
        blockTime: h.blockTime,
        amountUnits: -h.hiddenUnits,
        memo: h.memo,
        memoJobId: h.memoJobId,
        kind: "unexplained",
        jobId: null,
        finding: "unreceipted_debit",
      });
    }
    await nameJudgedJobs(store, unexplained);

    // Every lock of the period still out, due or not: one due by `asOf` is unreleased; one not
    // due yet may still come back, and a statement taken then (a month's, a few minutes after
    // it ended) cannot say, so it is named and the period is not complete. Left out, such a
    // lock was in no statement: the next period's judges only its own locks.
    const stillOut = await ledger.overdueLocks(
      vault,
      fromSec,
      toSec,
      windowSeconds,
      Number.POSITIVE_INFINITY,
      lateLocks,
    );
    const lockOf = (l: (typeof stillOut)[number]) => ({
      jobId: l.jobId!,
      signature: l.signature,
      lockUnits: -l.deltaUnits,
      outstandingUnits: l.outstandingUnits,
      lockedAt: l.blockTime === null ? null : isoOf(l.blockTime * 1000),
      dueBy: l.blockTime === null ? null : isoOf((l.blockTime + windowSeconds) * 1000),
    });
    // Due as `overdueLocks` judges it: block time + window before `asOf`.
    const isDue = (l: (typeof stillOut)[number]) =>
      l.blockTime !== null && l.blockTime + windowSeconds < asOf;
    const unreleased: UnreleasedLock[] = stillOut
      .filter(isDue)
      .map((l) => ({ finding: "unreleased_lock", ...lockOf(l) }));
    const notDue: LockNotDue[] = stillOut
      .filter((l) => !isDue(l))
      .map((l) => ({ finding: "lock_not_due", ...lockOf(l) }));
    counts.unreleasedLocks = unreleased.length;
    counts.locksNotDue = notDue.length;
    const unmatched = (await ledger.headerChecks(vault, fromSec, toSec, lateLocks)).filter(
      (c) => !c.matched,
    );
    const headerFinding = (c: (typeof unmatched)[number]) => ({
      jobId: c.jobId,
      headerUnits: c.headerUnits,
      balancesUnits: c.balancesUnits,
    });
    const mismatches: CreditsHeaderMismatch[] = unmatched
      .filter((c) => c.decided)
      .map((c) => ({ finding: "credits_header_mismatch", ...headerFinding(c) }));
    const headersUndecided: CreditsHeaderUndecided[] = unmatched
      .filter((c) => !c.decided)
      .map((c) => ({ finding: "credits_header_undecided", ...headerFinding(c) }));
    counts.creditsHeaderMismatches = mismatches.length;
    counts.creditsHeaderUndecided = headersUndecided.length;
    const gaps: LedgerGap[] = await ledger.gaps(vault, fromSec, toSec);
    const foreignMint: ForeignMintFinding[] = (
      await ledger.foreignLines(vault, fromSec, toSec)
    ).map((l) => ({
      finding: "foreign_mint_movement",
      signature: l.signature,
      slot: l.slot,
      blockTime: l.blockTime,
      memo: l.memo,
      memoJobId: l.memoJobId,
      changes: l.changes.map((c) => ({
        mint: c.mint,
        programId: c.programId,
        amountUnits: c.deltaUnits,
      })),
    }));
    // What the address holds now: a finding of every statement until it holds credits again.
    if (cursor?.balanceForeign) {
      foreignMint.push({
        finding: "foreign_mint_balance",
        ...cursor.balanceForeign,
        slot: cursor.balanceSlot,
      });
    }
    counts.foreignMint = foreignMint.length;
    const ownerChanges: (VaultOwnerChanged | VaultOwnerNow)[] = (
      await ledger.ownerLines(vault, fromSec, toSec)
    ).map((l) => ({ finding: "vault_owner_changed", ...l }));
    // Whose the vault is now: a finding of every statement until it is given back.
    const ownerNow = await ledger.ownerNow(vault);
    if (ownerNow) ownerChanges.push({ finding: "vault_owner_now", ...ownerNow });
    counts.ownerChanges = ownerChanges.length;
    const delegateApprovals: VaultDelegateApproved[] = [];
    for (const l of await ledger.delegateLines(vault, fromSec, toSec)) {
      const row = await ledger.storedTransaction(l.signature);
      const approvedUnits = row ? approvedOf(vault, row) : null;
      delegateApprovals.push({ finding: "vault_delegate_approved", ...l, approvedUnits });
    }
    counts.delegateApprovals = delegateApprovals.length;
    // Who else may spend the vault by its last balance read, unless a line says it already.
    // A line newer than the read that shows the owner (the vault given back while the balance
    // read failed) says more of whose it is than the read does. Newer by its transaction's slot:
    // by the slot listed, a node listing a left-out older line (escrow's owner) at a made-up
    // slot above the read's hid for good the read finding the vault another's.
    const shownAt = await transactionSlotOf(await ledger.ownerShownLine(vault));
    const control = cursor?.balanceControl ?? null;
    const readAt = control?.readAt == null ? null : isoOf(control.readAt);
    const ownerRead: VaultOwnerRead | null =
      control?.otherOwner &&
      ownerNow?.owner !== control.otherOwner.owner &&
      !(shownAt !== null && shownAt > control.slot)
        ? {
            finding: "vault_owner_read",
            owner: control.otherOwner.owner,
            slot: control.slot,
            readAt,
          }
        : null;
    // An Approve of the period says the read only when it let that delegate spend what the read
    // found: one spent in part since, or given again for another amount, may spend what no
    // line says (the Approve's period said the delegate, and nothing of it after).
    const delegateRead: VaultDelegateRead | null =
      control?.delegate && !sameDelegate(delegateApprovals, control.delegate)
        ? {
            finding: "vault_delegate_read",
            delegate: control.delegate.address,
            delegatedUnits: control.delegate.amountUnits,
            slot: control.slot,
            readAt,
          }
        : null;
    const mixedMemos: MixedJobMemos[] = (await ledger.mixedMemoLines(vault, fromSec, toSec)).map(
      (l) => ({ finding: "mixed_job_memos", ...l }),
    );
    counts.mixedMemos = mixedMemos.length;
    const setAside = await ledger.setAsideLines(vault, fromSec, toSec);

    const closingByLedger =
      opening === null
        ? null
        : opening + totals.deposits - totals.locks + totals.returns - totals.unexplainedOut;
    let closingOnChain: bigint | null = null;
    let source: VaultStatement["closingOnChainSource"] = null;
    const around = await ledger.movementAround(vault, toSec);
    // A line up to the end that is not read moved money the ledger has not seen: the balance
    // after the last movement read before it is not the chain's at the end, and a difference
    // of 0 against it would say the ledger holds every movement. Not known while it waits.
    // The next movement after the period tells the balance at its end only when no line
    // between them waits to be read; else neither does the balance read now, and the last
    // movement read up to the end does.
    const laterUnread = pending.all !== pending.upTo;
    if (pending.upTo > 0) {
      closingOnChain = null;
    } else if (laterUnread) {
      const last = around.last ?? (await ledger.lastMovementBefore(vault, toSec));
      if (last !== null) {
        closingOnChain = last;
        source = "last_transaction";
      }
    } else if (around.next !== null) {
      closingOnChain = around.next;
      source = "next_transaction";
      // The next movement does not chain from the last one before the end: a gap across the
      // edge, whose unseen movement nothing places on either side of it. The gap is the next
      // period's (its later line is there, and the next period opens on the balance after this
      // one's last movement), so this one closes there too, and lists the gap: it may hold it.
      // Closed on the next movement's balance instead, the gap's money was a difference of both
      // periods, this one `complete` with no gap to say why, and the next did not open on it.
      const last = await ledger.lastMovementBefore(vault, toSec);
      if (last !== null && last !== around.next) {
        const [across] = await ledger.gaps(vault, toSec, Number.MAX_SAFE_INTEGER);
        if (across !== undefined) gaps.push(across);
        closingOnChain = last;
        source = "last_transaction";
      }
    } else if (tailGap !== null && (readSec === null || fromSec <= readSec)) {
      // After the newest movement, up to the balance read: the gap may be this period's. One
      // that ends by the read closes on the newest movement (the next one opens there), the
      // one reaching past it on the read; with no time for the read, every one on the read.
      gaps.push(tailGap);
      const ended = readSec !== null && toSec <= readSec;
      const lastSeen = tailGap.afterSignature === null ? 0n : around.last;
      closingOnChain = ended ? lastSeen : cursor!.balanceUnits!;
      source = ended ? "last_transaction" : "balance_read";
    } else if (balanceCovers && cursor?.balanceUnits != null) {
      closingOnChain = cursor.balanceUnits;
      source = "balance_read";
    } else if (around.last !== null) {
      closingOnChain = around.last;
      source = "last_transaction";
    }

    // Read through `to` by the chain's own clock: a sync that ran after `to` by the local clock
    // listed at `finalized`, without the transactions of its last seconds. Lines listed after
    // the period's end (a busy vault's newest) do not keep it from being read.
    const historyRead = finalThrough !== null && finalThrough >= query.to && pending.upTo === 0;
    // History before the oldest line is whole only when that line created the account.
    const start = await ledger.historyStart(vault);
    const missingHistory =
      start !== null &&
      !(start.read && start.opened === true) &&
      (start.blockTime === null || fromSec <= start.blockTime)
        ? {
            beforeSignature: start.signature,
            slot: start.slot,
            blockTime: start.blockTime === null ? null : isoOf(start.blockTime * 1000),
          }
        : null;
    const figures: VaultStatement = {
      vault,
      keys: await ledger.keysOf(vault),
      readThrough: finalThrough === null ? null : isoOf(finalThrough),
      historyRead,
      // A gap is money that moved in transactions the ledger never saw: the statement cannot
      // say the period is whole while one is open.
      complete: historyRead && gaps.length === 0 && missingHistory === null && notDue.length === 0,
      missingHistory,
      openingUnits: opening,
      depositsUnits: totals.deposits,
      locksUnits: totals.locks,
      returnsUnits: totals.returns,
      unexplainedOutUnits: totals.unexplainedOut,
      netSpendUnits: totals.locks - totals.returns + totals.unexplainedOut,
      closingByLedgerUnits: closingByLedger,
      closingOnChainUnits: closingOnChain,
      closingOnChainSource: source,
      differenceUnits:
        closingByLedger === null || closingOnChain === null
          ? null
          : closingOnChain - closingByLedger,
      // The error may be an RPC failure naming an endpoint: its key never leaves the process.
      unread:
        pending.upTo === 0
          ? null
          : {
              lines: pending.upTo,
              why: cursor?.lastError == null ? null : withoutUrlSecrets(cursor.lastError),
            },
      counts,
      unexplained,
      unreleasedLocks: unreleased,
      locksNotDue: notDue,
      creditsHeaderMismatches: mismatches,
      creditsHeaderUndecided: headersUndecided,
      foreignMint,
      ownerChanges,
      delegateApprovals,
      ownerRead,
      delegateRead,
      mixedMemos,
      setAside,
      gaps,
      accountSnapshot: (await snapshotsOf(store).latestIn(vault, query.from, query.to)) ?? null,
    };
    return { figures, moved: (await ledgerState(vault)) !== state };
  }
}

/**
 * Whether an Approve among `approvals` gave `read`'s delegate the very amount the balance read
 * found it may still spend: then the read says nothing the Approve's finding does not.
 */
export function sameDelegate(
  approvals: readonly { delegate: string; approvedUnits: bigint | null }[],
  read: { address: string; amountUnits: bigint },
): boolean {
  return approvals.some((d) => d.delegate === read.address && d.approvedUnits === read.amountUnits);
}

/**
 * Why a statement's transactions are not read: the reader's last error on the vault, else what
 * a line listed and never read means when no error was recorded.
 */
export function unreadWhy(unread: { why: string | null }): string {
  return (
    unread.why ??
    "no error recorded: the RPC has not served them yet (RPC trouble, or pruned by the node); asked again each round"
  );
}

const text = (units: bigint | null) => (units === null ? null : units.toString());

/** The statement as JSON: amounts as decimal strings of base units, instants as ISO 8601. */
/** A credits-header finding of the JSON statement: amounts as decimal strings. */
function headerFindingToJson<F extends CreditsHeaderMismatch | CreditsHeaderUndecided>(
  m: F,
): { finding: F["finding"]; jobId: string; headerUnits: string; balancesUnits: string[] } {
  return {
    finding: m.finding,
    jobId: m.jobId,
    headerUnits: m.headerUnits.toString(),
    balancesUnits: m.balancesUnits.map(String),
  };
}

export function statementToJson(statement: Statement) {
  return {
    from: isoOf(statement.from),
    to: isoOf(statement.to),
    generatedAt: isoOf(statement.generatedAt),
    vaults: statement.vaults.map((v) => ({
      vault: v.vault,
      keys: v.keys,
      readThrough: v.readThrough,
      complete: v.complete,
      missingHistory: v.missingHistory,
      openingUnits: text(v.openingUnits),
      depositsUnits: v.depositsUnits.toString(),
      locksUnits: v.locksUnits.toString(),
      returnsUnits: v.returnsUnits.toString(),
      unexplainedOutUnits: v.unexplainedOutUnits.toString(),
      netSpendUnits: v.netSpendUnits.toString(),
      closingByLedgerUnits: text(v.closingByLedgerUnits),
      closingOnChainUnits: text(v.closingOnChainUnits),
      closingOnChainSource: v.closingOnChainSource,
      differenceUnits: text(v.differenceUnits),
      unread: v.unread,
      counts: v.counts,
      unexplained: v.unexplained.map((l) => ({
        finding: l.finding,
        signature: l.signature,
        slot: l.slot,
        blockTime: l.blockTime === null ? null : isoOf(l.blockTime * 1000),
        amountUnits: l.amountUnits.toString(),
        memo: l.memo,
        memoJobId: l.memoJobId,
        jobId: l.jobId,
      })),
      unreleasedLocks: v.unreleasedLocks.map((u) => ({
        ...u,
        lockUnits: u.lockUnits.toString(),
        outstandingUnits: u.outstandingUnits.toString(),
      })),
      locksNotDue: v.locksNotDue.map((u) => ({
        ...u,
        lockUnits: u.lockUnits.toString(),
        outstandingUnits: u.outstandingUnits.toString(),
      })),
      creditsHeaderMismatches: v.creditsHeaderMismatches.map(headerFindingToJson),
      creditsHeaderUndecided: v.creditsHeaderUndecided.map(headerFindingToJson),
      foreignMint: v.foreignMint.map((f) =>
        f.finding === "foreign_mint_movement"
          ? {
              ...f,
              blockTime: f.blockTime === null ? null : isoOf(f.blockTime * 1000),
              changes: f.changes.map((c) => ({ ...c, amountUnits: c.amountUnits.toString() })),
            }
          : { ...f, amountUnits: text(f.amountUnits) },
      ),
      ownerChanges: v.ownerChanges.map((o) => ({
        ...o,
        blockTime: o.blockTime === null ? null : isoOf(o.blockTime * 1000),
      })),
      delegateApprovals: v.delegateApprovals.map((d) => ({
        ...d,
        blockTime: d.blockTime === null ? null : isoOf(d.blockTime * 1000),
        approvedUnits: text(d.approvedUnits),
      })),
      ownerRead: v.ownerRead,
      delegateRead: v.delegateRead
        ? { ...v.delegateRead, delegatedUnits: v.delegateRead.delegatedUnits.toString() }
        : null,
      mixedMemos: v.mixedMemos.map((m) => ({
        ...m,
        blockTime: m.blockTime === null ? null : isoOf(m.blockTime * 1000),
        amountUnits: m.amountUnits.toString(),
      })),
      setAside: v.setAside.map((a) => ({
        ...a,
        blockTime: a.blockTime === null ? null : isoOf(a.blockTime * 1000),
      })),
      gaps: v.gaps.map((g) => ({ ...g, missingUnits: g.missingUnits.toString() })),
      accountSnapshot: v.accountSnapshot ? accountSnapshotToJson(v.accountSnapshot) : null,
    })),
  };
}

export type StatementJson = ReturnType<typeof statementToJson>;

export const statementColumns = [
  "openingUnits",
  "depositsUnits",
  "locksUnits",
  "returnsUnits",
  "unexplainedOutUnits",
  "netSpendUnits",
  "closingByLedgerUnits",
  "closingOnChainUnits",
  "differenceUnits",
] as const;

/** The columns ending every statement CSV row: its period, `to` exclusive, and when it was read. */
export const statementCsvMetaColumns = ["from", "to", "generatedAt"] as const;

/** An address a finding names, then the line's own memo, in one memo cell. */
function labelled(name: string, address: string, memo: string | null): string {
  return memo === null ? `${name}=${address}` : `${name}=${address}; memo=${memo}`;
}

/**
 * RFC 4180 CSV (CRLF): one `vault` row per vault with every figure, then one row per finding
 * (`unreceipted_debit` with signature, amount, memo and the job the memo names;
 * `unreleased_lock` with signature, the lock's amount and job, and `outstandingUnits=<what is
 * still out>; dueBy=<when it was due>` in the memo column (`lock_not_due` likewise, for a lock
 * still out before its due time); `foreign_mint_movement` once per change,
 * its mint in the memo column, with signature, amount and the job its memo names;
 * `foreign_mint_balance` with the mint and the amount there; `vault_owner_changed` with
 * signature and the job its memo names, `owner=<new owner>` and the line's memo in the memo
 * column (`vault_owner_now` likewise); `vault_delegate_approved` likewise, with
 * `delegate=<delegate>` and what the Approve let it spend (empty when not known);
 * `vault_owner_read` with the read's time, `owner=<owner>` (`owner=not named` when the read
 * named none) and its `slot=<slot>`, `vault_delegate_read` likewise with the amount the delegate
 * may spend and `delegate=<delegate>`;
 * `mixed_job_memos` with signature, amount, the job it was filed under and its memos;
 * `credits_header_mismatch` with the job and the header's amount, the balances the vault held
 * then in the memo column (`credits_header_undecided` likewise, the balances read so far); `ledger_gap` with the signature after the gap and what moved unseen;
 * `missing_history` with the oldest line the RPC gave; `unread_transactions` with how many
 * transactions up to the period's end are listed but not read, and why in the memo column, the
 * vault row's closing on chain and difference then empty). A CSV holds every finding the JSON
 * does; every row ends with the statement's `from`, `to` and `generatedAt`.
 */
export function statementToCsv(statement: Statement): string {
  const json = statementToJson(statement);
  const header = [
    "row",
    "vault",
    ...statementColumns,
    "complete",
    "closingOnChainSource",
    "deposits",
    "locks",
    "returns",
    "unexplained",
    "unreleasedLocks",
    "pending",
    "signature",
    "blockTime",
    "amountUnits",
    "jobId",
    "memo",
    // What the file covers, on every row as in the reconciliation CSV: a saved statement held
    // no period, so a controller could not tell which month its balances were.
    ...statementCsvMetaColumns,
  ];
  const meta = statementCsvMetaColumns.map((c) => json[c]);
  const lines = [header.join(",")];
  const blank = statementColumns.map(() => null);
  const tail = () => [null, null, null, null, null, null, null, null];
  // Addresses, job ids and memos are text whatever they spell (a memo's job id of digits), and
  // a character that shows as nothing is written as its escape, as the dashboard shows it: a
  // memo's "job_a\u200b" read in a spreadsheet as the honest job_a's.
  // A transaction's memos stay one a line, as the JSON joins them: the line break between two
  // memos is the one character of the column not escaped.
  const textColumns = new Set(["vault", "signature", "jobId", "memo"]);
  const textCell = (column: string, text: string) =>
    column === "memo" ? csvTextCell(text.split("\n").map(printable).join("\n")) : csvNameCell(text);
  const row = (cells: (string | number | null)[]) =>
    lines.push(
      [...cells, ...meta]
        .map((cell, i) => {
          const column = header[i] ?? "";
          return textColumns.has(column) && typeof cell === "string"
            ? textCell(column, cell)
            : csvCell(cell);
        })
        .join(","),
    );
  for (const v of json.vaults) {
    row([
      "vault",
      v.vault,
      ...statementColumns.map((c) => v[c]),
      String(v.complete),
      v.closingOnChainSource,
      v.counts.deposits,
      v.counts.locks,
      v.counts.returns,
      v.counts.unexplained,
      v.counts.unreleasedLocks,
      v.counts.pending,
      null,
      null,
      null,
      null,
      null,
    ]);
    for (const u of v.unexplained) {
      // The memo and the job id it names are the operator's text: `csvCell` keeps them text.
      row([
        u.finding,
        v.vault,
        ...blank,
        ...tail(),
        u.signature,
        u.blockTime,
        u.amountUnits,
        u.memoJobId,
        u.memo,
      ]);
    }
    for (const u of [...v.unreleasedLocks, ...v.locksNotDue]) {
      // What of the lock is still out and when it was due, as the JSON says them: the amount
      // column is the whole lock, which a lock partly returned (one unit short) has not lost.
      row([
        u.finding,
        v.vault,
        ...blank,
        ...tail(),
        u.signature,
        u.lockedAt,
        u.lockUnits,
        u.jobId,
        `outstandingUnits=${u.outstandingUnits}; dueBy=${u.dueBy ?? "unknown"}`,
      ]);
    }
    // Another mint's amounts: in rows of their own, the mint named, never in a vault figure.
    for (const f of v.foreignMint) {
      if (f.finding === "foreign_mint_balance") {
        row([f.finding, v.vault, ...blank, ...tail(), null, null, f.amountUnits, null, f.mint]);
        continue;
      }
      for (const c of f.changes) {
        row([
          f.finding,
          v.vault,
          ...blank,
          ...tail(),
          f.signature,
          f.blockTime,
          c.amountUnits,
          f.memoJobId,
          c.mint,
        ]);
      }
    }
    for (const o of v.ownerChanges) {
      row([
        o.finding,
        v.vault,
        ...blank,
        ...tail(),
        o.signature,
        o.blockTime,
        null,
        o.memoJobId,
        labelled("owner", o.owner, o.memo),
      ]);
    }
    for (const d of v.delegateApprovals) {
      row([
        d.finding,
        v.vault,
        ...blank,
        ...tail(),
        d.signature,
        d.blockTime,
        d.approvedUnits,
        d.memoJobId,
        labelled("delegate", d.delegate, d.memo),
      ]);
    }
    // What the last balance read found, though no line shows it: no signature. Its time and
    // slot are the read's: a statement of a month long past says what a read made since found.
    if (v.ownerRead) {
      const r = v.ownerRead;
      const owner = `owner=${r.owner ?? "not named"}; slot=${r.slot}`;
      row([r.finding, v.vault, ...blank, ...tail(), null, r.readAt, null, null, owner]);
    }
    if (v.delegateRead) {
      const d = v.delegateRead;
      const named = `delegate=${d.delegate}; slot=${d.slot}`;
      row([d.finding, v.vault, ...blank, ...tail(), null, d.readAt, d.delegatedUnits, null, named]);
    }
    for (const m of v.mixedMemos) {
      row([
        m.finding,
        v.vault,
        ...blank,
        ...tail(),
        m.signature,
        m.blockTime,
        m.amountUnits,
        m.jobId,
        m.memo,
      ]);
    }
    for (const a of v.setAside) {
      row(["set_aside", v.vault, ...blank, ...tail(), a.signature, a.blockTime, null, null, a.why]);
    }
    for (const m of v.creditsHeaderMismatches) {
      const held = `balances held: ${m.balancesUnits.join(" ") || "none"}`;
      row([m.finding, v.vault, ...blank, ...tail(), null, null, m.headerUnits, m.jobId, held]);
    }
    for (const m of v.creditsHeaderUndecided) {
      const held = `balances read so far: ${m.balancesUnits.join(" ") || "none"}`;
      row([m.finding, v.vault, ...blank, ...tail(), null, null, m.headerUnits, m.jobId, held]);
    }
    for (const g of v.gaps) {
      const end = g.beforeSignature === null ? "the balance read at slot" : "slot";
      const start =
        g.afterSignature === null
          ? "no movement listed"
          : `${g.afterSignature} (slot ${g.fromSlot})`;
      const between = `unseen between ${start} and ${end} ${g.toSlot}`;
      row([
        "ledger_gap",
        v.vault,
        ...blank,
        ...tail(),
        g.beforeSignature,
        null,
        g.missingUnits,
        null,
        between,
      ]);
    }
    if (v.missingHistory) {
      const h = v.missingHistory;
      const note = "history before this transaction is not available from the RPC";
      row([
        "missing_history",
        v.vault,
        ...blank,
        ...tail(),
        h.beforeSignature,
        h.blockTime,
        null,
        null,
        note,
      ]);
    }
    if (v.unread) {
      // Said in a row of its own: the vault row's empty difference alone reads as no finding.
      const note = `${v.unread.lines} transaction${v.unread.lines === 1 ? "" : "s"} up to the period's end not read, so the closing balance on chain is not known: ${unreadWhy(v.unread)}`;
      row(["unread_transactions", v.vault, ...blank, ...tail(), null, null, null, null, note]);
    }
  }
  return `${lines.join("\r\n")}\r\n`;
}
