import { readMigrationFiles } from "drizzle-orm/migrator";
import type { Store } from "../../src/db/client.js";
import { migrationsFolder } from "../../src/db/migrate.js";
import { pgMigrationsFolder } from "../../src/db/pg/migrate.js";

/**
 * A statement of a migration's row updates: an UPDATE, the temporary tables it reads, or a pin
 * it writes first (`profile_pins`).
 */
const rowWork =
  /^\s*(--[^\n]*\n\s*)*(UPDATE |CREATE TEMP TABLE |CREATE INDEX temp\.|INSERT (OR IGNORE )?INTO (temp\.|pg_temp\.|`profile_pins`|"profile_pins")|DROP TABLE (temp|pg_temp)\.)/;

/**
 * Runs again on `store` the row updates of the migration whose SQL holds `marker` (its UPDATE
 * statements and the temporary tables they read, not its schema changes): rows written as the
 * code before that migration wrote them, in a store migrated since, then stand as an upgrade of
 * such a database finds them.
 */
export async function rerunMigrationUpdates(store: Store, marker: string): Promise<void> {
  const folder = store.kind === "postgres" ? pgMigrationsFolder : migrationsFolder;
  const migration = readMigrationFiles({ migrationsFolder: folder }).find((m) =>
    m.sql.some((s) => s.includes(marker)),
  );
  if (migration === undefined) throw new Error(`no migration with ${marker}`);
  const updates = migration.sql.filter((s) => rowWork.test(s));
  if (!updates.some((s) => /^\s*(--[^\n]*\n\s*)*UPDATE /.test(s)))
    throw new Error(`the migration with ${marker} updates no rows`);
  for (const statement of updates) {
    if (store.kind === "postgres") await store.pool.query(statement);
    else store.sqlite.exec(statement);
  }
}
