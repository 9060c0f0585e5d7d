import { randomBytes } from "node:crypto";
import {
  createInitializeAccount3Instruction,
  createInitializeMetadataPointerInstruction,
  createInitializeMint2Instruction,
  createInitializePermanentDelegateInstruction,
  createInitializeTransferFeeConfigInstruction,
  createMintToInstruction,
  createSetTransferFeeInstruction,
  ExtensionType,
  getAccountLen,
  getAssociatedTokenAddressSync,
  getMintLen,
} from "@solana/spl-token";
import { Keypair, PublicKey, type TransactionInstruction } from "@solana/web3.js";
import { afterEach, expect } from "vitest";
import { createApp } from "../../src/api/app.js";
import { createToken } from "../../src/auth/tokens.js";
import { createRpcPool, type RpcPool } from "../../src/chain/rpc-pool.js";
import type { Store } from "../../src/db/client.js";
import type { ReceiptSource } from "../../src/db/schema.js";
import type { StoredTransaction } from "../../src/localnet/chain.js";
import {
  ASSOCIATED_TOKEN_PROGRAM_ID,
  type LocalAccounts,
  type LocalSigner,
  type LocalWorker,
  localApiKey,
  localKeyNames,
  localSigner,
  SYSTEM_PROGRAM_ID,
  TOKEN_2022_PROGRAM_ID,
} from "../../src/localnet/keys.js";
import { memoInstruction, transferCheckedInstruction } from "../../src/localnet/token-program.js";
import {
  addressBytes,
  compileMessage,
  type InstructionSpec,
  signTransaction,
} from "../../src/localnet/wire.js";
import { type LocalWorld, startLocalWorld } from "../../src/localnet/world.js";
import { createLogger } from "../../src/log.js";
import { parseJobsApiAnswer, recordJobsApiAnswer } from "../../src/recorder/jobs-api.js";
import { keyFingerprint } from "../../src/recorder/proxy.js";
import { type Receipt, recordReceipts } from "../../src/recorder/receipts.js";
import { reportsStore } from "../../src/store/reports.js";
import { createVerifier } from "../../src/verify/engine.js";
import { localnetProfile, type Profile, priceUnits } from "../../src/verify/profiles.js";
import { memoCallerElf } from "./memo-caller.js";
import { quickVerifierOptions } from "./quick-verifier.js";
import { readJob } from "./seed-recorder.js";
import { useStarted } from "./started-life.js";
import { createTestStore } from "./store.js";

/**
 * A dishonest Decentral operator over the local world. It holds every local key (payer, escrow
 * authority, the mint authority, every worker, every user) plus an attacker's own key, and
 * sends REAL signed transactions to the local chain: token transfers between any accounts
 * those keys control, Approve, SetAuthority, CloseAccount, Burn, MintTo, Freeze, a second
 * (fake) mint, memos of any text. Then it records receipts for those transactions the way
 * ingest does and runs the verifier over them, so a test reads like the fraud it describes.
 *
 * Receipt fields the scenarios set beyond the ingest receipt: `keyFingerprint` (the
 * fingerprint of the local API key whose credit vault the job should spend; the same
 * fingerprint the proxy computes) and `requestedModel` (the model the caller asked for; `model`
 * is what the response body named).
 */

const SPL_TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const TOKEN_ACCOUNT_SIZE = 165;
const MINT_SIZE = 82;
const MULTISIG_SIZE = 355;

/** Authority kinds of SPL Token SetAuthority. */
export const AuthorityType = {
  MintTokens: 0,
  FreezeAccount: 1,
  AccountOwner: 2,
  CloseAccount: 3,
} as const;

const u64 = (value: bigint) => {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, value, true);
  return out;
};
const concat = (...parts: (Uint8Array | number[])[]) => {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
};
/** An instruction built by @solana/spl-token, as the local wire encoder takes it. */
const specOf = (ix: TransactionInstruction): InstructionSpec => ({
  programId: ix.programId.toBase58(),
  accounts: ix.keys.map((k) => ({
    address: k.pubkey.toBase58(),
    signer: k.isSigner,
    writable: k.isWritable,
  })),
  data: Uint8Array.from(ix.data),
});
const key = (address: string) => new PublicKey(address);
const w = (address: string) => ({ address, signer: false, writable: true });
const r = (address: string) => ({ address, signer: false, writable: false });
const s = (address: string) => ({ address, signer: true, writable: false });
const sw = (address: string) => ({ address, signer: true, writable: true });

/** The numbers of one honest job under the reference model. */
export interface JobPlan {
  jobId: string;
  /** Index of the local API key (and of its credit vault). */
  keyIndex: number;
  /** The key's credit vault. */
  vault: string;
  /** Fingerprint of the key, as the proxy computes it. */
  fingerprint: string;
  /** Model named in the response body. */
  model: string;
  /** Model the caller asked for. */
  requestedModel: string;
  promptTokens: number | null;
  completionTokens: number | null;
  maxTokens: number | null;
  worker: LocalWorker;
  /** Price at max_tokens (2,000 when unset). */
  lock: bigint;
  /** Price of the recorded usage (of the requested model). */
  charge: bigint;
  workerShare: bigint;
  treasuryShare: bigint;
  /** lock - charge, back to the credit vault. */
  remainder: bigint;
}

export interface PlanInput {
  keyIndex?: number;
  model?: string;
  requestedModel?: string;
  completionTokens?: number | null;
  maxTokens?: number | null;
  workerIndex?: number;
}

/** What the jobs API says about a job (the documented body, wire names). */
export interface JobsApiBody {
  status?: string;
  credits_charged?: number | string;
  worker_address?: string;
  on_chain?: { escrow_tx?: string | null; settlement_tx?: string | null };
  usage?: { prompt_tokens?: number; completion_tokens?: number; total_tokens?: number };
}

export interface JobOutcome {
  verdict: string;
  /** Names of the failing checks, sorted. */
  failing: string[];
}

/** The outcome of a job the named checks fail. */
export const discrepancy = (...failing: string[]): JobOutcome => ({
  verdict: "discrepancy",
  failing: [...failing].sort(),
});

/** Receipt fields of a job the upstream answered 504: no usage, its lock to be refunded. */
export const timedOutReceipt = {
  httpStatus: 504,
  completionTokens: null,
  promptTokens: null,
  totalTokens: null,
} as const;

/** The outcome of a job every check passes. */
export const verified: JobOutcome = { verdict: "verified", failing: [] };

/** The outcome of a job no check fails but a money fact of which is unproven. */
export const partiallyVerified: JobOutcome = { verdict: "partially_verified", failing: [] };

/**
 * What `toEqual` matches for a discrepancy whose failing checks include each of `failing`
 * (others may fail too).
 */
export const discrepancyIncluding = (...failing: string[]) => ({
  verdict: "discrepancy",
  failing: expect.arrayContaining(failing),
});

/** The localnet profile with releases due a second after the lock: a statement judges them at once. */
export const quickWindowProfile: Profile = {
  ...localnetProfile,
  settlementWindowSeconds: 1,
  receiptTimeSkewSeconds: 1,
};

const log = createLogger({ level: "silent" });

/** A fresh job id in Decentral's shape (`job_` + 20 lowercase alphanumerics). */
export function newJobId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let id = "job_";
  for (const byte of randomBytes(20)) id += alphabet[byte % alphabet.length];
  return id;
}

/** Who pays a settlement out: the account (`from`) and the signer (`authority`). */
export type Payer = { from?: string; authority?: string };

