import { isBusyError, type SqliteStore, type Store } from "../db/client.js";
import { messageOf } from "../errors.js";
import type { Logger } from "../log.js";
import { backoff } from "../retry.js";
import { openWriterConnection } from "../store/group-commit.js";
import { pgTwins } from "../store/pg-twins.js";
import type { WriteUnit } from "../store/write-unit.js";
import { recordCommitHold } from "./commit-hold.js";
import { sortRefused } from "./refused-writes.js";

/** Options of the receipt writer; every optional one has a default. */
export interface ReceiptWriterOptions {
  log: Logger;
  /**
   * Tasks waiting for a commit above which `full()` says so; the proxy then answers 503
   * before forwarding instead of running a job whose receipt might not be written. Default 2,000.
   */
  maxBacklog?: number;
  /**
   * How long one attempt may wait for another connection's write lock, in ms. It blocks the
   * event loop while it waits (SQLite sleeps in its busy handler, every proxied byte with it),
   * so by default it does not wait at all: an attempt that finds the lock taken returns at once
   * and is tried again from a timer. Default 0.
   */
  busyTimeoutMs?: number;
  /**
   * Longest delay between two attempts while the database refuses writes (not a lock). Default
   * 200 ms (PostgreSQL: at least 1 s).
   */
  maxRetryDelayMs?: number;
  /**
   * Longest delay between two attempts while another connection holds the write lock: the
   * first retry comes after 1 ms, then 2, 4, ... up to this. Kept short, because a receipt
   * waits for it once the lock is free (another worker's group commit holds it for about a
   * millisecond); an attempt that finds the lock taken costs some µs. Default 8 ms.
   */
  maxLockedRetryDelayMs?: number;
  /**
   * How long a task waits while the database refuses writes (a full disk, an I/O error: not a
   * lock) before it is rejected, in ms; its client then gets `503 receipt_not_recorded`
   * instead of waiting on, and its job id is in the error log. Default 5,000.
   */
  refuseAfterMs?: number;
  /**
   * Time one group commit may run its tasks before it commits and lets the event loop run, in
   * ms; the tasks left go in the next group, at once. Default 1.
   */
  maxSliceMs?: number;
  /**
   * Writes kept in memory at most while the database refuses them (see `RunOptions.keep`); one
   * refused beyond that is rejected. Default 10,000.
   */
  maxKept?: number;
  /**
   * PostgreSQL: how long connections may keep being lost (more than three, nothing committed
   * between) before the database counts as away, in ms. Default 10,000.
   */
  lostForAwayMs?: number;
  /**
   * SQLite: where the time of each group commit goes, in ms. Default: the process's commit-hold
   * metric (each one held this event loop); a writer in a thread of its own sends it to the
   * process instead.
   */
  commitTimes?: (ms: number) => void;
}

/** How one task is run; every field is optional. */
export interface RunOptions {
  /**
   * The task records what already happened and cannot be refused to anyone (a stream's
   * completion, its answer already sent): once the database has refused it for
   * `refuseAfterMs`, it is kept in memory instead of rejected, `keep` is called (once), and it
   * is written when the database takes writes again; the promise settles then. It is rejected
   * only when `maxKept` writes are kept already, when it fails alone, or when the writer closes
   * with the database still refusing.
   */
  keep?: () => void;
  /** The id of the request the task records, for the log lines about it. */
  requestId?: string;
}

/** How one task of a group commit ended: its savepoint's result, or the error it threw. */
export type TaskOutcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** A task run inside the writer's group transaction (built by the store modules). */
export type WriteTask<T> = WriteUnit<T>;

export interface ReceiptWriter {
  /** Runs `task` in the next group commit; resolves with its result once that commit is durable. */
  run<T>(task: WriteTask<T>, options?: RunOptions): Promise<T>;
  /** Tasks submitted and not committed yet (not those kept while the database refuses writes). */
  backlog(): number;
  /**
   * True when new work whose receipt must be kept is refused: the backlog is at `maxBacklog`,
   * or the database was found unreachable or refusing writes and has not taken one since.
   */
  full(): boolean;
  /** Whether the database took the last write (or probe), and since when it has not. */
  health(): WriterHealth;
  /** Resolves when every submitted task is committed (or has failed on its own). */
  idle(): Promise<void>;
  /** Commits what is queued, then closes the writer's own connection. */
  close(): Promise<void>;
}

/**
 * The writer's view of its database, for `/readyz`: reachable, or not taking writes since
 * `since`, because it does not answer (PostgreSQL away) or refuses them (a full disk).
 */
export type WriterHealth =
  | { reachable: true }
  | {
      reachable: false;
      since: number;
      error: string;
      waiting: number;
      refusing?: boolean;
    };

