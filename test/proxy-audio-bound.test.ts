import { describe, expect, it } from "vitest";
import { useAdversaryHarness } from "./support/operator.js";
import { judgedThroughProxy } from "./support/proxy-job.js";
import { flac, wav } from "./support/wav.js";

/**
 * An answer's audio bounds its usage (`usage.consistent`) by the audio it decodes to, not by the
 * base64 characters it is sent in: `pcm16` audio is raw samples, some 20 tokens a second of
 * 48,000 bytes, so a second of it bounded the usage at 64,000 tokens and any charge up to the
 * request's ceiling was verified beside it.
 */
describe("the usage an answer's audio can stand for", () => {
  const h = useAdversaryHarness();

  // A second of 24 kHz pcm16: 48,000 bytes, 64,000 base64 characters.
  const pcm16Second = Buffer.alloc(48_000, 1).toString("base64");
  // A second of 24 kHz 16-bit mono wav: the same samples behind a 44-byte header.
  const wavSecond = wav(Buffer.alloc(48_000, 1), { rate: 24_000 }).toString("base64");
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
  /** A second of audio over 4 deltas (the first a header alone), its transcript `Hi.` */
  const streamed = (completion: number, second = pcm16Second) =>
    [
      chunk([{ index: 0, delta: { role: "assistant", audio: { id: "a", transcript: "Hi." } } }]),
      ...[0, 8, 16_000, 32_000, second.length].map((end, i, ends) =>
        chunk([{ index: 0, delta: { audio: { data: second.slice(ends[i - 1] ?? 0, end) } } }]),
      ),
      chunk([{ index: 0, delta: {}, finish_reason: "stop" }]),
      chunk([], { usage: usage(completion) }),
      "data: [DONE]\n\n",
    ].join("");
  const whole = (completion: number, second = pcm16Second) =>
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
  const unproven = { verdict: "partially_verified", failing: [] };

  it("bounds pcm16 audio by its samples and wav by its header", async () => {
    expect(
      await judge([
        // A second of pcm16 is 300 tokens at most (160 bytes a token), its transcript 3 more.
        { body: streamed(3000), completion: 3000, format: "pcm16" },
        { body: whole(3000), completion: 3000, format: "pcm16" },
        { body: streamed(40), completion: 40, format: "pcm16" },
        // A wav with no header is read as pcm16: its 48,000 bytes are no 48,000 tokens.
        { body: whole(48_000), completion: 48_000, format: "wav" },
        { body: whole(304), completion: 304, format: "wav" },
        // A second of 24 kHz wav is 100 tokens, however its deltas cut its header.
        { body: whole(3000, wavSecond), completion: 3000, format: "wav" },
        { body: streamed(3000, wavSecond), completion: 3000, format: "wav" },
        { body: streamed(40, wavSecond), completion: 40, format: "wav" },
      ]),
    ).toEqual({
      verdicts: [failed, failed, verified, failed, verified, failed, failed, verified],
      answerBytes: [303, 303, 303, 303, 303, 104, 104, 104],
    });
  });

  it("bounds compressed audio by its format's lowest bitrate; flac, whose length only its header says, bounds nothing", async () => {
    // 48,000 bytes of mp3 are 48 s at 8 kbit/s at most: 4,800 tokens; of opus, 64 s: 6,400.
    // flac holds silence in a few bytes a second, and its STREAMINFO's length is the operator's
    // to write (2^36 samples claimed, 48,000 tokens verified): like a format not named, its usage
    // is not verified, and an honest second of it is not failed either.
    const flacLie = flac(Buffer.alloc(48_000, 1), { rate: 24_000, samples: 2 ** 36 - 1 });
    const flacSecond = flac(Buffer.alloc(48_000, 1), { rate: 24_000, samples: 24_000 });
    expect(
      await judge([
        { body: whole(48_000), completion: 48_000, format: "mp3" },
        { body: whole(4803), completion: 4803, format: "mp3" },
        { body: streamed(48_000), completion: 48_000, format: "opus" },
        { body: streamed(6403), completion: 6403, format: "opus" },
        { body: whole(48_000, flacLie.toString("base64")), completion: 48_000, format: "flac" },
        { body: streamed(103, flacSecond.toString("base64")), completion: 103, format: "flac" },
        { body: whole(48_003), completion: 48_003, format: "g711" },
      ]),
    ).toEqual({
      verdicts: [failed, verified, failed, verified, unproven, unproven, unproven],
      answerBytes: [4803, 4803, 6403, 6403, null, null, null],
    });
  });

  it("reads an answer's text and its audio's transcript as one text, the longer, and no more transcript than its audio speaks", async () => {
    // OpenAI answers audio with `content` null, its text the transcript: the same text under
    // both, counted twice, lifted the bound by a copy its client read once.
    const text = "Hi there. ".repeat(300);
    const second = Buffer.alloc(16_000).toString("base64");
    const both = (completion: number, content: string, transcript: string, data = "") =>
      JSON.stringify({
        id: "c",
        object: "chat.completion",
        model: "qwen3-8b",
        choices: [
          {
            index: 0,
            finish_reason: "stop",
            message: { role: "assistant", content, audio: { id: "a", data, transcript } },
          },
        ],
        usage: usage(completion),
      });
    const delta = (d: object) => chunk([{ index: 0, delta: d }]);
    const streamedBoth = (completion: number) =>
      [
        delta({ role: "assistant", content: text.slice(0, 1500) }),
        delta({ audio: { id: "a", transcript: text.slice(0, 1500) } }),
        delta({ content: text.slice(1500), audio: { transcript: text.slice(1500) } }),
        chunk([{ index: 0, delta: {}, finish_reason: "stop" }]),
        chunk([], { usage: usage(completion) }),
        "data: [DONE]\n\n",
      ].join("");
    expect(
      await judge([
        { body: both(6000, text, text), completion: 6000, format: "pcm16" },
        { body: streamedBoth(6000), completion: 6000, format: "pcm16" },
        { body: both(3000, text, text), completion: 3000, format: "pcm16" },
        // A transcript of no audio is none its client plays; beside a second of pcm16 (101
        // tokens at most: its base64, padding and all, reads as 16,002 bytes), no more than 101
        // bytes of it count, and the audio's 101.
        { body: both(3000, "", text), completion: 3000, format: "pcm16" },
        { body: both(3000, "", text, second), completion: 3000, format: "pcm16" },
        { body: both(202, "", text, second), completion: 202, format: "pcm16" },
      ]),
    ).toEqual({
      verdicts: [failed, failed, verified, failed, failed, verified],
      answerBytes: [3000, 3000, 3000, 0, 202, 202],
    });
  });
});
