import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { desc, eq, sql } from "drizzle-orm";
import type { Store } from "../db/client.js";
import { accessTokens, type TokenRole, tokenRoles } from "../db/schema.js";
import { AppError } from "../errors.js";

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

/** A token as listed: never the secret, never its hash. */
export interface TokenInfo {
  id: string;
  name: string;
  role: TokenRole;
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

/** SHA-256 of the token text, hex. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** Creates a token; the returned `token` is the only time its text exists outside the caller. */
export function createToken(
  store: Store,
  input: { role: TokenRole; name: string },
  now: () => number = Date.now,
): TokenInfo & { token: string } {
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
  store.db.insert(accessTokens).values(row).run();
  const { tokenHash: _hash, ...info } = row;
  return { ...info, token };
}

/** Every token, newest first, revoked ones included (with `revokedAt`). */
export function listTokens(store: Store): TokenInfo[] {
  return store.db
    .select({
      id: accessTokens.id,
      name: accessTokens.name,
      role: accessTokens.role,
      createdAt: accessTokens.createdAt,
      lastUsedAt: accessTokens.lastUsedAt,
      revokedAt: accessTokens.revokedAt,
    })
    .from(accessTokens)
    .orderBy(desc(accessTokens.createdAt))
    .all();
}

/** Revokes a token by id; revoking twice keeps the first revocation time. Unknown id: not_found. */
export function revokeToken(store: Store, id: string, now: () => number = Date.now): TokenInfo {
  const existing = listTokens(store).find((t) => t.id === id);
  if (!existing) throw new AppError("not_found", `no token with id ${id}`);
  if (existing.revokedAt !== null) return existing;
  const revokedAt = now();
  store.db.update(accessTokens).set({ revokedAt }).where(eq(accessTokens.id, id)).run();
  return { ...existing, revokedAt };
}

/** Minimum interval between two writes of `lastUsedAt` for one token, so reads stay reads. */
const LAST_USED_RESOLUTION_MS = 60_000;

const tokenLookups = new WeakMap<Store, ReturnType<typeof prepareTokenLookup>>();

function prepareTokenLookup(store: Store) {
  return store.db
    .select()
    .from(accessTokens)
    .where(eq(accessTokens.tokenHash, sql.placeholder("hash")))
    .prepare();
}

/** The lookup every authenticated request makes, prepared once per store. */
function tokenByHash(store: Store) {
  let lookup = tokenLookups.get(store);
  if (!lookup) {
    lookup = prepareTokenLookup(store);
    tokenLookups.set(store, lookup);
  }
  return lookup;
}

/**
 * Finds the live token matching `token`, or null. The lookup is by hash (an index probe that
 * reveals nothing about the stored token's text), then the hashes are compared in constant
 * time, so neither step leaks how much of a guess was right.
 */
export function authenticateToken(
  store: Store,
  token: string,
  now: () => number = Date.now,
): TokenInfo | null {
  if (!token.startsWith(TOKEN_PREFIX) || token.length > 200) return null;
  const presented = hashToken(token);
  const row = tokenByHash(store).get({ hash: presented });
  if (!row) return null;
  const a = Buffer.from(row.tokenHash, "hex");
  const b = Buffer.from(presented, "hex");
  if (a.length !== b.length || !timingSafeEqual(a, b)) return null;
  if (row.revokedAt !== null) return null;
  const at = now();
  if (row.lastUsedAt === null || at - row.lastUsedAt >= LAST_USED_RESOLUTION_MS) {
    try {
      store.db
        .update(accessTokens)
        .set({ lastUsedAt: at })
        .where(eq(accessTokens.id, row.id))
        .run();
    } catch {
      // Bookkeeping only: a busy database must not turn a valid token away.
    }
  }
  const { tokenHash: _hash, ...info } = row;
  return info;
}
