import type Database from "better-sqlite3";
import {
  type Column,
  type DriverValueEncoder,
  getTableColumns,
  is,
  Param,
  Placeholder,
  sql,
  type Table,
} from "drizzle-orm";
import type { SqliteStore } from "../db/client.js";

/**
 * The one way a store module prepares its statements: once per connection. `create…Store`
 * calls the returned function when it is created, and a helper that composes inside another
 * connection's transaction (the receipt writer has a connection of its own) gets that
 * connection's set, prepared on its first use. Preparing per call would dominate the receipt
 * path.
 */
export function perConnection<T>(prepare: (store: SqliteStore) => T): (store: SqliteStore) => T {
  const cache = new WeakMap<Database.Database, T>();
  return (store) => {
    let prepared = cache.get(store.sqlite);
    if (prepared === undefined) {
      prepared = prepare(store);
      cache.set(store.sqlite, prepared);
    }
    return prepared;
  };
}

/**
 * `perConnection` for a store module with no state but its statements (`create…Store` of a
 * dialect): made once per connection, where a verifier, a reader and a statement over one
 * store each prepared the module's every statement again. Each caller gets its own copy of the
 * object, so one that replaces a function of it (a test's fault) changes no other's.
 */
export function perConnectionModule<T extends object>(
  create: (store: SqliteStore) => T,
): (store: SqliteStore) => T {
  const made = perConnection(create);
  return (store) => ({ ...made(store) });
}

/**
 * A named placeholder where drizzle's types admit only values (`.set()`, `.values()`): drizzle
 * encodes it with its column's mapping (bigint, boolean, JSON) when the statement runs.
 */
export const param = <T>(name: string): T => sql.placeholder(name) as unknown as T;

/**
 * `param` for a nullable column whose mapping does not keep null: drizzle encodes a
 * placeholder's value even when it is null (a JSON column would store the text `null`, a
 * boolean one 0), where a value given to `.set()` binds SQL NULL. This binds null as NULL and
 * encodes anything else with `column`.
 */
export const nullableParam = <T>(name: string, column: DriverValueEncoder<unknown, unknown>): T =>
  sql`${sql.param(sql.placeholder(name), {
    mapToDriverValue: (value: unknown) => (value === null ? null : column.mapToDriverValue(value)),
  })}` as unknown as T;

/**
 * Runs `write` in an IMMEDIATE transaction, or as part of the one the caller is already in (the
 * receipt writer's group commit). Not a savepoint: SQLite keeps a sub-journal of every page a
 * savepoint touches, which made a batch of 1,000 receipts four times slower; a group that fails
 * is run again by the writer with a savepoint per task, so a failing task still fails alone.
 */
export function inWriteTransaction<T>(store: SqliteStore, write: () => T): T {
  if (store.sqlite.inTransaction) return write();
  return store.sqlite.transaction(write).immediate();
}

/**
 * Runs `read` (SELECTs only) on one snapshot of the database: a DEFERRED transaction, which in
 * WAL mode takes no lock that stops a writer. An IMMEDIATE one would hold the write lock for
 * as long as the reads take (a day's recompute over 30,000 jobs held paid traffic for 6.5 s).
 * The one place a transaction may begin deferred (test/db-write-transactions.test.ts): never
 * pass it anything that writes, since a deferred read that then writes fails at once when
 * another process wrote in between.
 */
export function inReadSnapshot<T>(store: SqliteStore, read: () => T): T {
  if (store.sqlite.inTransaction) return read();
  return store.sqlite.transaction(read).deferred();
}

/**
 * Drizzle's `fillPlaceholders` for one statement's `params` (from `toSQL()`), worked out once:
 * which parameter is which placeholder and which column encodes it. Drizzle works it out again
 * on every run, a class check per parameter (about 25 on a receipt write). Same values, except
 * that null binds NULL; same error for a placeholder without a value.
 */
export function placeholderFiller(
  params: readonly unknown[],
): (values: Record<string, unknown>) => unknown[] {
  type Slot =
    | { name: string; encoder: DriverValueEncoder<unknown, unknown> | null }
    | { name: null; value: unknown };
  const slots = params.map((p): Slot => {
    if (is(p, Placeholder)) return { name: p.name, encoder: null };
    if (is(p, Param) && is(p.value, Placeholder)) return { name: p.value.name, encoder: p.encoder };
    return { name: null, value: p };
  });
  return (values) =>
    slots.map((slot) => {
      if (slot.name === null) return slot.value;
      if (!(slot.name in values)) {
        throw new Error(`No value for placeholder "${slot.name}" was provided`);
      }
      const value = values[slot.name];
      // Null binds SQL NULL, as a value given to drizzle's builder does: its placeholders
      // encode null too (an unknown `stream` was stored as 0, a JSON null as the text `null`).
      return slot.encoder === null || value === null ? value : slot.encoder.mapToDriverValue(value);
    });
}

/**
 * A drizzle INSERT, UPDATE or DELETE prepared on the connection, its placeholders filled by a
 * plan made once (`placeholderFiller`): drizzle's own `run` works the plan out again on every
 * call. `rewrite` may change the statement's text first (same parameters, in order).
 */
