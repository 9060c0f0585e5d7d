import { createHash } from "node:crypto";
import { eq } from "drizzle-orm";
import type { Store } from "../../src/db/client.js";
import * as pgSchema from "../../src/db/pg/schema.js";
import { foldRollupDeltas } from "../../src/db/rollups.js";
import type { Verdict } from "../../src/db/schema.js";
import * as sqliteSchema from "../../src/db/schema.js";
import { joinParts } from "../../src/db/split-sums.js";
import {
  type CustodyProfile,
  createCustodyStore,
  type TreasuryStatus,
} from "../../src/store/custody.js";
import { pgTreasuryStatus } from "../../src/store/pg/custody.js";

/**
 * Rows the verdict writer and custody read and write, seeded and read back with drizzle on
 * either dialect (the same table and column names on both), so their conformance tests depend
 * on no other store module.
 */

/** A job as the verifier claims it: pending, leased to `leaseOwner`. */
export interface SeedJob {
  jobId: string;
  leaseOwner?: string | null;
  keyFingerprint?: string | null;
  createdAt?: number;
  model?: string;
  worker?: string;
  verdict?: Verdict;
  unproven?: string[] | null;
  /** A job judged again: the final verdict it left and the profile that wrote it. */
  previousVerdict?: Verdict | null;
  verdictProfile?: string | null;
}

/** Inserts jobs (pending and leased unless said otherwise). */
export async function seedJobs(store: Store, inputs: readonly SeedJob[]): Promise<void> {
  const rows = inputs.map((input) => ({
    jobId: input.jobId,
    source: "proxy" as const,
    model: input.model ?? "qwen3-8b",
    worker: input.worker ?? "DcrtuEi23DAjQ9t2QJ9wFXDSZRU26jC5cVx4Dejivmwe",
    keyFingerprint: input.keyFingerprint === undefined ? "kf_0001" : input.keyFingerprint,
    tags: {},
    receiptHash: createHash("sha256").update(input.jobId).digest("hex"),
    createdAt: input.createdAt ?? Date.UTC(2026, 10, 1, 12),
    recordedAt: input.createdAt ?? Date.UTC(2026, 10, 1, 12),
    updatedAt: input.createdAt ?? Date.UTC(2026, 10, 1, 12),
    verdict: input.verdict ?? "pending",
    unproven: input.unproven ?? null,
    previousVerdict: input.previousVerdict ?? null,
    verdictProfile: input.verdictProfile ?? null,
    leaseOwner: input.leaseOwner === undefined ? "owner-a" : input.leaseOwner,
    leaseUntil: input.leaseOwner === null ? null : Date.UTC(2030, 0, 1),
  }));
  if (store.kind === "postgres") await store.db.insert(pgSchema.jobs).values(rows);
  else store.db.insert(sqliteSchema.jobs).values(rows).run();
}

/** Leases a job to `owner` again, as a claim does. */
export async function leaseJob(store: Store, jobId: string, owner: string): Promise<void> {
  const lease = { leaseOwner: owner, leaseUntil: Date.UTC(2030, 0, 1) };
  if (store.kind === "postgres") {
    await store.db.update(pgSchema.jobs).set(lease).where(eq(pgSchema.jobs.jobId, jobId));
  } else {
    store.db.update(sqliteSchema.jobs).set(lease).where(eq(sqliteSchema.jobs.jobId, jobId)).run();
  }
}

/** The columns a verdict write sets, as read back. */
export async function readJob(store: Store, jobId: string) {
  const [row] =
    store.kind === "postgres"
      ? await store.db.select().from(pgSchema.jobs).where(eq(pgSchema.jobs.jobId, jobId))
      : store.db.select().from(sqliteSchema.jobs).where(eq(sqliteSchema.jobs.jobId, jobId)).all();
  if (row === undefined) throw new Error(`no job ${jobId}`);
  return {
    verdict: row.verdict,
    verdictAt: row.verdictAt,
    verifyAttempts: row.verifyAttempts,
    nextVerifyAt: row.nextVerifyAt,
    leaseOwner: row.leaseOwner,
    leaseUntil: row.leaseUntil,
    lastError: row.lastError,
    commitment: row.commitment,
    unproven: row.unproven,
    verdictProfile: row.verdictProfile,
    previousVerdict: row.previousVerdict,
    updatedAt: row.updatedAt,
    escrowedUnits: row.escrowedUnits,
    chargedUnits: row.chargedUnits,
    workerPaidUnits: row.workerPaidUnits,
    treasuryPaidUnits: row.treasuryPaidUnits,
    refundedUnits: row.refundedUnits,
    expectedChargeUnits: row.expectedChargeUnits,
    feesLamports: row.feesLamports,
  };
}

