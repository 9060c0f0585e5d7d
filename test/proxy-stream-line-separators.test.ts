import { describe, expect, it } from "vitest";
import { partiallyVerified, useAdversaryHarness, verified } from "./support/operator.js";
import { jobThroughFetch, jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * The OpenAI SDKs before April 2024 split a stream's lines as Python's `str.splitlines()` does:
 * Python's before 1.16.2 read it by httpx's `iter_lines()` (which splits so from httpx 0.24),
 * Node's before 4.32.2 by a line decoder copied from httpx. A U+2028 in a chunk's text (valid
 * JSON, sent unescaped by honest upstreams) cuts its line in two, and their stream fails there;
 * later SDKs split at CR and LF alone and read on. Read as the later ones alone, `Hi.`, a
 * U+2028, then 3,000 bytes and their usage were priced, verified, for the older client's
 * exception. The clients read the stream apart: its usage is unknown, and the charge is bounded
 * by the most a client read, as for an answer its clients decode apart.
 */
describe("a stream holding a line end older SDKs split at", () => {
  const h = useAdversaryHarness();
  const chunk = (content: string) =>
    `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }], model: "qwen3-8b" })}\n\n`;
  const usage = (completion: number) =>
    `data: ${JSON.stringify({
      choices: [],
      usage: { prompt_tokens: 12, completion_tokens: completion, total_tokens: 12 + completion },
    })}\n\n`;
  const request = {
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 8000,
    stream: true,
    stream_options: { include_usage: true },
  };

  it("leaves its usage unknown, through the proxy and the recording fetch", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const padded = (between: string) =>
      `${chunk("Hi.")}${between}${chunk("x".repeat(3000))}${usage(3003)}data: [DONE]\n\n`;
    const bodies = [
      padded(chunk("a\u2028b")),
      // In a comment: a line older SDKs read as data and later ones as none.
      padded(": x\u2029data: {}\n"),
      // After the usage, or none at all: every client read the usage.
      `${chunk("Hi.")}${chunk("x".repeat(3000))}${usage(3003)}${chunk("a\u2028b")}data: [DONE]\n\n`,
      padded(""),
    ];
    const ids: string[] = [];
    for (const body of bodies) {
      for (const through of [jobThroughProxy, jobThroughFetch]) {
        const plan = h.op.plan({ keyIndex: 1, completionTokens: 3003, maxTokens: 8000 });
        await through(h, c.store, plan, "/v1/chat/completions", body, request, {
          contentType: "text/event-stream",
        });
        ids.push(plan.jobId);
      }
    }
    expect(await c.verdicts(...ids)).toEqual([
      partiallyVerified,
      partiallyVerified,
      partiallyVerified,
      partiallyVerified,
      verified,
      verified,
      verified,
      verified,
    ]);
    const rows = await Promise.all(ids.map((id) => readJob(c.store, id)));
    expect(rows.map((r) => [r?.answerBytes, r?.completionTokens])).toEqual([
      [3008, null],
      [3008, null],
      [3003, null],
      [3003, null],
      [3008, 3003],
      [3008, 3003],
      [3003, 3003],
      [3003, 3003],
    ]);
  });
});
