import { describe, expect, it } from "vitest";
import { localApiKey } from "../src/localnet/keys.js";
import { createLogger } from "../src/log.js";
import { createRecordingProxy, offeredKind } from "../src/recorder/proxy.js";
import { requestFactsOf } from "../src/recorder/request-facts.js";
import { type AdversaryHarness, type JobPlan, useAdversaryHarness } from "./support/operator.js";
import { jobThroughProxy } from "./support/proxy-job.js";
import { closedAfterTest, jobUpstream, serveApp } from "./support/recorder-fixtures.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * An answer is read where its endpoint's client reads it: a completion's `choices`, a Responses
 * API answer's `output` (with its `input_tokens`/`output_tokens` usage), and no text at all for
 * an endpoint such as embeddings. `choices` padding a Responses or embeddings answer is read by
 * no client; counted, it let an operator charge 2,000 completion tokens for `Hi.` (16 credits
 * where 8 are owed) with the job verified. And an honest Responses answer was read as holding
 * nothing: 800 output tokens over 900 bytes of text failed `charge.matches_price`.
 */
describe("answers read by the endpoint asked", () => {
  const h = useAdversaryHarness();

  type Scenario = Awaited<ReturnType<AdversaryHarness["scenario"]>>;

  /** One job through the proxy: `request` posted to `path`, answered with `answer`. */
  async function throughProxy(
    c: Scenario,
    plan: JobPlan,
    path: string,
    answer: unknown,
    request: Record<string, unknown>,
  ): Promise<void> {
    await jobThroughProxy(h, c.store, plan, path, JSON.stringify(answer), request);
  }

  const response = (output: unknown[], outputTokens: number, extra: object = {}) => ({
    id: "resp_1",
    object: "response",
    status: "completed",
    model: "qwen3-8b",
    error: null,
    output,
    usage: { input_tokens: 12, output_tokens: outputTokens, total_tokens: 12 + outputTokens },
    ...extra,
  });
  const message = (text: string) => ({
    type: "message",
    role: "assistant",
    status: "completed",
    content: [{ type: "output_text", text, annotations: [] }],
  });
  const padding = {
    choices: [{ index: 0, message: { role: "assistant", content: "x".repeat(2000) } }],
  };
  const chatUsage = { prompt_tokens: 12, completion_tokens: 2000, total_tokens: 2012 };

  it("reads a Responses answer's output and usage, and no choices beside them", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const honest = h.op.plan({ keyIndex: 1, completionTokens: 800 });
    await throughProxy(c, honest, "/v1/responses", response([message("x".repeat(900))], 800), {
      input: "Write a long answer",
    });
    // `Hi.` in its output, 2,000 bytes of `choices` and chat usage beside it for the recorder.
    const padded = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    await throughProxy(
      c,
      padded,
      "/v1/responses",
      { ...response([message("Hi.")], 2000), ...padding, usage: chatUsage },
      { input: "Say hi" },
    );
    expect(await c.verdicts(honest.jobId, padded.jobId)).toEqual([
      { verdict: "verified", failing: [] },
      { verdict: "discrepancy", failing: ["charge.matches_price"] },
    ]);
    expect(await readJob(c.store, honest.jobId)).toMatchObject({
      completionTokens: 800,
      promptTokens: 12,
      answerBytes: 900,
    });
    expect(await readJob(c.store, padded.jobId)).toMatchObject({
      completionTokens: null,
      answerBytes: 3,
    });
  });

  it("reads no choices in an embeddings answer", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const padded = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    const answer = {
      object: "list",
      model: "qwen3-8b",
      data: [{ object: "embedding", index: 0, embedding: [0.1, 0.2] }],
      ...padding,
      usage: chatUsage,
    };
    await throughProxy(c, padded, "/v1/embeddings", answer, { input: "hi" });
    expect(await c.verdicts(padded.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
    ]);
    expect(await readJob(c.store, padded.jobId)).toMatchObject({ answerBytes: 0 });
  });

  it("counts a stored prompt as offering tools, and a request offering nothing as none", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    // 60 calls of `a({})`: 240 bytes and 60 calls' format, honest for 1,000 output tokens.
    const calls = Array.from({ length: 60 }, (_, i) => ({
      type: "function_call",
      id: `fc_${i}`,
      call_id: `call_${i}`,
      name: "a",
      arguments: "{}",
      status: "completed",
    }));
    const answer = response([message("Hi."), ...calls], 1000);
    const stored = h.op.plan({ keyIndex: 1, completionTokens: 1000 });
    await throughProxy(c, stored, "/v1/responses", answer, {
      prompt: { id: "pmpt_abc123", version: "2" },
      input: "Say hi",
    });
    const offeredNothing = h.op.plan({ keyIndex: 1, completionTokens: 1000 });
    await throughProxy(c, offeredNothing, "/v1/responses", answer, { input: "Say hi" });
    expect(await c.verdicts(stored.jobId, offeredNothing.jobId)).toEqual([
      { verdict: "verified", failing: [] },
      { verdict: "discrepancy", failing: ["usage.consistent"] },
    ]);
    expect(await readJob(c.store, stored.jobId)).toMatchObject({ answerToolCalls: 60 });
    expect(await readJob(c.store, offeredNothing.jobId)).toMatchObject({ answerToolCalls: 0 });
  });

  it("takes only a prompt object naming an id as a stored prompt", () => {
    const tools = (body: object) => requestFactsOf(body).tools;
    expect(tools({ prompt: { id: "pmpt_1" } })).toBe(true);
    // A legacy completion's prompt is its text; an empty or missing id names no stored prompt.
    expect(tools({ prompt: "Say hi" })).toBe(false);
    expect(tools({ prompt: ["Say", "hi"] })).toBe(false);
    expect(tools({ prompt: { id: " " } })).toBe(false);
    expect(tools({ prompt: { version: "1" } })).toBe(false);
    expect(tools({ prompt: null })).toBe(false);
  });

  it("reads no answer of a Responses request run in the background: its output comes later", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const queued = h.op.plan({ keyIndex: 1, completionTokens: 800 });
    const answer = { ...response([], 0), status: "queued", usage: null };
    await throughProxy(c, queued, "/v1/responses", answer, { input: "Hi", background: true });
    // Unproven (its usage unknown), where the 16 tokens of an empty answer failed its charge.
    expect(await c.verdicts(queued.jobId)).toEqual([
      { verdict: "partially_verified", failing: [] },
    ]);
    expect(await readJob(c.store, queued.jobId)).toMatchObject({ answerBytes: null });
  });

  it("reads a legacy completion's text alone, not a message beside it", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const padded = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    const answer = {
      id: "cmpl-1",
      object: "text_completion",
      model: "qwen3-8b",
      choices: [{ index: 0, text: "Hi.", message: padding.choices[0]?.message }],
      usage: chatUsage,
    };
    await throughProxy(c, padded, "/v1/completions", answer, { prompt: "Say hi" });
    expect(await c.verdicts(padded.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
    ]);
    expect(await readJob(c.store, padded.jobId)).toMatchObject({ answerBytes: 3 });
  });
});

