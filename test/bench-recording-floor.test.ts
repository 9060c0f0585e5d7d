import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Child, startChild } from "../bench/children.js";
import { compareProxy } from "../bench/proxy-bench.js";

const escrow = "E".repeat(88);
const settlement = "S".repeat(88);
const usage = { prompt_tokens: 12, completion_tokens: 34, total_tokens: 46 };

/**
 * An upstream of one JSON answer and one stream per job, and a jobs API naming the settlement.
 * A stream sends its first event, then waits for `release()` before its usage and end.
 */
async function upstream() {
  let n = 0;
  let release = () => {};
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      const jobMatch = /\/v1\/jobs\/([^/?]+)$/.exec(req.url ?? "");
      if (jobMatch) {
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({
            id: jobMatch[1],
            status: "settled",
            on_chain: { escrow_tx: escrow, settlement_tx: settlement },
          }),
        );
        return;
      }
      const asked = JSON.parse(Buffer.concat(parts).toString("utf8")) as { stream?: boolean };
      const jobId = `job_floor${String(n++).padStart(10, "0")}`;
      const headers: Record<string, string> = {
        "x-decentral-job-id": jobId,
        "x-decentral-tx-signature": escrow,
        "x-decentral-worker": "W".repeat(44),
        "x-decentral-credits-remaining": "100",
      };
      if (!asked.stream) {
        res.writeHead(200, {
          ...headers,
          "x-decentral-settlement-tx": settlement,
          "content-type": "application/json",
        });
        res.end(JSON.stringify({ id: "c", choices: [], usage }));
        return;
      }
      res.writeHead(200, { ...headers, "content-type": "text/event-stream" });
      res.write('data: {"choices":[{"delta":{"content":"hi"}}]}\n\n');
      release = () => {
        res.write(`data: ${JSON.stringify({ choices: [], usage })}\n\n`);
        res.end("data: [DONE]\n\n");
      };
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    server,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    release: () => release(),
  };
}

/** Posts a completion to `base`; resolves with the job id once the headers arrive. */
function post(base: string, stream: boolean) {
  return new Promise<{ jobId: string; body: Promise<string> }>((resolve, reject) => {
    const req = request(
      `${base}/v1/chat/completions`,
      {
        method: "POST",
        headers: { authorization: "Bearer dcntrl_live_floor", "content-type": "application/json" },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        const body = once(res, "end").then(() => Buffer.concat(parts).toString("utf8"));
        resolve({ jobId: String(res.headers["x-decentral-job-id"]), body });
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify({ model: "qwen3-8b", max_tokens: 700, stream }));
  });
}

describe("the proxy bench's recording floor", () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-floor-"));
  const dbPath = join(dir, "floor.db");
  let up: Awaited<ReturnType<typeof upstream>>;
  let floor: Child<{ url: string }>;
  let db: Database.Database;
  /**
   * Posts while the test holds the database's write lock for 300 ms: nothing of the answer may
   * reach the client until the floor could commit its receipt.
   */
  const postHeld = async (stream: boolean) => {
    const writer = new Database(dbPath);
    writer.exec("BEGIN IMMEDIATE");
    let answered = false;
    const posted = post(floor.ready.url, stream).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const answeredWhileHeld = answered;
    writer.exec("ROLLBACK");
    writer.close();
    expect(answeredWhileHeld).toBe(false);
    return posted;
  };
  const row = (jobId: string) =>
    db.prepare("SELECT * FROM receipts WHERE job_id = ?").get(jobId) as
      | Record<string, unknown>
      | undefined;

  beforeAll(async () => {
    up = await upstream();
    floor = await startChild<{ url: string }>("./recording-floor-child.ts", {
      BARE_UPSTREAM: `${up.url}/v1`,
      FLOOR_DB: dbPath,
    });
    db = new Database(dbPath, { readonly: true });
  });
  afterAll(async () => {
    db?.close();
    await floor?.stop();
    up?.server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("has a JSON answer's receipt committed, usage and all, before the client has the answer", async () => {
    const { jobId, body } = await postHeld(false);
    expect(JSON.parse(await body)).toMatchObject({ usage });
    expect(row(jobId)).toMatchObject({
      escrow_tx: escrow,
      settlement_tx: settlement,
      model: "qwen3-8b",
      max_tokens: 700,
      prompt_tokens: 12,
      completion_tokens: 34,
      completed: 1,
    });
    await expect.poll(() => row(jobId)?.jobs_api, { timeout: 5000 }).toContain(settlement);
  });

  it("commits a stream's open receipt before its headers and its usage before its end", async () => {
    const { jobId, body } = await postHeld(true);
    expect(row(jobId)).toMatchObject({ escrow_tx: escrow, settlement_tx: null, completed: 0 });
    up.release();
    expect(await body).toContain("[DONE]");
    expect(row(jobId)).toMatchObject({ prompt_tokens: 12, completion_tokens: 34, completed: 1 });
    // The jobs API names the settlement a stream's headers could not.
    await expect.poll(() => row(jobId)?.settlement_tx, { timeout: 5000 }).toBe(settlement);
  });

  it("is measured as a fourth path of a proxy row, beside the bare proxy", async () => {
    let cpu = 0;
    const serviceCpu = async () => {
      cpu += 10;
      return { cpuMs: cpu, loopP99Ms: 0, loopMaxMs: 0 };
    };
    const result = await compareProxy(
      {
        directBaseUrl: `${up.url}/v1`,
        bareUrl: up.url,
        serviceUrl: up.url,
        floorUrl: floor.ready.url,
        apiKeys: ["k"],
      },
      "stub, 1 worker",
      false,
      1,
      5,
      {
        bareCpuMs: async () => 0,
        floorCpuMs: () => floor.cpuMs(),
        floorLoopDelay: () => floor.request("loopDelay"),
        service: serviceCpu,
      },
    );
    expect(result.floor?.errors).toBe(0);
    expect(result.floor?.cpuMsPerRequest).toBeGreaterThan(0);
    // Its event-loop delay over the same run, beside ours: read, not the first reading's zeros
    // alone (a 10 ms timer ran through the run).
    expect(result.floor?.loopDelay?.p99Ms).toBeGreaterThanOrEqual(0);
    expect(Number.isFinite(result.floor?.loopDelay?.maxMs)).toBe(true);
    const completed = db.prepare("SELECT count(*) AS n FROM receipts WHERE completed = 1").get();
    // The two cases before, the warm-up's 40 and the 5 measured on the floor's path.
    expect(completed).toEqual({ n: 2 + 40 + 5 });
  });
});
