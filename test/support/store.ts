import { openStore, type Store } from "../../src/db/client.js";
import { migrateStore } from "../../src/db/migrate.js";

/** A fresh in-memory store with the real migrations applied. */
export function createTestStore(): Store {
  const store = openStore(":memory:");
  migrateStore(store);
  return store;
}
