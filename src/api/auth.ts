import type { IncomingMessage } from "node:http";
import type { HttpBindings } from "@hono/node-server";
import type { Context, MiddlewareHandler } from "hono";
import {
  authenticateToken,
  roleSatisfies,
  rolesSatisfying,
  type TokenInfo,
} from "../auth/tokens.js";
import type { Store } from "../db/client.js";
import type { TokenRole } from "../db/schema.js";
import type { AppEnv } from "./context.js";
import { errorBody } from "./error-handler.js";

/** Header that carries an access token where `Authorization` already holds the Decentral key. */
export const AUDIT_TOKEN_HEADER = "x-audit-token";

/** Where `requireRole` reads the token from. */
export type TokenSource = "authorization" | typeof AUDIT_TOKEN_HEADER;

/** Security scheme name used in the OpenAPI document. */
export const BEARER_SCHEME = "bearerAuth";

function presentedToken(header: string | undefined, source: TokenSource): string | undefined {
  if (!header) return undefined;
  if (source === AUDIT_TOKEN_HEADER) return header.trim() || undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

/**
 * Token lookups already made for a Node request (the proxy's direct path, which hands a request
 * it does not let through to the app): the app answers from that lookup instead of making its
 * own. Looked up twice, an unknown token waited out two connection attempts while PostgreSQL was
 * away.
 */
const lookedUp = new WeakMap<IncomingMessage, { token: string; held: Promise<TokenInfo | null> }>();

/** Notes the lookup of `token` made for `req`; `requireRole` takes its outcome, error or not. */
export function noteTokenLookup(
  req: IncomingMessage,
  token: string,
  held: Promise<TokenInfo | null>,
): void {
  // Read by requireRole, or by nobody: a rejection is never left unhandled.
  held.catch(() => {});
  lookedUp.set(req, { token, held });
}

/** The Node request under the app, when it runs on Node's HTTP server. */
function incomingOf(c: Context): IncomingMessage | undefined {
  return (c.env as Partial<HttpBindings> | undefined)?.incoming;
}

/**
 * How many times the header was given. Node joins a header sent twice with ", " (as the Fetch
 * API does): a token holds no comma, and a Bearer credential is one scheme and one token.
 */
function timesGiven(c: Context, name: TokenSource, joined: string): number {
  const distinct = incomingOf(c)?.headersDistinct[name];
  if (distinct) return distinct.length;
  return name === AUDIT_TOKEN_HEADER
    ? joined.split(",").length
    : Math.max(1, joined.match(/(?:^|,)\s*bearer\s/gi)?.length ?? 0);
}

/**
 * Middleware that lets a request through only with a live access token whose role satisfies
 * `role` (`admin` satisfies every role). No or unknown token: 401 `unauthorized`; a token of a
 * role that does not suffice: 403 `forbidden`. The token never appears in a body or a log line.
 */
export function requireRole(
  store: Store,
  role: TokenRole,
  options: { source?: TokenSource; now?: () => number } = {},
): MiddlewareHandler<AppEnv> {
  const source = options.source ?? "authorization";
  return async (c, next) => {
    const header = c.req.header(source);
    const where = source === "authorization" ? "Authorization: Bearer <token>" : source;
    const times = header?.includes(",") ? timesGiven(c, source, header) : 1;
    if (times > 1) {
      // Which of them would be meant? Answered as if none were given, the client was told to
      // send the token it had sent.
      const name = source === "authorization" ? "Authorization" : source;
      return c.json(
        errorBody(c, "bad_request", `the ${name} header was given ${times} times; send it once`, {
          header: name,
          requiredRole: role,
        }),
        400,
      );
    }
    const token = presentedToken(header, source);
    if (!token) {
      c.header("www-authenticate", 'Bearer realm="decentral-audit"');
      // A header given in another form than this one reads (a token with no scheme, another
      // scheme) is said so: "required" read as if nothing had been sent.
      const sent =
        source === "authorization" && header?.trim()
          ? `; the Authorization header holds no Bearer token: send "Bearer <token>"`
          : "";
      return c.json(
        errorBody(c, "unauthorized", `an access token is required (${where})${sent}`, {
          requiredRole: role,
        }),
        401,
      );
    }
    if (source === AUDIT_TOKEN_HEADER && /^bearer\s/i.test(token)) {
      // `x-audit-token: Bearer da_...`, as Authorization is written: the token is fine, its
      // form is not, and "unknown or revoked" sent the user to look for a revoked token.
      c.header("www-authenticate", 'Bearer realm="decentral-audit", error="invalid_token"');
      return c.json(
        errorBody(
          c,
          "unauthorized",
          `${AUDIT_TOKEN_HEADER} holds the token alone (da_...), without "Bearer "`,
          { requiredRole: role },
        ),
        401,
      );
    }
    const incoming = incomingOf(c);
    const prior = incoming && lookedUp.get(incoming);
    if (incoming) lookedUp.delete(incoming);
    const held = await (prior?.token === token
      ? prior.held
      : authenticateToken(store, token, options.now));
    if (!held) {
      c.header("www-authenticate", 'Bearer realm="decentral-audit", error="invalid_token"');
      return c.json(
        errorBody(c, "unauthorized", "the access token is unknown or revoked", {
          requiredRole: role,
        }),
        401,
      );
    }
    if (!roleSatisfies(held.role, role)) {
      return c.json(
        errorBody(
          c,
          "forbidden",
          `this route needs a token of role ${rolesSatisfying(role).join(" or ")}; the token has role ${held.role}`,
          { requiredRole: role, tokenRole: held.role },
        ),
        403,
      );
    }
    c.get("log")?.debug({ tokenId: held.id, role: held.role }, "authenticated");
    await next();
  };
}