export interface Queued {
  task: WriteTask<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  /** When the database first refused it, on the monotonic clock (`performance.now()`). */
  refusedSince?: number;
  /** Called once when the task is kept past `refuseAfterMs` (see `RunOptions.keep`). */
  keep?: () => void;
  /** See `RunOptions.requestId`. */
  requestId?: string;
}

/**
 * The one writer of receipts: tasks submitted in one event-loop turn share one `BEGIN
 * IMMEDIATE` transaction (a group commit), and each caller is answered only after that
 * commit, so whatever it acknowledges to a client survives a crash. A group runs for at most
 * `maxSliceMs` before it commits, so the event loop is never held long; the rest follow in the
 * next group. A task that throws is rolled back and rejected alone (its group is run again
 * with a savepoint per task).
 *
 * While another process holds the write lock, an attempt gives up at once (better-sqlite3 is
 * synchronous: waiting in SQLite's busy handler would hold the event loop) and is retried from
 * a timer after 1, 2, 4, up to 8 ms, so the process keeps answering other requests; nothing
 * queued is dropped. A file database gets a connection of its own with no busy timeout; a
 * `:memory:` one (tests) is shared.
 */
export function createReceiptWriter(store: Store, options: ReceiptWriterOptions): ReceiptWriter {
  return store.kind === "postgres"
    ? pgTwins().createPgReceiptWriter(store, options)
    : createSqliteReceiptWriter(store, options);
}

/** The SQLite writer; its thread (receipt-writer-thread.ts) commits what a message brought at once. */
export interface SqliteReceiptWriter extends ReceiptWriter {
  /** Commits what is queued now rather than in the next turn, unless a retry's timer waits. */
  commitNow(): void;
}

/** How long the write lock stays taken before the log says receipts wait for it, in ms. */
const LOCK_WAIT_WARN_MS = 10_000;
/** How often a database that refuses writes is tried again while no receipt waits. */
const PROBE_INTERVAL_MS = 1000;
/** Free space a refusing database's disk needs before receipts are taken again (1 MiB). */
const MIN_FREE_BYTES = 1024 * 1024;

