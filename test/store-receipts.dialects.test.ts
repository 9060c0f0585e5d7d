import { afterEach, describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { ingestReceiptsVia } from "../src/recorder/ingest.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { recordReceiptsPg } from "../src/store/pg/receipts.js";
import { maxConflictSignatures } from "../src/store/receipt-rules.js";
import {
  createReceiptsStore,
  maxStoredConflicts,
  type Receipt,
  type RecordResult,
  recordReceiptsUnit,
} from "../src/store/receipts.js";
import { pairKey } from "../src/store/signature-pairs.js";
import { createSignatureStore, type SignatureStore } from "../src/store/signatures.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import {
  address,
  capturedLogger,
  receipt,
  signature,
  wireReceipt,
} from "./support/recorder-fixtures.js";
import { seedSignatures } from "./support/seed-queue.js";
import { isSqlNull, jobIds, readConflicts, readJob, updateJob } from "./support/seed-recorder.js";

const outcomes = (results: RecordResult[]) => results.map((r) => r.outcome);

describe.each(dialects)("receipts store on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  async function record(
    store: Store,
    r: Receipt | Receipt[],
    source: "proxy" | "ingest" | "import",
    options: { now?: number; backfillDelayMs?: number } = {},
  ) {
    return createReceiptsStore(store).record(Array.isArray(r) ? r : [r], source, options);
  }

  it("creates a row with the verifier's defaults, credits in base units and the receipt's hash", async () => {
    const store = await stores.open();
    const r = receipt({ tags: { team: "search" }, createdAt: 1_700_000_000_000 });
    expect(await record(store, r, "ingest", { now: 5 })).toEqual([{ outcome: "created" }]);
    expect(await readJob(store, r.jobId)).toMatchObject({
      source: "ingest",
      escrowTx: r.escrowTx,
      settlementTx: r.settlementTx,
      creditsRemainingUnits: 12_345_000n,
      tags: { team: "search" },
      verdict: "pending",
      nextVerifyAt: 0,
      captureState: "complete",
      // The proxy did not ask the jobs API about it: the backfill does, at once.
      backfillState: "pending",
      backfillNextAt: 5,
      createdAt: 1_700_000_000_000,
      recordedAt: 5,
      receiptHash: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
  });

  it("keeps an ingested job's jobs API question pending when a later receipt fills it in", async () => {
    const store = await stores.open();
    const r = receipt({ worker: null });
    await record(store, r, "ingest", { now: 5 });
    expect(await record(store, receipt({ ...r, worker: receipt().worker }), "ingest")).toEqual([
      { outcome: "updated" },
    ]);
    expect((await readJob(store, r.jobId))?.backfillState).toBe("pending");
  });

  it("leaves the jobs API question of a proxied job with its settlement to the proxy", async () => {
    const store = await stores.open();
    const r = receipt();
    await record(store, r, "proxy", { now: 5 });
    expect(await readJob(store, r.jobId)).toMatchObject({
      backfillState: null,
      backfillNextAt: null,
    });
    const stream = receipt({ settlementTx: null });
    await record(store, stream, "proxy", { now: 5, backfillDelayMs: 100 });
    expect(await readJob(store, stream.jobId)).toMatchObject({
      backfillState: "pending",
      backfillNextAt: 105,
    });
  });

  it("keeps what a receipt does not say unknown (NULL), not false or zero", async () => {
    const store = await stores.open();
    const r = receipt();
    await record(store, r, "ingest");
    const row = await readJob(store, r.jobId);
    expect(row).toMatchObject({ stream: null, maxTokens: null, httpStatus: null });
    expect(await isSqlNull(store, r.jobId, "stream")).toBe(true);
    const streamed = receipt({ stream: false });
    await record(store, streamed, "ingest");
    expect((await readJob(store, streamed.jobId))?.stream).toBe(false);
  });

  it("stores the hash a fixed receipt has always had, and its filled form's", async () => {
    const store = await stores.open();
    const fixed: Receipt = {
      jobId: "job_fixed0001",
      escrowTx:
        "5VERv8NMvzbJMEkV8xnrLkEaWRtSz9CosKDYjCJjBRnbJLgp8uirBgmQpjKhoR4tjF3ZpRzrFmBV6UjKdiSZkQUW",
      settlementTx: null,
      worker: "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV",
      creditsRemainingUnits: 12_345_000n,
      model: "qwen3-8b",
      promptTokens: 0,
      completionTokens: null,
      totalTokens: 1234,
    };
    await record(store, fixed, "ingest");
    expect((await readJob(store, fixed.jobId))?.receiptHash).toBe(
      "8bffba4c5b14d13b6b012f385ab8dcfb0d171d7c06527d6337231ac9c29161ab",
    );
    const settlementTx = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T";
    expect(await record(store, { ...fixed, settlementTx }, "ingest")).toEqual([
      { outcome: "updated" },
    ]);
    expect((await readJob(store, fixed.jobId))?.receiptHash).toBe(
      "75520d8307d4c19864bde5ee848aeefcf8574090c49d7df6fb22744f0e06c23d",
    );
  });

  it("gives a receipt without a settlement signature to the backfill after its delay", async () => {
    const store = await stores.open();
    const r = receipt({ settlementTx: null });
    await record(store, r, "proxy", { now: 1000, backfillDelayMs: 250 });
    expect(await readJob(store, r.jobId)).toMatchObject({
      backfillState: "pending",
      backfillNextAt: 1250,
      createdAt: 1000,
    });
  });

  it("reports the same receipt again as a duplicate, whoever sends it, and changes nothing", async () => {
    const store = await stores.open();
    const r = receipt();
    await record(store, r, "ingest", { now: 1 });
    const first = await readJob(store, r.jobId);
    expect(await record(store, { ...r }, "import", { now: 2 })).toEqual([{ outcome: "duplicate" }]);
    expect(await readJob(store, r.jobId)).toEqual(first);
  });

  it("keeps a receipt that disagrees as a conflict and leaves the recorded one alone", async () => {
    const store = await stores.open();
    const r = receipt();
    await record(store, r, "ingest");
    const forged = { ...r, worker: address(), creditsRemainingUnits: 1n };
    expect(await record(store, forged, "ingest", { now: 7 })).toEqual([
      { outcome: "conflict", differences: ["worker", "credits_remaining_units"] },
    ]);
    expect((await readJob(store, r.jobId))?.worker).toBe(r.worker);
    const conflicts = await readConflicts(store);
    expect(conflicts).toHaveLength(1);
    expect(conflicts[0]).toMatchObject({
      jobId: r.jobId,
      source: "ingest",
      differences: ["worker", "credits_remaining_units"],
      receipt: { worker: forged.worker, credits_remaining_units: "1", tags: {} },
      receivedAt: 7,
    });
    // The same conflicting receipt again is not stored twice.
    expect(outcomes(await record(store, forged, "ingest"))).toEqual(["conflict"]);
    expect(await readConflicts(store)).toHaveLength(1);
  });

  it("fills a missing settlement signature from the same source and reopens the job; the jobs API is still asked", async () => {
    const store = await stores.open();
    const r = receipt({ settlementTx: null, tags: { a: "1" } });
    await record(store, r, "ingest", { now: 10 });
    // The verifier had settled it as unverifiable for want of a settlement.
    await updateJob(store, r.jobId, {
      verdict: "unverifiable",
      nextVerifyAt: 9_999_999,
      verifyAttempts: 3,
    });
    const before = await readJob(store, r.jobId);
    const settlement = signature();
    expect(
      await record(store, { ...r, settlementTx: settlement, tags: { b: "2" } }, "ingest", {
        now: 20,
      }),
    ).toEqual([{ outcome: "updated" }]);
    const row = await readJob(store, r.jobId);
    expect(row).toMatchObject({
      settlementTx: settlement,
      backfillState: "pending",
      tags: { a: "1", b: "2" },
      verdict: "pending",
      nextVerifyAt: 20,
      verifyAttempts: 0,
      updatedAt: 20,
    });
    expect(row?.receiptHash).not.toBe(before?.receiptHash);
    // The less complete receipt again adds nothing: a duplicate.
    expect(outcomes(await record(store, r, "ingest"))).toEqual(["duplicate"]);
  });

  it("fills a key fingerprint, ceiling and vault a first receipt of the same source lacked, and judges the job again", async () => {
    const store = await stores.open();
    // Posted first without what ties it to the customer: at best partially verified.
    const r = receipt();
    await record(store, r, "ingest", { now: 10 });
    await updateJob(store, r.jobId, { verdict: "partially_verified", nextVerifyAt: 9_999_999 });
    const vault = address();
    const fuller = { ...r, keyFingerprint: "0123456789abcdef", maxTokens: 300, creditVault: vault };
    expect(await record(store, fuller, "ingest", { now: 20 })).toEqual([{ outcome: "updated" }]);
    expect(await readJob(store, r.jobId)).toMatchObject({
      keyFingerprint: "0123456789abcdef",
      maxTokens: 300,
      creditVault: vault,
      verdict: "pending",
      nextVerifyAt: 20,
    });
    // The fuller receipt again (the wrapper's retry) is a duplicate, and so is the first.
    expect(outcomes(await record(store, fuller, "ingest"))).toEqual(["duplicate"]);
    expect(outcomes(await record(store, r, "ingest"))).toEqual(["duplicate"]);
    // With a settlement signature filled in the same receipt, both are taken.
    const stream = receipt({ settlementTx: null });
    await record(store, stream, "import");
    const settled = { ...stream, settlementTx: signature(), keyFingerprint: "fedcba9876543210" };
    expect(outcomes(await record(store, settled, "import"))).toEqual(["updated"]);
    expect(await readJob(store, stream.jobId)).toMatchObject({
      settlementTx: settled.settlementTx,
      keyFingerprint: "fedcba9876543210",
    });
    // Another source never fills them in: the same receipt from it stays a duplicate.
    const other = receipt();
    await record(store, other, "ingest");
    expect(
      outcomes(await record(store, { ...other, keyFingerprint: "0123456789abcdef" }, "import")),
    ).toEqual(["duplicate"]);
    expect((await readJob(store, other.jobId))?.keyFingerprint).toBeNull();
  });

  it("keeps a contradicting key fingerprint, ceiling, vault or time of the same source as a conflict; the first stays", async () => {
    const store = await stores.open();
    const vault = address();
    const r = receipt({
      keyFingerprint: "0123456789abcdef",
      maxTokens: 300,
      creditVault: vault,
      createdAt: 1_700_000_000_000,
    });
    await record(store, r, "ingest", { now: 10 });
    await updateJob(store, r.jobId, { verdict: "verified", nextVerifyAt: 9_999_999 });
    const before = await readJob(store, r.jobId);
    const otherVault = address();
    for (const [change, column] of [
      [{ keyFingerprint: "fedcba9876543210" }, "key_fingerprint"],
      [{ maxTokens: 5 }, "max_tokens"],
      [{ creditVault: otherVault }, "credit_vault"],
      [{ createdAt: 1_600_000_000_000 }, "created_at"],
    ] as const) {
      expect(await record(store, { ...r, ...change }, "ingest", { now: 20 })).toEqual([
        { outcome: "conflict", differences: [column] },
      ]);
    }
    // With a receipt field too, every difference is named.
    expect(
      await record(
        store,
        { ...r, worker: address(), keyFingerprint: "fedcba9876543210" },
        "ingest",
      ),
    ).toEqual([{ outcome: "conflict", differences: ["worker", "key_fingerprint"] }]);
    expect(await readJob(store, r.jobId)).toEqual(before);
    const conflicts = await readConflicts(store);
    expect(conflicts.map((c) => c.differences)).toEqual([
      ["key_fingerprint"],
      ["max_tokens"],
      ["credit_vault"],
      ["created_at"],
      ["worker", "key_fingerprint"],
    ]);
    expect(conflicts[0]?.receipt).toMatchObject({ key_fingerprint: "fedcba9876543210" });
    expect(conflicts[2]?.receipt).toMatchObject({ credit_vault: otherVault });
    // A first receipt without a time was dated at its recording: a stated one is a conflict.
    const undated = receipt();
    await record(store, undated, "ingest", { now: 10 });
    expect(
      await record(store, { ...undated, createdAt: 1_700_000_000_000 }, "ingest", { now: 20 }),
    ).toEqual([{ outcome: "conflict", differences: ["created_at"] }]);
    expect((await readJob(store, undated.jobId))?.createdAt).toBe(10);
  });

  it("takes the proxy's own copy dated by a later write attempt as the same receipt", async () => {
    // The proxy stamps a receipt at the write that commits; a write tried again after a commit
    // whose answer was lost carries a later time.
    const store = await stores.open();
    const r = receipt({ createdAt: 1_700_000_000_000 });
    await record(store, r, "proxy", { now: 10 });
    expect(
      await record(store, { ...r, createdAt: 1_700_000_000_040 }, "proxy", { now: 20 }),
    ).toEqual([{ outcome: "duplicate" }]);
    expect(await readConflicts(store)).toEqual([]);
    expect((await readJob(store, r.jobId))?.createdAt).toBe(1_700_000_000_000);
  });

  it("adds the new tag names of a later receipt of the same source and keeps a known tag's first value", async () => {
    const store = await stores.open();
    const r = receipt({ tags: { team: "search" } });
    await record(store, r, "ingest", { now: 10 });
    await updateJob(store, r.jobId, { verdict: "verified", nextVerifyAt: 9_999_999 });
    const relabelled = { ...r, tags: { team: "ads", env: "prod" } };
    expect(outcomes(await record(store, relabelled, "ingest", { now: 20 }))).toEqual(["updated"]);
    // A label changes no check: the job is not judged again.
    expect(await readJob(store, r.jobId)).toMatchObject({
      tags: { team: "search", env: "prod" },
      verdict: "verified",
      nextVerifyAt: 9_999_999,
    });
    expect(outcomes(await record(store, relabelled, "ingest"))).toEqual(["duplicate"]);
    expect(outcomes(await record(store, { ...r, tags: { team: "ads" } }, "ingest"))).toEqual([
      "duplicate",
    ]);
    expect(await readConflicts(store)).toEqual([]);
  });

  it("never lets another source fill in what the proxy recorded, and keeps the signatures a conflict names", async () => {
    const store = await stores.open();
    const proxied = receipt({ promptTokens: null, completionTokens: null, totalTokens: null });
    await record(store, proxied, "proxy");
    const filler = { ...proxied, promptTokens: 1, completionTokens: 2, totalTokens: 3 };
    expect(await record(store, filler, "ingest")).toEqual([
      { outcome: "conflict", differences: ["prompt_tokens", "completion_tokens", "total_tokens"] },
    ]);
    expect(await readJob(store, proxied.jobId)).toMatchObject({
      source: "proxy",
      totalTokens: null,
      conflictSignatures: null,
    });
    await updateJob(store, proxied.jobId, { verdict: "verified", nextVerifyAt: 9_999_999 });
    const other = signature();
    expect(
      outcomes(await record(store, { ...proxied, settlementTx: other }, "ingest", { now: 30 })),
    ).toEqual(["conflict"]);
    expect(await readJob(store, proxied.jobId)).toMatchObject({
      settlementTx: proxied.settlementTx,
      conflictSignatures: [other],
      verdict: "pending",
      nextVerifyAt: 30,
    });
    // The very same receipt is a duplicate, whoever sends it.
    expect(outcomes(await record(store, proxied, "import"))).toEqual(["duplicate"]);
    // So is a copy that only knows less: it contradicts nothing, and no conflict lists nothing.
    const before = (await readConflicts(store)).length;
    const less = { ...proxied, creditsRemainingUnits: null, worker: null, model: null };
    expect(await record(store, less, "import")).toEqual([{ outcome: "duplicate" }]);
    expect(await readConflicts(store)).toHaveLength(before);
  });

  it("keeps each further signature a receipt names as a conflicting receipt, and judges an already judged job again", async () => {
    const store = await stores.open();
    const [lock2, settle2, settle3] = [signature(), signature(), signature()];
    const r = receipt({ otherSignatures: { escrowTx: [lock2], settlementTx: [settle2] } });
    // A new job's receipt is created, whatever else it names.
    expect(await record(store, r, "ingest", { now: 10 })).toEqual([{ outcome: "created" }]);
    expect(await readJob(store, r.jobId)).toMatchObject({
      escrowTx: r.escrowTx,
      settlementTx: r.settlementTx,
      conflictSignatures: [lock2, settle2],
    });
    const { otherSignatures: _, ...own } = r;
    const kept = (await readConflicts(store)).filter((c) => c.jobId === r.jobId);
    expect(kept.map((c) => [c.receipt, c.differences])).toEqual([
      [
        expect.objectContaining({ escrow_tx: lock2, settlement_tx: own.settlementTx }),
        ["escrow_tx"],
      ],
      [
        expect.objectContaining({ escrow_tx: own.escrowTx, settlement_tx: settle2 }),
        ["settlement_tx"],
      ],
    ]);
    // The same again changes nothing; one naming a third settlement sends the judged job back.
    expect(outcomes(await record(store, r, "ingest", { now: 20 }))).toEqual(["duplicate"]);
    expect(await readConflicts(store)).toHaveLength(2);
    await updateJob(store, r.jobId, { verdict: "verified", nextVerifyAt: 9_999_999 });
    const third = { ...own, otherSignatures: { settlementTx: [settle3] } };
    expect(outcomes(await record(store, third, "ingest", { now: 30 }))).toEqual(["duplicate"]);
    expect(await readJob(store, r.jobId)).toMatchObject({
      conflictSignatures: [lock2, settle2, settle3],
      verdict: "pending",
      nextVerifyAt: 30,
    });
  });

  it("keeps one signature a conflicting receipt names past the followed ones, as the mark that more were named", async () => {
    const store = await stores.open();
    const r = receipt();
    expect(outcomes(await record(store, r, "ingest", { now: 10 }))).toEqual(["created"]);
    const full = Array.from({ length: maxConflictSignatures }, () => signature());
    await updateJob(store, r.jobId, { conflictSignatures: full });
    const [settle9, settle10] = [signature(), signature()];
    const more = { ...r, otherSignatures: { settlementTx: [settle9, settle10] } };
    await record(store, more, "ingest", { now: 20 });
    expect((await readJob(store, r.jobId))?.conflictSignatures).toEqual([...full, settle9]);
  });

  it("keeps at most ten conflicts per job, the last one summarizing the rest", async () => {
    const store = await stores.open();
    const r = receipt();
    await record(store, r, "proxy");
    const flood = Array.from({ length: 25 }, () => ({ ...r, worker: address() }));
    expect(new Set(outcomes(await record(store, flood, "ingest")))).toEqual(new Set(["conflict"]));
    const again = { ...r, creditsRemainingUnits: 1n };
    await record(store, again, "ingest");
    await record(store, again, "ingest");
    const conflicts = await readConflicts(store);
    expect(conflicts).toHaveLength(maxStoredConflicts);
    expect(conflicts.at(-1)).toMatchObject({
      receipt: {
        summary: true,
        more_conflicts: 27 - (maxStoredConflicts - 1),
        latest: { credits_remaining_units: "1" },
      },
      differences: ["worker", "credits_remaining_units"],
    });
  });

  it("lets the proxy complete the row it opened, and only that row", async () => {
    const store = await stores.open();
    const open = receipt({
      settlementTx: null,
      promptTokens: null,
      completionTokens: null,
      totalTokens: null,
      captureState: "open",
      creditVault: address(),
    });
    await record(store, open, "proxy", { now: 1 });
    const done = {
      ...open,
      promptTokens: 5,
      completionTokens: 7,
      totalTokens: 12,
      latencyMs: 40,
      creditVault: null,
      captureState: "complete" as const,
    };
    expect(outcomes(await record(store, done, "proxy", { now: 2 }))).toEqual(["updated"]);
    expect(await readJob(store, open.jobId)).toMatchObject({
      captureState: "complete",
      totalTokens: 12,
      latencyMs: 40,
      creditVault: open.creditVault,
      backfillState: "pending",
      updatedAt: 2,
    });
    expect(outcomes(await record(store, { ...done, totalTokens: 99 }, "proxy"))).toEqual([
      "conflict",
    ]);
  });

  it("lets an import complete the proxy's open row only where it contradicts nothing the row knows", async () => {
    const store = await stores.open();
    const open = receipt({
      promptTokens: null,
      completionTokens: null,
      totalTokens: null,
      captureState: "open",
    });
    await record(store, open, "proxy", { now: 1 });
    const logged = { ...open, totalTokens: 12, captureState: undefined };
    // Another worker than the proxy saw: a conflicting receipt, the row left as it was.
    expect(outcomes(await record(store, { ...logged, worker: address() }, "import"))).toEqual([
      "conflict",
    ]);
    expect(await readJob(store, open.jobId)).toMatchObject({ captureState: "open" });
    expect(outcomes(await record(store, logged, "import", { now: 2 }))).toEqual(["updated"]);
    expect(await readJob(store, open.jobId)).toMatchObject({
      source: "proxy",
      captureState: "complete",
      totalTokens: 12,
      // The proxy never asked the jobs API about it: the backfill does.
      backfillState: "pending",
    });
    expect(outcomes(await record(store, logged, "import"))).toEqual(["duplicate"]);
  });

  it("writes what a completion or a fill learns in indexed columns, and keeps the rest", async () => {
    const store = await stores.open();
    const open = receipt({
      settlementTx: null,
      model: null,
      promptTokens: null,
      completionTokens: null,
      totalTokens: null,
      keyFingerprint: "fp-1",
      captureState: "open",
    });
    await record(store, open, "proxy", { now: 1 });
    const settlementTx = signature();
    const done = {
      ...open,
      model: "qwen3-8b",
      settlementTx,
      totalTokens: 12,
      captureState: "complete" as const,
    };
    expect(outcomes(await record(store, done, "proxy", { now: 2 }))).toEqual(["updated"]);
    expect(await readJob(store, open.jobId)).toMatchObject({
      model: "qwen3-8b",
      settlementTx,
      escrowTx: open.escrowTx,
      worker: open.worker,
      keyFingerprint: "fp-1",
      totalTokens: 12,
      captureState: "complete",
    });
    // Another job completed with every indexed column as opened: only the rest changes.
    const second = receipt({ totalTokens: null, keyFingerprint: "fp-2", captureState: "open" });
    await record(store, second, "proxy", { now: 1 });
    await record(store, { ...second, totalTokens: 30, captureState: "complete" }, "proxy");
    expect(await readJob(store, second.jobId)).toMatchObject({
      model: second.model,
      settlementTx: second.settlementTx,
      keyFingerprint: "fp-2",
      totalTokens: 30,
      captureState: "complete",
    });
    // A fill from the same source writes the signature it adds; an ingested job's backfill
    // still waits for the jobs API's answer.
    const ingested = receipt({ settlementTx: null });
    await record(store, ingested, "ingest");
    await record(store, { ...ingested, settlementTx }, "ingest");
    expect(await readJob(store, ingested.jobId)).toMatchObject({
      settlementTx,
      escrowTx: ingested.escrowTx,
      backfillState: "pending",
    });
  });

  it("records a batch in order, so a job repeated inside it is a duplicate, update or conflict of its earlier item", async () => {
    const store = await stores.open();
    const known = receipt();
    await record(store, known, "import");
    const a = receipt();
    const b = receipt({ settlementTx: null });
    const results = await record(
      store,
      [
        a,
        b,
        known,
        a,
        { ...b, escrowTx: signature() },
        { ...b, settlementTx: signature() },
        { ...known, worker: address() },
      ],
      "import",
    );
    expect(outcomes(results)).toEqual([
      "created",
      "created",
      "duplicate",
      "duplicate",
      "conflict",
      "updated",
      "conflict",
    ]);
    expect(await jobIds(store)).toEqual([known.jobId, a.jobId, b.jobId].sort());
  });

  it("gives the same per-item results through the receipt writer, and a task that fails fails alone", async () => {
    const store = await stores.open();
    const { log } = capturedLogger();
    const writer = createReceiptWriter(store, { log });
    try {
      const first = wireReceipt();
      const items = [
        first,
        wireReceipt({ job_id: "job_ABC" }),
        { ...first },
        { ...first, worker: address() },
        wireReceipt({ settlement_tx: null }),
      ];
      const results = await ingestReceiptsVia(writer, items, "ingest");
      expect(results.map((r) => r.status)).toEqual([
        "created",
        "rejected",
        "duplicate",
        "conflict",
        "created",
      ]);
      expect(results[1]).toMatchObject({ field: "job_id" });
      expect(results[3]).toMatchObject({ differences: ["worker"] });

      // Submitted together they share a group commit (on PostgreSQL the first is committed
      // alone, the other three together); the one the database refuses (a job id of NULL)
      // is rolled back and rejected alone.
      const broken = receipt({ jobId: null as unknown as string });
      const [x, y, z] = [wireReceipt(), wireReceipt(), wireReceipt()];
      const settled = await Promise.allSettled([
        ingestReceiptsVia(writer, [x], "ingest"),
        ingestReceiptsVia(writer, [y], "ingest"),
        writer.run(recordReceiptsUnit([broken], "ingest")),
        ingestReceiptsVia(writer, [z], "ingest"),
      ]);
      expect(settled.map((s) => s.status)).toEqual([
        "fulfilled",
        "fulfilled",
        "rejected",
        "fulfilled",
      ]);
      expect(settled[3]).toMatchObject({ value: [{ status: "created" }] });
      const stored = await jobIds(store);
      for (const item of [x, y, z]) expect(stored).toContain(item.job_id);
      expect(stored).toHaveLength(5);
    } finally {
      await writer.close();
    }
  });

  it("takes a status another receipt of the job brings when the first lacked it, and keeps a differing one as a conflict", async () => {
    const store = await stores.open();
    // Posted first without the status (an export without the column), then with it.
    const first = receipt();
    await record(store, first, "import", { now: 10 });
    await updateJob(store, first.jobId, { verdict: "verified", nextVerifyAt: 9_999_999 });
    expect(
      outcomes(await record(store, { ...first, httpStatus: 500 }, "import", { now: 20 })),
    ).toEqual(["updated"]);
    expect(await readJob(store, first.jobId)).toMatchObject({
      httpStatus: 500,
      verdict: "pending",
      nextVerifyAt: 20,
    });
    // The same status again is a duplicate; another one a conflict that shows it, and leaves
    // the recorded status as it was.
    expect(outcomes(await record(store, { ...first, httpStatus: 500 }, "import"))).toEqual([
      "duplicate",
    ]);
    expect(await record(store, { ...first, httpStatus: 200 }, "import")).toEqual([
      { outcome: "conflict", differences: ["http_status"] },
    ]);
    // From another source (the wrapper's delivery after an import): a status only makes the
    // checks stricter, so a missing one is taken too.
    const other = receipt();
    await record(store, other, "import");
    expect(outcomes(await record(store, { ...other, httpStatus: 502 }, "ingest"))).toEqual([
      "updated",
    ]);
    // A stream's receipt without its settlement and status, then the fuller copy with both.
    const stream = receipt({ settlementTx: null });
    await record(store, stream, "import");
    const fuller = { ...stream, settlementTx: signature(), httpStatus: 500 };
    expect(outcomes(await record(store, fuller, "import"))).toEqual(["updated"]);
    expect(await readJob(store, first.jobId)).toMatchObject({ httpStatus: 500 });
    expect(await readJob(store, other.jobId)).toMatchObject({ httpStatus: 502 });
    expect(await readJob(store, stream.jobId)).toMatchObject({
      httpStatus: 500,
      settlementTx: fuller.settlementTx,
    });
    const conflicts = await readConflicts(store);
    expect(conflicts.map((c) => c.jobId)).toEqual([first.jobId]);
    expect(conflicts[0]?.receipt).toMatchObject({ http_status: 200 });
    // A copy from the same source that brings the status and disagrees on what it captured
    // (a ceiling): a conflict, and the status it wrote is judged all the same.
    const capped = receipt({ maxTokens: 100 });
    await record(store, capped, "ingest", { now: 10 });
    await updateJob(store, capped.jobId, { verdict: "verified", nextVerifyAt: 9_999_999 });
    expect(
      await record(store, { ...capped, httpStatus: 500, maxTokens: 200 }, "ingest", { now: 40 }),
    ).toEqual([{ outcome: "conflict", differences: ["max_tokens"] }]);
    expect(await readJob(store, capped.jobId)).toMatchObject({
      httpStatus: 500,
      verdict: "pending",
      nextVerifyAt: 40,
    });
  });

  it("takes an error answer from any copy over a recorded 2xx, keeps the copy as a conflict and judges the job again", async () => {
    const store = await stores.open();
    // The same receipt, first as answered, then as the error the caller really got: whichever
    // order they come in, the job must not stay verified on the answer.
    const same = receipt();
    await record(store, { ...same, httpStatus: 200 }, "ingest", { now: 10 });
    await updateJob(store, same.jobId, { verdict: "verified", nextVerifyAt: 9_999_999 });
    expect(await record(store, { ...same, httpStatus: 500 }, "ingest", { now: 20 })).toEqual([
      { outcome: "conflict", differences: ["http_status"] },
    ]);
    expect(await readJob(store, same.jobId)).toMatchObject({
      httpStatus: 500,
      verdict: "pending",
      nextVerifyAt: 20,
    });
    // From another source, with a field the first lacked: a conflict that still takes the error.
    const other = receipt({ settlementTx: null });
    await record(store, { ...other, httpStatus: 200 }, "import", { now: 10 });
    await updateJob(store, other.jobId, { verdict: "verified", nextVerifyAt: 9_999_999 });
    const fuller = { ...other, settlementTx: signature(), httpStatus: 502 };
    expect(await record(store, fuller, "ingest", { now: 30 })).toEqual([
      { outcome: "conflict", differences: ["settlement_tx", "http_status"] },
    ]);
    expect(await readJob(store, other.jobId)).toMatchObject({
      httpStatus: 502,
      settlementTx: null,
      verdict: "pending",
    });
    // A 2xx never replaces an error answer, and of two errors the first stays.
    expect(outcomes(await record(store, { ...same, httpStatus: 200 }, "ingest"))).toEqual([
      "conflict",
    ]);
    expect(outcomes(await record(store, { ...same, httpStatus: 503 }, "ingest"))).toEqual([
      "conflict",
    ]);
    expect(await readJob(store, same.jobId)).toMatchObject({ httpStatus: 500 });
    const conflicts = await readConflicts(store);
    expect(
      conflicts.filter((c) => c.jobId === same.jobId).map((c) => c.receipt.http_status),
    ).toEqual([500, 200, 503]);
    expect(conflicts.find((c) => c.jobId === other.jobId)?.receipt).toMatchObject({
      http_status: 502,
    });
  });

  it("keeps an error answer another copy recorded while the proxy's stream was open", async () => {
    const store = await stores.open();
    // The proxy opened the row with the 200 its headers said; a copy saying the caller got a
    // 502 came while the stream ran (the fetch wrapper's); the proxy's completion came last.
    const open = receipt({ settlementTx: null, captureState: "open", httpStatus: 200 });
    await record(store, open, "proxy", { now: 10 });
    await record(store, { ...open, captureState: "complete", httpStatus: 502 }, "ingest", {
      now: 15,
    });
    expect(await readJob(store, open.jobId)).toMatchObject({ httpStatus: 502 });
    const done = { ...open, captureState: "complete" as const };
    expect(outcomes(await record(store, done, "proxy", { now: 20 }))).toEqual(["updated"]);
    expect(await readJob(store, open.jobId)).toMatchObject({
      httpStatus: 502,
      captureState: "complete",
    });
  });

  it("sends back every judged job naming a signature a receipt newly names, even one re-posted in the same batch", async () => {
    const store = await stores.open();
    // A replay judged before the job it copies; a job being judged; one waiting its turn.
    const replay = receipt();
    const held = receipt({ escrowTx: replay.escrowTx, settlementTx: signature() });
    const waiting = receipt({ escrowTx: replay.escrowTx, settlementTx: signature() });
    await record(store, [replay, held, waiting], "ingest", { now: 10 });
    await updateJob(store, replay.jobId, { verdict: "discrepancy", nextVerifyAt: 9_999_999 });
    await updateJob(store, held.jobId, { leaseOwner: "verifier-a", leaseUntil: 9_999_999 });
    await updateJob(store, waiting.jobId, { nextVerifyAt: 500 });
    // The import is sent again with the real job's line added: the replay is a duplicate.
    const real = receipt({ escrowTx: replay.escrowTx, settlementTx: replay.settlementTx });
    expect(outcomes(await record(store, [replay, real], "import", { now: 40 }))).toEqual([
      "duplicate",
      "created",
    ]);
    expect(await readJob(store, replay.jobId)).toMatchObject({
      verdict: "pending",
      nextVerifyAt: 40,
    });
    expect(await readJob(store, held.jobId)).toMatchObject({ leaseOwner: null, nextVerifyAt: 40 });
    // Nobody holds it and nothing was decided: it reads every namer when its turn comes.
    expect(await readJob(store, waiting.jobId)).toMatchObject({ nextVerifyAt: 500 });
  });

  it("sends back every judged job naming a signature the proxy's completion stops naming", async () => {
    const store = await stores.open();
    // The proxy opened the job's row with the lock its headers named; a replay names that lock
    // and was judged while the job owned it. The completion names another lock.
    const open = receipt({ settlementTx: null, captureState: "open" });
    await record(store, open, "proxy", { now: 10 });
    const replay = receipt({ escrowTx: open.escrowTx });
    await record(store, replay, "ingest", { now: 10 });
    await updateJob(store, replay.jobId, { verdict: "discrepancy", nextVerifyAt: 9_999_999 });
    const done = { ...open, escrowTx: signature(), captureState: "complete" as const };
    expect(outcomes(await record(store, done, "proxy", { now: 20 }))).toEqual(["updated"]);
    expect(await readJob(store, replay.jobId)).toMatchObject({
      verdict: "pending",
      nextVerifyAt: 20,
    });
  });

  it("leaves alone a judged job its transaction's memo names, however many receipts name it", async () => {
    const store = await stores.open();
    // Two honest jobs whose locks' memos name them, one judged and one being judged, and a
    // replay of the first, judged.
    const own = receipt();
    const held = receipt();
    const replay = receipt({ escrowTx: own.escrowTx, settlementTx: own.settlementTx });
    await record(store, [own, held, replay], "import", { now: 10 });
    await seedSignatures(store, [
      { signature: own.escrowTx!, state: "finalized", facts: {}, memoJob: own.jobId },
      { signature: held.escrowTx!, state: "finalized", facts: {}, memoJob: held.jobId },
    ]);
    await updateJob(store, own.jobId, { verdict: "verified", nextVerifyAt: 9_999_999 });
    await updateJob(store, held.jobId, { leaseOwner: "verifier-a", leaseUntil: 9_999_999 });
    await updateJob(store, replay.jobId, { verdict: "discrepancy", nextVerifyAt: 9_999_999 });
    // Made-up jobs naming both locks, batch after batch: the jobs the memos name own that
    // money whoever else names it, so nothing of their verdicts can change.
    for (const now of [20, 21, 22]) {
      const junk = [own, held].map((r) => receipt({ escrowTx: r.escrowTx, settlementTx: null }));
      await record(store, junk, "ingest", { now });
    }
    expect(await readJob(store, own.jobId)).toMatchObject({
      verdict: "verified",
      nextVerifyAt: 9_999_999,
    });
    expect(await readJob(store, held.jobId)).toMatchObject({ leaseOwner: "verifier-a" });
    // The replay's own verdict turns on who names the lock: judged again, once.
    expect(await readJob(store, replay.jobId)).toMatchObject({
      verdict: "pending",
      nextVerifyAt: 20,
    });
  });
});

