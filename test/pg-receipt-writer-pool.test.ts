import { setTimeout as sleep } from "node:timers/promises";
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { createReceiptWriter } from "../src/recorder/receipt-writer.js";
import { recordReceiptsUnit } from "../src/store/receipts.js";
import { reportsStore } from "../src/store/reports.js";
import type { WriteUnit } from "../src/store/write-unit.js";
import { useStoreAndLocker } from "./support/pg-locker.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { capturedLogger, receipt } from "./support/recorder-fixtures.js";

/**
 * Reads that hold every connection of a process's pool (audit lookups, reports, the dashboard,
 * waiting on a table lock a maintenance job holds, or merely slow) must not stop its receipts:
 * a proxy whose receipt writer cannot get a connection takes the database for gone and turns
 * paid work away on every host at once, though the database takes writes.
 */

const database = usePostgresDatabase();
const log = createLogger({ level: "silent" });
const pgs = useStoreAndLocker(database, { poolSize: 2, statementTimeoutMs: 30_000, migrate: true });

/** A receipt's write that takes `seconds` first: a group still running when it is looked for. */
function slowGroup(recorded: ReturnType<typeof receipt>, seconds = 0.7): WriteUnit<unknown> {
  return {
    runSqlite: () => {
      throw new Error("PostgreSQL only");
    },
    runPostgres: async (tx) => {
      await tx.execute(sql.raw(`SELECT pg_sleep(${seconds})`));
      return recordReceiptsUnit([recorded], "proxy").runPostgres(tx);
    },
  };
}

/**
 * Writes a receipt behind a first statement of `seconds` (on its first `slowTries` tries, else
 * on every one), ending the group's backend once for each of `runningFor`, each once a new one
 * has run that statement for so long; returns whether the writer (losses for `lostForAwayMs`
 * taken for an outage) took paid work and was reachable, as seen every 10 ms until the receipt
 * was written.
 */
async function reachableWhileEnded(ending: {
  seconds: number;
  runningFor: string[];
  slowTries?: number;
  lostForAwayMs?: number;
}): Promise<Set<boolean>> {
  const writer = createReceiptWriter(pgs.store, {
    log,
    ...(ending.lostForAwayMs === undefined ? {} : { lostForAwayMs: ending.lostForAwayMs }),
  });
  const recorded = receipt();
  let tries = 0;
  const unit: WriteUnit<unknown> = {
    runSqlite: () => {
      throw new Error("PostgreSQL only");
    },
    runPostgres: (tx) => {
      tries++;
      const slow = ending.slowTries === undefined || tries <= ending.slowTries;
      return slowGroup(recorded, slow ? ending.seconds : 0).runPostgres(tx);
    },
  };
  const groupBackend = async (not: number[], runningFor: string) => {
    const { rows } = await pgs.locker.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(%' AND state = 'active' AND now() - query_start >= $2::interval AND NOT (pid = ANY($1))",
      [not, runningFor],
    );
    return rows[0]?.pid;
  };
  try {
    const written = writer.run(unit);
    let settled = false;
    void written.finally(() => {
      settled = true;
    });
    const seen = new Set<boolean>();
    const watch = (async () => {
      while (!settled) {
        seen.add(writer.health().reachable && !writer.full());
        await sleep(10);
      }
    })();
    const ended: number[] = [];
    for (const runningFor of ending.runningFor) {
      await expect
        .poll(() => groupBackend(ended, runningFor), { timeout: 20_000, interval: 20 })
        .toBeTypeOf("number");
      const pid = (await groupBackend(ended, runningFor)) as number;
      await pgs.locker.query("SELECT pg_terminate_backend($1)", [pid]);
      ended.push(pid);
    }
    expect(await written).toEqual([{ outcome: "created" }]);
    await watch;
    return seen;
  } finally {
    await writer.close();
  }
}

describe("the PostgreSQL receipt writer beside reads that hold the whole pool", () => {
  it("commits receipts and stays reachable while every pooled connection waits on a lock", async () => {
    // A table the receipt path never writes (the verifier's evidence), locked as VACUUM FULL
    // or ALTER TABLE would, and as many audit-style reads of it as the pool has connections.
    await pgs.locker.query("BEGIN");
    await pgs.locker.query("LOCK TABLE check_results IN ACCESS EXCLUSIVE MODE");
    const reads = [1, 2].map(() => pgs.store.pool.query("SELECT count(*) FROM check_results"));
    // Both reads hold their connection, waiting on the lock.
    await expect
      .poll(() => [pgs.store.pool.totalCount, pgs.store.pool.idleCount], { timeout: 10_000 })
      .toEqual([2, 0]);

    const writer = createReceiptWriter(pgs.store, { log, maxRetryDelayMs: 200 });
    const recorded = receipt();
    try {
      const written = writer.run(recordReceiptsUnit([recorded], "proxy"));
      // The pool hands out a connection within 5 s or fails the write as a database away.
      const outcome = await Promise.race([written, sleep(7_000).then(() => "still waiting")]);
      expect(outcome).not.toBe("still waiting");
      expect((outcome as { outcome: string }[])[0]?.outcome).toBe("created");
      expect(writer.health()).toEqual({ reachable: true });
      expect(writer.full()).toBe(false);

      await pgs.locker.query("COMMIT");
      await Promise.all(reads);
      expect((await reportsStore(pgs.store).auditRows(recorded.jobId))?.job.jobId).toBe(
        recorded.jobId,
      );
    } finally {
      await pgs.locker.query("COMMIT").catch(() => {});
      await writer.close();
    }
  }, 30_000);
});

