import {
  AggregatorRegistry,
  Counter,
  Gauge,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from "prom-client";

/** One worker's registry, as `getMetricsAsJSON()` gives it. */
export type WorkerMetrics = MetricObjectWithValues<MetricValue<string>>[];

/**
 * A worker's registry as it crosses the IPC channel. Node encodes those messages as JSON, which
 * writes NaN and the infinities as null, and the primary's maximum of null is 0: a gauge a
 * worker reads NaN because the database is away (an outage's lag) would read 0, and the alert
 * on it would clear. Such values travel as their name ("NaN", "Infinity", "-Infinity").
 */
export type WireMetrics = (Omit<WorkerMetrics[number], "values"> & {
  values: (Omit<MetricValue<string>, "value"> & { value: number | string })[];
})[];

/** A worker's registry for the IPC channel: values JSON cannot hold are written as text. */
export function toWire(metrics: WorkerMetrics): WireMetrics {
  return metrics.map((metric) => ({
    ...metric,
    values: metric.values.map((v) =>
      Number.isFinite(v.value) ? v : { ...v, value: String(v.value) },
    ),
  }));
}

/** The registry `toWire` wrote, with its NaN and infinities back. */
export function fromWire(metrics: WireMetrics): WorkerMetrics {
  return metrics.map((metric) => ({
    ...metric,
    values: metric.values.map((v) => ({ ...v, value: Number(v.value) })),
  })) as WorkerMetrics;
}

/** A live worker the primary can ask for its metrics. */
export interface MetricsWorker {
  /** node:cluster's worker id: never reused within a primary. */
  id: number;
  collect(): Promise<WorkerMetrics>;
}

/** How long a scrape waits for each worker, in ms; one that is slower (hung) is left out. */
export const COLLECT_TIMEOUT_MS = 2000;

/**
 * The whole service's metrics in the primary of `serve --workers N`. Counters and histograms
 * are summed across workers and never go back: each worker's last values (collected by a
 * scrape, or sent by the worker every `WORKER_COUNTERS_MS`) are kept, stand in for a worker that
 * does not answer a scrape in time, and are added to the retired total when the worker dies. Gauges (each worker marks them `max`) come from the workers that
 * answered: a NaN of any of them (its database is away) stays NaN, for `Math.max` with NaN is
 * NaN. The primary adds its own: restarts of workers, and how many answered.
 */
export function createClusterMetrics() {
  const own = new Registry();
  const restarts = new Counter({
    name: "decentral_audit_serve_worker_restarts_total",
    help: "Workers of serve the primary started again after one died.",
    registers: [own],
  });
  const answered = new Gauge({
    name: "decentral_audit_serve_workers_answered",
    help: "Workers of serve whose metrics this scrape read fresh (answered within 2 s); those that did not count with their last counters.",
    registers: [own],
  });
  const running = new Gauge({
    name: "decentral_audit_serve_workers",
    help: "Workers of serve running.",
    registers: [own],
  });
  /** Counters and histograms of each live worker, as last collected. */
  const last = new Map<number, WorkerMetrics>();
  /** Workers retired: a scrape answered after a worker died must not bring it back. */
  const gone = new Set<number>();
  let retired: WorkerMetrics = [];
  let retiring: Promise<void> = Promise.resolve();

  return {
    /** Counts a worker started again after one died. */
    restarted(): void {
      restarts.inc();
    },
    /**
     * A worker's counters and histograms as it sent them on its own (every
     * `WORKER_COUNTERS_MS`, when they changed), so that one that dies between scrapes keeps what
     * it counted until then.
     */
    counted(id: number, metrics: WorkerMetrics): void {
      if (!gone.has(id)) last.set(id, metrics.filter(isMonotonic));
    },
    /** Adds a dead worker's last counters and histograms to the retired total. */
    retire(id: number): Promise<void> {
      gone.add(id);
      const values = last.get(id);
      last.delete(id);
      if (!values) return retiring;
      retiring = retiring.then(async () => {
        retired = (await AggregatorRegistry.aggregate([
          retired,
          values,
        ]).getMetricsAsJSON()) as WorkerMetrics;
      });
      return retiring;
    },
    /** The whole service's metrics, in Prometheus' text format. */
    async scrape(workers: readonly MetricsWorker[]): Promise<string> {
      const collected = await Promise.all(
        workers.map((worker) =>
          withTimeout(worker.collect(), COLLECT_TIMEOUT_MS).then(
            (metrics) => ({ worker, metrics }),
            () => ({ worker, metrics: null }),
          ),
        ),
      );
      const parts: WorkerMetrics[] = [];
      for (const { worker, metrics } of collected) {
        // A worker that died while this scrape waited for the others is in the retired total
        // already, with its values as last kept: counting its fresh ones too would count it
        // twice now, and the next scrape would go back.
        if (gone.has(worker.id)) continue;
        if (metrics) {
          last.set(worker.id, metrics.filter(isMonotonic));
          parts.push(metrics);
        } else {
          const values = last.get(worker.id);
          if (values) parts.push(values);
        }
      }
      answered.set(collected.filter((c) => c.metrics).length);
      running.set(workers.length);
      await retiring;
      parts.push(retired, (await own.getMetricsAsJSON()) as WorkerMetrics);
      return AggregatorRegistry.aggregate(parts).metrics();
    },
  };
}

/** Counters and histograms: values that only grow, summed across processes. */
function isMonotonic(metric: { type: unknown }): boolean {
  return metric.type === "counter" || metric.type === "histogram";
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** Requests a worker's registry counts as proxied (its debug line on each push names them). */
export function proxiedCount(metrics: WorkerMetrics): number {
  const name = "decentral_audit_proxy_duration_seconds";
  let total = 0;
  for (const metric of metrics) {
    if (metric.name !== name) continue;
    for (const v of metric.values) {
      const sample = v as { metricName?: string; value: number };
      if (sample.metricName === `${name}_count`) total += sample.value;
    }
  }
  return total;
}