/**
 * A Responses answer's call earns its format's allowance only when the request offered a tool of
 * its kind: a `web_search_call` where no web search was offered, or a `function_call` where only
 * web search was, is no call the model could make. Counted, 120 empty `web_search_call` items
 * beside `Hi.` (each a group of its own, so `parallel_tool_calls: false` held none back) lifted
 * the bound by 1,920 tokens: 1,936 output tokens, 16 credits where 8 are owed, verified.
 */
/** A /responses answer: the message "Hi." then `items`, claiming `outputTokens`. */
function answerOf(items: unknown[], outputTokens: number) {
  return {
    id: "resp_1",
    object: "response",
    status: "completed",
    model: "qwen3-8b",
    output: [
      {
        type: "message",
        role: "assistant",
        status: "completed",
        content: [{ type: "output_text", text: "Hi.", annotations: [] }],
      },
      ...items,
    ],
    usage: { input_tokens: 12, output_tokens: outputTokens, total_tokens: 12 + outputTokens },
  };
}

describe("Responses calls of a tool the request did not offer", () => {
  const h = useAdversaryHarness();

  async function throughProxy(
    c: Awaited<ReturnType<AdversaryHarness["scenario"]>>,
    plan: JobPlan,
    answer: unknown,
    request: Record<string, unknown>,
  ): Promise<void> {
    const asked = { input: "Say hi", ...request };
    await jobThroughProxy(h, c.store, plan, "/v1/responses", JSON.stringify(answer), asked);
  }

  const searches = Array.from({ length: 120 }, (_, i) => ({
    type: "web_search_call",
    id: `ws_${i}`,
    status: "completed",
  }));
  const functionCalls = Array.from({ length: 120 }, (_, i) => ({
    type: "function_call",
    id: `fc_${i}`,
    call_id: `call_${i}`,
    name: "a",
    arguments: "",
    status: "completed",
  }));

  it("gives no allowance to a call of a kind the request offered no tool of", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const function_ = [{ type: "function", name: "a", parameters: { type: "object" } }];
    const searchOnly = [{ type: "web_search" }];
    const fakeSearches = h.op.plan({ keyIndex: 1, completionTokens: 1936 });
    await throughProxy(c, fakeSearches, answerOf(searches, 1936), {
      tools: function_,
      parallel_tool_calls: false,
    });
    const fakeCalls = h.op.plan({ keyIndex: 1, completionTokens: 1936 });
    await throughProxy(c, fakeCalls, answerOf(functionCalls, 1936), { tools: searchOnly });
    // Honest: the searches offered earn their allowance, as do a stored prompt's (any tool).
    const honest = h.op.plan({ keyIndex: 1, completionTokens: 1936 });
    await throughProxy(c, honest, answerOf(searches, 1936), { tools: searchOnly });
    const stored = h.op.plan({ keyIndex: 1, completionTokens: 1936 });
    await throughProxy(c, stored, answerOf(searches, 1936), { prompt: { id: "pmpt_1" } });
    expect(
      await c.verdicts(fakeSearches.jobId, fakeCalls.jobId, honest.jobId, stored.jobId),
    ).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "discrepancy", failing: ["usage.consistent"] },
      { verdict: "verified", failing: [] },
      { verdict: "verified", failing: [] },
    ]);
    expect(await readJob(c.store, fakeSearches.jobId)).toMatchObject({ answerToolCalls: 0 });
    expect(await readJob(c.store, fakeCalls.jobId)).toMatchObject({ answerToolCalls: 0 });
    expect(await readJob(c.store, honest.jobId)).toMatchObject({ answerToolCalls: 120 });
  });

  it("reads which tool kinds a request offered", () => {
    const kinds = (body: object) => requestFactsOf(body).toolKinds;
    expect(kinds({ tools: [{ type: "function", name: "a" }] })).toEqual(["function"]);
    expect(kinds({ tools: [{ type: "web_search_preview" }, { type: "mcp" }] })).toEqual([
      "web_search_preview",
      "mcp",
    ]);
    // A stored prompt may carry any tool; chat's `functions` are function tools.
    expect(kinds({ prompt: { id: "pmpt_1" } })).toBeNull();
    expect(kinds({ functions: [{ name: "a" }] })).toEqual(["function"]);
    expect(kinds({ tools: [{ type: "web_search" }], tool_choice: "none" })).toEqual([]);
  });
});