describe("the PostgreSQL receipt writer's own connection ended by pg_terminate_backend", () => {
  it("writes the group again at once without taking the database for gone", async () => {
    const writer = createReceiptWriter(pgs.store, { log });
    const recorded = receipt();
    // A group still running when its connection is ended (an operator's pg_terminate_backend,
    // a pooler or failover proxy recycling it): the server answers all along.
    try {
      const written = writer.run(slowGroup(recorded));
      let settled = false;
      void written.finally(() => {
        settled = true;
      });
      const backend = async () =>
        (
          await pgs.locker.query<{ pid: number }>(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(0.7)%'",
          )
        ).rows[0]?.pid;
      await expect.poll(backend, { timeout: 10_000, interval: 20 }).toBeTypeOf("number");
      await pgs.locker.query("SELECT pg_terminate_backend($1)", [await backend()]);
      // While the group is written again, the proxy keeps taking paid work and /readyz passes:
      // it used to say the database was unreachable (503 to every new job) until it committed.
      const seen = new Set<boolean>();
      while (!settled) {
        seen.add(writer.health().reachable && !writer.full());
        await sleep(10);
      }
      expect(await written).toEqual([{ outcome: "created" }]);
      expect([...seen]).toEqual([true]);
      expect((await reportsStore(pgs.store).auditRows(recorded.jobId))?.job.jobId).toBe(
        recorded.jobId,
      );
    } finally {
      await writer.close();
    }
  }, 30_000);
});

/**
 * Every session of the database ended at once (a failover proxy dropping its connections, an
 * operator's `pg_terminate_backend` over `pg_stat_activity`) while the server answers: the
 * group's retry may get a connection ended as well (one ended in the same sweep, before the pool
 * heard of it; a second wave). The second loss in a row was taken for the database away: every
 * new job was refused with 503 (and /readyz failed) until a write passed, 1.5 to 3.8 s in a
 * drill on a loaded host.
 */
describe("the PostgreSQL receipt writer losing its connection twice in a row", () => {
  it("writes the group again at once each time without taking the database for gone", async () => {
    // The group's backend, as soon as it runs: ended in the same sweep as the one before.
    expect([...(await reachableWhileEnded({ seconds: 0.7, runningFor: ["0 s", "0 s"] }))]).toEqual([
      true,
    ]);
  }, 60_000);
});

/**
 * A busy writer is in a transaction nearly all the time, so each of an operator's sweeps of
 * `pg_terminate_backend` seconds apart (or a pooler recycling connections) ends one of its
 * groups. Counted as losses in a row though each came well into a group that had run, the
 * fourth took the database for away: every new paid job was refused with 503 and /readyz
 * failed until a group committed between two sweeps, 7 to 24 s with sweeps 1 to 3 s apart and
 * a backlog grown to a group of seconds.
 */
describe("the PostgreSQL receipt writer losing its connection in sweeps apart", () => {
  it("writes the group again at once each time without taking the database for gone", async () => {
    // Each ending over a second into the group: a sweep of its own.
    expect([
      ...(await reachableWhileEnded({
        seconds: 1.6,
        runningFor: ["1.1 s", "1.1 s", "1.1 s", "1.1 s"],
      })),
    ]).toEqual([true]);
  }, 60_000);
});

/**
 * Ends each of the writer's transactions once it has run `after` (an interval), until the
 * returned function is called; that function resolves once the sweeps stopped.
 */
function endTransactionsAfter(after: string): () => Promise<void> {
  let sweeping = true;
  const sweeps = (async () => {
    while (sweeping) {
      await pgs.locker.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'decentral-audit' AND now() - xact_start > $1::interval",
        [after],
      );
      await sleep(20);
    }
  })();
  return () => {
    sweeping = false;
    return sweeps;
  };
}

/**
 * Sessions ended more often than a large group takes (a backlog grown to a group of seconds on a
 * busy host, an operator's sweep every second): every try of the whole group was ended, and no
 * receipt was written until the sweeps stopped.
 */
