import { afterAll, afterEach } from "vitest";
import type { Store } from "../../src/db/client.js";
import { openPostgres } from "../../src/db/pg/client.js";
import { migratePostgres } from "../../src/db/pg/migrate.js";
import { usePostgresDatabase } from "./postgres.js";
import { createTestStore } from "./store.js";

/** The two stores every store-level test runs against. */
export const dialects = ["sqlite", "postgres"] as const;
export type Dialect = (typeof dialects)[number];

/** Opens fresh, migrated, empty stores of one dialect for the tests of a describe block. */
export interface DialectStores {
  readonly dialect: Dialect;
  /** A new empty store with every migration applied; closed after the test. */
  open(): Promise<Store>;
  /** The URL of the last store opened (`:memory:` for SQLite). */
  readonly lastUrl: string;
}

/**
 * Declares the stores of `dialect` for the enclosing describe block (call it at the top of a
 * `describe.each(dialects)` body). SQLite stores are in memory; each PostgreSQL store is a new
 * database on the run's test server, dropped after the block.
 */
export function useDialectStores(dialect: Dialect): DialectStores {
  const open: Store[] = [];
  const database = dialect === "postgres" ? usePostgresDatabase() : null;
  let lastUrl = ":memory:";
  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
  });
  afterAll(async () => {
    for (const store of open.splice(0)) await store.close();
  });
  return {
    dialect,
    get lastUrl() {
      return lastUrl;
    },
    async open() {
      if (database === null) {
        const store = createTestStore();
        open.push(store);
        return store;
      }
      lastUrl = await database.create();
      const store = openPostgres(lastUrl, { poolSize: 4, statementTimeoutMs: 30_000 });
      open.push(store);
      await migratePostgres(store.pool);
      return store;
    },
  };
}
