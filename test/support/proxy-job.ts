import http from "node:http";
import { expect } from "vitest";
import type { Store } from "../../src/db/client.js";
import { localApiKey } from "../../src/localnet/keys.js";
import { createLogger } from "../../src/log.js";
import { createRecordingFetch } from "../../src/recorder/fetch-wrapper.js";
import { createRecordingProxy } from "../../src/recorder/proxy.js";
import type { AdversaryHarness, JobOutcome, JobPlan } from "./operator.js";
import {
  closedAfterTest,
  ingestToken,
  jobUpstream,
  listen,
  serveApp,
} from "./recorder-fixtures.js";
import { type JobRow, readJob } from "./seed-recorder.js";

/**
 * One job of `plan` (its chain steps sent honestly) through a recording proxy into `store`:
 * `request` (with the plan's model) posted to `path`, answered 200 by an operator upstream with
 * `body` as written and the job's headers. Resolves with the text the caller got, once the
 * proxy recorded the receipt.
 */
export async function jobThroughProxy(
  h: AdversaryHarness,
  store: Store,
  plan: JobPlan,
  path: string,
  body: string | Buffer,
  request: Record<string, unknown>,
  options: {
    /** The answer's content type; JSON when not given. */
    contentType?: string;
    /** More headers of the answer (a `content-encoding`, say), passed on as the proxy sent them. */
    answerHeaders?: Record<string, string>;
    /** The request body as sent, in place of `request` as JSON (with these headers). */
    sent?: { body: Buffer; headers: Record<string, string> };
  } = {},
): Promise<string> {
  const txs = h.op.honestJob(plan);
  const log = createLogger({ level: "silent" });
  const upstream = await listen(
    http.createServer(async (req, res) => {
      for await (const _ of req) {
      }
      res.writeHead(200, {
        "content-type": options.contentType ?? "application/json",
        "x-decentral-job-id": plan.jobId,
        "x-decentral-tx-signature": txs.escrowTx,
        "x-decentral-settlement-tx": txs.settlementTx,
        "x-decentral-worker": plan.worker.address,
        ...options.answerHeaders,
      });
      res.end(body);
    }),
  );
  const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${upstream.url}/v1` });
  const app = await serveApp({ store, log, proxy });
  try {
    if (options.answerHeaders) {
      // Read as sent, not decoded by fetch: the test decodes what it means to.
      const text = await rawPost(`${app.url}${path}`, plan.keyIndex, {
        model: plan.requestedModel,
        ...request,
      });
      await proxy.idle();
      return text;
    }
    const res = await fetch(`${app.url}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${localApiKey(plan.keyIndex)}`,
        "content-type": "application/json",
        ...options.sent?.headers,
      },
      body: options.sent?.body ?? JSON.stringify({ model: plan.requestedModel, ...request }),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    await proxy.idle();
    return text;
  } finally {
    await app.close();
    await proxy.close();
    await upstream.close();
  }
}

/** POSTs `request` with the key of `keyIndex`; resolves with the answer's bytes as latin1. */
function rawPost(url: string, keyIndex: number, request: object): Promise<string> {
  return new Promise((resolve, reject) => {
    const sent = http.request(
      url,
      {
        method: "POST",
        headers: {
          authorization: `Bearer ${localApiKey(keyIndex)}`,
          "content-type": "application/json",
        },
      },
      (res) => {
        expect(res.statusCode).toBe(200);
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve(Buffer.concat(chunks).toString("latin1")));
        res.on("error", reject);
      },
    );
    sent.on("error", reject);
    sent.end(JSON.stringify(request));
  });
}

/** One answer of `judgedThroughProxy`: `body` to `request` at `path`, charged `completion` tokens. */
export interface ProxiedAnswer {
  path: string;
  body: string;
  request: Record<string, unknown>;
  completion: number;
  maxTokens: number;
  /** An answer that starts `data:` is typed as events, any other as JSON, unless this says. */
  contentType?: string;
}

/**
 * Each answer through a recording proxy as a job of key 1 in a fresh scenario, charged for the
 * tokens it claims; the jobs' verdicts and their rows, in order.
 */
export async function judgedThroughProxy(
  h: AdversaryHarness,
  answers: ProxiedAnswer[],
): Promise<{ verdicts: JobOutcome[]; rows: (JobRow | undefined)[] }> {
  const c = await h.scenario();
  await c.pinKey(1);
  const jobIds: string[] = [];
  for (const a of answers) {
    const plan = h.op.plan({ keyIndex: 1, completionTokens: a.completion, maxTokens: a.maxTokens });
    const contentType =
      a.contentType ?? (a.body.startsWith("data:") ? "text/event-stream" : "application/json");
    await jobThroughProxy(h, c.store, plan, a.path, a.body, a.request, { contentType });
    jobIds.push(plan.jobId);
  }
  const rows = await Promise.all(jobIds.map((id) => readJob(c.store, id)));
  return { verdicts: await c.verdicts(...jobIds), rows };
}

/**
 * One job of `plan` (its chain steps sent honestly) asked through the recording fetch, its
 * receipt posted to an ingest API on `store`: `request` (with the plan's model) posted to
 * `path`, answered 200 with `body` as the operator writes it and the job's headers. Resolves
 * with the text the caller read, once the receipt was delivered.
 */
export async function jobThroughFetch(
  h: AdversaryHarness,
  store: Store,
  plan: JobPlan,
  path: string,
  body: string | Buffer,
  request: Record<string, unknown>,
  options: {
    /** The answer's content type; JSON when not given. */
    contentType?: string;
    /** Asked by its path alone, resolved by the wrapped fetch (as a browser's resolves it). */
    pathAlone?: boolean;
    /** More headers of the answer (a `content-encoding`, say). */
    answerHeaders?: Record<string, string>;
  } = {},
): Promise<string> {
  const txs = h.op.honestJob(plan);
  const log = createLogger({ level: "silent" });
  const upstream = await jobUpstream(plan, txs, {
    body,
    headers: {
      "content-type": options.contentType ?? "application/json",
      ...options.answerHeaders,
    },
  });
  const audit = closedAfterTest(await serveApp({ store, log }));
  const errors: string[] = [];
  const recordingFetch = createRecordingFetch({
    ingestUrl: `${audit.url}/jobs`,
    token: await ingestToken(store),
    onError: (error) => errors.push(error.message),
    ...(options.pathAlone
      ? { fetch: (url, init) => fetch(new URL(String(url), upstream.url), init) }
      : {}),
  });
  const res = await recordingFetch(options.pathAlone ? path : `${upstream.url}${path}`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${localApiKey(plan.keyIndex)}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({ model: plan.requestedModel, ...request }),
  });
  const text = await res.text();
  await recordingFetch.flush();
  expect(errors).toEqual([]);
  expect(recordingFetch.stats()).toMatchObject({ delivered: 1, rejected: 0 });
  return text;
}

/**
 * A chat completion answering `text` whose usage names `completionTokens` completion tokens (12
 * prompt tokens), as JSON text.
 */
export function chatCompletionJson(text: string, completionTokens: number): string {
  return JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion",
    model: "qwen3-8b",
    choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", content: text } }],
    usage: {
      prompt_tokens: 12,
      completion_tokens: completionTokens,
      total_tokens: 12 + completionTokens,
    },
  });
}

/**
 * A chat completion stream answering `text` whose last event names `completionTokens` completion
 * tokens (12 prompt tokens), ended by `[DONE]`: as the proxy's client reads it.
 */
export function chatStreamEvents(text: string, completionTokens: number): string {
  return [
    { choices: [{ index: 0, delta: { role: "assistant", content: text } }], model: "qwen3-8b" },
    { choices: [{ index: 0, delta: {}, finish_reason: "stop" }], model: "qwen3-8b" },
    {
      choices: [],
      model: "qwen3-8b",
      usage: {
        prompt_tokens: 12,
        completion_tokens: completionTokens,
        total_tokens: 12 + completionTokens,
      },
    },
  ]
    .map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`)
    .join("")
    .concat("data: [DONE]\n\n");
}

/** `chatStreamEvents` answering `Hi.`: a stream too short for the tokens it names. */
export function hiStreamEvents(completionTokens = 2000): string {
  return chatStreamEvents("Hi.", completionTokens);
}
