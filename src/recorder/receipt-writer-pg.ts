import {
  pgConnectionLost as connectionLost,
  isPgWriteRefusal,
  isTransientPgError,
} from "../db/client.js";
import type { PgStore } from "../db/pg/client.js";
import { messageOf } from "../errors.js";
import { backoff, createSleeper } from "../retry.js";
import {
  type CommitStatus,
  commitInDoubt,
  type GroupSession,
  IN_DOUBT_OPEN_MS,
  openPgWriterConnection,
  ReceiptRowLockedError,
  ReceiptTurnWaitError,
} from "../store/pg/group-commit.js";
import { createRowLockWaits } from "./receipt-row-locks.js";
import type {
  Queued,
  ReceiptWriter,
  ReceiptWriterOptions,
  RunOptions,
  TaskOutcome,
  WriterHealth,
  WriteTask,
} from "./receipt-writer.js";
import { sortRefused } from "./refused-writes.js";

/** Tasks one PostgreSQL group commit takes at most (a batch of `POST /jobs` is one task). */
const MAX_GROUP = 256;
/** How often a database that refuses writes is tried again while no receipt waits. */
const PROBE_INTERVAL_MS = 1000;
/** Connections lost in a row, each while the server answers, before it counts as away. */
const MAX_LOST_IN_A_ROW = 3;
/**
 * A group's connection lost this long after the group began was ended by a later event (the
 * next sweep of `pg_terminate_backend`, another failover), not with the connection before it.
 */
const LOST_TOGETHER_MS = 1000;
/**
 * Connections lost this long after the first of them, more than `MAX_LOST_IN_A_ROW` of them,
 * with no group committed meanwhile: the database counts as away, however far into its group
 * each loss came. Two losses alone are not an outage however far apart: on a slow server (a
 * group of 10 s under load) a pooler's two recyclings 10 s apart ended two tries, and every new
 * paid job was refused with 503 while the next try committed. The default of
 * `ReceiptWriterOptions.lostForAwayMs`.
 */
const LOST_FOR_AWAY_MS = 10_000;

/** The counts of failed groups once a group committed. */
const afterCommit = {
  failures: 0,
  lostInARow: 0,
  lostSince: null as number | null,
  lostSinceCommit: 0,
};

/** Transient and not a retryable conflict: the database is gone, not merely busy. */
function isUnreachable(error: unknown): boolean {
  const failure = error as { code?: unknown; cause?: { code?: unknown } } | null;
  const code = failure?.code ?? failure?.cause?.code;
  return isTransientPgError(error) && !(typeof code === "string" && code.startsWith("40"));
}

/**
 * Connections lost in a row once a group failed: one more when its connection was lost soon
 * after the group began (ended with the one before it), a first when lost later, none else.
 */
function countLost(error: unknown, began: number, before: number): number {
  if (!connectionLost(error)) return 0;
  return performance.now() - began < LOST_TOGETHER_MS ? before + 1 : 1;
}

/**
 * The receipt writer on PostgreSQL: what was submitted while a group was committing shares the
 * next group's transaction (one round trip per statement, one COMMIT per group), and each caller
 * is answered only once that COMMIT returned. A task that throws is rolled back and rejected
 * alone: the group is run again with a savepoint per task. A refusal (below) is a task's own
 * when the database takes a write of no rows meanwhile: a row-level security policy one
 * receipt breaks fails that receipt alone, not the proxy.
 *
 * When the database goes away the group waits in memory, in order, and is retried with backoff
 * until the database answers again; meanwhile `full()` is true, so the proxy refuses new jobs
 * (503 before forwarding: no money moves for a job that could not be recorded) and `health()`
 * says since when the database is unreachable (`/readyz`). A response already waiting for its
 * receipt keeps waiting: nothing is answered unrecorded.
 *
 * A database that answers but will not write (read-only after a failover to a standby, a
 * privilege revoked: `isPgWriteRefusal`) is no task's fault either: the group is kept and tried
 * again, `full()` turns new paid work away before it is forwarded, `health()` says it refuses
 * writes, and a task refused for `refuseAfterMs` is rejected (its client gets a 503) rather
 * than left waiting for an operator, or kept in memory until writes work when it records what
 * already happened (`RunOptions.keep`). With nothing waiting, a write of no consequence is tried
 * until it passes, and new work is taken again.
 */
