import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import { authenticateToken, roleSatisfies } from "../auth/tokens.js";
import type { Store } from "../db/client.js";
import { type Logger, redactCensor, redactPaths } from "../log.js";
import type { RecordingProxy } from "../recorder/proxy.js";
import { credentialsOf } from "../recorder/without-key.js";
import { noteTokenLookup } from "./auth.js";
import { loggedPath, requestIdOf } from "./request-id.js";

/** What the proxy's direct path needs; see `withProxyFastPath`. */
export interface ProxyFastPathDeps {
  proxy: RecordingProxy;
  log: Logger;
  /**
   * PROXY_REQUIRE_TOKEN: the store whose `ingest` tokens (in `x-audit-token`) open `/v1/*`.
   * A request this path cannot let through goes to the app, whose middleware answers it.
   */
  requireToken?: Store;
}

/** The `x-audit-token` header's token, as the app's `requireRole` reads it. */
function auditToken(req: IncomingMessage): string | undefined {
  const header = req.headers["x-audit-token"];
  return typeof header === "string" ? header.trim() || undefined : undefined;
}

/** The path of a request target, without its query: what the request log names. */
function pathOf(url: string): string {
  const query = url.indexOf("?");
  return query < 0 ? url : url.slice(0, query);
}

/**
 * Wraps the app's Node request listener so that `/v1/*` goes straight to the recording proxy,
 * which works on Node's request and response objects anyway: no Fetch API request is built,
 * no middleware chain runs and no child logger is made for a request whose every byte the
 * proxy writes itself. Everything else goes to `app`. It keeps what the app's middleware does
 * for these requests: a request id (`x-request-id`, else a fresh one) and one `request` log
 * line, written once the response is over, with the status the client got.
 *
 * With `requireToken` (PROXY_REQUIRE_TOKEN) a request comes this way only once its token is found
 * live and of a role that may ingest; any other (no token, an unknown, revoked or read-only one,
 * a database that cannot say) goes to the app, whose `requireRole` answers it as before. Through
 * the app's Fetch API adapter and middleware, a proxied request cost about 0.2 ms more CPU.
 */
export function withProxyFastPath(app: RequestListener, deps: ProxyFastPathDeps): RequestListener {
  const { proxy, log, requireToken } = deps;
  // The request line's fields are these five, none a secret (no header but the request id, no
  // query string, the caller's key cut from the path): only the top-level secret names stay redacted, in case one is ever added.
  // The logger's nested and wildcard paths were run over every field of every line, three
  // times the CPU of the rest of the line.
  const requestLog = log.child(
    {},
    { redact: { paths: redactPaths.filter((path) => !path.includes(".")), censor: redactCensor } },
  );
  const serve = (
    req: IncomingMessage,
    res: ServerResponse,
    url: string,
    started: number,
    held?: { id: string; role: string },
  ) => {
    const requestId = requestIdOf(req.headers["x-request-id"]);
    if (held) log.debug({ requestId, tokenId: held.id, role: held.role }, "authenticated");
    const failed = (error: unknown) => {
      log.error({ err: error, requestId }, "unhandled error");
      res.destroy();
    };
    let over: Promise<number>;
    try {
      over = proxy.handle(req, res, requestId);
    } catch (error) {
      failed(error);
      return;
    }
    over.then(
      (status) =>
        requestLog.info(
          {
            requestId,
            method: req.method,
            // A key the caller put in the path is not written out.
            path: loggedPath(
              pathOf(url),
              credentialsOf((name) => req.headers[name]),
            ),
            status,
            ms: Math.round((performance.now() - started) * 100) / 100,
          },
          "request",
        ),
      failed,
    );
  };
  return (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? "/";
    if (!url.startsWith("/v1/")) {
      app(req, res);
      return;
    }
    const started = performance.now();
    if (requireToken === undefined) {
      serve(req, res, url, started);
      return;
    }
    const token = auditToken(req);
    // A URL holding a NUL byte is the app's 400, as it was with the token checked there; a
    // token holding a comma is the header given twice, the app's 400 too.
    if (token === undefined || url.includes("%00") || token.includes(",")) {
      app(req, res);
      return;
    }
    const lookup = authenticateToken(requireToken, token);
    // A request not let through is answered by the app from this lookup, not from another one.
    noteTokenLookup(req, token, lookup);
    lookup.then(
      (held) => {
        if (held === null || !roleSatisfies(held.role, "ingest")) app(req, res);
        else serve(req, res, url, started, held);
      },
      () => app(req, res),
    );
  };
}
