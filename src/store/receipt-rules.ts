import { hash } from "node:crypto";
import { getTableColumns } from "drizzle-orm";
import { jobs, type ReceiptSource } from "../db/schema.js";

/*
 * The rules of recording a receipt that do not touch a database: what a receipt is, its hash,
 * how two receipts of one job compare, what a conflict keeps. Shared by the SQLite store
 * (receipts.ts) and the PostgreSQL one (pg/receipts.ts), which apply them to the same rows.
 */

type JobRow = typeof jobs.$inferSelect;

/**
 * The receipt fields compared between two receipts of one job, in canonical order: the receipt
 * proper (what Decentral said and what the job used). They are columns of `jobs`, so their
 * types and column names come from the schema; this list is their one declaration.
 */
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
] as const satisfies readonly (keyof JobRow)[];

export type ReceiptField = (typeof receiptFields)[number];
export type ReceiptCore = Pick<JobRow, ReceiptField>;

/** How a receipt was captured; optional, and not part of its hash (see the schema's comments). */
export const captureFields = [
  "tags",
  "maxTokens",
  "choices",
  "stream",
  "usageAsked",
  "predictionSent",
  "requestMethod",
  "requestPath",
  "httpStatus",
  "latencyMs",
  "ttfbMs",
  "keyFingerprint",
  "keyCheck",
  "responseModel",
  "creditVault",
  "captureState",
  "receiptWriter",
  "reasoningTokens",
  "rejectedPredictionTokens",
  "answerBytes",
  "answerToolCalls",
  "creditsRemainingUnread",
] as const;
export type CaptureField = (typeof captureFields)[number];
type CaptureFields = Pick<JobRow, CaptureField>;

/**
 * A job receipt as the recorder captures it: the `receiptFields` (which make up its canonical
 * hash) and optional capture details. `null` always means unknown, never zero. `createdAt` is
 * when the job ran (epoch ms), by default the time of recording; only the proxy writes
 * `captureState: "open"` rows (headers seen, body not yet ended), naming their `receiptWriter`.
 */
export type Receipt = ReceiptCore &
  Partial<CaptureFields> & {
    createdAt?: number | null;
    /**
     * When the response arrived (epoch ms), by the proxy's clock or the caller's own
     * (`jobs.responded_at`): written with the job's first row and never replaced. Null or absent
     * when not known, whatever `createdAt` says (a completion's `created` is the operator's).
     */
    respondedAt?: number | null;
    /**
     * Further signatures the source named for the lock or the settlement beside the receipt's
     * own (a header sent twice with different values, "S1, S2"). Each is kept as a conflicting
     * receipt of the job, this receipt with that signature in place, so the verifier judges it
     * as a second lock or closing. Not part of the hash.
     */
    otherSignatures?: OtherSignatures;
  };

/** See `Receipt.otherSignatures`. */
export interface OtherSignatures {
  escrowTx?: readonly string[];
  settlementTx?: readonly string[];
}

/**
 * The conflicting receipts `receipt.otherSignatures` stands for: the receipt with each further
 * signature in place, and the column (`settlement_tx`) in which it differs.
 */
export function otherSignatureReceipts(receipt: Receipt): { receipt: Receipt; column: string }[] {
  const { otherSignatures, ...own } = receipt;
  if (otherSignatures === undefined) return [];
  const fields = ["escrowTx", "settlementTx"] as const;
  return fields.flatMap((field) =>
    (otherSignatures[field] ?? [])
      .filter((signature) => signature !== own[field])
      .map((signature) => ({ receipt: { ...own, [field]: signature }, column: columnOf(field) })),
  );
}

/**
 * Conflicting receipts kept per job. The first `maxStoredConflicts - 1` are kept verbatim; the
 * last row is a running summary (how many more came, the latest one, every field that
 * differed), so a flood of posts cannot grow the table or the audit record without bound.
 */
export const maxStoredConflicts = 10;

/** Signatures of conflicting receipts kept per job to verify (the rest are only summarized). */
export const maxConflictSignatures = 8;

/**
 * Entries `jobs.conflict_signatures` may hold: one past `maxConflictSignatures`. Every path
 * adding to the list (conflicting receipts, signatures a jobs API answer drops, ledger lines
 * kept with the job) keeps that one more when the list is full, so a job named more steps than
 * the verifier follows says so, and fails, instead of the later steps being dropped unseen.
 */
