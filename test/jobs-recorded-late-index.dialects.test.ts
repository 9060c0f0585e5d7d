import type { SQL } from "drizzle-orm";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { SqliteStore, Store } from "../src/db/client.js";
import { jobs } from "../src/db/schema.js";
import {
  countedLate,
  datedNotCounted,
  jobInWindow,
  unclaimedOfWindow,
} from "../src/store/queue-rules.js";
import { createReceiptsStore } from "../src/store/receipts.js";
import { dialects, useDialectStores } from "./support/dialects.js";

const HOUR = 3_600_000;
const from = Date.UTC(2026, 10, 20);
const to = from + 24 * HOUR;

/** The plan of a window's query over `jobs`, its text, in either dialect. */
async function windowPlan(
  store: Store,
  where: SQL | undefined = jobInWindow(jobs, from, to),
): Promise<string> {
  const { sql: text, params } = (store.db as SqliteStore["db"])
    .select({ jobId: jobs.jobId })
    .from(jobs)
    .where(where)
    .toSQL();
  if (store.kind === "sqlite") {
    const rows = store.sqlite.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...params) as {
      detail: string;
    }[];
    return rows.map((r) => r.detail).join("\n");
  }
  // A seq scan is refused only to see which index the planner can take for each branch.
  const client = await store.pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SET LOCAL enable_seqscan = off");
    await client.query("SET LOCAL enable_indexscan = off");
    const rows = (await client.query(`EXPLAIN ${text}`, params)).rows;
    return rows.map((r: Record<string, string>) => r["QUERY PLAN"]).join("\n");
  } finally {
    await client.query("ROLLBACK");
    client.release();
  }
}

describe.each(dialects)("%s: the jobs a window judges for being recorded late", (dialect) => {
  const stores = useDialectStores(dialect);

  it("are read by an index that holds only jobs recorded after their date, which a proxied receipt is not", async () => {
    const store = await stores.open();
    expect(await windowPlan(store)).toMatch(/jobs_recorded_late/);

    // The proxy dates a receipt when it records it: no entry in that index for it.
    const receipts = createReceiptsStore(store);
    const now = from + HOUR;
    await receipts.record(
      [
        {
          jobId: "job_proxied",
          escrowTx: null,
          settlementTx: null,
          worker: null,
          creditsRemainingUnits: null,
          model: "m",
          promptTokens: 1,
          completionTokens: 1,
          totalTokens: 2,
          createdAt: now,
        },
      ],
      "proxy",
      { now },
    );
    const [row] = await (store.db as SqliteStore["db"])
      .select({ createdAt: jobs.createdAt, recordedAt: jobs.recordedAt })
      .from(jobs)
      .where(eq(jobs.jobId, "job_proxied"));
    // PostgreSQL's bigint comes back as text through this (SQLite) table's columns.
    expect([Number(row?.createdAt), Number(row?.recordedAt)]).toEqual([now, now]);
  });

  it("are counted and claimed for a nightly window through that index, not a scan of the window's jobs", async () => {
    const store = await stores.open();
    for (const where of [
      datedNotCounted(jobs, from, to),
      countedLate(jobs, from, to),
      unclaimedOfWindow(jobs, "date", from, to),
      unclaimedOfWindow(jobs, "late", from, to),
    ]) {
      const plan = await windowPlan(store, where);
      expect(plan).toMatch(/jobs_recorded_late/);
      expect(plan).not.toMatch(/jobs_created_at|SCAN jobs\b|Seq Scan/);
    }
  });
});
