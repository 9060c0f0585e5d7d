import bs58 from "bs58";
import { AppError } from "../errors.js";
import { MAX_STORED_UNITS } from "../money.js";
import { isBase58OfLength } from "./base58.js";
import { parseJsonLossless } from "./json-text.js";
import type {
  SolChange,
  TokenChange,
  TokenInstruction,
  TransactionFacts,
} from "./transaction-facts.js";
import { decodeWireTransaction, WireFormatError } from "./wire-transaction.js";

/** SPL Memo v2/v3 and the old v1 program: their instruction data is the memo text (UTF-8). */
export const MEMO_PROGRAM_IDS: ReadonlySet<string> = new Set([
  "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",
  "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo",
]);

/** SPL Token and Token-2022: their instructions are listed by kind in the facts. */
export const TOKEN_PROGRAM_IDS: ReadonlySet<string> = new Set([
  "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
  "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
]);

/** Token instruction names by discriminator, spelled as the jsonParsed encoding spells them. */
const tokenInstructionKinds = [
  "initializeMint",
  "initializeAccount",
  "initializeMultisig",
  "transfer",
  "approve",
  "revoke",
  "setAuthority",
  "mintTo",
  "burn",
  "closeAccount",
  "freezeAccount",
  "thawAccount",
  "transferChecked",
  "approveChecked",
  "mintToChecked",
  "burnChecked",
  "initializeAccount2",
  "syncNative",
  "initializeAccount3",
  "initializeMultisig2",
  "initializeMint2",
  "getAccountDataSize",
  "initializeImmutableOwner",
  "amountToUiAmount",
  "uiAmountToAmount",
  "initializeMintCloseAuthority",
  "transferFeeExtension",
  "confidentialTransferExtension",
  "defaultAccountStateExtension",
  "reallocate",
  "memoTransferExtension",
  "createNativeMint",
  "initializeNonTransferableMint",
  "interestBearingMintExtension",
  "cpiGuardExtension",
  "initializePermanentDelegate",
  "transferHookExtension",
] as const;

/**
 * Token-2022 extension instructions told apart by their second byte, where what they may move
 * depends on it, spelled as jsonParsed spells them. A transfer fee's TransferCheckedWithFee
 * keeps the extension's name (its amount is kept); a confidential transfer's other
 * instructions move no account's balance and keep it too.
 */
const EXTENSION_SUB_KINDS: ReadonlyMap<string, readonly (string | undefined)[]> = new Map([
  [
    "transferFeeExtension",
    [
      "initializeTransferFeeConfig",
      undefined,
      "withdrawWithheldTokensFromMint",
      "withdrawWithheldTokensFromAccounts",
      "harvestWithheldTokensToMint",
      "setTransferFee",
    ],
  ],
  [
    "confidentialTransferExtension",
    [...new Array<undefined>(5), "depositConfidentialTransfer", "withdrawConfidentialTransfer"],
  ],
]);

/**
 * SPL Token's (p-token) and Token-2022's Batch: one instruction that runs several token
 * instructions in turn (see `batchParts`).
 */
const BATCH = 255;

function tokenKind(data: Uint8Array): string {
  const code = data[0];
  if (code === undefined) return "unknown:empty";
  if (code === BATCH) return "batch";
  const kind = tokenInstructionKinds[code] ?? `unknown:${code}`;
  const sub = data[1] === undefined ? undefined : EXTENSION_SUB_KINDS.get(kind)?.[data[1]];
  return sub ?? kind;
}

type Json = Record<string, unknown>;

/**
 * One instruction reduced to what facts need, in execution order: a token instruction, and
 * after it each one a batch of it runs.
 */
interface Step {
  programId: string;
  memo: string | null;
  tokens: TokenInstruction[];
}

interface DecodedTransaction {
  signatures: string[];
  version: "legacy" | 0;
  accounts: string[];
  topLevel: Step[];
}

const utf8 = new TextDecoder("utf-8");

function malformed(reason: string, field?: string): never {
  throw new AppError("malformed_transaction", `malformed transaction: ${reason}`, {
    ...(field ? { field } : {}),
  });
}

function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function record(value: unknown, path: string): Json {
  if (!isRecord(value)) malformed(`${path} is missing or not an object`, path);
  return value;
}

function array(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) malformed(`${path} is missing or not an array`, path);
  return value;
}

function optionalArray(value: unknown, path: string): unknown[] {
  return value === undefined || value === null ? [] : array(value, path);
}

function string(value: unknown, path: string): string {
  if (typeof value !== "string") malformed(`${path} is missing or not a string`, path);
  return value;
}

function safeInt(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    malformed(`${path} is not a non-negative safe integer`, path);
  }
  return value;
}

/**
 * Lamports are JSON numbers. A value above 2^53 cannot be exact once `JSON.parse` has read it,
 * so it is accepted only as a decimal string (what `parseJsonLossless` produces) and a lossy
 * number is rejected rather than rounded.
 */
function lamports(value: unknown, path: string): bigint {
  if (typeof value === "number") {
    if (Number.isSafeInteger(value) && value >= 0) return BigInt(value);
    malformed(
      value < 0 || !Number.isInteger(value)
        ? `${path} is not a lamport amount (a whole number of 0 or more): ${value}`
        : `${path} is not an exact integer: above 2^53, it was rounded where it was read`,
      path,
    );
  }
  if (typeof value === "string" && /^\d+$/.test(value)) return BigInt(value);
  return malformed(`${path} is not a lamport amount`, path);
}

