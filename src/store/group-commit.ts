import { existsSync, realpathSync, statfsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { followCheckpoints, openSqliteStore, type SqliteStore } from "../db/client.js";

/** The connection a group-committing writer (the receipt writer) writes through. */
export interface WriterConnection {
  /** The store its tasks write to: a connection of its own for a file database. */
  store: SqliteStore;
  /**
   * `fn` wrapped in BEGIN IMMEDIATE … COMMIT, rolled back if it throws; called inside another
   * such function it runs in a savepoint instead, and fails alone.
   */
  immediate<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R;
  /**
   * A write of no consequence (`user_version` set to what it is, which still writes the header
   * page, as any commit does): throws while the database refuses writes (a full disk, say).
   */
  probeWrite(): void;
  /** Bytes this process may still write on the database's file system; null for `:memory:`. */
  freeBytes(): number | null;
  /**
   * Why the database's path no longer names the file this connection writes (its folder moved
   * or removed, the file deleted or replaced), or null while it does (and for `:memory:`).
   */
  fileGone(): string | null;
  /** Closes the connection if it is the writer's own. */
  close(): void;
}

/**
 * Opens the writer's connection. A file database gets one of its own with the given busy timeout
 * (better-sqlite3 waits for the write lock on the event loop, so the writer waits little or not
 * at all and retries from a timer), checkpointing as the store does; a `:memory:` one (tests) is
 * shared.
 */
export function openWriterConnection(store: SqliteStore, busyTimeoutMs: number): WriterConnection {
  const path = store.sqlite.name;
  const own = !(store.sqlite.memory || path === ":memory:" || path === "");
  let conn: SqliteStore = store;
  if (own) {
    // Opened with a wait (once, before anything is served: the switch to WAL can find another
    // process creating the file), then without one for the writes.
    conn = openSqliteStore(path, { busyTimeoutMs: Math.max(busyTimeoutMs, 1000), create: false });
    conn.sqlite.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    followCheckpoints(store, conn);
  }
  // The file as opened: a path that later names another file (or none) is not where receipts go.
  const opened = own ? statSync(path) : undefined;
  return {
    store: conn,
    immediate<A extends unknown[], R>(fn: (...args: A) => R) {
      const transaction = conn.sqlite.transaction(fn);
      return (...args: A) => transaction.immediate(...args) as R;
    },
    probeWrite: conn.sqlite.transaction(() => {
      const version = conn.sqlite.pragma("user_version", { simple: true });
      conn.sqlite.pragma(`user_version = ${Number(version)}`);
    }).immediate,
    freeBytes() {
      if (!own) return null;
      // The file's own file system: a database path that is a symlink names a folder on another
      // disk (a full or read-only root) than the one its file, WAL and journal are written to.
      const fs = statfsSync(existsSync(path) ? dirname(realpathSync(path)) : dirname(path));
      // Some FUSE and network mounts report no sizes at all: their room is not known, not none.
      if (fs.blocks === 0) return null;
      // Blocks a file system keeps for root (5% on ext4) are this process's to use when it runs
      // as root: counting only the others', a root service refused receipts on a disk with GBs
      // free.
      const root = process.geteuid?.() === 0;
      return (root ? fs.bfree : fs.bavail) * fs.bsize;
    },
    fileGone() {
      if (opened === undefined) return null;
      try {
        const now = statSync(path);
        if (now.dev === opened.dev && now.ino === opened.ino) return null;
        return `${path} is another file than the one this process opened and writes (replaced since)`;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "ENOENT" && code !== "ENOTDIR") return null;
        return `${path} is gone: the file this process opened and writes was moved or removed (a new process would not find what it writes)`;
      }
    },
    close() {
      if (own && conn.sqlite.open) conn.close();
    },
  };
}
