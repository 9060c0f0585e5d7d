import { randomUUID } from "node:crypto";
import { cutText, printable } from "../printable-text.js";
import { redactCensor, withoutAnyKey, withoutKeys } from "../recorder/without-key.js";

/** An access token of this API as `createToken` makes it: `da_<role>_` and 43 base64url characters. */
const auditTokenPattern = /da_(?:read|ingest|admin)_[A-Za-z0-9_-]{16,}/g;

/**
 * `text` with every access token of this API cut, as `withoutAnyKey` cuts Decentral keys: an
 * admin token sent where a trace id or a job id goes (`x-request-id: da_admin_...`,
 * `GET /audit/da_admin_...`) was written to the request log whole, while a Decentral key in the
 * same place was cut. A token is shown once and stored hashed; a log line must not hold it.
 */
export function withoutAuditTokens(text: string): string {
  return text.includes("da_") ? text.replace(auditTokenPattern, redactCensor) : text;
}

/** Characters of a caller's request id kept (a UUID is 36; a trace id with its parent, 55). */
export const maxRequestIdLength = 128;

/**
 * The id a request is logged and answered under: the caller's `x-request-id`, else a fresh
 * one. The caller's is shown as `printable` shows text (a C1 control such as U+009B, which a
 * header may carry, drives a terminal that prints the log) and cut to 128 characters: the
 * header may be as long as all the headers together (16 KiB), and each line of the request's
 * log would carry it. An empty one gets a fresh id. It stays a valid header value, as it is
 * sent back.
 */
export function requestIdOf(given: string | readonly string[] | undefined): string {
  const text = typeof given === "string" ? given : given?.join(", ");
  if (text === undefined || text.trim() === "") return randomUUID();
  // Logged on every line of the request: a Decentral key sent as the id (a client that passed
  // its key where a trace id goes) was written to the log whole.
  return cutText(
    printable(withoutAuditTokens(withoutAnyKey(text))),
    maxRequestIdLength,
    "...",
  ) as string;
}

/**
 * Characters of a request's path its `request` log line keeps. The line stays one write of
 * whole lines under PIPE_BUF (src/serve-log.ts), which a pipe shared by every process of the
 * service never cuts: a path of 1,024 characters is at most 2 KiB of JSON (Node takes only
 * printable ASCII in a path; a quote or backslash is escaped), where a path as long as Node
 * takes (16 KiB of headers) made a line a pipe could cut into another worker's lines.
 */
export const maxLoggedPathLength = 1024;

/**
 * `path` as a request's log line shows it: a caller's key in it removed, and any other text
 * shaped as a Decentral API key (a backend that put its key where a job id goes,
 * `GET /audit/dcntrl_live_...` with a read token, was logged whole), then cut.
 */
export function loggedPath(path: string, credentials: string[]): string {
  return (
    cutText(
      withoutAuditTokens(withoutAnyKey(withoutKeys(path, credentials))),
      maxLoggedPathLength,
      "...",
    ) ?? ""
  );
}
