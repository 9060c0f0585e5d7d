import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compareProxy } from "../bench/proxy-bench.js";

/** A server answering every request 200 with a small JSON body; `seen` is told of each. */
async function answering(seen: () => void = () => {}): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      seen();
      res.setHeader("content-type", "application/json");
      res.end('{"id":"x","choices":[]}');
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Steady background CPU of the stand-in service, ms per second. */
const steadyMsPerSec = 10;
/** CPU each of its requests costs after it was answered (its jobs API question), and over how long. */
const tailMs = 5;
const tailSpanMs = 500;

describe("the proxy bench's reading of the service's CPU with no request", () => {
  const answered: number[] = [];
  let upstream: { server: Server; url: string };
  let service: { server: Server; url: string };
  const started = performance.now();
  /** The stand-in service's CPU so far: steady work, and each request's work after its answer. */
  const cpuMs = () => {
    const t = performance.now();
    let ms = ((t - started) / 1000) * steadyMsPerSec;
    for (const at of answered)
      ms += (tailMs * Math.min(Math.max(t - at, 0), tailSpanMs)) / tailSpanMs;
    return ms;
  };
  beforeAll(async () => {
    upstream = await answering();
    service = await answering(() => answered.push(performance.now()));
  });
  afterAll(() => {
    upstream.server.close();
    service.server.close();
  });

  it("leaves out the work the warm-up's own requests leave behind", async () => {
    const row = await compareProxy(
      {
        directBaseUrl: upstream.url,
        bareUrl: upstream.url,
        serviceUrl: service.url,
        apiKeys: ["k"],
      },
      "stub, 1 worker",
      false,
      1,
      3,
      {
        bareCpuMs: async () => 0,
        service: async () => ({ cpuMs: cpuMs(), loopP99Ms: 0, loopMaxMs: 0 }),
      },
    );
    // Read from the warm-up's end, the 40 warm-up requests' 200 ms of work after their answers
    // came on top of the 10 ms a second the service spends with no request at all.
    expect(row.background?.cpuMsPerSec).toBeGreaterThan(steadyMsPerSec - 1);
    expect(row.background?.cpuMsPerSec).toBeLessThan(steadyMsPerSec + 2);
  });
});
