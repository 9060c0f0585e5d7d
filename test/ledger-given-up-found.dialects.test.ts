import { describe, expect, it } from "vitest";
import type { FetchedTransaction } from "../src/store/ledger.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { createSignatureStore } from "../src/store/signatures.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { vaultStatementSince } from "./support/ledger-periods.js";
import { discrepancy, useAdversaryHarness } from "./support/operator.js";
import { queueColumnsOf, seedJobs, seedSignatures, T0 } from "./support/seed-queue.js";

/**
 * A second lock a jobs API answer names once while it is signed and not sent is given up as
 * never landed, and its job ends `dropped`. Sent later (a durable nonce keeps a transaction
 * valid that long), the ledger reads it as a debit of the vault: the job is judged again on its
 * own, without a reverify asked for by hand, and fails `escrow.single`; the statement's
 * unreceipted debit names the job once it is judged.
 */

const fetchedTx = (signature: string): FetchedTransaction => ({
  signature,
  slot: 900,
  blockTime: T0 / 1000,
  fee: 5_000n,
  succeeded: true,
  err: "null",
  facts: `{"signature": "${signature}", "slot": 900}`,
  raw: "{}",
});

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  it("reopens the judged and leased jobs holding a transaction it reads that was given up on", async () => {
    const store = await stores.open();
    const lease = { leaseOwner: "verifier-1", leaseUntil: T0 + 60_000 };
    await seedJobs(store, [
      { jobId: "kept", verdict: "dropped", escrowTx: "lock", conflictSignatures: ["second"] },
      { jobId: "leased", verdict: "pending", apiEscrowTx: "second", ...lease },
      { jobId: "open", verdict: "pending", nextVerifyAt: T0 + 5, settlementTx: "second" },
      { jobId: "pruned", verdict: "unverifiable", settlementTx: "refund" },
      { jobId: "waiting", verdict: "verified", conflictSignatures: ["landing"] },
    ]);
    const miss = { notFoundSince: T0, notFoundSlot: 7 };
    await seedSignatures(store, [
      { signature: "lock", state: "finalized", commitment: "finalized" },
      { signature: "second", state: "dropped", ...miss },
      { signature: "refund", state: "pruned", commitment: "finalized", notFoundCount: 3 },
      { signature: "landing", state: "landed", commitment: "confirmed" },
    ]);

    const now = T0 + 10_000;
    await createLedgerStore(store).recordReads(
      "Vault1111111111111111111111111111111111111",
      [],
      ["second", "refund", "landing"].map(fetchedTx),
      now,
    );

    const reopened = { verdict: "pending", nextVerifyAt: now, leaseOwner: null };
    expect(await queueColumnsOf(store, "kept")).toMatchObject(reopened);
    expect(await queueColumnsOf(store, "leased")).toMatchObject(reopened);
    expect(await queueColumnsOf(store, "pruned")).toMatchObject(reopened);
    expect(await queueColumnsOf(store, "open")).toMatchObject({ nextVerifyAt: T0 + 5 });
    expect(await queueColumnsOf(store, "waiting")).toMatchObject({ verdict: "verified" });
    const rows = await createSignatureStore(store).load(["second", "refund"]);
    expect(rows.get("second")).toMatchObject({ state: "finalized", slot: 900 });
    expect(rows.get("refund")).toMatchObject({ state: "finalized", slot: 900 });
  });

  it("judges again a job given up on once the ledger reads its second lock on chain", async () => {
    // Dropped after 30 slots, within the 150 a blockhash stays valid.
    const c = await h.scenario({ ...localnetProfile, dropAfterSlots: 30 });
    const from = Date.now() - 60_000;
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    const second = h.op.signOnly(h.op.lockIxs(plan));
    c.record(plan, txs);
    c.jobsApi(plan.jobId, {
      status: "settled",
      credits_charged: Number(plan.charge / 10_000n),
      worker_address: plan.worker.address,
      on_chain: { escrow_tx: second.signature, settlement_tx: txs.settlementTx },
    });
    c.honestJobsApi(plan, txs);
    await h.finalized();
    expect((await c.verdicts(plan.jobId))[0]?.verdict).toBe("dropped");

    h.op.sendSigned(second);
    const read = await vaultStatementSince(h, c, plan.vault, from);
    expect(read.unexplained.map((u) => [u.signature, u.jobId])).toEqual([[second.signature, null]]);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.single")]);
    const judged = await vaultStatementSince(h, c, plan.vault, from);
    expect(judged.unexplained.map((u) => [u.signature, u.memoJobId, u.jobId])).toEqual([
      [second.signature, plan.jobId, plan.jobId],
    ]);
  });
});
