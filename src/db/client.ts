import { accessSync, constants, existsSync, mkdirSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { type BetterSQLite3Database, drizzle } from "drizzle-orm/better-sqlite3";
import { AppError, messageOf } from "../errors.js";
import { pathProblem } from "../file-input.js";
import { backoff, sleepFor } from "../retry.js";
import type { PgStore } from "./pg/client.js";
import * as schema from "./schema.js";
import { DatabaseUrlError, parseDatabaseUrl, refuseInMemoryStore } from "./url.js";

export type Db = BetterSQLite3Database<typeof schema>;

/**
 * An open SQLite store: the drizzle handle for queries and the raw connection for pragmas and
 * raw SQL.
 */
export interface SqliteStore {
  kind: "sqlite";
  db: Db;
  sqlite: Database.Database;
  close(): void;
}

/** Bytes the WAL file is cut back to after a checkpoint that reset it (64 MiB). */
export const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024;

/**
 * An open store of either dialect, as `DATABASE_URL` selects it (opened by `openStore` in
 * src/db/open.ts). Code outside `src/store/` and `src/db/` holds this and hands it to the store
 * modules (`create…Store`), which pick their implementation by `kind`.
 */
export type Store = SqliteStore | PgStore;

/**
 * Thrown when a command that needs an existing store is pointed at a SQLite file not there.
 * `served`: a process of a running service (a cluster's worker, started again) that finds the
 * file its primary opened gone: moved or removed since, where creating one would start an empty
 * store beside the receipts written to the moved file.
 */
export class MissingStoreError extends AppError {
  constructor(
    readonly path: string,
    served = false,
  ) {
    super(
      "not_found",
      served
        ? `the SQLite store at ${path} is gone: this service opened it at start, so it was moved or removed since; put it back where it was (\`db migrate\` or a new \`serve\` there would start an empty store beside the receipts written to the moved file)`
        : `no SQLite store at ${path} (check --db / DATABASE_URL); create one with \`decentral-audit db migrate\` or \`serve\``,
      { field: "DATABASE_URL" },
    );
    this.name = "MissingStoreError";
  }
}

/**
 * Thrown when `DATABASE_URL` names a database that holds tables but is not a store of this
 * program (another application's database, or a file that is no SQLite database at all):
 * migrating it would write this program's tables into it, and a nightly run over it would
 * report an empty window all clear.
 */
export class ForeignStoreError extends AppError {
  constructor(where: string, holds: string) {
    super(
      "conflict",
      `${where} is not a decentral-audit store: ${holds}; nothing was changed (check --db / DATABASE_URL)`,
      { field: "DATABASE_URL" },
    );
    this.name = "ForeignStoreError";
  }
}

/** drizzle's bookkeeping table, where the applied migrations of this program are listed. */
export const sqliteMigrationsTable = "__drizzle_migrations";

/**
 * What a database holding `tables` (its own, in its default schema) is, when `hasMigrations`
 * says whether it lists applied migrations: this program's store (its migrations, and its
 * `jobs` table made by the first of them in the same transaction), empty, or foreign (a
 * description of what it holds). Another drizzle application keeps the same bookkeeping
 * table, hence the `jobs` table too.
 */
export function storeKind(
  tables: readonly string[],
  hasMigrations: boolean,
): { kind: "ours" | "empty" } | { kind: "foreign"; holds: string } {
  if (hasMigrations && tables.includes("jobs")) return { kind: "ours" };
  const others = tables.filter((name) => name !== sqliteMigrationsTable);
  if (!hasMigrations && others.length === 0) return { kind: "empty" };
  const shown = others.slice(0, 5).join(", ") + (others.length > 5 ? ", …" : "");
  return {
    kind: "foreign",
    holds:
      others.length === 0
        ? "it lists migrations of another program and has no jobs table"
        : `it holds ${others.length} table${others.length === 1 ? "" : "s"} of another application (${shown}) and ${hasMigrations ? "no jobs table" : "none of this program's migrations"}`,
  };
}

/**
 * Refuses, before anything is written (even the switch to WAL, which is kept in the file), a
 * SQLite file that is not this program's store; and, for a command that must not create one,
 * a database with no table at all, for the same reason as an empty file.
 */
function refuseForeignSqlite(sqlite: Database.Database, path: string, create: boolean): void {
  let tables: string[];
  try {
    tables = sqlite
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
      )
      .pluck()
      .all() as string[];
  } catch (error) {
    if ((error as { code?: unknown }).code === "SQLITE_NOTADB") {
      throw new ForeignStoreError(path, "it is not a SQLite database");
    }
    throw error;
  }
  const kind = storeKind(tables, tables.includes(sqliteMigrationsTable));
  if (kind.kind === "foreign") throw new ForeignStoreError(path, kind.holds);
  if (kind.kind === "empty" && !create) throw new MissingStoreError(path);
}

