import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/api/app.js";
import { jobs, receiptConflicts } from "../src/db/schema.js";
import { createLogger } from "../src/log.js";
import { maxIngestBodyBytes } from "../src/recorder/ingest.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { recordReceipt } from "../src/recorder/receipts.js";
import {
  address,
  ingestToken,
  jobId,
  signature,
  wireReceipt,
} from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

async function setup() {
  const store = createTestStore();
  const log = createLogger({ level: "silent" });
  // As `serve` runs it: ingest answers after the writer's group commit.
  const app = createApp({ store, log, receiptWriter: createReceiptWriter(store, { log }) });
  const token = await ingestToken(store);
  const post = (body: unknown) =>
    app.request("/jobs", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  /** Posts raw bytes with the given content type (none when null). */
  const postRaw = (body: string | Uint8Array, type: string | null) =>
    app.request("/jobs", {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        ...(type === null ? {} : { "content-type": type }),
      },
      body,
    });
  return { store, post, postRaw, app, token };
}

describe("POST /jobs", () => {
  it("stores what ties a receipt to its customer and its request, and names the field when one is wrong", async () => {
    const { store, post } = await setup();
    const vault = address();
    const r = wireReceipt({
      model: "llama-3.3-70b",
      requested_model: "qwen3-8b",
      max_tokens: 300,
      key_fingerprint: "0123456789abcdef",
      credit_vault: vault,
    });
    expect((await post(r)).status).toBe(201);
    const row = store.db.select().from(jobs).all()[0]!;
    expect(row).toMatchObject({
      model: "qwen3-8b",
      responseModel: "llama-3.3-70b",
      maxTokens: 300,
      keyFingerprint: "0123456789abcdef",
      creditVault: vault,
    });
    for (const [field, value] of [
      ["key_fingerprint", "XYZ"],
      ["credit_vault", "not-an-address"],
      ["max_tokens", -3],
      ["requested_model", 5],
    ] as const) {
      const res = await post(wireReceipt({ [field]: value }));
      expect(res.status).toBe(400);
      expect(JSON.stringify(await res.json())).toContain(field);
    }
  });

  // "qwen3-8b\u200b" was stored, and a report showed a second "qwen3-8b" group beside the first.
  it("refuses a model holding an invisible character, naming the field", async () => {
    const { store, post } = await setup();
    for (const [field, value] of [
      ["model", "qwen3-8b\u200b"],
      ["model", "qwen3\u200d-8b"],
      ["model", "\ufeffqwen3-8b"],
      ["model", "qwen3-8b\u00a0"],
      ["model", "qwen3-8b\u200f"],
      ["model", "qwen3-8b\u{e0041}"],
      ["requested_model", "qwen3-8b\u2060"],
      ["requested_model", "qwen3\u00ad-8b"],
      // A lone surrogate is no character: stored, its bytes were no UTF-8.
      ["model", "qwen3-8b\ud800"],
      ["requested_model", "\udc00qwen3-8b"],
    ] as const) {
      const res = await post(wireReceipt({ [field]: value }));
      expect(res.status, JSON.stringify(value)).toBe(400);
      const body = JSON.stringify(await res.json());
      expect(body).toContain(field);
      expect(body).toContain("invisible characters");
    }
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
    expect((await post(wireReceipt({ model: "qwen3 8b" }))).status).toBe(201);
    // A pair of surrogates is one character, an emoji's.
    expect((await post(wireReceipt({ model: "qwen3-8b\ud83d\ude00" }))).status).toBe(201);
  });

  // The operator's own text is kept, not refused: a lone surrogate in it was stored as bytes that
  // are no UTF-8 (a report showed three U+FFFD); it is kept as one U+FFFD, as a control is.
  it("keeps a lone surrogate the operator wrote as U+FFFD", async () => {
    const { store, post } = await setup();
    const { model: _, usage: __, ...inner } = wireReceipt({ credits_remaining: "12.5\ud800" });
    const response = await post({
      model: "qwen3-8b\udc00",
      choices: [],
      _decentral: { ...inner, requested_model: "qwen3-8b" },
    });
    expect(response.status).toBe(201);
    const row = store.db.select().from(jobs).get();
    expect(row).toMatchObject({ responseModel: "qwen3-8b\ufffd", creditsRemainingUnits: null });
    expect(row?.creditsRemainingUnread).toBe("12.5");
  });

  it("creates a receipt, then answers the same receipt as a duplicate", async () => {
    const { store, post } = await setup();
    const r = wireReceipt();
    const first = await post(r);
    expect(first.status).toBe(201);
    expect(await first.json()).toEqual({ jobId: r.job_id, status: "created" });
    const again = await post(r);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ jobId: r.job_id, status: "duplicate" });
    expect(store.db.select().from(jobs).all()).toHaveLength(1);
  });

  it("answers 409 to a different receipt for a recorded job and keeps it as a conflict", async () => {
    const { store, post } = await setup();
    const r = wireReceipt();
    await post(r);
    const response = await post({ ...r, settlement_tx: signature() });
    expect(response.status).toBe(409);
    const body = (await response.json()) as { error: Record<string, unknown> };
    expect(body.error).toMatchObject({ code: "conflict", jobId: r.job_id });
    expect(store.db.select().from(receiptConflicts).all()).toMatchObject([
      { differences: ["settlement_tx"] },
    ]);
    expect(store.db.select().from(jobs).get()?.settlementTx).toBe(r.settlement_tx);
  });

  it("takes the key fingerprint and max_tokens a second post of a job brings, and answers 409 to another fingerprint", async () => {
    const { store, post } = await setup();
    const r = wireReceipt();
    expect((await post(r)).status).toBe(201);
    const fuller = { ...r, key_fingerprint: "0123456789abcdef", max_tokens: 300 };
    const second = await post(fuller);
    expect(second.status).toBe(200);
    expect(await second.json()).toEqual({ jobId: r.job_id, status: "updated" });
    expect(store.db.select().from(jobs).get()).toMatchObject({
      keyFingerprint: "0123456789abcdef",
      maxTokens: 300,
    });
    expect(await (await post(fuller)).json()).toEqual({ jobId: r.job_id, status: "duplicate" });
    const other = await post({ ...fuller, key_fingerprint: "fedcba9876543210" });
    expect(other.status).toBe(409);
    expect(store.db.select().from(receiptConflicts).all()).toMatchObject([
      { differences: ["key_fingerprint"] },
    ]);
    expect(store.db.select().from(jobs).get()?.keyFingerprint).toBe("0123456789abcdef");
  });

  it("reveals nothing of the recorded receipt in a 409: no field names, no values", async () => {
    const { store, post } = await setup();
    const worker = address();
    const proxied = {
      jobId: jobId(),
      escrowTx: signature(),
      settlementTx: signature(),
      worker,
      creditsRemainingUnits: 9_000_000n,
      model: "qwen3-8b",
      promptTokens: 1,
      completionTokens: 2,
      totalTokens: 3,
    };
    recordReceipt(store, proxied, "proxy");
    const guess = { job_id: proxied.jobId, escrow_tx: proxied.escrowTx, worker: address() };
    const response = await post(guess);
    expect(response.status).toBe(409);
    const text = await response.text();
    for (const secret of [worker, proxied.settlementTx, "worker", "settlement_tx", "differences"]) {
      expect(text).not.toContain(secret);
    }
    const batch = (await (await post([guess])).json()) as { results: unknown[] };
    expect(batch.results).toEqual([{ index: 0, jobId: proxied.jobId, status: "conflict" }]);
  });

  it("never lets an ingest token fill in usage the proxy did not see", async () => {
    const { store, post } = await setup();
    const proxied = {
      jobId: jobId(),
      escrowTx: signature(),
      settlementTx: null,
      worker: address(),
      creditsRemainingUnits: null,
      model: "qwen3-8b",
      promptTokens: null,
      completionTokens: null,
      totalTokens: null,
    };
    recordReceipt(store, proxied, "proxy");
    const response = await post({
      job_id: proxied.jobId,
      escrow_tx: proxied.escrowTx,
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    });
    expect(response.status).toBe(409);
    expect(store.db.select().from(jobs).get()).toMatchObject({
      source: "proxy",
      totalTokens: null,
      settlementTx: null,
    });
    expect(store.db.select().from(receiptConflicts).all()).toHaveLength(1);
  });

  it("refuses a body above the size limit with 413 before parsing it, by length or as it streams", async () => {
    const { store, post } = await setup();
    const huge = `[${'"x",'.repeat(3_500_000)}"x"]`;
    expect(huge.length).toBeGreaterThan(maxIngestBodyBytes * 3);
    const byLength = await post(huge);
    expect(byLength.status).toBe(413);
    expect(((await byLength.json()) as { error: { message: string } }).error.message).toContain(
      "1000 receipts",
    );
    const token = await ingestToken(store);
    const app = createApp({ store, log: createLogger({ level: "silent" }) });
    const chunk = new TextEncoder().encode("x".repeat(1024 * 1024));
    let sent = 0;
    const streamed = await app.request("/jobs", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: new ReadableStream({
        pull(controller) {
          if (sent++ < 14) controller.enqueue(chunk);
          else controller.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(sent).toBeLessThan(14);
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("answers 400 naming the field of a single bad receipt, and writes nothing", async () => {
    const { store, post } = await setup();
    const response = await post(wireReceipt({ escrow_tx: "not-a-signature" }));
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: Record<string, unknown> };
    expect(body.error).toMatchObject({ code: "validation_failed", field: "escrow_tx" });
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("answers 400 naming the body when it is not JSON", async () => {
    const { post } = await setup();
    const response = await post("{not json");
    expect(response.status).toBe(400);
    const error = ((await response.json()) as { error: Record<string, unknown> }).error;
    expect(error).toMatchObject({ code: "bad_request", field: "body" });
  });

  it("refuses a receipt with a field it does not take, naming it, and writes nothing", async () => {
    const { store, post } = await setup();
    // The API's own camelCase names were taken silently and stored as null (or now): an error
    // answer's status lost could not fail refund.not_settled.
    const response = await post(
      wireReceipt({
        keyFingerprint: "0123456789abcdef",
        maxTokens: 100,
        createdAt: "2020-01-01T00:00:00Z",
        httpStatus: 500,
        requested_modle: "qwen3-8b",
      }),
    );
    expect(response.status).toBe(400);
    const error = ((await response.json()) as { error: Record<string, unknown> }).error;
    expect(error).toMatchObject({
      code: "validation_failed",
      field: "keyFingerprint",
      message: expect.stringContaining("did you mean key_fingerprint?"),
    });
    const batch = await post([
      wireReceipt({ httpStatus: 500 }),
      wireReceipt({ requested_modle: "qwen3-8b" }),
    ]);
    expect(batch.status).toBe(200);
    expect(((await batch.json()) as { results: unknown[] }).results).toEqual([
      expect.objectContaining({
        status: "rejected",
        field: "httpStatus",
        reason: expect.stringContaining("did you mean http_status?"),
      }),
      expect.objectContaining({
        status: "rejected",
        field: "requested_modle",
        reason: expect.stringContaining("did you mean requested_model?"),
      }),
    ]);
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("keeps a receipt's capture_state aborted and refuses one that is neither complete nor aborted", async () => {
    const { store, app, token } = await setup();
    const post = (body: unknown) =>
      app.request("/jobs", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
    const open = await post(wireReceipt({ capture_state: "open" }));
    expect(open.status).toBe(400);
    expect(((await open.json()) as { error: Record<string, unknown> }).error).toMatchObject({
      field: "capture_state",
      message: 'capture_state: must be "complete" or "aborted"',
    });
    expect((await post(wireReceipt({ capture_state: "aborted" }))).status).toBe(201);
    expect(store.db.select().from(jobs).get()).toMatchObject({ captureState: "aborted" });
  });

  it("refuses a query parameter with 400 naming it, so dry_run=1 writes nothing", async () => {
    const { store, app, token } = await setup();
    const response = await app.request("/jobs?dry_run=1", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify(wireReceipt()),
    });
    expect(response.status).toBe(400);
    const error = ((await response.json()) as { error: Record<string, unknown> }).error;
    expect(error).toMatchObject({ code: "validation_failed", field: "dry_run" });
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("answers 415 naming content-encoding to a compressed body, and writes nothing", async () => {
    const { store, app, token } = await setup();
    const body = JSON.stringify(wireReceipt());
    for (const encoding of ["gzip", "br", "deflate"]) {
      const response = await app.request("/jobs", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-encoding": encoding,
          authorization: `Bearer ${token}`,
        },
        body: gzipSync(body),
      });
      expect(response.status, encoding).toBe(415);
      const error = ((await response.json()) as { error: Record<string, unknown> }).error;
      expect(error).toMatchObject({ code: "unsupported_media_type", field: "content-encoding" });
    }
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("answers 405 with allow to a method a known path does not take, 404 to an unknown path", async () => {
    const { app, token } = await setup();
    const headers = { authorization: `Bearer ${token}` };
    const put = await app.request("/jobs", { method: "PUT", headers });
    expect(put.status).toBe(405);
    expect(put.headers.get("allow")).toBe("GET, HEAD, POST");
    expect(((await put.json()) as { error: { code: string } }).error.code).toBe(
      "method_not_allowed",
    );
    const del = await app.request("/audit/job_abc", { method: "DELETE", headers });
    expect(del.status).toBe(405);
    expect(del.headers.get("allow")).toBe("GET, HEAD");
    expect((await app.request("/nowhere", { method: "PUT", headers })).status).toBe(404);
  });

  it("answers 415 to a receipt not sent as JSON, and writes nothing", async () => {
    const { store, postRaw } = await setup();
    const body = JSON.stringify(wireReceipt());
    for (const type of [
      "text/plain",
      "application/x-www-form-urlencoded",
      null,
      "application/jsonx",
    ]) {
      // Bytes, so that fetch adds no text/plain of its own when no type is sent.
      const response = await postRaw(new TextEncoder().encode(body), type);
      expect(response.status, String(type)).toBe(415);
      const error = ((await response.json()) as { error: Record<string, unknown> }).error;
      expect(error).toMatchObject({ code: "unsupported_media_type", field: "content-type" });
    }
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
    const charset = await postRaw(body, "Application/JSON; charset=utf-8");
    expect(charset.status).toBe(201);
  });

  it("answers 400 naming the body when it is not valid UTF-8, and writes nothing", async () => {
    const { store, postRaw } = await setup();
    const text = JSON.stringify(wireReceipt({ tags: { team: "QQ" } }));
    const bytes = new TextEncoder().encode(text);
    const at = text.indexOf("QQ");
    bytes[at] = 0xff;
    bytes[at + 1] = 0xfe;
    const response = await postRaw(bytes, "application/json");
    expect(response.status).toBe(400);
    const error = ((await response.json()) as { error: Record<string, unknown> }).error;
    expect(error).toMatchObject({ code: "bad_request", field: "body" });
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("never reads a member its JSON names twice as the last value alone", async () => {
    const { store, post } = await setup();
    /** The receipt's JSON text with `members` written after its own, as more of its members. */
    const twice = (r: Record<string, unknown>, members: string) =>
      `${JSON.stringify(r).slice(0, -1)},${members}}`;
    // A 502 answer is no completion: its settlement must fail, not pass as the 200 after it.
    const status = await post(twice(wireReceipt({ http_status: 502 }), '"http_status":200'));
    expect(status.status).toBe(400);
    expect(await status.json()).toMatchObject({
      error: { field: "http_status", message: expect.stringContaining("more than once") },
    });
    const tag = await post(twice(wireReceipt(), '"tags":{"team":"a","team":"b"}'));
    expect(await tag.json()).toMatchObject({ error: { field: "tags.team" } });
    expect(store.db.select().from(jobs).all()).toEqual([]);
    // The same value twice says it once.
    const same = wireReceipt({ http_status: 200 });
    expect((await post(twice(same, '"http_status":200'))).status).toBe(201);
    // Two locks named by the operator: the first is the receipt's, the second a conflicting
    // receipt of the job (as when joined by a comma), never dropped.
    const locked = wireReceipt();
    const second = signature();
    const both = await post(twice(locked, `"escrow_tx":"${second}","worker":"${address()}"`));
    expect(both.status).toBe(201);
    const row = store.db
      .select()
      .from(jobs)
      .all()
      .find((j) => j.jobId === locked.job_id);
    expect(row).toMatchObject({ escrowTx: locked.escrow_tx, worker: null });
    expect(JSON.stringify(store.db.select().from(receiptConflicts).all())).toContain(second);
    // In a batch, the item alone is refused, by index and field.
    const batch = await post(
      `[${JSON.stringify(wireReceipt())},${twice(wireReceipt({ max_tokens: 10 }), '"max_tokens":900')}]`,
    );
    expect(await batch.json()).toMatchObject({
      created: 1,
      rejected: 1,
      results: [{ index: 0 }, { index: 1, status: "rejected", field: "max_tokens" }],
    });
  });

  it("accepts a whole chat completion carrying _decentral", async () => {
    const { store, post } = await setup();
    const { model: _, usage: __, ...inner } = wireReceipt();
    const response = await post({
      id: "chatcmpl-9",
      object: "chat.completion",
      model: "qwen3-8b",
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
      choices: [{ index: 0, message: { role: "assistant", content: "hi" } }],
      _decentral: inner,
    });
    expect(response.status).toBe(201);
    expect(store.db.select().from(jobs).get()).toMatchObject({
      jobId: inner.job_id,
      totalTokens: 7,
      source: "ingest",
    });
  });

  it("records a completion whose model, usage or worker the operator wrote oddly", async () => {
    const { store, post } = await setup();
    const {
      model: _,
      usage: __,
      ...inner
    } = wireReceipt({
      worker: "worker-7",
      settlement_tx: "abc",
    });
    const response = await post({
      model: "qwen3-8b\n",
      usage: { prompt_tokens: -1, completion_tokens: 30.5, total_tokens: "52" },
      choices: [],
      _decentral: { ...inner, requested_model: "qwen3-8b" },
    });
    expect(response.status).toBe(201);
    expect(store.db.select().from(jobs).get()).toMatchObject({
      jobId: inner.job_id,
      model: "qwen3-8b",
      responseModel: "qwen3-8b\ufffd",
      worker: null,
      settlementTx: null,
      promptTokens: null,
      completionTokens: null,
      totalTokens: null,
    });
  });

  it("takes a batch item by item: good ones recorded, bad ones named by index and field", async () => {
    const { store, post } = await setup();
    const recorded = wireReceipt();
    await post(recorded);
    const good = wireReceipt();
    const batch = [
      good,
      wireReceipt({ escrow_tx: "placeholder_signature" }),
      recorded,
      { ...recorded, worker: wireReceipt().worker },
      "not an object",
    ];
    const response = await post(batch);
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ created: 1, duplicate: 1, conflict: 1, rejected: 2 });
    expect(body.results).toEqual([
      { index: 0, jobId: good.job_id, status: "created" },
      expect.objectContaining({ index: 1, status: "rejected", field: "escrow_tx" }),
      { index: 2, jobId: recorded.job_id, status: "duplicate" },
      { index: 3, jobId: recorded.job_id, status: "conflict" },
      expect.objectContaining({ index: 4, status: "rejected", field: "receipt" }),
    ]);
    expect(store.db.select().from(jobs).all()).toHaveLength(2);
  });

  it("refuses more than 1,000 receipts with 413 and writes none", async () => {
    const { store, post } = await setup();
    const batch = Array.from({ length: 1001 }, () => wireReceipt());
    const response = await post(batch);
    expect(response.status).toBe(413);
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("writes nothing of a batch when the database fails midway", async () => {
    const { store, post } = await setup();
    // A trigger that fails the third insert stands in for a disk error.
    store.sqlite.exec(`CREATE TRIGGER fail_third BEFORE INSERT ON jobs
      WHEN (SELECT count(*) FROM jobs) >= 2 BEGIN SELECT RAISE(ABORT, 'disk full'); END`);
    const response = await post([wireReceipt(), wireReceipt(), wireReceipt()]);
    expect(response.status).toBe(500);
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  // A body declared Latin-1 was read as UTF-8 anyway: its bytes C3 A9 (`Ã©` to its sender)
  // were recorded as `é`, a tag or model other than the one sent.
  it("answers 415 naming content-type to a body in a charset other than UTF-8, and writes nothing", async () => {
    const { store, postRaw } = await setup();
    const body = new TextEncoder().encode(JSON.stringify(wireReceipt({ tags: { team: "Ã©" } })));
    for (const type of [
      "application/json; charset=iso-8859-1",
      'application/json;charset="latin1"',
    ]) {
      const response = await postRaw(body, type);
      expect(response.status, type).toBe(415);
      const error = ((await response.json()) as { error: Record<string, unknown> }).error;
      expect(error, type).toMatchObject({ code: "unsupported_media_type", field: "content-type" });
    }
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
    const utf8 = await postRaw(body, "application/json; charset=UTF-8");
    expect(utf8.status).toBe(201);
  });
});

// `[]` answered 200 with every count 0, where `import` of a file holding no receipt exits 2: a
// backend whose batching lost its receipts (a filter, a serializer) was told all was recorded.
describe("POST /jobs with an empty array", () => {
  it("is a 400 naming the body, as import refuses a file holding no receipt", async () => {
    const { store, post } = await setup();
    for (const body of ["[]", " [ ] "]) {
      const response = await post(body);
      expect(response.status, body).toBe(400);
      const error = ((await response.json()) as { error: Record<string, unknown> }).error;
      expect(error, body).toMatchObject({ code: "bad_request", field: "body" });
      expect(String(error.message)).toContain("no receipt");
    }
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
    expect((await post([wireReceipt()])).status).toBe(200);
  });
});