describe("receipts store on postgres, from two processes at once", () => {
  const stores = useDialectStores("postgres");
  const extra: Store[] = [];
  afterEach(async () => {
    for (const store of extra.splice(0)) await store.close();
  });

  /** Two stores on one database, as two `serve` processes have. */
  async function twoStores(): Promise<[PgStore, PgStore]> {
    const first = await stores.open();
    if (first.kind !== "postgres") throw new Error("a PostgreSQL store");
    return [first, await anotherStore()];
  }

  /** One more store on the database of the last `twoStores`, as a third process has. */
  async function anotherStore(): Promise<PgStore> {
    const store = openPostgres(stores.lastUrl, { poolSize: 4, statementTimeoutMs: 30_000 });
    extra.push(store);
    return store;
  }

  it("creates each job once when both record the same batch", async () => {
    const [a, b] = await twoStores();
    const batch = Array.from({ length: 300 }, () => receipt());
    const reversed = [...batch].reverse();
    const [ra, rb] = await Promise.all([
      createReceiptsStore(a).record(batch, "ingest"),
      createReceiptsStore(b).record(reversed, "import"),
    ]);
    const created = [...outcomes(ra), ...outcomes(rb)].filter((o) => o === "created");
    expect(created).toHaveLength(300);
    expect([...outcomes(ra), ...outcomes(rb)].filter((o) => o !== "created")).toEqual(
      Array(300).fill("duplicate"),
    );
    expect(await jobIds(a)).toHaveLength(300);
    expect(await readConflicts(a)).toEqual([]);
  });

  it("keeps one receipt and one conflict when both record different receipts of a job", async () => {
    const [a, b] = await twoStores();
    const pairs = Array.from({ length: 50 }, () => {
      const r = receipt();
      return [r, { ...r, worker: address() }] as const;
    });
    const [ra, rb] = await Promise.all([
      createReceiptsStore(a).record(
        pairs.map(([r]) => r),
        "ingest",
      ),
      createReceiptsStore(b).record(
        pairs.map(([, forged]) => forged),
        "ingest",
      ),
    ]);
    const conflicts = await readConflicts(a);
    expect(conflicts).toHaveLength(50);
    for (const [i, [r, forged]] of pairs.entries()) {
      const pair = [ra[i]?.outcome, rb[i]?.outcome].sort();
      expect(pair).toEqual(["conflict", "created"]);
      const kept = ra[i]?.outcome === "created" ? r : forged;
      const lost = kept === r ? forged : r;
      expect((await readJob(a, r.jobId))?.worker).toBe(kept.worker);
      expect(conflicts.find((c) => c.jobId === r.jobId)?.receipt).toMatchObject({
        worker: lost.worker,
      });
    }
  });

  it("caps the conflicts of a job and counts every one when both flood it", async () => {
    const [a, b] = await twoStores();
    const r = receipt();
    await createReceiptsStore(a).record([r], "proxy");
    const flood = () =>
      Promise.all(
        Array.from({ length: 15 }, () =>
          createReceiptsStore(a).record([{ ...r, worker: address() }], "ingest"),
        ).concat(
          Array.from({ length: 15 }, () =>
            createReceiptsStore(b).record([{ ...r, worker: address() }], "ingest"),
          ),
        ),
      );
    await flood();
    const conflicts = await readConflicts(a);
    expect(conflicts).toHaveLength(maxStoredConflicts);
    expect(conflicts.at(-1)?.receipt).toMatchObject({
      summary: true,
      more_conflicts: 30 - (maxStoredConflicts - 1),
    });
  });

  /**
   * Resolves once a statement on `store`'s database waits for a lock, or once `read` has
   * settled (it did not wait): what a test does next must come after the wait began.
   */
  async function waitingOrDone(store: PgStore, read: Promise<unknown>) {
    let settled = false;
    read.then(
      () => (settled = true),
      () => (settled = true),
    );
    for (let i = 0; i < 500 && !settled; i++) {
      const { rows } = await store.pool.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      if (rows[0].n > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  it("has a verifier read every namer of an open job, a receipt not yet committed included", async () => {
    const [a, b] = await twoStores();
    // A replay recorded and waiting its turn, held by no verifier.
    const replay = receipt();
    await createReceiptsStore(a).record([replay], "ingest", { now: 10 });
    const real = receipt({ escrowTx: replay.escrowTx, settlementTx: replay.settlementTx });
    const lock = replay.escrowTx as string;
    // The real job's receipt, recorded by another host whose group has not committed yet. A
    // verifier may take the replay now; judged without the real job, it would keep the money
    // and never be told otherwise. Its read of who names the lock waits for the commit.
    let read: ReturnType<SignatureStore["jobsNaming"]> | undefined;
    await a.db.transaction(async (tx) => {
      await recordReceiptsPg(tx, [real], "ingest", { now: 20 });
      await createJobQueueStore(b).claim("verifier-b", null, { t: 30, leaseMs: 60_000, limit: 10 });
      read = createSignatureStore(b).jobsNaming([lock], 10);
      await waitingOrDone(b, read);
    });
    expect((await read)?.named.get(lock)).toEqual([real.jobId, replay.jobId].sort());
  });

  it("judges a replay with its original when two hosts record their first receipts at once", async () => {
    const [a, b] = await twoStores();
    const verifier = await anotherStore();
    // A replay and the job it copies, the first receipts of one lock, in two hosts' groups that
    // are both open: neither group sees the other's job. (Other keys and models, so the two
    // share no report rollup row, where the second insert would wait for the first commit.)
    const replay = receipt({ keyFingerprint: "key-x", model: "model-x" });
    const original = receipt({
      escrowTx: replay.escrowTx,
      settlementTx: replay.settlementTx,
      keyFingerprint: "key-z",
      model: "model-z",
    });
    const lock = replay.escrowTx as string;
    const gate = () => {
      let open!: () => void;
      return { opened: new Promise<void>((resolve) => (open = resolve)), open: () => open() };
    };
    const [replayRecorded, originalRecorded, commitReplay, commitOriginal] = [1, 2, 3, 4].map(gate);
    const hostA = a.db.transaction(async (tx) => {
      await recordReceiptsPg(tx, [replay], "ingest", { now: 10 });
      replayRecorded?.open();
      await commitReplay?.opened;
    });
    const hostB = b.db.transaction(async (tx) => {
      await replayRecorded?.opened;
      await recordReceiptsPg(tx, [original], "ingest", { now: 10 });
      originalRecorded?.open();
      await commitOriginal?.opened;
    });
    await originalRecorded?.opened;
    commitReplay?.open();
    await hostA;
    // A verifier takes the replay between the two commits and asks who names the lock.
    const claimed = await createJobQueueStore(verifier).claim("verifier-c", null, {
      t: 20,
      leaseMs: 60_000,
      limit: 10,
    });
    expect(claimed.map((job) => job.jobId)).toEqual([replay.jobId]);
    const read = createSignatureStore(verifier).jobsNaming([lock], 10);
    await waitingOrDone(verifier, read);
    commitOriginal?.open();
    await hostB;
    // It judges the replay knowing the original names the lock too: the money is not counted
    // on both.
    expect((await read).named.get(lock)).toEqual([original.jobId, replay.jobId].sort());
  });

  it("has a verifier asking whether a job names a signature wait for that job's receipt", async () => {
    const [a, b] = await twoStores();
    // The job a lock's memo names, its receipt being recorded by another host: a verifier
    // judging a replay of that lock asks whether the memo's job names it.
    const real = receipt();
    let asked: Promise<Set<string>> | undefined;
    await a.db.transaction(async (tx) => {
      await recordReceiptsPg(tx, [real], "ingest", { now: 20 });
      asked = createSignatureStore(b).namesAny([
        { jobId: real.jobId, signature: real.escrowTx as string },
      ]);
      await waitingOrDone(b, asked);
    });
    expect(await asked).toEqual(new Set([pairKey(real.jobId, real.escrowTx as string)]));
  });

  it("records, without a deadlock, two groups that each name the lock of the other's job", async () => {
    const [a, b] = await twoStores();
    // Two jobs waiting their turn; each host's group holds one of them (a copy of its receipt,
    // read FOR UPDATE) and then records a conflicting receipt of it naming the other's lock.
    const one = receipt({ settlementTx: null });
    const two = receipt({ settlementTx: null });
    await createReceiptsStore(a).record([one, two], "ingest", { now: 10 });
    let holdsOne!: () => void;
    let holdsTwo!: () => void;
    const heldOne = new Promise<void>((resolve) => (holdsOne = resolve));
    const heldTwo = new Promise<void>((resolve) => (holdsTwo = resolve));
    const group = (
      store: PgStore,
      own: Receipt,
      other: Receipt,
      held: () => void,
      then: Promise<void>,
    ) =>
      store.db.transaction(async (tx) => {
        expect(outcomes(await recordReceiptsPg(tx, [own], "ingest", { now: 30 }))).toEqual([
          "duplicate",
        ]);
        held();
        await then;
        const named = { ...own, escrowTx: other.escrowTx };
        return outcomes(await recordReceiptsPg(tx, [named], "ingest", { now: 30 }));
      });
    const results = await Promise.allSettled([
      group(a, one, two, holdsOne, heldTwo),
      group(b, two, one, holdsTwo, heldOne),
    ]);
    expect(results).toEqual([
      { status: "fulfilled", value: ["conflict"] },
      { status: "fulfilled", value: ["conflict"] },
    ]);
  });

  it("applies the same fill once when both send it", async () => {
    const [a, b] = await twoStores();
    const incomplete = Array.from({ length: 50 }, () => receipt({ settlementTx: null }));
    await createReceiptsStore(a).record(incomplete, "ingest");
    const complete = incomplete.map((r) => ({ ...r, settlementTx: signature() }));
    // Each job's fill sent by both at the same moment, every job at once.
    const results = await Promise.all(
      complete.map((r) =>
        Promise.all([a, b].map((store) => createReceiptsStore(store).record([r], "ingest"))),
      ),
    );
    for (const pair of results) {
      expect(pair.map(([r]) => r?.outcome).sort()).toEqual(["duplicate", "updated"]);
    }
    expect(await readConflicts(a)).toEqual([]);
  });
});

describe.each(dialects)(
  "choices asked for, from a later receipt of the same source, on %s",
  (dialect) => {
    const stores = useDialectStores(dialect);
    const record = (store: Store, r: Receipt, now: number) =>
      createReceiptsStore(store).record([r], "ingest", { now });

    it("fills the n a first receipt lacked with its ceiling, and keeps another n as a conflict", async () => {
      const store = await stores.open();
      // Four choices of 100 tokens: the ceiling alone, filled without its n, bounds the 400
      // tokens as one choice, and the honest job fails charge.matches_price.
      const r = receipt({ completionTokens: 400, totalTokens: 410 });
      await record(store, r, 10);
      await updateJob(store, r.jobId, { verdict: "verified", nextVerifyAt: 9_999_999 });
      const fuller = { ...r, maxTokens: 100, choices: 4 };
      expect(await record(store, fuller, 20)).toEqual([{ outcome: "updated" }]);
      expect(await readJob(store, r.jobId)).toMatchObject({
        maxTokens: 100,
        choices: 4,
        verdict: "pending",
        nextVerifyAt: 20,
      });
      // The n alone, later than its ceiling, is filled too.
      const late = receipt({ maxTokens: 100 });
      await record(store, late, 10);
      expect(await record(store, { ...late, choices: 3 }, 20)).toEqual([{ outcome: "updated" }]);
      expect((await readJob(store, late.jobId))?.choices).toBe(3);
      // Another n is another account of the request: a conflict, the first stays.
      expect(await record(store, { ...fuller, choices: 2 }, 30)).toEqual([
        { outcome: "conflict", differences: ["choices"] },
      ]);
      expect((await readJob(store, r.jobId))?.choices).toBe(4);
      expect((await readConflicts(store))[0]?.receipt).toMatchObject({ choices: 2 });
    });
  },
);
