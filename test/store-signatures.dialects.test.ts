import pg from "pg";
import { describe, expect, it } from "vitest";
import type { TransactionFacts } from "../src/chain/transaction-facts.js";
import { openPostgres } from "../src/db/pg/client.js";
import { createSignatureStore, pairKey, type SignatureRow } from "../src/store/signatures.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { statementsSentBy } from "./support/pg-statements.js";
import { seedJobs, seedSignatures, T0, twoProcesses } from "./support/seed-queue.js";

const t = T0 + 60_000;

function factsOf(signature: string, slot: number, memo = "m"): TransactionFacts {
  return {
    signature,
    slot,
    blockTime: 1_793_000_000,
    succeeded: true,
    err: null,
    fee: 5000n,
    feePayer: "payer",
    version: "legacy",
    accounts: ["payer", "vault"],
    tokenChanges: [
      {
        account: "vault",
        owner: "owner",
        mint: "mint",
        programId: "token",
        decimals: 6,
        pre: 9_007_199_254_740_993n,
        post: 9_007_199_254_740_994n,
        delta: 1n,
      },
    ],
    solChanges: [],
    memos: [memo],
    programs: ["token"],
    tokenInstructions: [],
    innerInstructionsKnown: true,
  };
}

/** The columns the state machine moves. */
const stateOf = (row: SignatureRow | undefined) =>
  row && {
    state: row.state,
    commitment: row.commitment,
    slot: row.slot,
    statusCheckedAt: row.statusCheckedAt,
    notFoundCount: row.notFoundCount,
    notFoundSince: row.notFoundSince,
    notFoundSlot: row.notFoundSlot,
  };

