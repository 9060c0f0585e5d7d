import { monitorEventLoopDelay } from "node:perf_hooks";
import { expect, it } from "vitest";
import { LOOP_SAMPLE_MS, loopDelayMs } from "../src/serve-cluster.js";

/** Median of how late each of a chain of `LOOP_SAMPLE_MS` timers fired, over `ms`, in ms. */
async function timerLateness(ms: number): Promise<number> {
  const late: number[] = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const asked = performance.now();
    await new Promise((resolve) => setTimeout(resolve, LOOP_SAMPLE_MS));
    late.push(performance.now() - asked - LOOP_SAMPLE_MS);
  }
  late.sort((a, b) => a - b);
  return late[Math.floor(late.length / 2)] ?? 0;
}

// The bench and the workers' stats report the event loop's delay: what a request waits behind
// other work, not the sampling timer's own interval.
it("reads an idle event loop as no delay, and a 30 ms stall as one", async () => {
  const loop = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
  loop.enable();
  // Idle, but for the CPU a loaded host gives the process late: that wait is a request's too,
  // and is measured beside it (an idle loop read 10 ms, its timer's interval, on a load of 17).
  const hostLateMs = await timerLateness(300);
  expect(loopDelayMs(loop.percentile(50))).toBeLessThan(3 + hostLateMs);
  const until = Date.now() + 30;
  while (Date.now() < until) {
    // a synchronous stall, as a long SQLite statement would be
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
  loop.disable();
  expect(loopDelayMs(loop.max)).toBeGreaterThanOrEqual(20);
});
