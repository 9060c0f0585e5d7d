import { describe, expect, it } from "vitest";
import { buildStatement, type VaultStatement } from "../src/ledger/statement.js";
import { listingWithout, periodEdge, vaultReader } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * A finance user splits a stretch of a vault's history (a deposit, a partial and a full refund, a
 * settlement in a later period than its lock, a theft the first node left out of its listing)
 * into two periods at every edge, before and after the gap heals: the first closes where the
 * second opens, each figure and count is summed once, every gap of the parts is the whole's.
 */

const h = useAdversaryHarness();

async function vs(c: Scenario, vault: string, from: number, to: number): Promise<VaultStatement> {
  const s = await buildStatement(
    c.store,
    { from, to, vault },
    { profile: c.profile, graceSeconds: 0 },
  );
  return s.vaults[0]!;
}

const sum = ["depositsUnits", "locksUnits", "returnsUnits", "unexplainedOutUnits"] as const;

async function checkSplits(
  c: Scenario,
  vault: string,
  from: number,
  to: number,
  edges: number[],
  label: string,
) {
  const whole = await vs(c, vault, from, to);
  const problems: string[] = [];
  for (const m of edges) {
    if (m <= from || m >= to) continue;
    const first = await vs(c, vault, from, m);
    const second = await vs(c, vault, m, to);
    const at = `${label} ${new Date(m).toISOString()}`;
    const eq = (what: string, a: unknown, b: unknown) => {
      if (a !== b) problems.push(`${at} ${what}: ${a} vs ${b}`);
    };
    eq("opening2=closing1", second.openingUnits, first.closingOnChainUnits);
    eq("opening1", first.openingUnits, whole.openingUnits);
    eq("closing2", second.closingOnChainUnits, whole.closingOnChainUnits);
    for (const k of sum) eq(k, first[k] + second[k], whole[k]);
    eq(
      "difference",
      (first.differenceUnits ?? 0n) + (second.differenceUnits ?? 0n),
      whole.differenceUnits,
    );
    eq("locks count", first.counts.locks + second.counts.locks, whole.counts.locks);
    eq("returns count", first.counts.returns + second.counts.returns, whole.counts.returns);
    eq("deposit count", first.counts.deposits + second.counts.deposits, whole.counts.deposits);
    eq(
      "unexplained count",
      first.counts.unexplained + second.counts.unexplained,
      whole.counts.unexplained,
    );
    // A gap across the edge is listed by both (README: nothing says on which side it lies); its
    // money is one difference. Every gap of the parts is the whole's, and each of the whole's
    // is in a part.
    const key = (g: { beforeSignature: string | null }) => g.beforeSignature ?? "tail";
    const parts = new Set([...first.gaps, ...second.gaps].map(key));
    eq("gaps", [...parts].sort().join(" "), whole.gaps.map(key).sort().join(" "));
    if (whole.complete && !(first.complete && second.complete)) {
      problems.push(`${at} complete whole but not parts ${first.complete} ${second.complete}`);
    }
    if (!whole.complete && first.complete && second.complete) {
      problems.push(`${at} parts complete, whole not`);
    }
  }
  return { whole, problems };
}

describe("a vault's history with refunds, a late settlement and a gap that heals", () => {
  it("splits into two periods at every second: each closes where the next opens, sums once", async () => {
    const c = await h.scenario();
    const keyIndex = 2;
    await c.pinKey(keyIndex);
    const vault = h.op.vault(keyIndex);
    const thief = h.op.attackerAccount(0n);
    const times: number[] = [];
    const mark = () => times.push(h.op.now());
    const from = periodEdge(h);
    const openingOnChain = h.op.balance(vault);
    // A deposit, job A locked (settled in a later period), job B locked.
    h.op.send([
      h.op.transfer(h.op.attackerAccount(70_000n), vault, 70_000n, {
        authority: h.op.attacker.address,
      }),
    ]);
    mark();
    const a = h.op.plan({ keyIndex });
    const aLock = h.op.send(h.op.lockIxs(a)).signature;
    mark();
    const b = h.op.plan({ keyIndex });
    const bLock = h.op.send(h.op.lockIxs(b)).signature;
    mark();
    periodEdge(h);
    // B refunded in part (the rest stays out), then a theft the first node leaves out.
    h.op.send([
      h.op.transfer(h.op.accounts.escrowVault, vault, b.lock / 2n),
      h.op.memo(`decentral:refund:${b.jobId}`),
    ]);
    mark();
    const missing = h.op.send([h.op.transfer(vault, thief, 12_345n)]).signature;
    mark();
    periodEdge(h);
    // Job C locked and later refunded whole; A settled late.
    const cPlan = h.op.plan({ keyIndex });
    const cLock = h.op.send(h.op.lockIxs(cPlan)).signature;
    mark();
    const aSettle = h.op.send(h.op.settleIxs(a)).signature;
    mark();
    periodEdge(h);
    const cRefund = h.op.send(h.op.refundIxs(cPlan)).signature;
    mark();
    h.op.send([h.op.transfer(vault, thief, 1_000n)]);
    mark();
    periodEdge(h);
    const to = periodEdge(h);
    const closingOnChain = h.op.balance(vault);
    c.record(a, { escrowTx: aLock, settlementTx: aSettle });
    c.record(b, { escrowTx: bLock, settlementTx: null });
    c.record(cPlan, { escrowTx: cLock, settlementTx: cRefund });
    await c.flush();
    h.op.advanceClock(5_000);
    h.op.nextSlot();
    await h.finalized();
    await vaultReader(h, c, vault, listingWithout(h, missing)).syncVault(vault);

    const edges = new Set<number>();
    for (const t of times) {
      const s = Math.floor(t / 1000) * 1000;
      for (const d of [-1000, 0, 500, 1000]) edges.add(s + d);
    }
    const sorted = [...edges].sort((x, y) => x - y);
    const before = await checkSplits(c, vault, from, to, sorted, "gap");
    expect(before.whole.openingUnits).toBe(openingOnChain);
    expect(before.whole.closingOnChainUnits).toBe(closingOnChain);
    expect(before.whole.differenceUnits).toBe(-12_345n);
    expect(before.whole.gaps).toHaveLength(1);
    expect(before.problems).toEqual([]);

    // An honest node lists the gap's transaction: the theft is a debit once, the gap gone.
    await vaultReader(h, c, vault).syncVault(vault);
    const after = await checkSplits(c, vault, from, to, sorted, "healed");
    expect(after.whole.gaps).toEqual([]);
    expect(after.whole.differenceUnits).toBe(0n);
    expect(after.whole.unexplainedOutUnits).toBe(before.whole.unexplainedOutUnits + 12_345n);
    expect(after.whole.counts.unexplained).toBe(before.whole.counts.unexplained + 1);
    expect(after.whole.openingUnits).toBe(openingOnChain);
    expect(after.whole.closingOnChainUnits).toBe(closingOnChain);
    // B's half still out is one lock, whichever period is read.
    expect([...after.whole.locksNotDue, ...after.whole.unreleasedLocks]).toEqual([
      expect.objectContaining({ jobId: b.jobId, outstandingUnits: b.lock - b.lock / 2n }),
    ]);
    expect(after.problems).toEqual([]);
  });
});
