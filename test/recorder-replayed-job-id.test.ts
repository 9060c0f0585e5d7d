import http from "node:http";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/api/app.js";
import { jobs } from "../src/db/schema.js";
import { createLogger } from "../src/log.js";
import { importReceipts } from "../src/recorder/import.js";
import { createRecordingProxy, type RecordingProxy } from "../src/recorder/proxy.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import {
  address,
  ingestToken,
  jobId,
  listen,
  signature,
  wireReceipt,
} from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

/**
 * A receipt replayed with its job id altered (case, whitespace around it, a lookalike letter,
 * a zero-width character): refused, or the same job, never a second job whose charge a report
 * counts again. One test per way a receipt comes in: POST /jobs, import, the proxy's headers.
 */
function variants(id: string): string[] {
  const rest = id.slice("job_".length);
  return [
    id.toUpperCase(),
    `JOB_${rest}`,
    // Upper case throughout: the trailing `X` keeps it altered when the id has no letters.
    `job_${rest.toUpperCase()}X`,
    ` ${id}`,
    `${id} `,
    `${id}\n`,
    `${id}\t`,
    `${id}\u00a0`,
    `${id}\u200b`,
    `\u200b${id}`,
    `job_\u200d${rest}`,
    `\ufeff${id}`,
    `${id}\u2028`,
    // Cyrillic `ј` and `о`, fullwidth `ｊ`, a fullwidth digit, a mathematical bold digit.
    `\u0458ob_${rest}`,
    `j\u043eb_${rest}`,
    `\uff4aob_${rest}`,
    `job_${rest}\uff11`,
    `job_${rest}\u{1d7cf}`,
    // The Kelvin sign, which case folding turns into `k`.
    `job_${rest}\u212a`,
  ];
}

const silent = createLogger({ level: "silent" });

describe("a receipt replayed with its job id altered", () => {
  it("through POST /jobs is refused or the same job", async () => {
    const store = createTestStore();
    const app = createApp({
      store,
      log: silent,
      receiptWriter: createReceiptWriter(store, { log: silent }),
    });
    const token = await ingestToken(store);
    const post = (body: unknown) =>
      app.request("/jobs", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
    const original = wireReceipt();
    expect((await post(original)).status).toBe(201);
    for (const id of variants(String(original.job_id))) {
      const answer = await post({ ...original, job_id: id });
      expect(answer.status, JSON.stringify(id)).not.toBe(201);
    }
    // As a batch too, and with the signatures carrying the same alterations.
    await post(variants(String(original.job_id)).map((id) => ({ ...original, job_id: id })));
    await post([
      { ...original, escrow_tx: ` ${original.escrow_tx}\u200b` },
      { ...original, escrow_tx: `${original.escrow_tx}\u00a0` },
    ]);
    expect(store.db.select({ jobId: jobs.jobId }).from(jobs).all()).toEqual([
      { jobId: original.job_id },
    ]);
  });

  it("through import (JSONL and CSV) is refused or the same job", async () => {
    const store = createTestStore();
    const original = wireReceipt();
    const altered = variants(String(original.job_id)).filter((id) => !/[\n\u2028]/.test(id));
    const jsonl = [original, ...altered.map((id) => ({ ...original, job_id: id }))]
      .map((r) => JSON.stringify(r))
      .join("\n");
    const first = await importReceipts(store, Readable.from([jsonl]));
    expect(first.created).toBe(1);
    const csv = [
      "job_id,escrow_tx,settlement_tx,worker",
      ...[String(original.job_id), ...altered].map((id) =>
        [JSON.stringify(id), original.escrow_tx, original.settlement_tx, original.worker].join(","),
      ),
    ].join("\n");
    const second = await importReceipts(store, Readable.from([csv]), { format: "csv" });
    expect(second.created).toBe(0);
    expect(store.db.select({ jobId: jobs.jobId }).from(jobs).all()).toEqual([
      { jobId: original.job_id },
    ]);
  });

  describe("through the proxy's x-decentral-job-id header", () => {
    const store = createTestStore();
    const id = jobId();
    const escrow = signature();
    const settlement = signature();
    const worker = address();
    const sent = [id, ...variants(id)];
    // The operator's answer, written byte by byte: Node's server refuses to send most of these.
    const upstream = http.createServer(async (req, res) => {
      for await (const _ of req) {
        // drain the body
      }
      const which = Number(new URL(req.url ?? "/", "http://x").searchParams.get("v"));
      const named = sent[which] ?? id;
      const body = JSON.stringify({
        id: "chatcmpl-1",
        model: "qwen3-8b",
        choices: [],
        usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
      });
      const head = [
        "HTTP/1.1 200 OK",
        "content-type: application/json",
        `x-decentral-job-id: ${named}`,
        `x-decentral-tx-signature: ${escrow}`,
        `x-decentral-settlement-tx: ${settlement}`,
        `x-decentral-worker: ${worker}`,
        "x-decentral-credits-remaining: 991.5",
        `content-length: ${body.length}`,
        "connection: close",
      ].join("\r\n");
      res.socket?.end(Buffer.from(`${head}\r\n\r\n${body}`, "utf8"));
    });
    let proxyUrl = "";
    const closers: (() => Promise<void>)[] = [];
    let live: RecordingProxy;

    beforeAll(async () => {
      const up = await listen(upstream);
      closers.push(up.close);
      live = createRecordingProxy({ store, log: silent, upstreamBaseUrl: `${up.url}/v1` });
      const served = await listen(http.createServer((req, res) => void live.handle(req, res)));
      closers.push(served.close);
      proxyUrl = served.url;
    });
    afterAll(async () => {
      await live.idle();
      await Promise.all(closers.map((close) => close()));
    });

    it("records each as the same job or none", async () => {
      for (let v = 0; v < sent.length; v++) {
        const answer = await fetch(`${proxyUrl}/v1/chat/completions?v=${v}`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            authorization: "Bearer dcntrl_live_abcdefghijklmnopqrstuvwxyz012345",
          },
          body: JSON.stringify({ model: "qwen3-8b", messages: [] }),
        }).catch(() => null);
        await answer?.arrayBuffer().catch(() => undefined);
        await live.idle();
      }
      expect(store.db.select({ jobId: jobs.jobId }).from(jobs).all()).toEqual([{ jobId: id }]);
    });
  });
});
