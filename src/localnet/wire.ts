import { sign } from "node:crypto";
import bs58 from "bs58";
import { pushShortVec } from "../chain/wire-transaction.js";
import type { LocalSigner } from "./keys.js";

/**
 * Solana's transaction wire format (legacy and version 0), encoded and decoded by hand: the
 * simulator builds thousands of transactions a second and the RPC facade must answer for any
 * transaction a client sends, so neither goes through a heavyweight builder.
 */

export interface AccountMeta {
  address: string;
  signer: boolean;
  writable: boolean;
}

export interface InstructionSpec {
  programId: string;
  accounts: AccountMeta[];
  data: Uint8Array;
}

/** An on-chain address lookup table known to the builder: its address and its entries in order. */
export interface LookupTableSpec {
  address: string;
  addresses: readonly string[];
}

export interface CompiledInstruction {
  programIdIndex: number;
  accounts: number[];
  data: Uint8Array;
}

export interface AddressTableLookup {
  accountKey: string;
  writableIndexes: number[];
  readonlyIndexes: number[];
}

export interface MessageHeader {
  numRequiredSignatures: number;
  numReadonlySignedAccounts: number;
  numReadonlyUnsignedAccounts: number;
}

/** A transaction as found on the wire. */
export interface DecodedTransaction {
  version: "legacy" | 0;
  /** Signatures in base58, in signer order; the first is the transaction's id. */
  signatures: string[];
  messageBytes: Uint8Array;
  header: MessageHeader;
  staticAccountKeys: string[];
  recentBlockhash: string;
  instructions: CompiledInstruction[];
  addressTableLookups: AddressTableLookup[];
}

function pushBytes(out: number[], bytes: Uint8Array): void {
  for (const b of bytes) out.push(b);
}

const keyBytesCache = new Map<string, Uint8Array>();

/** Base58 address to its 32 bytes; addresses repeat endlessly, so decoding is cached. */
export function addressBytes(address: string): Uint8Array {
  let bytes = keyBytesCache.get(address);
  if (!bytes) {
    bytes = bs58.decode(address);
    if (bytes.length !== 32) throw new RangeError(`not a 32-byte address: ${address}`);
    if (keyBytesCache.size > 10_000) keyBytesCache.clear();
    keyBytesCache.set(address, bytes);
  }
  return bytes;
}

interface KeyFlags {
  signer: boolean;
  writable: boolean;
  program: boolean;
}

/**
 * Compiles instructions into message bytes. Account order follows the runtime's rules: fee
 * payer, writable signers, readonly signers, writable non-signers, readonly non-signers. With
 * `version: 0` and lookup tables, non-signer accounts found in a table (never program ids) are
 * loaded from it instead of listed.
 */
export function compileMessage(input: {
  version: "legacy" | 0;
  feePayer: string;
  recentBlockhash: string;
  instructions: InstructionSpec[];
  lookupTables?: LookupTableSpec[];
}): { messageBytes: Uint8Array; signers: string[] } {
  const flags = new Map<string, KeyFlags>();
  flags.set(input.feePayer, { signer: true, writable: true, program: false });
  for (const ix of input.instructions) {
    for (const meta of ix.accounts) {
      const f = flags.get(meta.address);
      if (f) {
        f.signer ||= meta.signer;
        f.writable ||= meta.writable;
      } else {
        flags.set(meta.address, { signer: meta.signer, writable: meta.writable, program: false });
      }
    }
    const p = flags.get(ix.programId);
    if (p) p.program = true;
    else flags.set(ix.programId, { signer: false, writable: false, program: true });
  }

  const loadedWritable: string[] = [];
  const loadedReadonly: string[] = [];
  const lookups: AddressTableLookup[] = [];
  if (input.version === 0 && input.lookupTables) {
    for (const table of input.lookupTables) {
      const lookup: AddressTableLookup = {
        accountKey: table.address,
        writableIndexes: [],
        readonlyIndexes: [],
      };
      table.addresses.forEach((address, index) => {
        const f = flags.get(address);
        if (!f || f.signer || f.program) return;
        if (f.writable) {
          lookup.writableIndexes.push(index);
          loadedWritable.push(address);
        } else {
          lookup.readonlyIndexes.push(index);
          loadedReadonly.push(address);
        }
        flags.delete(address);
      });
      if (lookup.writableIndexes.length + lookup.readonlyIndexes.length > 0) lookups.push(lookup);
    }
  }

  const entries = [...flags.entries()];
  const group = (signer: boolean, writable: boolean) =>
    entries.filter(([, f]) => f.signer === signer && f.writable === writable).map(([k]) => k);
  const writableSigners = group(true, true).filter((k) => k !== input.feePayer);
  const staticKeys = [
    input.feePayer,
    ...writableSigners,
    ...group(true, false),
    ...group(false, true),
    ...group(false, false),
  ];
  const header: MessageHeader = {
    numRequiredSignatures: 1 + writableSigners.length + group(true, false).length,
    numReadonlySignedAccounts: group(true, false).length,
    numReadonlyUnsignedAccounts: group(false, false).length,
  };
  const allKeys = [...staticKeys, ...loadedWritable, ...loadedReadonly];
  const index = new Map(allKeys.map((k, i) => [k, i]));

  const out: number[] = [];
  if (input.version === 0) out.push(0x80);
  out.push(
    header.numRequiredSignatures,
    header.numReadonlySignedAccounts,
    header.numReadonlyUnsignedAccounts,
  );
  pushShortVec(out, staticKeys.length);
  for (const key of staticKeys) pushBytes(out, addressBytes(key));
  pushBytes(out, addressBytes(input.recentBlockhash));
  pushShortVec(out, input.instructions.length);
  for (const ix of input.instructions) {
    out.push(index.get(ix.programId)!);
    pushShortVec(out, ix.accounts.length);
    for (const meta of ix.accounts) out.push(index.get(meta.address)!);
    pushShortVec(out, ix.data.length);
    pushBytes(out, ix.data);
  }
  if (input.version === 0) {
    pushShortVec(out, lookups.length);
    for (const lookup of lookups) {
      pushBytes(out, addressBytes(lookup.accountKey));
      pushShortVec(out, lookup.writableIndexes.length);
      out.push(...lookup.writableIndexes);
      pushShortVec(out, lookup.readonlyIndexes.length);
      out.push(...lookup.readonlyIndexes);
    }
  }
  return {
    messageBytes: Uint8Array.from(out),
    signers: staticKeys.slice(0, header.numRequiredSignatures),
  };
}

