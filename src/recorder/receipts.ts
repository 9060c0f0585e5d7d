import { createHash } from "node:crypto";
import type Database from "better-sqlite3";
import type { Store } from "../db/client.js";
import type { ReceiptSource } from "../db/schema.js";

/**
 * A job receipt as the recorder captures it. The first nine fields are the receipt proper (what
 * Decentral said and what the job used) and make up its canonical hash; the rest describe how
 * it was captured. `null` always means unknown, never zero.
 */
export interface Receipt {
  jobId: string;
  escrowTx: string | null;
  settlementTx: string | null;
  worker: string | null;
  creditsRemainingUnits: bigint | null;
  model: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  totalTokens: number | null;
  /** Epoch milliseconds when the job ran; defaults to the time of recording. */
  createdAt?: number | null;
  tags?: Record<string, string>;
  maxTokens?: number | null;
  stream?: boolean | null;
  httpStatus?: number | null;
  latencyMs?: number | null;
  ttfbMs?: number | null;
  keyFingerprint?: string | null;
  /** The model the response named, when it differs in kind from `model` (what was asked for). */
  responseModel?: string | null;
  /** The credit vault the sender declares for the key (ties the lock to the customer). */
  creditVault?: string | null;
  /** Only the proxy writes `open` rows (headers seen, body not yet ended). Default `complete`. */
  captureState?: "open" | "complete" | "aborted";
}

export type RecordOutcome = "created" | "duplicate" | "conflict" | "updated";

export interface RecordResult {
  outcome: RecordOutcome;
  /** For a conflict: the fields (column names, e.g. `settlement_tx`) that differ from the recorded ones. */
  differences?: string[];
}

/** The receipt fields compared between two receipts of one job, in canonical order. */
export const receiptFields = [
  "jobId",
  "escrowTx",
  "settlementTx",
  "worker",
  "creditsRemainingUnits",
  "model",
  "promptTokens",
  "completionTokens",
  "totalTokens",
] as const;

type ReceiptField = (typeof receiptFields)[number];
type ReceiptCore = Pick<Receipt, ReceiptField>;

/**
 * Hash of the canonical receipt fields: sha256 over a JSON array in `receiptFields` order, with
 * bigints as decimal strings and unknowns as null. Two receipts with the same hash are the same
 * receipt; capture details (latency, tags, ...) do not take part.
 */
export function receiptHash(receipt: ReceiptCore): string {
  const canonical = JSON.stringify(
    receiptFields.map((field) => {
      const value = receipt[field];
      return typeof value === "bigint" ? value.toString() : (value ?? null);
    }),
  );
  return createHash("sha256").update(canonical).digest("hex");
}

/** What the receipt says about backfill: a job without a settlement signature needs one. */
function backfillFor(receipt: ReceiptCore): "pending" | null {
  return receipt.settlementTx === null ? "pending" : null;
}

interface ExistingRow {
  job_id: string;
  source: ReceiptSource;
  escrow_tx: string | null;
  settlement_tx: string | null;
  worker: string | null;
  credits_remaining_units: bigint | null;
  model: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  total_tokens: number | null;
  tags: string;
  capture_state: "open" | "complete" | "aborted";
  receipt_hash: string;
  backfill_state: "pending" | "done" | "gave_up" | null;
  conflict_signatures: string | null;
}

const columnOf: Record<ReceiptField, keyof ExistingRow> = {
  jobId: "job_id",
  escrowTx: "escrow_tx",
  settlementTx: "settlement_tx",
  worker: "worker",
  creditsRemainingUnits: "credits_remaining_units",
  model: "model",
  promptTokens: "prompt_tokens",
  completionTokens: "completion_tokens",
  totalTokens: "total_tokens",
};

interface Statements {
  insert: Database.Statement;
  select: Database.Statement;
  completeCapture: Database.Statement;
  fill: Database.Statement;
  conflict: Database.Statement;
  conflictCount: Database.Statement;
  conflictSignatures: Database.Statement;
  sameConflict: Database.Statement;
  lastConflict: Database.Statement;
  updateSummary: Database.Statement;
}

