import type { Config } from "../config.js";
import { AppError } from "../errors.js";
import { isTransientPgError, openSqliteStore, type Store } from "./client.js";
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
    const store = openSqliteStore(
      config.DATABASE_URL,
      options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs },
    );
    try {
      if (options.migrate !== false) migrateStore(store);
    } catch (error) {
      store.close();
      throw error;
    }
    return store;
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
    if (options.migrate !== false) await migratePostgres(store.pool);
    else await store.pool.query("SELECT 1");
  } catch (error) {
    await store.close();
    if (isTransientPgError(error)) {
      throw new AppError(
        "upstream_unavailable",
        `cannot reach PostgreSQL at ${target.redacted}: ${(error as Error).message}`,
        { field: "DATABASE_URL" },
        { cause: error },
      );
    }
    throw error;
  }
  return store;
}
