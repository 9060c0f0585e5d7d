import { implausibleBlockTime } from "../chain/block-time.js";
import { factsFromJson, factsToJson } from "../chain/facts-json.js";
import { parseJsonLossless } from "../chain/json-text.js";
import {
  INITIALIZE_ACCOUNT_KINDS,
  parseTransaction,
  reparseStored,
} from "../chain/parse-transaction.js";
import type { AddressSignatureInfo, EndpointSlots, TokenAccountRead } from "../chain/rpc-pool.js";
import { signedAccounts } from "../chain/signed-message.js";
import type {
  TokenChange,
  TokenInstruction,
  TransactionFacts,
} from "../chain/transaction-facts.js";
import { isBusyError, type Store } from "../db/client.js";
import { AppError } from "../errors.js";
import type { Logger } from "../log.js";
import { isStorableUnits, MAX_STORED_UNITS } from "../money.js";
import { createCustodyStore } from "../store/custody.js";
import {
  createLedgerStore,
  type FetchedTransaction,
  type GapLines,
  type LedgerCursor,
  type LedgerStore,
  type LineRead,
} from "../store/ledger.js";
import { severalMemoJobs } from "../store/ledger-rules.js";
import { HELD_LOCKED } from "../store/queue-rules.js";
import { parseJobMemos } from "../verify/checks.js";
import type { CustodyConfig } from "../verify/custody.js";
import { ESCROW_COVER_PACE_MS } from "../verify/escrow-cover.js";
import {
  balancesUnshown,
  innerInstructionsHidden,
  isCredit,
  isOtherOwner,
  MOVEMENT_KINDS,
  mayMove,
  wrappedSolClosed,
} from "../verify/money-movements.js";
import type { Profile } from "../verify/profiles.js";
import { createEscrowScanner, type EscrowScanner } from "./escrow-scan.js";
import { cursorGoesNowhere } from "./listing-cursor.js";

/**
 * Reads the whole signature history of every known credit vault into `ledger_lines`, page by
 * page from a stored cursor, and reads each listed transaction once (sharing
 * `chain_transactions` with the verifier: a transaction either of them fetched is never fetched
 * again). What each line is (lock, return, deposit, unexplained) is written with it by
 * src/store/ledger.ts; src/ledger/statement.ts sums and lists them.
 */

/** The part of the RPC pool (`src/chain/rpc-pool.ts`) the ledger uses. */
export interface LedgerRpc {
  getSignaturesForAddress(
    address: string,
    options?: { before?: string; until?: string; limit?: number; signal?: AbortSignal },
  ): Promise<AddressSignatureInfo[]>;
  getTransaction(
    signature: string,
    commitment?: "finalized",
    options?: { signal?: AbortSignal },
  ): Promise<{ facts: TransactionFacts; raw: unknown } | null>;
  getTokenAccount(address: string): Promise<TokenAccountRead>;
  getSlot(commitment: "finalized"): Promise<number>;
  /** Every endpoint's finalized slot, each asked on its own (a pool of several). */
  finalizedSlots?(signal?: AbortSignal): Promise<EndpointSlots>;
  /** Whole seconds since the epoch. */
  getBlockTime(slot: number): Promise<number>;
}

export interface LedgerOptions {
  /** Signatures per getSignaturesForAddress page, 1..1000. Default 1000. */
  pageSize: number;
  /** getTransaction calls in flight at once (the pool enforces the rate). Default 8. */
  fetchConcurrency: number;
  /** How often `start()` syncs every vault, in ms. Default 10000. */
  intervalMs: number;
  /**
   * How often the escrow scan runs while a verdict waits for it (`escrowCover`), in ms, if
   * sooner than `intervalMs`. Default `ESCROW_COVER_PACE_MS` (1000).
   */
  escrowCoverPaceMs: number;
}

export const defaultLedgerOptions: LedgerOptions = {
  pageSize: 1000,
  fetchConcurrency: 8,
  intervalMs: 10_000,
  escrowCoverPaceMs: ESCROW_COVER_PACE_MS,
};

export interface LedgerDeps {
  store: Store;
  rpc: LedgerRpc;
  profile: Profile;
  log: Logger;
  /** Credit vaults the deployment configured (`CREDIT_VAULTS`), read besides learned ones. */
  custody?: CustodyConfig;
  now?: () => number;
  options?: Partial<LedgerOptions>;
  /** Called after each round of the `start()` loop (e.g. to count findings for metrics). */
  afterRound?: (results: VaultSyncResult[]) => void;
  /**
   * The verifier beside the escrow scan (src/verify/escrow-cover.ts): `wanted`, a job waits for
   * a slot the last completed scan had not reached (the scan then runs every
   * `escrowCoverPaceMs`, not every `intervalMs`); `covered`, called when a scan completed.
   */
  escrowCover?: { wanted(): boolean; covered(slot: number): Promise<void> };
}

export interface VaultSyncResult {
  vault: string;
  /** Pages this call listed (0 when another process had listed them). */
  pages: number;
  /** Lines this call inserted. */
  listed: number;
  /** Transactions this call fetched over RPC (not found in `chain_transactions`). */
  fetched: number;
  /** Lines read from transactions the verifier (or an earlier read) had already fetched. */
  shared: number;
  /** Lines still waiting for their transaction (RPC trouble, or pruned by the node). */
  pending: number;
  /**
   * Why this call's listing holds no finalized time (the node gave no block time for its
   * finalized slot nor the few below it, or the newest entries it listed were dated where the
   * chain cannot be and wait for a later sync), so `final_through` did not move; else null.
   */
  noBlockTime: string | null;
  /**
   * With `noBlockTime` for a listing held back or past the newest line: the finalized time (ms)
   * the node gave before that listing. The chain was final that far; only this listing could
   * not show the vault's history whole through it, which the next sync may. Absent otherwise.
   */
  chainFinalThrough?: number;
  /**
   * The delegate the vault's balance read found, with what it may still spend (above 0), else
   * null: someone other than the vault's owner can spend that much of it alone. Read from the
   * balance read's own answer (no call more), so it holds even where no line shows the
   * Approve (one inside a call a node served with `[]` inner instructions). Absent with none,
   * or when the balance was not read.
   */
  delegate?: { address: string; amountUnits: bigint };
  /**
   * The credit account's owner the balance read found, when the profile names the escrow
   * authority and it is not that (null: the answer named no owner, so none is proven): it may
   * spend the vault alone. From the balance read's own answer (no call more), so it holds where
   * no line shows the owner (a node leaving `owner` out of token balances hides a
   * SetAuthority). Absent when the owner is the authority's, or the balance was not read.
   */
  otherOwner?: { owner: string | null };
}

/** How far one sync goes. */
export interface SyncOptions {
  signal?: AbortSignal;
  /**
   * Reads the transactions of lines listed with a block time up to this time (ms) only (and
   * those listed without one); later lines stay listed for a later sync. Default: every line.
   * A nightly run judges nothing after its window's end but the returns of its locks, and read
   * the hours of traffic after it, 2 getTransaction per job no verifier had fetched yet: beside
   * busy services it never caught up and timed out.
   */
  readUntil?: number;
  /**
   * With `readUntil`: lines after it up to this time (ms) are read too, oldest first, while a
   * lock up to `readUntil` is still out (their returns, in time when within the settlement
   * window and grace); once none is, the rest stays listed.
   */
  releasesUntil?: number;
  /**
   * With `readUntil`: lines listed with a block time up to this later time (ms) are read too,
   * for the credits headers of the jobs just before `readUntil`, whose spans run through lines
   * the chain dated up to `SETTLEMENT_CLOCK_SLACK_SECONDS` after their responses. Read only: a
   * new listing's entries are judged through `readUntil` (an entry a node lists there that is
   * not the vault's is set aside when read, not a failed sync), and the returns read past it
   * are those of the locks up to `readUntil`.
   */
  spansUntil?: number;
}

export interface LedgerReader {
  /** Every credit vault the ledger reads: configured ones and the pins of `credit_vaults`. */
  vaults(): Promise<string[]>;
  /** Reads one vault's new history, its transactions, then its finalized balance. */
  syncVault(vault: string, opts?: SyncOptions): Promise<VaultSyncResult>;
  /**
   * Syncs every vault, one after the other; a vault's RPC trouble is logged and kept, and
   * told to `onVaultError` (a command that must say the sync failed), and the next vault read.
   */
  syncAll(
    opts?: SyncOptions & { onVaultError?: (vault: string, message: string) => void },
  ): Promise<VaultSyncResult[]>;
  /**
   * The escrow vault's memo scan (src/ledger/escrow-scan.ts), run by `start()` every
   * `intervalMs` in a loop of its own beside `syncAll`'s; a nightly run scans its window's span
   * with it.
   */
  escrow?: EscrowScanner;
  /** Runs `syncAll`, and beside it the escrow scan, every `intervalMs` until `stop()`. */
  start(): void;
  stop(): Promise<void>;
}

/** What a vault's address held at a balance read, in credits, and what else it held. */
export interface CreditBalance {
  slot: number;
  /** Credits (the profile's mint): 0 when the address holds another mint or no account. */
  amount: bigint;
  /** The token account of another mint or program found there instead, else null. */
  foreign: { programId: string; mint: string | null; amountUnits: bigint | null } | null;
  /** A delegate of the credit account that may still spend some of it, else null. */
  delegate: { address: string; amountUnits: bigint } | null;
  /**
   * The credit account's owner, who may spend it alone; null when the answer names none.
   * Absent when the address holds no credit account.
   */
  owner?: string | null;
}

/**
 * Reads the vault's credit balance at finalized. The account's mint is checked: an account
 * closed and opened again at the same address in another mint (same decimals) holds none of
 * the credits its amount would seem to be. No account at all holds no credits either.
 */
export async function creditBalanceOf(
  rpc: { getTokenAccount(address: string): Promise<TokenAccountRead> },
  profile: Profile,
  vault: string,
): Promise<CreditBalance> {
  const { slot, account } = await rpc.getTokenAccount(vault);
  if (account === null) return { slot, amount: 0n, foreign: null, delegate: null };
  const credit =
    account.mint === profile.usdcMint &&
    account.amount !== null &&
    profile.tokenPrograms.includes(account.programId);
  if (credit) {
    const d = account.delegate;
    return {
      slot,
      amount: account.amount!,
      foreign: null,
      delegate: d && d.amount > 0n ? { address: d.address, amountUnits: d.amount } : null,
      owner: account.owner ?? null,
    };
  }
  return {
    slot,
    amount: 0n,
    delegate: null,
    foreign: { programId: account.programId, mint: account.mint, amountUnits: account.amount },
  };
}