/**
 * Conflicting receipts kept per job. The first `maxStoredConflicts - 1` are kept verbatim; the
 * last row is a running summary (how many more came, the latest one, every field that
 * differed), so a flood of posts cannot grow the table or the audit record without bound.
 */
export const maxStoredConflicts = 10;

/** Prepared statements, one set per connection: preparing per receipt would dominate ingest. */
/**
 * A receipt that gains fields changes what the checks see, so the job is verified again: back
 * to pending, due now, and any lease dropped so a verifier mid-round cannot write a verdict
 * reached on the old receipt (its write is guarded by the lease).
 */
const reverifySet = `verdict = 'pending', next_verify_at = @now, verify_attempts = 0,
  lease_owner = NULL, lease_until = NULL`;

const statementCache = new WeakMap<Database.Database, Statements>();

function statements(store: Store): Statements {
  const cached = statementCache.get(store.sqlite);
  if (cached) return cached;
  const sqlite = store.sqlite;
  const prepared: Statements = {
    insert: sqlite.prepare(
      `INSERT INTO jobs (job_id, source, escrow_tx, settlement_tx, worker, credits_remaining_units,
         model, prompt_tokens, completion_tokens, total_tokens, max_tokens, stream, http_status,
         latency_ms, ttfb_ms, key_fingerprint, tags, capture_state, receipt_hash, created_at,
         recorded_at, updated_at, backfill_state, backfill_next_at, response_model, credit_vault)
       VALUES (@jobId, @source, @escrowTx, @settlementTx, @worker, @creditsRemainingUnits,
         @model, @promptTokens, @completionTokens, @totalTokens, @maxTokens, @stream, @httpStatus,
         @latencyMs, @ttfbMs, @keyFingerprint, @tags, @captureState, @receiptHash, @createdAt,
         @now, @now, @backfillState, @backfillNextAt, @responseModel, @creditVault)
       ON CONFLICT (job_id) DO NOTHING`,
    ),
    select: sqlite
      .prepare(
        `SELECT job_id, source, escrow_tx, settlement_tx, worker, credits_remaining_units, model,
           prompt_tokens, completion_tokens, total_tokens, tags, capture_state, receipt_hash,
           backfill_state, conflict_signatures
         FROM jobs WHERE job_id = ?`,
      )
      .safeIntegers(true),
    // The proxy's own completion of the row it opened: every capture field is replaced.
    completeCapture: sqlite.prepare(
      `UPDATE jobs SET escrow_tx = @escrowTx,
         settlement_tx = coalesce(@settlementTx, settlement_tx), worker = @worker,
         credits_remaining_units = @creditsRemainingUnits, model = @model,
         prompt_tokens = @promptTokens, completion_tokens = @completionTokens,
         total_tokens = @totalTokens, max_tokens = @maxTokens, stream = @stream,
         http_status = @httpStatus, latency_ms = @latencyMs, ttfb_ms = @ttfbMs,
         key_fingerprint = @keyFingerprint, tags = @tags, capture_state = @captureState,
         receipt_hash = @receiptHash, updated_at = @now,
         response_model = coalesce(@responseModel, response_model),
         credit_vault = coalesce(@creditVault, credit_vault),
         backfill_state = CASE WHEN coalesce(@settlementTx, settlement_tx) IS NULL
           THEN coalesce(backfill_state, 'pending') ELSE backfill_state END,
         ${reverifySet}
       WHERE job_id = @jobId`,
    ),
    // A later receipt that agrees with the recorded one and only adds what was unknown.
    fill: sqlite.prepare(
      `UPDATE jobs SET escrow_tx = coalesce(escrow_tx, @escrowTx),
         settlement_tx = coalesce(settlement_tx, @settlementTx),
         worker = coalesce(worker, @worker),
         credits_remaining_units = coalesce(credits_remaining_units, @creditsRemainingUnits),
         model = coalesce(model, @model), prompt_tokens = coalesce(prompt_tokens, @promptTokens),
         completion_tokens = coalesce(completion_tokens, @completionTokens),
         total_tokens = coalesce(total_tokens, @totalTokens), tags = @tags,
         receipt_hash = @receiptHash, updated_at = @now,
         backfill_state = CASE WHEN coalesce(settlement_tx, @settlementTx) IS NOT NULL
           AND backfill_state = 'pending' THEN 'done' ELSE backfill_state END,
         ${reverifySet}
       WHERE job_id = @jobId`,
    ),
    conflict: sqlite.prepare(
      `INSERT INTO receipt_conflicts (job_id, source, receipt, differences, received_at)
       VALUES (?, ?, ?, ?, ?)`,
    ),
    // Signatures a conflicting receipt names are the job's too: the verifier fetches and judges
    // them (a job id answered twice, each time with its own lock, is charged twice).
    conflictSignatures: sqlite.prepare(
      `UPDATE jobs SET conflict_signatures = @signatures, updated_at = @now, ${reverifySet}
       WHERE job_id = @jobId`,
    ),
    conflictCount: sqlite
      .prepare("SELECT count(*) FROM receipt_conflicts WHERE job_id = ?")
      .pluck(),
    sameConflict: sqlite
      .prepare("SELECT 1 FROM receipt_conflicts WHERE job_id = ? AND source = ? AND receipt = ?")
      .pluck(),
    lastConflict: sqlite.prepare(
      `SELECT id, receipt, differences FROM receipt_conflicts WHERE job_id = ?
       ORDER BY id DESC LIMIT 1`,
    ),
    updateSummary: sqlite.prepare(
      `UPDATE receipt_conflicts SET source = ?, receipt = ?, differences = ?, received_at = ?
       WHERE id = ?`,
    ),
  };
  statementCache.set(sqlite, prepared);
  return prepared;
}

