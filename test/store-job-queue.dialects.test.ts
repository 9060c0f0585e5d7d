import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { verdicts } from "../src/db/schema.js";
import {
  createJobQueueStore,
  type JobQueueStore,
  type PutOffCursor,
  type QueueFilter,
  reopenJobs,
} from "../src/store/job-queue.js";
import { reopenJobsPg } from "../src/store/pg/job-queue.js";
import { claimedColumns } from "../src/store/queue-rules.js";
import { createSignatureStore } from "../src/store/signatures.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { statementsSentBy } from "./support/pg-statements.js";
import {
  leaseOwners,
  type QueueJobSeed,
  queueColumnsOf,
  seedJobs,
  seedSignatures,
  T0,
  twoProcesses,
} from "./support/seed-queue.js";
import { readJob, seedJob, updateJob } from "./support/seed-recorder.js";
import { createTestStore, recordPrepared, sqlitePlanOf } from "./support/store.js";

const t = T0 + 3_600_000;

/**
 * The plan of the claim's UPDATE as `claim` sends it: on PostgreSQL every statement the claim
 * sent (settings of its transaction included) is replayed in a transaction that is rolled back,
 * the UPDATE explained; on SQLite the statement the claim ran is explained.
 */
async function claimPlan(
  store: Store,
  claim: (queue: JobQueueStore) => Promise<unknown>,
): Promise<string> {
  const isClaim = (text: string) =>
    /^update "jobs" set "lease_owner" = (\?|\$1), "lease_until" = (\?|\$2) where "jobs"\."job_id" in \(select /i.test(
      text,
    );
  if (store.kind === "sqlite") {
    // The statements the claim ran, prepared now or earlier on this connection.
    const ran: string[] = [];
    const statement = Object.getPrototypeOf(store.sqlite.prepare("SELECT 1")) as {
      all(this: { source: string }, ...args: unknown[]): unknown[];
    };
    const all = statement.all;
    statement.all = function (...args) {
      ran.push(this.source);
      return all.apply(this, args);
    };
    try {
      await claim(createJobQueueStore(store));
    } finally {
      statement.all = all;
    }
    const text = ran.findLast(isClaim);
    if (text === undefined) throw new Error("the claim ran no UPDATE of jobs");
    const params = Array.from(text.matchAll(/\?/g), () => 0);
    const rows = store.sqlite.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...params);
    return (rows as { detail: string }[]).map((r) => r.detail).join("\n");
  }
  const sent = await statementsSentBy(() => claim(createJobQueueStore(store)));
  const client = await store.pool.connect();
  try {
    await client.query("BEGIN");
    let plan: string | null = null;
    for (const { text, values } of sent) {
      if (/^(begin|commit)$/i.test(text.trim())) continue;
      if (!isClaim(text)) {
        await client.query(text, values);
        continue;
      }
      const rows = (await client.query(`EXPLAIN ${text}`, values)).rows;
      plan = rows.map((r: Record<string, string>) => r["QUERY PLAN"]).join("\n");
    }
    if (plan === null) throw new Error("the claim sent no UPDATE of jobs");
    return plan;
  } finally {
    await client.query("ROLLBACK");
    client.release();
  }
}
const lease = { t, leaseMs: 60_000, limit: 10 };

/**
 * 3,000 jobs waiting for finality (`wait-0000`...), next looks 1,000 on; the first ones leased
 * until 5,000, `jobs` to each owner in turn.
 */
async function seedWaiting(store: Store, leases: { owner: string; jobs: number }[]) {
  const owners = leases.flatMap(({ owner, jobs }) => Array.from({ length: jobs }, () => owner));
  await seedJobs(
    store,
    Array.from({ length: 3000 }, (_, i) => ({
      jobId: `wait-${i.toString().padStart(4, "0")}`,
      verdict: "awaiting_finality" as const,
      nextVerifyAt: 1_000 + i,
      ...(owners[i] === undefined ? {} : { leaseOwner: owners[i], leaseUntil: 5_000 }),
    })),
  );
}
const ids = (rows: { jobId: string }[]) => rows.map((r) => r.jobId).sort();

