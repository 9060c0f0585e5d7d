import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createJobsApiClient } from "../src/recorder/jobs-api.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import { capturedLogger, jobId, serveApp } from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

/**
 * A Decentral base URL naming an IPv6 address (`http://[::1]:8080/v1`, a node on an IPv6-only
 * network): node:http looked the URL's bracketed host up as a name, and every proxied job was a
 * 502 and every jobs API call failed, while the Host header each sent was right.
 */
describe("a Decentral base URL naming an IPv6 address", () => {
  const hosts: (string | undefined)[] = [];
  let server: http.Server;
  let base = "";
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      hosts.push(req.headers.host);
      res.writeHead(200, { "content-type": "application/json" });
      if (req.url?.includes("/jobs/")) res.end(JSON.stringify({ status: "settled" }));
      else
        res.end(JSON.stringify({ choices: [{ message: { role: "assistant", content: "Hi." } }] }));
    });
    server.listen(0, "::1");
    await once(server, "listening");
    base = `http://[::1]:${(server.address() as AddressInfo).port}`;
  });
  afterAll(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );

  it("is asked by the jobs API client, with the address bracketed in its Host header", async () => {
    hosts.length = 0;
    const answer = await createJobsApiClient(`${base}/v1`)(jobId(), "Bearer k");
    expect(answer).toMatchObject({ status: "settled" });
    expect(hosts).toEqual([base.slice("http://".length)]);
  });

  it("is what the proxy forwards to", async () => {
    hosts.length = 0;
    const store = createTestStore();
    const { log } = capturedLogger();
    const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${base}/v1` });
    const app = await serveApp({ store, log, proxy });
    try {
      const response = await fetch(`${app.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: "Bearer k", "content-type": "application/json" },
        body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "Hi" }] }),
      });
      expect(response.status).toBe(200);
      await response.text();
      expect(hosts).toEqual([base.slice("http://".length)]);
    } finally {
      await app.close();
      await proxy.close?.();
      store.close();
    }
  });
});