/** Options of `recordReceipt` / `recordReceipts`. */
export interface RecordOptions {
  /** Clock (epoch ms); default `Date.now`. */
  now?: number;
  /**
   * Delay before the background backfill first asks the jobs API about a job recorded without
   * a settlement signature. The proxy asks right away with the caller's key, so it passes a
   * grace period here; other sources leave it at 0.
   */
  backfillDelayMs?: number;
}

function rowValue(row: ExistingRow, field: ReceiptField): string | number | bigint | null {
  const value = row[columnOf[field]] as string | number | bigint | null;
  // The select runs with safe integers: token counts come back as bigint.
  if (typeof value === "bigint" && field !== "creditsRemainingUnits") return Number(value);
  return value;
}

/** Columns (snake_case, as in the stored conflict receipt) where both receipts hold differing values. */
function differingFields(row: ExistingRow, receipt: ReceiptCore): string[] {
  const differences: string[] = [];
  for (const field of receiptFields) {
    const incoming = receipt[field];
    const recorded = rowValue(row, field);
    if (incoming === null || incoming === undefined || recorded === null) continue;
    if (incoming !== recorded) differences.push(columnOf[field]);
  }
  return differences;
}

/** Columns the incoming receipt knows and the recorded one does not. */
function filledFields(row: ExistingRow, receipt: ReceiptCore): string[] {
  return receiptFields
    .filter((field) => receipt[field] !== null && rowValue(row, field) === null)
    .map((field) => columnOf[field]);
}

function fillsUnknowns(row: ExistingRow, receipt: ReceiptCore): boolean {
  return receiptFields.some((field) => receipt[field] !== null && rowValue(row, field) === null);
}

function merged(row: ExistingRow, receipt: ReceiptCore): ReceiptCore {
  const pick = <F extends ReceiptField>(field: F) =>
    (rowValue(row, field) ?? receipt[field]) as ReceiptCore[F];
  return {
    jobId: receipt.jobId,
    escrowTx: pick("escrowTx"),
    settlementTx: pick("settlementTx"),
    worker: pick("worker"),
    creditsRemainingUnits: pick("creditsRemainingUnits"),
    model: pick("model"),
    promptTokens: pick("promptTokens"),
    completionTokens: pick("completionTokens"),
    totalTokens: pick("totalTokens"),
  };
}

