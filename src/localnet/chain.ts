import bs58 from "bs58";
import {
  Account,
  Clock,
  FailedTransactionMetadata,
  LiteSvm,
  type TransactionMetadata,
} from "litesvm/dist/internal.js";
import {
  ADDRESS_LOOKUP_TABLE_PROGRAM_ID,
  ASSOCIATED_TOKEN_PROGRAM_ID,
  MEMO_PROGRAM_ID,
  SYSTEM_PROGRAM_ID,
  TOKEN_2022_PROGRAM_ID,
  TOKEN_PROGRAM_ID,
} from "./keys.js";
import {
  decodeMintDecimals,
  decodeTokenAccount,
  encodeMint,
  encodeTokenAccount,
  MINT_SIZE,
  TOKEN_ACCOUNT_SIZE,
} from "./token-program.js";
import { type TransactionErrorJson, transactionErrorJson } from "./transaction-errors.js";
import {
  addressBytes,
  type DecodedTransaction,
  decodeTransaction,
  isStaticWritable,
} from "./wire.js";

/**
 * The local chain: one LiteSVM instance behind a wall-clock slot counter, plus everything a
 * node keeps that LiteSVM does not: each committed transaction with its slot, block time,
 * balances before and after, and its commitment as slots pass.
 *
 * Invariants: slots only move forward; a committed transaction is never changed or removed;
 * token balances in `tokenAccounts` equal the on-chain amounts after every transaction (every
 * transaction goes through `send`, which re-reads the token accounts it wrote).
 */

export type Commitment = "processed" | "confirmed" | "finalized";

export interface ChainOptions {
  /** Wall-clock milliseconds per slot. Default 400. */
  slotMs?: number;
  /** Slots after its own until a transaction counts as confirmed. Default 1. */
  confirmationSlots?: number;
  /** Slots after its own until a transaction counts as finalized. Default 32. */
  finalitySlots?: number;
  /** Slots a blockhash stays valid. Default 150. */
  blockhashValiditySlots?: number;
  /** Clock in epoch milliseconds, injectable for tests. Default Date.now. */
  now?: () => number;
}

export interface StoredTokenBalance {
  accountIndex: number;
  mint: string;
  owner: string;
  programId: string;
  amount: bigint;
  decimals: number;
}

export interface StoredInnerInstruction {
  index: number;
  instructions: { programIdIndex: number; accounts: number[]; data: string; stackHeight: number }[];
}

/**
 * A committed transaction with what a node reports about it. Kept compact (a benchmark holds
 * hundreds of thousands): the message is decoded again from `wire` when asked for, and
 * repeated strings (addresses, log lines) are shared.
 */
export interface StoredTransaction {
  signature: string;
  wire: Uint8Array;
  version: "legacy" | 0;
  slot: number;
  blockTime: number;
  fee: number;
  err: TransactionErrorJson | null;
  /** Static keys, then loaded writable, then loaded readonly. */
  accountKeys: string[];
  loadedAddresses: { writable: string[]; readonly: string[] };
  preBalances: number[];
  postBalances: number[];
  preTokenBalances: StoredTokenBalance[];
  postTokenBalances: StoredTokenBalance[];
  logMessages: string[];
  innerInstructions: StoredInnerInstruction[];
  computeUnitsConsumed: number;
}

export type SendOutcome =
  | { committed: true; signature: string; transaction: StoredTransaction }
  | { committed: false; signature: string; err: TransactionErrorJson; logs: string[] };

export interface SignatureStatus {
  slot: number;
  confirmations: number | null;
  err: TransactionErrorJson | null;
  confirmationStatus: Commitment;
}

/** A token account: `programId` is the token program that owns it, `space` its data length. */
interface TokenAccountKind {
  kind: "token";
  mint: string;
  owner: string;
  amount: bigint;
  /** The delegate an Approve gave the account and what it may still spend, else null. */
  delegate: { address: string; amount: bigint } | null;
  programId: string;
  space: number;
}

