import { describe, expect, it } from "vitest";
import { pythonRefuses } from "../src/recorder/sse-tail.js";
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

// Node's client reads U+FFFD for a byte that is no UTF-8 and goes on; Python's `json.loads` of
// the body's bytes raises. A pad of one such byte and 3,000 bytes of text with their usage were
// priced, verified, for the Python customer's exception.
describe("a JSON answer holding a byte that is no UTF-8", () => {
  const h = useAdversaryHarness();
  it("is an answer of no bytes through the proxy and the recording fetch", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const body = JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion",
      model: "qwen3-8b",
      choices: [
        { index: 0, finish_reason: "stop", message: { role: "assistant", content: "Hi." } },
      ],
      usage: { prompt_tokens: 12, completion_tokens: 3003, total_tokens: 3015 },
      pad: "P",
    });
    const [before, after] = body.split('"P"') as [string, string];
    const bytes = (pad: string) =>
      Buffer.concat([
        Buffer.from(before),
        Buffer.from(`"${pad}`),
        Buffer.from([0xff]),
        Buffer.from(`${"x".repeat(3000)}"`),
        Buffer.from(after),
      ]);
    const request = { messages: [{ role: "user", content: "hi" }], max_tokens: 8000 };
    const proxied = h.op.plan({ keyIndex: 1, completionTokens: 3003, maxTokens: 8000 });
    await jobThroughProxy(h, c.store, proxied, "/v1/chat/completions", bytes(""), request);
    const fetched = h.op.plan({ keyIndex: 1, completionTokens: 3003, maxTokens: 8000 });
    await jobThroughFetch(h, c.store, fetched, "/v1/chat/completions", bytes(""), request);
    const failed = discrepancy("charge.matches_price");
    expect(await c.verdicts(proxied.jobId, fetched.jobId)).toEqual([failed, failed]);
    const rows = await Promise.all([proxied, fetched].map((p) => readJob(c.store, p.jobId)));
    expect(rows.map((r) => [r?.answerBytes, r?.completionTokens])).toEqual([
      [0, null],
      [0, null],
    ]);
  });
});

describe("the look for an integer Python refuses", () => {
  it("tells a 4,301-digit integer from one of 4,300, a float and a string of digits", () => {
    expect(pythonRefuses(`{"n":${"1".repeat(4301)}}`)).toBe(true);
    expect(pythonRefuses(`{"n":${"1".repeat(4300)}}`)).toBe(false);
    expect(pythonRefuses(`{"n":${"1".repeat(4301)}.5}`)).toBe(false);
    expect(pythonRefuses(`{"n":"${"1".repeat(5000)}"}`)).toBe(false);
  });

  // The answer is the operator's: a text of digit runs each one short of the limit took a
  // search for 4,301 digits in a row, begun again at every digit, 23 s of the event loop for
  // 1.7 MB (the proxy's every request waited), where one look at each run takes milliseconds.
  it("reads an answer of many runs of digits just short of the limit in one pass", () => {
    const runs = `[${`${"1".repeat(4300)},`.repeat(400)}0]`;
    const started = performance.now();
    expect(pythonRefuses(runs)).toBe(false);
    expect(performance.now() - started).toBeLessThan(3000);
  }, 10_000);
});
