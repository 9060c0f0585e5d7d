import { Counter, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createClusterMetrics, type WorkerMetrics } from "../src/serve-cluster-metrics.js";

/** One worker's registry with its count of proxied requests. */
function worker() {
  const registry = new Registry();
  const proxied = new Counter({ name: "proxied_total", help: "requests", registers: [registry] });
  return {
    proxied,
    collect: async () => (await registry.getMetricsAsJSON()) as WorkerMetrics,
  };
}

const total = (text: string) => Number(/^proxied_total (\d+)/m.exec(text)?.[1]);

describe("the cluster's metrics in the primary", () => {
  it("never goes back when a worker dies while a scrape waits for another", async () => {
    const metrics = createClusterMetrics();
    const a = worker();
    const b = worker();
    a.proxied.inc(100);
    b.proxied.inc(10);
    const seen = [
      total(
        await metrics.scrape([
          { id: 1, collect: a.collect },
          { id: 2, collect: b.collect },
        ]),
      ),
    ];
    a.proxied.inc(100);
    b.proxied.inc(5);
    // b answers late; a answers at once and dies before the scrape ends.
    let release!: () => void;
    const late = new Promise<void>((resolve) => {
      release = resolve;
    });
    const scraping = metrics.scrape([
      { id: 1, collect: a.collect },
      { id: 2, collect: () => late.then(b.collect) },
    ]);
    await new Promise((r) => setTimeout(r, 10));
    await metrics.retire(1);
    release();
    seen.push(total(await scraping));
    seen.push(total(await metrics.scrape([{ id: 2, collect: b.collect }])));
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThanOrEqual(seen[i - 1]!);
    expect(seen[0]).toBe(110);
  });
});