type AccountKind = TokenAccountKind | { kind: "other" } | { kind: "missing" };

const LAMPORTS_PER_SIGNATURE = 5000;
// Block height trails the slot on a real cluster because some slots are skipped.
const BLOCK_HEIGHT_LAG = 22_000_000;
// A node answers `getSignatureStatuses` from its status cache for this many recent slots.
const STATUS_CACHE_SLOTS = 300;

const TOKEN_PROGRAMS: ReadonlySet<string> = new Set([TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID]);

const knownPrograms = [
  SYSTEM_PROGRAM_ID,
  TOKEN_PROGRAM_ID,
  MEMO_PROGRAM_ID,
  ASSOCIATED_TOKEN_PROGRAM_ID,
  ADDRESS_LOOKUP_TABLE_PROGRAM_ID,
  "ComputeBudget111111111111111111111111111111",
  TOKEN_2022_PROGRAM_ID,
  "Sysvar1nstructions1111111111111111111111111",
  "SysvarC1ock11111111111111111111111111111111",
  "SysvarRent111111111111111111111111111111111",
];

/** Compare two commitments: true when `reached` is at least `wanted`. */
export function commitmentAtLeast(reached: Commitment, wanted: Commitment): boolean {
  const order: Commitment[] = ["processed", "confirmed", "finalized"];
  return order.indexOf(reached) >= order.indexOf(wanted);
}

export class LocalChain {
  readonly slotMs: number;
  readonly confirmationSlots: number;
  readonly finalitySlots: number;
  readonly blockhashValiditySlots: number;
  private readonly now: () => number;
  private readonly svm: LiteSvm;
  private readonly baseSlot: number;
  private readonly startMs: number;
  private syncedSlot: number;
  private readonly blockhashes = new Map<string, number>();
  private latestHash: string;
  private readonly transactions = new Map<string, StoredTransaction>();
  /** Signatures of committed transactions by every account they name, oldest first. */
  private readonly byAccount = new Map<string, string[]>();
  private readonly accounts = new Map<string, AccountKind>();
  private readonly mintDecimals = new Map<string, number>();
  private readonly lookupTables = new Map<string, string[]>();
  private readonly epochStart: bigint;
  private readonly strings = new Map<string, string>();

  constructor(options: ChainOptions = {}) {
    this.slotMs = options.slotMs ?? 400;
    this.confirmationSlots = options.confirmationSlots ?? 1;
    this.finalitySlots = options.finalitySlots ?? 32;
    this.blockhashValiditySlots = options.blockhashValiditySlots ?? 150;
    this.now = options.now ?? Date.now;
    this.svm = new LiteSvm();
    // History off: LiteSVM would keep every result natively; duplicates are caught here instead.
    this.svm.setTransactionHistory(0n);
    // Blockhash validity is checked here, against every blockhash of the last 150 slots, as a
    // node does; LiteSVM alone only accepts its single latest hash.
    this.svm.setBlockhashCheck(false);
    this.baseSlot = Number(this.svm.getClock().slot);
    this.startMs = this.now();
    this.epochStart = BigInt(Math.floor(this.startMs / 1000));
    this.syncedSlot = this.baseSlot - 1;
    this.latestHash = this.svm.latestBlockhash();
    for (const program of knownPrograms) this.accounts.set(program, { kind: "other" });
    this.sync();
  }

  /**
   * Deploys an SBF program (its ELF) at `programId`: a test's operator runs a program of its
   * own, one that writes its memo by a call say.
   */
  addProgram(programId: string, elf: Uint8Array): void {
    this.svm.addProgram(addressBytes(programId), elf);
    this.accounts.set(programId, { kind: "other" });
  }

  /** The slot that wall-clock time has reached. */
  currentSlot(): number {
    return this.sync();
  }

  /** Block height of a slot (defaults to the current slot). */
  blockHeight(slot = this.currentSlot()): number {
    return slot - BLOCK_HEIGHT_LAG;
  }

