import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createJobsApiClient } from "../src/recorder/jobs-api.js";
import { listen } from "./support/recorder-fixtures.js";

/**
 * A jobs API (or a balancer before it) that closes each connection after one answer. Told in a
 * `connection: close` header or not, every call is answered, each with its own job's answer:
 * closed without a word, 38 of 320 calls (16 at a time) failed as `socket hang up`, each asked
 * again a retry delay later, and a job out of retries was left to the settlement backfill.
 */
describe("a jobs API closing each connection after one answer", () => {
  let url = "";
  let close: () => Promise<void>;
  let saying = false;
  beforeAll(async () => {
    const server = http.createServer((req, res) => {
      const id = decodeURIComponent(req.url?.split("/").pop() ?? "");
      const body = JSON.stringify({ id, status: "settled" });
      if (saying) res.setHeader("connection", "close");
      res.writeHead(200, { "content-type": "application/json" });
      res.end(body, () => {
        if (!saying) req.socket.destroy();
      });
    });
    ({ url, close } = await listen(server));
  });
  afterAll(() => close());

  it.each([
    ["without a word", false],
    ["saying so", true],
  ])("%s: every call is answered with its own job", async (_, say) => {
    saying = say;
    const ask = createJobsApiClient(`${url}/v1`);
    for (let round = 0; round < 20; round++) {
      const jobs = Array.from({ length: 16 }, (_, i) => `job_${round}_${i}`);
      const answers = await Promise.all(jobs.map((job) => ask(job, "Bearer k")));
      expect(answers.map((a) => (a.raw as { id: string }).id)).toEqual(jobs);
    }
  });
});