function base58Bytes(value: unknown, path: string): Uint8Array {
  const text = string(value, path);
  try {
    return bs58.decode(text);
  } catch {
    return malformed(`${path} is not base58`, path);
  }
}

function pubkey(value: unknown, path: string): string {
  const text = string(value, path);
  if (!isBase58OfLength(text, 32)) malformed(`${path} is not a 32-byte public key`, path);
  return text;
}

function signature(value: unknown, path: string): string {
  const text = string(value, path);
  if (!isBase58OfLength(text, 64)) malformed(`${path} is not a 64-byte signature`, path);
  return text;
}

function index(value: unknown, length: number, path: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value >= length) {
    malformed(`${path} is out of range (${String(value)} of ${length} accounts)`, path);
  }
  return value;
}

/**
 * A memo's text fit to store: each NUL becomes U+FFFD. The Memo program takes any UTF-8, NUL
 * too, and anyone can send a unit into a credit vault under such a memo, but PostgreSQL text
 * cannot hold NUL: the write of every line and verdict naming it failed, each round, for good.
 * A replaced NUL still names no job a memo without it names ("…job_a\u0000" is not job_a).
 */
export function storableMemo(text: string): string {
  return text.includes("\u0000") ? text.replaceAll("\u0000", "\ufffd") : text;
}

function memoText(programId: string, data: Uint8Array): string | null {
  return MEMO_PROGRAM_IDS.has(programId) ? storableMemo(utf8.decode(data)) : null;
}

/** A compiled instruction (`programIdIndex`, `accounts`, base58 `data`) as in json/base64 meta. */
function compiledStep(ix: Json, accounts: string[], path: string): Step {
  const programId = accounts[index(ix.programIdIndex, accounts.length, `${path}.programIdIndex`)]!;
  const named = array(ix.accounts, `${path}.accounts`).map(
    (a, i) => accounts[index(a, accounts.length, `${path}.accounts[${i}]`)]!,
  );
  const decoded = MEMO_PROGRAM_IDS.has(programId) || TOKEN_PROGRAM_IDS.has(programId);
  const data = decoded ? base58Bytes(ix.data, `${path}.data`) : new Uint8Array();
  if (!decoded) string(ix.data, `${path}.data`);
  return stepOf(programId, data, named);
}

/** Token instructions whose first account is given a delegate: `source` is kept for them. */
const APPROVE_KINDS: ReadonlySet<string> = new Set(["approve", "approveChecked"]);

/** An Approve's or ApproveChecked's source, when the instruction names one. */
const optionalSource = (kind: string, source: unknown) =>
  APPROVE_KINDS.has(kind) && typeof source === "string" && isBase58OfLength(source, 32)
    ? { source }
    : {};

/** What an Approve or ApproveChecked lets its delegate spend (u64 after the kind's byte). */
function compiledApproved(kind: string, data: Uint8Array) {
  if (!APPROVE_KINDS.has(kind)) return {};
  const approved = u64At(data, 1);
  return approved === null ? {} : { approved };
}

/** The same of a jsonParsed Approve's `amount` or ApproveChecked's `tokenAmount.amount`. */
function parsedApproved(kind: string, info: Json) {
  if (!APPROVE_KINDS.has(kind)) return {};
  const tokenAmount = isRecord(info.tokenAmount) ? info.tokenAmount.amount : undefined;
  const text = info.amount ?? tokenAmount;
  return typeof text === "string" && /^\d{1,20}$/.test(text) ? { approved: BigInt(text) } : {};
}

/** Token instructions that make their first account a token account: it is kept for them. */
export const INITIALIZE_ACCOUNT_KINDS: ReadonlySet<string> = new Set([
  "initializeAccount",
  "initializeAccount2",
  "initializeAccount3",
]);

const isKey = (v: unknown): v is string => typeof v === "string" && isBase58OfLength(v, 32);

/**
 * The account an InitializeAccount (1, 2 or 3) makes a token account, and its mint (the account
 * after it), when it names them.
 */
const optionalInitialized = (kind: string, account: unknown, mint: unknown) => {
  if (!INITIALIZE_ACCOUNT_KINDS.has(kind) || !isKey(account)) return {};
  return isKey(mint) ? { initialized: account, mint } : { initialized: account };
};

/**
 * Token instructions that move money, by jsonParsed name: where the account money leaves
 * (`from`) or enters (`to`), the account that signs for the source (`signer`: its owner, a
 * delegate, or a multisig) and the mint (`mint`; a plain Transfer names none) sit among the
 * instruction's accounts in order, and where the amount (u64, little-endian) starts in the
 * instruction's data. A succeeded transaction's balances show only each account's net change:
 * money a transaction takes out of an account and puts back in (or more) shows as a smaller
 * change, or none, and only these tell.
 */
const MOVEMENT_LAYOUT: ReadonlyMap<
  string,
  { from?: number; to?: number; signer?: number; mint?: number; amountAt: number }