  /** Unix seconds of a slot's block, or null for a slot not produced yet or before genesis. */
  blockTime(slot: number): number | null {
    if (slot < this.baseSlot || slot > this.currentSlot()) return null;
    return Math.floor(this.slotStartMs(slot) / 1000);
  }

  /** First slot of this chain. */
  firstSlot(): number {
    return this.baseSlot;
  }

  /** The newest blockhash and the last block height at which it is still accepted. */
  latestBlockhash(): { blockhash: string; lastValidBlockHeight: number; slot: number } {
    const slot = this.currentSlot();
    const issued = this.blockhashes.get(this.latestHash) ?? slot;
    return {
      blockhash: this.latestHash,
      lastValidBlockHeight: this.blockHeight(issued) + this.blockhashValiditySlots,
      slot,
    };
  }

  /** Issues a fresh blockhash now, so a transaction identical to an earlier one gets a new id. */
  rotateBlockhash(): string {
    this.svm.expireBlockhash();
    this.latestHash = this.svm.latestBlockhash();
    this.blockhashes.set(this.latestHash, this.syncedSlot);
    return this.latestHash;
  }

  /** True when the blockhash was issued within the validity window. */
  isBlockhashValid(blockhash: string): boolean {
    const issued = this.blockhashes.get(blockhash);
    return issued !== undefined && this.currentSlot() - issued <= this.blockhashValiditySlots;
  }

  /** Lamports of an account (0 when it does not exist). */
  lamports(address: string): bigint {
    return this.svm.getBalance(addressBytes(address)) ?? 0n;
  }

  /** Amount of a token account known to the chain, or null when it is not one. */
  tokenAmount(address: string): bigint | null {
    const kind = this.classify(address);
    return kind.kind === "token" ? kind.amount : null;
  }

  /** Owner, mint, token program and data length of a token account, or null. */
  tokenAccount(address: string): Omit<TokenAccountKind, "kind"> | null {
    const kind = this.classify(address);
    return kind.kind === "token" ? kind : null;
  }

  /**
   * Any account's owner program, lamports and data, or null when none lives at the address.
   * Token accounts are answered from the cache; anything else is read each time (which leaks
   * its copy inside LiteSVM): asked only of the few accounts a ledger reads the balance of.
   */
  accountInfo(
    address: string,
    withData = false,
  ): { owner: string; lamports: bigint; data: Uint8Array; token: boolean } | null {
    const kind = this.classify(address);
    if (kind.kind === "missing") return null;
    if (kind.kind === "token" && !withData) {
      return {
        owner: kind.programId,
        lamports: this.lamports(address),
        data: new Uint8Array(0),
        token: true,
      };
    }
    const account = this.svm.getAccount(addressBytes(address));
    if (!account) return null;
    return {
      owner: bs58.encode(account.owner()),
      lamports: account.lamports(),
      data: account.data(),
      token: kind.kind === "token",
    };
  }

  /** Rent-exempt minimum for an account of `dataLength` bytes. */
  minimumBalanceForRentExemption(dataLength: number): bigint {
    return this.svm.minimumBalanceForRentExemption(BigInt(dataLength));
  }

  /** Genesis: a system account holding `lamports`. */
  setLamports(address: string, lamports: bigint): void {
    this.svm.setAccount(
      addressBytes(address),
      new Account(lamports, new Uint8Array(0), addressBytes(SYSTEM_PROGRAM_ID), false, 0n),
    );
    this.accounts.set(address, { kind: "other" });
  }

  /** Genesis: an SPL Token mint. */
  setMint(address: string, mintAuthority: string, supply: bigint, decimals: number): void {
    this.svm.setAccount(
      addressBytes(address),
      new Account(
        this.minimumBalanceForRentExemption(MINT_SIZE),
        encodeMint(mintAuthority, supply, decimals),
        addressBytes(TOKEN_PROGRAM_ID),
        false,
        0n,
      ),
    );
    this.mintDecimals.set(address, decimals);
    this.accounts.set(address, { kind: "other" });
  }

