/**
 * Sums of money on SQLite past 2^63 base units. SQLite's INTEGER is signed 64-bit: `sum()`
 * raises on overflow and `+` turns the value into a float. Each stored sum of money (rollups,
 * a vault's day) is therefore kept, and each read sum summed, as two integers: the low part
 * (`amount & (2^32 - 1)`, in [0, 2^32)) and the high part (`amount >> 32`, an arithmetic
 * shift, so negative amounts split too), joined in TypeScript as a bigint: high * 2^32 + low.
 *
 * Bounds: an amount is below 2^63 in magnitude, so its high part is below 2^31; a sum of the
 * low parts of fewer than 2^31 rows, and of their high parts, fits in 64 bits. A stored sum
 * keeps its low part in [0, 2^32) (`carriedLow`/`carriedHigh` move the carry), so it holds any
 * total below 2^95 in magnitude whatever the number of rows folded into it.
 */

/** 2^32 - 1: the low part's mask. */
const LOW_MASK = 4_294_967_295;

/** The low part of an integer SQL expression. */
export const lowPart = (expr: string): string => `((${expr}) & ${LOW_MASK})`;

/** The high part of an integer SQL expression (arithmetic shift: floor(expr / 2^32)). */
export const highPart = (expr: string): string => `((${expr}) >> 32)`;

/** Column names of the two parts of the sum `name`. */
export const lowName = (name: string): string => `${name}_lo`;
export const highName = (name: string): string => `${name}_hi`;

/**
 * The sum of an integer SQL expression over a group, as two columns `<name>_lo`, `<name>_hi`
 * (0 when the group has no row).
 */
export const splitSum = (expr: string, name: string): string =>
  `coalesce(sum(${lowPart(expr)}), 0) AS ${lowName(name)}, coalesce(sum(${highPart(expr)}), 0) AS ${highName(name)}`;

/** The low part of a stored sum after adding `low` (SQL): kept in [0, 2^32). */
export const carriedLow = (low: string): string => lowPart(low);

/** The high part of a stored sum after adding `high` and `low` (SQL): takes the carry. */
export const carriedHigh = (high: string, low: string): string => `(${high}) + ${highPart(low)}`;

/**
 * A stored split value joined in SQL, `high * 2^32 + low`, for sums read in one column while
 * they fit (see `wholeSumsFit`). A multiplication, not `<< 32`: SQLite's shift drops the bits
 * it pushes out, while an integer `*` or `+` that overflows gives a REAL instead.
 */
export const wholeValue = (name: string): string =>
  `(${highName(name)} * 4294967296 + ${lowName(name)})`;

/**
 * Whether a row of sums read whole (`sum()` of integers, or of `wholeValue`) is exact: SQLite's
 * `sum()` gives an INTEGER only when every value it added was an INTEGER and no partial sum
 * passed 2^63 (it raises "integer overflow" then, see `isIntegerOverflow`); any REAL input, such
 * as a `wholeValue` whose `*` or `+` overflowed, makes it a REAL. Read with safe integers, an
 * INTEGER is a bigint and a REAL a number: every value a bigint means every sum is exact.
 */
export const wholeSumsFit = (row: Record<string, unknown>, names: readonly string[]): boolean =>
  names.every((name) => typeof row[name] === "bigint");

/** Whether `error` is SQLite's `sum()` passing 2^63 ("integer overflow"). */
export const isIntegerOverflow = (error: unknown): boolean =>
  error instanceof Error && /\binteger overflow\b/.test(error.message);

/** The exact value of a split sum. */
export const joinParts = (high: bigint | number, low: bigint | number): bigint =>
  (BigInt(high) << 32n) + BigInt(low);

/**
 * A row read with split sums, each `<name>_lo`/`<name>_hi` pair of `names` replaced by `name`,
 * its exact value.
 */
export function joinSplitSums<T extends Record<string, unknown>>(
  row: T,
  names: readonly string[],
): T & Record<string, bigint> {
  const out: Record<string, unknown> = { ...row };
  for (const name of names) {
    out[name] = joinParts(
      row[highName(name)] as bigint | number,
      row[lowName(name)] as bigint | number,
    );
    delete out[highName(name)];
    delete out[lowName(name)];
  }
  return out as T & Record<string, bigint>;
}
