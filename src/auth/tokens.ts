import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import type { Store } from "../db/client.js";
import { type TokenRole, tokenRoles } from "../db/schema.js";
import { AppError } from "../errors.js";
import type { Logger } from "../log.js";
import { hasUnprintable, printable } from "../printable-text.js";
import { createTokensStore, type TokenInfo } from "../store/tokens.js";

export type { TokenInfo } from "../store/tokens.js";

/**
 * Access tokens of the audit API. A token is `da_<role>_<43 base64url chars>` (256 random bits),
 * shown once at creation; only its SHA-256 is stored. With that much entropy a plain hash is
 * enough (no salt or slow KDF needed): nobody can guess a preimage.
 *
 * Roles:
 * - `read`: dashboards: audit records, reports, the jobs listing, readiness, metrics, OpenAPI.
 * - `ingest`: backends posting receipts (`POST /jobs`, and the proxy when PROXY_REQUIRE_TOKEN
 *   is on). It deliberately does NOT include `read`: a backend's token leaking must not expose
 *   every receipt and report.
 * - `admin`: everything, including re-verification and token management.
 */
export const TOKEN_PREFIX = "da_";

/** The roles that satisfy a requirement: `admin` satisfies every one. */
const satisfiedBy: Record<TokenRole, readonly TokenRole[]> = {
  read: ["read", "admin"],
  ingest: ["ingest", "admin"],
  admin: ["admin"],
};

/** True when a token of role `held` may call a route that requires `required`. */
export function roleSatisfies(held: TokenRole, required: TokenRole): boolean {
  return satisfiedBy[required].includes(held);
}

/** The roles that satisfy `required`, for error messages. */
export function rolesSatisfying(required: TokenRole): readonly TokenRole[] {
  return satisfiedBy[required];
}

/** SHA-256 of the token text, hex. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/**
 * A token name as one line of plain text. A name may not hold control characters (a newline or
 * tab breaks the table `tokens list` prints, an escape sequence drives the terminal that shows
 * it), line separators, bidirectional overrides or invisible characters (`hasUnprintable`, the rule of all caller
 * text); a name stored before that rule still prints inert.
 */
export const printableTokenName = printable;

/** Creates a token; the returned `token` is the only time its text exists outside the caller. */
export async function createToken(
  store: Store,
  input: { role: TokenRole; name: string },
  now: () => number = Date.now,
): Promise<TokenInfo & { token: string }> {
  if (!tokenRoles.includes(input.role)) {
    throw new AppError("validation_failed", `role must be one of ${tokenRoles.join(", ")}`, {
      field: "role",
    });
  }
  const name = input.name.trim();
  if (name.length === 0 || name.length > 200) {
    throw new AppError("validation_failed", "name must be 1 to 200 characters", {
      field: "name",
    });
  }
  if (hasUnprintable(name)) {
    throw new AppError(
      "validation_failed",
      "name must not contain control characters (line breaks, tabs, escape sequences) or invisible characters (zero-width, bidi, spaces other than U+0020)",
      { field: "name" },
    );
  }
  const token = `${TOKEN_PREFIX}${input.role}_${randomBytes(32).toString("base64url")}`;
  const row = {
    id: `tok_${randomUUID().replaceAll("-", "").slice(0, 16)}`,
    name,
    role: input.role,
    tokenHash: hashToken(token),
    createdAt: now(),
    lastUsedAt: null,
    revokedAt: null,
  };
  await createTokensStore(store).insert(row);
  const { tokenHash: _hash, ...info } = row;
  return { ...info, token };
}

/** Every token, newest first, revoked ones included (with `revokedAt`). */
export function listTokens(store: Store): Promise<TokenInfo[]> {
  return createTokensStore(store).list();
}

/** A token's id as `createToken` makes it. */
const tokenIdPattern = /^tok_[0-9a-f]{16}$/;

/**
 * What was given to revoke as it was pasted: the text of an `Authorization` header
 * (`Bearer da_…`), quoted, or with spaces around it, is the token inside.
 */
function pastedToken(given: string): string {
  let text = given.trim().replace(/^bearer\s+/i, "");
  const quote = text[0];
  if (text.length > 1 && (quote === '"' || quote === "'") && text.endsWith(quote)) {
    text = text.slice(1, -1);
  }
  return text.trim();
}

