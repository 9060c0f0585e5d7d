import { describe, expect, it } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { localApiKey } from "../src/localnet/keys.js";
import { createLogger } from "../src/log.js";
import { createRecordingFetch } from "../src/recorder/fetch-wrapper.js";
import { useAdversaryHarness } from "./support/operator.js";
import {
  closedAfterTest,
  ingestToken,
  jobUpstream,
  serveApp,
} from "./support/recorder-fixtures.js";

/**
 * What the operator writes in its answer (headers, the response's model and usage) cannot make
 * a charged job's receipt be refused, and so lost: a backend calling Decentral through the
 * recording fetch gets every job recorded and judged by the checks, whatever the answer holds.
 */

const h = useAdversaryHarness();

const log = createLogger({ level: "silent" });

/** What the operator changes in an honest answer: headers, body members, usage members. */
interface Patch {
  headers?: Record<string, string>;
  body?: Record<string, unknown>;
  usage?: Record<string, unknown>;
}

describe("the recording fetch, answered with odd values by the operator", () => {
  const verified = { verdict: "verified", failing: [] };
  const usageUnknown = { verdict: "partially_verified", failing: [] };
  // As when the proxy records a worker header it cannot read: the worker is unknown.
  const workerUnknown = { verdict: "unverifiable", failing: [] };
  it.each<[string, Patch, { verdict: string; failing: string[] }]>([
    // Recorded, each control character marked: cleaned, it is still not the model asked for.
    [
      "a model with a newline",
      { body: { model: "qwen3-8b\n" } },
      { verdict: "discrepancy", failing: ["charge.model"] },
    ],
    [
      "a model with NUL",
      { body: { model: "qwen3-8b\u0000" } },
      { verdict: "discrepancy", failing: ["charge.model"] },
    ],
    [
      "a model with an escape sequence",
      { body: { model: "qwen3-8b\u001b[2J" } },
      { verdict: "discrepancy", failing: ["charge.model"] },
    ],
    [
      "a model of 201 characters",
      { body: { model: "q".repeat(201) } },
      { verdict: "discrepancy", failing: ["charge.model"] },
    ],
    ["a fractional completion count", { usage: { completion_tokens: 30.5 } }, usageUnknown],
    ["a negative prompt count", { usage: { prompt_tokens: -1 } }, verified],
    ["a total count as text", { usage: { total_tokens: "52" } }, verified],
    ["usage as an array", { body: { usage: [1, 2] } }, usageUnknown],
    // Recorded as sent: a balance told that is no credit amount is a finding, not no header.
    [
      "credits as 1e3",
      { headers: { "x-decentral-credits-remaining": "1e3" } },
      { verdict: "discrepancy", failing: ["credits.header"] },
    ],
    [
      "a worker that is no address",
      { headers: { "x-decentral-worker": "worker-7" } },
      workerUnknown,
    ],
    ["a worker of 4 KB", { headers: { "x-decentral-worker": "w".repeat(4096) } }, workerUnknown],
  ])("records and judges the job when the answer has %s", async (_, patch, judged) => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    const usage = {
      prompt_tokens: 12,
      completion_tokens: plan.completionTokens,
      total_tokens: 12 + (plan.completionTokens ?? 0),
      ...patch.usage,
    };
    // An answer of as many bytes as the tokens it is charged: the byte bound holds.
    const content = "x".repeat(plan.completionTokens ?? 0);
    const choices = [{ index: 0, message: { role: "assistant", content } }];
    const body = { model: plan.model, choices, usage, ...patch.body };
    const upstream = await jobUpstream(plan, txs, {
      body: JSON.stringify(body),
      headers: { "x-decentral-credits-remaining": "500", ...patch.headers },
    });
    const audit = closedAfterTest(await serveApp({ store: c.store, log }));
    const errors: string[] = [];
    try {
      const recordingFetch = createRecordingFetch({
        ingestUrl: `${audit.url}/jobs`,
        token: await ingestToken(c.store),
        onError: (error) => errors.push(error.message),
      });
      const res = await recordingFetch(`${upstream.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${localApiKey(1)}`, "content-type": "application/json" },
        body: JSON.stringify({ model: plan.model, messages: [] }),
      });
      await res.json();
      await recordingFetch.flush();
      expect(recordingFetch.stats()).toMatchObject({ delivered: 1, rejected: 0 });
      expect(errors).toEqual([]);
      await c.verify();
      const read = (await createToken(c.store, { role: "read", name: "test" })).token;
      const answer = await fetch(`${audit.url}/audit/${plan.jobId}`, {
        headers: { authorization: `Bearer ${read}` },
      });
      expect(answer.status).toBe(200);
      expect(await answer.json()).toMatchObject({ jobId: plan.jobId, verdict: judged.verdict });
    } finally {
    }
    expect(await c.outcome(plan.jobId)).toEqual(judged);
  });
});
