import { randomUUID } from "node:crypto";
import { cutText, printable } from "../printable-text.js";

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
  return cutText(printable(text), maxRequestIdLength, "...") as string;
}
