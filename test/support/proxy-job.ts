import http from "node:http";
import { expect } from "vitest";
import type { Store } from "../../src/db/client.js";
import { localApiKey } from "../../src/localnet/keys.js";
import { createLogger } from "../../src/log.js";
import { createRecordingProxy } from "../../src/recorder/proxy.js";
import type { AdversaryHarness, JobPlan } from "./operator.js";
import { listen, serveApp } from "./recorder-fixtures.js";

/**
 * One job of `plan` (its chain steps sent honestly) through a recording proxy into `store`:
 * `request` (with the plan's model) posted to `path`, answered 200 by an operator upstream with
 * `body` as written and the job's headers. Resolves with the text the caller got, once the
 * proxy recorded the receipt.
 */
export async function jobThroughProxy(
  h: AdversaryHarness,
  store: Store,
  plan: JobPlan,
  path: string,
  body: string,
  request: Record<string, unknown>,
  options: {
    /** The answer's content type; JSON when not given. */
    contentType?: string;
    /** The request body as sent, in place of `request` as JSON (with these headers). */
    sent?: { body: Buffer; headers: Record<string, string> };
  } = {},
): Promise<string> {
  const txs = h.op.honestJob(plan);
  const log = createLogger({ level: "silent" });
  const upstream = await listen(
    http.createServer(async (req, res) => {
      for await (const _ of req) {
      }
      res.writeHead(200, {
        "content-type": options.contentType ?? "application/json",
        "x-decentral-job-id": plan.jobId,
        "x-decentral-tx-signature": txs.escrowTx,
        "x-decentral-settlement-tx": txs.settlementTx,
        "x-decentral-worker": plan.worker.address,
      });
      res.end(body);
    }),
  );
  const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${upstream.url}/v1` });
  const app = await serveApp({ store, log, proxy });
  try {
    const res = await fetch(`${app.url}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${localApiKey(plan.keyIndex)}`,
        "content-type": "application/json",
        ...options.sent?.headers,
      },
      body: options.sent?.body ?? JSON.stringify({ model: plan.requestedModel, ...request }),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    await proxy.idle();
    return text;
  } finally {
    await app.close();
    await proxy.close();
    await upstream.close();
  }
}
