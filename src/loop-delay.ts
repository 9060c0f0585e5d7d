import { createHistogram, type RecordableHistogram } from "node:perf_hooks";

/** The interval of the timer that samples the event loop's delay for `loopDelaySampler`, in ms. */
export const LOOP_SAMPLE_MS = 10;

/**
 * The clock and the timer, taken when this module loads: a test's fake timers, installed later,
 * must neither stop the timer nor move its clock.
 */
const now = performance.now.bind(performance);
const every = globalThis.setInterval;

/**
 * Calls `record` at every tick of a timer due every `intervalMs` with how late the tick ran, in
 * ms: the time since the tick before, less the interval (0 for a loop nothing held). The time of
 * the last tick is kept here, whatever `record` does with the values.
 *
 * Not Node's `monitorEventLoopDelay`: read stretch by stretch it has to be `reset()`, and a
 * reset forgets when its timer last ticked, so the first tick after a reading recorded nothing
 * and a stall that began just after a reading was never counted.
 */
export function watchLoopDelay(intervalMs: number, record: (lateMs: number) => void): void {
  let lastTick = now();
  every(() => {
    const tick = now();
    record(Math.max(0, tick - lastTick - intervalMs));
    lastTick = tick;
  }, intervalMs).unref();
}

/** The event-loop delay of a stretch of time, in ms. */
export interface LoopDelay {
  p99Ms: number;
  maxMs: number;
}

/**
 * This process's event-loop delay since the last call, sampled every `LOOP_SAMPLE_MS` from the
 * first call on: a process nobody asks never pays for it, and the first call reads 0.
 */
export function loopDelaySampler(): () => LoopDelay {
  let histogram: RecordableHistogram | undefined;
  return () => {
    if (!histogram) {
      const h = createHistogram();
      // In ns, the histogram's unit, at least 1 (it takes no 0).
      watchLoopDelay(LOOP_SAMPLE_MS, (lateMs) => h.record(Math.max(1, Math.round(lateMs * 1e6))));
      histogram = h;
    }
    const delay =
      histogram.count === 0
        ? { p99Ms: 0, maxMs: 0 }
        : { p99Ms: histogram.percentile(99) / 1e6, maxMs: histogram.max / 1e6 };
    histogram.reset();
    return delay;
  };
}
