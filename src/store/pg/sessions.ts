import { and, eq, gt, isNull, lte } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { accessTokens, dashboardSessions } from "../../db/pg/schema.js";
import type { SessionsStore } from "../sessions.js";

/** The dashboard sessions store on a PostgreSQL pool. */
export function createPgSessionsStore(store: PgStore): SessionsStore {
  const { db } = store;
  return {
    async open(session) {
      // Two sign-ins at once may both sweep: deleting expired rows twice is the same as once.
      await db.transaction(async (tx) => {
        await tx
          .delete(dashboardSessions)
          .where(lte(dashboardSessions.expiresAt, session.createdAt));
        await tx.insert(dashboardSessions).values(session);
      });
    },
    async find(idHash, now) {
      const [row] = await db
        .select({
          tokenId: dashboardSessions.tokenId,
          expiresAt: dashboardSessions.expiresAt,
          tokenName: accessTokens.name,
          role: accessTokens.role,
        })
        .from(dashboardSessions)
        .innerJoin(accessTokens, eq(accessTokens.id, dashboardSessions.tokenId))
        .where(
          and(
            eq(dashboardSessions.idHash, idHash),
            gt(dashboardSessions.expiresAt, now),
            isNull(accessTokens.revokedAt),
          ),
        );
      return row ?? null;
    },
    async delete(idHash) {
      await db.delete(dashboardSessions).where(eq(dashboardSessions.idHash, idHash));
    },
  };
}
