import http from "node:http";
import { afterEach, describe, expect, it, vi } from "vitest";
import { JobsApiError } from "../src/recorder/jobs-api.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import {
  address,
  capturedLogger,
  jobId,
  listen,
  serveApp,
  signature,
} from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

const key = "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345";

/**
 * The proxy answers a client its request id (`x-request-id`, and in an error's body), and wrote
 * it on the request's `request` line only: its other lines about that request (an upstream that
 * failed, a client that left, a receipt not written, the jobs API refusing the key) carried
 * none, and an operator holding a client's id could not find them. Each names it as
 * `requestId`, on the fast path and through the app alike.
 */
describe("the proxy's log lines about one request", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** Answers by the `mode` in the query; `release` lets a held stream end. */
  async function upstream() {
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const jobHeaders = () => ({
      "x-decentral-job-id": jobId(),
      "x-decentral-tx-signature": signature(),
      "x-decentral-settlement-tx": signature(),
      "x-decentral-worker": address(),
    });
    const server = http.createServer(async (req, res) => {
      for await (const _ of req) {
        // the whole request first
      }
      const mode = new URL(req.url ?? "/", "http://x").searchParams.get("mode");
      const usage = { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 };
      const json = JSON.stringify({ model: "m", choices: [], usage });
      if (mode === "reset") req.socket.destroy();
      else if (mode === "hang") return;
      else if (mode === "garbled") {
        req.socket.end(
          `HTTP/1.1 200 OK\r\nx-decentral-job-id: ${jobId()}\r\nx-bad: a\x01b\r\n\r\n`,
        );
      } else if (mode === "nojob") {
        res.writeHead(200, { "x-decentral-job-id": "not a job", "content-type": "text/plain" });
        res.end("{}");
      } else if (mode === "badheader") {
        res.writeHead(200, {
          ...jobHeaders(),
          "x-decentral-worker": "not-a-wallet",
          "content-type": "application/json",
        });
        res.end(json);
      } else if (mode === "stream") {
        res.writeHead(200, { ...jobHeaders(), "content-type": "text/event-stream" });
        res.write('data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n');
        await released;
        res.end(`data: ${JSON.stringify({ choices: [], usage })}\n\ndata: [DONE]\n\n`);
      } else {
        res.writeHead(200, { ...jobHeaders(), "content-type": "application/json" });
        res.end(json);
      }
    });
    const served = await listen(server);
    return { url: served.url, close: served.close, release: () => release() };
  }

  async function setup(direct: boolean) {
    const store = createTestStore();
    const { log, lines } = capturedLogger();
    const up = await upstream();
    const proxy = createRecordingProxy({
      store,
      log,
      upstreamBaseUrl: `${up.url}/v1`,
      abandonedWaitMs: 100,
      jobsApiRetryDelaysMs: [],
      jobsApi: async () => {
        throw new JobsApiError("jobs API answered 401", 401, false);
      },
    });
    const app = await serveApp({ store, log, proxy }, { direct });
    cleanups.push(async () => {
      up.release();
      await app.close();
      await proxy.close();
      await up.close();
      store.close();
    });
    const send = (mode: string, requestId: string, init: RequestInit = {}) =>
      fetch(`${app.url}/v1/chat/completions?mode=${mode}`, {
        method: "POST",
        ...init,
        headers: {
          authorization: `Bearer ${key}`,
          "content-type": "application/json",
          "x-request-id": requestId,
        },
        body: JSON.stringify({ model: "m", messages: [], stream: mode === "stream" }),
      });
    const parsed = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    /** The line of `message`, once written. */
    const lineOf = async (message: string) => {
      let found: Record<string, unknown> | undefined;
      await vi.waitFor(
        () => {
          found = parsed().find((l) => typeof l.msg === "string" && l.msg.startsWith(message));
          expect(found, message).toBeDefined();
        },
        { timeout: 5000 },
      );
      return found as Record<string, unknown>;
    };
    return { store, proxy, send, lineOf, parsed, up };
  }

  for (const direct of [true, false]) {
    const way = direct ? "on the fast path" : "through the app";

    it(`carries the request id of an upstream failure, a client gone and a refused key ${way}`, async () => {
      const { send, lineOf, parsed, proxy } = await setup(direct);
      expect((await send("reset", "trace-reset")).status).toBe(502);
      expect((await lineOf("upstream connection failed")).requestId).toBe("trace-reset");

      expect((await send("garbled", "trace-garbled")).status).toBe(502);
      expect((await lineOf("upstream answer came but could not be parsed")).requestId).toBe(
        "trace-garbled",
      );

      expect((await send("nojob", "trace-nojob")).status).toBe(502);
      expect((await lineOf("upstream answer names no recordable job id")).requestId).toBe(
        "trace-nojob",
      );

      expect((await send("badheader", "trace-badheader")).status).toBe(200);
      expect((await lineOf("malformed receipt header")).requestId).toBe("trace-badheader");
      // The jobs API is asked after the receipt, with the caller's key, which it refuses.
      expect((await lineOf("jobs API refused the caller's key")).requestId).toBe("trace-badheader");

      // The client leaves before the answer, which never comes.
      const leaving = new AbortController();
      const left = send("hang", "trace-hang", { signal: leaving.signal });
      setTimeout(() => leaving.abort(), 100);
      await expect(left).rejects.toThrow();
      expect((await lineOf("no answer came for a request whose client left")).requestId).toBe(
        "trace-hang",
      );

      await proxy.idle();
      // Each line about one request (it names a path or a job) names its request.
      const about = parsed().filter((l) => l.msg !== "request" && ("path" in l || "jobId" in l));
      expect(about.length).toBeGreaterThanOrEqual(6);
      for (const line of about) expect(line.requestId, String(line.msg)).toMatch(/^trace-/);
    });

    it(`carries the request id of a receipt not written ${way}`, async () => {
      const { store, send, lineOf } = await setup(direct);
      store.sqlite.exec(`CREATE TRIGGER refused BEFORE INSERT ON jobs
        BEGIN SELECT RAISE(ABORT, 'disk says no'); END`);
      expect((await send("json", "trace-503")).status).toBe(503);
      expect((await lineOf("receipt not recorded; answering 503")).requestId).toBe("trace-503");
      store.sqlite.exec("DROP TRIGGER refused");

      // A stream its client stops reading mid-way, whose completion cannot be written.
      const leaving = new AbortController();
      const response = await send("stream", "trace-cut", { signal: leaving.signal });
      expect(response.status).toBe(200);
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      await reader.read();
      store.sqlite.exec(`CREATE TRIGGER refused BEFORE UPDATE ON jobs
        BEGIN SELECT RAISE(ABORT, 'disk says no'); END`);
      // The upstream request ends with it: the job is recorded as aborted.
      leaving.abort();
      const line = await lineOf("receipt completion not recorded");
      expect(line.requestId).toBe("trace-cut");
      expect(line.receipt).toMatchObject({ captureState: "aborted" });
    });
  }
});
