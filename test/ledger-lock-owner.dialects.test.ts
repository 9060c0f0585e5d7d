import { describe, expect, it } from "vitest";
import { dialects, useDialectStores } from "./support/dialects.js";
import { chainSecondAfter } from "./support/finality.js";
import { statementAfterWindow } from "./support/ledger-periods.js";
import { type JobPlan, quickWindowProfile, useAdversaryHarness } from "./support/operator.js";

/**
 * A lock is marked released once its job's paid-out covers it, and the statement's unreleased
 * locks read only the locks not released. When the payout that covered it becomes another
 * job's, the first job's paid-out drops, yet its lock stayed released: one payout released two
 * locks, and no statement named the one never paid out (the customer's money kept in escrow,
 * said nowhere). A job whose paid-out drops has its locks reviewed again (migration 0068,
 * PostgreSQL 0059). And a lock two receipts name is filed under the job its escrow memo names:
 * taken in the order the rows came, a replay recorded first had it, and the honest job's lock
 * was the replay's unreleased lock, its whole amount "still out".
 */
describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  it("names a lock whose only payout another job named first by id then owns", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(1);
    const from = await chainSecondAfter(h.world);
    const [a, j] = [h.op.plan({ keyIndex: 1 }), h.op.plan({ keyIndex: 1 })].sort((x, y) =>
      x.jobId < y.jobId ? -1 : 1,
    ) as [JobPlan, JobPlan];
    // J's lock, and one payout out of escrow of the whole lock with no memo.
    const lockJ = h.op.send(h.op.lockIxs(j)).signature;
    const payout = h.op.send(
      h.op.payoutIxs(j, { remainder: 0n, treasuryShare: j.treasuryShare + j.remainder }),
    ).signature;
    c.record(j, { escrowTx: lockJ, settlementTx: payout });
    await c.verify();
    expect((await statementAfterWindow(h, c, j.vault, from)).unreleasedLocks).toEqual([]);

    // A (earlier by id) locks too, and its receipt names the same payout: A owns it now.
    const lockA = h.op.send(h.op.lockIxs(a)).signature;
    c.record(a, { escrowTx: lockA, settlementTx: payout });
    await c.verify();
    const s = await statementAfterWindow(h, c, j.vault, from);
    // Two locks left the vault, one lock's worth left escrow, nothing came back: one is out.
    expect(s.locksUnits).toBe(2n * j.lock);
    expect(s.returnsUnits).toBe(0n);
    expect(s.unreleasedLocks.length + s.unexplained.length).toBeGreaterThanOrEqual(1);
  });

  it("names J's lock once A's own settlement, named first by J's receipt, is A's", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(2);
    const from = await chainSecondAfter(h.world);
    // Charged the whole lock: the settlement sends nothing back.
    const j = h.op.plan({ keyIndex: 2, completionTokens: 2000 });
    const a = h.op.plan({ keyIndex: 2, completionTokens: 2000 });
    expect(j.remainder).toBe(0n);
    const lockJ = h.op.send(h.op.lockIxs(j)).signature;
    const lockA = h.op.send(h.op.lockIxs(a)).signature;
    const settleA = h.op.send(h.op.settleIxs(a)).signature;
    // When A's answer came: its receipt is dated so however long J's rounds below take.
    const answeredA = h.op.now();
    // J's response names A's settlement; A's receipt comes later (a stream ending later).
    c.record(j, { escrowTx: lockJ, settlementTx: settleA });
    await c.verify();
    await statementAfterWindow(h, c, j.vault, from);
    c.record(a, { escrowTx: lockA, settlementTx: settleA }, {}, "ingest", answeredA);
    c.honestJobsApi(a, { escrowTx: lockA, settlementTx: settleA });
    await c.verify();
    expect((await c.outcome(a.jobId)).verdict).toBe("verified");
    expect((await c.outcome(j.jobId)).verdict).toBe("discrepancy");
    const s = await statementAfterWindow(h, c, j.vault, from);
    expect(s.locksUnits).toBe(2n * j.lock);
    expect(s.returnsUnits).toBe(0n);
    expect(s.unreleasedLocks.map((u) => u.signature)).toEqual([lockJ]);
  });

  it("files a lock a replay's receipt names first under the job its escrow memo names", async () => {
    const c = await h.scenario(quickWindowProfile);
    await c.pinKey(3);
    const from = await chainSecondAfter(h.world);
    const honest = h.op.plan({ keyIndex: 3 });
    const replay = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(honest);
    // The replay's receipt is recorded first (the honest stream ends later).
    c.record(replay, { escrowTx: txs.escrowTx, settlementTx: null });
    c.recordWithJobsApi(honest, txs);
    await c.verify();
    expect((await c.outcome(honest.jobId)).verdict).toBe("verified");
    expect((await c.outcome(replay.jobId)).failing).toContain("signatures.unique");
    // The honest job's lock, paid out and returned, is no unreleased lock of the replay's.
    const s = await statementAfterWindow(h, c, honest.vault, from);
    expect(s.unreleasedLocks).toEqual([]);
    expect(s.locksUnits).toBe(honest.lock);
  });
});
