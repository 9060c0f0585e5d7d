import { randomBytes, randomInt } from "node:crypto";
import bs58 from "bs58";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { base58ByteLength, maxBase58Length } from "../src/chain/base58.js";
import { jobs, receiptConflicts } from "../src/db/schema.js";
import { printable } from "../src/printable-text.js";
import { parseJsonNotingDuplicates } from "../src/recorder/json-duplicate-members.js";
import { keyFingerprint } from "../src/recorder/key-fingerprint.js";
import { parseReceiptInput } from "../src/recorder/receipt-input.js";
import {
  maxStoredConflicts,
  type Receipt,
  recordReceipt,
  recordReceipts,
} from "../src/recorder/receipts.js";
import { address, jobId, receipt, signature, wireReceipt } from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

describe("recordReceipt", async () => {
  it("creates a row with the verifier's defaults and credits in base units", async () => {
    const store = createTestStore();
    const r = receipt({ tags: { team: "search" }, createdAt: 1_700_000_000_000 });
    expect(await recordReceipt(store, r, "ingest")).toEqual({ outcome: "created" });
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, r.jobId)).get();
    expect(row).toMatchObject({
      source: "ingest",
      escrowTx: r.escrowTx,
      settlementTx: r.settlementTx,
      creditsRemainingUnits: 12_345_000n,
      tags: { team: "search" },
      verdict: "pending",
      nextVerifyAt: 0,
      captureState: "complete",
      // Nobody asked the jobs API about an ingested job: the backfill will.
      backfillState: "pending",
      createdAt: 1_700_000_000_000,
    });
  });

  it("reports the same receipt again as a duplicate and changes nothing", async () => {
    const store = createTestStore();
    const r = receipt();
    await recordReceipt(store, r, "ingest", { now: 1 });
    expect(await recordReceipt(store, { ...r }, "import", { now: 2 })).toEqual({
      outcome: "duplicate",
    });
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, r.jobId)).get();
    expect(row?.source).toBe("ingest");
    expect(row?.updatedAt).toBe(1);
  });

  it("keeps a receipt that disagrees as a conflict and leaves the recorded one alone", async () => {
    const store = createTestStore();
    const r = receipt();
    await recordReceipt(store, r, "ingest");
    const forged = { ...r, worker: address(), creditsRemainingUnits: 1n };
    expect(await recordReceipt(store, forged, "ingest")).toEqual({
      outcome: "conflict",
      differences: ["worker", "credits_remaining_units"],
    });
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, r.jobId)).get();
    expect(row?.worker).toBe(r.worker);
    const conflicts = store.db.select().from(receiptConflicts).all();
    expect(conflicts).toHaveLength(1);
    expect(conflicts[0]).toMatchObject({
      jobId: r.jobId,
      source: "ingest",
      differences: ["worker", "credits_remaining_units"],
      receipt: { worker: forged.worker, credits_remaining_units: "1" },
    });
  });

  it("fills a missing settlement signature from the same source as an update; the jobs API is still asked", async () => {
    const store = createTestStore();
    const r = receipt({ settlementTx: null });
    await recordReceipt(store, r, "ingest");
    let row = store.db.select().from(jobs).where(eq(jobs.jobId, r.jobId)).get();
    expect(row?.backfillState).toBe("pending");
    const settlement = signature();
    expect(await recordReceipt(store, { ...r, settlementTx: settlement }, "ingest")).toEqual({
      outcome: "updated",
    });
    row = store.db.select().from(jobs).where(eq(jobs.jobId, r.jobId)).get();
    expect(row?.settlementTx).toBe(settlement);
    // Only the jobs API can name a second settlement of an ingested job: it is still asked.
    expect(row?.backfillState).toBe("pending");
    // The less complete receipt again adds nothing: a duplicate.
    expect((await recordReceipt(store, r, "ingest")).outcome).toBe("duplicate");
  });

  it("stores the same conflicting receipt once while below the cap", async () => {
    const store = createTestStore();
    const r = receipt();
    await recordReceipt(store, r, "proxy");
    const forged = { ...r, worker: address() };
    await recordReceipt(store, forged, "ingest");
    expect((await recordReceipt(store, forged, "ingest")).outcome).toBe("conflict");
    expect(store.db.select().from(receiptConflicts).all()).toHaveLength(1);
  });

  it("never lets another source fill in what the proxy recorded: that is a conflict", async () => {
    const store = createTestStore();
    const proxied = receipt({ promptTokens: null, completionTokens: null, totalTokens: null });
    await recordReceipt(store, proxied, "proxy");
    const filler = { ...proxied, promptTokens: 1, completionTokens: 2, totalTokens: 3 };
    expect(await recordReceipt(store, filler, "ingest")).toEqual({
      outcome: "conflict",
      differences: ["prompt_tokens", "completion_tokens", "total_tokens"],
    });
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, proxied.jobId)).get();
    expect(row).toMatchObject({ source: "proxy", totalTokens: null, verdict: "pending" });
    // A copy that only knows less contradicts nothing: a duplicate, not a conflict listing no
    // difference.
    expect((await recordReceipt(store, { ...proxied, worker: null }, "ingest")).outcome).toBe(
      "duplicate",
    );
    // The very same receipt is a duplicate, whoever sends it.
    expect((await recordReceipt(store, proxied, "ingest")).outcome).toBe("duplicate");
  });

  it("keeps at most ten conflicts per job, the last one summarizing the rest", async () => {
    const store = createTestStore();
    const r = receipt();
    await recordReceipt(store, r, "proxy");
    for (let i = 0; i < 200; i++) {
      expect((await recordReceipt(store, { ...r, worker: address() }, "ingest")).outcome).toBe(
        "conflict",
      );
    }
    // Beyond the cap every conflicting post is counted, repeated ones included.
    const again = { ...r, creditsRemainingUnits: 1n };
    await recordReceipt(store, again, "ingest");
    await recordReceipt(store, again, "ingest");
    const conflicts = store.db.select().from(receiptConflicts).all();
    expect(conflicts).toHaveLength(maxStoredConflicts);
    expect(conflicts.at(-1)).toMatchObject({
      receipt: {
        summary: true,
        more_conflicts: 202 - (maxStoredConflicts - 1),
        latest: { credits_remaining_units: "1" },
      },
      differences: ["worker", "credits_remaining_units"],
    });
  });

  it("lets the proxy complete the row it opened, and only that row", async () => {
    const store = createTestStore();
    const open = receipt({
      settlementTx: null,
      promptTokens: null,
      completionTokens: null,
      totalTokens: null,
      captureState: "open",
    });
    await recordReceipt(store, open, "proxy");
    const done = {
      ...open,
      promptTokens: 5,
      completionTokens: 7,
      totalTokens: 12,
      latencyMs: 40,
      captureState: "complete" as const,
    };
    expect((await recordReceipt(store, done, "proxy")).outcome).toBe("updated");
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, open.jobId)).get();
    expect(row).toMatchObject({ captureState: "complete", totalTokens: 12, latencyMs: 40 });
    expect((await recordReceipt(store, { ...done, totalTokens: 99 }, "proxy")).outcome).toBe(
      "conflict",
    );
  });

  it("records a batch in order, so a job repeated inside it is a duplicate of its first item", async () => {
    const store = createTestStore();
    const a = receipt();
    const b = receipt();
    const results = await recordReceipts(
      store,
      [a, b, a, { ...b, escrowTx: signature() }],
      "import",
    );
    expect(results.map((r) => r.outcome)).toEqual(["created", "created", "duplicate", "conflict"]);
  });

  it("fails a batch with a receipt the jobs table refuses, instead of skipping that receipt", async () => {
    const store = createTestStore();
    const good = receipt();
    // A missing job id cannot come through the input parser; the store must still not drop it.
    const broken = { ...receipt(), jobId: null } as unknown as Receipt;
    await expect(recordReceipts(store, [good, broken], "import")).rejects.toThrow(/constraint/);
    expect(store.db.select().from(jobs).all()).toEqual([]);
  });
});