> = new Map([
  ["transfer", { from: 0, to: 1, signer: 2, amountAt: 1 }],
  ["transferChecked", { from: 0, to: 2, signer: 3, mint: 1, amountAt: 1 }],
  ["transferCheckedWithFee", { from: 0, to: 2, signer: 3, mint: 1, amountAt: 2 }],
  ["burn", { from: 0, signer: 2, mint: 1, amountAt: 1 }],
  ["burnChecked", { from: 0, signer: 2, mint: 1, amountAt: 1 }],
  ["mintTo", { to: 1, mint: 0, amountAt: 1 }],
  ["mintToChecked", { to: 1, mint: 0, amountAt: 1 }],
]);

/** Token-2022's TransferFeeExtension sub-instruction TransferCheckedWithFee. */
const TRANSFER_FEE_EXTENSION = 26;
const TRANSFER_CHECKED_WITH_FEE = 1;

/** The u64 (little-endian) at `at` in `data`, or null when the data is too short. */
function u64At(data: Uint8Array, at: number): bigint | null {
  if (data.length < at + 8) return null;
  let value = 0n;
  for (let i = 7; i >= 0; i--) value = (value << 8n) | BigInt(data[at + i]!);
  return value;
}

/**
 * The source, destination, signing authority, mint and amount of a compiled instruction that
 * moves money, else {}.
 */
function compiledMovement(data: Uint8Array, accounts: string[]) {
  let name = tokenKind(data);
  if (data[0] === TRANSFER_FEE_EXTENSION && data[1] === TRANSFER_CHECKED_WITH_FEE) {
    name = "transferCheckedWithFee";
  }
  const layout = MOVEMENT_LAYOUT.get(name);
  if (!layout) return {};
  const amount = u64At(data, layout.amountAt);
  const source = layout.from === undefined ? undefined : accounts[layout.from];
  const destination = layout.to === undefined ? undefined : accounts[layout.to];
  const authority = layout.signer === undefined ? undefined : accounts[layout.signer];
  const mint = layout.mint === undefined ? undefined : accounts[layout.mint];
  // Short data or missing accounts: the program refuses it, and it moves nothing.
  if (amount === null || (layout.from !== undefined && source === undefined)) return {};
  if (layout.to !== undefined && destination === undefined) return {};
  return {
    ...(source === undefined ? {} : { source }),
    ...(destination === undefined ? {} : { destination }),
    ...(authority === undefined ? {} : { authority }),
    ...(mint === undefined ? {} : { mint }),
    amount,
  };
}

/** The same of a jsonParsed instruction's `info`, else {}. */
function parsedMovement(kind: string, info: Json) {
  const layout = MOVEMENT_LAYOUT.get(kind);
  if (!layout) return {};
  const key = (v: unknown) => (typeof v === "string" && isBase58OfLength(v, 32) ? v : undefined);
  const source = layout.from === undefined ? undefined : key(info.source ?? info.account);
  const destination = layout.to === undefined ? undefined : key(info.destination ?? info.account);
  const authority =
    layout.signer === undefined ? undefined : key(info.authority ?? info.multisigAuthority);
  const mint = layout.mint === undefined ? undefined : key(info.mint);
  const tokenAmount = isRecord(info.tokenAmount) ? info.tokenAmount.amount : undefined;
  const text = info.amount ?? tokenAmount;
  if (typeof text !== "string" || !/^\d{1,20}$/.test(text)) return {};
  if (layout.from !== undefined && source === undefined) return {};
  if (layout.to !== undefined && destination === undefined) return {};
  return {
    ...(source === undefined ? {} : { source }),
    ...(destination === undefined ? {} : { destination }),
    ...(authority === undefined ? {} : { authority }),
    ...(mint === undefined ? {} : { mint }),
    amount: BigInt(text),
  };
}

/**
 * Token-2022 instructions that move one account's balance by an amount their data does not
 * hold (withheld fees withdrawn into it; a confidential deposit out of its public balance, or a
 * withdrawal into it), and where that account sits among their accounts. The program reads no
 * account past those an instruction takes: any other account named there moves nothing.
 */
const UNKEPT_MOVEMENT_LAYOUT: ReadonlyMap<string, { from?: number; to?: number }> = new Map([
  ["withdrawWithheldTokensFromMint", { to: 1 }],
  ["withdrawWithheldTokensFromAccounts", { to: 1 }],
  ["depositConfidentialTransfer", { from: 0 }],
  ["withdrawConfidentialTransfer", { to: 0 }],
]);

/** The account such an instruction moves, as its `source` or `destination`, else {}. */
function compiledUnkeptMovement(kind: string, accounts: string[]) {
  const layout = UNKEPT_MOVEMENT_LAYOUT.get(kind);
  const source = layout?.from === undefined ? undefined : accounts[layout.from];
  const destination = layout?.to === undefined ? undefined : accounts[layout.to];
  return {
    ...(source === undefined ? {} : { source }),
    ...(destination === undefined ? {} : { destination }),
  };
}

/** The same of a jsonParsed instruction's `info`: the fee recipient, or the deposit's account. */
function parsedUnkeptMovement(kind: string, info: Json) {
  const layout = UNKEPT_MOVEMENT_LAYOUT.get(kind);
  if (layout === undefined) return {};
  const value = layout.from === undefined ? (info.feeRecipient ?? info.destination) : info.source;
  if (typeof value !== "string" || !isBase58OfLength(value, 32)) return {};
  return layout.from === undefined ? { destination: value } : { source: value };
}

