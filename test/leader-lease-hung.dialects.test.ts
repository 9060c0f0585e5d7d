import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { openPostgres } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { holdLeaderLease } from "../src/leader-lease.js";
import { createLogger } from "../src/log.js";
import { usePostgresDatabase } from "./support/postgres.js";

let cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

describe("leader lease on PostgreSQL", () => {
  const database = usePostgresDatabase();

  it("stops leading once its lease runs out while a renewal hangs without an answer", async () => {
    const store = openPostgres(database.url);
    cleanup.push(() => store.close());
    await migratePostgres(store.pool);
    let lost = 0;
    let gained!: () => void;
    const leading = new Promise<void>((resolve) => {
      gained = resolve;
    });
    const lease = holdLeaderLease({
      store,
      log: createLogger({ level: "silent" }),
      heartbeatMs: 50,
      ttlMs: 400,
      onGain: () => gained(),
      onLose: async () => {
        lost += 1;
      },
    });
    cleanup.push(() => lease.stop());
    await leading;
    // Another session holds the table (or the lease's peer went silent): renewals wait, with
    // no error, up to the statement timeout (30 s) or for as long as TCP takes to notice.
    const blocker = new pg.Client({ connectionString: database.url });
    await blocker.connect();
    await blocker.query("BEGIN");
    await blocker.query("LOCK TABLE locks IN ACCESS EXCLUSIVE MODE");
    cleanup.push(async () => {
      await blocker.query("ROLLBACK");
      await blocker.end();
    });
    const lockedAt = performance.now();
    while (lease.isLeader() && performance.now() - lockedAt < 3000)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(lease.isLeader()).toBe(false);
    expect(lost).toBe(1);
  });
});
