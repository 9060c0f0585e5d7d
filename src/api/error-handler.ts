import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { isPgWriteRefusal } from "../db/client.js";
import { type ErrorCode, isAppError } from "../errors.js";

/** The one place where error codes become HTTP statuses. */
export function statusOf(code: ErrorCode): ContentfulStatusCode {
  switch (code) {
    case "bad_request":
    case "validation_failed":
    case "malformed_transaction":
      return 400;
    case "unauthorized":
      return 401;
    case "forbidden":
      return 403;
    case "not_found":
      return 404;
    case "method_not_allowed":
      return 405;
    case "conflict":
      return 409;
    case "not_acceptable":
      return 406;
    case "payload_too_large":
      return 413;
    case "unsupported_media_type":
      return 415;
    case "locked":
      return 423;
    case "rate_limited":
      return 429;
    case "store_unavailable":
    case "busy":
      return 503;
    case "upstream_unavailable":
    case "rpc_unavailable":
    case "rpc_disagreement":
      return 502;
    case "timeout":
      return 504;
    case "internal":
      return 500;
  }
}

/** Body shape of every error: `{"error":{"code","message",...details},"requestId"}`. */
export function errorBody(
  c: Context,
  code: ErrorCode,
  message: string,
  details: Record<string, unknown> = {},
) {
  return { error: { code, message, ...details }, requestId: c.get("requestId") as string };
}

/** Node's codes for a connection that could not be made or was lost. */
const connectionCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
]);

/**
 * The database is away (no connection, connection lost, no free connection slot, the server
 * shutting down) or SQLite's write lock is held past the timeout: asking again shortly is the
 * remedy. Not a statement that timed out (it would time out again) nor any other system error.
 */
export function isDatabaseAway(error: Error): boolean {
  const failure = error.cause instanceof Error && !("code" in error) ? error.cause : error;
  const code = (failure as { code?: unknown }).code;
  if (typeof code !== "string") {
    return /Connection terminated|connection timeout|timeout exceeded when trying to connect|^timeout expired$/i.test(
      failure.message,
    );
  }
  if (code.startsWith("SQLITE_BUSY") || code === "SQLITE_LOCKED") return true;
  // A full disk, or one that cannot be written: nothing was written, and it may pass.
  if (code === "SQLITE_FULL" || /^SQLITE_(IOERR|READONLY)/.test(code)) return true;
  // PostgreSQL: no connection (08), no free slot or memory or disk (53: `too many clients
  // already` with every slot held), a conflict it asks to retry (40), the server shutting
  // down or starting (57P01-03; not 57014, a statement that timed out and would again).
  if (/^[0-9A-Z]{5}$/.test(code)) return /^(08|53|40)/.test(code) || /^57P0[1-3]$/.test(code);
  return connectionCodes.has(code);
}

/** Hono `onError`: typed errors keep their status, anything else is a logged 500 with no leak. */
export function handleError(error: Error, c: Context) {
  if (isAppError(error)) {
    return c.json(errorBody(c, error.code, error.message, error.details), statusOf(error.code));
  }
  if (error instanceof HTTPException) {
    const status = error.status;
    const code: ErrorCode =
      status === 401 ? "unauthorized" : status === 413 ? "payload_too_large" : "bad_request";
    return c.json(errorBody(c, code, error.message || code), status);
  }
  if (isPgWriteRefusal(error)) {
    // The database answers but will not write (read-only, a privilege revoked): nothing was
    // written, and asking again helps only once its operator has acted.
    c.get("log")?.error({ err: error }, "the database refuses writes");
    c.header("retry-after", "1");
    return c.json(
      errorBody(
        c,
        "store_unavailable",
        "the audit database refuses writes (read-only, or a privilege missing); nothing was written",
      ),
      503,
    );
  }
  if (isDatabaseAway(error)) {
    // The database is away or its write lock is held past the timeout: nothing is wrong with
    // the request, and asking again shortly is the remedy.
    c.get("log")?.warn({ err: error }, "database unavailable");
    c.header("retry-after", "1");
    return c.json(
      errorBody(c, "store_unavailable", "the audit database is unavailable; retry shortly"),
      503,
    );
  }
  c.get("log")?.error({ err: error }, "unhandled error");
  return c.json(errorBody(c, "internal", "internal error"), 500);
}