/** Signs message bytes with every required signer and returns the wire transaction. */
export function signTransaction(
  messageBytes: Uint8Array,
  signerAddresses: string[],
  signers: readonly LocalSigner[],
): { wire: Uint8Array; signature: string } {
  const out: number[] = [];
  pushShortVec(out, signerAddresses.length);
  const sigs: Uint8Array[] = signerAddresses.map((address) => {
    const signer = signers.find((s) => s.address === address);
    if (!signer) throw new Error(`no signer for ${address}`);
    return sign(null, messageBytes, signer.signingKey);
  });
  const wire = new Uint8Array(out.length + 64 * sigs.length + messageBytes.length);
  wire.set(out, 0);
  sigs.forEach((sig, i) => {
    wire.set(sig, out.length + 64 * i);
  });
  wire.set(messageBytes, out.length + 64 * sigs.length);
  return { wire, signature: bs58.encode(sigs[0]!) };
}

class Reader {
  offset = 0;
  constructor(private readonly bytes: Uint8Array) {}
  byte(): number {
    const b = this.bytes[this.offset++];
    if (b === undefined) throw new RangeError("transaction bytes end early");
    return b;
  }
  shortVec(): number {
    let value = 0;
    for (let shift = 0; shift < 21; shift += 7) {
      const b = this.byte();
      value |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return value;
    }
    throw new RangeError("bad compact-u16");
  }
  take(n: number): Uint8Array {
    if (this.offset + n > this.bytes.length) throw new RangeError("transaction bytes end early");
    const slice = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    return slice;
  }
  key(): string {
    return bs58.encode(this.take(32));
  }
  done(): boolean {
    return this.offset === this.bytes.length;
  }
}

/** Decodes a wire transaction; throws RangeError on malformed bytes. */
export function decodeTransaction(wire: Uint8Array): DecodedTransaction {
  const r = new Reader(wire);
  const signatureCount = r.shortVec();
  const signatures: string[] = [];
  for (let i = 0; i < signatureCount; i++) signatures.push(bs58.encode(r.take(64)));
  const messageStart = r.offset;
  const first = r.byte();
  let version: "legacy" | 0 = "legacy";
  let numRequiredSignatures = first;
  if (first & 0x80) {
    if ((first & 0x7f) !== 0)
      throw new RangeError(`unsupported transaction version ${first & 0x7f}`);
    version = 0;
    numRequiredSignatures = r.byte();
  }
  const header: MessageHeader = {
    numRequiredSignatures,
    numReadonlySignedAccounts: r.byte(),
    numReadonlyUnsignedAccounts: r.byte(),
  };
  const keyCount = r.shortVec();
  const staticAccountKeys: string[] = [];
  for (let i = 0; i < keyCount; i++) staticAccountKeys.push(r.key());
  const recentBlockhash = r.key();
  const instructionCount = r.shortVec();
  const instructions: CompiledInstruction[] = [];
  for (let i = 0; i < instructionCount; i++) {
    const programIdIndex = r.byte();
    const accounts = [...r.take(r.shortVec())];
    const data = Uint8Array.from(r.take(r.shortVec()));
    instructions.push({ programIdIndex, accounts, data });
  }
  const addressTableLookups: AddressTableLookup[] = [];
  if (version === 0) {
    const lookupCount = r.shortVec();
    for (let i = 0; i < lookupCount; i++) {
      const accountKey = r.key();
      const writableIndexes = [...r.take(r.shortVec())];
      const readonlyIndexes = [...r.take(r.shortVec())];
      addressTableLookups.push({ accountKey, writableIndexes, readonlyIndexes });
    }
  }
  if (!r.done()) throw new RangeError("trailing bytes after the transaction");
  if (signatureCount !== header.numRequiredSignatures) {
    throw new RangeError("signature count does not match the message header");
  }
  return {
    version,
    signatures,
    messageBytes: wire.subarray(messageStart),
    header,
    staticAccountKeys,
    recentBlockhash,
    instructions,
    addressTableLookups,
  };
}

/** True when account `index` of the full account list is writable (static part). */
export function isStaticWritable(header: MessageHeader, keyCount: number, index: number): boolean {
  if (index < header.numRequiredSignatures) {
    return index < header.numRequiredSignatures - header.numReadonlySignedAccounts;
  }
  return index < keyCount - header.numReadonlyUnsignedAccounts;
}
