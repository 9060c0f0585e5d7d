import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import { drizzle, type NodePgDatabase } from "drizzle-orm/node-postgres";
import pg from "pg";
import type { Config } from "../../config.js";
import { isTransientPgError } from "../client.js";
import {
  DatabaseUrlError,
  effectiveSslMode,
  type PostgresTarget,
  parseDatabaseUrl,
  type SslMode,
} from "../url.js";
import { createPgListener, type PgListener } from "./listener.js";
import * as schema from "./schema.js";

export type PgDb = NodePgDatabase<typeof schema>;

/** How a process connects to PostgreSQL (from DATABASE_POOL_SIZE, DATABASE_STATEMENT_TIMEOUT_MS, DATABASE_SSL*). */
export interface PostgresSettings {
  /** Connections the pool keeps open at most. */
  poolSize: number;
  /** Server-side limit of one statement in ms; 0: none. */
  statementTimeoutMs: number;
  /** TLS mode when the URL names none. */
  sslmode?: SslMode | undefined;
  /** PEM file of the CA that signed the server's certificate. */
  sslRootCert?: string | undefined;
}

/** The connection settings of a loaded configuration. */
export function postgresSettings(config: Config): PostgresSettings {
  return {
    poolSize: config.DATABASE_POOL_SIZE,
    statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
    sslmode: config.DATABASE_SSLMODE,
    sslRootCert: config.DATABASE_SSL_ROOT_CERT,
  };
}

/** Defaults for callers without a configuration (tests, tools). */
export const defaultPostgresSettings: PostgresSettings = {
  poolSize: 10,
  statementTimeoutMs: 30_000,
};

/**
 * The TLS options of the driver for a libpq `sslmode`: `require` encrypts without checking the
 * certificate, `verify-ca` checks it against the CA (not the host name), `verify-full` checks both.
 */
export function tlsOptions(mode: SslMode, rootCert?: string): false | ConnectionOptions {
  if (mode === "disable") return false;
  if (mode === "require") return { rejectUnauthorized: false };
  const ca = rootCert === undefined ? {} : { ca: readFileSync(rootCert, "utf8") };
  if (mode === "verify-ca")
    return { ...ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
  return { ...ca, rejectUnauthorized: true };
}

/** The node-postgres pool configuration for a target and settings. */
export function poolConfig(target: PostgresTarget, settings: PostgresSettings): pg.PoolConfig {
  return {
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    ssl: tlsOptions(effectiveSslMode(target, settings.sslmode), settings.sslRootCert),
    max: settings.poolSize,
    // A server that does not answer fails a query after this instead of holding it forever.
    connectionTimeoutMillis: 5000,
    // A host that vanishes mid-transaction (power loss, network split) would keep its row and
    // advisory locks until TCP noticed, hours later, stalling every other host's writers: the
    // server ends a transaction left idle for a minute, and keepalives find a dead peer.
    keepAlive: true,
    idle_in_transaction_session_timeout: 60_000,
    ...(settings.statementTimeoutMs > 0 ? { statement_timeout: settings.statementTimeoutMs } : {}),
    application_name: "decentral-audit",
  };
}

/** An open PostgreSQL store: the drizzle handle and the pool under it. */
export interface PgStore {
  kind: "postgres";
  db: PgDb;
  pool: pg.Pool;
  target: PostgresTarget;
  /** The pool's configuration, for a connection of its own beside the pool (`openPgSidePool`). */
  config: pg.PoolConfig;
  /** A connection of its own for LISTEN (caches kept valid by NOTIFY), made when first used. */
  listener: PgListener;
  close(): Promise<void>;
}

/** Parses a URL that must name PostgreSQL (a SQLite path here is a mistake of the caller). */
export function postgresTarget(url: string): PostgresTarget {
  const target = parseDatabaseUrl(url);
  if (target.kind !== "postgres") {
    throw new DatabaseUrlError(`expected a postgres:// or postgresql:// URL, got a SQLite path`);
  }
  return target;
}

/**
 * Opens a pool to the PostgreSQL database at `url`. Connections are made when first used; an
 * idle connection the server drops is replaced by the pool rather than crashing the process.
 */
export function openPostgres(
  url: string,
  settings: PostgresSettings = defaultPostgresSettings,
): PgStore {
  const target = postgresTarget(url);
  const config = poolConfig(target, settings);
  const { db, pool } = openPool(config);
  const listener = createPgListener(config);
  const close = async () => {
    await listener.close();
    await pool.end();
  };
  return { kind: "postgres", db, pool, target, config, listener, close };
}

function openPool(config: pg.PoolConfig): { db: PgDb; pool: pg.Pool } {
  const pool = new pg.Pool(config);
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

/**
 * Runs `body` in one transaction on one pooled connection: committed when it resolves, rolled
 * back when it throws (and when the process dies: the server rolls back a dropped connection).
 */
export async function withPgTransaction<T>(
  pool: pg.Pool,
  body: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    try {
      const result = await body(client);
      await client.query("COMMIT");
      return result;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => {});
      throw error;
    }
  } finally {
    client.release();
  }
}
