import { spawn } from "node:child_process";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { openPostgres } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { recordReceipts } from "../src/recorder/receipts.js";
import { startEmbeddedPostgres } from "../test/support/postgres-server.js";
import { startChild } from "./children.js";
import { clientAgent, timedRequest } from "./http-client.js";
import { benchReceipts, measurePostJobs } from "./ingest-bench.js";
import { measurePgReports, type PgReportsResult } from "./report-db-pg.js";
import { percentile, round } from "./stats.js";
import { generateJobs, type VerifyWorld } from "./verify-bench.js";

/**
 * The two stores side by side in one run: SQLite (a file) and PostgreSQL (an embedded server
 * started here, with fsync and synchronous commit on, as a production server runs):
 * - ingest: two `serve` processes on one store, `POST /jobs` in batches of 1,000 to both at
 *   once; receipts per second over the whole;
 * - audit lookups: `GET /audit/:jobId` of random ingested jobs, one at a time, p50/p99;
 * - reports (PostgreSQL): the reconciliation and the audit record over a generated month of
 *   1,000,000 jobs (bench/report-db-pg.ts; SQLite's are in the reports section);
 * - verification (PostgreSQL): the same real jobs verified by one verifier process, then by two
 *   at once (as two `serve` processes run them), each with an RPC endpoint of its own at the
 *   same requests/s limit; the work is shared through `FOR UPDATE SKIP LOCKED` leases, so two
 *   should take about half the time.
 */

export interface StoreSide {
  store: "sqlite" | "postgres";
  ingest: { receipts: number; seconds: number; receiptsPerSec: number; notCreated: number };
  audit: {
    lookups: number;
    p50Ms: number;
    p99Ms: number;
    notFound: number;
    /** The same serve's `/healthz` meanwhile, p99: what the service alone adds. */
    healthzP99Ms: number;
    /** PostgreSQL: the audit's point read sent straight to the server, p99; SQLite: null. */
    directP99Ms: number | null;
  };
}

export interface VerifySharing {
  jobs: number;
  rateLimitPerSec: number;
  one: { seconds: number; jobsPerSec: number; verified: number };
  two: { seconds: number; jobsPerSec: number; verified: number };
  /** Two processes' throughput over one's. */
  ratio: number;
}

export interface PostgresResult {
  sides: StoreSide[];
  verify: VerifySharing | null;
  /** The reports over a generated month on PostgreSQL (SQLite's are the reports section's). */
  reports: PgReportsResult | null;
}

/** A database of its own on the bench's server. */
async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(name)} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.href;
}

/** Two `serve` processes (one process each) on one store. */
async function startTwoServes(databaseUrl: string, env: Record<string, string>) {
  const start = () =>
    startChild<{ url: string; token: string }>("./service-child.ts", {
      BENCH_MODE: "service",
      DATABASE_URL: databaseUrl,
      AUDIT_PROFILE: "localnet",
      PORT: "0",
      LOG_LEVEL: "warn",
      WORKERS: "1",
      ...env,
    });
  // One after the other: the second finds the migrations applied.
  const first = await start();
  const second = await start();
  return [first, second] as const;
}

async function measureSide(
  store: StoreSide["store"],
  databaseUrl: string,
  env: Record<string, string>,
  count: number,
  lookups: number,
): Promise<StoreSide> {
  const serves = await startTwoServes(databaseUrl, env);
  try {
    const receipts = benchReceipts(count, `${store[0]}g`);
    const half = Math.ceil(receipts.length / 2);
    const started = performance.now();
    const parts = await Promise.all(
      serves.map((s, i) =>
        measurePostJobs(
          s.ready.url,
          s.ready.token,
          receipts.slice(i * half, (i + 1) * half),
          1000,
          2,
        ),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    const ids = receipts.map((r) => String(r.job_id));
    const agent = clientAgent(1);
    const headers = { authorization: `Bearer ${serves[0].ready.token}` };
    let seed = 11;
    const pick = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return ids[seed % ids.length]!;
    };
    for (let i = 0; i < 100; i++) {
      await timedRequest(agent, `${serves[0].ready.url}/audit/${pick()}`, { headers });
    }
    // What the lookups' tail is made of: the same serve's /healthz (no database: its event
    // loop and its share of the cores), and on PostgreSQL the same point read sent by this
    // process straight to the server (the database's own latency under this load).
    const healthz: number[] = [];
    for (let i = 0; i < lookups; i++) {
      healthz.push((await timedRequest(agent, `${serves[0].ready.url}/healthz`, {})).totalMs);
    }
    const direct: number[] = [];
    if (store === "postgres") {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        for (let i = 0; i < lookups; i++) {
          const started = performance.now();
          await client.query("SELECT job_id FROM jobs WHERE job_id = $1", [pick()]);
          direct.push(performance.now() - started);
        }
      } finally {
        await client.end();
      }
    }
    const times: number[] = [];
    let notFound = 0;
    for (let i = 0; i < lookups; i++) {
      const t = await timedRequest(agent, `${serves[0].ready.url}/audit/${pick()}`, { headers });
      if (t.status !== 200) notFound++;
      times.push(t.totalMs);
    }
    agent.destroy();
    return {
      store,
      ingest: {
        receipts: receipts.length,
        seconds: round(seconds, 3),
        receiptsPerSec: round(receipts.length / seconds, 0),
        notCreated: parts.reduce((n, p) => n + p.notCreated, 0),
      },
      audit: {
        lookups,
        p50Ms: round(percentile(times, 50), 3),
        p99Ms: round(percentile(times, 99), 3),
        notFound,
        healthzP99Ms: round(percentile(healthz, 99), 3),
        directP99Ms: direct.length > 0 ? round(percentile(direct, 99), 3) : null,
      },
    };
  } finally {
    await Promise.all(serves.map((s) => s.stop()));
  }
}