describe.each(dialects)("the signature store on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("tracks each signature once, as unknown, keeping rows it already has", async () => {
    const store = await stores.open();
    await seedSignatures(store, [{ signature: "old", state: "landed", commitment: "confirmed" }]);
    const signatures = createSignatureStore(store);

    const rows = await signatures.track(["new", "old", "new"], t);
    expect([...rows.keys()].sort()).toEqual(["new", "old"]);
    expect(rows.get("new")).toMatchObject({ state: "unknown", firstSeenAt: t, notFoundCount: 0 });
    expect(rows.get("old")).toMatchObject({ state: "landed", firstSeenAt: T0 });
    expect((await signatures.load(["new", "nope"])).size).toBe(1);
  });

  it("records statuses: commitment only rises, finalized and pruned rows stay, the first miss is kept", async () => {
    const store = await stores.open();
    await seedSignatures(store, [
      { signature: "a" },
      { signature: "b", state: "landed", commitment: "confirmed", slot: 5 },
      { signature: "c", state: "finalized", commitment: "finalized", slot: 7 },
      { signature: "d", state: "pruned", commitment: "finalized", slot: 8 },
      { signature: "e", state: "landed", commitment: "processed", slot: 9, notFoundCount: 2 },
      { signature: "f" },
    ]);
    const signatures = createSignatureStore(store);
    const poll = { currentSlot: 1000, dropAfterSlots: 150, t };

    const rows = await signatures.recordStatuses(
      [
        { signature: "a", status: { slot: 20, confirmationStatus: "processed" } },
        { signature: "b", status: { slot: 21, confirmationStatus: "processed" } },
        { signature: "c", status: { slot: 22, confirmationStatus: "confirmed" } },
        { signature: "d", status: null },
        { signature: "e", status: { slot: 23, confirmationStatus: "finalized" } },
        { signature: "f", status: null },
        { signature: "missing", status: null },
      ],
      poll,
    );
    expect(stateOf(rows.get("a"))).toMatchObject({
      state: "landed",
      commitment: "processed",
      slot: 20,
    });
    expect(stateOf(rows.get("b"))).toMatchObject({
      state: "landed",
      commitment: "confirmed",
      slot: 21,
    });
    // Finalized and pruned rows are left as they were, unwritten, and returned as they are.
    expect(stateOf(rows.get("c"))).toMatchObject({
      state: "finalized",
      commitment: "finalized",
      slot: 7,
      statusCheckedAt: null,
    });
    expect(stateOf(rows.get("d"))).toMatchObject({ state: "pruned", statusCheckedAt: null });
    expect(stateOf(rows.get("e"))).toEqual({
      state: "finalized",
      commitment: "finalized",
      slot: 23,
      statusCheckedAt: t,
      notFoundCount: 0,
      notFoundSince: null,
      notFoundSlot: null,
    });
    expect(stateOf(rows.get("f"))).toEqual({
      state: "unknown",
      commitment: null,
      slot: null,
      statusCheckedAt: t,
      notFoundCount: 0,
      notFoundSince: t,
      notFoundSlot: 1000,
    });
    expect(rows.has("missing")).toBe(false);
  });

  it("writes nothing for a poll that changes nothing: a signature still unseen, or found as it was", async () => {
    const store = await stores.open();
    await seedSignatures(store, [{ signature: "unseen" }, { signature: "seen" }]);
    const signatures = createSignatureStore(store);
    const poll = (at: number, currentSlot: number | null) => ({
      currentSlot,
      dropAfterSlots: 150,
      t: at,
    });
    const seen = { slot: 20, confirmationStatus: "confirmed" as const };
    // The first miss is written without a slot when the current one is not known…
    await signatures.recordStatuses([{ signature: "unseen", status: null }], poll(t, null));
    const first = await signatures.recordStatuses(
      [
        { signature: "unseen", status: null },
        { signature: "seen", status: seen },
      ],
      poll(t + 1, 100),
    );
    // …and its slot by the next poll that knows it.
    expect(stateOf(first.get("unseen"))).toMatchObject({
      notFoundSince: t,
      notFoundSlot: 100,
      statusCheckedAt: t + 1,
    });
    expect(stateOf(first.get("seen"))).toMatchObject({ state: "landed", statusCheckedAt: t + 1 });
    const again = await signatures.recordStatuses(
      [
        { signature: "unseen", status: null },
        { signature: "seen", status: seen },
      ],
      poll(t + 2, 200),
    );
    // Returned as they are: nothing of either row was written, not even the time of the poll.
    expect(stateOf(again.get("unseen"))).toEqual({
      state: "unknown",
      commitment: null,
      slot: null,
      statusCheckedAt: t + 1,
      notFoundCount: 0,
      notFoundSince: t,
      notFoundSlot: 100,
    });
    expect(stateOf(again.get("seen"))).toMatchObject({
      state: "landed",
      commitment: "confirmed",
      slot: 20,
      statusCheckedAt: t + 1,
    });
    // What does change is written: a higher commitment, then the drop of the unseen one.
    const later = await signatures.recordStatuses(
      [
        { signature: "unseen", status: null },
        { signature: "seen", status: { slot: 20, confirmationStatus: "finalized" } },
      ],
      poll(t + 3, 251),
    );
    expect(stateOf(later.get("unseen"))).toMatchObject({
      state: "dropped",
      statusCheckedAt: t + 3,
    });
    expect(stateOf(later.get("seen"))).toMatchObject({
      state: "finalized",
      statusCheckedAt: t + 3,
    });
  });

  it("returns a row another process moved while this poll changed nothing of it", async () => {
    const store = await stores.open();
    await seedSignatures(store, [{ signature: "x" }]);
    const signatures = createSignatureStore(store);
    const seenBefore = await signatures.track(["x"], t);
    expect(seenBefore.get("x")?.state).toBe("unknown");
    // Meanwhile another verifier polled it, found it finalized and stored its transaction.
    await signatures.recordStatuses(
      [{ signature: "x", status: { slot: 9, confirmationStatus: "finalized" } }],
      { currentSlot: 50, dropAfterSlots: 150, t },
    );
    await signatures.recordFetched("x", { facts: factsOf("x", 9, "ok"), raw: { a: 1 } }, t);
    // This poll's answer changes nothing of the stored row; what it returns is that row.
    const rows = await signatures.recordStatuses(
      [{ signature: "x", status: { slot: 9, confirmationStatus: "finalized" } }],
      { currentSlot: 50, dropAfterSlots: 150, t: t + 1 },
    );
    expect(rows.get("x")).toMatchObject({ state: "finalized", commitment: "finalized" });
    expect(rows.get("x")?.facts).not.toBeNull();
  });

  it("reads a first miss's slot again when it is more than a drop window past the finalized slot, and drops from there", async () => {
    const store = await stores.open();
    await seedSignatures(store, [{ signature: "lied" }, { signature: "ahead" }]);
    const signatures = createSignatureStore(store);
    const missing = [
      { signature: "lied", status: null },
      { signature: "ahead", status: null },
    ];
    // One node's answer to the first miss's getSlot: a billion slots ahead of the chain.
    await signatures.recordStatuses(missing.slice(0, 1), {
      currentSlot: 1_000_000_500,
      dropAfterSlots: 150,
      t,
    });
    // An endpoint a little ahead of the next one read (within a window): kept as it is.
    await signatures.recordStatuses(missing.slice(1), { currentSlot: 600, dropAfterSlots: 150, t });
    const next = await signatures.recordStatuses(missing, {
      currentSlot: 500,
      dropAfterSlots: 150,
      t: t + 1,
    });
    expect(stateOf(next.get("lied"))).toMatchObject({ state: "unknown", notFoundSlot: 500 });
    expect(stateOf(next.get("ahead"))).toMatchObject({ state: "unknown", notFoundSlot: 600 });
    // The window is counted from the slot read again: dropped once the chain is past it.
    const past = await signatures.recordStatuses(missing, {
      currentSlot: 651,
      dropAfterSlots: 150,
      t: t + 2,
    });
    expect(past.get("lied")?.state).toBe("dropped");
    expect(past.get("ahead")?.state).toBe("unknown");
  });

  it("drops a signature unseen past the drop horizon, but not one seen confirmed", async () => {
    const store = await stores.open();
    await seedSignatures(store, [
      { signature: "unseen", notFoundCount: 1, notFoundSince: T0, notFoundSlot: 100 },
      { signature: "processed", state: "landed", commitment: "processed", notFoundSlot: 100 },
      { signature: "confirmed", state: "landed", commitment: "confirmed", notFoundSlot: 100 },
      { signature: "young", notFoundSlot: 200 },
    ]);
    const signatures = createSignatureStore(store);
    const missing = (s: string) => ({ signature: s, status: null });
    const all = ["unseen", "processed", "confirmed", "young"].map(missing);

    // At 250, exactly at the horizon of 100 + 150: nothing is dropped yet; without a current
    // slot, nothing ever is.
    await signatures.recordStatuses(all, { currentSlot: 250, dropAfterSlots: 150, t });
    await signatures.recordStatuses(all, { currentSlot: null, dropAfterSlots: 150, t });
    const rows = await signatures.recordStatuses(all, {
      currentSlot: 251,
      dropAfterSlots: 150,
      t: t + 1,
    });
    expect(stateOf(rows.get("unseen"))).toEqual({
      state: "dropped",
      commitment: null,
      slot: null,
      statusCheckedAt: t + 1,
      notFoundCount: 1,
      notFoundSince: T0,
      notFoundSlot: 100,
    });
    expect(rows.get("processed")?.state).toBe("dropped");
    // Not dropped: their rows did not change in the last poll, and are as the first miss left them.
    expect(rows.get("confirmed")).toMatchObject({ state: "landed", notFoundSince: t });
    expect(rows.get("young")).toMatchObject({
      state: "unknown",
      notFoundSince: t,
      notFoundSlot: 200,
    });
  });

  it("drops a signature seen confirmed once k endpoints agree it is missing past the horizon", async () => {
    // Under a quorum a status short of final is one endpoint's word: one "confirmed" for a
    // phantom kept its job waiting for ever, every nightly run exiting 2.
    const store = await stores.open();
    await seedSignatures(store, [
      { signature: "confirmed", state: "landed", commitment: "confirmed", notFoundSlot: 100 },
      { signature: "young", state: "landed", commitment: "confirmed", notFoundSlot: 200 },
    ]);
    const signatures = createSignatureStore(store);
    const all = ["confirmed", "young"].map((s) => ({ signature: s, status: null }));
    const poll = { currentSlot: 251, dropAfterSlots: 150, t, agreedMisses: true };
    const rows = await signatures.recordStatuses(all, poll);
    expect(rows.get("confirmed")).toMatchObject({ state: "dropped", commitment: "confirmed" });
    expect(rows.get("young")).toMatchObject({ state: "landed", notFoundSlot: 200 });
  });

  it("applies a signature polled twice in one call in order", async () => {
    const store = await stores.open();
    await seedSignatures(store, [{ signature: "x" }, { signature: "y" }]);
    const rows = await createSignatureStore(store).recordStatuses(
      [
        { signature: "x", status: null },
        { signature: "y", status: { slot: 3, confirmationStatus: "confirmed" } },
        { signature: "x", status: { slot: 4, confirmationStatus: "processed" } },
        { signature: "y", status: null },
        { signature: "x", status: null },
      ],
      { currentSlot: 10, dropAfterSlots: 150, t },
    );
    // x: a miss, found (the miss cleared), a miss again.
    expect(stateOf(rows.get("x"))).toMatchObject({
      state: "landed",
      commitment: "processed",
      notFoundSince: t,
      notFoundSlot: 10,
    });
    expect(stateOf(rows.get("y"))).toMatchObject({
      state: "landed",
      commitment: "confirmed",
      notFoundSince: t,
      notFoundSlot: 10,
    });
  });

  it("stores a fetched transaction once: the first to store it wins", async () => {
    const store = await stores.open();
    await seedSignatures(store, [{ signature: "s", state: "landed", commitment: "confirmed" }]);
    const signatures = createSignatureStore(store);

    const first = await signatures.recordFetched(
      "s",
      { facts: factsOf("s", 42, "first"), raw: { a: 1n } },
      t,
    );
    expect(first).toMatchObject({
      state: "finalized",
      commitment: "finalized",
      slot: 42,
      blockTime: 1_793_000_000,
      feeLamports: 5000n,
      succeeded: true,
      raw: '{"a":"1"}',
      fetchedAt: t,
    });
    const stored = first?.facts as { memos: string[]; tokenChanges: { pre: string }[] };
    expect(stored.memos).toEqual(["first"]);
    expect(stored.tokenChanges[0]?.pre).toBe("9007199254740993");
    const second = await signatures.recordFetched(
      "s",
      { facts: factsOf("s", 43, "second"), raw: "raw" },
      t + 1,
    );
    expect(second).toEqual(first);
    expect(
      await signatures.recordFetched("none", { facts: factsOf("none", 1), raw: "" }, t),
    ).toBeUndefined();
  });

  it("stores several fetched transactions in one call, keeping one another stored first", async () => {
    const store = await stores.open();
    await seedSignatures(
      store,
      ["c", "a", "b"].map((signature) => ({ signature, state: "landed", commitment: "confirmed" })),
    );
    const signatures = createSignatureStore(store);
    await signatures.recordFetched("b", { facts: factsOf("b", 7, "first"), raw: "first" }, t);
    const rows = await signatures.recordFetchedAll(
      ["c", "a", "b", "none"].map((signature, i) => ({
        signature,
        fetched: { facts: factsOf(signature, 20 + i, "batch"), raw: "batch" },
        t: t + 1,
      })),
    );
    expect([...rows.keys()].sort()).toEqual(["a", "b", "c"]);
    expect(rows.get("a")).toMatchObject({ state: "finalized", slot: 21, raw: "batch" });
    expect(rows.get("c")).toMatchObject({ state: "finalized", slot: 20, fetchedAt: t + 1 });
    expect(rows.get("b")).toMatchObject({ slot: 7, raw: "first", fetchedAt: t });
  });

  it("keeps the job a transaction's memos name, written with its facts or later, never changed", async () => {
    const store = await stores.open();
    await seedSignatures(store, [
      { signature: "fetched", state: "landed", commitment: "confirmed" },
      // Stored by the ledger reader, or before the column: facts without a memo job.
      { signature: "older", state: "finalized", facts: {} },
      { signature: "unfetched", state: "landed" },
    ]);
    const signatures = createSignatureStore(store);
    const facts = factsOf("fetched", 7, "decentral:escrow:job_a");
    await signatures.recordFetchedAll([
      { signature: "fetched", fetched: { facts, raw: "r" }, t, memoJob: "job_a" },
    ]);
    await signatures.recordMemoJobs([
      { signature: "older", memoJob: "job_b" },
      { signature: "fetched", memoJob: "job_c" },
      { signature: "unfetched", memoJob: "job_d" },
    ]);
    const rows = await signatures.load(["fetched", "older", "unfetched"]);
    expect(rows.get("fetched")?.memoJob).toBe("job_a");
    expect(rows.get("older")?.memoJob).toBe("job_b");
    expect(rows.get("unfetched")?.memoJob).toBeNull();
  });

  it("stores a transaction without an error as NULL, and a failed one's error as JSON", async () => {
    const store = await stores.open();
    await seedSignatures(store, [
      { signature: "ok", state: "landed", commitment: "confirmed" },
      { signature: "failed", state: "landed", commitment: "confirmed" },
    ]);
    const signatures = createSignatureStore(store);
    const err = { InstructionError: [0, { Custom: 1 }] };
    await signatures.recordFetched("ok", { facts: factsOf("ok", 7), raw: "r" }, t);
    const failed = await signatures.recordFetched(
      "failed",
      { facts: { ...factsOf("failed", 8), succeeded: false, err }, raw: "r" },
      t,
    );
    expect(failed).toMatchObject({ succeeded: false, err });
    const errIsNull = async (signature: string) => {
      const query = "SELECT err IS NULL AS missing FROM chain_transactions WHERE signature =";
      if (store.kind === "sqlite") {
        return store.sqlite.prepare(`${query} ?`).pluck().get(signature) === 1;
      }
      const { rows } = await store.pool.query<{ missing: boolean }>(`${query} $1`, [signature]);
      return rows[0]?.missing;
    };
    expect(await errIsNull("ok")).toBe(true);
    expect(await errIsNull("failed")).toBe(false);
  });

  it("counts fetch misses while nothing is stored and prunes a finalized one at the limit", async () => {
    const store = await stores.open();
    await seedSignatures(store, [
      { signature: "fin", state: "finalized", commitment: "finalized" },
      { signature: "landed", state: "landed", commitment: "confirmed" },
      { signature: "stored", state: "finalized", facts: { signature: "stored" } },
    ]);
    const signatures = createSignatureStore(store);
    const span = (at: number) => ({ t: at, minSpanMs: 0 });

    expect(await signatures.recordFetchMiss("fin", 2, span(t))).toMatchObject({
      state: "finalized",
      notFoundCount: 1,
      notFoundSince: t,
    });
    expect(await signatures.recordFetchMiss("fin", 2, span(t + 5))).toMatchObject({
      state: "pruned",
      notFoundCount: 2,
      notFoundSince: t,
    });
    expect(await signatures.recordFetchMiss("landed", 1, span(t))).toMatchObject({
      state: "landed",
      notFoundCount: 1,
    });
    expect(await signatures.recordFetchMiss("stored", 1, span(t))).toMatchObject({
      state: "finalized",
      notFoundCount: 0,
    });
  });

  it("prunes only once the misses span the time asked for, however many they are", async () => {
    const store = await stores.open();
    await seedSignatures(store, [
      { signature: "fin", state: "finalized", commitment: "finalized" },
    ]);
    const signatures = createSignatureStore(store);
    // A node lagging for a minute answers "not found" ten times in ten seconds: not pruned.
    for (let i = 0; i < 10; i++) {
      expect(
        await signatures.recordFetchMiss("fin", 2, { t: t + i * 1000, minSpanMs: 60_000 }),
      ).toMatchObject({ state: "finalized", notFoundCount: i + 1, notFoundSince: t });
    }
    expect(
      await signatures.recordFetchMiss("fin", 2, { t: t + 60_000, minSpanMs: 60_000 }),
    ).toMatchObject({ state: "pruned", notFoundCount: 11 });
  });

  it("lists the jobs naming a signature in any role, in id order, capped, with the full count", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "j3", escrowTx: "shared", settlementTx: "s3" },
      { jobId: "j1", settlementTx: "shared", apiSettlementTx: "shared" },
      { jobId: "j2", apiEscrowTx: "shared" },
      { jobId: "j0", apiSettlementTx: "shared", escrowTx: "e0" },
      { jobId: "j4", conflictSignatures: ["shared"] },
    ]);
    const signatures = createSignatureStore(store);

    const capped = await signatures.jobsNaming(["shared", "s3", "nobody", "shared"], 3);
    expect(capped.named).toEqual(
      new Map([
        ["shared", ["j0", "j1", "j2"]],
        ["s3", ["j3"]],
        ["nobody", []],
      ]),
    );
    expect(capped.totals).toEqual(
      new Map([
        ["shared", 4],
        ["s3", 1],
        ["nobody", 0],
      ]),
    );
    const wide = await signatures.jobsNaming(["shared"], 10);
    expect(wide.named.get("shared")).toEqual(["j0", "j1", "j2", "j3"]);
    expect(wide.totals.get("shared")).toBe(4);
    expect((await signatures.jobsNaming(["shared"], 4)).totals.get("shared")).toBe(4);
  });

  it("tells which pairs name each other, conflicting receipts included", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "a", escrowTx: "ea", apiSettlementTx: "sa" },
      { jobId: "b", conflictSignatures: ["cb1", "cb2"] },
      { jobId: "c", conflictSignatures: null },
    ]);
    const found = await createSignatureStore(store).namesAny([
      { jobId: "a", signature: "ea" },
      { jobId: "a", signature: "sa" },
      { jobId: "a", signature: "cb1" },
      { jobId: "b", signature: "cb2" },
      { jobId: "b", signature: "ea" },
      { jobId: "c", signature: "ea" },
      { jobId: "nobody", signature: "ea" },
    ]);
    expect(found).toEqual(new Set([pairKey("a", "ea"), pairKey("a", "sa"), pairKey("b", "cb2")]));
    expect(await createSignatureStore(store).namesAny([])).toEqual(new Set());
  });

  it("tells which pairs name each other with the job judged, when asked", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "judged", verdict: "discrepancy", conflictSignatures: ["kept"] },
      { jobId: "open", verdict: "pending", conflictSignatures: ["kept"] },
    ]);
    const pairs = [
      { jobId: "judged", signature: "kept" },
      { jobId: "open", signature: "kept" },
    ];
    const signatures = createSignatureStore(store);
    expect(await signatures.namesAny(pairs, { judged: true })).toEqual(
      new Set([pairKey("judged", "kept")]),
    );
    expect(await signatures.namesAny(pairs)).toEqual(
      new Set(pairs.map((p) => pairKey(p.jobId, p.signature))),
    );
  });
});

