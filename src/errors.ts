/**
 * Stable error codes of the whole service. Domain code throws `AppError` with one of these;
 * `src/api/error-handler.ts` maps each code to an HTTP status in one place, and the CLI maps
 * them to exit codes.
 */
export const errorCodes = [
  "bad_request",
  "validation_failed",
  "unauthorized",
  "forbidden",
  "not_found",
  "method_not_allowed",
  "conflict",
  "payload_too_large",
  "unsupported_media_type",
  "not_acceptable",
  "rate_limited",
  "upstream_unavailable",
  "rpc_unavailable",
  "rpc_disagreement",
  "malformed_transaction",
  "locked",
  "store_unavailable",
  "busy",
  "timeout",
  "internal",
] as const;

export type ErrorCode = (typeof errorCodes)[number];

/** A domain error with a stable `code`, an optional field at fault and structured details. */
export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: { field?: string; [key: string]: unknown } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "AppError";
  }
}

export function isAppError(error: unknown): error is AppError {
  return error instanceof AppError;
}

/**
 * A whole-number command-line flag, in decimal digits only (`Number()` alone took "1e3" for
 * 1000, "0x10" for 16 and " " for 0): an AppError naming the flag otherwise (exit code 2).
 */
export function wholeNumberFlag(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < min || value > max) {
    throw new AppError(
      "validation_failed",
      // A bound of the most a number holds is none: `from 2 to 9007199254740991` read as one.
      `--${flag}: expected an integer ${max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`}, got ${JSON.stringify(text)}`,
      { field: flag },
    );
  }
  return value;
}

/**
 * An error's message for a person: the query builder wraps a driver's error in "Failed query:
 * <SQL> params: <values>" (PostgreSQL) or "Failed to run the query '<SQL>'" (SQLite), which
 * hides the cause (a connection terminated, a disk full) behind the statement and prints the
 * row's data; the driver's message is taken instead.
 */
const queryWrapper = /^Failed (query:|to run the query)/;

export function messageOf(error: unknown): string {
  let e = error;
  while (e instanceof Error && queryWrapper.test(e.message) && e.cause instanceof Error) {
    e = e.cause;
  }
  return e instanceof Error ? e.message : String(e);
}