/** A settlement's payouts where they are not the plan's: amounts, accounts paid, payer. */
export type Payout = {
  workerShare?: bigint;
  treasuryShare?: bigint;
  remainder?: bigint;
  workerAccount?: string;
  treasuryAccount?: string;
  remainderTo?: string;
} & Payer;

export class Operator {
  readonly accounts: LocalAccounts;
  readonly payer = localSigner(localKeyNames.payer);
  readonly escrowAuthority = localSigner(localKeyNames.escrowAuthority);
  /** Owner of the treasury and mint authority of the credit mint. */
  readonly treasuryOwner = localSigner(localKeyNames.treasury);
  /** The operator's own wallet, where stolen money goes. */
  readonly attacker: LocalSigner;
  private readonly signers = new Map<string, LocalSigner>();
  /** Token-2022 mints made here that take a transfer fee (their accounts need room for it). */
  private readonly feeMints = new Set<string>();
  private created = 0;
  private readonly tag = randomBytes(4).toString("hex");

  constructor(
    readonly world: LocalWorld,
    private readonly clock: {
      advance(ms: number): void;
      now(): number;
      /** Moves the clock on for a while only (see `harnessClock`); `advance` when absent. */
      lead?(ms: number): void;
      /** Runs `fn` with the clock stopped (see `harnessClock`). */
      hold?<T>(fn: () => T): T;
    },
  ) {
    this.accounts = world.accounts;
    this.attacker = localSigner(`adversary/${this.tag}/attacker`);
    for (const signer of [this.payer, this.escrowAuthority, this.treasuryOwner, this.attacker]) {
      this.signers.set(signer.address, signer);
    }
    for (const worker of this.accounts.workers) {
      const signer = localSigner(localKeyNames.worker(worker.index));
      this.signers.set(signer.address, signer);
    }
  }

  get chain() {
    return this.world.chain;
  }

  // ---- instructions --------------------------------------------------------------------

  /** SPL Token TransferChecked of the credit mint, signed by `authority` (the escrow authority by default). */
  transfer(
    source: string,
    destination: string,
    amount: bigint,
    opts: { authority?: string; mint?: string; decimals?: number } = {},
  ): InstructionSpec {
    return transferCheckedInstruction({
      tokenProgram: SPL_TOKEN,
      source,
      mint: opts.mint ?? this.accounts.mint,
      destination,
      authority: opts.authority ?? this.escrowAuthority.address,
      amount,
      decimals: opts.decimals ?? this.accounts.decimals,
    });
  }

  /** SPL Token Transfer (the unchecked form, no mint account). */
  plainTransfer(
    source: string,
    destination: string,
    amount: bigint,
    authority = this.escrowAuthority.address,
  ): InstructionSpec {
    return {
      programId: SPL_TOKEN,
      accounts: [w(source), w(destination), s(authority)],
      data: concat([3], u64(amount)),
    };
  }

  /** Approve: lets `delegate` spend `amount` of `account`. */
  approve(
    account: string,
    delegate: string,
    amount: bigint,
    owner = this.escrowAuthority.address,
  ): InstructionSpec {
    return {
      programId: SPL_TOKEN,
      accounts: [w(account), r(delegate), s(owner)],
      data: concat([4], u64(amount)),
    };
  }

  /** ApproveChecked of the credit mint: lets `delegate` spend `amount` of `account`. */
  approveChecked(
    account: string,
    delegate: string,
    amount: bigint,
    owner = this.escrowAuthority.address,
  ): InstructionSpec {
    return {
      programId: SPL_TOKEN,
      accounts: [w(account), r(this.accounts.mint), r(delegate), s(owner)],
      data: concat([13], u64(amount), [this.accounts.decimals]),
    };
  }

  /** Revoke: takes back whatever delegate `account` has. */
  revoke(account: string, owner = this.escrowAuthority.address): InstructionSpec {
    return { programId: SPL_TOKEN, accounts: [w(account), s(owner)], data: new Uint8Array([5]) };
  }

  /** SetAuthority on a token account or mint; `newAuthority` null removes it. */
  setAuthority(
    target: string,
    kind: number,
    newAuthority: string | null,
    current = this.escrowAuthority.address,
  ): InstructionSpec {
    const option = newAuthority === null ? [0] : concat([1], addressBytes(newAuthority));
    return {
      programId: SPL_TOKEN,
      accounts: [w(target), s(current)],
      data: concat([6, kind], option),
    };
  }

  mintTo(
    mint: string,
    destination: string,
    amount: bigint,
    authority = this.treasuryOwner.address,
  ): InstructionSpec {
    return {
      programId: SPL_TOKEN,
      accounts: [w(mint), w(destination), s(authority)],
      data: concat([7], u64(amount)),
    };
  }

  burn(
    account: string,
    amount: bigint,
    opts: { mint?: string; owner?: string } = {},
  ): InstructionSpec {
    return {
      programId: SPL_TOKEN,
      accounts: [
        w(account),
        w(opts.mint ?? this.accounts.mint),
        s(opts.owner ?? this.escrowAuthority.address),
      ],
      data: concat([8], u64(amount)),
    };
  }

  /** CloseAccount: an empty token account's rent goes to `destination`. */
  closeAccount(
    account: string,
    destination: string,
    owner = this.escrowAuthority.address,
  ): InstructionSpec {
    return {
      programId: SPL_TOKEN,
      accounts: [w(account), w(destination), s(owner)],
      data: Uint8Array.from([9]),
    };
  }

  freeze(account: string, mint: string, freezeAuthority: string): InstructionSpec {
    return {
      programId: SPL_TOKEN,
      accounts: [w(account), r(mint), s(freezeAuthority)],
      data: Uint8Array.from([10]),
    };
  }

  thaw(account: string, mint: string, freezeAuthority: string): InstructionSpec {
    return {
      programId: SPL_TOKEN,
      accounts: [w(account), r(mint), s(freezeAuthority)],
      data: Uint8Array.from([11]),
    };
  }

  /**
   * A System Program Transfer of lamports from the payer to any address (a token account too):
   * anyone may send it, and with no token program among its keys it carries no token balances.
   */
  lamportsTo(to: string, lamports = 1n): InstructionSpec {
    const data = new Uint8Array(12);
    const view = new DataView(data.buffer);
    view.setUint32(0, 2, true);
    view.setBigUint64(4, lamports, true);
    return { programId: SYSTEM_PROGRAM_ID, accounts: [sw(this.payer.address), w(to)], data };
  }

  memo(text: string): InstructionSpec {
    return memoInstruction(this.accounts.memoProgram, text);
  }

  /**
   * An instruction running a program of the operator's own (deployed here, one per call) that
   * writes `text` as a memo by a call to the memo program: an inner instruction, in no node's
   * signature listing.
   */
  memoByCall(text: string): InstructionSpec {
    const { address: program } = this.newSigner("memo-caller");
    this.chain.addProgram(program, memoCallerElf(this.accounts.memoProgram, text));
    return { programId: program, accounts: [r(this.accounts.memoProgram)], data: new Uint8Array() };
  }

  // ---- sending -------------------------------------------------------------------------

