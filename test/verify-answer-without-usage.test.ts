import { describe, expect, it } from "vitest";
import { createApp } from "../src/api/app.js";
import { createToken } from "../src/auth/tokens.js";
import { createLogger } from "../src/log.js";
import { ingestReceipts } from "../src/recorder/ingest.js";
import { wireReceiptOf } from "../src/recorder/receipt-input.js";
import type { Receipt } from "../src/recorder/receipts.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { chainSecondAfter } from "./support/finality.js";
import { nightlyAfter } from "./support/nightly-window.js";
import {
  discrepancy,
  type JobPlan,
  partiallyVerified,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";
import { chatStreamEvents, jobThroughFetch, jobThroughProxy } from "./support/proxy-job.js";

/**
 * An answer that sends no usage where every OpenAI-compatible API sends it (a JSON answer, a
 * stream asked for its usage that ended whole, an answer of the other kind than asked) has its
 * charge bounded by what its client read (`charge.matches_price`). Only the proxy's receipts
 * were: the operator answering `Hi.` with no usage and settling the whole lock (the price of
 * 2,000 tokens, 160,000 units, where 3 bytes and the special tokens' slack are worth 80,000) was
 * a discrepancy through the proxy, but `partially_verified` (and a nightly run's exit 0) when
 * the recording fetch, an import line or a posted completion recorded it. And a stream the
 * recording fetch could not hold (past 8 MiB: comment lines no SDK reads) was not read at all.
 */
const h = useAdversaryHarness();
const log = createLogger({ level: "silent" });
type Scenario = Awaited<ReturnType<typeof h.scenario>>;

/** qwen3-8b marked as billing no hidden tokens, as README's Known limits recommend. */
const nothingHidden: Profile = {
  ...localnetProfile,
  pricing: {
    ...localnetProfile.pricing,
    "qwen3-8b": { ...localnetProfile.pricing["qwen3-8b"]!, hiddenTokens: false },
  },
};

const say = { messages: [{ role: "user", content: "Say hi" }] };
const streamAskingUsage = { ...say, stream: true, stream_options: { include_usage: true } };
const path = "/v1/chat/completions";
const sse = { contentType: "text/event-stream" };

/** `text` as a chat completion; `usage` only when given. */
const completion = (text: string, usage?: Record<string, unknown>) => ({
  id: "chatcmpl-1",
  object: "chat.completion",
  model: "qwen3-8b",
  choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", content: text } }],
  ...(usage === undefined ? {} : { usage }),
});

/** A stream answering `Hi.` that ends whole (`[DONE]`) with no usage; `padding` before its end. */
const hiStreamWithoutUsage = (padding = "") => {
  const chunk = (delta: Record<string, unknown>, finish: string | null) =>
    `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "qwen3-8b", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
  return `${chunk({ role: "assistant", content: "Hi." }, null)}${padding}${chunk({}, "stop")}data: [DONE]\n\n`;
};

/** 9 MiB of SSE comment lines: read by no SDK, past what the recording fetch holds. */
const padding = `: ${"x".repeat(1022)}\n`.repeat(9 * 1024);

/** The whole lock charged: the price of the default ceiling, 2,000 tokens. */
function wholeLock(keyIndex: number): JobPlan {
  const plan = h.op.plan({ keyIndex, completionTokens: 2000 });
  expect(plan.charge).toBe(160_000n);
  return plan;
}

async function judged(c: Scenario, plan: JobPlan) {
  await c.verify();
  return c.outcome(plan.jobId);
}

/** `body` posted to the ingest API as a backend posts it; resolves with the status. */
async function post(c: Scenario, body: Record<string, unknown>): Promise<number> {
  const app = createApp({ store: c.store, log });
  const { token } = await createToken(c.store, { role: "ingest", name: "backend" });
  const res = await app.request("/jobs", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return res.status;
}

describe("an answer without usage, recorded by the recording fetch", () => {
  it("bounds a JSON answer's charge by its bytes, whatever the profile says of hidden tokens", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = wholeLock(1);
    await jobThroughFetch(h, c.store, plan, path, JSON.stringify(completion("Hi.")), say);
    expect(await judged(c, plan)).toEqual(discrepancy("charge.matches_price"));
    // A fair charge for what it holds stays unproven, not failed.
    const fair = h.op.plan({ keyIndex: 1, completionTokens: 800 });
    await jobThroughFetch(h, c.store, fair, path, JSON.stringify(completion("x".repeat(900))), say);
    expect(await judged(c, fair)).toEqual(partiallyVerified);
  });

  it("bounds a stream asked for its usage that ended whole without it", async () => {
    const c = await h.scenario();
    await c.pinKey(2);
    const plan = wholeLock(2);
    const text = await jobThroughFetch(
      h,
      c.store,
      plan,
      path,
      hiStreamWithoutUsage(),
      streamAskingUsage,
      sse,
    );
    expect(text).toContain("[DONE]");
    expect(await judged(c, plan)).toEqual(discrepancy("charge.matches_price"));
  });

  it("bounds an answer of the other kind than asked, either way", async () => {
    const c = await h.scenario();
    await c.pinKey(3);
    // Events to a JSON request: its SDK parses no completion out of them.
    const events = wholeLock(3);
    const usage = { prompt_tokens: 12, completion_tokens: 2000, total_tokens: 2012 };
    await jobThroughFetch(h, c.store, events, path, chatStreamEvents("Hi.", 2000), say, sse);
    // JSON to a stream's request: its SDK reads no event in it.
    const json = wholeLock(3);
    const body = JSON.stringify(completion("Hi.", usage));
    await jobThroughFetch(h, c.store, json, path, body, streamAskingUsage);
    expect(await judged(c, events)).toEqual(discrepancy("charge.matches_price"));
    expect(await c.outcome(json.jobId)).toEqual(discrepancy("charge.matches_price"));
  });

  it("reads a stream past what it holds as it passes: padding neither hides a missing usage nor loses a sent one", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const padded = wholeLock(1);
    const text = await jobThroughFetch(
      h,
      c.store,
      padded,
      path,
      hiStreamWithoutUsage(padding),
      streamAskingUsage,
      sse,
    );
    expect(text.length).toBeGreaterThan(9 * 1024 * 1024);
    // 800 tokens for 900 bytes, its usage in the last event after the padding: read, priced.
    const honest = h.op.plan({ keyIndex: 1, completionTokens: 800 });
    const events = chatStreamEvents("x".repeat(900), 800);
    const honestText = `${padding}${events}`;
    await jobThroughFetch(h, c.store, honest, path, honestText, streamAskingUsage, sse);
    expect(await judged(c, padded)).toEqual(discrepancy("charge.matches_price"));
    expect(await c.outcome(honest.jobId)).toEqual(verified);
  });

  it('reads an answer as its client does: events to `stream: "false"`, a path alone, events typed as text', async () => {
    const c = await h.scenario();
    await c.pinKey(2);
    // An SDK reads `"false"` as it pleases, the events as events: 800 tokens for 900 bytes,
    // their usage sent. Read as no completion, its usage was dropped and the job failed.
    const lax = h.op.plan({ keyIndex: 2, completionTokens: 800 });
    const events = chatStreamEvents("x".repeat(900), 800);
    await jobThroughFetch(h, c.store, lax, path, events, { ...say, stream: "false" }, sse);
    // Asked by its path alone: read as a legacy completion, its chat message counted nothing.
    const alone = h.op.plan({ keyIndex: 2, completionTokens: 800 });
    const json = JSON.stringify(completion("x".repeat(900)));
    await jobThroughFetch(h, c.store, alone, path, json, say, { pathAlone: true });
    // Events typed as text to a stream asked for its usage: of the other kind, `Hi.` bounds it.
    const text = wholeLock(2);
    const hi = hiStreamWithoutUsage();
    await jobThroughFetch(h, c.store, text, path, hi, streamAskingUsage, {
      contentType: "text/plain",
    });
    expect(await judged(c, lax)).toEqual(verified);
    expect(await c.outcome(alone.jobId)).toEqual(partiallyVerified);
    expect(await c.outcome(text.jobId)).toEqual(discrepancy("charge.matches_price"));
  });

  /** `usage` of 12 prompt tokens and `completion_tokens`, `reasoning_tokens` of them. */
  const usage = (completion_tokens: number, reasoning_tokens = 0) => ({
    prompt_tokens: 12,
    completion_tokens,
    total_tokens: 12 + completion_tokens,
    completion_tokens_details: { reasoning_tokens },
  });
  /** 9 MiB in a member no client reads: past the 8 MiB the recording fetch holds. */
  const padded = (body: Record<string, unknown>) =>
    JSON.stringify({ ...body, padding: "p".repeat(9 * 1024 * 1024) });
  const cases = [
    [
      "reads a JSON body whatever its type says, its usage with it, as the proxy reads it",
      3,
      JSON.stringify,
    ],
    // Past it, the reasoning answer was bounded by its 3 bytes alone, left unproven.
    ["reads such a body past what it holds as it passes, as the proxy scans it", 2, padded],
  ] as const;
  for (const [name, keyIndex, body] of cases) {
    it(name, async () => {
      const c = await h.scenario();
      await c.pinKey(keyIndex);
      // `Hi.` and 1,997 reasoning tokens: honest. Its usage dropped, 3 bytes bounded the charge.
      const reasoning = h.op.plan({ keyIndex, completionTokens: 2000 });
      const honest = body(completion("Hi.", usage(2000, 1997)));
      const plain = { contentType: "text/plain" };
      await jobThroughFetch(h, c.store, reasoning, path, honest, say, plain);
      // 10 tokens named for 3,000 bytes, 2,000 charged: its usage dropped, the bytes covered it.
      const overcharged = wholeLock(keyIndex);
      const named = body(completion("x".repeat(3000), usage(10)));
      await jobThroughFetch(h, c.store, overcharged, path, named, say, plain);
      expect(await judged(c, reasoning)).toEqual(verified);
      expect(await c.outcome(overcharged.jobId)).toEqual(discrepancy("charge.matches_price"));
    });
  }

  it("reads embeddings whatever their type says: an overcharge without usage fails", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const embeddings = JSON.stringify({
      object: "list",
      model: "qwen3-8b",
      data: [{ object: "embedding", index: 0, embedding: [0.1, 0.2] }],
    });
    const outcomes: Record<string, unknown> = {};
    for (const contentType of ["application/json", "text/plain"]) {
      const plan = wholeLock(1);
      await jobThroughFetch(
        h,
        c.store,
        plan,
        "/v1/embeddings",
        embeddings,
        { input: "hi" },
        {
          contentType,
        },
      );
      outcomes[contentType] = await judged(c, plan);
    }
    // Typed `text/plain`, its body went unread: `partially_verified`, the nightly run's exit 0.
    expect(outcomes).toEqual({
      "application/json": discrepancy("charge.matches_price"),
      "text/plain": discrepancy("charge.matches_price"),
    });
  });
});

describe("an answer without usage, recorded otherwise", () => {
  it("bounds a proxy's import line as the proxy bounds it live", async () => {
    const c = await h.scenario();
    await c.pinKey(2);
    const plan = wholeLock(2);
    const txs = h.op.honestJob(plan);
    // What the proxy holds for a JSON answer `Hi.` without usage, written as its import line.
    const receipt: Receipt = {
      jobId: plan.jobId,
      escrowTx: txs.escrowTx,
      settlementTx: txs.settlementTx,
      worker: plan.worker.address,
      creditsRemainingUnits: h.op.balance(plan.vault),
      model: "qwen3-8b",
      responseModel: "qwen3-8b",
      promptTokens: null,
      completionTokens: null,
      totalTokens: null,
      maxTokens: null,
      stream: false,
      httpStatus: 200,
      keyFingerprint: plan.fingerprint,
      answerBytes: 3,
      answerToolCalls: 0,
      requestMethod: "POST",
      requestPath: path,
      createdAt: Date.now(),
    };
    const line = wireReceiptOf(receipt);
    expect(line).toMatchObject({ stream: false, answer_bytes: 3 });
    const [result] = await ingestReceipts(c.store, [line], "import");
    expect(result).toMatchObject({ status: "created" });
    expect(await judged(c, plan)).toEqual(discrepancy("charge.matches_price"));
  });

  it("bounds a plain receipt a backend posts saying its answer's kind, and a nightly run over it exits 1", async () => {
    const c = await h.scenario();
    const from = await chainSecondAfter(h.world, 200);
    await c.pinKey(3);
    const plan = wholeLock(3);
    const txs = h.op.honestJob(plan);
    const posted = await post(c, {
      job_id: plan.jobId,
      escrow_tx: txs.escrowTx,
      settlement_tx: txs.settlementTx,
      worker: plan.worker.address,
      model: "qwen3-8b",
      key_fingerprint: plan.fingerprint,
      http_status: 200,
      request_method: "POST",
      request_path: path,
      stream: false,
      answer_bytes: 3,
    });
    expect(posted).toBe(201);
    const to = Math.ceil((h.op.now() + 1) / 1000) * 1000;
    const run = await nightlyAfter(h, c, { vaults: [plan.vault], from, to });
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("charge.matches_price"));
    expect(run.exitCode).toBe(1);
  });

  it("leaves a posted completion, which does not say how it was read, to the lock", async () => {
    // A legacy completion's `text`, counted as a chat message's (nothing): bounded, this honest
    // answer of 900 bytes charged 800 tokens failed under a profile billing no hidden tokens.
    const c = await h.scenario(nothingHidden);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1, completionTokens: 800 });
    const txs = h.op.honestJob(plan);
    const posted = await post(c, {
      id: "cmpl-1",
      object: "text_completion",
      model: "qwen3-8b",
      choices: [{ index: 0, finish_reason: "stop", text: "x".repeat(900) }],
      _decentral: {
        job_id: plan.jobId,
        escrow_tx: txs.escrowTx,
        settlement_tx: txs.settlementTx,
        worker: plan.worker.address,
        requested_model: "qwen3-8b",
        key_fingerprint: plan.fingerprint,
        http_status: 200,
        request_method: "POST",
        request_path: "/v1/completions",
      },
    });
    expect(posted).toBe(201);
    expect(await judged(c, plan)).toEqual(partiallyVerified);
  });
});

describe("a whole stream not asked for its usage", () => {
  it("is bounded by what it holds for a model with no hidden tokens, and left to the lock for one that may reason", async () => {
    const bare = { ...say, stream: true };
    const c = await h.scenario(nothingHidden);
    await c.pinKey(1);
    const plan = wholeLock(1);
    await jobThroughProxy(h, c.store, plan, path, hiStreamWithoutUsage(), bare, sse);
    expect(await judged(c, plan)).toEqual(discrepancy("charge.matches_price"));
    // The same under the localnet profile, where qwen3-8b may bill reasoning it never sent.
    const d = await h.scenario();
    await d.pinKey(2);
    const reasoning = wholeLock(2);
    await jobThroughProxy(h, d.store, reasoning, path, hiStreamWithoutUsage(), bare, sse);
    expect(await judged(d, reasoning)).toEqual(partiallyVerified);
  });
});
