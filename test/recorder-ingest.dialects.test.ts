import { describe, expect, it } from "vitest";
import { createApp } from "../src/api/app.js";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { reportsStore } from "../src/store/reports.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { ingestToken, wireReceipt } from "./support/recorder-fixtures.js";

/** `POST /jobs` as `serve` runs it (through the receipt writer), on both stores. */
describe.each(dialects)("POST /jobs on %s", (dialect) => {
  const stores = useDialectStores(dialect);
  const log = createLogger({ level: "silent" });

  async function setup() {
    const store = await stores.open();
    const writer = createReceiptWriter(store, { log });
    const app = createApp({ store, log, receiptWriter: writer });
    const token = await ingestToken(store);
    const post = (body: unknown) =>
      app.request("/jobs", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
    return { store, post, writer };
  }

  it("refuses a model with a control character as that item alone, and records the rest of the batch", async () => {
    const { store, post, writer } = await setup();
    const good = wireReceipt({ model: "qwen3-8b" });
    const bad = wireReceipt({ model: "qwen\u0000-8b" });
    const res = await post([good, bad]);
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      created: number;
      results: { status: string; field?: string }[];
    };
    expect(body.created).toBe(1);
    expect(body.results.map((r) => r.status)).toEqual(["created", "rejected"]);
    expect(body.results[1]?.field).toBe("model");
    const reports = reportsStore(store);
    expect((await reports.auditRows(String(good.job_id)))?.job.model).toBe("qwen3-8b");
    expect(await reports.auditRows(String(bad.job_id))).toBeNull();
    await writer.close();
  });
});
