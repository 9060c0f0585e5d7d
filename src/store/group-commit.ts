import { openSqliteStore, type SqliteStore } from "../db/client.js";
import type { PgStore } from "../db/pg/client.js";
import type { PgTx } from "./pg/executor.js";
import type { WriteUnit } from "./write-unit.js";

/** The connection a group-committing writer (the receipt writer) writes through. */
export interface WriterConnection {
  /** The store its tasks write to: a connection of its own for a file database. */
  store: SqliteStore;
  /**
   * `fn` wrapped in BEGIN IMMEDIATE … COMMIT, rolled back if it throws; called inside another
   * such function it runs in a savepoint instead, and fails alone.
   */
  immediate<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R;
  /** Closes the connection if it is the writer's own. */
  close(): void;
}

/**
 * Opens the writer's connection. A file database gets one of its own with a short busy timeout
 * (better-sqlite3 waits for the write lock on the event loop, so the writer waits briefly and
 * retries from a timer), checkpointing as the store does; a `:memory:` one (tests) is shared.
 */
export function openWriterConnection(store: SqliteStore, busyTimeoutMs: number): WriterConnection {
  const path = store.sqlite.name;
  const own = !(store.sqlite.memory || path === ":memory:" || path === "");
  let conn: SqliteStore = store;
  if (own) {
    conn = openSqliteStore(path, { busyTimeoutMs });
    // Checkpoints follow the store's policy (e.g. left to the WAL checkpointer's thread).
    const autocheckpoint = store.sqlite.pragma("wal_autocheckpoint", { simple: true });
    conn.sqlite.pragma(`wal_autocheckpoint = ${Number(autocheckpoint)}`);
  }
  return {
    store: conn,
    immediate<A extends unknown[], R>(fn: (...args: A) => R) {
      const transaction = conn.sqlite.transaction(fn);
      return (...args: A) => transaction.immediate(...args) as R;
    },
    close() {
      if (own && conn.sqlite.open) conn.close();
    },
  };
}

/** How one unit of a PostgreSQL group ended: its value, or the error it failed with alone. */
export type UnitOutcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** The transactions a group-committing writer runs on PostgreSQL (pooled connections). */
export interface PgWriterConnection {
  /** Runs `units` in order in one transaction; their values, or throws (nothing written). */
  together(units: readonly WriteUnit<unknown>[]): Promise<unknown[]>;
  /**
   * Runs `units` in one transaction with a savepoint each: a unit that throws an error for which
   * `failsAlone` is true is rolled back alone and reported; any other error ends the group.
   */
  isolated(
    units: readonly WriteUnit<unknown>[],
    failsAlone: (error: unknown) => boolean,
  ): Promise<UnitOutcome[]>;
  /** Resolves once the database answers a trivial query. */
  ping(): Promise<void>;
}

export function openPgWriterConnection(store: PgStore): PgWriterConnection {
  return {
    together: (units) =>
      store.db.transaction(async (tx) => {
        const values: unknown[] = [];
        for (const unit of units) values.push(await unit.runPostgres(tx));
        return values;
      }),
    isolated: (units, failsAlone) =>
      store.db.transaction(async (tx) => {
        const outcomes: UnitOutcome[] = [];
        for (const unit of units) {
          try {
            // A nested drizzle transaction is a savepoint.
            const value = await tx.transaction((inner: PgTx) => unit.runPostgres(inner));
            outcomes.push({ ok: true, value });
          } catch (error) {
            if (!failsAlone(error)) throw error;
            outcomes.push({ ok: false, error });
          }
        }
        return outcomes;
      }),
    async ping() {
      await store.pool.query("SELECT 1");
    },
  };
}
