import { describe, expect, it } from "vitest";
import { reportsStore } from "../src/store/reports.js";
import { type JobPlan, type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * Round 21: a stream read without its usage (`stream_options.include_usage` not asked) is priced
 * by nothing the recorder read: its charge is bounded by the lock only, and the job is
 * `partially_verified` (`usage_unknown`), which a nightly run passes. An operator charging such
 * a stream twice its price within the lock passed so, though its own jobs API answer named the
 * usage, whose price the charge was not (found by a deployed run: 6 of 14 overcharged streams).
 * The charge is now priced by the usage the jobs API names when the receipt has none.
 */

const h = useAdversaryHarness();

/** A stream whose receipt holds no usage, settled on chain as `plan` says; its jobs API answer names `named` completion tokens. */
function streamWithoutUsage(c: Scenario, plan: JobPlan, named: number | null) {
  const txs = h.op.honestJob(plan);
  c.record(plan, txs, { stream: true, completionTokens: null, totalTokens: null });
  c.jobsApi(plan.jobId, {
    status: "settled",
    credits_charged: Number(plan.charge / 10_000n),
    worker_address: plan.worker.address,
    on_chain: { escrow_tx: txs.escrowTx, settlement_tx: txs.settlementTx },
    ...(named === null ? {} : { usage: { prompt_tokens: 12, completion_tokens: named } }),
  });
}

describe("a stream read without its usage", () => {
  it("is a discrepancy when charged other than the price of the usage its jobs API names", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    // Charged the price of 2,000 completion tokens (the whole lock); the jobs API names 396.
    const plan = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
    expect(plan.remainder).toBe(0n);
    streamWithoutUsage(c, plan, 396);
    await c.verify();
    expect(await c.outcome(plan.jobId)).toEqual({
      verdict: "discrepancy",
      failing: ["charge.matches_price"],
    });
    const check = (await reportsStore(c.store).auditRows(plan.jobId))!.checks.find(
      (x) => x.name === "charge.matches_price",
    );
    expect(check?.reason).toBe(
      "the answer sent no usage, and the jobs API names 396 completion tokens, whose price the charge differs from",
    );
  });

  it("stays partially verified when charged the price of the usage its jobs API names, or when it names none", async () => {
    const c = await h.scenario();
    await c.pinKey(2);
    const named = h.op.plan({ keyIndex: 2, completionTokens: 396 });
    streamWithoutUsage(c, named, 396);
    const silent = h.op.plan({ keyIndex: 2, completionTokens: 2000 });
    streamWithoutUsage(c, silent, null);
    await c.verify();
    for (const plan of [named, silent]) {
      expect(await c.outcome(plan.jobId)).toEqual({ verdict: "partially_verified", failing: [] });
    }
    const unproven = async (plan: JobPlan) =>
      (await reportsStore(c.store).auditRows(plan.jobId))!.checks.find(
        (x) => x.name === "charge.matches_price",
      )?.reason;
    expect(await unproven(named)).toBe(
      "usage was not recorded: the charge is the price of the 396 completion tokens the jobs API names, bounded by the lock only",
    );
    expect(await unproven(silent)).toBe(
      "usage was not recorded: the charge is bounded by the lock only",
    );
  });
});