/**
 * SQLite's own words for a file it cannot open or write name neither the file nor the cause:
 * "unable to open database file" for a folder it may not create its `-wal` and `-shm` files in
 * (read-only, or not the process's to write), "database or disk is full" for a full disk. A
 * person starting a command or `serve` is told which file, and why, as an AppError; any other
 * error is returned as it came.
 */
export function storeFileError(path: string, error: unknown): unknown {
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string" || !/^SQLITE_(CANTOPEN|READONLY|FULL|IOERR|PERM)/.test(code)) {
    return error;
  }
  const folder = dirname(path);
  const why = code.startsWith("SQLITE_FULL")
    ? `the disk holding it is full; free space there`
    : (unwritableFolder(folder) ??
      unwritableFile(path) ??
      `${code.startsWith("SQLITE_READONLY") ? "it is read-only" : "SQLite could not open or write it"} (${code})`);
  return storeUnavailable(path, why, error);
}

/**
 * `storeFileError` for an error met on `store` once it was open (a disk that filled during a
 * nightly run), naming its SQLite file; PostgreSQL's errors as they came.
 */
export function storeErrorNamed(store: Store, error: unknown): unknown {
  return store.kind === "sqlite" && store.sqlite.name !== ":memory:"
    ? storeFileError(store.sqlite.name, error)
    : error;
}

function storeUnavailable(path: string, why: string, cause?: unknown): AppError {
  return new AppError(
    "store_unavailable",
    `cannot use the SQLite store ${path}: ${why} (check --db / DATABASE_URL)`,
    { field: "DATABASE_URL" },
    cause === undefined ? undefined : { cause },
  );
}

/**
 * Refuses a store file this user cannot write, for a process that writes to it. SQLite opens
 * such a file read-only without a word, and the first write, perhaps minutes later, fails with
 * "attempt to write a readonly database", naming no file (`serve` ran on, answering 503s).
 */
function refuseUnwritableFile(path: string): void {
  const file = unwritableFile(path);
  // Named as `storeFileError` names it: a folder that cannot be written is said first.
  if (file !== null) throw storeUnavailable(path, unwritableFolder(dirname(path)) ?? file);
}

/**
 * Why this process cannot read and write the store file itself (another user's, or its mode
 * says so), or null if it can or the file is not there.
 */
function unwritableFile(path: string): string | null {
  if (!existsSync(path)) return null;
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return null;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const { uid, mode } = statSync(path);
    return `this user (uid ${process.getuid?.()}) cannot read and write the file (${String(code)}; its owner is uid ${uid}, mode ${(mode & 0o777).toString(8)})`;
  }
}

/** Why SQLite cannot create its `-wal` and `-shm` files in `folder`, or null if it can. */
function unwritableFolder(folder: string): string | null {
  try {
    accessSync(folder, constants.W_OK);
    return null;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return `its folder ${folder} cannot be written (${String(code)}), and SQLite keeps its -wal and -shm files beside it`;
  }
}

/**
 * Opens the SQLite database at `url` (a file path, `file:PATH` or `:memory:`), creating it and
 * its folder unless `create` is false: then a file that does not exist is a MissingStoreError,
 * because a mistyped path would otherwise give an empty store that `verify` finds all verified.
 * A PostgreSQL URL is refused here (its caller needs a SQLite file).
 * WAL lets readers (reports, audit lookups) run while the verifier writes; the busy timeout
 * makes a second process wait for a write lock instead of failing at once. That wait is a
 * busy loop inside better-sqlite3 that blocks the event loop, so a serving process passes a
 * short one and retries in JavaScript; a command-line process can afford the default 5 s.
 * Every write transaction must begin IMMEDIATE (or be a single statement): a deferred one that
 * reads first and then writes gets SQLITE_BUSY at once when another connection wrote
 * meanwhile, without the busy timeout ever applying (test/db-write-transactions.test.ts).
 */
