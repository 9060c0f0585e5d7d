import http from "node:http";
import { describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import {
  address,
  closedAfterTest,
  jobId,
  listen,
  serveApp,
  signature,
} from "./support/recorder-fixtures.js";
import { readJob } from "./support/seed-recorder.js";
import { createTestStore } from "./support/store.js";

/**
 * A JSON answer over the 8 MiB the proxy holds, sent faster than it is read: what waits when it
 * ends (up to 8 MiB; read in one turn, a second of CPU when it is all numbers, during which no
 * other request of the process moved) is read a slice a turn, and only then is the receipt
 * completed and the answer ended (see recorder-json-answer-scan.test.ts for the slices).
 */
describe("the end of a JSON answer over 8 MiB", () => {
  it("is read before its receipt is completed and the answer ended", async () => {
    const store = createTestStore();
    const log = createLogger({ level: "silent" });
    const job = jobId();
    const body = Buffer.from(
      `{"id":"c","pad":"${"x".repeat(9 * 1024 * 1024)}","model":"qwen3-8b","choices":[{"index":0,"message":{"role":"assistant","content":"Hi."}}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}`,
    );
    const upstream = closedAfterTest(
      await listen(
        http.createServer(async (req, res) => {
          for await (const _ of req) {
          }
          res.writeHead(200, {
            "content-type": "application/json",
            "x-decentral-job-id": job,
            "x-decentral-tx-signature": signature(),
            "x-decentral-settlement-tx": signature(),
            "x-decentral-worker": address(),
          });
          res.end(body);
        }),
      ),
    );
    const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${upstream.url}/v1` });
    const app = closedAfterTest(await serveApp({ store, log, proxy }));
    try {
      const res = await fetch(`${app.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: "Bearer sk-test", "content-type": "application/json" },
        body: JSON.stringify({ model: "qwen3-8b", messages: [{ role: "user", content: "hi" }] }),
      });
      expect(res.status).toBe(200);
      expect((await res.arrayBuffer()).byteLength).toBe(body.length);
      // The answer ends only once its completed receipt is written, what waited read first.
      expect(await readJob(store, job)).toMatchObject({
        answerBytes: 3,
        completionTokens: 5,
        responseModel: "qwen3-8b",
        captureState: "complete",
      });
      await proxy.idle();
    } finally {
      await proxy.close();
      store.close();
    }
  });
});
