import { spawn } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import { eq } from "drizzle-orm";
import OpenAI from "openai";
import { afterEach, describe, expect, it, vi } from "vitest";
import { jobs } from "../src/db/schema.js";
import { createLogger } from "../src/log.js";
import { createRecordingFetch } from "../src/recorder/fetch-wrapper.js";
import {
  address,
  ingestToken,
  jobId,
  listen,
  serveApp,
  signature,
} from "./support/recorder-fixtures.js";
import { programModules } from "./support/service-process.js";
import { createTestStore } from "./support/store.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** A store, the audit API serving it (closed after the test) and an ingest token it accepts. */
async function auditApp() {
  const store = createTestStore();
  const audit = await serveApp({ store, log: createLogger({ level: "silent" }) });
  cleanups.push(audit.close);
  return { store, audit, token: await ingestToken(store) };
}

/** The request bodies the stand-in below received, in order. */
const upstreamBodies: string[] = [];

/** A Decentral stand-in answering every completion with a fresh job's receipt headers. */
async function upstream(
  status = 200,
  id: () => string = jobId,
  model: (req: http.IncomingMessage) => string = () => "qwen3-8b",
) {
  const server = http.createServer(async (req, res) => {
    let received = "";
    for await (const chunk of req) received += String(chunk);
    upstreamBodies.push(received);
    res.writeHead(status, {
      "content-type": "application/json",
      "x-decentral-job-id": id(),
      "x-decentral-tx-signature": signature(),
      "x-decentral-settlement-tx": signature(),
      "x-decentral-worker": address(),
      "x-decentral-credits-remaining": "500",
    });
    res.end(
      JSON.stringify({
        id: "chatcmpl-1",
        object: "chat.completion",
        created: 1_764_000_000,
        model: model(req),
        choices: [
          { index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" },
        ],
        usage: { prompt_tokens: 4, completion_tokens: 5, total_tokens: 9 },
      }),
    );
  });
  const s = await listen(server);
  cleanups.push(s.close);
  return s.url;
}

/**
 * An ingest API in front of `auditUrl` that answers 503 while `down()` says so, then passes
 * requests on: an outage the wrapper must ride out.
 */
async function ingestDownWhile(auditUrl: string, down: () => boolean) {
  const server = await listen(
    http.createServer(async (req, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      if (down()) {
        res.writeHead(503).end();
        return;
      }
      const answer = await fetch(`${auditUrl}/jobs`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: req.headers.authorization ?? "",
        },
        body,
      });
      res.writeHead(answer.status, { "content-type": "application/json" }).end(await answer.text());
    }),
  );
  cleanups.push(server.close);
  return server;
}

