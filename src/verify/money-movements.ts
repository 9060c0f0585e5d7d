import { INITIALIZE_ACCOUNT_KINDS, MEMO_PROGRAM_IDS } from "../chain/parse-transaction.js";
import type {
  TokenChange,
  TokenInstruction,
  TransactionFacts,
} from "../chain/transaction-facts.js";
import type { Profile } from "./profiles.js";

/**
 * How a job's transactions moved money, read from token balance changes (so transfers made
 * inside other programs count too). Every change of a transaction lands in exactly one field
 * below, so a check that judges one field never judges a change another check already blamed:
 * one cause shows as one failing check.
 */

/** A credit to or debit from one token account, for evidence. */
export interface Movement {
  account: string;
  owner: string | null;
  /** Decimal string of base units; positive for a credit, negative for a debit. */
  amount: string;
}

const sum = (values: Iterable<bigint>) => {
  let total = 0n;
  for (const v of values) total += v;
  return total;
};

const movement = (c: TokenChange): Movement => ({
  account: c.account,
  owner: c.owner,
  amount: c.delta.toString(),
});

/** True when the transaction moved any credits (the profile's mint) between accounts. */
export function movesCredits(profile: Profile, facts: TransactionFacts): boolean {
  return facts.succeeded && facts.tokenChanges.some((c) => isCredit(profile, c));
}

/** Is this change in the profile's credit mint, under one of its token programs? */
export function isCredit(
  profile: Pick<Profile, "usdcMint" | "tokenPrograms">,
  c: TokenChange,
): boolean {
  return (
    c.mint === profile.usdcMint &&
    (c.programId === null || profile.tokenPrograms.includes(c.programId))
  );
}

/** Changes in any other mint or token program: no role of a job explains them. */
export function foreignChanges(profile: Profile, facts: TransactionFacts): Movement[] {
  return facts.tokenChanges
    .filter((c) => !isCredit(profile, c))
    .map((c) => ({ ...movement(c), mint: c.mint }));
}

/** The escrow lock. */
export interface LockReading {
  /** What arrived in the escrow account. */
  lock: bigint;
  /** The escrow vault the profile pins, or else the one account credited by the lock. */
  escrowAccount: string | null;
  /** Everything debited, from whatever account. */
  taken: bigint;
  /** Accounts debited (credit mint), with amounts. */
  sources: Movement[];
  /** Credits to accounts other than the escrow account. */
  elsewhere: Movement[];
  /** Owner of the escrow account after the lock, when the lock credited it and it is known. */
  escrowOwner: string | null;
}

export function readLock(profile: Profile, facts: TransactionFacts): LockReading {
  const changes = facts.tokenChanges.filter((c) => isCredit(profile, c));
  const credits = changes.filter((c) => c.delta > 0n);
  const debits = changes.filter((c) => c.delta < 0n);
  // Without a pinned escrow vault (per-job escrow accounts, e.g. PDAs), the lock is the one
  // account credited; a lock that pays several accounts has no escrow account to follow.
  const escrowAccount = profile.escrowVault ?? (credits.length === 1 ? credits[0]!.account : null);
  const lock = sum(credits.filter((c) => c.account === escrowAccount).map((c) => c.delta));
  return {
    lock,
    escrowAccount,
    taken: -sum(debits.map((c) => c.delta)),
    sources: debits.map(movement),
    elsewhere: credits.filter((c) => c.account !== escrowAccount).map(movement),
    escrowOwner: credits.find((c) => c.account === escrowAccount)?.owner ?? null,
  };
}

/** Who may be paid by a settlement or refund, besides nobody. */
export interface Payees {
  /** The account the lock was taken from: remainders and refunds go back there. */
  creditVault: string;
  /** The escrow account the lock went into: the only account allowed to pay out. */
  escrowAccount: string;
  /** The worker's wallet (owner of its token account); null for a refund. */
  worker: string | null;
  /** The treasury's wallet or token account; null while neither pinned nor learned. */
  treasury: string | null;
  /**
   * Owner of every credit vault (the escrow authority), when the profile knows it: money sent
   * to another account it owns is a remainder returned to the wrong customer's vault, and money
   * sent to the credit vault while another owns it is returned to nobody's credits.
   */
  vaultOwner: string | null;
  /**
   * Accounts besides the escrow account that the job's locks paid (a lock that missed escrow,
   * counted as escrowed), each with the amount counted as held there: what they pay back to
   * the credit vault, up to that amount, is the lock returning, not a top-up; more is money
   * that was never this job's. Only the job's amounts name them; the checks rest on a sound
   * lock, which has none.
   */
  heldElsewhere?: ReadonlyMap<string, bigint>;
}