  /**
   * Signs (payer plus whichever known keys the instructions need) and sends. The transaction
   * must be committed; with `expectFailure` it must fail on chain (fee paid, nothing moved),
   * otherwise it must succeed.
   */
  send(
    instructions: InstructionSpec[],
    opts: {
      expectFailure?: boolean;
      version?: "legacy" | 0;
      extraSigners?: LocalSigner[];
      /** With version 0: non-signer accounts found in these tables are loaded from them. */
      lookupTables?: { address: string; addresses: readonly string[] }[];
    } = {},
  ): StoredTransaction {
    for (const extra of opts.extraSigners ?? []) this.signers.set(extra.address, extra);
    for (let attempt = 0; attempt < 2; attempt++) {
      const blockhash =
        attempt === 0 ? this.chain.latestBlockhash().blockhash : this.chain.rotateBlockhash();
      const { messageBytes, signers } = compileMessage({
        version: opts.version ?? "legacy",
        feePayer: this.payer.address,
        recentBlockhash: blockhash,
        instructions,
        ...(opts.lookupTables ? { lookupTables: opts.lookupTables } : {}),
      });
      const { wire } = signTransaction(messageBytes, signers, [...this.signers.values()]);
      const outcome = this.chain.send(wire);
      if (outcome.committed) {
        const failed = outcome.transaction.err !== null;
        if (failed !== (opts.expectFailure ?? false)) {
          throw new Error(
            `transaction ${failed ? "failed" : "succeeded"} unexpectedly: ${JSON.stringify(outcome.transaction.err)} ${outcome.transaction.logMessages.join(" | ")}`,
          );
        }
        return outcome.transaction;
      }
      if (outcome.err !== "AlreadyProcessed") {
        throw new Error(`transaction rejected: ${JSON.stringify(outcome.err)} ${outcome.logs}`);
      }
    }
    throw new Error("transaction rejected twice as already processed");
  }

  /**
   * Signs `instructions` as `send` would, without sending: the transaction lands only when
   * `sendSigned` sends it (within the blockhash's validity, as a durable-nonce one could at any
   * time), and its signature can be named before that.
   */
  signOnly(instructions: InstructionSpec[]): { signature: string; wire: Uint8Array } {
    const { messageBytes, signers } = compileMessage({
      version: "legacy",
      feePayer: this.payer.address,
      recentBlockhash: this.chain.rotateBlockhash(),
      instructions,
    });
    return signTransaction(messageBytes, signers, [...this.signers.values()]);
  }

  /** Sends a transaction `signOnly` signed; it must succeed. */
  sendSigned(signed: { signature: string; wire: Uint8Array }): StoredTransaction {
    const outcome = this.chain.send(signed.wire);
    if (!outcome.committed || outcome.transaction.err !== null) {
      throw new Error(`signed transaction did not land: ${JSON.stringify(outcome)}`);
    }
    return outcome.transaction;
  }

  /** The chain's clock, in epoch milliseconds: a receipt's time as a recorder beside it says. */
  now(): number {
    return this.clock.now();
  }

  /** Moves the chain's clock forward (new slots, later block times) without waiting. */
  advanceClock(ms: number): void {
    this.clock.advance(ms);
  }

  /**
   * Runs `fn` (which sends transactions) with the chain's clock stopped, so that all it sends
   * lands in one slot. Throws when this harness's clock cannot be stopped.
   */
  inOneSlot<T>(fn: () => T): T {
    if (!this.clock.hold) throw new Error("this chain's clock cannot be held");
    return this.clock.hold(fn);
  }

  /**
   * Moves the chain to its next slot at once. The chain's clock takes the slot back as it runs
   * on (see `harnessClock`): slots moved on this way do not leave it ahead of the recorder's
   * clock for the rest of the file.
   */
  nextSlot(): void {
    const slot = this.chain.currentSlot();
    if (this.clock.lead) this.clock.lead(this.chain.slotMs);
    else this.clock.advance(this.chain.slotMs);
    if (this.chain.currentSlot() <= slot) throw new Error("the slot did not move");
  }

  // ---- accounts ------------------------------------------------------------------------

  private newSigner(label: string): LocalSigner {
    const signer = localSigner(`adversary/${this.tag}/${label}/${this.created++}`);
    this.signers.set(signer.address, signer);
    return signer;
  }

  /** A lookup table of `addresses`, known to the local chain, for a version-0 transaction. */
  lookupTable(addresses: readonly string[]): { address: string; addresses: readonly string[] } {
    const { address } = this.newSigner("lookup-table");
    this.chain.setLookupTable(address, this.accounts.escrowAuthority, [...addresses]);
    return { address, addresses };
  }

  /**
   * Creates an SPL Token multisig account (InitializeMultisig2) of which any `m` of `signers`
   * sign for it.
   */
  createMultisig(signers: readonly string[], m: number): string {
    const multisig = this.newSigner("multisig");
    this.send([
      this.createAccountIx(multisig.address, MULTISIG_SIZE),
      {
        programId: SPL_TOKEN,
        accounts: [w(multisig.address), ...signers.map(r)],
        data: Uint8Array.from([19, m]),
      },
    ]);
    return multisig.address;
  }

  /**
   * TransferChecked of the credit mint whose authority is the multisig `multisig`, signed by
   * `signers` (members of it), named after it as the token program reads them.
   */
  multisigTransfer(
    source: string,
    destination: string,
    amount: bigint,
    multisig: string,
    signers: readonly string[],
  ): InstructionSpec {
    return {
      programId: SPL_TOKEN,
      accounts: [w(source), r(this.accounts.mint), w(destination), r(multisig), ...signers.map(s)],
      data: concat([12], u64(amount), [this.accounts.decimals]),
    };
  }

  /** Creates a token account of `mint` owned by `owner` with real System + Token instructions. */
  createTokenAccount(owner: string, mint = this.accounts.mint, fund = 0n): string {
    const account = this.newSigner("token-account");
    const ixs: InstructionSpec[] = [
      this.createAccountIx(account.address, TOKEN_ACCOUNT_SIZE),
      {
        programId: SPL_TOKEN,
        accounts: [w(account.address), r(mint)],
        data: concat([18], addressBytes(owner)),
      },
    ];
    this.send(ixs);
    if (fund > 0n) this.fund(account.address, fund, mint);
    return account.address;
  }

  /**
   * Mints `amount` of the credit mint (or a fake mint the attacker controls) into `account`;
   * returns the transaction's signature.
   */
  fund(account: string, amount: bigint, mint = this.accounts.mint): string {
    const authority =
      mint === this.accounts.mint ? this.treasuryOwner.address : this.attacker.address;
    return this.send([this.mintTo(mint, account, amount, authority)]).signature;
  }

  /**
   * Closes key `keyIndex`'s empty credit vault and, in a second transaction, creates it again
   * at the same address as a token account of `mint` (the vault's keypair signs the creation),
   * owned by the escrow authority as before.
   */
  reopenVault(keyIndex: number, mint: string): string[] {
    const vault = this.vault(keyIndex);
    const closed = this.send([this.closeAccount(vault, this.payer.address)]).signature;
    const created = this.send(
      [
        this.createAccountIx(vault, TOKEN_ACCOUNT_SIZE),
        {
          programId: SPL_TOKEN,
          accounts: [w(vault), r(mint)],
          data: concat([18], addressBytes(this.escrowAuthority.address)),
        },
      ],
      { extraSigners: [localSigner(localKeyNames.creditVault(keyIndex))] },
    ).signature;
    return [closed, created];
  }

  /**
   * The instructions that close key `keyIndex`'s (empty) credit vault and create it again at
   * the same address as a token account of `mint`, to send within one transaction with
   * others; the vault's keypair must sign (`signer`).
   */
  reopenVaultIxs(keyIndex: number, mint: string): { ixs: InstructionSpec[]; signer: LocalSigner } {
    return {
      ixs: this.reopenIxs(this.vault(keyIndex), mint),
      signer: localSigner(localKeyNames.creditVault(keyIndex)),
    };
  }

