import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { type Receipt, recordReceipts } from "../src/recorder/receipts.js";
import { createCustodyStore } from "../src/store/custody.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { receipt } from "./support/recorder-fixtures.js";
import { readJob, updateJob } from "./support/seed-recorder.js";

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

describe.each(dialects)("an open capture completed by an import line on %s", (dialect) => {
  const stores = useDialectStores(dialect);
  // The import line a proxy writes when it cannot record names the fingerprint and, from an
  // older proxy, no key check: completing the open capture wrote its fields over the proxy's,
  // the key check with them, and the fingerprint read as one key's again.
  it("keeps the proxy's key check when the line names the same fingerprint and none", async () => {
    const store = await stores.open();
    await recordReceipts(store, [receipt({ keyFingerprint: F, keyCheck: C1 })], "ingest", {
      now: t,
    });
    const second = receipt({ keyFingerprint: F, keyCheck: C2 });
    const open: Receipt = {
      ...second,
      settlementTx: null,
      captureState: "open",
      promptTokens: null,
      completionTokens: null,
      totalTokens: null,
    };
    await recordReceipts(store, [open], "proxy", { now: t });
    const { keyCheck: _, ...line } = second;
    await recordReceipts(store, [line], "import", { now: t + 1 });
    const row = await readJob(store, second.jobId);
    expect(row).toMatchObject({ keyCheck: C2, captureState: "complete" });
    const pins = await createCustodyStore(store, localnetProfile).pins([F], []);
    expect([...(pins.sharedKeys ?? [])]).toEqual([F]);
  });
});
