import { setTimeout as sleep } from "node:timers/promises";
import type { Config } from "../config.js";
import { AppError, isAppError } from "../errors.js";
import {
  isBusyError,
  isTransientPgError,
  openSqliteStore,
  type SqliteStore,
  type Store,
  storeFileError,
} from "./client.js";
import { migrateStore } from "./migrate.js";
import { parseDatabaseUrl } from "./url.js";

/** How a command or the service opens its store. */
export interface OpenStoreOptions {
  /** SQLite: how long this connection waits for another's write lock (ms). Default 5 s. */
  busyTimeoutMs?: number;
  /** PostgreSQL: connections the pool keeps at most (default: DATABASE_POOL_SIZE). */
  poolSize?: number;
  /** Apply pending migrations before returning. Default true. */
  migrate?: boolean;
  /**
   * How long the migration waits for another process's lock (ms): SQLite's write lock
   * (default 10 minutes), PostgreSQL's migration lock (default no limit). A run with a
   * deadline passes what is left of it.
   */
  migrationWaitMs?: number;
  /**
   * SQLite: create the file (and its folder) when it does not exist. Default true. Commands
   * that only read or add to an existing store pass false, so that a mistyped path is an
   * error instead of a new empty store (see MissingStoreError). PostgreSQL never creates a
   * database.
   */
  create?: boolean;
  /**
   * SQLite: the process only reads (a report), so a file this user may read but not write is
   * opened all the same. Otherwise such a file is refused naming it, its owner and mode.
   */
  readOnly?: boolean;
}

/**
 * Opens the store `DATABASE_URL` names, with the configuration's settings, and applies pending
 * migrations (with a lock on either dialect: ten processes starting at once migrate once). The
 * PostgreSQL driver is loaded only when PostgreSQL is used. A PostgreSQL server that cannot be
 * reached is a clear error naming the (password-free) URL, not a stack trace.
 */
export async function openStore(
  config: Pick<
    Config,
    | "DATABASE_URL"
    | "DATABASE_POOL_SIZE"
    | "DATABASE_STATEMENT_TIMEOUT_MS"
    | "DATABASE_SSLMODE"
    | "DATABASE_SSL_ROOT_CERT"
  >,
  options: OpenStoreOptions = {},
): Promise<Store> {
  const target = parseDatabaseUrl(config.DATABASE_URL);
  if (target.kind === "sqlite") {
    try {
      return openSqlite(config.DATABASE_URL, options);
    } catch (error) {
      throw storeFileError(target.path, error);
    }
  }
  const [{ openPostgres, postgresSettings }, { migratePostgres }] = await Promise.all([
    import("./pg/client.js"),
    import("./pg/migrate.js"),
  ]);
  const settings = postgresSettings(config as Config);
  const store = openPostgres(config.DATABASE_URL, {
    ...settings,
    poolSize: options.poolSize ?? settings.poolSize,
  });
  try {
    if (options.migrate !== false) {
      await migratePostgres(
        store.pool,
        options.migrationWaitMs === undefined ? {} : { waitMs: options.migrationWaitMs },
      );
    } else await store.pool.query("SELECT 1");
  } catch (error) {
    await store.close();
    throw postgresOpenError(error, target.redacted);
  }
  return store;
}

/**
 * Opens the store (create: false), again while the database cannot be reached (a PostgreSQL
 * restarting: "cannot reach PostgreSQL", or SQLite's lock held by a migration) for at most
 * `ms`; `onAway` is told of the first such failure (said even when no time is left to wait: a
 * start that took the whole time). Any other error, or one once the time is up, is thrown.
 */
export async function openStoreWaitingFor(
  config: Config,
  ms: number,
  onAway: (error: unknown) => void,
): Promise<Store> {
  const until = performance.now() + ms;
  for (let attempt = 1; ; attempt++) {
    try {
      // Every start migrates under the write lock: held by another process (a backup, a long
      // import), it was waited for up to 10 minutes, far past the run's --timeout.
      const migrationWaitMs = Math.max(0, until - performance.now());
      return await openStore(config, { create: false, migrationWaitMs });
    } catch (error) {
      const away =
        (isAppError(error) && error.code === "upstream_unavailable") || isBusyError(error);
      const wait = Math.min(1000, until - performance.now());
      if (away && attempt === 1) onAway(error);
      if (!away || wait <= 0) throw error;
      await sleep(wait);
    }
  }
}

/**
 * What to tell the user when opening PostgreSQL failed: a server that cannot be reached, one
 * with no connection left (SQLSTATE 53300), or a database that does not exist (SQLSTATE 3D000; this program never creates one), each named
 * with the password-free URL. Any other error is returned as it is.
 */
export function postgresOpenError(error: unknown, redactedUrl: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === "53300") {
    // The server answered: said "cannot reach", the operator looked for a network fault.
    return new AppError(
      "upstream_unavailable",
      `PostgreSQL at ${redactedUrl} has no connection left for this process: ${(error as Error).message} (its max_connections, or the role's or database's CONNECTION LIMIT, is used up: each process opens up to DATABASE_POOL_SIZE connections and serve a few more, see README, PostgreSQL; lower DATABASE_POOL_SIZE or raise the limit)`,
      { field: "DATABASE_URL" },
      { cause: error },
    );
  }
  if (isTransientPgError(error)) {
    return new AppError(
      "upstream_unavailable",
      `cannot reach PostgreSQL at ${redactedUrl}: ${(error as Error).message}`,
      { field: "DATABASE_URL" },
      { cause: error },
    );
  }
  if (code === "3D000") {
    return new AppError(
      "not_found",
      `PostgreSQL at ${redactedUrl}: ${(error as Error).message} (check DATABASE_URL; create the database with CREATE DATABASE or createdb, then run \`decentral-audit db migrate\`)`,
      { field: "DATABASE_URL" },
      { cause: error },
    );
  }
  return error;
}

/** Opens the SQLite store at `url` and, unless told not to, applies pending migrations. */
function openSqlite(url: string, options: OpenStoreOptions): SqliteStore {
  const store = openSqliteStore(url, {
    ...(options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs }),
    ...(options.create === undefined ? {} : { create: options.create }),
    ...(options.readOnly === undefined ? {} : { readOnly: options.readOnly }),
  });
  try {
    if (options.migrate !== false) {
      migrateStore(
        store,
        options.migrationWaitMs === undefined ? {} : { waitMs: options.migrationWaitMs },
      );
    }
  } catch (error) {
    store.close();
    throw error;
  }
  return store;
}