/**
 * Revokes a token by id, or by its text (`da_…`: a leaked token is often known only by its
 * text, and pasted as a header carried it: see `pastedToken`); revoking twice keeps the first
 * revocation time. None found: not_found. What was given is repeated in the message only when it
 * has an id's shape: a token's text went to a terminal or a CI log, where the secret would be
 * printed again, however it was pasted.
 */
export async function revokeToken(
  store: Store,
  given: string,
  now: () => number = Date.now,
): Promise<TokenInfo> {
  const tokens = createTokensStore(store);
  const idOrToken = pastedToken(given);
  if (idOrToken.startsWith(TOKEN_PREFIX)) {
    const row = await tokens.findByHash(hashToken(idOrToken));
    const revoked = row ? await tokens.revoke(row.id, now()) : null;
    if (!revoked) {
      throw new AppError(
        "not_found",
        "no token has that text (it is not shown again here); `tokens list` shows the ids",
      );
    }
    return revoked;
  }
  const revoked = await tokens.revoke(idOrToken, now());
  if (!revoked) {
    throw new AppError(
      "not_found",
      tokenIdPattern.test(idOrToken)
        ? `no token with id "${idOrToken}"`
        : "no token has that id (what was given is not shown, as it may be a token's text); ids look like tok_ and 16 hex digits, and `tokens list` shows them",
    );
  }
  return revoked;
}

/** Minimum interval between two writes of `lastUsedAt` for one token, so reads stay reads. */
const LAST_USED_RESOLUTION_MS = 60_000;

/**
 * Finds the live token matching `token`, or null. The lookup is by hash (an index probe that
 * reveals nothing about the stored token's text), then the hashes are compared in constant
 * time, so neither step leaks how much of a guess was right.
 */
export async function authenticateToken(
  store: Store,
  token: string,
  now: () => number = Date.now,
): Promise<TokenInfo | null> {
  if (!token.startsWith(TOKEN_PREFIX) || token.length > 200) return null;
  const presented = hashToken(token);
  const tokens = createTokensStore(store);
  let row: Awaited<ReturnType<typeof tokens.findByHash>>;
  try {
    row = await tokens.findByHash(presented);
  } catch (error) {
    // The database is away: a token found live a little while ago, and not revoked since as
    // far as this process heard, still opens the door, so /readyz and /metrics can say what is
    // wrong during the outage instead of a bare 503.
    const seen = tokens.lastKnown(presented, Date.now(), OUTAGE_TRUST_MS);
    if (!seen) throw error;
    row = seen;
  }
  if (!row) return null;
  const a = Buffer.from(row.tokenHash, "hex");
  const b = Buffer.from(presented, "hex");
  if (a.length !== b.length || !timingSafeEqual(a, b)) return null;
  if (row.revokedAt !== null) return null;
  const at = now();
  if (row.lastUsedAt === null || at - row.lastUsedAt >= LAST_USED_RESOLUTION_MS) {
    try {
      await tokens.touch(row.id, at);
    } catch {
      // Bookkeeping only: a busy database must not turn a valid token away.
    }
  }
  const { tokenHash: _hash, ...info } = row;
  return info;
}

/**
 * How long a token found live may be trusted without the database: a token revoked during an
 * outage still works until the database answers again, for at most this long.
 */
const OUTAGE_TRUST_MS = 10 * 60_000;

/**
 * Said at start: with PROXY_REQUIRE_TOKEN on and no live `ingest` or `admin` token, every
 * request to `/v1/*` is refused 401, which read as a proxy fault rather than a missing token.
 */
export async function warnWithoutProxyTokens(store: Store, log: Logger): Promise<void> {
  const live = (await listTokens(store)).filter(
    (t) => t.revokedAt === null && roleSatisfies(t.role, "ingest"),
  );
  if (live.length > 0) return;
  log.warn(
    "PROXY_REQUIRE_TOKEN is on but no live ingest or admin token exists: every /v1 request is refused 401 until one is created (decentral-audit tokens create --role ingest --name …)",
  );
}
