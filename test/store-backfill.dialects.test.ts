import { afterEach, describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { openPostgres } from "../src/db/pg/client.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import {
  claimBackfillUnit,
  createBackfillStore,
  giveUpBackfillUnit,
  leaveToBackfillUnit,
} from "../src/store/backfill.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { capturedLogger, jobId } from "./support/recorder-fixtures.js";
import { readJob, seedJob } from "./support/seed-recorder.js";

/** A job waiting for its settlement signature since `nextAt`. */
const pending = (
  id: string,
  nextAt: number,
  extra: { attempts?: number; fingerprint?: string } = {},
) => ({
  jobId: id,
  settlementTx: null,
  backfillState: "pending" as const,
  backfillNextAt: nextAt,
  backfillAttempts: extra.attempts ?? 0,
  keyFingerprint: extra.fingerprint ?? null,
});

describe.each(dialects)("backfill store on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("lists the pending jobs due, the longest waiting first, at most `limit`", async () => {
    const store = await stores.open();
    const [a, b, c, d, e] = ["job_a1", "job_b1", "job_c1", "job_d1", "job_e1"];
    await seedJob(store, pending(a as string, 300, { attempts: 2, fingerprint: "kf_1" }));
    await seedJob(store, pending(b as string, 100));
    await seedJob(store, pending(c as string, 200));
    await seedJob(store, pending(d as string, 2000));
    await seedJob(store, { ...pending(e as string, 50), backfillState: "done" });
    const backfill = createBackfillStore(store);
    expect(await backfill.due(1000, 10)).toEqual([
      { jobId: b, attempts: 0, fingerprint: null },
      { jobId: c, attempts: 0, fingerprint: null },
      { jobId: a, attempts: 2, fingerprint: "kf_1" },
    ]);
    expect((await backfill.due(1000, 2)).map((row) => row.jobId)).toEqual([b, c]);
  });

  it("claims due jobs once, counting the attempt, and gives up only on pending ones", async () => {
    const store = await stores.open();
    const [due, later, done, keyless] = [jobId(), jobId(), jobId(), jobId()];
    await seedJob(store, pending(due, 100, { attempts: 1 }));
    await seedJob(store, pending(later, 5000));
    await seedJob(store, { ...pending(done, 100), backfillState: "done" });
    await seedJob(store, pending(keyless, 100));
    const backfill = createBackfillStore(store);
    const claimed = await backfill.claim(
      [
        { jobId: due, nextAt: 3000 },
        { jobId: later, nextAt: 9000 },
        { jobId: done, nextAt: 3000 },
      ],
      [keyless, done],
      1000,
    );
    expect(claimed).toEqual([due]);
    expect(await readJob(store, due)).toMatchObject({ backfillAttempts: 2, backfillNextAt: 3000 });
    expect(await readJob(store, later)).toMatchObject({
      backfillAttempts: 0,
      backfillNextAt: 5000,
    });
    expect(await readJob(store, done)).toMatchObject({
      backfillState: "done",
      backfillAttempts: 0,
    });
    expect(await readJob(store, keyless)).toMatchObject({
      backfillState: "gave_up",
      updatedAt: 1000,
    });
    // A second pass that read the job due at the same time claims nothing.
    expect(await backfill.claim([{ jobId: due, nextAt: 4000 }], [], 1000)).toEqual([]);
    expect(await readJob(store, due)).toMatchObject({ backfillAttempts: 2, backfillNextAt: 3000 });
    expect(await backfill.due(3000, 10)).toEqual([{ jobId: due, attempts: 2, fingerprint: null }]);
  });

  it("gives up on a job still pending and leaves a finished one alone", async () => {
    const store = await stores.open();
    const [open, finished] = [jobId(), jobId()];
    await seedJob(store, pending(open, 100));
    await seedJob(store, { ...pending(finished, 100), backfillState: "done" });
    const backfill = createBackfillStore(store);
    await backfill.giveUp(open, 700);
    await backfill.giveUp(finished, 700);
    expect(await readJob(store, open)).toMatchObject({ backfillState: "gave_up", updatedAt: 700 });
    expect(await readJob(store, finished)).toMatchObject({ backfillState: "done" });
    expect(await backfill.due(1000, 10)).toEqual([]);
  });

  it("claims and gives up the same way through the receipt writer", async () => {
    const store = await stores.open();
    const { log } = capturedLogger();
    const writer = createReceiptWriter(store, { log });
    try {
      const [a, b, c] = [jobId(), jobId(), jobId()];
      for (const id of [a, b, c]) await seedJob(store, pending(id, 100));
      expect(
        await writer.run(
          claimBackfillUnit(
            [
              { jobId: a, nextAt: 2000 },
              { jobId: b, nextAt: 2000 },
            ],
            [],
            1000,
          ),
        ),
      ).toEqual([a, b]);
      await writer.run(giveUpBackfillUnit(c, 1000));
      expect(await readJob(store, a)).toMatchObject({ backfillAttempts: 1, backfillNextAt: 2000 });
      expect(await readJob(store, c)).toMatchObject({ backfillState: "gave_up" });
    } finally {
      await writer.close();
    }
  });

  it("takes a job left by a stopping proxy, settlement or not, and leaves finished ones", async () => {
    const store = await stores.open();
    const { log } = capturedLogger();
    const writer = createReceiptWriter(store, { log });
    try {
      const [signed, waiting, done, gaveUp] = [jobId(), jobId(), jobId(), jobId()];
      // A proxied job whose receipt named its settlement has no backfill of its own.
      await seedJob(store, { jobId: signed, source: "proxy", settlementTx: "5".repeat(88) });
      await seedJob(store, pending(waiting, 9000));
      await seedJob(store, { ...pending(done, 100), backfillState: "done" });
      await seedJob(store, { ...pending(gaveUp, 100), backfillState: "gave_up" });
      await writer.run(leaveToBackfillUnit([signed, waiting, done, gaveUp, "job_unknown1"], 500));
      expect(await readJob(store, signed)).toMatchObject({
        backfillState: "pending",
        backfillNextAt: 500,
      });
      expect(await readJob(store, waiting)).toMatchObject({ backfillNextAt: 9000 });
      expect(await readJob(store, done)).toMatchObject({ backfillState: "done" });
      expect(await readJob(store, gaveUp)).toMatchObject({ backfillState: "gave_up" });
      const backfill = createBackfillStore(store);
      expect(await backfill.due(1000, 10)).toEqual([
        { jobId: signed, attempts: 0, fingerprint: null },
      ]);
    } finally {
      await writer.close();
    }
  });
});