export function createSqliteReceiptWriter(
  store: SqliteStore,
  options: ReceiptWriterOptions,
): SqliteReceiptWriter {
  const { log } = options;
  const maxBacklog = options.maxBacklog ?? 2000;
  const maxRetryDelayMs = options.maxRetryDelayMs ?? 200;
  const maxLockedRetryDelayMs = options.maxLockedRetryDelayMs ?? 8;
  const maxSliceMs = options.maxSliceMs ?? 1;
  const commitTime = options.commitTimes ?? recordCommitHold;
  const connection = openWriterConnection(store, options.busyTimeoutMs ?? 0);
  const conn = connection.store;

  const refuseAfterMs = options.refuseAfterMs ?? 5000;
  const maxKept = options.maxKept ?? 10_000;
  let queue: Queued[] = [];
  /** Tasks refused past `refuseAfterMs` and kept, written once the database takes writes. */
  let kept: Queued[] = [];
  /** Closing: a task refused past `refuseAfterMs` is rejected, none is kept any longer. */
  let giveUp = false;
  let scheduled: NodeJS.Immediate | NodeJS.Timeout | undefined;
  /** `scheduled` when it is the next turn's commit, not a retry's timer. */
  let immediate: NodeJS.Immediate | undefined;
  let retries = 0;
  /** Since when attempts find the write lock taken, and when the log last said so. */
  let locked: { since: number; warnedAt: number } | null = null;
  let closed = false;
  /** Since when the database refuses writes (not a lock: a full disk, say), and why. */
  let refusing: { since: number; error: string; watched?: true } | null = null;
  /** When the free space of the database's disk was last looked at, on the monotonic clock. */
  let diskLookedAt = Number.NEGATIVE_INFINITY;
  let idleWaiters: (() => void)[] = [];

  // The usual group: every task in one transaction, no savepoints (a SAVEPOINT and RELEASE per
  // task cost more than most tasks). Should one throw, the whole group is rolled back and run
  // again by `commitIsolated`, where each task has its own savepoint and fails alone.
  // It stops taking tasks once its slice of time is spent: at 64 requests in flight a whole
  // backlog in one transaction held the event loop (every proxied byte) for 10 ms and more.
  const commitTogether = connection.immediate((batch: Queued[]) => {
    const values: unknown[] = [];
    const until = performance.now() + maxSliceMs;
    for (const item of batch) {
      values.push(item.task.runSqlite(conn));
      if (performance.now() >= until) break;
    }
    return values;
  });
  // A nested better-sqlite3 transaction is a savepoint.
  const inSavepoint = connection.immediate((task: WriteTask<unknown>) => task.runSqlite(conn));
  // Sliced as the usual group is: run whole, one throwing task in a backlog of 2,000 held the
  // event loop for every receipt of it (1.8 s measured). What the slice leaves waits in front.
  const commitIsolated = connection.immediate((batch: Queued[]) => {
    const outcomes: TaskOutcome[] = [];
    const until = performance.now() + maxSliceMs;
    for (const item of batch) {
      try {
        outcomes.push({ ok: true as const, value: inSavepoint(item.task) });
      } catch (error) {
        if (isBusyError(error)) throw error;
        outcomes.push({ ok: false as const, error });
      }
      if (performance.now() >= until) break;
    }
    return outcomes;
  });
  const commitGroup = (batch: Queued[]): TaskOutcome[] => {
    try {
      return commitTogether(batch).map((value) => ({ ok: true as const, value }));
    } catch (error) {
      if (isBusyError(error) || batch.length === 0) throw error;
      return commitIsolated(batch);
    }
  };

  function settleIdle() {
    if (queue.length > 0 || scheduled) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const w of waiters) w();
  }

  function flush() {
    scheduled = undefined;
    immediate = undefined;
    const batch = queue;
    queue = [];
    if (batch.length === 0) return settleIdle();
    let outcomes: TaskOutcome[];
    const began = performance.now();
    try {
      outcomes = commitGroup(batch);
      commitTime(performance.now() - began);
    } catch (error) {
      commitTime(performance.now() - began);
      // Nothing of the batch was written: put it back in front, in order, and try again.
      queue = batch.concat(queue);
      if (isBusyError(error)) {
        // Said once the lock stays taken for 10 s, then every 20 s while it lasts.
        const t = Date.now();
        locked ??= { since: t, warnedAt: t - LOCK_WAIT_WARN_MS };
        if (t - locked.warnedAt >= 2 * LOCK_WAIT_WARN_MS) {
          locked.warnedAt = t;
          log.warn(
            { tasks: queue.length, lockedMs: t - locked.since },
            "receipt writes waiting for the write lock",
          );
        }
        scheduled = setTimeout(
          flush,
          backoff(retries++, { baseMs: 1, maxMs: maxLockedRetryDelayMs }),
        );
        return;
      }
      retries++;
      refused(error);
      const delay = backoff(retries, { baseMs: 1, maxMs: Math.min(maxRetryDelayMs, 256) });
      // Said when it starts and now and then while it lasts (~10 s failing).
      if (retries % 40 === 1) {
        log.error({ err: error, tasks: queue.length }, "could not record receipts; will retry");
      }
      scheduled = setTimeout(flush, Math.max(delay, 250));
      return;
    }
    // Refusing because the disk is full or the file gone (`watchDisk`), a group that still went
    // in (a commit's WAL space left free) ends nothing: the probe lets work in once the disk
    // has room. Cleared here, every worker let paid jobs through for a second, then refused
    // again, each time (once a second under traffic on a disk at 0 bytes free).
    const resumed = refusing !== null && refusing.watched !== true;
    if ((locked && locked.warnedAt > locked.since) || resumed) {
      log.info({ retries }, "receipt writes resumed");
    }
    if (resumed) requeueKept();
    retries = 0;
    locked = null;
    if (resumed) refusing = null;
    // Tasks past the group's slice of time wait, in order, in front of the queue.
    if (outcomes.length < batch.length) queue = batch.slice(outcomes.length).concat(queue);
    outcomes.forEach((outcome, i) => {
      const item = batch[i] as Queued;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
    if (queue.length > 0) schedule();
    else {
      if (refusing !== null) probeSoon();
      settleIdle();
    }
  }

  function schedule() {
    if (scheduled !== undefined) return;
    immediate = setImmediate(flush);
    scheduled = immediate;
  }

  /** Commits what is queued now rather than in the next turn, unless a retry's timer waits. */
  function commitNow() {
    if (immediate === undefined || scheduled !== immediate) return;
    clearImmediate(immediate);
    flush();
  }

  /**
   * The database refused a group, and not for a lock (a full disk's COMMIT, an I/O error): no
   * task of it is to blame, so it is tried again, but a task refused for `refuseAfterMs` is
   * rejected rather than left waiting for space that may not come back (or kept, see
   * `sortRefused`). Meanwhile `full()`
   * turns new paid work away before it is forwarded, and `/readyz` says why.
   */
  function refused(error: unknown) {
    const t = Date.now();
    if (refusing === null) {
      refusing = { since: t, error: messageOf(error) };
      log.error({ err: error, tasks: queue.length }, "the database refuses receipt writes");
    }
    const before = kept.length;
    queue = sortRefused(queue, kept, error, {
      at: performance.now(),
      refuseAfterMs,
      maxKept,
      giveUp,
    });
    if (kept.length > before) {
      log.warn(
        { kept: kept.length },
        "receipt writes kept in memory until the database takes writes again",
      );
    }
    if (queue.length === 0) probeSoon();
  }

  /** The database takes writes again: what was kept is written next. */
  function requeueKept() {
    if (kept.length === 0) return;
    log.info({ tasks: kept.length }, "writing the receipt writes kept while refused");
    queue = queue.concat(kept);
    kept = [];
    schedule();
  }

  /**
   * A disk with less room than a refusing database needs to be taken off refusal counts as
   * refusing before a receipt is refused: a disk filled by something else (or by the verifier,
   * whose failing writes this writer never sees) left `/readyz` passing and every worker
   * forwarding its next paid job, whose receipt then failed and whose answer was withheld after
   * 5 s (the customer charged for nothing). So does a database path that no longer names the
   * file this process writes (its folder renamed, the file deleted): its receipts would go where
   * no `verify`, report or restarted worker looks (into nothing at all once a deleted file is
   * closed). Looked at once a second at most, when the proxy asks whether to forward or
   * `/readyz` asks for the database's state.
   */
  function watchDisk() {
    if (refusing !== null || closed) return;
    const now = performance.now();
    if (now - diskLookedAt < PROBE_INTERVAL_MS) return;
    diskLookedAt = now;
    const gone = connection.fileGone();
    if (gone !== null) {
      refusing = { since: Date.now(), error: gone, watched: true };
      log.error(
        { reason: gone, tasks: queue.length },
        "the database file was moved, removed or replaced; new receipts are refused before their jobs are forwarded",
      );
      if (queue.length === 0) probeSoon();
      return;
    }
    let free: number | null;
    try {
      free = connection.freeBytes();
    } catch {
      return;
    }
    if (free === null || free >= MIN_FREE_BYTES) return;
    refusing = {
      since: Date.now(),
      error: `only ${free} bytes free on the database's disk`,
      watched: true,
    };
    log.error(
      { freeBytes: free, tasks: queue.length },
      "the database's disk is full; new receipts are refused before their jobs are forwarded",
    );
    if (queue.length === 0) probeSoon();
  }

  // With nothing queued (new work is turned away while refusing), a write of no consequence
  // tells when the database takes writes again.
  let probeTimer: NodeJS.Timeout | undefined;
  function probeSoon() {
    if (probeTimer || closed) return;
    probeTimer = setTimeout(() => {
      probeTimer = undefined;
      const state = refusing;
      if (state === null || queue.length > 0 || closed) return;
      try {
        // One page written says little when a receipt's commit writes a dozen: a full disk
        // can take the one into WAL space a failed commit left, and refuse the next receipt.
        // A file moved away or deleted still takes writes, which nobody would find again.
        const gone = connection.fileGone();
        if (gone !== null) throw new Error(gone);
        const free = connection.freeBytes();
        if (free !== null && free < MIN_FREE_BYTES) {
          throw new Error(`only ${free} bytes free on the database's disk`);
        }
        connection.probeWrite();
        log.info({ refusedMs: Date.now() - state.since }, "the database takes writes again");
        refusing = null;
        retries = 0;
        requeueKept();
      } catch (error) {
        if (!isBusyError(error)) state.error = messageOf(error);
        probeSoon();
      }
    }, PROBE_INTERVAL_MS);
    probeTimer.unref();
  }

  return {
    commitNow,
    run<T>(task: WriteTask<T>, runOptions?: RunOptions): Promise<T> {
      if (closed) return Promise.reject(new Error("the receipt writer is closed"));
      return new Promise<T>((resolve, reject) => {
        const item: Queued = { task, resolve: resolve as (v: unknown) => void, reject };
        if (runOptions?.keep) item.keep = runOptions.keep;
        queue.push(item);
        // A retry's timer, when one is pending, keeps its backoff (`scheduled` holds it).
        schedule();
      });
    },
    backlog: () => queue.length,
    full: () => {
      watchDisk();
      return queue.length >= maxBacklog || refusing !== null;
    },
    // A SQLite file is on this host: a busy lock is waited out, never "unreachable"; a
    // database that refuses writes (a full disk) is not taking receipts.
    health: (): WriterHealth => {
      watchDisk();
      return refusing === null
        ? { reachable: true }
        : {
            reachable: false,
            since: refusing.since,
            error: refusing.error,
            waiting: queue.length + kept.length,
            refusing: true,
          };
    },
    idle() {
      if (queue.length === 0 && !scheduled) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
    async close() {
      giveUp = true;
      if (kept.length > 0) {
        // A last try of `refuseAfterMs` for what was kept; then rejected, so its caller logs it.
        for (const item of kept) item.refusedSince = undefined;
        queue = queue.concat(kept);
        kept = [];
        clearTimeout(probeTimer);
        probeTimer = undefined;
        schedule();
      }
      await this.idle();
      closed = true;
      clearTimeout(probeTimer);
      connection.close();
    },
  };
}
