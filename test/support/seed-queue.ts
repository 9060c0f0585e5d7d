import { createHash } from "node:crypto";
import { asc, eq, sql } from "drizzle-orm";
import type { Store } from "../../src/db/client.js";
import { openPostgres, type PgStore } from "../../src/db/pg/client.js";
import * as pgSchema from "../../src/db/pg/schema.js";
import type { Verdict } from "../../src/db/schema.js";
import * as sqliteSchema from "../../src/db/schema.js";
import { placeholderFiller } from "../../src/store/prepared.js";
import type { DialectStores } from "./dialects.js";

/**
 * Rows the job queue, the verification runs and the signature store read, written with drizzle
 * straight into either dialect's schema, and read back the same way, so a conformance test
 * seeds and checks both stores with one call.
 */

/** A job as the queue sees it; every other column gets a plausible value. */
export interface QueueJobSeed {
  jobId: string;
  createdAt?: number;
  /** When the job was recorded (default its `createdAt`). */
  recordedAt?: number;
  verdict?: Verdict;
  nextVerifyAt?: number;
  verifyAttempts?: number;
  leaseOwner?: string | null;
  leaseUntil?: number | null;
  lastError?: string | null;
  escrowTx?: string | null;
  settlementTx?: string | null;
  apiEscrowTx?: string | null;
  apiSettlementTx?: string | null;
  conflictSignatures?: string[] | null;
  verdictAt?: number | null;
  verdictProfile?: string | null;
}

/** The queue columns of a job as stored. */
export interface QueueColumns {
  jobId: string;
  verdict: Verdict;
  nextVerifyAt: number;
  verifyAttempts: number;
  leaseOwner: string | null;
  leaseUntil: number | null;
  lastError: string | null;
}

export const T0 = Date.UTC(2026, 10, 1);

function jobRow(seed: QueueJobSeed) {
  const createdAt = seed.createdAt ?? T0;
  return {
    source: "proxy" as const,
    receiptHash: createHash("sha256").update(seed.jobId).digest("hex"),
    recordedAt: createdAt,
    updatedAt: createdAt,
    tags: {},
    ...seed,
    createdAt,
  };
}

/** Inserts jobs, 500 rows a statement. */
export async function seedJobs(store: Store, seeds: readonly QueueJobSeed[]): Promise<void> {
  const rows = seeds.map(jobRow);
  for (let i = 0; i < rows.length; i += 500) {
    const { text, params } = jobsInsert(store, rows.slice(i, i + 500));
    if (store.kind === "postgres") await store.pool.query(text, params);
    else store.sqlite.prepare(text).run(...params);
  }
}

/**
 * The INSERT of `rows`, as drizzle writes it. Rows that set the same columns take a text and
 * parameter encoders built once per dialect, count and columns: drizzle takes about a
 * millisecond a row to build a statement of this wide table, ten times what running it costs,
 * and the queue's tests seed 10,000 jobs at a time.
 */
function jobsInsert(
  store: Store,
  rows: readonly Record<string, unknown>[],
): { text: string; params: unknown[] } {
  const columnsOf = (row: Record<string, unknown>) =>
    Object.keys(row).filter((key) => row[key] !== undefined);
  const keys = columnsOf(rows[0] ?? {});
  if (rows.some((row) => columnsOf(row).join() !== keys.join())) {
    const { sql: text, params } = jobsInsertQuery(store, rows).toSQL();
    return { text, params };
  }
  const shape = `${store.kind} ${rows.length} ${keys.join()}`;
  let built = jobsInserts.get(shape);
  if (built === undefined) {
    const named = rows.map((_, r) =>
      Object.fromEntries(keys.map((key) => [key, sql.placeholder(`${r} ${key}`)])),
    );
    const { sql: text, params } = jobsInsertQuery(store, named).toSQL();
    built = { text, fill: placeholderFiller(params) };
    jobsInserts.set(shape, built);
  }
  const values = Object.fromEntries(
    rows.flatMap((row, r) => keys.map((key) => [`${r} ${key}`, row[key]])),
  );
  return { text: built.text, params: built.fill(values) };
}
const jobsInserts = new Map<
  string,
  { text: string; fill: (values: Record<string, unknown>) => unknown[] }
>();

const jobsInsertQuery = (store: Store, rows: readonly Record<string, unknown>[]) =>
  store.kind === "postgres"
    ? store.db.insert(pgSchema.jobs).values(rows as (typeof pgSchema.jobs.$inferInsert)[])
    : store.db.insert(sqliteSchema.jobs).values(rows as (typeof sqliteSchema.jobs.$inferInsert)[]);

/** The queue columns of every job, in id order. */
export async function queueColumns(store: Store): Promise<QueueColumns[]> {
  if (store.kind === "postgres") {
    const t = pgSchema.jobs;
    return store.db
      .select({
        jobId: t.jobId,
        verdict: t.verdict,
        nextVerifyAt: t.nextVerifyAt,
        verifyAttempts: t.verifyAttempts,
        leaseOwner: t.leaseOwner,
        leaseUntil: t.leaseUntil,
        lastError: t.lastError,
      })
      .from(t)
      .orderBy(asc(t.jobId));
  }
  const t = sqliteSchema.jobs;
  return store.db
    .select({
      jobId: t.jobId,
      verdict: t.verdict,
      nextVerifyAt: t.nextVerifyAt,
      verifyAttempts: t.verifyAttempts,
      leaseOwner: t.leaseOwner,
      leaseUntil: t.leaseUntil,
      lastError: t.lastError,
    })
    .from(t)
    .orderBy(asc(t.jobId))
    .all();
}

