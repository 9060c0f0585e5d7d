import { describe, expect, it } from "vitest";
import { type Asked, jsonBodyFacts, scannedBodyFacts } from "../src/recorder/answer-facts.js";
import { createJsonAnswerScan } from "../src/recorder/json-answer-scan.js";
import { useAdversaryHarness } from "./support/operator.js";
import { jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * vLLM writes a chat answer's reasoning under `reasoning` and, since it renamed the field, the
 * same text under `reasoning_content` too; a client reads one of them. Both were counted, so an
 * honest answer's reasoning bounded its usage twice over: an operator answering 3,000 bytes of
 * reasoning and `Hi.` could claim 6,000 completion tokens, verified.
 */
describe("one text under two names: reasoning, tool calls", () => {
  const thought = "x".repeat(3000);
  const chat: Asked = { choices: 1, audio: false, tools: false, chat: true };
  const usage = (completion: number) => ({
    prompt_tokens: 12,
    completion_tokens: completion,
    total_tokens: 12 + completion,
  });
  const answer = (completion: number) =>
    JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion",
      model: "qwen3-8b",
      choices: [
        {
          index: 0,
          finish_reason: "stop",
          message: {
            role: "assistant",
            content: "Hi.",
            reasoning: thought,
            reasoning_content: thought,
          },
        },
      ],
      usage: usage(completion),
    });

  it("counts one text under both names once, held whole or read as it passes", () => {
    expect(jsonBodyFacts(answer(10), [], chat).answerBytes).toBe(3003);
    const scan = createJsonAnswerScan(chat);
    scan.add(Buffer.from(answer(10)));
    expect(scannedBodyFacts(scan, [], chat).answerBytes).toBe(3003);
    // Under one name alone, it is all counted.
    const one = answer(10).replace(`"reasoning_content":"${thought}"`, '"reasoning_content":""');
    expect(jsonBodyFacts(one, [], chat).answerBytes).toBe(3003);
  });

  const h = useAdversaryHarness();

  it("fails usage beyond the reasoning read once, in a stream and in a JSON answer", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const chunk = (delta: object, extra: object = {}) =>
      `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices: [{ index: 0, delta }], ...extra })}\n\n`;
    const stream = (completion: number) =>
      [
        ...Array.from({ length: 30 }, () =>
          chunk({ reasoning: thought.slice(0, 100), reasoning_content: thought.slice(0, 100) }),
        ),
        chunk({ content: "Hi." }),
        `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices: [], usage: usage(completion) })}\n\n`,
        "data: [DONE]\n\n",
      ].join("");
    const request = { messages: [{ role: "user", content: "hi" }], max_tokens: 8000 };
    const streamed = { ...request, stream: true, stream_options: { include_usage: true } };
    const padded = h.op.plan({ keyIndex: 1, completionTokens: 6000, maxTokens: 8000 });
    await jobThroughProxy(h, c.store, padded, "/v1/chat/completions", answer(6000), request);
    const paddedStream = h.op.plan({ keyIndex: 1, completionTokens: 6000, maxTokens: 8000 });
    await jobThroughProxy(
      h,
      c.store,
      paddedStream,
      "/v1/chat/completions",
      stream(6000),
      streamed,
      {
        contentType: "text/event-stream",
      },
    );
    const honest = h.op.plan({ keyIndex: 1, completionTokens: 900, maxTokens: 8000 });
    await jobThroughProxy(h, c.store, honest, "/v1/chat/completions", stream(900), streamed, {
      contentType: "text/event-stream",
    });
    expect(await c.verdicts(padded.jobId, paddedStream.jobId, honest.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "verified", failing: [] },
    ]);
    expect(await readJob(c.store, paddedStream.jobId)).toMatchObject({ answerBytes: 3003 });
  });

  /** A chat tool call carrying its arguments as a function's and again as a custom tool's input. */
  const twice = (args: string, extra: object = {}) => ({
    type: "function",
    function: { name: "f", arguments: args },
    custom: { name: "f", input: args },
    ...extra,
  });
  const tools = [{ type: "function", function: { name: "f", parameters: { type: "object" } } }];

  /**
   * `stream` answered to a request offering `tools`, charged `completion` tokens: asserts its
   * usage fails, and resolves with its row.
   */
  async function paddedToolStream(stream: string, completion: number) {
    const c = await h.scenario();
    await c.pinKey(1);
    const padded = h.op.plan({ keyIndex: 1, completionTokens: completion, maxTokens: 8000 });
    const request = {
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 8000,
      tools,
      stream: true,
      stream_options: { include_usage: true },
    };
    await jobThroughProxy(h, c.store, padded, "/v1/chat/completions", stream, request, {
      contentType: "text/event-stream",
    });
    expect(await c.verdicts(padded.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
    ]);
    return readJob(c.store, padded.jobId);
  }

  it("counts a tool call under both kinds once, held whole or read as it passes", () => {
    const offered: Asked = { ...chat, tools: true };
    const body = JSON.stringify({
      model: "qwen3-8b",
      choices: [{ index: 0, message: { content: "", tool_calls: [twice(thought, { id: "c1" })] } }],
      usage: usage(10),
    });
    expect(jsonBodyFacts(body, [], offered)).toMatchObject({
      answerBytes: 3001,
      answerToolCalls: 1,
    });
    const scan = createJsonAnswerScan(offered);
    scan.add(Buffer.from(body));
    expect(scannedBodyFacts(scan, [], offered)).toMatchObject({
      answerBytes: 3001,
      answerToolCalls: 1,
    });
  });

  it("fails usage beyond a streamed call read once", async () => {
    const chunk = (call: object) =>
      `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices: [{ index: 0, delta: { tool_calls: [call] } }] })}\n\n`;
    const stream = [
      chunk(twice("", { index: 0, id: "call_1" })),
      ...Array.from({ length: 30 }, () =>
        chunk({
          index: 0,
          function: { arguments: thought.slice(0, 100) },
          custom: { input: thought.slice(0, 100) },
        }),
      ),
      `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices: [], usage: usage(5000) })}\n\n`,
      "data: [DONE]\n\n",
    ].join("");
    expect(await paddedToolStream(stream, 5000)).toMatchObject({
      answerBytes: 3001,
      answerToolCalls: 1,
    });
  });

  it("counts a call's arguments and input as one text, in a message and over deltas", async () => {
    const offered: Asked = { ...chat, tools: true };
    const call = {
      type: "function",
      id: "c1",
      function: { name: "f", arguments: thought, input: thought },
    };
    const body = JSON.stringify({
      model: "qwen3-8b",
      choices: [{ index: 0, message: { content: "", tool_calls: [call] } }],
      usage: usage(10),
    });
    expect(jsonBodyFacts(body, [], offered)).toMatchObject({
      answerBytes: 3001,
      answerToolCalls: 1,
    });
    const scan = createJsonAnswerScan(offered);
    scan.add(Buffer.from(body));
    expect(scannedBodyFacts(scan, [], offered)).toMatchObject({ answerBytes: 3001 });
    // Over a stream, arguments in one delta and input in the next are still one text.
    const chunk = (fn: object) =>
      `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: fn }] } }] })}\n\n`;
    const stream = [
      chunk({ name: "f", arguments: "" }),
      ...Array.from({ length: 15 }, () => [
        chunk({ arguments: thought.slice(0, 100) }),
        chunk({ input: thought.slice(0, 100) }),
      ]).flat(),
      `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices: [], usage: usage(2500) })}\n\n`,
      "data: [DONE]\n\n",
    ].join("");
    expect(await paddedToolStream(stream, 2500)).toMatchObject({ answerBytes: 1501 });
  });

  it("counts a content part as one of its text, refusal and thinking", () => {
    const part = { type: "text", text: thought, refusal: thought, thinking: [{ text: thought }] };
    const body = JSON.stringify({
      model: "qwen3-8b",
      choices: [{ index: 0, message: { content: [part, { type: "text", text: "Hi." }] } }],
      usage: usage(10),
    });
    expect(jsonBodyFacts(body, [], chat).answerBytes).toBe(3003);
    const scan = createJsonAnswerScan(chat);
    scan.add(Buffer.from(body));
    expect(scannedBodyFacts(scan, [], chat).answerBytes).toBe(3003);
  });

  it("counts a Responses part as its type says: one of no type is neither text nor refusal", () => {
    const asked: Asked = { ...chat, chat: false, shape: "output" };
    const answer = (content: unknown[]) =>
      JSON.stringify({
        model: "qwen3-8b",
        output: [{ type: "message", content }],
        usage: { input_tokens: 12, output_tokens: 10, total_tokens: 22 },
      });
    // The SDKs' `output_text` joins the `output_text` parts alone.
    expect(
      jsonBodyFacts(answer([{ text: thought, refusal: thought }]), [], asked).answerBytes,
    ).toBe(0);
    const typed = [
      { type: "output_text", text: thought, refusal: thought },
      { type: "refusal", text: thought, refusal: "no" },
    ];
    expect(jsonBodyFacts(answer(typed), [], asked).answerBytes).toBe(3000);
  });

  it("counts a choice's refusal and content as one answer, in a message and over deltas", async () => {
    // A model refuses or answers; the same text under both was counted twice: 6,000 tokens
    // verified for 3,000 bytes.
    const body = JSON.stringify({
      model: "qwen3-8b",
      choices: [{ index: 0, message: { content: thought, refusal: thought } }],
      usage: usage(6000),
    });
    expect(jsonBodyFacts(body, [], chat).answerBytes).toBe(3000);
    const scan = createJsonAnswerScan(chat);
    scan.add(Buffer.from(body));
    expect(scannedBodyFacts(scan, [], chat).answerBytes).toBe(3000);
    // A refusal beside content parts, or an empty content (as Azure writes): the longer counts.
    const parts = body.replace(`"content":"${thought}"`, '"content":[{"type":"text","text":"ab"}]');
    expect(jsonBodyFacts(parts, [], chat).answerBytes).toBe(3000);
    const c = await h.scenario();
    await c.pinKey(1);
    const chunk = (delta: object) =>
      `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices: [{ index: 0, delta }] })}\n\n`;
    const stream = (completion: number, second: "content" | "refusal") =>
      [
        ...Array.from({ length: 15 }, () => [
          chunk({ content: thought.slice(0, 100) }),
          chunk({ [second]: thought.slice(0, 100) }),
        ]).flat(),
        `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices: [], usage: usage(completion) })}\n\n`,
        "data: [DONE]\n\n",
      ].join("");
    const request = {
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 8000,
      stream: true,
      stream_options: { include_usage: true },
    };
    const sse = { contentType: "text/event-stream" };
    const padded = h.op.plan({ keyIndex: 1, completionTokens: 3000, maxTokens: 8000 });
    const path = "/v1/chat/completions";
    await jobThroughProxy(h, c.store, padded, path, stream(3000, "refusal"), request, sse);
    const honest = h.op.plan({ keyIndex: 1, completionTokens: 2900, maxTokens: 8000 });
    await jobThroughProxy(h, c.store, honest, path, stream(2900, "content"), request, sse);
    expect(await c.verdicts(padded.jobId, honest.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "verified", failing: [] },
    ]);
    expect(await readJob(c.store, padded.jobId)).toMatchObject({ answerBytes: 1500 });
  });

  it("counts a refusal part as the choice's refusal, not beside its text parts", () => {
    // Content is text parts or one refusal part: the same text as both was counted twice.
    const content = [
      { type: "text", text: thought },
      { type: "refusal", refusal: thought },
    ];
    for (const message of [{ content }, { content, refusal: "" }, { content, refusal: null }]) {
      const body = JSON.stringify({
        model: "qwen3-8b",
        choices: [{ index: 0, message }],
        usage: usage(10),
      });
      expect(jsonBodyFacts(body, [], chat).answerBytes).toBe(3000);
      const scan = createJsonAnswerScan(chat);
      for (let at = 0; at < body.length; at += 7) scan.add(Buffer.from(body.slice(at, at + 7)));
      expect(scannedBodyFacts(scan, [], chat).answerBytes).toBe(3000);
    }
  });

  it("counts a Responses message's refusal parts or its text parts, the longer", () => {
    const asked: Asked = { ...chat, chat: false, shape: "output" };
    const content = [
      { type: "output_text", text: thought },
      { type: "refusal", refusal: thought },
    ];
    const body = JSON.stringify({
      model: "qwen3-8b",
      output: [{ type: "message", content }],
      usage: { input_tokens: 12, output_tokens: 10, total_tokens: 22 },
    });
    expect(jsonBodyFacts(body, [], asked).answerBytes).toBe(3000);
    const scan = createJsonAnswerScan(asked);
    scan.add(Buffer.from(body));
    expect(scannedBodyFacts(scan, [], asked).answerBytes).toBe(3000);
  });

  it("counts a call under its legacy function_call and as a tool call once", async () => {
    // A request offers `functions` or `tools`, and its client reads the call under that name:
    // the same call under both lifted the bound by a copy and a second call's allowance.
    const offered: Asked = { ...chat, tools: true };
    const fn = { name: "f", arguments: thought };
    const answered = (message: object) =>
      JSON.stringify({
        model: "qwen3-8b",
        choices: [{ index: 0, message: { content: null, ...message } }],
        usage: usage(10),
      });
    const toolCall = { id: "c1", type: "function", function: fn };
    const once = { answerBytes: 3001, answerToolCalls: 1 };
    // Under both names, and under each alone: one call.
    for (const body of [
      answered({ function_call: fn, tool_calls: [toolCall] }),
      answered({ function_call: fn }),
      answered({ tool_calls: [toolCall] }),
    ]) {
      expect(jsonBodyFacts(body, [], offered)).toMatchObject(once);
      const scan = createJsonAnswerScan(offered);
      scan.add(Buffer.from(body));
      expect(scannedBodyFacts(scan, [], offered)).toMatchObject(once);
    }
    const delta = (d: object) =>
      `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices: [{ index: 0, delta: d }] })}\n\n`;
    const piece = (i: number) => thought.slice(i * 100, i * 100 + 100);
    const stream = [
      delta({ function_call: { name: "f", arguments: "" } }),
      delta({ tool_calls: [{ index: 0, id: "c1", type: "function", function: { name: "f" } }] }),
      ...Array.from({ length: 30 }, (_, i) =>
        delta({
          function_call: { arguments: piece(i) },
          tool_calls: [{ index: 0, function: { arguments: piece(i) } }],
        }),
      ),
      `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices: [], usage: usage(3040) })}\n\n`,
      "data: [DONE]\n\n",
    ].join("");
    expect(await paddedToolStream(stream, 3040)).toMatchObject(once);
  });
});