describe("parseReceiptInput", () => {
  it("accepts a receipt with its fields read", () => {
    const wire = wireReceipt({
      created_at: "2026-11-25T10:00:00Z",
      tags: { Team: "x" },
    });
    const parsed = parseReceiptInput(wire);
    expect(parsed).toEqual({
      ok: true,
      receipt: expect.objectContaining({
        jobId: wire.job_id,
        creditsRemainingUnits: 12_345_000n,
        totalTokens: 92,
        createdAt: Date.UTC(2026, 10, 25, 10),
        // The caller's clock says when the response came: a credits header's span ends there.
        respondedAt: Date.UTC(2026, 10, 25, 10),
        tags: { team: "x" },
      }),
    });
  });

  it("says what a created_at out of range most likely meant: milliseconds, or a date without dashes", () => {
    const reason = (createdAt: unknown) => {
      const parsed = parseReceiptInput(wireReceipt({ created_at: createdAt }));
      return parsed.ok ? null : { field: parsed.field, reason: parsed.reason };
    };
    for (const ms of [1_796_565_000_000, "1796565000000"]) {
      expect(reason(ms)).toEqual({
        field: "created_at",
        reason: expect.stringContaining("this reads as epoch milliseconds"),
      });
    }
    expect(reason("20261206")?.reason).toContain("write it 2026-12-06T00:00:00Z");
    expect(reason(0)?.reason).toBe("must be a date between 2020 and 2100");
    expect(parseReceiptInput(wireReceipt({ job_id: `job_${"a".repeat(121)}` }))).toMatchObject({
      ok: false,
      field: "job_id",
      reason: "must be job_ followed by 1 to 120 lowercase letters and digits",
    });
  });

  it("never keeps a Decentral key in a tag or a model: cut from the text, refused as a tag's name", () => {
    const key = "dcntrl_live_6RzjgrimFdGEg9neBuwMKMzTyrcOgRpo";
    const parsed = parseReceiptInput(
      wireReceipt({
        model: key,
        response_model: `on behalf of ${key}`,
        tags: { apikey: key, Note: `used ${key.toLowerCase()} today` },
      }),
    );
    expect(parsed).toMatchObject({
      ok: true,
      receipt: {
        model: "[redacted]",
        responseModel: "on behalf of [redacted]",
        tags: { apikey: "[redacted]", note: "used [redacted] today" },
      },
    });
    const named = parseReceiptInput(wireReceipt({ tags: { [key]: "1" } }));
    expect(named).toMatchObject({ ok: false, field: "tags" });
    // The refusal goes back to the caller and into request logs: it does not repeat the key.
    expect(JSON.stringify(named).toLowerCase()).not.toContain(key.toLowerCase().slice(0, 16));
  });

  it("reads the request's method upper-cased and its path, and refuses either when it is none", () => {
    expect(parseReceiptInput(wireReceipt({ request_method: "get" }))).toMatchObject({
      ok: true,
      receipt: { requestMethod: "GET" },
    });
    expect(parseReceiptInput(wireReceipt({}))).toMatchObject({
      ok: true,
      receipt: { requestMethod: null },
    });
    for (const bad of ["GET /v1/models", "", 1, "P0ST"]) {
      expect(parseReceiptInput(wireReceipt({ request_method: bad })), String(bad)).toMatchObject({
        ok: false,
        field: "request_method",
      });
    }
    expect(parseReceiptInput(wireReceipt({ request_path: "/v1/webhooks" }))).toMatchObject({
      ok: true,
      receipt: { requestPath: "/v1/webhooks" },
    });
    for (const bad of ["v1/models", "/v1/models?api_key=x", "/v1/a b", `/${"x".repeat(200)}`, 7]) {
      expect(parseReceiptInput(wireReceipt({ request_path: bad })), String(bad)).toMatchObject({
        ok: false,
        field: "request_path",
      });
    }
  });

  it("keeps every signature an operator's settlement value names, junk or empty parts beside them", () => {
    // Three header lines, the last junk or empty: the second settlement must not be lost.
    const [s1, s2] = [signature(), signature()];
    for (const value of [`${s1}, ${s2}, junk`, `${s1}, ${s2}, `, `${s1}, ${s2};`, `${s1},,${s2}`]) {
      expect(parseReceiptInput(wireReceipt({ settlement_tx: value })), value).toMatchObject({
        ok: true,
        receipt: { settlementTx: s1, otherSignatures: { settlementTx: [s2] } },
      });
    }
    // Filler ahead of a second settlement: the tenth is kept, as the store's overflow mark.
    const ten = Array.from({ length: 10 }, () => signature());
    expect(parseReceiptInput(wireReceipt({ settlement_tx: ten.join(", ") }))).toMatchObject({
      ok: true,
      receipt: { settlementTx: ten[0], otherSignatures: { settlementTx: ten.slice(1) } },
    });
    // The caller's own escrow signature stays strict: junk in it is refused by name.
    expect(parseReceiptInput(wireReceipt({ escrow_tx: `${s1}, junk` }))).toMatchObject({
      ok: false,
      field: "escrow_tx",
    });
  });

  it.each([
    ["model", { model: "qwen3-8b\u0085" }],
    ["model", { model: "qwen3-8b\u202egpj" }],
    ["model", { model: "qwen3-8b\u2066x" }],
    ["requested_model", { requested_model: "qwen3-8b\u009b2J" }],
  ])("refuses caller text with a C1 control or bidi override, naming %s", (field, fields) => {
    expect(parseReceiptInput(wireReceipt(fields))).toMatchObject({ ok: false, field });
  });

  // Stored before the rule (or a tag, which is kept as written), a look-alike shows its
  // invisible character as an escape wherever it is printed.
  it("prints invisible characters as escapes", () => {
    expect(printable("qwen3-8b\u200b")).toBe("qwen3-8b\\u200b");
    expect(printable("\ufeffa\u00a0b\u00adc")).toBe("\\ufeffa\\u00a0b\\u00adc");
    expect(printable("x\u{e0041}")).toBe("x\\u{e0041}");
    expect(printable("qwen3 8b")).toBe("qwen3 8b");
  });

  it("keeps a tag whatever characters its value holds: a label never costs a job its receipt", () => {
    const tags = { team: "search\u001b[2J", note: "a\tb", user: "\u202bمحمد\u202c" };
    expect(parseReceiptInput(wireReceipt({ tags }))).toMatchObject({ ok: true });
  });

  it.each([
    // Ignored, an error answer's status was lost and its settlement could not fail.
    ["httpStatus", { httpStatus: 500 }, "did you mean http_status?"],
    ["keyFingerprint", { keyFingerprint: "00000000000000a1" }, "did you mean key_fingerprint?"],
    ["maxTokens", { maxTokens: 100 }, "did you mean max_tokens?"],
    ["createdAt", { createdAt: "2026-01-01T00:00:00Z" }, "did you mean created_at?"],
    ["HTTP_STATUS", { HTTP_STATUS: 500 }, "did you mean http_status?"],
    ["requested_modle", { requested_modle: "qwen3-8b" }, "did you mean requested_model?"],
    ["created", { created: 1_764_000_000 }, "did you mean created_at?"],
    ["extra", { extra: "x" }, "a receipt takes job_id, escrow_tx"],
  ])("refuses a receipt with the unknown field %s, naming it", (field, overrides, hint) => {
    const parsed = parseReceiptInput(wireReceipt(overrides));
    expect(parsed).toMatchObject({ ok: false, field, reason: expect.stringContaining(hint) });
  });

  it("refuses a receipt field a completion would not read where it stands", () => {
    const completion = (top: Record<string, unknown>, decentral: Record<string, unknown>) =>
      parseReceiptInput({
        id: "chatcmpl-1",
        object: "chat.completion",
        choices: [],
        system_fingerprint: "fp",
        ...top,
        _decentral: { job_id: jobId(), escrow_tx: signature(), ...decentral },
      });
    // The completion's own members are its own: not checked.
    expect(completion({}, {}).ok).toBe(true);
    for (const [top, decentral, field, hint] of [
      [{}, { model: "qwen3-8b" }, "_decentral.model", "at the completion's top level"],
      [{ http_status: 500 }, {}, "http_status", "inside _decentral"],
      [{}, { jobID: "x" }, "_decentral.jobID", "did you mean job_id?"],
      [{ worker: address() }, {}, "worker", "inside _decentral"],
      [{ created_at: "2026-01-01T00:00:00Z" }, {}, "created_at", "completion's created"],
      [{ httpStatus: 500 }, {}, "httpStatus", "did you mean http_status?"],
    ] as const) {
      expect(completion(top, decentral), field).toMatchObject({
        ok: false,
        field,
        reason: expect.stringContaining(hint),
      });
    }
  });

  it("reads a chat completion carrying a _decentral member", () => {
    const inner = wireReceipt();
    const parsed = parseReceiptInput({
      id: "chatcmpl-1",
      object: "chat.completion",
      created: 1_764_000_000,
      model: "llama-3.3-70b",
      usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
      choices: [],
      _decentral: { ...inner, model: undefined, usage: undefined },
    });
    // The completion's model is the one its response named: kept to compare, never to price.
    expect(parsed.ok && parsed.receipt).toMatchObject({
      jobId: inner.job_id,
      model: null,
      responseModel: "llama-3.3-70b",
      totalTokens: 3,
      createdAt: 1_764_000_000_000,
      // The operator's `created` dates the job, and says nothing of when its answer came.
      respondedAt: null,
    });
    const asked = parseReceiptInput({
      model: "llama-3.3-70b",
      _decentral: { ...inner, model: undefined, usage: undefined, requested_model: "qwen3-8b" },
    });
    expect(asked.ok && asked.receipt).toMatchObject({
      model: "qwen3-8b",
      responseModel: "llama-3.3-70b",
    });
  });

  it.each([
    ["job_id", { job_id: "job_ABC" }],
    ["job_id", { job_id: undefined }],
    ["escrow_tx", { escrow_tx: "5VERYlong0OIl" }],
    ["escrow_tx", { escrow_tx: address() }],
    ["model", { model: "qwen3-8b\n" }],
    ["requested_model", { requested_model: "x".repeat(201) }],
    ["max_tokens", { max_tokens: 0 }],
    ["key_fingerprint", { key_fingerprint: "ABC" }],
    ["credit_vault", { credit_vault: signature() }],
    ["created_at", { created_at: "yesterday" }],
    // Dated ahead, its money would be reported in a period to come.
    ["created_at", { created_at: "2099-12-31T23:59:59Z" }],
    ["created_at", { created_at: Date.now() / 1000 + 2 * 86_400 }],
    ["tags.bad name", { tags: { "bad name": "x" } }],
  ])("rejects a bad %s, which the caller writes, and names it", (field, overrides) => {
    const parsed = parseReceiptInput(wireReceipt(overrides));
    expect(parsed.ok).toBe(false);
    expect(!parsed.ok && parsed.field).toBe(field);
  });

  it("takes created_at as epoch seconds written as digits, as an import's cell gives them", () => {
    const parsed = parseReceiptInput(wireReceipt({ created_at: "1796000000" }));
    expect(parsed.ok && parsed.receipt.createdAt).toBe(1_796_000_000_000);
  });

  it.each([
    ["settlement_tx", { settlement_tx: 42 }, { settlementTx: null }],
    ["settlement_tx", { settlement_tx: "abc" }, { settlementTx: null }],
    ["worker", { worker: signature() }, { worker: null }],
    ["worker", { worker: "worker-7" }, { worker: null }],
    ["credits_remaining", { credits_remaining: "-3" }, { creditsRemainingUnits: null }],
    ["credits_remaining", { credits_remaining: "1.23456" }, { creditsRemainingUnits: null }],
    ["credits_remaining", { credits_remaining: "1e3" }, { creditsRemainingUnits: null }],
    ["usage.completion_tokens", { usage: { completion_tokens: 30.5 } }, { completionTokens: null }],
    ["usage.prompt_tokens", { usage: { prompt_tokens: -1 } }, { promptTokens: null }],
    ["usage.total_tokens", { usage: { total_tokens: "52" } }, { totalTokens: null }],
    ["usage", { usage: [1, 2] }, { promptTokens: null }],
    [
      "response_model",
      { response_model: "qwen3-8b\u001b[2J" },
      { responseModel: "qwen3-8b\ufffd[2J" },
    ],
    [
      "response_model",
      { response_model: "q".repeat(250) },
      { responseModel: `${"q".repeat(199)}\u2026` },
    ],
    ["response_model", { response_model: "\u0000" }, { responseModel: "\ufffd" }],
  ])(
    "records a receipt whose %s, which the operator writes, is malformed, as unknown",
    (_, overrides, expected) => {
      const parsed = parseReceiptInput(wireReceipt(overrides));
      expect(parsed.ok).toBe(true);
      expect(parsed.ok && parsed.receipt).toMatchObject(expected);
    },
  );

  it("records a completion posted whole whose model or created the operator wrote oddly", () => {
    const parsed = parseReceiptInput({
      model: "qwen3-8b\n",
      created: "yesterday",
      usage: { prompt_tokens: 2, completion_tokens: 5.5 },
      _decentral: {
        job_id: "job_abc123",
        escrow_tx: signature(),
        worker: "worker-7",
        requested_model: "qwen3-8b",
      },
    });
    expect(parsed.ok && parsed.receipt).toMatchObject({
      model: "qwen3-8b",
      responseModel: "qwen3-8b\ufffd",
      createdAt: null,
      promptTokens: 2,
      completionTokens: null,
      worker: null,
    });
  });

  it("accepts a streamed job's receipt without a settlement signature", () => {
    const parsed = parseReceiptInput(wireReceipt({ settlement_tx: null }));
    expect(parsed.ok && parsed.receipt.settlementTx).toBeNull();
  });
});

