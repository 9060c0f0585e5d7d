import http from "node:http";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { localApiKey } from "../src/localnet/keys.js";
import { createLogger } from "../src/log.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import {
  discrepancy,
  type JobPlan,
  type Scenario,
  useAdversaryHarness,
} from "./support/operator.js";
import { hiStreamEvents } from "./support/proxy-job.js";
import { closedAfterTest, listen, serveApp } from "./support/recorder-fixtures.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * A stream cut after its `[DONE]`: its client read it whole, so its usage and text bound the
 * charge (read plain, so it is). Sent gzip, the proxy looked for no `[DONE]` in its bytes, took
 * it for one broken off and its usage for unknown: `Hi.` charged the price at 2,000 tokens was
 * `partially_verified`.
 */
describe("a coded stream cut after its [DONE]", () => {
  const h = useAdversaryHarness();
  const events = hiStreamEvents();

  async function cutAfterDone(c: Scenario, plan: JobPlan, body: Buffer, gzip: boolean) {
    const txs = h.op.honestJob(plan);
    const upstream = closedAfterTest(
      await listen(
        http.createServer(async (req, res) => {
          for await (const _ of req) {
          }
          res.writeHead(200, {
            "content-type": "text/event-stream",
            "x-decentral-job-id": plan.jobId,
            "x-decentral-tx-signature": txs.escrowTx,
            "x-decentral-settlement-tx": txs.settlementTx,
            "x-decentral-worker": plan.worker.address,
            ...(gzip ? { "content-encoding": "gzip" } : {}),
          });
          res.write(body, async () => {
            for (let i = 0; i < 1000; i++) {
              if (await readJob(c.store, plan.jobId)) break;
              await new Promise((r) => setTimeout(r, 10));
            }
            setTimeout(() => res.socket?.destroy(), 50);
          });
        }),
      ),
    );
    const log = createLogger({ level: "silent" });
    const proxy = createRecordingProxy({
      store: c.store,
      log,
      upstreamBaseUrl: `${upstream.url}/v1`,
    });
    const app = closedAfterTest(await serveApp({ store: c.store, log, proxy }));
    try {
      const res = await fetch(`${app.url}/v1/chat/completions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${localApiKey(plan.keyIndex)}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({
          model: plan.requestedModel,
          messages: [{ role: "user", content: "Say hi" }],
          stream: true,
          stream_options: { include_usage: true },
        }),
      });
      // The client reads every event up to the [DONE] before the connection breaks.
      const reader = res.body!.getReader();
      let text = "";
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          text += new TextDecoder().decode(value);
        }
      } catch {}
      expect(text).toContain("data: [DONE]");
      await proxy.idle();
    } finally {
      await proxy.close();
    }
  }

  it("bounds `Hi.` charged for 2,000 tokens by its text, coded or not", async () => {
    const c = await h.scenario();
    await c.pinKey(2);
    const plain = h.op.plan({ keyIndex: 2, completionTokens: 2000 });
    await cutAfterDone(c, plain, Buffer.from(events), false);
    const coded = h.op.plan({ keyIndex: 2, completionTokens: 2000 });
    // Flushed whole, as an upstream compressing a stream does before its connection breaks.
    await cutAfterDone(c, coded, gzipSync(events), true);
    expect(await c.verdicts(plain.jobId, coded.jobId)).toEqual([
      discrepancy("usage.consistent"),
      discrepancy("usage.consistent"),
    ]);
  });
});