  /**
   * Closes the (empty) token account `account`, owned by `owner`, and creates it again as a
   * token account of `mint` owned by `owner`: the account's keypair must sign (known for
   * accounts this operator created).
   */
  reopenIxs(
    account: string,
    mint: string,
    owner = this.escrowAuthority.address,
  ): InstructionSpec[] {
    return [
      this.closeAccount(account, this.payer.address, owner),
      this.createAccountIx(account, TOKEN_ACCOUNT_SIZE),
      {
        programId: SPL_TOKEN,
        accounts: [w(account), r(mint)],
        data: concat([18], addressBytes(owner)),
      },
    ];
  }

  /**
   * Creates a new token account of `mint` owned by `owner` with the first InitializeAccount,
   * which names its owner among its accounts (and the rent sysvar): for a transaction of one's
   * own, as `reopenIxs`.
   */
  initializeAccountIxs(owner: string, mint: string): InstructionSpec[] {
    const account = this.newSigner("token-account-v1");
    return [
      this.createAccountIx(account.address, TOKEN_ACCOUNT_SIZE),
      {
        programId: SPL_TOKEN,
        accounts: [
          w(account.address),
          r(mint),
          r(owner),
          r("SysvarRent111111111111111111111111111111111"),
        ],
        data: new Uint8Array([1]),
      },
    ];
  }

  /** A second mint with the credit mint's decimals; the attacker is its mint and freeze authority. */
  createFakeMint(): string {
    const { mint, ixs } = this.newMintIxs();
    this.send(ixs);
    return mint;
  }

  /**
   * Creates a mint as `createFakeMint` does, by InitializeMint2, with `alsoNamed` after its one
   * account: the token program reads no more accounts, and those it leaves as they were.
   */
  newMintIxs(alsoNamed: readonly string[] = []): { mint: string; ixs: InstructionSpec[] } {
    const mint = this.newSigner("fake-mint");
    const freeze = concat([1], addressBytes(this.attacker.address));
    return {
      mint: mint.address,
      ixs: [
        this.createAccountIx(mint.address, MINT_SIZE),
        {
          programId: SPL_TOKEN,
          accounts: [w(mint.address), ...alsoNamed.map(r)],
          data: concat([20, this.accounts.decimals], addressBytes(this.attacker.address), freeze),
        },
      ],
    };
  }

  /**
   * A Token-2022 mint with the credit mint's decimals; the attacker is its mint authority.
   * With `transferFeeBps` it carries a TransferFeeConfig: the program withholds that share of
   * every transfer (at most `maximumFee`) in the receiving account, outside its balance. With
   * `permanentDelegate` that address may move or burn the tokens of every account of the mint.
   */
  createToken2022Mint(
    opts: { transferFeeBps?: number; maximumFee?: bigint; permanentDelegate?: string } = {},
  ): string {
    const { mint, ixs } = this.token2022MintIxs(opts);
    this.send(ixs);
    if (opts.transferFeeBps !== undefined) this.feeMints.add(mint);
    return mint;
  }

  /**
   * The instructions `createToken2022Mint` sends, with `alsoNamed` after the mint's one account
   * in its InitializeTransferFeeConfig (given a fee) and its InitializeMetadataPointer (given
   * `metadataPointer`): Token-2022 reads no more accounts there.
   */
  token2022MintIxs(
    opts: {
      transferFeeBps?: number;
      maximumFee?: bigint;
      permanentDelegate?: string;
      metadataPointer?: boolean;
    },
    alsoNamed: readonly string[] = [],
  ): { mint: string; ixs: InstructionSpec[] } {
    const mint = this.newSigner("token-2022-mint");
    const fee = opts.transferFeeBps !== undefined;
    const extensions = [
      ...(fee ? [ExtensionType.TransferFeeConfig] : []),
      ...(opts.permanentDelegate ? [ExtensionType.PermanentDelegate] : []),
      ...(opts.metadataPointer ? [ExtensionType.MetadataPointer] : []),
    ];
    const ixs: InstructionSpec[] = [
      this.createAccountIx(mint.address, getMintLen(extensions), TOKEN_2022_PROGRAM_ID),
    ];
    if (opts.metadataPointer) {
      const pointer = specOf(
        createInitializeMetadataPointerInstruction(
          key(mint.address),
          key(this.attacker.address),
          key(mint.address),
          key(TOKEN_2022_PROGRAM_ID),
        ),
      );
      ixs.push({ ...pointer, accounts: [...pointer.accounts, ...alsoNamed.map(r)] });
    }
    if (opts.permanentDelegate) {
      ixs.push(
        specOf(
          createInitializePermanentDelegateInstruction(
            key(mint.address),
            key(opts.permanentDelegate),
            key(TOKEN_2022_PROGRAM_ID),
          ),
        ),
      );
    }
    if (fee) {
      const config = specOf(
        createInitializeTransferFeeConfigInstruction(
          key(mint.address),
          key(this.attacker.address),
          key(this.attacker.address),
          opts.transferFeeBps ?? 0,
          opts.maximumFee ?? 2n ** 64n - 1n,
          key(TOKEN_2022_PROGRAM_ID),
        ),
      );
      ixs.push({ ...config, accounts: [...config.accounts, ...alsoNamed.map(r)] });
    }
    ixs.push(
      specOf(
        createInitializeMint2Instruction(
          key(mint.address),
          this.accounts.decimals,
          key(this.attacker.address),
          null,
          key(TOKEN_2022_PROGRAM_ID),
        ),
      ),
    );
    return { mint: mint.address, ixs };
  }

  /**
   * Token-2022 SetTransferFee of a mint `createToken2022Mint` made with a fee (the attacker is
   * its fee authority): the new fee applies from two epochs after the current one, the older
   * fee until then.
   */
  setTransferFeeIx(mint: string, transferFeeBps: number, maximumFee = 2n ** 64n - 1n) {
    return specOf(
      createSetTransferFeeInstruction(
        key(mint),
        key(this.attacker.address),
        [],
        transferFeeBps,
        maximumFee,
        key(TOKEN_2022_PROGRAM_ID),
      ),
    );
  }

  /** A Token-2022 account of `mint` owned by `owner`, holding `fund` minted by the attacker. */
  createToken2022Account(owner: string, mint: string, fund = 0n): string {
    const account = this.newSigner("token-2022-account");
    const extensions = this.feeMints.has(mint) ? [ExtensionType.TransferFeeAmount] : [];
    const ixs: InstructionSpec[] = [
      this.createAccountIx(account.address, getAccountLen(extensions), TOKEN_2022_PROGRAM_ID),
      specOf(
        createInitializeAccount3Instruction(
          key(account.address),
          key(mint),
          key(owner),
          key(TOKEN_2022_PROGRAM_ID),
        ),
      ),
    ];
    if (fund > 0n) {
      ixs.push(
        specOf(
          createMintToInstruction(
            key(mint),
            key(account.address),
            key(this.attacker.address),
            fund,
            [],
            key(TOKEN_2022_PROGRAM_ID),
          ),
        ),
      );
    }
    this.send(ixs);
    return account.address;
  }

  /** Token-2022 TransferChecked of `mint`, signed by the escrow authority unless told. */
  transfer2022(
    source: string,
    destination: string,
    amount: bigint,
    mint: string,
    authority = this.escrowAuthority.address,
  ): InstructionSpec {
    return transferCheckedInstruction({
      tokenProgram: TOKEN_2022_PROGRAM_ID,
      source,
      mint,
      destination,
      authority,
      amount,
      decimals: this.accounts.decimals,
    });
  }

