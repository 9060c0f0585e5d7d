import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PgStore } from "../src/db/pg/client.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { createLedgerStore, type LineRead } from "../src/store/ledger.js";
import { createReceiptsStore } from "../src/store/receipts.js";
import { fakeSignature } from "./support/job-rows.js";
import { listLines, openHost, pauseAfter } from "./support/pg-deadlock.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { receipt } from "./support/recorder-fixtures.js";

/**
 * A ledger batch on one host while another host records a receipt and claims its job, on one
 * PostgreSQL (READ COMMITTED): the batch's statements each see what was committed when they ran,
 * and the claim sees none of the batch's lines until it commits.
 */

const database = usePostgresDatabase({ migrated: true });
let hostA: PgStore;
let hostB: PgStore;

beforeAll(async () => {
  hostA = openHost(database.url);
  hostB = openHost(database.url);
});

afterAll(async () => {
  await Promise.all([hostA, hostB].map((host) => host?.close()));
});

describe("a ledger batch and a receipt of the job its lines name, recorded meanwhile", () => {
  it("keeps an unnamed refund with the job, which is claimed before the batch commits", async () => {
    const vault = "RaceVau1tXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const jobId = "job_ledger_race_refund";
    const sig = (name: string) => fakeSignature(`ledger-race:${name}`);
    const at = Date.UTC(2026, 10, 6, 12) / 1000;
    // The job's lock under its escrow memo, then a refund under its memo that its receipt
    // (escrow: the lock, settlement: another transaction) does not name.
    const line = (name: string, second: number, pre: bigint, post: bigint, memo: string) => {
      const [kind, job] = memo.split(":") as ["escrow" | "refund", string];
      return {
        signature: sig(name),
        blockTime: at + second,
        succeeded: true,
        pre,
        post,
        delta: post - pre,
        memo,
        memoKind: kind,
        memoJobId: job,
        opened: false,
      } satisfies LineRead;
    };
    const lines = [
      line("lock", 0, 1_000_000n, 900_000n, `escrow:${jobId}`),
      line("refund", 5, 900_000n, 950_000n, `refund:${jobId}`),
    ];
    const ledger = createLedgerStore(hostB);
    const now = (at + 3600) * 1000;
    await listLines(ledger, vault, lines, now, 1000);
    // The batch's read of the jobs its lines are kept with (none recorded yet).
    const paused = pauseAfter(/"conflict_signatures" from "jobs" where "jobs"."job_id" = ANY/i);
    let read: Promise<unknown> | undefined;
    try {
      read = ledger.recordReads(vault, lines, [], now);
      await paused.reached;
      // Another host records the job's receipt and its verifier claims the job.
      const recorded = createReceiptsStore(hostA).record(
        [receipt({ jobId, escrowTx: sig("lock"), settlementTx: sig("settle") })],
        "proxy",
        { now },
      );
      const queue = createJobQueueStore(hostA);
      const claim = () =>
        queue.claim("verifier-a", null, { t: now + 1, leaseMs: 60_000, limit: 10 });
      // The receipt commits at once, or waits for the batch (then the claim comes after it).
      const first = await Promise.race([
        recorded.then(() => "recorded"),
        new Promise((resolve) => setTimeout(resolve, 2000, "waiting")),
      ]);
      if (first === "recorded") expect((await claim()).map((j) => j.jobId)).toEqual([jobId]);
      paused.open();
      await read;
      await recorded;
      if (first !== "recorded") await claim();
    } finally {
      paused.done();
      await read?.catch(() => undefined);
    }
    await ledger.review(vault, now);
    const { rows } = await hostA.pool.query<{ kept: string[] | null; lease_owner: string | null }>(
      "SELECT conflict_signatures AS kept, lease_owner FROM jobs WHERE job_id = $1",
      [jobId],
    );
    // The refund is the job's to answer for (refund.not_settled); a claim made before the
    // batch committed must not have judged the job without it.
    expect(rows[0]?.kept ?? []).toContain(sig("refund"));
    expect(rows[0]?.lease_owner).toBeNull();
  }, 30_000);
});
