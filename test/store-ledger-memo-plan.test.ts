import { describe, expect, it } from "vitest";
import { createLedgerStore } from "../src/store/ledger.js";
import { createTestStore, recordPrepared, sqlitePlanOf } from "./support/store.js";

/**
 * A ledger review runs, per open lock of a vault, the statements that find the lines whose
 * memo names a job, all inside one write transaction: each must look the job up, not read
 * every lock or return of the vault (the range on `delta_units` of `ledger_lines_vault_memo`).
 */
describe("the ledger's lookups of lines by the job their memo names (SQLite)", () => {
  it("search by memo_job_id, never every debit or credit of the vault", () => {
    const store = createTestStore();
    const prepared = recordPrepared(store);
    createLedgerStore(store);
    const byMemoJob = prepared.filter(
      (t) => /\bmemo_job_id = [@:$]?\w/.test(t) && /SELECT/.test(t),
    );
    expect(byMemoJob.length).toBeGreaterThanOrEqual(3);
    for (const text of byMemoJob) {
      const plan = sqlitePlanOf(store, text);
      expect(plan, text).not.toMatch(/ledger_lines_vault_memo \(vault=\? AND memo_kind=\?/);
      expect(plan, text).toMatch(/memo_job_id=\?/);
    }
  });
});