function stepOf(programId: string, data: Uint8Array, accounts: string[]): Step {
  if (!TOKEN_PROGRAM_IDS.has(programId)) {
    return { programId, memo: memoText(programId, data), tokens: [] };
  }
  const parts = batchParts(data, accounts).map((p) =>
    tokenInstruction(programId, p.data, p.accounts),
  );
  return { programId, memo: null, tokens: [tokenInstruction(programId, data, accounts), ...parts] };
}

function tokenInstruction(
  programId: string,
  data: Uint8Array,
  accounts: string[],
): TokenInstruction {
  const kind = tokenKind(data);
  return {
    programId,
    kind,
    accounts: [...new Set(accounts)].sort(),
    ...optionalSource(kind, accounts[0]),
    ...optionalInitialized(kind, accounts[0], accounts[1]),
    ...compiledMovement(data, accounts),
    ...compiledUnkeptMovement(kind, accounts),
    ...compiledApproved(kind, data),
  };
}

/**
 * The instructions a Batch runs, each with its data and its accounts, in order. Its data holds,
 * for each, how many of the batch's accounts it takes (the next ones, in turn), the length of
 * its data, and that data; the program refuses a batch that does not read so, or that holds a
 * batch. Read as one instruction of a kind not named, a batch moving a customer's top-up into
 * the vault and as much out to the operator left the vault's balance as it was: its line read
 * as no movement, and an Approve of the vault inside one was no delegate given.
 */
function batchParts(
  data: Uint8Array,
  accounts: string[],
): { data: Uint8Array; accounts: string[] }[] {
  if (data[0] !== BATCH) return [];
  const parts: { data: Uint8Array; accounts: string[] }[] = [];
  let at = 1;
  let next = 0;
  while (at + 2 <= data.length) {
    const count = data[at]!;
    const end = at + 2 + data[at + 1]!;
    if (end === at + 2 || end > data.length || next + count > accounts.length) break;
    parts.push({ data: data.subarray(at + 2, end), accounts: accounts.slice(next, next + count) });
    at = end;
    next += count;
  }
  return parts;
}

/** Account fields of a jsonParsed token instruction (a multisig's signers aside). */
const AUTHORITY_FIELDS = ["authority", "multisigAuthority"];
const OWNER_FIELDS = ["owner", "multisigOwner"];
const MINT_AUTHORITY_FIELDS = ["mintAuthority", "multisigMintAuthority"];
const FREEZE_AUTHORITY_FIELDS = ["freezeAuthority", "multisigFreezeAuthority"];

/**
 * Where each token instruction's jsonParsed `info` names its accounts. The rest of `info` is
 * the instruction's data, and some of it is keys too (SetAuthority's `newAuthority`,
 * InitializeMint's `mintAuthority`, InitializeAccount3's `owner`, a transfer hook's program):
 * whoever signs the transaction writes any address there, the vault's too, and it names no
 * account the instruction touches. Read as one, a mint made with the vault's address as its
 * authority passed for an instruction touching the vault that moves money by an amount the
 * facts do not keep, and a gain of the vault that no instruction showed was no longer judged.
 */
const PARSED_ACCOUNT_FIELDS: ReadonlyMap<string, readonly string[]> = new Map([
  ["initializeMint", ["mint", "rentSysvar"]],
  ["initializeMint2", ["mint"]],
  ["initializeAccount", ["account", "mint", "owner", "rentSysvar"]],
  ["initializeAccount2", ["account", "mint", "rentSysvar"]],
  ["initializeAccount3", ["account", "mint"]],
  ["initializeMultisig", ["multisig", "rentSysvar"]],
  ["initializeMultisig2", ["multisig"]],
  ["transfer", ["source", "destination", ...AUTHORITY_FIELDS]],
  ["approve", ["source", "delegate", ...OWNER_FIELDS]],
  ["revoke", ["source", ...OWNER_FIELDS]],
  ["setAuthority", ["account", "mint", ...AUTHORITY_FIELDS]],
  ["mintTo", ["mint", "account", ...MINT_AUTHORITY_FIELDS]],
  ["burn", ["account", "mint", ...AUTHORITY_FIELDS]],
  ["closeAccount", ["account", "destination", ...OWNER_FIELDS]],
  ["freezeAccount", ["account", "mint", ...FREEZE_AUTHORITY_FIELDS]],
  ["thawAccount", ["account", "mint", ...FREEZE_AUTHORITY_FIELDS]],
  ["transferChecked", ["source", "mint", "destination", ...AUTHORITY_FIELDS]],
  ["approveChecked", ["source", "mint", "delegate", ...OWNER_FIELDS]],
  ["mintToChecked", ["mint", "account", ...MINT_AUTHORITY_FIELDS]],
  ["burnChecked", ["account", "mint", ...AUTHORITY_FIELDS]],
  ["syncNative", ["account"]],
  ["getAccountDataSize", ["mint"]],
  ["initializeImmutableOwner", ["account"]],
  ["amountToUiAmount", ["mint"]],
  ["uiAmountToAmount", ["mint"]],
  ["initializeMintCloseAuthority", ["mint"]],
  ["transferCheckedWithFee", ["source", "mint", "destination", ...AUTHORITY_FIELDS]],
  ["reallocate", ["account", "payer", "systemProgram", ...OWNER_FIELDS]],
  ["createNativeMint", ["payer", "nativeMint", "systemProgram"]],
  ["initializeNonTransferableMint", ["mint"]],
  ["initializePermanentDelegate", ["mint"]],
  ["withdrawWithheldTokensFromMint", ["mint", "feeRecipient"]],
  ["withdrawWithheldTokensFromAccounts", ["mint", "feeRecipient"]],
]);