  /** Genesis: an SPL Token account of `mint` owned by `owner` holding `amount`. */
  setTokenAccount(address: string, mint: string, owner: string, amount: bigint): void {
    this.svm.setAccount(
      addressBytes(address),
      new Account(
        this.minimumBalanceForRentExemption(TOKEN_ACCOUNT_SIZE),
        encodeTokenAccount(mint, owner, amount),
        addressBytes(TOKEN_PROGRAM_ID),
        false,
        0n,
      ),
    );
    this.accounts.set(address, {
      kind: "token",
      mint,
      owner,
      amount,
      delegate: null,
      programId: TOKEN_PROGRAM_ID,
      space: TOKEN_ACCOUNT_SIZE,
    });
  }

  /** Genesis: an active address lookup table holding `addresses`, owned by `authority`. */
  setLookupTable(address: string, authority: string, addresses: string[]): void {
    // AddressLookupTable layout: u32 type (1), u64 deactivation slot (max = active), u64 last
    // extended slot, u8 start index, Option<Pubkey> authority, u16 padding; then the addresses.
    const meta = 56;
    const data = new Uint8Array(meta + 32 * addresses.length);
    const view = new DataView(data.buffer);
    view.setUint32(0, 1, true);
    view.setBigUint64(4, 0xffff_ffff_ffff_ffffn, true);
    view.setBigUint64(12, 0n, true);
    data[20] = 0;
    data[21] = 1;
    data.set(addressBytes(authority), 22);
    addresses.forEach((a, i) => {
      data.set(addressBytes(a), meta + 32 * i);
    });
    this.svm.setAccount(
      addressBytes(address),
      new Account(
        this.minimumBalanceForRentExemption(data.length),
        data,
        addressBytes(ADDRESS_LOOKUP_TABLE_PROGRAM_ID),
        false,
        0n,
      ),
    );
    this.lookupTables.set(address, [...addresses]);
    this.accounts.set(address, { kind: "other" });
  }

  /** Entries of a lookup table, or null when unknown. */
  lookupTable(address: string): string[] | null {
    const known = this.lookupTables.get(address);
    if (known) return known;
    const account = this.svm.getAccount(addressBytes(address));
    if (!account || bs58.encode(account.owner()) !== ADDRESS_LOOKUP_TABLE_PROGRAM_ID) return null;
    const data = account.data();
    const entries: string[] = [];
    for (let offset = 56; offset + 32 <= data.length; offset += 32) {
      entries.push(bs58.encode(data.subarray(offset, offset + 32)));
    }
    return entries;
  }

  /** The full account list of a decoded transaction, resolving lookup tables. */
  resolveAccounts(decoded: DecodedTransaction): {
    keys: string[];
    loaded: { writable: string[]; readonly: string[] };
  } | null {
    const writable: string[] = [];
    const readonly: string[] = [];
    for (const lookup of decoded.addressTableLookups) {
      const table = this.lookupTable(lookup.accountKey);
      if (!table) return null;
      for (const i of lookup.writableIndexes) {
        const a = table[i];
        if (a === undefined) return null;
        writable.push(a);
      }
      for (const i of lookup.readonlyIndexes) {
        const a = table[i];
        if (a === undefined) return null;
        readonly.push(a);
      }
    }
    return {
      keys: [...decoded.staticAccountKeys, ...writable, ...readonly],
      loaded: { writable, readonly },
    };
  }

  /** A committed transaction by signature. */
  transaction(signature: string): StoredTransaction | undefined {
    return this.transactions.get(signature);
  }

