import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSqliteStore, type Store } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import type { WriteUnit } from "../src/store/write-unit.js";
import { receipt } from "./support/recorder-fixtures.js";

/**
 * One task that throws makes the writer run its group again with a savepoint per task. That
 * rerun is a group like any other: it must give the event loop back as often, or one bad task
 * in a backlog held every proxied byte for the whole backlog (1.8 s for 2,000 measured).
 * PostgreSQL's writer awaits each statement of the rerun (and takes 256 tasks a group): its
 * longest stall measured the same with a failing task as without (~20-50 ms on a loaded host).
 */

const log = createLogger({ level: "silent" });
const stores: Store[] = [];
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "writer-failing-task-"));
});

afterAll(async () => {
  for (const store of stores) await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * The most tasks run in one turn of the event loop while `body` ran: a turn counter moves
 * between every two immediates, and each task notes the turn it ran in. Counted, not timed:
 * on a shared host a timed stall mostly measures the other processes.
 */
async function mostTasksInOneTurn(
  body: (unit: <T>(task: WriteUnit<T>) => WriteUnit<T>) => Promise<unknown>,
): Promise<number> {
  let turn = 0;
  let ticking = true;
  const tick = () => {
    turn++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const perTurn = new Map<number, number>();
  const note = () => perTurn.set(turn, (perTurn.get(turn) ?? 0) + 1);
  try {
    await body((task) => ({
      runSqlite: (store) => {
        note();
        return task.runSqlite(store);
      },
      runPostgres: (tx) => {
        note();
        return task.runPostgres(tx);
      },
    }));
  } finally {
    ticking = false;
  }
  return Math.max(...perTurn.values());
}

const failing: WriteUnit<never> = {
  runSqlite: () => {
    throw new Error("this task's own fault");
  },
  runPostgres: () => Promise.reject(new Error("this task's own fault")),
};

async function backlogBehindFailingTask(store: Store) {
  const writer = createReceiptWriter(store, { log, maxBacklog: 10_000 });
  // Warm: statements prepared, pages cached.
  await writer.run(recordReceiptsUnit([receipt()], "proxy"));
  const units = Array.from({ length: 2000 }, () => recordReceiptsUnit([receipt()], "proxy"));
  let failed: unknown;
  let written = 0;
  const most = await mostTasksInOneTurn((unit) =>
    Promise.all([
      writer.run(unit(failing)).catch((error: unknown) => {
        failed = error;
      }),
      ...units.map((task) => writer.run(unit(task)).then(() => written++)),
    ]),
  );
  await writer.close();
  return { most, failed, written };
}

describe("a receipt task that throws in front of a backlog of 2,000", () => {
  it("fails alone on SQLite, and the rerun gives the event loop back as a group does", async () => {
    const store = openSqliteStore(join(dir, "audit.db"));
    stores.push(store);
    migrateStore(store);
    const { most, failed, written } = await backlogBehindFailingTask(store);
    expect(String(failed)).toContain("this task's own fault");
    expect(written).toBe(2000);
    // A group's slice is 1 ms: a few dozen receipts at most; the whole backlog before.
    expect(most).toBeLessThan(500);
  });
});