/**
 * Fields that name an account in every other (extension) instruction's `info`. An account
 * left unread there is judged as untouched by it, which never hides money: its balance change
 * is then one no instruction shows.
 */
const OTHER_ACCOUNT_FIELDS = ["account", "source", "destination", "mint", ...OWNER_FIELDS];

/** The accounts a jsonParsed token instruction names, by its kind's account fields. */
function parsedAccounts(kind: string, info: Json): string[] {
  const fields = PARSED_ACCOUNT_FIELDS.get(kind) ?? OTHER_ACCOUNT_FIELDS;
  return fields.flatMap((field) => {
    const value = info[field];
    return typeof value === "string" && isBase58OfLength(value, 32) ? [value] : [];
  });
}

/** A jsonParsed instruction: `{program, programId, parsed}` or `{programId, accounts, data}`. */
function parsedStep(ix: Json, path: string): Step {
  const programId = pubkey(ix.programId, `${path}.programId`);
  if (TOKEN_PROGRAM_IDS.has(programId)) {
    if (isRecord(ix.parsed)) {
      const kind = string(ix.parsed.type, `${path}.parsed.type`);
      const info = isRecord(ix.parsed.info) ? ix.parsed.info : {};
      const accounts = parsedAccounts(kind, info);
      return {
        programId,
        memo: null,
        tokens: [
          {
            programId,
            kind,
            accounts: [...new Set(accounts)].sort(),
            ...optionalSource(kind, info.source),
            ...optionalInitialized(kind, info.account, info.mint),
            ...parsedMovement(kind, info),
            ...parsedUnkeptMovement(kind, info),
            ...parsedApproved(kind, info),
          },
        ],
      };
    }
    const accounts = array(ix.accounts, `${path}.accounts`).map((a, i) =>
      pubkey(a, `${path}.accounts[${i}]`),
    );
    return stepOf(programId, base58Bytes(ix.data, `${path}.data`), accounts);
  }
  if (!MEMO_PROGRAM_IDS.has(programId)) return { programId, memo: null, tokens: [] };
  if (typeof ix.parsed === "string") {
    return { programId, memo: storableMemo(ix.parsed), tokens: [] };
  }
  return stepOf(programId, base58Bytes(ix.data, `${path}.data`), []);
}

function anyStep(ix: unknown, accounts: string[], path: string): Step {
  const item = record(ix, path);
  return "programIdIndex" in item ? compiledStep(item, accounts, path) : parsedStep(item, path);
}

/** Static keys, then `meta.loadedAddresses.writable`, then `.readonly`, checked against lookups. */
function compiledAccountList(
  staticKeys: string[],
  version: "legacy" | 0,
  lookupCounts: { writable: number; readonly: number },
  meta: Json,
): string[] {
  const loaded = meta.loadedAddresses;
  let writable: string[] = [];
  let readonly: string[] = [];
  if (loaded !== undefined && loaded !== null) {
    const l = record(loaded, "meta.loadedAddresses");
    writable = array(l.writable, "meta.loadedAddresses.writable").map((k, i) =>
      pubkey(k, `meta.loadedAddresses.writable[${i}]`),
    );
    readonly = array(l.readonly, "meta.loadedAddresses.readonly").map((k, i) =>
      pubkey(k, `meta.loadedAddresses.readonly[${i}]`),
    );
  }
  if (writable.length !== lookupCounts.writable || readonly.length !== lookupCounts.readonly) {
    malformed(
      `meta.loadedAddresses lists ${writable.length}+${readonly.length} addresses but the ${version} message's lookups need ${lookupCounts.writable}+${lookupCounts.readonly}`,
      "meta.loadedAddresses",
    );
  }
  return [...staticKeys, ...writable, ...readonly];
}

function decodeWire(tx: unknown[], meta: Json): DecodedTransaction {
  const [payload, encoding] = tx;
  const text = string(payload, "transaction[0]");
  let bytes: Uint8Array;
  if (encoding === "base64") {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
      malformed("transaction[0] is not valid base64", "transaction");
    }
    bytes = Buffer.from(text, "base64");
  } else if (encoding === "base58") {
    bytes = base58Bytes(text, "transaction[0]");
  } else {
    return malformed(`unsupported transaction encoding ${JSON.stringify(encoding)}`, "transaction");
  }
  let wire: ReturnType<typeof decodeWireTransaction>;
  try {
    wire = decodeWireTransaction(bytes);
  } catch (error) {
    if (error instanceof WireFormatError) malformed(`transaction bytes: ${error.message}`);
    throw error;
  }
  const counts = { writable: 0, readonly: 0 };
  for (const lookup of wire.addressTableLookups) {
    counts.writable += lookup.writableIndexes.length;
    counts.readonly += lookup.readonlyIndexes.length;
  }
  const accounts = compiledAccountList(wire.accountKeys, wire.version, counts, meta);
  const topLevel = wire.instructions.map((ix, i) => {
    const path = `transaction.message.instructions[${i}]`;
    const programId = accounts[index(ix.programIdIndex, accounts.length, path)]!;
    const named = ix.accounts.map(
      (a, j) => accounts[index(a, accounts.length, `${path}.accounts[${j}]`)]!,
    );
    return stepOf(programId, ix.data, named);
  });
  return { signatures: wire.signatures, version: wire.version, accounts, topLevel };
}