describe("the PostgreSQL receipt writer whose sessions are ended faster than its group runs", () => {
  it("writes smaller groups that commit between the endings", async () => {
    const writer = createReceiptWriter(pgs.store, { log });
    const stopSweeps = endTransactionsAfter("0.9 s");
    try {
      // The first task is a group alone; the next eight (1.6 s together) share the next one.
      const written = [receipt(), ...Array.from({ length: 8 }, () => receipt())].map((r, i) =>
        writer.run(i === 0 ? recordReceiptsUnit([r], "proxy") : slowGroup(r, 0.2)),
      );
      const outcome = await Promise.race([
        Promise.all(written),
        sleep(20_000).then(() => "still waiting"),
      ]);
      expect(outcome).toEqual(Array.from({ length: 9 }, () => [{ outcome: "created" }]));
    } finally {
      await stopSweeps();
      await writer.close();
    }
  }, 60_000);
});

/**
 * Every group's connection ended over a second into it (a server or pooler that ends sessions
 * every 1.2 s, or each try first waiting behind a slow holder of the writers' turn): each loss
 * started a new count, the group of one receipt was written again for ever, and `/readyz` said
 * the database was fine while responses waited and new paid work was taken.
 */
describe("the PostgreSQL receipt writer whose every group is ended over a second into it", () => {
  it("takes the database for unreachable after a bounded time, and back once a group commits", async () => {
    const { log, lines } = capturedLogger();
    // Losses taken for an outage after 3 s of them (10 s by default).
    const lostForAwayMs = 3_000;
    const writer = createReceiptWriter(pgs.store, { log, lostForAwayMs });
    // Each try of the group (2 s) is ended 1.2 s into it.
    const stopSweeps = endTransactionsAfter("1.2 s");
    const recorded = receipt();
    try {
      const written = writer.run(slowGroup(recorded, 2));
      const began = performance.now();
      await expect
        .poll(() => writer.health().reachable, { timeout: 30_000, interval: 50 })
        .toBe(false);
      // The time of losses and a try after them: a bound a user can count on.
      expect(performance.now() - began).toBeLessThan(lostForAwayMs + 6_000);
      expect(writer.full()).toBe(true);
      expect(writer.health()).toMatchObject({ reachable: false, waiting: 1 });
      expect(
        lines.some((line) => line.includes('"level":50') && line.includes("unreachable")),
      ).toBe(true);

      await stopSweeps();
      expect(await written).toEqual([{ outcome: "created" }]);
      expect(writer.health()).toEqual({ reachable: true });
      expect(writer.full()).toBe(false);
    } finally {
      await stopSweeps();
      await writer.close();
    }
  }, 60_000);
});

/**
 * A writer stopping (`SIGTERM`) while every try of its group loses its connection: it waits
 * `refuseAfterMs` for the database, then rejects what waits so its caller logs each job for an
 * `import`. Each loss was written again at once with no look at the stop, so the stop waited
 * on (for ever, or until the losses counted as an outage), and a cluster's worker was killed
 * past its drain time with no word of those jobs.
 */
describe("the PostgreSQL receipt writer stopped while every group loses its connection", () => {
  it("rejects what waits once refuseAfterMs has passed", async () => {
    const writer = createReceiptWriter(pgs.store, { log, refuseAfterMs: 1000 });
    // Each try ended over a second in: a loss of its own, written again at once.
    const stopSweeps = endTransactionsAfter("1.2 s");
    try {
      const written = writer.run(slowGroup(receipt(), 2));
      const rejected = written.then(
        () => false,
        () => true,
      );
      const began = performance.now();
      await writer.close();
      expect(performance.now() - began).toBeLessThan(5_000);
      expect(await rejected).toBe(true);
    } finally {
      await stopSweeps();
    }
  }, 60_000);
});

/**
 * A slow server (a group of 10 s under load) whose writer's connection is ended twice, once as
 * the group starts and once as its retry is about to commit (a pooler recycling connections, two
 * sweeps): the two losses 10 s apart with nothing committed between were taken for an outage,
 * and every new paid job was refused with 503 (and /readyz failed) while the next try committed.
 * Here the outage's time is 1.5 s, and the groups and the losses as far apart.
 */
describe("the PostgreSQL receipt writer losing two slow groups' connections past the outage time apart", () => {
  it("writes the group again without taking the database for gone", async () => {
    // The first two tries run 2 s, ended as the first begins and as the second ends (1.7 s
    // past the first loss); the third commits at once.
    expect([
      ...(await reachableWhileEnded({
        seconds: 2,
        runningFor: ["0 s", "1.7 s"],
        slowTries: 2,
        lostForAwayMs: 1_500,
      })),
    ]).toEqual([true]);
  }, 60_000);
});