/**
 * The worker a settlement may pay: none when the name given is the owner of the credit vaults
 * (the profile's escrow authority, or the owner of the vault the lock came from). No worker
 * owns customers' credits, and money sent to such an account is not a worker's pay.
 */
export function payableWorker(
  profile: Profile,
  worker: string | null,
  creditVaultOwner: string | null,
): string | null {
  if (worker === null) return null;
  return worker === profile.escrowAuthority || worker === creditVaultOwner ? null : worker;
}

/**
 * True when a token account's owner is known and is not the owner every credit vault has (the
 * escrow authority); false when either is unknown (a profile that names no escrow authority,
 * a node that reports no owner), as `escrow.source` judges the lock's source.
 */
export function isOtherOwner(vaultOwner: string | null, owner: string | null): boolean {
  return vaultOwner !== null && owner !== null && owner !== vaultOwner;
}

/** Money out of escrow at settlement or refund, sorted by recipient. */
export interface ReleaseReading {
  /** What left the escrow account. */
  outflow: bigint;
  worker: bigint;
  treasury: bigint;
  /** Returned to the credit vault the lock came from. */
  returned: bigint;
  /**
   * What the escrow account received (a lock made by a transaction named as a closing step):
   * money into escrow, neither a payout nor a return.
   */
  intoEscrow: bigint;
  /** What each held account (`heldElsewhere`) paid that may count as returned, at most its hold. */
  heldReturned: Map<string, bigint>;
  /**
   * Returned to other credit vaults (another customer's), or to the credit vault while another
   * than the escrow authority owns it: not charged, but not returned.
   */
  misdirected: Movement[];
  misdirectedTotal: bigint;
  /** Debits of accounts other than the escrow account (someone else's money). */
  foreignDebits: Movement[];
  /**
   * Credits to anyone else that the escrow paid for: other credits, less what foreign debits
   * funded (that side flow is `foreignDebits`' finding, not the release's).
   */
  unexplained: Movement[];
  unexplainedTotal: bigint;
  /** With the treasury unknown: the payees that could be it (at most one is). */
  treasuryCandidates: Movement[];
  /** Every credit, for evidence. */
  payees: Movement[];
}

export function readRelease(
  profile: Profile,
  facts: TransactionFacts,
  payees: Payees,
): ReleaseReading {
  const changes = facts.tokenChanges.filter((c) => isCredit(profile, c));
  const credits = changes.filter((c) => c.delta > 0n);
  const debits = changes.filter((c) => c.delta < 0n);
  const outflow = -sum(
    debits.filter((c) => c.account === payees.escrowAccount).map((c) => c.delta),
  );
  const foreignDebits = debits.filter((c) => c.account !== payees.escrowAccount);
  let worker = 0n;
  let treasury = 0n;
  let returned = 0n;
  let intoEscrow = 0n;
  const others: TokenChange[] = [];
  const candidates: TokenChange[] = [];
  const misdirected: TokenChange[] = [];
  // Customers' vaults first: a worker named as their owner (the escrow authority) must not
  // turn money put back into a credit vault, this customer's or another's, into its pay.
  // The escrow account is the escrow authority's too: its credit is money locked, not a
  // remainder sent to another customer's vault.
  for (const c of credits) {
    if (c.account === payees.creditVault) {
      // Owned by anyone but the escrow authority after this transaction (its owner changed by
      // an earlier SetAuthority), the vault is that owner's to spend: money sent there is no
      // credit back to the customer, as a lock from it is no customer's credits.
      if (isOtherOwner(payees.vaultOwner, c.owner)) misdirected.push(c);
      else returned += c.delta;
    } else if (c.account === payees.escrowAccount) intoEscrow += c.delta;
    else if (payees.vaultOwner !== null && c.owner === payees.vaultOwner) misdirected.push(c);
    else if (payees.worker !== null && c.owner === payees.worker) worker += c.delta;
    else if (
      payees.treasury !== null &&
      (c.account === payees.treasury || c.owner === payees.treasury)
    )
      treasury += c.delta;
    else if (payees.treasury === null && payees.worker !== null) candidates.push(c);
    else others.push(c);
  }
  // With the treasury unknown, one payee besides worker and vault may be it; two cannot.
  if (candidates.length === 1) treasury += candidates[0]!.delta;
  else others.push(...candidates);
  // A return is the lock's money going back: a vault credit beyond what left escrow (and the
  // accounts holding the lock besides it) was paid by someone else (a top-up named as the
  // refund), and returns nothing of the lock.
  // A held account counts only up to what the job's locks left there: what it pays beyond that
  // was put into it from elsewhere (another customer's vault), was never this job's, and is
  // taken to be what reached the vault first, so it is no part of the return.
  const heldReturned = new Map<string, bigint>();
  let heldBeyond = 0n;
  for (const c of foreignDebits) {
    if (!payees.heldElsewhere?.has(c.account)) continue;
    const held = payees.heldElsewhere.get(c.account) ?? 0n;
    const already = heldReturned.get(c.account) ?? 0n;
    const more = -c.delta < held - already ? -c.delta : held - already;
    if (more > 0n) heldReturned.set(c.account, already + more);
    heldBeyond += -c.delta - (more > 0n ? more : 0n);
  }
  const heldOutflow = sum([...heldReturned.values()]);
  if (returned > outflow + heldOutflow) returned = outflow + heldOutflow;
  returned = returned > heldBeyond ? returned - heldBeyond : 0n;
  const sideFlow = -sum(foreignDebits.map((c) => c.delta));
  const othersTotal = sum(others.map((c) => c.delta));
  const unexplainedTotal = othersTotal > sideFlow ? othersTotal - sideFlow : 0n;
  return {
    outflow,
    worker,
    treasury,
    returned,
    intoEscrow,
    heldReturned,
    misdirected: misdirected.map(movement),
    misdirectedTotal: sum(misdirected.map((c) => c.delta)),
    foreignDebits: foreignDebits.map(movement),
    unexplained: unexplainedTotal > 0n ? others.map(movement) : [],
    unexplainedTotal,
    treasuryCandidates: candidates.length === 1 ? candidates.map(movement) : [],
    payees: credits.map(movement),
  };
}