/** Known credit vaults: the deployment's configured ones and every pinned key's vault. */
export async function knownVaults(ledger: LedgerStore, custody?: CustodyConfig): Promise<string[]> {
  const pinned = await ledger.pinnedVaults();
  return [
    ...new Set([...(custody?.vaults ?? []), ...Object.values(custody?.byKey ?? {}), ...pinned]),
  ].sort();
}

/** Token instructions that give a token account a delegate, who can spend it alone. */
const APPROVE_KINDS: ReadonlySet<string> = new Set(["approve", "approveChecked"]);

/**
 * Whether an Approve or ApproveChecked gives the vault itself a delegate: its source is the
 * vault. Anyone may approve their own account naming the vault's address as the delegate,
 * which gives no one any hold on the vault. Facts stored before the source was kept, with no
 * raw answer to read it again from, fall back to the vault being named at all.
 */
function approvesVault(ix: TokenInstruction, vault: string): boolean {
  if (!APPROVE_KINDS.has(ix.kind)) return false;
  return ix.source === undefined ? ix.accounts.includes(vault) : ix.source === vault;
}

/**
 * The delegate a succeeded transaction gave the vault by an Approve or ApproveChecked whose
 * source is the vault, else null. No balance shows a delegate, and facts keep each
 * instruction's accounts sorted, not by role: the delegate is what is left once the vault, its
 * owner (the escrow authority, or the owner after the transaction) and the credit mint are
 * taken out (a multisig owner's signers stay in, named too). When nothing is left (the vault
 * delegated to its own owner, say), the instruction's kind and accounts stand for it, so the
 * finding is still made and reads the same every time.
 */
export function delegateGiven(
  profile: Profile,
  vault: string,
  ownerAfter: string | null,
  facts: TransactionFacts,
): string | null {
  if (!facts.succeeded) return null;
  const approvals = facts.tokenInstructions.filter((ix) => approvesVault(ix, vault));
  if (approvals.length === 0) return null;
  const known = new Set([vault, profile.usdcMint, profile.escrowAuthority, ownerAfter]);
  const delegates = [
    ...new Set(approvals.flatMap((ix) => ix.accounts.filter((a) => !known.has(a)))),
  ];
  if (delegates.length > 0) return delegates.join(" ");
  return approvals.map((ix) => `${ix.kind}(${ix.accounts.join(" ")})`).join(" ");
}

/**
 * What the last Approve or ApproveChecked of the vault in a stored transaction let its delegate
 * spend, from its facts, else from its raw answer (facts stored before the amount was kept);
 * null when neither tells. A later Approve replaces an earlier one's amount.
 */
export function approvedOf(
  vault: string,
  row: { signature: string; facts: string; raw: string | null },
): bigint | null {
  const last = (facts: TransactionFacts) =>
    facts.succeeded
      ? facts.tokenInstructions.filter((ix) => approvesVault(ix, vault)).at(-1)
      : undefined;
  let ix: TokenInstruction | undefined;
  try {
    ix = last(factsFromJson(JSON.parse(row.facts)));
  } catch {
    ix = undefined;
  }
  if (ix?.approved === undefined && row.raw !== null) {
    try {
      ix = last(parseTransaction(parseJsonLossless(row.raw), row.signature));
    } catch {
      return null;
    }
  }
  return ix?.approved ?? null;
}

/**
 * Token-2022's TransferCheckedWithFee, by its kind in a jsonParsed answer and in a compiled one
 * (the `json` encoding the chain is read in), where it keeps its extension's name: the only
 * instruction of that kind whose amount is kept. Read by the json name alone, a top-up of
 * 160,003 with a fee of 3 counted 160,003 in and listed the fee as paid out of the vault.
 */
const FEE_TRANSFER_KINDS: ReadonlySet<string> = new Set([
  "transferCheckedWithFee",
  "transferFeeExtension",
]);

/**
 * What a succeeded transaction's transfers and burns took out of the vault in credits (to any
 * account but the vault itself) beyond its net debit, when that is more than nothing, else
 * null. The balances show the vault's net change only: a top-up of 1,000,000 that also pays
 * 300,000 out (the escrow authority signing beside the customer) reads as a deposit of 700,000,
 * and this is the 300,000. No Decentral step takes money out of a vault and puts money in at
 * once.
 *
 * The vault may be closed and opened again in another mint within the transaction, and a
 * plain Transfer names no mint: its tokens are another mint's only where the vault is shown to
 * hold that mint then (see `creditMovement`), so a payout of credits never vanishes among
 * another mint's tokens, nor do those tokens count as credits.
 *
 * The instructions seen may not be all that ran: a node can serve `meta.innerInstructions` as
 * `[]`, or leave a program's call out of the groups it lists, and a payout made inside that
 * call is then in no instruction here. The vault's credit balances (pre/post, which carry the
 * mint) still show it: money seen going in that the vault's net change does not hold left by
 * a way no instruction shows, and counts as paid out too (a top-up of 1,000,000 seen, the
 * vault +700,000: 300,000 out). A vault the balances leave out moved nothing by them, so what
 * was seen going in counts as gone. Token-2022's TransferCheckedWithFee into the vault keeps
 * back a fee the facts do not keep: it counts as nothing in (see README Known limits).
 */
export function hiddenDebitOf(
  vault: string,
  delta: bigint,
  facts: TransactionFacts,
  profile: Pick<Profile, "usdcMint" | "tokenPrograms">,
): bigint | null {
  if (!facts.succeeded) return null;
  let out = 0n;
  let into = 0n;
  for (const { ix, from } of vaultCreditMovements(vault, facts, profile)) {
    if (from) out += ix.amount!;
    else if (!FEE_TRANSFER_KINDS.has(ix.kind)) into += ix.amount!;
  }
  // What the balances say left: at least what the instructions took out, and at least what
  // they put in beyond the vault's net change (a payout in a call no instruction shows).
  const unshown = into - delta;
  const gross = unshown > out ? unshown : out;
  const netOut = delta < 0n ? -delta : 0n;
  return gross > netOut ? gross - netOut : null;
}

/**
 * Credits the vault gained in a succeeded transaction beyond what every instruction served
 * could bring in (each transfer or mint into it whole, fees and all, less what left it), when
 * there are any, else null. The token program moves no money but by an instruction, shown
 * top-level or among the inner ones: an honest answer cannot show the vault gaining more. A
 * node serving a call's inner instructions as `[]` can hide a top-up and a payout of the
 * vault's money beside it in one call; the balances then show only the net gain (1,000,000
 * in, 300,000 out: +700,000) and nothing tells that gain from a deposit (the customer paying
 * the 300,000 to the operator straight from its wallet moves every balance alike). Such a line
 * is not read from that answer. So is one whose balances show the vault losing less than the
 * instructions took out of it, or not moving at all (a vault the balances leave out shows no
 * change): read as a payout hidden by money in, a theft of 55,000 whose answer left the vault
 * out of its token balances showed a deposit of 55,000 no instruction made, and a gap for it.
 * A token instruction naming the vault that can move money by an amount the facts do not keep
 * (Token-2022's confidential transfers, a kind not named, a wrapped-SOL vault's SyncNative)
 * leaves the gain unexplained, not hidden: null; but not beside a close of a wrapped-SOL vault
 * (`wrappedSolClosed`), which paid out what no fact keeps.
 */
export function unshownCreditOf(
  vault: string,
  facts: TransactionFacts,
  profile: Pick<Profile, "usdcMint" | "tokenPrograms">,
): bigint | null {
  const shown = shownCreditOf(vault, facts, profile);
  if (shown === null) return null;
  const delta = vaultCreditChange(vault, facts, profile)?.delta ?? 0n;
  return delta > shown ? delta - shown : null;
}

/** The vault's change in credits by its token balances; undefined when they show none. */
function vaultCreditChange(
  vault: string,
  facts: TransactionFacts,
  profile: Pick<Profile, "usdcMint" | "tokenPrograms">,
): TokenChange | undefined {
  return facts.tokenChanges.find((c) => c.account === vault && isCredit(profile, c));
}

/**
 * What the instructions served of a succeeded transaction move into the vault less what they
 * take out of it, in credits; null where that cannot be known: a failed transaction, or a token
 * instruction naming the vault that can move money by an amount the facts do not keep (see
 * `unshownCreditOf`).
 */
export function shownCreditOf(
  vault: string,
  facts: TransactionFacts,
  profile: Pick<Profile, "usdcMint" | "tokenPrograms">,
): bigint | null {
  if (!facts.succeeded) return null;
  // A vault the balances show no credit change of is judged as one holding credits: what the
  // instructions moved is then money the balances do not show.
  const change: TokenChange = vaultCreditChange(vault, facts, profile) ?? {
    account: vault,
    owner: null,
    mint: profile.usdcMint,
    programId: null,
    decimals: 0,
    pre: 0n,
    post: 0n,
    delta: 0n,
  };
  const unknown =
    !wrappedSolClosed(change, facts) &&
    facts.tokenInstructions.some(
      (ix) => mayMove(ix, change) && !(MOVEMENT_KINDS.has(ix.kind) && ix.amount !== undefined),
    );
  if (unknown) return null;
  let shown = 0n;
  for (const { ix, from } of vaultCreditMovements(vault, facts, profile)) {
    shown += from ? -ix.amount! : ix.amount!;
  }
  return shown;
}

/**
 * The token instructions of a transaction that moved credits out of or into the vault (not
 * from the vault to itself), in order, each with whether it took from the vault.
 */
function vaultCreditMovements(
  vault: string,
  facts: TransactionFacts,
  profile: Pick<Profile, "usdcMint" | "tokenPrograms">,
): { ix: TokenInstruction; from: boolean }[] {
  const mine = facts.tokenChanges.filter((c) => c.account === vault);
  const otherMints = new Set(mine.map((c) => c.mint).filter((m) => m !== profile.usdcMint));
  // The mint the vault holds as the instructions run: what it held before the transaction,
  // where a balance shows it, then the mint each (re)opening of the account names.
  let vaultMint: string | null = mine.find((c) => c.pre > 0n)?.mint ?? null;
  const moves: { ix: TokenInstruction; from: boolean }[] = [];
  for (const ix of facts.tokenInstructions) {
    // Only the vault made a token account again (InitializeAccount names the new account's
    // owner too); facts that do not tell which account it made show no reopening. Its mint is
    // the one at its place: the program reads no account named after its accounts.
    if (INITIALIZE_ACCOUNT_KINDS.has(ix.kind) && ix.initialized === vault) {
      if (ix.mint !== undefined) vaultMint = ix.mint;
      else if (ix.accounts.includes(profile.usdcMint)) vaultMint = profile.usdcMint;
      else vaultMint = ix.accounts.find((a) => otherMints.has(a)) ?? vaultMint;
      continue;
    }
    if (ix.amount === undefined || !MOVEMENT_KINDS.has(ix.kind)) continue;
    if (!profile.tokenPrograms.includes(ix.programId)) continue;
    const from = ix.source === vault;
    const to = ix.destination === vault;
    if (from === to) continue;
    if (!creditMovement(ix, vaultMint, otherMints, profile.usdcMint)) continue;
    moves.push({ ix, from });
  }
  return moves;
}

