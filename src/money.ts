/**
 * Money is integer base units (bigint) in code, INTEGER in SQLite and a decimal string at the
 * edges. These helpers are the only place that turns units into text or text into units.
 */

/** USDC has 6 decimals. */
export const USDC_DECIMALS = 6;
/** 1 credit = $0.01 = 10,000 USDC base units. */
export const UNITS_PER_CREDIT = 10_000n;

/** Formats base units as a decimal string with exactly `decimals` places: 1234567n -> "1.234567". */
export function formatUnits(units: bigint, decimals = USDC_DECIMALS): string {
  const negative = units < 0n;
  const abs = negative ? -units : units;
  const scale = 10n ** BigInt(decimals);
  const whole = abs / scale;
  const frac = abs % scale;
  const text = decimals === 0 ? `${whole}` : `${whole}.${frac.toString().padStart(decimals, "0")}`;
  return negative ? `-${text}` : text;
}

/**
 * Parses a non-negative decimal string into base units, exactly. Rejects more fractional digits
 * than `decimals` rather than rounding: money is never silently rounded.
 */
export function parseUnits(text: string, decimals = USDC_DECIMALS): bigint {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!match) throw new RangeError(`not a non-negative decimal: ${JSON.stringify(text)}`);
  const whole = match[1] ?? "0";
  const frac = match[2] ?? "";
  if (frac.length > decimals && /[1-9]/.test(frac.slice(decimals))) {
    throw new RangeError(`more than ${decimals} decimal places: ${text}`);
  }
  return BigInt(whole + frac.slice(0, decimals).padEnd(decimals, "0"));
}

/**
 * How far from whole units a JSON number's credits may be and still name them (float error): a
 * few of the float's steps at that size (2^-50 of it, about 8 steps), at least 1e-6 units.
 */
const floatUnitsTolerance = (units: number) => Math.max(1e-6, Math.abs(units) * 2 ** -50);

/** Credits (a decimal string or integer, as in `x-decentral-credits-remaining`) to USDC base units. */
export function creditsToUnits(credits: string | number | bigint): bigint {
  if (typeof credits === "bigint") return credits * UNITS_PER_CREDIT;
  if (typeof credits === "number") {
    if (!Number.isFinite(credits) || credits < 0) throw new RangeError(`bad credits: ${credits}`);
    // The shortest decimal that names the number is what was sent, read exactly:
    // 368946350270.077 times 10,000 in floating point is ...0771.
    const text = String(credits);
    if (/^\d+(\.\d{1,4})?$/.test(text)) return parseUnits(text, 4);
    // A JSON number is binary floating point: 0.1 + 0.2 is sent as 0.30000000000000004, which
    // names 3,000 units to within the float's error. A value that far from whole units is that
    // whole; anything farther (99.00001) is still no credit amount. Strings stay exact.
    const units = credits * Number(UNITS_PER_CREDIT);
    const whole = Math.round(units);
    if (Number.isSafeInteger(whole) && Math.abs(units - whole) <= floatUnitsTolerance(units)) {
      return BigInt(whole);
    }
    return parseUnits(text, 4);
  }
  return parseUnits(credits, 4);
}

/** Base units as credits, the inverse of `creditsToUnits`: 9915000n -> "991.5000". */
export function unitsToCredits(units: bigint): string {
  return formatUnits(units, 4);
}

/** `creditsToUnits` for values read from the wire: anything that is not credits is null. */
export function creditsToUnitsOrNull(credits: unknown): bigint | null {
  if (typeof credits !== "number" && typeof credits !== "string") return null;
  try {
    const units = creditsToUnits(credits);
    // The operator writes these values; one that no store column can hold is not credits.
    return units <= MAX_STORED_UNITS ? units : null;
  } catch {
    return null;
  }
}

/**
 * The largest amount the store holds: what SQLite's INTEGER and a JS number hold exactly. A
 * receipt's values are refused above it; an amount read from the chain above it (another mint,
 * whose authority can mint any u64) is never written rounded or wrapped, see `isStorableUnits`.
 */
export const MAX_STORED_UNITS = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Whether an amount (a balance, or a signed change of one) fits the store's money columns. Both
 * dialects hold 64-bit integers, and sums over many jobs and lines must stay within them too, so
 * the bound is MAX_STORED_UNITS either way: PostgreSQL keeps the stored sums as `numeric`, but
 * about 1,024 such amounts still fill a SQLite rollup row (README, Known limits, "Sums past 2^63
 * base units on SQLite").
 */
export function isStorableUnits(units: bigint): boolean {
  return units <= MAX_STORED_UNITS && units >= -MAX_STORED_UNITS;
}

/** JSON.stringify that writes bigints as decimal strings. */
export function stringifyWithBigints(value: unknown, space?: number): string {
  return JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? v.toString() : v), space);
}
