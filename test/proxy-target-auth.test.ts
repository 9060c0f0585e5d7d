import http from "node:http";
import net from "node:net";
import { getRequestListener } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/api/app.js";
import { withProxyFastPath } from "../src/api/proxy-listener.js";
import { createToken } from "../src/auth/tokens.js";
import { createLogger } from "../src/log.js";
import { createRecordingProxy, type RecordingProxy } from "../src/recorder/proxy.js";
import { capturedLogger, listen } from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

const key = "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345";

/** An upstream answering `{}` to every request, noting each request's target in `paths`. */
function upstreamNoting(paths: string[]): http.Server {
  return http.createServer(async (req, res) => {
    paths.push(req.url ?? "");
    for await (const _ of req) {
      // drain the body
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end("{}");
  });
}

/**
 * What reaches the proxy's upstream for a request target in absolute form, and how a request
 * whose credentials are given twice is answered: with and without PROXY_REQUIRE_TOKEN.
 */
describe("the proxy's request target and credentials", () => {
  const store = createTestStore();
  const log = createLogger({ level: "silent" });
  const paths: string[] = [];
  const upstream = upstreamNoting(paths);
  let upstreamHost = "";
  let proxy: RecordingProxy;
  const servers: { url: string; close(): Promise<void> }[] = [];
  const bases: Record<"open" | "token", { port: number }> = {
    open: { port: 0 },
    token: { port: 0 },
  };
  let token = "";

  beforeAll(async () => {
    const up = await listen(upstream);
    servers.push(up);
    upstreamHost = new URL(up.url).host;
    token = (await createToken(store, { role: "ingest", name: "proxy" })).token;
    proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${up.url}/v1` });
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
      bases[kind].port = Number(new URL(served.url).port);
    }
  });
  afterAll(async () => {
    await proxy.close();
    for (const server of servers) await server.close();
    store.close();
  });

  /** Sends one request as written, on its own connection; resolves with the status and body. */
  const raw = (port: number, head: string[]) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1");
      let text = "";
      socket.on("data", (chunk: Buffer) => {
        text += chunk.toString();
      });
      socket.on("error", reject);
      socket.on("end", () => {
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
        resolve({ status, body: text.slice(text.indexOf("\r\n\r\n") + 4) });
      });
      const body = "{}";
      // Written, not ended: the server drops a connection its client half-closed.
      socket.write(
        [
          ...head,
          "content-type: application/json",
          `content-length: ${body.length}`,
          "connection: close",
          "",
          body,
        ].join("\r\n"),
      );
    });
  const credentials = (kind: "open" | "token") =>
    kind === "token"
      ? [`authorization: Bearer ${key}`, `x-audit-token: ${token}`]
      : [`authorization: Bearer ${key}`];

  it("forwards the path of an absolute-form target naming its upstream, and refuses another host", async () => {
    for (const kind of ["open", "token"] as const) {
      const { port } = bases[kind];
      paths.length = 0;
      const sent = await raw(port, [
        `POST http://${upstreamHost}/v1/chat/completions?x=1 HTTP/1.1`,
        `host: ${upstreamHost}`,
        ...credentials(kind),
      ]);
      expect(sent.status, kind).toBe(200);
      expect(paths, kind).toEqual(["/v1/chat/completions?x=1"]);
      paths.length = 0;
      const other = await raw(port, [
        "POST http://api.other.example/v1/chat/completions HTTP/1.1",
        "host: api.other.example",
        ...credentials(kind),
      ]);
      expect(other.status, kind).toBe(400);
      const error = JSON.parse(other.body).error;
      expect(error.code, kind).toBe("invalid_target");
      expect(error.message, kind).toContain("http://api.other.example/v1/chat/completions");
      expect(other.body).not.toContain(key);
      expect(paths, kind).toEqual([]);
    }
  });

  it("says which credential header was given twice, rather than that none was given", async () => {
    const other = "da_ingest_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
    for (const kind of ["open", "token"] as const) {
      const { port } = bases[kind];
      const jobs = await raw(port, [
        "POST /jobs HTTP/1.1",
        "host: audit",
        `authorization: Bearer ${token}`,
        `authorization: Bearer ${other}`,
      ]);
      expect(jobs.status, kind).toBe(400);
      expect(JSON.parse(jobs.body).error, kind).toMatchObject({
        code: "bad_request",
        header: "Authorization",
      });
    }
    paths.length = 0;
    const proxied = await raw(bases.token.port, [
      "POST /v1/chat/completions HTTP/1.1",
      "host: audit",
      `authorization: Bearer ${key}`,
      `x-audit-token: ${token}`,
      `x-audit-token: ${other}`,
    ]);
    expect(proxied.status).toBe(400);
    const error = JSON.parse(proxied.body).error;
    expect(error).toMatchObject({ code: "bad_request", header: "x-audit-token" });
    expect(error.message).toContain("given 2 times");
    expect(paths).toEqual([]);
  });

  it("does not echo the user and password of an absolute-form target back in its 400", async () => {
    const secret = "s3cr3t-Pa55word";
    for (const kind of ["open", "token"] as const) {
      const { port } = bases[kind];
      paths.length = 0;
      for (const target of [
        `http://alice:${secret}@${upstreamHost}/v1/chat/completions`,
        `http://alice:${secret}@api.other.example/v1/chat/completions?x=1`,
        `https://alice:p@${secret}@api.other.example/v1/x`,
        `https://alice:pa/${secret}@api.other.example/v1/x`,
      ]) {
        const sent = await raw(port, [`POST ${target} HTTP/1.1`, "host: x", ...credentials(kind)]);
        expect(sent.status, `${kind} ${target}`).toBe(400);
        expect(sent.body, `${kind} ${target}`).not.toContain(secret);
        expect(sent.body, `${kind} ${target}`).not.toContain("alice");
      }
      expect(paths, kind).toEqual([]);
    }
  });

  it("says an absolute-form target was refused for its userinfo, not as another API's path", async () => {
    const secret = "s3cr3t-Pa55word";
    const { port } = bases.open;
    paths.length = 0;
    for (const target of [
      `http://alice:${secret}@${upstreamHost}/v1/chat/completions`,
      `https://alice:p@${secret}@api.other.example/v1/x`,
    ]) {
      const sent = await raw(port, [`POST ${target} HTTP/1.1`, "host: x", ...credentials("open")]);
      expect(sent.status, target).toBe(400);
      const { message } = JSON.parse(sent.body).error;
      expect(message, target).toContain("userinfo");
      expect(message, target).not.toContain("is not a /v1/ path");
      expect(message, target).not.toContain(secret);
      expect(message, target).not.toContain("alice");
    }
    // A target without userinfo keeps its own reason.
    const other = await raw(port, [
      "POST http://api.other.example/v1/x HTTP/1.1",
      "host: x",
      ...credentials("open"),
    ]);
    expect(JSON.parse(other.body).error.message).toContain("is not a /v1/ path");
    expect(paths).toEqual([]);
  });
});

