import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import type { Registry } from "prom-client";
import { type CumulativeHistogram, cumulativeHistogram } from "../cumulative-histogram.js";

/**
 * How long each group commit of the SQLite receipt writer held this process's event loop, from
 * `BEGIN IMMEDIATE` to `COMMIT` (better-sqlite3 is synchronous: no request is read, and no byte
 * proxied, meanwhile), attempts that found the write lock taken included. The writer stops
 * taking tasks into a group after 1 ms (`maxSliceMs`); what a group holds past that is its last
 * task and its commit. A writer in a thread of its own (`serve` on a database file) holds no
 * loop that proxies and records nothing here; PostgreSQL's writer waits for its database
 * without holding the loop and records nothing either.
 */
export const COMMIT_HOLD_METRIC = "decentral_audit_receipt_commit_hold_seconds";

/**
 * The same time, for the group commits of the receipt writer's thread: how long a receipt
 * waits for its commit there, holding no loop that proxies.
 */
export const THREAD_COMMIT_METRIC = "decentral_audit_receipt_thread_commit_seconds";

const BUCKETS = [0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5] as const;

/** The group commits of a stretch of time and how long each took. */
export interface CommitHolds {
  count: number;
  /** Holds longer than 1 ms. */
  overOneMs: number;
  p99Ms: number;
  maxMs: number;
}

/** One series of group commit times: a histogram for `/metrics`, and a window for the stats. */
function commitTimes(histogram: CumulativeHistogram) {
  /** The times since the last reading, once someone reads them (see `sinceLastRead`). */
  let window: { histogram: RecordableHistogram; overOneMs: number } | undefined;
  return {
    record(ms: number): void {
      histogram.observe(ms / 1000);
      if (!window) return;
      // In ns, the histogram's unit, at least 1 (it takes no 0).
      window.histogram.record(Math.max(1, Math.round(ms * 1e6)));
      if (ms > 1) window.overOneMs++;
    },
    sinceLastRead(): CommitHolds {
      if (!window) {
        window = { histogram: createHistogram(), overOneMs: 0 };
        return { count: 0, overOneMs: 0, p99Ms: 0, maxMs: 0 };
      }
      const { histogram: h, overOneMs } = window;
      const read =
        h.count === 0
          ? { count: 0, overOneMs, p99Ms: 0, maxMs: 0 }
          : { count: h.count, overOneMs, p99Ms: h.percentile(99) / 1e6, maxMs: h.max / 1e6 };
      h.reset();
      window.overOneMs = 0;
      return read;
    },
  };
}

const loopHistogram = cumulativeHistogram({
  name: COMMIT_HOLD_METRIC,
  help: "SQLite: how long each group commit of the receipt writer held the event loop, BEGIN IMMEDIATE to COMMIT, in seconds (summed over serve's workers).",
  buckets: BUCKETS,
});
const threadHistogram = cumulativeHistogram({
  name: THREAD_COMMIT_METRIC,
  help: "SQLite: how long each group commit of the receipt writer's own thread took, BEGIN IMMEDIATE to COMMIT, in seconds (summed over serve's workers); it holds no event loop that proxies.",
  buckets: BUCKETS,
});
const loop = commitTimes(loopHistogram);
const thread = commitTimes(threadHistogram);

/** Adds one group commit's hold of the event loop, in ms. */
export const recordCommitHold: (ms: number) => void = loop.record;

/** Adds one group commit of the receipt writer's thread, in ms. */
export const recordWriterThreadCommit: (ms: number) => void = thread.record;

/** Both histograms of every commit so far, registered in `registry` (`/metrics`). */
export function registerCommitHold(registry: Registry): void {
  loopHistogram.register(registry);
  threadHistogram.register(registry);
}

/**
 * This process's holds of its event loop since the last call, kept from the first call on (a
 * process nobody asks keeps no window): the first call reads none.
 */
export const commitHoldsSinceLastRead: () => CommitHolds = loop.sinceLastRead;

/** This process's writer thread's commits since the last call (as `commitHoldsSinceLastRead`). */
export const writerThreadCommitsSinceLastRead: () => CommitHolds = thread.sinceLastRead;