export function openSqliteStore(
  url: string,
  options: { busyTimeoutMs?: number; create?: boolean; readOnly?: boolean } = {},
): SqliteStore {
  const target = parseDatabaseUrl(url);
  // Refused before anything touches the disk: a PostgreSQL URL is never a file path.
  if (target.kind === "postgres") {
    throw new DatabaseUrlError(
      `this needs a SQLite file, but DATABASE_URL selects PostgreSQL (${target.redacted})`,
    );
  }
  const path = target.path;
  const create = options.create !== false;
  // A store that must exist already cannot be one that every open makes anew.
  if (!create) refuseInMemoryStore(url);
  // Opened, a folder gives SQLite's "unable to open database file", which names nothing.
  let found: ReturnType<typeof statSync>;
  try {
    found = path === ":memory:" ? undefined : statSync(path, { throwIfNoEntry: false });
  } catch (error) {
    const said = pathProblem(error, path);
    if (said === null) throw error;
    throw new AppError("validation_failed", `${said} (check --db / DATABASE_URL)`, {
      field: "DATABASE_URL",
    });
  }
  if (found?.isDirectory()) {
    throw new AppError(
      "validation_failed",
      `${path} is a folder, not a SQLite database file (check --db / DATABASE_URL)`,
      { field: "DATABASE_URL" },
    );
  }
  // A device or a named pipe is no store either: `db migrate --db /dev/null` opened it, failed
  // with SQLITE_IOERR_FSYNC and left a `/dev/null-journal` file in /dev; a pipe blocks the open.
  if (found !== undefined && !found.isFile()) {
    const what = found.isFIFO() ? "a named pipe" : found.isSocket() ? "a socket" : "a device";
    throw new AppError(
      "validation_failed",
      `${path} is ${what}, not a SQLite database file; nothing was opened (check --db / DATABASE_URL)`,
      { field: "DATABASE_URL" },
    );
  }
  if (path !== ":memory:") {
    // An empty file (a `touch`, or a copy that failed) is no store either: opened, it would be
    // migrated into an empty one, and a nightly run over it would report all clear.
    if (!create && (!existsSync(path) || statSync(path).size === 0)) {
      throw new MissingStoreError(path);
    }
    if (create) mkdirSync(dirname(path), { recursive: true });
    if (options.readOnly !== true) refuseUnwritableFile(path);
  }
  const made = readerMakesWal(path, options.readOnly === true);
  // fileMustExist also covers a file removed between the check above and the open.
  const sqlite = new Database(path, { fileMustExist: !create && path !== ":memory:" });
  // First, so that the switch to WAL below waits too: on a new file that another process is
  // creating and migrating at the same moment, it would otherwise fail at once with "database
  // is locked" (two `serve` started together on a database that does not exist yet).
  sqlite.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
  if (path !== ":memory:") {
    try {
      refuseForeignSqlite(sqlite, path, create);
    } catch (error) {
      sqlite.close();
      if (made) removeReadersWal(path);
      throw error;
    }
  }
  const store = sqliteStoreOver(sqlite, options.busyTimeoutMs);
  if (!made) return store;
  return {
    ...store,
    close: () => {
      store.close();
      removeReadersWal(path);
    },
  };
}

/** SQLite's files beside a store in WAL mode, which every connection to it opens. */
const walFiles = (path: string) => [`${path}-wal`, `${path}-shm`];

/**
 * Whether a reader that may not write the store file is about to make its `-wal` and `-shm`
 * files (none is there: no connection has the store open), so that they must go when it is done.
 */
function readerMakesWal(path: string, readOnly: boolean): boolean {
  return (
    readOnly &&
    path !== ":memory:" &&
    unwritableFile(path) !== null &&
    walFiles(path).every((file) => !existsSync(file))
  );
}

