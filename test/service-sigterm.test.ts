import { mkdtempSync } from "node:fs";
import { createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import Database from "better-sqlite3";
import { describe, expect, it, vi } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { ingestReceipts } from "../src/recorder/ingest.js";
import { wireReceipt } from "./support/recorder-fixtures.js";
import { startServe } from "./support/service-process.js";
import { writeLockProcess } from "./support/write-lock-process.js";

/** An HTTP server whose handler the test controls; resolves with its URL. */
async function httpServer(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    server,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** An upstream whose completions stream as `jobId` and never end; its jobs API knows no job. */
function endlessStreamUpstream(jobId: string) {
  return httpServer((req, res) => {
    if (req.url?.startsWith("/v1/jobs/")) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "x-decentral-job-id": jobId,
      "x-decentral-tx-signature": wireReceipt().escrow_tx as string,
    });
    res.write('data: {"choices":[{"delta":{"content":"a"}}]}\n\n');
  });
}

/** A streamed completion asked of `serve`'s proxy; resolves once its headers are in. */
function streamThrough(url: string) {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
    body: JSON.stringify({ model: "qwen3-8b", stream: true, messages: [] }),
  });
}

/**
 * Each test starts a `serve` of its own on a database of its own, and mostly waits: on its
 * start, on a drain's deadline. Two runs of tests go at once, each one test after another: the
 * one over 10,000 jobs (its writing and start the longest) with two short ones, beside the
 * rest. Two serves at once, not eight: the bounds are on how soon a stop ends, which the
 * host's CPU shares in. All one after another, the file took 111 s of a loaded host, the
 * 10,000 jobs' test 50 s of it.
 */
