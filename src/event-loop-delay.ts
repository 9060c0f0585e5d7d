import { type IntervalHistogram, monitorEventLoopDelay } from "node:perf_hooks";
import { Histogram, type Registry } from "prom-client";

/**
 * How late this process's event loop runs, as a Prometheus histogram: the delay of a timer due
 * every 20 ms (Node's `monitorEventLoopDelay`, as prom-client's default metrics read it, a timer
 * of libuv's own: no JavaScript runs for it and fake timers do not touch it). A request that
 * arrives while the loop is late waits as long before any of it is read. Cumulative, so the
 * primary of `serve --workers N` sums the workers' (and keeps a dead one's) as for every other
 * histogram, and `histogram_quantile()` reads the whole service's p99 over any window.
 */
export const EVENT_LOOP_DELAY_METRIC = "decentral_audit_event_loop_delay_seconds";

/** Upper bounds, in seconds: a millisecond is an idle loop, a second a stalled one. */
export const EVENT_LOOP_DELAY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
] as const;

/** The monitor's timer interval; each sample is the interval it took, this much is no delay. */
const RESOLUTION_MS = 20;
const RESOLUTION_NS = RESOLUTION_MS * 1e6;

/** One monitor and one running total for the process, however many registries read them. */
let monitor: IntervalHistogram | null = null;
const totals = {
  /** Samples at most each bound (cumulative, as Prometheus' buckets are). */
  atMost: EVENT_LOOP_DELAY_BUCKETS.map(() => 0),
  count: 0,
  sum: 0,
};

/** Samples of `h` whose interval is at most `ns`: the highest percentile at or under it. */
function samplesAtMost(h: IntervalHistogram, ns: number, count: number): number {
  if (h.max <= ns) return count;
  if (h.min > ns) return 0;
  let low = 0;
  let high = 100;
  // 20 halvings: a millionth of the samples, finer than the monitor's own 3 significant digits.
  for (let i = 0; i < 20; i++) {
    const mid = (low + high) / 2;
    if (h.percentile(mid) <= ns) low = mid;
    else high = mid;
  }
  return Math.round((low / 100) * count);
}

/** Moves what the monitor recorded since the last read into the running totals. */
function drain(): typeof totals {
  monitor ??= startMonitor();
  const h = monitor;
  const count = h.count;
  if (count > 0) {
    EVENT_LOOP_DELAY_BUCKETS.forEach((bound, i) => {
      totals.atMost[i] =
        (totals.atMost[i] ?? 0) + samplesAtMost(h, bound * 1e9 + RESOLUTION_NS, count);
    });
    totals.count += count;
    totals.sum += (Math.max(0, h.mean - RESOLUTION_NS) * count) / 1e9;
    h.reset();
  }
  return totals;
}

function startMonitor(): IntervalHistogram {
  const h = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  h.enable();
  return h;
}

/**
 * The histogram, registered in `registry`. Its values are the process's totals, read from the
 * monitor when the registry is read (a scrape, or a cluster worker's counters each second).
 */
export function registerEventLoopDelay(registry: Registry): void {
  // Started with the first registry: the delay counts from the service's start, not its first
  // scrape.
  monitor ??= startMonitor();
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
    const { atMost, count, sum } = drain();
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
