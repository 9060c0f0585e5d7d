import { createHistogram, type RecordableHistogram } from "node:perf_hooks";

/** The interval of the timer that samples the event loop's delay, in ms. */
export const LOOP_SAMPLE_MS = 10;

/**
 * A value of `monitorEventLoopDelay`'s histogram (ns) as the delay it measures, in ms: the
 * histogram holds the time between two ticks of its timer, the timer's own interval included
 * (an idle loop reads 10 ms), so the interval is taken off.
 */
export function loopDelayMs(histogramNs: number): number {
  return Math.max(0, histogramNs / 1e6 - LOOP_SAMPLE_MS);
}

/** The event-loop delay of a stretch of time, in ms. */
export interface LoopDelay {
  p99Ms: number;
  maxMs: number;
}

/**
 * This process's event-loop delay since the last call, sampled from the first call on (a 10 ms
 * timer): a process nobody asks never pays for it, and the first call reads 0.
 *
 * Not `monitorEventLoopDelay`: its `reset()` forgets when its timer last ticked, so the first
 * tick after a reading records nothing, and a stall that began just after a reading (before that
 * tick) was never counted. Here the time of the last tick outlives the reading.
 */
export function loopDelaySampler(): () => LoopDelay {
  let histogram: RecordableHistogram | undefined;
  let lastTick = 0;
  const tick = () => {
    const now = performance.now();
    // In ns, as `monitorEventLoopDelay` records them: the time between two ticks.
    histogram?.record(Math.max(1, Math.round((now - lastTick) * 1e6)));
    lastTick = now;
  };
  return () => {
    if (!histogram) {
      histogram = createHistogram();
      lastTick = performance.now();
      setInterval(tick, LOOP_SAMPLE_MS).unref();
    }
    // An empty histogram reads its percentiles as 0 and its max as 0: no delay.
    const delay = {
      p99Ms: histogram.count === 0 ? 0 : loopDelayMs(histogram.percentile(99)),
      maxMs: histogram.count === 0 ? 0 : loopDelayMs(histogram.max),
    };
    histogram.reset();
    return delay;
  };
}
