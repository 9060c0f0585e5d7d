import { createPublicKey, verify } from "node:crypto";
import bs58 from "bs58";
import { decodeWireTransaction, pushShortVec } from "./wire-transaction.js";

/**
 * What a transaction's own signature proves of a `getTransaction` answer, whoever served it.
 * A node can serve any message under a signature; only the message the fee payer signed is the
 * chain's. The ledger asks this of an entry whose transaction names no account of the vault's:
 * a signed message that names all its accounts and not the vault cannot be the vault's, and
 * the node that listed it lied.
 */

/**
 * The accounts of the answer's message when `signature` is its first signature, that signature
 * checks (Ed25519, by the fee payer, the message's first key) over the message's bytes, and the
 * message loads no address from a lookup table (the addresses a table loads are the node's word
 * in `meta.loadedAddresses`, not signed): then they are every account the transaction names.
 * Else null (not proven, whatever it shows). `raw` is the answer's `result`, as JSON text or
 * parsed, in json (not jsonParsed), base64 or base58 encoding.
 */
export function signedAccounts(raw: unknown, signature: string): string[] | null {
  const signed = payerSigned(raw, signature);
  return signed === null || signed.lookups > 0 ? null : signed.accountKeys;
}

/**
 * Whether `signature` is the answer's first signature and checks (Ed25519, by the fee payer)
 * over the message's bytes, lookup tables or not: a message someone holding the fee payer's
 * key signed, whatever the node says of where and whether it landed. A node showing a status
 * for a signature the others know nothing of cannot back it so with bytes of its own making.
 */
export function signedByPayer(raw: unknown, signature: string): boolean {
  return payerSigned(raw, signature) !== null;
}

function payerSigned(raw: unknown, signature: string): SignedMessage | null {
  try {
    const root = (typeof raw === "string" ? JSON.parse(raw) : raw) as { transaction?: unknown };
    const signed = Array.isArray(root.transaction)
      ? wireMessage(root.transaction)
      : jsonMessage(root as { transaction: JsonTransaction; version?: unknown });
    if (signed === null || signed.signatures[0] !== signature) return null;
    const payer = signed.accountKeys[0];
    if (payer === undefined) return null;
    const key = createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(bs58.decode(payer)).toString("base64url") },
      format: "jwk",
    });
    return verify(null, signed.message, key, bs58.decode(signature)) ? signed : null;
  } catch {
    return null;
  }
}

interface SignedMessage {
  signatures: string[];
  accountKeys: string[];
  /** Addresses the message loads from lookup tables. */
  lookups: number;
  message: Uint8Array;
}

/** A wire transaction's message: the bytes after its signatures. */
function wireMessage(tx: unknown[]): SignedMessage | null {
  const [payload, encoding] = tx;
  if (typeof payload !== "string") return null;
  let bytes: Uint8Array;
  if (encoding === "base64") bytes = Buffer.from(payload, "base64");
  else if (encoding === "base58") bytes = bs58.decode(payload);
  else return null;
  const wire = decodeWireTransaction(bytes);
  const count = wire.signatures.length;
  const prefix = shortVec(count).length;
  return {
    signatures: wire.signatures,
    accountKeys: wire.accountKeys,
    lookups: wire.addressTableLookups.reduce(
      (n, l) => n + l.writableIndexes.length + l.readonlyIndexes.length,
      0,
    ),
    message: bytes.subarray(prefix + 64 * count),
  };
}

interface JsonTransaction {
  signatures: string[];
  message: {
    header: {
      numRequiredSignatures: number;
      numReadonlySignedAccounts: number;
      numReadonlyUnsignedAccounts: number;
    };
    accountKeys: string[];
    recentBlockhash: string;
    instructions: { programIdIndex: number; accounts: number[]; data: string }[];
    addressTableLookups?: {
      accountKey: string;
      writableIndexes: number[];
      readonlyIndexes: number[];
    }[];
  };
}

/** A json-encoded transaction's message, compiled back to the bytes its signers signed. */
function jsonMessage(root: {
  transaction: JsonTransaction;
  version?: unknown;
}): SignedMessage | null {
  const { signatures, message } = root.transaction;
  // jsonParsed keys are objects: not the compiled message, not rebuilt here.
  if (!message.accountKeys.every((k) => typeof k === "string")) return null;
  const v0 = root.version === 0;
  const out: number[] = [];
  if (v0) out.push(0x80);
  const h = message.header;
  out.push(
    ...byteList([
      h.numRequiredSignatures,
      h.numReadonlySignedAccounts,
      h.numReadonlyUnsignedAccounts,
    ]),
  );
  out.push(...shortVec(message.accountKeys.length));
  for (const key of message.accountKeys) out.push(...key32(key));
  out.push(...key32(message.recentBlockhash));
  out.push(...shortVec(message.instructions.length));
  for (const ix of message.instructions) {
    out.push(...byteList([ix.programIdIndex]));
    out.push(...shortVec(ix.accounts.length), ...byteList(ix.accounts));
    const data = bs58.decode(ix.data);
    out.push(...shortVec(data.length), ...data);
  }
  const lookups = message.addressTableLookups ?? [];
  if (v0) {
    out.push(...shortVec(lookups.length));
    for (const l of lookups) {
      out.push(...key32(l.accountKey));
      out.push(...shortVec(l.writableIndexes.length), ...byteList(l.writableIndexes));
      out.push(...shortVec(l.readonlyIndexes.length), ...byteList(l.readonlyIndexes));
    }
  } else if (lookups.length > 0) return null;
  return {
    signatures,
    accountKeys: message.accountKeys,
    lookups: lookups.reduce((n, l) => n + l.writableIndexes.length + l.readonlyIndexes.length, 0),
    message: Uint8Array.from(out),
  };
}

/** Compact-u16 ("shortvec") of a length. */
function shortVec(value: number): number[] {
  const out: number[] = [];
  pushShortVec(out, value);
  return out;
}

/** Single bytes, each 0..255. */
function byteList(values: readonly number[]): number[] {
  for (const v of values) {
    if (!Number.isInteger(v) || v < 0 || v > 255) throw new RangeError("byte");
  }
  return [...values];
}

/** A 32-byte key from base58. */
function key32(text: string): Uint8Array {
  const bytes = bs58.decode(text);
  if (bytes.length !== 32) throw new RangeError("key");
  return bytes;
}
