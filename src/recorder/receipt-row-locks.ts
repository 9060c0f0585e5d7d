import type { Logger } from "../log.js";
import { backoff, createSleeper } from "../retry.js";
import type { Queued } from "./receipt-writer.js";

/**
 * How long a PostgreSQL receipt group waits for a row lock before the task that waits is set
 * apart, in ms (at most half the statement timeout). Other writers hold a job's row for a few
 * ms; a row held longer (an operator's `SELECT … FOR UPDATE`, a long transaction) stopped every
 * receipt behind the one that needed it.
 */
const LOCK_WAIT_MS = 1000;
/** The bound of a group while tasks wait set apart: their rows are likely held still. */
const LOCKED_AGAIN_WAIT_MS = 50;
/**
 * Least time between two tries of tasks set apart, any of them, in ms: a try still locked costs
 * its group the short bound and a rollback. Each task tried up to once a second, 20 set apart
 * (an operator's `SELECT … FOR UPDATE` over a range of jobs) cost 20 such a second: every group
 * was rolled back, and no receipt of any job was written while the locks lasted.
 */
const LOCKED_RETRY_SPACING_MS = 200;
/** Longest delay between two tries of a task set apart for a locked row, in ms. */
const MAX_LOCKED_RETRY_MS = 1000;
/** How often the log says that a task still waits for a locked row, in ms. */
const LOCKED_WARN_MS = 20_000;

interface LockWait {
  /** When it first waited, on the monotonic clock. */
  since: number;
  tries: number;
  /** When it is tried again, on the monotonic clock. */
  retryAt: number;
  warnedAt: number;
}

/** The next group of a PostgreSQL receipt writer, and its bound on a wait for a row lock. */
export interface NextBatch {
  batch: Queued[];
  lockWaitMs: number;
  /** When the first task set apart is due (monotonic), for a queue of nothing else. */
  nextTryAt: number;
}

/**
 * The tasks of a PostgreSQL receipt writer that waited for a row another session holds locked:
 * each is tried again (up to once a second, one a group, under a short bound) with the tasks
 * that came since, until it is written, and meanwhile the others are written without it.
 * Nothing is dropped or written twice: the task stays in the queue, and only its tries wait.
 */
export function createRowLockWaits(log: Logger, statementTimeout: unknown) {
  const statementMs = typeof statementTimeout === "number" ? statementTimeout : 0;
  const firstWaitMs =
    statementMs > 0
      ? Math.max(1, Math.min(LOCK_WAIT_MS, Math.floor(statementMs / 2)))
      : LOCK_WAIT_MS;
  const waits = new WeakMap<Queued, LockWait>();
  const sleeper = createSleeper({ rememberWake: true });
  /** When a task set apart was last tried (monotonic). */
  let lastRetryAt = Number.NEGATIVE_INFINITY;
  return {
    /**
     * Up to `size` tasks of `queue`, in order, leaving out those set apart and not yet due, and
     * all but the first that is due: each retry costs the group one short wait, not one each;
     * none within `LOCKED_RETRY_SPACING_MS` of the last retry, however many are due.
     * While any task is set apart the group's bound is short too: a row every receipt of a
     * model or hour touches (a rollup row held locked) would have cost a whole bound for each.
     * A task of a job (`WriteUnit.jobIds`) whose earlier task is left out is left out too: a
     * later receipt of the job written first made the earlier one its conflict or `duplicate`.
     */
    nextBatch(queue: readonly Queued[], size: number): NextBatch {
      const t = performance.now();
      const batch: Queued[] = [];
      const retryFrom = lastRetryAt + LOCKED_RETRY_SPACING_MS;
      let retried = t < retryFrom;
      let anyWaiting = false;
      let nextTryAt = Number.POSITIVE_INFINITY;
      /** Jobs of tasks left out of this group: their later tasks wait too, in queue order. */
      const heldJobs = new Set<string>();
      for (const item of queue) {
        const wait = waits.get(item);
        anyWaiting ||= wait !== undefined;
        const behind = item.task.jobIds?.some((jobId) => heldJobs.has(jobId)) ?? false;
        const due = wait === undefined || (wait.retryAt <= t && !retried);
        if (behind || batch.length >= size || !due) {
          if (wait !== undefined)
            nextTryAt = Math.min(nextTryAt, Math.max(wait.retryAt, retryFrom));
          if (wait !== undefined || behind) {
            for (const jobId of item.task.jobIds ?? []) heldJobs.add(jobId);
          }
          continue;
        }
        if (wait !== undefined) {
          retried = true;
          lastRetryAt = t;
        }
        batch.push(item);
      }
      return { batch, lockWaitMs: anyWaiting ? LOCKED_AGAIN_WAIT_MS : firstWaitMs, nextTryAt };
    },
    /** `item` waited for a locked row: it is tried again later, apart from the next group. */
    setAside(item: Queued, error: Error) {
      const t = performance.now();
      const wait = waits.get(item) ?? { since: t, tries: 0, retryAt: t, warnedAt: -Infinity };
      wait.retryAt = t + backoff(wait.tries++, { baseMs: 50, maxMs: MAX_LOCKED_RETRY_MS });
      waits.set(item, wait);
      if (t - wait.warnedAt >= LOCKED_WARN_MS) {
        wait.warnedAt = t;
        log.warn(
          { err: error, requestId: item.requestId, waitedMs: Math.round(t - wait.since) },
          "a receipt waits for a row another session holds locked; other receipts are written",
        );
      }
    },
    /** `item` was written (or failed alone). */
    written(item: Queued) {
      const wait = waits.get(item);
      if (wait === undefined) return;
      waits.delete(item);
      // Its lock went: the others set apart are likely free too, and tried without the spacing.
      lastRetryAt = Number.NEGATIVE_INFINITY;
      log.info(
        {
          requestId: item.requestId,
          waitedMs: Math.round(performance.now() - wait.since),
          tries: wait.tries,
        },
        "a receipt that waited for a locked row is written",
      );
    },
    /** Sleeps until `at` (monotonic), or until a new task comes (`wake`) or `signal` aborts. */
    sleepUntil(at: number, signal: AbortSignal): Promise<void> {
      return sleeper.sleep(at - performance.now(), signal);
    },
    /** A new task came: a sleep for tasks set apart ends. */
    wake: () => sleeper.wake(),
  };
}
