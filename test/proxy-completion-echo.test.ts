import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdversaryHarness, startAdversaryHarness } from "./support/operator.js";
import { jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

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
    const c = await h.scenario();
    await c.pinKey(1);
    const jobIds: string[] = [];
    for (const a of answers) {
      const plan = h.op.plan({ keyIndex: 1, completionTokens: a.completion, maxTokens: 8000 });
      const stream = a.body.startsWith("data:");
      await jobThroughProxy(h, c.store, plan, "/v1/completions", a.body, a.request, {
        contentType: stream ? "text/event-stream" : "application/json",
      });
      jobIds.push(plan.jobId);
    }
    const rows = await Promise.all(jobIds.map((id) => readJob(c.store, id)));
    return { verdicts: await c.verdicts(...jobIds), answerBytes: rows.map((r) => r?.answerBytes) };
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