describe("keyFingerprint", () => {
  it("is the first 16 hex digits of the key's SHA-256, as it has always been", () => {
    expect(keyFingerprint("Bearer sk-test-fixed-key")).toBe("9cdeaa2a370ffa4c");
    expect(keyFingerprint("bearer   sk-test-fixed-key ")).toBe("9cdeaa2a370ffa4c");
    expect(keyFingerprint("Bearer ")).toBeNull();
    expect(keyFingerprint(undefined)).toBeNull();
  });
});

describe("base58ByteLength", () => {
  it("agrees with bs58 on the decoded length of valid and corrupted strings", () => {
    const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0OIl+";
    for (let i = 0; i < 3000; i++) {
      // Past 128 bytes the scratch limbs grow.
      const bytes = randomBytes(randomInt(0, i % 10 === 0 ? 200 : 70));
      // Leading zero bytes are where base58 is subtle: they become leading "1"s.
      bytes.fill(0, 0, Math.min(bytes.length, randomInt(0, 4)));
      let text = bs58.encode(bytes);
      if (i % 3 === 0 && text.length > 0) {
        const at = randomInt(0, text.length);
        text = text.slice(0, at) + alphabet[randomInt(0, alphabet.length)] + text.slice(at + 1);
      }
      const decoded = bs58.decodeUnsafe(text);
      expect(base58ByteLength(text), text).toBe(decoded === undefined ? null : decoded.length);
    }
  });

  it("refuses a text longer than any field holds (its full decode is quadratic)", () => {
    const long = `5SZLBBoLH${"1".repeat(maxBase58Length)}`;
    expect(base58ByteLength(long)).toBeNull();
    expect(base58ByteLength(long.slice(0, maxBase58Length))).toBeGreaterThan(7000);
  });

  it("is exact beside every power of 256, where the length changes", () => {
    for (let k = 1; k <= 70; k++) {
      const below = Buffer.alloc(k, 0xff); // 256^k - 1: k bytes
      const at = Buffer.concat([Buffer.from([1]), Buffer.alloc(k)]); // 256^k: k + 1 bytes
      const after = Buffer.from(at).fill(1, k); // 256^k + 1
      for (const bytes of [below, at, after, Buffer.concat([Buffer.alloc(2), below])]) {
        const text = bs58.encode(bytes);
        expect(base58ByteLength(text), text).toBe(bytes.length);
      }
    }
  });
});