/** A verifier in a process of its own (bench/verify-child.ts); resolves with its start and end. */
async function verifierProcess(databaseUrl: string, rpcUrl: string, rateLimitPerSec: number) {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", fileURLToPath(new URL("./verify-child.ts", import.meta.url))],
    {
      env: {
        ...process.env,
        DATABASE_URL: databaseUrl,
        RPC_URL: rpcUrl,
        RPC_RATE_LIMIT: String(rateLimitPerSec),
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk;
  });
  const [code] = (await once(child, "exit")) as [number | null];
  const events = out
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { event: string; at: number; status?: string });
  const started = events.find((e) => e.event === "started");
  const done = events.find((e) => e.event === "done");
  if (code !== 0 || !started || !done || done.status !== "completed") {
    throw new Error(`verifier process exited with ${code}: ${out.slice(-500)}`);
  }
  return { startedAt: started.at, doneAt: done.at };
}

/**
 * Runs `processes` verifier processes at once over a fresh copy of the jobs (as that many `serve`
 * processes would share them); time from the first start to the last job final.
 */
async function verifyWith(
  processes: number,
  adminUrl: string,
  world: VerifyWorld,
  receipts: Awaited<ReturnType<typeof generateJobs>>,
  rateLimitPerSec: number,
) {
  const url = await createDatabase(adminUrl, `bench_verify_${processes}`);
  const store = openPostgres(url);
  try {
    await migratePostgres(store.pool);
    await recordReceipts(store, receipts, "proxy");
    const endpoints = await Promise.all(
      Array.from({ length: processes }, () => world.addRpcEndpoint(rateLimitPerSec)),
    );
    const runs = await Promise.all(
      endpoints.map((rpc) => verifierProcess(url, rpc, rateLimitPerSec)),
    );
    const seconds =
      (Math.max(...runs.map((r) => r.doneAt)) - Math.min(...runs.map((r) => r.startedAt))) / 1000;
    const verified = await store.pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM jobs WHERE verdict = 'verified'",
    );
    const n = Number(verified.rows[0]?.n ?? 0);
    return { seconds: round(seconds, 2), jobsPerSec: round(n / seconds, 1), verified: n };
  } finally {
    await store.close();
  }
}

export async function measurePostgres(
  world: VerifyWorld & { rpcUrl: string },
  options: {
    ingestReceipts: number;
    lookups: number;
    verifyJobs: number;
    rateLimitPerSec: number;
    /** Jobs of the generated month the reports are measured over; 0 leaves them out. */
    reportJobs: number;
  },
): Promise<PostgresResult> {
  const server = await startEmbeddedPostgres({ durable: true });
  const sqliteFile = join(tmpdir(), `bench-pg-side-${process.pid}.db`);
  try {
    // The verifier of each serve runs as in production; the ingested receipts name
    // transactions no chain has, so it polls their statuses meanwhile.
    const env = { SOLANA_RPC_URLS: world.rpcUrl, DECENTRAL_BASE_URL: world.decentralBaseUrl };
    const sides: StoreSide[] = [];
    if (options.ingestReceipts > 0) {
      sides.push(
        await measureSide("sqlite", sqliteFile, env, options.ingestReceipts, options.lookups),
      );
      const pgUrl = await createDatabase(server.adminUrl, "bench_ingest");
      sides.push(
        await measureSide("postgres", pgUrl, env, options.ingestReceipts, options.lookups),
      );
    }

    let verify: VerifySharing | null = null;
    if (options.verifyJobs > 0) {
      const receipts = await generateJobs(world, options.verifyJobs, 16);
      const lastSlot = await world.currentSlot();
      while ((await world.currentSlot()) <= lastSlot + world.finalitySlots + 1) {
        await sleep(world.slotMs);
      }
      const one = await verifyWith(1, server.adminUrl, world, receipts, options.rateLimitPerSec);
      const two = await verifyWith(2, server.adminUrl, world, receipts, options.rateLimitPerSec);
      verify = {
        jobs: receipts.length,
        rateLimitPerSec: options.rateLimitPerSec,
        one,
        two,
        ratio: round(two.jobsPerSec / one.jobsPerSec, 2),
      };
    }
    const reports =
      options.reportJobs > 0
        ? await measurePgReports(server.adminUrl, {
            jobs: options.reportJobs,
            samples: 40,
            audits: 2000,
          })
        : null;
    return { sides, verify, reports };
  } finally {
    await server.stop();
    for (const s of ["", "-wal", "-shm"]) rmSync(sqliteFile + s, { force: true });
  }
}
