import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import bs58 from "bs58";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { openPostgres } from "../src/db/pg/client.js";
import { type LocalWorld, startLocalWorld } from "../src/localnet/world.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { holdingRelay } from "./support/holding-relay.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { type CliProcess, startCli, startServe, until } from "./support/service-process.js";
import { simulatorReceiptsFile } from "./support/world-traffic.js";

/**
 * The nightly `verify` judges the jobs of earlier windows sent back to be judged again before
 * it began (with only the nightly deployed nothing else does), beside a live `serve` on the same
 * store (a SQLite file, a PostgreSQL database): one serve's verifier holds (its round waiting on a node stuck on statuses) is left
 * to it, the run waiting for none. Judging every such job to the end, a run beside serve waited
 * out its whole --timeout for the one serve held (6 s against 0.15 s) and exited 2.
 */

let world: LocalWorld;
let dir: string;

beforeAll(async () => {
  world = await startLocalWorld({ slotMs: 20, finalitySlots: 3 });
  dir = mkdtempSync(join(tmpdir(), "sent-back-beside-serve-"));
});

afterAll(async () => {
  await world?.close();
});

const database = usePostgresDatabase({ migrated: true });

/** The rows `query` reads from the store at `db` (a SQLite file, or a PostgreSQL URL). */
async function read<T>(db: string, query: string): Promise<T[]> {
  if (db.startsWith("postgres")) {
    const store = openPostgres(db, { poolSize: 1, statementTimeoutMs: 30_000 });
    try {
      return (await store.pool.query(query)).rows as T[];
    } finally {
      await store.close();
    }
  }
  const store = openSqliteStore(db);
  try {
    return store.sqlite.prepare(query).all() as T[];
  } finally {
    store.close();
  }
}

/** The run each job's check rows were last written under (a final verdict writes them anew). */
async function judgedBy(db: string): Promise<Record<string, { run: number; trigger: string }>> {
  const rows = await read<{ job_id: string; run: number; trigger: string }>(
    db,
    `SELECT DISTINCT c.job_id, CAST(r.id AS INTEGER) AS run, r.trigger FROM check_results c
     JOIN verification_runs r ON r.id = c.run_id ORDER BY c.job_id`,
  );
  return Object.fromEntries(rows.map(({ job_id, ...r }) => [job_id, r]));
}

const verdictOf = async (db: string, jobId: string) =>
  (await read<{ verdict: string }>(db, `SELECT verdict FROM jobs WHERE job_id = '${jobId}'`))[0]
    ?.verdict;

describe.each(["sqlite", "postgres"])(
  "the nightly verify beside serve on %s, with jobs of an earlier window sent back",
  (dialect) => {
    it("judges the one it can, leaves the one serve's verifier holds, and ends in its normal time", async () => {
      const db = dialect === "postgres" ? database.url : join(dir, "audit.db");
      const file = join(dir, `receipts-${dialect}.jsonl`);
      // A key of its own: the run reads the key's credit vault, whose other jobs this store lacks.
      const key = world.apiKeys[dialect === "postgres" ? 1 : 0] as string;
      const [held, free] = await simulatorReceiptsFile(world, file, {
        jobs: 2,
        prefix: dialect,
        key,
      });
      if (held === undefined || free === undefined) throw new Error("two jobs");
      if (dialect === "sqlite")
        expect(await startCli(["db", "migrate", "--db", db]).exited).toBe(0);
      const env = { SOLANA_RPC_URLS: world.rpcUrl, AUDIT_PROFILE: "localnet" };
      expect(await startCli(["import", file, "--db", db], env).exited).toBe(0);
      // Their night's run counts both verified.
      const first = startCli(["verify", "--since", "1h", "--timeout", "30s", "--db", db], env);
      expect({ code: await first.exited, stderr: first.stderr() }).toEqual({
        code: 0,
        stderr: expect.stringContaining("2/2 final (verified 2,"),
      });
      // The next night's window starts over a second after them: by then (the run above took
      // seconds) it mostly already does, and a fixed 1.1 s was waited on every run.
      // (The window takes a job by either time: its receipt's, and when it was recorded.)
      const [times] = await read<{ created: number | string; recorded: number | string }>(
        db,
        "SELECT max(created_at) AS created, max(recorded_at) AS recorded FROM jobs",
      );
      const wait = Math.max(Number(times?.created), Number(times?.recorded)) + 1_100 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const from = new Date().toISOString();

      const relay = holdingRelay(world.rpcUrl);
      const relayUrl = await relay.listen();
      let serve: CliProcess | undefined;
      try {
        relay.hold();
        serve = await startServe(db, {
          SOLANA_RPC_URLS: relayUrl,
          DECENTRAL_BASE_URL: world.decentralBaseUrl,
          VERIFY_POLL_MS: "300",
        });
        // A conflicting receipt of `held` names a settlement no node has seen: sent back, and
        // serve's verifier claims it and asks the node about that transaction, which holds the
        // answer (a node stuck on its status index): serve's round keeps the job's lease.
        const receipt = JSON.parse(readFileSync(file, "utf8").split("\n")[0] as string);
        const unseen = bs58.encode(randomBytes(64));
        const conflict = join(dir, `conflict-${dialect}.jsonl`);
        writeFileSync(conflict, `${JSON.stringify({ ...receipt, settlement_tx: unseen })}\n`);
        expect(await startCli(["import", conflict, "--db", db], env).exited).toBe(0);
        await until(() => relay.waiting() > 0, 15_000);
        // `free` is sent back by hand while serve's round waits: no verifier of serve's takes it.
        const store = dialect === "postgres" ? openPostgres(db) : openSqliteStore(db);
        try {
          await createJobQueueStore(store).reverify(free, Date.now());
        } finally {
          await store.close();
        }
        expect(await verdictOf(db, held)).toBe("pending");
        expect(await verdictOf(db, free)).toBe("pending");

        const out = join(dir, `night-${dialect}.json`);
        const started = performance.now();
        const night = startCli(
          [
            ...["verify", "--from", from, "--to", new Date().toISOString()],
            ...["--timeout", "20s", "--json", "--out", out, "--db", db],
          ],
          env,
        );
        const code = await night.exited;
        const ms = Math.round(performance.now() - started);
        if (process.env.SENT_BACK_TIMES) console.log({ code, ms });
        expect({ code, stderr: night.stderr() }).toEqual({ code: 0, stderr: expect.any(String) });
        const summary = JSON.parse(readFileSync(out, "utf8"));
        expect(summary).toMatchObject({
          outcome: "no_jobs",
          exitCode: 0,
          reason: null,
          sentBackElsewhere: { judged: 1, changed: 0, left: 1 },
        });
        expect(summary.earlierJobs).toBeUndefined();
        // Its normal time, not its --timeout (20 s): it waited for none of them.
        expect(ms).toBeLessThan(10_000);
        expect(await verdictOf(db, free)).toBe("verified");
        expect(await verdictOf(db, held)).toBe("pending");

        // Each judged once since it was sent back, by the verifier that held it: `free` by the
        // nightly, `held` by none yet (serve's round still waits on the node); serve judged none.
        const by = await judgedBy(db);
        expect(by[free]).toEqual({ run: summary.runId, trigger: "verify" });
        expect(by[held]?.run).not.toBe(summary.runId);
        expect(serve.logs.filter((l) => l.msg === "job verdict")).toEqual([]);
        expect(relay.waiting()).toBeGreaterThan(0);
      } finally {
        relay.release();
        serve?.child.kill("SIGTERM");
        await serve?.exited;
        await relay.close();
      }
    }, 90_000);
  },
);
