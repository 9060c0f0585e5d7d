import { describe, expect, it } from "vitest";
import { type JobPlan, useAdversaryHarness } from "./support/operator.js";
import { jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A Responses API answer read as its client reads it, streamed or not, and held to the ceiling
 * its request set (`max_output_tokens`). A stream's text comes as `response.output_text.delta`
 * events and its usage in the `response.completed` event's response: unread, every streamed
 * Responses job was left unproven, and an operator could charge it up to the lock. And a
 * `max_output_tokens` read as no ceiling let 1,000 output tokens be charged and verified for a
 * request capped at 100.
 */
describe("Responses API answers: streams and the ceiling", () => {
  const h = useAdversaryHarness();

  const event = (data: Record<string, unknown>) =>
    `event: ${String(data.type)}\ndata: ${JSON.stringify(data)}\n\n`;
  const message = (text: string) => ({
    type: "message",
    id: "msg_1",
    role: "assistant",
    status: "completed",
    content: [{ type: "output_text", text, annotations: [] }],
  });
  const response = (output: unknown[], outputTokens: number | null, status = "completed") => ({
    id: "resp_1",
    object: "response",
    status,
    model: "qwen3-8b",
    error: null,
    output,
    usage:
      outputTokens === null
        ? null
        : { input_tokens: 12, output_tokens: outputTokens, total_tokens: 12 + outputTokens },
  });
  /** A stream whose text deltas are `deltas`, ending with `last` (the response whole). */
  const stream = (deltas: string[], last: Record<string, unknown>, extra: string[] = []) =>
    [
      event({ type: "response.created", response: response([], null, "in_progress") }),
      ...deltas.map((delta, i) =>
        event({
          type: "response.output_text.delta",
          item_id: "msg_1",
          output_index: 0,
          content_index: 0,
          delta,
          sequence_number: i + 1,
        }),
      ),
      ...extra,
      event({ type: "response.completed", response: last }),
    ].join("");

  async function streamed(
    c: { store: Parameters<typeof jobThroughProxy>[1] },
    plan: JobPlan,
    body: string,
  ) {
    await jobThroughProxy(
      h,
      c.store,
      plan,
      "/v1/responses",
      body,
      { input: "Hi", stream: true },
      {
        contentType: "text/event-stream",
      },
    );
  }

  it("reads an honest stream's text and usage, and verifies it", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const honest = h.op.plan({ keyIndex: 1, completionTokens: 800 });
    const text = "x".repeat(900);
    await streamed(
      c,
      honest,
      stream([text.slice(0, 400), text.slice(400)], response([message(text)], 800)),
    );
    expect(await c.verdicts(honest.jobId)).toEqual([{ verdict: "verified", failing: [] }]);
    expect(await readJob(c.store, honest.jobId)).toMatchObject({
      completionTokens: 800,
      promptTokens: 12,
      answerBytes: 900,
      responseModel: "qwen3-8b",
    });
  });

  it("counts no text a streaming client is not shown", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    // `Hi.` streamed; 2,000 bytes in the last event's output alone, and in events of kinds no
    // client shows as text, or after an error event (the SDK stops there).
    const padding = "x".repeat(2000);
    const onlyInLast = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await streamed(c, onlyInLast, stream(["Hi."], response([message(`Hi.${padding}`)], 2000)));
    const otherEvents = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await streamed(
      c,
      otherEvents,
      stream(["Hi."], response([message(`Hi.${padding}`)], 2000), [
        event({ type: "response.in_progress", delta: padding }),
        event({ type: "response.output_text.annotation.added", delta: padding }),
      ]),
    );
    const afterError = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await streamed(
      c,
      afterError,
      stream(["Hi."], response([message(`Hi.${padding}`)], 2000), [
        event({ type: "error", code: "server_error", message: "lost" }),
        event({ type: "response.output_text.delta", delta: padding }),
      ]),
    );
    expect(await c.verdicts(onlyInLast.jobId, otherEvents.jobId, afterError.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      // After the error nothing is read, usage included: an answer of 3 bytes bounds the charge.
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
    ]);
    expect(await readJob(c.store, onlyInLast.jobId)).toMatchObject({ answerBytes: 3 });
    expect(await readJob(c.store, afterError.jobId)).toMatchObject({
      completionTokens: null,
      answerBytes: 3,
    });
  });

  it("holds the usage to max_output_tokens, and judges the lock by it", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const text = "x".repeat(3000);
    // Capped at 100, charged for 1,000 (locked at the default's price).
    const over = h.op.plan({ keyIndex: 1, completionTokens: 1000 });
    await jobThroughProxy(
      h,
      c.store,
      over,
      "/v1/responses",
      JSON.stringify(response([message(text)], 1000)),
      { input: "Hi", max_output_tokens: 100 },
    );
    // Capped at 5,000, honestly locked at its price and charged for 3,000.
    const honest = h.op.plan({ keyIndex: 1, completionTokens: 3000, maxTokens: 5000 });
    await jobThroughProxy(
      h,
      c.store,
      honest,
      "/v1/responses",
      JSON.stringify(response([message(text)], 3000)),
      { input: "Hi", max_output_tokens: 5000 },
    );
    expect(await c.verdicts(over.jobId, honest.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["charge.matches_price", "escrow.within_ceiling"] },
      { verdict: "verified", failing: [] },
    ]);
    expect(await readJob(c.store, over.jobId)).toMatchObject({ maxTokens: 100 });
  });

  it("leaves a background job whose body it could not read unproven, not failed", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const queued = h.op.plan({ keyIndex: 1, completionTokens: 800 });
    const answer = {
      id: "resp_1",
      object: "response",
      status: "queued",
      model: "qwen3-8b",
      output: [],
      usage: null,
    };
    await jobThroughProxy(
      h,
      c.store,
      queued,
      "/v1/responses",
      JSON.stringify(answer),
      {},
      {
        sent: {
          body: Buffer.from("(zstd)"),
          headers: { "content-encoding": "zstd" },
        },
      },
    );
    expect(await c.verdicts(queued.jobId)).toEqual([
      { verdict: "partially_verified", failing: [] },
    ]);
  });
  it("verifies honest streams that call a tool or stop at max_output_tokens", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    // `Hi.` and a call of get_weather({"city":"Paris"}): 30 bytes and one call's format.
    const call = {
      type: "function_call",
      id: "fc_1",
      call_id: "call_1",
      name: "get_weather",
      arguments: '{"city":"Paris"}',
      status: "completed",
    };
    const calling = h.op.plan({ keyIndex: 1, completionTokens: 60 });
    const args = event({
      type: "response.function_call_arguments.delta",
      item_id: "fc_1",
      output_index: 1,
      delta: call.arguments,
    });
    await jobThroughProxy(
      h,
      c.store,
      calling,
      "/v1/responses",
      stream(["Hi."], response([message("Hi."), call], 60), [args]),
      { input: "Weather?", stream: true, tools: [{ type: "function", name: "get_weather" }] },
      { contentType: "text/event-stream" },
    );
    // Stopped at its ceiling: the stream ends with `response.incomplete`.
    const capped = h.op.plan({ keyIndex: 1, completionTokens: 600, maxTokens: 600 });
    const text = "y".repeat(700);
    const incomplete = stream([text], response([message(text)], 600, "incomplete")).replace(
      /response\.completed/g,
      "response.incomplete",
    );
    await jobThroughProxy(
      h,
      c.store,
      capped,
      "/v1/responses",
      incomplete,
      { input: "Go on", stream: true, max_output_tokens: 600 },
      { contentType: "text/event-stream" },
    );
    expect(await c.verdicts(calling.jobId, capped.jobId)).toEqual([
      { verdict: "verified", failing: [] },
      { verdict: "verified", failing: [] },
    ]);
    expect(await readJob(c.store, calling.jobId)).toMatchObject({
      answerBytes: 30,
      answerToolCalls: 1,
    });
  });
});
