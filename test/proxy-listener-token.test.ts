import http, { type IncomingMessage, type RequestListener, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createApp } from "../src/api/app.js";
import { withProxyFastPath } from "../src/api/proxy-listener.js";
import { createToken, revokeToken } from "../src/auth/tokens.js";
import { createLogger } from "../src/log.js";
import type { RecordingProxy } from "../src/recorder/proxy.js";
import { createTestStore } from "./support/store.js";

/** Token lookups made (each a database query), and whether the database is away. */
const tokenLookups = vi.hoisted(() => ({ count: 0, down: false }));
vi.mock("../src/store/tokens.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../src/store/tokens.js")>();
  return {
    ...actual,
    createTokensStore: (store: Parameters<typeof actual.createTokensStore>[0]) => {
      const tokens = actual.createTokensStore(store);
      return {
        ...tokens,
        async findByHash(hash: string) {
          tokenLookups.count += 1;
          if (tokenLookups.down) {
            // As node-postgres fails a query while the server is away.
            throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
          }
          return tokens.findByHash(hash);
        },
      };
    },
  };
});

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

describe("a token the direct path refuses, answered by the app", () => {
  const store = createTestStore();
  const log = createLogger({ level: "silent" });
  const proxy = {
    async handle(_req: IncomingMessage, res: ServerResponse) {
      res.end("proxied");
      return 200;
    },
  } as unknown as RecordingProxy;
  let server: http.Server;
  let base: string;
  let read = "";

  beforeAll(async () => {
    read = (await createToken(store, { role: "read", name: "read" })).token;
    const app = createApp({ store, log, proxy, proxyRequireToken: true });
    server = http.createServer(
      withProxyFastPath(getRequestListener(app.fetch), { proxy, log, requireToken: store }),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    tokenLookups.down = false;
    await new Promise((resolve) => server.close(resolve));
    store.close();
  });

  const send = async (token: string) => {
    tokenLookups.count = 0;
    const response = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "x-audit-token": token },
      body: "{}",
    });
    const body = (await response.json()) as { error: { code: string } };
    return { status: response.status, code: body.error.code, lookups: tokenLookups.count };
  };

  it("is looked up once: a database that is away is waited for once, not twice", async () => {
    const unknown = "da_ingest_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
    expect(await send(unknown)).toEqual({ status: 401, code: "unauthorized", lookups: 1 });
    expect(await send(read)).toEqual({ status: 403, code: "forbidden", lookups: 1 });
    tokenLookups.down = true;
    expect(await send(unknown)).toEqual({ status: 503, code: "store_unavailable", lookups: 1 });
  });
});
