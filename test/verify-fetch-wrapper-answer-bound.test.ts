import http from "node:http";
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { localApiKey } from "../src/localnet/keys.js";
import { createLogger } from "../src/log.js";
import { createRecordingFetch } from "../src/recorder/fetch-wrapper.js";
import { parseReceiptInput, wireReceiptOf } from "../src/recorder/receipt-input.js";
import { discrepancy, type JobPlan, useAdversaryHarness, verified } from "./support/operator.js";
import { jobThroughFetch } from "./support/proxy-job.js";
import {
  closedAfterTest,
  ingestToken,
  jobUpstream,
  listen,
  serveApp,
} from "./support/recorder-fixtures.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A backend that calls Decentral with the recording fetch gets the same bound on the usage the
 * operator names as one behind the proxy: the completion tokens of a JSON answer are bounded by
 * the bytes of the text its client read (`usage.consistent`). Before, its receipts carried no
 * answer size, and an operator could name any count up to the request's ceiling for an answer
 * of three bytes, verified.
 */

const h = useAdversaryHarness();

const log = createLogger({ level: "silent" });

/** A chat completion answering `message`, with `usage` as the operator claims it. */
const completion = (message: Record<string, unknown>, usage: Record<string, unknown>) => ({
  id: "chatcmpl-1",
  object: "chat.completion",
  model: "qwen3-8b",
  choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", ...message } }],
  usage,
});

type Scenario = Awaited<ReturnType<typeof h.scenario>>;

/** One job of `plan` asked through the recording fetch (`jobThroughFetch`), answered `body`. */
async function throughFetch(
  c: Scenario,
  plan: JobPlan,
  body: unknown,
  request: Record<string, unknown> = {},
  path = "/v1/chat/completions",
): Promise<void> {
  await jobThroughFetch(h, c.store, plan, path, JSON.stringify(body), {
    messages: [{ role: "user", content: "Say hi" }],
    ...request,
  });
}

describe("the recording fetch's receipts carry what the answer holds", () => {
  it("fails 640 completion tokens charged for an answer of three bytes, and lets reasoning tokens and a long answer explain them", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const usage = { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 };
    // Usage that adds up, priced honestly on chain, for an answer that cannot hold it.
    const made = h.op.plan({ keyIndex: 1 });
    await throughFetch(c, made, completion({ content: "Hi." }, usage));
    // The same answer after 630 tokens of reasoning the operator names: it can hold 640.
    const reasoned = h.op.plan({ keyIndex: 1 });
    await throughFetch(
      c,
      reasoned,
      completion(
        { content: "Hi." },
        { ...usage, completion_tokens_details: { reasoning_tokens: 630 } },
      ),
    );
    // An honest answer of 620 words and a call of the tool it offered.
    const honest = h.op.plan({ keyIndex: 1 });
    await throughFetch(
      c,
      honest,
      completion(
        {
          content: Array.from({ length: 620 }, () => "w").join(" "),
          tool_calls: [{ type: "function", function: { name: "f", arguments: '{"a":1}' } }],
        },
        usage,
      ),
      { tools: [{ type: "function", function: { name: "f", parameters: {} } }] },
    );
    expect(await c.verdicts(made.jobId, reasoned.jobId, honest.jobId)).toEqual([
      discrepancy("usage.consistent"),
      verified,
      verified,
    ]);
    expect(await c.check(made.jobId, "usage.consistent")).toMatchObject({
      outcome: "fail",
      expected: { completionTokensAtMost: 19 },
      actual: { completionTokens: 640, answerBytes: 3, reasoningTokens: null },
    });
    expect(await c.check(reasoned.jobId, "usage.consistent")).toMatchObject({
      outcome: "pass",
      expected: { completionTokensAtMost: 649 },
    });
    expect(await readJob(c.store, honest.jobId)).toMatchObject({
      source: "ingest",
      answerBytes: 1239 + 8,
      answerToolCalls: 1,
    });
  });

  it("fails rejected prediction tokens named for a request that sent no prediction", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    // 630 of the 640 tokens named as predicted outputs the model rejected: they would lift the
    // bound of `Hi.` to 649, but the request sent no `prediction` to reject.
    const made = h.op.plan({ keyIndex: 1 });
    const usage = {
      prompt_tokens: 12,
      completion_tokens: 640,
      total_tokens: 652,
      completion_tokens_details: { rejected_prediction_tokens: 630 },
    };
    await throughFetch(c, made, completion({ content: "Hi." }, usage));
    // Sent with a prediction, the same answer is honest.
    const predicted = h.op.plan({ keyIndex: 1 });
    await throughFetch(c, predicted, completion({ content: "Hi." }, usage), {
      prediction: { type: "content", content: "Hello there, how can I help you today?" },
    });
    expect(await c.verdicts(made.jobId, predicted.jobId)).toEqual([
      discrepancy("usage.consistent"),
      verified,
    ]);
  });

  it("bounds a Responses API answer by its output's text", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const answer = (text: string) => ({
      id: "resp_1",
      object: "response",
      status: "completed",
      model: "qwen3-8b",
      output: [
        {
          type: "message",
          role: "assistant",
          content: [{ type: "output_text", text, annotations: [] }],
        },
      ],
      usage: { input_tokens: 12, output_tokens: 640, total_tokens: 652 },
    });
    const made = h.op.plan({ keyIndex: 1 });
    await throughFetch(c, made, answer("Hi."), {}, "/v1/responses");
    const honest = h.op.plan({ keyIndex: 1 });
    await throughFetch(c, honest, answer("w ".repeat(320)), {}, "/v1/responses");
    expect(await c.verdicts(made.jobId, honest.jobId)).toEqual([
      discrepancy("usage.consistent"),
      verified,
    ]);
  });

  it("reads padding its client never reads as no text, as the proxy does", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    // 2,000 bytes in a legacy `text` beside the chat message: a chat client reads the message.
    const padded = h.op.plan({ keyIndex: 1 });
    const body = completion(
      { content: "Hi." },
      { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 },
    );
    (body.choices[0] as Record<string, unknown>).text = "x".repeat(2000);
    await throughFetch(c, padded, body);
    expect(await c.verdicts(padded.jobId)).toEqual([discrepancy("usage.consistent")]);
  });
});

