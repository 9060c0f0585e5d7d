import type { Registry } from "prom-client";
import { cumulativeHistogram } from "./cumulative-histogram.js";
import { watchLoopDelay } from "./loop-delay.js";

/**
 * How late this process's event loop runs, as a Prometheus histogram: the delay of a timer due
 * every 20 ms. A request that arrives while the loop is late waits as long before any of it is
 * read. Cumulative, so the primary of `serve --workers N` sums the workers' (and keeps a dead
 * one's) as for every other histogram, and `histogram_quantile()` reads the whole service's p99
 * over any window.
 *
 * Each tick adds its own delay to the totals, and reading them changes nothing. Not Node's
 * `monitorEventLoopDelay` (which prom-client's default metrics read): kept as a running total,
 * it was `reset()` at each read, which lost a stall that began just after one (a worker's
 * counters are read every second; see `watchLoopDelay`).
 */
export const EVENT_LOOP_DELAY_METRIC = "decentral_audit_event_loop_delay_seconds";

/** Upper bounds, in seconds: a millisecond is an idle loop, a second a stalled one. */
export const EVENT_LOOP_DELAY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
] as const;

/** The timer's interval; each tick is this much later than the one before when nothing held it. */
const RESOLUTION_MS = 20;

const delays = cumulativeHistogram({
  name: EVENT_LOOP_DELAY_METRIC,
  help: "How late the event loop ran: delay of a timer due every 20 ms, in seconds (summed over serve's workers).",
  buckets: EVENT_LOOP_DELAY_BUCKETS,
});
let started = false;

/**
 * The histogram, registered in `registry`. Its values are the process's totals so far, as they
 * are when the registry is read (a scrape, or a cluster worker's counters each second).
 */
export function registerEventLoopDelay(registry: Registry): void {
  // Started with the first registry, once per process: the delay counts from the service's
  // start, not its first scrape.
  if (!started) {
    started = true;
    watchLoopDelay(RESOLUTION_MS, (lateMs) => delays.observe(lateMs / 1000));
  }
  delays.register(registry);
}