  /** System CreateAccount of `address` (which signs), rent-exempt plus `extraLamports`. */
  createAccountIx(
    address: string,
    space: number,
    owner = SPL_TOKEN,
    extraLamports = 0n,
  ): InstructionSpec {
    const lamports = this.chain.minimumBalanceForRentExemption(space) + extraLamports;
    const data = new Uint8Array(52);
    const view = new DataView(data.buffer);
    view.setUint32(0, 0, true);
    view.setBigUint64(4, lamports, true);
    view.setBigUint64(12, BigInt(space), true);
    data.set(addressBytes(owner), 20);
    return {
      programId: SYSTEM_PROGRAM_ID,
      accounts: [sw(this.payer.address), sw(address)],
      data,
    };
  }

  /**
   * The attacker's associated token account and a "nested" one (the associated account of
   * that account), holding `amount`: the Associated Token Account program's RecoverNested
   * then moves the tokens and closes the nested account by CPI, so its TransferChecked and
   * CloseAccount appear only as inner instructions.
   */
  nestedAccounts(amount: bigint): { ownerAta: string; nestedAta: string } {
    const mint = this.accounts.mint;
    const ownerAta = ataOf(this.attacker.address, mint);
    const nestedAta = ataOf(ownerAta, mint);
    this.send([
      this.createAtaIx(this.attacker.address, ownerAta),
      this.createAtaIx(ownerAta, nestedAta),
    ]);
    this.fund(nestedAta, amount);
    return { ownerAta, nestedAta };
  }

  /** ATA program RecoverNested of the accounts made by `nestedAccounts` (attacker signs). */
  recoverNestedIx(accounts: { ownerAta: string; nestedAta: string }): InstructionSpec {
    const mint = this.accounts.mint;
    return {
      programId: ASSOCIATED_TOKEN_PROGRAM_ID,
      accounts: [
        w(accounts.nestedAta),
        r(mint),
        w(accounts.ownerAta),
        r(accounts.ownerAta),
        r(mint),
        sw(this.attacker.address),
        r(SPL_TOKEN),
      ],
      data: Uint8Array.from([2]),
    };
  }

  /**
   * ATA program CreateIdempotent of a new owner's credit-mint account (payer signs): a call
   * into the token program, so what it does there shows only in the inner instructions.
   */
  newOwnerAtaIx(): InstructionSpec {
    const owner = Keypair.generate().publicKey.toBase58();
    return this.createAtaIx(owner, ataOf(owner, this.accounts.mint));
  }

  private createAtaIx(wallet: string, ata: string): InstructionSpec {
    return {
      programId: ASSOCIATED_TOKEN_PROGRAM_ID,
      accounts: [
        sw(this.payer.address),
        w(ata),
        r(wallet),
        r(this.accounts.mint),
        r(SYSTEM_PROGRAM_ID),
        r(SPL_TOKEN),
      ],
      data: Uint8Array.from([1]),
    };
  }

  /** The attacker's own credit-mint account, funded with `amount`. */
  attackerAccount(amount = 1_000_000n): string {
    return this.createTokenAccount(this.attacker.address, this.accounts.mint, amount);
  }

  /** Another user's vault in the reference model's shape: owned by the escrow authority. */
  victimVault(amount = 1_000_000n): string {
    return this.createTokenAccount(this.escrowAuthority.address, this.accounts.mint, amount);
  }

  vault(keyIndex: number): string {
    return this.accounts.creditVaults[keyIndex]!.vault;
  }

  /**
   * Gives a vault the attacker took back to the escrow authority: a test that hands a shared
   * world's vault away leaves it as it found it, for the tests after it.
   */
  giveBackVault(vault: string): void {
    this.send([
      this.setAuthority(
        vault,
        AuthorityType.AccountOwner,
        this.accounts.escrowAuthority,
        this.attacker.address,
      ),
    ]);
  }

  worker(index: number): LocalWorker {
    return this.accounts.workers[index]!;
  }

  balance(account: string): bigint {
    return this.chain.tokenAmount(account) ?? 0n;
  }

  /**
   * Token balance changes of one committed transaction, read from the chain's own record
   * (pre/post token balances by account), every mint: the ground truth of what moved.
   */
  deltas(signature: string): Map<string, { mint: string; delta: bigint }> {
    const tx = this.chain.transaction(signature);
    if (!tx) throw new Error(`the chain has no transaction ${signature}`);
    const out = new Map<string, { mint: string; delta: bigint }>();
    for (const b of tx.preTokenBalances) {
      out.set(tx.accountKeys[b.accountIndex]!, { mint: b.mint, delta: -b.amount });
    }
    for (const b of tx.postTokenBalances) {
      const address = tx.accountKeys[b.accountIndex]!;
      const pre = out.get(address)?.delta ?? 0n;
      out.set(address, { mint: b.mint, delta: pre + b.amount });
    }
    for (const [address, d] of out) if (d.delta === 0n) out.delete(address);
    return out;
  }

  /** Fee of one committed transaction, in lamports. */
  fee(signature: string): bigint {
    const tx = this.chain.transaction(signature);
    if (!tx) throw new Error(`the chain has no transaction ${signature}`);
    return BigInt(tx.fee);
  }

  // ---- the reference model's honest transactions ---------------------------------------

  /** The numbers of an honest job (PROTOCOL.md section 2), priced by the requested model. */
  plan(input: PlanInput = {}): JobPlan {
    const keyIndex = input.keyIndex ?? 1;
    const requestedModel = input.requestedModel ?? input.model ?? "qwen3-8b";
    const model = input.model ?? requestedModel;
    const completionTokens = input.completionTokens === undefined ? 640 : input.completionTokens;
    const maxTokens = input.maxTokens ?? null;
    const worker = this.worker(input.workerIndex ?? 0);
    const lock = priceUnits(localnetProfile, requestedModel, maxTokens ?? 2000);
    const charge = priceUnits(
      localnetProfile,
      requestedModel,
      completionTokens ?? maxTokens ?? 2000,
    );
    if (lock === null || charge === null) throw new Error(`no price for ${requestedModel}`);
    const workerShare = (charge * BigInt(worker.rateBps)) / 10_000n;
    return {
      jobId: newJobId(),
      keyIndex,
      vault: this.vault(keyIndex),
      fingerprint: fingerprintOfKey(keyIndex),
      model,
      requestedModel,
      promptTokens: completionTokens === null ? null : 12,
      completionTokens,
      maxTokens,
      worker,
      lock,
      charge,
      workerShare,
      treasuryShare: charge - workerShare,
      remainder: lock - charge,
    };
  }

  /** Escrow lock: credit vault -> escrow vault, memo `decentral:escrow:<job>`. */
  lockIxs(plan: JobPlan, opts: { amount?: bigint } & Payer = {}): InstructionSpec[] {
    return [
      this.transfer(opts.from ?? plan.vault, this.accounts.escrowVault, opts.amount ?? plan.lock, {
        authority: opts.authority,
      }),
      this.memo(`decentral:escrow:${plan.jobId}`),
    ];
  }

  /**
   * The settlement's transfers (worker, treasury, remainder) without the memo, out of `from`
   * (the escrow vault by default) signed by `authority` (the escrow authority by default).
   */
  payoutIxs(plan: JobPlan, opts: Payout = {}): InstructionSpec[] {
    const escrow = opts.from ?? this.accounts.escrowVault;
    const signer = { authority: opts.authority };
    const remainder = opts.remainder ?? plan.remainder;
    const out = [
      this.transfer(
        escrow,
        opts.workerAccount ?? plan.worker.tokenAccount,
        opts.workerShare ?? plan.workerShare,
        signer,
      ),
      this.transfer(
        escrow,
        opts.treasuryAccount ?? this.accounts.treasury.tokenAccount,
        opts.treasuryShare ?? plan.treasuryShare,
        signer,
      ),
    ];
    if (remainder > 0n) {
      out.push(this.transfer(escrow, opts.remainderTo ?? plan.vault, remainder, signer));
    }
    return out;
  }