describe("the signature store on PostgreSQL, round trips", () => {
  const stores = useDialectStores("postgres");

  // The verifier stores each batch of transactions it fetched: a statement a transaction was a
  // round trip each, two a job, on every batch of every run.
  it("stores a batch of fetched transactions by one UPDATE, and one transaction by one statement", async () => {
    const store = await stores.open();
    if (store.kind !== "postgres") throw new Error("PostgreSQL only");
    await seedSignatures(
      store,
      ["c", "a", "b", "one"].map((signature) => ({
        signature,
        state: "landed",
        commitment: "confirmed",
      })),
    );
    const signatures = createSignatureStore(store);
    const err = { InstructionError: [0, { Custom: 1 }] };
    let rows = new Map<string, SignatureRow>();
    const batch = await statementsSentBy(async () => {
      rows = await signatures.recordFetchedAll([
        { signature: "c", fetched: { facts: factsOf("c", 20), raw: "c" }, t, memoJob: "job_c" },
        {
          signature: "a",
          fetched: {
            facts: { ...factsOf("a", 21), blockTime: null, succeeded: false, err },
            raw: "a",
          },
          t,
        },
        { signature: "b", fetched: { facts: factsOf("b", 22), raw: "b" }, t: t + 1 },
        // The same signature again: the first item stays, as one UPDATE an item kept it.
        { signature: "c", fetched: { facts: factsOf("c", 99), raw: "again" }, t: t + 2 },
      ]);
    });
    const kinds = batch.map((s) => s.text.trim().split(/\s+/)[0]!.toUpperCase());
    // BEGIN, the rows locked in signature order, the one UPDATE, COMMIT, the rows read back.
    expect(kinds).toEqual(["BEGIN", "SELECT", "UPDATE", "COMMIT", "SELECT"]);
    expect(rows.get("c")).toMatchObject({ slot: 20, raw: "c", memoJob: "job_c", fetchedAt: t });
    expect(rows.get("c")?.feeLamports).toBe(5000n);
    expect(rows.get("a")).toMatchObject({ slot: 21, blockTime: null, succeeded: false, err });
    expect(rows.get("b")).toMatchObject({ state: "finalized", slot: 22, fetchedAt: t + 1 });
    const stored = rows.get("b")?.facts as { tokenChanges: { pre: string }[] };
    expect(stored.tokenChanges[0]?.pre).toBe("9007199254740993");
    const { rows: nulls } = await store.pool.query<{ signature: string }>(
      "SELECT signature FROM chain_transactions WHERE err IS NULL AND facts IS NOT NULL ORDER BY 1",
    );
    expect(nulls.map((r) => r.signature)).toEqual(["b", "c"]);

    const one = await statementsSentBy(() =>
      signatures.recordFetched("one", { facts: factsOf("one", 30), raw: "one" }, t),
    );
    expect(one.map((s) => s.text.trim().split(/\s+/)[0]!.toUpperCase())).toEqual([
      "UPDATE",
      "SELECT",
    ]);
  });
});

