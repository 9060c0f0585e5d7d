import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStore, type SqliteStore } from "../../src/db/client.js";
import { migrateStore } from "../../src/db/migrate.js";

/**
 * A migrated SQLite store on a file in a fresh temporary folder named after `prefix`, with
 * `busyTimeoutMs` (the store's own default when not given), and the file's path for another
 * connection to open.
 */
export function migratedFileStore(
  prefix: string,
  busyTimeoutMs?: number,
): { store: SqliteStore; path: string } {
  const path = join(mkdtempSync(join(tmpdir(), prefix)), "audit.db");
  const store = openSqliteStore(path, busyTimeoutMs === undefined ? {} : { busyTimeoutMs });
  migrateStore(store);
  return { store, path };
}
