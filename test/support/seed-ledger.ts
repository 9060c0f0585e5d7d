import { and, asc, eq } from "drizzle-orm";
import type { Store } from "../../src/db/client.js";
import * as pgSchema from "../../src/db/pg/schema.js";
import type { CheckOutcome, Verdict } from "../../src/db/schema.js";
import * as sqliteSchema from "../../src/db/schema.js";
import { joinedParts } from "./seed-verdicts.js";

/**
 * Rows the ledger store reads but does not write (recorded jobs, their checks, pinned vaults,
 * transactions the verifier fetched), written with drizzle straight into either dialect's
 * schema, and the ledger's own rows read back the same way.
 */

export interface LedgerJobInput {
  jobId: string;
  recordedAt: number;
  /** When the response came (ms); `recordedAt` when absent, null: not known. */
  respondedAt?: number | null;
  escrowTx?: string | null;
  settlementTx?: string | null;
  apiEscrowTx?: string | null;
  apiSettlementTx?: string | null;
  creditsRemainingUnits?: bigint | null;
  verdict?: Verdict;
  /** What the verifier read the job's settlement paying out of escrow (worker and treasury). */
  chargedUnits?: bigint | null;
  keyFingerprint?: string | null;
  /** The credit vault the receipt declared. */
  creditVault?: string | null;
}

export async function seedJob(store: Store, input: LedgerJobInput): Promise<void> {
  await seedJobs(store, [input]);
}

/** Rows of one insert: a statement's variables stay within SQLite's limit (32,766). */
const jobsPerInsert = 500;

/**
 * Seeds `inputs` as `seedJob` does, a few hundred rows an insert: inserted one by one, 2,000 jobs
 * took seconds, most of them preparing the same statement again for each row.
 */
export async function seedJobs(store: Store, inputs: readonly LedgerJobInput[]): Promise<void> {
  for (let i = 0; i < inputs.length; i += jobsPerInsert) {
    const rows = inputs.slice(i, i + jobsPerInsert).map(jobRow);
    if (store.kind === "postgres") await store.db.insert(pgSchema.jobs).values(rows);
    else store.db.insert(sqliteSchema.jobs).values(rows).run();
  }
}

function jobRow(input: LedgerJobInput) {
  return {
    jobId: input.jobId,
    source: "proxy" as const,
    escrowTx: input.escrowTx ?? null,
    settlementTx: input.settlementTx ?? null,
    apiEscrowTx: input.apiEscrowTx ?? null,
    apiSettlementTx: input.apiSettlementTx ?? null,
    creditsRemainingUnits: input.creditsRemainingUnits ?? null,
    receiptHash: `hash-${input.jobId}`,
    createdAt: input.recordedAt - 5_000,
    recordedAt: input.recordedAt,
    // A proxy's row, its response come when it was recorded unless the input says otherwise.
    respondedAt: input.respondedAt === undefined ? input.recordedAt : input.respondedAt,
    updatedAt: input.recordedAt,
    verdict: input.verdict ?? "verified",
    chargedUnits: input.chargedUnits ?? null,
    keyFingerprint: input.keyFingerprint ?? null,
    creditVault: input.creditVault ?? null,
  };
}

export async function seedCreditVault(
  store: Store,
  pin: {
    keyFingerprint: string;
    vault: string;
    pinnedAt: number;
    source?: "configured" | "learned";
  },
): Promise<void> {
  const row = { ...pin, source: pin.source ?? "configured" };
  if (store.kind === "postgres") await store.db.insert(pgSchema.creditVaults).values(row);
  else store.db.insert(sqliteSchema.creditVaults).values(row).run();
}

export async function seedCheck(
  store: Store,
  check: { jobId: string; name: string; outcome: CheckOutcome; expected?: unknown; at: number },
): Promise<void> {
  const row = {
    jobId: check.jobId,
    name: check.name,
    outcome: check.outcome,
    expected: check.expected ?? null,
    checkedAt: check.at,
  };
  if (store.kind === "postgres") await store.db.insert(pgSchema.checkResults).values(row);
  else store.db.insert(sqliteSchema.checkResults).values(row).run();
}

