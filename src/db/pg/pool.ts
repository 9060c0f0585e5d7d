import { drizzle, type NodePgDatabase } from "drizzle-orm/node-postgres";
import pg from "pg";
import { isTransientPgError } from "../client.js";
import type { PgStore } from "./client.js";
import * as schema from "./schema.js";

// Pools apart from src/db/pg/client.ts: the store's PostgreSQL twins open pools of their own,
// and that module loads the twins (src/store/pg-twins.ts).

export type PgDb = NodePgDatabase<typeof schema>;

/** How long a caller waits for a free pooled connection at least (see `poolWaitMs`). */
const MIN_POOL_WAIT_MS = 60_000;

/**
 * How long a caller waits for a free pooled connection: longer than a connection is held for
 * good reason. node-postgres bounds that wait with `connectionTimeoutMillis`, the same setting
 * that bounds making a connection; at 5 s, writes queued behind others that held every
 * connection while waiting for the receipt writers' turn (another host's slow group) failed as
 * a database away. A statement, a lock wait included, ends at the statement timeout.
 */
export function poolWaitMs(config: pg.PoolConfig): number {
  const statement = typeof config.statement_timeout === "number" ? config.statement_timeout : 0;
  // A timer waits at most 2^31 - 1 ms (Node fires a longer one at once): past a statement
  // timeout of about 12 days every connection failed at once as timed out.
  const wait = Math.max(MIN_POOL_WAIT_MS, 2 * statement + (config.connectionTimeoutMillis ?? 0));
  return Math.min(MAX_TIMER_MS, wait);
}

/** The longest a Node timer waits, in ms. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * A pool and its drizzle handle, for the store (`openPostgres`) or beside it.
 * `config.connectionTimeoutMillis` bounds making a connection (each client's own timer); the
 * wait for a free one is bounded apart, by `poolWaitMs`.
 */
export function openPool(config: pg.PoolConfig): { db: PgDb; pool: pg.Pool } {
  const connectMs = config.connectionTimeoutMillis ?? 0;
  class TimedClient extends pg.Client {
    constructor(options: pg.ClientConfig = {}) {
      // The pool keeps the password as a property a spread does not copy.
      const password = "password" in options ? { password: options.password } : {};
      super({ ...options, ...password, connectionTimeoutMillis: connectMs });
    }
  }
  const pool = new pg.Pool({
    ...config,
    connectionTimeoutMillis: poolWaitMs(config),
    Client: TimedClient,
  });
  // An idle client's error (server restart, network cut) is reported on the pool; without a
  // listener it would be an uncaught exception. The next query gets a fresh connection.
  pool.on("error", () => {});
  // A checked-out client whose connection drops emits "error" too, besides rejecting its query;
  // without a listener that event would end the process. The query's rejection is what counts.
  pool.on("connect", (client) => {
    client.on("error", () => {});
  });
  const db = drizzle(pool, { schema });
  db.transaction = transactionsOn(pool);
  return { db, pool };
}

/**
 * A pool of `max` connections of its own beside the store's, with the same server and
 * settings: for a writer that must not wait behind the store's readers. Reads that hold every
 * connection of the store's pool (audit lookups and reports waiting on a table lock, or only
 * slow) would leave the receipt writer without one; after the pool's connection timeout it
 * took the database for gone and the proxy turned paid work away. Idle, it keeps no process
 * or thread alive.
 */
export function openPgSidePool(
  store: PgStore,
  max: number,
): { db: PgDb; pool: pg.Pool; close(): Promise<void> } {
  const { db, pool } = openPool({ ...store.config, max, allowExitOnIdle: true });
  let ended: Promise<void> | undefined;
  return { db, pool, close: () => (ended ??= pool.end()) };
}

/**
 * `db.transaction` of a pool, without leaking a connection. drizzle's own (0.45) checks a client
 * out of the pool and runs BEGIN before its try/finally: when BEGIN fails (the server went away
 * while the client sat idle) the client is never given back, and once the pool's clients are
 * all lost so, every later query waits forever. Here the client is checked out and given back by
 * this function, destroyed when its connection failed, and the transaction itself runs through
 * a drizzle handle over that one client (kept per client: building one costs more than a query).
 */
function transactionsOn(pool: pg.Pool): PgDb["transaction"] {
  const handles = new WeakMap<pg.PoolClient, PgDb>();
  return async (body, config) => {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      let handle = handles.get(client);
      if (handle === undefined) {
        handle = drizzle(client, { schema }) as unknown as PgDb;
        handles.set(client, handle);
      }
      return await handle.transaction(body, config);
    } catch (error) {
      if (error instanceof Error && isTransientPgError(error)) broken = error;
      throw error;
    } finally {
      client.release(broken);
    }
  };
}
