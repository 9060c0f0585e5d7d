import { Histogram, type Registry } from "prom-client";
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

/** The process's running totals, however many registries read them. */
const totals = {
  /** Ticks late by at most each bound (cumulative, as Prometheus' buckets are). */
  atMost: EVENT_LOOP_DELAY_BUCKETS.map(() => 0),
  count: 0,
  /** Seconds late, summed. */
  sum: 0,
};
let started = false;

/** Starts the timer, once per process: each tick adds how late it ran to the totals. */
function start(): void {
  if (started) return;
  started = true;
  watchLoopDelay(RESOLUTION_MS, (lateMs) => {
    const lateS = lateMs / 1000;
    EVENT_LOOP_DELAY_BUCKETS.forEach((bound, i) => {
      if (lateS <= bound) totals.atMost[i] = (totals.atMost[i] ?? 0) + 1;
    });
    totals.count++;
    totals.sum += lateS;
  });
}

/**
 * The histogram, registered in `registry`. Its values are the process's totals so far, as they
 * are when the registry is read (a scrape, or a cluster worker's counters each second).
 */
export function registerEventLoopDelay(registry: Registry): void {
  // Started with the first registry: the delay counts from the service's start, not its first
  // scrape.
  start();
  const histogram = new Histogram({
    name: EVENT_LOOP_DELAY_METRIC,
    help: "How late the event loop ran (see get below).",
    buckets: [...EVENT_LOOP_DELAY_BUCKETS],
    registers: [registry],
  });
  const name = EVENT_LOOP_DELAY_METRIC;
  const help =
    "How late the event loop ran: delay of a timer due every 20 ms, in seconds (summed over serve's workers).";
  // The totals are whole counts per bucket, where a Histogram takes one observation at a time:
  // its readers (text and JSON, as a worker sends it to the primary) answer them as they are.
  const read = async () => {
    const { atMost, count, sum } = totals;
    return {
      name,
      help,
      type: "histogram",
      aggregator: "sum",
      values: [
        ...EVENT_LOOP_DELAY_BUCKETS.map((le, i) => ({
          labels: { le },
          value: atMost[i] ?? 0,
          metricName: `${name}_bucket`,
        })),
        { labels: { le: "+Inf" }, value: count, metricName: `${name}_bucket` },
        { labels: {}, value: sum, metricName: `${name}_sum` },
        { labels: {}, value: count, metricName: `${name}_count` },
      ],
    };
  };
  Object.assign(histogram, { get: read, getForPromString: read });
}
