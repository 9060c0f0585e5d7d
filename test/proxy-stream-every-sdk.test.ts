import { describe, expect, it } from "vitest";
import { useAdversaryHarness } from "./support/operator.js";
import { judgedThroughProxy } from "./support/proxy-job.js";

/**
 * A stream's text and usage as every OpenAI SDK a customer may use reads them. Node's SDK 6
 * reads an event with a name (`event: x`) as a chunk; Node's 4 hands it on wrapped, its
 * `choices` and `usage` out of its caller's sight. Node's stream helper ends a choice carrying a
 * legacy `function_call` with that call alone, its `tool_calls` dropped. Text only some
 * customers were shown lifted the bound of the usage (`usage.consistent`), so an operator could
 * pad it in and have the padded usage verified.
 */
describe("a stream's text and usage, as every SDK reads them", () => {
  const h = useAdversaryHarness();

  const filler = "x".repeat(3000);
  const usage = (completion: number) => ({
    prompt_tokens: 12,
    completion_tokens: completion,
    total_tokens: 12 + completion,
  });
  const data = (choices: unknown[], extra: object = {}) =>
    JSON.stringify({
      id: "c",
      object: "chat.completion.chunk",
      model: "qwen3-8b",
      choices,
      ...extra,
    });
  const chunk = (choices: unknown[], extra: object = {}) => `data: ${data(choices, extra)}\n\n`;
  const named = (choices: unknown[], extra: object = {}) =>
    `event: x\ndata: ${data(choices, extra)}\n\n`;
  const text = (content: string) => [{ index: 0, delta: { role: "assistant", content } }];
  const request = {
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 8000,
    stream: true,
    stream_options: { include_usage: true },
  };

  async function judge(
    answers: { chunks: string[]; completion: number; asked?: object; path?: string }[],
  ) {
    const { verdicts, rows } = await judgedThroughProxy(
      h,
      answers.map((a) => ({
        path: a.path ?? "/v1/chat/completions",
        body: [...a.chunks, "data: [DONE]\n\n"].join(""),
        request: { ...request, ...a.asked },
        completion: a.completion,
        maxTokens: 8000,
        contentType: "text/event-stream",
      })),
    );
    return {
      verdicts,
      rows: rows.map((r) => ({
        completionTokens: r?.completionTokens,
        answerBytes: r?.answerBytes,
      })),
    };
  }

  const failed = { verdict: "discrepancy", failing: ["usage.consistent"] };
  const verified = { verdict: "verified", failing: [] };
  const unproven = { verdict: "partially_verified", failing: [] };

  it("counts no text or usage of an event with a name", async () => {
    expect(
      await judge([
        // `Hi.` shown to every customer, 3,000 bytes to Node's SDK 6 alone.
        {
          chunks: [chunk(text("Hi.")), named(text(filler)), chunk([], { usage: usage(3000) })],
          completion: 3000,
        },
        // The usage of Node's SDK 6; Node's 4 reads none.
        { chunks: [chunk(text(filler)), named([], { usage: usage(3000) })], completion: 3000 },
        // Longer than the 64 KiB kept: bounded by the data every client reads.
        {
          chunks: [
            chunk(text("Hi.")),
            named(text("y".repeat(70_000))),
            chunk([], { usage: usage(3000) }),
          ],
          completion: 3000,
        },
        // An honest stream beside them.
        { chunks: [chunk(text(filler)), chunk([], { usage: usage(3000) })], completion: 3000 },
      ]),
    ).toMatchObject({
      verdicts: [failed, unproven, failed, verified],
      rows: [
        { completionTokens: 3000, answerBytes: 3 },
        { completionTokens: null, answerBytes: 3000 },
        { completionTokens: 3000 },
        { completionTokens: 3000, answerBytes: 3000 },
      ],
    });
  });

  it("counts no text or usage after where Python's SDK fails: a blank line once an id was given", async () => {
    const { verdicts, rows } = await judge([
      // Python keeps the id and hands on an event of no data at the next blank line: no JSON,
      // its stream fails there. 3,000 bytes and the usage reach Node's SDK alone.
      {
        chunks: [
          `id: 1\n${chunk(text("Hi."))}`,
          "\n",
          chunk(text(filler)),
          chunk([], { usage: usage(3000) }),
        ],
        completion: 3000,
      },
      { chunks: [chunk(text(filler)), chunk([], { usage: usage(3000) })], completion: 3000 },
    ]);
    expect(verdicts[0]).not.toEqual(verified);
    expect(rows[0]).toEqual({ completionTokens: null, answerBytes: 3 });
    expect(verdicts[1]).toEqual(verified);
  });

  it("counts no Responses API text in an event its SDKs do not all read", async () => {
    const event = (name: string, fields: Record<string, unknown>) =>
      `event: ${name}\ndata: ${JSON.stringify(fields)}\n\n`;
    const delta = (d: string) => ({
      type: "response.output_text.delta",
      item_id: "msg_1",
      output_index: 0,
      content_index: 0,
      delta: d,
    });
    const completed = {
      type: "response.completed",
      response: {
        id: "resp_1",
        object: "response",
        status: "completed",
        model: "qwen3-8b",
        output: [
          {
            type: "message",
            id: "msg_1",
            role: "assistant",
            status: "completed",
            content: [{ type: "output_text", text: `Hi.${filler}`, annotations: [] }],
          },
        ],
        usage: { input_tokens: 12, output_tokens: 3000, total_tokens: 3012 },
      },
    };
    const asked = { input: "Hi", stream: true, max_output_tokens: 8000 };
    expect(
      await judge([
        {
          path: "/v1/responses",
          asked,
          chunks: [
            event("response.output_text.delta", delta("Hi.")),
            event("x", delta(filler)),
            event("response.completed", completed),
          ],
          completion: 3000,
        },
        {
          path: "/v1/responses",
          asked,
          chunks: [
            event("response.output_text.delta", delta(`Hi.${filler}`)),
            event("response.completed", completed),
          ],
          completion: 3000,
        },
      ]),
    ).toMatchObject({ verdicts: [failed, verified], rows: [{ answerBytes: 3 }, {}] });
  });

  it("counts a streamed function call alone where tool calls come beside it", async () => {
    const offered = {
      tools: [{ type: "function", function: { name: "get", parameters: {} } }],
    };
    const call = { name: "get", arguments: "{}" };
    const toolCall = (args: string) => ({
      index: 0,
      id: "call_1",
      type: "function",
      function: { name: "get", arguments: args },
    });
    expect(
      await judge([
        // Node's stream helper ends with `get({})`: 5 bytes, one call.
        {
          asked: offered,
          chunks: [
            chunk([{ index: 0, delta: { role: "assistant", function_call: call } }]),
            chunk([{ index: 0, delta: { tool_calls: [toolCall(filler)] } }]),
            chunk([], { usage: usage(3000) }),
          ],
          completion: 3000,
        },
        // The calls as tool calls alone: every client reads them.
        {
          asked: offered,
          chunks: [
            chunk([{ index: 0, delta: { role: "assistant", tool_calls: [toolCall(filler)] } }]),
            chunk([], { usage: usage(3000) }),
          ],
          completion: 3000,
        },
      ]),
    ).toMatchObject({
      verdicts: [failed, verified],
      rows: [{ answerBytes: 5 }, { answerBytes: 3003 }],
    });
  });
});
