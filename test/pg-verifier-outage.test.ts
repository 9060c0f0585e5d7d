import pg from "pg";
import { afterEach, describe, expect, it, vi } from "vitest";
import { openPostgres, type PgStore } from "../src/db/pg/client.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile, profileId } from "../src/verify/profiles.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { readJob, seedJobs } from "./support/seed-verdicts.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";

/** Final verdicts name the profile that reached them, as the verifier writes them. */
const LOCALNET = profileId(localnetProfile);

/**
 * Maintenance on PostgreSQL (`VACUUM FULL jobs`, `CLUSTER`, an `ALTER TABLE` of a migration run
 * by hand, a `LOCK TABLE` in a script) holds an ACCESS EXCLUSIVE lock that blocks reads too.
 * A statement of the nightly run waiting on it past `DATABASE_STATEMENT_TIMEOUT_MS` is cancelled
 * by the server (57014); the lock then goes away well within the run's `--timeout`. The run
 * must wait it out as it waits out a restart, not end with exit 2.
 */

const log = createLogger({ level: "silent" });
const database = usePostgresDatabase();
const from = Date.UTC(2026, 10, 1);
const to = Date.UTC(2026, 10, 2);
let store: PgStore | undefined;
let holder: pg.Client | undefined;

afterEach(async () => {
  await holder?.end().catch(() => {});
  holder = undefined;
  await store?.close();
  store = undefined;
});

/**
 * Ends the session of each statement `cut` picks as it is sent (pg_terminate_backend, a restart
 * landing on that one statement): the statement is sent as the termination.
 */
function cutStatements(pgStore: PgStore, cut: (text: string) => boolean) {
  const pool = pgStore.pool as unknown as { query: (...args: unknown[]) => unknown };
  const query = pool.query.bind(pool);
  pool.query = (config: unknown, ...rest: unknown[]) => {
    const text = typeof config === "string" ? config : (config as { text?: string })?.text;
    if (cut(text ?? "")) {
      return query("SELECT pg_terminate_backend(pg_backend_pid())", ...rest.slice(1));
    }
    return query(config, ...rest);
  };
}

/** serve's verifier on `pgStore`, its heartbeat renewed every 200 ms. */
const serveVerifier = (pgStore: PgStore) =>
  createVerifier({
    store: pgStore,
    rpc: createFakeChain().rpc,
    profile: localnetProfile,
    log,
    options: { pollIntervalMs: 5, errorBackoffMs: 20, idleIntervalMs: 50, leaseMs: 600 },
  });

/** Holds ACCESS EXCLUSIVE on `table` for `ms` from now; resolves once it is taken. */
async function lockTable(url: string, table: string, ms: number) {
  holder = new pg.Client({ connectionString: url });
  await holder.connect();
  await holder.query("BEGIN");
  await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  const client = holder;
  const released = new Promise<void>((resolve) => setTimeout(resolve, ms)).then(async () => {
    await client.query("COMMIT");
  });
  return { released };
}

describe("the nightly verify on PostgreSQL while a table lock outlasts the statement timeout", () => {
  for (const table of ["jobs", "verification_runs"]) {
    it(`waits out a lock on ${table} within its time: exit 1 for the discrepancy, every count right`, async () => {
      const url = await database.createMigrated();
      store = openPostgres(url, { poolSize: 4, statementTimeoutMs: 300 });
      await seedJobs(store, [
        {
          jobId: "job_v1",
          verdict: "verified",
          verdictProfile: LOCALNET,
          leaseOwner: null,
          createdAt: from + 1000,
        },
        {
          jobId: "job_v2",
          verdict: "verified",
          verdictProfile: LOCALNET,
          leaseOwner: null,
          createdAt: from + 2000,
        },
        {
          jobId: "job_d1",
          verdict: "discrepancy",
          verdictProfile: LOCALNET,
          leaseOwner: null,
          createdAt: from + 3000,
        },
      ]);
      const engine = createVerifier({
        store,
        rpc: createFakeChain().rpc,
        profile: localnetProfile,
        log,
        options: { pollIntervalMs: 5, errorBackoffMs: 20 },
      });
      const { released } = await lockTable(url, table, 2000);
      const started = performance.now();
      const summary = await runNightlyVerification(store, engine, { from, to, timeoutMs: 30_000 });
      await released;
      expect(summary.reason).toBeNull();
      expect(summary.exitCode).toBe(1);
      expect(summary.outcome).toBe("discrepancies");
      expect(summary.total).toBe(3);
      expect(summary.byVerdict.verified).toBe(2);
      expect(performance.now() - started).toBeGreaterThan(1000);
    }, 60_000);
  }
});