  /**
   * Settlement of `plan`: payouts plus memo `decentral:settle:<job>`; honest to the unit unless
   * `payout` names another account, signer, share or remainder than the plan's.
   */
  settleIxs(plan: JobPlan, payout: Payout = {}): InstructionSpec[] {
    return [...this.payoutIxs(plan, payout), this.memo(`decentral:settle:${plan.jobId}`)];
  }

  /** Honest refund of a timed-out job: the whole lock back, memo `decentral:refund:<job>`. */
  refundIxs(plan: JobPlan, to = plan.vault): InstructionSpec[] {
    return [
      this.transfer(this.accounts.escrowVault, to, plan.lock),
      this.memo(`decentral:refund:${plan.jobId}`),
    ];
  }

  /**
   * Locks `a` and `b` each on its own, then settles both in one transaction naming both jobs
   * (`decentral:settle:` of each) that pays out the jobs of `paid` alone (both unless told).
   */
  sharedSettlement(
    a: JobPlan,
    b: JobPlan,
    paid: JobPlan[] = [a, b],
  ): { escrowA: string; escrowB: string; shared: string } {
    const {
      escrows: [escrowA, escrowB],
      shared,
    } = this.sharedSettlementOf([a, b], paid);
    return { escrowA: escrowA!, escrowB: escrowB!, shared };
  }

  /** One lock transaction taking both `a`'s and `b`'s locks (each its memo), each then settled alone. */
  sharedLock(a: JobPlan, b: JobPlan): { lock: string; settleA: string; settleB: string } {
    const lock = this.send([...this.lockIxs(a), ...this.lockIxs(b)]).signature;
    const settleA = this.send(this.settleIxs(a)).signature;
    const settleB = this.send(this.settleIxs(b)).signature;
    return { lock, settleA, settleB };
  }

  /**
   * A lock of its own for each of `plans`, then one settlement carrying every plan's settle memo
   * (in `plans`' order) and paying the plans of `paid` (all by default).
   */
  sharedSettlementOf(
    plans: readonly JobPlan[],
    paid: readonly JobPlan[] = plans,
  ): { escrows: string[]; shared: string } {
    const escrows = plans.map((p) => this.send(this.lockIxs(p)).signature);
    const shared = this.send([
      ...paid.flatMap((p) => this.payoutIxs(p)),
      ...plans.map((p) => this.memo(`decentral:settle:${p.jobId}`)),
    ]).signature;
    return { escrows, shared };
  }

  /**
   * A job of each of keys 1, 2 and 3, of the workers `workers` (by index), each asking for
   * `maxTokens` (by index; 2,000 each unless told) and charged its whole lock (nothing comes
   * home from a settlement), their ids in that order.
   */
  wholeLockPlans(
    workers: readonly number[],
    maxTokens: readonly number[] = [2000, 2000, 2000],
  ): JobPlan[] {
    return [1, 2, 3].map((keyIndex, i) => {
      const p = {
        ...this.plan({
          keyIndex,
          workerIndex: workers[i],
          completionTokens: maxTokens[i]!,
          maxTokens: maxTokens[i]!,
        }),
      };
      p.jobId = `job_${i}${p.jobId.slice(5)}`;
      return p;
    });
  }

  /** Sends an honest lock and settlement for `plan`; returns both signatures. */
  honestJob(plan: JobPlan): { escrowTx: string; settlementTx: string } {
    const escrowTx = this.send(this.lockIxs(plan)).signature;
    const settlementTx = this.send(this.settleIxs(plan)).signature;
    return { escrowTx, settlementTx };
  }
}

/** The associated token account of `owner` for `mint` (owner may be off the curve). */
function ataOf(owner: string, mint: string): string {
  return getAssociatedTokenAddressSync(new PublicKey(mint), new PublicKey(owner), true).toBase58();
}

/** Fingerprint of local API key `i`, exactly as the proxy stores it for that key. */
export function fingerprintOfKey(keyIndex: number): string {
  return keyFingerprint(`Bearer ${localApiKey(keyIndex)}`)!;
}

/** A receipt with the two fields the issue adds (requested model, key fingerprint). */
export type ScenarioReceipt = Receipt & { requestedModel?: string | null };

/**
 * One scenario's own store and verifier over the shared world: record receipts (and jobs-API
 * answers), verify until every job is final, read verdicts and failing checks.
 */
export class Scenario {
  private app: ReturnType<typeof createApp> | undefined;
  private ingestToken: string | undefined;
  /**
   * Writes `record` and `jobsApi` queued, run one after the other in the order they were made
   * (a jobs-API answer needs its receipt's row); awaited before anything reads or verifies.
   */
  private pending: Promise<unknown> = Promise.resolve();
  /** The recorder's clock for receipts given no time of their own: the machine's when unset. */
  private recorderNow: (() => number) | undefined;

  constructor(
    private readonly harness: AdversaryHarness,
    readonly profile: Profile,
    readonly store: Store,
  ) {}

  /**
   * Dates the receipts recorded from now on by the chain's clock, as a recorder beside it would:
   * for a test that moves that clock on (a window's edge) instead of waiting for it.
   */
  recordOnChainClock(): this {
    this.recorderNow = () => this.harness.op.now();
    return this;
  }

  /** Whether receipts are dated by the chain's clock (`recordOnChainClock`), not the machine's. */
  get onChainClock(): boolean {
    return this.recorderNow !== undefined;
  }

  /** Queues a write after the ones before it. */
  private queue(write: () => Promise<unknown>): void {
    this.pending = this.pending.then(write);
  }

  /** Waits for the writes queued so far; the first that failed throws (once). */
  async flush(): Promise<void> {
    const pending = this.pending;
    this.pending = Promise.resolve();
    await pending;
  }

  /**
   * Records the receipt of `plan` naming `escrowTx` / `settlementTx` as ingest would (or
   * `source`), with the key fingerprint and the requested model. `overrides` change any field
   * (e.g. a stream without usage, a 504). `recordedAt` (epoch ms) is the recorder's clock when
   * it is not the machine's: one ahead of or behind the chain's. The response came then too
   * (`respondedAt`), unless `overrides` says otherwise (null: not known).
   */
  record(
    plan: JobPlan,
    txs: { escrowTx: string | null; settlementTx: string | null },
    overrides: Partial<ScenarioReceipt> = {},
    source: ReceiptSource = "ingest",
    recordedAt?: number,
  ): string {
    return this.recordAs("created", plan, txs, overrides, source, recordedAt);
  }

  /**
   * Records a second receipt of `plan`'s job, already recorded, naming other transactions (a
   * backend's own receipt of the same job id): the job's conflicting receipt.
   */
  recordConflict(
    plan: JobPlan,
    txs: { escrowTx: string | null; settlementTx: string | null },
    overrides: Partial<ScenarioReceipt> = {},
  ): string {
    return this.recordAs("conflict", plan, txs, overrides, "ingest");
  }