/** Token instructions a role needs; anything else on any account is a finding. */
const allowedTokenInstructions: ReadonlySet<string> = new Set([
  "transfer",
  "transferChecked",
  // Creating a recipient's token account (the associated-token program does this by CPI).
  "initializeAccount",
  "initializeAccount2",
  "initializeAccount3",
  "initializeImmutableOwner",
  "getAccountDataSize",
]);

/** Programs whose presence cannot hide a token instruction from a node that omits inner ones. */
const plainPrograms: ReadonlySet<string> = new Set([
  "ComputeBudget111111111111111111111111111111",
  ...MEMO_PROGRAM_IDS,
  "11111111111111111111111111111111",
]);

/** Token instructions a job's transaction must not carry, with the accounts they name. */
export function forbiddenTokenInstructions(
  facts: TransactionFacts,
): { kind: string; accounts: string[] }[] {
  return facts.tokenInstructions
    .filter((ix) => !allowedTokenInstructions.has(ix.kind))
    .map((ix) => ({ kind: ix.kind, accounts: ix.accounts }));
}

/**
 * True when instructions run by other programs could be unseen: the node omitted inner
 * instructions and the transaction invoked a program that is neither a token program nor one
 * that cannot call one.
 */
export function innerInstructionsHidden(profile: Profile, facts: TransactionFacts): boolean {
  if (facts.innerInstructionsKnown) return false;
  return facts.programs.some((p) => !plainPrograms.has(p) && !profile.tokenPrograms.includes(p));
}

/** Token instructions that move money: their facts keep source, destination and amount. */
export const MOVEMENT_KINDS: ReadonlySet<string> = new Set([
  "transfer",
  "transferChecked",
  "transferCheckedWithFee",
  "transferFeeExtension",
  "burn",
  "burnChecked",
  "mintTo",
  "mintToChecked",
]);

/** Wrapped SOL (SPL Token, Token-2022): its amount is its lamports above rent, synced by instruction. */
const NATIVE_MINTS: ReadonlySet<string> = new Set([
  "So11111111111111111111111111111111111111112",
  "9pan9bMn5HatX4EJdBwg9VgCa7Uz5HL8N1m5D3NdXejP",
]);

/**
 * Token-2022 instructions that move one account's balance by an amount the facts do not keep:
 * the account is their `source` or `destination` (see parse-transaction), and no other account
 * they name moves.
 */
const UNKEPT_MOVEMENT_KINDS: ReadonlySet<string> = new Set([
  "withdrawWithheldTokensFromMint",
  "withdrawWithheldTokensFromAccounts",
  "depositConfidentialTransfer",
  "withdrawConfidentialTransfer",
]);

/**
 * Whether `ix` moves the wrapped-SOL account `change` is of by an amount the facts do not keep:
 * a SyncNative of it or its InitializeAccount (any of the three) sets its amount to its
 * lamports above rent, sent by the System program (a wallet wrapping SOL: a transfer then
 * SyncNative, or an account created with them), whose transfers the facts do not keep; a
 * CloseAccount naming it pays its whole amount out.
 */
function movesWrappedSolUnkept(ix: TokenInstruction, change: TokenChange): boolean {
  if (!NATIVE_MINTS.has(change.mint)) return false;
  if (ix.kind === "syncNative" || ix.kind === "closeAccount") return true;
  return INITIALIZE_ACCOUNT_KINDS.has(ix.kind) && ix.initialized === change.account;
}