describe.each(dialects)("the job queue on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("claims due open jobs, earliest due first, up to the limit, under a lease", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "due-late", nextVerifyAt: t - 10 },
      { jobId: "due-early", nextVerifyAt: t - 1000, verdict: "awaiting_finality" },
      { jobId: "due-now", nextVerifyAt: t, verdict: "error" },
      { jobId: "not-yet", nextVerifyAt: t + 1 },
      { jobId: "final", nextVerifyAt: 0, verdict: "verified" },
      { jobId: "dropped", nextVerifyAt: 0, verdict: "dropped" },
    ]);
    const queue = createJobQueueStore(store);

    const first = await queue.claim("A", null, { ...lease, limit: 2 });
    expect(ids(first)).toEqual(["due-early", "due-late"]);
    for (const row of first) {
      expect(row.leaseOwner).toBe("A");
      expect(row.leaseUntil).toBe(t + 60_000);
    }
    expect(ids(await queue.claim("B", null, lease))).toEqual(["due-now"]);
    expect(await leaseOwners(store)).toEqual({
      "due-early": "A",
      "due-late": "A",
      "due-now": "B",
      dropped: null,
      final: null,
      "not-yet": null,
    });
  });

  it.each([
    ["a nearly empty queue", 0],
    ["a store of final jobs", 5000],
  ])(
    "reads only the jobs it takes, in due order, however many wait (statistics of %s)",
    async (_, before) => {
      const store = await stores.open();
      // Statistics taken before thousands fall due at once, as after a bulk import (PostgreSQL;
      // SQLite has none unless asked). Sorting every due job made each claim cost the backlog.
      if (store.kind === "postgres") {
        // No analyze of its own in between, whenever autovacuum's round would come.
        await store.pool.query("ALTER TABLE jobs SET (autovacuum_enabled = off)");
      }
      await seedJobs(store, [{ jobId: "first", nextVerifyAt: t - 10_000 }]);
      await seedJobs(
        store,
        Array.from({ length: before }, (_, i) => ({
          jobId: `old-${i}`,
          createdAt: T0 + i,
          verdict: "verified" as const,
        })),
      );
      if (store.kind === "postgres") await store.pool.query("ANALYZE jobs");
      await seedJobs(
        store,
        Array.from({ length: 5000 }, (_, i) => ({
          jobId: `bulk-${i}`,
          nextVerifyAt: t - 5000 + i,
        })),
      );
      // As `serve` claims (no filter), and as `verify` over the whole store does (a filter
      // that leaves nothing out).
      for (const filter of [null, {}, { from: undefined, to: undefined }]) {
        const plan = await claimPlan(store, (queue) => queue.claim("A", filter, lease));
        expect(plan).toMatch(/jobs_open_due/);
        // The only sort allowed: the merge of the claim's two sides (new jobs and jobs looked
        // at), each read up to the limit (`claimOrder`).
        const merged = /\nSCAN \(subquery-\d+\)\nUSE TEMP B-TREE FOR ORDER BY$/;
        expect(plan.replace(merged, "")).not.toMatch(
          /Bitmap|Seq Scan on jobs|Sort Key: \S*next_verify_at|TEMP B-TREE FOR ORDER BY|^SCAN jobs/m,
        );
      }
    },
  );

  it("claims a window's jobs without walking the due jobs outside it", async () => {
    const store = await stores.open();
    // A backlog due now, created before the window; the window's few jobs fall due later.
    await seedJobs(
      store,
      Array.from({ length: 5000 }, (_, i) => ({ jobId: `backlog-${i}`, nextVerifyAt: t - 1000 })),
    );
    await seedJobs(
      store,
      Array.from({ length: 20 }, (_, i) => ({
        jobId: `window-${i}`,
        createdAt: T0 + 86_400_000,
        verdict: "awaiting_finality" as const,
        nextVerifyAt: t + 60_000,
      })),
    );
    if (store.kind === "postgres") await store.pool.query("ANALYZE jobs");
    const window = { from: T0 + 86_400_000, to: T0 + 2 * 86_400_000 };
    const plan = await claimPlan(store, (queue) => queue.claim("A", window, lease));
    expect(plan).not.toMatch(/jobs_open_due/);
    expect(
      await createJobQueueStore(store).claim("A", window, { ...lease, t: t + 60_000 }),
    ).toHaveLength(10);
  });

  it("returns each claimed job's claimed columns as stored, and its whole row on asking, every column read through its mapping", async () => {
    const store = await stores.open();
    await seedJob(store, {
      jobId: "rich",
      escrowTx: "escrow",
      creditsRemainingUnits: 12_345_000n,
      chargedUnits: 9_007_199_254_740_000n,
      stream: true,
      tags: { team: "search" },
      conflictSignatures: ["a", "b"],
      keyFingerprint: null,
      nextVerifyAt: t - 1,
    });
    const queue = createJobQueueStore(store);
    const [claimed] = await queue.claim("A", null, lease);
    const whole = (await readJob(store, "rich"))!;
    expect(claimed).toEqual(
      Object.fromEntries(claimedColumns.map((key) => [key, whole[key as keyof typeof whole]])),
    );
    expect(await queue.rowsOf(["rich", "not-stored"])).toEqual([whole]);
    expect(await queue.rowsOf([])).toEqual([]);
    expect(whole).toMatchObject({
      creditsRemainingUnits: 12_345_000n,
      stream: true,
      tags: { team: "search" },
      conflictSignatures: ["a", "b"],
      keyFingerprint: null,
      leaseOwner: "A",
    });
  });

  it("leaves a job another owner leased until its lease expires, then another owner reclaims it", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "leased", leaseOwner: "A", leaseUntil: t + 1 },
      { jobId: "expired", leaseOwner: "dead", leaseUntil: t - 1 },
      { jobId: "at-expiry", leaseOwner: "dead", leaseUntil: t },
    ]);
    const queue = createJobQueueStore(store);

    expect(ids(await queue.claim("B", null, lease))).toEqual(["at-expiry", "expired"]);
    expect((await queueColumnsOf(store, "leased")).leaseOwner).toBe("A");
    // Leased to this owner (a round that failed): claimable at once, its lease renewed.
    const again = await queue.claim("A", null, lease);
    expect(ids(again)).toEqual(["leased"]);
    expect(again[0]?.leaseUntil).toBe(t + 60_000);
    // After the lease runs out, another owner takes the job.
    const later = await queue.claim("C", null, { ...lease, t: t + 60_000 });
    expect(ids(later)).toEqual(["at-expiry", "expired", "leased"]);
  });

  it("claims in pieces: a claim with the same lease never takes again what the last one took", async () => {
    const store = await stores.open();
    await seedJobs(
      store,
      [0, 1, 2, 3, 4].map((i) => ({ jobId: `j${i}`, nextVerifyAt: t - 100 + i })),
    );
    const queue = createJobQueueStore(store);

    const first = await queue.claim("A", null, { ...lease, limit: 2 });
    const second = await queue.claim("A", null, { ...lease, limit: 2 });
    const third = await queue.claim("A", null, { ...lease, limit: 2 });
    expect([ids(first), ids(second), ids(third)]).toEqual([["j0", "j1"], ["j2", "j3"], ["j4"]]);
    // A later round of the same owner (a round that failed) takes its jobs back at once.
    const later = await queue.claim("A", null, { ...lease, t: t + 1, limit: 10 });
    expect(ids(later)).toEqual(["j0", "j1", "j2", "j3", "j4"]);
  });

  it("claims only the jobs of the filter: created in [from, to), or named", async () => {
    const store = await stores.open();
    await seedJobs(
      store,
      [0, 1, 2, 3, 4].map((i) => ({ jobId: `j${i}`, createdAt: T0 + i * 1000 })),
    );
    const queue = createJobQueueStore(store);
    const claimWith = async (filter: QueueFilter) =>
      ids(await queue.claim(`owner-${JSON.stringify(filter)}`, filter, lease));

    expect(await claimWith({ from: T0 + 1000, to: T0 + 3000 })).toEqual(["j1", "j2"]);
    expect(await claimWith({ jobIds: ["j0", "j2", "nope"] })).toEqual(["j0"]);
    expect(await claimWith({ from: T0 + 3000 })).toEqual(["j3", "j4"]);
    expect(await claimWith({ to: T0 + 5000 })).toEqual([]);
    expect(await claimWith({ jobIds: [] })).toEqual([]);
  });

  it("renews and releases only this owner's leases; a released job is claimed at once", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "a1", leaseOwner: "A", leaseUntil: t + 10 },
      { jobId: "a2", leaseOwner: "A", leaseUntil: t + 10 },
      { jobId: "b1", leaseOwner: "B", leaseUntil: t + 10 },
    ]);
    const queue = createJobQueueStore(store);

    await queue.renewLeases("A", t + 99_000);
    expect((await queueColumnsOf(store, "a1")).leaseUntil).toBe(t + 99_000);
    expect((await queueColumnsOf(store, "a2")).leaseUntil).toBe(t + 99_000);
    expect((await queueColumnsOf(store, "b1")).leaseUntil).toBe(t + 10);

    await queue.releaseLeases("A");
    expect(await queueColumnsOf(store, "a1")).toMatchObject({ leaseOwner: null, leaseUntil: null });
    expect((await queueColumnsOf(store, "b1")).leaseOwner).toBe("B");
    expect(ids(await queue.claim("C", null, lease))).toEqual(["a1", "a2"]);
  });

  it("hands back named jobs only, and only this owner's leases of them", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "a1", leaseOwner: "A", leaseUntil: t + 10, nextVerifyAt: t - 5 },
      { jobId: "a2", leaseOwner: "A", leaseUntil: t + 10 },
      { jobId: "b1", leaseOwner: "B", leaseUntil: t + 10 },
    ]);
    const queue = createJobQueueStore(store);

    await queue.releaseLeases("A", ["a1", "b1", "nope"]);
    expect(await queueColumnsOf(store, "a1")).toMatchObject({
      leaseOwner: null,
      leaseUntil: null,
      nextVerifyAt: t - 5,
    });
    expect((await queueColumnsOf(store, "a2")).leaseOwner).toBe("A");
    expect((await queueColumnsOf(store, "b1")).leaseOwner).toBe("B");
    await queue.releaseLeases("A", []);
    expect((await queueColumnsOf(store, "a2")).leaseOwner).toBe("A");
    expect(ids(await queue.claim("C", null, lease))).toEqual(["a1"]);
  });

  it("hands back named jobs due no sooner than a given time, never sooner than they were", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "a1", leaseOwner: "A", leaseUntil: t + 10, nextVerifyAt: t - 5 },
      { jobId: "a2", leaseOwner: "A", leaseUntil: t + 10, nextVerifyAt: t + 900 },
      { jobId: "b1", leaseOwner: "B", leaseUntil: t + 10, nextVerifyAt: t - 5 },
    ]);
    const queue = createJobQueueStore(store);
    await queue.releaseLeases("A", ["a1", "a2", "b1"], t + 100);
    expect(await queueColumnsOf(store, "a1")).toMatchObject({
      leaseOwner: null,
      leaseUntil: null,
      nextVerifyAt: t + 100,
    });
    expect(await queueColumnsOf(store, "a2")).toMatchObject({
      leaseOwner: null,
      nextVerifyAt: t + 900,
    });
    expect(await queueColumnsOf(store, "b1")).toMatchObject({
      leaseOwner: "B",
      nextVerifyAt: t - 5,
    });
    expect(ids(await queue.claim("C", null, lease))).toEqual([]);
    expect(await queue.nextDue({ jobIds: ["a1"] })).toBe(t + 100);
  });

  it("says when the next open job is due, a leased one at its lease expiry", async () => {
    const store = await stores.open();
    const queue = createJobQueueStore(store);
    expect(await queue.nextDue(null)).toBeNull();
    await seedJobs(store, [
      { jobId: "final", nextVerifyAt: 5, verdict: "discrepancy", createdAt: T0 },
      { jobId: "leased", nextVerifyAt: 10, leaseOwner: "A", leaseUntil: 500, createdAt: T0 + 1 },
      { jobId: "later", nextVerifyAt: 300, createdAt: T0 + 2 },
      { jobId: "latest", nextVerifyAt: 900, createdAt: T0 + 3 },
    ]);
    expect(await queue.nextDue(null)).toBe(300);
    expect(await queue.nextDue({ jobIds: ["leased"] })).toBe(500);
    expect(await queue.nextDue({ from: T0 + 3 })).toBe(900);
    expect(await queue.nextDue({ jobIds: ["final"] })).toBeNull();
  });

  it("finds when the next job is due from the first unleased one and the leased ones, not from every open job", async () => {
    const store = await stores.open();
    // The statements prepared on this connection: the queue's are prepared once for it.
    const prepared = store.kind === "sqlite" ? recordPrepared(store) : [];
    const queue = createJobQueueStore(store);
    // Thousands waiting for finality, the earliest of them under a claim's lease.
    await seedWaiting(store, [{ owner: "A", jobs: 200 }]);
    // The first unleased one: 1,200.
    expect(await queue.nextDue(null)).toBe(1_200);
    // A lease that ends sooner than that on the caller's clock (the leases' clock 1,000 behind).
    await seedJobs(store, [
      { jobId: "leased-soon", nextVerifyAt: 100, leaseOwner: "B", leaseUntil: 800 },
      // A final job whose lease was left: never due.
      {
        jobId: "final-leased",
        nextVerifyAt: 0,
        verdict: "verified",
        leaseOwner: "C",
        leaseUntil: 0,
      },
    ]);
    expect(await queue.nextDue(null)).toBe(800);
    expect(await queue.nextDue(null, { t: 2_000, leaseAt: 1_000 })).toBe(1_200);
    expect(await queue.nextDue(null, { t: 1_000, leaseAt: 1_200 })).toBe(600);
    // A new receipt (next look 0, no lease) is due at once.
    await seedJobs(store, [{ jobId: "fresh", nextVerifyAt: 0 }]);
    expect(await queue.nextDue(null)).toBe(0);
    if (store.kind === "sqlite") {
      const text = prepared.find((s) => /min\(due\)/i.test(s));
      expect(text).toBeDefined();
      const plan = sqlitePlanOf(store, text!);
      // The open jobs walked in order until the first unleased one (LIMIT 1), the leased ones
      // looked up: no read of the table whole.
      expect(plan).toMatch(/SCAN jobs USING INDEX jobs_open_due/);
      expect(plan).toMatch(/SEARCH jobs USING INDEX jobs_leased/);
      expect(plan).not.toMatch(/SCAN jobs$/m);
    }
  });

  it("renews and drops an owner's leases by the leased jobs alone, whatever waits beside them", async () => {
    const store = await stores.open();
    const prepared = store.kind === "sqlite" ? recordPrepared(store) : [];
    const queue = createJobQueueStore(store);
    await seedWaiting(store, [
      { owner: "A", jobs: 200 },
      { owner: "B", jobs: 100 },
    ]);
    await queue.renewLeases("B", 9_000);
    await queue.releaseLeases("A");
    const owners = await leaseOwners(store);
    expect(Object.values(owners).filter((o) => o === "A")).toHaveLength(0);
    expect(Object.values(owners).filter((o) => o === "B")).toHaveLength(100);
    expect(await queue.nextDue(null)).toBe(1_000);
    expect((await queueColumnsOf(store, "wait-0250")).leaseUntil).toBe(9_000);
    expect((await queueColumnsOf(store, "wait-0150")).leaseUntil).toBeNull();
    if (store.kind === "sqlite") {
      // The renewal and the drop of an owner's leases (not a claim, nor a release of named jobs).
      const leaseWrites = prepared.filter(
        (s) =>
          /^update "jobs" set "lease_/i.test(s) &&
          /"lease_owner" = \?/.test(s) &&
          !/json_each/.test(s),
      );
      expect(leaseWrites).toHaveLength(2);
      for (const text of leaseWrites) {
        const plan = sqlitePlanOf(store, text);
        expect(plan).toMatch(/SEARCH jobs USING INDEX jobs_leased/);
        expect(plan).not.toMatch(/jobs_verdict_created|jobs_open_due|SCAN jobs$/m);
      }
    }
  });

  it("reads the jobs put off a page at a time, soonest first then by job id, each once, however many were put off at one moment", async () => {
    const store = await stores.open();
    const queue = createJobQueueStore(store);
    const after = t;
    const until = t + 180_000;
    // A round's batch put off together (300, more than two pages), then 20 a moment later; one
    // due before the range, one beyond it, and a final one in it are not put off.
    const together = Array.from({ length: 300 }, (_, i) => ({
      jobId: `put-${((i * 7) % 300).toString().padStart(3, "0")}`,
      nextVerifyAt: t + 60_000,
      escrowTx: `esc-${i}`,
    }));
    const later = Array.from({ length: 20 }, (_, i) => ({
      jobId: `a-later-${i.toString().padStart(2, "0")}`,
      nextVerifyAt: t + 60_001 + i,
    }));
    await seedJobs(store, [
      ...together,
      ...later,
      { jobId: "due-now", nextVerifyAt: t },
      { jobId: "beyond", nextVerifyAt: until + 1 },
      { jobId: "final", nextVerifyAt: t + 60_000, verdict: "verified" },
    ]);
    const pages: { jobId: string; nextVerifyAt: number }[][] = [];
    let from: PutOffCursor | undefined;
    for (;;) {
      const page = await queue.putOff(after, until, 128, from);
      pages.push(page);
      const last = page.at(-1);
      if (last === undefined || page.length < 128) break;
      from = { nextVerifyAt: last.nextVerifyAt, jobId: last.jobId };
    }
    expect(pages.map((p) => p.length)).toEqual([128, 128, 64]);
    const read = pages.flat();
    expect(read.map((j) => j.jobId)).toEqual([
      ...together.map((j) => j.jobId).sort(),
      ...later.map((j) => j.jobId),
    ]);
    expect(read[0]).toMatchObject({ nextVerifyAt: t + 60_000, escrowTx: "esc-0" });
    if (store.kind === "sqlite") {
      // Each page walks the index of open jobs from the cursor: no sort of every open job.
      const prepared = recordPrepared(store);
      await queue.putOff(after, until, 128, from);
      const text = prepared.find((s) => /from "jobs"/i.test(s) && /next_verify_at/.test(s));
      expect(text).toBeDefined();
      const plan = sqlitePlanOf(store, text!);
      expect(plan).toMatch(/USING INDEX jobs_open_due \(next_verify_at>\? AND next_verify_at<\?\)/);
      expect(plan).not.toMatch(/TEMP B-TREE FOR ORDER BY/);
    }
  });

  it("counts a filter's jobs by verdict, and how many are final", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      { jobId: "p", verdict: "pending", createdAt: T0 },
      { jobId: "v1", verdict: "verified", createdAt: T0 + 1 },
      { jobId: "v2", verdict: "verified", createdAt: T0 + 2 },
      { jobId: "d", verdict: "discrepancy", createdAt: T0 + 3 },
      { jobId: "e", verdict: "error", createdAt: T0 + 4 },
    ]);
    const queue = createJobQueueStore(store);
    const zero = Object.fromEntries(verdicts.map((v) => [v, 0]));

    expect(await queue.countVerdicts(null)).toEqual({
      total: 5,
      final: 3,
      byVerdict: { ...zero, pending: 1, verified: 2, discrepancy: 1, error: 1 },
    });
    expect(await queue.countVerdicts({ from: T0 + 1, to: T0 + 4 })).toEqual({
      total: 3,
      final: 3,
      byVerdict: { ...zero, verified: 2, discrepancy: 1 },
    });
    expect(await queue.countVerdicts({ jobIds: [] })).toEqual({
      total: 0,
      final: 0,
      byVerdict: zero,
    });
  });

  it("reverify looks again for the given-up signatures of the job's conflicting receipts", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      {
        jobId: "job",
        verdict: "dropped",
        escrowTx: "sig-lock",
        settlementTx: "sig-settle",
        conflictSignatures: ["sig-second-lock", "sig-pruned-refund"],
      },
      { jobId: "other", verdict: "dropped", conflictSignatures: ["sig-other"] },
    ]);
    const miss = { notFoundCount: 3, notFoundSince: T0, notFoundSlot: 77 };
    await seedSignatures(store, [
      { signature: "sig-lock", state: "finalized", commitment: "finalized" },
      { signature: "sig-settle", state: "finalized", commitment: "finalized" },
      { signature: "sig-second-lock", state: "dropped", ...miss },
      { signature: "sig-pruned-refund", state: "pruned", commitment: "finalized", ...miss },
      { signature: "sig-other", state: "dropped", ...miss },
    ]);

    await createJobQueueStore(store).reverify("job", t + 5);

    const rows = await createSignatureStore(store).load([
      "sig-second-lock",
      "sig-pruned-refund",
      "sig-other",
    ]);
    const reset = { notFoundCount: 0, notFoundSince: null, notFoundSlot: null };
    expect(rows.get("sig-second-lock")).toMatchObject({ state: "unknown", ...reset });
    expect(rows.get("sig-pruned-refund")).toMatchObject({ state: "finalized", ...reset });
    expect(rows.get("sig-other")).toMatchObject({ state: "dropped", notFoundCount: 3 });
  });

  it("reverify asks the jobs API again about a job whose settlement backfill gave up", async () => {
    // Killed before its stream's lookup with no key to ask with: the operator adds the key to
    // DECENTRAL_API_KEYS and reverifies; the backfill had to ask again for it to verify.
    const store = await stores.open();
    await seedJob(store, { jobId: "job", escrowTx: "sig-lock", verdict: "unverifiable" });
    await seedJob(store, { jobId: "done", escrowTx: "sig-done", verdict: "verified" });
    await updateJob(store, "job", { backfillState: "gave_up", backfillNextAt: t - 1 });
    await updateJob(store, "done", { backfillState: "done", backfillAttempts: 2 });

    await createJobQueueStore(store).reverify("job", t + 5);
    await createJobQueueStore(store).reverify("done", t + 5);

    expect(await readJob(store, "job")).toMatchObject({
      verdict: "pending",
      backfillState: "pending",
      backfillAttempts: 0,
      backfillNextAt: 0,
    });
    expect(await readJob(store, "done")).toMatchObject({
      backfillState: "done",
      backfillAttempts: 2,
    });
  });

  it("reverify looks again for the job's given-up signatures and reopens it ahead of the queue", async () => {
    const store = await stores.open();
    await seedJobs(store, [
      {
        jobId: "job",
        verdict: "dropped",
        nextVerifyAt: t,
        verifyAttempts: 4,
        lastError: "gone",
        leaseOwner: "A",
        leaseUntil: t + 1000,
        escrowTx: "sig-dropped",
        settlementTx: "sig-pruned",
        apiEscrowTx: "sig-final",
        apiSettlementTx: "sig-missing",
      },
      { jobId: "other", verdict: "dropped", escrowTx: "sig-other" },
    ]);
    const miss = { notFoundCount: 3, notFoundSince: T0, notFoundSlot: 77 };
    await seedSignatures(store, [
      { signature: "sig-dropped", state: "dropped", ...miss },
      { signature: "sig-pruned", state: "pruned", commitment: "finalized", ...miss },
      { signature: "sig-final", state: "finalized", commitment: "finalized", notFoundCount: 1 },
      { signature: "sig-other", state: "dropped", ...miss },
    ]);

    await createJobQueueStore(store).reverify("job", t + 5);

    expect(await queueColumnsOf(store, "job")).toEqual({
      jobId: "job",
      verdict: "pending",
      nextVerifyAt: 0,
      verifyAttempts: 0,
      leaseOwner: null,
      leaseUntil: null,
      lastError: null,
    });
    expect((await queueColumnsOf(store, "other")).verdict).toBe("dropped");
    const rows = await createSignatureStore(store).load([
      "sig-dropped",
      "sig-pruned",
      "sig-final",
      "sig-other",
    ]);
    const reset = { notFoundCount: 0, notFoundSince: null, notFoundSlot: null };
    expect(rows.get("sig-dropped")).toMatchObject({ state: "unknown", ...reset });
    expect(rows.get("sig-pruned")).toMatchObject({ state: "finalized", ...reset });
    expect(rows.get("sig-final")).toMatchObject({ state: "finalized", notFoundCount: 1 });
    expect(rows.get("sig-other")).toMatchObject({ state: "dropped", notFoundCount: 3 });
  });

  it("keeps the final verdict a job leaves while it is judged again, and why, new evidence first", async () => {
    // A job sent back showed only `pending`: what it was, and whether new evidence or a profile
    // change sent it back, was lost until it was judged again.
    const store = await stores.open();
    const judged = { verdictAt: T0, verdictProfile: "old@1" };
    await seedJobs(store, [
      { jobId: "swept", verdict: "verified", ...judged },
      { jobId: "by-hand", verdict: "discrepancy", ...judged },
      { jobId: "new", verdict: "pending" },
    ]);
    const queue = createJobQueueStore(store);
    await queue.reverify("by-hand", t);
    await queue.reopenJudgedElsewhere({
      judgedBy: "new@2",
      before: t,
      after: null,
      scan: 10,
      limit: 1,
      filter: null,
      t,
    });
    await queue.reverify("new", t);
    const rejudging = async (jobId: string) => {
      const row = await readJob(store, jobId);
      return [row?.verdict, row?.previousVerdict, row?.rejudgeReason, row?.verdictAt];
    };
    expect(await rejudging("by-hand")).toEqual(["pending", "discrepancy", "reverify", T0]);
    expect(await rejudging("swept")).toEqual(["pending", "verified", "profile", T0]);
    expect(await rejudging("new")).toEqual(["pending", null, null, null]);
    // Sent back again while judged again: the verdict it left stays; new evidence outranks a
    // profile change, a request by hand does not.
    if (store.kind === "postgres") await reopenJobsPg(store.db, { jobIds: ["swept"] }, t + 1);
    else reopenJobs(store, { jobIds: ["swept"] }, t + 1);
    await queue.reverify("swept", t + 2);
    expect(await rejudging("swept")).toEqual(["pending", "verified", "evidence", T0]);
  });
});

