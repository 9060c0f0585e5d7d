import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { discrepancy, useAdversaryHarness } from "./support/operator.js";
import { hiStreamEvents, jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A gzip answer every client decodes alike, made long where the proxy stops reading a coded
 * answer: a JSON answer that decodes past 8 MiB (white space between its members, a few KiB
 * of gzip), or a stream past its 64 KiB tail (comment lines, which no SSE client reads). The
 * same answer sent plain is read as it passes, its usage and text bounding the charge; coded,
 * it was read as unknown, the charge bounded by the lock alone: `Hi.` charged the price at
 * 2,000 tokens, `partially_verified`, a nightly exit 0.
 */
describe("a coded answer longer than the proxy holds", () => {
  const h = useAdversaryHarness();

  const hi = (pad: number) =>
    `{"id":"chatcmpl-1","object":"chat.completion","model":"qwen3-8b",${" ".repeat(pad)}"choices":[{"index":0,"message":{"role":"assistant","content":"Hi."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2000,"total_tokens":2012}}`;
  /** A stream of `Hi.` with `comments` bytes of comment lines before it, its usage 2,000. */
  const hiStream = (comments: number) => {
    const line = `: ${"k".repeat(1000)}\n`;
    const events = hiStreamEvents();
    return line.repeat(Math.ceil(comments / line.length)) + events;
  };

  it("bounds `Hi.` charged for 2,000 tokens by its text, coded or not", async () => {
    const c = await h.scenario();
    await c.pinKey(3);
    const request = { messages: [{ role: "user", content: "Say hi" }] };
    const send = async (body: string | Buffer, gzip: boolean, stream = false) => {
      const plan = h.op.plan({ keyIndex: 3, completionTokens: 2000 });
      await jobThroughProxy(
        h,
        c.store,
        plan,
        "/v1/chat/completions",
        body,
        stream ? { ...request, stream: true, stream_options: { include_usage: true } } : request,
        {
          ...(gzip ? { answerHeaders: { "content-encoding": "gzip" } } : {}),
          ...(stream ? { contentType: "text/event-stream" } : {}),
        },
      );
      return plan.jobId;
    };
    const long = hi(9 * 1024 * 1024);
    // Random bytes in the comments, so the gzip too is past the stream's tail.
    const streamed = hiStream(200 * 1024).replace(/k{1000}/g, () =>
      Buffer.from(Array.from({ length: 750 }, () => Math.floor(Math.random() * 256))).toString(
        "base64",
      ),
    );
    expect(gzipSync(long).length).toBeLessThan(64 * 1024);
    expect(gzipSync(streamed).length).toBeGreaterThan(64 * 1024);
    // Under x-gzip (fetch gunzips it, httpx reads the gzip bytes: clients read it apart).
    const apart = h.op.plan({ keyIndex: 3, completionTokens: 2000 });
    await jobThroughProxy(h, c.store, apart, "/v1/chat/completions", gzipSync(long), request, {
      answerHeaders: { "content-encoding": "x-gzip" },
    });
    const plainJson = await send(long, false);
    const codedJson = await send(gzipSync(long), true);
    const plainStream = await send(streamed, false, true);
    const codedStream = await send(gzipSync(streamed), true, true);
    expect(await c.verdicts(plainJson, codedJson, plainStream, codedStream, apart.jobId)).toEqual([
      discrepancy("usage.consistent"),
      discrepancy("usage.consistent"),
      discrepancy("usage.consistent"),
      discrepancy("usage.consistent"),
      discrepancy("charge.matches_price"),
    ]);
    expect(await readJob(c.store, apart.jobId)).toMatchObject({
      answerBytes: 3,
      completionTokens: null,
    });
    expect(await readJob(c.store, codedJson)).toMatchObject({ answerBytes: 3 });
  });
});

/**
 * A gzip answer past 8 MiB as sent (a member no client reads holding 9 MiB of random text, which
 * gzip cannot shrink; comment lines in a stream): read plain, such an answer is read as it
 * passes, its usage and text bounding the charge; coded, its bytes were scanned as if they were
 * JSON (or dropped, for a stream) and the answer taken as unknown: `Hi.` charged the price at
 * 2,000 tokens passed as `partially_verified`.
 */
describe("a coded answer past 8 MiB as sent", () => {
  const h = useAdversaryHarness();
  const padding = () => randomBytes(10 * 1024 * 1024).toString("base64");

  it("bounds `Hi.` charged for 2,000 tokens by its text", async () => {
    const c = await h.scenario();
    await c.pinKey(3);
    const json = `{"id":"chatcmpl-1","object":"chat.completion","model":"qwen3-8b","x_padding":"${padding()}","choices":[{"index":0,"message":{"role":"assistant","content":"Hi."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2000,"total_tokens":2012}}`;
    const events = hiStreamEvents();
    const stream = `${padding()
      .match(/.{1,1000}/g)!
      .map((line) => `: ${line}\n`)
      .join("")}${events}`;
    const request = { messages: [{ role: "user", content: "Say hi" }] };
    const codedJson = gzipSync(json);
    const codedStream = gzipSync(stream);
    expect(codedJson.length).toBeGreaterThan(8 * 1024 * 1024);
    expect(codedStream.length).toBeGreaterThan(8 * 1024 * 1024);
    const jsonPlan = h.op.plan({ keyIndex: 3, completionTokens: 2000 });
    await jobThroughProxy(h, c.store, jsonPlan, "/v1/chat/completions", codedJson, request, {
      answerHeaders: { "content-encoding": "gzip" },
    });
    const streamPlan = h.op.plan({ keyIndex: 3, completionTokens: 2000 });
    await jobThroughProxy(
      h,
      c.store,
      streamPlan,
      "/v1/chat/completions",
      codedStream,
      { ...request, stream: true, stream_options: { include_usage: true } },
      { answerHeaders: { "content-encoding": "gzip" }, contentType: "text/event-stream" },
    );
    expect(await c.verdicts(jsonPlan.jobId, streamPlan.jobId)).toEqual([
      discrepancy("usage.consistent"),
      discrepancy("usage.consistent"),
    ]);
    expect(await readJob(c.store, jsonPlan.jobId)).toMatchObject({ answerBytes: 3 });
  }, 60_000);
});
