import http from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { createJobsApiClient, recordJobsApiAnswer } from "../src/recorder/jobs-api.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { address, jobId, listen, serveApp, signature } from "./support/recorder-fixtures.js";
import { readApiResponse, readJob, seedJob } from "./support/seed-recorder.js";

/**
 * Text the operator writes reaches the database cleaned on every path: PostgreSQL text cannot
 * hold NUL, and a receipt the database refuses is a charged job with no record.
 */

const log = createLogger({ level: "silent" });
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** A Decentral stand-in naming `model` in its answer, whole or as an event stream. */
async function upstreamNaming(model: string, id: string) {
  const server = await listen(
    http.createServer(async (req, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      const stream = (JSON.parse(body) as { stream?: boolean }).stream === true;
      const usage = { prompt_tokens: 4, completion_tokens: 5, total_tokens: 9 };
      res.writeHead(200, {
        "content-type": stream ? "text/event-stream" : "application/json",
        "x-decentral-job-id": id,
        "x-decentral-tx-signature": signature(),
        "x-decentral-settlement-tx": signature(),
        "x-decentral-worker": address(),
      });
      if (stream) {
        res.write(
          `data: ${JSON.stringify({ model, choices: [{ delta: { content: "hi" } }] })}\n\n`,
        );
        res.end(`data: ${JSON.stringify({ model, choices: [], usage })}\n\ndata: [DONE]\n\n`);
      } else res.end(JSON.stringify({ model, choices: [], usage }));
    }),
  );
  cleanups.push(server.close);
  return server.url;
}

/**
 * One chat request with `body` through a recording proxy to `upstream` over `store`, answered
 * 200: the answer's text, once the proxy has recorded everything of it.
 */
async function proxied(
  store: Parameters<typeof createRecordingProxy>[0]["store"],
  upstream: Promise<string>,
  body: Record<string, unknown>,
): Promise<string> {
  const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${await upstream}/v1` });
  const app = await serveApp({ store, log, proxy });
  cleanups.push(async () => {
    await app.close();
    await proxy.close();
  });
  const response = await fetch(`${app.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [], ...body }),
  });
  expect(response.status).toBe(200);
  const text = await response.text();
  await proxy.idle();
  return text;
}

describe.each(dialects)("operator text on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it.each([false, true])(
    "records and answers a proxied job whose response names a model with NUL (stream: %s)",
    async (stream) => {
      const store = await stores.open();
      const id = jobId();
      const answer = await proxied(store, upstreamNaming("qwen3-8b\u0000", id), {
        model: "qwen3-8b",
        stream,
      });
      expect(answer).toContain("qwen3-8b\\u0000");
      expect(await readJob(store, id)).toMatchObject({
        model: "qwen3-8b",
        responseModel: "qwen3-8b\ufffd",
        totalTokens: 9,
        captureState: "complete",
      });
    },
  );

  it("records a job whose request named a model with NUL or beyond 200 characters", async () => {
    const store = await stores.open();
    // The request is already sent when the model is read: the job may be charged, so its
    // receipt must be kept, whatever the caller wrote.
    for (const [asked, kept] of [
      ["qwen\u0000x", "qwen\ufffdx"],
      ["m".repeat(3000), `${"m".repeat(199)}\u2026`],
    ] as const) {
      const id = jobId();
      await proxied(store, upstreamNaming("qwen3-8b", id), { model: asked });
      expect(await readJob(store, id)).toMatchObject({ model: kept, captureState: "complete" });
    }
  });

  it("stores a jobs API answer whose status holds NUL, cleaned, and its body as received", async () => {
    const store = await stores.open();
    const id = jobId();
    await seedJob(store, { jobId: id });
    const body = { id, status: "settled\u0000", worker_address: "x" };
    const api = await listen(
      http.createServer((_, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      }),
    );
    cleanups.push(api.close);
    const answer = await createJobsApiClient(`${api.url}/v1`)(id, "Bearer dcntrl_live_x");
    await recordJobsApiAnswer(store, id, answer, 100);
    expect(await readJob(store, id)).toMatchObject({ apiStatus: "settled", apiCheckedAt: 100 });
    expect(await readApiResponse(store, id)).toEqual(body);
  });
});
