import http, { type IncomingMessage, type RequestListener, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withProxyFastPath } from "../src/api/proxy-listener.js";
import { createToken, revokeToken } from "../src/auth/tokens.js";
import { createLogger } from "../src/log.js";
import type { RecordingProxy } from "../src/recorder/proxy.js";
import { createTestStore } from "./support/store.js";

/**
 * PROXY_REQUIRE_TOKEN on the direct `/v1/*` path: a request with a live token that may ingest
 * goes straight to the proxy; every other one goes to the app, whose middleware answers it
 * (401, 403, a NUL byte's 400) as it did when every such request went through the app.
 */
describe("the proxy's direct path with PROXY_REQUIRE_TOKEN", () => {
  const store = createTestStore();
  const lines: string[] = [];
  const log = createLogger({ level: "debug" }, { write: (line: string) => lines.push(line) });
  const seen: string[] = [];
  const proxy = {
    async handle(req: IncomingMessage, res: ServerResponse) {
      seen.push(`proxy ${req.url}`);
      res.end("proxied");
      return 200;
    },
  } as unknown as RecordingProxy;
  const app: RequestListener = (req, res) => {
    seen.push(`app ${req.url}`);
    res.end("app");
  };
  let server: http.Server;
  let base: string;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    for (const role of ["ingest", "admin", "read"] as const) {
      tokens[role] = (await createToken(store, { role, name: role })).token;
    }
    const revoked = await createToken(store, { role: "ingest", name: "gone" });
    await revokeToken(store, revoked.id);
    tokens.revoked = revoked.token;
    server = http.createServer(withProxyFastPath(app, { proxy, log, requireToken: store }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    store.close();
  });

  const send = async (path: string, token?: string) => {
    seen.length = 0;
    const response = await fetch(`${base}${path}`, {
      method: "POST",
      headers: token === undefined ? {} : { "x-audit-token": token },
      body: "{}",
    });
    return { body: await response.text(), seen: [...seen] };
  };

  it("sends a request whose token may ingest straight to the proxy", async () => {
    expect(await send("/v1/chat/completions", tokens.ingest)).toEqual({
      body: "proxied",
      seen: ["proxy /v1/chat/completions"],
    });
    expect(await send("/v1/chat/completions", ` ${tokens.admin} `)).toEqual({
      body: "proxied",
      seen: ["proxy /v1/chat/completions"],
    });
    expect(lines.some((l) => l.includes('"msg":"authenticated"'))).toBe(true);
  });

  it("leaves every other request to the app, whose middleware answers it", async () => {
    for (const token of [undefined, "", tokens.read, tokens.revoked, "da_not_a_token"]) {
      expect(await send("/v1/chat/completions", token), String(token)).toEqual({
        body: "app",
        seen: ["app /v1/chat/completions"],
      });
    }
    expect(await send("/v1/chat%00/completions", tokens.ingest)).toEqual({
      body: "app",
      seen: ["app /v1/chat%00/completions"],
    });
    expect(await send("/jobs", tokens.ingest)).toEqual({ body: "app", seen: ["app /jobs"] });
  });
});