export const maxKeptSignatures = maxConflictSignatures + 1;

/**
 * Places `jobs.conflict_signatures` has past `maxKeptSignatures`, for transactions the escrow
 * scan read paying credits out of the escrow vault or out of the job's credit vault (a payout, a
 * refund, a second lock): money the reports count. Only those accounts' authority can move their
 * credits, so a harmless transaction (a memo alone, a transfer between other accounts) never
 * takes one of these places, however many are named. A job named more such payouts than this
 * past its kept signatures keeps the first (README, Known limits).
 */
export const maxKeptPayouts = 16;

/** The most entries `jobs.conflict_signatures` holds: the kept ones and the payouts past them. */
export const maxKeptWithPayouts = maxKeptSignatures + maxKeptPayouts;

/**
 * The `escrow_pending.vault` of a signature a job named past its kept ones (a conflicting
 * receipt's, a step a jobs API answer dropped, a ledger line kept with it, once the list is
 * full): held for the escrow scan to read whatever escrow vault it scans, and kept with the job
 * (`maxKeptPayouts`) when it paid out of escrow or of the job's vault. Dropped, one so named was
 * in no job's figures: the reports' totals below what left escrow by it. A row apart from the
 * escrow listing's entry for the same job and signature (the key holds the vault): each is
 * judged by its own rule, and neither write drops nor overwrites the other.
 */
export const namedPastVault = "";

/**
 * Of `named`, the signatures a job names that are neither its own (`own`: the receipt's or the
 * jobs API's) nor in `kept`, its conflict signatures once those named were added: named past the
 * kept ones, each once. Held for the escrow scan (`namedPastVault`).
 */
export function namedPast(
  named: readonly (string | null)[],
  own: readonly (string | null)[],
  kept: readonly string[] | null,
): string[] {
  const known = new Set<string | null>([...own, ...(kept ?? [])]);
  return [...new Set(named.filter((s): s is string => s !== null && !known.has(s)))];
}

const columns = getTableColumns(jobs);

/** The column name of each receipt field (`settlement_tx`), as conflicts name them. */
export const columnOf = (field: ReceiptField): string => columns[field].name;

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
  // One-shot: no Hash object per receipt (half the CPU of createHash for this size).
  return hash("sha256", canonical, "hex");
}

/** The verifier's queue state of a job (`queueColumns` in receipts.ts reads it on SQLite). */
export type QueueState = Pick<
  JobRow,
  "verdict" | "nextVerifyAt" | "verifyAttempts" | "lastError" | "leaseOwner"
>;

/**
 * False when `reopenJobs` would find the job as it would leave it: pending, due, never
 * attempted, no error, no lease (e.g. a proxy row completed before any verifier saw it). The
 * reopen is then skipped: it would only move a due time that has passed up to `now`, a write
 * of `jobs` that fires its rollup triggers for nothing, on every proxied job.
 */
export function needsReopen(job: QueueState, now: number): boolean {
  return !(
    job.verdict === "pending" &&
    job.nextVerifyAt <= now &&
    job.verifyAttempts === 0 &&
    job.lastError === null &&
    job.leaseOwner === null
  );
}

/** The recorded row a new receipt is compared with. */
export type RecordedRow = ReceiptCore &
  Pick<
    JobRow,
    | "source"
    | "tags"
    | "captureState"
    | "receiptHash"
    | "responseModel"
    | "creditVault"
    | "backfillState"
    | "conflictSignatures"
    | "httpStatus"
    | "keyFingerprint"
    | "keyCheck"
    | "maxTokens"
    | "choices"
    | "createdAt"
    | "requestMethod"
    | "requestPath"
  > &
  QueueState;

/**
 * The capture fields a later receipt from the same source may fill in where the recorded one
 * has none, and whose contradiction (both known, different) is a conflict: they tie the lock to
 * the customer (`key_fingerprint`, `key_check`, `credit_vault`) and bound what the job may cost
 * (`max_tokens`, and `n`, the choices it bounds), so a first receipt without them must not leave
 * the job judged without them: a ceiling filled without its `n` bounds n choices as one.
 */
