import { describe, expect, it } from "vitest";
import { type AdversaryHarness, type JobPlan, useAdversaryHarness } from "./support/operator.js";
import { jobThroughProxy } from "./support/proxy-job.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * Tool calls in an answer to a request that offered no tools. Each call that names what it calls
 * earns 16 tokens of allowance in `usage.consistent` (its format, billed but not shown), so an
 * operator answering `Hi.` with 120 calls of `a()` the caller never offered could charge 2,000
 * completion tokens (16 credits where 3 tokens cost 8) and the job was `verified`.
 */
describe("tool calls the request offered no tools for", () => {
  const h = useAdversaryHarness();

  async function throughProxy(
    c: Awaited<ReturnType<AdversaryHarness["scenario"]>>,
    plan: JobPlan,
    body: string,
    request: Record<string, unknown>,
  ): Promise<void> {
    const asked = { messages: [{ role: "user", content: "Say hi" }], ...request };
    await jobThroughProxy(h, c.store, plan, "/v1/chat/completions", body, asked);
  }

  const calls = Array.from({ length: 120 }, (_, i) => ({
    id: `call_${i}`,
    type: "function",
    function: { name: "a", arguments: "" },
  }));
  const body = JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion",
    model: "qwen3-8b",
    choices: [
      {
        index: 0,
        finish_reason: "tool_calls",
        message: { role: "assistant", content: "Hi.", tool_calls: calls },
      },
    ],
    usage: { prompt_tokens: 12, completion_tokens: 2000, total_tokens: 2012 },
  });
  const tools = [{ type: "function", function: { name: "a", parameters: { type: "object" } } }];

  it("gives them no allowance, so usage they would carry fails", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const unoffered = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await throughProxy(c, unoffered, body, {});
    // The same answer to a request that offered the tool: 120 calls it may make.
    const offered = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await throughProxy(c, offered, body, { tools });
    expect(await c.verdicts(unoffered.jobId, offered.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "verified", failing: [] },
    ]);
    expect(await readJob(c.store, unoffered.jobId)).toMatchObject({
      answerBytes: 123,
      answerToolCalls: 0,
    });
    expect(await readJob(c.store, offered.jobId)).toMatchObject({ answerToolCalls: 120 });
  });

  it("gives none to a request that forbade calls, and one a choice where it forbade parallel ones", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const none = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await throughProxy(c, none, body, { tools, tool_choice: "none" });
    const legacyNone = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await throughProxy(c, legacyNone, body, {
      functions: [{ name: "a", parameters: { type: "object" } }],
      function_call: "none",
    });
    const serial = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await throughProxy(c, serial, body, { tools, parallel_tool_calls: false });
    expect(await c.verdicts(none.jobId, legacyNone.jobId, serial.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "discrepancy", failing: ["usage.consistent"] },
    ]);
    expect(await readJob(c.store, none.jobId)).toMatchObject({ answerToolCalls: 0 });
    expect(await readJob(c.store, serial.jobId)).toMatchObject({ answerToolCalls: 1 });
    // One call of a tool the request let the model choose, parallel calls forbidden: honest.
    const one = h.op.plan({ keyIndex: 1, completionTokens: 20 });
    const single = JSON.stringify({
      ...JSON.parse(body),
      choices: [
        {
          index: 0,
          finish_reason: "tool_calls",
          message: { role: "assistant", content: null, tool_calls: calls.slice(0, 1) },
        },
      ],
      usage: { prompt_tokens: 12, completion_tokens: 20, total_tokens: 32 },
    });
    await throughProxy(c, one, single, { tools, tool_choice: "auto", parallel_tool_calls: false });
    expect(await c.verdicts(one.jobId)).toEqual([{ verdict: "verified", failing: [] }]);
  });
});