function decodeJson(tx: Json, meta: Json, declaredVersion: "legacy" | 0): DecodedTransaction {
  const signatures = array(tx.signatures, "transaction.signatures").map((s, i) =>
    string(s, `transaction.signatures[${i}]`),
  );
  const message = record(tx.message, "transaction.message");
  const keys = array(message.accountKeys, "transaction.message.accountKeys");
  const instructions = array(message.instructions, "transaction.message.instructions");
  if (isRecord(keys[0])) {
    // jsonParsed: keys are objects and already include the loaded addresses, in list order.
    const accounts = keys.map((k, i) =>
      pubkey(record(k, `accountKeys[${i}]`).pubkey, `transaction.message.accountKeys[${i}].pubkey`),
    );
    const topLevel = instructions.map((ix, i) =>
      anyStep(ix, accounts, `transaction.message.instructions[${i}]`),
    );
    return { signatures, version: declaredVersion, accounts, topLevel };
  }
  const staticKeys = keys.map((k, i) => pubkey(k, `transaction.message.accountKeys[${i}]`));
  const header = message.header;
  if (isRecord(header)) {
    const required = safeInt(header.numRequiredSignatures, "message.header.numRequiredSignatures");
    if (required !== signatures.length) {
      malformed(
        `${signatures.length} signatures but the header requires ${required}`,
        "transaction.signatures",
      );
    }
  }
  const counts = { writable: 0, readonly: 0 };
  optionalArray(message.addressTableLookups, "message.addressTableLookups").forEach((l, i) => {
    const lookup = record(l, `message.addressTableLookups[${i}]`);
    counts.writable += array(lookup.writableIndexes, "writableIndexes").length;
    counts.readonly += array(lookup.readonlyIndexes, "readonlyIndexes").length;
  });
  const accounts = compiledAccountList(staticKeys, declaredVersion, counts, meta);
  const topLevel = instructions.map((ix, i) =>
    compiledStep(record(ix, "instruction"), accounts, `transaction.message.instructions[${i}]`),
  );
  return { signatures, version: declaredVersion, accounts, topLevel };
}

interface TokenBalance {
  accountIndex: number;
  mint: string;
  owner: string | null;
  programId: string | null;
  decimals: number;
  amount: bigint;
}

function tokenBalances(
  value: unknown,
  accountCount: number,
  path: string,
): Map<number, TokenBalance> {
  const byIndex = new Map<number, TokenBalance>();
  optionalArray(value, path).forEach((entry, i) => {
    const p = `${path}[${i}]`;
    const item = record(entry, p);
    const accountIndex = index(item.accountIndex, accountCount, `${p}.accountIndex`);
    if (byIndex.has(accountIndex)) malformed(`${p} repeats account index ${accountIndex}`, p);
    const ui = record(item.uiTokenAmount, `${p}.uiTokenAmount`);
    const amount = string(ui.amount, `${p}.uiTokenAmount.amount`);
    if (!/^\d+$/.test(amount)) malformed(`${p}.uiTokenAmount.amount is not an integer string`, p);
    const decimals = ui.decimals;
    if (
      typeof decimals !== "number" ||
      !Number.isInteger(decimals) ||
      decimals < 0 ||
      decimals > 255
    ) {
      malformed(`${p}.uiTokenAmount.decimals is not 0..255`, p);
    }
    byIndex.set(accountIndex, {
      accountIndex,
      mint: pubkey(item.mint, `${p}.mint`),
      owner: item.owner == null ? null : pubkey(item.owner, `${p}.owner`),
      programId: item.programId == null ? null : pubkey(item.programId, `${p}.programId`),
      decimals,
      amount: BigInt(amount),
    });
  });
  return byIndex;
}

function tokenChanges(meta: Json, accounts: string[]): TokenChange[] {
  const pre = tokenBalances(meta.preTokenBalances, accounts.length, "meta.preTokenBalances");
  const post = tokenBalances(meta.postTokenBalances, accounts.length, "meta.postTokenBalances");
  const indexes = [...new Set([...pre.keys(), ...post.keys()])].sort((a, b) => a - b);
  const changes: TokenChange[] = [];
  for (const i of indexes) {
    const before = pre.get(i);
    const after = post.get(i);
    const known = (after ?? before)!;
    if (before && after && (before.mint !== after.mint || before.decimals !== after.decimals)) {
      // Closed and opened again for another mint within the transaction: two accounts in
      // effect, each judged in its own mint (refusing the transaction would let an operator
      // turn any settlement into "unreadable").
      for (const [balance, sign] of [
        [before, -1n],
        [after, 1n],
      ] as const) {
        if (balance.amount === 0n) continue;
        changes.push({
          account: accounts[i]!,
          owner: balance.owner,
          mint: balance.mint,
          programId: balance.programId,
          decimals: balance.decimals,
          pre: sign < 0n ? balance.amount : 0n,
          post: sign < 0n ? 0n : balance.amount,
          delta: sign * balance.amount,
        });
      }
      continue;
    }
    const preAmount = before?.amount ?? 0n;
    const postAmount = after?.amount ?? 0n;
    if (preAmount === postAmount) continue;
    changes.push({
      account: accounts[i]!,
      owner: after?.owner ?? before?.owner ?? null,
      mint: known.mint,
      programId: after?.programId ?? before?.programId ?? null,
      decimals: known.decimals,
      pre: preAmount,
      post: postAmount,
      delta: postAmount - preAmount,
    });
  }
  return changes;
}