const fillableCaptureFields = [
  "keyFingerprint",
  "keyCheck",
  "maxTokens",
  "choices",
  "creditVault",
  "requestMethod",
  "requestPath",
] as const;

/**
 * Columns of the capture fields where `receipt`, from the recorded row's own source, says
 * something else than the row: a fillable field both know with different values, or another
 * `created_at`. When the job ran decides `receipt.time` and the period reports place it in, and
 * the first receipt's time (stated or the time of its recording) is never replaced: a receipt
 * that states another is a different account of the job, kept as a conflict like any other.
 * Tags are labels, not facts of the job's money: another value of a known tag is no conflict
 * (the first stays, see `mergedTags`).
 */
export function captureDifferences(row: RecordedRow, receipt: Receipt): string[] {
  const differences: string[] = [];
  for (const field of fillableCaptureFields) {
    const incoming = receipt[field] ?? null;
    const recorded = row[field];
    if (incoming !== null && recorded !== null && incoming !== recorded) {
      differences.push(columns[field].name);
    }
  }
  // The proxy dates its receipts itself, at the write that commits (a write tried again after
  // a commit whose answer was lost carries a later time): its own copies never conflict on it.
  const createdAt = receipt.createdAt ?? null;
  if (row.source !== "proxy" && createdAt !== null && createdAt !== row.createdAt) {
    differences.push(columns.createdAt.name);
  }
  return differences;
}

/** True when `receipt` knows a fillable capture field (see above) the recorded row lacks. */
export function fillsCapture(row: RecordedRow, receipt: Receipt): boolean {
  return fillableCaptureFields.some(
    (field) => (receipt[field] ?? null) !== null && row[field] === null,
  );
}

/** True when `receipt` names a tag the recorded row does not have. */
export function addsTags(row: Pick<RecordedRow, "tags">, receipt: Receipt): boolean {
  return Object.keys(receipt.tags ?? {}).some((name) => !Object.hasOwn(row.tags, name));
}

/**
 * The recorded tags with the tag names only `receipt` has added. A tag both name keeps the
 * recorded value: tags are labels, and a later receipt relabelling a job would move it between
 * the groups a caller reads by tag.
 */
export function mergedTags(
  row: Pick<RecordedRow, "tags">,
  receipt: Receipt,
): Record<string, string> {
  const tags = { ...row.tags };
  for (const [name, value] of Object.entries(receipt.tags ?? {})) {
    if (!Object.hasOwn(tags, name)) tags[name] = value;
  }
  return tags;
}

/**
 * True when a receipt with the recorded one's hash, from its source, may carry capture fields
 * worth reading the whole row for (see `captureDifferences`, `fillsCapture`, `addsTags`).
 */
export function carriesCapture(receipt: Receipt): boolean {
  return (
    fillableCaptureFields.some((field) => (receipt[field] ?? null) !== null) ||
    (receipt.createdAt ?? null) !== null ||
    Object.keys(receipt.tags ?? {}).length > 0
  );
}

/** Columns (snake_case, as in the stored conflict receipt) where both receipts hold differing values. */
export function differingFields(row: RecordedRow, receipt: ReceiptCore): string[] {
  const differences: string[] = [];
  for (const field of receiptFields) {
    const incoming = receipt[field];
    const recorded = row[field];
    if (incoming === null || incoming === undefined || recorded === null) continue;
    if (incoming !== recorded) differences.push(columnOf(field));
  }
  return differences;
}

/**
 * Does `source`'s receipt complete the proxy's open capture `row`? The proxy's own completion
 * does; so does an imported one that contradicts no field the open row knows: the line the
 * proxy logs when it could not write a completion (`receipt completion not recorded`) adds only
 * what it had not yet seen. Imported as a receipt of another source, its usage was a conflict.
 * The key the proxy read from the Authorization header it forwarded is such a field: a line
 * naming another fingerprint, or another key check, is no line the proxy logged, and completing
 * with it wrote its key over the proxy's (the job judged as that key's, no conflict kept).
 */
export function completesOpenCapture(
  row: Pick<RecordedRow, "source" | "captureState">,
  receipt: ReceiptCore & Pick<Receipt, "keyFingerprint" | "keyCheck">,
  source: ReceiptSource,
  full: () => RecordedRow,
): boolean {
  if (row.source !== "proxy" || row.captureState !== "open") return false;
  if (source === "proxy") return true;
  if (source !== "import") return false;
  const open = full();
  return differingFields(open, receipt).length === 0 && !contradictsKey(open, receipt);
}

