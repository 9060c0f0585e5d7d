import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { brotliCompressSync, brotliDecompressSync, constants as zlibConstants } from "node:zlib";
import Database from "better-sqlite3";
import { eq } from "drizzle-orm";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createMetrics } from "../src/api/metrics.js";
import { maxLoggedPathLength } from "../src/api/request-id.js";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { jobs } from "../src/db/schema.js";
import { createLogger } from "../src/log.js";
import { importReceipts } from "../src/recorder/import.js";
import {
  createJobsApiClient,
  type JobsApiCallOutcome,
  JobsApiError,
  jobsApiCallCounts,
  maxAnswerBytes,
  parseJobsApiAnswer,
} from "../src/recorder/jobs-api.js";
import {
  createRecordingProxy,
  keyFingerprint,
  maxUpstreamHeaderBytes,
} from "../src/recorder/proxy.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { withoutKey } from "../src/recorder/without-key.js";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import {
  address,
  capturedLogger,
  ingestToken,
  jobId,
  listen,
  serveApp,
  signature,
  wireReceipt,
} from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

const key = "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345";

/** A gate the test opens to let the stub upstream send its next chunk. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

interface Stub {
  seen: http.IncomingHttpHeaders[];
  /** The path of each request, in the order they came. */
  paths: string[];
  upstreamClosed: Promise<void>;
  nextChunk: ReturnType<typeof gate>;
  receipt: { jobId: string; escrowTx: string; settlementTx: string; worker: string };
}

/** A tiny Decentral stand-in: a JSON completion, a gated SSE stream, an endless stream, a 504. */
function stubUpstream(): { server: http.Server; stub: Stub } {
  let closed!: () => void;
  const stub: Stub = {
    seen: [],
    paths: [],
    upstreamClosed: new Promise<void>((resolve) => {
      closed = resolve;
    }),
    nextChunk: gate(),
    receipt: {
      jobId: jobId(),
      escrowTx: signature(),
      settlementTx: signature(),
      worker: address(),
    },
  };
  const decentral = {
    "x-decentral-job-id": stub.receipt.jobId,
    "x-decentral-tx-signature": stub.receipt.escrowTx,
    "x-decentral-worker": stub.receipt.worker,
    "x-decentral-credits-remaining": "991.5",
  };
  const server = http.createServer(async (req, res) => {
    stub.seen.push(req.headers);
    stub.paths.push(req.url ?? "");
    for await (const _ of req) {
      // drain the body
    }
    // A key some callers put in the query is not part of the route.
    const url = (req.url ?? "").replace(/&api_key=[^&]*/, "");
    if (url.startsWith("/v1/jobs/")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          status: "settled",
          credits_charged: 8,
          worker_address: stub.receipt.worker,
          on_chain: { escrow_tx: stub.receipt.escrowTx, settlement_tx: stub.receipt.settlementTx },
        }),
      );
    } else if (url === "/v1/chat/completions?mode=slow-json") {
      // A job that takes a while to run: answered once the test opens the gate.
      await stub.nextChunk.opened;
      res.writeHead(200, {
        "content-type": "application/json",
        ...decentral,
        "x-decentral-settlement-tx": stub.receipt.settlementTx,
      });
      res.end(
        JSON.stringify({
          id: "chatcmpl-5",
          model: "qwen3-8b",
          choices: [],
          usage: { prompt_tokens: 4, completion_tokens: 5, total_tokens: 9 },
        }),
      );
    } else if (url === "/v1/chat/completions?mode=slow-stream") {
      // A stream that starts once the test opens the gate, and never ends.
      await stub.nextChunk.opened;
      res.writeHead(200, { "content-type": "text/event-stream", ...decentral });
      res.write('data: {"choices":[]}\n\n');
      res.on("close", () => closed());
    } else if (url === "/v1/chat/completions?mode=late-first-chunk") {
      // A stream whose head comes at once and whose first event comes once the gate opens.
      res.writeHead(200, { "content-type": "text/event-stream", ...decentral });
      res.flushHeaders();
      await stub.nextChunk.opened;
      res.end('data: {"choices":[]}\n\ndata: [DONE]\n\n');
    } else if (url === "/v1/chat/completions?mode=slow-unending-json") {
      // A job answered once the test opens the gate, whose body never ends.
      await stub.nextChunk.opened;
      res.writeHead(200, { "content-type": "application/json", ...decentral });
      res.write('{"id":"chatcmpl-6","model":"qwen3-8b",');
      res.on("close", () => closed());
    } else if (url === "/v1/chat/completions?mode=silent") {
      // An upstream that takes the request and never answers.
      res.on("close", () => closed());
    } else if (url === "/v1/chat/completions?mode=json") {
      res.writeHead(200, {
        "content-type": "application/json",
        ...decentral,
        "x-decentral-settlement-tx": stub.receipt.settlementTx,
        "x-upstream-custom": "kept",
        "set-cookie": ["a=1", "b=2"],
      });
      res.end(
        JSON.stringify({
          id: "chatcmpl-1",
          model: "qwen3-8b",
          choices: [],
          usage: { prompt_tokens: 11, completion_tokens: 22, total_tokens: 33 },
        }),
      );
    } else if (url === "/v1/chat/completions?mode=stream") {
      res.writeHead(200, { "content-type": "text/event-stream", ...decentral });
      res.write(
        `data: ${JSON.stringify({ model: "qwen3-8b", choices: [{ delta: { content: "a" } }] })}\n\n`,
      );
      await stub.nextChunk.opened;
      res.write(
        `data: ${JSON.stringify({ model: "qwen3-8b", choices: [], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } })}\n\n`,
      );
      res.end("data: [DONE]\n\n");
    } else if (url === "/v1/chat/completions?mode=malformed") {
      res.writeHead(200, {
        "content-type": "application/json",
        ...decentral,
        "x-decentral-tx-signature": "not-a-signature",
        "x-decentral-worker": "zzz",
      });
      res.end(JSON.stringify({ id: "chatcmpl-2", model: "qwen3-8b", choices: [] }));
    } else if (url.startsWith("/v1/chat/completions?mode=jobid-")) {
      // A paid answer whose job id header is odd: bad, sent twice (differing or the same).
      const ids: Record<string, string | string[]> = {
        bad: "JOB_../../x",
        two: [stub.receipt.jobId, jobId()],
        same: [stub.receipt.jobId, stub.receipt.jobId],
      };
      if (url.endsWith("jobid-empty")) {
        // An error that names nothing, with an empty job id header: passed on as it is.
        res.writeHead(402, { "content-type": "application/json", "x-decentral-job-id": "" });
        res.end(JSON.stringify({ error: { code: "insufficient_credits", message: "no" } }));
        return;
      }
      res.writeHead(200, {
        "content-type": "application/json",
        ...decentral,
        "x-decentral-job-id": ids[url.slice(url.indexOf("jobid-") + 6)] ?? "",
      });
      res.end(JSON.stringify({ id: "chatcmpl-3", model: "qwen3-8b", choices: [] }));
    } else if (url === "/v1/chat/completions?mode=trailing") {
      // A complete answer followed by bytes that are no HTTP response, in the same write.
      const payload = JSON.stringify({
        id: "chatcmpl-4",
        model: "qwen3-8b",
        usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
      });
      const head = Object.entries({ ...decentral, "content-type": "application/json" })
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join("");
      req.socket.write(
        `HTTP/1.1 200 OK\r\n${head}content-length: ${payload.length}\r\n\r\n${payload}GARBAGE`,
      );
      setTimeout(() => req.socket.end(), 50);
    } else if (url === "/v1/chat/completions?mode=long-header") {
      // A paid answer with one unrelated header of 60 KB, beyond Node's default 16 KiB head.
      res.writeHead(200, {
        "content-type": "application/json",
        ...decentral,
        "x-decentral-settlement-tx": stub.receipt.settlementTx,
        "x-other": "a".repeat(60_000),
      });
      res.end(JSON.stringify({ id: "chatcmpl-7", model: "qwen3-8b", choices: [] }));
    } else if (url.startsWith("/v1/chat/completions?mode=control-char")) {
      // A paid answer whose job id header carries a control character: no HTTP Node accepts.
      // `-echo`: its escrow header echoes the caller's key.
      const head = Object.entries({
        ...decentral,
        ...(url.endsWith("-echo")
          ? { "x-decentral-tx-signature": String(req.headers.authorization) }
          : {}),
        "x-decentral-job-id": `${stub.receipt.jobId}\x01`,
        "content-type": "application/json",
      })
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join("");
      req.socket.end(`HTTP/1.1 200 OK\r\n${head}content-length: 2\r\n\r\n{}`);
    } else if (url === "/v1/chat/completions?mode=overlong-header") {
      // A paid answer whose head, past its job's headers, is longer than the proxy reads: it
      // comes in several chunks, the job's headers in the first.
      const head = Object.entries({ ...decentral, "content-type": "application/json" })
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join("");
      const pad = `x-other: ${"a".repeat(maxUpstreamHeaderBytes + 64 * 1024)}\r\n`;
      req.socket.end(`HTTP/1.1 200 OK\r\n${head}${pad}content-length: 2\r\n\r\n{}`);
    } else if (url === "/v1/chat/completions?mode=sse-unasked") {
      res.writeHead(200, { "content-type": "text/event-stream", ...decentral });
      res.end(
        `data: ${JSON.stringify({ model: "qwen3-8b", choices: [], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } })}\n\ndata: [DONE]\n\n`,
      );
    } else if (url.endsWith("/chat/completions?mode=echo-key-json")) {
      // An operator echoing the caller's key as the model it names.
      const echoed = String(req.headers.authorization).replace(/^Bearer /, "");
      res.writeHead(200, {
        "content-type": "application/json",
        ...decentral,
        "x-decentral-settlement-tx": stub.receipt.settlementTx,
      });
      res.end(JSON.stringify({ id: "chatcmpl-8", model: `echo ${echoed}`, choices: [] }));
    } else if (url === "/v1/chat/completions?mode=echo-key-stream") {
      const echoed = String(req.headers.authorization).replace(/^Bearer /, "");
      res.writeHead(200, { "content-type": "text/event-stream", ...decentral });
      res.end(
        `data: ${JSON.stringify({ model: `echo ${echoed}`, choices: [] })}\n\ndata: [DONE]\n\n`,
      );
    } else if (url === "/v1/chat/completions?mode=echo-key-jobid") {
      res.writeHead(200, {
        "content-type": "application/json",
        ...decentral,
        "x-decentral-job-id": String(req.headers.authorization),
      });
      res.end("{}");
    } else if (url === "/v1/chat/completions?mode=endless") {
      res.writeHead(200, { "content-type": "text/event-stream", ...decentral });
      res.write('data: {"choices":[]}\n\n');
      res.on("close", () => closed());
    } else {
      res.writeHead(504, { "content-type": "application/json", ...decentral });
      res.end(JSON.stringify({ error: { code: "timeout", message: "job timed out" } }));
    }
  });
  return { server, stub };
}