/** The queue columns of one job. */
export async function queueColumnsOf(store: Store, jobId: string): Promise<QueueColumns> {
  const row = (await queueColumns(store)).find((r) => r.jobId === jobId);
  if (!row) throw new Error(`no job ${jobId}`);
  return row;
}

/** A `chain_transactions` row as the signature store reads it; unset columns take defaults. */
export interface SignatureSeed {
  signature: string;
  state?: "unknown" | "landed" | "finalized" | "dropped" | "pruned";
  commitment?: "processed" | "confirmed" | "finalized" | null;
  slot?: number | null;
  facts?: unknown;
  /** The node's answer as stored (JSON text). */
  raw?: string | null;
  notFoundCount?: number;
  notFoundSince?: number | null;
  notFoundSlot?: number | null;
  memoJob?: string | null;
}

/** Inserts signature rows. */
export async function seedSignatures(store: Store, seeds: readonly SignatureSeed[]): Promise<void> {
  const rows = seeds.map((s) => ({ firstSeenAt: T0, ...s }));
  if (rows.length === 0) return;
  if (store.kind === "postgres") await store.db.insert(pgSchema.chainTransactions).values(rows);
  else store.db.insert(sqliteSchema.chainTransactions).values(rows).run();
}

/** Changes columns of a signature row (what another process or an older version wrote). */
export async function updateSignature(
  store: Store,
  signature: string,
  patch: Omit<SignatureSeed, "signature">,
): Promise<void> {
  if (store.kind === "postgres") {
    await store.db
      .update(pgSchema.chainTransactions)
      .set(patch)
      .where(eq(pgSchema.chainTransactions.signature, signature));
  } else {
    store.db
      .update(sqliteSchema.chainTransactions)
      .set(patch)
      .where(eq(sqliteSchema.chainTransactions.signature, signature))
      .run();
  }
}

/** A verification run row. */
export interface RunSeed {
  owner: string;
  status?: "running" | "completed" | "abandoned";
  startedAt?: number;
}

/** Inserts verification runs; returns their ids. */
export async function seedRuns(store: Store, seeds: readonly RunSeed[]): Promise<number[]> {
  const rows = seeds.map((s) => ({
    trigger: "serve" as const,
    status: s.status ?? ("running" as const),
    startedAt: s.startedAt ?? T0,
    owner: s.owner,
  }));
  if (store.kind === "postgres") {
    const ids = await store.db
      .insert(pgSchema.verificationRuns)
      .values(rows)
      .returning({ id: pgSchema.verificationRuns.id });
    return ids.map((r) => r.id);
  }
  return store.db
    .insert(sqliteSchema.verificationRuns)
    .values(rows)
    .returning({ id: sqliteSchema.verificationRuns.id })
    .all()
    .map((r) => r.id);
}

/** A run as stored. */
export interface RunColumns {
  id: number;
  owner: string;
  status: string;
  finishedAt: number | null;
  summary: unknown;
}

/** Every verification run, in id order. */
export async function runColumns(store: Store): Promise<RunColumns[]> {
  if (store.kind === "postgres") {
    const t = pgSchema.verificationRuns;
    return store.db
      .select({
        id: t.id,
        owner: t.owner,
        status: t.status,
        finishedAt: t.finishedAt,
        summary: t.summary,
      })
      .from(t)
      .orderBy(asc(t.id));
  }
  const t = sqliteSchema.verificationRuns;
  return store.db
    .select({
      id: t.id,
      owner: t.owner,
      status: t.status,
      finishedAt: t.finishedAt,
      summary: t.summary,
    })
    .from(t)
    .orderBy(asc(t.id))
    .all();
}

/** Writes a heartbeat row (`locks`, named `verifier:<owner>`) as a verifier would. */
export async function seedHeartbeat(store: Store, owner: string, expiresAt: number): Promise<void> {
  const row = { name: `verifier:${owner}`, owner, acquiredAt: T0, expiresAt };
  if (store.kind === "postgres") await store.db.insert(pgSchema.locks).values(row);
  else store.db.insert(sqliteSchema.locks).values(row).run();
}

/** Every lock row (heartbeats included) as name -> expiry, in name order. */
export async function lockExpiries(store: Store): Promise<Record<string, number>> {
  const rows =
    store.kind === "postgres"
      ? await store.db
          .select({ name: pgSchema.locks.name, expiresAt: pgSchema.locks.expiresAt })
          .from(pgSchema.locks)
          .orderBy(asc(pgSchema.locks.name))
      : store.db
          .select({ name: sqliteSchema.locks.name, expiresAt: sqliteSchema.locks.expiresAt })
          .from(sqliteSchema.locks)
          .orderBy(asc(sqliteSchema.locks.name))
          .all();
  return Object.fromEntries(rows.map((r) => [r.name, r.expiresAt]));
}

/** The lease owner of every job, as jobId -> owner (null when free). */
export async function leaseOwners(store: Store): Promise<Record<string, string | null>> {
  return Object.fromEntries((await queueColumns(store)).map((r) => [r.jobId, r.leaseOwner]));
}

/**
 * A fresh PostgreSQL store and a second pool on the same database: two processes, as far as
 * the server can tell. The caller closes the second.
 */
export async function twoProcesses(stores: DialectStores): Promise<[PgStore, PgStore]> {
  const first = await stores.open();
  if (first.kind !== "postgres") throw new Error("expected PostgreSQL");
  return [first, openPostgres(stores.lastUrl, { poolSize: 4, statementTimeoutMs: 30_000 })];
}