describe("serve under SIGTERM", () => {
  describe.concurrent("over many jobs, then idle connections and a second signal", () => {
    it.sequential("with 10,000 open jobs and a node that never answers, drains and exits within 10 s", async () => {
      const db = join(mkdtempSync(join(tmpdir(), "sigterm-")), "audit.db");
      const store = openSqliteStore(db);
      migrateStore(store);
      const receipts = Array.from({ length: 10_000 }, () => wireReceipt());
      // In batches of 200 that let this process's event loop run between them: written at
      // once, they held it for seconds, which the other run's tests counted in how long their
      // stops took.
      for (let i = 0; i < receipts.length; i += 200) {
        ingestReceipts(store, receipts.slice(i, i + 200), "import");
        await new Promise((resolve) => setImmediate(resolve));
      }
      store.close();

      // A node that takes every request and answers none (until the test ends).
      let rpcRequests = 0;
      let rpcWaiter: (() => void) | null = null;
      const rpc = await httpServer(() => {
        rpcRequests++;
        rpcWaiter?.();
      });
      // An upstream whose answer comes only after SIGTERM was sent: a response in flight.
      let releaseUpstream: () => void = () => {};
      const upstreamReleased = new Promise<void>((resolve) => {
        releaseUpstream = resolve;
      });
      const upstream = await httpServer((_req, res) => {
        void upstreamReleased.then(() => {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify({ id: "chatcmpl-1", choices: [] }));
        });
      });

      const serve = await startServe(db, {
        SOLANA_RPC_URLS: rpc.url,
        DECENTRAL_BASE_URL: `${upstream.url}/v1`,
        VERIFY_POLL_MS: "200",
      });
      try {
        // The verifier has claimed a round and is waiting on the node.
        if (rpcRequests === 0) await new Promise<void>((resolve) => (rpcWaiter = resolve));
        const inFlight = fetch(`${serve.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
          body: JSON.stringify({ model: "qwen3-8b", messages: [{ role: "user", content: "hi" }] }),
        });
        await new Promise<void>((resolve) => upstream.server.once("request", () => resolve()));

        const sent = performance.now();
        serve.child.kill("SIGTERM");
        setTimeout(releaseUpstream, 200);
        const response = await inFlight;
        expect(response.status).toBe(200);
        const code = await serve.exited;
        const tookMs = performance.now() - sent;
        expect(code).toBe(0);
        expect(tookMs).toBeLessThan(10_000);
      } finally {
        serve.child.kill("SIGKILL");
        rpc.close();
        upstream.close();
      }

      // Nothing lost, nothing left held: every job is still there and open, no lease remains,
      // and the run was closed.
      const after = openSqliteStore(db);
      const counts = after.sqlite
        .prepare(
          `SELECT count(*) AS jobs, count(lease_owner) AS leased,
           sum(verdict IN ('pending', 'awaiting_finality', 'error')) AS open FROM jobs`,
        )
        .get() as { jobs: number; leased: number; open: number };
      expect(counts).toEqual({ jobs: 10_000, leased: 0, open: 10_000 });
      const runs = after.sqlite.prepare("SELECT status FROM verification_runs").pluck().all();
      expect(runs).toEqual(["completed"]);
      after.close();
      // The 10 s bound is the drain's; writing 10,000 receipts and starting serve over them
      // before it took 55 s of a loaded 2-core host, close to the default 60 s limit.
    }, 120_000);

    it.sequential("is not held by idle connections whose clients keep their side open", async () => {
      const db = join(mkdtempSync(join(tmpdir(), "sigterm-")), "audit.db");
      const upstream = await httpServer((req, res) => {
        if (req.url?.startsWith("/v1/jobs/")) {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, {
          "content-type": "application/json",
          "x-decentral-job-id": "job_idlekeptopen1",
          "x-decentral-tx-signature": wireReceipt().escrow_tx as string,
        });
        res.end("{}");
      });
      const serve = await startServe(db, {
        SOLANA_RPC_URLS: "http://127.0.0.1:9",
        DECENTRAL_BASE_URL: `${upstream.url}/v1`,
        WORKERS: "1",
        DRAIN_TIMEOUT_MS: "20000",
      });
      const { port } = new URL(serve.url);
      // Clients that do not close on the server's FIN: one that never sent a request, and one
      // idle in a pool after its answer.
      const silent = connect({ port: Number(port), host: "127.0.0.1", allowHalfOpen: true });
      const pooled = connect({ port: Number(port), host: "127.0.0.1", allowHalfOpen: true });
      silent.on("error", () => {});
      pooled.on("error", () => {});
      try {
        const answered = new Promise<void>((resolve) =>
          pooled.on("data", (chunk: Buffer) => {
            if (chunk.toString().includes("{}")) resolve();
          }),
        );
        const body = "{}";
        pooled.write(
          `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-test\r\n` +
            `content-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
        );
        await answered;
        const sent = performance.now();
        serve.child.kill("SIGTERM");
        expect(await serve.exited).toBe(0);
        expect(performance.now() - sent).toBeLessThan(4000);
      } finally {
        silent.destroy();
        pooled.destroy();
        serve.child.kill("SIGKILL");
        upstream.close();
      }
    });

    it.sequential("stops at a second signal of either kind without waiting for the drain", async () => {
      const db = join(mkdtempSync(join(tmpdir(), "sigterm-")), "audit.db");
      const upstream = await httpServer((_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write("data: {}\n\n"); // and never ends
      });
      const serve = await startServe(db, {
        SOLANA_RPC_URLS: "http://127.0.0.1:9",
        DECENTRAL_BASE_URL: `${upstream.url}/v1`,
        WORKERS: "1",
      });
      try {
        const response = await streamThrough(serve.url);
        void response.text().catch(() => {});
        const sent = performance.now();
        serve.child.kill("SIGTERM"); // drains: the stream may run 30 s
        await new Promise((r) => setTimeout(r, 300));
        serve.child.kill("SIGINT");
        expect(await serve.exited).toBe(130);
        expect(performance.now() - sent).toBeLessThan(5000);
        expect(serve.stderr()).toContain("stopped before the drain ended");
      } finally {
        serve.child.kill("SIGKILL");
        upstream.close();
      }
    });
  });

  describe.concurrent("streams and answers in flight", () => {
    it.sequential("cuts a stream still running at the drain's deadline and records it as aborted", async () => {
      const db = join(mkdtempSync(join(tmpdir(), "sigterm-")), "audit.db");
      const jobId = "job_drainedstream1";
      // A stream that never ends: it outlives the drain.
      const upstream = await endlessStreamUpstream(jobId);
      const rpc = await httpServer((_req, res) => res.destroy());
      const serve = await startServe(db, {
        SOLANA_RPC_URLS: rpc.url,
        DECENTRAL_BASE_URL: `${upstream.url}/v1`,
        DRAIN_TIMEOUT_MS: "500",
      });
      try {
        const response = await streamThrough(serve.url);
        expect(response.status).toBe(200);
        const reading = response.text().catch((error: unknown) => error);
        serve.child.kill("SIGTERM");
        expect(await reading).toBeInstanceOf(Error); // cut off, not ended as if complete
        expect(await serve.exited).toBe(0);
      } finally {
        serve.child.kill("SIGKILL");
        rpc.close();
        upstream.close();
      }
      const after = openSqliteStore(db);
      const row = after.sqlite
        .prepare("SELECT capture_state, latency_ms FROM jobs WHERE job_id = ?")
        .get(jobId) as { capture_state: string; latency_ms: number | null };
      expect(row.capture_state).toBe("aborted");
      expect(row.latency_ms).toBeGreaterThanOrEqual(400);
      after.close();
    });

    it.sequential("ends past the drain time and its margin when another process keeps the write lock", async () => {
      const db = join(mkdtempSync(join(tmpdir(), "sigterm-")), "audit.db");
      const upstream = await endlessStreamUpstream("job_drainlocked1");
      const rpc = await httpServer((_req, res) => res.destroy());
      const serve = await startServe(db, {
        SOLANA_RPC_URLS: rpc.url,
        DECENTRAL_BASE_URL: `${upstream.url}/v1`,
        DRAIN_TIMEOUT_MS: "500",
        DRAIN_MARGIN_MS: "1000",
      });
      // A backup or a long import holding the write lock for a minute: the stream's completion,
      // cut at the drain's deadline, cannot be written meanwhile.
      const locker = writeLockProcess(db, 60_000);
      try {
        const response = await streamThrough(serve.url);
        expect(response.status).toBe(200);
        const reading = response.text().catch((error: unknown) => error);
        expect(await locker.take()).toMatch(/locked/);
        const stopped = performance.now();
        serve.child.kill("SIGTERM");
        expect(await reading).toBeInstanceOf(Error);
        await serve.exited;
        expect(serve.child.signalCode).toBe("SIGKILL");
        expect(performance.now() - stopped).toBeLessThan(1_500 + 8_000);
        expect(serve.stderr()).toMatch(/did not finish draining within 1500 ms/);
        expect(locker.freed()).toBe(false);
      } finally {
        serve.child.kill("SIGKILL");
        locker.kill();
        rpc.close();
        upstream.close();
      }
    });

    // The test's own `expect`: `expect.poll` needs to know its test among those running at once.
    it.sequential("waits in the drain for the answer of a job whose client gave up, and records it", async ({
      expect,
    }) => {
      const db = join(mkdtempSync(join(tmpdir(), "sigterm-")), "audit.db");
      const jobId = "job_clientgaveup1";
      const seen: string[] = [];
      let answer!: () => void;
      // One job is answered only once the stop began; the other never is.
      const upstream = await httpServer((req, res) => {
        if (req.url?.startsWith("/v1/jobs/")) {
          res.writeHead(404).end();
          return;
        }
        seen.push(req.url ?? "");
        if (req.url?.endsWith("?silent")) return;
        answer = () => {
          res.writeHead(200, {
            "content-type": "application/json",
            "x-decentral-job-id": jobId,
            "x-decentral-tx-signature": wireReceipt().escrow_tx as string,
          });
          res.end(JSON.stringify({ model: "qwen3-8b", usage: { total_tokens: 7 } }));
        };
      });
      const rpc = await httpServer((_req, res) => res.destroy());
      const serve = await startServe(db, {
        SOLANA_RPC_URLS: rpc.url,
        DECENTRAL_BASE_URL: `${upstream.url}/v1`,
        DRAIN_TIMEOUT_MS: "3000",
      });
      try {
        // Both clients give up before any answer, as an SDK's timeout does (node:http: fetch
        // opens a spare connection, which would hold the drain open for its whole time).
        for (const query of ["", "?silent"]) {
          const asked = request(`${serve.url}/v1/chat/completions${query}`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
          });
          asked.on("error", () => {});
          asked.end(JSON.stringify({ model: "qwen3-8b", messages: [] }));
          // Waited for up to 15 s: through serve, the request took more than expect.poll's
          // default second to reach the upstream on a loaded host.
          await expect.poll(() => seen.length, { timeout: 15_000 }).toBe(query === "" ? 1 : 2);
          asked.destroy();
        }
        const stopped = performance.now();
        serve.child.kill("SIGTERM");
        await new Promise((resolve) => setTimeout(resolve, 1000));
        answer();
        expect(await serve.exited).toBe(0);
        // The one never answered is given up at the drain's end, not waited for longer.
        expect(performance.now() - stopped).toBeLessThan(6_000);
      } finally {
        serve.child.kill("SIGKILL");
        rpc.close();
        upstream.close();
      }
      const after = openSqliteStore(db);
      const row = after.sqlite
        .prepare("SELECT capture_state, total_tokens FROM jobs WHERE job_id = ?")
        .get(jobId) as { capture_state: string; total_tokens: number | null } | undefined;
      expect(row).toEqual({ capture_state: "aborted", total_tokens: 7 });
      after.close();
    });

    it.sequential("stops soon while the jobs API never answers, leaving its questions to the backfill", async () => {
      const db = join(mkdtempSync(join(tmpdir(), "sigterm-")), "audit.db");
      const [answered, streamed] = ["job_answeredbeforestop1", "job_streamcutbystop1"];
      let questions = 0;
      // Receipts that name their settlement (nothing for the backfill), a stream that never
      // ends, and a jobs API that takes every question and answers none.
      const upstream = await httpServer((req, res) => {
        if (req.url?.startsWith("/v1/jobs/")) {
          questions++;
          return;
        }
        let body = "";
        req.on("data", (chunk: Buffer) => {
          body += chunk.toString();
        });
        req.on("end", () => {
          const stream = (JSON.parse(body) as { stream?: boolean }).stream === true;
          const receipt = wireReceipt();
          res.writeHead(200, {
            "content-type": stream ? "text/event-stream" : "application/json",
            "x-decentral-job-id": stream ? streamed : answered,
            "x-decentral-tx-signature": receipt.escrow_tx as string,
            "x-decentral-settlement-tx": receipt.settlement_tx as string,
          });
          if (stream) res.write('data: {"choices":[{"delta":{"content":"a"}}]}\n\n');
          else res.end(JSON.stringify({ id: "chatcmpl-1", choices: [] }));
        });
      });
      const rpc = await httpServer((_req, res) => res.destroy());
      const drainMs = 1000;
      const serve = await startServe(db, {
        SOLANA_RPC_URLS: rpc.url,
        DECENTRAL_BASE_URL: `${upstream.url}/v1`,
        DRAIN_TIMEOUT_MS: String(drainMs),
      });
      try {
        const json = await fetch(`${serve.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
          body: JSON.stringify({ model: "qwen3-8b", messages: [{ role: "user", content: "hi" }] }),
        });
        expect(json.status).toBe(200);
        const stream = await streamThrough(serve.url);
        void stream.text().catch(() => {});
        // The answered job's question is out and hangs.
        while (questions === 0) await new Promise((r) => setTimeout(r, 20));

        const sent = performance.now();
        serve.child.kill("SIGTERM");
        expect(await serve.exited).toBe(0);
        // The client's timeout is 10 s, as is the cluster's margin past the drain.
        expect(performance.now() - sent).toBeLessThan(drainMs + 5000);
      } finally {
        serve.child.kill("SIGKILL");
        rpc.close();
        upstream.close();
      }
      const after = openSqliteStore(db);
      const rows = after.sqlite
        .prepare("SELECT job_id, capture_state, backfill_state FROM jobs ORDER BY job_id")
        .all();
      expect(rows).toEqual([
        { job_id: answered, capture_state: "complete", backfill_state: "pending" },
        { job_id: streamed, capture_state: "aborted", backfill_state: "pending" },
      ]);
      after.close();
    });

    it.sequential("takes no new job on a connection kept open once the drain began, and ends with the work in flight", async () => {
      const db = join(mkdtempSync(join(tmpdir(), "sigterm-")), "audit.db");
      let completions = 0;
      let answer!: () => void;
      const answered = new Promise<void>((resolve) => {
        answer = resolve;
      });
      let asked!: () => void;
      const askedOnce = new Promise<void>((resolve) => {
        asked = resolve;
      });
      const upstream = await httpServer((req, res) => {
        if (req.url?.startsWith("/v1/jobs/")) {
          res.writeHead(404).end();
          return;
        }
        completions++;
        asked();
        void answered.then(() => {
          res.writeHead(200, {
            "content-type": "application/json",
            "x-decentral-job-id": `job_keptopen${completions}`,
            "x-decentral-tx-signature": wireReceipt().escrow_tx as string,
          });
          res.end(JSON.stringify({ id: "chatcmpl-1", choices: [] }));
        });
      });
      const serve = await startServe(db, {
        SOLANA_RPC_URLS: "http://127.0.0.1:9",
        DECENTRAL_BASE_URL: `${upstream.url}/v1`,
        WORKERS: "1",
        DRAIN_TIMEOUT_MS: "20000",
      });
      // One connection, as a keep-alive client holds it: a request in flight, then (once the
      // drain began) the next one on the same connection.
      const { port } = new URL(serve.url);
      const socket = connect(Number(port), "127.0.0.1");
      const completion = (body: string) =>
        `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-test\r\n` +
        `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
      let received = "";
      socket.on("data", (chunk: Buffer) => {
        received += chunk.toString("utf8");
      });
      const socketClosed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
      try {
        socket.write(completion('{"model":"qwen3-8b","messages":[]}'));
        await askedOnce;
        const sent = performance.now();
        serve.child.kill("SIGTERM");
        await serve.waitForLog((l) => String(l.msg).startsWith("draining:"));
        socket.write(completion('{"model":"qwen3-8b","messages":[],"n":2}'));
        await new Promise((r) => setTimeout(r, 200));
        answer();
        await socketClosed;
        expect(await serve.exited).toBe(0);
        // The drain ended with the job in flight, not at its 20 s deadline.
        expect(performance.now() - sent).toBeLessThan(8000);
      } finally {
        socket.destroy();
        serve.child.kill("SIGKILL");
        upstream.close();
      }
      expect(received).toMatch(/^HTTP\/1\.1 200 /);
      expect(received).toContain("HTTP/1.1 503 ");
      expect(received).toContain('"code":"service_stopping"');
      expect(received.toLowerCase()).toContain("connection: close");
      // The second request was never forwarded: no job ran for it.
      expect(completions).toBe(1);
      // And the stop is in the log, start and end.
      const messages = serve.logs.map((l) => String(l.msg));
      expect(messages.some((m) => m.startsWith("draining:"))).toBe(true);
      expect(messages.some((m) => m.startsWith("drained:"))).toBe(true);
    });

    it.sequential("sends whole a large answer its client is still reading when the drain begins", async () => {
      const db = join(mkdtempSync(join(tmpdir(), "sigterm-")), "audit.db");
      // More than the kernel's socket buffers take from a client not reading: the rest waits in
      // the server's own buffer after the response has ended.
      const content = JSON.stringify({ id: "chatcmpl-1", choices: [], pad: "x".repeat(7_500_000) });
      let asked!: () => void;
      const askedOnce = new Promise<void>((resolve) => {
        asked = resolve;
      });
      const upstream = await httpServer((req, res) => {
        if (req.url?.startsWith("/v1/jobs/")) {
          res.writeHead(404).end();
          return;
        }
        asked();
        res.writeHead(200, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(content),
          "x-decentral-job-id": "job_largeanswer1",
          "x-decentral-tx-signature": wireReceipt().escrow_tx as string,
        });
        res.end(content);
      });
      const serve = await startServe(db, {
        SOLANA_RPC_URLS: "http://127.0.0.1:9",
        DECENTRAL_BASE_URL: `${upstream.url}/v1`,
        WORKERS: "1",
      });
      const { port } = new URL(serve.url);
      const socket = connect(Number(port), "127.0.0.1");
      const chunks: Buffer[] = [];
      socket.on("data", (chunk: Buffer) => chunks.push(chunk));
      const socketClosed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
      try {
        const body = '{"model":"qwen3-8b","messages":[]}';
        socket.write(
          `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-test\r\n` +
            `content-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
        );
        socket.pause();
        await askedOnce;
        // The receipt is committed, and the answer handed to the server right after it.
        await vi.waitFor(
          () => {
            const reader = new Database(db, { readonly: true });
            try {
              expect(
                reader.prepare("SELECT 1 FROM jobs WHERE job_id = ?").get("job_largeanswer1"),
              ).toBeDefined();
            } finally {
              reader.close();
            }
          },
          { timeout: 10_000 },
        );
        await new Promise((r) => setTimeout(r, 100));
        serve.child.kill("SIGTERM");
        await serve.waitForLog((l) => String(l.msg).startsWith("draining:"));
        socket.resume();
        await socketClosed;
        expect(await serve.exited).toBe(0);
      } finally {
        socket.destroy();
        serve.child.kill("SIGKILL");
        upstream.close();
      }
      const received = Buffer.concat(chunks).toString("utf8");
      expect(received).toMatch(/^HTTP\/1\.1 200 /);
      const answer = received.slice(received.indexOf("\r\n\r\n") + 4);
      expect(answer.length).toBe(content.length);
    });
  });
});
