import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { jobs } from "../src/db/schema.js";
import type { JobsApiAnswer } from "../src/recorder/jobs-api.js";
import { recordReceipt } from "../src/recorder/receipts.js";
import { createSettlementBackfill } from "../src/recorder/settlement-backfill.js";
import { migratedFileStore } from "./support/file-store.js";
import {
  address,
  capturedLogger,
  jobId,
  processingAnswer,
  signature,
} from "./support/recorder-fixtures.js";
import { holdWriteLockSync } from "./support/write-lock-holder.js";

/**
 * The settlement backfill on a database another connection holds the write lock of (a thread of
 * its own: not a shared-imports file).
 */

const apiKey = "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345";

const answer = (overrides: Partial<JobsApiAnswer> = {}): JobsApiAnswer => ({
  ...processingAnswer(),
  ...overrides,
});

describe("settlement backfill beside another writer", () => {
  it("warns, not errs, on a pass that finds the database's write lock held, and settles the job at a pass after it is let go", async () => {
    // A file database whose write lock another connection holds (another process's commit, or
    // on PostgreSQL a pool with no connection free in time): the claim meets SQLITE_BUSY.
    const { store, path } = migratedFileStore("backfill-busy-", 20);
    const id = jobId();
    recordReceipt(
      store,
      {
        jobId: id,
        escrowTx: signature(),
        settlementTx: null,
        worker: address(),
        creditsRemainingUnits: null,
        model: null,
        promptTokens: null,
        completionTokens: null,
        totalTokens: null,
      },
      "ingest",
      { now: 1_000 },
    );
    const settlement = signature();
    const { log, lines } = capturedLogger();
    const backfill = createSettlementBackfill({
      store,
      log,
      jobsApi: async () => answer({ status: "settled", settlementTx: settlement }),
      apiKey,
      intervalMs: 20,
    });
    const holder = holdWriteLockSync(path, 10_000);
    const until = async (seen: () => boolean) => {
      for (let i = 0; i < 500 && !seen(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(seen()).toBe(true);
    };
    const row = () => store.db.select().from(jobs).where(eq(jobs.jobId, id)).get();
    try {
      backfill.start();
      await until(() => lines.some((line) => line.includes("found the database busy")));
      holder.release();
      await holder.released;
      await until(() => row()?.backfillState === "done");
      expect(row()?.settlementTx).toBe(settlement);
    } finally {
      holder.release();
      await backfill.stop();
      store.close();
    }
    const levels = lines.map((line) => (JSON.parse(line) as { level: number }).level);
    // pino: 40 warn, 50 error. The busy passes warned; none erred.
    expect(levels).toContain(40);
    expect(levels.filter((level) => level >= 50)).toEqual([]);
  });
});
