import bs58 from "bs58";
import { formatUnits } from "../money.js";
import { addressBytes, type InstructionSpec } from "./wire.js";

/**
 * The few pieces of the classic SPL Token program the local world needs: account layouts (to
 * write genesis accounts and read balances) and the TransferChecked instruction, plus the SPL
 * Memo instruction.
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
}

/** Reads mint, owner and amount of a token account; null when the data is not one. */
export function decodeTokenAccount(data: Uint8Array): TokenAccountState | null {
  if (data.length !== TOKEN_ACCOUNT_SIZE || data[108] === 0) return null;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return {
    mint: bs58.encode(data.subarray(0, 32)),
    owner: bs58.encode(data.subarray(32, 64)),
    amount: view.getBigUint64(64, true),
  };
}

/** Reads the decimals of a mint; null when the data is not one. */
export function decodeMintDecimals(data: Uint8Array): number | null {
  if (data.length !== MINT_SIZE || data[45] !== 1) return null;
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
