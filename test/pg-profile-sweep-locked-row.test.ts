import { sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { createProfileSweep } from "../src/verify/profile-sweep.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { seedJobs } from "./support/seed-verdicts.js";

/**
 * A final job another profile judged, whose row another session held locked (a ledger batch, an
 * operator's open transaction) when the sweep came to it, was skipped and never tried again
 * until the next start: `verify` under the new profile then ended `incomplete` (exit 2), saying
 * that job was judged under another profile "after this run began", and `serve` left it under
 * the old profile for good. It is now tried again until it is reopened.
 */

const database = usePostgresDatabase({ migrated: true });
let store: PgStore;
let locker: pg.Client;

beforeAll(async () => {
  store = openPostgres(database.url, { poolSize: 2, statementTimeoutMs: 30_000 });
  locker = new pg.Client({ connectionString: database.url });
  await locker.connect();
  await seedJobs(store, [
    { jobId: "job_free", leaseOwner: null, verdict: "verified" },
    { jobId: "job_held", leaseOwner: null, verdict: "verified" },
  ]);
  await store.db.execute(
    sql`UPDATE jobs SET verdict_profile = 'localnet@0000000000000000', verdict_at = 1000`,
  );
});

afterAll(async () => {
  await locker?.end();
  await store?.close();
});

describe("the profile sweep on PostgreSQL", () => {
  it("tries a job held locked again and reopens it once free", async () => {
    const queue = createJobQueueStore(store);
    const sweep = createProfileSweep({
      queue,
      judgedBy: "localnet@1111111111111111",
      before: Date.now(),
      filter: null,
      now: Date.now,
      batch: 10,
      intervalMs: 0,
    });
    await locker.query("BEGIN");
    await locker.query("SELECT 1 FROM jobs WHERE job_id = 'job_held' FOR UPDATE");
    expect(await sweep.step(true)).toBe(1);
    expect(await queue.openOf(["job_free", "job_held"])).toEqual(["job_free"]);
    expect(sweep.done).toBe(false);
    expect(sweep.waitsForHeldRows).toBe(true);
    await locker.query("ROLLBACK");

    expect(await sweep.step(true)).toBe(1);
    expect((await queue.openOf(["job_free", "job_held"])).sort()).toEqual(["job_free", "job_held"]);
    expect(sweep.done).toBe(true);
  });
});
