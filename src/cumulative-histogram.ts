import { Histogram, type Registry } from "prom-client";

/** A Prometheus histogram whose totals live for the whole process. */
export interface CumulativeHistogram {
  /** Adds one observation, in seconds. */
  observe(seconds: number): void;
  /**
   * Registers the histogram in `registry`; its values are the process's totals so far, as they
   * are when the registry is read (a scrape, or a cluster worker's counters each second).
   */
  register(registry: Registry): void;
}

/**
 * A histogram kept as running totals in this process, however many registries read them (each
 * `createMetrics` makes a registry of its own, and a test makes many): observed once, read by
 * all. Cumulative, so the primary of `serve --workers N` sums the workers' (and keeps a dead
 * one's) as for every other histogram, and `histogram_quantile()` reads the whole service's
 * quantiles over any window.
 */
export function cumulativeHistogram(options: {
  name: string;
  help: string;
  /** Upper bounds, in seconds, ascending. */
  buckets: readonly number[];
}): CumulativeHistogram {
  const { name, help, buckets } = options;
  const totals = {
    /** Observations at most each bound (cumulative, as Prometheus' buckets are). */
    atMost: buckets.map(() => 0),
    count: 0,
    sum: 0,
  };
  return {
    observe(seconds) {
      buckets.forEach((bound, i) => {
        if (seconds <= bound) totals.atMost[i] = (totals.atMost[i] ?? 0) + 1;
      });
      totals.count++;
      totals.sum += seconds;
    },
    register(registry) {
      const histogram = new Histogram({ name, help, buckets: [...buckets], registers: [registry] });
      // The totals are whole counts per bucket, where a Histogram takes one observation at a
      // time: its readers (text and JSON, as a worker sends it to the primary) answer them as
      // they are.
      const read = async () => {
        const { atMost, count, sum } = totals;
        return {
          name,
          help,
          type: "histogram",
          aggregator: "sum",
          values: [
            ...buckets.map((le, i) => ({
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
    },
  };
}