/**
 * What of a succeeded transaction's net credit to the vault (`delta`) escrow did not pay in,
 * when any, else null: a settlement or refund returns money out of escrow, and only that is a
 * job's return; the rest (the customer's own top-up under the job's refund memo, say) is a
 * deposit, and releases no lock. Escrow is the profile's escrow vault, else any account the
 * escrow authority owns; with neither named, the accounts the locks of the jobs the memos name
 * credited (`learned`, see `escrowLearned`): a wallet's top-up under a job's settle memo was
 * read whole as that job's return. With none of these known, all of it counts as escrow's.
 * Money in that no instruction shows (a call a node left out) is not shown to be escrow's
 * either.
 */
export function depositInOf(
  vault: string,
  delta: bigint,
  facts: TransactionFacts,
  profile: Pick<Profile, "usdcMint" | "tokenPrograms" | "escrowVault" | "escrowAuthority">,
  learned: ReadonlySet<string> = new Set(),
): bigint | null {
  if (!facts.succeeded || delta <= 0n) return null;
  const named = profile.escrowVault !== null || profile.escrowAuthority !== null;
  if (!named && learned.size === 0) return null;
  const ownerOf = (account: string) =>
    facts.tokenChanges.find((c) => c.account === account && c.owner !== null)?.owner ??
    facts.ownersAfter?.find((o) => o.account === account)?.owner ??
    null;
  const escrow = (account: string | undefined) =>
    account !== undefined &&
    (profile.escrowVault !== null
      ? account === profile.escrowVault
      : named
        ? ownerOf(account) === profile.escrowAuthority
        : learned.has(account));
  let fromEscrow = 0n;
  for (const { ix, from } of vaultCreditMovements(vault, facts, profile)) {
    // A Token-2022 fee kept back is no money in: the net credit bounds what counts.
    if (from || !escrow(ix.source)) continue;
    fromEscrow += ix.amount!;
  }
  // Money escrow took in from others in the transaction passed through it: the customer's
  // top-up sent through the escrow vault on to the vault (a "buy credits" transaction the
  // operator built) read whole as the return of a lock the operator kept, even with escrow
  // paying as much elsewhere beside it. What escrow brought the vault is what it paid in beyond
  // that, and no more than escrow's accounts lost (balances show what no instruction does).
  // Where no account but the escrow authority's lost credits in the transaction, no customer's
  // money came into it: escrow refilled from the operator's own account beside an honest refund
  // read its payment as passed through, the refund as a deposit and its lock as kept. What the
  // authority's other accounts lost then bounds the return instead.
  const credit = (c: { account: string; mint: string; delta: bigint }) =>
    c.account !== vault && c.mint === profile.usdcMint && c.delta < 0n;
  const ownMoney =
    profile.escrowAuthority !== null &&
    facts.tokenChanges.every((c) => !credit(c) || ownerOf(c.account) === profile.escrowAuthority);
  for (const ix of ownMoney ? [] : facts.tokenInstructions) {
    const to = ix.destination;
    if (to === undefined || to === vault || !escrow(to) || escrow(ix.source)) continue;
    if (ix.kind !== "transfer" && !namesCreditMint(ix, profile.usdcMint)) continue;
    fromEscrow -= ix.amount ?? 0n;
  }
  let escrowLost = 0n;
  for (const c of facts.tokenChanges) {
    if (credit(c) && (ownMoney || escrow(c.account))) escrowLost -= c.delta;
  }
  let paid = fromEscrow < escrowLost ? fromEscrow : escrowLost;
  if (paid < 0n) paid = 0n;
  return paid < delta ? delta - paid : null;
}

/**
 * Whether a transfer or burn out of the vault moved credits. Every kind but the plain Transfer
 * names its mint at its place among its accounts (`mint`), and the token program refuses one
 * naming another mint there than its source's. A plain Transfer is another mint's only when the vault holds that mint
 * then and its balances show it moving that mint in the transaction (a `foreign_mint_movement`
 * of its own); otherwise it is credits, whatever other accounts hold: an account can be closed
 * and opened again in another mint within the transaction, and a payout of credits must never
 * be taken for another mint's.
 */
function creditMovement(
  ix: TokenInstruction,
  vaultMint: string | null,
  otherMints: ReadonlySet<string>,
  creditMint: string,
): boolean {
  if (ix.kind !== "transfer") return namesCreditMint(ix, creditMint);
  return vaultMint === null || !otherMints.has(vaultMint);
}

/**
 * Whether a transfer, burn or mint naming its mint moves the credit mint: the mint at its place
 * among the instruction's accounts. The program reads none past them, so a fake mint's
 * TransferChecked out of the vault with the credit mint named after its accounts moved no
 * credits, yet read as a payout of them. Facts kept without the mint and without the raw answer
 * they came from (see `storedFacts`) tell only whether it is named at all.
 */
function namesCreditMint(ix: TokenInstruction, creditMint: string): boolean {
  return ix.mint === undefined ? ix.accounts.includes(creditMint) : ix.mint === creditMint;
}

/**
 * Slots below the finalized one asked for a block time when it has none (a node that lost it,
 * an answer of null). Each is at most the finalized slot's time, and the listing holds them:
 * a time the node gives for any of them is one it proves. A slot a leader skipped has no
 * time, and a leader has 4 slots in a row.
 */
const SLOTS_BELOW_TRIED = 5;

/**
 * Gaps of one vault listed again per sync (taking turns when there are more), and pages each
 * listing may take: a gap a node keeps showing costs a few listing calls a round, no more.
 */
const GAPS_HEALED_PER_SYNC = 3;
const HEAL_PAGES_PER_GAP = 2;
/** Stored gaps a vault's turns go round. */
const GAPS_IN_TURN = 100;
/**
 * A gap listed again to no new line waits this long before its next listing, twice as long
 * each time up to `HEAL_WAIT_MAX_MS`: history the nodes no longer hold, or a node that keeps
 * leaving it out, costs a listing call now and then, not three every round.
 */
const HEAL_WAIT_MS = 60_000;
const HEAL_WAIT_MAX_MS = 3_600_000;

/**
 * Why a listing (newest first) cannot be the chain's order, or null when it can: an entry at a
 * later slot than the one listed above it, or than `ceiling` (the slot of the `before`
 * signature it was asked for; null when not known). Lines are kept in the order they are
 * listed and held lines never move: a node listing a deposit above two later jobs placed it
 * where the balances before and after it do not chain, gaps that listing the gaps again never
 * closed, and every nightly run exited 1 from then on.
 */
export function listingOutOfOrder(
  listing: readonly { signature: string; slot: number }[],
  ceiling: number | null,
): string | null {
  let above = ceiling;
  for (const e of listing) {
    if (above !== null && e.slot > above) {
      return `${e.signature} is listed at slot ${e.slot} below an entry at slot ${above}`;
    }
    above = e.slot;
  }
  return null;
}

/** A fetched transaction as the store keeps it. */
function fetchedRow(signature: string, facts: TransactionFacts, raw: unknown): FetchedTransaction {
  return {
    signature,
    slot: facts.slot,
    blockTime: facts.blockTime,
    fee: facts.fee,
    succeeded: facts.succeeded,
    err: JSON.stringify(facts.err ?? null),
    facts: JSON.stringify(factsToJson(facts)),
    raw: typeof raw === "string" ? raw : JSON.stringify(raw),
  };
}

/** What two reads of a vault's listed lines read, counted into `read`. */
function addRead(read: LinesRead, more: LinesRead) {
  read.fetched += more.fetched;
  read.shared += more.shared;
  read.pending += more.pending;
  read.unstorable ??= more.unstorable;
  read.hidden ??= more.hidden;
  if (more.waiting) {
    if (read.waiting) read.waiting.lines += more.waiting.lines;
    else read.waiting = more.waiting;
  }
}

/** What a read of a vault's listed lines read (`readListed`). */
interface LinesRead {
  fetched: number;
  shared: number;
  pending: number;
  unstorable: { signature: string; units: bigint; lines: number } | null;
  hidden: { signature: string; lines: number; why: string } | null;
  /** The first line left listed for a job row another session holds, and how many were. */
  waiting: { signature: string; jobId: string; lines: number } | null;
}

