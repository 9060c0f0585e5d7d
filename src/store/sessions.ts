import { and, eq, gt, isNull, lte, sql } from "drizzle-orm";
import type { SqliteStore, Store } from "../db/client.js";
import { accessTokens, dashboardSessions, type TokenRole } from "../db/schema.js";
import { pgTwins } from "./pg-twins.js";
import { param, perConnection } from "./prepared.js";

/** A live session's row, with its token's name and role. */
export interface SessionRow {
  tokenId: string;
  tokenName: string;
  role: TokenRole;
  expiresAt: number;
}

/** Dashboard sign-ins (`dashboard_sessions`), keyed by the SHA-256 of the session id. */
export interface SessionsStore {
  /**
   * Opens a session, sweeping the expired ones first, so the table stays as small as the
   * number of people signed in. One IMMEDIATE transaction.
   */
  open(session: {
    idHash: string;
    tokenId: string;
    createdAt: number;
    expiresAt: number;
  }): Promise<void>;
  /** The live session with this id hash at `now`, or null: unknown, expired, or its token revoked. */
  find(idHash: string, now: number): Promise<SessionRow | null>;
  /** Ends a session; an unknown one is ignored. */
  delete(idHash: string): Promise<void>;
}

const statementsOf = perConnection((store: SqliteStore) => ({
  sweep: store.db
    .delete(dashboardSessions)
    .where(lte(dashboardSessions.expiresAt, sql.placeholder("now")))
    .prepare(),
  insert: store.db
    .insert(dashboardSessions)
    .values({
      idHash: param("idHash"),
      tokenId: param("tokenId"),
      createdAt: param("createdAt"),
      expiresAt: param("expiresAt"),
    })
    .prepare(),
  find: store.db
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
        eq(dashboardSessions.idHash, sql.placeholder("idHash")),
        gt(dashboardSessions.expiresAt, sql.placeholder("now")),
        isNull(accessTokens.revokedAt),
      ),
    )
    .prepare(),
  delete: store.db
    .delete(dashboardSessions)
    .where(eq(dashboardSessions.idHash, sql.placeholder("idHash")))
    .prepare(),
}));

/** The sessions store of either dialect. */
export function createSessionsStore(store: Store): SessionsStore {
  return store.kind === "postgres"
    ? pgTwins().createPgSessionsStore(store)
    : createSqliteSessionsStore(store);
}

/** The sessions store on `store`'s connection; its statements are prepared here, once. */
function createSqliteSessionsStore(store: SqliteStore): SessionsStore {
  const st = statementsOf(store);
  return {
    async open(session) {
      store.sqlite
        .transaction(() => {
          st.sweep.run({ now: session.createdAt });
          st.insert.run(session);
        })
        .immediate();
    },
    async find(idHash, now) {
      return st.find.get({ idHash, now }) ?? null;
    },
    async delete(idHash) {
      st.delete.run({ idHash });
    },
  };
}