/** A transaction as the verifier leaves it (facts optional: a status seen, not fetched yet). */
export async function seedChainTransaction(
  store: Store,
  tx: { signature: string; facts?: unknown; at: number },
): Promise<void> {
  const row = {
    signature: tx.signature,
    state: tx.facts === undefined ? ("landed" as const) : ("finalized" as const),
    succeeded: true,
    facts: tx.facts ?? null,
    firstSeenAt: tx.at,
  };
  if (store.kind === "postgres") await store.db.insert(pgSchema.chainTransactions).values(row);
  else store.db.insert(sqliteSchema.chainTransactions).values(row).run();
}

export async function jobVerdict(store: Store, jobId: string): Promise<Verdict | undefined> {
  if (store.kind === "postgres") {
    const [row] = await store.db
      .select({ verdict: pgSchema.jobs.verdict })
      .from(pgSchema.jobs)
      .where(eq(pgSchema.jobs.jobId, jobId));
    return row?.verdict;
  }
  return store.db
    .select({ verdict: sqliteSchema.jobs.verdict })
    .from(sqliteSchema.jobs)
    .where(eq(sqliteSchema.jobs.jobId, jobId))
    .get()?.verdict;
}

/** A job's check as stored: its outcome and evidence. */
export async function checkOf(store: Store, jobId: string, name: string) {
  if (store.kind === "postgres") {
    const t = pgSchema.checkResults;
    const [row] = await store.db
      .select({ outcome: t.outcome, expected: t.expected, actual: t.actual })
      .from(t)
      .where(and(eq(t.jobId, jobId), eq(t.name, name)));
    return row;
  }
  const t = sqliteSchema.checkResults;
  return store.db
    .select({ outcome: t.outcome, expected: t.expected, actual: t.actual })
    .from(t)
    .where(and(eq(t.jobId, jobId), eq(t.name, name)))
    .get();
}

/** A vault's lines as stored, oldest first: what the store decided about each. */
export async function linesOf(store: Store, vault: string) {
  if (store.kind === "postgres") {
    const t = pgSchema.ledgerLines;
    return store.db
      .select({
        signature: t.signature,
        state: t.state,
        kind: t.kind,
        jobId: t.jobId,
        released: t.released,
        headerOk: t.headerOk,
      })
      .from(t)
      .where(eq(t.vault, vault))
      .orderBy(asc(t.ord));
  }
  const t = sqliteSchema.ledgerLines;
  return store.db
    .select({
      signature: t.signature,
      state: t.state,
      kind: t.kind,
      jobId: t.jobId,
      released: t.released,
      headerOk: t.headerOk,
    })
    .from(t)
    .where(eq(t.vault, vault))
    .orderBy(asc(t.ord))
    .all();
}

/** Sets what a line was filed as, as an earlier version of the store may have left it. */
export async function fileLineAs(
  store: Store,
  vault: string,
  signature: string,
  as: {
    kind: "lock" | "return" | "deposit" | "unexplained";
    jobId: string | null;
    released: boolean;
  },
): Promise<void> {
  if (store.kind === "postgres") {
    const t = pgSchema.ledgerLines;
    await store.db
      .update(t)
      .set(as)
      .where(and(eq(t.vault, vault), eq(t.signature, signature)));
    return;
  }
  const t = sqliteSchema.ledgerLines;
  store.db
    .update(t)
    .set(as)
    .where(and(eq(t.vault, vault), eq(t.signature, signature)))
    .run();
}

/** The vault's `ledger_daily` totals per kind (what the triggers kept), kinds with lines only. */
export async function dailyTotals(
  store: Store,
  vault: string,
): Promise<Record<string, { lines: number; units: bigint }>> {
  const rows =
    store.kind === "postgres"
      ? await store.db
          .select()
          .from(pgSchema.ledgerDaily)
          .where(eq(pgSchema.ledgerDaily.vault, vault))
      : store.db
          .select()
          .from(sqliteSchema.ledgerDaily)
          .where(eq(sqliteSchema.ledgerDaily.vault, vault))
          .all()
          .map((r) => joinedParts(r) as typeof pgSchema.ledgerDaily.$inferSelect);
  const out: Record<string, { lines: number; units: bigint }> = {};
  for (const r of rows) {
    const sum = out[r.kind] ?? { lines: 0, units: 0n };
    sum.lines += Number(r.lines);
    sum.units += BigInt(r.units);
    out[r.kind] = sum;
  }
  for (const [kind, sum] of Object.entries(out)) if (sum.lines === 0) delete out[kind];
  return out;
}
