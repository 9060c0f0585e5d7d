import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { jobs } from "../src/db/schema.js";
import { createTestStore } from "./support/store.js";

describe("store", () => {
  it("applies the migrations with WAL-ready pragmas and foreign keys on", () => {
    const store = createTestStore();
    expect(store.sqlite.pragma("foreign_keys", { simple: true })).toBe(1);
    const tables = store.sqlite
      .prepare("select name from sqlite_master where type = 'table' order by name")
      .all()
      .map((r) => (r as { name: string }).name);
    expect(tables).toEqual(
      expect.arrayContaining(["jobs", "chain_transactions", "check_results", "verification_runs"]),
    );
  });

  it("round-trips amounts as bigint", () => {
    const store = createTestStore();
    const now = Date.now();
    store.db
      .insert(jobs)
      .values({
        jobId: "job_a",
        source: "ingest",
        receiptHash: "h",
        createdAt: now,
        recordedAt: now,
        updatedAt: now,
        creditsRemainingUnits: 99_920_000n,
      })
      .run();
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, "job_a")).get();
    expect(row?.creditsRemainingUnits).toBe(99_920_000n);
    expect(row?.verdict).toBe("pending");
    expect(row?.tags).toEqual({});
  });
});