describe("createRecordingFetch", () => {
  it("posts each completion's receipt to the ingest API in the background", async () => {
    const { store, audit, token } = await auditApp();
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token,
      tags: { service: "search" },
    });
    const client = new OpenAI({
      apiKey: "dcntrl_live_x",
      baseURL: `${await upstream()}/v1`,
      fetch: recordingFetch,
    });
    const { data, response } = await client.chat.completions
      .create({ model: "qwen3-8b", messages: [{ role: "user", content: "hi" }] })
      .withResponse();
    expect(data.choices[0]?.message.content).toBe("hi");
    await recordingFetch.flush();
    expect(recordingFetch.stats()).toMatchObject({ queued: 1, delivered: 1, rejected: 0 });
    expect(store.db.select().from(jobs).get()).toMatchObject({
      jobId: response.headers.get("x-decentral-job-id"),
      source: "ingest",
      settlementTx: response.headers.get("x-decentral-settlement-tx"),
      creditsRemainingUnits: 5_000_000n,
      totalTokens: 9,
      tags: { service: "search" },
    });
  });

  it("sends the request's method: a GET answered with a job asked for no completion", async () => {
    const { store, audit, token } = await auditApp();
    const recordingFetch = createRecordingFetch({ ingestUrl: `${audit.url}/jobs`, token });
    const client = new OpenAI({
      apiKey: "dcntrl_live_x",
      baseURL: `${await upstream()}/v1`,
      fetch: recordingFetch,
    });
    // The SDK's free `models.list()` (a GET), answered with a job's headers; then a completion.
    await client.models.list().withResponse();
    await client.chat.completions.create({ model: "qwen3-8b", messages: [] });
    // A bare fetch with no method is a GET too.
    await (await recordingFetch(`${await upstream()}/v1/models`)).arrayBuffer();
    await recordingFetch.flush();
    const methods = store.db
      .select({ method: jobs.requestMethod, path: jobs.requestPath, model: jobs.model })
      .from(jobs)
      .all()
      .map((r) => `${r.method} ${r.path} ${r.model}`)
      .sort();
    expect(methods).toEqual([
      "GET /v1/models null",
      "GET /v1/models null",
      "POST /v1/chat/completions qwen3-8b",
    ]);
  });

  it("takes the method of another library's request object, and sends none it cannot tell", async () => {
    const { store, audit, token } = await auditApp();
    const base = await upstream();
    // What node-fetch's `Request` is to the wrapper: no instance of the platform's `Request`.
    const foreign = (method: string | undefined) => ({
      url: `${base}/v1/chat/completions`,
      ...(method === undefined ? {} : { method }),
      headers: new Headers(),
    });
    const platformFetch = globalThis.fetch;
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token,
      // Sends such an object as that library would (a POST when it names no method); the
      // receipts' own delivery, given a URL, as the platform does.
      fetch: ((input: string | URL | { url: string; method?: string }, init?: RequestInit) =>
        typeof input === "string" || input instanceof URL
          ? platformFetch(input, init)
          : platformFetch(input.url, {
              method: input.method ?? "POST",
              body: "{}",
            })) as typeof fetch,
    });
    for (const method of ["POST", undefined]) {
      const response = await recordingFetch(foreign(method) as unknown as Request);
      await response.arrayBuffer();
    }
    await recordingFetch.flush();
    const rows = store.db
      .select({ method: jobs.requestMethod, path: jobs.requestPath })
      .from(jobs)
      .all()
      .map((r) => `${r.method} ${r.path}`)
      .sort();
    // An honest POST is never taken for a GET: one it cannot tell goes without a method.
    expect(rows).toEqual(["POST /v1/chat/completions", "null /v1/chat/completions"]);
  });

  it("cuts the caller's key out of a model the answer echoes it in", async () => {
    const { store, audit, token } = await auditApp();
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token,
    });
    const apiKey = "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345";
    const echoing = await upstream(
      200,
      jobId,
      (req) => `on behalf of ${req.headers.authorization}`,
    );
    const client = new OpenAI({ apiKey, baseURL: `${echoing}/v1`, fetch: recordingFetch });
    await client.chat.completions.create({ model: "qwen3-8b", messages: [] });
    await recordingFetch.flush();
    expect(store.db.select().from(jobs).get()?.responseModel).toBe("on behalf of [redacted]");
    expect(JSON.stringify(store.sqlite.prepare("SELECT * FROM jobs").all())).not.toContain(apiKey);
  });

  it("records the status the caller got and when the answer came, not when it was delivered", async () => {
    const { store, audit, token } = await auditApp();
    // An ingest API that is down for the first 1.2 s.
    const upAt = Date.now() + 1_200;
    const late = await ingestDownWhile(audit.url, () => Date.now() < upAt);
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${late.url}/jobs`,
      token,
      retryBaseMs: 100,
      retryMaxMs: 200,
    });
    const base = await upstream(500);
    const before = Date.now();
    const response = await recordingFetch(`${base}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "qwen3-8b", messages: [] }),
    });
    expect(response.status).toBe(500);
    await response.arrayBuffer();
    const answered = Date.now();
    await recordingFetch.flush();
    const row = store.db.select().from(jobs).get();
    expect(row).toMatchObject({ source: "ingest", httpStatus: 500 });
    expect(row?.createdAt).toBeGreaterThanOrEqual(before - 1);
    expect(row?.createdAt).toBeLessThanOrEqual(answered + 1);
    expect(row?.recordedAt).toBeGreaterThan(answered + 1_000);
  });

  it("records no usage from a 200 whose JSON body is an error: it is no completion", async () => {
    const { store, audit, token } = await auditApp();
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token,
    });
    const erring = await listen(
      http.createServer(async (req, res) => {
        for await (const _ of req) {
          // drain
        }
        res.writeHead(200, {
          "content-type": "application/json",
          "x-decentral-job-id": jobId(),
          "x-decentral-tx-signature": signature(),
          "x-decentral-settlement-tx": signature(),
        });
        res.end(
          JSON.stringify({
            error: { message: "the model is overloaded", type: "server_error" },
            usage: { prompt_tokens: 12, completion_tokens: 0, total_tokens: 12 },
          }),
        );
      }),
    );
    cleanups.push(erring.close);
    const response = await recordingFetch(`${erring.url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "qwen3-8b", messages: [] }),
    });
    await response.json();
    await recordingFetch.flush();
    expect(store.db.select().from(jobs).get()).toMatchObject({
      httpStatus: 200,
      promptTokens: null,
      completionTokens: null,
      totalTokens: null,
    });
  });

  it("reads the model and ceiling from the request whatever form its body takes", async () => {
    const { store, audit, token } = await auditApp();
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token,
    });
    const url = `${await upstream()}/v1/chat/completions`;
    const asked = JSON.stringify({ model: "phi-4-mini", max_tokens: 100, messages: [] });
    const post = (body: RequestInit["body"]): RequestInit => ({ method: "POST", body });
    const calls: [
      string,
      () => Promise<Response>,
      { model: string | null; maxTokens: number | null; choices?: number },
    ][] = [
      [
        "bytes",
        () => recordingFetch(url, post(new TextEncoder().encode(asked))),
        { model: "phi-4-mini", maxTokens: 100 },
      ],
      [
        "a Blob",
        () => recordingFetch(url, post(new Blob([asked]))),
        { model: "phi-4-mini", maxTokens: 100 },
      ],
      [
        "a Request alone",
        () => recordingFetch(new Request(url, post(asked))),
        { model: "phi-4-mini", maxTokens: 100 },
      ],
      [
        "max_completion_tokens",
        () =>
          recordingFetch(
            url,
            post(JSON.stringify({ model: "qwen3-8b", max_completion_tokens: 50 })),
          ),
        { model: "qwen3-8b", maxTokens: 50 },
      ],
      // max_tokens bounds each of the choices asked for.
      [
        "n",
        () =>
          recordingFetch(url, post(JSON.stringify({ model: "qwen3-8b", max_tokens: 50, n: 4 }))),
        { model: "qwen3-8b", maxTokens: 50, choices: 4 },
      ],
      // Form data names no model: the response's is kept only to compare.
      [
        "form data",
        () => recordingFetch(url, post(new URLSearchParams({ model: "phi-4-mini" }))),
        { model: null, maxTokens: null },
      ],
    ];
    const seen: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    const ids: [string, string][] = [];
    for (const [name, call, facts] of calls) {
      const response = await call();
      await response.json();
      ids.push([name, response.headers.get("x-decentral-job-id") ?? ""]);
      expected[name] = { choices: null, ...facts, responseModel: "qwen3-8b" };
    }
    await recordingFetch.flush();
    for (const [name, id] of ids) {
      const row = store.db.select().from(jobs).where(eq(jobs.jobId, id)).get();
      seen[name] = row && {
        model: row.model,
        maxTokens: row.maxTokens,
        choices: row.choices,
        responseModel: row.responseModel,
      };
    }
    expect(seen).toEqual(expected);
  });

  it("sends a stream body whole and reads the request's model from it", async () => {
    const { store, audit, token } = await auditApp();
    const recordingFetch = createRecordingFetch({ ingestUrl: `${audit.url}/jobs`, token });
    const url = `${await upstream()}/v1/chat/completions`;
    const asked = JSON.stringify({ model: "phi-4-mini", max_tokens: 100, messages: [] });
    // Sent in three pieces, as an upload streamed from elsewhere is.
    const pieces = [asked.slice(0, 10), asked.slice(10, 30), asked.slice(30)];
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const piece = pieces.shift();
        if (piece === undefined) controller.close();
        else controller.enqueue(new TextEncoder().encode(piece));
      },
    });
    const init = { method: "POST", body, duplex: "half" } as RequestInit;
    await (await recordingFetch(url, init)).json();
    await recordingFetch.flush();
    expect(upstreamBodies.at(-1)).toBe(asked);
    // Read from nowhere before, the model was unknown: the job was left unproven.
    expect(store.db.select().from(jobs).get()).toMatchObject({
      model: "phi-4-mini",
      maxTokens: 100,
    });
  });

  it("never fails a completion when the ingest API is down, and delivers once it is back", async () => {
    const { store, audit, token } = await auditApp();
    let refusals = 2;
    // An ingest endpoint that answers 503 twice before passing requests on.
    const flaky = await ingestDownWhile(audit.url, () => refusals-- > 0);
    const errors: Error[] = [];
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${flaky.url}/jobs`,
      token,
      retryBaseMs: 5,
      onError: (e) => errors.push(e),
    });
    const client = new OpenAI({
      apiKey: "dcntrl_live_x",
      baseURL: `${await upstream()}/v1`,
      fetch: recordingFetch,
    });
    const result = await client.chat.completions.create({ model: "qwen3-8b", messages: [] });
    expect(result.usage?.total_tokens).toBe(9);
    await recordingFetch.flush();
    expect(recordingFetch.stats()).toMatchObject({ delivered: 1, failedAttempts: 2 });
    expect(errors).toHaveLength(2);
    expect(store.db.select().from(jobs).all()).toHaveLength(1);
  });

  /** One job through a recording fetch that posts to a real ingest API; its errors and stats. */
  async function oneJobReported(tags: Record<string, string> | undefined, id?: () => string) {
    const { audit, token } = await auditApp();
    const errors: string[] = [];
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token,
      ...(tags ? { tags } : {}),
      onError: (error) => errors.push(error.message),
    });
    const response = await recordingFetch(`${await upstream(200, id)}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "qwen3-8b", messages: [] }),
    });
    await response.json();
    await recordingFetch.flush();
    return {
      errors,
      stats: recordingFetch.stats(),
      jobId: response.headers.get("x-decentral-job-id"),
    };
  }

  it("reports each receipt the ingest API refused, since a refused receipt is lost", async () => {
    // A job id the operator wrote that is none: the receipt is refused, naming the field.
    const { errors, stats } = await oneJobReported(undefined, () => "job/../x");
    expect(stats).toMatchObject({ delivered: 0, rejected: 1 });
    expect(errors).toEqual([
      expect.stringMatching(/^ingest API refused the receipt of job\/\.\.\/x: job_id /),
    ]);
  });

  it("refuses at once options that would lose every receipt later", () => {
    const refused = (options: Partial<Parameters<typeof createRecordingFetch>[0]>) => () =>
      createRecordingFetch({
        ingestUrl: "http://audit.internal:8787/jobs",
        token: "da_ingest_test",
        ...options,
      });
    // A tag ingest refuses would have cost every receipt it was added to.
    expect(refused({ tags: { "bad name": "x" } })).toThrow(
      "createRecordingFetch: tags.bad name: tag names are letters, digits, _ . - (max 64)",
    );
    expect(refused({ tags: { team: 5 as unknown as string } })).toThrow(
      /tags.team: must be a string/,
    );
    // POST /jobs refuses a query parameter: every batch would have been refused, and lost.
    expect(refused({ ingestUrl: "http://audit.internal:8787/jobs?source=search" })).toThrow(
      /ingestUrl must have no query or fragment/,
    );
    expect(refused({ ingestUrl: "audit.internal/jobs" })).toThrow(
      /ingestUrl must be an http\(s\) URL/,
    );
    // A batch of no receipts posted `[]` in a loop and delivered nothing.
    expect(refused({ batchSize: 0 })).toThrow(/batchSize must be a whole number from 1 to 1000/);
    expect(refused({ batchSize: -1 })).toThrow(/batchSize/);
    expect(refused({ maxBuffer: Number.NaN })).toThrow(/maxBuffer must be a whole number/);
    expect(refused({ retryBaseMs: -5 })).toThrow(/retryBaseMs/);
    expect(refused({ tags: { Team: "search" } })).not.toThrow();
  });

  it("says why a delivery failed, so an ingest URL without /jobs shows as a 404", async () => {
    const { audit, token } = await auditApp();
    const errors: string[] = [];
    const recordingFetch = createRecordingFetch({
      ingestUrl: audit.url,
      token,
      retryBaseMs: 5,
      onError: (error) => errors.push(error.message),
    });
    const response = await recordingFetch(`${await upstream()}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "qwen3-8b", messages: [] }),
    });
    await response.json();
    await expect(recordingFetch.flush({ timeoutMs: 300 })).rejects.toThrow(/not delivered/);
    expect(errors[0]).toBe("receipt delivery failed (HTTP 404); will retry");
  });

  it("reports a job whose id the operator wrote too long to be one, rather than lose it silently", async () => {
    const long = `job_${"a".repeat(300)}`;
    const { errors, stats } = await oneJobReported(undefined, () => long);
    expect(stats).toMatchObject({ delivered: 0, rejected: 1 });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/job_id/);
  });

  it("records a job whose id header came twice with one value, as the proxy does", async () => {
    // fetch joins the two lines as "J, J": sent so, ingest refused it and the paid job's
    // receipt was lost, where the proxy reads the one value and records the job.
    const id = jobId();
    const { errors, stats } = await oneJobReported(undefined, () => [id, id] as unknown as string);
    expect(errors).toEqual([]);
    expect(stats).toMatchObject({ delivered: 1, rejected: 0 });
    // Two values name no job: still sent, for ingest to refuse by name.
    const apart = await oneJobReported(undefined, () => [jobId(), jobId()] as unknown as string);
    expect(apart.stats).toMatchObject({ delivered: 0, rejected: 1 });
    expect(apart.errors[0]).toMatch(/job_id/);
  });

  it("drops the oldest receipt when its buffer is full instead of growing without bound", async () => {
    const dead = await listen(http.createServer());
    await dead.close();
    const drops: string[] = [];
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${dead.url}/jobs`,
      token: "da_ingest_test",
      maxBuffer: 2,
      retryBaseMs: 60_000,
      onError: (error) => {
        if (error.message.includes("dropped")) drops.push(error.message);
      },
    });
    const base = await upstream();
    const sent: string[] = [];
    for (let i = 0; i < 4; i++) {
      const response = await recordingFetch(`${base}/v1/chat/completions`, {
        method: "POST",
        body: "{}",
      });
      expect(response.status).toBe(200);
      await response.text();
      sent.push(response.headers.get("x-decentral-job-id") ?? "");
    }
    await expect.poll(() => recordingFetch.stats().dropped).toBe(2);
    // Each report names the job lost, so a backend can log which.
    expect(drops).toHaveLength(2);
    for (const drop of drops) expect(sent.some((id) => drop.includes(id))).toBe(true);
  });

  it("counts a receipt once when the buffer fills while its batch is being sent", async () => {
    const { network, received, release } = fakeNetwork(() => undefined);
    const errors: string[] = [];
    const recordingFetch = createRecordingFetch({
      token: "da_ingest_test",
      ...network,
      maxBuffer: 2,
      onError: (error) => errors.push(error.message),
    });
    const first = await complete(recordingFetch);
    // The first receipt is on its way (its post is held) when two more fill the buffer.
    await expect.poll(() => received.posts).toBe(1);
    const second = await complete(recordingFetch);
    const third = await complete(recordingFetch);
    await expect.poll(() => recordingFetch.stats().queued).toBe(3);
    release();
    await recordingFetch.flush();
    expect(received.jobIds).toEqual([first, third]);
    expect(recordingFetch.stats()).toMatchObject({ queued: 3, delivered: 2, dropped: 1 });
    expect(errors).toEqual([`receipt buffer full: the receipt of ${second} dropped`]);
  });

  it("says a receipt dropped after a failed send may have been recorded all the same", async () => {
    // The ingest API commits the first batch and then fails to answer (a 500, a cut link).
    let first = true;
    const { network, received, release } = fakeNetwork((items) => {
      if (!first) return undefined;
      first = false;
      received.jobIds.push(...items.map((item) => item.job_id));
      return new Response("upstream gone", { status: 500 });
    });
    const errors: string[] = [];
    const recordingFetch = createRecordingFetch({
      token: "da_ingest_test",
      ...network,
      maxBuffer: 1,
      retryBaseMs: 60_000,
      onError: (error) => errors.push(error.message),
    });
    const sent = await complete(recordingFetch);
    release();
    await expect.poll(() => recordingFetch.stats().failedAttempts).toBe(1);
    // Waiting out the backoff, the buffer is full: the sent receipt gives way to a new one.
    const next = await complete(recordingFetch);
    await expect.poll(() => recordingFetch.stats().dropped).toBe(1);
    await recordingFetch.flush();
    expect(received.jobIds).toEqual([sent, next]);
    expect(errors).toContain(
      `receipt buffer full: the receipt of ${sent} dropped (sent in a batch that failed: the ingest API may have recorded it all the same)`,
    );
  });

  it("sends the receipts of a batch refused as too large again in halves, and names the one refused alone", async () => {
    let huge = "";
    const { network, received, release } = fakeNetwork((items) =>
      // As ingest refuses a body above 4 MiB: here, more than two receipts or the huge one.
      items.length > 2 || items.some((item) => item.job_id === huge)
        ? Response.json(
            { error: { code: "payload_too_large", message: "request body above 4194304 bytes" } },
            { status: 413 },
          )
        : undefined,
    );
    const errors: string[] = [];
    const recordingFetch = createRecordingFetch({
      token: "da_ingest_test",
      ...network,
      onError: (error) => errors.push(error.message),
    });
    const sent: string[] = [];
    // The first post is held, so the other receipts pile up into one batch behind it.
    for (let i = 0; i < 6; i++) sent.push(await complete(recordingFetch));
    huge = sent[2] ?? "";
    await expect.poll(() => recordingFetch.stats().queued).toBe(6);
    release();
    await recordingFetch.flush();
    expect(received.jobIds).toEqual(sent.filter((id) => id !== huge));
    expect(recordingFetch.stats()).toMatchObject({ delivered: 5, rejected: 1, dropped: 0 });
    expect(errors).toEqual([
      `ingest API refused the receipt of ${huge} (HTTP 413: request body above 4194304 bytes)`,
    ]);
  });
});

/**
 * A `fetch` playing both Decentral (a fresh job's headers for every call) and the ingest API,
 * whose first post is held until `release()`. `refuse` may answer a post instead of accepting
 * its receipts.
 */
function fakeNetwork(refuse: (items: { job_id: string }[]) => Response | undefined) {
  const ingestUrl = "http://ingest.test/jobs";
  const received = { posts: 0, jobIds: [] as string[] };
  let release = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const fetch = (async (input: Parameters<typeof globalThis.fetch>[0], init?: RequestInit) => {
    if (String(input) !== ingestUrl) {
      return new Response(JSON.stringify({ model: "qwen3-8b" }), {
        headers: {
          "content-type": "application/json",
          "x-decentral-job-id": jobId(),
          "x-decentral-tx-signature": signature(),
        },
      });
    }
    if (received.posts++ === 0) await held;
    const items = JSON.parse(String(init?.body)) as { job_id: string }[];
    const refusal = refuse(items);
    if (refusal) return refusal;
    received.jobIds.push(...items.map((item) => item.job_id));
    return Response.json({
      created: items.length,
      rejected: 0,
      results: items.map((_, index) => ({ index, status: "created" })),
    });
  }) as typeof globalThis.fetch;
  return { network: { ingestUrl, fetch }, received, release };
}

/** One completion through `recordingFetch`, its body read; its job id. */
async function complete(recordingFetch: typeof fetch): Promise<string> {
  const response = await recordingFetch("http://decentral.test/v1/chat/completions", {
    method: "POST",
    body: JSON.stringify({ model: "qwen3-8b", messages: [] }),
  });
  await response.text();
  return response.headers.get("x-decentral-job-id") ?? "";
}

describe("a backend process with a recording fetch", () => {
  /** An ingest API answering 503 to its first `failFirst` posts, then taking every receipt. */
  async function ingestStub(failFirst: number) {
    const received: string[] = [];
    let posts = 0;
    const server = await listen(
      http.createServer(async (req, res) => {
        let body = "";
        for await (const chunk of req) body += chunk;
        if (posts++ < failFirst) {
          res.writeHead(503).end();
          return;
        }
        const items = JSON.parse(body) as { job_id: string }[];
        received.push(...items.map((item) => item.job_id));
        res.writeHead(200, { "content-type": "application/json" }).end(
          JSON.stringify({
            rejected: 0,
            results: items.map((_, index) => ({ index, status: "created" })),
          }),
        );
      }),
    );
    cleanups.push(server.close);
    return { url: `${server.url}/jobs`, received };
  }

  /**
   * Runs a backend in its own Node process: one completion through a recording fetch posting
   * to `ingestUrl`, then `end` (the script's last lines). Its exit code and output.
   */
  async function runBackend(ingestUrl: string, end: string) {
    const id = jobId();
    const program = programModules();
    const wrapper = JSON.stringify(program.url("recorder/fetch-wrapper"));
    const script = `
      const { createRecordingFetch } = await import(${wrapper});
      const ingestUrl = ${JSON.stringify(ingestUrl)};
      const recordingFetch = createRecordingFetch({
        ingestUrl,
        token: "da_ingest_test",
        retryBaseMs: 100,
        retryMaxMs: 100,
        fetch: (input, init) =>
          String(input) === ingestUrl
            ? fetch(input, init)
            : Promise.resolve(new Response('{"model":"qwen3-8b"}', { headers: {
                "content-type": "application/json",
                "x-decentral-job-id": ${JSON.stringify(id)},
                "x-decentral-tx-signature": ${JSON.stringify(signature())},
              } })),
      });
      const response = await recordingFetch("http://decentral.test/v1/chat/completions", {
        method: "POST",
        body: '{"model":"qwen3-8b"}',
      });
      await response.text();
      ${end}
    `;
    const child = spawn(
      process.execPath,
      [...program.nodeArgs, "--input-type=module", "-e", script],
      { cwd: process.cwd(), stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    const [code] = (await once(child, "exit")) as [number | null];
    return { code, stdout: stdout.trim(), stderr, jobId: id };
  }

  it("stays alive while it awaits flush() through an ingest outage, until the receipt is delivered", async () => {
    const ingest = await ingestStub(3);
    const run = await runBackend(
      ingest.url,
      `await recordingFetch.flush(); console.log("flushed");`,
    );
    expect(run).toMatchObject({ code: 0, stdout: "flushed" });
    expect(ingest.received).toEqual([run.jobId]);
  });

  it("hears from flush({ timeoutMs }) which jobs were not delivered by its deadline", async () => {
    const ingest = await ingestStub(Number.POSITIVE_INFINITY);
    const run = await runBackend(
      ingest.url,
      `try {
        await recordingFetch.flush({ timeoutMs: 400 });
        console.log("flushed");
      } catch (error) {
        console.log(JSON.stringify(error.jobIds));
      }`,
    );
    expect(run).toMatchObject({ code: 0, stdout: JSON.stringify([run.jobId]) });
    // Named once, to the caller that asked: not again at exit.
    expect(run.stderr).toBe("");
    expect(ingest.received).toEqual([]);
  });

  it("is not kept alive by retries nobody waits for, and names the receipts it exits with", async () => {
    const ingest = await ingestStub(Number.POSITIVE_INFINITY);
    const run = await runBackend(ingest.url, `console.log("done");`);
    expect(run).toMatchObject({ code: 0, stdout: "done" });
    expect(run.stderr).toContain("1 receipt not delivered");
    expect(run.stderr).toContain(run.jobId);
  });

  it("names the receipt of a completion answered just before process.exit()", async () => {
    const ingest = await ingestStub(0);
    const run = await runBackend(ingest.url, "process.exit(0);");
    expect(run.code).toBe(0);
    expect(run.stderr).toContain(run.jobId);
  });
});

describe("a recording fetch under an answer of the other kind than asked", () => {
  it("records no usage from a JSON answer to a stream asked for: its SDK reads no event in it", async () => {
    const { store, audit, token } = await auditApp();
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token,
    });
    const client = new OpenAI({
      apiKey: "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345",
      baseURL: `${await upstream()}/v1`,
      fetch: recordingFetch,
      maxRetries: 0,
    });
    // `stream: "true"` too: vLLM and SGLang read it as true, as the proxy does, and the SDK
    // reads it as events.
    for (const flag of [true, "true"] as true[]) {
      const chunks = [];
      const stream = await client.chat.completions.create({
        model: "qwen3-8b",
        messages: [{ role: "user", content: "hi" }],
        stream: flag,
        stream_options: { include_usage: true },
      });
      for await (const chunk of stream) chunks.push(chunk);
      // The caller read nothing: usage the JSON names is none it saw, so none prices the job.
      expect(chunks).toEqual([]);
    }
    await recordingFetch.flush();
    const recorded = store.db.select().from(jobs).all();
    expect(recorded).toHaveLength(2);
    for (const job of recorded) {
      expect(job).toMatchObject({ model: "qwen3-8b", completionTokens: null, totalTokens: null });
    }
    // The same answer to a request without `stream` is the completion its client reads.
    const completion = await client.chat.completions.create({
      model: "qwen3-8b",
      messages: [{ role: "user", content: "hi" }],
    });
    expect(completion.usage?.completion_tokens).toBe(5);
    await recordingFetch.flush();
    expect(
      store.db
        .select()
        .from(jobs)
        .all()
        .map((job) => job.completionTokens),
    ).toContain(5);
  });
});

describe("a recording fetch under a body typed neither JSON nor events", () => {
  // Such a body to a completion's request is read for its receipt. Read from a copy
  // (`clone()`), it was held whole and read on after the caller cancelled: the caller's cancel
  // never settled, the upstream went on sending, and a 100 MB body cost 355 MB. It is read as
  // it passes, as a stream is.
  it.each(["text/plain", null])(
    "lets the caller cancel an endless body typed %s: the cancel settles and reaches the upstream",
    async (contentType) => {
      let closed = false;
      const endless = await listen(
        http.createServer((req, res) => {
          req.resume();
          res.writeHead(200, {
            "x-decentral-job-id": jobId(),
            ...(contentType === null ? {} : { "content-type": contentType }),
          });
          const chunk = `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: "x".repeat(100) } }] })}\n\n`;
          const timer = setInterval(() => res.write(chunk), 20);
          res.on("close", () => {
            clearInterval(timer);
            closed = true;
          });
        }),
      );
      const { audit, token } = await auditApp();
      const recordingFetch = createRecordingFetch({ ingestUrl: `${audit.url}/jobs`, token });
      try {
        const res = await recordingFetch(`${endless.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: "qwen3-8b", stream: true, messages: [] }),
        });
        const reader = res.body!.getReader();
        await reader.read();
        await reader.read();
        const cancelled = await Promise.race([
          reader.cancel().then(() => "settled"),
          new Promise((resolve) => setTimeout(() => resolve("pending after 2 s"), 2000)),
        ]);
        expect(cancelled).toBe("settled");
        await vi.waitFor(() => expect(closed).toBe(true), { timeout: 2000, interval: 20 });
        await recordingFetch.flush({ timeoutMs: 2000 });
      } finally {
        await endless.close();
      }
    },
  );
});