describe("a credential header given twice to the proxy", () => {
  it("cuts each key of it from what the upstream echoes into a log line", async () => {
    const first = "dcntrl_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const second = "dcntrl_live_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    const store = createTestStore();
    const { log, lines } = capturedLogger();
    // An upstream that names its job with the last key it was sent: no recordable job id, so
    // the proxy logs what it named.
    const upstream = http.createServer(async (req, res) => {
      for await (const _ of req) {
        // drain the body
      }
      const sent = String(req.headers["x-api-key"] ?? "");
      res.writeHead(200, {
        "content-type": "application/json",
        "x-decentral-job-id": `job ${sent.split(", ").pop()}`,
      });
      res.end("{}");
    });
    const up = await listen(upstream);
    const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${up.url}/v1` });
    const served = await listen(http.createServer((req, res) => void proxy.handle(req, res)));
    try {
      const answer = await new Promise<number>((resolve, reject) => {
        const socket = net.connect(Number(new URL(served.url).port), "127.0.0.1");
        let text = "";
        socket.on("data", (chunk: Buffer) => {
          text += chunk.toString();
        });
        socket.on("error", reject);
        socket.on("end", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
        socket.write(
          [
            "POST /v1/chat/completions HTTP/1.1",
            "host: audit",
            `x-api-key: ${first}`,
            `x-api-key: ${second}`,
            "content-type: application/json",
            "content-length: 2",
            "connection: close",
            "",
            "{}",
          ].join("\r\n"),
        );
      });
      expect(answer).toBe(502);
      await proxy.idle();
      const logged = lines.join("\n");
      expect(logged).toContain("no recordable job id");
      expect(logged).not.toContain(first);
      expect(logged).not.toContain(second);
    } finally {
      await proxy.close();
      await served.close();
      await up.close();
      store.close();
    }
  });
});

// `POST http://api.example.:443/v1/...` (the upstream's name, fully qualified) was refused 400
// invalid_target as another host, where the name without its dot was forwarded.
describe("an absolute-form target naming the upstream with a trailing dot", () => {
  it("is forwarded as the upstream's own", async () => {
    const store = createTestStore();
    const log = createLogger({ level: "silent" });
    const paths: string[] = [];
    const upstream = upstreamNoting(paths);
    const up = await listen(upstream);
    const port = new URL(up.url).port;
    const proxy = createRecordingProxy({
      store,
      log,
      upstreamBaseUrl: `http://localhost:${port}/v1`,
    });
    const served = await listen(http.createServer((req, res) => void proxy.handle(req, res)));
    const send = (target: string) =>
      new Promise<number>((resolve, reject) => {
        const socket = net.connect(Number(new URL(served.url).port), "127.0.0.1");
        let text = "";
        socket.on("data", (chunk: Buffer) => {
          text += chunk.toString();
        });
        socket.on("error", reject);
        socket.on("end", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
        socket.write(
          [
            `POST ${target} HTTP/1.1`,
            "host: audit",
            `authorization: Bearer ${key}`,
            "content-type: application/json",
            "content-length: 2",
            "connection: close",
            "",
            "{}",
          ].join("\r\n"),
        );
      });
    try {
      expect(await send(`http://localhost.:${port}/v1/models`)).toBe(200);
      expect(await send(`http://localhost:${port}/v1/models`)).toBe(200);
      expect(paths).toEqual(["/v1/models", "/v1/models"]);
      expect(await send(`http://localhostx:${port}/v1/models`)).toBe(400);
    } finally {
      await proxy.close();
      await served.close();
      await up.close();
      store.close();
    }
  });
});
