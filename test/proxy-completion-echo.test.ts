import { describe, expect, it } from "vitest";
import { useAdversaryHarness } from "./support/operator.js";
import { judgedThroughProxy } from "./support/proxy-job.js";

/**
 * A legacy completion asked with `echo` answers each choice's `text` as the prompt and then what
 * the model wrote: the prompt is none of the output tokens its usage may name
 * (`usage.consistent`), and counted, a long prompt let the operator charge for it as output.
 */
describe("a legacy completion that echoes its prompt", () => {
  const h = useAdversaryHarness();

  const prompt = "Tell me: ".repeat(400);
  const usage = (completion: number) => ({
    prompt_tokens: 1200,
    completion_tokens: completion,
    total_tokens: 1200 + completion,
  });
  const whole = (completion: number, text = `${prompt}Hi.`) =>
    JSON.stringify({
      id: "c",
      object: "text_completion",
      model: "qwen3-8b",
      choices: [{ index: 0, finish_reason: "stop", text }],
      usage: usage(completion),
    });
  const chunk = (text: string, extra: object = {}) =>
    `data: ${JSON.stringify({ id: "c", object: "text_completion", model: "qwen3-8b", choices: [{ index: 0, text }], ...extra })}\n\n`;
  const streamed = (completion: number, texts = [prompt, "Hi."]) =>
    [
      ...texts.map((text) => chunk(text)),
      chunk("", { usage: usage(completion) }),
      "data: [DONE]\n\n",
    ].join("");

  async function judge(
    answers: { body: string; completion: number; request: Record<string, unknown> }[],
  ) {
    const { verdicts, rows } = await judgedThroughProxy(
      h,
      answers.map((a) => ({ ...a, path: "/v1/completions", maxTokens: 8000 })),
    );
    return { verdicts, answerBytes: rows.map((r) => r?.answerBytes) };
  }

  const failed = { verdict: "discrepancy", failing: ["usage.consistent"] };
  const verified = { verdict: "verified", failing: [] };
  const echoed = { prompt, echo: true, max_tokens: 8000 };
  const streamEchoed = { ...echoed, stream: true, stream_options: { include_usage: true } };

  it("counts the text after the prompt it echoes, JSON or streamed", async () => {
    expect(
      await judge([
        // 3,600 bytes of prompt and `Hi.`: 19 tokens at most, not 3,619.
        { body: whole(3000), completion: 3000, request: echoed },
        { body: streamed(3000), completion: 3000, request: streamEchoed },
        { body: whole(19), completion: 19, request: echoed },
        // One prompt of several: the first `n` choices answer the first.
        { body: whole(3000), completion: 3000, request: { ...echoed, prompt: [prompt, "x"] } },
        // Without `echo`, the text is all the model's.
        { body: whole(3000), completion: 3000, request: { prompt, max_tokens: 8000 } },
      ]),
    ).toEqual({
      verdicts: [failed, failed, verified, failed, verified],
      answerBytes: [3, 3, 3, 3, 3603],
    });
  });

  // What the model wrote, 1,000 bytes: some 250 tokens.
  const written = "Hi there. ".repeat(100);

  it("sets each prompt aside from the choices that answer it", async () => {
    const second = "Go on: ".repeat(500);
    const both = (completion: number) =>
      JSON.stringify({
        id: "c",
        object: "text_completion",
        model: "qwen3-8b",
        choices: [`${prompt}Hi.`, `${prompt}Yo.`, `${second}Ok.`, `${second}No.`].map(
          (text, index) => ({ index, finish_reason: "stop", text }),
        ),
        usage: usage(completion),
      });
    const request = { ...echoed, prompt: [prompt, second], n: 2 };
    expect(
      await judge([
        // 3,500 bytes of the second prompt, echoed twice, are no output either.
        { body: both(3000), completion: 3000, request },
        { body: both(28), completion: 28, request },
      ]),
    ).toEqual({ verdicts: [failed, verified], answerBytes: [12, 12] });
  });

  it("sets the prompt aside only where the text opens with it", async () => {
    expect(
      await judge([
        // An upstream that does not echo (vLLM asked `return_token_ids` too, a server without
        // `echo`) answers what the model wrote alone: none of it is the prompt.
        { body: whole(250, written), completion: 250, request: echoed },
        {
          body: streamed(250, [written.slice(0, 7), written.slice(7)]),
          completion: 250,
          request: streamEchoed,
        },
        { body: whole(1017, written), completion: 1017, request: echoed },
        // A text that opens with the prompt, streamed in pieces that cut it anywhere.
        {
          body: streamed(3000, [
            prompt.slice(0, 5),
            prompt.slice(5, 2000),
            `${prompt.slice(2000)}Hi.`,
          ]),
          completion: 3000,
          request: streamEchoed,
        },
        // Most of the prompt, and the model's words: the prompt is not what it opens with.
        {
          body: whole(1200, `${prompt.slice(0, -1)}${written}`),
          completion: 1200,
          request: echoed,
        },
      ]),
    ).toEqual({
      verdicts: [verified, verified, failed, failed, verified],
      answerBytes: [1000, 1000, 1000, 3, 4599],
    });
  });

  it("takes the usage of an echo of token ids as unknown: the prompt's bytes are not known", async () => {
    // The prompt as token ids: its text, echoed, may be any length, so no part of the answer
    // can be set aside as the prompt's; counted whole, its echo was charged as output.
    const ids = { ...echoed, prompt: Array.from({ length: 1200 }, (_, i) => 1000 + i) };
    const unproven = { verdict: "partially_verified", failing: [] };
    expect(
      await judge([
        { body: whole(3000), completion: 3000, request: ids },
        {
          body: streamed(3000),
          completion: 3000,
          request: { ...ids, stream: true, stream_options: { include_usage: true } },
        },
        // Beyond all the answer holds, its charge fails as an answer's that sent no usage.
        { body: whole(6000), completion: 6000, request: ids },
        // Without `echo` the text is the model's alone.
        { body: whole(3000), completion: 3000, request: { ...ids, echo: false } },
      ]),
    ).toEqual({
      verdicts: [
        unproven,
        unproven,
        { verdict: "discrepancy", failing: ["charge.matches_price"] },
        verified,
      ],
      answerBytes: [3603, 3603, 3603, 3603],
    });
  });
});
