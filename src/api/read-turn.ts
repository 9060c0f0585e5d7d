import type { Context, MiddlewareHandler } from "hono";
import type { ReadGate } from "../read-gate.js";

/**
 * The requests that take turns at the read gate (src/read-gate.ts): GET and HEAD of the audit
 * records, reports and job listings (`api`), or of the dashboard's pages, not its stylesheet nor
 * its sign-in (`dashboard`). The proxy, ingest, probes and scrapes never wait behind readers.
 */
export function isReader(method: string, path: string, of: "api" | "dashboard"): boolean {
  if (method !== "GET" && method !== "HEAD") return false;
  if (of === "api") return /^\/(audit|reports|jobs)(\/|$)/.test(path);
  return /^\/dashboard(\/|$)/.test(path) && !/^\/dashboard\/(assets|sign-in)(\/|$)/.test(path);
}

/**
 * Middleware running the rest of a reader's request (`isReader` of `of`) in its turn at `gate`;
 * a reader beyond the gate's queue is answered by `refuse`, whose 503 gets `Retry-After` (a
 * refusal may answer otherwise: a reader without a token is told so, not to come back).
 */
export function readTurn<C extends Context>(
  gate: ReadGate,
  of: "api" | "dashboard",
  refuse: (c: C, retryAfterSeconds: number) => Response | Promise<Response>,
): MiddlewareHandler {
  return async (c, next) => {
    if (!isReader(c.req.method, c.req.path, of)) return next();
    const turn = gate.run(next);
    if (turn !== null) return void (await turn);
    const seconds = gate.retryAfterSeconds();
    const answer = await refuse(c as C, seconds);
    if (answer.status === 503) answer.headers.set("retry-after", String(seconds));
    return answer;
  };
}

/** What a refused reader is told. */
export const readersBusyMessage =
  "too many report readers at once; ask again after the seconds Retry-After says";