const optionalOpened = (opened: string[] | undefined) =>
  opened === undefined ? {} : { openedTokenAccounts: opened };

const optionalClosed = (closed: string[] | undefined) =>
  closed === undefined ? {} : { closedTokenAccounts: closed };

const optionalBalanceAccounts = (named: string[] | undefined) =>
  named === undefined ? {} : { tokenBalanceAccounts: named };

const optionalOwners = (owners: { account: string; owner: string }[] | undefined) =>
  owners === undefined ? {} : { ownersAfter: owners };

/**
 * Each token account's owner after the transaction, from `meta.postTokenBalances`, balance
 * moved or not. Undefined (not known) when the node sent no token balances at all.
 */
function ownersAfter(
  meta: Json,
  accounts: string[],
): { account: string; owner: string }[] | undefined {
  if (!Array.isArray(meta.postTokenBalances)) return undefined;
  const post = tokenBalances(meta.postTokenBalances, accounts.length, "meta.postTokenBalances");
  return [...post.values()]
    .filter((b) => b.owner !== null)
    .sort((a, b) => a.accountIndex - b.accountIndex)
    .map((b) => ({ account: accounts[b.accountIndex]!, owner: b.owner! }));
}

/**
 * Token accounts with a post-balance and no pre-balance: created by the transaction. Undefined
 * (not known) when the node sent no token balances at all.
 */
function openedTokenAccounts(meta: Json, accounts: string[]): string[] | undefined {
  if (!Array.isArray(meta.preTokenBalances) || !Array.isArray(meta.postTokenBalances)) {
    return undefined;
  }
  const pre = tokenBalances(meta.preTokenBalances, accounts.length, "meta.preTokenBalances");
  const post = tokenBalances(meta.postTokenBalances, accounts.length, "meta.postTokenBalances");
  return [...post.keys()]
    .filter((i) => !pre.has(i))
    .sort((a, b) => a - b)
    .map((i) => accounts[i]!);
}

/**
 * The accounts the token balances name, before or after the transaction, in account order.
 * Undefined (not known) when the node sent no token balances at all.
 */
function tokenBalanceAccounts(meta: Json, accounts: string[]): string[] | undefined {
  if (!Array.isArray(meta.preTokenBalances) || !Array.isArray(meta.postTokenBalances)) {
    return undefined;
  }
  const pre = tokenBalances(meta.preTokenBalances, accounts.length, "meta.preTokenBalances");
  const post = tokenBalances(meta.postTokenBalances, accounts.length, "meta.postTokenBalances");
  return [...new Set([...pre.keys(), ...post.keys()])]
    .sort((a, b) => a - b)
    .map((i) => accounts[i]!);
}

/**
 * Token accounts with a pre-balance and no post-balance: closed by the transaction. Undefined
 * (not known) when the node sent no token balances at all.
 */
function closedTokenAccounts(meta: Json, accounts: string[]): string[] | undefined {
  if (!Array.isArray(meta.preTokenBalances) || !Array.isArray(meta.postTokenBalances)) {
    return undefined;
  }
  const pre = tokenBalances(meta.preTokenBalances, accounts.length, "meta.preTokenBalances");
  const post = tokenBalances(meta.postTokenBalances, accounts.length, "meta.postTokenBalances");
  return [...pre.keys()]
    .filter((i) => !post.has(i))
    .sort((a, b) => a - b)
    .map((i) => accounts[i]!);
}

function solChanges(meta: Json, accounts: string[]): SolChange[] {
  const pre = array(meta.preBalances, "meta.preBalances");
  const post = array(meta.postBalances, "meta.postBalances");
  if (pre.length !== accounts.length || post.length !== accounts.length) {
    malformed(
      `meta.preBalances/postBalances have ${pre.length}/${post.length} entries for ${accounts.length} accounts`,
      "meta.preBalances",
    );
  }
  const changes: SolChange[] = [];
  accounts.forEach((account, i) => {
    const before = lamports(pre[i], `meta.preBalances[${i}]`);
    const after = lamports(post[i], `meta.postBalances[${i}]`);
    if (before !== after)
      changes.push({ account, pre: before, post: after, delta: after - before });
  });
  return changes;
}

/** Top-level instructions with each one's inner instructions right after it: execution order. */
function executionOrder(decoded: DecodedTransaction, meta: Json): Step[] {
  const inner = new Map<number, Step[]>();
  optionalArray(meta.innerInstructions, "meta.innerInstructions").forEach((group, g) => {
    const path = `meta.innerInstructions[${g}]`;
    const item = record(group, path);
    const parent = index(item.index, decoded.topLevel.length, `${path}.index`);
    if (inner.has(parent)) malformed(`${path} repeats instruction index ${parent}`, path);
    const steps = array(item.instructions, `${path}.instructions`).map((ix, i) =>
      anyStep(ix, decoded.accounts, `${path}.instructions[${i}]`),
    );
    inner.set(parent, steps);
  });
  return decoded.topLevel.flatMap((step, i) => [step, ...(inner.get(i) ?? [])]);
}

/**
 * The chain refuses a transaction that lists an account twice (static keys and loaded
 * addresses alike): read, such an answer gave one account two balance changes, its money
 * counted twice.
 */
