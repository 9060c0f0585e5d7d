import { and, desc, eq, isNull } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { accessTokens } from "../../db/pg/schema.js";
import type { TokensStore } from "../tokens.js";

const info = {
  id: accessTokens.id,
  name: accessTokens.name,
  role: accessTokens.role,
  createdAt: accessTokens.createdAt,
  lastUsedAt: accessTokens.lastUsedAt,
  revokedAt: accessTokens.revokedAt,
};

/** The access tokens store on a PostgreSQL pool. */
export function createPgTokensStore(store: PgStore): TokensStore {
  const { db } = store;
  return {
    async insert(row) {
      await db.insert(accessTokens).values(row);
    },
    list() {
      return db.select(info).from(accessTokens).orderBy(desc(accessTokens.createdAt));
    },
    async findByHash(hash) {
      const [row] = await db.select().from(accessTokens).where(eq(accessTokens.tokenHash, hash));
      return row;
    },
    async touch(id, at) {
      await db.update(accessTokens).set({ lastUsedAt: at }).where(eq(accessTokens.id, id));
    },
    async revoke(id, at) {
      // A guarded UPDATE instead of SQLite's read-then-write: of two revocations at once only
      // the first sets `revoked_at`; the other matches no row and reads the token as it is.
      const [revoked] = await db
        .update(accessTokens)
        .set({ revokedAt: at })
        .where(and(eq(accessTokens.id, id), isNull(accessTokens.revokedAt)))
        .returning(info);
      if (revoked) return revoked;
      const [existing] = await db.select(info).from(accessTokens).where(eq(accessTokens.id, id));
      return existing ?? null;
    },
  };
}