describe("the signature store on PostgreSQL, written from two processes at once", () => {
  const stores = useDialectStores("postgres");

  const names = Array.from({ length: 60 }, (_, i) => `sig-${String(i).padStart(2, "0")}`);

  it("tracks overlapping sets in opposite orders without a deadlock, each row once", async () => {
    const [one, two] = await twoProcesses(stores);
    try {
      const [a, b] = [createSignatureStore(one), createSignatureStore(two)];
      const reversed = [...names].reverse();
      for (let round = 0; round < 5; round++) {
        const batch = names.map((n) => `${n}-${round}`);
        await Promise.all([
          a.track(batch, t),
          b.track([...batch].reverse(), t + 1),
          a.track(
            reversed.map((n) => `${n}-${round}`),
            t + 2,
          ),
        ]);
      }
      const rows = await a.load(names.flatMap((n) => [0, 1, 2, 3, 4].map((r) => `${n}-${r}`)));
      expect(rows.size).toBe(names.length * 5);
    } finally {
      await two.close();
    }
  });

  it("records the first miss once under polls racing over the same signatures in opposite orders", async () => {
    const [one, two] = await twoProcesses(stores);
    try {
      const [a, b] = [createSignatureStore(one), createSignatureStore(two)];
      await a.track(names, t);
      const polls = 6;
      const poll = { currentSlot: 10, dropAfterSlots: 1000, t };
      const missing = names.map((signature) => ({ signature, status: null }));
      await Promise.all(
        Array.from({ length: polls }, (_, i) =>
          (i % 2 === 0 ? a : b).recordStatuses(
            i % 2 === 0 ? missing : [...missing].reverse(),
            poll,
          ),
        ),
      );
      const rows = await a.load(names);
      for (const name of names) {
        expect(rows.get(name)).toMatchObject({ notFoundSince: t, notFoundSlot: 10 });
      }
    } finally {
      await two.close();
    }
  });

  it("records found statuses racing over the same signatures in opposite orders as if serial", async () => {
    const [one, two] = await twoProcesses(stores);
    try {
      const [a, b] = [createSignatureStore(one), createSignatureStore(two)];
      await a.track(names, t);
      const found = (commitment: "processed" | "confirmed", slot: number) =>
        names.map((signature) => ({ signature, status: { slot, confirmationStatus: commitment } }));
      const poll = { currentSlot: 10, dropAfterSlots: 1000, t };
      await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          (i % 2 === 0 ? a : b).recordStatuses(
            i % 2 === 0 ? found("confirmed", i) : found("processed", i).reverse(),
            poll,
          ),
        ),
      );
      // Commitment only rises, whatever order the polls landed in.
      for (const row of (await a.load(names)).values()) {
        expect(row).toMatchObject({ state: "landed", commitment: "confirmed", notFoundCount: 0 });
      }
    } finally {
      await two.close();
    }
  });

  it("counts every fetch miss from two processes and stores one fetched transaction", async () => {
    const [one, two] = await twoProcesses(stores);
    try {
      const [a, b] = [createSignatureStore(one), createSignatureStore(two)];
      await seedSignatures(one, [
        { signature: "miss", state: "finalized", commitment: "finalized" },
        { signature: "fetch", state: "landed" },
      ]);
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          (i % 2 === 0 ? a : b).recordFetchMiss("miss", 100, { t, minSpanMs: 0 }),
        ),
      );
      expect((await a.load(["miss"])).get("miss")?.notFoundCount).toBe(20);

      const stored = await Promise.all([
        a.recordFetched("fetch", { facts: factsOf("fetch", 1, "from-a"), raw: "a" }, t),
        b.recordFetched("fetch", { facts: factsOf("fetch", 2, "from-b"), raw: "b" }, t),
      ]);
      expect(stored[0]).toEqual(stored[1]);
      const row = (await a.load(["fetch"])).get("fetch");
      expect([
        { slot: 1, raw: "a" },
        { slot: 2, raw: "b" },
      ]).toContainEqual({ slot: row?.slot, raw: row?.raw });
    } finally {
      await two.close();
    }
  });
});