// `token: process.env.AUDIT_INGEST_TOKEN` with the variable not set (or the Decentral key put
// there) was taken: every receipt was answered 401, retried, and dropped once the buffer filled.
describe("the recording fetch's ingest token", () => {
  it.each([
    [undefined, "token is required"],
    ["", "token is required"],
    ["Bearer da_ingest_abc", "token must be an access token"],
    ["dcntrl_live_0123456789abcdef0123456789abcdef", "token must be an access token"],
    ["da_ingest_abc\n", "token must be an access token"],
  ])("refuses %j when created", (token, message) => {
    expect(() =>
      createRecordingFetch({
        ingestUrl: "http://audit.internal:8787/jobs",
        token: token as string,
      }),
    ).toThrow(message);
  });
});

// A /responses answer's usage is `input_tokens`/`output_tokens`: read for a completion's
// `prompt_tokens`/`completion_tokens`, a job recorded through the wrapper had its usage unknown.
describe("a recording fetch under a Responses API answer", () => {
  it("reads its usage as the proxy does: input and output tokens, not a completion's", async () => {
    const { store, audit, token } = await auditApp();
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token,
    });
    const ids: [string, string] = [jobId(), jobId()];
    const usages = [
      { input_tokens: 12, output_tokens: 7, total_tokens: 19 },
      // A completion's names in a Responses answer: its client reads no count there.
      { prompt_tokens: 12, completion_tokens: 2000, total_tokens: 2012 },
    ];
    let answered = 0;
    const responses = await listen(
      http.createServer(async (req, res) => {
        for await (const _ of req) {
          // drain
        }
        const n = answered++;
        res.writeHead(200, {
          "content-type": "application/json",
          "x-decentral-job-id": ids[n],
          "x-decentral-tx-signature": signature(),
          "x-decentral-settlement-tx": signature(),
          "x-decentral-worker": address(),
        });
        res.end(
          JSON.stringify({
            id: "resp_1",
            object: "response",
            status: "completed",
            model: "qwen3-8b",
            output: [
              {
                type: "message",
                role: "assistant",
                status: "completed",
                content: [{ type: "output_text", text: "Hi.", annotations: [] }],
              },
            ],
            usage: usages[n],
          }),
        );
      }),
    );
    cleanups.push(responses.close);
    const client = new OpenAI({
      apiKey: "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345",
      baseURL: `${responses.url}/v1`,
      fetch: recordingFetch,
      maxRetries: 0,
    });
    // Its ceiling is `max_output_tokens`, which the Responses API honours.
    const first = await client.responses.create({
      model: "qwen3-8b",
      input: "Say hi",
      max_output_tokens: 100,
    });
    expect(first.usage?.output_tokens).toBe(7);
    await client.responses.create({ model: "qwen3-8b", input: "Say hi" });
    await recordingFetch.flush();
    const counts = (id: string) => {
      const job = store.db.select().from(jobs).where(eq(jobs.jobId, id)).get();
      return [job?.promptTokens, job?.completionTokens, job?.totalTokens];
    };
    expect(counts(ids[0])).toEqual([12, 7, 19]);
    expect(counts(ids[1])).toEqual([null, null, 2012]);
    const ceiling = (id: string) =>
      store.db.select().from(jobs).where(eq(jobs.jobId, id)).get()?.maxTokens;
    expect([ceiling(ids[0]), ceiling(ids[1])]).toEqual([100, null]);
  });
});
