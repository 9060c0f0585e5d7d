import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it, vi } from "vitest";
import { createLogger } from "../src/log.js";
import { ingestReceiptsVia } from "../src/recorder/ingest.js";
import { createReceiptWriter, type ReceiptWriter } from "../src/recorder/receipt-writer.js";
import { type Receipt, recordReceiptsUnit } from "../src/store/receipts.js";
import { useStoreAndLocker } from "./support/pg-locker.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { capturedLogger, receipt, wireReceipt } from "./support/recorder-fixtures.js";

/**
 * One job's row held locked by a session outside the service (an operator's `SELECT … FOR
 * UPDATE` in a drill, a long transaction): the receipt group that needed it waited up to the
 * statement timeout holding the writers' turn, was then taken for the database away (`/readyz`
 * 503, new paid jobs refused) and tried again the same way, while every other job's receipt
 * waited behind it. Only the receipts of the locked job may wait.
 */

const database = usePostgresDatabase();
const log = createLogger({ level: "silent" });
const pgs = useStoreAndLocker(database, { poolSize: 2, statementTimeoutMs: 10_000, migrate: true });

/** Writes `receipts` (one task each) and resolves with how long each took to be written. */
function timedWrites(writer: ReceiptWriter, receipts: Receipt[]): Promise<number[]> {
  const started = performance.now();
  return Promise.all(
    receipts.map((r) =>
      writer.run(recordReceiptsUnit([r], "proxy")).then(() => performance.now() - started),
    ),
  );
}

/** What the writer said of itself (`/readyz`, paid work taken) every 10 ms until `until` settles. */
async function healthUntil(writer: ReceiptWriter, until: Promise<unknown>): Promise<string[]> {
  const seen = new Set<string>();
  let done = false;
  void until.finally(() => {
    done = true;
  });
  while (!done) {
    seen.add(`reachable=${writer.health().reachable} full=${writer.full()}`);
    await sleep(10);
  }
  return [...seen];
}

/** Sessions waiting for a lock another holds, now. */
async function lockWaiters(): Promise<number> {
  const { rows } = await pgs.locker.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted",
  );
  return rows[0]?.n ?? 0;
}

/** Resolves once `check` is true, asked every 2 ms. */
async function waitFor(check: () => Promise<boolean>): Promise<void> {
  while (!(await check())) await sleep(2);
}

