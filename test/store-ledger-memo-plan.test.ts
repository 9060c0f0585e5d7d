import { describe, expect, it } from "vitest";
import { createLedgerStore } from "../src/store/ledger.js";
import { createTestStore } from "./support/store.js";

/**
 * A ledger review runs, per open lock of a vault, the statements that find the lines whose
 * memo names a job, all inside one write transaction: each must look the job up, not read
 * every lock or return of the vault (the range on `delta_units` of `ledger_lines_vault_memo`).
 */
describe("the ledger's lookups of lines by the job their memo names (SQLite)", () => {
  it("search by memo_job_id, never every debit or credit of the vault", () => {
    const store = createTestStore();
    const prepared: string[] = [];
    const prepare = store.sqlite.prepare.bind(store.sqlite);
    store.sqlite.prepare = ((text: string) => {
      prepared.push(text);
      return prepare(text);
    }) as typeof store.sqlite.prepare;
    createLedgerStore(store);
    const byMemoJob = prepared.filter(
      (t) => /\bmemo_job_id = [@:$]?\w/.test(t) && /SELECT/.test(t),
    );
    expect(byMemoJob.length).toBeGreaterThanOrEqual(3);
    for (const text of byMemoJob) {
      const names = Object.fromEntries([...text.matchAll(/[@:$](\w+)/g)].map((m) => [m[1], null]));
      const anonymous = (text.match(/\?/g) ?? []).map(() => null);
      const statement = prepare(`EXPLAIN QUERY PLAN ${text}`);
      const rows = (
        Object.keys(names).length > 0 ? statement.all(names) : statement.all(...anonymous)
      ) as { detail: string }[];
      const plan = rows.map((r) => r.detail).join("\n");
      expect(plan, text).not.toMatch(/ledger_lines_vault_memo \(vault=\? AND memo_kind=\?/);
      expect(plan, text).toMatch(/memo_job_id=\?/);
    }
  });
});
