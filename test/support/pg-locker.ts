import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { openPostgres, type PgStore, type PostgresSettings } from "../../src/db/pg/client.js";
import { migratePostgres } from "../../src/db/pg/migrate.js";
import type { TestDatabase } from "./postgres.js";

/**
 * For the enclosing file or describe block: a store over `database` (migrated first when
 * `migrate`, for a database made empty) and a client of its own, `locker`, that holds rows locked
 * the way another session would (`BEGIN`, `SELECT … FOR UPDATE`, then `ROLLBACK` or `COMMIT`).
 * Opened before its tests, both closed after them. Read its members inside tests and hooks.
 */
export function useStoreAndLocker(
  database: TestDatabase,
  settings: PostgresSettings & { migrate?: boolean },
): { readonly store: PgStore; readonly locker: pg.Client } {
  const { migrate, ...storeSettings } = settings;
  let store: PgStore | undefined;
  let locker: pg.Client | undefined;
  beforeAll(async () => {
    store = openPostgres(database.url, storeSettings);
    if (migrate) await migratePostgres(store.pool);
    locker = new pg.Client({ connectionString: database.url });
    await locker.connect();
  });
  afterAll(async () => {
    await locker?.end();
    await store?.close();
  });
  return {
    get store() {
      if (!store) throw new Error("the store is opened in beforeAll");
      return store;
    },
    get locker() {
      if (!locker) throw new Error("the locker connects in beforeAll");
      return locker;
    },
  };
}