  /**
   * Signatures of transactions naming `address`, newest first, as `getSignaturesForAddress`
   * lists them: only those at `commitment` or above, strictly older than `before` and strictly
   * newer than `until` when given, at most `limit`. A `before` or `until` this chain never
   * committed for the address lists from the newest (before) or to the oldest (until).
   */
  signaturesForAddress(
    address: string,
    options: { before?: string; until?: string; limit: number; commitment: Commitment },
  ): StoredTransaction[] {
    const list = this.byAccount.get(address) ?? [];
    const out: StoredTransaction[] = [];
    let i = list.length - 1;
    if (options.before !== undefined) {
      const at = list.lastIndexOf(options.before);
      if (at >= 0) i = at - 1;
    }
    for (; i >= 0 && out.length < options.limit; i--) {
      const signature = list[i]!;
      if (signature === options.until) break;
      const tx = this.transactions.get(signature)!;
      if (!commitmentAtLeast(this.commitmentOf(tx), options.commitment)) continue;
      out.push(tx);
    }
    return out;
  }

  /**
   * A token account's balance as of the newest slot at `commitment`: the current amount less
   * what transactions not yet at that commitment moved, as a node answers from its bank at that
   * commitment. Null when the address is not a token account.
   */
  tokenAmountAt(address: string, commitment: Commitment): bigint | null {
    const account = this.tokenAccount(address);
    if (!account) return null;
    let amount = account.amount;
    const list = this.byAccount.get(address) ?? [];
    for (let i = list.length - 1; i >= 0; i--) {
      const tx = this.transactions.get(list[i]!)!;
      if (commitmentAtLeast(this.commitmentOf(tx), commitment)) break;
      const index = tx.accountKeys.indexOf(address);
      const pre = tx.preTokenBalances.find((b) => b.accountIndex === index)?.amount ?? 0n;
      const post = tx.postTokenBalances.find((b) => b.accountIndex === index)?.amount ?? 0n;
      amount -= post - pre;
    }
    return amount;
  }

  /** Number of committed transactions. */
  transactionCount(): number {
    return this.transactions.size;
  }

  /** Commitment a committed transaction has reached now. */
  commitmentOf(tx: StoredTransaction): Commitment {
    const age = this.currentSlot() - tx.slot;
    if (age >= this.finalitySlots) return "finalized";
    if (age >= this.confirmationSlots) return "confirmed";
    return "processed";
  }

  /**
   * Status as `getSignatureStatuses` reports it; null when unknown, or when it fell out of the
   * status cache and `searchTransactionHistory` was not asked for.
   */
  signatureStatus(signature: string, searchTransactionHistory: boolean): SignatureStatus | null {
    const tx = this.transactions.get(signature);
    if (!tx) return null;
    const current = this.currentSlot();
    if (!searchTransactionHistory && current - tx.slot > STATUS_CACHE_SLOTS) return null;
    const confirmationStatus = this.commitmentOf(tx);
    return {
      slot: tx.slot,
      confirmations: confirmationStatus === "finalized" ? null : current - tx.slot,
      err: tx.err,
      confirmationStatus,
    };
  }

  /**
   * Runs a transaction without committing it (a node's preflight). Returns null when it would
   * succeed, else its error and logs.
   */
  simulate(wire: Uint8Array): { err: TransactionErrorJson; logs: string[] } | null {
    const decoded = decodeTransaction(wire);
    const rejection = this.precheck(decoded);
    if (rejection) return { err: rejection, logs: [] };
    this.sync();
    const result =
      decoded.version === "legacy"
        ? this.svm.simulateLegacyTransaction(wire)
        : this.svm.simulateVersionedTransaction(wire);
    if (result instanceof FailedTransactionMetadata) {
      return { err: transactionErrorJson(result), logs: result.meta().logs() };
    }
    return null;
  }

