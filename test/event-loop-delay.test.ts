import { describe, expect, it } from "vitest";
import { createMetrics } from "../src/api/metrics.js";
import { createClusterMetrics, type WorkerMetrics } from "../src/serve-cluster-metrics.js";
import { createTestStore } from "./support/store.js";

/** The histogram's series in a scrape's text: bucket counts by `le`, sum and count. */
function delayOf(text: string) {
  const name = "decentral_audit_event_loop_delay_seconds";
  const buckets = new Map(
    [...text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, "gm"))].map((m) => [
      m[1],
      Number(m[2]),
    ]),
  );
  const sum = Number(new RegExp(`^${name}_sum (\\S+)$`, "m").exec(text)?.[1]);
  const count = Number(new RegExp(`^${name}_count (\\S+)$`, "m").exec(text)?.[1]);
  return { buckets, sum, count };
}

/** Keeps the event loop busy for `ms`, as a long synchronous task does. */
function block(ms: number) {
  const until = performance.now() + ms;
  while (performance.now() < until) {}
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// /metrics said nothing of how late the event loop ran, the wait every request has before any
// of it is read: a service slow under load could not be told from a slow upstream.
describe("the event loop's delay in /metrics", () => {
  it("counts a blocked loop in its bucket, cumulative and never going back", async () => {
    const metrics = createMetrics({ store: createTestStore() });
    const before = delayOf(await metrics.registry.metrics());
    await wait(100);
    block(300);
    await wait(100);
    const after = delayOf(await metrics.registry.metrics());
    expect(after.count).toBeGreaterThan(before.count);
    // The 300 ms the loop was held is one sample of at least 0.25 s.
    const late = (d: typeof after) => (d.buckets.get("+Inf") ?? 0) - (d.buckets.get("0.25") ?? 0);
    expect(late(after)).toBeGreaterThanOrEqual(late(before) + 1);
    expect(after.sum - before.sum).toBeGreaterThanOrEqual(0.25);
    expect(after.buckets.get("+Inf")).toBe(after.count);
    // Buckets are cumulative.
    const counts = [...after.buckets.values()];
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    await wait(50);
    const again = delayOf(await metrics.registry.metrics());
    expect(again.count).toBeGreaterThanOrEqual(after.count);
    expect(again.sum).toBeGreaterThanOrEqual(after.sum);
  });

  // A worker's counters are read every second: Node's monitor, reset at each read, forgot when
  // its timer last ticked, so a stall that began just after a read went uncounted.
  it("counts a stall that begins just after a read", async () => {
    const metrics = createMetrics({ store: createTestStore() });
    await wait(100);
    const before = delayOf(await metrics.registry.metrics());
    block(300);
    await wait(100);
    const after = delayOf(await metrics.registry.metrics());
    const late = (d: typeof after) => (d.buckets.get("+Inf") ?? 0) - (d.buckets.get("0.25") ?? 0);
    expect(late(after)).toBeGreaterThanOrEqual(late(before) + 1);
    expect(after.sum - before.sum).toBeGreaterThanOrEqual(0.25);
  });

  it("is summed across the workers of serve --workers N, as a histogram", async () => {
    const a = createMetrics({ store: createTestStore() });
    const b = createMetrics({ store: createTestStore() });
    await wait(60);
    const seen: number[] = [];
    const collect = (metrics: typeof a) => async () => {
      const json = (await metrics.registry.getMetricsAsJSON()) as WorkerMetrics;
      const delay = json.find((m) => m.name === "decentral_audit_event_loop_delay_seconds");
      expect(delay?.type).toBe("histogram");
      const count = delay?.values.find(
        (v) => (v as { metricName?: string }).metricName?.endsWith("_count") ?? false,
      )?.value;
      seen.push(Number(count));
      return json;
    };
    const cluster = createClusterMetrics();
    const text = await cluster.scrape([
      { id: 1, collect: collect(a) },
      { id: 2, collect: collect(b) },
    ]);
    expect(seen[0]).toBeGreaterThan(0);
    expect(delayOf(text).count).toBe((seen[0] ?? 0) + (seen[1] ?? 0));
  });
});
