import Database from "better-sqlite3";
import { openSqliteStore, type SqliteStore, sqliteStoreOver } from "../../src/db/client.js";
import { migrateStore } from "../../src/db/migrate.js";

/**
 * One in-memory store migrated for the test file, as bytes: each test store opens a copy, in a
 * millisecond, where running every migration again took hundreds on a loaded 2-core runner.
 */
let migrated: Buffer | undefined;

/** A fresh in-memory store with the real migrations applied. */
export function createTestStore(): SqliteStore {
  if (migrated === undefined) {
    const store = openSqliteStore(":memory:");
    migrateStore(store);
    migrated = store.sqlite.serialize();
    store.close();
  }
  return sqliteStoreOver(new Database(migrated));
}