/** A job's check rows, by name. */
export async function readChecks(store: Store, jobId: string) {
  const rows =
    store.kind === "postgres"
      ? await store.db
          .select()
          .from(pgSchema.checkResults)
          .where(eq(pgSchema.checkResults.jobId, jobId))
      : store.db
          .select()
          .from(sqliteSchema.checkResults)
          .where(eq(sqliteSchema.checkResults.jobId, jobId))
          .all();
  return rows
    .map((r) => ({
      name: r.name,
      outcome: r.outcome,
      reason: r.reason,
      expected: r.expected,
      actual: r.actual,
      runId: r.runId,
      checkedAt: r.checkedAt,
    }))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** Every credit vault pin, by key. */
export async function readVaultPins(store: Store) {
  const rows =
    store.kind === "postgres"
      ? await store.db.select().from(pgSchema.creditVaults)
      : store.db.select().from(sqliteSchema.creditVaults).all();
  return rows
    .map((r) => ({ key: r.keyFingerprint, vault: r.vault, source: r.source, jobId: r.jobId }))
    .sort((a, b) => (a.key < b.key ? -1 : 1));
}

/** Every profile pin (the learned treasuries), by profile. */
export async function readProfilePins(store: Store) {
  const rows =
    store.kind === "postgres"
      ? await store.db.select().from(pgSchema.profilePins)
      : store.db.select().from(sqliteSchema.profilePins).all();
  return rows
    .map((r) => ({ profile: r.profile, name: r.name, value: r.value, evidence: r.evidence }))
    .sort((a, b) => (a.profile < b.profile ? -1 : 1));
}

/** Treasury evidence rows of a profile, by signature. */
export async function readTreasuryEvidence(store: Store, profile: string) {
  const rows =
    store.kind === "postgres"
      ? await store.db
          .select()
          .from(pgSchema.treasuryEvidence)
          .where(eq(pgSchema.treasuryEvidence.profile, profile))
      : store.db
          .select()
          .from(sqliteSchema.treasuryEvidence)
          .where(eq(sqliteSchema.treasuryEvidence.profile, profile))
          .all();
  return rows
    .map((r) => ({ signature: r.signature, address: r.address, jobId: r.jobId }))
    .sort((a, b) => (a.signature < b.signature ? -1 : 1));
}

/** Inserts treasury evidence directly (settlements a profile saw before the test). */
export async function seedTreasuryEvidence(
  store: Store,
  profile: string,
  rows: readonly { signature: string; address: string; jobId: string }[],
): Promise<void> {
  const values = rows.map((r) => ({ profile, ...r, seenAt: Date.UTC(2026, 10, 1) }));
  if (store.kind === "postgres") await store.db.insert(pgSchema.treasuryEvidence).values(values);
  else store.db.insert(sqliteSchema.treasuryEvidence).values(values).run();
}

/** A rollup row's figures as plain values: money as bigint, counts as numbers, no dimension as null. */
export interface RollupFigures {
  day: number;
  model: string | null;
  worker: string | null;
  key: string | null;
  open: number;
  verified: number;
  partiallyVerified: number;
  discrepancy: number;
  dropped: number;
  unverifiable: number;
  escrowedUnits: bigint;
  chargedUnits: bigint;
  workerPaidUnits: bigint;
  treasuryPaidUnits: bigint;
  refundedUnits: bigint;
  feesLamports: bigint;
  verifiedChargedUnits: bigint;
  disputedChargedUnits: bigint;
}

/** A SQLite row with each sum kept in two parts (`xLo`, `xHi`) joined into `x`. */
export function joinedParts(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) {
    const base = key.slice(0, -2);
    if (key.endsWith("Lo") && `${base}Hi` in row) {
      out[base] = joinParts(row[`${base}Hi`] as bigint, value as bigint);
    } else if (!(key.endsWith("Hi") && `${base}Lo` in row)) out[key] = value;
  }
  return out;
}

/**
 * The `job_rollups` rows of one grain, ordered by bucket and dimensions; on SQLite with the
 * pending deltas summed into them first (the verdict writer leaves them to a later fold).
 */
export async function readRollups(store: Store, grain: number): Promise<RollupFigures[]> {
  if (store.kind === "sqlite") store.sqlite.transaction(() => foldRollupDeltas(store)).immediate();
  const rows =
    store.kind === "postgres"
      ? await store.db
          .select()
          .from(pgSchema.jobRollups)
          .where(eq(pgSchema.jobRollups.grain, grain))
      : store.db
          .select()
          .from(sqliteSchema.jobRollups)
          .where(eq(sqliteSchema.jobRollups.grain, grain))
          .all()
          .map((r) => joinedParts(r) as typeof pgSchema.jobRollups.$inferSelect);
  // SQLite keeps an absent dimension as the empty BLOB, PostgreSQL as NULL.
  const dim = (v: unknown) => (typeof v === "string" ? v : null);
  return rows
    .map((r) => ({
      day: r.day,
      model: dim(r.model),
      worker: dim(r.worker),
      key: dim(r.keyFingerprint),
      open: r.jobsOpen,
      verified: r.jobsVerified,
      partiallyVerified: r.jobsPartiallyVerified,
      discrepancy: r.jobsDiscrepancy,
      dropped: r.jobsDropped,
      unverifiable: r.jobsUnverifiable,
      escrowedUnits: BigInt(r.escrowedUnits),
      chargedUnits: BigInt(r.chargedUnits),
      workerPaidUnits: BigInt(r.workerPaidUnits),
      treasuryPaidUnits: BigInt(r.treasuryPaidUnits),
      refundedUnits: BigInt(r.refundedUnits),
      feesLamports: BigInt(r.feesLamports),
      verifiedChargedUnits: BigInt(r.verifiedChargedUnits),
      disputedChargedUnits: BigInt(r.disputedChargedUnits),
    }))
    .sort((a, b) =>
      `${a.day}|${a.model}|${a.worker}|${a.key}` < `${b.day}|${b.model}|${b.worker}|${b.key}`
        ? -1
        : 1,
    );
}

/**
 * The treasury status through each dialect's store: `treasuryStatus()` is synchronous, so on
 * PostgreSQL it is read with `pgTreasuryStatus` (the contract turns async with its callers).
 */
export async function treasuryStatusOf(
  store: Store,
  profile: CustodyProfile,
): Promise<TreasuryStatus> {
  return store.kind === "postgres"
    ? await pgTreasuryStatus(store, profile)
    : createCustodyStore(store, profile).treasuryStatus();
}
