import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdversaryHarness, startAdversaryHarness } from "./support/operator.js";
import { jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A Responses API answer read as its client reads it, streamed or not, and held to the ceiling
 * its request set (`max_output_tokens`). A stream's text comes as `response.output_text.delta`
 * events and its usage in the `response.completed` event's response: unread, every streamed
 * Responses job was left unproven, and an operator could charge it up to the lock. And a
 * `max_output_tokens` read as no ceiling let 1,000 output tokens be charged and verified for a
 * request capped at 100.
 */
describe("Responses API answers: streams and the ceiling", () => {
  let h: AdversaryHarness;
  beforeAll(async () => {
    h = await startAdversaryHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  const message = (text: string) => ({
    type: "message",
    id: "msg_1",
    role: "assistant",
    status: "completed",
    content: [{ type: "output_text", text, annotations: [] }],
  });
  const response = (output: unknown[], outputTokens: number | null, status = "completed") => ({
    id: "resp_1",
    object: "response",
    status,
    model: "qwen3-8b",
    error: null,
    output,
    usage:
      outputTokens === null
        ? null
        : { input_tokens: 12, output_tokens: outputTokens, total_tokens: 12 + outputTokens },
  });
  it("holds the usage to max_output_tokens, and judges the lock by it", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const text = "x".repeat(3000);
    // Capped at 100, charged for 1,000 (locked at the default's price).
    const over = h.op.plan({ keyIndex: 1, completionTokens: 1000 });
    await jobThroughProxy(
      h,
      c.store,
      over,
      "/v1/responses",
      JSON.stringify(response([message(text)], 1000)),
      { input: "Hi", max_output_tokens: 100 },
    );
    // Capped at 5,000, honestly locked at its price and charged for 3,000.
    const honest = h.op.plan({ keyIndex: 1, completionTokens: 3000, maxTokens: 5000 });
    await jobThroughProxy(
      h,
      c.store,
      honest,
      "/v1/responses",
      JSON.stringify(response([message(text)], 3000)),
      { input: "Hi", max_output_tokens: 5000 },
    );
    expect(await c.verdicts(over.jobId, honest.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["charge.matches_price", "escrow.within_ceiling"] },
      { verdict: "verified", failing: [] },
    ]);
    expect(await readJob(c.store, over.jobId)).toMatchObject({ maxTokens: 100 });
  });
});