describe("the caller's fields of a completion carrying _decentral", () => {
  // The operator writes the completion, and an SDK's `model_dump()` keeps every member it added:
  // only `_decentral`, which the integration builds and sets whole, is the caller's.
  const caller = {
    requested_model: "qwen3-8b",
    max_tokens: 300,
    n: 2,
    key_fingerprint: "0123456789abcdef",
    credit_vault: address(),
    http_status: 502,
  };
  const answer = (top: Record<string, unknown>, inside: Record<string, unknown>) =>
    parseReceiptInput({
      id: "chatcmpl-1",
      object: "chat.completion",
      model: "qwen3-8b",
      choices: [],
      usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
      ...top,
      _decentral: { job_id: jobId(), escrow_tx: signature(), ...inside },
    });
  const read = {
    model: "qwen3-8b",
    maxTokens: 300,
    choices: 2,
    keyFingerprint: "0123456789abcdef",
    creditVault: caller.credit_vault,
    httpStatus: 502,
  };

  it("reads them inside _decentral", () => {
    const parsed = answer({}, caller);
    expect(parsed.ok && parsed.receipt).toMatchObject(read);
  });

  it("leaves the operator's members of the same names at the top level unread", () => {
    // The operator's answer names a dearer model, a looser ceiling, another key and a 200.
    const added = {
      requested_model: "llama-3.3-70b",
      max_tokens: 100_000,
      n: 128,
      key_fingerprint: "fedcba9876543210",
      credit_vault: address(),
      http_status: 200,
    };
    const parsed = answer(added, caller);
    expect(parsed.ok && parsed.receipt).toMatchObject(read);
    // Named twice with different values there, still the operator's: not refused.
    const twice = `{"requested_model":"a","requested_model":"b","_decentral":${JSON.stringify({
      job_id: jobId(),
      escrow_tx: signature(),
      requested_model: "qwen3-8b",
    })}}`;
    const parsedTwice = parseReceiptInput(parseJsonNotingDuplicates(twice));
    expect(parsedTwice.ok && parsedTwice.receipt.model).toBe("qwen3-8b");
  });

  it("refuses one at the top level when _decentral names none: it may be the operator's", () => {
    // An integration that sets none would take the operator's: priced at the model it named.
    for (const [name, value] of Object.entries(caller)) {
      expect(answer({ [name]: value }, {}), name).toMatchObject({
        ok: false,
        field: name,
        reason: expect.stringContaining("inside _decentral"),
      });
    }
    // Null is no value: an answer's `"n": null` refuses nothing.
    expect(answer({ n: null }, {}).ok).toBe(true);
  });

  it("names a bad one by its place inside _decentral", () => {
    expect(answer({}, { max_tokens: 0 })).toMatchObject({
      ok: false,
      field: "_decentral.max_tokens",
    });
    expect(answer({}, { requested_model: "qwen3-8b\n" })).toMatchObject({
      ok: false,
      field: "_decentral.requested_model",
    });
  });
});