describe("backfill store on postgres, two processes claiming at once", () => {
  const stores = useDialectStores("postgres");
  const extra: Store[] = [];
  afterEach(async () => {
    for (const store of extra.splice(0)) await store.close();
  });

  it("hands each due job to one of them", async () => {
    const a = await stores.open();
    const b = openPostgres(stores.lastUrl, { poolSize: 4, statementTimeoutMs: 30_000 });
    extra.push(b);
    const ids = Array.from({ length: 60 }, () => jobId());
    for (const id of ids) await seedJob(a, pending(id, 100));
    // Both passes read every job due, then claim them (in opposite orders), a few at a time.
    const [dueA, dueB] = await Promise.all([
      createBackfillStore(a).due(1000, 100),
      createBackfillStore(b).due(1000, 100),
    ]);
    expect(dueA).toHaveLength(60);
    expect(dueB).toHaveLength(60);
    const claimAll = (store: Store, jobs: string[]) =>
      Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          createBackfillStore(store).claim(
            jobs.slice(i * 10, i * 10 + 10).map((jobId) => ({ jobId, nextAt: 5000 })),
            [],
            1000,
          ),
        ),
      ).then((parts) => parts.flat());
    const [mineA, mineB] = await Promise.all([
      claimAll(
        a,
        dueA.map((row) => row.jobId),
      ),
      claimAll(b, dueB.map((row) => row.jobId).reverse()),
    ]);
    expect([...mineA, ...mineB].sort()).toEqual([...ids].sort());
    for (const id of ids) {
      expect(await readJob(a, id)).toMatchObject({ backfillAttempts: 1, backfillNextAt: 5000 });
    }
  });
});
