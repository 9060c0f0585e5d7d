import { describe, expect, it } from "vitest";
import { buildStatement } from "../src/ledger/statement.js";
import { clockPause } from "./support/chain-clock.js";
import { nightlyOnChain, periodEdge, vaultReader } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * One theft split into many small payouts, each inside an honest job's settlement (beside the
 * remainder it returns to the vault) or alone under an honest job's settle memo, sent back to
 * back (several to a slot) and read two signatures to a page: every unit must be listed.
 */

const h = useAdversaryHarness();

/** The chain's clock, which the periods and the nightly runs' finality pauses move on. */
const now = () => h.op.now();

/** The nightly run of [from, now) reading `vault` two signatures a page, on the chain's clock. */
const nightlyOf = (c: Scenario, vault: string, from: number) =>
  nightlyOnChain(
    h,
    c,
    vaultReader(h, c, vault, h.rpc, { options: { pageSize: 2 }, now }),
    now,
    clockPause(h),
  ).nightly({ from, to: now() }, 15_000);

describe("a theft split across honest settlements and page boundaries", () => {
  it("lists every unit as an unreceipted debit, and the nightly run exits 1", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const first = await c.pinKey(2);
    const vault = first.vault;
    const thief = h.op.attackerAccount(0n);
    const from = periodEdge(h);
    let stolen = 0n;
    const jobs: string[] = [];
    for (let i = 0; i < 5; i++) {
      const plan = h.op.plan({ keyIndex: 2 });
      expect(plan.remainder).toBeGreaterThan(2_000n);
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const cut = 1_000n + BigInt(i);
      const settlement = h.op.send([
        ...h.op.settleIxs(plan),
        h.op.plainTransfer(vault, thief, cut),
      ]);
      stolen += cut;
      const alone = 7n + BigInt(i);
      h.op.send([h.op.transfer(vault, thief, alone), h.op.memo(`decentral:settle:${plan.jobId}`)]);
      stolen += alone;
      jobs.push(c.record(plan, { escrowTx, settlementTx: settlement.signature }));
    }
    // A settlement paying the vault's money elsewhere is no job's honest step.
    for (const o of await c.verdicts(...jobs)) expect(o.verdict).not.toBe("verified");

    await h.finalized();
    const run = await nightlyOf(c, vault, from);
    const inWindow = run.ledger?.unreceiptedDebits.filter((d) => !d.beforeWindow) ?? [];
    expect(inWindow).toHaveLength(10);
    expect(inWindow.reduce((sum, d) => sum - BigInt(d.amountUnits), 0n)).toBe(stolen);
    expect(run.exitCode).toBe(1);

    const statement = await buildStatement(
      c.store,
      { from, to: now(), vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    const s = statement.vaults[0]!;
    expect(s.unexplainedOutUnits).toBe(stolen);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("a payout inside an honest refund into the vault", () => {
  it("is an unreceipted debit of what it took, and the nightly run exits 1", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const first = await c.pinKey(1);
    const vault = first.vault;
    const thief = h.op.attackerAccount(0n);
    const from = periodEdge(h);
    // A timed-out job's whole lock comes back, and 250,000 of the vault goes out beside it.
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refund = h.op.send([...h.op.refundIxs(plan), h.op.plainTransfer(vault, thief, 250_000n)]);
    c.record(
      plan,
      { escrowTx, settlementTx: refund.signature },
      {
        httpStatus: 504,
        completionTokens: null,
        promptTokens: null,
        totalTokens: null,
        creditsRemainingUnits: null,
      },
    );
    // The refund carried a payout of the vault's money: no honest step.
    expect((await c.verdicts(plan.jobId))[0]?.verdict).not.toBe("verified");
    await h.finalized();
    const run = await nightlyOf(c, vault, from);
    expect(run.exitCode).toBe(1);
    const statement = await buildStatement(
      c.store,
      { from, to: now(), vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    const s = statement.vaults[0]!;
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: refund.signature, amountUnits: -250_000n }),
    ]);
    expect(s.unexplainedOutUnits).toBe(250_000n);
    expect(s.differenceUnits).toBe(0n);
  });
});