/**
 * A Responses message's text is its `output_text` parts (a refusal, its `refusal` part), as the
 * SDKs' `output_text` reads it; a reasoning item's, its `summary_text` and `reasoning_text`
 * parts. A part of another type beside `Hi.`, 2,000 bytes no client shows, was counted: 2,000
 * output tokens verified where `Hi.` earns 8 credits, not 16. So was a part of no type.
 */
describe("Responses parts of a type no client reads", () => {
  const h = useAdversaryHarness();

  it("counts only the text of the parts a client reads", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    const txs = h.op.honestJob(plan);
    const log = createLogger({ level: "silent" });
    const answer = {
      id: "resp_1",
      object: "response",
      status: "completed",
      model: "qwen3-8b",
      output: [
        {
          type: "reasoning",
          summary: [{ type: "padding", text: "y".repeat(1000) }],
        },
        {
          type: "message",
          role: "assistant",
          content: [
            { type: "output_text", text: "Hi.", annotations: [] },
            { type: "padding", text: "x".repeat(1000) },
            { text: "z".repeat(2000) },
          ],
        },
      ],
      usage: { input_tokens: 12, output_tokens: 2000, total_tokens: 2012 },
    };
    const upstream = await jobUpstream(plan, txs, { body: JSON.stringify(answer) });
    const proxy = createRecordingProxy({
      store: c.store,
      log,
      upstreamBaseUrl: `${upstream.url}/v1`,
    });
    const app = closedAfterTest(await serveApp({ store: c.store, log, proxy }));
    try {
      const res = await fetch(`${app.url}/v1/responses`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${localApiKey(plan.keyIndex)}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ model: plan.requestedModel, input: "Say hi" }),
      });
      expect(res.status).toBe(200);
      await res.text();
      await proxy.idle();
    } finally {
      await proxy.close();
    }
    expect(await c.verdicts(plan.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["usage.consistent"] },
    ]);
    expect(await readJob(c.store, plan.jobId)).toMatchObject({ answerBytes: 3 });
  });
});

describe("the tool kind a Responses call item is of", () => {
  it("takes a tool under its dated and preview names, and no other tool", () => {
    expect(offeredKind("computer_call", ["computer_use_preview"])).toBe(true);
    expect(offeredKind("computer_call", ["computer"])).toBe(true);
    expect(offeredKind("web_search_call", ["web_search_preview_2025_03_11"])).toBe(true);
    expect(offeredKind("custom_tool_call", ["custom"])).toBe(true);
    expect(offeredKind("function_call", ["function"])).toBe(true);
    expect(offeredKind("file_search_call", ["web_search"])).toBe(false);
    expect(offeredKind("function_call", ["mcp", "web_search"])).toBe(false);
    expect(offeredKind("mcp_call", null)).toBe(true);
  });
});

