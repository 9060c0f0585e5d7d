import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { type Receipt, recordReceipts } from "../src/recorder/receipts.js";
import { createCustodyStore } from "../src/store/custody.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { receipt } from "./support/recorder-fixtures.js";
import { readConflicts, readJob, updateJob } from "./support/seed-recorder.js";

/**
 * A key fingerprint that comes to name a second key check (two keys the operator made to share
 * it) sends its judged jobs back to the verifier, in the transaction of the receipt that
 * brought the second one: they were judged as one key's, and fail `key.fingerprint_unique` now.
 * A job being judged loses its lease, so its verdict, reached without the second key, is never
 * written. Once only: the jobs judged after read the fingerprint as shared.
 */
const F = "b0a7b1b9a2a0a449";
const G = "0123456789abcdef";
const C1 = "1111111111111111";
const C2 = "2222222222222222";
const t = Date.UTC(2026, 11, 7);

describe.each(dialects)("a second key check of a fingerprint on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  const record = (store: Store, r: Receipt, now = t) =>
    recordReceipts(store, [r], "ingest", { now });

  it("sends back the fingerprint's judged and held jobs naming a key check, once", async () => {
    const store = await stores.open();
    const judged = receipt({ keyFingerprint: F, keyCheck: C1 });
    const held = receipt({ keyFingerprint: F, keyCheck: C1 });
    const unchecked = receipt({ keyFingerprint: F });
    const other = receipt({ keyFingerprint: G, keyCheck: C2 });
    for (const r of [judged, held, unchecked, other]) await record(store, r);
    for (const r of [judged, unchecked, other]) {
      await updateJob(store, r.jobId, { verdict: "verified", verdictAt: t });
    }
    const queue = createJobQueueStore(store);
    const claimed = await queue.claim("verifier-1", null, { t, leaseMs: 60_000, limit: 10 });
    expect(claimed.map((j) => j.jobId)).toEqual([held.jobId]);
    const pins = await createCustodyStore(store, localnetProfile).pins([F, G], []);
    expect(pins.sharedKeys).toEqual(new Set());

    // The second key's receipt.
    await record(store, receipt({ keyFingerprint: F, keyCheck: C2 }), t + 1);
    expect(await readJob(store, judged.jobId)).toMatchObject({
      verdict: "pending",
      previousVerdict: "verified",
      rejudgeReason: "evidence",
    });
    expect(await readJob(store, held.jobId)).toMatchObject({ leaseOwner: null });
    // Judged as before: it names no key check.
    expect(await readJob(store, unchecked.jobId)).toMatchObject({ verdict: "verified" });
    expect(await readJob(store, other.jobId)).toMatchObject({ verdict: "verified" });
    const shared = await createCustodyStore(store, localnetProfile).pins([F, G], []);
    expect(shared.sharedKeys).toEqual(new Set([F]));

    // Judged again (a discrepancy), the next receipt of either key sends nothing back.
    await updateJob(store, judged.jobId, { verdict: "discrepancy", verdictAt: t + 2 });
    await record(store, receipt({ keyFingerprint: F, keyCheck: C1 }), t + 3);
    await record(store, receipt({ keyFingerprint: F, keyCheck: C2 }), t + 4);
    expect(await readJob(store, judged.jobId)).toMatchObject({ verdict: "discrepancy" });
  });
});