export function prepareRun(
  store: SqliteStore,
  query: { toSQL(): { sql: string; params: unknown[] } },
  rewrite: (text: string) => string = (text) => text,
): { run(values: Record<string, unknown>): { changes: number } } {
  const { sql: text, params } = query.toSQL();
  const statement = store.sqlite.prepare(rewrite(text));
  const fill = placeholderFiller(params);
  return { run: (values) => statement.run(...fill(values)) };
}

/**
 * An UPDATE prepared in one variant per subset of its `indexed` columns, each variant on first
 * use: SQLite rewrites the entries of every index on a column an UPDATE sets, changed or not,
 * and evaluates the triggers on it (with the rollup triggers of `jobs`, three quarters of the
 * CPU of a proxy capture's completion). `run` leaves out each indexed column whose new value
 * (in `values`, under the column's own name) is the one `row` holds, as read in the same
 * transaction; every other column of `set` is always written.
 */
export function indexAwareUpdate<S extends object>(
  set: S,
  indexed: readonly (keyof S & string)[],
  prepare: (set: S) => { run(values: Record<string, unknown>): { changes: number } },
): {
  run(values: Record<string, unknown>, row: Partial<Record<keyof S, unknown>>): { changes: number };
} {
  const variants = new Map<number, ReturnType<typeof prepare>>();
  return {
    run(values, row) {
      let mask = 0;
      for (let i = 0; i < indexed.length; i++) {
        const column = indexed[i] as keyof S & string;
        if (values[column] !== row[column]) mask |= 1 << i;
      }
      let statement = variants.get(mask);
      if (statement === undefined) {
        const kept = { ...set };
        indexed.forEach((column, i) => {
          if ((mask & (1 << i)) === 0) delete kept[column];
        });
        statement = prepare(kept);
        variants.set(mask, statement);
      }
      return statement.run(values);
    },
  };
}

/**
 * A drizzle query returning whole rows of `table` (`select()`, `returning()`), prepared on the
 * connection with its rows mapped by a plan made once: drizzle's own mapping checks the class
 * of every value's column, and a verifier's claim maps 250 rows of some 55 columns. Same
 * values as drizzle's: null stays null, anything else goes through its column's mapping. The
 * statement's columns are checked against the table's at preparation.
 */
export function prepareRows<T extends Table>(
  store: SqliteStore,
  table: T,
  query: { toSQL(): { sql: string; params: unknown[] } },
): { all(values: Record<string, unknown>): T["$inferSelect"][] } {
  const { sql: text, params } = query.toSQL();
  const statement = store.sqlite.prepare(text).raw(true);
  const mapRow = rowMapper(table, statement, text);
  const fill = placeholderFiller(params);
  return {
    all(values) {
      return (statement.all(...fill(values)) as unknown[][]).map(mapRow);
    },
  };
}

/**
 * Raw SQL returning whole rows of `table` (`RETURNING *`, `SELECT *`), with named parameters
 * bound as given, and its rows mapped as `prepareRows` maps them.
 */
export function prepareRawRows<T extends Table>(
  store: SqliteStore,
  table: T,
  text: string,
): { all(values: Record<string, unknown>): T["$inferSelect"][] } {
  const statement = store.sqlite.prepare(text).raw(true);
  const mapRow = rowMapper(table, statement, text);
  return {
    all(values) {
      return (statement.all(values) as unknown[][]).map(mapRow);
    },
  };
}

/**
 * `prepareRows` for some columns of a table: `selection` names them (key to column, as given to
 * drizzle's `select()` or `returning()`), and the query returns them in that order.
 */
export function prepareColumns<S extends Record<string, Column>>(
  store: SqliteStore,
  selection: S,
  query: { toSQL(): { sql: string; params: unknown[] } },
): {
  all(values: Record<string, unknown>): {
    [K in keyof S]: S[K]["_"]["notNull"] extends true
      ? S[K]["_"]["data"]
      : S[K]["_"]["data"] | null;
  }[];
} {
  const { sql: text, params } = query.toSQL();
  const statement = store.sqlite.prepare(text).raw(true);
  const mapRow = columnsMapper(Object.entries(selection), statement, text);
  const fill = placeholderFiller(params);
  return {
    all(values) {
      return (statement.all(...fill(values)) as unknown[][]).map(mapRow) as never;
    },
  };
}

/** Maps a raw row of `statement` (the table's columns, in order) as drizzle maps it. */
function rowMapper<T extends Table>(
  table: T,
  statement: Database.Statement,
  text: string,
): (raw: unknown[]) => T["$inferSelect"] {
  return columnsMapper(Object.entries(getTableColumns(table)), statement, text);
}

/** Maps a raw row of `statement` (`columns`, in order) as drizzle maps it. */
function columnsMapper(
  columns: [string, Column][],
  statement: Database.Statement,
  text: string,
): (raw: unknown[]) => never {
  const returned = statement.columns().map((column) => column.name);
  if (returned.join() !== columns.map(([, column]) => column.name).join()) {
    throw new Error(`not the columns mapped, in order: ${text.slice(0, 60)}`);
  }
  return (raw) => {
    const row: Record<string, unknown> = {};
    for (let i = 0; i < columns.length; i++) {
      const [key, column] = columns[i] as (typeof columns)[number];
      const value = raw[i];
      row[key] = value === null ? null : column.mapFromDriverValue(value);
    }
    return row as never;
  };
}