export function createPgReceiptWriter(
  store: PgStore,
  options: ReceiptWriterOptions,
): ReceiptWriter {
  const { log } = options;
  const connection = openPgWriterConnection(store);
  const maxBacklog = options.maxBacklog ?? 2000;
  const maxRetryDelayMs = Math.max(options.maxRetryDelayMs ?? 200, 1000);
  const refuseAfterMs = options.refuseAfterMs ?? 5000;
  const maxKept = options.maxKept ?? 10_000;
  const lostForAwayMs = options.lostForAwayMs ?? LOST_FOR_AWAY_MS;

  let queue: Queued[] = [];
  /** Tasks refused past `refuseAfterMs` and kept, written once the database takes writes. */
  let kept: Queued[] = [];
  /** Closing: a task refused past `refuseAfterMs` is rejected, none is kept any longer. */
  let giveUp = false;
  /** Closed, and `refuseAfterMs` passed with tasks the database did not take: they are rejected. */
  let abandoned = false;
  let running: Promise<void> | null = null;
  let closed = false;
  /** Since when the database does not take writes, why, and whether it answers meanwhile. */
  let down: { since: number; error: string; refusing: boolean } | null = null;
  let idleWaiters: (() => void)[] = [];
  const stop = new AbortController();
  const sleeper = createSleeper();

  const locks = createRowLockWaits(log, store.config.statement_timeout);
  /** A group lost at its COMMIT whose transaction the server has not said the fate of yet. */
  let inDoubt: {
    session: GroupSession;
    batch: Queued[];
    outcomes: TaskOutcome[];
  } | null = null;

  /** Notes a group that failed with `error` after its last unit ran (see `settleInDoubt`). */
  function noteInDoubt(
    error: unknown,
    batch: Queued[],
    outcomesOf: (values: unknown[]) => TaskOutcome[],
  ) {
    const doubt = commitInDoubt(error);
    if (doubt === null) return;
    const { xid, pid, life } = doubt;
    const session = { xid, pid, life };
    inDoubt = { session, batch, outcomes: outcomesOf(doubt.values) };
  }

  async function commitGroup(batch: Queued[], lockWaitMs: number): Promise<TaskOutcome[]> {
    const tasks = batch.map((item) => item.task);
    try {
      const values = await connection.together(tasks, lockWaitMs);
      return values.map((value) => ({ ok: true as const, value }));
    } catch (error) {
      noteInDoubt(error, batch, (values) => values.map((value) => ({ ok: true as const, value })));
      if (error instanceof ReceiptRowLockedError || isTransientPgError(error)) throw error;
      // A privilege error (42501) is also what a row-level security policy raises for one row:
      // when a write of no rows passes, the database takes writes and the refusal is a task's.
      const refusal = isPgWriteRefusal(error);
      if (refusal) {
        try {
          await connection.probeWrite();
        } catch {
          throw error;
        }
      }
      try {
        return await connection.isolated(
          tasks,
          (failure) => !isTransientPgError(failure) && (refusal || !isPgWriteRefusal(failure)),
          lockWaitMs,
        );
      } catch (failure) {
        noteInDoubt(failure, batch, (values) => values as TaskOutcome[]);
        throw failure;
      }
    }
  }

  /**
   * The fate of a group lost at its COMMIT (`inDoubt`), asked of the server: committed, its
   * tasks are answered with what that transaction returned, and true is returned. A retry
   * found its own rows and answered `duplicate` for receipts sent once. Waits while the
   * transaction is still open there (its backend has not yet seen its connection gone).
   * Aborted or unknown, the group is written again: unknown too when the server answering is not
   * the one that ran it, or has been through a crash recovery since (the id may be another
   * transaction's there: a standby promoted after a failover, asynchronous, never saw the
   * group, and its answer "committed" lost the receipts). The server not answering, it is asked
   * again before the next try (which fails too, most likely).
   */
  async function settleInDoubt(): Promise<boolean> {
    const doubt = inDoubt;
    if (doubt === null) return false;
    let status: CommitStatus = "in progress";
    const since = performance.now();
    for (let tries = 0; status === "in progress" && !stop.signal.aborted; tries++) {
      if (tries > 0) await sleeper.sleep(backoff(tries, { baseMs: 5, maxMs: 500 }), stop.signal);
      try {
        // Open this long, its COMMIT never came: its session is ended (an aborted group is
        // written again). Waited for, every receipt waited behind it for hours, /readyz passing.
        if (tries > 0 && performance.now() - since >= IN_DOUBT_OPEN_MS) {
          log.warn(doubt.session, "ending the session of a group lost before its COMMIT");
          await connection.endInDoubt(doubt.session);
        }
        status = await connection.commitStatus(doubt.session);
      } catch (error) {
        if (isTransientPgError(error)) return false;
        status = null;
      }
    }
    if (status === "in progress") return false;
    inDoubt = null;
    if (status !== "committed") return false;
    const waiting = new Set(queue);
    const batch = doubt.batch.filter((item) => waiting.has(item));
    log.info({ tasks: batch.length }, "the group whose COMMIT answer was lost had committed");
    committed(
      batch,
      doubt.outcomes.filter((_, i) => waiting.has(doubt.batch[i] as Queued)),
    );
    return true;
  }

  /** A group committed: its tasks leave the queue and are answered. */
  function committed(batch: Queued[], outcomes: TaskOutcome[]) {
    if (down !== null) {
      log.info(
        { [down.refusing ? "refusedMs" : "unreachableMs"]: Date.now() - down.since },
        down.refusing ? "the database takes writes again" : "database reachable; receipts written",
      );
      down = null;
      requeueKept();
    }
    const done = new Set(batch);
    queue = queue.filter((item) => !done.has(item));
    outcomes.forEach((outcome, i) => {
      const item = batch[i] as Queued;
      locks.written(item);
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  }

  async function drain(): Promise<void> {
    let failures = 0;
    /** Connections lost one right after the other, the server answering each time. */
    let lostInARow = 0;
    /** When the first of the connections lost since a group last committed was lost (monotonic). */
    let lostSince: number | null = null;
    /** Connections lost since a group last committed. */
    let lostSinceCommit = 0;
    /** Tasks the next group takes at most: halved when a group's connection is lost, doubled when one commits. */
    let groupSize = MAX_GROUP;
    while (queue.length > 0) {
      if (await settleInDoubt()) {
        ({ failures, lostInARow, lostSince, lostSinceCommit } = afterCommit);
        continue;
      }
      const { batch, lockWaitMs, nextTryAt } = locks.nextBatch(queue, groupSize);
      if (batch.length === 0) {
        // Only receipts waiting for locked rows are left: closing past its time, they are
        // rejected (their callers log each job for an `import`), else tried again when due.
        if (abandoned || stop.signal.aborted) {
          abandon(new Error("receipts waited for rows another session holds locked"));
          return;
        }
        await locks.sleepUntil(nextTryAt, stop.signal);
        continue;
      }
      const began = performance.now();
      let outcomes: TaskOutcome[];
      try {
        outcomes = await commitGroup(batch, lockWaitMs);
      } catch (error) {
        if (error instanceof ReceiptRowLockedError) {
          // One task waited for a row another session holds locked: it waits apart, and the
          // others are written at once without it. The group waited for it (holding the turn),
          // the database away, until the statement timeout: every receipt of every job waited
          // behind the one row, and the database was taken for unreachable (503).
          if (abandoned) {
            abandon(error);
            return;
          }
          locks.setAside(batch[error.index] as Queued, error);
          continue;
        }
        if (error instanceof ReceiptTurnWaitError) {
          // Closing past its time: the wait was cancelled, and what waits is rejected, so its
          // caller logs each job for an `import`, as with the database away.
          if (abandoned) {
            abandon(error);
            return;
          }
          // Other writers (another host's slow group) held the turn past its own long timeout:
          // the database answers, so the group waits on; paid work is refused only once the
          // backlog is full. Taken for an outage, every new job was refused until the turn freed.
          log.warn({ err: error, tasks: queue.length }, "receipts wait for the writers' turn");
          continue;
        }
        failures++;
        lostInARow = countLost(error, began, lostInARow);
        if (connectionLost(error)) {
          lostSince ??= performance.now();
          lostSinceCommit++;
        }
        const lostForMs = lostSince === null ? 0 : performance.now() - lostSince;
        const lostForAway = lostForMs >= lostForAwayMs && lostSinceCommit > MAX_LOST_IN_A_ROW;
        // Connections ended more often than a large group takes (a backlog of seconds on a
        // busy host, sessions ended every second) ended every try of it, and nothing was
        // written until they stopped: a group of half as many commits between them.
        if (connectionLost(error)) groupSize = Math.max(1, Math.ceil(batch.length / 2));
        const refusal = isPgWriteRefusal(error);
        if (refusal) {
          refused(error);
        } else if (isUnreachable(error) && down === null) {
          // One connection ended while the server answers (pg_terminate_backend, a pooler
          // recycling it) is not the database away: the group is written again at once on a
          // fresh one. Taken for an outage, it turned paid work away with 503 and failed
          // /readyz until the group, run again, committed (seconds for a large group). Every
          // session ended at once (a failover proxy, an operator ending them all) can end the
          // next connection too, before the pool hears of it: a few losses in a row are written
          // again so, as long as the server answers in between. A loss well into its group is
          // a new one: a busy writer is always in a transaction, and sweeps seconds apart each
          // ended one; counted together, the fourth took the database for away, and a backlog
          // grown to a group of seconds was ended again by each sweep (503 for 7 to 24 s). But
          // losses that go on past `lostForAwayMs` with nothing committed, more than
          // `MAX_LOST_IN_A_ROW` of them, are an outage: a group ended over a second into every
          // try was written again for ever, /readyz passing and paid work taken while its
          // responses waited. A writer closing past its time writes nothing again: what waits
          // is rejected below, and logged.
          if (
            !abandoned &&
            lostInARow <= MAX_LOST_IN_A_ROW &&
            !lostForAway &&
            connectionLost(error) &&
            (await connection.ping().then(
              () => true,
              () => false,
            ))
          ) {
            log.warn({ err: error, tasks: queue.length }, "receipt connection lost; writing again");
            continue;
          }
          down = { since: Date.now(), error: messageOf(error), refusing: false };
          log.error(
            { err: error, tasks: queue.length, ...(lostForMs > 0 && { lostForMs }) },
            "database unreachable; receipts wait",
          );
        } else if (failures % 40 === 1) {
          log.warn({ err: error, tasks: queue.length }, "could not record receipts; will retry");
        }
        if (closed && stop.signal.aborted) {
          // Closing, and the database still does not take the writes: each is rejected, so
          // its caller logs the job it records (an `import` once the database is back).
          if (abandoned) abandon(error);
          return;
        }
        if (queue.length === 0) break;
        const delay = backoff(failures, { baseMs: 25, maxMs: maxRetryDelayMs });
        await sleeper.sleep(refusal ? Math.max(delay, 250) : delay, stop.signal);
        continue;
      }
      ({ failures, lostInARow, lostSince, lostSinceCommit } = afterCommit);
      groupSize = Math.min(MAX_GROUP, groupSize * 2);
      committed(batch, outcomes);
    }
  }

  /**
   * The database refused a group's writes: no task of it is to blame, so it is tried again,
   * but a task refused for `refuseAfterMs` is rejected rather than left waiting for an operator
   * (or kept, see `sortRefused`).
   */
  function refused(error: unknown) {
    const t = Date.now();
    if (down === null || !down.refusing) {
      down = { since: down?.since ?? t, error: messageOf(error), refusing: true };
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
  }

  /** Rejects every task still waiting: the writer closed before the database took them. */
  function abandon(error: unknown) {
    const left = queue;
    queue = [];
    log.error(
      { err: error, tasks: left.length },
      "receipt writer closed with the database not taking writes; receipts not recorded",
    );
    for (const item of left) {
      item.reject(
        new Error(
          `the database did not take the write before the writer closed: ${messageOf(error)}`,
          {
            cause: error,
          },
        ),
      );
    }
  }

  /** The database takes writes again: what was kept is written next. */
  function requeueKept() {
    if (kept.length === 0) return;
    log.info({ tasks: kept.length }, "writing the receipt writes kept while refused");
    queue = queue.concat(kept);
    kept = [];
  }

  /**
   * While no task is waiting, a database found unreachable is probed until it answers, and one
   * that refused writes until a write of no consequence passes.
   */
  async function probe(): Promise<void> {
    let attempt = 0;
    while (down !== null && queue.length === 0 && !stop.signal.aborted) {
      const state = down;
      const delay = state.refusing
        ? PROBE_INTERVAL_MS
        : backoff(attempt++, { baseMs: 100, maxMs: maxRetryDelayMs });
      await sleeper.sleep(delay, stop.signal);
      if (down !== state || queue.length > 0 || stop.signal.aborted) continue;
      try {
        if (state.refusing) await connection.probeWrite();
        else await connection.ping();
        if (down !== state) continue;
        down = null;
        log.info(
          { [state.refusing ? "refusedMs" : "unreachableMs"]: Date.now() - state.since },
          state.refusing ? "the database takes writes again" : "database reachable again",
        );
        requeueKept();
      } catch (error) {
        if (state.refusing && isPgWriteRefusal(error)) state.error = messageOf(error);
      }
    }
  }

  function kick() {
    if (running) return;
    running = (async () => {
      try {
        await drain();
        await probe();
      } finally {
        running = null;
        if (queue.length > 0 && !stop.signal.aborted) kick();
        else settleIdle();
      }
    })();
  }

  function settleIdle() {
    if (queue.length > 0 || running) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const w of waiters) w();
  }

  return {
    run<T>(task: WriteTask<T>, runOptions?: RunOptions): Promise<T> {
      if (closed) return Promise.reject(new Error("the receipt writer is closed"));
      return new Promise<T>((resolve, reject) => {
        const item: Queued = { task, resolve: resolve as (v: unknown) => void, reject };
        if (runOptions?.keep) item.keep = runOptions.keep;
        if (runOptions?.requestId !== undefined) item.requestId = runOptions.requestId;
        queue.push(item);
        locks.wake();
        kick();
      });
    },
    backlog: () => queue.length,
    full: () => queue.length >= maxBacklog || down !== null,
    health(): WriterHealth {
      if (down === null) return { reachable: true };
      const { since, error, refusing } = down;
      return {
        reachable: false,
        since,
        error,
        waiting: queue.length + kept.length,
        ...(refusing && { refusing }),
      };
    },
    idle() {
      if (queue.length === 0 && !running) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
    async close() {
      closed = true;
      giveUp = true;
      if (kept.length > 0) {
        // A last try of `refuseAfterMs` for what was kept; then rejected, so its caller logs it.
        for (const item of kept) item.refusedSince = undefined;
        queue = queue.concat(kept);
        kept = [];
        kick();
      }
      if (down !== null && queue.length === 0) stop.abort();
      // A database away as the process stops is waited for `refuseAfterMs`, not for ever: a
      // single `serve` never exited, and a cluster's worker was killed past its drain time with
      // the receipts it held and no word of their jobs.
      const deadline = setTimeout(() => {
        abandoned = true;
        stop.abort();
        // A group waiting for the writers' turn (another host's slow group) would keep the
        // stop waiting up to the turn's own timeout, minutes past the drain time.
        connection.cancelTurnWait().catch(() => {});
      }, refuseAfterMs);
      await this.idle();
      clearTimeout(deadline);
      stop.abort();
      await connection.close();
    },
  };
}
