import http from "node:http";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { chainSecondAfter } from "./support/finality.js";
import { nightlyAfter } from "./support/nightly-window.js";
import { discrepancy, useAdversaryHarness } from "./support/operator.js";
import { hiStreamEvents, jobThroughProxy } from "./support/proxy-job.js";
import { listen } from "./support/recorder-fixtures.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * The operator labels its answer with a `content-encoding` the proxy reads as "clients differ"
 * (`zstd`, `x-gzip`), while the body is one every client that reads anything reads the same way:
 * plain JSON under `zstd` (fetch on Node 20 and httpx without zstandard read it as it is; httpx
 * with zstandard fails on it, it is no zstd frame), or a gzip body under `x-gzip` (fetch gunzips
 * it; httpx reads gzip bytes, no JSON). The proxy recorded no usage and no size: the charge was
 * bounded by the lock alone, the job `partially_verified`, the nightly run exit 0, for `Hi.`
 * charged the price of 2,000 completion tokens.
 */
describe("an answer under a coding clients read apart", () => {
  const h = useAdversaryHarness();

  const hi = (completionTokens: number | null) =>
    JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion",
      model: "qwen3-8b",
      choices: [
        { index: 0, message: { role: "assistant", content: "Hi." }, finish_reason: "stop" },
      ],
      ...(completionTokens === null
        ? {}
        : {
            usage: {
              prompt_tokens: 12,
              completion_tokens: completionTokens,
              total_tokens: 12 + completionTokens,
            },
          }),
    });

  it("is read by Node's fetch as the plain answer it is", async () => {
    const server = await listen(
      http.createServer((_req, res) => {
        res.writeHead(200, { "content-type": "application/json", "content-encoding": "zstd" });
        res.end(hi(2000));
      }),
    );
    try {
      const read = (await fetch(server.url).then((r) => r.json())) as {
        choices: { message: { content: string } }[];
      };
      expect(read.choices[0]?.message.content).toBe("Hi.");
    } finally {
      await server.close();
    }
  });

  it("bounds `Hi.` charged for 2,000 tokens by what its client read, whatever the label", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const request = { messages: [{ role: "user", content: "Say hi" }] };
    const send = async (body: string | Buffer, encoding: string | null, stream = false) => {
      const plan = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
      expect(plan.remainder).toBe(0n);
      await jobThroughProxy(
        h,
        c.store,
        plan,
        "/v1/chat/completions",
        body,
        stream ? { ...request, stream: true, stream_options: { include_usage: true } } : request,
        {
          ...(encoding === null ? {} : { answerHeaders: { "content-encoding": encoding } }),
          ...(stream ? { contentType: "text/event-stream" } : {}),
        },
      );
      return plan.jobId;
    };
    const plainControl = await send(hi(2000), null);
    const zstdNamed = await send(hi(2000), "zstd");
    const zstdSilent = await send(hi(null), "zstd");
    const xgzip = await send(gzipSync(hi(2000)), "x-gzip");
    const zstdStream = await send(hiStreamEvents(2000), "zstd", true);
    const honest = h.op.plan({ keyIndex: 1, completionTokens: 3 });
    await jobThroughProxy(h, c.store, honest, "/v1/chat/completions", hi(3), request, {
      answerHeaders: { "content-encoding": "zstd" },
    });
    const outcomes = await c.verdicts(
      plainControl,
      zstdNamed,
      zstdSilent,
      xgzip,
      zstdStream,
      honest.jobId,
    );
    expect(outcomes).toEqual([
      discrepancy("usage.consistent"),
      discrepancy("charge.matches_price"),
      discrepancy("charge.matches_price"),
      discrepancy("charge.matches_price"),
      discrepancy("charge.matches_price"),
      // Clients read it apart (one reads it, another fails on it): its usage stays unproven.
      { verdict: "partially_verified", failing: [] },
    ]);
    expect(await readJob(c.store, zstdNamed)).toMatchObject({
      answerBytes: 3,
      completionTokens: null,
    });
  });

  it("is a nightly run's finding, not a clean night", async () => {
    const c = await h.scenario();
    const from = await chainSecondAfter(h.world, 200);
    const plan = h.op.plan({ keyIndex: 2, completionTokens: 2000 });
    await jobThroughProxy(
      h,
      c.store,
      plan,
      "/v1/chat/completions",
      hi(2000),
      { messages: [{ role: "user", content: "Say hi" }] },
      { answerHeaders: { "content-encoding": "zstd" } },
    );
    const to = Math.ceil((Math.max(Date.now(), h.op.now()) + 1) / 1000) * 1000;
    const summary = await nightlyAfter(h, c, { vaults: [plan.vault], from, to });
    expect(summary.exitCode).toBe(1);
  });
});
