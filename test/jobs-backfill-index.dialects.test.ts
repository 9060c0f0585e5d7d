import { describe, expect, it } from "vitest";
import type { SqliteStore, Store } from "../src/db/client.js";
import { createBackfillStore } from "../src/store/backfill.js";
import { createReceiptsStore } from "../src/store/receipts.js";
import { dialects, useDialectStores } from "./support/dialects.js";

const now = Date.UTC(2026, 11, 1, 12);

/** A streamed job the proxy recorded without its settlement: the backfill asks about it. */
function stream(jobId: string) {
  return {
    jobId,
    escrowTx: null,
    settlementTx: null,
    worker: null,
    creditsRemainingUnits: null,
    model: "m",
    promptTokens: null,
    completionTokens: null,
    totalTokens: null,
    stream: true,
    createdAt: now,
  };
}

/** The plan of the backfill's read of the jobs due, in either dialect. */
async function duePlan(store: Store): Promise<string> {
  const text = `SELECT job_id FROM jobs WHERE backfill_state = 'pending'
    AND backfill_next_at <= ${now} ORDER BY backfill_next_at LIMIT 10`;
  if (store.kind === "sqlite") {
    const rows = store.sqlite.prepare(`EXPLAIN QUERY PLAN ${text}`).all() as { detail: string }[];
    return rows.map((r) => r.detail).join("\n");
  }
  const client = await store.pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SET LOCAL enable_seqscan = off");
    const rows = (await client.query(`EXPLAIN ${text}`)).rows;
    return rows.map((r: Record<string, string>) => r["QUERY PLAN"]).join("\n");
  } finally {
    await client.query("ROLLBACK");
    client.release();
  }
}

/** Entries of the index `jobs_backfill`: its leaf cells (SQLite), its definition (PostgreSQL). */
async function backfillIndexEntries(store: Store): Promise<number> {
  if (store.kind === "sqlite") {
    const cells = (store as SqliteStore).sqlite
      .prepare("SELECT sum(ncell) FROM dbstat WHERE name = 'jobs_backfill' AND pagetype = 'leaf'")
      .pluck()
      .get();
    return Number(cells ?? 0);
  }
  // The rows its own term admits, whatever that term is.
  const client = await store.pool.connect();
  try {
    const def = await client.query<{ indexdef: string }>(
      "SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_backfill'",
    );
    const where = /WHERE (.*)$/.exec(def.rows[0]?.indexdef ?? "")?.[1] ?? "false";
    const n = await client.query<{ n: string }>(`SELECT count(*) AS n FROM jobs WHERE ${where}`);
    return Number(n.rows[0]?.n);
  } finally {
    client.release();
  }
}

describe.each(dialects)("%s: the settlement backfill's index", (dialect) => {
  const stores = useDialectStores(dialect);

  it("holds only the jobs still asked about: one the backfill gave up on or is done with leaves it", async () => {
    const store = await stores.open();
    expect(await duePlan(store)).toMatch(/jobs_backfill/);
    await createReceiptsStore(store).record([stream("job_a"), stream("job_b")], "proxy", { now });
    expect(await backfillIndexEntries(store)).toBe(2);
    const backfill = createBackfillStore(store);
    await backfill.giveUp("job_a", now + 1);
    // Every streamed job is done with in time: an entry each, ever more, none of them read.
    expect(await backfillIndexEntries(store)).toBe(1);
    expect((await backfill.due(now + 60_000, 10)).map((j) => j.jobId)).toEqual(["job_b"]);
  });
});