export function createLedgerReader(deps: LedgerDeps): LedgerReader {
  const { rpc, profile, log } = deps;
  const ledger = createLedgerStore(deps.store);
  // A reader's view of custody: it writes nothing (no configuration given).
  const custody = createCustodyStore(deps.store, profile);
  /**
   * The owner every credit vault must have: the profile's escrow authority, else the one the
   * verifier learned from the first lock written (src/store/custody.ts), read again at each
   * vault's sync. Null while neither is known: no owner is judged then.
   */
  let vaultsOwner: string | null = profile.escrowAuthority;
  async function readVaultsOwner(): Promise<void> {
    if (profile.escrowAuthority !== null) return;
    vaultsOwner = (await custody.pins([], [])).escrowAuthority;
  }
  const now = deps.now ?? Date.now;
  const options: LedgerOptions = { ...defaultLedgerOptions, ...deps.options };
  if (!Number.isInteger(options.pageSize) || options.pageSize < 1 || options.pageSize > 1000) {
    throw new RangeError("ledger pageSize must be an integer in 1..1000");
  }

  /**
   * The block time (ms) of the chain's finalized slot now. A listing asked for after it holds
   * every transaction up to that slot; the local clock says nothing of the kind: a transaction
   * of a few seconds ago is not finalized yet, and a listing at `finalized` leaves it out.
   * Without the slot's own time, a slot just below it serves (an earlier time, which the
   * listing holds too). With none, null and the cause: the sync lists as usual but holds no
   * time, so `final_through` stays where an earlier sync proved it. (It used to take the local
   * clock less 2 minutes: past the end of a window a lagging node had not listed yet.)
   */
  async function finalizedTime(): Promise<{ time: number | null; cause: string | null }> {
    const slot = await rpc.getSlot("finalized");
    let cause: string | null = null;
    for (let s = slot; s >= Math.max(0, slot - SLOTS_BELOW_TRIED); s--) {
      try {
        const seconds = await rpc.getBlockTime(s);
        // A time the chain cannot have (one no date holds threw in every later report; one in
        // the future made every window up to it look complete) proves nothing.
        const wrong = implausibleBlockTime(seconds, now());
        if (wrong !== null) throw new Error(`getBlockTime ${s}: ${wrong}`);
        return { time: seconds * 1000, cause: null };
      } catch (error) {
        // An endpoint without getBlockTime, with no time for the slot (null), one the chain
        // cannot have, or endpoints that disagree on it. The first slot's answer names the
        // trouble best.
        cause ??= error instanceof Error ? error.message : String(error);
      }
    }
    const named = `no block time for the finalized slot ${slot} nor the ${SLOTS_BELOW_TRIED} below it (${cause})`;
    if (!blockTimeWarned) {
      blockTimeWarned = true;
      log.warn(
        { err: cause, slot },
        "the endpoint gives no block time for the finalized slot; the ledger lists, but its read-through time stays where a block time last proved it",
      );
    }
    return { time: null, cause: named };
  }
  let blockTimeWarned = false;

  /** Lists every page newer than the last completed sync; returns pages and lines stored. */
  async function listNew(vault: string, signal?: AbortSignal, readUntil?: number) {
    let pages = 0;
    let listed = 0;
    let noBlockTime: string | null = null;
    /** The chain's finalized time the sync's first page was listed after, when the node gave it. */
    let chainFinal: number | null = null;
    /** Why entries of the sync's first page were held back, or null when none was. */
    let heldBack: string | null = null;
    /** The last entry of the page this call stored last: where the next page starts. */
    let pageEnd: { signature: string; slot: number } | null = null;
    /** Every signature listed to this call, to tell a cursor that loops. */
    const listedHere = new Set<string>();
    for (;;) {
      signal?.throwIfAborted();
      const seen = await ledger.cursor(vault, now());
      // A sync's first page fixes the newest signature it lists: what the chain had finalized
      // before it is asked for is what the completed sync holds (`final_through`).
      let finalThrough: number | null = null;
      if (seen.syncBefore === null) {
        const finalized = await finalizedTime();
        finalThrough = finalized.time;
        chainFinal = finalized.time;
        noBlockTime = finalized.cause;
        heldBack = null;
      }
      const answer = await rpc.getSignaturesForAddress(vault, {
        limit: options.pageSize,
        ...(seen.syncBefore ? { before: seen.syncBefore } : {}),
        ...(seen.newestSignature ? { until: seen.newestSignature } : {}),
      });
      // A sync resumed by this call starts below a line an earlier call stored: its slot.
      const ceiling =
        seen.syncBefore === null
          ? null
          : pageEnd?.signature === seen.syncBefore
            ? pageEnd.slot
            : seen.syncBeforeSlot;
      const again =
        seen.syncBefore === null ? null : cursorGoesNowhere(answer, seen.syncBefore, listedHere);
      if (again !== null) {
        // Entries of one slot pass the order check and the store keeps nothing new of them:
        // the same page was asked for again and again, for ever in serve's ledger round and
        // to the nightly run's --timeout, which named no fault of the node's.
        throw new AppError("rpc_unavailable", `getSignaturesForAddress ${vault}: ${again}`);
      }
      for (const e of answer) listedHere.add(e.signature);
      const disorder = listingOutOfOrder(answer, ceiling);
      if (disorder !== null) {
        // Stored, the lines would sit out of chain order for good: the sync fails, naming it.
        throw new AppError("rpc_unavailable", `getSignaturesForAddress ${vault}: ${disorder}`);
      }
      // Entries at a slot below the newest line's are older than it: a node that does not hold
      // that signature yet lists on past it, and one that lies lists a transaction it left out
      // before as new. Stored, they sat above the newest line for good; they belong between
      // lines held, where a gap's listing puts them, and the sync has listed all it must.
      const cut = await cutBelowNewest(vault, seen, answer);
      const listing = cut < 0 ? answer : answer.slice(0, cut);
      const last = cut >= 0 || answer.length < options.pageSize;
      if (cut >= 0 && seen.syncBefore === null) {
        // A node that does not hold the newest line proves nothing newer than it is final. (On
        // a later page, the time the sync's first page read stands: a node answered it whole.)
        finalThrough = null;
        noBlockTime ??= `getSignaturesForAddress ${vault}: listed past the newest line ${seen.newestSignature}`;
      }
      const page = keptEntries(vault, listing, seen.syncBefore === null);
      const stranger = await firstNotTheVaults(vault, page, signal, readUntil);
      if (stranger !== null) {
        // Stored, another account's transaction was a line of the vault's for good: the sync
        // fails, naming it, and lists the page again next round.
        throw new AppError("rpc_unavailable", `getSignaturesForAddress ${vault}: ${stranger}`);
      }
      if (page.length < listing.length) {
        // Entries held back: what this sync lists proves no read-through time, so the
        // vault's stays where an earlier sync proved it (below them).
        finalThrough = null;
        heldBack = `${heldBackCause(listing)}; it and the ${listing.length - page.length - 1} listed above it wait for a later sync`;
        noBlockTime = heldBack;
      }
      if (await ledger.storePage(vault, seen, page, last, now(), finalThrough)) {
        pages++;
        listed += page.length;
        pageEnd = page.at(-1) ?? null;
      } else {
        pageEnd = null;
      }
      if (last && (await ledger.cursor(vault, now())).syncBefore === null) {
        return { pages, listed, noBlockTime, heldBack, chainFinal };
      }
    }
  }

  /**
   * Where a sync's listing (newest first) reaches below the newest line: the index of its first
   * entry older than that line, or -1. Older is judged by the slot the line's transaction is at
   * when it was read, else by the slot it was listed at: a node that once listed the newest
   * entry at a made-up slot above the chain's had every later entry (a theft among them) end
   * each sync's listing, never listed, while the read-through time went on.
   */
  async function cutBelowNewest(
    vault: string,
    seen: LedgerCursor,
    answer: readonly AddressSignatureInfo[],
  ) {
    const listed = seen.newestSlot;
    if (listed === null || seen.newestSignature === null) return -1;
    if (!answer.some((e) => e.slot < listed)) return -1;
    let floor = listed;
    const row = (await ledger.storedTransactions([seen.newestSignature])).get(seen.newestSignature);
    if (row) {
      try {
        floor = factsFromJson(row.facts).slot;
      } catch {}
    }
    if (floor !== listed && !slotWarned.has(vault)) {
      slotWarned.add(vault);
      log.warn(
        { vault, signature: seen.newestSignature, listedSlot: listed, slot: floor },
        "ledger: the newest line was listed at another slot than its transaction's; later entries are judged by the transaction's",
      );
    }
    return answer.findIndex((e) => e.slot < floor);
  }
  const slotWarned = new Set<string>();

  const heldBackWarned = new Set<string>();

  /** Why an entry of the listing cannot be the chain's, or null when it can. */
  const wrongTime = (entry: AddressSignatureInfo) =>
    entry.blockTime === null ? null : implausibleBlockTime(entry.blockTime, now());

  /** The cause naming the oldest entry of `listing` dated where the chain cannot be. */
  function heldBackCause(listing: readonly AddressSignatureInfo[]) {
    const entry = listing.findLast((e) => wrongTime(e) !== null)!;
    return `getSignaturesForAddress ${entry.signature}: ${wrongTime(entry)}`;
  }

  /**
   * The entries of a listed page (newest first) to store: all of them, or on a sync's first
   * page only those older than its oldest entry dated where the chain cannot be. Stored, such a
   * date would place the line (and the read-through time) where the chain never was; the
   * entries above it are listed again by the next sync, which starts below them. Below a page
   * already stored the sync cannot stop short (an entry left out there would never be listed),
   * nor on a full page all of whose entries are held back: the vault's sync fails, naming it.
   */
  function keptEntries(
    vault: string,
    listing: readonly AddressSignatureInfo[],
    firstPage: boolean,
  ): readonly AddressSignatureInfo[] {
    const oldestWrong = listing.findLastIndex((e) => wrongTime(e) !== null);
    if (oldestWrong < 0) return listing;
    const kept = listing.slice(oldestWrong + 1);
    if (!firstPage || (kept.length === 0 && listing.length === options.pageSize)) {
      throw new AppError("rpc_unavailable", heldBackCause(listing));
    }
    if (heldBackWarned.has(vault)) return kept;
    heldBackWarned.add(vault);
    log.warn(
      { vault, err: heldBackCause(listing), heldBack: oldestWrong + 1 },
      "ledger: the newest listed entries are dated where the chain cannot be; older ones are kept, and the read-through time stays below them",
    );
    return kept;
  }

  /** Where each vault's turn of gaps to list again goes on (see `healGaps`). */
  const healTurn = new Map<string, number>();
  /** Per vault, gaps (by their later line) listed again to nothing new: when to try again. */
  const healWait = new Map<string, Map<string, { at: number; waitMs: number }>>();

  /**
   * Lists again the signatures between the two lines of a few of the vault's gaps and inserts
   * those it holds no line of, in chain order between them: each sync lists only what is newer
   * than the newest signature it holds, so a transaction a node's address index left out while
   * it listed a later one (lagging, or lying) was never listed again, its money a gap every
   * run and a theft behind it never named. Read like any listed line; the review then compares
   * the lines from the gap's earlier line again. A listing that does not end within its pages
   * inserts nothing (where its older entries go is not known). Returns the lines inserted.
   */
  async function healGaps(vault: string, signal?: AbortSignal) {
    const stored = await ledger.storedGaps(vault, GAPS_IN_TURN);
    const waits = healWait.get(vault) ?? new Map<string, { at: number; waitMs: number }>();
    // Gaps closed since are forgotten.
    const open = new Set(stored.map((g) => g.beforeSignature));
    for (const key of waits.keys()) if (!open.has(key)) waits.delete(key);
    healWait.set(vault, waits);
    const t = now();
    const gaps = stored.filter((g) => (waits.get(g.beforeSignature)?.at ?? 0) <= t);
    if (gaps.length === 0) return 0;
    // A reader's first turn starts where the vault's completed syncs put it (a count kept in
    // the store): each nightly run has a fresh reader, and started at 0 every run re-listed the
    // same newest 3 gaps while an older one stayed open behind them, never listed again.
    const first = async () => (await ledger.cursor(vault, t)).syncNumber * GAPS_HEALED_PER_SYNC;
    const start = (healTurn.get(vault) ?? (await first())) % gaps.length;
    const turn = [...gaps.slice(start), ...gaps.slice(0, start)].slice(0, GAPS_HEALED_PER_SYNC);
    healTurn.set(vault, start + turn.length);
    return listGapsAgain(vault, turn, signal);
  }

  /**
   * Gaps the sync's own read found, none of them stored before it (`known`: their later lines):
   * listed again in the same sync, up to `GAPS_HEALED_PER_SYNC`. A node that left one entry out
   * of a full page ended the sync's listing there; the gaps below showed only once the lines
   * were read, after the round's listing of gaps, and the nightly run judging them exited 1 for
   * money that was all there, the next run healing them. Returns the lines inserted.
   */
  async function healNewGaps(vault: string, known: ReadonlySet<string>, signal?: AbortSignal) {
    const stored = await ledger.storedGaps(vault, GAPS_IN_TURN);
    const fresh = stored.filter((g) => !known.has(g.beforeSignature));
    if (fresh.length === 0) return 0;
    return listGapsAgain(vault, fresh.slice(0, GAPS_HEALED_PER_SYNC), signal);
  }

  /** Lists again the signatures between the two lines of each gap (see `healGaps`). */
  async function listGapsAgain(vault: string, turn: readonly GapLines[], signal?: AbortSignal) {
    const waits = healWait.get(vault) ?? new Map<string, { at: number; waitMs: number }>();
    healWait.set(vault, waits);
    let inserted = 0;
    for (const gap of turn) {
      signal?.throwIfAborted();
      // Two lines of one slot: a node listed the slot's entries in another order than the
      // chain ran them, and listing between the two again shows nothing new.
      if (await reorderedSlot(vault, gap)) {
        waits.delete(gap.beforeSignature);
        continue;
      }
      const listing: AddressSignatureInfo[] = [];
      let before = gap.beforeSignature;
      let whole = false;
      for (let p = 0; p < HEAL_PAGES_PER_GAP; p++) {
        const page = await rpc.getSignaturesForAddress(vault, {
          limit: options.pageSize,
          before,
          until: gap.afterSignature,
        });
        listing.push(...page);
        if (page.length < options.pageSize) {
          whole = true;
          break;
        }
        before = page.at(-1)!.signature;
      }
      let added = 0;
      if (whole) {
        added = await insertListed(vault, gap, listing, signal);
        inserted += added;
      } else {
        log.warn(
          { vault, after: gap.afterSignature, before: gap.beforeSignature },
          "ledger: a gap's signatures fill more pages than one sync lists again; it stays",
        );
      }
      const waitMs =
        added > 0
          ? 0
          : Math.min(
              HEAL_WAIT_MAX_MS,
              (waits.get(gap.beforeSignature)?.waitMs ?? HEAL_WAIT_MS / 2) * 2,
            );
      if (waitMs === 0) waits.delete(gap.beforeSignature);
      else waits.set(gap.beforeSignature, { at: now() + waitMs, waitMs });
    }
    return inserted;
  }

  /**
   * Inserts the entries of `listing` (all the chain lists between two held lines, newest
   * first) the vault holds no line of, in chain order between them. Returns the lines inserted.
   */
  async function insertListed(
    vault: string,
    gap: GapLines,
    listing: readonly AddressSignatureInfo[],
    signal?: AbortSignal,
    held?: ReadonlySet<string>,
  ) {
    // Placed by its listed slot between the two lines, an entry must be there: a transaction
    // from after them listed under a slot between them sat there for good.
    const misplaced = await healListingWrong(vault, listing, signal, held);
    if (misplaced !== null) {
      log.warn(
        { vault, after: gap.afterSignature, before: gap.beforeSignature, err: misplaced },
        "ledger: a gap's listing places a transaction where the chain does not; it stays",
      );
      return 0;
    }
    // An entry dated where the chain cannot be is no line (see `keptEntries`).
    const kept = listing.filter((e) => wrongTime(e) === null);
    return ledger.healGap(vault, gap, kept, now(), signal);
  }

  /** Per vault, when this process's listing of held history may start from the newest again. */
  const relistWait = new Map<string, number>();

  /**
   * Lists one page of the vault's held history again, below where the last such listing ended
   * (the newest line first), and inserts what it lists that the vault holds no line of, between
   * the held lines around it. Once a listing ends, the next starts again from the newest line
   * after `HEAL_WAIT_MS`. Only a gap was ever listed again: a top-up and a theft of the same
   * amount that one listing left out chained across, showed no gap, and were never listed once
   * the nodes showed them; the nightly run exited 0. Where the listing stands is stored with
   * the vault's cursor, so a process goes on where the last one stopped: each nightly run's
   * process began at the newest line and never listed a page further back. The minute's wait
   * is the process's own. Returns the lines inserted.
   */
  async function relistHeld(vault: string, signal?: AbortSignal) {
    const t = now();
    if ((relistWait.get(vault) ?? 0) > t) return 0;
    const below = await ledger.relistBelow(vault);
    const top = below ?? (await ledger.cursor(vault, t)).newestSignature;
    if (top === null) return 0;
    const page = await rpc.getSignaturesForAddress(vault, { limit: options.pageSize, before: top });
    const held = await ledger.heldLines(
      vault,
      page.map((e) => e.signature),
    );
    const lowest = await lowestHeldShown(vault, top, page, held);
    const next = await relistGoesOnBelow(vault, top, page, lowest);
    await ledger.setRelistBelow(vault, next);
    if (next === null) relistWait.set(vault, t + HEAL_WAIT_MS);
    // Entries below the lowest held line go with the next page (or are older than any held).
    const listing = lowest < 0 ? [] : page.slice(0, lowest);
    if (!listing.some((e) => !held.has(e.signature))) return 0;
    const gap = { afterSignature: page[lowest]!.signature, beforeSignature: top };
    return insertListed(vault, gap, listing, signal, held);
  }

  /**
   * The index of the page's last held line when it is among the page's length of lines held
   * just below `top` (where a page listed below `top` can reach), else -1 (none shown). A node
   * ending a page of made-up entries with the vault's oldest line ended the walk there, the
   * history between never listed again; one ending it with a line above `top` sent it back up.
   */
  async function lowestHeldShown(
    vault: string,
    top: string,
    page: readonly AddressSignatureInfo[],
    held: ReadonlySet<string>,
  ) {
    const lowest = page.findLastIndex((e) => held.has(e.signature));
    if (lowest < 0) return -1;
    const shown = page[lowest]!.signature;
    return (await ledger.heldWithinBelow(vault, top, shown, page.length)) ? lowest : -1;
  }

  /**
   * Where the listing of held history goes on after a page listed below `top` (`lowest`: the
   * index of its last held line, -1 for none), or null when it has listed all the vault holds.
   * A full page goes on below its last held line; a page that shows none below `top`, or ends
   * while the vault holds lines below its last held one, goes on below the next line held (the
   * held lines are in the chain's order): a node listing a page of entries the vault holds none
   * of sent the walk back to the newest line, and one doing it each time kept it there, never
   * listing the older history again.
   */
  async function relistGoesOnBelow(
    vault: string,
    top: string,
    page: readonly AddressSignatureInfo[],
    lowest: number,
  ) {
    const last = lowest < 0 ? top : page[lowest]!.signature;
    if (page.length >= options.pageSize && lowest >= 0 && last !== top) return last;
    return ledger.lineBelow(vault, last);
  }

  /**
   * Lists the slot of a gap's two lines again (between the lines held around it) and, when
   * that listing holds just the slot's lines, each at the slot it is at, in another order than
   * held, puts them in its order if their balances chain in it (`slotChainOrder`). The order
   * is the listing's, never one the balances alone choose: a payout and its return within the
   * slot, both left out, let the lines chain in an order not the chain's, and closing the gap
   * so would keep an honest listing from ever showing the two. Whether lines moved.
   */
  async function reorderedSlot(
    vault: string,
    gap: { afterSignature: string; beforeSignature: string },
  ) {
    const around = await ledger.slotAround(vault, gap);
    if (around === null || around.above === null) return false;
    const listing = await rpc.getSignaturesForAddress(vault, {
      limit: options.pageSize,
      before: around.above,
      ...(around.below === null ? {} : { until: around.below }),
    });
    const held = new Set(around.signatures);
    if (
      listing.length >= options.pageSize ||
      listing.length !== held.size ||
      listing.some((e) => e.slot !== around.slot || !held.has(e.signature)) ||
      (await healListingWrong(vault, listing)) !== null
    ) {
      return false;
    }
    const order = listing.map((e) => e.signature).reverse();
    if (!(await ledger.reorderSlot(vault, gap, order))) return false;
    log.warn(
      { vault, slot: around.slot, after: gap.afterSignature, before: gap.beforeSignature },
      "ledger: a slot's lines were held in another order than the chain lists them; reordered",
    );
    return true;
  }

  /**
   * Why a gap's listing (newest first) cannot be the chain's, or null: out of slot order, or an
   * entry whose transaction is at another slot than listed (read from the stored transaction,
   * else fetched; one the node does not serve proves nothing yet). The entries are few (what the
   * first listing left out, and lines healed before between the two); `placed` are lines held
   * already, not read for their slot (a listing of held history holds lines not read yet).
   */
  async function healListingWrong(
    vault: string,
    listing: readonly AddressSignatureInfo[],
    signal?: AbortSignal,
    placed: ReadonlySet<string> = new Set(),
  ) {
    const disorder = listingOutOfOrder(listing, null);
    if (disorder !== null) return disorder;
    // Lines held already are where they are; only the entries to insert are read for their slot.
    const entries = listing.filter((e) => !placed.has(e.signature));
    return firstWrongFetched(entries, signal, (part, factsOf) =>
      firstNotListedThere(vault, part, factsOf),
    );
  }

  /**
   * Why an entry of a new listing (one page, newest first) is not the vault's, or null: its
   * transaction names no account of the vault's, or is not served. A node listing another
   * account's signature as new made it a line of the vault's (kind none), read and kept for
   * good. Judged are the entries the sync reads (dated before `readUntil`, when given): the
   * transactions fetched to judge them are stored, so the read does not fetch them again, and a
   * nightly run fetches none of the later traffic. A later one a read finds not the vault's is
   * not read (`unreadableWhy`).
   */
  /** Transactions a new listing fetched and stored to judge it, not read yet: counted fetched. */
  const fetchedToJudge = new Set<string>();

  async function firstNotTheVaults(
    vault: string,
    page: readonly AddressSignatureInfo[],
    signal?: AbortSignal,
    readUntil?: number,
  ) {
    const fetched = new Map<string, { facts: TransactionFacts; raw: unknown }>();
    const read = page.filter(
      (e) => readUntil === undefined || e.blockTime === null || e.blockTime * 1000 < readUntil,
    );
    const why = await firstWrongFetched(
      read,
      signal,
      (part, factsOf) => firstNotListedThere(vault, part, factsOf, false),
      fetched,
    );
    if (why === null) {
      // Stored as the read would store them: not one it could not read.
      const rows = [...fetched]
        .filter(([, got]) => unreadableWhy(vault, got.facts) === null)
        .map(([signature, got]) => fetchedRow(signature, got.facts, got.raw));
      await ledger.recordReads(vault, [], rows, now());
      for (const row of rows) fetchedToJudge.add(row.signature);
    }
    return why;
  }

  /**
   * Why the first of `listing` is wrong (`wrongOf`, judged on its transaction: stored, else
   * fetched; null: not served), or null. Stored ones are judged first; the rest are fetched a
   * part at a time and judging stops at the first part holding a wrong one. Answers fetched go
   * to `fetched`, when given (a fetch that fails is then not judged).
   */
  async function firstWrongFetched(
    listing: readonly AddressSignatureInfo[],
    signal: AbortSignal | undefined,
    wrongOf: (
      entries: readonly AddressSignatureInfo[],
      factsOf: ReadonlyMap<string, TransactionFacts | null>,
    ) => string | null,
    fetched?: Map<string, { facts: TransactionFacts; raw: unknown }>,
  ) {
    const stored = await ledger.storedTransactions(listing.map((e) => e.signature));
    const factsOf = new Map<string, TransactionFacts | null>();
    for (const [signature, tx] of stored) {
      // Facts that no longer read are fetched again, as a read would.
      try {
        factsOf.set(signature, factsFromJson(tx.facts));
      } catch {}
    }
    const unknown = listing.filter((e) => !factsOf.has(e.signature));
    const wrong = wrongOf(
      listing.filter((e) => factsOf.has(e.signature)),
      factsOf,
    );
    if (wrong !== null) return wrong;
    for (let i = 0; i < unknown.length; i += options.fetchConcurrency) {
      // A node may list up to two pages of entries here: fetched on past the run's deadline
      // (or the service's stop), 2,000 calls went on after it, and the sync then ended as if
      // nothing had stopped it.
      signal?.throwIfAborted();
      const part = unknown.slice(i, i + options.fetchConcurrency);
      const got = await Promise.allSettled(part.map((e) => rpc.getTransaction(e.signature)));
      signal?.throwIfAborted();
      part.forEach((e, j) => {
        const answer = got[j]!;
        // Judging a new listing, a fetch that fails is left to the read (it stays unread).
        if (answer.status === "rejected" && fetched === undefined) throw answer.reason;
        const value = answer.status === "fulfilled" ? answer.value : null;
        factsOf.set(e.signature, value?.facts ?? null);
        if (value) fetched?.set(e.signature, value);
      });
      // One wrong entry is enough: a node listing a page of made-up ones in every listing of
      // held history made each sync ask for each of them, every endpoint once.
      const why = wrongOf(part, factsOf);
      if (why !== null) return why;
    }
    return null;
  }

  /**
   * Why the first of `entries` cannot be the vault's where listed, or null: its transaction
   * (`factsOf`; null: not served) is at another slot, or names no account of the vault's. A
   * node listing another account's transaction between two held lines made it a line of the
   * vault's, read with every sync's listing of held history: a page of them each sync. Without
   * `bySlot` (a new listing) the slot is not judged (a new line takes its transaction's slot
   * when read), nor is a transaction not served (its line stays unread until one is).
   */
  function firstNotListedThere(
    vault: string,
    entries: readonly AddressSignatureInfo[],
    factsOf: ReadonlyMap<string, TransactionFacts | null>,
    bySlot = true,
  ) {
    for (const e of entries) {
      const facts = factsOf.get(e.signature);
      if (!facts) {
        if (bySlot) return `getTransaction ${e.signature}: not served`;
        continue;
      }
      if (bySlot && facts.slot !== e.slot) {
        return `${e.signature} is listed at slot ${e.slot}, its transaction is at slot ${facts.slot}`;
      }
      if (!facts.accounts.includes(vault))
        return `${e.signature}'s transaction does not name the vault`;
    }
    return null;
  }

  /**
   * The vault's movement in one transaction, and the memos naming a job: the first one's step
   * and job, and every one of them when they name several (a refund whose first memo names
   * another job id is still judged with the job the second names). Only a change in the
   * credit mint (under a token program the profile allows) is the vault's money; a change of
   * the same address in any other mint is kept apart as a finding, never as money. So is an
   * owner after the transaction other than the escrow authority (`vaultsOwner`: a profile
   * naming none judges the one learned, and no owner while none is): the vault's money is then
   * that owner's to spend, whatever its lines sum to.
   * A delegate an Approve gave the vault is kept too, for the same reason.
   */
  function lineOf(
    vault: string,
    signature: string,
    facts: TransactionFacts,
    escrow: ReadonlySet<string> = new Set(),
  ): LineRead {
    const mine = facts.tokenChanges.filter((c) => c.account === vault);
    const change = mine.find((c) => isCredit(profile, c));
    const foreign = mine.filter((c) => !isCredit(profile, c));
    const allNamed = parseJobMemos(profile, facts.memos);
    const named = allNamed[0];
    // The vault's owner after the transaction, moved or not (a SetAuthority moves nothing).
    const owner =
      facts.ownersAfter?.find((o) => o.account === vault)?.owner ?? change?.owner ?? null;
    return {
      otherOwner: isOtherOwner(vaultsOwner, owner) ? owner : null,
      // Null only when the transaction does not show the owner: unknown, not the authority's.
      ownerAfter: owner,
      delegate: delegateGiven(profile, vault, owner, facts),
      foreign:
        foreign.length === 0
          ? null
          : foreign.map((c) => ({ mint: c.mint, programId: c.programId, deltaUnits: c.delta })),
      signature,
      slot: facts.slot,
      blockTime: facts.blockTime,
      succeeded: facts.succeeded,
      pre: change ? change.pre : null,
      post: change ? change.post : null,
      delta: change ? change.delta : 0n,
      memo: facts.memos.length > 0 ? facts.memos.join("\n") : null,
      memoKind: named?.kind ?? null,
      memoJobId: named?.jobId ?? null,
      memoJobs: severalMemoJobs(allNamed),
      opened:
        facts.openedTokenAccounts === undefined ? null : facts.openedTokenAccounts.includes(vault),
      // Credits paid out beyond the net debit; another mint's tokens are no credits.
      hiddenDebit: hiddenDebitOf(vault, change ? change.delta : 0n, facts, profile),
      // Money in that escrow did not pay: no job's return, whatever memo it carries.
      depositIn: depositInOf(vault, change ? change.delta : 0n, facts, profile, escrow),
    };
  }

  /**
   * Facts of a stored transaction, or null when its raw answer no longer reads: one without
   * token balances, stored before such an answer was unreadable, threw here at every round and
   * stopped the vault's reading for good. Its line is fetched again, as one never stored.
   */
  function storedFacts(row: {
    signature: string;
    facts: string;
    raw: string | null;
  }): TransactionFacts | null {
    try {
      const facts = factsFromJson(JSON.parse(row.facts));
      // Facts stored before the accounts a transaction created, the owners after it, an
      // Approve's source, or what a transfer or burn moved and in which mint were kept: the raw
      // answer tells, and whether the vault's oldest line is its creation, whose the vault is
      // after it, whether it was given a delegate, or paid out money its money in hid, rests
      // on it. So do the instructions a token Batch ran, kept as instructions of their own since,
      // and the accounts the token balances name (before or after, or before and not after):
      // without them a vault they left out reads as one they show unchanged.
      if (wholeFacts(facts) || row.raw === null) return facts;
    } catch (error) {
      if (row.raw === null) throw error;
    }
    return reparseStored(row.raw, row.signature);
  }

  /**
   * A succeeded transaction served without inner instructions that ran a program able to call
   * the token program: what moved inside that call (a payout of the vault's money beside a
   * top-up) is not in the facts, so its line cannot be read from them.
   */
  const innerHidden = (facts: TransactionFacts) =>
    facts.succeeded && innerInstructionsHidden(profile, facts);

  /**
   * Why a line cannot be read from these facts, else null: served without inner instructions
   * (`innerHidden`), the vault gaining more than the instructions served bring in
   * (`unshownCreditOf`), or, where the balances show no payout beyond the line's net debit,
   * balances anywhere in the transaction moving by no instruction served (`balancesUnshown`):
   * a lock made inside a call served as `[]` reads as a lock, but an Approve of the vault in the
   * same call is unseen. A payout found by the balances is read, as a finding, either way.
   */
  function unreadableWhy(vault: string, facts: TransactionFacts): string | null {
    // Another account's transaction listed as the vault's is no line of it (see `firstNotTheVaults`).
    if (!facts.accounts.includes(vault)) return "its transaction does not name the vault";
    if (innerHidden(facts)) return "its transaction was served without inner instructions";
    const change = vaultCreditChange(vault, facts, profile);
    const shown = shownCreditOf(vault, facts, profile);
    // An honest node names every token account of the transaction in its balances: one left
    // out moved by none of them, and money the instructions move in read as a payout no one made.
    const leftOut = facts.tokenBalanceAccounts?.includes(vault) === false;
    if (shown !== null && shown !== 0n && leftOut) {
      return `its token balances leave the vault out, while the instructions served move ${shown < 0n ? `${-shown} out of it` : `${shown} into it`}`;
    }
    // The token program closes an account only by a CloseAccount, and only once it holds no
    // money: balances naming the vault before and not after, with no CloseAccount of it served,
    // read as the vault's whole balance paid out, a theft the size of the vault and a gap.
    const closedUnshown =
      facts.succeeded &&
      facts.closedTokenAccounts?.includes(vault) === true &&
      !facts.tokenInstructions.some(
        (ix) => ix.kind === "closeAccount" && ix.accounts.includes(vault),
      );
    if (closedUnshown) {
      return "its token balances name the vault before the transaction and not after it, while no instruction served closes it";
    }
    const unshown = unshownCreditOf(vault, facts, profile);
    if (unshown !== null && change !== undefined && change.delta > 0n) {
      return `the vault's credit balance rose by ${unshown}, more than the instructions served bring in`;
    }
    if (unshown !== null && change === undefined) {
      return `its token balances show no change of the vault's credits, while the instructions served move ${unshown} out of it`;
    }
    if (unshown !== null) {
      return `the vault's credit balance fell by ${-change!.delta}, less than the instructions served take out of it (${-shown!} net)`;
    }
    if (hiddenDebitOf(vault, change?.delta ?? 0n, facts, profile) !== null) return null;
    if (!balancesUnshown(profile, facts)) return null;
    return "token balances in its transaction moved by no instruction served";
  }

  /**
   * A listed entry as no line of the vault's, when its transaction's own signature proves it
   * names no account of the vault's (`signedAccounts`): the line moves nothing and says why, so
   * the statement names it and a nightly run can finish. An entry stored unjudged (listed past a
   * run's window, or not served then) that a later read found not the vault's stayed listed,
   * unread, for good: every nightly run from then on exited 2. Null when not proven (a message
   * loading addresses from a lookup table, a signature that does not check): it stays unread.
   */
  function setAsideLine(
    vault: string,
    signature: string,
    facts: TransactionFacts,
    raw: unknown,
  ): LineRead | null {
    if (facts.accounts.includes(vault)) return null;
    const accounts = signedAccounts(raw, signature);
    if (accounts === null || accounts.includes(vault)) return null;
    return {
      signature,
      slot: facts.slot,
      blockTime: facts.blockTime,
      succeeded: facts.succeeded,
      pre: null,
      post: null,
      delta: 0n,
      memo: null,
      memoKind: null,
      memoJobId: null,
      setAside: `its transaction names ${accounts.length} accounts, signed by its fee payer ${accounts[0]}, none of them the vault: listed by a node as the vault's, it is not`,
    };
  }

  /** A token Batch as facts stored before its instructions were read name it. */
  const UNREAD_BATCH = "unknown:255";

  /** Facts that hold everything a line is read from (see `storedFacts`). */
  function wholeFacts(facts: TransactionFacts) {
    return (
      facts.openedTokenAccounts !== undefined &&
      facts.ownersAfter !== undefined &&
      facts.tokenBalanceAccounts !== undefined &&
      facts.closedTokenAccounts !== undefined &&
      facts.tokenInstructions.every(
        (ix) =>
          ix.kind !== UNREAD_BATCH &&
          (!APPROVE_KINDS.has(ix.kind) || ix.source !== undefined) &&
          (!INITIALIZE_ACCOUNT_KINDS.has(ix.kind) ||
            (ix.initialized !== undefined && ix.mint !== undefined)) &&
          (!MOVEMENT_KINDS.has(ix.kind) || ix.amount !== undefined) &&
          (ix.kind === "transfer" || ix.amount === undefined || ix.mint !== undefined),
      )
    );
  }

  /**
   * Whether the vault's oldest line created its account, for a line read before that was
   * kept: from the stored transaction, else fetched again. Without it the history before that
   * line counts as not read, so a statement reaching back there is not complete.
   */
  async function learnHistoryStart(vault: string) {
    const start = await ledger.historyStart(vault);
    if (!start?.read || start.opened !== null) return;
    const row = await ledger.storedTransaction(start.signature);
    let facts: TransactionFacts | null = null;
    if (row) facts = storedFacts(row);
    if (facts?.openedTokenAccounts === undefined) {
      facts = (await rpc.getTransaction(start.signature))?.facts ?? null;
    }
    // Not served: asked again at the next round (an answer without token balances, unreadable,
    // throws: asked again too). Stored without them (a failed transaction, facts read before
    // such answers were refused): it cannot show the vault's creation, now or later, and is not
    // fetched again every round.
    if (facts === null) return;
    const opened = facts.openedTokenAccounts?.includes(vault) ?? false;
    await ledger.setOpened(vault, start.signature, opened);
  }

  /** Reads every listed line's transaction: from the store when fetched already, else RPC. */
  /**
   * Whether a lock of the vault up to `untilMs` is still out, its release not read (reviewed
   * first: a return read since the last review releases it).
   */
  async function lockOut(vault: string, untilMs: number) {
    await ledger.review(vault, now());
    // Block times are whole seconds: the locks of the seconds before `untilMs`.
    const toSec = Math.ceil(untilMs / 1000);
    return (await ledger.overdueLocks(vault, 0, toSec, 0, Number.POSITIVE_INFINITY)).length > 0;
  }

  /**
   * Where the profile names no escrow (neither its vault nor its authority, as the mainnet
   * profile), escrow is known by what the chain shows: the accounts the vault's locks of a job
   * (read before, or in this part) credited. Gives, for a transaction, those of the jobs its
   * memos name; without them all money in under a job's memo was read as escrow's, and a
   * wallet's top-up under a settle memo as that job's return, its lock released. Empty where
   * the profile names escrow (the profile decides) or no lock of those jobs is read.
   */
  async function escrowLearned(
    vault: string,
    factsOf: ReadonlyMap<string, TransactionFacts>,
  ): Promise<(facts: TransactionFacts) => ReadonlySet<string>> {
    const none = new Set<string>();
    if (profile.escrowVault !== null || profile.escrowAuthority !== null) return () => none;
    const jobsOf = (facts: TransactionFacts) => parseJobMemos(profile, facts.memos);
    const named = new Set([...factsOf.values()].flatMap((f) => jobsOf(f).map((m) => m.jobId)));
    if (named.size === 0) return () => none;
    const locks = await ledger.lockLinesOf(vault, [...named]);
    const stored = await ledger.storedTransactions(
      locks.map((l) => l.signature).filter((s) => !factsOf.has(s)),
    );
    const lockFacts = (signature: string) => {
      const row = stored.get(signature);
      return factsOf.get(signature) ?? (row ? storedFacts(row) : null);
    };
    const byJob = new Map<string, Set<string>>();
    const learn = (jobId: string, facts: TransactionFacts | null) => {
      if (!facts?.succeeded) return;
      const paid = facts.tokenChanges.some(
        (c) => c.account === vault && c.mint === profile.usdcMint && c.delta < 0n,
      );
      if (!paid) return;
      const accounts = byJob.get(jobId) ?? new Set<string>();
      for (const c of facts.tokenChanges) {
        if (c.account !== vault && c.mint === profile.usdcMint && c.delta > 0n)
          accounts.add(c.account);
      }
      byJob.set(jobId, accounts);
    };
    for (const l of locks) learn(l.jobId, lockFacts(l.signature));
    // A lock read in this part, with the return it goes with, is in no line yet.
    for (const facts of factsOf.values()) {
      for (const m of jobsOf(facts)) if (m.kind === "escrow") learn(m.jobId, facts);
    }
    return (facts) => {
      const accounts = new Set<string>();
      for (const m of jobsOf(facts)) for (const a of byJob.get(m.jobId) ?? []) accounts.add(a);
      return accounts;
    };
  }

  async function readListed(
    vault: string,
    signal?: AbortSignal,
    readUntil?: number,
    goOn?: () => Promise<boolean>,
  ) {
    const signatures = await ledger.listedSignatures(
      vault,
      // Block times are whole seconds: those of the seconds before `readUntil`.
      ...(readUntil === undefined ? [] : [Math.ceil(readUntil / 1000) - 1]),
    );
    let fetched = 0;
    let shared = 0;
    let pending = 0;
    /** The first line left unread for an amount the store cannot hold, and how many were. */
    let unstorable = null as { signature: string; units: bigint; lines: number } | null;
    /** The first line whose transaction was served without its inner instructions. */
    let hidden = null as { signature: string; lines: number; why: string } | null;
    let waiting = null as LinesRead["waiting"];
    for (let i = 0; i < signatures.length; i += options.fetchConcurrency) {
      signal?.throwIfAborted();
      if (goOn && !(await goOn())) break;
      const part = signatures.slice(i, i + options.fetchConcurrency);
      const factsOf = new Map<string, TransactionFacts>();
      const toFetch: string[] = [];
      // One read for the part: a round trip per line was a fifth of a PostgreSQL ledger phase.
      const storedRows = await ledger.storedTransactions(part);
      for (const signature of part) {
        const row = storedRows.get(signature);
        const facts = row ? storedFacts(row) : null;
        // Facts stored without what each transfer moved, and no raw answer to read it from:
        // fetched again, or a payout its money in hid would go unseen.
        // Facts a node served without inner instructions, where a program that can call the
        // token program ran: a payout made inside that call is unseen. Fetched again.
        // So are facts showing the vault gaining more than their instructions bring in.
        if (
          facts &&
          unreadableWhy(vault, facts) === null &&
          (row!.raw !== null || !facts.succeeded || wholeFacts(facts))
        ) {
          factsOf.set(signature, facts);
          if (fetchedToJudge.delete(signature)) fetched++;
          else shared++;
        } else toFetch.push(signature);
      }
      const results = await Promise.allSettled(toFetch.map((s) => rpc.getTransaction(s)));
      const stored: FetchedTransaction[] = [];
      const asideOf = new Map<string, LineRead>();
      results.forEach((result, j) => {
        const signature = toFetch[j]!;
        if (result.status === "rejected" || result.value === null) {
          pending++;
          return;
        }
        const { facts, raw } = result.value;
        // Not stored, nor its line read: it stays listed (the statement is not complete while
        // it is) and is fetched again at the next round, from whichever endpoint answers then.
        // So is one whose served instructions do not hold what its balances moved.
        const why = unreadableWhy(vault, facts);
        const aside = why === null ? null : setAsideLine(vault, signature, facts, raw);
        if (aside !== null) {
          log.warn(
            { vault, signature, err: aside.setAside },
            "ledger: a listed entry is not the vault's; set aside",
          );
          stored.push(fetchedRow(signature, facts, raw));
          asideOf.set(signature, aside);
          fetched++;
          return;
        }
        if (why !== null) {
          hidden ??= { signature, lines: 0, why };
          hidden.lines++;
          pending++;
          return;
        }
        stored.push(fetchedRow(signature, facts, raw));
        factsOf.set(signature, facts);
        fetched++;
      });
      const escrowOf = await escrowLearned(vault, factsOf);
      // Lines in their order (oldest first), so a return finds the lock read just before it.
      const reads = part.flatMap((signature) => {
        const aside = asideOf.get(signature);
        if (aside) return [aside];
        const facts = factsOf.get(signature);
        if (!facts) return [];
        const line = lineOf(vault, signature, facts, escrowOf(facts));
        // A balance or movement the store cannot hold (a mint whose authority minted past
        // 2^63, say) would fail this whole part's write, and every sync after it would stop
        // at the same place. The line stays listed, unread: the statement is not complete
        // while it is, and the vault's last error names it. So is what left beyond the net
        // debit: money sent out and back twice within one transaction sums past 2^63 even
        // when the balance never does.
        const amounts = [line.pre, line.post, line.delta, line.hiddenDebit ?? null].filter(
          (u) => u !== null,
        );
        const beyond = amounts.find((u) => !isStorableUnits(u));
        if (beyond !== undefined) {
          unstorable ??= { signature, units: beyond, lines: 0 };
          unstorable.lines++;
          pending++;
          return [];
        }
        return [line];
      });
      // A line kept with a job whose row another session holds stays listed, the rest read:
      // read again at the next round, kept with the job once its row is free.
      const held = await ledger.recordReads(vault, reads, stored, now());
      if (held.length > 0) {
        waiting ??= { ...held[0]!, lines: 0 };
        waiting.lines += held.length;
        pending += held.length;
      }
      const failure = results.find((r) => r.status === "rejected");
      if (failure) throw (failure as PromiseRejectedResult).reason;
    }
    return { fetched, shared, pending, unstorable, hidden, waiting };
  }

  /** Lines a gap's listing again (`heal`) inserted; 0 when it failed (the gap stays). */
  async function listedAgain(vault: string, heal: () => Promise<number>, opts: SyncOptions) {
    try {
      return await heal();
    } catch (error) {
      // Listed again at the next round; the gap stays meanwhile.
      if (opts.signal?.aborted || isBusyError(error)) throw error;
      log.warn({ vault, err: String(error) }, "ledger: a gap's signatures not listed again");
      return 0;
    }
  }

  /**
   * Reads the listed lines' transactions (see `SyncOptions`), then writes what the lines are:
   * kinds a late receipt changed, locks released, credits headers and gaps, so a statement
   * reads them instead of working them out line by line.
   */
  async function readAndReview(vault: string, opts: SyncOptions) {
    const read = await readListed(vault, opts.signal, opts.spansUntil ?? opts.readUntil);
    if (opts.readUntil !== undefined && opts.releasesUntil !== undefined) {
      const until = opts.readUntil;
      const releases = await readListed(vault, opts.signal, opts.releasesUntil, () =>
        lockOut(vault, until),
      );
      addRead(read, releases);
    }
    try {
      await learnHistoryStart(vault);
    } catch (error) {
      // Asked again at the next round; meanwhile the history's start counts as not read.
      log.warn({ vault, err: String(error) }, "ledger: the oldest line's transaction not read");
    }
    await ledger.review(vault, now());
    return read;
  }

  async function syncVault(vault: string, opts: SyncOptions = {}) {
    // The balance is read first: every transaction up to its slot is finalized by then, so the
    // listing after it holds them all. It is kept only when the listing found nothing newer,
    // so the ledger up to that slot and the balance at it can be compared line for line.
    let balance: CreditBalance | null = null;
    await readVaultsOwner();
    try {
      balance = await creditBalanceOf(rpc, profile, vault);
    } catch (error) {
      log.warn({ vault, err: String(error) }, "ledger: balance not read");
    }
    fetchedToJudge.clear();
    // A vault's first listing is all it holds: listed again from its next sync on.
    const heldBefore = (await ledger.cursor(vault, now())).newestSignature !== null;
    const {
      pages,
      listed: listedNew,
      noBlockTime,
      heldBack,
      chainFinal,
    } = await listNew(vault, opts.signal, opts.readUntil);
    const known = new Set(
      (await ledger.storedGaps(vault, GAPS_IN_TURN)).map((g) => g.beforeSignature),
    );
    let listed = listedNew + (await listedAgain(vault, () => healGaps(vault, opts.signal), opts));
    if (heldBefore) listed += await listedAgain(vault, () => relistHeld(vault, opts.signal), opts);
    const read = await readAndReview(vault, opts);
    // Gaps this sync's read found are listed again now, not by the next round: a nightly run
    // judges the window right after this sync.
    const healed = await listedAgain(vault, () => healNewGaps(vault, known, opts.signal), opts);
    if (healed > 0) {
      listed += healed;
      addRead(read, await readAndReview(vault, opts));
    }
    const { fetched, shared, pending, unstorable, hidden, waiting } = read;
    const newest = await ledger.newestListedSlot(vault);
    const problems: string[] = [];
    if (unstorable) {
      // Kept as the vault's last error: a statement whose period holds these lines says why.
      const more = unstorable.lines - 1;
      problems.push(
        `line ${unstorable.signature} not read: its amount ${unstorable.units} is beyond ${MAX_STORED_UNITS}, the most the store holds${more > 0 ? ` (and ${more} later line${more === 1 ? "" : "s"} like it)` : ""}`,
      );
    }
    if (hidden) {
      const more = hidden.lines - 1;
      problems.push(
        `line ${hidden.signature} not read: ${hidden.why}${more > 0 ? ` (and ${more} later line${more === 1 ? "" : "s"} like it)` : ""}`,
      );
    }
    if (waiting) {
      const more = waiting.lines - 1;
      problems.push(
        `line ${waiting.signature} not read: it is kept with job ${waiting.jobId}, whose row ${HELD_LOCKED}; read when the row is free${more > 0 ? ` (and ${more} later line${more === 1 ? "" : "s"} waiting for a held job row)` : ""}`,
      );
    }
    if (balance && !isStorableUnits(balance.amount)) {
      problems.push(`balance ${balance.amount} not kept: beyond ${MAX_STORED_UNITS}`);
    } else if (balance && heldBack === null && (newest === null || newest <= balance.slot)) {
      // Not with entries held back: the balance holds their movements, the lines do not.
      await ledger.setBalance(vault, balance, now());
    }
    if (balance?.delegate) {
      // No line may show it (an Approve inside a call served with `[]`): said each round.
      log.warn(
        {
          vault,
          delegate: balance.delegate.address,
          delegatedUnits: balance.delegate.amountUnits.toString(),
        },
        "ledger: the vault has a delegate that may spend its credits alone",
      );
    }
    // Judged only on a credit account: another mint there, or none, is a finding of its own.
    const otherOwner =
      balance?.owner !== undefined && vaultsOwner !== null && balance.owner !== vaultsOwner
        ? { owner: balance.owner }
        : null;
    if (otherOwner) {
      // No line may show it (a node leaving `owner` out of token balances): said each round.
      log.warn(
        { vault, owner: otherOwner.owner ?? "not named" },
        "ledger: the vault's owner is not the escrow authority; that owner may spend its credits alone",
      );
    }
    if (balance) {
      // Kept for the statement on every read, the balance kept or not: it said nothing of
      // either, and a finance user reading a vault handed to another saw no sign of it.
      await ledger.setControl(
        vault,
        { slot: balance.slot, otherOwner, delegate: balance.delegate ?? null },
        now(),
      );
    }
    if (problems.length > 0) {
      const message = problems.join("; ");
      await ledger.setError(vault, message, now());
      log.warn({ vault, err: message }, "ledger: lines left unread");
    }
    return {
      vault,
      pages,
      listed,
      fetched,
      shared,
      pending,
      noBlockTime,
      ...(noBlockTime !== null && chainFinal !== null ? { chainFinalThrough: chainFinal } : {}),
      ...(balance?.delegate ? { delegate: balance.delegate } : {}),
      ...(otherOwner ? { otherOwner } : {}),
    };
  }

  async function syncAll(
    opts: SyncOptions & { onVaultError?: (vault: string, message: string) => void } = {},
  ) {
    const results: VaultSyncResult[] = [];
    for (const vault of await knownVaults(ledger, deps.custody)) {
      try {
        results.push(
          await syncVault(vault, {
            ...(opts.signal ? { signal: opts.signal } : {}),
            ...(opts.readUntil === undefined ? {} : { readUntil: opts.readUntil }),
            ...(opts.releasesUntil === undefined ? {} : { releasesUntil: opts.releasesUntil }),
            ...(opts.spansUntil === undefined ? {} : { spansUntil: opts.spansUntil }),
          }),
        );
      } catch (error) {
        // The database away is not this vault's failure: marked so (or not, the mark failing
        // too) it would leave the vault unread for the run; the whole read is tried again.
        if (opts.signal?.aborted || isBusyError(error)) throw error;
        const message = error instanceof Error ? error.message : String(error);
        await ledger.setError(vault, message, now());
        log.warn({ vault, err: message }, "ledger sync failed; retried next round");
        opts.onVaultError?.(vault, message);
      }
    }
    return results;
  }

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | null = null;
  let abort: AbortController | null = null;
  let stopped = true;

  const escrow = createEscrowScanner({
    store: deps.store,
    rpc,
    profile,
    log,
    ...(deps.now ? { now: deps.now } : {}),
  });
  /**
   * One round of the escrow scan; its trouble is logged and the next round tries again. False
   * when it failed.
   */
  const scanEscrow = async (signal?: AbortSignal): Promise<boolean> => {
    if (signal?.aborted) return true;
    const started = performance.now();
    try {
      const scanned = await escrow.scanNew(signal);
      if (scanned.unread !== null) log.warn({ vault: scanned.vault }, scanned.unread);
      if (scanned.covered !== null) await deps.escrowCover?.covered(scanned.covered);
      const figures = {
        vault: scanned.vault,
        listed: scanned.listed,
        fetched: scanned.fetched,
        kept: scanned.kept.length,
        more: scanned.more,
        ms: Math.round(performance.now() - started),
      };
      if (scanned.listed > 0 || scanned.fetched > 0) log.debug(figures, "escrow scan round");
      if (scanned.more) log.info(figures, "escrow scan goes on next round: a long history");
      return true;
    } catch (error) {
      if (signal?.aborted) return true;
      if (isBusyError(error)) {
        log.warn({ err: String(error) }, "escrow scan found the database busy");
      } else log.warn({ err: String(error) }, "escrow scan failed; retried next round");
      return false;
    }
  };

  // Its own loop beside the vaults' rounds: a first read of long vault histories (minutes of
  // getTransaction) held every scan back behind it, and second payouts stayed verified meanwhile.
  let escrowTimer: NodeJS.Timeout | undefined;
  let escrowRunning: Promise<unknown> | null = null;
  let escrowAbort: AbortController | null = null;
  // While a verdict waits for the scan to read past its job, it runs every
  // `escrowCoverPaceMs` (one getSlot and one listing of what is new), else every `intervalMs`.
  // A failed scan goes back to `intervalMs`: an outage is not asked about every second.
  let escrowLastAt = Number.NEGATIVE_INFINITY;
  let escrowFailed = false;
  const escrowTick = () => {
    if (stopped || profile.escrowVault === null) return;
    const pace = Math.min(options.escrowCoverPaceMs, options.intervalMs);
    const soon = !escrowFailed && (deps.escrowCover?.wanted() ?? false);
    if (performance.now() - escrowLastAt < options.intervalMs && !soon) {
      escrowTimer = setTimeout(escrowTick, pace);
      return;
    }
    escrowLastAt = performance.now();
    escrowAbort = new AbortController();
    escrowRunning = scanEscrow(escrowAbort.signal)
      .then((ok) => {
        escrowFailed = !ok;
      })
      .finally(() => {
        escrowRunning = null;
        if (!stopped) {
          escrowTimer = setTimeout(escrowTick, deps.escrowCover ? pace : options.intervalMs);
        }
      });
  };

  const tick = () => {
    if (stopped) return;
    abort = new AbortController();
    running = syncAll({ signal: abort.signal })
      .catch((error) => {
        if (abort?.signal.aborted) return;
        // A write lock another process held is retried at the next round: a warning only.
        if (isBusyError(error))
          log.warn({ err: String(error) }, "ledger round found the database busy");
        else log.error({ err: String(error) }, "ledger round failed");
      })
      .then((results) => {
        try {
          if (results) deps.afterRound?.(results);
        } catch (error) {
          log.error({ err: String(error) }, "ledger: after-round work failed");
        }
      })
      .finally(() => {
        running = null;
        if (!stopped) timer = setTimeout(tick, options.intervalMs);
      });
  };

  return {
    vaults: () => knownVaults(ledger, deps.custody),
    syncVault,
    syncAll,
    escrow,
    start() {
      if (!stopped) return;
      stopped = false;
      tick();
      escrowTick();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(escrowTimer);
      abort?.abort();
      escrowAbort?.abort();
      await Promise.all([running, escrowRunning]);
    },
  };
}
