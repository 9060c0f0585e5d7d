import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { useAdversaryHarness } from "./support/operator.js";
import { jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A gzip answer of several members: Node's fetch decodes every member, httpx (the Python SDK's
 * client) the first alone, leaving the rest unread. An operator answering `Hi.` in a first member
 * and 9,000 bytes with a usage of 2,000 tokens in a second, charged the price of 2,000, was
 * `verified`, the answer read as fetch reads it, though a Python client read `Hi.` alone. Such an
 * answer is now read apart: its usage unknown, its charge bounded by the most either client read.
 */
describe("a gzip answer of several members", () => {
  const h = useAdversaryHarness();
  const event = (chunk: unknown) => `data: ${JSON.stringify(chunk)}\n\n`;
  const hi = event({
    choices: [{ index: 0, delta: { role: "assistant", content: "Hi." } }],
    model: "qwen3-8b",
  });
  const usage = (completion: number) =>
    event({
      choices: [],
      model: "qwen3-8b",
      usage: { prompt_tokens: 12, completion_tokens: completion, total_tokens: 12 + completion },
    });
  const rest = (padding: string) =>
    padding +
    event({ choices: [{ index: 0, delta: { content: "x".repeat(9000) } }], model: "qwen3-8b" }) +
    event({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }], model: "qwen3-8b" }) +
    usage(2000) +
    "data: [DONE]\n\n";
  // Comment lines no SSE client reads: 9.6 MiB decoded, a few KiB sent.
  const padding = ": pad\n".repeat(1_600_000);
  // Random text no gzip shrinks: sent past 8 MiB.
  const noise = () => `: ${randomBytes(10 * 1024 * 1024).toString("base64")}\n\n`;

  /** The stream `body` through the proxy under `encoding`; the job's verdict and receipt. */
  async function answered(body: Buffer, completionTokens: number, encoding = "gzip") {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1, completionTokens });
    await jobThroughProxy(
      h,
      c.store,
      plan,
      "/v1/chat/completions",
      body,
      {
        messages: [{ role: "user", content: "Say hi" }],
        stream: true,
        stream_options: { include_usage: true },
      },
      { contentType: "text/event-stream", answerHeaders: { "content-encoding": encoding } },
    );
    const [outcome] = await c.verdicts(plan.jobId);
    return { outcome, job: await readJob(c.store, plan.jobId) };
  }

  it("is not verified on a usage only fetch reads, held whole, decoded past 8 MiB or sent past it", async () => {
    const bodies = [
      Buffer.concat([gzipSync(hi), gzipSync(rest(""))]),
      Buffer.concat([gzipSync(hi), gzipSync(rest(padding))]),
      Buffer.concat([gzipSync(hi), gzipSync(rest(noise()), { level: 1 })]),
    ];
    expect(bodies[2]!.length).toBeGreaterThan(8 * 1024 * 1024);
    for (const body of bodies) {
      const { outcome, job } = await answered(body, 2000);
      expect(outcome?.verdict).not.toBe("verified");
      expect(job).toMatchObject({ completionTokens: null });
    }
  }, 90_000);

  it("is bounded by `Hi.` under `gzip, identity`, which fetch reads as no events", async () => {
    const { outcome } = await answered(
      Buffer.concat([gzipSync(hi), gzipSync(rest(""))]),
      2000,
      "gzip, identity",
    );
    expect(outcome?.verdict).toBe("discrepancy");
  }, 60_000);

  it("leaves an honest one-member stream past 8 MiB verified, decoded or sent so", async () => {
    const honest = (pad: string) => `${pad}${hi}${usage(3)}data: [DONE]\n\n`;
    for (const body of [gzipSync(honest(padding)), gzipSync(honest(noise()), { level: 1 })]) {
      const { outcome } = await answered(body, 3);
      expect(outcome).toEqual({ verdict: "verified", failing: [] });
    }
  }, 90_000);
});