describe("serve's verifier on PostgreSQL when its connection is cut between two statements", () => {
  it("goes on verifying: the loop never stops for a statement the outage cut", async () => {
    const url = await database.createMigrated();
    store = openPostgres(url, { poolSize: 4, statementTimeoutMs: 30_000 });
    // The server ends the session as the loop looks for its next due job after an idle round
    // (pg_terminate_backend, a failover, a restart landing between two statements): the
    // statement is sent as `SELECT pg_terminate_backend(pg_backend_pid())`, so the error is the
    // server's own (57P01), three times in a row.
    let cuts = 0;
    const pool = store.pool as unknown as { query: (...args: unknown[]) => unknown };
    const query = pool.query.bind(pool);
    pool.query = (config: unknown, ...rest: unknown[]) => {
      const text = typeof config === "string" ? config : (config as { text?: string })?.text;
      if (cuts < 3 && text?.includes("min(due)")) {
        cuts++;
        return query("SELECT pg_terminate_backend(pg_backend_pid())", ...rest.slice(1));
      }
      return query(config, ...rest);
    };
    const verifier = createVerifier({
      store,
      rpc: createFakeChain().rpc,
      profile: localnetProfile,
      log,
      options: { pollIntervalMs: 2, errorBackoffMs: 5, idleIntervalMs: 20 },
    });
    verifier.start();
    try {
      await vi.waitFor(() => expect(cuts).toBe(3), { timeout: 15_000, interval: 10 });
      // The database answers again: a job recorded now is judged by the running loop.
      await seedJobs(store, [{ jobId: "job_after", leaseOwner: null, createdAt: Date.now() }]);
      await vi.waitFor(
        async () => expect((await readJob(store!, "job_after"))?.verdict).not.toBe("pending"),
        { timeout: 15_000, interval: 50 },
      );
    } finally {
      await verifier.stop();
    }
  }, 60_000);
});

describe("serve's in-process nightly on PostgreSQL when its outcome's write is cut", () => {
  it("closes the night's row once the database answers, not `running` for as long as serve runs", async () => {
    const url = await database.createMigrated();
    store = openPostgres(url, { poolSize: 4, statementTimeoutMs: 30_000 });
    await seedJobs(store, [
      {
        jobId: "job_n1",
        verdict: "verified",
        verdictProfile: LOCALNET,
        leaseOwner: null,
        createdAt: from + 1000,
      },
    ]);
    // The session is ended as the night's outcome is written (pg_terminate_backend, a restart
    // landing on that one statement): the statement is sent as the termination, once.
    let cuts = 0;
    cutStatements(store, (text) => cuts < 1 && text.includes("'{}'::jsonb") && ++cuts > 0);
    // serve's own loop keeps this owner's heartbeat beating (one run of its own).
    const verifier = serveVerifier(store);
    verifier.start();
    try {
      await vi.waitFor(
        async () =>
          expect(
            (await store!.pool.query("SELECT 1 FROM verification_runs WHERE trigger = 'serve'"))
              .rowCount,
          ).toBe(1),
        { timeout: 10_000, interval: 20 },
      );
      const summary = await runNightlyVerification(store, verifier, {
        from,
        to,
        timeoutMs: 20_000,
      });
      expect(cuts).toBe(1);
      expect(summary.exitCode).toBe(0);
      const row = async () =>
        (
          await store!.pool.query<{ status: string; exit: string | null }>(
            "SELECT status, summary->>'exitCode' AS exit FROM verification_runs WHERE id = $1",
            [summary.runId],
          )
        ).rows[0];
      await vi.waitFor(
        async () => expect(await row()).toEqual({ status: "completed", exit: "0" }),
        {
          timeout: 5000,
          interval: 50,
        },
      );
    } finally {
      await verifier.stop();
    }
  }, 60_000);
});

describe("serve's verifier on PostgreSQL when its run's closing write is cut as the leader lease goes", () => {
  // A leader whose lease ran out during an outage could not close its run; the same process
  // took the lease back and opened another, and the first stayed `running` beside it for as
  // long as the process lived: its heartbeat was live again, and the failed close was
  // forgotten with the last open run (found as deployed).
  it("closes the earlier run once the verifier runs again, not `running` beside the new one", async () => {
    const url = await database.createMigrated();
    store = openPostgres(url, { poolSize: 4, statementTimeoutMs: 30_000 });
    let cut = false;
    cutStatements(store, (text) => {
      if (!cut || !/^update "verification_runs" set "status"/.test(text)) return false;
      cut = false;
      return true;
    });
    const verifier = serveVerifier(store);
    const runs = async () =>
      (
        await store!.pool.query<{ status: string }>(
          "SELECT status FROM verification_runs WHERE trigger = 'serve' ORDER BY id",
        )
      ).rows;
    verifier.start();
    try {
      await vi.waitFor(async () => expect(await runs()).toHaveLength(1), {
        timeout: 10_000,
        interval: 20,
      });
      cut = true;
      await verifier.stop();
      // Its close was cut: the row is left `running`.
      expect((await runs()).map((r) => r.status)).toEqual(["running"]);
      verifier.start();
      await vi.waitFor(
        async () => {
          const [first, second] = await runs();
          expect(second?.status).toBe("running");
          expect(first?.status).not.toBe("running");
        },
        { timeout: 10_000, interval: 50 },
      );
    } finally {
      await verifier.stop();
    }
  }, 60_000);
});
