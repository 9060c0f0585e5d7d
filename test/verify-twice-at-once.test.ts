import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { type LocalWorld, startLocalWorld } from "../src/localnet/world.js";
import { holdingRelay } from "./support/holding-relay.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { startCli } from "./support/service-process.js";
import { simulatorReceiptsFile } from "./support/world-traffic.js";

/**
 * Two crons (a timer on each of two hosts, or one fired twice by a restarted scheduler) start
 * the nightly `verify` for the same window at the same instant, on one database. Each reads the
 * nightly lock's holder and then takes it: not one atomic step. Three real processes race for
 * it here, on SQLite and on PostgreSQL, while the chain holds every status question, so the
 * winner is still running when the others reach the lock: exactly one runs, the others exit 2
 * naming the holder, and every job's checks are written by that one run.
 */

const database = usePostgresDatabase({ migrated: true });
const JOBS = 4;
const RACERS = 3;

let world: LocalWorld;
let dir: string;

beforeAll(async () => {
  world = await startLocalWorld({ slotMs: 20, finalitySlots: 3 });
  dir = mkdtempSync(join(tmpdir(), "verify-twice-"));
});

afterAll(async () => {
  await world?.close();
});

/** Which runs wrote the checks of the window's jobs, and how many jobs each. */
type RunsOfChecks = { runs: number; jobs: number }[];

describe.each([
  {
    dialect: "sqlite",
    key: 0,
    db: async () => {
      const db = join(dir, "audit.db");
      expect(await startCli(["db", "migrate", "--db", db]).exited).toBe(0);
      return db;
    },
    runsOfChecks: async (db: string): Promise<RunsOfChecks> => {
      const store = openSqliteStore(db);
      try {
        return store.sqlite
          .prepare(
            `SELECT count(DISTINCT c.run_id) AS runs, count(DISTINCT c.job_id) AS jobs
             FROM check_results c JOIN verification_runs r ON r.id = c.run_id`,
          )
          .all() as RunsOfChecks;
      } finally {
        store.close();
      }
    },
  },
  {
    dialect: "postgres",
    key: 1,
    db: async () => database.url,
    runsOfChecks: async (db: string): Promise<RunsOfChecks> => {
      const client = new pg.Client({ connectionString: db });
      await client.connect();
      try {
        const { rows } = await client.query(
          `SELECT count(DISTINCT c.run_id)::int AS runs, count(DISTINCT c.job_id)::int AS jobs
           FROM check_results c JOIN verification_runs r ON r.id = c.run_id`,
        );
        return rows as RunsOfChecks;
      } finally {
        await client.end();
      }
    },
  },
])("$dialect: nightly verify started $dialect", ({ dialect, key, db: makeDb, runsOfChecks }) => {
  it(`${RACERS} runs of one window at one instant: one runs, the others exit 2 naming it`, async () => {
    const db = await makeDb();
    // Each case has a key (and so a credit vault) of its own: the other case's debits are no
    // receipts of this one's database, and would be named unreceipted.
    const file = join(dir, `${dialect}.jsonl`);
    await simulatorReceiptsFile(world, file, { jobs: JOBS, prefix: "t", key: world.apiKeys[key] });
    const imported = startCli(["import", file, "--db", db], { AUDIT_PROFILE: "localnet" });
    expect(await imported.exited).toBe(0);

    const relay = holdingRelay(world.rpcUrl, { held: true });
    const relayUrl = await relay.listen();
    try {
      const runs = Array.from({ length: RACERS }, () =>
        startCli(["verify", "--since", "1h", "--timeout", "30s", "--json", "--db", db], {
          SOLANA_RPC_URLS: relayUrl,
          AUDIT_PROFILE: "localnet",
          VERIFY_POLL_MS: "300",
        }),
      );
      const codes: (number | null)[] = Array.from({ length: RACERS }, () => null);
      runs.forEach((run, i) => {
        void run.exited.then((code) => {
          codes[i] = code;
        });
      });
      // The chain answers no status until every run but one has ended, or 20 s have passed
      // (then two or more are running at once: the double run this test is about).
      const started = Date.now();
      while (codes.filter((c) => c !== null).length < RACERS - 1 && Date.now() - started < 20_000) {
        await new Promise((r) => setTimeout(r, 50));
      }
      relay.release();
      await Promise.all(runs.map((run) => run.exited));

      const outcomes = runs.map((run, i) => ({ code: codes[i], stderr: run.stderr() }));
      const winners = outcomes.filter((o) => o.code === 0);
      const losers = outcomes.filter((o) => o.code !== 0);
      expect(
        { winners: winners.length, losers: losers.map((o) => o.code) },
        outcomes.map((o) => o.stderr).join("\n---\n"),
      ).toEqual({ winners: 1, losers: Array.from({ length: RACERS - 1 }, () => 2) });
      for (const loser of losers) {
        expect(loser.stderr).toContain("another verification run holds the lock (owner ");
      }
      expect(winners[0]?.stderr).toContain(`${JOBS}/${JOBS} final (verified ${JOBS},`);
      // Every job's checks written by the one run.
      expect(await runsOfChecks(db)).toEqual([{ runs: 1, jobs: JOBS }]);
    } finally {
      relay.release();
      await relay.close();
    }
  }, 90_000);
});