  private recordAs(
    outcome: "created" | "conflict",
    plan: JobPlan,
    txs: { escrowTx: string | null; settlementTx: string | null },
    overrides: Partial<ScenarioReceipt>,
    source: ReceiptSource,
    recordedAt?: number,
  ): string {
    const receipt: ScenarioReceipt = {
      jobId: plan.jobId,
      escrowTx: txs.escrowTx,
      settlementTx: txs.settlementTx,
      worker: plan.worker.address,
      creditsRemainingUnits: this.harness.op.balance(plan.vault),
      model: plan.model,
      requestedModel: plan.requestedModel,
      promptTokens: plan.promptTokens,
      completionTokens: plan.completionTokens,
      totalTokens:
        plan.completionTokens === null ? null : (plan.promptTokens ?? 0) + plan.completionTokens,
      maxTokens: plan.maxTokens,
      stream: false,
      httpStatus: 200,
      keyFingerprint: plan.fingerprint,
      ...overrides,
    };
    // The receipt prices by the model asked for and keeps the response's model to compare.
    const { requestedModel, ...rest } = receipt;
    const at = recordedAt ?? this.recorderNow?.();
    this.queue(async () => {
      // A recorder beside the operator: the response came when the receipt was recorded.
      const now = at ?? Date.now();
      const recorded = { respondedAt: now, ...rest };
      const [result] = await recordReceipts(
        this.store,
        [
          requestedModel
            ? { ...recorded, model: requestedModel, responseModel: receipt.model }
            : recorded,
        ],
        source,
        { now },
      );
      if (result?.outcome !== outcome) {
        throw new Error(`receipt ${plan.jobId}: ${result?.outcome}`);
      }
    });
    return plan.jobId;
  }

