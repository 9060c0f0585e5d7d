import { describe, expect, it } from "vitest";
import type { FetchedTransaction } from "../src/store/ledger.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { RECEIPT_WRITER_LOCK_CLASS } from "../src/store/pg/group-commit.js";
import { createSignatureStore } from "../src/store/signatures.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { vaultStatementSince } from "./support/ledger-periods.js";
import { discrepancy, useAdversaryHarness } from "./support/operator.js";
import {
  queueColumnsOf,
  seedJobs,
  seedSignatures,
  T0,
  twoProcesses,
} from "./support/seed-queue.js";

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
  // The second lock is signed before the job is given up on and sent after: a blockhash valid
  // for 150 slots of 10 ms ran out on a loaded host before it was sent.
  const h = useAdversaryHarness({
    openStore: () => stores.open(),
    blockhashValiditySlots: 100_000,
  });

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
    // Dropped after 30 slots, within the slots a blockhash stays valid.
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

describe("the ledger on PostgreSQL beside a reverify of the job", () => {
  const stores = useDialectStores("postgres");

  it("takes the receipt writers' turn before the row of a transaction given up on", async () => {
    const [store, other] = await twoProcesses(stores);
    const client = await other.pool.connect();
    try {
      await seedJobs(store, [
        { jobId: "kept", verdict: "dropped", conflictSignatures: ["second"] },
      ]);
      await seedSignatures(store, [{ signature: "second", state: "dropped", notFoundSlot: 7 }]);
      // A reverify: the turn first, then the job's given-up rows.
      await client.query("BEGIN");
      await client.query("SELECT pg_advisory_xact_lock($1::int, 0)", [RECEIPT_WRITER_LOCK_CLASS]);
      const reading = createLedgerStore(store).recordReads(
        "Vault1111111111111111111111111111111111111",
        [],
        [fetchedTx("second")],
        T0 + 10_000,
      );
      await expect
        .poll(async () => {
          const waiting = await other.pool.query(
            "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
          );
          return waiting.rows[0].n;
        })
        .toBe(1);
      // Within PostgreSQL's deadlock check (1 s): a row the ledger held here was a circle.
      await client.query("SET LOCAL lock_timeout = '300ms'");
      await client.query("SELECT 1 FROM chain_transactions WHERE signature = 'second' FOR UPDATE");
      await client.query("COMMIT");
      await reading;
      expect(await queueColumnsOf(store, "kept")).toMatchObject({ verdict: "pending" });
    } finally {
      client.release();
      await other.close();
    }
  });
  it("lets a reverify of the job finish when a poll gives the transaction up between its two reads", async () => {
    const [store, other] = await twoProcesses(stores);
    const poll = await other.pool.connect();
    const reverify = await other.pool.connect();
    const waiting = async () => {
      const r = await other.pool.query(
        "SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND locktype <> 'advisory'",
      );
      return r.rows[0].n as number;
    };
    try {
      await seedJobs(store, [
        { jobId: "kept", verdict: "dropped", conflictSignatures: ["second"] },
      ]);
      await seedSignatures(store, [{ signature: "second", state: "unknown", notFoundSlot: 7 }]);
      // A status poll dropping the row, not committed yet: the ledger's plain read sees it
      // unknown, and its locked read waits for the poll.
      await poll.query("BEGIN");
      await poll.query(
        "UPDATE chain_transactions SET state = 'dropped' WHERE signature = 'second'",
      );
      const reading = createLedgerStore(store).recordReads(
        "Vault1111111111111111111111111111111111111",
        [],
        [fetchedTx("second")],
        T0 + 10_000,
      );
      await expect.poll(waiting).toBe(1);
      // A reverify of the job: the turn, then the row, behind the ledger's wait.
      await reverify.query("BEGIN");
      await reverify.query("SELECT pg_advisory_xact_lock($1::int, 0)", [RECEIPT_WRITER_LOCK_CLASS]);
      const reset = reverify.query(
        "SELECT 1 FROM chain_transactions WHERE signature = 'second' FOR UPDATE",
      );
      await expect.poll(waiting).toBe(2);
      await poll.query("COMMIT");
      // The ledger, holding the row dropped meanwhile and asking for the turn, closed a circle
      // PostgreSQL broke by failing the reverify (deadlock detected), which is not run again.
      await reset;
      await reverify.query("COMMIT");
      await reading;
      expect(await queueColumnsOf(store, "kept")).toMatchObject({ verdict: "pending" });
    } finally {
      poll.release();
      reverify.release();
      await other.close();
    }
  });
});