/** Whether `receipt` names another fingerprint than the row's, or another key check. */
function contradictsKey(
  row: Pick<RecordedRow, "keyFingerprint" | "keyCheck">,
  receipt: Pick<Receipt, "keyFingerprint" | "keyCheck">,
): boolean {
  const fingerprint = receipt.keyFingerprint ?? null;
  const check = receipt.keyCheck ?? null;
  if (fingerprint !== null && row.keyFingerprint !== null && fingerprint !== row.keyFingerprint) {
    return true;
  }
  return check !== null && row.keyCheck !== null && check !== row.keyCheck;
}

/**
 * The key fingerprint a completed capture keeps: the completion's, else the proxy's, read from
 * the Authorization header it forwarded. An imported completion line naming no fingerprint
 * erased it: the job was then judged as no key's, its lock from any vault a key holds unproven.
 */
export function completedFingerprint(
  row: Pick<RecordedRow, "keyFingerprint">,
  receipt: Pick<Receipt, "keyFingerprint">,
): string | null {
  return receipt.keyFingerprint ?? row.keyFingerprint;
}

/**
 * The key check a completed capture keeps: the proxy's, while the completion names the same
 * fingerprint or none. An imported completion line naming no key check, or another, erased it:
 * the fingerprint's second key check gone, a key made to share it was judged on the
 * fingerprint alone again.
 */
export function completedKeyCheck(
  row: Pick<RecordedRow, "keyFingerprint" | "keyCheck">,
  receipt: Pick<Receipt, "keyFingerprint" | "keyCheck">,
): string | null {
  const fingerprint = receipt.keyFingerprint ?? null;
  // A completion naming a fingerprint the open row lacked brings the check beside it (one
  // naming another is no completion: `completesOpenCapture`).
  if (fingerprint !== null && fingerprint !== row.keyFingerprint) return receipt.keyCheck ?? null;
  return row.keyCheck ?? receipt.keyCheck ?? null;
}

/*
 * Another source's receipt of a recorded job neither fills in nor contradicts its capture
 * fields, except the key check. A job first recorded naming only its fingerprint (an import
 * line, an older recorder) would otherwise never get one: a key made to share that fingerprint
 * stayed one key with the other, its jobs judged on the fingerprint alone, whatever later
 * receipts of them said. The key check is the key's own, whoever recorded it, and a fill only
 * makes the checks stricter (`key.fingerprint_unique`).
 */

/**
 * True when another source's `receipt` names a key check beside the fingerprint the job was
 * recorded with, and the job has none: it is filled in (`keyCheck` alone).
 */
export function fillsKeyCheck(
  row: Pick<RecordedRow, "keyFingerprint" | "keyCheck">,
  receipt: Pick<Receipt, "keyFingerprint" | "keyCheck">,
): boolean {
  return (
    row.keyCheck === null &&
    row.keyFingerprint !== null &&
    (receipt.keyCheck ?? null) !== null &&
    receipt.keyFingerprint === row.keyFingerprint
  );
}

/**
 * Columns where another source's `receipt` contradicts the job's key check: both name one and
 * they differ, with `key_fingerprint` when it names another fingerprint too. Kept as a
 * conflict, as a receipt of the job's own source naming another one is.
 */
export function otherSourceKeyDifferences(
  row: Pick<RecordedRow, "keyFingerprint" | "keyCheck">,
  receipt: Pick<Receipt, "keyFingerprint" | "keyCheck">,
): string[] {
  const check = receipt.keyCheck ?? null;
  if (check === null || row.keyCheck === null || check === row.keyCheck) return [];
  const fingerprint = receipt.keyFingerprint ?? null;
  const otherKey =
    fingerprint !== null && row.keyFingerprint !== null && fingerprint !== row.keyFingerprint;
  return otherKey ? [columns.keyFingerprint.name, columns.keyCheck.name] : [columns.keyCheck.name];
}

/**
 * The backfill a completed capture keeps: an import's asks the jobs API (the proxy asks only
 * once it wrote the completion itself), as does one still without a settlement signature.
 */