  /**
   * Posts the receipt of `plan` to `POST /jobs` (ingest token), as a backend using the fetch
   * wrapper would, naming the key by `key_fingerprint` and the asked-for model by
   * `requested_model`. Returns the HTTP status and body of the answer.
   */
  async ingest(
    plan: JobPlan,
    txs: { escrowTx: string; settlementTx: string | null },
    overrides: Record<string, unknown> = {},
  ): Promise<{ status: number; body: unknown }> {
    await this.flush();
    this.app ??= createApp({ store: this.store, log });
    this.ingestToken ??= (
      await createToken(this.store, { role: "ingest", name: "adversary" })
    ).token;
    const body = {
      job_id: plan.jobId,
      escrow_tx: txs.escrowTx,
      settlement_tx: txs.settlementTx,
      worker: plan.worker.address,
      credits_remaining: (Number(this.harness.op.balance(plan.vault)) / 10_000).toString(),
      model: plan.model,
      requested_model: plan.requestedModel,
      key_fingerprint: plan.fingerprint,
      usage:
        plan.completionTokens === null
          ? undefined
          : {
              prompt_tokens: plan.promptTokens,
              completion_tokens: plan.completionTokens,
              total_tokens: (plan.promptTokens ?? 0) + plan.completionTokens,
            },
      ...overrides,
    };
    const res = await this.app.request("/jobs", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${this.ingestToken}` },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  }

  /** Stores a jobs-API answer for a job, as the recorder's lookup does. */
  jobsApi(jobId: string, body: JobsApiBody): void {
    this.queue(() => recordJobsApiAnswer(this.store, jobId, parseJobsApiAnswer(body)));
  }

  /**
   * Jobs-API answers for `plan`'s job naming each of `settlementTxs` in turn as its settlement
   * (with `escrowTx`): each drops the one before, which the job keeps as a conflict signature.
   */
  jobsApiSettlements(plan: JobPlan, escrowTx: string, settlementTxs: readonly string[]): void {
    for (const settlementTx of settlementTxs) {
      this.jobsApi(plan.jobId, {
        status: "settled",
        credits_charged: Number(plan.charge / 10_000n),
        worker_address: plan.worker.address,
        on_chain: { escrow_tx: escrowTx, settlement_tx: settlementTx },
      });
    }
  }

  /** The jobs API's honest answer for a settled job. */
  honestJobsApi(plan: JobPlan, txs: { escrowTx: string; settlementTx: string }): void {
    this.jobsApi(plan.jobId, {
      status: "settled",
      credits_charged: Number(plan.charge / 10_000n),
      worker_address: plan.worker.address,
      on_chain: { escrow_tx: txs.escrowTx, settlement_tx: txs.settlementTx },
    });
  }

  /**
   * A streamed job of key 2 charged its whole lock (its settlement returns nothing to the
   * customer's vault, so no credit vault's ledger reads it), locked, settled, then paid out of
   * escrow again with `memo` (the instructions naming it); recorded as its headers tell it, the
   * jobs API naming the first settlement. Returns the job's plan and the second payout.
   */
  streamedPaidTwice(memo: (plan: JobPlan) => InstructionSpec[]): {
    plan: JobPlan;
    second: string;
  } {
    const op = this.harness.op;
    const plan = op.plan({ keyIndex: 2, maxTokens: 300, completionTokens: 300 });
    const escrowTx = op.send(op.lockIxs(plan)).signature;
    const first = op.send(op.settleIxs(plan)).signature;
    const second = op.send([...op.payoutIxs(plan), ...memo(plan)]).signature;
    this.record(plan, { escrowTx, settlementTx: null }, { stream: true });
    this.honestJobsApi(plan, { escrowTx, settlementTx: first });
    return { plan, second };
  }

  /**
   * Jobs A (key 1) and B (key 2), each locked and settled, A's settlement paying B's worker
   * again under B's settle memo (`memo` writes it: at top level, or by a call): a second payout
   * of B inside A's own step. Records nothing. Returns the plans and the four transactions.
   */
  paidInsideAnother(memo: (text: string) => InstructionSpec) {
    const op = this.harness.op;
    const a = op.plan({ keyIndex: 1, maxTokens: 300, completionTokens: 300 });
    const b = op.plan({ keyIndex: 2, maxTokens: 300, completionTokens: 300 });
    const lockA = op.send(op.lockIxs(a)).signature;
    const lockB = op.send(op.lockIxs(b)).signature;
    const settleB = op.send(op.settleIxs(b)).signature;
    const settleA = op.send([
      ...op.settleIxs(a),
      ...op.payoutIxs(b),
      memo(`decentral:settle:${b.jobId}`),
    ]).signature;
    return { a, b, lockA, lockB, settleB, settleA, signatures: [lockA, lockB, settleB, settleA] };
  }

  /**
   * Records both jobs of `paidInsideAnother` with the jobs API's answers and, once final, checks
   * that B, paid again inside A's settlement, keeps it and fails `settlement.single`, A failing
   * its `settlement.memo` (a memo names another job).
   */
  async expectPaidInsideKept(s: ReturnType<Scenario["paidInsideAnother"]>): Promise<void> {
    this.recordWithJobsApi(s.a, { escrowTx: s.lockA, settlementTx: s.settleA });
    this.recordWithJobsApi(s.b, { escrowTx: s.lockB, settlementTx: s.settleB });
    await this.harness.finalized();
    expect(await this.verdicts(s.a.jobId, s.b.jobId)).toEqual([
      discrepancy("settlement.memo"),
      discrepancy("settlement.single"),
    ]);
    expect((await readJob(this.store, s.b.jobId))?.conflictSignatures).toEqual([s.settleA]);
  }

  /**
   * Records the receipt of `plan` naming `txs` as ingest would, and the jobs API's honest answer
   * naming the same two transactions: a job its response and the jobs API tell alike.
   */
  recordWithJobsApi(plan: JobPlan, txs: { escrowTx: string; settlementTx: string }): string {
    this.record(plan, txs);
    this.honestJobsApi(plan, txs);
    return plan.jobId;
  }

  /**
   * A first honest job of `keyIndex`, verified on its own: the key's credit vault is then known
   * (learned from this first lock) before any fraud of the scenario is looked at.
   */
  async pinKey(keyIndex: number, input: PlanInput = {}): Promise<JobPlan> {
    const plan = this.harness.op.plan({ ...input, keyIndex });
    const txs = this.harness.op.honestJob(plan);
    this.record(plan, txs);
    await this.verify();
    return plan;
  }

  /** A verifier of this scenario (store, profile, quick timings) reading the chain via `rpc`. */
  verifierOver(rpc: RpcPool) {
    return createVerifier({
      store: this.store,
      rpc,
      profile: this.profile,
      log,
      options: quickVerifierOptions,
    });
  }

  /** Runs the verifier until every recorded job has a final verdict. */
  async verify(): Promise<void> {
    await this.flush();
    const verifier = this.verifierOver(this.harness.rpc);
    const summary = await verifier.runUntilSettled({}, { timeoutMs: 20_000 });
    if (summary.status !== "completed") {
      throw new Error(`verification did not finish: ${JSON.stringify(summary)}`);
    }
  }

  /** Verdict and failing checks of one job, as the audit record reads them. */
  async outcome(jobId: string): Promise<JobOutcome> {
    await this.flush();
    const rows = await reportsStore(this.store).auditRows(jobId);
    if (!rows) throw new Error(`no job ${jobId}`);
    const failing = rows.checks
      .filter((c) => c.outcome === "fail")
      .map((c) => c.name)
      .sort();
    return { verdict: rows.job.verdict, failing };
  }

  /** One stored check of a job, with its evidence parsed (null when it was not written). */
  async check(
    jobId: string,
    name: string,
  ): Promise<{
    outcome: string;
    reason: string | null;
    expected: unknown;
    actual: unknown;
  } | null> {
    await this.flush();
    const rows = await reportsStore(this.store).auditRows(jobId);
    const row = rows?.checks.find((c) => c.name === name);
    if (!row) return null;
    const parse = (v: unknown) => (typeof v === "string" ? JSON.parse(v) : v);
    return {
      outcome: row.outcome,
      reason: row.reason,
      expected: parse(row.expected),
      actual: parse(row.actual),
    };
  }

  /** Verifies, then returns the outcome of each job asked for. */
  async verdicts(...jobIds: string[]): Promise<JobOutcome[]> {
    await this.verify();
    return Promise.all(jobIds.map((id) => this.outcome(id)));
  }
}

export interface AdversaryHarness {
  world: LocalWorld;
  op: Operator;
  rpc: RpcPool;
  /** A scenario with its own store, verified under `profile` (localnet by default). */
  scenario(profile?: Profile): Promise<Scenario>;
  /** Waits until everything sent so far is finalized on the local chain. */
  finalized(): Promise<void>;
  /**
   * Waits for the receipts the scenarios made so far queued (`Scenario.flush`), each scenario's
   * first failed write thrown: a test that reads the chain alone never flushed them, and its
   * store was closed under them (on PostgreSQL, "Cannot use a pool after calling end on the
   * pool", unhandled, on a loaded host).
   */
  flushScenarios(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The chain's clock in a harness: the machine's, plus what `advance` moved it on for good (past
 * a settlement window, into the next period), plus a lead that `lead` gives (a slot moved on at
 * once) and that the clock takes back by running at half speed until it is beside the machine's
 * again. It never goes back. Moved on for good at each slot, it ran ~10 ms a slot ahead of the
 * recorder's clock, more with each case of a file (~100 ms after two), and receipts recorded
 * right after their settlement were dated a second before its block.
 */
export function harnessClock(machine: () => number = Date.now) {
  let offset = 0;
  // Where the lead was last set: the machine's time and the chain's then.
  let setAt = machine();
  let chainAt = setAt;
  const at = (t: number) => {
    const lead = chainAt - (setAt + offset);
    const elapsed = t - setAt;
    return elapsed >= 2 * lead ? t + offset : chainAt + Math.floor(elapsed / 2);
  };
  const moveOn = (ms: number, forGood: boolean) => {
    const t = machine();
    const chain = at(t);
    if (forGood) offset += ms;
    setAt = t;
    chainAt = chain + ms;
  };
  // Set while `hold` runs: the clock reads this time, so its slot cannot end meanwhile.
  let held: number | undefined;
  return {
    now: () => held ?? at(machine()),
    advance: (ms: number) => moveOn(ms, true),
    lead: (ms: number) => moveOn(ms, false),
    /**
     * Runs `fn` with the clock stopped: everything it sends lands in the slot of its start,
     * however long a loaded host takes over it. The clock then reads as if it had run on (it
     * jumps forward, never back).
     */
    hold<T>(fn: () => T): T {
      held = at(machine());
      try {
        return fn();
      } finally {
        held = undefined;
      }
    },
  };
}

/**
 * Starts one local world for a test file (10 ms slots, finality after 3 slots, unless `chain`
 * says otherwise) whose clock the operator can move forward, and an RPC pool over it.
 */
export async function startAdversaryHarness(
  options: {
    openStore?: () => Promise<Store>;
    /** Slot length and finality of the local chain, e.g. mainnet's ~13 s in miniature. */
    chain?: { slotMs: number; finalitySlots: number };
    /**
     * Slots a blockhash stays valid (150 unless given): 1.5 s of 10 ms slots, which a test
     * sending a transaction signed beforehand can outlast on a loaded host.
     */
    blockhashValiditySlots?: number;
  } = {},
): Promise<AdversaryHarness> {
  const openStore = options.openStore ?? (async () => createTestStore());
  const clock = harnessClock();
  const world = await startLocalWorld({
    ...(options.chain ?? { slotMs: 10, finalitySlots: 3 }),
    blockhashValiditySlots: options.blockhashValiditySlots,
    now: clock.now,
  });
  const op = new Operator(world, clock);
  const scenarios: Scenario[] = [];
  const rpc = createRpcPool({
    endpoints: [{ url: world.rpcUrl, rateLimitPerSec: 500, concurrency: 4, timeoutMs: 2000 }],
    backoffBaseMs: 20,
    backoffMaxMs: 200,
    breakerCooldownMs: 500,
    // The machine's clock is the world's: a block time ahead of it is refused as one the
    // chain cannot have yet.
    now: clock.now,
  });
  const harness: AdversaryHarness = {
    world,
    op,
    rpc,
    scenario: async (profile = localnetProfile) => {
      const scenario = new Scenario(harness, profile, await openStore());
      scenarios.push(scenario);
      return scenario;
    },
    async flushScenarios() {
      for (const scenario of scenarios.splice(0)) await scenario.flush();
    },
    async finalized() {
      // Past the local chain's finality (3 slots) with a margin. The clock is moved on by those
      // slots at once, as a lead it takes back (`harnessClock`, as `nextSlot` does): waited for
      // on a timer, the five slots of 10 ms took 100-170 ms on a loaded host, at each of the
      // suite's hundreds of calls.
      const target = world.currentSlot() + 5;
      clock.lead((target - world.currentSlot()) * world.chain.slotMs);
      // A turn of the event loop, as the timer gave: what runs beside the test goes on meanwhile.
      await new Promise((r) => setImmediate(r));
      while (world.currentSlot() < target) await new Promise((r) => setTimeout(r, 10));
    },
    async close() {
      await rpc.close();
      await world.close();
    },
  };
  return harness;
}

/**
 * One adversary harness for the enclosing file or describe block: started before its tests,
 * closed after them. Read its members inside tests and hooks (they are filled in once started).
 */
export function useAdversaryHarness(
  options: Parameters<typeof startAdversaryHarness>[0] = {},
): AdversaryHarness {
  const harness = useStarted(() => startAdversaryHarness(options));
  // After each test, before the stores it opened are closed: vitest runs a block's "after"
  // hooks last registered first, and a file opens its stores' hooks before the harness.
  afterEach(() => harness.flushScenarios());
  return harness;
}