  /**
   * Executes a signed wire transaction at the current slot. A transaction that fails inside a
   * program is committed (fee paid, no other change) with `err` set; one rejected before
   * execution (bad blockhash, duplicate, bad signature, unfunded payer) is not.
   */
  send(wire: Uint8Array): SendOutcome {
    const decoded = decodeTransaction(wire);
    const signature = decoded.signatures[0] ?? "";
    const rejection = this.precheck(decoded);
    if (rejection) return { committed: false, signature, err: rejection, logs: [] };
    const resolved = this.resolveAccounts(decoded);
    if (!resolved) {
      return { committed: false, signature, err: "AddressLookupTableNotFound", logs: [] };
    }
    const slot = this.sync();
    const keys = resolved.keys;
    const staticCount = decoded.staticAccountKeys.length;
    const writableLoaded = resolved.loaded.writable.length;
    const programIndexes = new Set(decoded.instructions.map((ix) => ix.programIdIndex));
    const writable = keys.map((_, i) =>
      i < staticCount
        ? isStaticWritable(decoded.header, staticCount, i) && !programIndexes.has(i)
        : i < staticCount + writableLoaded,
    );

    const preBalances = keys.map((k) => Number(this.lamports(k)));
    for (const i of programIndexes) {
      const program = keys[i];
      if (program && !this.accounts.has(program)) this.accounts.set(program, { kind: "other" });
    }
    const preTokenBalances = this.tokenBalances(keys);

    const result =
      decoded.version === "legacy"
        ? this.svm.sendLegacyTransaction(wire)
        : this.svm.sendVersionedTransaction(wire);
    const failed = result instanceof FailedTransactionMetadata;
    const meta: TransactionMetadata = failed ? result.meta() : result;
    const postBalances = keys.map((k) => Number(this.lamports(k)));
    if (failed && postBalances[0] === preBalances[0]) {
      // Nothing was charged: rejected before execution, as a node would drop it.
      return { committed: false, signature, err: transactionErrorJson(result), logs: meta.logs() };
    }
    if (!failed) {
      // Only a successful transaction changes token accounts; re-read the ones it could write.
      keys.forEach((k, i) => {
        if (!writable[i]) return;
        const kind = this.accounts.get(k);
        if (kind?.kind === "token" || kind?.kind === "missing" || kind === undefined) {
          this.accounts.delete(k);
        }
      });
    }
    const postTokenBalances = this.tokenBalances(keys);

    const innerInstructions: StoredInnerInstruction[] = [];
    meta.innerInstructions().forEach((list, index) => {
      if (list.length === 0) return;
      innerInstructions.push({
        index,
        instructions: list.map((inner) => {
          const ix = inner.instruction();
          return {
            programIdIndex: ix.programIdIndex(),
            accounts: [...ix.accounts()],
            data: bs58.encode(ix.data()),
            stackHeight: inner.stackHeight(),
          };
        }),
      });
    });

    const stored: StoredTransaction = {
      signature,
      wire,
      version: decoded.version,
      slot,
      blockTime: Math.floor(this.slotStartMs(slot) / 1000),
      fee: LAMPORTS_PER_SIGNATURE * decoded.header.numRequiredSignatures,
      err: failed ? transactionErrorJson(result) : null,
      accountKeys: keys.map((k) => this.intern(k)),
      loadedAddresses: {
        writable: resolved.loaded.writable.map((k) => this.intern(k)),
        readonly: resolved.loaded.readonly.map((k) => this.intern(k)),
      },
      preBalances,
      postBalances,
      preTokenBalances,
      postTokenBalances,
      logMessages: meta.logs().map((line) => this.intern(line)),
      innerInstructions,
      computeUnitsConsumed: Number(meta.computeUnitsConsumed()),
    };
    this.transactions.set(signature, stored);
    for (const key of new Set(stored.accountKeys)) {
      const list = this.byAccount.get(key);
      if (list) list.push(signature);
      else this.byAccount.set(key, [signature]);
    }
    return { committed: true, signature, transaction: stored };
  }

  /** Rejections a node makes before running a transaction. */
  private precheck(decoded: DecodedTransaction): TransactionErrorJson | null {
    const signature = decoded.signatures[0];
    if (!signature) return "MissingSignatureForFee";
    if (this.transactions.has(signature)) return "AlreadyProcessed";
    if (!this.isBlockhashValid(decoded.recentBlockhash)) return "BlockhashNotFound";
    return null;
  }