/**
 * A backend that posts the completion its SDK gave it whole, with the job's headers in
 * `_decentral` (as the Python integration does with `model_dump()`; the Node SDK's parsed
 * object here). Its top level is the operator's answer as the caller read it: counted for the
 * bound, never taken at its word (an `answer_bytes` member there is the operator's).
 */
async function postedWhole(
  c: Scenario,
  plan: JobPlan,
  body: Record<string, unknown>,
  leaveOut: string[] = [],
): Promise<void> {
  const txs = h.op.honestJob(plan);
  const upstream = await jobUpstream(plan, txs, { body: JSON.stringify(body) });
  const audit = closedAfterTest(await serveApp({ store: c.store, log }));
  const client = new OpenAI({
    baseURL: `${upstream.url}/v1`,
    apiKey: localApiKey(plan.keyIndex),
    maxRetries: 0,
  });
  const { data, response } = await client.chat.completions
    .create({ model: plan.requestedModel, messages: [{ role: "user", content: "Say hi" }] })
    .withResponse();
  const header = (name: string) => response.headers.get(`x-decentral-${name}`);
  const posted: Record<string, unknown> = {
    ...data,
    _decentral: {
      job_id: header("job-id"),
      escrow_tx: header("tx-signature"),
      settlement_tx: header("settlement-tx"),
      worker: header("worker"),
      requested_model: plan.requestedModel,
      key_fingerprint: plan.fingerprint,
    },
  };
  for (const member of leaveOut) delete posted[member];
  const res = await fetch(`${audit.url}/jobs`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await ingestToken(c.store)}`,
      "content-type": "application/json",
    },
    body: JSON.stringify(posted),
  });
  expect(res.status, await res.text()).toBe(201);
}

describe("a completion posted whole with `_decentral` is bounded by the answer it carries", () => {
  it("fails 640 completion tokens charged for `Hi.`, verifies an answer that holds them, and bounds nothing without an answer", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const usage = { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 };
    const made = h.op.plan({ keyIndex: 1 });
    await postedWhole(c, made, completion({ content: "Hi." }, usage));
    // Reasoning the operator names in the usage's details may explain the count, as behind
    // the proxy.
    const reasoned = h.op.plan({ keyIndex: 1 });
    await postedWhole(
      c,
      reasoned,
      completion(
        { content: "Hi." },
        { ...usage, completion_tokens_details: { reasoning_tokens: 630 } },
      ),
    );
    const honest = h.op.plan({ keyIndex: 1 });
    await postedWhole(
      c,
      honest,
      completion({ content: Array.from({ length: 620 }, () => "w").join(" ") }, usage),
    );
    // An integration that leaves the answer out (its text is the customer's): no bound, the
    // usage's arithmetic alone, as a plain receipt without `answer_bytes`.
    const textless = h.op.plan({ keyIndex: 1 });
    await postedWhole(c, textless, completion({ content: "Hi." }, usage), ["choices"]);
    expect(await c.verdicts(made.jobId, reasoned.jobId, honest.jobId, textless.jobId)).toEqual([
      discrepancy("usage.consistent"),
      verified,
      verified,
      verified,
    ]);
    expect(await c.check(made.jobId, "usage.consistent")).toMatchObject({
      outcome: "fail",
      actual: { completionTokens: 640, answerBytes: 3 },
    });
  });
});

describe("a completion posted whole is read as its chat client read it", () => {
  const usage = { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 };
  const posted = (choices: unknown[], details: Record<string, unknown> = {}, n?: number) =>
    parseReceiptInput({
      id: "chatcmpl-1",
      object: "chat.completion",
      choices,
      usage: { ...usage, completion_tokens_details: details },
      _decentral: { job_id: "job_postedwhole0001", escrow_tx: "5".repeat(88), n },
    });
  const hi = { index: 0, finish_reason: "stop", message: { role: "assistant", content: "Hi." } };
  const answerOf = (read: ReturnType<typeof parseReceiptInput>) =>
    read.ok
      ? {
          bytes: read.receipt.answerBytes,
          reasoning: read.receipt.reasoningTokens ?? null,
          rejected: read.receipt.rejectedPredictionTokens ?? null,
        }
      : read;

  it("bounds audio of a format it is not told by the lowest floor, where the proxy would bound nothing", () => {
    // Four base64 characters are three bytes: a fraction of a second at 6 kbit/s, one token.
    const audio = { id: "a", data: "AAAA", transcript: "", expires_at: 1 };
    expect(answerOf(posted([{ ...hi, message: { ...hi.message, audio } }]))).toMatchObject({
      bytes: 4,
    });
  });

  it("counts the choices asked (one when `_decentral.n` does not say), and a chat message alone", () => {
    const padding = "x".repeat(700);
    const second = { ...hi, index: 1, message: { role: "assistant", content: padding } };
    expect(answerOf(posted([hi, second]))).toMatchObject({ bytes: 3 });
    expect(answerOf(posted([hi, second], {}, 2))).toMatchObject({ bytes: 703 });
    // A legacy `text` is no answer a chat client reads, beside a message or where the message
    // is no object (the client read nothing).
    expect(answerOf(posted([{ ...hi, text: padding }]))).toMatchObject({ bytes: 3 });
    expect(answerOf(posted([{ ...hi, message: "Hi.", text: padding }]))).toMatchObject({
      bytes: 0,
    });
  });

  it("reads a content part, a tool call and a transcript as its client shows them, not by what they carry", () => {
    const padding = "x".repeat(700);
    const withMessage = (message: Record<string, unknown>) => [
      { ...hi, message: { ...hi.message, ...message } },
    ];
    const parts = (...more: unknown[]) => ({ content: [{ type: "text", text: "Hi." }, ...more] });
    // A transcript with no audio beside it: none the client plays.
    expect(
      answerOf(posted(withMessage({ audio: { id: "a", transcript: padding } }))),
    ).toMatchObject({ bytes: 3 });
    // A part of another type carrying text, a text part carrying thinking or a refusal, an
    // untyped part's refusal: no text the client shows.
    for (const message of [
      parts({ type: "image_url", text: padding }),
      { content: [{ type: "text", text: "Hi.", thinking: padding, refusal: padding }] },
      parts({ refusal: padding }),
    ]) {
      expect(answerOf(posted(withMessage(message)))).toMatchObject({ bytes: 3 });
    }
    // A tool call of a type no client runs: no text and no call.
    const retrieval = { id: "c", type: "retrieval", function: { name: "f", arguments: padding } };
    const read = posted(withMessage({ tool_calls: [retrieval] }));
    expect(read.ok && [read.receipt.answerBytes, read.receipt.answerToolCalls]).toEqual([3, 0]);
  });

  it("reads the reasoning tokens its usage names, and not rejected prediction tokens, whose request it cannot see", () => {
    expect(
      answerOf(posted([hi], { reasoning_tokens: 630, rejected_prediction_tokens: 630 })),
    ).toEqual({ bytes: 3, reasoning: 630, rejected: null });
  });

  it("counts no Responses API output: its usage is not read as completion tokens either", () => {
    const read = parseReceiptInput({
      object: "response",
      output: [{ type: "message", content: [{ type: "output_text", text: "Hi." }] }],
      usage: { input_tokens: 12, output_tokens: 640 },
      _decentral: { job_id: "job_postedwhole0002", escrow_tx: "5".repeat(88) },
    });
    expect(read).toMatchObject({ ok: true, receipt: { completionTokens: null } });
    expect(read.ok && read.receipt.answerBytes).toBeUndefined();
  });
});

describe("the recording fetch reads a JSON answer only as its SDK can", () => {
  /** The job's row once `body`, typed `contentType`, was answered through the recording fetch. */
  async function recorded(body: string, contentType = "application/json") {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 1 });
    const upstream = await jobUpstream(plan, h.op.honestJob(plan), {
      body,
      headers: { "content-type": contentType },
    });
    const audit = closedAfterTest(await serveApp({ store: c.store, log }));
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token: await ingestToken(c.store),
    });
    const res = await recordingFetch(`${upstream.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${localApiKey(plan.keyIndex)}` },
      body: JSON.stringify({ model: plan.requestedModel, messages: [] }),
    });
    await res.arrayBuffer();
    await recordingFetch.flush();
    expect(recordingFetch.stats()).toMatchObject({ delivered: 1 });
    return readJob(c.store, plan.jobId);
  }
  const answer = JSON.stringify(
    completion(
      { content: "x".repeat(1000) },
      { prompt_tokens: 12, completion_tokens: 1000, total_tokens: 1012 },
    ),
  );

  it("reads past the byte-order marks fetch drops, and reads no completion where its JSON reader fails", async () => {
    // fetch's json() parses the body after two marks and fails on a third: its client then got
    // no completion, and the usage the answer names prices nothing.
    expect(await recorded(`\uFEFF\uFEFF${answer}`)).toMatchObject({
      completionTokens: 1000,
      answerBytes: 1000,
    });
    expect(await recorded(`\uFEFF\uFEFF\uFEFF${answer}`)).toMatchObject({
      completionTokens: null,
      answerBytes: 0,
    });
  });

  it("reads a body as JSON whatever its media type says, as the proxy reads it", async () => {
    // Node's SDK hands a body typed text/plain over as text, whatever a parameter names, and
    // Python's parses it as JSON: read as JSON, as the proxy reads it, its usage bounded by its
    // text (dropped, a usage of 10 tokens for 3,000 bytes charged 2,000 was left unproven).
    expect(await recorded(answer, "text/plain; x=application/json")).toMatchObject({
      completionTokens: 1000,
      answerBytes: 1000,
      stream: false,
    });
    expect(await recorded(answer, "application/vnd.decentral+json; charset=utf-8")).toMatchObject({
      completionTokens: 1000,
      answerBytes: 1000,
    });
  });
});

/** An event stream of `deltas` as a chat completion's chunks, then one of `usage`, and `[DONE]`. */
function stream(deltas: Record<string, unknown>[], usage: Record<string, unknown> | null): string {
  const chunk = (body: Record<string, unknown>) =>
    `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", model: "qwen3-8b", ...body })}\n\n`;
  return [
    ...deltas.map((delta) => chunk({ choices: [{ index: 0, delta, finish_reason: null }] })),
    ...(usage === null ? [] : [chunk({ choices: [], usage })]),
    "data: [DONE]\n\n",
  ].join("");
}

describe("the recording fetch's receipts of streams", () => {
  /** The recording fetch of a scenario's store, with its ingest API. */
  async function recordingFetchOf(c: Scenario) {
    const audit = closedAfterTest(await serveApp({ store: c.store, log }));
    return createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token: await ingestToken(c.store),
    });
  }

  /** A streamed job of `plan` asked through the recording fetch and read to its end. */
  async function streamedThroughFetch(
    c: Scenario,
    plan: JobPlan,
    body: string | Buffer,
  ): Promise<void> {
    const upstream = await jobUpstream(plan, h.op.honestJob(plan), {
      body,
      headers: { "content-type": "text/event-stream" },
    });
    const recordingFetch = await recordingFetchOf(c);
    const res = await recordingFetch(`${upstream.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${localApiKey(plan.keyIndex)}` },
      body: JSON.stringify({
        model: plan.requestedModel,
        messages: [],
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    await res.text();
    await recordingFetch.flush();
    expect(recordingFetch.stats()).toMatchObject({ delivered: 1, rejected: 0 });
  }

  /**
   * A streamed job of `plan` asked through the recording fetch from an upstream that sends its
   * first chunk and never ends (`onClose` when the connection to it closes).
   */
  async function endlessStream(
    c: Scenario,
    plan: JobPlan,
    txs: { escrowTx: string },
    onClose: () => void = () => {},
  ) {
    const upstream = closedAfterTest(
      await listen(
        http.createServer(async (req, res) => {
          for await (const _ of req) {
            // drain the request
          }
          res.on("close", onClose);
          res.writeHead(200, {
            "content-type": "text/event-stream",
            "x-decentral-job-id": plan.jobId,
            "x-decentral-tx-signature": txs.escrowTx,
          });
          res.write(stream([{ content: "Hi." }], null).replace("data: [DONE]\n\n", ""));
        }),
      ),
    );
    const recordingFetch = await recordingFetchOf(c);
    const res = await recordingFetch(`${upstream.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${localApiKey(plan.keyIndex)}` },
      body: JSON.stringify({ model: plan.requestedModel, messages: [], stream: true }),
    });
    return { upstream, recordingFetch, res };
  }

  it("verifies an honest stream by its usage, and fails 640 tokens named for `Hi.`", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const usage = { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 };
    const honest = h.op.plan({ keyIndex: 1 });
    const words = Array.from({ length: 320 }, () => ({ content: "w " }));
    await streamedThroughFetch(c, honest, stream(words, usage));
    const made = h.op.plan({ keyIndex: 1 });
    await streamedThroughFetch(c, made, stream([{ content: "Hi." }], usage));
    expect(await c.verdicts(honest.jobId, made.jobId)).toEqual([
      verified,
      discrepancy("usage.consistent"),
    ]);
    expect(await readJob(c.store, honest.jobId)).toMatchObject({
      completionTokens: 640,
      answerBytes: 640,
    });
  });

  it("reads nothing after a line Python's SDK fails at, as the proxy reads it", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const usage = { prompt_tokens: 12, completion_tokens: 643, total_tokens: 655 };
    const whole = stream([{ content: "Hi." }, { content: "w ".repeat(320) }], usage);
    const first = whole.indexOf("\n\n") + 2;
    // A comment line holding a byte that is no UTF-8: Python's SDK fails the stream there
    // (`UnicodeDecodeError`), Node's reads on to the 640 bytes and the usage after it.
    const body = Buffer.concat([
      Buffer.from(whole.slice(0, first)),
      Buffer.from([0x3a, 0x20, 0xff, 0x0a]),
      Buffer.from(whole.slice(first)),
    ]);
    const made = h.op.plan({ keyIndex: 1, completionTokens: 643 });
    await streamedThroughFetch(c, made, body);
    expect(await c.verdicts(made.jobId)).toEqual([discrepancy("charge.matches_price")]);
    expect(await readJob(c.store, made.jobId)).toMatchObject({
      completionTokens: null,
      answerBytes: 3,
    });
  });

  it("sends a stream's receipt from its headers when flush() comes before the stream's end", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    // A stream that never ends: its first chunk, and nothing more.
    const { recordingFetch, res } = await endlessStream(c, plan, txs);
    const reader = res.body?.getReader();
    await reader?.read();
    await recordingFetch.flush({ timeoutMs: 10_000 });
    expect(recordingFetch.stats()).toMatchObject({ delivered: 1, rejected: 0 });
    expect(await readJob(c.store, plan.jobId)).toMatchObject({
      completionTokens: null,
      answerBytes: null,
    });
    await reader?.cancel();
  });

  it("hands the OpenAI SDK a stream it reads whole, and records its usage", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const words = Array.from({ length: 320 }, () => ({ content: "w " }));
    const upstream = await jobUpstream(plan, h.op.honestJob(plan), {
      body: stream(words, { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 }),
      headers: { "content-type": "text/event-stream" },
    });
    const recordingFetch = await recordingFetchOf(c);
    const client = new OpenAI({
      apiKey: localApiKey(plan.keyIndex),
      baseURL: `${upstream.url}/v1`,
      fetch: recordingFetch,
      maxRetries: 0,
    });
    const chunks = await client.chat.completions.create({
      model: plan.requestedModel,
      messages: [{ role: "user", content: "Say hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    for await (const chunk of chunks) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe("w ".repeat(320));
    await recordingFetch.flush();
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });

  it("lets the caller's cancel reach the upstream, and sends the receipt from its headers at once", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((resolve) => {
      upstreamClosed = resolve;
    });
    // A stream that would run for ever: a generation the caller stops by cancelling its read.
    const { upstream, recordingFetch, res } = await endlessStream(c, plan, txs, upstreamClosed);
    expect(res.headers.get("x-decentral-job-id")).toBe(plan.jobId);
    expect(res.url).toBe(`${upstream.url}/v1/chat/completions`);
    const reader = res.body?.getReader();
    expect(new TextDecoder().decode((await reader?.read())?.value)).toContain("Hi.");
    await reader?.cancel();
    // The upstream sees the caller go: the wrapper does not keep reading what nobody reads.
    await closed;
    await recordingFetch.flush({ timeoutMs: 10_000 });
    expect(recordingFetch.stats()).toMatchObject({ delivered: 1, rejected: 0 });
    expect(await readJob(c.store, plan.jobId)).toMatchObject({ completionTokens: null });
  });
});

