import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdversaryHarness, startAdversaryHarness } from "./support/operator.js";
import { judgedThroughProxy } from "./support/proxy-job.js";

/**
 * A legacy completion asked with `echo` answers each choice's `text` as the prompt and then what
 * the model wrote: the prompt is none of the output tokens its usage may name
 * (`usage.consistent`), and counted, a long prompt let the operator charge for it as output.
 */
describe("a legacy completion that echoes its prompt", () => {
  let h: AdversaryHarness;
  beforeAll(async () => {
    h = await startAdversaryHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  const prompt = "Tell me: ".repeat(400);
  const usage = (completion: number) => ({
    prompt_tokens: 1200,
    completion_tokens: completion,
    total_tokens: 1200 + completion,
  });
  const whole = (completion: number) =>
    JSON.stringify({
      id: "c",
      object: "text_completion",
      model: "qwen3-8b",
      choices: [{ index: 0, finish_reason: "stop", text: `${prompt}Hi.` }],
      usage: usage(completion),
    });
  const chunk = (text: string, extra: object = {}) =>
    `data: ${JSON.stringify({ id: "c", object: "text_completion", model: "qwen3-8b", choices: [{ index: 0, text }], ...extra })}\n\n`;
  const streamed = (completion: number) =>
    [chunk(prompt), chunk("Hi."), chunk("", { usage: usage(completion) }), "data: [DONE]\n\n"].join(
      "",
    );

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
});