describe("the top level of a completion whose _decentral names the caller's fields", () => {
  it("is the operator's answer: no member the operator adds there refuses the receipt", () => {
    const inside = {
      job_id: jobId(),
      escrow_tx: signature(),
      worker: address(),
      requested_model: "qwen3-8b",
    };
    // Members a receipt reads elsewhere, in another spelling, or twice with different values:
    // an integration's mistakes where `_decentral` names none, the operator's answer here.
    const added = `{"worker":"${address()}","worker":"x","job_id":"job_other","created_at":"soon","httpStatus":200,"maxTokens":9,"model":"qwen3-8b","choices":[],"_decentral":${JSON.stringify(inside)}}`;
    const parsed = parseReceiptInput(parseJsonNotingDuplicates(added));
    expect(parsed.ok && parsed.receipt).toMatchObject({
      jobId: inside.job_id,
      worker: inside.worker,
      model: "qwen3-8b",
      httpStatus: null,
      maxTokens: null,
    });
    // Where `_decentral` names none, they are still refused by name, as an integration's.
    const { requested_model: _, ...headers } = inside;
    expect(parseReceiptInput({ httpStatus: 200, choices: [], _decentral: headers })).toMatchObject({
      ok: false,
      field: "httpStatus",
    });
  });

  it("reads the tags inside _decentral then: the operator's, or ill-formed ones, refuse nothing", () => {
    const inside = { job_id: jobId(), escrow_tx: signature(), key_fingerprint: "0123456789abcdef" };
    const added = { "bad name": "x", team: "billing" };
    const parsed = parseReceiptInput({
      choices: [],
      tags: added,
      _decentral: { ...inside, tags: { team: "search" } },
    });
    expect(parsed.ok && parsed.receipt.tags).toEqual({ team: "search" });
    const none = parseReceiptInput({ choices: [], tags: added, _decentral: inside });
    expect(none.ok && none.receipt.tags).toEqual({});
    // Where `_decentral` names no caller field, the top level's are still read, as before.
    const { key_fingerprint: _, ...headers } = inside;
    const legacy = parseReceiptInput({ choices: [], tags: { team: "x" }, _decentral: headers });
    expect(legacy.ok && legacy.receipt.tags).toEqual({ team: "x" });
  });
});