async function setup(
  options: {
    store?: SqliteStore;
    maxBacklog?: number;
    direct?: boolean;
    now?: () => number;
    abandonedWaitMs?: number;
    maxSockets?: number;
    writer?: ReturnType<typeof createReceiptWriter>;
  } = {},
): Promise<{
  store: SqliteStore;
  stub: Stub;
  proxy: ReturnType<typeof createRecordingProxy>;
  url: string;
  row: () => typeof jobs.$inferSelect | undefined;
  lines: string[];
}> {
  const store = options.store ?? createTestStore();
  const { log, lines } = capturedLogger();
  const { server, stub } = stubUpstream();
  const upstream = await listen(server);
  const jobsApi = async (id: string, authorization: string) => {
    const response = await fetch(`${upstream.url}/v1/jobs/${id}`, { headers: { authorization } });
    return parseJobsApiAnswer(await response.json());
  };
  const proxy = createRecordingProxy({
    store,
    log,
    upstreamBaseUrl: `${upstream.url}/v1`,
    jobsApi,
    ...(options.now ? { now: options.now } : {}),
    ...(options.maxSockets ? { maxSockets: options.maxSockets } : {}),
    ...(options.abandonedWaitMs === undefined ? {} : { abandonedWaitMs: options.abandonedWaitMs }),
    ...(options.maxBacklog === undefined
      ? {}
      : { writer: createReceiptWriter(store, { log, maxBacklog: options.maxBacklog }) }),
    ...(options.writer ? { writer: options.writer } : {}),
  });
  const app = await serveApp({ store, log, proxy }, { direct: options.direct });
  const row = () => store.db.select().from(jobs).where(eq(jobs.jobId, stub.receipt.jobId)).get();
  cleanups.push(async () => {
    await app.close();
    await proxy.close();
    await upstream.close();
  });
  return { store, stub, proxy, url: app.url, row, lines };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  // Last registered first: the proxy closes before the database it writes to.
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function completion(url: string, mode: string, init: RequestInit = {}) {
  return fetch(`${url}/v1/chat/completions?mode=${mode}`, {
    method: "POST",
    ...init,
    headers: {
      authorization: `Bearer ${key}`,
      "content-type": "application/json",
      ...(init.headers as Record<string, string>),
    },
    body: JSON.stringify({
      model: "qwen3-8b",
      max_tokens: 300,
      messages: [],
      // As a client would ask: a stream where the stub answers with one.
      stream: ["stream", "slow-stream", "echo-key-stream", "endless"].includes(mode),
    }),
  });
}

/**
 * Sends a completion and gives up before any answer came (an SDK's timeout); resolves once the
 * proxy saw the client leave (it logs the request as over). Says whether a response came.
 */
async function giveUp(url: string, mode: string, stub: Stub, lines: string[]) {
  let answered = false;
  const req = http.request(`${url}/v1/chat/completions?mode=${mode}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
  });
  req.on("response", () => {
    answered = true;
  });
  req.on("error", () => {});
  req.end(JSON.stringify({ model: "qwen3-8b", max_tokens: 300, messages: [] }));
  await vi.waitFor(() => expect(stub.seen).toHaveLength(1));
  req.destroy();
  await vi.waitFor(() => expect(lines.some((line) => line.includes('"msg":"request"'))).toBe(true));
  return () => answered;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("recording proxy", () => {
  it("forwards headers both ways minus hop-by-hop and audit headers, and records the receipt", async () => {
    const { stub, proxy, url, row } = await setup();
    // node:http rather than fetch: fetch refuses to send a Connection header.
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request(`${url}/v1/chat/completions?mode=json`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${key}`,
          "content-type": "application/json",
          "x-audit-tag-team": "search",
          "x-audit-token": "our-own-token",
          "x-client-custom": "yes",
          connection: "keep-alive, x-hop",
          "x-hop": "dropped",
        },
      });
      req.on("response", resolve).on("error", reject);
      req.end(JSON.stringify({ model: "qwen3-8b", max_tokens: 300, messages: [] }));
    });
    expect(response.statusCode).toBe(200);
    expect(response.headers["x-upstream-custom"]).toBe("kept");
    expect(response.headers["set-cookie"]).toEqual(["a=1", "b=2"]);
    expect(response.headers["x-decentral-job-id"]).toBe(stub.receipt.jobId);
    let text = "";
    for await (const chunk of response) text += chunk;
    expect(JSON.parse(text).usage.total_tokens).toBe(33);

    const forwarded = stub.seen[0];
    expect(forwarded?.authorization).toBe(`Bearer ${key}`);
    expect(forwarded?.["x-client-custom"]).toBe("yes");
    expect(forwarded?.["x-audit-tag-team"]).toBeUndefined();
    expect(forwarded?.["x-audit-token"]).toBeUndefined();
    expect(forwarded?.["x-hop"]).toBeUndefined();

    await proxy.idle();
    expect(row()).toMatchObject({
      source: "proxy",
      captureState: "complete",
      escrowTx: stub.receipt.escrowTx,
      settlementTx: stub.receipt.settlementTx,
      worker: stub.receipt.worker,
      creditsRemainingUnits: 9_915_000n,
      model: "qwen3-8b",
      promptTokens: 11,
      completionTokens: 22,
      totalTokens: 33,
      maxTokens: 300,
      stream: false,
      httpStatus: 200,
      tags: { team: "search" },
      keyFingerprint: keyFingerprint(`Bearer ${key}`),
      apiStatus: "settled",
      apiCreditsChargedUnits: 80_000n,
      apiSettlementTx: stub.receipt.settlementTx,
      backfillState: null,
    });
  });

  it("dates a job by its receipt's commit, so a report's final instant read while it ran holds", async () => {
    // The proxy's clock: the job runs for a minute.
    let clock = Date.now();
    const { store, stub, proxy, url, row } = await setup({ now: () => clock });
    const from = clock - 3_600_000;
    const answered = completion(url, "slow-json");
    await vi.waitFor(() => expect(stub.seen).toHaveLength(1));
    clock += 60_000;
    // A dashboard reads the period while the job runs: it is final up to a moment ago.
    const during = await reconciliationReport(
      store,
      { from, to: clock + 60_000, groupBy: "day" },
      () => clock,
    );
    expect(during.totals.jobs).toBe(0);
    stub.nextChunk.open();
    await (await answered).text();
    await proxy.idle();
    // The job lands after the instant the report called final, not in the final part.
    expect(row()!.createdAt).toBeGreaterThanOrEqual(during.dataCompleteUntil);
    const again = await reconciliationReport(store, {
      from,
      to: during.dataCompleteUntil,
      groupBy: "day",
    });
    expect(again.totals.jobs).toBe(0);
  });

  it("prices by the request's model whatever its content type, never by the response's", async () => {
    const { proxy, url, row } = await setup();
    // `fetch` with a string body says text/plain: the body is JSON all the same.
    const plain = await fetch(`${url}/v1/chat/completions?mode=json`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: "phi-4-mini", max_completion_tokens: 100, messages: [] }),
    });
    await plain.text();
    await proxy.idle();
    expect(row()).toMatchObject({ model: "phi-4-mini", responseModel: "qwen3-8b", maxTokens: 100 });

    // A body that is no JSON names no model: the response's is kept only to compare.
    const other = await setup();
    const form = await fetch(`${other.url}/v1/chat/completions?mode=json`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${key}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: "model=phi-4-mini&max_tokens=100",
    });
    await form.text();
    await other.proxy.idle();
    expect(other.row()).toMatchObject({ model: null, responseModel: "qwen3-8b", maxTokens: null });
  });

  it("never sends a request its client left while it waited for an upstream socket", async () => {
    // One socket: a slow job holds it, and a second request waits in the pool's queue.
    const { stub, proxy, url } = await setup({ maxSockets: 1 });
    const slow = completion(url, "slow-json");
    await vi.waitFor(() => expect(stub.seen).toHaveLength(1));
    const waiting = http.request(`${url}/v1/chat/completions?mode=json`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    });
    waiting.on("error", () => {});
    waiting.end(JSON.stringify({ model: "qwen3-8b", messages: [] }));
    await sleep(100);
    // The caller gives up before any byte of its request reached the upstream.
    waiting.destroy();
    await sleep(50);
    stub.nextChunk.open();
    await (await slow).text();
    await proxy.idle();
    await sleep(100);
    // Sent now, it would run (and charge) a job nobody waits for, ahead of callers who do.
    expect(stub.paths.filter((path) => path.startsWith("/v1/chat/"))).toEqual([
      "/v1/chat/completions?mode=slow-json",
    ]);
  });

  it("records a ceiling the API would take as set, written as digits or far above any context", async () => {
    // Read as "none set", either would be judged against the default of 2,000 tokens, and the
    // honest lock at the request's own ceiling would look like an over-lock.
    for (const [ceiling, recorded] of [
      ["4000", 4000],
      [150_000_000, 150_000_000],
      ["four thousand", null],
    ] as const) {
      const { proxy, url, row } = await setup();
      const answer = await fetch(`${url}/v1/chat/completions?mode=json`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "qwen3-8b", max_tokens: ceiling, messages: [] }),
      });
      await answer.text();
      await proxy.idle();
      expect({ ceiling, maxTokens: row()?.maxTokens }).toEqual({ ceiling, maxTokens: recorded });
    }
  });

  it("sends a stream's head at once when its first event is slow to come", async () => {
    const { stub, proxy, url, row } = await setup();
    const pending = completion(url, "late-first-chunk");
    // The status and the job id reach the client while the model has not said a word yet.
    const response = await Promise.race([pending, sleep(2000).then(() => null)]);
    expect(response?.status).toBe(200);
    expect(response?.headers.get("x-decentral-job-id")).toBe(stub.receipt.jobId);
    stub.nextChunk.open();
    expect(await (await pending).text()).toContain("[DONE]");
    await proxy.idle();
    expect(row()?.captureState).toBe("complete");
  });

  it("streams chunk by chunk: the first event arrives before the upstream sends the next", async () => {
    const { stub, proxy, url, row } = await setup();
    const response = await completion(url, "stream");
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('"content":"a"');
    // The receipt exists while the stream is still open: a crash now loses nothing.
    await vi.waitFor(() => expect(row()?.captureState).toBe("open"));
    stub.nextChunk.open();
    let rest = "";
    for (;;) {
      const next = await reader.read();
      if (next.done) break;
      rest += new TextDecoder().decode(next.value);
    }
    expect(rest).toContain("[DONE]");
    await proxy.idle();
    expect(row()).toMatchObject({
      captureState: "complete",
      stream: true,
      totalTokens: 3,
      settlementTx: stub.receipt.settlementTx,
      apiSettlementTx: stub.receipt.settlementTx,
      backfillState: "done",
    });
  });

  it("aborts the upstream request when the client disconnects mid-stream", async () => {
    const { stub, url, row } = await setup();
    const controller = new AbortController();
    const response = await completion(url, "endless", { signal: controller.signal });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    controller.abort();
    await stub.upstreamClosed;
    await vi.waitFor(() => expect(row()?.captureState).toBe("aborted"));
    expect(row()?.totalTokens).toBeNull();
  });

  it.each([
    ["straight to the proxy, as serve runs it", true],
    ["through the app's route, as an app built with createApp serves it", false],
  ])("records an error response with the Decentral headers it carries (%s)", async (_, direct) => {
    const { stub, proxy, url, row, lines } = await setup({ direct });
    const response = await completion(url, "timeout", { headers: { "x-request-id": "req-504" } });
    expect(response.status).toBe(504);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("timeout");
    await proxy.idle();
    expect(row()).toMatchObject({
      httpStatus: 504,
      escrowTx: stub.receipt.escrowTx,
      captureState: "complete",
      promptTokens: null,
    });
    // The request log line tells the status the client got, not the adapter's placeholder.
    const logged = () =>
      lines
        .map(
          (line) =>
            JSON.parse(line) as { msg: string; path?: string; status?: number; requestId?: string },
        )
        .filter((line) => line.msg === "request" && line.path === "/v1/chat/completions");
    await vi.waitFor(() => expect(logged().map((l) => l.status)).toEqual([504]));
    expect(logged()[0]?.requestId).toBe("req-504");
  });

  it.each([
    ["straight to the proxy, as serve runs it", true],
    ["through the app's route, as an app built with createApp serves it", false],
  ])("logs a caller's request id escaped and cut to 128 characters (%s)", async (_, direct) => {
    const { proxy, url, lines } = await setup({ direct });
    // A header may carry a C1 control (U+009B, a terminal's CSI) and be 16 KiB long.
    const given = `req\u009b31m-${"x".repeat(10_000)}`;
    const response = await completion(url, "json", { headers: { "x-request-id": given } });
    await response.arrayBuffer();
    const health = await fetch(`${url}/healthz`, { headers: { "x-request-id": given } });
    await proxy.idle();
    const shown = `req\\u009b31m-${"x".repeat(128 - 16)}...`;
    expect(shown).toHaveLength(128);
    expect(health.headers.get("x-request-id")).toBe(shown);
    const ids = () =>
      lines
        .map((line) => JSON.parse(line) as { msg: string; path?: string; requestId?: string })
        .filter((line) => line.msg === "request")
        .map((line) => [line.path, line.requestId]);
    await vi.waitFor(() =>
      expect(ids()).toEqual([
        ["/v1/chat/completions", shown],
        ["/healthz", shown],
      ]),
    );
    // A request naming none, or an empty one, gets a fresh id.
    const fresh = await fetch(`${url}/healthz`, { headers: { "x-request-id": " " } });
    expect(fresh.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("records malformed receipt headers as unknown, never as a signature or a wallet", async () => {
    const { proxy, url, row, lines } = await setup();
    const response = await completion(url, "malformed");
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    await proxy.idle();
    expect(row()).toMatchObject({ escrowTx: null, worker: null });
    expect(lines.join("\n")).toContain("malformed receipt header");
  });

  it("withholds a paid answer whose job id cannot be recorded: 502, never an answer without a receipt", async () => {
    const { proxy, store, url, lines } = await setup();
    for (const mode of ["jobid-bad", "jobid-two"]) {
      const response = await completion(url, mode);
      expect(response.status, mode).toBe(502);
      const body = (await response.json()) as { error: { code: string } };
      expect(body.error.code).toBe("upstream_receipt_invalid");
    }
    await proxy.idle();
    expect(store.db.select().from(jobs).all()).toEqual([]);
    expect(lines.join("\n")).toContain("upstream answer names no recordable job id");
  });

  it("keeps the tags ingest would accept, so a proxied receipt can be posted again as it is", async () => {
    const { proxy, url, row } = await setup();
    const headers: Record<string, string> = {
      "x-audit-tag-.hidden": "a name ingest refuses",
      "x-audit-tag-long": "x".repeat(300),
      // An emoji across the 256th character: cut before it, not through it.
      "x-audit-tag-emoji": Buffer.from(`${"e".repeat(255)}🔍 and more`, "utf8").toString("latin1"),
      "x-audit-tag-tabbed": "a\tvalue",
      // UTF-8 bytes, as curl or Go send them (a header is bytes; Node reads them as latin1).
      "x-audit-tag-user": Buffer.from("محمد 🔍", "utf8").toString("latin1"),
    };
    for (let i = 0; i < 40; i++) headers[`x-audit-tag-t${i}`] = String(i);
    const response = await completion(url, "json", { headers });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    await proxy.idle();
    const tags = row()?.tags ?? {};
    expect(Object.keys(tags)).toHaveLength(32);
    expect(tags).not.toHaveProperty(".hidden");
    // A label never costs the receipt: kept as written (printed inert wherever it is shown).
    expect(tags.tabbed).toBe("a\tvalue");
    expect(tags.user).toBe("محمد 🔍");
    expect(tags.long).toBe("x".repeat(256));
    expect(tags.emoji).toBe("e".repeat(255));
    expect(Object.keys(tags).every((name) => /^[a-z0-9][a-z0-9_.-]{0,63}$/.test(name))).toBe(true);
  });

  it("never logs a request's query, where a caller may put its key", async () => {
    const { proxy, url, lines } = await setup();
    const secret = "dcntrl_live_QUERYSECRET";
    for (const mode of ["malformed", "jobid-bad"]) {
      const response = await fetch(`${url}/v1/chat/completions?mode=${mode}&api_key=${secret}`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "qwen3-8b", max_tokens: 300, messages: [], stream: false }),
      });
      await response.arrayBuffer();
    }
    await proxy.idle();
    const log = lines.join("\n");
    expect(log).toContain("malformed receipt header");
    expect(log).toContain("upstream answer names no recordable job id");
    expect(log).toContain('"path":"/v1/chat/completions"');
    expect(log).not.toContain(secret);
  });

  it("passes on an error answer whose job id header is empty: it names no job", async () => {
    const { proxy, store, url } = await setup();
    const response = await completion(url, "jobid-empty");
    expect(response.status).toBe(402);
    await response.arrayBuffer();
    await proxy.idle();
    expect(store.db.select().from(jobs).all()).toEqual([]);
  });

  it("reads a receipt header sent twice with the same value as that value", async () => {
    const { proxy, url, row } = await setup();
    const response = await completion(url, "jobid-same");
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    await proxy.idle();
    expect(row()).toMatchObject({ captureState: "complete", httpStatus: 200 });
  });

  it("answers a complete body followed by junk as the upstream answered it, and records that", async () => {
    const { proxy, url, row } = await setup();
    const response = await completion(url, "trailing");
    expect(response.status).toBe(200);
    expect(((await response.json()) as { id: string }).id).toBe("chatcmpl-4");
    await proxy.idle();
    expect(row()).toMatchObject({ captureState: "complete", httpStatus: 200, completionTokens: 2 });
  });

  it("records a paid answer that carries one long unrelated header", async () => {
    const { proxy, url, row } = await setup();
    // A client that reads heads this long itself (fetch stops at 16 KiB too).
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${url}/v1/chat/completions?mode=long-header`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        maxHeaderSize: 256 * 1024,
      });
      req.on("error", reject);
      req.on("response", async (res) => {
        let body = "";
        for await (const chunk of res) body += String(chunk);
        resolve({ status: res.statusCode ?? 0, body });
      });
      req.end(JSON.stringify({ model: "qwen3-8b", max_tokens: 300, messages: [] }));
    });
    expect(answer.status).toBe(200);
    expect((JSON.parse(answer.body) as { id: string }).id).toBe("chatcmpl-7");
    await proxy.idle();
    expect(row()).toMatchObject({ captureState: "complete", httpStatus: 200 });
  });

  it("says an answer it cannot parse was unreadable, not unreachable, and logs its job", async () => {
    const { proxy, store, stub, url, lines } = await setup();
    const response = await completion(url, "control-char");
    expect(response.status).toBe(502);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("upstream_answer_unreadable");
    expect(body.error.message).not.toContain("could not be reached");
    await proxy.idle();
    expect(store.db.select().from(jobs).all()).toEqual([]);
    const line = lines.find((l) => l.includes("upstream answer came but could not be parsed"));
    expect(line).toBeDefined();
    const logged = JSON.parse(line ?? "{}") as Record<string, unknown>;
    expect(logged.level).toBe(50);
    expect(logged.jobId).toBe(`${stub.receipt.jobId}\x01`);
    expect(logged.escrowTx).toBe(stub.receipt.escrowTx);

    // What it logs of such an answer is the operator's: a key echoed there is cut.
    expect((await completion(url, "control-char-echo")).status).toBe(502);
    await proxy.idle();
    expect(lines.join("\n")).toContain('"escrowTx":"[redacted]"');
    expect(lines.join("\n")).not.toContain(key);
  });

  it("logs the job of an answer whose head is too long to read, its job's headers read first", async () => {
    const { proxy, store, stub, url, lines } = await setup();
    const response = await completion(url, "overlong-header");
    expect(response.status).toBe(502);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe(
      "upstream_answer_unreadable",
    );
    await proxy.idle();
    expect(store.db.select().from(jobs).all()).toEqual([]);
    const line = lines.find((l) => l.includes("upstream answer came but could not be parsed"));
    const logged = JSON.parse(line ?? "{}") as Record<string, unknown>;
    // The job ran and was charged: the log is where an operator finds it.
    expect(logged).toMatchObject({
      level: 50,
      status: "200",
      jobId: stub.receipt.jobId,
      escrowTx: stub.receipt.escrowTx,
    });
  });

  it("records an event stream as a stream even when the request did not ask for one, with no usage its client read", async () => {
    const { proxy, url, row } = await setup();
    const response = await fetch(`${url}/v1/chat/completions?mode=sse-unasked`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "qwen3-8b", messages: [], stream: false }),
    });
    await response.text();
    await proxy.idle();
    // An SDK parses the answer to a request without `stream` as JSON, and fails: the usage in
    // the events is none its caller read.
    expect(row()).toMatchObject({ stream: true, completionTokens: null, captureState: "complete" });
  });

  it("records a job whose client gave up before the answer: the upstream ran it and charged it", async () => {
    const { stub, proxy, url, row, lines } = await setup();
    const answered = await giveUp(url, "slow-json", stub, lines);
    // The upstream is still running the job: it counts as in flight.
    let idle = false;
    const idled = proxy.idle().then(() => {
      idle = true;
    });
    await sleep(100);
    expect(idle).toBe(false);
    stub.nextChunk.open();
    await idled;
    expect(row()).toMatchObject({
      source: "proxy",
      captureState: "aborted",
      httpStatus: 200,
      escrowTx: stub.receipt.escrowTx,
      settlementTx: stub.receipt.settlementTx,
      worker: stub.receipt.worker,
      model: "qwen3-8b",
      totalTokens: 9,
      stream: false,
      apiStatus: "settled",
      apiCreditsChargedUnits: 80_000n,
    });
    expect(answered()).toBe(false);
  });

  it("records the open receipt of a stream whose client gave up before it began, then ends it", async () => {
    const { stub, proxy, url, row, lines } = await setup();
    const answered = await giveUp(url, "slow-stream", stub, lines);
    stub.nextChunk.open();
    await vi.waitFor(() => expect(row()?.captureState).toBe("aborted"));
    // Nobody reads the stream: the upstream request ends, as when a client leaves mid-stream.
    await stub.upstreamClosed;
    await proxy.idle();
    expect(row()).toMatchObject({
      captureState: "aborted",
      stream: true,
      escrowTx: stub.receipt.escrowTx,
      totalTokens: null,
      apiSettlementTx: stub.receipt.settlementTx,
    });
    expect(answered()).toBe(false);
  });

  it("waits for an answer whose client left only until the stop's drain ends, or its bound", async () => {
    const { stub, proxy, url, row, lines } = await setup();
    await giveUp(url, "silent", stub, lines);
    let drained = false;
    const drain = proxy.drain(300).then(() => {
      drained = true;
    });
    await sleep(100);
    expect(drained).toBe(false);
    await drain;
    await stub.upstreamClosed;
    await proxy.idle();
    expect(row()).toBeUndefined();
    expect(lines.join("\n")).toContain("no answer came for a request whose client left");

    // Outside a stop, an upstream that never answers is given up after `abandonedWaitMs`.
    const bounded = await setup({ abandonedWaitMs: 200 });
    await giveUp(bounded.url, "silent", bounded.stub, bounded.lines);
    await bounded.stub.upstreamClosed;
    await bounded.proxy.idle();
    expect(bounded.row()).toBeUndefined();
  });

  it("ends at the drain an answer whose client left and that never ends, recording it aborted", async () => {
    const { stub, proxy, url, row, lines } = await setup();
    await giveUp(url, "slow-unending-json", stub, lines);
    stub.nextChunk.open();
    await sleep(100);
    await proxy.drain(100);
    await stub.upstreamClosed;
    await proxy.idle();
    expect(row()).toMatchObject({
      captureState: "aborted",
      escrowTx: stub.receipt.escrowTx,
      totalTokens: null,
    });
    expect(lines.join("\n")).toContain("did not end in time; recorded as aborted");
  });

  it("waits in idle() for a response cut off in flight to record its outcome", async () => {
    const { proxy, url, row } = await setup();
    const controller = new AbortController();
    const response = await completion(url, "endless", { signal: controller.signal });
    expect(response.status).toBe(200);
    controller.abort();
    await proxy.idle();
    expect(row()?.captureState).toBe("aborted");
  });

  it("answers 503 rather than an unrecorded response when the database refuses the receipt, logging it as an import line", async () => {
    const { store, stub, url, row, lines } = await setup();
    store.sqlite.exec(`CREATE TRIGGER refused BEFORE INSERT ON jobs
      BEGIN SELECT RAISE(ABORT, 'disk says no'); END`);
    const response = await completion(url, "json", { headers: { "x-audit-tag-team": "search" } });
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({
      error: { code: "receipt_not_recorded", type: "server_error" },
    });
    expect(row()).toBeUndefined();

    // The job ran and was charged: once the database takes writes, its logged line imports it
    // with every fact the proxy had (its usage and model price it), not its names alone.
    const line = lines.find((l) => l.includes("receipt not recorded"));
    const logged = JSON.parse(line ?? "{}") as { import?: unknown };
    store.sqlite.exec("DROP TRIGGER refused");
    const summary = await importReceipts(
      store,
      Readable.from([`${JSON.stringify(logged.import)}\n`]),
    );
    expect(summary).toMatchObject({ created: 1, rejected: [] });
    expect(row()).toMatchObject({
      escrowTx: stub.receipt.escrowTx,
      settlementTx: stub.receipt.settlementTx,
      worker: stub.receipt.worker,
      creditsRemainingUnits: 9_915_000n,
      model: "qwen3-8b",
      promptTokens: 11,
      completionTokens: 22,
      totalTokens: 33,
      maxTokens: 300,
      httpStatus: 200,
      tags: { team: "search" },
      keyFingerprint: keyFingerprint(`Bearer ${key}`),
      // Its client got the 503, none of the answer.
      captureState: "aborted",
    });
  });

  it("turns the next job away naming the database, not a backlog, while the database refuses writes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "proxy-refused-"));
    const store = openSqliteStore(join(dir, "audit.db"));
    migrateStore(store);
    cleanups.push(async () => {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    // Refused at COMMIT, as a full disk refuses a WAL that cannot grow (a deferred foreign key).
    store.sqlite.exec(`CREATE TABLE refused_at_commit (
        job_id TEXT REFERENCES jobs(job_id) DEFERRABLE INITIALLY DEFERRED);
      CREATE TRIGGER refused AFTER INSERT ON jobs
        BEGIN INSERT INTO refused_at_commit (job_id) VALUES ('job_not_there'); END`);
    const writer = createReceiptWriter(store, {
      log: createLogger({ level: "silent" }),
      refuseAfterMs: 1000,
    });
    cleanups.push(() => writer.close());
    const { stub, url } = await setup({ store, writer });
    const first = completion(url, "json");
    // The writer says it refuses once its first failed commit is `refuseAfterMs` (1 s) old:
    // waited for beyond that (vi.waitFor's own bound is that same second, which a loaded host
    // missed in a run of the whole suite).
    await vi.waitFor(() => expect(writer.health()).toMatchObject({ refusing: true }), {
      timeout: 10_000,
    });
    const next = await completion(url, "json");
    expect(next.status).toBe(503);
    expect(next.headers.get("retry-after")).toBe("1");
    expect(await next.json()).toMatchObject({
      error: { code: "receipt_store_unavailable", message: expect.stringContaining("refuses") },
    });
    // Not forwarded: no job ran for it.
    expect(stub.seen).toHaveLength(1);
    expect((await first).status).toBe(503);
  });

  /** A store in a file of its own (a full disk refuses its COMMIT) and a writer over it. */
  function fileStoreWithWriter(options: { refuseAfterMs: number; maxKept?: number }) {
    const dir = mkdtempSync(join(tmpdir(), "proxy-refused-"));
    const store = openSqliteStore(join(dir, "audit.db"));
    migrateStore(store);
    cleanups.push(async () => {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const writer = createReceiptWriter(store, {
      log: createLogger({ level: "silent" }),
      ...options,
    });
    cleanups.push(() => writer.close());
    return { store, writer };
  }

  /**
   * The disk fills up: every write to jobs refused at COMMIT, as a WAL that cannot grow is
   * (`DROP TRIGGER refused` lifts it).
   */
  function refuseCommits(store: SqliteStore) {
    store.sqlite.exec(`CREATE TABLE refused_at_commit (
        job_id TEXT REFERENCES jobs(job_id) DEFERRABLE INITIALLY DEFERRED);
      CREATE TRIGGER refused AFTER UPDATE ON jobs
        BEGIN INSERT INTO refused_at_commit (job_id) VALUES ('job_not_there'); END`);
  }

  it("ends a stream whose completion the database refuses, and writes that completion once it takes writes", async () => {
    const { store, writer } = fileStoreWithWriter({ refuseAfterMs: 300 });
    const { stub, url, row } = await setup({ store, writer });
    const response = await completion(url, "stream");
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await vi.waitFor(() => expect(row()?.captureState).toBe("open"));
    // The disk fills up mid-stream.
    refuseCommits(store);
    stub.nextChunk.open();
    let rest = "";
    for (;;) {
      const next = await reader.read();
      if (next.done) break;
      rest += new TextDecoder().decode(next.value);
    }
    // The client has its whole answer; the completion waits in memory, not in the row.
    expect(rest).toContain("[DONE]");
    expect(row()?.captureState).toBe("open");
    expect(writer.health()).toMatchObject({ reachable: false, refusing: true, waiting: 1 });

    store.sqlite.exec("DROP TRIGGER refused");
    await vi.waitFor(
      () => expect(row()).toMatchObject({ captureState: "complete", totalTokens: 3 }),
      {
        timeout: 10_000,
      },
    );
  });

  it("records a stream answered 503 for want of its open receipt as aborted once the database takes writes", async () => {
    const { store, writer } = fileStoreWithWriter({ refuseAfterMs: 300 });
    const { stub, url, row, lines } = await setup({ store, writer });
    // The disk is full before the stream's headers come: its open receipt is refused.
    store.sqlite.exec(`CREATE TABLE refused_at_commit (
        job_id TEXT REFERENCES jobs(job_id) DEFERRABLE INITIALLY DEFERRED);
      CREATE TRIGGER refused AFTER INSERT ON jobs
        BEGIN INSERT INTO refused_at_commit (job_id) VALUES ('job_not_there'); END`);
    stub.nextChunk.open();
    const response = await completion(url, "stream");
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: { code: "receipt_not_recorded" } });
    // The disk stays full a while.
    await new Promise((resolve) => setTimeout(resolve, 300));
    store.sqlite.exec("DROP TRIGGER refused");
    // The job ran and was charged, so its completion is written, but its client got none of it.
    await vi.waitFor(() => expect(row()).toMatchObject({ captureState: "aborted" }), {
      timeout: 10_000,
    });
    // Dated when its answer came, not when the disk took writes again (which failed
    // `receipt.time` and put the job in a period it did not run in).
    const written = row();
    expect(written?.createdAt).toBe(written?.respondedAt);
    // The 503's import line says so too: imported where the completion never came (the process
    // stopped first), the job is no answer its client read whole.
    const line = lines.find((l) => l.includes("receipt not recorded; answering 503"));
    const logged = JSON.parse(line ?? "{}") as { import?: unknown };
    expect(logged.import).toMatchObject({ job_id: stub.receipt.jobId, capture_state: "aborted" });
    expect(logged.import).toMatchObject({
      created_at: new Date(written?.createdAt ?? 0).toISOString(),
    });
    // So the line adds nothing to the row the completion wrote: one time, one job.
    expect(
      await importReceipts(store, Readable.from([`${JSON.stringify(logged.import)}\n`])),
    ).toMatchObject({ duplicate: 1, conflicts: [] });
    const elsewhere = createTestStore();
    const imported = await importReceipts(
      elsewhere,
      Readable.from([`${JSON.stringify(logged.import)}\n`]),
    );
    expect(imported).toMatchObject({ created: 1, rejected: [] });
    const job = elsewhere.db.select().from(jobs).where(eq(jobs.jobId, stub.receipt.jobId)).get();
    expect(job).toMatchObject({ source: "import", captureState: "aborted" });
    elsewhere.close();
  });

  it("dates both import lines of a stream refused from its open receipt on alike, so their import keeps the usage", async () => {
    const { store, writer } = fileStoreWithWriter({ refuseAfterMs: 100, maxKept: 0 });
    const { stub, url, lines } = await setup({ store, writer });
    store.sqlite.exec(`CREATE TABLE refused_at_commit (
        job_id TEXT REFERENCES jobs(job_id) DEFERRABLE INITIALLY DEFERRED);
      CREATE TRIGGER refused AFTER INSERT ON jobs
        BEGIN INSERT INTO refused_at_commit (job_id) VALUES ('job_not_there'); END`);
    stub.nextChunk.open();
    expect((await completion(url, "stream")).status).toBe(503);
    // The completion cannot be written or kept either: both are logged, as the README's
    // recipe (`jq -c 'select(.import) | .import'`) gathers them.
    await vi.waitFor(() =>
      expect(lines.some((l) => l.includes("receipt completion not recorded"))).toBe(true),
    );
    const imports = lines.flatMap((l) => {
      const logged = JSON.parse(l) as { import?: Record<string, unknown> };
      return logged.import === undefined ? [] : [logged.import];
    });
    expect(imports).toHaveLength(2);
    // Dated at shutdown or at the attempt, the completion's line conflicted with the 503's,
    // and its usage stayed out of the job.
    expect(imports[1]?.created_at).toBe(imports[0]?.created_at);
    const elsewhere = createTestStore();
    const file = imports.map((line) => `${JSON.stringify(line)}\n`).join("");
    expect(await importReceipts(elsewhere, Readable.from([file]))).toMatchObject({
      created: 1,
      updated: 1,
      conflicts: [],
    });
    const job = elsewhere.db.select().from(jobs).where(eq(jobs.jobId, stub.receipt.jobId)).get();
    expect(job).toMatchObject({ captureState: "aborted", totalTokens: 3 });
    elsewhere.close();
  });

  it("logs a refused completion's every fact when it cannot be kept, for an import", async () => {
    const { store, writer } = fileStoreWithWriter({ refuseAfterMs: 100, maxKept: 0 });
    const { stub, url, row, lines } = await setup({ store, writer });
    const response = await completion(url, "stream");
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await vi.waitFor(() => expect(row()?.captureState).toBe("open"));
    refuseCommits(store);
    stub.nextChunk.open();
    while (!(await reader.read()).done);
    const line = lines.find((l) => l.includes("receipt completion not recorded"));
    expect(line).toBeDefined();
    // As a line of an import file too, which `import` takes as it is.
    expect(JSON.parse(line ?? "{}").import).toMatchObject({
      job_id: stub.receipt.jobId,
      escrow_tx: stub.receipt.escrowTx,
      worker: stub.receipt.worker,
      credits_remaining: "991.5000",
      usage: { total_tokens: 3 },
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    expect(JSON.parse(line ?? "{}")).toMatchObject({
      level: 50,
      msg: expect.stringContaining("its facts are logged"),
      receipt: {
        jobId: stub.receipt.jobId,
        escrowTx: stub.receipt.escrowTx,
        worker: stub.receipt.worker,
        creditsRemainingUnits: "9915000",
        totalTokens: 3,
        captureState: "complete",
        createdAt: expect.any(Number),
      },
    });
    // Imported once the database takes writes, the line completes the row the proxy opened
    // (it was a conflicting receipt, the job left open without usage), once.
    store.sqlite.exec("DROP TRIGGER refused");
    const file = () => Readable.from([`${JSON.stringify(JSON.parse(line ?? "{}").import)}\n`]);
    expect(await importReceipts(store, file())).toMatchObject({ updated: 1, conflicts: [] });
    expect(row()).toMatchObject({
      source: "proxy",
      captureState: "complete",
      totalTokens: 3,
      backfillState: "pending",
    });
    expect(await importReceipts(store, file())).toMatchObject({ duplicate: 1, conflicts: [] });
  });

  describe("while another process holds the write lock", () => {
    function fileStore() {
      const dir = mkdtempSync(join(tmpdir(), "proxy-lock-"));
      const store = openSqliteStore(join(dir, "audit.db"));
      migrateStore(store);
      const other = new Database(join(dir, "audit.db"));
      other.pragma("busy_timeout = 5000");
      cleanups.push(async () => {
        if (other.inTransaction) other.exec("ROLLBACK");
        other.close();
        store.close();
        rmSync(dir, { recursive: true, force: true });
      });
      return { store, other };
    }

    it("holds the response until its receipt is committed and keeps answering /healthz", async () => {
      const { store, other } = fileStore();
      const { url, row } = await setup({ store });
      other.exec("BEGIN IMMEDIATE");
      let answered = false;
      const pending = completion(url, "json").then((r) => {
        answered = true;
        return r;
      });
      // The proxy retries the write from a timer: health checks are served meanwhile. A write
      // waiting in SQLite's busy handler holds the loop for the store's busy timeout (5 s); a
      // loaded host takes a few hundred ms for a round trip, so the bound lies between them.
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        const health = await fetch(`${url}/healthz`);
        expect(health.status).toBe(200);
        expect(performance.now() - started).toBeLessThan(2_000);
      }
      expect(answered).toBe(false);
      expect(row()).toBeUndefined();
      other.exec("COMMIT");
      const response = await pending;
      expect(response.status).toBe(200);
      await response.json();
      expect(row()).toMatchObject({ captureState: "complete", totalTokens: 33 });
    });

    it("sends no byte of a stream before its open receipt is committed", async () => {
      const { store, other } = fileStore();
      const { stub, proxy, url, row } = await setup({ store });
      other.exec("BEGIN IMMEDIATE");
      let headersAt = 0;
      const pending = completion(url, "stream").then((r) => {
        headersAt = Date.now();
        return r;
      });
      await vi.waitFor(() => expect(stub.seen.length).toBe(1));
      await new Promise((r) => setTimeout(r, 100));
      expect(headersAt).toBe(0);
      other.exec("COMMIT");
      const response = await pending;
      expect(row()).toMatchObject({ captureState: "open" });
      stub.nextChunk.open();
      await response.text();
      await proxy.idle();
      expect(row()).toMatchObject({ captureState: "complete", totalTokens: 3 });
    });

    it("answers an ingest post only once its batch is committed, serving /healthz meanwhile", async () => {
      const { store, other } = fileStore();
      const { url } = await setup({ store });
      const token = await ingestToken(store);
      other.exec("BEGIN IMMEDIATE");
      let answered = false;
      const receipt = wireReceipt();
      const pending = fetch(`${url}/jobs`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify([receipt]),
      }).then((r) => {
        answered = true;
        return r;
      });
      for (let i = 0; i < 3; i++) expect((await fetch(`${url}/healthz`)).status).toBe(200);
      expect(answered).toBe(false);
      other.exec("COMMIT");
      const response = await pending;
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ created: 1 });
      const recorded = store.db
        .select()
        .from(jobs)
        .where(eq(jobs.jobId, String(receipt.job_id)));
      expect(recorded.get()).toBeDefined();
    });

    it("answers 503 before forwarding when the receipt backlog is full", async () => {
      const { store, other } = fileStore();
      const { stub, url } = await setup({ store, maxBacklog: 1 });
      other.exec("BEGIN IMMEDIATE");
      const first = completion(url, "json");
      await vi.waitFor(() => expect(stub.seen.length).toBe(1));
      await new Promise((r) => setTimeout(r, 50));
      const refused = await completion(url, "json");
      expect(refused.status).toBe(503);
      expect(refused.headers.get("retry-after")).toBe("1");
      expect(await refused.json()).toMatchObject({
        error: { code: "receipt_backlog_full", type: "server_error" },
      });
      expect(stub.seen.length).toBe(1);
      other.exec("COMMIT");
      expect((await first).status).toBe(200);
    });
  });

  it("never sends a paid request twice: an upstream that read it and reset answers 502", async () => {
    const store = createTestStore();
    const { log, lines } = capturedLogger();
    // Answers the first request of each connection, keeping it alive, then reads a second
    // request on it wholly (the job may have started) and resets the connection.
    const seenOn = new WeakMap<object, number>();
    let received = 0;
    const upstream = await listen(
      http.createServer((req, res) => {
        received++;
        const n = (seenOn.get(req.socket) ?? 0) + 1;
        seenOn.set(req.socket, n);
        if (n > 1) {
          req.resume();
          req.on("end", () => req.socket.destroy());
          return;
        }
        res.writeHead(200, { "content-type": "application/json", connection: "keep-alive" });
        res.end(JSON.stringify({ model: "qwen3-8b", choices: [] }));
      }),
    );
    cleanups.push(upstream.close);
    const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${upstream.url}/v1` });
    const app = await serveApp({ store, log, proxy });
    cleanups.push(app.close);
    const first = await completion(app.url, "json");
    expect(first.status).toBe(200);
    await first.text();
    const second = await completion(app.url, "json");
    expect(second.status).toBe(502);
    expect(((await second.json()) as { error: { code: string } }).error.code).toBe(
      "upstream_unavailable",
    );
    // Sent once: the upstream got two requests in all, not three.
    expect(received).toBe(2);
    expect(JSON.stringify(lines)).toContain("the job may have run and been charged");
  });

  it("drops an idle upstream socket before the upstream's announced keep-alive ends", async () => {
    const store = createTestStore();
    const { log } = capturedLogger();
    // Announces a keep-alive of 2 s, and resets a socket reused after 1.2 s idle, having read
    // the request: what a socket reused as the upstream closes it looks like.
    const lastUse = new WeakMap<object, number>();
    let connections = 0;
    const server = http.createServer((req, res) => {
      const idle = performance.now() - (lastUse.get(req.socket) ?? performance.now());
      if (idle > 1200) {
        req.resume();
        req.on("end", () => req.socket.destroy());
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ model: "qwen3-8b", choices: [] }));
      res.on("finish", () => lastUse.set(req.socket, performance.now()));
    });
    server.keepAliveTimeout = 2000;
    server.on("connection", () => connections++);
    const upstream = await listen(server);
    cleanups.push(upstream.close);
    const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${upstream.url}/v1` });
    const app = await serveApp({ store, log, proxy });
    cleanups.push(app.close);
    for (const pause of [0, 1500]) {
      await sleep(pause);
      const response = await completion(app.url, "json");
      expect(response.status, `after ${pause} ms`).toBe(200);
      await response.text();
    }
    // The second request went on a fresh connection: the first was dropped after 1 s idle.
    expect(connections).toBe(2);
  });

  it("answers 502 in the one error shape when the upstream is down", async () => {
    const store = createTestStore();
    const { log } = capturedLogger();
    const dead = await listen(http.createServer());
    await dead.close();
    const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${dead.url}/v1` });
    const app = await serveApp({ store, log, proxy });
    cleanups.push(app.close);
    const response = await completion(app.url, "json");
    expect(response.status).toBe(502);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe(
      "upstream_unavailable",
    );
  });

  it("reads no jobs API answer beyond 64 KiB: it says nothing, and nothing of it is kept", async () => {
    const huge = `{"status":"settled","pad":"${"x".repeat(2 * maxAnswerBytes)}"}`;
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(huge);
    });
    const upstream = await listen(server);
    cleanups.push(upstream.close);
    const answer = await createJobsApiClient(`${upstream.url}/v1`)(jobId(), `Bearer ${key}`);
    expect(answer).toMatchObject({ status: null, settlementTx: null, raw: null });
  });

  it("leaves an answer whole when the authorization is too short to be a key", () => {
    const body = '{"status":"settled","worker_address":"abc"}';
    expect(withoutKey(body, "")).toBe(body);
    expect(withoutKey(body, "Bearer ")).toBe(body);
    expect(withoutKey(body, "Bearer a")).toBe(body);
  });

  it("keeps no copy of the caller's key that a jobs API answer echoes back", async () => {
    const server = http.createServer((req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          status: "settled",
          debug: { authorization: req.headers.authorization, key: key, note: `key=${key};` },
        }),
      );
    });
    const upstream = await listen(server);
    cleanups.push(upstream.close);
    const answer = await createJobsApiClient(`${upstream.url}/v1`)(jobId(), `Bearer ${key}`);
    expect(answer.status).toBe("settled");
    expect(JSON.stringify(answer.raw)).not.toContain(key);
    expect(answer.raw).toMatchObject({
      debug: { authorization: "[redacted]", key: "[redacted]", note: "key=[redacted];" },
    });
  });

  it("counts jobs API calls by outcome for /metrics: an outage shows as failed calls", async () => {
    const server = http.createServer((req, res) => {
      const status = req.url?.endsWith("/job_gone")
        ? 404
        : req.url?.endsWith("/job_down")
          ? 500
          : 200;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(status === 200 ? '{"status":"settled"}' : "{}");
    });
    const upstream = await listen(server);
    cleanups.push(upstream.close);
    const client = createJobsApiClient(`${upstream.url}/v1`);
    const before = new Map(jobsApiCallCounts());
    await client("job_fine", `Bearer ${key}`);
    await client("job_down", `Bearer ${key}`).catch(() => {});
    await client("job_down", `Bearer ${key}`).catch(() => {});
    await client("job_gone", `Bearer ${key}`).catch(() => {});
    const added = (outcome: JobsApiCallOutcome) =>
      (jobsApiCallCounts().get(outcome) ?? 0) - (before.get(outcome) ?? 0);
    expect([added("answered"), added("failed"), added("refused")]).toEqual([1, 2, 1]);
    const text = await createMetrics({ store: createTestStore() }).registry.metrics();
    expect(text).toMatch(/decentral_audit_jobs_api_calls_total\{outcome="failed"\} \d+/);
  });

  it("keeps no copy of the caller's key that a jobs API answer writes with JSON escapes", async () => {
    // Every character of the key as a \u escape, and a name made of it: the raw text never
    // holds the key, the parsed answer does.
    const escaped = [...key].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(`{"status":"settled","echo":"${escaped.join("")}","${escaped.join("")}":1}`);
    });
    const upstream = await listen(server);
    cleanups.push(upstream.close);
    const answer = await createJobsApiClient(`${upstream.url}/v1`)(jobId(), `Bearer ${key}`);
    expect(answer.status).toBe("settled");
    expect(JSON.stringify(answer.raw)).not.toContain(key);
    expect(answer.raw).toMatchObject({ echo: "[redacted]", "[redacted]": 1 });
  });

  it("ends a jobs API call at once when its signal is aborted, before or after the answer starts", async () => {
    // One job's answer never comes; the other's headers come, then nothing.
    const server = http.createServer((req, res) => {
      if (req.url?.endsWith("/job_halfanswered1")) {
        res.writeHead(200, { "content-type": "application/json" });
        res.write('{"status":');
      }
    });
    const upstream = await listen(server);
    cleanups.push(upstream.close);
    const client = createJobsApiClient(`${upstream.url}/v1`, { timeoutMs: 5_000 });
    for (const id of ["job_unanswered1", "job_halfanswered1"]) {
      const stop = new AbortController();
      const started = performance.now();
      const call = client(id, `Bearer ${key}`, stop.signal).catch((error: unknown) => error);
      setTimeout(() => stop.abort(), 200);
      const error = await call;
      expect(error).toBeInstanceOf(JobsApiError);
      expect((error as JobsApiError).retryable).toBe(true);
      expect(performance.now() - started).toBeLessThan(2_000);
    }
  });

  it("refuses a path with a dot segment instead of forwarding it outside /v1", async () => {
    const { stub, url } = await setup();
    // As sent on the wire: fetch would resolve the dots itself.
    const raw = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(`${url}/`, { path, headers: { authorization: `Bearer ${key}` } });
        req.on("response", (res) => {
          let body = "";
          res.on("data", (chunk: Buffer) => {
            body += chunk.toString();
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on("error", reject);
        req.end();
      });
    for (const path of [
      "/v1/../admin",
      "/v1/%2e%2E/admin",
      "/v1/jobs/./x",
      "/v1/a/..",
      "/v1/models/..%2F..%2Fadmin",
      "/v1/..\\admin",
    ]) {
      const response = await raw(path);
      expect(response.status, path).toBe(400);
      expect(JSON.parse(response.body).error.code).toBe("invalid_path");
    }
    expect(stub.seen).toHaveLength(0);
    const fine = await fetch(`${url}/v1/models?x=../y`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect(fine.status).not.toBe(400);
  });

  it("never writes the caller's key to a log line", async () => {
    const { proxy, url, lines } = await setup();
    await (await completion(url, "json")).json();
    await proxy.idle();
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.join("\n")).not.toContain(key);
  });

  it("never stores or logs the caller's key when the operator echoes it, nor one put in the path", async () => {
    const { store, proxy, url, lines, row } = await setup();
    for (const mode of ["echo-key-json", "echo-key-stream"]) {
      await (await completion(url, mode)).text();
      await proxy.idle();
      expect(row()?.responseModel).toBe("echo [redacted]");
      store.sqlite.exec("DELETE FROM jobs");
    }
    const refused = await completion(url, "echo-key-jobid");
    expect(refused.status).toBe(502);
    // A caller who put the key in the path (some clients join a base URL holding it).
    await (
      await fetch(`${url}/v1/x/${key}/chat/completions?mode=echo-key-json`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: "{}",
      })
    ).text();
    await proxy.idle();
    expect(lines.join("\n")).toContain("names no recordable job id");
    expect(lines.join("\n")).toContain("/v1/x/[redacted]/chat/completions");
    expect(lines.join("\n")).not.toContain(key);
    expect(JSON.stringify(store.sqlite.prepare("SELECT * FROM jobs").all())).not.toContain(key);

    // Through the app's middleware too (an app built with createApp), whose request line names
    // the path.
    const viaApp = await setup({ direct: false });
    await (
      await fetch(`${viaApp.url}/v1/x/${key}/chat/completions?mode=echo-key-json`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: "{}",
      })
    ).text();
    await viaApp.proxy.idle();
    expect(viaApp.lines.join("\n")).toContain("/v1/x/[redacted]/chat/completions");
    expect(viaApp.lines.join("\n")).not.toContain(key);
  });

  it("refuses two Authorization headers with 400, forwarding nothing, and never echoes a key", async () => {
    const { proxy, url, row } = await setup();
    const other = "dcntrl_live_ZYXWVUTSRQPONMLKJIHGFEDCBA987654";
    const status = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${url}/v1/chat/completions?mode=json`, {
        method: "POST",
        agent: false,
        // Raw headers: a Headers object joins the two into one (and, given so, no host is added).
        headers: [
          "host",
          new URL(url).host,
          "authorization",
          `Bearer ${key}`,
          "Authorization",
          `Bearer ${other}`,
          "content-type",
          "application/json",
        ],
      });
      req.on("error", reject).on("response", (response) => {
        let body = "";
        response.setEncoding("utf8").on("data", (chunk) => (body += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      });
      req.end(JSON.stringify({ model: "qwen3-8b", max_tokens: 300, messages: [] }));
    });
    await proxy.idle();
    expect(status.status).toBe(400);
    expect(JSON.parse(status.body)).toMatchObject({
      error: {
        code: "bad_request",
        message: "the Authorization header was given 2 times; send it once",
      },
    });
    expect(status.body).not.toContain("dcntrl_");
    expect(row()).toBeUndefined();
  });

  it("never stores a key put in a tag: cut from a value, and a tag named with one left out", async () => {
    const { store, proxy, url, row } = await setup();
    const another = "dcntrl_test_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    const response = await fetch(`${url}/v1/chat/completions?mode=json`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${key}`,
        "content-type": "application/json",
        "x-audit-tag-k": key,
        "x-audit-tag-team": `billing ${another} eu`,
        [`x-audit-tag-${key}`]: "1",
      },
      body: JSON.stringify({ model: "qwen3-8b", max_tokens: 300, messages: [] }),
    });
    expect(response.status).toBe(200);
    await response.text();
    await proxy.idle();
    expect(row()?.tags).toEqual({ k: "[redacted]", team: "billing [redacted] eu" });
    const stored = JSON.stringify(store.sqlite.prepare("SELECT * FROM jobs").all()).toLowerCase();
    expect(stored).not.toContain(key.toLowerCase().slice(0, 16));
    expect(stored).not.toContain(another.toLowerCase().slice(0, 16));
  });

  it("cuts a long path in its request line, after taking a key out of it, so the line stays one whole write", async () => {
    // A path of 10 KB with a key across the point where the path is cut. On the direct path,
    // quotes and backslashes (two bytes each in JSON; Node takes no byte over 0x7e in a path);
    // the app's server refuses a backslash, and its path has a quote percent-encoded.
    const pathOf = (filler: string) =>
      `/v1/x/${filler}${key}/${"b".repeat(9_000)}/chat/completions?mode=json`;
    const send = (url: string, path: string) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request(`${url}/`, {
          method: "POST",
          path,
          agent: false,
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        });
        req.on("error", reject).on("response", (response) => {
          response.resume().on("end", () => resolve(response.statusCode ?? 0));
        });
        req.end("{}");
      });
    for (const [direct, filler] of [
      [true, `${'"\\'.repeat(400)}${"a".repeat(1_000 - 800 - 6)}`],
      [false, "a".repeat(1_000 - 6)],
    ] as const) {
      const { proxy, url, lines } = await setup({ direct });
      await send(url, pathOf(filler));
      await proxy.idle();
      // The line is written once the response has ended, which the client may see first.
      const line = await vi.waitFor(() => {
        const found = lines.find((l) => JSON.parse(l).msg === "request");
        if (found === undefined) throw new Error("no request line yet");
        return found;
      });
      const logged = String(JSON.parse(line).path);
      expect(logged.startsWith("/v1/x/")).toBe(true);
      expect(logged.endsWith("...")).toBe(true);
      expect(logged).toHaveLength(maxLoggedPathLength);
      expect(logged).toContain("[redacted]");
      expect(lines.join("\n")).not.toContain(key.slice(0, 12));
      // Under PIPE_BUF (4,096 bytes) with its newline.
      expect(Buffer.byteLength(line) + 1).toBeLessThan(4_096);
    }
  });
});

