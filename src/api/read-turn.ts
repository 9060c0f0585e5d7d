import type { Context, MiddlewareHandler } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ReaderGone, type ReadGate } from "../read-gate.js";

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
 * a reader beyond the gate's queue is answered by `refuse` (a 503 with `Retry-After`). `admit`,
 * asked before a reader takes a place, answers one that may not read at all (a wrong token):
 * a flood of those took every place, and readers with the right token were refused as busy. A
 * reader whose client hangs up while it waits leaves its place (logged as 499, nothing read).
 */
export function readTurn<C extends Context>(
  gate: ReadGate,
  of: "api" | "dashboard",
  refuse: (c: C, retryAfterSeconds: number) => Response | Promise<Response>,
  admit?: (c: C) => Promise<Response | undefined>,
): MiddlewareHandler {
  return async (c, next) => {
    if (!isReader(c.req.method, c.req.path, of)) return next();
    const refused = admit ? await admit(c as C) : undefined;
    if (refused) return refused;
    const turn = gate.run(next, c.req.raw.signal);
    if (turn !== null) {
      try {
        return void (await turn);
      } catch (error) {
        // Nobody to answer: the status is for the request log.
        if (error instanceof ReaderGone) return c.body(null, 499 as ContentfulStatusCode);
        throw error;
      }
    }
    const seconds = gate.retryAfterSeconds();
    const answer = await refuse(c as C, seconds);
    answer.headers.set("retry-after", String(seconds));
    return answer;
  };
}

/** What a refused reader is told. */
export const readersBusyMessage =
  "too many report readers at once; ask again after the seconds Retry-After says";