/**
 * What a model writes in an MCP approval request (the server, the tool, the arguments), a shell
 * call (its commands) and an apply_patch call (the file and the diff) is its output: read as no
 * bytes, an honest answer made mostly of them (1,831 bytes, 1,871 output tokens) failed
 * `usage.consistent`. Each earns a call's allowance only where the request offered its tool.
 */
describe("Responses calls of the MCP, shell and apply_patch tools", () => {
  const h = useAdversaryHarness();

  const items = [
    {
      type: "mcp_approval_request",
      id: "mcpr_1",
      server_label: "wiki",
      name: "ask_question",
      arguments: `{"q":"${"a".repeat(600)}"}`,
    },
    {
      type: "shell_call",
      id: "sh_1",
      call_id: "call_1",
      action: { commands: [`ls -la ${"b".repeat(593)}`], timeout_ms: 1000 },
      status: "completed",
    },
    {
      type: "apply_patch_call",
      id: "ap_1",
      call_id: "call_2",
      operation: { type: "update_file", path: "a.py", diff: "c".repeat(600) },
      status: "completed",
    },
  ];
  const answer = answerOf(items, 1871);

  it("counts what the model wrote in them, with an allowance only for a tool offered", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const send = async (tools: unknown[]) => {
      const plan = h.op.plan({ keyIndex: 1, completionTokens: 1871 });
      const asked = { input: "Say hi", tools };
      await jobThroughProxy(h, c.store, plan, "/v1/responses", JSON.stringify(answer), asked);
      return plan.jobId;
    };
    const offered = [
      { type: "mcp", server_label: "wiki", server_url: "https://wiki.example/mcp" },
      { type: "shell" },
      { type: "apply_patch" },
    ];
    const honest = await send(offered);
    const notOffered = await send([{ type: "function", name: "a", parameters: {} }]);
    expect(await c.verdicts(honest, notOffered)).toEqual([
      { verdict: "verified", failing: [] },
      { verdict: "discrepancy", failing: ["usage.consistent"] },
    ]);
    expect(await readJob(c.store, honest)).toMatchObject({ answerBytes: 1831, answerToolCalls: 3 });
    // The approval request's text still counts, as a function call's does; the shell and
    // apply_patch calls, of the API's own tools that were not offered, are none it ran.
    expect(await readJob(c.store, notOffered)).toMatchObject({
      answerBytes: 627,
      answerToolCalls: 0,
    });
  });

  it("counts what the model wrote in a web search's and a computer call's action", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const url = `https://docs.example/${"d".repeat(500)}`;
    const actions = [
      { type: "search", query: "q", queries: ["q", "e".repeat(500)], sources: [] },
      { type: "open_page", url },
      { type: "find", url, pattern: "f".repeat(100) },
    ];
    const searches = actions.map((action, i) => ({
      type: "web_search_call",
      id: `ws_${i}`,
      status: "completed",
      action,
    }));
    const typing = {
      type: "computer_call",
      id: "cu_1",
      call_id: "call_3",
      action: { type: "type", text: "g".repeat(300) },
      pending_safety_checks: [],
      status: "completed",
    };
    // 3 (Hi.) + 501 (the longer of query and queries) + 521 + 521 + 100 + 300.
    const bytes = 1946;
    const answer = answerOf([...searches, typing], 1986);
    const send = async (tools: unknown[]) => {
      const plan = h.op.plan({ keyIndex: 1, completionTokens: 1986 });
      const asked = { input: "Say hi", tools };
      await jobThroughProxy(h, c.store, plan, "/v1/responses", JSON.stringify(answer), asked);
      return plan.jobId;
    };
    const offered = [
      { type: "web_search" },
      { type: "computer_use_preview", display_width: 1024, display_height: 768 },
    ];
    const honest = await send(offered);
    const notOffered = await send([{ type: "function", name: "a", parameters: {} }]);
    expect(await c.verdicts(honest, notOffered)).toEqual([
      { verdict: "verified", failing: [] },
      { verdict: "discrepancy", failing: ["usage.consistent"] },
    ]);
    expect(await readJob(c.store, honest)).toMatchObject({
      answerBytes: bytes,
      answerToolCalls: 4,
    });
    expect(await readJob(c.store, notOffered)).toMatchObject({
      answerBytes: 3,
      answerToolCalls: 0,
    });
  });

  it("takes an approval request as a call of the mcp tool", () => {
    expect(offeredKind("mcp_approval_request", ["mcp"])).toBe(true);
    expect(offeredKind("mcp_approval_request", ["function"])).toBe(false);
    expect(offeredKind("shell_call", ["shell"])).toBe(true);
    expect(offeredKind("shell_call", ["local_shell"])).toBe(false);
    expect(offeredKind("apply_patch_call", ["apply_patch"])).toBe(true);
  });
});
