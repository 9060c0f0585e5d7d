import { describe, expect, it } from "vitest";
import { createLedgerStore } from "../src/store/ledger.js";
import { createReportsStore } from "../src/store/reports.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { createTestStore, recordPrepared, sqlitePlanOf } from "./support/store.js";

/**
 * A final verdict writes some 45 check rows per job, almost all passes. An index on
 * (outcome, name) put each in another leaf (one per check name) and took each replaced row out
 * of another: about 100 of a verdict's 150 WAL pages, for reads that never used it (failing
 * checks are read by job). The only read by outcome, the ledger's jobs whose credits.header
 * waits for it, goes through the partial index of those few rows.
 */
describe.each(dialects)("check_results indexes (%s)", (dialect) => {
  const stores = useDialectStores(dialect);

  it("index only what a read looks up: the job's checks, and those waiting for the ledger", async () => {
    const store = await stores.open();
    const names =
      store.kind === "postgres"
        ? (
            await store.pool.query(
              "SELECT indexname AS name FROM pg_indexes WHERE tablename = 'check_results'",
            )
          ).rows.map((r: { name: string }) => r.name)
        : (
            store.sqlite
              .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?")
              .all("check_results") as { name: string }[]
          ).map((r) => r.name);
    expect(names.filter((n) => !/^sqlite_autoindex_|_pk(ey)?$/.test(n))).toEqual([
      "check_results_header_waiting",
    ]);
    if (store.kind !== "postgres") return;
    // The ledger's read (src/store/pg/ledger.ts) names every term of the partial index: the
    // planner may take it (a seq scan is only refused here to see that it can).
    const client = await store.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("SET LOCAL enable_seqscan = off");
      const plan = (
        await client.query(
          `EXPLAIN SELECT j.job_id FROM check_results c JOIN jobs j ON j.job_id = c.job_id
           WHERE c.outcome = 'skip' AND c.name = 'credits.header' AND c.expected IS NOT NULL
             AND c.expected->>'vault' = $1 AND j.verdict IN ('verified')`,
          ["V"],
        )
      ).rows
        .map((r: Record<string, string>) => r["QUERY PLAN"])
        .join("\n");
      expect(plan).toMatch(/check_results_header_waiting/);
    } finally {
      await client.query("ROLLBACK");
      client.release();
    }
  });
});

/**
 * Joined from jobs, the read went through every final job by verdict (jobs_verdict_created). The
 * ledger's, inside its write: 0.2 s a vault over 50,000 jobs; from the waiting checks, 3 ms. The
 * reports' (`dataCompleteUntil`, twice a report, before and after the sums): 0.8 to 1.8 s a read
 * over a million jobs, so each report took seconds while its sums took milliseconds; 0.1 ms.
 */
describe.each([
  ["the ledger's", createLedgerStore],
  ["the reports'", createReportsStore],
] as const)("%s read of jobs whose credits.header waits for a vault (SQLite)", (_, create) => {
  it("starts from the waiting checks, never from every final job", () => {
    const store = createTestStore();
    const prepared = recordPrepared(store);
    create(store);
    const waiting = prepared.filter((t) => /FROM check_results c\b/.test(t) && /JOIN jobs/.test(t));
    expect(waiting).toHaveLength(1);
    const text = waiting[0]!;
    const plan = sqlitePlanOf(store, text);
    expect(plan, text).toMatch(/^SEARCH c USING INDEX check_results_header_waiting/);
    expect(plan, text).not.toMatch(/\bjobs_verdict_created\b|\bSCAN j\b/);
  });
});