/** The receipt as JSON for `receipt_conflicts`, with the wire names and bigints as strings. */
function conflictJson(receipt: Receipt): string {
  return JSON.stringify({
    job_id: receipt.jobId,
    escrow_tx: receipt.escrowTx,
    settlement_tx: receipt.settlementTx,
    worker: receipt.worker,
    credits_remaining_units: receipt.creditsRemainingUnits?.toString() ?? null,
    model: receipt.model,
    prompt_tokens: receipt.promptTokens,
    completion_tokens: receipt.completionTokens,
    total_tokens: receipt.totalTokens,
    tags: receipt.tags ?? {},
  });
}

function captureParams(receipt: Receipt, source: ReceiptSource, now: number, hash: string) {
  return {
    jobId: receipt.jobId,
    source,
    escrowTx: receipt.escrowTx,
    settlementTx: receipt.settlementTx,
    worker: receipt.worker,
    creditsRemainingUnits: receipt.creditsRemainingUnits,
    model: receipt.model,
    promptTokens: receipt.promptTokens,
    completionTokens: receipt.completionTokens,
    totalTokens: receipt.totalTokens,
    maxTokens: receipt.maxTokens ?? null,
    stream: receipt.stream === undefined || receipt.stream === null ? null : receipt.stream ? 1 : 0,
    httpStatus: receipt.httpStatus ?? null,
    latencyMs: receipt.latencyMs ?? null,
    ttfbMs: receipt.ttfbMs ?? null,
    keyFingerprint: receipt.keyFingerprint ?? null,
    responseModel: receipt.responseModel ?? null,
    creditVault: receipt.creditVault ?? null,
    tags: JSON.stringify(receipt.tags ?? {}),
    captureState: receipt.captureState ?? "complete",
    receiptHash: hash,
    now,
  };
}

/** Signatures of conflicting receipts kept per job to verify (the rest are only summarized). */
const maxConflictSignatures = 8;

/**
 * Keeps a conflicting receipt, at most `maxStoredConflicts` rows per job: the same conflicting
 * receipt again is not stored twice, and beyond the cap the last row summarizes the rest.
 */
function storeConflict(
  st: Statements,
  row: ExistingRow,
  receipt: Receipt,
  source: ReceiptSource,
  differences: string[],
  now: number,
) {
  const known = new Set<string>(
    row.conflict_signatures === null ? [] : (JSON.parse(row.conflict_signatures) as string[]),
  );
  const before = known.size;
  for (const sig of [receipt.escrowTx, receipt.settlementTx]) {
    if (
      sig &&
      sig !== row.escrow_tx &&
      sig !== row.settlement_tx &&
      known.size < maxConflictSignatures
    ) {
      known.add(sig);
    }
  }
  if (known.size > before) {
    st.conflictSignatures.run({
      jobId: receipt.jobId,
      signatures: JSON.stringify([...known]),
      now,
    });
  }
  const json = conflictJson(receipt);
  if (st.sameConflict.get(receipt.jobId, source, json) !== undefined) return;
  const stored = st.conflictCount.get(receipt.jobId) as number;
  if (stored < maxStoredConflicts - 1) {
    st.conflict.run(receipt.jobId, source, json, JSON.stringify(differences), now);
    return;
  }
  const latest = JSON.parse(json) as Record<string, unknown>;
  if (stored === maxStoredConflicts - 1) {
    const summary = { summary: true, more_conflicts: 1, latest };
    st.conflict.run(
      receipt.jobId,
      source,
      JSON.stringify(summary),
      JSON.stringify(differences),
      now,
    );
    return;
  }
  const last = st.lastConflict.get(receipt.jobId) as {
    id: number;
    receipt: string;
    differences: string;
  };
  const previous = JSON.parse(last.receipt) as { more_conflicts?: number };
  const fields = new Set([...(JSON.parse(last.differences) as string[]), ...differences]);
  const summary = { summary: true, more_conflicts: (previous.more_conflicts ?? 0) + 1, latest };
  st.updateSummary.run(source, JSON.stringify(summary), JSON.stringify([...fields]), now, last.id);
}

