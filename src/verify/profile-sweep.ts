import { setImmediate as nextTurn } from "node:timers/promises";
import type { JobQueueStore, QueueFilter } from "../store/job-queue.js";

/**
 * A verifier started under one profile judges again the final verdicts another profile wrote
 * (a price or a treasury edited, `localnet` swapped for `decentral-mainnet`): each says which
 * profile reached it (`jobs.verdict_profile`; one written before that was recorded may be any
 * profile's, and is judged again too: then it records its profile, so only once).
 *
 * Paced: at most `batch` such jobs are open at a time, and the next are reopened only once half
 * of those are final again, so ten million old verdicts go through the queue beside the new
 * jobs instead of ahead of them, with the RPC's rate. Jobs are read in `job_id` order, `scan` at
 * a time, so the whole table is read once per start, never from the start at each step.
 * Each store call reads `scan` rows and reopens `reopenAtOnce` at most, and the event loop has
 * a turn between two calls: on SQLite they are synchronous, and `serve` proxies on that loop.
 *
 * Only verdicts written at or before the verifier's start are judged again: one that a process
 * under another profile writes later is left to it (and counted apart by the nightly summary),
 * so two processes under two profiles on one database never send a job back and forth.
 *
 * A job another database session holds locked when its turn comes (PostgreSQL) is skipped, not
 * waited for, and tried again at each later step until it is reopened or no longer needs it.
 */
export interface ProfileSweep {
  /**
   * Reopens the next jobs when few enough of the last ones are still open; `idle` (the queue
   * has nothing due) looks at once, otherwise at most once per `intervalMs`. Returns how many
   * it reopened.
   */
  step(idle: boolean): Promise<number>;
  /** Every job of the filter was looked at, and none to reopen is held locked: nothing more. */
  readonly done: boolean;
  /**
   * Every job was looked at but some to reopen were held locked by another database session
   * (PostgreSQL): they are tried again at most once per `intervalMs`.
   */
  readonly waitsForHeldRows: boolean;
  /** Jobs reopened so far. */
  readonly reopened: number;
}

export interface ProfileSweepDeps {
  queue: JobQueueStore;
  /** The `profileId` of the verifier's profile. */
  judgedBy: string;
  /** The verifier's start, on the clock verdicts are written by. */
  before: number;
  filter: QueueFilter | null;
  now: () => number;
  /** Jobs open at once at most (the verifier's claim batch). */
  batch: number;
  /** Shortest time between two looks while the queue is busy. */
  intervalMs: number;
  /** Jobs read per store call. */
  scan?: number;
  /** Jobs reopened per store call at most (one write transaction). */
  reopenAtOnce?: number;
  /** Jobs read per step at most, when it finds few to reopen. */
  scanPerStep?: number;
}

export function createProfileSweep(deps: ProfileSweepDeps): ProfileSweep {
  const scan = deps.scan ?? 1000;
  const reopenAtOnce = deps.reopenAtOnce ?? 200;
  const scanPerStep = deps.scanPerStep ?? 50_000;
  let after: string | null = null;
  /** Every job of the filter was read once. */
  let scanned = false;
  /** Jobs to reopen that were held locked when a step came to them. */
  let held: string[] = [];
  let reopened = 0;
  let inFlight: string[] = [];
  let lookedAt = Number.NEGATIVE_INFINITY;

  /** Room for more: at most half the batch of the last ones still open. */
  async function room(): Promise<number> {
    if (inFlight.length > 0) inFlight = await deps.queue.openOf(inFlight);
    return inFlight.length * 2 > deps.batch ? 0 : deps.batch - inFlight.length;
  }

  /** Tries the held jobs again, the first `limit` of them: reopens those now free. */
  async function retryHeld(limit: number): Promise<string[]> {
    const tried = held.slice(0, Math.min(limit, reopenAtOnce));
    const slice = await deps.queue.reopenJudgedElsewhere({
      ...sweepOf(tried.length),
      ids: tried,
      scan: tried.length,
    });
    held = [...slice.held, ...held.slice(tried.length)];
    return slice.reopened;
  }

  const sweepOf = (limit: number) => ({
    judgedBy: deps.judgedBy,
    before: deps.before,
    after,
    scan,
    limit,
    filter: deps.filter,
    t: deps.now(),
  });

  const waitsForHeldRows = () => scanned && held.length > 0;

  return {
    get done() {
      return scanned && held.length === 0;
    },
    get waitsForHeldRows() {
      return waitsForHeldRows();
    },
    get reopened() {
      return reopened;
    },
    async step(idle) {
      if (scanned && held.length === 0) return 0;
      const t = deps.now();
      // Only held rows left: looking at once again would only find them held again.
      if ((!idle || waitsForHeldRows()) && t - lookedAt < deps.intervalMs) return 0;
      lookedAt = t;
      let limit = await room();
      if (limit === 0) return 0;
      const taken: string[] = [];
      let calls = 0;
      if (held.length > 0) {
        const freed = await retryHeld(limit);
        calls += 1;
        taken.push(...freed);
        limit -= freed.length;
      }
      for (let read = 0; limit > 0 && read < scanPerStep && !scanned; read += scan) {
        if (calls++ > 0) await nextTurn();
        const slice = await deps.queue.reopenJudgedElsewhere(
          sweepOf(Math.min(limit, reopenAtOnce)),
        );
        after = slice.last;
        scanned = slice.end;
        taken.push(...slice.reopened);
        held.push(...slice.held);
        limit -= slice.reopened.length;
      }
      inFlight = [...inFlight, ...taken];
      reopened += taken.length;
      return taken.length;
    },
  };
}
