import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdversaryHarness, startAdversaryHarness } from "./support/operator.js";
import { judgedThroughProxy } from "./support/proxy-job.js";

/**
 * An answer's audio bounds its usage (`usage.consistent`) by the audio it decodes to, not by the
 * base64 characters it is sent in: `pcm16` audio is raw samples, some 20 tokens a second of
 * 48,000 bytes, so a second of it bounded the usage at 64,000 tokens and any charge up to the
 * request's ceiling was verified beside it.
 */
describe("the usage an answer's audio can stand for", () => {
  let h: AdversaryHarness;
  beforeAll(async () => {
    h = await startAdversaryHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  // A second of 24 kHz pcm16: 48,000 bytes, 64,000 base64 characters.
  const second = Buffer.alloc(48_000, 1).toString("base64");
  const usage = (completion: number) => ({
    prompt_tokens: 12,
    completion_tokens: completion,
    total_tokens: 12 + completion,
  });
  const asked = (format: string, stream: boolean) => ({
    messages: [{ role: "user", content: "say hi" }],
    modalities: ["text", "audio"],
    audio: { voice: "alloy", format },
    max_tokens: 64_000,
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
  });
  const chunk = (choices: unknown[], extra: object = {}) =>
    `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices, ...extra })}\n\n`;
  /** The second of audio over 4 deltas, its transcript `Hi.` */
  const streamed = (completion: number) =>
    [
      chunk([{ index: 0, delta: { role: "assistant", audio: { id: "a", transcript: "Hi." } } }]),
      ...[0, 1, 2, 3].map((i) =>
        chunk([
          { index: 0, delta: { audio: { data: second.slice(i * 16_000, (i + 1) * 16_000) } } },
        ]),
      ),
      chunk([{ index: 0, delta: {}, finish_reason: "stop" }]),
      chunk([], { usage: usage(completion) }),
      "data: [DONE]\n\n",
    ].join("");
  const whole = (completion: number) =>
    JSON.stringify({
      id: "c",
      object: "chat.completion",
      model: "qwen3-8b",
      choices: [
        {
          index: 0,
          finish_reason: "stop",
          message: {
            role: "assistant",
            content: null,
            audio: { id: "a", data: second, transcript: "Hi." },
          },
        },
      ],
      usage: usage(completion),
    });

  async function judge(answers: { body: string; completion: number; format: string }[]) {
    const { verdicts, rows } = await judgedThroughProxy(
      h,
      answers.map((a) => ({
        path: "/v1/chat/completions",
        body: a.body,
        request: asked(a.format, a.body.startsWith("data:")),
        completion: a.completion,
        maxTokens: 64_000,
      })),
    );
    return { verdicts, answerBytes: rows.map((r) => r?.answerBytes) };
  }

  const failed = { verdict: "discrepancy", failing: ["usage.consistent"] };
  const verified = { verdict: "verified", failing: [] };

  it("bounds pcm16 audio by its samples and other audio by its decoded bytes", async () => {
    expect(
      await judge([
        // A second of pcm16 is 300 tokens at most (160 bytes a token), its transcript 3 more.
        { body: streamed(3000), completion: 3000, format: "pcm16" },
        { body: whole(3000), completion: 3000, format: "pcm16" },
        { body: streamed(40), completion: 40, format: "pcm16" },
        // wav's bytes, decoded: 48,000, not the 64,000 characters they are sent as.
        { body: whole(60_000), completion: 60_000, format: "wav" },
        { body: whole(48_000), completion: 48_000, format: "wav" },
      ]),
    ).toEqual({
      verdicts: [failed, failed, verified, failed, verified],
      answerBytes: [303, 303, 303, 48_003, 48_003],
    });
  });
});
