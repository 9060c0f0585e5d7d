import type * as Twins from "./pg/twins.js";

/**
 * The PostgreSQL twins of the store modules, registered by src/db/pg/client.ts (the module that
 * opens every PgStore) when it loads. A store module picks its dialect's implementation by
 * `store.kind`; importing its PostgreSQL twin statically made every SQLite process (each CLI
 * command, each cron run) load drizzle's pg-core and the PostgreSQL schema as well: about a
 * third of a second of CPU per process on a 2-core host. A PgStore exists only once that
 * module has loaded, so the twins are there whenever a store of that dialect is handed in.
 */
let twins: typeof Twins | undefined;

/** The PostgreSQL store modules; only for a store whose `kind` is "postgres". */
export function pgTwins(): typeof Twins {
  if (twins === undefined) {
    throw new Error("the PostgreSQL store modules are not loaded (no PostgreSQL store was opened)");
  }
  return twins;
}

/** Called by src/db/pg/client.ts as it loads. */
export function registerPgTwins(loaded: typeof Twins): void {
  twins = loaded;
}