/**
 * Records one receipt inside the caller's transaction (or none). Synchronous by design: it is
 * the body of the batch transaction and must never await.
 */
function recordOne(
  st: Statements,
  receipt: Receipt,
  source: ReceiptSource,
  now: number,
  backfillDelayMs: number,
): RecordResult {
  const hash = receiptHash(receipt);
  const params = captureParams(receipt, source, now, hash);
  const backfillState = backfillFor(receipt);
  const inserted = st.insert.run({
    ...params,
    createdAt: receipt.createdAt ?? now,
    backfillState,
    backfillNextAt: backfillState ? now + backfillDelayMs : null,
  });
  if (inserted.changes === 1) return { outcome: "created" };

  const row = st.select.get(receipt.jobId) as ExistingRow;
  if (row.source === "proxy" && row.capture_state === "open" && source === "proxy") {
    st.completeCapture.run(params);
    return { outcome: "updated" };
  }
  if (row.receipt_hash === hash) return { outcome: "duplicate" };

  // Another source's receipt never completes or corrects this one: anything but the same
  // receipt is a finding, whether it contradicts a field or only knows more.
  if (row.source !== source) {
    const differences = [...differingFields(row, receipt), ...filledFields(row, receipt)];
    storeConflict(st, row, receipt, source, differences, now);
    return { outcome: "conflict", differences };
  }
  const differences = differingFields(row, receipt);
  if (differences.length > 0) {
    storeConflict(st, row, receipt, source, differences, now);
    return { outcome: "conflict", differences };
  }
  if (!fillsUnknowns(row, receipt)) return { outcome: "duplicate" };

  const tags = { ...(JSON.parse(row.tags) as Record<string, string>), ...(receipt.tags ?? {}) };
  const combined = merged(row, receipt);
  st.fill.run({
    ...captureParams({ ...receipt, ...combined, tags }, source, now, receiptHash(combined)),
  });
  return { outcome: "updated" };
}

/**
 * Records a receipt from `source`, idempotent on the job id:
 * - `created`: first receipt of the job;
 * - `duplicate`: the same receipt again (same canonical hash), or one that adds nothing;
 * - `updated`: the proxy completing the row it opened, or a receipt from the same source that
 *   agrees with every recorded field and only fills fields that were unknown (e.g. a
 *   settlement signature);
 * - `conflict`: a field both receipts know differs, or a receipt from another source that is
 *   not the same receipt (one source never fills in another's); the new receipt is kept in
 *   `receipt_conflicts` (an audit finding, capped per job, see `maxStoredConflicts`) and the
 *   recorded one is left as it was.
 * New rows keep the verifier's defaults (`verdict` pending, `next_verify_at` 0).
 */
export function recordReceipt(
  store: Store,
  receipt: Receipt,
  source: ReceiptSource,
  options: RecordOptions = {},
): RecordResult {
  const st = statements(store);
  const now = options.now ?? Date.now();
  return store.sqlite
    .transaction(() => recordOne(st, receipt, source, now, options.backfillDelayMs ?? 0))
    .immediate();
}

/**
 * Records many receipts in one synchronous transaction: either every outcome is written or,
 * if the database fails, none is. Receipts are processed in order, so a job repeated within
 * the batch is a duplicate or conflict of its earlier item.
 */
export function recordReceipts(
  store: Store,
  receipts: readonly Receipt[],
  source: ReceiptSource,
  options: RecordOptions = {},
): RecordResult[] {
  const st = statements(store);
  const now = options.now ?? Date.now();
  const delay = options.backfillDelayMs ?? 0;
  return store.sqlite
    .transaction(() => receipts.map((r) => recordOne(st, r, source, now, delay)))
    .immediate();
}
