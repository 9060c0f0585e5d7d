import type { ConnectionOptions } from "node:tls";
import type pg from "pg";
import type { Config } from "../../config.js";
import { AppError } from "../../errors.js";
import { readTextAtMost } from "../../file-input.js";
import * as twins from "../../store/pg/twins.js";
import { registerPgTwins } from "../../store/pg-twins.js";
import {
  DatabaseUrlError,
  effectiveSslMode,
  type PostgresTarget,
  parseDatabaseUrl,
  type SslMode,
} from "../url.js";
import { createPgListener, type PgListener } from "./listener.js";
import { openPool, type PgDb } from "./pool.js";

// The store modules' PostgreSQL twins load with this module, the one that opens every PgStore,
// and never in a process that only opens SQLite.
registerPgTwins(twins);

export { openPgSidePool, type PgDb } from "./pool.js";

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
  /** How long making one connection may take, in ms (default 5 s; tests shorten it). */
  connectTimeoutMs?: number | undefined;
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

/** The most a root certificate file may hold: the system's whole CA bundle is about 200 KiB. */
const MAX_ROOT_CERT_BYTES = 4 * 1024 * 1024;

function readRootCert(path: string): string {
  const text = readTextAtMost(path, MAX_ROOT_CERT_BYTES);
  if (text !== null) return text;
  throw new AppError(
    "validation_failed",
    `DATABASE_SSL_ROOT_CERT ${path} is larger than 4 MiB: no certificate file is (is it a device or an endless pipe?)`,
    { field: "DATABASE_SSL_ROOT_CERT" },
  );
}

/**
 * The TLS options of the driver for a libpq `sslmode`: `require` encrypts without checking the
 * certificate, `verify-ca` checks it against the CA (not the host name), `verify-full` checks both.
 */
export function tlsOptions(mode: SslMode, rootCert?: string): false | ConnectionOptions {
  if (mode === "disable") return false;
  if (mode === "require") return { rejectUnauthorized: false };
  const ca = rootCert === undefined ? {} : { ca: readRootCert(rootCert) };
  if (mode === "verify-ca")
    return { ...ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
  return { ...ca, rejectUnauthorized: true };
}

/** How long making one connection may take unless the settings say otherwise. */
export const PG_CONNECT_TIMEOUT_MS = 5000;

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
    connectionTimeoutMillis: settings.connectTimeoutMs ?? PG_CONNECT_TIMEOUT_MS,
    // A host that vanishes mid-transaction (power loss, network split) would keep its row and
    // advisory locks until TCP noticed, hours later, stalling every other host's writers: the
    // server ends a transaction left idle for a minute, and keepalives find a dead peer.
    keepAlive: true,
    idle_in_transaction_session_timeout: 60_000,
    ...(settings.statementTimeoutMs > 0 ? { statement_timeout: settings.statementTimeoutMs } : {}),
    // Settings a DBA put on the role (`ALTER ROLE … SET`) are every session's start: a
    // `statement_timeout` there cut statements that DATABASE_STATEMENT_TIMEOUT_MS 0 leaves
    // unbounded (node-postgres sends no 0), and a `lock_timeout` failed writes that wait for a
    // lock (a receipt group's turn, a table lock) instead of waiting within the statement
    // timeout, the one bound the store's waits are built on.
    options: `-c lock_timeout=0${settings.statementTimeoutMs > 0 ? "" : " -c statement_timeout=0"}`,
    // The URL's own name, which was accepted and then ignored: every host's sessions were
    // named alike, and a DBA ending one host's sessions by name ended them all.
    application_name: target.applicationName ?? "decentral-audit",
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
