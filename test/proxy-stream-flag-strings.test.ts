import { describe, expect, it } from "vitest";
import { useAdversaryHarness } from "./support/operator.js";
import { jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * `stream` and `stream_options.include_usage` written as strings. OpenAI, Ollama and TGI refuse
 * them (400/422); vLLM and SGLang validate with coercion and read `"true"` as true, as the SDKs
 * read a truthy `stream` (they parse the answer as events). What the upstream did with them
 * shows in its answer: an event stream is a stream. Read as `stream: false`, an honest stream
 * to `stream: "true"` was an answer of no bytes (its job a discrepancy), and a stream asked for
 * its usage by `include_usage: "true"` was taken as not asked: the operator dropped its usage
 * chunk and charged the lock for `Hi.`, partially verified.
 */
describe("stream flags written as strings", () => {
  const h = useAdversaryHarness();

  const usage = (completion: number) => ({
    prompt_tokens: 12,
    completion_tokens: completion,
    total_tokens: 12 + completion,
  });
  const chunk = (extra: object) =>
    `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", ...extra })}\n\n`;
  const stream = (text: string, completion: number | null) =>
    [
      chunk({ choices: [{ index: 0, delta: { role: "assistant", content: text } }] }),
      chunk({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }),
      ...(completion === null ? [] : [chunk({ choices: [], usage: usage(completion) })]),
      "data: [DONE]\n\n",
    ].join("");
  const sse = { contentType: "text/event-stream" };
  /** A JSON completion of 900 bytes naming `tokens` completion tokens. */
  const completion = (tokens: number) =>
    JSON.stringify({
      id: "c",
      object: "chat.completion",
      model: "qwen3-8b",
      choices: [{ index: 0, message: { role: "assistant", content: "w".repeat(900) } }],
      usage: usage(tokens),
    });
  const messages = [{ role: "user", content: "Write" }];

  it('reads a stream answered to stream "true" as the stream it is', async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1, completionTokens: 400 });
    const request = { messages, stream: "true", stream_options: { include_usage: "true" } };
    await jobThroughProxy(
      h,
      c.store,
      plan,
      "/v1/chat/completions",
      stream("w".repeat(900), 400),
      request,
      sse,
    );
    expect(await c.verdicts(plan.jobId)).toEqual([{ verdict: "verified", failing: [] }]);
    expect(await readJob(c.store, plan.jobId)).toMatchObject({
      answerBytes: 900,
      completionTokens: 400,
      stream: true,
      usageAsked: true,
    });
  });

  it('bounds a stream asked for its usage by include_usage "true" that withheld it', async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const path = "/v1/chat/completions";
    const withheld = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    const asked = { messages, stream: true, stream_options: { include_usage: "true" } };
    await jobThroughProxy(h, c.store, withheld, path, stream("Hi.", null), asked, sse);
    const both = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    const strings = { messages, stream: "True", stream_options: { include_usage: "1" } };
    await jobThroughProxy(h, c.store, both, path, stream("Hi.", null), strings, sse);
    // Not asked (a string no validator reads as true): bounded by the lock, as before.
    const unasked = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    const no = { messages, stream: true, stream_options: { include_usage: "false" } };
    await jobThroughProxy(h, c.store, unasked, path, stream("Hi.", null), no, sse);
    expect(await c.verdicts(withheld.jobId, both.jobId, unasked.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
      { verdict: "partially_verified", failing: [] },
    ]);
  });

  it('reads a JSON answer to stream "true" as its SDK does: as events, of which it holds none', async () => {
    // vLLM and SGLang stream it; read as JSON, its usage was verified though no event was read.
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const body = completion(640);
    await jobThroughProxy(h, c.store, plan, "/v1/chat/completions", body, {
      messages,
      stream: "true",
    });
    expect(await c.verdicts(plan.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
    ]);
    expect(await readJob(c.store, plan.jobId)).toMatchObject({
      answerBytes: 0,
      completionTokens: null,
      stream: true,
    });
  });

  it('reads a JSON answer to stream "false" as the JSON it is', async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1, completionTokens: 400 });
    const body = completion(400);
    await jobThroughProxy(h, c.store, plan, "/v1/chat/completions", body, {
      messages,
      stream: "false",
    });
    expect(await c.verdicts(plan.jobId)).toEqual([{ verdict: "verified", failing: [] }]);
  });
});