/**
 * Removes the `-wal` and `-shm` files a reader made (`readerMakesWal`) once it closed the store,
 * if they are still this user's and the log holds nothing. A reader cannot checkpoint, so SQLite
 * leaves them; owned by the reader (a report run as another user of the store's group), the
 * store's owner may read but not write them, and its next `serve`, `import` or `verify` failed
 * with "attempt to write a readonly database".
 */
function removeReadersWal(path: string): void {
  const [wal, shm] = walFiles(path) as [string, string];
  const own = (file: string) =>
    statSync(file, { throwIfNoEntry: false })?.uid === process.getuid?.();
  if (!own(wal) || !own(shm) || statSync(wal).size !== 0) return;
  for (const file of [wal, shm]) {
    try {
      unlinkSync(file);
    } catch (error) {
      if ((error as { code?: unknown }).code !== "ENOENT") throw error;
    }
  }
}

/**
 * The store over an open SQLite connection, set up as `openSqliteStore` sets up every one (WAL,
 * foreign keys, journal limits); tests open a copy of a migrated database this way.
 */
export function sqliteStoreOver(sqlite: Database.Database, busyTimeoutMs = 5000): SqliteStore {
  sqlite.pragma(`busy_timeout = ${busyTimeoutMs}`);
  switchToWal(sqlite, busyTimeoutMs);
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  // The WAL grows while readers pin old frames; once a checkpoint resets it, cut the file back.
  sqlite.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
  // A write that fires the report rollup triggers keeps a statement journal; past 64 KiB it
  // would spill to a temporary file on every such write (measured: half the ingest rate).
  sqlite.pragma("temp_store = MEMORY");
  const db = drizzle(sqlite, { schema });
  return { kind: "sqlite", db, sqlite, close: () => sqlite.close() };
}

/**
 * Sets WAL mode, waiting up to `waitMs` for another process that is creating or switching the
 * same file at this moment: SQLite can refuse the switch at once with "database is locked"
 * (SQLITE_BUSY) without calling the busy handler (seen with two `serve` started together on a
 * database that did not exist yet, about one start in twenty). Waited synchronously: this runs
 * once, while the store is opened, before anything is served.
 */
function switchToWal(sqlite: Database.Database, waitMs: number): void {
  const until = Date.now() + waitMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let attempt = 0; ; attempt++) {
    try {
      sqlite.pragma("journal_mode = WAL");
      return;
    } catch (error) {
      if (!isBusyError(error) || Date.now() >= until) throw error;
      Atomics.wait(pause, 0, 0, Math.min(100, 5 * 2 ** attempt));
    }
  }
}

/**
 * Changes how long this connection waits for another's write lock before SQLITE_BUSY, e.g. a
 * longer wait around a migration another process may be running.
 */
export function setBusyTimeout(store: Store, ms: number): void {
  // PostgreSQL waits for row locks without blocking the event loop; nothing to shorten there.
  if (store.kind === "postgres") return;
  store.sqlite.pragma(`busy_timeout = ${Math.max(0, Math.floor(ms))}`);
}

/**
 * Whether another connection has committed to this SQLite database since the last call (first
 * call: false), by `PRAGMA data_version`, which this connection's own commits leave alone. Null
 * for PostgreSQL, whose writers share no single write lock.
 */
export function othersCommitted(store: Store): (() => boolean) | null {
  if (store.kind !== "sqlite") return null;
  const read = store.sqlite.prepare("PRAGMA data_version").pluck();
  let last = read.get();
  return () => {
    const now = read.get();
    const changed = now !== last;
    last = now;
    return changed;
  };
}

/** The file a SQLite store is on; null for PostgreSQL and for `:memory:`. */
export function sqliteFileOf(store: Store): string | null {
  if (store.kind !== "sqlite") return null;
  const path = store.sqlite.name;
  return store.sqlite.memory || path === ":memory:" || path === "" ? null : path;
}

/**
 * A write `store` gave up on because another process held SQLite's write lock through the whole
 * busy wait, said as `import` and `verify` say it: the file, the wait, what was not done, and
 * that running the command again is safe (`undone`: "no token was created"). A bare "database
 * is locked" named no file, no holder and no remedy. Any other error is returned as it came.
 */
