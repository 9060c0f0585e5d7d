import { openSqliteStore, type SqliteStore } from "../../src/db/client.js";
import { migrateStore } from "../../src/db/migrate.js";

/** A fresh in-memory store with the real migrations applied. */
export function createTestStore(): SqliteStore {
  const store = openSqliteStore(":memory:");
  migrateStore(store);
  return store;
}
