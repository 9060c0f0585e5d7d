import { describe, expect, it } from "vitest";
import { type AdversaryHarness, type JobPlan, useAdversaryHarness } from "./support/operator.js";
import { jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A JSON answer over the 8 MiB the proxy holds is passed on as it comes, and read as it passes.
 * Unread, an operator padded a completion holding `Hi.` with 9 MiB of its own and charged 2,000
 * tokens: the job was `partially_verified` (`usage_unknown`) and the nightly run exited 0. Read
 * as it passes, padding a client never reads bounds nothing, while an honest answer of 9 MiB of
 * text is still verified. Amounts (qwen3-8b, key 1, no max_tokens): see verify-adversarial.
 */
describe("a JSON answer over 8 MiB through the proxy", () => {
  const h = useAdversaryHarness();

  /** One job of `plan` through the proxy, answered with `body` as the operator writes it. */
  async function throughProxy(
    c: Awaited<ReturnType<AdversaryHarness["scenario"]>>,
    plan: JobPlan,
    body: string,
    request: Record<string, unknown> = {},
  ): Promise<string> {
    const asked = { messages: [{ role: "user", content: "Say hi" }], ...request };
    return jobThroughProxy(h, c.store, plan, "/v1/chat/completions", body, asked);
  }

  const usage = (completion: number) => ({
    prompt_tokens: 12,
    completion_tokens: completion,
    total_tokens: 12 + completion,
  });
  const completion = (content: string, extra: Record<string, unknown>) =>
    JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion",
      model: "qwen3-8b",
      ...extra,
      choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", content } }],
    });
  const pad = "x".repeat(9 * 1024 * 1024);

  it("bounds a padded answer by the text its client reads, with or without usage", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    // Usage naming 2,000 tokens for `Hi.`, and the same answer with no usage at all.
    const named = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    const sent = await throughProxy(
      c,
      named,
      completion("Hi.", { padding: pad, usage: usage(2000) }),
    );
    expect(sent.length).toBeGreaterThan(9 * 1024 * 1024);
    const unnamed = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await throughProxy(c, unnamed, completion("Hi.", { padding: pad }));
    expect(await c.verdicts(named.jobId, unnamed.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
    ]);
    expect(await readJob(c.store, named.jobId)).toMatchObject({
      completionTokens: 2000,
      answerBytes: 3,
    });
    expect(await c.check(unnamed.jobId, "charge.matches_price")).toMatchObject({
      outcome: "fail",
      expected: { completionTokensAtMost: 19 },
    });
  });

  it("verifies an honest answer of 9 MiB of text", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1, completionTokens: 640 });
    const text = "w".repeat(9 * 1024 * 1024);
    await throughProxy(c, plan, completion(text, { usage: usage(640) }));
    expect(await c.verdicts(plan.jobId)).toEqual([{ verdict: "verified", failing: [] }]);
    expect(await readJob(c.store, plan.jobId)).toMatchObject({
      answerBytes: 9 * 1024 * 1024,
      responseModel: "qwen3-8b",
    });
  });

  // Python's client refuses an answer holding an integer of more than 4,300 digits or a byte
  // that is no UTF-8, wherever it stands (`json.loads` raises); Node's reads it. Read as it
  // passed, 9 MiB of text beside one and its 640 tokens were priced, verified, for a Python
  // customer who got an exception. Held whole, such an answer is one of no bytes already.
  it("takes a 9 MiB answer Python's client refuses as one of no bytes", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const text = "w".repeat(9 * 1024 * 1024);
    const body = Buffer.from(completion(text, { padding: ["P"], usage: usage(640) }));
    const at = body.indexOf('"P"');
    const pads = [
      Buffer.from("7".repeat(5000)),
      Buffer.from([0x22, 0xff, 0x22]),
      Buffer.from(`${"7".repeat(5000)}.5`),
    ];
    const plans: JobPlan[] = [];
    for (const pad of pads) {
      const plan = h.op.plan({ keyIndex: 1, completionTokens: 640 });
      const sent = Buffer.concat([body.subarray(0, at), pad, body.subarray(at + 3)]);
      const asked = { messages: [{ role: "user", content: "Say hi" }] };
      await jobThroughProxy(h, c.store, plan, "/v1/chat/completions", sent, asked);
      plans.push(plan);
    }
    const failed = { verdict: "discrepancy", failing: ["charge.matches_price"] };
    expect(await c.verdicts(...plans.map((p) => p.jobId))).toEqual([
      failed,
      failed,
      { verdict: "verified", failing: [] },
    ]);
  });

  it("bounds a padded JSON answer to a request that asked for a stream by the events in it", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    // The caller's SDK reads a stream it asked for as events: this JSON holds none, so its
    // client got nothing, yet 2,000 tokens were charged (under 8 MiB: an answer of no bytes).
    const plan = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    const asked = { stream: true, stream_options: { include_usage: true } };
    await throughProxy(c, plan, completion("Hi.", { padding: pad, usage: usage(2000) }), asked);
    expect(await c.verdicts(plan.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
    ]);
    expect(await readJob(c.store, plan.jobId)).toMatchObject({ answerBytes: 0, usageAsked: true });
  });
});

describe("a JSON /responses answer over 8 MiB through the proxy", () => {
  const h = useAdversaryHarness();

  const response = (text: string, outputTokens: number, extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      id: "resp_1",
      object: "response",
      status: "completed",
      model: "qwen3-8b",
      error: null,
      ...extra,
      output: [
        {
          type: "message",
          role: "assistant",
          content: [{ type: "output_text", text, annotations: [] }],
        },
      ],
      usage: { input_tokens: 12, output_tokens: outputTokens, total_tokens: 12 + outputTokens },
    });

  it("bounds a padded answer by its output, and verifies an honest one of 9 MiB", async () => {
    // Read as it passes only for `choices`, `Hi.` padded with 9 MiB of its own was charged
    // 2,000 tokens, partially verified (`usage_unknown`).
    const c = await h.scenario();
    await c.pinKey(1);
    const padded = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    const pad = { padding: "x".repeat(9 * 1024 * 1024) };
    const asked = { input: "Say hi" };
    await jobThroughProxy(h, c.store, padded, "/v1/responses", response("Hi.", 2000, pad), asked);
    const honest = h.op.plan({ keyIndex: 1, completionTokens: 640 });
    const text = "w".repeat(9 * 1024 * 1024);
    await jobThroughProxy(h, c.store, honest, "/v1/responses", response(text, 640), asked);
    expect(await c.verdicts(padded.jobId, honest.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "verified", failing: [] },
    ]);
    expect(await readJob(c.store, padded.jobId)).toMatchObject({
      completionTokens: 2000,
      answerBytes: 3,
    });
  });
});
