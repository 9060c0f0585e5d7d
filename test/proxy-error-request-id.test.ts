import http from "node:http";
import { getRequestListener } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/api/app.js";
import { withProxyFastPath } from "../src/api/proxy-listener.js";
import { createToken } from "../src/auth/tokens.js";
import { createLogger } from "../src/log.js";
import { createRecordingProxy, type RecordingProxy } from "../src/recorder/proxy.js";
import { listen } from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

const key = "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345";

/**
 * The proxy's own refusals (a request it does not forward, an upstream it cannot reach) told the
 * caller no request id, where every error of the audit API carries one in its body and in
 * `x-request-id`: a 502 could not be found in the log by what the client saw. They keep the
 * OpenAI shape the SDKs read, with `requestId` beside `error`.
 */
describe("an error the proxy answers itself", () => {
  const store = createTestStore();
  const log = createLogger({ level: "silent" });
  let proxy: RecordingProxy;
  const servers: { url: string; close(): Promise<void> }[] = [];
  const bases = { open: "", token: "" };
  let token = "";

  beforeAll(async () => {
    // An upstream that is not there: a port that was listened on and closed.
    const gone = await listen(http.createServer());
    const upstreamUrl = gone.url;
    await gone.close();
    token = (await createToken(store, { role: "ingest", name: "proxy" })).token;
    proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${upstreamUrl}/v1` });
    for (const kind of ["open", "token"] as const) {
      const requireToken = kind === "token";
      const app = createApp({ store, log, proxy, proxyRequireToken: requireToken });
      const listener = withProxyFastPath(getRequestListener(app.fetch), {
        proxy,
        log,
        ...(requireToken ? { requireToken: store } : {}),
      });
      const served = await listen(http.createServer(listener));
      servers.push(served);
      bases[kind] = served.url;
    }
  });
  afterAll(async () => {
    await proxy.close();
    for (const server of servers) await server.close();
    store.close();
  });

  /** Sends a request as written (no URL normalising, which would resolve a `..`). */
  const send = (kind: "open" | "token", path: string, requestId?: string) =>
    new Promise<{
      status: number;
      header: string | undefined;
      body: { error: Record<string, unknown>; requestId?: string };
    }>((resolve, reject) => {
      const { hostname, port } = new URL(bases[kind]);
      const request = http.request({
        hostname,
        port,
        path,
        method: "POST",
        headers: {
          authorization: `Bearer ${key}`,
          "content-type": "application/json",
          ...(kind === "token" ? { "x-audit-token": token } : {}),
          ...(requestId === undefined ? {} : { "x-request-id": requestId }),
        },
      });
      request.on("error", reject);
      request.on("response", async (response) => {
        let text = "";
        for await (const chunk of response) text += chunk;
        const header = response.headers["x-request-id"];
        resolve({
          status: response.statusCode ?? 0,
          header: typeof header === "string" ? header : undefined,
          body: JSON.parse(text),
        });
      });
      request.end("{}");
    });

  it("carries the request id in its body and its x-request-id header, on either path", async () => {
    for (const kind of ["open", "token"] as const) {
      // A path with a `..` segment is refused before anything is forwarded.
      const refused = await send(kind, "/v1/a/../chat/completions", "trace-7");
      expect(refused.status, kind).toBe(400);
      expect(refused.body.error, kind).toMatchObject({
        code: "invalid_path",
        type: "invalid_request_error",
      });
      expect(refused.body.requestId, kind).toBe("trace-7");
      expect(refused.header, kind).toBe("trace-7");

      // The upstream cannot be reached: 502, under a fresh id when the caller sent none.
      const unreachable = await send(kind, "/v1/chat/completions");
      expect(unreachable.status, kind).toBe(502);
      expect(unreachable.body.error.code, kind).toBe("upstream_unavailable");
      expect(unreachable.body.requestId, kind).toMatch(/^[0-9a-f-]{36}$/);
      expect(unreachable.header, kind).toBe(unreachable.body.requestId);
    }
  });
});