export function completedBackfill(
  row: Pick<RecordedRow, "backfillState">,
  settlementTx: string | null,
  source: ReceiptSource,
): "pending" | RecordedRow["backfillState"] {
  return settlementTx === null || source !== "proxy"
    ? (row.backfillState ?? "pending")
    : row.backfillState;
}

/** Fields the incoming receipt knows and the recorded one does not. */
export function filledFields(row: RecordedRow, receipt: ReceiptCore): ReceiptField[] {
  return receiptFields.filter((field) => receipt[field] !== null && row[field] === null);
}

/**
 * What another source's receipt says that the recorded one does not: a field it contradicts or
 * one it knows and the recorded one lacks, and a differing status. Empty for a copy that only
 * knows less (a field left out): it says nothing against the recorded receipt, so it is no
 * conflict, which would show an empty list of differences.
 */
export function otherSourceDifferences(
  row: RecordedRow,
  receipt: ReceiptCore,
  statusFinding: readonly string[],
): string[] {
  return [
    ...differingFields(row, receipt),
    ...filledFields(row, receipt).map(columnOf),
    ...statusFinding,
  ];
}

/**
 * What recording another source's copy that only knows less comes to: a duplicate, or an update
 * when the status it brought was taken (the job judged again if it was judged).
 */
export function knowingLessOutcome(statusTaken: boolean, reopen: boolean) {
  return {
    result: { outcome: statusTaken ? ("updated" as const) : ("duplicate" as const) },
    reopen: statusTaken && reopen,
    named: [] as string[],
  };
}

/** The recorded receipt with its unknowns taken from `receipt`. */
export function merged(row: RecordedRow, receipt: ReceiptCore): ReceiptCore {
  const combined = {} as Record<ReceiptField, unknown>;
  for (const field of receiptFields) combined[field] = row[field] ?? receipt[field];
  return combined as ReceiptCore;
}

/**
 * The backfill a new receipt starts with: the jobs API is asked about a job without a
 * settlement signature (a stream's comes from there), and about every job recorded other than
 * by the proxy, which asks about its own jobs itself: a second settlement that only the jobs
 * API names is seen for ingested and imported jobs too.
 */
export function initialBackfill(
  receipt: Pick<Receipt, "settlementTx">,
  source: ReceiptSource,
): "pending" | null {
  return receipt.settlementTx === null || source !== "proxy" ? "pending" : null;
}

/**
 * The columns a fill writes: the recorded receipt with its unknowns taken from `receipt`, the
 * fillable capture fields likewise, the recorded tags with the new names of `receipt`'s, the
 * hash of the merged receipt, and the backfill ended once the settlement is known.
 */
export function filledColumns(row: RecordedRow, receipt: Receipt) {
  const combined = merged(row, receipt);
  return {
    ...combined,
    keyFingerprint: row.keyFingerprint ?? receipt.keyFingerprint ?? null,
    // Only beside the fingerprint it checks: a receipt naming another fingerprint is a conflict.
    keyCheck: row.keyCheck ?? receipt.keyCheck ?? null,
    maxTokens: row.maxTokens ?? receipt.maxTokens ?? null,
    choices: row.choices ?? receipt.choices ?? null,
    creditVault: row.creditVault ?? receipt.creditVault ?? null,
    requestMethod: row.requestMethod ?? receipt.requestMethod ?? null,
    requestPath: row.requestPath ?? receipt.requestPath ?? null,
    tags: mergedTags(row, receipt),
    receiptHash: receiptHash(combined),
    // A stream's backfill ends with its settlement; a job the proxy did not record waits for
    // the jobs API's answer itself (a second settlement is named only there).
    backfillState:
      combined.settlementTx !== null && row.backfillState === "pending" && row.source === "proxy"
        ? "done"
        : row.backfillState,
  };
}