describe.each(dialects)("a key check another source names later on %s", (dialect) => {
  const stores = useDialectStores(dialect);
  // A job first recorded naming only its fingerprint (an import line, an older recorder) took
  // another source's later receipt naming the key check as a duplicate: the key made to share
  // the fingerprint stayed one with the first, its jobs judged on the fingerprint alone.
  it.each([
    ["the same receipt", (r: Receipt) => r],
    ["a copy knowing less", (r: Receipt) => ({ ...r, promptTokens: null, totalTokens: null })],
  ])("fills it in from %s and sends the fingerprint's judged jobs back", async (_, copyOf) => {
    const store = await stores.open();
    const first = receipt({ keyFingerprint: F, keyCheck: C1 });
    await recordReceipts(store, [first], "ingest", { now: t });
    const second = receipt({ keyFingerprint: F });
    await recordReceipts(store, [second], "import", { now: t });
    for (const r of [first, second]) {
      await updateJob(store, r.jobId, { verdict: "verified", verdictAt: t });
    }
    const [result] = await recordReceipts(store, [copyOf({ ...second, keyCheck: C2 })], "ingest", {
      now: t + 1,
    });
    expect(result).toEqual({ outcome: "updated" });
    expect(await readJob(store, second.jobId)).toMatchObject({
      keyCheck: C2,
      verdict: "pending",
      previousVerdict: "verified",
    });
    expect(await readJob(store, first.jobId)).toMatchObject({
      verdict: "pending",
      previousVerdict: "verified",
    });
    const pins = await createCustodyStore(store, localnetProfile).pins([F], []);
    expect(pins.sharedKeys).toEqual(new Set([F]));
  });

  // A later receipt kept as a conflict for another field (the settlement an import line
  // lacked, another max_tokens) named the key check too: it was dropped with the rest, and the
  // key made to share the fingerprint stayed one with the first.
  it.each([
    ["another source's receipt naming the settlement the line lacked", "ingest", ["settlement_tx"]],
    ["a receipt of its own source naming another max_tokens", "import", ["max_tokens"]],
  ] as const)("fills it in from %s, kept as a conflict", async (_, source, differences) => {
    const store = await stores.open();
    const first = receipt({ keyFingerprint: F, keyCheck: C1 });
    await recordReceipts(store, [first], "ingest", { now: t });
    const later = receipt({ keyFingerprint: F, keyCheck: C2, maxTokens: 64 });
    const line = { ...later, keyCheck: null, settlementTx: null, maxTokens: 32 };
    await recordReceipts(
      store,
      [source === "ingest" ? line : { ...line, settlementTx: later.settlementTx }],
      "import",
      { now: t },
    );
    for (const r of [first, later]) {
      await updateJob(store, r.jobId, { verdict: "verified", verdictAt: t });
    }
    const [result] = await recordReceipts(store, [later], source, { now: t + 1 });
    expect(result).toEqual({ outcome: "conflict", differences });
    expect(await readJob(store, later.jobId)).toMatchObject({
      keyCheck: C2,
      verdict: "pending",
      previousVerdict: "verified",
    });
    expect(await readJob(store, first.jobId)).toMatchObject({ verdict: "pending" });
    const pins = await createCustodyStore(store, localnetProfile).pins([F], []);
    expect(pins.sharedKeys).toEqual(new Set([F]));
  });

  it("keeps a later receipt naming another key check than the job's as a conflict", async () => {
    const store = await stores.open();
    const first = receipt({ keyFingerprint: F, keyCheck: C1 });
    await recordReceipts(store, [first], "import", { now: t });
    const [result] = await recordReceipts(store, [{ ...first, keyCheck: C2 }], "ingest", {
      now: t + 1,
    });
    expect(result).toEqual({ outcome: "conflict", differences: ["key_check"] });
    expect(await readJob(store, first.jobId)).toMatchObject({ keyCheck: C1 });
    const pins = await createCustodyStore(store, localnetProfile).pins([F], []);
    expect(pins.sharedKeys).toEqual(new Set());
  });

  it("fills nothing beside another fingerprint, and nothing else of the receipt", async () => {
    const store = await stores.open();
    const first = receipt({ keyFingerprint: F });
    await recordReceipts(store, [first], "import", { now: t });
    const other = { ...first, keyFingerprint: G, keyCheck: C2 };
    expect(await recordReceipts(store, [other], "ingest", { now: t + 1 })).toEqual([
      { outcome: "duplicate" },
    ]);
    const filled = { ...first, keyCheck: C2, maxTokens: 77, creditVault: null };
    await recordReceipts(store, [filled], "ingest", { now: t + 1 });
    expect(await readJob(store, first.jobId)).toMatchObject({
      keyFingerprint: F,
      keyCheck: C2,
      maxTokens: null,
    });
  });
});

