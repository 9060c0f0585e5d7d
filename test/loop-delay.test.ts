import { monitorEventLoopDelay } from "node:perf_hooks";
import { expect, it } from "vitest";
import { LOOP_SAMPLE_MS, loopDelayMs } from "../src/serve-cluster.js";

// The bench and the workers' stats report the event loop's delay: what a request waits behind
// other work, not the sampling timer's own interval.
it("reads an idle event loop as no delay, and a 30 ms stall as one", async () => {
  const loop = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
  loop.enable();
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(loopDelayMs(loop.percentile(50))).toBeLessThan(3);
  const until = Date.now() + 30;
  while (Date.now() < until) {
    // a synchronous stall, as a long SQLite statement would be
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
  loop.disable();
  expect(loopDelayMs(loop.max)).toBeGreaterThanOrEqual(20);
});