  /**
   * Token balances of the token accounts among the keys, classic SPL Token and Token-2022
   * alike, each with the program that owns it. A validator records them only when either
   * token program is among the transaction's keys (agave's `has_token_program`): a SOL
   * transfer to a token account has none, and what reads the chain must not take that for
   * "no owner" or "the escrow authority's".
   */
  private tokenBalances(keys: string[]): StoredTokenBalance[] {
    const out: StoredTokenBalance[] = [];
    if (!keys.some((k) => TOKEN_PROGRAMS.has(k))) return out;
    keys.forEach((address, accountIndex) => {
      const kind = this.classify(address);
      if (kind.kind !== "token") return;
      out.push({
        accountIndex,
        mint: this.intern(kind.mint),
        owner: this.intern(kind.owner),
        programId: kind.programId,
        amount: kind.amount,
        decimals: this.decimalsOf(kind.mint),
      });
    });
    return out;
  }

  /**
   * What an account is, read from the chain at most once per change. Reading accounts leaks
   * their data inside LiteSVM, so known accounts are cached and programs are never read.
   * A token account is one either token program owns whose data unpacks as an initialized
   * account: 165 bytes, or more with Token-2022 extensions, as a validator reads balances.
   */
  private classify(address: string): AccountKind {
    const cached = this.accounts.get(address);
    if (cached) return cached;
    const account = this.svm.getAccount(addressBytes(address));
    let kind: AccountKind;
    if (!account) kind = { kind: "missing" };
    else {
      const programId = bs58.encode(account.owner());
      const data = account.data();
      const state = TOKEN_PROGRAMS.has(programId) ? decodeTokenAccount(data) : null;
      kind = state ? { kind: "token", ...state, programId, space: data.length } : { kind: "other" };
    }
    this.accounts.set(address, kind);
    return kind;
  }

  /**
   * Decimals of a mint of either token program (0 when the account is not one). Only a mint
   * found is remembered: an address asked for before its mint exists may hold one later.
   */
  decimalsOf(mint: string): number {
    const known = this.mintDecimals.get(mint);
    if (known !== undefined) return known;
    const account = this.svm.getAccount(addressBytes(mint));
    const decimals =
      account && TOKEN_PROGRAMS.has(bs58.encode(account.owner()))
        ? decodeMintDecimals(account.data())
        : null;
    if (decimals === null) return 0;
    this.mintDecimals.set(mint, decimals);
    return decimals;
  }

  /** One shared copy of a repeated string (addresses, log lines). */
  private intern(text: string): string {
    const known = this.strings.get(text);
    if (known !== undefined) return known;
    // Unique lines (memos) would fill the table; starting over keeps it bounded and the
    // common lines get shared again at once.
    if (this.strings.size >= 100_000) this.strings.clear();
    this.strings.set(text, text);
    return text;
  }

  private slotStartMs(slot: number): number {
    return this.startMs + (slot - this.baseSlot) * this.slotMs;
  }

  /** Moves the LiteSVM clock to the wall-clock slot, issuing a new blockhash per new slot. */
  private sync(): number {
    const slot = this.baseSlot + Math.floor((this.now() - this.startMs) / this.slotMs);
    if (slot <= this.syncedSlot) return this.syncedSlot;
    this.syncedSlot = slot;
    const unix = BigInt(Math.floor(this.slotStartMs(slot) / 1000));
    const epoch = BigInt(Math.floor(slot / 432_000));
    this.svm.setClock(new Clock(BigInt(slot), this.epochStart, epoch, epoch + 1n, unix));
    this.rotateBlockhash();
    for (const [hash, issued] of this.blockhashes) {
      if (slot - issued <= this.blockhashValiditySlots) break;
      this.blockhashes.delete(hash);
    }
    return slot;
  }
}