describe("the PostgreSQL receipt writer with one job's row locked by another session", () => {
  it("writes every other job's receipts at once, and the locked job's once, when the lock goes", async () => {
    const writer = createReceiptWriter(pgs.store, { log });
    const first = receipt({ settlementTx: null });
    await writer.run(recordReceiptsUnit([first], "proxy"));
    const settled = { ...first, settlementTx: receipt().settlementTx };
    try {
      await pgs.locker.query("BEGIN");
      await pgs.locker.query("SELECT * FROM jobs WHERE job_id = $1 FOR UPDATE", [first.jobId]);
      // The locked job's receipt in the same group as others, then others again while it waits.
      const locked = writer.run(recordReceiptsUnit([settled], "proxy"));
      let lockedDone = false;
      void locked.finally(() => {
        lockedDone = true;
      });
      const together = timedWrites(writer, [receipt(), receipt(), receipt()]);
      const seenTogether = await healthUntil(writer, together);
      expect(Math.max(...(await together))).toBeLessThan(3_000);
      const after = timedWrites(writer, [receipt(), receipt()]);
      const seenAfter = await healthUntil(writer, after);
      expect(Math.max(...(await after))).toBeLessThan(1_000);
      expect([...new Set([...seenTogether, ...seenAfter])]).toEqual(["reachable=true full=false"]);
      expect(lockedDone).toBe(false);

      await pgs.locker.query("COMMIT");
      const released = performance.now();
      expect(await locked).toEqual([{ outcome: "updated" }]);
      expect(performance.now() - released).toBeLessThan(3_000);
      const { rows } = await pgs.store.pool.query(
        "SELECT settlement_tx FROM jobs WHERE job_id = $1",
        [first.jobId],
      );
      expect(rows).toEqual([{ settlement_tx: settled.settlementTx }]);
      const conflicts = await pgs.store.pool.query(
        "SELECT count(*)::int AS n FROM receipt_conflicts WHERE job_id = $1",
        [first.jobId],
      );
      expect(conflicts.rows).toEqual([{ n: 0 }]);
      expect(writer.health()).toEqual({ reachable: true });
    } finally {
      await pgs.locker.query("ROLLBACK").catch(() => {});
      await writer.close();
    }
  }, 60_000);

  it("writes other models' receipts without a bound's wait for each receipt of a model whose rollup rows are locked", async () => {
    const writer = createReceiptWriter(pgs.store, { log });
    const model = `locked-${Math.random().toString(36).slice(2)}`;
    await writer.run(recordReceiptsUnit([receipt({ model })], "proxy"));
    try {
      await pgs.locker.query("BEGIN");
      await pgs.locker.query("SELECT * FROM job_rollups WHERE model = $1 FOR UPDATE", [model]);
      const lockedModel = Array.from({ length: 4 }, () => receipt({ model }));
      const locked = Promise.all(
        lockedModel.map((r) => writer.run(recordReceiptsUnit([r], "proxy"))),
      );
      const others = timedWrites(writer, [receipt(), receipt(), receipt()]);
      const seen = await healthUntil(writer, others);
      // One bound (1 s) for the first receipt that waited, a short one for each after it.
      expect(Math.max(...(await others))).toBeLessThan(2_500);
      expect(seen).toEqual(["reachable=true full=false"]);

      await pgs.locker.query("COMMIT");
      expect(await locked).toEqual(lockedModel.map(() => [{ outcome: "created" }]));
      const { rows } = await pgs.store.pool.query(
        "SELECT count(*)::int AS n FROM jobs WHERE model = $1",
        [model],
      );
      expect(rows).toEqual([{ n: 5 }]);
    } finally {
      await pgs.locker.query("ROLLBACK").catch(() => {});
      await writer.close();
    }
  }, 60_000);

  it("writes a job's receipts in the order they came when a later one's retry falls due first", async () => {
    const writer = createReceiptWriter(pgs.store, { log });
    const first = receipt({ settlementTx: null });
    await writer.run(recordReceiptsUnit([first], "ingest"));
    const earlier = { ...first, settlementTx: receipt().settlementTx };
    const later = { ...first, settlementTx: receipt().settlementTx };
    try {
      await pgs.locker.query("BEGIN");
      await pgs.locker.query("SELECT * FROM jobs WHERE job_id = $1 FOR UPDATE", [first.jobId]);
      const written = [] as string[];
      const earlierDone = writer
        .run(recordReceiptsUnit([earlier], "ingest"))
        .then((r) => written.push(`earlier ${r[0]?.outcome}`));
      // Long enough for the earlier receipt's tries to be a second apart.
      await sleep(2_500);
      const laterDone = writer
        .run(recordReceiptsUnit([later], "ingest"))
        .then((r) => written.push(`later ${r[0]?.outcome}`));
      // The later receipt's first try waits its short bound; the lock goes as it is set apart.
      await waitFor(() => lockWaiters().then((n) => n > 0));
      await waitFor(() => lockWaiters().then((n) => n === 0));
      await pgs.locker.query("COMMIT");
      await Promise.all([earlierDone, laterDone]);
      expect(written).toEqual(["earlier updated", "later conflict"]);
      const { rows } = await pgs.store.pool.query(
        "SELECT settlement_tx FROM jobs WHERE job_id = $1",
        [first.jobId],
      );
      expect(rows).toEqual([{ settlement_tx: earlier.settlementTx }]);
    } finally {
      await pgs.locker.query("ROLLBACK").catch(() => {});
      await writer.close();
    }
  }, 30_000);

  it("keeps writing other receipts at once while many jobs' rows are locked, and each locked one once its lock goes", async () => {
    const writer = createReceiptWriter(pgs.store, { log });
    const firsts = Array.from({ length: 20 }, () => receipt({ settlementTx: null }));
    await writer.run(recordReceiptsUnit(firsts, "proxy"));
    try {
      await pgs.locker.query("BEGIN");
      await pgs.locker.query("SELECT * FROM jobs WHERE job_id = ANY($1) FOR UPDATE", [
        firsts.map((r) => r.jobId),
      ]);
      const locked = Promise.all(
        firsts.map((r) =>
          writer.run(recordReceiptsUnit([{ ...r, settlementTx: receipt().settlementTx }], "proxy")),
        ),
      );
      // Each locked receipt is set apart once; then new receipts are written without their wait.
      await timedWrites(writer, [receipt()]);
      await sleep(1_000);
      const later = await timedWrites(writer, [receipt(), receipt(), receipt()]);
      expect(Math.max(...later)).toBeLessThan(1_000);

      await pgs.locker.query("COMMIT");
      expect(await locked).toEqual(firsts.map(() => [{ outcome: "updated" }]));
    } finally {
      await pgs.locker.query("ROLLBACK").catch(() => {});
      await writer.close();
    }
  }, 30_000);

  it("holds a POST /jobs batch naming the locked job whole, writing other requests, and answers it in full once the lock goes", async () => {
    const writer = createReceiptWriter(pgs.store, { log });
    const first = wireReceipt({ settlement_tx: null });
    await ingestReceiptsVia(writer, [first], "ingest");
    const batch = [wireReceipt(), { ...first, settlement_tx: wireReceipt().settlement_tx }];
    const batchIds = batch.map((item) => item.job_id as string);
    try {
      await pgs.locker.query("BEGIN");
      await pgs.locker.query("SELECT * FROM jobs WHERE job_id = $1 FOR UPDATE", [first.job_id]);
      let answered = false;
      const held = ingestReceiptsVia(writer, batch, "ingest").finally(() => {
        answered = true;
      });
      // Another request's receipt is written meanwhile; nothing of the batch is, while it waits.
      expect((await ingestReceiptsVia(writer, [wireReceipt()], "ingest"))[0]?.status).toBe(
        "created",
      );
      await waitFor(() => lockWaiters().then((n) => n > 0));
      const { rows } = await pgs.store.pool.query(
        "SELECT count(*)::int AS n FROM jobs WHERE job_id = $1",
        [batchIds[0]],
      );
      expect(rows).toEqual([{ n: 0 }]);
      expect(answered).toBe(false);

      await pgs.locker.query("COMMIT");
      expect((await held).map((r) => r.status)).toEqual(["created", "updated"]);
    } finally {
      await pgs.locker.query("ROLLBACK").catch(() => {});
      await writer.close();
    }
  }, 30_000);

  // An operator holding a client's x-request-id finds the lines about its receipt's wait.
  it("names the request of a receipt that waits for a locked row in both lines about its wait", async () => {
    const { log: captured, lines } = capturedLogger();
    const writer = createReceiptWriter(pgs.store, { log: captured });
    const first = receipt({ settlementTx: null });
    await writer.run(recordReceiptsUnit([first], "proxy"));
    const settled = { ...first, settlementTx: receipt().settlementTx };
    const about = (message: string) =>
      lines.map((l) => JSON.parse(l)).filter((l) => String(l.msg).startsWith(message));
    try {
      await pgs.locker.query("BEGIN");
      await pgs.locker.query("SELECT * FROM jobs WHERE job_id = $1 FOR UPDATE", [first.jobId]);
      const locked = writer.run(recordReceiptsUnit([settled], "proxy"), {
        requestId: "trace-locked",
      });
      await vi.waitFor(() => expect(about("a receipt waits for a row")).toHaveLength(1), {
        timeout: 10_000,
      });
      await pgs.locker.query("COMMIT");
      await locked;
      expect(about("a receipt waits for a row")[0]).toMatchObject({ requestId: "trace-locked" });
      expect(about("a receipt that waited for a locked row is written")).toEqual([
        expect.objectContaining({ requestId: "trace-locked" }),
      ]);
    } finally {
      await pgs.locker.query("ROLLBACK").catch(() => {});
      await writer.close();
    }
  }, 30_000);

  it("rejects the locked job's receipt when it closes past its time, having written the rest", async () => {
    const writer = createReceiptWriter(pgs.store, { log, refuseAfterMs: 500 });
    const first = receipt();
    await writer.run(recordReceiptsUnit([first], "proxy"));
    try {
      await pgs.locker.query("BEGIN");
      await pgs.locker.query("SELECT * FROM jobs WHERE job_id = $1 FOR UPDATE", [first.jobId]);
      const locked = writer.run(recordReceiptsUnit([first], "ingest")).then(
        () => "written",
        (error: Error) => error.message,
      );
      const other = receipt();
      expect(await writer.run(recordReceiptsUnit([other], "proxy"))).toEqual([
        { outcome: "created" },
      ]);
      const started = performance.now();
      await writer.close();
      expect(performance.now() - started).toBeLessThan(3_000);
      expect(await locked).toMatch(/did not take the write before the writer closed/);
    } finally {
      await pgs.locker.query("ROLLBACK").catch(() => {});
      await writer.close();
    }
  }, 30_000);
});
