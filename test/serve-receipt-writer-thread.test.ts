import { mkdtempSync } from "node:fs";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createToken } from "../src/auth/tokens.js";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { COMMIT_HOLD_METRIC, THREAD_COMMIT_METRIC } from "../src/recorder/commit-hold.js";
import { address, jobId, signature } from "./support/recorder-fixtures.js";
import { metricSample, scrapeMetrics, startServe } from "./support/service-process.js";

/**
 * `serve` with `RECEIPT_WRITER_THREAD` on a database file: each answer still waits for its
 * receipt's commit, made by the writer's own thread; no group commit holds the event loop.
 */

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const end of cleanup.splice(0)) end();
});

/** An upstream answering every completion as JSON, with a job of its own and its usage. */
async function jsonUpstream(): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, {
        "content-type": "application/json",
        "x-decentral-job-id": jobId(),
        "x-decentral-tx-signature": signature(),
        "x-decentral-settlement-tx": signature(),
        "x-decentral-worker": address(),
        "x-decentral-credits-remaining": "12.5",
      });
      res.end(
        JSON.stringify({
          model: "m",
          choices: [{ index: 0, message: { role: "assistant", content: "hi" } }],
          usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** One completion through `url`: its status and job id once the whole answer is in. */
function complete(url: string): Promise<{ status: number; jobId: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/v1/chat/completions`,
      {
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
      },
      (res) => {
        res.resume();
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            jobId: String(res.headers["x-decentral-job-id"]),
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }));
  });
}

describe("serve with RECEIPT_WRITER_THREAD", () => {
  it("answers each job once its receipt is committed by the writer's thread, holds no loop with a commit, and drains on SIGTERM", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "writer-thread-serve-")), "audit.db");
    const store = openSqliteStore(db);
    migrateStore(store);
    const { token } = await createToken(store, { role: "read", name: "metrics" });
    const upstream = await jsonUpstream();
    const serve = await startServe(db, {
      SOLANA_RPC_URLS: "http://127.0.0.1:9",
      DECENTRAL_BASE_URL: `${upstream}/v1`,
      RECEIPT_WRITER_THREAD: "true",
    });
    cleanup.push(() => serve.child.kill("SIGKILL"));
    const answers = await Promise.all(Array.from({ length: 12 }, () => complete(serve.url)));
    expect(answers.map((a) => a.status)).toEqual(Array(12).fill(200));
    // Answered once committed: every job's row is there, its usage with it.
    const read = store.sqlite.prepare("SELECT total_tokens AS tokens FROM jobs WHERE job_id = ?");
    for (const { jobId: id } of answers) expect(read.get(id)).toEqual({ tokens: 7 });
    const metrics = (await scrapeMetrics(serve.url, token)).text;
    expect(metricSample(metrics, `${THREAD_COMMIT_METRIC}_count`)).toBeGreaterThan(0);
    expect(metricSample(metrics, `${COMMIT_HOLD_METRIC}_count`)).toBe(0);
    serve.child.kill("SIGTERM");
    expect(await serve.exited).toBe(0);
    store.close();
  }, 60_000);
});
