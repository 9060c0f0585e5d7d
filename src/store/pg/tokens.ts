import { and, desc, eq, isNull, sql } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { accessTokens } from "../../db/pg/schema.js";
import { KnownTokens } from "../token-memory.js";
import type { TokenRow, TokensStore } from "../tokens.js";

const info = {
  id: accessTokens.id,
  name: accessTokens.name,
  role: accessTokens.role,
  createdAt: accessTokens.createdAt,
  lastUsedAt: accessTokens.lastUsedAt,
  revokedAt: accessTokens.revokedAt,
};

/** The channel a revocation is announced on, with the token's id as payload. */
const REVOKED_CHANNEL = "decentral_audit_token_revoked";

/** How long a live token is taken from the cache before it is read again, ms. */
const CACHED_MS = 60_000;

/** Live tokens this process has read, by hash (hashes only, as the table holds them). */
interface TokenCache {
  rows: Map<string, { row: TokenRow; readAt: number }>;
  /** Moves on every revocation and every lost listener: a read that began before is not kept. */
  generation: number;
  /** Forgets one token, or all of them. */
  forget(id?: string): void;
  /**
   * Tokens found live, kept through a lost listener (the database going away) but forgotten on
   * every revocation heard: `lastKnown`'s answer during an outage.
   */
  known: KnownTokens;
  /** True when the cache may be used: the listener is on (asked to connect again when not). */
  trusted(): boolean;
}

const caches = new WeakMap<PgStore, TokenCache>();

/**
 * The live-token cache of a store. Every authenticated request reads its token; on PostgreSQL
 * that read is a round trip of its own before the request's work, so tokens found live are
 * kept in memory while the store's listener hears of revocations: a revocation by any process
 * reaches every other as its transaction commits (NOTIFY), and this process drops it at once.
 * Without the listener (not yet connected, or lost) nothing is taken from the cache.
 */
function tokenCache(store: PgStore): TokenCache {
  const existing = caches.get(store);
  if (existing) return existing;
  const cache: TokenCache = {
    rows: new Map(),
    known: new KnownTokens(),
    generation: 0,
    forget(id) {
      cache.generation++;
      for (const [hash, entry] of cache.rows) {
        if (id === undefined || entry.row.id === id) cache.rows.delete(hash);
      }
    },
    trusted() {
      store.listener.listen(REVOKED_CHANNEL, handlers);
      return store.listener.listening(REVOKED_CHANNEL);
    },
  };
  const handlers = {
    notify: (id: string) => {
      cache.forget(id);
      cache.known.forget(id);
    },
    lost: () => cache.forget(),
  };
  caches.set(store, cache);
  return cache;
}

/** The access tokens store on a PostgreSQL pool. */
export function createPgTokensStore(store: PgStore): TokensStore {
  const { db } = store;
  const cache = tokenCache(store);
  return {
    async insert(row) {
      await db.insert(accessTokens).values(row);
    },
    list() {
      return db.select(info).from(accessTokens).orderBy(desc(accessTokens.createdAt));
    },
    async findByHash(hash) {
      const now = performance.now();
      const listening = cache.trusted();
      const hit = listening ? cache.rows.get(hash) : undefined;
      if (hit && now - hit.readAt < CACHED_MS) {
        cache.known.found(hash, hit.row, Date.now());
        return { ...hit.row };
      }
      const generation = cache.generation;
      const [row] = await db.select().from(accessTokens).where(eq(accessTokens.tokenHash, hash));
      cache.known.found(hash, row, Date.now());
      // Kept only when the listener was on before the read began and nothing was revoked
      // since: a revocation committed during the read would otherwise be missed.
      if (row && row.revokedAt === null && listening && generation === cache.generation) {
        cache.rows.set(hash, { row, readAt: now });
      }
      return row;
    },
    lastKnown(hash, now, maxAgeMs) {
      return cache.known.get(hash, now, maxAgeMs);
    },
    async touch(id, at) {
      for (const entry of cache.rows.values()) {
        if (entry.row.id === id) entry.row = { ...entry.row, lastUsedAt: at };
      }
      await db.update(accessTokens).set({ lastUsedAt: at }).where(eq(accessTokens.id, id));
    },
    async revoke(id, at) {
      // A guarded UPDATE instead of SQLite's read-then-write: of two revocations at once only
      // the first sets `revoked_at`; the other matches no row and reads the token as it is.
      // Either way the revocation is announced with the commit (NOTIFY is transactional), to
      // every process: one revoked by hand before is dropped from their memory too.
      const token = await db.transaction(async (tx) => {
        const [revoked] = await tx
          .update(accessTokens)
          .set({ revokedAt: at })
          .where(and(eq(accessTokens.id, id), isNull(accessTokens.revokedAt)))
          .returning(info);
        const [row] = revoked
          ? [revoked]
          : await tx.select(info).from(accessTokens).where(eq(accessTokens.id, id));
        if (row) await tx.execute(sql`SELECT pg_notify(${REVOKED_CHANNEL}, ${id})`);
        return row;
      });
      cache.forget(id);
      cache.known.forget(id);
      return token ?? null;
    },
  };
}