export function writeLockHeldError(store: Store, error: unknown, undone: string): unknown {
  if (store.kind !== "sqlite" || !isBusyError(error)) return error;
  const file = sqliteFileOf(store) ?? "the in-memory store";
  const waitS = Math.round((busyTimeoutOf(store) ?? 0) / 100) / 10;
  return new AppError(
    "store_unavailable",
    `${messageOf(error)}: another process (serve, an import, a backup) held the write lock of ${file} through the ${waitS} s wait; ${undone}; running the command again once it is free is safe`,
    {},
    { cause: error },
  );
}

/** How long this connection waits for another's write lock (ms); null on PostgreSQL. */
export function busyTimeoutOf(store: Store): number | null {
  if (store.kind === "postgres") return null;
  return Number(store.sqlite.pragma("busy_timeout", { simple: true }));
}

/**
 * Gives `to`, another connection to the same SQLite file, the checkpoint policy of `from`: left
 * to the WAL checkpointer's thread when `from` has one. Otherwise a small write on `to` (a lease
 * heartbeat) that tipped the WAL past 1,000 pages ran the whole checkpoint on the event loop.
 */
export function followCheckpoints(from: Store, to: Store): void {
  if (from.kind !== "sqlite" || to.kind !== "sqlite") return;
  const pages = Number(from.sqlite.pragma("wal_autocheckpoint", { simple: true }));
  to.sqlite.pragma(`wal_autocheckpoint = ${pages}`);
  // Remembered, so a policy set on `from` later (the checkpointer's thread died: back to
  // in-line checkpoints) reaches `to` too. Copied once, the receipt writer's connection kept
  // 0 and, under receipts alone, the WAL grew without bound.
  const set = followers.get(from.sqlite) ?? new Set();
  followers.set(from.sqlite, set);
  set.add(to.sqlite);
}

/** The connections that follow each connection's checkpoint policy (`followCheckpoints`). */
const followers = new WeakMap<Database.Database, Set<Database.Database>>();

/**
 * Calls `follow` with `from`'s checkpoint policy (`wal_autocheckpoint` pages) now and whenever
 * `setAutoCheckpoint` changes it: for a connection in another thread (the receipt writer's),
 * which `followCheckpoints` cannot reach. The function returned stops it.
 */
export function followCheckpointsBy(
  from: SqliteStore,
  follow: (pages: number) => void,
): () => void {
  follow(Number(from.sqlite.pragma("wal_autocheckpoint", { simple: true })));
  const set = remoteFollowers.get(from.sqlite) ?? new Set();
  remoteFollowers.set(from.sqlite, set);
  set.add(follow);
  return () => set.delete(follow);
}

/** The followers of each connection's checkpoint policy in other threads. */
const remoteFollowers = new WeakMap<Database.Database, Set<(pages: number) => void>>();

/**
 * Sets `wal_autocheckpoint = pages` on `store`'s connection and on every open connection that
 * follows its checkpoint policy.
 */
export function setAutoCheckpoint(store: SqliteStore, pages: number): void {
  const all = [store.sqlite, ...(followers.get(store.sqlite) ?? [])];
  const policy = Math.max(0, Math.floor(pages));
  for (const sqlite of all) {
    if (sqlite.open) sqlite.pragma(`wal_autocheckpoint = ${policy}`);
  }
  for (const follow of remoteFollowers.get(store.sqlite) ?? []) follow(policy);
}

/**
 * An error worth retrying the same write for: SQLITE_BUSY (and its extended codes: another
 * connection held the lock past the timeout), or a transient PostgreSQL failure
 * (`isTransientPgError`).
 */
export function isBusyError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code === "SQLITE_LOCKED")) {
    return true;
  }
  return typeof code === "string" && code.startsWith("SQLITE") ? false : isTransientPgError(error);
}

/**
 * Whether a failed PostgreSQL statement is the database (or the way to it) failing, not the
 * statement: no connection or a connection cut (node's errors carry no SQLSTATE), a server
 * shutting down or out of resources (SQLSTATE classes 08, 53, 57), or a conflict PostgreSQL asks
 * to retry (40: serialization failure, deadlock). Anything else is the statement's own error.
 */