/** The receipt for `receipt_conflicts`, with the column names and bigints as strings. */
export function conflictRecord(receipt: Receipt): Record<string, unknown> {
  const record: Record<string, unknown> = {};
  for (const field of receiptFields) {
    const value = receipt[field];
    record[columnOf(field)] = typeof value === "bigint" ? value.toString() : value;
  }
  record.tags = receipt.tags ?? {};
  // The capture fields a conflict can be over (see `captureDifferences`), when it names them.
  for (const field of [...fillableCaptureFields, "createdAt"] as const) {
    const value = receipt[field] ?? null;
    if (value !== null) record[columns[field].name] = value;
  }
  // Not part of the hash, yet it decides refund.not_settled: a conflict over it must show it.
  if (receipt.httpStatus !== undefined && receipt.httpStatus !== null) {
    record.http_status = receipt.httpStatus;
  }
  return record;
}

/** Parameters of the receipt's own columns, for the insert and the proxy's completion. */
export function captureParams(receipt: Receipt, source: ReceiptSource, now: number, hash: string) {
  const params: Record<string, unknown> = {
    source,
    maxTokens: receipt.maxTokens ?? null,
    choices: receipt.choices ?? null,
    stream: receipt.stream ?? null,
    usageAsked: receipt.usageAsked ?? null,
    predictionSent: receipt.predictionSent ?? null,
    requestMethod: receipt.requestMethod ?? null,
    requestPath: receipt.requestPath ?? null,
    httpStatus: receipt.httpStatus ?? null,
    latencyMs: receipt.latencyMs ?? null,
    ttfbMs: receipt.ttfbMs ?? null,
    keyFingerprint: receipt.keyFingerprint ?? null,
    keyCheck: receipt.keyCheck ?? null,
    responseModel: receipt.responseModel ?? null,
    creditVault: receipt.creditVault ?? null,
    tags: receipt.tags ?? {},
    captureState: receipt.captureState ?? "complete",
    // Only an open capture has a writer: its completion clears it.
    receiptWriter: receipt.captureState === "open" ? (receipt.receiptWriter ?? null) : null,
    reasoningTokens: receipt.reasoningTokens ?? null,
    rejectedPredictionTokens: receipt.rejectedPredictionTokens ?? null,
    answerBytes: receipt.answerBytes ?? null,
    answerToolCalls: receipt.answerToolCalls ?? null,
    creditsRemainingUnread: receipt.creditsRemainingUnread ?? null,
    receiptHash: hash,
    now,
  };
  for (const field of receiptFields) params[field] = receipt[field];
  return params;
}

/**
 * The job's conflict signatures with the ones `receipt` names added (those not already the
 * job's, up to `maxKeptSignatures`), or null when it adds none. Those past them:
 * `receiptNamedPast`.
 */
export function gainedConflictSignatures(row: RecordedRow, receipt: Receipt): string[] | null {
  const known = new Set<string>(row.conflictSignatures ?? []);
  const before = known.size;
  for (const sig of [receipt.escrowTx, receipt.settlementTx]) {
    if (sig && sig !== row.escrowTx && sig !== row.settlementTx && known.size < maxKeptSignatures) {
      known.add(sig);
    }
  }
  return known.size > before ? [...known] : null;
}

/**
 * The signatures `receipt` names that do not fit in the job's conflict signatures (`kept`: as
 * `gainedConflictSignatures` left them), for the escrow scan to read (`namedPast`).
 */
export function receiptNamedPast(
  row: RecordedRow,
  receipt: Receipt,
  kept: readonly string[] | null,
): string[] {
  return namedPast(
    [receipt.escrowTx, receipt.settlementTx],
    [row.escrowTx, row.settlementTx],
    kept ?? row.conflictSignatures,
  );
}

/** A status the caller got an answer with (2xx); any other gave no completion. */
const answered = (status: number) => status >= 200 && status <= 299;

/**
 * What another receipt of a recorded job does with its HTTP status, which is how the receipt
 * was captured, not part of its hash, yet decides `refund.not_settled`:
 * - `none`: it names none, or the recorded one;
 * - `fill`: the recorded receipt lacks one, whatever the source;
 * - `replace`: it says the caller got no answer (outside 2xx) where the recorded one says 2xx.
 *   Copies that disagree on whether the caller got an answer must not leave the job judged on
 *   the answer, whichever came first: the error is what makes the checks stricter (no
 *   completion, so no charge). The copy is still a conflict that names `http_status`;
 * - `conflict`: both name one and they differ otherwise (a 2xx never replaces an error
 *   answer; of two errors, or two 2xx, the first stays).
 */