describe.each(dialects)("an open capture completed by an import line on %s", (dialect) => {
  const stores = useDialectStores(dialect);
  /** The first key's receipt, then the second key's job open in the proxy's capture. */
  async function secondKeyProxied() {
    const store = await stores.open();
    await recordReceipts(store, [receipt({ keyFingerprint: F, keyCheck: C1 })], "ingest", {
      now: t,
    });
    const second = receipt({ keyFingerprint: F, keyCheck: C2 });
    await recordReceipts(store, [openCapture(second)], "proxy", { now: t });
    return { store, second };
  }
  /** What the proxy records as `r`'s answer begins: no settlement or usage yet. */
  const openCapture = (r: Receipt): Receipt => ({
    ...r,
    settlementTx: null,
    captureState: "open",
    promptTokens: null,
    completionTokens: null,
    totalTokens: null,
  });
  // The import line a proxy writes when it cannot record names the fingerprint and, from an
  // older proxy, no key check: completing the open capture wrote its fields over the proxy's,
  // the key check with them, and the fingerprint read as one key's again.
  it("keeps the proxy's key check when the line names the same fingerprint and none", async () => {
    const { store, second } = await secondKeyProxied();
    const { keyCheck: _, ...line } = second;
    await recordReceipts(store, [line], "import", { now: t + 1 });
    const row = await readJob(store, second.jobId);
    expect(row).toMatchObject({ keyCheck: C2, captureState: "complete" });
    const pins = await createCustodyStore(store, localnetProfile).pins([F], []);
    expect([...(pins.sharedKeys ?? [])]).toEqual([F]);
  });

  // A line naming no fingerprint at all wrote the job as no key's: its lock from a vault a key
  // holds left unproven, and the fingerprint's second key check gone with it.
  it("keeps the proxy's fingerprint and key check when the line names neither", async () => {
    const { store, second } = await secondKeyProxied();
    const { keyCheck: _, keyFingerprint: __, ...line } = second;
    expect(await recordReceipts(store, [line], "import", { now: t + 1 })).toEqual([
      { outcome: "updated" },
    ]);
    const row = await readJob(store, second.jobId);
    expect(row).toMatchObject({ keyFingerprint: F, keyCheck: C2, captureState: "complete" });
    const pins = await createCustodyStore(store, localnetProfile).pins([F], []);
    expect([...(pins.sharedKeys ?? [])]).toEqual([F]);
  });

  // The proxy read its key from the Authorization header it forwarded, and the line it logs
  // names that key: a line naming another is no completion of it. Taken as one, it wrote its
  // key over the proxy's, the job judged as the other key's, and no conflict said so.
  it.each([
    ["another fingerprint", { keyFingerprint: G, keyCheck: C2 }, ["key_fingerprint", "key_check"]],
    ["another fingerprint and no key check", { keyFingerprint: G, keyCheck: null }, []],
    [
      "another key check beside the fingerprint",
      { keyFingerprint: F, keyCheck: C2 },
      ["key_check"],
    ],
  ])("keeps the proxy's key against a line naming %s, as a conflict", async (_, key, named) => {
    const store = await stores.open();
    const proxied = receipt({ keyFingerprint: F, keyCheck: C1 });
    const open = openCapture(proxied);
    await recordReceipts(store, [open], "proxy", { now: t });
    const [result] = await recordReceipts(store, [{ ...proxied, ...key }], "import", {
      now: t + 1,
    });
    expect(result).toMatchObject({ outcome: "conflict" });
    expect(result?.outcome === "conflict" && result.differences).toEqual(
      expect.arrayContaining(named),
    );
    expect(await readJob(store, proxied.jobId)).toMatchObject({
      keyFingerprint: F,
      keyCheck: C1,
      captureState: "open",
    });
    expect(await readConflicts(store)).toEqual([
      expect.objectContaining({ jobId: proxied.jobId, source: "import" }),
    ]);
  });
});
