import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PgStore } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { openHost, shortDeadlockTimeout } from "./support/pg-deadlock.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { address, capturedLogger, receipt } from "./support/recorder-fixtures.js";

/**
 * Two hosts' receipt writers on one PostgreSQL: each group commit is one transaction of many
 * tasks, and each task's insert upserts the rollup rows of its model, worker and hour (a
 * statement trigger). Two groups holding receipts of the same models in other orders locked
 * those shared rows in other orders and deadlocked: one group was aborted and logged "could not
 * record receipts; will retry", its callers waiting a deadlock_timeout and a backoff more.
 */

const database = usePostgresDatabase();
let hosts: PgStore[] = [];

beforeAll(async () => {
  // Deadlocks found in a few milliseconds, so a run finds them quickly if the order is wrong.
  await shortDeadlockTimeout(database.url);
  hosts = [0, 1].map(() => openHost(database.url));
  await migratePostgres(hosts[0]!.pool);
});

afterAll(async () => {
  await Promise.all(hosts.map((host) => host.close()));
});

describe("two hosts' PostgreSQL receipt writers committing groups at once", () => {
  it("wait for each other instead of deadlocking, and record every receipt once", async () => {
    const models = Array.from({ length: 8 }, (_, i) => `model-${i}`);
    const workers = Array.from({ length: 4 }, () => address());
    const logs = hosts.map(() => capturedLogger());
    const writers = hosts.map((host, i) =>
      createReceiptWriter(host, { log: logs[i]!.log, maxRetryDelayMs: 200 }),
    );
    const recorded: Promise<{ outcome: string }[]>[] = [];
    const sent: string[] = [];
    try {
      for (let round = 0; round < 8; round++) {
        writers.forEach((writer, w) => {
          // One host sends the models in one order, the other in the reverse order.
          const order = w === 0 ? models : [...models].reverse();
          for (const [m, model] of order.entries()) {
            const one = receipt({ model, worker: workers[(m + round) % workers.length] });
            sent.push(one.jobId);
            recorded.push(writer.run(recordReceiptsUnit([one], "proxy")));
          }
        });
        await Promise.all(writers.map((writer) => writer.idle()));
      }
      const outcomes = await Promise.all(recorded);
      expect(outcomes.map((o) => o[0]?.outcome).filter((o) => o !== "created")).toEqual([]);
    } finally {
      await Promise.all(writers.map((writer) => writer.close()));
    }
    // Each aborted group logged once, with the error's cause (long: the statement and its rows).
    const retried = logs
      .flatMap((l) => l.lines)
      .filter((line) => /will retry|deadlock/.test(line))
      .map((line) => {
        const { msg, err } = JSON.parse(line) as { msg: string; err?: { message?: string } };
        return `${msg}: ${err?.message?.split(": ").at(-1) ?? ""}`;
      });
    expect(retried).toEqual([]);
    const { rows } = await hosts[0]!.pool.query<{ n: string; distinct: string }>(
      "SELECT count(*) AS n, count(DISTINCT job_id) AS distinct FROM jobs WHERE job_id = ANY($1)",
      [sent],
    );
    expect(rows[0]).toEqual({ n: String(sent.length), distinct: String(sent.length) });
  }, 60_000);
});
