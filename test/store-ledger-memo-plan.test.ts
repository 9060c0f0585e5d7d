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

/**
 * Every statement the ledger prepares looks its rows up by an index: none reads every line of
 * every vault, or every decided job. A review runs the settlement's other namers' sum once per
 * open lock inside its write transaction; written so that SQLite could not use the partial index
 * on the jobs API's settlement, it read every decided job by verdict: 4.9 ms a lock at 2,600
 * decided jobs, SQLite's write lock held 1.3 s a round for one vault of 360 open locks (5 to 9 s
 * on a loaded host), so the nightly `verify` beside `serve` found the database locked and timed
 * out. The cursor's read scanned every ledger line (a column named bare, read as the line's own).
 */
describe("the ledger's statements (SQLite)", () => {
  it("read no table whole but the small ones, and never decided jobs by their verdict", () => {
    const store = createTestStore();
    const prepared = recordPrepared(store);
    createLedgerStore(store);
    // Tables of a row per vault or key, the rows of a JSON argument, and a subquery's own rows.
    const small =
      /^SCAN (CONSTANT ROW|credit_vaults|ledger_cursors|json_each|a VIRTUAL|\(subquery-\d+\))/;
    const whole = prepared.flatMap((text) =>
      sqlitePlanOf(store, text)
        .split("\n")
        .filter(
          (step) => (/^SCAN /.test(step) && !small.test(step)) || /jobs_verdict_created/.test(step),
        )
        .map((step) => `${step}  <=  ${text.replace(/\s+/g, " ").slice(0, 160)}`),
    );
    expect(whole).toEqual([
      // Signatures named past jobs' kept ones, held for the escrow scan, oldest first (a page).
      expect.stringMatching(/^SCAN p USING INDEX escrow_pending_unmarked .*AS creditVault/),
      // Jobs waiting for the escrow scan, by when they were listed, of the vault asked about:
      // not the rows a recorded job's own step holds (`named_by`), never pruned.
      expect.stringMatching(/^SCAN p USING INDEX escrow_pending_unmarked/),
      expect.stringMatching(/^SCAN escrow_pending\b/),
    ]);
  });

  /**
   * A row a recorded job's own step holds for another job (`named_by`) is never pruned, and an
   * operator's made-up memos in its own settlements can mark any number: the hour's drop, in
   * each escrow write's transaction, walked escrow_pending_listed through every one held before
   * the hour (0.33 to 0.59 s a write at a million rows).
   */
  it("drop the escrow entries past their hour through the index without the marked rows", () => {
    const store = createTestStore();
    const prepared = recordPrepared(store);
    createLedgerStore(store);
    const prunes = prepared.filter((t) => /DELETE FROM escrow_pending\b[^;]*listed_at </.test(t));
    expect(prunes).toHaveLength(2);
    for (const text of prunes) {
      expect(sqlitePlanOf(store, text), text).toMatch(
        /^SEARCH escrow_pending USING INDEX escrow_pending_unmarked \(listed_at<\?\)$/,
      );
    }
  });
});
