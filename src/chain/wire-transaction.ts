import bs58 from "bs58";

/**
 * Decoder of the Solana wire format (what `getTransaction` returns for encoding base64/base58).
 * Strict: every length is bounds-checked and trailing bytes are an error, so a truncated or
 * padded payload is rejected instead of half-read.
 */

export interface WireInstruction {
  programIdIndex: number;
  accounts: number[];
  data: Uint8Array;
}

export interface WireLookup {
  accountKey: string;
  writableIndexes: number[];
  readonlyIndexes: number[];
}

export interface WireTransaction {
  signatures: string[];
  version: "legacy" | 0;
  header: { numRequiredSignatures: number; numReadonlySigned: number; numReadonlyUnsigned: number };
  accountKeys: string[];
  recentBlockhash: string;
  instructions: WireInstruction[];
  addressTableLookups: WireLookup[];
}

/** Appends `value` as a compact-u16 ("shortvec"): 7 bits per byte, low first. */
export function pushShortVec(out: number[], value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new RangeError(`not a compact-u16 length: ${value}`);
  }
  let rest = value;
  for (;;) {
    const byte = rest & 0x7f;
    rest >>= 7;
    if (rest === 0) {
      out.push(byte);
      return;
    }
    out.push(byte | 0x80);
  }
}

/** Thrown for bytes that are not a well-formed transaction; `message` says where. */
export class WireFormatError extends Error {
  override name = "WireFormatError";
}

class Reader {
  private offset = 0;
  constructor(private readonly bytes: Uint8Array) {}

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  u8(what: string): number {
    const value = this.bytes[this.offset];
    if (value === undefined) throw new WireFormatError(`truncated at ${what}`);
    this.offset++;
    return value;
  }

  peek(): number | undefined {
    return this.bytes[this.offset];
  }

  take(length: number, what: string): Uint8Array {
    if (this.remaining < length) throw new WireFormatError(`truncated at ${what}`);
    const slice = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return slice;
  }

  /** Compact-u16 ("shortvec"): 7 bits per byte, at most 3 bytes. */
  shortLength(what: string): number {
    let value = 0;
    for (let shift = 0; shift < 21; shift += 7) {
      const byte = this.u8(what);
      value |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new WireFormatError(`bad length prefix at ${what}`);
  }

  bytesList(what: string): number[] {
    return Array.from(this.take(this.shortLength(what), what));
  }
}

/** Decodes one serialized transaction (signatures followed by a legacy or v0 message). */
export function decodeWireTransaction(bytes: Uint8Array): WireTransaction {
  const reader = new Reader(bytes);
  const signatureCount = reader.shortLength("signature count");
  const signatures: string[] = [];
  for (let i = 0; i < signatureCount; i++) {
    signatures.push(bs58.encode(reader.take(64, `signature ${i}`)));
  }
  let version: "legacy" | 0 = "legacy";
  const prefix = reader.peek();
  if (prefix !== undefined && (prefix & 0x80) !== 0) {
    reader.u8("version prefix");
    const number = prefix & 0x7f;
    if (number !== 0) throw new WireFormatError(`unsupported message version ${number}`);
    version = 0;
  }
  const header = {
    numRequiredSignatures: reader.u8("header"),
    numReadonlySigned: reader.u8("header"),
    numReadonlyUnsigned: reader.u8("header"),
  };
  const keyCount = reader.shortLength("account key count");
  const accountKeys: string[] = [];
  for (let i = 0; i < keyCount; i++) {
    accountKeys.push(bs58.encode(reader.take(32, `account key ${i}`)));
  }
  const recentBlockhash = bs58.encode(reader.take(32, "recent blockhash"));
  const instructionCount = reader.shortLength("instruction count");
  const instructions: WireInstruction[] = [];
  for (let i = 0; i < instructionCount; i++) {
    const programIdIndex = reader.u8(`instruction ${i}`);
    const accounts = reader.bytesList(`instruction ${i} accounts`);
    const data = reader.take(reader.shortLength(`instruction ${i} data`), `instruction ${i} data`);
    instructions.push({ programIdIndex, accounts, data });
  }
  const addressTableLookups: WireLookup[] = [];
  if (version === 0) {
    const lookupCount = reader.shortLength("lookup count");
    for (let i = 0; i < lookupCount; i++) {
      const accountKey = bs58.encode(reader.take(32, `lookup ${i} table`));
      const writableIndexes = reader.bytesList(`lookup ${i} writable`);
      const readonlyIndexes = reader.bytesList(`lookup ${i} readonly`);
      addressTableLookups.push({ accountKey, writableIndexes, readonlyIndexes });
    }
  }
  if (reader.remaining !== 0) throw new WireFormatError(`${reader.remaining} trailing bytes`);
  if (signatureCount !== header.numRequiredSignatures) {
    throw new WireFormatError(
      `${signatureCount} signatures but the header requires ${header.numRequiredSignatures}`,
    );
  }
  return {
    signatures,
    version,
    header,
    accountKeys,
    recentBlockhash,
    instructions,
    addressTableLookups,
  };
}
