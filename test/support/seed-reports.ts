import { createHash } from "node:crypto";
import { eq, inArray } from "drizzle-orm";
import type { Store } from "../../src/db/client.js";
import * as pg from "../../src/db/pg/schema.js";
import {
  chainTransactions,
  checkResults,
  creditVaults,
  finalVerdicts,
  jobRollups,
  jobRollupsBackfill,
  jobs,
  receiptConflicts,
  type Verdict,
  verdicts,
  verificationRuns,
} from "../../src/db/schema.js";

/**
 * Rows for the reports, dashboard and ops tests written straight into either dialect's tables
 * with drizzle (the receipt and verdict writers are not under test here). On both dialects the
 * rollup triggers then fill `job_rollups` from these rows.
 */

/** The tables the tests seed, on each dialect. */
const liteTables = {
  jobs,
  checkResults,
  receiptConflicts,
  chainTransactions,
  verificationRuns,
  creditVaults,
};
const pgTables = {
  jobs: pg.jobs,
  checkResults: pg.checkResults,
  receiptConflicts: pg.receiptConflicts,
  chainTransactions: pg.chainTransactions,
  verificationRuns: pg.verificationRuns,
  creditVaults: pg.creditVaults,
};

type Tables =
  | "jobs"
  | "checkResults"
  | "receiptConflicts"
  | "chainTransactions"
  | "verificationRuns"
  | "creditVaults";
export type JobSeed = Partial<typeof jobs.$inferInsert> & { jobId: string };
type Row<T extends Tables> = (typeof liteTables)[T]["$inferInsert"];

/** Inserts rows into the table of that name on either dialect. */
export async function seedRows<T extends Tables>(store: Store, table: T, rows: Row<T>[]) {
  if (rows.length === 0) return;
  if (store.kind === "postgres") {
    for (let i = 0; i < rows.length; i += 500) {
      await store.db.insert(pgTables[table]).values(rows.slice(i, i + 500) as never);
    }
  } else {
    for (let i = 0; i < rows.length; i += 500) {
      store.db
        .insert(liteTables[table])
        .values(rows.slice(i, i + 500) as never)
        .run();
    }
  }
}

/** Sets columns of some jobs on either dialect (a verdict write, a move, a re-verification). */
export async function updateJobs(store: Store, jobIds: string[], set: Partial<JobSeed>) {
  if (store.kind === "postgres") {
    await store.db
      .update(pg.jobs)
      .set(set as never)
      .where(inArray(pg.jobs.jobId, jobIds));
  } else {
    store.db.update(jobs).set(set).where(inArray(jobs.jobId, jobIds)).run();
  }
}

/** Deletes one job on either dialect. */
export async function deleteJob(store: Store, jobId: string) {
  if (store.kind === "postgres") await store.db.delete(pg.jobs).where(eq(pg.jobs.jobId, jobId));
  else store.db.delete(jobs).where(eq(jobs.jobId, jobId)).run();
}

/**
 * Makes the store look as one migrated before its rollups were built: every rollup row gone and
 * a backfill still owed, so the reports must read the jobs.
 */
export async function dropRollups(store: Store) {
  const owed = { id: 1, nextDay: 0, lastDay: 0 };
  if (store.kind === "postgres") {
    await store.db.delete(pg.jobRollups);
    await store.db.insert(pg.jobRollupsBackfill).values(owed);
  } else {
    store.db.delete(jobRollups).run();
    store.db.insert(jobRollupsBackfill).values(owed).run();
  }
}

/** A base58-looking signature unique to `seed`. */
export function signatureOf(seed: string): string {
  const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  const bytes = createHash("sha512").update(seed).digest();
  let out = "";
  for (let i = 0; out.length < 88; i++) out += alphabet[(bytes[i % bytes.length] ?? 0) % 58];
  return out;
}

