import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import {
  createRequestCounter,
  createRoundPacer,
  isTraffic,
  MAX_ROUND_PAUSE_MS,
  readRequestCount,
} from "../src/request-pressure.js";

describe("requests first", () => {
  it("pauses after a round as long as it took when requests began during it, else not at all", () => {
    const counter = createRequestCounter();
    const pacer = createRoundPacer(readRequestCount(counter.buffer));
    pacer.roundStarts();
    expect(pacer.pauseAfter(40)).toBe(0);
    pacer.roundStarts();
    counter.mark();
    counter.mark();
    expect(pacer.pauseAfter(40)).toBe(40);
    // A request while no round ran (the verifier idle) is not a reason to pause the next one.
    counter.mark();
    pacer.roundStarts();
    expect(pacer.pauseAfter(40)).toBe(0);
    pacer.roundStarts();
    counter.mark();
    expect(pacer.pauseAfter(60_000)).toBe(MAX_ROUND_PAUSE_MS);
  });

  it("counts proxied and API requests, not health probes or metric scrapes", () => {
    for (const url of [
      "/v1/chat/completions",
      "/audit/job_1",
      "/jobs",
      "/reports/reconciliation?from=1",
    ]) {
      expect(isTraffic(url)).toBe(true);
    }
    for (const url of ["/healthz", "/readyz", "/metrics", "/healthz?probe=lb"]) {
      expect(isTraffic(url)).toBe(false);
    }
  });

  it("lets a background thread read the count the requests' thread keeps", async () => {
    const counter = createRequestCounter();
    for (let i = 0; i < 3; i++) counter.mark();
    // The thread reports what it reads, once at start and once after being told more came.
    const worker = new Worker(
      `const { parentPort, workerData } = require("node:worker_threads");
       const count = new Int32Array(workerData);
       parentPort.postMessage(Atomics.load(count, 0));
       parentPort.on("message", () => { parentPort.postMessage(Atomics.load(count, 0)); parentPort.close(); });`,
      { eval: true, workerData: counter.buffer },
    );
    const seen: number[] = [];
    const done = new Promise<void>((resolve, reject) => {
      worker.on("message", (n: number) => {
        seen.push(n);
        if (seen.length === 1) {
          counter.mark();
          worker.postMessage("again");
        } else resolve();
      });
      worker.on("error", reject);
    });
    await done;
    await worker.terminate();
    expect(seen).toEqual([3, 4]);
  });
});