/**
 * Whether the wrapped-SOL account `change` is of is closed in the transaction: a CloseAccount
 * names it, or it is made a token account again though it held an amount before (closed by an
 * instruction not served: a node serving the call that closed it as `[]`). The close pays its
 * whole amount out by an amount no fact keeps, so what sets its amount again after it
 * (`movesWrappedSolUnkept`) explains no gain: read so, the operator closing a customer's vault of
 * 700,000 to itself and making the vault again at its address holding 1,000,000 of its own
 * lamports was a deposit of 300,000, the 700,000 gone unseen.
 */
export function wrappedSolClosed(change: TokenChange, facts: TransactionFacts): boolean {
  if (!NATIVE_MINTS.has(change.mint)) return false;
  return facts.tokenInstructions.some(
    (ix) =>
      (ix.kind === "closeAccount" && ix.accounts.includes(change.account)) ||
      (change.pre > 0n &&
        INITIALIZE_ACCOUNT_KINDS.has(ix.kind) &&
        ix.initialized === change.account),
  );
}

/**
 * Whether token instruction `ix` may have moved the balance of the account `change` is of: a
 * transfer, mint or burn naming it, or a Token-2022 instruction that moves it by an amount not
 * kept, of the account's token program (SPL Token moves no Token-2022 account's money, nor the
 * other way round). Every other instruction moves no balance, whatever accounts it names: the
 * token program reads no account past those an instruction takes, so whoever signs may name any
 * account after them (a new mint's InitializeMint2, or a metadata pointer's, followed by the
 * vault, the customer's wallet and the thief's account). Taken for one that may move money by
 * an amount not kept, such a mint left a top-up and a payout a node served no instruction of
 * unjudged. A kind not named (`unknown:N`) moves nothing by this either: a balance it did move
 * is then one no instruction shows, which is judged, never passed. A wrapped-SOL account moves
 * by an amount not kept where its lamports become its amount or it is closed
 * (`movesWrappedSolUnkept`).
 */
export function mayMove(ix: TokenInstruction, change: TokenChange): boolean {
  if (!ix.accounts.includes(change.account)) return false;
  if (change.programId !== null && ix.programId !== change.programId) return false;
  if (MOVEMENT_KINDS.has(ix.kind)) return true;
  if (movesWrappedSolUnkept(ix, change)) return true;
  return (
    UNKEPT_MOVEMENT_KINDS.has(ix.kind) &&
    (ix.source === change.account || ix.destination === change.account)
  );
}

/** The classic SPL Token program: its transfers withhold no fee. */
const SPL_TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";

/**
 * Whether a succeeded transaction's token balances moved in a way no token instruction served
 * shows: an account gaining more, or losing more, than the transfers, mints and burns naming it
 * move. The token program moves no money but by an instruction, top-level or inner, so an
 * honest answer always shows it; a node serving a call's inner instructions as `[]` does not,
 * and whatever else that call ran (an Approve giving the vault a delegate, which moves nothing)
 * is unseen too. Judged only where another program than the token program ran: a lying node
 * hides a call's inner instructions, not the message's own. An account a token instruction
 * names whose amount the facts do not keep (Token-2022's confidential transfers, a kind not
 * named) is not judged, nor is one that took money in by Token-2022 getting less than sent (a
 * transfer fee it withholds). Wrapped SOL moves by instructions too: a SyncNative, its
 * InitializeAccount or its CloseAccount move it by an amount not kept, and leave it unjudged.
 */
export function balancesUnshown(
  profile: Pick<Profile, "tokenPrograms">,
  facts: TransactionFacts,
): boolean {
  if (!facts.succeeded) return false;
  // Only a program's call hides instructions: the token program's own are in the message.
  const calls = facts.programs.some(
    (p) => !plainPrograms.has(p) && !profile.tokenPrograms.includes(p),
  );
  if (!calls) return false;
  return facts.tokenChanges.some((c) => {
    if (c.programId === null || !profile.tokenPrograms.includes(c.programId)) return false;
    let shown = 0n;
    let feeMayHold = false;
    for (const ix of facts.tokenInstructions) {
      if (!mayMove(ix, c)) continue;
      if (!MOVEMENT_KINDS.has(ix.kind) || ix.amount === undefined) return false;
      const from = ix.source === c.account;
      if (from === (ix.destination === c.account)) continue;
      shown += from ? -ix.amount : ix.amount;
      if (!from && ix.programId !== SPL_TOKEN_PROGRAM) feeMayHold = true;
    }
    return c.delta > shown || (c.delta < shown && !feeMayHold);
  });
}
