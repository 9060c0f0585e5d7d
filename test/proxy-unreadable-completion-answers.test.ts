import { describe, expect, it } from "vitest";
import { useAdversaryHarness } from "./support/operator.js";
import { jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A Responses API or legacy completions answer its client cannot read (no JSON to a request
 * without `stream`, no events to one with it) gave the caller no completion, as a chat answer
 * of the kind does: the OpenAI SDKs parse these endpoints' answers as chat's. Read as unknown,
 * such an answer left its charge bounded by the lock alone: the operator took the price at
 * max_tokens (16 credits) for an HTML error page, and the job passed as partially verified.
 */
describe("unreadable answers of the Responses and legacy completions endpoints", () => {
  const h = useAdversaryHarness();

  const response = (text: string, outputTokens: number) => ({
    id: "resp_1",
    object: "response",
    status: "completed",
    model: "qwen3-8b",
    error: null,
    output: [
      {
        type: "message",
        role: "assistant",
        status: "completed",
        content: [{ type: "output_text", text, annotations: [] }],
      },
    ],
    usage: { input_tokens: 12, output_tokens: outputTokens, total_tokens: 12 + outputTokens },
  });
  const legacy = (text: string, completionTokens: number) => ({
    id: "cmpl_1",
    object: "text_completion",
    model: "qwen3-8b",
    choices: [{ index: 0, text, finish_reason: "stop" }],
    usage: {
      prompt_tokens: 12,
      completion_tokens: completionTokens,
      total_tokens: 12 + completionTokens,
    },
  });
  const html = "<html><body>upstream busy</body></html>";

  it("bounds a 200 that is no JSON as an answer of no bytes", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const responses = h.op.plan({ keyIndex: 1, completionTokens: null });
    await jobThroughProxy(
      h,
      c.store,
      responses,
      "/v1/responses",
      html,
      { input: "Say hi" },
      {
        contentType: "text/html",
      },
    );
    const completions = h.op.plan({ keyIndex: 1, completionTokens: null });
    await jobThroughProxy(
      h,
      c.store,
      completions,
      "/v1/completions",
      html,
      { prompt: "hi" },
      {
        contentType: "text/html",
      },
    );
    expect(await c.verdicts(responses.jobId, completions.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
    ]);
    expect(await readJob(c.store, responses.jobId)).toMatchObject({ answerBytes: 0 });
  });

  it("bounds a JSON answer to a stream request, and events to a JSON request, by what they hold", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    // Asked to stream, answered one JSON body: its client reads no event from it.
    const json = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await jobThroughProxy(
      h,
      c.store,
      json,
      "/v1/responses",
      JSON.stringify(response("Hi.", 2000)),
      {
        input: "Say hi",
        stream: true,
      },
    );
    const legacyJson = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await jobThroughProxy(
      h,
      c.store,
      legacyJson,
      "/v1/completions",
      JSON.stringify(legacy("Hi.", 2000)),
      { prompt: "hi", stream: true, stream_options: { include_usage: true } },
    );
    // Asked for JSON, answered with events: no JSON, no completion.
    const events = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    const completed = { type: "response.completed", response: response("x".repeat(3000), 2000) };
    await jobThroughProxy(
      h,
      c.store,
      events,
      "/v1/responses",
      `event: response.completed\ndata: ${JSON.stringify(completed)}\n\n`,
      { input: "Say hi" },
      { contentType: "text/event-stream" },
    );
    expect(await c.verdicts(json.jobId, legacyJson.jobId, events.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
    ]);
  });

  it("still verifies honest answers of both endpoints", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const responses = h.op.plan({ keyIndex: 1, completionTokens: 800 });
    await jobThroughProxy(
      h,
      c.store,
      responses,
      "/v1/responses",
      JSON.stringify(response("x".repeat(900), 800)),
      { input: "Write" },
    );
    const completions = h.op.plan({ keyIndex: 1, completionTokens: 800 });
    await jobThroughProxy(
      h,
      c.store,
      completions,
      "/v1/completions",
      JSON.stringify(legacy("x".repeat(900), 800)),
      { prompt: "Write" },
    );
    expect(await c.verdicts(responses.jobId, completions.jobId)).toEqual([
      { verdict: "verified", failing: [] },
      { verdict: "verified", failing: [] },
    ]);
  });

  it("bounds a JSON answer too long to hold, to a stream request, by the events it holds", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const long = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    const body = JSON.stringify({ ...response("Hi.", 2000), pad: "x".repeat(9 * 1024 * 1024) });
    await jobThroughProxy(h, c.store, long, "/v1/responses", body, {
      input: "Say hi",
      stream: true,
    });
    expect(await c.verdicts(long.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
    ]);
    expect(await readJob(c.store, long.jobId)).toMatchObject({ answerBytes: 0 });
  });
});