/** CPU time of the calling thread (Linux), in ms, to the clock tick. */
function threadCpuMs(): number {
  const stat = readFileSync("/proc/thread-self/stat", "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

describe("a compressed request body", () => {
  it("is decoded off the event loop, its model and ceiling still read", async () => {
    const { proxy, url, row } = await setup();
    // A connection each: an idle kept-alive one may be closed by the server as it is reused.
    const send = (body: Buffer) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request(`${url}/v1/chat/completions?mode=json`, {
          method: "POST",
          agent: false,
          headers: {
            authorization: `Bearer ${key}`,
            "content-type": "application/json",
            "content-encoding": "br",
          },
        });
        req.on("error", reject).on("response", (response) => {
          response.resume().on("end", () => resolve(response.statusCode ?? 0));
        });
        req.end(body);
      });
    const asked = JSON.stringify({ model: "qwen3-8b", max_tokens: 300, messages: [] });
    expect(await send(brotliCompressSync(asked))).toBe(200);
    await proxy.idle();
    expect(row()).toMatchObject({ model: "qwen3-8b", maxTokens: 300, captureState: "complete" });

    // 11 MiB of spaces in 26 bytes: decoded up to the 10 MiB cap, where it is refused.
    const bomb = brotliCompressSync(Buffer.alloc(11 * 1024 * 1024, 0x20), {
      params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 5 },
    });
    expect(bomb.length).toBeLessThan(100);
    // What a decoding costs an event loop on this host now, as this thread's CPU time (which,
    // unlike the loop's delay, other processes on a shared host do not stretch).
    const decodings = 3;
    const c0 = threadCpuMs();
    for (let i = 0; i < decodings; i++) {
      expect(() => brotliDecompressSync(bomb, { maxOutputLength: 10 * 1024 * 1024 })).toThrow(
        RangeError,
      );
    }
    const onLoop = (threadCpuMs() - c0) / decodings;
    // The loop's CPU for six requests at once, of the bomb and (after a round to warm up) of
    // the small body: the difference is what decoding cost the loop.
    const sixOf = async (body: Buffer) => {
      const c = threadCpuMs();
      expect(await Promise.all(Array.from({ length: 6 }, () => send(body)))).toEqual(
        Array(6).fill(200),
      );
      await proxy.idle();
      return threadCpuMs() - c;
    };
    await sixOf(brotliCompressSync(asked));
    const small = await sixOf(brotliCompressSync(asked));
    const bombs = await sixOf(bomb);
    // Decoded on the loop, six bombs cost it six decodings; off it, the decoder's hand-offs.
    expect(bombs - small).toBeLessThan(3 * onLoop);
  });

  it("records as aborted a job whose client left while its body was decoded", async () => {
    const { proxy, url, row, stub } = await setup();
    const bomb = brotliCompressSync(Buffer.alloc(11 * 1024 * 1024, 0x20), {
      params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 5 },
    });
    // The answer comes at once and waits for the decoding (tens of ms); the client leaves
    // meanwhile, which closes the upstream answer before it is read: the outcome is still written.
    await new Promise<void>((resolve) => {
      const req = http.request(`${url}/v1/chat/completions?mode=json`, {
        method: "POST",
        agent: false,
        headers: { authorization: `Bearer ${key}`, "content-encoding": "br" },
      });
      req.on("error", () => resolve());
      req.end(bomb);
      // The stub answers as soon as it has the request.
      const answered = setInterval(() => {
        if (stub.paths.length === 0) return;
        clearInterval(answered);
        setTimeout(() => req.destroy(), 3);
      }, 1);
    });
    await proxy.idle();
    expect(row()).toMatchObject({ captureState: "aborted", model: null });
  });
});