export function isTransientPgError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  // drizzle throws DrizzleQueryError (the statement and its parameters) with the driver's
  // error, which has the SQLSTATE, as its cause.
  if (error.cause instanceof Error && !("code" in error)) return isTransientPgError(error.cause);
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) {
    return ["08", "40", "53", "57"].includes(code.slice(0, 2));
  }
  // A file system error names its path (a SQLite file under a file, a name too long, a file
  // not readable by this user): it stays until someone fixes the path, and `verify` waited
  // 2 minutes for it. A connection's errors name an address instead.
  if (typeof (error as { path?: unknown }).path === "string") return false;
  return (
    (typeof code === "string" && /^E[A-Z]+$/.test(code)) ||
    /Connection terminated|connection timeout|timeout exceeded when trying to connect|^timeout expired$|not queryable/i.test(
      error.message,
    )
  );
}

/**
 * The connection failed, not the statement: no SQLSTATE (a socket closed), a connection error
 * (08) or the session ended by the server (57P01 to 57P03). A statement cancelled at its timeout
 * (57014, a table lock held) is not: run again, it would wait as long again. Meant for an error
 * already found transient (`isLostPgConnection`): any error without a SQLSTATE passes it.
 */
export function pgConnectionLost(error: unknown): boolean {
  const failure = error as { code?: unknown; cause?: { code?: unknown } } | null;
  const code = failure?.code ?? failure?.cause?.code;
  if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code)) return true;
  return code.startsWith("08") || code.startsWith("57P");
}

/**
 * A PostgreSQL connection lost or not to be had (`pg_terminate_backend`, a server restarting,
 * a failover): what the receipt writer writes again on a fresh connection, not a conflict to
 * retry (40) nor a server out of slots or disk (53), nor any error of the statement itself.
 */
export function isLostPgConnection(error: unknown): boolean {
  return isTransientPgError(error) && pgConnectionLost(error);
}

/**
 * Whether PostgreSQL answered but will not write, for no fault of the statement: a read-only
 * database (a standby after a failover, `default_transaction_read_only`: 25006), a privilege
 * taken from this role (42501), or an I/O error writing its files (58030). Every write fails
 * alike until an operator acts; retrying the one statement, or blaming it alone, helps no one.
 * A full disk (53100) is transient (`isTransientPgError`): it waits like a server away.
 */
export function isPgWriteRefusal(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.cause instanceof Error && !("code" in error)) return isPgWriteRefusal(error.cause);
  const code = (error as { code?: unknown }).code;
  return code === "25006" || code === "42501" || code === "58030";
}

/**
 * What an operator does about a refusal of `isPgWriteRefusal` (a URL naming a read replica by
 * mistake said only "cannot execute INSERT in a read-only transaction"), or null for any other
 * error.
 */
export function pgWriteRefusalHint(error: unknown): string | null {
  if (!isPgWriteRefusal(error)) return null;
  const code =
    (error as { code?: unknown; cause?: { code?: unknown } }).code ??
    (error as { cause?: { code?: unknown } }).cause?.code;
  if (code === "25006") {
    return "the database is read-only (a read replica or standby, or default_transaction_read_only on): point DATABASE_URL at the primary";
  }
  if (code === "42501")
    return "this role lacks a privilege the program needs (see README, PostgreSQL)";
  return "the server cannot write its files (see its log)";
}

/**
 * Runs a database write (or a store method), retrying with backoff while another connection holds the write lock
 * past the busy timeout. The retries wait on timers, not in SQLite's busy loop, so the event
 * loop (and the proxy on it) keeps running meanwhile. Other errors, and the last busy one after
 * `attempts`, are thrown.
 */
export async function retryWhileBusy<T>(
  write: () => T | Promise<T>,
  options: { attempts?: number; baseDelayMs?: number; maxDelayMs?: number } = {},
): Promise<T> {
  const attempts = options.attempts ?? 8;
  const baseMs = options.baseDelayMs ?? 25;
  const maxMs = options.maxDelayMs ?? 1000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (error) {
      if (!isBusyError(error) || attempt >= attempts) throw error;
      await sleepFor(backoff(attempt - 1, { baseMs, maxMs, jitter: [0.5, 1] }));
    }
  }
}
