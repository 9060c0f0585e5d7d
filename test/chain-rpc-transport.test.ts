import http from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { createRpcPool } from "../src/chain/rpc-pool.js";
import { createNodeHttpPost, MAX_REPLY_BYTES } from "../src/chain/rpc-transport.js";

// The pool's own HTTP (node:http, keep-alive), against real servers: what a slow, cut-off or
// rate-limiting endpoint looks like to the pool.

const servers: http.Server[] = [];
const closers: (() => void)[] = [];

afterEach(async () => {
  for (const close of closers.splice(0)) close();
  await Promise.all(
    servers.splice(0).map(
      (s) =>
        new Promise<void>((resolve) => {
          s.closeAllConnections();
          s.close(() => resolve());
        }),
    ),
  );
});

async function serve(handler: http.RequestListener): Promise<{ url: string; server: http.Server }> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

function newPost(options: { idleSocketMs?: number } = {}) {
  const transport = createNodeHttpPost(options);
  closers.push(transport.close);
  return transport.post;
}

const never = new AbortController().signal;

describe("the pool's HTTP transport", () => {
  it("posts the JSON body to the URL's path and query, and reads the reply whole", async () => {
    const seen: { path?: string; body?: string; type?: string; auth?: string } = {};
    const { url } = await serve((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        Object.assign(seen, {
          path: req.url,
          body,
          type: req.headers["content-type"],
          auth: req.headers.authorization,
        });
        res.writeHead(200, { "content-type": "application/json" });
        // Written in pieces: the reply is what all of them say.
        res.write('{"jsonrpc":"2.0","id":1,');
        setTimeout(() => res.end('"result":12345678901234567890}'), 20);
      });
    });
    const post = newPost();
    const withKey = `${url.replace("http://", "http://user:p%40ss@")}/rpc/v1?api-key=k`;
    const reply = await post(withKey, '{"method":"getSlot"}', 2000, never);
    expect(reply).toEqual({
      status: 200,
      retryAfterMs: null,
      text: '{"jsonrpc":"2.0","id":1,"result":12345678901234567890}',
    });
    expect(seen).toEqual({
      path: "/rpc/v1?api-key=k",
      body: '{"method":"getSlot"}',
      type: "application/json",
      auth: `Basic ${Buffer.from("user:p@ss").toString("base64")}`,
    });
  });

  it("keeps one socket for requests one after another, and close() ends it", async () => {
    let connections = 0;
    let open = 0;
    const { url, server } = await serve((req, res) => {
      req.resume();
      req.on("end", () => res.end('{"jsonrpc":"2.0","id":1,"result":1}'));
    });
    server.on("connection", (socket) => {
      connections++;
      open++;
      socket.on("close", () => {
        open--;
      });
    });
    const transport = createNodeHttpPost();
    for (let i = 0; i < 5; i++) {
      const reply = await transport.post(url, "{}", 2000, never);
      expect(reply).toMatchObject({ status: 200 });
    }
    expect(connections).toBe(1);
    transport.close();
    await expect.poll(() => open, { timeout: 2000 }).toBe(0);
  });

  it("asks for gzip and reads a gzipped reply; refuses an encoding it did not ask for", async () => {
    const text = `{"jsonrpc":"2.0","id":1,"result":[${'"x",'.repeat(2000)}"y"]}`;
    let asked: string | undefined;
    const { url } = await serve((req, res) => {
      req.resume();
      asked = req.headers["accept-encoding"];
      if (req.url === "/br") {
        res.writeHead(200, { "content-encoding": "br" });
        res.end("not brotli");
        return;
      }
      res.writeHead(200, { "content-encoding": "gzip", "content-type": "application/json" });
      res.end(gzipSync(text));
    });
    const post = newPost();
    expect(await post(url, "{}", 2000, never)).toEqual({ status: 200, retryAfterMs: null, text });
    expect(asked).toBe("gzip");
    expect(await post(`${url}/br`, "{}", 2000, never)).toEqual({
      error: "reply in an encoding not asked for (br)",
    });
  });

  it("refuses a reply beyond its size limit, zipped or not, and the process lives on", async () => {
    const bomb = gzipSync(Buffer.alloc(MAX_REPLY_BYTES + 1024 * 1024, 0x20));
    const { url } = await serve((req, res) => {
      req.resume();
      if (req.url === "/gzip") {
        res.writeHead(200, { "content-encoding": "gzip" });
        res.end(bomb);
        return;
      }
      res.writeHead(200);
      const piece = Buffer.alloc(1024 * 1024, 0x20);
      let sent = 0;
      const more = () => {
        while (sent <= MAX_REPLY_BYTES && res.write(piece)) sent += piece.length;
        if (sent > MAX_REPLY_BYTES) res.end();
        else res.once("drain", more);
      };
      more();
    });
    const post = newPost();
    expect(await post(`${url}/gzip`, "{}", 10_000, never)).toEqual({
      error: expect.stringMatching(/^reply could not be unzipped/),
    });
    expect(await post(`${url}/plain`, "{}", 10_000, never)).toEqual({
      error: `reply larger than ${MAX_REPLY_BYTES} bytes`,
    });
  });

  it("closes a kept socket left idle, so a middlebox that forgot it cannot eat a request", async () => {
    let connections = 0;
    const { url, server } = await serve((req, res) => {
      req.resume();
      req.on("end", () => res.end('{"jsonrpc":"2.0","id":1,"result":1}'));
    });
    server.on("connection", () => {
      connections++;
    });
    const post = newPost({ idleSocketMs: 200 });
    await post(url, "{}", 2000, never);
    await post(url, "{}", 2000, never);
    expect(connections).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await post(url, "{}", 2000, never);
    expect(connections).toBe(2);
  });

  it("names a redirect it does not follow", async () => {
    const { url } = await serve((req, res) => {
      req.resume();
      res.writeHead(308, { location: "https://elsewhere.example/" });
      res.end();
    });
    const pool = createRpcPool({
      endpoints: [{ url, rateLimitPerSec: 100, concurrency: 1, timeoutMs: 2000 }],
      maxAttempts: 1,
    });
    try {
      await expect(pool.getSlot("finalized")).rejects.toMatchObject({
        message: expect.stringContaining("HTTP 308: a redirect, not followed"),
      });
    } finally {
      await pool.close();
    }
  });

  it("gives the status and Retry-After of a 429", async () => {
    const { url } = await serve((req, res) => {
      req.resume();
      res.writeHead(429, { "retry-after": "3" });
      res.end("slow down");
    });
    const reply = await newPost()(url, "{}", 2000, never);
    expect(reply).toEqual({ status: 429, retryAfterMs: 3000, text: "slow down" });
  });

  it("times out an endpoint that sends its headers and then nothing", async () => {
    const { url } = await serve((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"jsonrpc":"2.0",');
    });
    const started = Date.now();
    const reply = await newPost()(url, "{}", 300, never);
    expect(reply).toBe("timeout");
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("reports a reply cut off mid-body as an error, not as a short reply", async () => {
    const { url } = await serve((req, res) => {
      req.resume();
      res.writeHead(200, { "content-length": "1000" });
      res.write('{"jsonrpc":"2.0","id":1,"result":');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const reply = await newPost()(url, "{}", 2000, never);
    expect(reply).toMatchObject({ error: expect.any(String) });
  });

  it("stops at once when its signal aborts", async () => {
    const { url } = await serve((req) => {
      req.resume();
    });
    const abort = new AbortController();
    const pending = newPost()(url, "{}", 10_000, abort.signal);
    setTimeout(() => abort.abort(), 50);
    const started = Date.now();
    expect(await pending).toEqual({ error: "aborted" });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("names the refusal of a port nobody listens on", async () => {
    const { url, server } = await serve(() => {});
    await new Promise<void>((resolve) => server.close(() => resolve()));
    servers.pop();
    const reply = await newPost()(url, "{}", 2000, never);
    expect(reply).toMatchObject({ error: expect.stringContaining("ECONNREFUSED") });
  });

  it("is what a pool without an injected fetch speaks, rate limits included", async () => {
    let calls = 0;
    const { url } = await serve((req, res) => {
      req.resume();
      req.on("end", () => {
        calls++;
        if (calls === 1) {
          res.writeHead(429, { "retry-after": "0" });
          res.end();
          return;
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end('{"jsonrpc":"2.0","id":2,"result":4242}');
      });
    });
    const pool = createRpcPool({
      endpoints: [{ url, rateLimitPerSec: 100, concurrency: 2, timeoutMs: 2000 }],
    });
    try {
      expect(await pool.getSlot("finalized")).toBe(4242);
      expect(calls).toBe(2);
      expect(pool.stats()).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ method: "getSlot", outcome: "rate_limited", count: 1 }),
          expect.objectContaining({ method: "getSlot", outcome: "ok", count: 1 }),
        ]),
      );
    } finally {
      await pool.close();
    }
  });
});
