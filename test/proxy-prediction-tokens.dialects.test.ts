import { describe, expect, it } from "vitest";
import { localnetProfile } from "../src/verify/profiles.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { type JobPlan, Scenario, useAdversaryHarness } from "./support/operator.js";
import { jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * Rejected prediction tokens are predicted outputs (a request's `prediction`) the model did not
 * take: billed, yet none of the answer. `usage.consistent` counts them beside the answer's bytes,
 * so an operator answering `Hi.` to a request that sent no prediction, and naming 1,997 of its
 * 2,000 completion tokens rejected prediction tokens, had the job charged at 2,000 and verified.
 */
describe.each(dialects)("rejected prediction tokens (%s store)", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness();

  async function throughProxy(
    c: Scenario,
    plan: JobPlan,
    body: string,
    request: Record<string, unknown>,
  ): Promise<void> {
    const asked = { messages: [{ role: "user", content: "Say hi" }], ...request };
    await jobThroughProxy(h, c.store, plan, "/v1/chat/completions", body, asked);
  }

  /** `Hi.` with a usage of 2,000 completion tokens, `details` naming where they went. */
  const answer = (details: Record<string, number>) =>
    JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion",
      model: "qwen3-8b",
      choices: [
        { index: 0, finish_reason: "stop", message: { role: "assistant", content: "Hi." } },
      ],
      usage: {
        prompt_tokens: 12,
        completion_tokens: 2000,
        total_tokens: 2012,
        completion_tokens_details: details,
      },
    });
  const rejected = answer({ rejected_prediction_tokens: 1997 });
  const prediction = { type: "content", content: "Hello there, how can I help you today?" };

  it("fails usage.consistent when the request sent no prediction, as before when it sent one", async () => {
    const c = new Scenario(h, localnetProfile, await stores.open());
    await c.pinKey(1);
    const unsent = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await throughProxy(c, unsent, rejected, {});
    // `prediction: null` is no prediction: the API takes it as none sent.
    const nulled = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await throughProxy(c, nulled, rejected, { prediction: null });
    // A request that sent one may have had all of it rejected: the bound it lifts stands.
    const sent = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await throughProxy(c, sent, rejected, { prediction });
    // Reasoning tokens need no prediction: unchanged.
    const reasoning = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await throughProxy(c, reasoning, answer({ reasoning_tokens: 1997 }), {});
    expect(await c.verdicts(unsent.jobId, nulled.jobId, sent.jobId, reasoning.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "verified", failing: [] },
      { verdict: "verified", failing: [] },
    ]);
    expect(await c.check(unsent.jobId, "usage.consistent")).toMatchObject({
      outcome: "fail",
      expected: { rejectedPredictionTokens: 0 },
      actual: { completionTokens: 2000, rejectedPredictionTokens: 1997, answerBytes: 3 },
    });
    expect(await readJob(c.store, unsent.jobId)).toMatchObject({
      predictionSent: false,
      rejectedPredictionTokens: 1997,
    });
    expect(await readJob(c.store, sent.jobId)).toMatchObject({ predictionSent: true });
  });
});
