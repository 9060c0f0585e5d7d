import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { isBusyError, isTransientPgError } from "../db/client.js";
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
    case "conflict":
      return 409;
    case "payload_too_large":
      return 413;
    case "locked":
      return 423;
    case "rate_limited":
      return 429;
    case "store_unavailable":
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
  if (isBusyError(error) || isTransientPgError(error)) {
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