describe("the signature store on PostgreSQL, three processes polling one row set", () => {
  const stores = useDialectStores("postgres");

  it("writes no row a poll did not lock, so a row moved between its lock and its writes cannot deadlock it", async () => {
    const [a, b] = await twoProcesses(stores);
    const d = openPostgres(stores.lastUrl, { poolSize: 2, statementTimeoutMs: 30_000 });
    try {
      await a.pool.query(
        `INSERT INTO chain_transactions (signature, state, first_seen_at, not_found_since, not_found_slot)
         VALUES ('sig-x', 'unknown', $1, $2, 100), ('sig-y', 'unknown', $1, NULL, NULL)`,
        [t, t - 10_000],
      );
      // Process A pauses right after its lock statement: only sig-y (its first miss) is locked.
      let resume!: () => void;
      const paused = new Promise<void>((r) => {
        resume = r;
      });
      let lockTaken!: () => void;
      const locked = new Promise<void>((r) => {
        lockTaken = r;
      });
      // The first lock statement sent from now on is A's: it alone is paused.
      let armed = true;
      const query = pg.Client.prototype.query;
      pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
        const [config] = args;
        const text = typeof config === "string" ? config : (config as { text?: string }).text;
        const result = (query as (...args: unknown[]) => unknown).apply(this, args);
        if (armed && text?.includes("FOR UPDATE")) {
          armed = false;
          return (result as Promise<unknown>).then(async (r) => {
            lockTaken();
            await paused;
            return r;
          });
        }
        return result;
      } as typeof query;
      const poll = { currentSlot: 150, dropAfterSlots: 1000, t };
      try {
        const pollA = createSignatureStore(a).recordStatuses(
          [
            { signature: "sig-x", status: null },
            { signature: "sig-y", status: null },
          ],
          poll,
        );
        await Promise.race([
          locked,
          new Promise((_, reject) =>
            setTimeout(() => reject(new Error("the poll sent no lock statement")), 10_000),
          ),
        ]);
        // B finds sig-x at processed meanwhile: a miss of it would now change its row.
        await createSignatureStore(b).recordStatuses(
          [{ signature: "sig-x", status: { slot: 120, confirmationStatus: "processed" } }],
          { ...poll, t: t + 1 },
        );
        // D locks sig-x, then waits for sig-y, which A holds.
        const pollD = createSignatureStore(d).recordStatuses(
          [
            { signature: "sig-x", status: { slot: 120, confirmationStatus: "confirmed" } },
            { signature: "sig-y", status: { slot: 121, confirmationStatus: "confirmed" } },
          ],
          { ...poll, t: t + 2 },
        );
        // Only once D waits on A's lock does A go on.
        const waiting = async () =>
          (
            await b.pool.query(
              `SELECT count(*)::int AS n FROM pg_stat_activity
               WHERE datname = current_database() AND wait_event_type = 'Lock'`,
            )
          ).rows[0].n as number;
        for (let i = 0; i < 200 && (await waiting()) === 0; i++) {
          await new Promise((r) => setTimeout(r, 25));
        }
        expect(await waiting()).toBe(1);
        resume();
        // Had A written sig-x, which D holds, each would wait on the other (40P01).
        await Promise.all([pollA, pollD]);
        // A's miss of sig-y came first, then D's status: both rows end landed and confirmed.
        const rows = await createSignatureStore(b).load(["sig-x", "sig-y"]);
        expect(rows.get("sig-x")).toMatchObject({ state: "landed", commitment: "confirmed" });
        expect(rows.get("sig-y")).toMatchObject({
          state: "landed",
          commitment: "confirmed",
          notFoundSince: null,
        });
      } finally {
        pg.Client.prototype.query = query;
        resume();
      }
    } finally {
      await Promise.all([b.close(), d.close()]);
    }
  });
});

