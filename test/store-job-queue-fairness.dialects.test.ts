import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { seedJobs, T0 } from "./support/seed-queue.js";

/*
 * The order a claim takes due jobs in: a job waiting for its next look (finality, a retry) is
 * taken by when it fell due, a new receipt by when it was recorded. New receipts taken first,
 * always, left waiting jobs unclaimed for as long as new ones came faster than the verifier
 * took them (README, Known limits, before this).
 */

const t = T0 + 3_600_000;
const lease = { t, leaseMs: 60_000, limit: 6 };
const ids = (rows: { jobId: string }[]) => rows.map((r) => r.jobId).sort();

/**
 * A steady load: each second `arriving` new receipts are recorded, and the verifier claims
 * `perClaim` jobs; a new job it claims waits for finality (due again 13 s later), one claimed
 * again is done. Returns the longest time a due job waited for its claim, of new jobs and of
 * waiting ones, and how many waiting ones were still due, unclaimed, at the end.
 */
async function steadyLoad(store: Store, seconds: number, arriving: number, perClaim: number) {
  const queue = createJobQueueStore(store);
  const dueAt = new Map<string, number>();
  const looked = new Set<string>();
  let newWait = 0;
  let lookedWait = 0;
  for (let s = 0; s < seconds; s++) {
    const now = T0 + s * 1000;
    const fresh = Array.from({ length: arriving }, (_, i) => ({
      jobId: `j${s}-${i}`,
      recordedAt: now,
      nextVerifyAt: 0,
    }));
    await seedJobs(store, fresh);
    for (const j of fresh) dueAt.set(j.jobId, now);
    const claimed = await queue.claim("V", null, { t: now, leaseMs: 60_000, limit: perClaim });
    const again: string[] = [];
    const done: string[] = [];
    for (const { jobId } of claimed) {
      const wait = now - (dueAt.get(jobId) ?? now);
      if (looked.has(jobId)) {
        lookedWait = Math.max(lookedWait, wait);
        done.push(jobId);
      } else {
        newWait = Math.max(newWait, wait);
        looked.add(jobId);
        dueAt.set(jobId, now + 13_000);
        again.push(jobId);
      }
    }
    await queue.releaseLeases("V", again, now + 13_000);
    // Out of the queue for the rest of the run, as a final verdict takes it.
    await queue.releaseLeases("V", done, Number.MAX_SAFE_INTEGER);
    for (const id of done) dueAt.delete(id);
  }
  const end = T0 + seconds * 1000;
  let waitingDue = 0;
  for (const [id, at] of dueAt) {
    if (looked.has(id) && at <= end) {
      waitingDue++;
      lookedWait = Math.max(lookedWait, end - at);
    }
  }
  return { newWait, lookedWait, waitingDue };
}

describe.each(dialects)("the job queue's order on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("takes a job waiting since before new receipts were recorded ahead of them", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      // Looked at, due again a minute ago.
      { jobId: "waiting", verdict: "awaiting_finality", nextVerifyAt: t - 60_000 },
      ...Array.from({ length: 5 }, (_, i) => ({
        jobId: `before-${i}`,
        recordedAt: t - 120_000 + i,
      })),
      ...Array.from({ length: 20 }, (_, i) => ({ jobId: `after-${i}`, recordedAt: t - 30_000 })),
    ]);
    const queue = createJobQueueStore(store);
    expect(ids(await queue.claim("A", null, lease))).toEqual([
      "before-0",
      "before-1",
      "before-2",
      "before-3",
      "before-4",
      "waiting",
    ]);
  });

  it("takes a new receipt at once when the recording host's clock is ahead of the claimer's", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "ahead", recordedAt: t + 3_600_000 },
      { jobId: "waiting", verdict: "awaiting_finality", nextVerifyAt: t - 1 },
      { jobId: "not-yet", verdict: "awaiting_finality", nextVerifyAt: t + 1 },
    ]);
    const claimed = await createJobQueueStore(store).claim("A", null, lease);
    expect(ids(claimed)).toEqual(["ahead", "waiting"]);
  });

  it("under more new receipts than the verifier takes, jobs waiting for finality still get their turn", async () => {
    const store = await stores.open();
    // 20 receipts a second, 16 claims a second (each job needs two): over capacity.
    const over = await steadyLoad(store, 30, 20, 16);
    console.log(`${dialect} starvation, 30 s at 20 new/s, 16 claims/s: ${JSON.stringify(over)}`);
    // In due order: a waiting job waits no longer than a new one, give or take a second.
    expect(over.lookedWait).toBeLessThanOrEqual(over.newWait + 1000);
    const store2 = await stores.open();
    const under = await steadyLoad(store2, 20, 7, 16);
    console.log(`${dialect} starvation, 20 s at 7 new/s, 16 claims/s: ${JSON.stringify(under)}`);
    expect(under.lookedWait).toBeLessThanOrEqual(1000);
    expect(under.newWait).toBeLessThanOrEqual(1000);
  });
});

describe.each(dialects)("new receipts' claim order on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("takes new receipts by when they were recorded, not by where their rows lie", async () => {
    const store = await stores.open();
    // Stored out of recording order: a host whose clock is behind wrote its receipts later, and
    // on PostgreSQL a row written again (its jobs API answer, its usage) moves in the heap.
    await seedJobs(store, [
      { jobId: "second", recordedAt: t - 20_000 },
      ...Array.from({ length: 40 }, (_, i) => ({ jobId: `later-${i}`, recordedAt: t - 5_000 + i })),
      { jobId: "third", recordedAt: t - 10_000 },
      { jobId: "first", recordedAt: t - 30_000 },
    ]);
    const queue = createJobQueueStore(store);
    const take = { t, leaseMs: 60_000, limit: 3 };
    expect(ids(await queue.claim("A", null, take))).toEqual(["first", "second", "third"]);
    expect(ids(await queue.claim("A", null, take))).toEqual(["later-0", "later-1", "later-2"]);
  });

  it("keeps an early receipt written again ahead of those recorded after it", async () => {
    const store = await stores.open();
    await seedJobs(
      store,
      Array.from({ length: 300 }, (_, i) => ({
        jobId: `j${100 + i}`,
        recordedAt: t - 300_000 + i,
      })),
    );
    // The earliest ones written again (every indexed column kept), as a jobs API answer does.
    for (let i = 0; i < 3; i++) {
      const id = `j${100 + i}`;
      if (store.kind === "postgres") {
        await store.pool.query("UPDATE jobs SET updated_at = updated_at + 1 WHERE job_id = $1", [
          id,
        ]);
      } else {
        store.sqlite
          .prepare("UPDATE jobs SET updated_at = updated_at + 1 WHERE job_id = ?")
          .run(id);
      }
    }
    const claimed = await createJobQueueStore(store).claim("A", null, {
      t,
      leaseMs: 60_000,
      limit: 5,
    });
    expect(ids(claimed)).toEqual(["j100", "j101", "j102", "j103", "j104"]);
  });
});