function refuseRepeatedAccount(accounts: string[]): void {
  const seen = new Map<string, number>();
  accounts.forEach((account, i) => {
    const first = seen.get(account);
    if (first !== undefined) {
      malformed(
        `account ${account} is listed twice (accounts ${first} and ${i}), which no transaction of the chain does`,
        "accountKeys",
      );
    }
    seen.set(account, i);
  });
}

/**
 * A succeeded transaction that names a token program has its token balances in every answer a
 * node gives since 2021 (`[]` when it moved none). Both lists are optional in the RPC's JSON:
 * an answer without them, read as no balance moving, made an honest settlement pay nobody and
 * its job a discrepancy, on the node's omission. Such an answer is unreadable, as any other
 * that cannot be judged by: the job waits, and the ledger reads the line from another answer.
 */
function refuseMissingTokenBalances(meta: Json, accounts: string[]): void {
  if (meta.err !== null && meta.err !== undefined) return;
  if (!accounts.some((a) => TOKEN_PROGRAM_IDS.has(a))) return;
  for (const list of ["preTokenBalances", "postTokenBalances"] as const) {
    if (!Array.isArray(meta[list])) {
      malformed(
        `meta.${list} is missing: the token balances of a token program's transaction are not known`,
        `meta.${list}`,
      );
    }
  }
}

function declaredVersion(value: unknown): "legacy" | 0 | undefined {
  if (value === undefined || value === null) return undefined;
  if (value === 0 || value === "legacy") return value;
  return malformed(`unsupported transaction version ${JSON.stringify(value)}`, "version");
}

/**
 * Derives facts from a `getTransaction` result in json, jsonParsed, base64 or base58 encoding,
 * legacy or version 0. Either every fact is derived or `AppError("malformed_transaction")` is
 * thrown with the reason: a response is never half-parsed. `signatureHint` (the signature that
 * was asked for) must match the transaction's first signature when given.
 */
export function parseTransaction(result: unknown, signatureHint?: string): TransactionFacts {
  if (result === null || result === undefined) malformed("result is null (transaction not found)");
  const root = record(result, "result");
  const slot = safeInt(root.slot, "slot");
  const blockTime =
    root.blockTime === undefined || root.blockTime === null
      ? null
      : safeInt(root.blockTime, "blockTime");
  const meta = record(root.meta, "meta");
  if (!("err" in meta)) malformed("meta.err is missing", "meta.err");
  const version = declaredVersion(root.version);
  const decoded = Array.isArray(root.transaction)
    ? decodeWire(root.transaction, meta)
    : decodeJson(record(root.transaction, "transaction"), meta, version ?? "legacy");
  if (version !== undefined && version !== decoded.version) {
    malformed(`version says ${version} but the message is ${decoded.version}`, "version");
  }
  const sig = decoded.signatures[0];
  if (sig === undefined) malformed("transaction has no signatures", "transaction.signatures");
  decoded.signatures.forEach((s, i) => {
    signature(s, `transaction.signatures[${i}]`);
  });
  if (signatureHint !== undefined && signatureHint !== sig) {
    malformed(`response is for signature ${sig}, not ${signatureHint}`, "transaction.signatures");
  }
  const feePayer = decoded.accounts[0];
  if (feePayer === undefined) malformed("transaction has no accounts", "accountKeys");
  refuseRepeatedAccount(decoded.accounts);
  refuseMissingTokenBalances(meta, decoded.accounts);
  const steps = executionOrder(decoded, meta);
  const err = meta.err ?? null;
  const fee = lamports(meta.fee, "meta.fee");
  // Stored in a 64-bit column, by the verifier and the ledger alike: a fee no column holds
  // (nine million SOL and more, no real fee) would fail the write of every transaction stored
  // with it, each time it is fetched again. Such an answer is malformed, like any other lie.
  if (fee > MAX_STORED_UNITS) malformed(`meta.fee ${fee} is beyond any real fee`, "meta.fee");
  return {
    signature: sig,
    slot,
    blockTime,
    succeeded: err === null,
    err,
    fee,
    feePayer,
    version: decoded.version,
    accounts: decoded.accounts,
    tokenChanges: tokenChanges(meta, decoded.accounts),
    solChanges: solChanges(meta, decoded.accounts),
    memos: steps.flatMap((s) => (s.memo === null ? [] : [s.memo])),
    programs: [...new Set(steps.map((s) => s.programId))],
    tokenInstructions: steps.flatMap((s) => s.tokens),
    innerInstructionsKnown: Array.isArray(meta.innerInstructions),
    ...optionalOpened(openedTokenAccounts(meta, decoded.accounts)),
    ...optionalOwners(ownersAfter(meta, decoded.accounts)),
    ...optionalBalanceAccounts(tokenBalanceAccounts(meta, decoded.accounts)),
    ...optionalClosed(closedTokenAccounts(meta, decoded.accounts)),
  };
}

/**
 * Facts derived again from a stored raw answer (its `result` JSON text), or null when it no
 * longer reads: an answer stored before a rule that now refuses it (one without token
 * balances, say) is fetched again, never judged by, and never stops a round.
 */
export function reparseStored(raw: string, signature: string): TransactionFacts | null {
  try {
    return parseTransaction(parseJsonLossless(raw), signature);
  } catch (error) {
    if (error instanceof AppError && error.code === "malformed_transaction") return null;
    throw error;
  }
}
