import { describe, expect, it } from "vitest";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { createVerificationRunStore } from "../src/store/verification-runs.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import {
  leaseOwners,
  lockExpiries,
  queueColumnsOf,
  runColumns,
  seedHeartbeat,
  seedJobs,
  seedRuns,
  T0,
} from "./support/seed-queue.js";

/**
 * The queue's two clocks: a job is due by the claimer's own (`t`, against `next_verify_at`),
 * its lease is written and judged by the clock every claimer shares (`leaseAt`, the database
 * server's on PostgreSQL), and so are the run heartbeats the sweep of abandoned runs judges.
 */

const t = T0 + 3_600_000;
/** The shared clock, 3 minutes behind this host's. */
const leaseAt = t - 180_000;

describe.each(dialects)("leases and heartbeats on the shared clock on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("claims by the due time on its own clock and the lease on the shared one", async () => {
    const store = await stores.open();
    const queue = createJobQueueStore(store);
    await seedJobs(store, [
      // Leased by another until a minute from now on the shared clock: 2 minutes past on ours.
      { jobId: "held", leaseOwner: "B", leaseUntil: leaseAt + 60_000 },
      // Its lease ended on the shared clock.
      { jobId: "expired", leaseOwner: "B", leaseUntil: leaseAt },
      // Due a minute from now on our clock (the shared clock is not that of due times).
      { jobId: "later", nextVerifyAt: t + 60_000 },
      { jobId: "due", nextVerifyAt: t - 1 },
    ]);
    const lease = { t, leaseAt, leaseMs: 120_000, limit: 2 };
    const first = await queue.claim("A", null, lease);
    const second = await queue.claim("A", null, lease);
    // One `leaseAt` for a round's pieces: the second takes none the first took.
    expect([...first, ...second].map((j) => j.jobId).sort()).toEqual(["due", "expired"]);
    expect(second.map((j) => j.jobId)).toHaveLength(0);
    expect(await leaseOwners(store)).toMatchObject({ held: "B", expired: "A", due: "A" });
    expect((await queueColumnsOf(store, "due")).leaseUntil).toBe(leaseAt + 120_000);
    // A later round (a later shared time) takes its own leases left behind again.
    const again = await queue.claim("A", null, { ...lease, leaseAt: leaseAt + 1, limit: 5 });
    expect(again.map((j) => j.jobId).sort()).toEqual(["due", "expired"]);
  });

  // A clock stepped forward past a lease made every lease of a live verifier beside the
  // claimer (the nightly run beside serve, on SQLite's host clock) look expired.
  it("leaves the expired-looking leases of owners known to run now, takes the others'", async () => {
    const store = await stores.open();
    const queue = createJobQueueStore(store);
    await seedJobs(store, [
      { jobId: "live-1", leaseOwner: "nightly", leaseUntil: leaseAt - 1 },
      { jobId: "live-2", leaseOwner: "nightly", leaseUntil: leaseAt - 600_000 },
      { jobId: "gone", leaseOwner: "crashed", leaseUntil: leaseAt - 1 },
      { jobId: "mine", leaseOwner: "A", leaseUntil: leaseAt - 1 },
      { jobId: "free", nextVerifyAt: t - 1 },
    ]);
    const lease = { t, leaseAt, leaseMs: 120_000, limit: 10, liveOwners: ["nightly", "other"] };
    const claimed = await queue.claim("A", null, lease);
    expect(claimed.map((j) => j.jobId).sort()).toEqual(["free", "gone", "mine"]);
    expect(await leaseOwners(store)).toMatchObject({ "live-1": "nightly", "live-2": "nightly" });
    // Once that owner is no longer known to run, its expired leases are taken.
    const later = await queue.claim("A", null, { ...lease, leaseAt: leaseAt + 1, liveOwners: [] });
    expect(later.map((j) => j.jobId).sort()).toEqual(["free", "gone", "live-1", "live-2", "mine"]);
  });

  it("reads a lease's end on the caller's clock, a due time as it is", async () => {
    const store = await stores.open();
    const queue = createJobQueueStore(store);
    await seedJobs(store, [{ jobId: "held", leaseOwner: "B", leaseUntil: leaseAt + 60_000 }]);
    expect(await queue.nextDue(null, { t, leaseAt })).toBe(t + 60_000);
    await seedJobs(store, [{ jobId: "later", nextVerifyAt: t + 30_000 }]);
    expect(await queue.nextDue({ jobIds: ["held", "later"] }, { t, leaseAt })).toBe(t + 30_000);
    // One clock (SQLite, or a caller that passes none): the lease's end as written.
    expect(await queue.nextDue({ jobIds: ["held"] })).toBe(leaseAt + 60_000);
  });

  it("writes and judges heartbeats on the shared clock, run times on the caller's", async () => {
    const store = await stores.open();
    const runs = createVerificationRunStore(store);
    const [live, stale] = await seedRuns(store, [{ owner: "live" }, { owner: "stale" }]);
    // Live for a minute on the shared clock (2 minutes past on ours), and ended.
    await seedHeartbeat(store, "live", leaseAt + 60_000);
    await seedHeartbeat(store, "stale", leaseAt);
    const closer = { owner: "me", t, leaseAt, deadOwners: [] };
    const { runId } = await runs.open(
      { trigger: "serve", window: null, heartbeatUntil: leaseAt + 120_000 },
      closer,
    );
    const byId = new Map((await runColumns(store)).map((r) => [r.id, r]));
    expect(byId.get(live!)).toMatchObject({ status: "running", finishedAt: null });
    expect(byId.get(stale!)).toMatchObject({ status: "abandoned", finishedAt: t });
    expect(byId.get(runId)).toMatchObject({ status: "running" });
    expect(await lockExpiries(store)).toEqual({
      "verifier:live": leaseAt + 60_000,
      "verifier:me": leaseAt + 120_000,
    });
    expect(await runs.closeAbandoned(closer)).toBe(0);
    expect(await runs.closeAbandoned({ ...closer, leaseAt: leaseAt + 60_000 })).toBe(1);
    expect((await runColumns(store)).find((r) => r.id === live)?.status).toBe("abandoned");
  });
});