// An integration that builds `_decentral` whole writes `None` for a caller field it has no
// value of (Python's json.dumps gives null). Read as naming none, the top level was taken as
// the caller's: the operator's answer adding `http_status` refused the receipt (a job charged
// and never recorded), and its `tags` were recorded as the caller's.
describe("a caller field written as null inside _decentral", () => {
  it("says the caller's fields are there: the top level stays the operator's, the value absent", () => {
    const inside = {
      job_id: jobId(),
      escrow_tx: signature(),
      http_status: null,
      key_fingerprint: null,
    };
    const answer = {
      model: "qwen3-8b",
      http_status: 200,
      max_tokens: 1,
      tags: { team: "operator" },
      _decentral: inside,
    };
    const parsed = parseReceiptInput(answer);
    expect(parsed).toMatchObject({ ok: true });
    expect(parsed.ok && parsed.receipt).toMatchObject({
      jobId: inside.job_id,
      httpStatus: null,
      keyFingerprint: null,
      maxTokens: null,
      tags: {},
    });
    // Null at the top level, where `_decentral` names none, is no field there either.
    const { http_status: _h, key_fingerprint: _k, ...headers } = inside;
    expect(parseReceiptInput({ http_status: null, _decentral: headers })).toMatchObject({
      ok: true,
    });
  });
});
