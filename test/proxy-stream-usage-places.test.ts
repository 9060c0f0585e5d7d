import { describe, expect, it } from "vitest";
import { useAdversaryHarness } from "./support/operator.js";
import { judgedThroughProxy } from "./support/proxy-job.js";

/**
 * A stream's usage and its choices' places, as its client ends with them. The SDKs' stream
 * helpers take each chunk's `usage` over the one before, and keep choices and calls in arrays by
 * `index`, where `"1"` is item 1 and `"01"` no item. The operator writes the stream: a usage the
 * client was left without priced the job, and text placed where its client did not put it lifted
 * the bound of the usage (`usage.consistent`), or was left out of it.
 */
describe("a stream's usage and places, as its client ends with them", () => {
  const h = useAdversaryHarness();

  const filler = "x".repeat(3000);
  const usage = (completion: number) => ({
    prompt_tokens: 12,
    completion_tokens: completion,
    total_tokens: 12 + completion,
  });
  const chunk = (choices: unknown[], extra: object = {}) =>
    `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices, ...extra })}\n\n`;
  const request = {
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 8000,
    stream: true,
    stream_options: { include_usage: true },
  };

  /** Each stream (ending in `[DONE]`) charged for `completion` tokens; verdicts and rows. */
  async function judge(answers: { chunks: string[]; completion: number; asked?: object }[]) {
    const { verdicts, rows } = await judgedThroughProxy(
      h,
      answers.map((a) => ({
        path: "/v1/chat/completions",
        body: [...a.chunks, "data: [DONE]\n\n"].join(""),
        request: { ...request, ...a.asked },
        completion: a.completion,
        maxTokens: 8000,
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

  it("takes the usage of the last chunk naming one, past a later `usage: null`", async () => {
    const text = chunk([{ index: 0, delta: { role: "assistant", content: filler } }]);
    expect(
      await judge([
        // Every other chunk names `usage: null`, one after the usage chunk too: its client read
        // the usage where it was set.
        {
          chunks: [text, chunk([], { usage: usage(3000) }), chunk([], { usage: null })],
          completion: 3000,
        },
        // A later usage past a `usage: null` replaces it all the same.
        {
          chunks: [
            text,
            chunk([], { usage: usage(3000) }),
            chunk([], { usage: null }),
            chunk([], { usage: usage(10) }),
            chunk([], { usage: null }),
          ],
          completion: 3000,
        },
        // A later usage that is none a client reads leaves it unknown.
        {
          chunks: [text, chunk([], { usage: usage(3000) }), chunk([], { usage: "3000" })],
          completion: 3000,
        },
        // Two usages: the later one is the client's.
        {
          chunks: [text, chunk([], { usage: usage(3000) }), chunk([], { usage: usage(10) })],
          completion: 3000,
        },
        // A chunk naming no usage after it leaves the usage as it was.
        {
          chunks: [text, chunk([], { usage: usage(3000) }), chunk([])],
          completion: 3000,
        },
      ]),
    ).toEqual({
      verdicts: [
        verified,
        { verdict: "discrepancy", failing: ["charge.matches_price"] },
        unproven,
        { verdict: "discrepancy", failing: ["charge.matches_price"] },
        verified,
      ],
      rows: [
        { completionTokens: 3000, answerBytes: 3000 },
        { completionTokens: 10, answerBytes: 3000 },
        { completionTokens: null, answerBytes: 3000 },
        { completionTokens: 10, answerBytes: 3000 },
        { completionTokens: 3000, answerBytes: 3000 },
      ],
    });
  });

  it("reads nothing after data that is no object, where its client's read of choices fails", async () => {
    const hi = chunk([{ index: 0, delta: { role: "assistant", content: "Hi." } }]);
    const text = chunk([{ index: 0, delta: { content: filler } }]);
    const brokenBy = (data: string) => [
      hi,
      `data: ${data}\n\n`,
      text,
      chunk([], { usage: usage(3000) }),
    ];
    expect(
      await judge([
        { chunks: brokenBy("5"), completion: 3000 },
        { chunks: brokenBy('"x"'), completion: 3000 },
        { chunks: brokenBy("[]"), completion: 3000 },
      ]),
    ).toEqual({
      // No usage reached the client: the charge is bounded by the 3 bytes it got.
      verdicts: Array(3).fill({ verdict: "discrepancy", failing: ["charge.matches_price"] }),
      rows: Array(3).fill({ completionTokens: null, answerBytes: 3 }),
    });
  });

  it("places a choice at the index its digits name, and none at digits that name no item", async () => {
    const hi = { index: 0, delta: { role: "assistant", content: "Hi." } };
    const ended = (completion: number) => chunk([], { usage: usage(completion) });
    // Two choices asked; choice 1's content and its refusal, the same text under two names,
    // its index once a string: one text of 3,000 bytes, not two, whatever its chunk's order.
    const twoNames = [
      chunk([{ index: "1", delta: { role: "assistant", content: filler } }, hi]),
      chunk([{ index: 1, delta: { refusal: filler } }]),
      ended(6000),
    ];
    // One choice asked; a second delta of choice 0 in the same chunk, its index a string: the
    // client appends it to choice 0's text.
    const sameChunk = [chunk([hi, { index: "0", delta: { content: filler } }]), ended(3000)];
    // `"01"` is no item of the client's array: its text is in no choice it reads.
    const noItem = [chunk([hi]), chunk([{ index: "01", delta: { content: filler } }]), ended(3000)];
    expect(
      await judge([
        { chunks: twoNames, completion: 6000, asked: { n: 2 } },
        { chunks: sameChunk, completion: 3000 },
        { chunks: noItem, completion: 3000 },
      ]),
    ).toEqual({
      verdicts: [failed, verified, failed],
      rows: [
        { completionTokens: 6000, answerBytes: 3003 },
        { completionTokens: 3000, answerBytes: 3003 },
        { completionTokens: 3000, answerBytes: 3 },
      ],
    });
  });

  it("reads a streamed call whose index is given as digits", async () => {
    const tools = [{ type: "function", function: { name: "get_weather", parameters: {} } }];
    const call = (index: unknown, fn: object) =>
      chunk([{ index: 0, delta: { tool_calls: [{ index, ...fn }] } }]);
    const chunks = [
      call("0", { id: "a", type: "function", function: { name: "get_weather", arguments: "" } }),
      call(0, { function: { arguments: filler } }),
      chunk([], { usage: usage(3040) }),
    ];
    // get_weather (11 bytes) and its arguments, one call's format and the special tokens.
    expect(await judge([{ chunks, completion: 3040, asked: { tools } }])).toEqual({
      verdicts: [verified],
      rows: [{ completionTokens: 3040, answerBytes: 3011 }],
    });
  });
});
