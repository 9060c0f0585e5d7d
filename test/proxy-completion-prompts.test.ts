import { describe, expect, it } from "vitest";
import { useAdversaryHarness } from "./support/operator.js";
import { judgedThroughProxy } from "./support/proxy-job.js";

/**
 * A legacy completion asked for several prompts at once (`prompt` an array of texts or of token
 * id lists) answers `n` choices for each, its usage their sum: every one of them is a choice the
 * caller asked for and reads, and its completion tokens are bounded by all of their text.
 */
describe("a legacy completion of several prompts", () => {
  const h = useAdversaryHarness();

  // What the model wrote for the second prompt, 1,000 bytes: some 250 tokens.
  const written = "Hi there. ".repeat(100);
  const whole = (completion: number, texts: string[]) =>
    JSON.stringify({
      id: "c",
      object: "text_completion",
      model: "qwen3-8b",
      choices: texts.map((text, index) => ({ index, finish_reason: "stop", text })),
      usage: { prompt_tokens: 8, completion_tokens: completion, total_tokens: 8 + completion },
    });

  async function judge(
    answers: { body: string; completion: number; request: Record<string, unknown> }[],
  ) {
    const { verdicts, rows } = await judgedThroughProxy(
      h,
      answers.map((a) => ({ ...a, path: "/v1/completions", maxTokens: 300 })),
    );
    return { verdicts, answerBytes: rows.map((r) => r?.answerBytes) };
  }

  const failed = { verdict: "discrepancy", failing: ["usage.consistent"] };
  const verified = { verdict: "verified", failing: [] };

  it("counts the choices of every prompt", async () => {
    expect(
      await judge([
        // `Yes.` to the first prompt, 250 tokens to the second: 251 tokens, honest.
        {
          body: whole(251, ["Yes.", written]),
          completion: 251,
          request: { prompt: ["Say yes.", "Say hi."], max_tokens: 300 },
        },
        {
          body: whole(251, ["Yes.", written]),
          completion: 251,
          request: {
            prompt: [
              [1, 2, 3],
              [4, 5],
            ],
            max_tokens: 300,
          },
        },
        // Above one prompt's `max_tokens`, within two prompts' ceiling.
        {
          body: whole(500, ["Yes.", written]),
          completion: 500,
          request: { prompt: ["Say yes.", "Say hi."], max_tokens: 300 },
        },
        // Two choices of each of two prompts, the fourth the long one.
        {
          body: whole(253, ["Yes.", "Ok.", "No.", written]),
          completion: 253,
          request: { prompt: ["Say yes.", "Say hi."], n: 2, max_tokens: 300 },
        },
        // One prompt: a second choice is none asked for.
        {
          body: whole(251, ["Yes.", written]),
          completion: 251,
          request: { prompt: ["Say yes."], max_tokens: 300 },
        },
      ]),
    ).toEqual({
      verdicts: [verified, verified, verified, verified, failed],
      answerBytes: [1004, 1004, 1004, 1010, 4],
    });
  });
});