describe("the signature store on PostgreSQL, over a large table", () => {
  const stores = useDialectStores("postgres");

  it("reads and locks a poll's rows through the primary key, not a scan of the table", async () => {
    const store = await stores.open();
    if (store.kind !== "postgres") throw new Error("PostgreSQL only");
    await store.pool.query(
      `INSERT INTO chain_transactions (signature, first_seen_at)
       SELECT 'bulk-' || i, ${T0} FROM generate_series(1, 20000) AS i`,
    );
    await store.pool.query("ANALYZE chain_transactions");
    const signatures = createSignatureStore(store);
    const polled = ["bulk-7", "bulk-70", "bulk-700", "bulk-7000"];
    await signatures.track(polled, t);
    const sent = await statementsSentBy(() =>
      signatures.recordStatuses(
        [
          { signature: "bulk-7", status: null },
          { signature: "bulk-70", status: { slot: 5, confirmationStatus: "confirmed" } },
          { signature: "bulk-700", status: null },
          { signature: "bulk-7000", status: { slot: 6, confirmationStatus: "processed" } },
        ],
        { currentSlot: 100, dropAfterSlots: 150, t },
      ),
    );
    const touching = sent.filter((s) => /chain_transactions/i.test(s.text));
    expect(touching.length).toBeGreaterThanOrEqual(3);
    const client = await store.pool.connect();
    try {
      await client.query("BEGIN");
      for (const { text, values } of touching) {
        const rows = (await client.query(`EXPLAIN ${text}`, values)).rows;
        const plan = rows.map((r: Record<string, string>) => r["QUERY PLAN"]).join("\n");
        expect(plan, text).not.toMatch(/Seq Scan on chain_transactions/);
      }
    } finally {
      await client.query("ROLLBACK");
      client.release();
    }
  });
});