export function statusOfCopy(
  row: Pick<RecordedRow, "httpStatus">,
  receipt: Pick<Receipt, "httpStatus">,
): "none" | "fill" | "replace" | "conflict" {
  const status = receipt.httpStatus ?? null;
  if (status === null || status === row.httpStatus) return "none";
  if (row.httpStatus === null) return "fill";
  return answered(row.httpStatus) && !answered(status) ? "replace" : "conflict";
}

/**
 * The status the proxy's completion of its own open row writes: its own, except where another
 * copy replaced the row's 2xx with an error answer (`replace` above), which stays. Otherwise
 * the completion would put the 2xx back, and which copy came first would decide the verdict.
 */
export function completedStatus(
  row: Pick<RecordedRow, "httpStatus">,
  receipt: Pick<Receipt, "httpStatus">,
): number | null {
  const own = receipt.httpStatus ?? null;
  const recorded = row.httpStatus;
  if (recorded !== null && !answered(recorded) && (own === null || answered(own))) return recorded;
  return own ?? recorded;
}

/** True when a copy's status is written on the job (see `statusOfCopy`). */
export const statusWritten = (status: ReturnType<typeof statusOfCopy>) =>
  status === "fill" || status === "replace";

/** True when a copy's status is a finding kept with the copy (see `statusOfCopy`). */
export const statusDiffers = (status: ReturnType<typeof statusOfCopy>) =>
  status === "conflict" || status === "replace";

/** What a job's charge is priced from (`usagePrice`): its usage, model, ceiling and choices. */
const chargeInputs = ["completionTokens", "model", "maxTokens", "choices"] as const;

/**
 * The settlement `row` names when `receipt` gives the job a charge it did not have (a usage
 * filled in later, a ceiling or a number of choices): a settlement several jobs share is split
 * between them by the charges their receipts claim (src/verify/checks/shared-closing.ts), each
 * namer reading the split on its own, so the others must be judged again with this charge. A
 * namer judged on the old one kept the part the new split gives this job: a report charged a
 * settlement twice.
 */
export function closingsRepriced(row: RecordedRow, receipt: Receipt): string[] {
  if (row.settlementTx === null) return [];
  const moved = chargeInputs.some((field) => {
    const given = receipt[field] ?? null;
    return given !== null && given !== (row[field] ?? null);
  });
  return moved ? [row.settlementTx] : [];
}

/**
 * The signatures `receipt` makes its job name that it did not name before (`row` null: the
 * job is new). Who owns a signature's money turns on every job naming it (its memo's job, else
 * the first by id), so each such signature's other namers must be judged again: a replay
 * recorded and judged before the real job would otherwise keep the money, counted twice.
 */
export function newlyNamed(row: RecordedRow | null, receipt: Receipt): string[] {
  const before = new Set<string>(
    row === null
      ? []
      : [row.escrowTx, row.settlementTx, ...(row.conflictSignatures ?? [])].filter(
          (s): s is string => s !== null,
        ),
  );
  return [receipt.escrowTx, receipt.settlementTx].filter(
    (s): s is string => s !== null && !before.has(s),
  );
}

/**
 * The signatures the proxy's completion of the row it opened stops naming: a completion
 * replaces the receipt's columns (`written`), so a signature of the open row can go. Its other
 * namers are judged again, as for `newlyNamed`: while this job named it they may have owned
 * nothing of its money, which would then be counted for nobody.
 */
export function noLongerNamed(
  row: RecordedRow,
  written: Pick<ReceiptCore, "escrowTx" | "settlementTx">,
): string[] {
  const after = [written.escrowTx, written.settlementTx, ...(row.conflictSignatures ?? [])];
  return [row.escrowTx, row.settlementTx].filter(
    (s): s is string => s !== null && !after.includes(s),
  );
}

/** The summary row beyond the cap, counting one more conflict: `record` is the latest. */
export function nextSummary(
  last: { receipt: Record<string, unknown>; differences: string[] },
  record: Record<string, unknown>,
  differences: string[],
): { receipt: Record<string, unknown>; differences: string[] } {
  const previous = last.receipt as { more_conflicts?: number };
  return {
    receipt: { summary: true, more_conflicts: (previous.more_conflicts ?? 0) + 1, latest: record },
    differences: [...new Set([...last.differences, ...differences])],
  };
}
