/**
 * Facts derived from one `getTransaction` result, whatever its encoding or version. This is the
 * only shape the verifier reads: it never looks at raw RPC responses. Amounts are bigint.
 */

/** A token account's balance change within one transaction. */
export interface TokenChange {
  /** The token account (base58). */
  account: string;
  /** Owner of the token account, when the node reported it. */
  owner: string | null;
  mint: string;
  /** SPL Token or Token-2022 program id, when the node reported it. */
  programId: string | null;
  decimals: number;
  pre: bigint;
  post: bigint;
  delta: bigint;
}

/** A lamport balance change of one account. */
export interface SolChange {
  account: string;
  pre: bigint;
  post: bigint;
  delta: bigint;
}

/**
 * One instruction of the SPL Token or Token-2022 program, top-level or inner. `kind` is the
 * instruction's name as jsonParsed spells it (`transferChecked`, `setAuthority`, ...), or
 * `unknown:<n>` for a discriminator this reader does not name.
 */
export interface TokenInstruction {
  programId: string;
  kind: string;
  /** The accounts the instruction names, each once, sorted (encodings list them differently). */
  accounts: string[];
  /**
   * The account an Approve or ApproveChecked gives a delegate (its first account; `source` in
   * jsonParsed), or the account money leaves by a transfer (`transfer`, `transferChecked`,
   * Token-2022's `transferCheckedWithFee`) or a burn (`burn`, `burnChecked`: `account` in
   * jsonParsed). `accounts` is sorted and loses roles: a vault named there may be the delegate
   * of someone else's account, or a transfer's destination. Absent for other kinds, and in
   * facts stored before it was kept (for a transfer or burn, before `amount` was kept).
   */
  source?: string;
  /**
   * The account an InitializeAccount, InitializeAccount2 or InitializeAccount3 makes a token
   * account (its first account; `account` in jsonParsed): InitializeAccount also names the new
   * account's owner among `accounts`, which is no reopening of the owner. Absent for other
   * kinds, and in facts stored before it was kept.
   */
  initialized?: string;
  /** The account money enters by a transfer or a mint (`mintTo`, `mintToChecked`). */
  destination?: string;
  /**
   * The account that signs a transfer or burn for its source: the owner, a delegate, or a
   * multisig account (its position among the instruction's accounts; `authority` or
   * `multisigAuthority` in jsonParsed). The token program reads nothing of the accounts after
   * it but a multisig's signers, so any other key may stand there, signing nothing: only this
   * position says who spent. Absent for other kinds, and in facts stored before it was kept.
   */
  authority?: string;
  /**
   * The mint a transfer (but the plain Transfer, which names none), burn or mint moves, or an
   * InitializeAccount makes its account hold (its position among the instruction's accounts;
   * `mint` in jsonParsed). The token program reads
   * no account past those an instruction takes, so any other mint may be named after them:
   * only this position says whose tokens moved. Absent for other kinds, and in facts stored
   * before it was kept.
   */
  mint?: string;
  /**
   * Base units a transfer, burn or mint moves (for a transfer with a fee, what leaves the
   * source). Absent for other kinds, and in facts stored before it was kept.
   */
  amount?: bigint;
  /**
   * Base units an Approve or ApproveChecked lets its delegate spend. Absent for other kinds,
   * and in facts stored before it was kept.
   */
  approved?: bigint;
}

export interface TransactionFacts {
  signature: string;
  slot: number;
  /** Seconds since the epoch; null when the node did not report it. */
  blockTime: number | null;
  /** True when `meta.err` is null: a failed transaction pays its fee and moves no tokens. */
  succeeded: boolean;
  err: unknown;
  /** Fee in lamports. */
  fee: bigint;
  feePayer: string;
  version: "legacy" | 0;
  /** Full account list: static keys, then loaded writable, then loaded readonly. */
  accounts: string[];
  /** Only changes with a non-zero delta. */
  tokenChanges: TokenChange[];
  /** Only changes with a non-zero delta. */
  solChanges: SolChange[];
  /** Texts of SPL Memo instructions (top-level and inner), in order. */
  memos: string[];
  /** Program ids invoked, top-level and inner, each once, in first-seen order. */
  programs: string[];
  /** Token-program instructions, top-level and inner, in execution order. */
  tokenInstructions: TokenInstruction[];
  /**
   * False when the node sent no `meta.innerInstructions`: instructions run by other programs
   * (CPI) are then unseen, and only balance changes speak for them.
   */
  innerInstructionsKnown: boolean;
  /**
   * Token accounts the transaction created: in `meta.postTokenBalances`, absent from
   * `meta.preTokenBalances` (an absent pre-balance is no account, not a balance of 0). Undefined
   * in facts stored before it was kept: not known.
   */
  openedTokenAccounts?: string[];
  /**
   * The owner of each token account after the transaction (`meta.postTokenBalances`), whether
   * its balance moved or not, in account order; accounts the node named no owner for are left
   * out. A SetAuthority moves no balance, and only this shows a credit vault's new owner.
   * Undefined when the node sent no token balances, and in facts stored before it was kept.
   */
  ownersAfter?: { account: string; owner: string }[];
  /**
   * The accounts `meta.preTokenBalances` or `meta.postTokenBalances` name, in any mint, moved
   * or not, in account order. An honest node names every token account of a transaction that
   * names a token program; `tokenChanges` keeps only those whose balance moved, so this alone
   * tells an account the balances leave out from one they show unchanged. Undefined when the
   * node sent no token balances, and in facts stored before it was kept.
   */
  tokenBalanceAccounts?: string[];
  /**
   * Token accounts in `meta.preTokenBalances` and absent from `meta.postTokenBalances`: closed
   * by the transaction. Undefined when the node sent no token balances, and in facts stored
   * before it was kept.
   */
  closedTokenAccounts?: string[];
}