describe("answer_bytes and answer_tool_calls on the wire", () => {
  const receipt = {
    job_id: "job_answerbytes0001",
    escrow_tx: "5".repeat(88),
  };

  it("are read from a plain receipt and refused by name when no count", () => {
    const read = parseReceiptInput({
      ...receipt,
      answer_bytes: 3,
      answer_tool_calls: 0,
      usage: { completion_tokens: 10, reasoning_tokens: 7, rejected_prediction_tokens: 1 },
    });
    expect(read).toMatchObject({
      ok: true,
      receipt: {
        answerBytes: 3,
        answerToolCalls: 0,
        completionTokens: 10,
        reasoningTokens: 7,
        rejectedPredictionTokens: 1,
      },
    });
    for (const [field, value] of [
      ["answer_bytes", -1],
      ["answer_bytes", 1.5],
      ["answer_bytes", "3"],
      ["answer_tool_calls", 2 ** 31],
      ["prediction_sent", "yes"],
    ] as const) {
      expect(parseReceiptInput({ ...receipt, [field]: value })).toMatchObject({
        ok: false,
        field,
      });
    }
  });

  it("are not read from a completion's top level, which is the operator's answer: its answer is counted", () => {
    const wrapped = {
      ...completion({ content: "Hi." }, { completion_tokens: 640 }),
      answer_bytes: 100_000,
      _decentral: { ...receipt },
    };
    const read = parseReceiptInput(wrapped);
    expect(read).toMatchObject({ ok: true, receipt: { completionTokens: 640, answerBytes: 3 } });
    // Nor does another spelling there refuse the receipt: the operator's members never do.
    expect(
      parseReceiptInput({ ...wrapped, answer_bytes: undefined, answerBytes: 1 }),
    ).toMatchObject({ ok: true });
    // Inside `_decentral` they are no field of it: refused by name, not read.
    expect(
      parseReceiptInput({ ...wrapped, _decentral: { ...receipt, answer_bytes: 3 } }),
    ).toMatchObject({ ok: false, field: "_decentral.answer_bytes" });
  });

  it("survive the import line a proxy writes when it cannot record", () => {
    const read = parseReceiptInput({
      ...receipt,
      answer_bytes: 5,
      answer_tool_calls: 2,
      prediction_sent: false,
    });
    if (!read.ok) throw new Error(read.reason);
    const line = wireReceiptOf({ ...read.receipt, reasoningTokens: 4 });
    expect(line).toMatchObject({ answer_bytes: 5, answer_tool_calls: 2, prediction_sent: false });
    expect(parseReceiptInput(line)).toMatchObject({
      ok: true,
      receipt: { answerBytes: 5, answerToolCalls: 2, reasoningTokens: 4, predictionSent: false },
    });
  });
});
