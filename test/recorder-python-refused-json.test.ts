import { describe, expect, it } from "vitest";
import { discrepancy, useAdversaryHarness, verified } from "./support/operator.js";
import { jobThroughFetch, jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A JSON answer that `JSON.parse` reads and Python's `json` refuses (nested past its recursion
 * limit: `RecursionError`; an integer of more than 4,300 digits: `ValueError`): the Python SDK's
 * read of it fails, as a Node client's fails on JSON only Python reads. Read as Node's client
 * reads it, 3,000 bytes of text and their usage were priced, verified, for a Python customer who
 * got an exception; read as an answer no client of every kind read, its charge is bounded by
 * the price of a request.
 */
describe("a JSON answer Python's json refuses", () => {
  const h = useAdversaryHarness();
  const answer = (pad: string) =>
    JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion",
      model: "qwen3-8b",
      choices: [
        {
          index: 0,
          finish_reason: "stop",
          message: { role: "assistant", content: "x".repeat(3000) },
        },
      ],
      usage: { prompt_tokens: 12, completion_tokens: 3000, total_tokens: 3012 },
      pad: "P",
    }).replace('"P"', pad);
  const request = { messages: [{ role: "user", content: "hi" }], max_tokens: 8000 };

  it("is an answer of no bytes through the proxy and the recording fetch; one Python reads is not", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const pads = [
      `${"[".repeat(1200)}${"]".repeat(1200)}`,
      "1".repeat(5000),
      `${"1".repeat(5000)}.5`,
    ];
    const ids: string[] = [];
    for (const pad of pads) {
      const proxied = h.op.plan({ keyIndex: 1, completionTokens: 3000, maxTokens: 8000 });
      await jobThroughProxy(h, c.store, proxied, "/v1/chat/completions", answer(pad), request);
      const fetched = h.op.plan({ keyIndex: 1, completionTokens: 3000, maxTokens: 8000 });
      await jobThroughFetch(h, c.store, fetched, "/v1/chat/completions", answer(pad), request);
      ids.push(proxied.jobId, fetched.jobId);
    }
    const failed = discrepancy("charge.matches_price");
    expect(await c.verdicts(...ids)).toEqual([failed, failed, failed, failed, verified, verified]);
    const rows = await Promise.all(ids.map((id) => readJob(c.store, id)));
    expect(rows.map((r) => [r?.answerBytes, r?.completionTokens])).toEqual([
      [0, null],
      [0, null],
      [0, null],
      [0, null],
      [3000, 3000],
      [3000, 3000],
    ]);
  });
});
