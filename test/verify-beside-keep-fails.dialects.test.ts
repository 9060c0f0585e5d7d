import { describe, expect, it, vi } from "vitest";
import { dialects, useDialectStores } from "./support/dialects.js";
import { discrepancy, useAdversaryHarness } from "./support/operator.js";

/**
 * The verifier keeps a job's own step that paid out of escrow under another job's memo with
 * that other job (src/ledger/escrow-scan.ts, `judgeNamedBeside`): no escrow listing names it
 * when the other job's memo is written by a call. The keep is its own write beside the
 * verdicts': `failKeep` makes the next one fail, as a busy store or a killed process does.
 */
const failKeep = { next: false };

vi.mock("../src/store/ledger.js", async (importOriginal) => {
  const mod = await importOriginal<typeof import("../src/store/ledger.js")>();
  return {
    ...mod,
    createLedgerStore: (...args: Parameters<typeof mod.createLedgerStore>) => {
      const ledger = mod.createLedgerStore(...args);
      return {
        ...ledger,
        keepEscrowSteps(...keep: Parameters<typeof ledger.keepEscrowSteps>) {
          if (!failKeep.next) return ledger.keepEscrowSteps(...keep);
          failKeep.next = false;
          return Promise.reject(new Error("database is locked"));
        },
      };
    },
  };
});

describe.each(dialects)(
  "a second payout of one job inside another's settlement, its keep failing once, on %s",
  (dialect) => {
    const stores = useDialectStores(dialect);
    const h = useAdversaryHarness({ openStore: () => stores.open() });

    it("is kept at the verifier's next round: the job paid twice fails settlement.single", async () => {
      const c = await h.scenario();
      const s = c.paidInsideAnother((text) => h.op.memoByCall(text));
      c.recordWithJobsApi(s.a, { escrowTx: s.lockA, settlementTx: s.settleA });
      c.recordWithJobsApi(s.b, { escrowTx: s.lockB, settlementTx: s.settleB });
      await h.finalized();
      failKeep.next = true;
      await expect(c.verify()).rejects.toThrow("database is locked");
      expect(failKeep.next).toBe(false);
      // Made after A's verdict was written, a failed keep was never made again (A was final,
      // and no listing names the step for B): B stayed `verified`.
      expect(await c.verdicts(s.a.jobId, s.b.jobId)).toEqual([
        discrepancy("settlement.memo"),
        discrepancy("settlement.single"),
      ]);
    });
  },
);
