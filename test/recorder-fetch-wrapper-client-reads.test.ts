import { brotliCompressSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  discrepancy,
  partiallyVerified,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";
import {
  chatCompletionJson,
  chatStreamEvents,
  jobThroughFetch,
  jobThroughProxy,
} from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * The recording fetch runs inside its customer's own client, a JavaScript one on fetch: what the
 * fetch it wraps hands on is what that client read. fetch decodes `br` (and asks for it, so an
 * honest upstream called directly sends it) and reads every body as UTF-8 whatever charset the
 * content type names (`text()`, `json()`). So it reads both as fetch does, where the proxy, whose
 * customer may be Python's SDK (no brotli in a default install; httpx before 0.28 decodes by the
 * charset), reads a `br` answer apart and one under `charset=utf-16` as no answer. Read by the
 * proxy's rules, every honest `br` answer to a backend on the recording fetch would be left
 * unproven.
 */
describe("the recording fetch reads an answer as the fetch it wraps handed it", () => {
  const h = useAdversaryHarness();
  const text = "x".repeat(3000);
  const json = chatCompletionJson(text, 3000);
  const request = { messages: [{ role: "user", content: "hi" }], max_tokens: 8000 };
  const streamed = { ...request, stream: true, stream_options: { include_usage: true } };

  it("decodes br and reads UTF-8 whatever the charset, where the proxy reads them apart", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const br = { "content-encoding": "br" };
    const cases: [Buffer, Record<string, unknown>, string, Record<string, string>][] = [
      [brotliCompressSync(json), request, "application/json", br],
      [brotliCompressSync(chatStreamEvents(text, 3000)), streamed, "text/event-stream", br],
      [Buffer.from(json), request, "application/json; charset=utf-16", {}],
      [
        Buffer.from(chatStreamEvents(text, 3000)),
        streamed,
        "text/event-stream; charset=utf-16",
        {},
      ],
    ];
    const ids: string[] = [];
    for (const through of [jobThroughFetch, jobThroughProxy]) {
      for (const [body, asked, contentType, answerHeaders] of cases) {
        const plan = h.op.plan({ keyIndex: 1, completionTokens: 3000, maxTokens: 8000 });
        await through(h, c.store, plan, "/v1/chat/completions", body, asked, {
          contentType,
          answerHeaders,
        });
        ids.push(plan.jobId);
      }
    }
    const noAnswer = discrepancy("charge.matches_price");
    expect(await c.verdicts(...ids)).toEqual([
      verified,
      verified,
      verified,
      verified,
      partiallyVerified,
      partiallyVerified,
      noAnswer,
      noAnswer,
    ]);
    const rows = await Promise.all(ids.map((id) => readJob(c.store, id)));
    expect(rows.map((r) => r?.answerBytes)).toEqual([3000, 3000, 3000, 3000, 3000, 3000, 0, 0]);
  });
});
