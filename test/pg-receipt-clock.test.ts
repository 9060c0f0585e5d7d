import { sql } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { recordReceipt } from "../src/recorder/receipts.js";
import { createSettlementBackfill } from "../src/recorder/settlement-backfill.js";
import { createLockStore } from "../src/store/locks.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { processingAnswer, receipt } from "./support/recorder-fixtures.js";

/**
 * A recording host whose wall clock is minutes off the PostgreSQL server's. The verifiers judge
 * due times and the jobs API wait on the server's clock: the receipt writer must record on it
 * too, or the wait (`JOBS_API_WAIT_MS` from `recorded_at`) and whether a job is due yet mean
 * something else on every host.
 */

const database = usePostgresDatabase({ migrated: true });
const MINUTES_3 = 180_000;
let store: PgStore;

beforeAll(async () => {
  store = openPostgres(database.url, { poolSize: 2, statementTimeoutMs: 30_000 });
});
afterAll(async () => {
  await store.close();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** This process's wall clock `shift` ms off from here on (the database's is not). */
function hostClockOff(shift: number) {
  const real = Date.now.bind(Date);
  vi.spyOn(Date, "now").mockImplementation(() => real() + shift);
}

const serverNow = () => createLockStore(store).sharedNow(0);

async function row(jobId: string) {
  const rows = await store.db.execute<{ recorded: string; backfill: string; due: string }>(
    sql`SELECT recorded_at::text AS recorded, backfill_next_at::text AS backfill,
      next_verify_at::text AS due FROM jobs WHERE job_id = ${jobId}`,
  );
  const found = rows.rows[0]!;
  return {
    recordedAt: Number(found.recorded),
    backfillNextAt: Number(found.backfill),
    due: Number(found.due),
  };
}

describe("a receipt recorded on PostgreSQL by a host whose clock is off", () => {
  for (const [name, shift] of [
    ["3 minutes ahead", MINUTES_3],
    ["3 minutes behind", -MINUTES_3],
  ] as const) {
    it(`by a host ${name}, the jobs API wait starts at the server's time of recording`, async () => {
      const r = receipt({ settlementTx: null, captureState: "complete" });
      const before = await serverNow();
      hostClockOff(shift);
      await recordReceipt(store, r, "proxy", { now: Date.now(), backfillDelayMs: 20_000 });
      vi.restoreAllMocks();
      const after = await serverNow();
      const job = await row(r.jobId);
      // A clean verdict waits for the answer until recorded_at + JOBS_API_WAIT_MS, judged on
      // the server's clock: by the host's, 3 minutes longer (ahead) or not at all (behind).
      expect(job.recordedAt).toBeGreaterThanOrEqual(before - 1_000);
      expect(job.recordedAt).toBeLessThanOrEqual(after + 1_000);
      // The backfill's first ask is the proxy's grace later on that clock too.
      expect(job.backfillNextAt - job.recordedAt).toBe(20_000);
    });
  }

  it("by a host 3 minutes ahead, a job a verifier put off is due once its receipt gains a signature", async () => {
    const r = receipt({ settlementTx: null, captureState: "open" });
    await recordReceipt(store, r, "proxy");
    // As a verifier leaves a new job it will poll at its next cell: pending, never attempted,
    // no lease, due a while later on the server's clock.
    const putOffUntil = (await serverNow()) + 60_000;
    await store.db.execute(
      sql`UPDATE jobs SET next_verify_at = ${putOffUntil} WHERE job_id = ${r.jobId}`,
    );
    hostClockOff(MINUTES_3);
    await recordReceipt(
      store,
      { ...r, captureState: "complete", settlementTx: receipt().escrowTx },
      "proxy",
      { now: Date.now() },
    );
    vi.restoreAllMocks();
    // By the host's clock the job was due already (its look 1 minute off, the host 3 ahead),
    // so it was not reopened: its settlement was judged a minute late.
    expect((await row(r.jobId)).due).toBeLessThanOrEqual(await serverNow());
  });

  it("a backfill host 3 minutes behind asks when the job is due on the server's clock", async () => {
    const r = receipt({ settlementTx: null, captureState: "complete" });
    // Its first ask due a second ago on the server's clock (the proxy's grace has passed).
    await recordReceipt(store, r, "proxy", {
      now: (await serverNow()) - 21_000,
      backfillDelayMs: 20_000,
    });
    const asked: string[] = [];
    hostClockOff(-MINUTES_3);
    const backfill = createSettlementBackfill({
      store,
      log: createLogger({ level: "silent" }),
      apiKey: "key",
      baseDelayMs: 30_000,
      jobsApi: async (jobId) => {
        asked.push(jobId);
        return processingAnswer();
      },
    });
    await backfill.runOnce();
    vi.restoreAllMocks();
    // By its own clock the ask was 3 minutes off: the jobs API wait (60 s) had run out first.
    expect(asked).toContain(r.jobId);
    // Its next ask is the delay later on the server's clock too.
    const next = (await row(r.jobId)).backfillNextAt;
    expect(Math.abs(next - ((await serverNow()) + 30_000))).toBeLessThan(5_000);
  });

  it("a receipt written right after the server's clock stepped ahead is dated on the new clock", async () => {
    const writer = createReceiptWriter(store, { log: createLogger({ level: "silent" }) });
    try {
      // A group reads the shift while the two clocks agree.
      await writer.run(recordReceiptsUnit([receipt()], "proxy"));
      // The server's clock steps 3 minutes ahead: seen from here, both this host's clocks, wall
      // and monotonic, are 3 minutes behind it, and neither stepped against the other.
      const realNow = Date.now.bind(Date);
      const realPerf = performance.now.bind(performance);
      vi.spyOn(Date, "now").mockImplementation(() => realNow() - MINUTES_3);
      vi.spyOn(performance, "now").mockImplementation(() => realPerf() - MINUTES_3);
      const r = receipt({ settlementTx: null, captureState: "complete" });
      const before = await serverNow();
      await writer.run(recordReceiptsUnit([r], "proxy"));
      const after = await serverNow();
      vi.restoreAllMocks();
      // Dated by the shift read before the step, it was 3 minutes behind the server's clock:
      // its jobs API wait ended 3 minutes early, as for a receipt recorded before the step.
      const job = await row(r.jobId);
      expect(job.recordedAt).toBeGreaterThanOrEqual(before - 1_000);
      expect(job.recordedAt).toBeLessThanOrEqual(after + 1_000);
    } finally {
      vi.restoreAllMocks();
      await writer.close();
    }
  });
});
