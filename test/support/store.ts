import Database from "better-sqlite3";
import {
  openSqliteStore,
  type SqliteStore,
  type Store,
  sqliteStoreOver,
} from "../../src/db/client.js";
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

/** Runs `sql` on the store's own connection, either dialect, as a migration would. */
export async function execSql(store: Store, sql: string): Promise<void> {
  if ("sqlite" in store) store.sqlite.exec(sql);
  else await store.pool.query(sql);
}

/**
 * Every SQL text `store` prepares from now on, in order (the stores prepare most of theirs when
 * they are made), for query-plan tests to pick the statements they explain.
 */
export function recordPrepared(store: SqliteStore): string[] {
  const prepared: string[] = [];
  const prepare = store.sqlite.prepare.bind(store.sqlite);
  store.sqlite.prepare = ((text: string) => {
    prepared.push(text);
    return prepare(text);
  }) as typeof store.sqlite.prepare;
  return prepared;
}

/** SQLite's plan for `text`, every parameter (named or `?`) bound to null: one step a line. */
export function sqlitePlanOf(store: SqliteStore, text: string): string {
  const names = Object.fromEntries([...text.matchAll(/[@:$](\w+)/g)].map((m) => [m[1], null]));
  const anonymous = (text.match(/\?/g) ?? []).map(() => null);
  // The database's own prepare: a plan read is not one of the store's statements.
  const prepare: Database.Database["prepare"] = Database.prototype.prepare;
  const statement: Database.Statement<unknown[]> = prepare.call(
    store.sqlite,
    `EXPLAIN QUERY PLAN ${text}`,
  );
  const rows = (
    Object.keys(names).length > 0 ? statement.all(names) : statement.all(...anonymous)
  ) as { detail: string }[];
  return rows.map((r) => r.detail).join("\n");
}
