import bs58 from "bs58";
import { formatUnits } from "../money.js";
import { addressBytes, type InstructionSpec } from "./wire.js";

/**
 * The few pieces of the SPL Token programs the local world needs: account layouts (to write
 * genesis accounts and to read balances, classic and Token-2022) and the TransferChecked
 * instruction, plus the SPL Memo instruction.
 */

export const TOKEN_ACCOUNT_SIZE = 165;
export const MINT_SIZE = 82;

/** Data of an initialized token account (SPL Token layout, 165 bytes). */
export function encodeTokenAccount(mint: string, owner: string, amount: bigint): Uint8Array {
  const data = new Uint8Array(TOKEN_ACCOUNT_SIZE);
  const view = new DataView(data.buffer);
  data.set(addressBytes(mint), 0);
  data.set(addressBytes(owner), 32);
  view.setBigUint64(64, amount, true);
  data[108] = 1; // AccountState::Initialized
  return data;
}

/** Data of an initialized mint (SPL Token layout, 82 bytes) with a mint authority and no freeze. */
export function encodeMint(mintAuthority: string, supply: bigint, decimals: number): Uint8Array {
  const data = new Uint8Array(MINT_SIZE);
  const view = new DataView(data.buffer);
  view.setUint32(0, 1, true);
  data.set(addressBytes(mintAuthority), 4);
  view.setBigUint64(36, supply, true);
  data[44] = decimals;
  data[45] = 1;
  return data;
}

export interface TokenAccountState {
  mint: string;
  owner: string;
  amount: bigint;
  /** The delegate an Approve gave the account and what it may still spend, else null. */
  delegate: { address: string; amount: bigint } | null;
}

// Token-2022 appends extensions to the classic layouts: after the 165-byte account (or the
// 82-byte mint padded with zeros to 165 bytes) comes one account-type byte, then the
// extensions. A multisig (355 bytes) is neither, whatever its first bytes hold.
const MULTISIG_SIZE = 355;
const ACCOUNT_TYPE_OFFSET = TOKEN_ACCOUNT_SIZE;
const ACCOUNT_TYPE_MINT = 1;
const ACCOUNT_TYPE_ACCOUNT = 2;

/**
 * True when `data` is a base layout of `baseSize` bytes, alone or followed by extensions of
 * the right account type, as Token-2022 (and the validator's balance reader) unpacks it.
 */
function hasLayout(data: Uint8Array, baseSize: number, accountType: number): boolean {
  if (data.length < baseSize || data.length === MULTISIG_SIZE) return false;
  if (data.length === baseSize) return true;
  if (data.length <= ACCOUNT_TYPE_OFFSET) return false;
  for (let i = baseSize; i < ACCOUNT_TYPE_OFFSET; i++) if (data[i] !== 0) return false;
  return data[ACCOUNT_TYPE_OFFSET] === accountType;
}

/**
 * Reads mint, owner and amount of an initialized token account, classic (165 bytes) or
 * Token-2022 with extensions; null when the data is not one.
 */
export function decodeTokenAccount(data: Uint8Array): TokenAccountState | null {
  if (!hasLayout(data, TOKEN_ACCOUNT_SIZE, ACCOUNT_TYPE_ACCOUNT)) return null;
  // AccountState: 0 uninitialized, 1 initialized, 2 frozen; anything else is not an account.
  const state = data[108] ?? 0;
  if (state === 0 || state > 2) return null;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return {
    mint: bs58.encode(data.subarray(0, 32)),
    owner: bs58.encode(data.subarray(32, 64)),
    amount: view.getBigUint64(64, true),
    // COption<Pubkey> at 72 (a u32 tag, then the key), delegated amount at 121.
    delegate:
      view.getUint32(72, true) === 1
        ? { address: bs58.encode(data.subarray(76, 108)), amount: view.getBigUint64(121, true) }
        : null,
  };
}

/** Reads the decimals of an initialized mint, classic or Token-2022; null when not one. */
export function decodeMintDecimals(data: Uint8Array): number | null {
  if (!hasLayout(data, MINT_SIZE, ACCOUNT_TYPE_MINT) || data[45] !== 1) return null;
  return data[44] ?? null;
}

/** SPL Token TransferChecked: `amount` from `source` to `destination`, signed by `authority`. */
export function transferCheckedInstruction(input: {
  tokenProgram: string;
  source: string;
  mint: string;
  destination: string;
  authority: string;
  amount: bigint;
  decimals: number;
}): InstructionSpec {
  const data = new Uint8Array(10);
  data[0] = 12;
  new DataView(data.buffer).setBigUint64(1, input.amount, true);
  data[9] = input.decimals;
  return {
    programId: input.tokenProgram,
    accounts: [
      { address: input.source, signer: false, writable: true },
      { address: input.mint, signer: false, writable: false },
      { address: input.destination, signer: false, writable: true },
      { address: input.authority, signer: true, writable: false },
    ],
    data,
  };
}

/** SPL Memo (v2) with no signer accounts. */
export function memoInstruction(memoProgram: string, text: string): InstructionSpec {
  return { programId: memoProgram, accounts: [], data: new TextEncoder().encode(text) };
}

/** `uiTokenAmount` as a node reports it: amount as a string, plus the display forms. */
export function uiTokenAmount(amount: bigint, decimals: number) {
  const text = formatUnits(amount, decimals);
  const trimmed = decimals === 0 ? text : text.replace(/\.?0+$/, "");
  return {
    amount: amount.toString(),
    decimals,
    // Display-only, as on a real node; consumers read `amount`.
    uiAmount: Number(text),
    uiAmountString: trimmed === "" ? "0" : trimmed,
  };
}