/** A job row as the recorder and verifier leave it; a final verdict gets settled amounts. */
export function jobRow(input: JobSeed): typeof jobs.$inferInsert {
  const createdAt = input.createdAt ?? Date.UTC(2026, 10, 1);
  const verdict: Verdict = input.verdict ?? "verified";
  const final = finalVerdicts.includes(verdict);
  const charged = input.chargedUnits !== undefined ? input.chargedUnits : final ? 80_000n : null;
  const escrowed =
    input.escrowedUnits !== undefined ? input.escrowedUnits : final ? 400_000n : null;
  const workerPaid = charged === null ? null : (charged * 3n) / 4n;
  return {
    source: "proxy",
    escrowTx: signatureOf(`${input.jobId}:escrow`),
    settlementTx: signatureOf(`${input.jobId}:settle`),
    worker: "DcrtuEi23DAjQ9t2QJ9wFXDSZRU26jC5cVx4Dejivmwe",
    model: "qwen3-8b",
    keyFingerprint: "kf_0001",
    tags: {},
    receiptHash: createHash("sha256").update(input.jobId).digest("hex"),
    recordedAt: createdAt,
    updatedAt: createdAt,
    verdictAt: final ? createdAt + 20_000 : null,
    commitment: final ? "finalized" : null,
    feesLamports: final ? 10_000n : null,
    workerPaidUnits: workerPaid,
    treasuryPaidUnits: charged === null || workerPaid === null ? null : charged - workerPaid,
    refundedUnits: charged === null || escrowed === null ? null : escrowed - charged,
    ...input,
    createdAt,
    verdict,
    chargedUnits: charged,
    escrowedUnits: escrowed,
  };
}

/** Deterministic PRNG (mulberry32): the same rows on both dialects, and a failure replays. */
export function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const seedModels = ["qwen3-8b", "llama-3.3-70b", "", null] as const;
export const seedWorkers = [
  "WorkerA1111111111111111111111111111111111111",
  "WorkerB2222222222222222222222",
  null,
] as const;
export const seedKeys = ["kf_0001", "kf_0002", null] as const;

/**
 * `count` jobs over `days` days from `start`, of every verdict, with absent and empty
 * dimensions and odd amounts (negative refunds, a second settlement's overpayment).
 */
export function mixedJobs(seed: number, count: number, start: number, days: number): JobSeed[] {
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)] as T;
  const out: JobSeed[] = [];
  for (let i = 0; i < count; i++) {
    const verdict = pick(verdicts);
    const final = finalVerdicts.includes(verdict);
    out.push({
      jobId: `job_${seed}_${i.toString().padStart(5, "0")}`,
      createdAt: start + Math.floor(rand() * days * 86_400_000),
      model: pick(seedModels),
      worker: pick(seedWorkers),
      keyFingerprint: pick(seedKeys),
      verdict,
      ...(final
        ? {
            chargedUnits: BigInt(Math.floor(rand() * 1_000_000)),
            escrowedUnits: BigInt(Math.floor(rand() * 5_000_000)) - 1_000_000n,
          }
        : {}),
    });
  }
  return out;
}

/** Writes the jobs of `mixedJobs` then churns them: verdicts, moves, re-verifications, deletes. */
export async function seedMixed(
  store: Store,
  seed: number,
  count: number,
  start: number,
  days: number,
) {
  const seeds = mixedJobs(seed, count, start, days);
  await seedRows(store, "jobs", seeds.map(jobRow));
  const rand = prng(seed + 1);
  for (let i = 0; i < seeds.length; i += 7) {
    const job = seeds[i]!;
    const kind = Math.floor(rand() * 4);
    if (kind === 0) {
      await updateJobs(store, [job.jobId], {
        verdict: "discrepancy",
        chargedUnits: 123_456n,
        workerPaidUnits: 100_000n,
      });
    } else if (kind === 1) {
      await updateJobs(store, [job.jobId], {
        createdAt: (job.createdAt ?? start) + 3_600_000 * 5,
        model: "moved-model",
        worker: null,
      });
    } else if (kind === 2) {
      await updateJobs(store, [job.jobId], {
        verdict: "pending",
        chargedUnits: null,
        escrowedUnits: null,
        workerPaidUnits: null,
        treasuryPaidUnits: null,
        refundedUnits: null,
        feesLamports: null,
      });
    } else {
      await deleteJob(store, job.jobId);
    }
  }
  return seeds;
}
