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
 * The vault statements of jobs whose receipt names its lock and settlement in each other's
 * place. The chain paid every lock out (worker, treasury, the rest back home), so no statement
 * may name a lock still out or a debit no job explains: a lock named as the settlement was an
 * `unreceipted_debit`.
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
