import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import type { Registry } from "prom-client";
import { cumulativeHistogram } from "../cumulative-histogram.js";

/**
 * How long each group commit of the SQLite receipt writer held this process's event loop, from
 * `BEGIN IMMEDIATE` to `COMMIT` (better-sqlite3 is synchronous: no request is read, and no byte
 * proxied, meanwhile), attempts that found the write lock taken included. The writer stops
 * taking tasks into a group after 1 ms (`maxSliceMs`); what a group holds past that is its last
 * task and its commit. PostgreSQL's writer waits for its database without holding the loop and
 * records nothing here.
 */
export const COMMIT_HOLD_METRIC = "decentral_audit_receipt_commit_hold_seconds";

const BUCKETS = [0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5] as const;

const holds = cumulativeHistogram({
  name: COMMIT_HOLD_METRIC,
  help: "SQLite: how long each group commit of the receipt writer held the event loop, BEGIN IMMEDIATE to COMMIT, in seconds (summed over serve's workers).",
  buckets: BUCKETS,
});

/** The holds since the last reading, once someone reads them (see `commitHoldsSinceLastRead`). */
let window: { histogram: RecordableHistogram; overOneMs: number } | undefined;

/** Adds one group commit's hold of the event loop, in ms. */
export function recordCommitHold(ms: number): void {
  holds.observe(ms / 1000);
  if (!window) return;
  // In ns, the histogram's unit, at least 1 (it takes no 0).
  window.histogram.record(Math.max(1, Math.round(ms * 1e6)));
  if (ms > 1) window.overOneMs++;
}

/** The histogram of every hold so far, registered in `registry` (`/metrics`). */
export function registerCommitHold(registry: Registry): void {
  holds.register(registry);
}

/** The group commits of a stretch of time and how long they held the event loop. */
export interface CommitHolds {
  count: number;
  /** Holds longer than 1 ms. */
  overOneMs: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * This process's holds since the last call, kept from the first call on (a process nobody asks
 * keeps no window): the first call reads none.
 */
export function commitHoldsSinceLastRead(): CommitHolds {
  if (!window) {
    window = { histogram: createHistogram(), overOneMs: 0 };
    return { count: 0, overOneMs: 0, p99Ms: 0, maxMs: 0 };
  }
  const { histogram, overOneMs } = window;
  const read =
    histogram.count === 0
      ? { count: 0, overOneMs, p99Ms: 0, maxMs: 0 }
      : {
          count: histogram.count,
          overOneMs,
          p99Ms: histogram.percentile(99) / 1e6,
          maxMs: histogram.max / 1e6,
        };
  histogram.reset();
  window.overOneMs = 0;
  return read;
}
