import http from "node:http";
import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { localApiKey } from "../src/localnet/keys.js";
import { createLogger } from "../src/log.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import { recordReceipts } from "../src/recorder/receipts.js";
import {
  discrepancyIncluding,
  quickWindowProfile,
  useAdversaryHarness,
} from "./support/operator.js";
import { listen, serveApp } from "./support/recorder-fixtures.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A job is a POST (`/v1/chat/completions`), but the proxy records any answer that names one. An
 * operator holding the escrow authority answers a customer's free `GET /v1/models` with a job's
 * headers, locks half the customer's vault and settles it all to a worker and the treasury at
 * the right split. With no body there is no model and no max_tokens: nothing bounded the lock or
 * the charge, and the job was `partially_verified` (`model_unknown`), the nightly exit 0. The
 * request's method and path are kept (`jobs.request_method`, `jobs.request_path`): money moved
 * for a request that asked for no completion (not a POST, or a POST to a free endpoint such as
 * `/v1/webhooks`) fails `escrow.within_ceiling` and `charge.matches_price`.
 */

const h = useAdversaryHarness();

/** One request through a recording proxy to an upstream answering `answer` with `headers`. */
async function throughProxy(
  store: Store,
  request: { method: string; path: string; keyIndex: number | null; body?: string },
  headers: Record<string, string>,
  answer: string,
): Promise<number> {
  const log = createLogger({ level: "silent" });
  const upstream = await listen(
    http.createServer(async (req, res) => {
      for await (const _ of req) {
        // The request's body, read to its end.
      }
      res.writeHead(200, { "content-type": "application/json", ...headers });
      res.end(answer);
    }),
  );
  const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${upstream.url}/v1` });
  const app = await serveApp({ store, log, proxy });
  try {
    const res = await fetch(`${app.url}${request.path}`, {
      method: request.method,
      headers: {
        ...(request.keyIndex === null
          ? {}
          : { authorization: `Bearer ${localApiKey(request.keyIndex)}` }),
        ...(request.body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(request.body === undefined ? {} : { body: request.body }),
    });
    await res.text();
    await proxy.idle();
    return res.status;
  } finally {
    await app.close();
    await proxy.close();
    await upstream.close();
  }
}

describe("a job answering a request that asked for no completion", () => {
  const cases = [
    { method: "GET", path: "/v1/models", keyIndex: 1, body: undefined },
    { method: "GET", path: "/v1/models", keyIndex: null, body: undefined },
    // A POST to a free endpoint: a webhook's registration names no model either.
    {
      method: "POST",
      path: "/v1/webhooks",
      keyIndex: 1,
      body: JSON.stringify({ url: "https://example.com/hook", events: ["job.settled"] }),
    },
  ];
  for (const { method, path, keyIndex, body } of cases) {
    it(`fails a ${method} ${path} charged half the customer's vault (${keyIndex === null ? "no API key" : "the customer's key"})`, async () => {
      const c = await h.scenario(quickWindowProfile);
      await c.pinKey(1);
      const plan = h.op.plan({ keyIndex: 1 });
      const before = h.op.balance(plan.vault);
      const take = before / 2n;
      const workerShare = (take * BigInt(plan.worker.rateBps)) / 10_000n;
      const escrowTx = h.op.send(h.op.lockIxs(plan, { amount: take })).signature;
      const settlementTx = h.op.send(
        h.op.settleIxs(plan, { workerShare, treasuryShare: take - workerShare, remainder: 0n }),
      ).signature;
      const status = await throughProxy(
        c.store,
        { method, path, keyIndex, ...(body === undefined ? {} : { body }) },
        {
          "x-decentral-job-id": plan.jobId,
          "x-decentral-tx-signature": escrowTx,
          "x-decentral-settlement-tx": settlementTx,
          "x-decentral-worker": plan.worker.address,
          "x-decentral-credits-remaining": String((before - take) / 10_000n),
        },
        JSON.stringify({ object: "list", data: [{ id: "qwen3-8b", object: "model" }] }),
      );
      expect(status).toBe(200);
      expect(await readJob(c.store, plan.jobId)).toMatchObject({
        requestMethod: method,
        requestPath: path,
      });
      // The jobs API agrees with the operator: it is the operator's.
      c.jobsApi(plan.jobId, {
        status: "settled",
        credits_charged: Number(take / 10_000n),
        worker_address: plan.worker.address,
        on_chain: { escrow_tx: escrowTx, settlement_tx: settlementTx },
      });
      await c.verify();
      expect(await c.outcome(plan.jobId)).toMatchObject(
        discrepancyIncluding("escrow.within_ceiling", "charge.matches_price"),
      );
      expect(await c.check(plan.jobId, "escrow.within_ceiling")).toMatchObject({
        outcome: "fail",
        expected: { lockAtMost: "0", requestMethod: method, requestPath: path },
        actual: { lock: take.toString() },
      });
    });
  }

  it("keeps the proxy's method when an import line naming none completes its open row", async () => {
    const c = await h.scenario(quickWindowProfile);
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    const core = {
      jobId: plan.jobId,
      ...txs,
      worker: plan.worker.address,
      creditsRemainingUnits: null,
      model: null,
      promptTokens: null,
      completionTokens: null,
      totalTokens: null,
      keyFingerprint: plan.fingerprint,
      httpStatus: 200,
    };
    const now = Date.now();
    // The proxy's row of a stream it was still sending when it went down, then an import line
    // of the job from elsewhere, which names no method.
    await recordReceipts(
      c.store,
      [
        {
          ...core,
          requestMethod: "GET",
          requestPath: "/v1/models",
          stream: true,
          captureState: "open",
          receiptWriter: "proxy-1",
          respondedAt: now,
        },
      ],
      "proxy",
      { now },
    );
    const [imported] = await recordReceipts(c.store, [{ ...core, createdAt: now }], "import", {
      now: now + 1,
    });
    expect(imported?.outcome).toBe("updated");
    expect(await readJob(c.store, plan.jobId)).toMatchObject({
      captureState: "complete",
      requestMethod: "GET",
      requestPath: "/v1/models",
    });
  });

  it("fails it as ingested too, its receipt naming the method (the fetch wrapper's send it)", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs, { model: null, requestMethod: "GET", maxTokens: null });
    c.honestJobsApi(plan, txs);
    await c.verify();
    expect(await c.outcome(plan.jobId)).toMatchObject(
      discrepancyIncluding("escrow.within_ceiling", "charge.matches_price"),
    );
    expect(await c.check(plan.jobId, "charge.matches_price")).toMatchObject({
      outcome: "fail",
      expected: { chargeAtMost: "0", requestMethod: "GET" },
      actual: { charge: plan.charge.toString() },
    });
  });

  it("keeps a completion's POST, judged by its model and usage as before", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1, completionTokens: 3, maxTokens: 50 });
    const txs = h.op.honestJob(plan);
    const status = await throughProxy(
      c.store,
      {
        method: "POST",
        path: "/v1/chat/completions",
        keyIndex: 1,
        body: JSON.stringify({
          model: plan.requestedModel,
          max_tokens: 50,
          messages: [{ role: "user", content: "hi" }],
        }),
      },
      {
        "x-decentral-job-id": plan.jobId,
        "x-decentral-tx-signature": txs.escrowTx,
        "x-decentral-settlement-tx": txs.settlementTx,
        "x-decentral-worker": plan.worker.address,
      },
      JSON.stringify({
        id: "chatcmpl-1",
        object: "chat.completion",
        model: plan.model,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: "Hello there!" },
            finish_reason: "stop",
          },
        ],
        usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
      }),
    );
    expect(status).toBe(200);
    expect(await readJob(c.store, plan.jobId)).toMatchObject({
      requestMethod: "POST",
      requestPath: "/v1/chat/completions",
    });
    c.honestJobsApi(plan, txs);
    await c.verify();
    expect(await c.check(plan.jobId, "escrow.within_ceiling")).toMatchObject({ outcome: "pass" });
    expect(await c.check(plan.jobId, "charge.matches_price")).toMatchObject({ outcome: "pass" });
    expect(await c.outcome(plan.jobId)).toEqual({ verdict: "verified", failing: [] });
  });
});
