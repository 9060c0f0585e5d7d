import { createHash } from "node:crypto";
import type { SqliteStore } from "../../src/db/client.js";
import {
  type CheckOutcome,
  chainTransactions,
  checkResults,
  jobApiAnswers,
  jobs,
  receiptConflicts,
  type Verdict,
} from "../../src/db/schema.js";

/**
 * Rows as the recorder and the verifier write them, inserted directly so API and report tests
 * do not depend on either. Amounts are bigint; every field has a plausible default.
 */
export type JobRowInput = Partial<typeof jobs.$inferInsert> & {
  jobId: string;
  /** The jobs API's answer body, kept in `job_api_answers`. */
  apiResponse?: unknown;
};

let counter = 0;

/** A base58-looking 88-character signature unique to `seed`. */
export function fakeSignature(seed: string): string {
  const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  const bytes = createHash("sha512").update(seed).digest();
  let out = "";
  for (let i = 0; out.length < 88; i++) out += alphabet[(bytes[i % bytes.length] ?? 0) % 58];
  return out;
}

/** Inserts one job; a final verdict gets amounts of a settled job unless given. */
export function insertJob(store: SqliteStore, { apiResponse, ...input }: JobRowInput) {
  counter += 1;
  const createdAt = input.createdAt ?? Date.UTC(2026, 10, 1) + counter * 1000;
  const verdict: Verdict = input.verdict ?? "verified";
  const charged = input.chargedUnits ?? (verdict === "pending" ? null : 80_000n);
  const escrowed = input.escrowedUnits ?? (verdict === "pending" ? null : 400_000n);
  const workerPaid = input.workerPaidUnits ?? (charged === null ? null : (charged * 3n) / 4n);
  const row: typeof jobs.$inferInsert = {
    source: "proxy",
    escrowTx: fakeSignature(`${input.jobId}:escrow`),
    settlementTx: fakeSignature(`${input.jobId}:settle`),
    worker: "DcrtuEi23DAjQ9t2QJ9wFXDSZRU26jC5cVx4Dejivmwe",
    model: "qwen3-8b",
    promptTokens: 120,
    completionTokens: 300,
    totalTokens: 420,
    keyFingerprint: "kf_0001",
    tags: {},
    receiptHash: createHash("sha256").update(input.jobId).digest("hex"),
    recordedAt: createdAt,
    updatedAt: createdAt,
    verdictAt: verdict === "pending" ? null : createdAt + 20_000,
    commitment: verdict === "pending" ? null : "finalized",
    feesLamports: verdict === "pending" ? null : 10_000n,
    refundedUnits:
      input.refundedUnits ?? (charged === null || escrowed === null ? null : escrowed - charged),
    treasuryPaidUnits:
      input.treasuryPaidUnits ??
      (charged === null || workerPaid === null ? null : charged - workerPaid),
    ...input,
    createdAt,
    verdict,
    chargedUnits: charged,
    escrowedUnits: escrowed,
    workerPaidUnits: workerPaid,
  };
  store.db.insert(jobs).values(row).run();
  if (apiResponse !== undefined && apiResponse !== null) {
    store.db.insert(jobApiAnswers).values({ jobId: input.jobId, response: apiResponse }).run();
  }
  return row;
}

/** Inserts (or replaces) one check result of a job. */
export function insertCheck(
  store: SqliteStore,
  jobId: string,
  name: string,
  outcome: CheckOutcome,
  evidence: { reason?: string; expected?: unknown; actual?: unknown } = {},
) {
  store.db
    .insert(checkResults)
    .values({
      jobId,
      name,
      outcome,
      reason: evidence.reason ?? (outcome === "pass" ? null : `${name} ${outcome}`),
      expected: evidence.expected ?? null,
      actual: evidence.actual ?? null,
      checkedAt: Date.UTC(2026, 10, 1),
    })
    .onConflictDoUpdate({
      target: [checkResults.jobId, checkResults.name],
      set: { outcome, reason: evidence.reason ?? null },
    })
    .run();
}

/** Inserts a finalized, succeeded transaction with token movements as the verifier stores it. */
export function insertChainTransaction(
  store: SqliteStore,
  signature: string,
  facts: { slot?: number; blockTime?: number; fee?: bigint; tokenChanges?: unknown[] } = {},
) {
  store.db
    .insert(chainTransactions)
    .values({
      signature,
      state: "finalized",
      commitment: "finalized",
      slot: facts.slot ?? 1234,
      blockTime: facts.blockTime ?? 1_793_000_000,
      feeLamports: facts.fee ?? 5000n,
      succeeded: true,
      err: null,
      facts: { signature, tokenChanges: facts.tokenChanges ?? [] },
      firstSeenAt: Date.UTC(2026, 10, 1),
      fetchedAt: Date.UTC(2026, 10, 1),
    })
    .run();
}

/** Records a conflicting receipt for a job. */
export function insertConflict(store: SqliteStore, jobId: string, differences: string[]) {
  store.db
    .insert(receiptConflicts)
    .values({
      jobId,
      source: "ingest",
      receipt: { job_id: jobId },
      differences,
      receivedAt: Date.UTC(2026, 10, 2),
    })
    .run();
}