describe("a stream whose upstream resets its connection right after the stream's end", () => {
  it("reaches its client whole while its open receipt waited for the write lock", async () => {
    const dir = mkdtempSync(join(tmpdir(), "proxy-reset-"));
    const store = openSqliteStore(join(dir, "audit.db"));
    migrateStore(store);
    const other = new Database(join(dir, "audit.db"));
    const { log } = capturedLogger();
    const events = Array.from(
      { length: 4000 },
      (_, i) => `data: {"choices":[{"delta":{"content":"w${i} "}}]}\n\n`,
    ).join("");
    const usage = '{"model":"qwen3-8b","usage":{"prompt_tokens":3,"completion_tokens":4000}}';
    const body = `${events}data: ${usage}\n\ndata: [DONE]\n\n`;
    let reset!: () => void;
    const wasReset = new Promise<void>((resolve) => {
      reset = resolve;
    });
    const id = jobId();
    const upstream = await listen(
      http.createServer(async (req, res) => {
        for await (const _ of req) {
          // drain the body
        }
        res.writeHead(200, {
          "content-type": "text/event-stream",
          "x-decentral-job-id": id,
          "x-decentral-tx-signature": signature(),
          "x-decentral-worker": address(),
        });
        // Every byte sent, then the connection reset (an operator's proxy closing it hard).
        res.end(body, () =>
          setTimeout(() => {
            req.socket.resetAndDestroy();
            reset();
          }, 50),
        );
      }),
    );
    const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${upstream.url}/v1` });
    const app = await serveApp({ store, log, proxy });
    cleanups.push(async () => {
      if (other.inTransaction) other.exec("ROLLBACK");
      other.close();
      await app.close();
      await proxy.close();
      await upstream.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    other.exec("BEGIN IMMEDIATE");
    const pending = completion(app.url, "stream");
    await wasReset;
    other.exec("COMMIT");
    const answer = await pending;
    expect(answer.status).toBe(200);
    expect(await answer.text()).toBe(body);
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, id)).get();
    expect(row).toMatchObject({ captureState: "complete", completionTokens: 4000 });
  });
});
