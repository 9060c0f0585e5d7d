/*
 * Base58 text checked without decoding it: signatures and public keys are read from receipt
 * headers, jobs API answers, ingested receipts and every transaction the verifier fetches (a
 * dozen keys each), and a full decode (bs58) is quadratic in the text's length.
 */

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const base58Digit = new Int8Array(128).fill(-1);
for (let i = 0; i < base58Alphabet.length; i++) base58Digit[base58Alphabet.charCodeAt(i)] = i;
/** 58 to the powers 0..6: six digits per step keep a 16-bit limb's product under 2^53. */
const base58Powers = [1, 58, 3364, 195_112, 11_316_496, 656_356_768, 38_068_692_544];
const log2Of58 = Math.log2(58);
/** The longest text `base58ByteLength` reads (7,300 bytes decoded): longer is refused. */
export const maxBase58Length = 10_000;
/** Scratch limbs for `exactByteLength`: 16 bits each, least significant first. */
let limbs = new Float64Array(64);

/**
 * Length in bytes of what base58 `text` decodes to (as `bs58.decode` would), or null when it
 * is not base58 (or longer than `maxBase58Length`). Each leading `1` is a zero byte; the rest
 * is a number written in minimal bytes. It runs on every receipt header, jobs API answer and
 * ingested receipt, so the length is read from the leading nine digits and the digit count (a
 * value pinned to within one part in 10^14), and only a value that close to a power of 256 is
 * decoded in full.
 */
export function base58ByteLength(text: string): number | null {
  const n = text.length;
  // Past this nothing the audit reads is that long, and the full decode is quadratic.
  if (n > maxBase58Length) return null;
  let zeros = 0;
  while (zeros < n && text.charCodeAt(zeros) === 49) zeros++;
  let lead = 0;
  for (let i = zeros; i < n; i++) {
    const code = text.charCodeAt(i);
    const digit = code < 128 ? (base58Digit[code] as number) : -1;
    if (digit < 0) return null;
    if (i - zeros < 9) lead = lead * 58 + digit;
  }
  if (n === zeros) return zeros;
  // The value lies in [lead, lead + 1) × 58^rest; its byte count is fixed unless a power of 256
  // falls in that range. The margin covers the rounding of the logarithms (a double's last place
  // near 2^16 bits, the longest text read, is 1.5e-11 bits).
  const rest = Math.max(0, n - zeros - 9) * log2Of58;
  const margin = 1e-9 + rest * 1e-14;
  const low = Math.floor((Math.log2(lead) + rest - margin) / 8);
  const high = Math.floor((Math.log2(lead + 1) + rest + margin) / 8);
  return low === high ? zeros + low + 1 : exactByteLength(text, zeros);
}

/** Byte length of base58 digits `text[zeros..]` (all valid, not all `1`), decoded in full. */
function exactByteLength(text: string, zeros: number): number {
  const n = text.length;
  // log2(58) < 5.86 bits per digit.
  const need = Math.ceil(((n - zeros) * 5.86) / 16) + 1;
  if (limbs.length < need) limbs = new Float64Array(need);
  let used = 0;
  let chunk = 0;
  let digits = 0;
  for (let i = zeros; i < n; i++) {
    chunk = chunk * 58 + (base58Digit[text.charCodeAt(i)] as number);
    if (++digits === 6 || i === n - 1) {
      const multiplier = base58Powers[digits] as number;
      let carry = chunk;
      for (let j = 0; j < used; j++) {
        const x = (limbs[j] as number) * multiplier + carry;
        carry = Math.floor(x / 65_536);
        limbs[j] = x - carry * 65_536;
      }
      while (carry > 0) {
        const high = Math.floor(carry / 65_536);
        limbs[used++] = carry - high * 65_536;
        carry = high;
      }
      chunk = 0;
      digits = 0;
    }
  }
  const top = limbs[used - 1] as number;
  return zeros + 2 * (used - 1) + (top > 255 ? 2 : 1);
}

/** True when `text` is base58 that decodes to exactly `bytes` bytes. */
export function isBase58OfLength(text: string, bytes: number): boolean {
  // 64 bytes take at most 88 characters, 32 bytes at most 44: cheap rejection first.
  if (text.length === 0 || text.length > Math.ceil(bytes * 1.37) + 1) return false;
  return base58ByteLength(text) === bytes;
}
