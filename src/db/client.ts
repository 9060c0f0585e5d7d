import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { type BetterSQLite3Database, drizzle } from "drizzle-orm/better-sqlite3";
import * as schema from "./schema.js";

export type Db = BetterSQLite3Database<typeof schema>;

/** An open store: the drizzle handle for queries and the raw connection for pragmas and raw SQL. */
export interface Store {
  db: Db;
  sqlite: Database.Database;
  close(): void;
}

/**
 * Opens the SQLite database at `url` (a file path or `:memory:`), creating its folder.
 * WAL lets readers (reports, audit lookups) run while the verifier writes; the busy timeout
 * makes a second process wait for a write lock instead of failing at once.
 */
export function openStore(url: string, options: { busyTimeoutMs?: number } = {}): Store {
  const path = url.startsWith("file:") ? url.slice("file:".length) : url;
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const sqlite = new Database(path);
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  sqlite.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
  // A write that fires the report rollup triggers keeps a statement journal; past 64 KiB it
  // would spill to a temporary file on every such write (measured: half the ingest rate).
  sqlite.pragma("temp_store = MEMORY");
  const db = drizzle(sqlite, { schema });
  return { db, sqlite, close: () => sqlite.close() };
}
