import { describe, expect, it } from "vitest";
import { dialects, useDialectStores } from "./support/dialects.js";
import { periodEdge, statementAfterWindow } from "./support/ledger-periods.js";
import {
  type JobPlan,
  quickWindowProfile,
  type Scenario,
  useAdversaryHarness,
} from "./support/operator.js";

/**
 * The vault statements of jobs whose transactions another key's job shares, or whose receipt
 * names its lock and settlement in each other's place. The chain paid every lock out (worker,
 * treasury, the rest back home), so no statement may name a lock still out or a debit no job
 * explains: the job not owning a shared settlement or lock had its charge listed as an
 * `unreleased_lock`, and a lock named as the settlement was an `unreceipted_debit`.
 */
describe.each(dialects)("%s: statements of shared and swapped transactions", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });
  /** What each vault's statement names still out or unexplained, after the window. */
  async function findings(c: Scenario, from: number, plans: JobPlan[]) {
    const out: Record<string, unknown> = {};
    for (const p of plans) {
      const s = await statementAfterWindow(h, c, p.vault, from);
      out[p.jobId] = {
        unreleased: s.unreleasedLocks.map((u) => [u.jobId, u.outstandingUnits]),
        unexplained: s.unexplained.map((u) => [u.signature, u.amountUnits]),
      };
    }
    return out;
  }
  const clean = (plans: JobPlan[]) =>
    Object.fromEntries(plans.map((p) => [p.jobId, { unreleased: [], unexplained: [] }]));
  /** Both keys pinned, then a job of each, `a` first by id when `aFirst` (see `twoJobs`). */
  async function bothKeys(aFirst: boolean) {
    const c = (await h.scenario(quickWindowProfile)).recordOnChainClock();
    const from = periodEdge(h);
    await c.pinKey(1);
    await c.pinKey(2);
    const [a, b] = twoJobs(aFirst);
    return { c, from, a, b };
  }
  /** Two keys' jobs, `a` first by id when `aFirst` (it owns what both name). */
  function twoJobs(aFirst: boolean) {
    const a = { ...h.op.plan({ keyIndex: 1 }) };
    const b = { ...h.op.plan({ keyIndex: 2 }) };
    a.jobId = `job_${aFirst ? "0" : "z"}${a.jobId.slice(5)}`;
    b.jobId = `job_${aFirst ? "z" : "0"}${b.jobId.slice(5)}`;
    return [a, b] as const;
  }

  it.each([true, false])(
    "one settlement paying both in full (key 1's job first: %s)",
    async (aFirst) => {
      const { c, from, a, b } = await bothKeys(aFirst);
      const { escrowA, escrowB, shared } = h.op.sharedSettlement(a, b);
      c.record(a, { escrowTx: escrowA, settlementTx: shared });
      c.record(b, { escrowTx: escrowB, settlementTx: shared });
      await h.finalized();
      await c.verify();
      expect(await findings(c, from, [a, b])).toEqual(clean([a, b]));
    },
  );

  it.each([true, false])(
    "one lock for both, each settled on its own (key 1's job first: %s)",
    async (aFirst) => {
      const { c, from, a, b } = await bothKeys(aFirst);
      const { lock, settleA, settleB } = h.op.sharedLock(a, b);
      c.record(a, { escrowTx: lock, settlementTx: settleA });
      c.record(b, { escrowTx: lock, settlementTx: settleB });
      await h.finalized();
      await c.verify();
      expect(await findings(c, from, [a, b])).toEqual(clean([a, b]));
    },
  );

  it.each([true, false])(
    "a settlement naming both that pays one (key 1's job first: %s)",
    async (aFirst) => {
      const { c, from, a, b } = await bothKeys(aFirst);
      const { escrowA, escrowB, shared } = h.op.sharedSettlement(a, b, [a]);
      c.record(a, { escrowTx: escrowA, settlementTx: shared });
      c.record(b, { escrowTx: escrowB, settlementTx: shared });
      await h.finalized();
      await c.verify();
      // Escrow still holds all of b's lock: b's vault statement names it still out, and a's
      // names nothing, whichever job owns the settlement. Owned by b, the one payout was read as
      // b's: a's statement named 120,000 of a's lock out and b's 40,000, where the chain had
      // paid a in full and nothing of b.
      expect(await findings(c, from, [a, b])).toEqual({
        [a.jobId]: { unreleased: [], unexplained: [] },
        [b.jobId]: { unreleased: [[b.jobId, b.lock]], unexplained: [] },
      });
    },
  );

  // Three keys' jobs, each its own worker, each charged its whole lock (nothing comes home),
  // one settlement carrying the three settle memos and paying two: the statement named the
  // third job's lock out whichever went unpaid, and the unpaid job's lock nowhere.
  it.each([[[1, 2]], [[0, 2]], [[0, 1]]])(
    "a settlement naming three jobs, paying %s their whole locks",
    async (paid) => {
      const c = (await h.scenario(quickWindowProfile)).recordOnChainClock();
      const from = periodEdge(h);
      for (const k of [1, 2, 3]) await c.pinKey(k);
      const plans = h.op.wholeLockPlans([0, 1, 2]);
      const { escrows, shared } = h.op.sharedSettlementOf(
        plans,
        paid.map((i) => plans[i]!),
      );
      for (const [i, p] of plans.entries())
        c.record(p, { escrowTx: escrows[i]!, settlementTx: shared });
      await h.finalized();
      await c.verify();
      expect(await findings(c, from, plans)).toEqual(
        Object.fromEntries(
          plans.map((p, i) => [
            p.jobId,
            { unreleased: paid.includes(i) ? [] : [[p.jobId, p.lock]], unexplained: [] },
          ]),
        ),
      );
    },
  );

  // Locks of 120,000, 120,000 and 240,000, one worker, each charged whole: paying the third
  // alone moves the net balances paying the two others would, and was read so: the two
  // 120,000 locks named out nowhere though escrow still held them, the paid 240,000 named out.
  it.each([[[2]], [[0, 1]]])(
    "a settlement naming three jobs of one worker locking 120,000, 120,000 and 240,000, paying %s",
    async (paid) => {
      const c = (await h.scenario(quickWindowProfile)).recordOnChainClock();
      const from = periodEdge(h);
      for (const k of [1, 2, 3]) await c.pinKey(k);
      const plans = h.op.wholeLockPlans([0, 0, 0], [1000, 1000, 4000]);
      const { escrows, shared } = h.op.sharedSettlementOf(
        plans,
        paid.map((i) => plans[i]!),
      );
      for (const [i, p] of plans.entries())
        c.record(p, { escrowTx: escrows[i]!, settlementTx: shared });
      await h.finalized();
      await c.verify();
      expect(await findings(c, from, plans)).toEqual(
        Object.fromEntries(
          plans.map((p, i) => [
            p.jobId,
            { unreleased: paid.includes(i) ? [] : [[p.jobId, p.lock]], unexplained: [] },
          ]),
        ),
      );
    },
  );

  // Two keys' jobs of one worker, both locking 160,000, `a` charged its whole lock and `b`
  // 120,000: a settlement naming both that pays `a` alone sends nothing home. Read by net
  // balances, the owner was taken as paid: owned by `b`, a's statement named a's lock out and
  // b's none.
  it.each([true, false])(
    "a settlement naming two jobs of one worker and equal locks, paying the one charged its whole lock (key 1's job first: %s)",
    async (aFirst) => {
      const { c, from, a: first, b } = await bothKeys(aFirst);
      const a = { ...h.op.plan({ keyIndex: 1, completionTokens: 2000 }), jobId: first.jobId };
      expect(a.lock).toBe(b.lock);
      const { escrowA, escrowB, shared } = h.op.sharedSettlement(a, b, [a]);
      c.record(a, { escrowTx: escrowA, settlementTx: shared });
      c.record(b, { escrowTx: escrowB, settlementTx: shared });
      await h.finalized();
      await c.verify();
      expect(await findings(c, from, [a, b])).toEqual({
        [a.jobId]: { unreleased: [], unexplained: [] },
        [b.jobId]: { unreleased: [[b.jobId, b.lock]], unexplained: [] },
      });
    },
  );

  // The same two jobs of one key (one vault): paying `b` brings its remainder home into the
  // vault both locked from, so that credit tells nothing either, and the owner was read as paid.
  it.each([
    [true, "a"],
    [false, "a"],
    [true, "b"],
    [false, "b"],
  ] as const)(
    "a settlement naming two jobs of one key and equal locks, paying one (a first: %s, paying %s)",
    async (aFirst, which) => {
      const c = (await h.scenario(quickWindowProfile)).recordOnChainClock();
      const from = periodEdge(h);
      await c.pinKey(1);
      const a = { ...h.op.plan({ keyIndex: 1, completionTokens: 2000 }) };
      const b = { ...h.op.plan({ keyIndex: 1 }) };
      a.jobId = `job_${aFirst ? "0" : "z"}${a.jobId.slice(5)}`;
      b.jobId = `job_${aFirst ? "z" : "0"}${b.jobId.slice(5)}`;
      const [paid, unpaid] = which === "a" ? [a, b] : [b, a];
      const { escrowA, escrowB, shared } = h.op.sharedSettlement(a, b, [paid]);
      c.record(a, { escrowTx: escrowA, settlementTx: shared });
      c.record(b, { escrowTx: escrowB, settlementTx: shared });
      await h.finalized();
      await c.verify();
      const s = await statementAfterWindow(h, c, a.vault, from);
      expect(s.unreleasedLocks.map((u) => [u.jobId, u.outstandingUnits])).toEqual([
        [unpaid.jobId, unpaid.lock],
      ]);
      expect(s.unexplained).toEqual([]);
    },
  );

  // Two jobs of key 1 (two models): one net credit brings both remainders home, and the
  // vault's ledger files it under the job whose memo comes first. Split, the other job's
  // remainder was released by no line of its own: 10,000 of its lock read still out.
  it.each([
    [true, "both"],
    [false, "both"],
    [true, "a"],
    [false, "a"],
    [true, "b"],
    [false, "b"],
  ] as const)(
    "one settlement for two jobs of one key (a first: %s, paying %s)",
    async (aFirst, which) => {
      const c = (await h.scenario(quickWindowProfile)).recordOnChainClock();
      const from = periodEdge(h);
      await c.pinKey(1);
      const a = { ...h.op.plan({ keyIndex: 1 }) };
      const b = { ...h.op.plan({ keyIndex: 1, model: "phi-4-mini" }) };
      a.jobId = `job_${aFirst ? "0" : "z"}${a.jobId.slice(5)}`;
      b.jobId = `job_${aFirst ? "z" : "0"}${b.jobId.slice(5)}`;
      const paid = which === "both" ? [a, b] : which === "a" ? [a] : [b];
      const { escrowA, escrowB, shared } = h.op.sharedSettlement(a, b, paid);
      c.record(a, { escrowTx: escrowA, settlementTx: shared });
      c.record(b, { escrowTx: escrowB, settlementTx: shared });
      await h.finalized();
      await c.verify();
      const s = await statementAfterWindow(h, c, a.vault, from);
      expect(s.unreleasedLocks.map((u) => [u.jobId, u.outstandingUnits])).toEqual(
        [a, b].filter((p) => !paid.includes(p)).map((p) => [p.jobId, p.lock]),
      );
      expect(s.unexplained).toEqual([]);
    },
  );

  it("a receipt naming its lock as its settlement and its settlement as its lock", async () => {
    const c = (await h.scenario(quickWindowProfile)).recordOnChainClock();
    const from = periodEdge(h);
    await c.pinKey(3);
    const plan = h.op.plan({ keyIndex: 3 });
    const t = h.op.honestJob(plan);
    c.record(plan, { escrowTx: t.settlementTx, settlementTx: t.escrowTx });
    await h.finalized();
    await c.verify();
    expect(await findings(c, from, [plan])).toEqual(clean([plan]));
  });
});
