/**
 * Verdict writes per second through the verdict store on PostgreSQL (batches of `batchSize`
 * leased jobs, each a final verdict with amounts and two check rows), `inFlight` batches at
 * once, jobs spread over a few models, workers and keys of one day. Not part of `npm run bench`.
 *
 *   node --import tsx bench/pg-verdict-writes.ts [batches] [batchSize] [inFlight]
 *
 * PostgreSQL is TEST_POSTGRES_URL's server when set, else a throwaway embedded one (fsync off).
 */
import pg from "pg";
import { openPostgres } from "../src/db/pg/client.js";
import { migratePostgres } from "../src/db/pg/migrate.js";
import { jobs } from "../src/db/pg/schema.js";
import { createVerdictStore, type VerdictWrite } from "../src/store/verdicts.js";
import { startEmbeddedPostgres } from "../test/support/postgres-server.js";

const batches = Number(process.argv[2] ?? 20);
const batchSize = Number(process.argv[3] ?? 100);
const inFlight = Number(process.argv[4] ?? 2);
const owner = "bench-owner";
const t0 = Date.UTC(2026, 10, 1, 12);

const server = process.env.TEST_POSTGRES_URL
  ? { adminUrl: process.env.TEST_POSTGRES_URL, stop: async () => {} }
  : await startEmbeddedPostgres();
const name = `bench_verdicts_${process.pid}`;
const admin = new pg.Client({ connectionString: server.adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${name}`);
const url = new URL(server.adminUrl);
url.pathname = `/${name}`;
const store = openPostgres(url.href);

function decision(jobId: string): VerdictWrite {
  return {
    job: { jobId, keyFingerprint: null, verdictAt: null, verifyAttempts: 0 },
    verdict: "verified",
    nextVerifyAt: t0 + 60_000,
    lastError: null,
    commitment: "finalized",
    evaluation: {
      amounts: {
        escrowedUnits: 400_000n,
        chargedUnits: 80_000n,
        workerPaidUnits: 60_000n,
        treasuryPaidUnits: 20_000n,
        refundedUnits: 320_000n,
        expectedChargeUnits: 80_000n,
        feesLamports: 10_000n,
      },
      unproven: [],
      learned: { creditVault: null, treasuryCandidate: null },
    },
    checks: [
      { name: "escrow.amount", outcome: "pass", reason: null, expected: "1", actual: "1" },
      { name: "settlement.charge", outcome: "pass", reason: null, expected: null, actual: null },
    ],
  };
}

try {
  await migratePostgres(store.pool);
  const total = (batches + 1) * batchSize;
  const ids = Array.from({ length: total }, (_, i) => `bench_job_${i}`);
  for (let i = 0; i < total; i += 1000) {
    await store.db.insert(jobs).values(
      ids.slice(i, i + 1000).map((jobId, n) => ({
        jobId,
        source: "ingest" as const,
        receiptHash: `h-${jobId}`,
        model: `m${(i + n) % 3}`,
        worker: `w${(i + n) % 4}`,
        keyFingerprint: `k${(i + n) % 5}`,
        createdAt: t0 + ((i + n) % 3_600_000),
        recordedAt: t0,
        updatedAt: t0,
        leaseOwner: owner,
        leaseUntil: t0 + 3_600_000,
      })),
    );
  }
  const verdicts = createVerdictStore(store, {
    name: "mainnet-v1",
    treasury: null,
    treasuryLearnAfter: 2,
  });
  const work = Array.from({ length: batches + 1 }, (_, b) =>
    ids.slice(b * batchSize, (b + 1) * batchSize).map(decision),
  );
  // One warm-up batch (connections, plans), not counted.
  await verdicts.write(work.shift()!, { owner, runId: null, t: t0 });
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < work.length) {
        const written = await verdicts.write(work[next++]!, { owner, runId: null, t: t0 });
        if (written.some((w) => !w)) throw new Error("not all written");
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `postgres verdicts: ${batches} batches of ${batchSize}, ${inFlight} in flight: ${seconds.toFixed(2)} s, ${Math.round((batches * batchSize) / seconds)} jobs/s`,
  );
} finally {
  await store.close();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
  await server.stop();
}
