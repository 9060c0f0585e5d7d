import { desc, eq, sql } from "drizzle-orm";
import type { SqliteStore, Store } from "../db/client.js";
import { accessTokens } from "../db/schema.js";
import { pgTwins } from "./pg-twins.js";
import { param, perConnection } from "./prepared.js";

/** An access token as stored: only the SHA-256 of its text. */
export type TokenRow = typeof accessTokens.$inferSelect;

/** A token as listed: never the secret, never its hash. */
export type TokenInfo = Omit<TokenRow, "tokenHash">;

/** The audit API's access tokens (`access_tokens`). */
export interface TokensStore {
  /** Stores a new token. */
  insert(row: TokenRow): Promise<void>;
  /** Every token, newest first, revoked ones included (with `revokedAt`). */
  list(): Promise<TokenInfo[]>;
  /** The token whose text hashes to `tokenHash`, revoked or not; undefined when none. */
  findByHash(tokenHash: string): Promise<TokenRow | undefined>;
  /**
   * The token `findByHash` found live within `maxAgeMs` of `now`, unless a revocation this
   * process made or heard of since forgot it: only for while the database cannot be asked.
   */
  lastKnown(tokenHash: string, now: number, maxAgeMs: number): TokenRow | undefined;
  /** Notes that a token was used at `at`. */
  touch(id: string, at: number): Promise<void>;
  /**
   * Revokes a token at `at` in one IMMEDIATE transaction; a token revoked before keeps its
   * first revocation time. Resolves with the token as it now is, or null for an unknown id.
   */
  revoke(id: string, at: number): Promise<TokenInfo | null>;
}

const info = {
  id: accessTokens.id,
  name: accessTokens.name,
  role: accessTokens.role,
  createdAt: accessTokens.createdAt,
  lastUsedAt: accessTokens.lastUsedAt,
  revokedAt: accessTokens.revokedAt,
};

const statementsOf = perConnection((store: SqliteStore) => {
  const byId = eq(accessTokens.id, sql.placeholder("id"));
  return {
    insert: store.db
      .insert(accessTokens)
      .values({
        id: param("id"),
        name: param("name"),
        role: param("role"),
        tokenHash: param("tokenHash"),
        createdAt: param("createdAt"),
        lastUsedAt: param("lastUsedAt"),
        revokedAt: param("revokedAt"),
      })
      .prepare(),
    list: store.db.select(info).from(accessTokens).orderBy(desc(accessTokens.createdAt)).prepare(),
    byId: store.db.select(info).from(accessTokens).where(byId).prepare(),
    // The lookup every authenticated request makes.
    byHash: store.db
      .select()
      .from(accessTokens)
      .where(eq(accessTokens.tokenHash, sql.placeholder("hash")))
      .prepare(),
    touch: store.db
      .update(accessTokens)
      .set({ lastUsedAt: param("at") })
      .where(byId)
      .prepare(),
    revoke: store.db
      .update(accessTokens)
      .set({ revokedAt: param("at") })
      .where(byId)
      .prepare(),
  };
});

/** The tokens store of either dialect. */
export function createTokensStore(store: Store): TokensStore {
  return store.kind === "postgres"
    ? pgTwins().createPgTokensStore(store)
    : createSqliteTokensStore(store);
}

/** The tokens store on `store`'s connection; its statements are prepared here, once. */
function createSqliteTokensStore(store: SqliteStore): TokensStore {
  const st = statementsOf(store);
  return {
    async insert(row) {
      st.insert.run(row);
    },
    async list() {
      return st.list.all();
    },
    async findByHash(hash) {
      return st.byHash.get({ hash });
    },
    lastKnown() {
      // A SQLite file does not go away while the process holds it open, and a revocation by
      // another process is not heard: nothing is answered without the database.
      return undefined;
    },
    async touch(id, at) {
      // Bookkeeping, and synchronous: waiting here for another connection's write lock would
      // hold the event loop (every request of the process, `/readyz` too) for the busy timeout.
      // A lock held now fails the write at once; a later use writes it.
      const wait = Number(store.sqlite.pragma("busy_timeout", { simple: true }));
      store.sqlite.pragma("busy_timeout = 0");
      try {
        st.touch.run({ id, at });
      } finally {
        store.sqlite.pragma(`busy_timeout = ${wait}`);
      }
    },
    async revoke(id, at) {
      const revoked = store.sqlite
        .transaction(() => {
          const existing = st.byId.get({ id });
          if (!existing || existing.revokedAt !== null) return existing ?? null;
          st.revoke.run({ id, at });
          return { ...existing, revokedAt: at };
        })
        .immediate();
      return revoked;
    },
  };
}