/** A small deterministic generator, so both dialects get the same "random" rows. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("the job queue on both dialects, same rows", () => {
  const pg = useDialectStores("postgres");

  it("counts verdicts and finds the next due job alike", async () => {
    const sqlite = createTestStore();
    const postgres = await pg.open();
    const random = prng(12);
    const seeds: QueueJobSeed[] = Array.from({ length: 300 }, (_, i) => {
      const leased = random() < 0.3;
      return {
        jobId: `job-${String(i).padStart(3, "0")}`,
        createdAt: T0 + Math.floor(random() * 100) * 1000,
        verdict: verdicts[Math.floor(random() * verdicts.length)] ?? "pending",
        nextVerifyAt: Math.floor(random() * 1_000_000),
        leaseOwner: leased ? "A" : null,
        leaseUntil: leased ? Math.floor(random() * 2_000_000) : null,
      };
    });
    await seedJobs(sqlite, seeds);
    await seedJobs(postgres, seeds);
    const filters: (QueueFilter | null)[] = [
      null,
      { from: T0 + 20_000 },
      { to: T0 + 50_000 },
      { from: T0 + 10_000, to: T0 + 11_000 },
      { jobIds: seeds.filter((_, i) => i % 7 === 0).map((s) => s.jobId) },
      { from: T0 + 1_000_000 },
    ];
    try {
      const [a, b] = [createJobQueueStore(sqlite), createJobQueueStore(postgres)];
      for (const filter of filters) {
        expect(await b.countVerdicts(filter)).toEqual(await a.countVerdicts(filter));
        expect(await b.nextDue(filter)).toEqual(await a.nextDue(filter));
      }
      expect((await a.countVerdicts(null)).total).toBe(300);
    } finally {
      sqlite.close();
    }
  });
});

describe("the job queue on PostgreSQL, claimed from many processes", () => {
  const stores = useDialectStores("postgres");

  it("gives each job to exactly one of many claimers racing from two pools", async () => {
    const [one, two] = await twoProcesses(stores);
    try {
      const n = 400;
      // A third of the jobs hold a dead owner's expired lease: reclaimed like free ones.
      await seedJobs(
        one,
        Array.from({ length: n }, (_, i) => ({
          jobId: `job-${i}`,
          nextVerifyAt: i,
          ...(i % 3 === 0 ? { leaseOwner: "dead", leaseUntil: t - 1 } : {}),
        })),
      );
      const claimers = [one, two, one, two, one, two].map((store, i) => ({
        owner: `owner-${i}`,
        queue: createJobQueueStore(store),
        got: new Map<string, string>(),
      }));
      // Every claimer claims small batches until the queue is empty, all at once; each batch
      // under an owner of its own (an owner's own leases would be claimable again).
      await Promise.all(
        claimers.map(async (c) => {
          for (let batch = 0; ; batch++) {
            const owner = `${c.owner}/${batch}`;
            const rows = await c.queue.claim(owner, null, { t, leaseMs: 600_000, limit: 7 });
            if (rows.length === 0) return;
            for (const r of rows) c.got.set(r.jobId, owner);
          }
        }),
      );
      const all = claimers.flatMap((c) => [...c.got.keys()]);
      expect(all.length).toBe(n);
      expect(new Set(all).size).toBe(n);
      const owners = await leaseOwners(one);
      for (const c of claimers) for (const [id, owner] of c.got) expect(owners[id]).toBe(owner);
      // The work was shared, not taken by whichever claimer ran first.
      expect(claimers.filter((c) => c.got.size > 0).length).toBeGreaterThan(1);
    } finally {
      await two.close();
    }
  });

  it("does not wait on jobs another transaction holds: it claims the others", async () => {
    const [one, two] = await twoProcesses(stores);
    const holder = await one.pool.connect();
    try {
      await seedJobs(
        one,
        Array.from({ length: 6 }, (_, i) => ({ jobId: `job-${i}`, nextVerifyAt: i })),
      );
      await holder.query("BEGIN");
      await holder.query(
        "SELECT job_id FROM jobs WHERE job_id IN ('job-0', 'job-1', 'job-2') FOR UPDATE",
      );
      const claim = createJobQueueStore(two).claim("B", null, lease);
      const waited = new Promise<"waited">((resolve) => setTimeout(resolve, 5000, "waited"));
      const claimed = await Promise.race([claim, waited]);
      expect(claimed).not.toBe("waited");
      expect(ids(claimed as { jobId: string }[])).toEqual(["job-3", "job-4", "job-5"]);
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
      await two.close();
    }
  });

  it("renews the owner's other leases without waiting on a job another transaction holds", async () => {
    const [one, two] = await twoProcesses(stores);
    const holder = await one.pool.connect();
    try {
      await seedJobs(one, [
        { jobId: "held", leaseOwner: "A", leaseUntil: t + 10 },
        { jobId: "free", leaseOwner: "A", leaseUntil: t + 10 },
      ]);
      await holder.query("BEGIN");
      await holder.query("SELECT job_id FROM jobs WHERE job_id = 'held' FOR UPDATE");
      const renew = createJobQueueStore(two).renewLeases("A", t + 99_000);
      const waited = new Promise<"waited">((resolve) => setTimeout(resolve, 5000, "waited"));
      expect(await Promise.race([renew, waited])).not.toBe("waited");
      await holder.query("ROLLBACK");
      expect((await queueColumnsOf(one, "free")).leaseUntil).toBe(t + 99_000);
      // The held job keeps its lease until the next renewal.
      expect((await queueColumnsOf(one, "held")).leaseUntil).toBe(t + 10);
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
      await two.close();
    }
  });

  it("leaves an unexpired lease to its owner while two others race for the rest", async () => {
    const [one, two] = await twoProcesses(stores);
    try {
      await seedJobs(one, [
        { jobId: "held", leaseOwner: "A", leaseUntil: t + 1 },
        { jobId: "free-1" },
        { jobId: "free-2" },
      ]);
      const [b, c] = await Promise.all([
        createJobQueueStore(one).claim("B", null, lease),
        createJobQueueStore(two).claim("C", null, lease),
      ]);
      expect([...ids(b), ...ids(c)].sort()).toEqual(["free-1", "free-2"]);
      expect((await leaseOwners(one)).held).toBe("A");
    } finally {
      await two.close();
    }
  });

  it("reverifies one job from two processes at once as if once", async () => {
    const [one, two] = await twoProcesses(stores);
    try {
      await seedJobs(one, [
        { jobId: "x", verdict: "dropped", escrowTx: "s1", settlementTx: "s2" },
        { jobId: "y", verdict: "dropped", escrowTx: "s2", settlementTx: "s1" },
      ]);
      await seedSignatures(one, [
        { signature: "s1", state: "dropped", notFoundCount: 2 },
        { signature: "s2", state: "pruned", notFoundCount: 2 },
      ]);
      await Promise.all([
        createJobQueueStore(one).reverify("x", t),
        createJobQueueStore(two).reverify("y", t),
        createJobQueueStore(two).reverify("x", t),
      ]);
      const rows = await createSignatureStore(one).load(["s1", "s2"]);
      expect(rows.get("s1")).toMatchObject({ state: "unknown", notFoundCount: 0 });
      expect(rows.get("s2")).toMatchObject({ state: "finalized", notFoundCount: 0 });
      expect((await queueColumnsOf(one, "y")).verdict).toBe("pending");
    } finally {
      await two.close();
    }
  });
});
