import { type AnyColumn, isNotNull, type SQL, sql } from "drizzle-orm";
import { customType, index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { type TokenRole, tokenRoles } from "../auth/token-roles.js";

/**
 * Integer base units (USDC base units, lamports) stored as SQLite INTEGER and read as bigint.
 * better-sqlite3 hands back a JS number unless the statement asked for safe integers; a single
 * job's amount is far below 2^53, and a value that is not a safe integer is refused rather than
 * read rounded. Aggregates over many jobs are computed with safe-integer statements in reports.
 */
export const units = customType<{ data: bigint; driverData: number | bigint }>({
  dataType: () => "integer",
  toDriver: (value) => value,
  fromDriver: (value) => {
    if (typeof value === "number" && !Number.isSafeInteger(value)) {
      throw new RangeError(`integer amount ${value} read without safe integers`);
    }
    return BigInt(value);
  },
});

/** JSON stored as TEXT. Bigints must already be decimal strings (see `stringifyWithBigints`). */
const json = <T>() =>
  customType<{ data: T; driverData: string }>({
    dataType: () => "text",
    toDriver: (value) => JSON.stringify(value),
    fromDriver: (value) => JSON.parse(value) as T,
  });

/** Milliseconds since the Unix epoch, UTC. */
const epochMs = (name: string) => integer(name);

export const receiptSources = ["proxy", "ingest", "import", "fetch"] as const;
export type ReceiptSource = (typeof receiptSources)[number];

/**
 * Where a job stands. `pending`: not looked at yet; `awaiting_finality`: its transactions are
 * not all finalized (or not landed yet); `error`: RPC trouble, retried; `verified`: every
 * applicable check passed at finalized; `discrepancy`: a check failed; `dropped`: a signature
 * never landed and its blockhash expired; `unverifiable`: the receipt lacks what a check needs
 * (e.g. no settlement signature after the backfill gave up) or the node pruned the transaction;
 * `partially_verified`: no check failed, but the job's own data left a money check unproven
 * (usage or price unknown, credit vault not tied to the customer, treasury not learned yet):
 * `jobs.unproven` lists what. `rpc_disagreement`: with `RPC_QUORUM` above 1, the endpoints did not
 * agree on a fact the verdict needs; never a verdict about the job, retried, every answer kept.
 */
export const verdicts = [
  "pending",
  "awaiting_finality",
  "error",
  "rpc_disagreement",
  "verified",
  "partially_verified",
  "discrepancy",
  "dropped",
  "unverifiable",
] as const;
export type Verdict = (typeof verdicts)[number];

/**
 * How the nightly windows count a job that two windows could each take (`countedInWindow`):
 * `date`, by the window it is dated in (a run of that window counted it, recorded after the
 * window's end); `late`, by the window it was recorded in (recorded after a run of its own
 * window had counted, or dated before the window of the run that first saw it). Written once.
 */
export const nightlyCountings = ["date", "late"] as const;
export const finalVerdicts: readonly Verdict[] = [
  "verified",
  "partially_verified",
  "discrepancy",
  "dropped",
  "unverifiable",
];
/**
 * Why a job that had a final verdict was sent back to the verifier (`jobs.rejudge_reason`):
 * `profile`, a verifier started under another profile; `reverify`, asked for by hand;
 * `upgrade`, a rule this version added may judge it otherwise; `evidence`, something it was
 * judged on changed (a jobs API answer, a transaction the ledger read, another receipt naming
 * its signatures, an account pinned), which may show what its last verdict missed.
 */
export const rejudgeReasons = ["profile", "reverify", "upgrade", "evidence"] as const;
export type RejudgeReason = (typeof rejudgeReasons)[number];

/** `verdict` is one of `finalVerdicts`, the verdicts written out as literals. */
export const verdictIsFinal = (verdict: AnyColumn | SQL) =>
  sql`${verdict} IN (${sql.raw(finalVerdicts.map((v) => `'${v}'`).join(", "))})`;

/** Verdicts the verifier still works on: every verdict that is not final. */
export const openVerdicts: readonly Verdict[] = verdicts.filter((v) => !finalVerdicts.includes(v));

/**
 * `verdict` is not final, with the verdicts written out as literals: the very term of the
 * partial index `jobs_open_due` (both dialects). SQLite uses a partial index only when the query
 * repeats its term, literals included: with bound parameters the claim sorted every due job.
 */
export const verdictIsOpen = (verdict: AnyColumn) =>
  sql`${verdict} IN (${sql.raw(openVerdicts.map((v) => `'${v}'`).join(", "))})`;

/**
 * The verdicts that may wait for the treasury (`waitsForTreasury`): every final one but
 * `verified`, each judged on a settlement whose one payee besides the worker and the credit
 * vault was counted as the treasury while it was learned.
 */
export const treasuryWaitingVerdicts: readonly Verdict[] = finalVerdicts.filter(
  (v) => v !== "verified",
);

const treasuryWaitingList = treasuryWaitingVerdicts.map((v) => `'${v}'`).join(", ");

/**
 * A job that waits for the treasury to be learned (`waitsForTreasury`): final, yet decided
 * again once it is pinned. The term of the partial index `jobs_treasury_waiting` (both
 * dialects; `unproven` as its JSON text), which a query repeats (`waitsForTreasuryText`).
 */
export const waitsForTreasuryTerm = (verdict: AnyColumn, unprovenText: SQL) =>
  sql`${verdict} IN (${sql.raw(treasuryWaitingList)}) AND ${unprovenText} LIKE '%"treasury_unknown"%'`;

/** `waitsForTreasuryTerm` as SQL text, for the queries written out by hand. */
export const waitsForTreasuryText = (verdict: string, unprovenText: string) =>
  `${verdict} IN (${treasuryWaitingList}) AND ${unprovenText} LIKE '%"treasury_unknown"%'`;

/**
 * The job was recorded after the time it is dated: the term of the partial index
 * `jobs_recorded_late` (both dialects), which the window's query repeats (`jobInWindow`). A
 * proxied receipt is dated when it is recorded, so it has no entry there: one b-tree fewer
 * written per receipt.
 */
export const recordedAfterDate = (createdAt: AnyColumn, recordedAt: AnyColumn) =>
  sql`${createdAt} < ${recordedAt}`;

/**
 * `capture_state` is `open`, the literal written out: the term of the partial index
 * `jobs_open_receipts` (both dialects), which a query must repeat for SQLite to use it.
 */
export const captureIsOpen = (captureState: AnyColumn) => sql`${captureState} = 'open'`;

/**
 * The settlement backfill still asks about the job, the literal written out: the term of the
 * partial index `jobs_backfill` (both dialects), which every query of it repeats. Jobs the
 * backfill is done with or gave up on (every streamed job, in time) are no entry there.
 */
export const backfillIsPending = (backfillState: AnyColumn) => sql`${backfillState} = 'pending'`;

/** One row per Decentral job: the receipt as recorded, what the jobs API said, and the verdict. */
export const jobs = sqliteTable(
  "jobs",
  {
    jobId: text("job_id").primaryKey(),
    source: text("source", { enum: receiptSources }).notNull(),
    escrowTx: text("escrow_tx"),
    settlementTx: text("settlement_tx"),
    worker: text("worker"),
    /** `x-decentral-credits-remaining` converted to base units (credits x 10,000). */
    creditsRemainingUnits: units("credits_remaining_units"),
    /**
     * The `x-decentral-credits-remaining` the operator sent when it is no credit amount (cut to
     * 200 characters); null when absent or read. A header sent but unreadable fails
     * `credits.header`: it is not a header the response lacked.
     */
    creditsRemainingUnread: text("credits_remaining_unread"),
    /** The model the caller asked for (the job is priced by it). */
    model: text("model"),
    /** The model the response named; the operator writes it, so it is only compared. */
    responseModel: text("response_model"),
    /** The credit vault the receipt's sender declared for the key, if any. */
    creditVault: text("credit_vault"),
    /** Usage; null means unknown, never zero. */
    promptTokens: integer("prompt_tokens"),
    completionTokens: integer("completion_tokens"),
    totalTokens: integer("total_tokens"),
    /** `usage.completion_tokens_details.reasoning_tokens`: output the answer does not show. */
    reasoningTokens: integer("reasoning_tokens"),
    /**
     * `usage.completion_tokens_details.rejected_prediction_tokens`: predicted output the model
     * did not keep, billed as completion tokens but absent from the answer.
     */
    rejectedPredictionTokens: integer("rejected_prediction_tokens"),
    /**
     * Bytes of what the caller was answered that tokens could have made, for `usage.consistent`:
     * the generated text (content, refusal, tool calls, reasoning) of the choices asked for, or
     * of a stream too long to read whole, the `data:` bytes up to `[DONE]` (a looser bound).
     * Null where the recorder did not see the answer.
     */
    answerBytes: integer("answer_bytes"),
    /** Tool and function calls in that answer: each costs tokens that are none of its bytes. */
    answerToolCalls: integer("answer_tool_calls"),
    /** The request's `max_tokens` (null when the request set none): it fixes the escrow lock. */
    maxTokens: integer("max_tokens"),
    /**
     * The request's `n` where it asked for more than one choice (null: one, or not known):
     * `max_tokens` bounds each choice, so the usage may be `n` times it.
     */
    choices: integer("choices"),
    stream: integer("stream", { mode: "boolean" }),
    /**
     * Whether a streamed request the proxy read and answered with a stream asked for its usage
     * (`stream_options.include_usage`): a stream that then ended whole without usage had it
     * withheld by the operator. Null when not known (not the proxy's, or no such stream).
     */
    usageAsked: integer("usage_asked", { mode: "boolean" }),
    /**
     * Whether a request the proxy read sent a `prediction` (predicted outputs): only then may its
     * usage name rejected prediction tokens. Null when not known (not the proxy's, or a body it
     * did not read as a JSON object).
     */
    predictionSent: integer("prediction_sent", { mode: "boolean" }),
    /**
     * The HTTP method of the request the proxy forwarded (`POST` for a completion). A job's
     * answer to a request of any other method (a free `GET /v1/models`) asked for nothing to
     * run: any money it moved fails `escrow.within_ceiling` and `charge.matches_price`. Null
     * when not known (a receipt the proxy did not record, or one recorded before it was kept).
     */
    requestMethod: text("request_method"),
    /**
     * The path of that request, without its query (which may carry the caller's key): a job
     * answering a POST to a documented free endpoint (`/v1/webhooks`) asked for nothing to run
     * either. At most 200 characters; null when not known.
     */
    requestPath: text("request_path"),
    httpStatus: integer("http_status"),
    latencyMs: integer("latency_ms"),
    ttfbMs: integer("ttfb_ms"),
    /** Short hash of the caller's API key; the key itself is never stored. */
    keyFingerprint: text("key_fingerprint"),
    /**
     * The next 16 hex digits of the key's SHA-256 (`keyCheck`), never shown as the key: two
     * receipts of one fingerprint naming two of them are two keys (`key.fingerprint_unique`).
     * Null when the recorder did not send it (older recorders, integrations posting only the
     * fingerprint).
     */
    keyCheck: text("key_check"),
    tags: json<Record<string, string>>()("tags").notNull().default(sql`'{}'`),
    /** Proxy capture: `open` once headers arrived, `complete` when the body ended, `aborted`. */
    captureState: text("capture_state", { enum: ["open", "complete", "aborted"] })
      .notNull()
      .default("complete"),
    /**
     * Who writes an open capture (`ownerName` of the proxy's process, host and pid), so the
     * capture of a process that died can be ended; null once it is completed, and on rows
     * written before it was recorded.
     */
    receiptWriter: text("receipt_writer"),
    /** Hash of the canonical receipt fields, to tell a duplicate from a conflicting receipt. */
    receiptHash: text("receipt_hash").notNull(),
    createdAt: epochMs("created_at").notNull(),
    recordedAt: epochMs("recorded_at").notNull(),
    /**
     * When the response (its headers, which carry `x-decentral-credits-remaining`) arrived, by a
     * clock the customer keeps: the proxy's, or the caller's `created_at` on `POST /jobs` and
     * `import` (never a completion's `created`, which the operator writes). Null when not known.
     * The lines of the credit vault surely before the response are those the chain dated up to
     * its second (`headerSpanEnd`): `recorded_at` is when the row was written, which a held body,
     * a retried write or a late ingest puts after lines that came after the response.
     */
    respondedAt: epochMs("responded_at"),
    updatedAt: epochMs("updated_at").notNull(),

    // What GET /v1/jobs/{id} said, when it was asked.
    apiStatus: text("api_status"),
    apiCreditsChargedUnits: units("api_credits_charged_units"),
    /** `credits_charged` as the jobs API sent it (JSON) when it is no credit amount. */
    apiCreditsChargedUnread: text("api_credits_charged_unread"),
    apiEscrowTx: text("api_escrow_tx"),
    apiSettlementTx: text("api_settlement_tx"),
    apiWorker: text("api_worker"),
    /**
     * `usage.completion_tokens` as the jobs API named it (the operator's word, as the answer's
     * own usage is): the charge is priced by it when the receipt recorded no usage.
     */
    apiCompletionTokens: integer("api_completion_tokens"),
    apiCheckedAt: epochMs("api_checked_at"),
    /** Settlement backfill of streamed jobs: null when not needed. */
    backfillState: text("backfill_state", { enum: ["pending", "done", "gave_up"] }),
    backfillAttempts: integer("backfill_attempts").notNull().default(0),
    backfillNextAt: epochMs("backfill_next_at"),

    // Verification state; the queue claims rows with a lease so a crash never loses one.
    verdict: text("verdict", { enum: verdicts }).notNull().default("pending"),
    verdictAt: epochMs("verdict_at"),
    /**
     * The profile that wrote the verdict: its name and a digest of its content (`profileId`).
     * A final verdict of another profile is judged again by a verifier that starts under this
     * one (src/verify/profile-sweep.ts); null on verdicts written before it was recorded, which
     * are judged again the same way, once (judged again, they record their profile).
     */
    verdictProfile: text("verdict_profile"),
    /**
     * While a job that had a final verdict is judged again (its `verdict` open): that verdict,
     * and why it was sent back (`rejudgeReasons`). `verdict_at` and `verdict_profile` stay
     * those of that verdict meanwhile. Null otherwise: a final verdict written clears both.
     */
    previousVerdict: text("previous_verdict", { enum: verdicts }),
    rejudgeReason: text("rejudge_reason", { enum: rejudgeReasons }),
    verifyAttempts: integer("verify_attempts").notNull().default(0),
    nextVerifyAt: epochMs("next_verify_at").notNull().default(0),
    leaseOwner: text("lease_owner"),
    leaseUntil: epochMs("lease_until"),
    lastError: text("last_error"),
    /** Highest commitment seen for both transactions (the lower of the two). */
    commitment: text("commitment", { enum: ["processed", "confirmed", "finalized"] }),
    /**
     * Signatures that conflicting receipts of this job name (a job id answered twice), that an
     * earlier jobs API answer named and a later one no longer does, and that the vault's ledger
     * read under the job's memo unnamed: the verifier fetches and judges them with the job's
     * own, and reports count their money.
     */
    conflictSignatures: json<string[]>()("conflict_signatures"),
    /** For `partially_verified`: codes of the money checks left unproven (check-catalogue.ts). */
    unproven: json<string[]>()("unproven"),

    // Amounts read from the chain when the verdict was reached (null until known).
    escrowedUnits: units("escrowed_units"),
    chargedUnits: units("charged_units"),
    workerPaidUnits: units("worker_paid_units"),
    treasuryPaidUnits: units("treasury_paid_units"),
    refundedUnits: units("refunded_units"),
    /** The model's price for the recorded usage, where the profile has pricing. */
    expectedChargeUnits: units("expected_charge_units"),
    /** Network fees of the job's transactions, in lamports. */
    feesLamports: units("fees_lamports"),
    /**
     * What the settlement paid out of escrow, at most what the locks put there (`escrowPaid`,
     * src/verify/checks/amounts.ts): the part of the job's locks the vault statement counts as
     * settled. Null for verdicts written before it was kept (`charged_units` is read then).
     */
    escrowPaidUnits: units("escrow_paid_units"),
    /**
     * Of a settlement shared with other jobs whose locks drew on one vault (one net credit
     * there holds their returns, filed in the vault's ledger under one of them): this job's
     * return filed under another job (positive), less the other jobs' returns filed under this
     * one (negative). The vault statement adds it to what came back for the job. Null for
     * verdicts written before it was kept, and where no such settlement is read (nothing then).
     */
    sharedReturnUnits: units("shared_return_units"),
    /**
     * Which nightly window counts the job (`nightlyCountings`), written by the first run that
     * counted a job recorded after its date (its own window's, or the window it was recorded
     * in): null for a job no two windows could both take, or none has counted yet.
     */
    nightlyCounted: text("nightly_counted", { enum: nightlyCountings }),
  },
  (t) => [
    index("jobs_created_at").on(t.createdAt),
    // A nightly window also judges the jobs recorded in it but dated before it (`jobInWindow`):
    // by recording time they are one range read, however many jobs each day is dated. Only jobs
    // recorded after their date can be such a job: the proxy's, dated as they are recorded,
    // are left out (an entry per receipt cost about a sixth of its insert).
    index("jobs_recorded_late")
      .on(t.recordedAt, t.createdAt)
      .where(recordedAfterDate(t.createdAt, t.recordedAt)),
    // The verifier's queue: open jobs in the order they fall due, so a claim reads the few it
    // takes however many wait (by (verdict, next_verify_at) it sorted every due job). New jobs
    // all tie on next_verify_at 0 and are taken by when they were recorded (`claimOrder`): by
    // next_verify_at alone they came in rowid order, on PostgreSQL in heap order (a row written
    // again moved behind later ones, and was passed over while new receipts kept coming).
    index("jobs_open_due").on(t.nextVerifyAt, t.recordedAt).where(verdictIsOpen(t.verdict)),
    // The jobs under a lease (a verifier's claim, a few hundred at a time): when the next job is
    // due (`nextDue`) reads the first unleased one by jobs_open_due and the leased ones here,
    // where by the whole queue it read every open job at each poll (50,000 waiting for finality:
    // 10 to 25 ms of the event loop `serve` proxies on). A receipt has no lease: no entry.
    index("jobs_leased").on(t.leaseUntil).where(isNotNull(t.leaseUntil)),
    // The signature and backfill indexes hold only rows that have a value: a proxied receipt
    // has no jobs API answer yet (and a json one no backfill), and every NULL entry was one more
    // b-tree written per receipt. Every lookup is by value (`= x`, `= ANY`), which implies
    // NOT NULL, so the planner keeps using them.
    index("jobs_escrow_tx").on(t.escrowTx).where(isNotNull(t.escrowTx)),
    index("jobs_settlement_tx").on(t.settlementTx).where(isNotNull(t.settlementTx)),
    // The verifier asks which jobs name a signature, the jobs API's included. The API almost
    // always names the receipt's own signatures, found by the two indexes above: these hold
    // only a signature the receipt does not name, and a lookup asks for exactly that
    // (`api_escrow_tx = x AND api_escrow_tx IS NOT escrow_tx`), or the planner cannot use them.
    index("jobs_api_escrow_tx")
      .on(t.apiEscrowTx)
      .where(sql`${t.apiEscrowTx} IS NOT NULL AND ${t.apiEscrowTx} IS NOT ${t.escrowTx}`),
    index("jobs_api_settlement_tx")
      .on(t.apiSettlementTx)
      .where(
        sql`${t.apiSettlementTx} IS NOT NULL AND ${t.apiSettlementTx} IS NOT ${t.settlementTx}`,
      ),
    // By the worker reports put the job under (`reportWorkerSql`), then time.
    index("jobs_worker_created").on(sql`coalesce(worker, api_worker)`, t.createdAt),
    index("jobs_model_created").on(t.model, t.createdAt),
    index("jobs_key_created").on(t.keyFingerprint, t.createdAt),
    // The least and greatest key check of a fingerprint, one probe each: two differ only when
    // two keys share the fingerprint (`key.fingerprint_unique`).
    index("jobs_key_check").on(t.keyFingerprint, t.keyCheck).where(isNotNull(t.keyCheck)),
    // The jobs the settlement backfill still asks about, by when it asks next: few at any time.
    // A job it is done with leaves it (one entry deleted, none written in another place).
    index("jobs_backfill").on(t.backfillNextAt).where(backfillIsPending(t.backfillState)),
    // `dataCompleteUntil`: the oldest job of each non-final verdict is one index probe away.
    index("jobs_verdict_created").on(t.verdict, t.createdAt),
    // `dataCompleteUntil`: the few jobs waiting for the treasury, oldest first.
    index("jobs_treasury_waiting")
      .on(t.createdAt)
      .where(waitsForTreasuryTerm(t.verdict, sql`${t.unproven}`)),
    // Jobs judged again, for reports that say why their verdict is not final: few at any time.
    index("jobs_rejudging").on(t.createdAt).where(isNotNull(t.previousVerdict)),
    // Open captures by writer: few rows (streams in flight), so finding a dead writer's costs
    // one small index read however many jobs there are.
    index("jobs_open_receipts").on(t.receiptWriter).where(captureIsOpen(t.captureState)),
  ],
);

/**
 * Incremental rollups of `jobs` for reports, kept by triggers on `jobs` in the same transaction
 * as every write (see migrations/*_rollups.sql): per UTC day and grain, the count of jobs by
 * verdict and every money figure of the reconciliation report, so a report reads a few rows per
 * day and group instead of every job.
 *
 * `grain` 0 is the full key (day x model x worker x key); 1, 2 and 3 are the same figures summed
 * by (day, model), (day, worker) and (day, key), so a month by model reads about 120 rows
 * however many jobs and workers there are. A dimension that is not recorded on the job, or not
 * part of the grain, holds the empty BLOB `x''`: a BLOB never equals a TEXT value, so no model
 * name a caller can send collides with it, and the key can stay NOT NULL for the upsert.
 * Money sums are exact integers in base units (lamports for fees), as on `jobs`.
 */
export const jobRollups = sqliteTable(
  "job_rollups",
  {
    grain: integer("grain").notNull(),
    /** UTC day number: created_at / 86,400,000. */
    day: integer("day").notNull(),
    model: text("model").notNull(),
    worker: text("worker").notNull(),
    keyFingerprint: text("key_fingerprint").notNull(),
    /**
     * Jobs not final yet (pending, awaiting finality, error) in one count: moves between those
     * verdicts, the most frequent writes, then leave the rollups alone.
     */
    jobsOpen: integer("jobs_open").notNull().default(0),
    jobsVerified: integer("jobs_verified").notNull().default(0),
    jobsPartiallyVerified: integer("jobs_partially_verified").notNull().default(0),
    jobsDiscrepancy: integer("jobs_discrepancy").notNull().default(0),
    jobsDropped: integer("jobs_dropped").notNull().default(0),
    jobsUnverifiable: integer("jobs_unverifiable").notNull().default(0),
    // Each sum of money in two parts, low (amount & (2^32 - 1)) and high (amount >> 32): one
    // 64-bit integer overflows past 2^63 (src/db/split-sums.ts).
    escrowedUnitsLo: units("escrowed_units_lo").notNull().default(sql`0`),
    escrowedUnitsHi: units("escrowed_units_hi").notNull().default(sql`0`),
    chargedUnitsLo: units("charged_units_lo").notNull().default(sql`0`),
    chargedUnitsHi: units("charged_units_hi").notNull().default(sql`0`),
    workerPaidUnitsLo: units("worker_paid_units_lo").notNull().default(sql`0`),
    workerPaidUnitsHi: units("worker_paid_units_hi").notNull().default(sql`0`),
    treasuryPaidUnitsLo: units("treasury_paid_units_lo").notNull().default(sql`0`),
    treasuryPaidUnitsHi: units("treasury_paid_units_hi").notNull().default(sql`0`),
    refundedUnitsLo: units("refunded_units_lo").notNull().default(sql`0`),
    refundedUnitsHi: units("refunded_units_hi").notNull().default(sql`0`),
    feesLamportsLo: units("fees_lamports_lo").notNull().default(sql`0`),
    feesLamportsHi: units("fees_lamports_hi").notNull().default(sql`0`),
    verifiedEscrowedUnitsLo: units("verified_escrowed_units_lo").notNull().default(sql`0`),
    verifiedEscrowedUnitsHi: units("verified_escrowed_units_hi").notNull().default(sql`0`),
    verifiedChargedUnitsLo: units("verified_charged_units_lo").notNull().default(sql`0`),
    verifiedChargedUnitsHi: units("verified_charged_units_hi").notNull().default(sql`0`),
    verifiedWorkerPaidUnitsLo: units("verified_worker_paid_units_lo").notNull().default(sql`0`),
    verifiedWorkerPaidUnitsHi: units("verified_worker_paid_units_hi").notNull().default(sql`0`),
    verifiedTreasuryPaidUnitsLo: units("verified_treasury_paid_units_lo").notNull().default(sql`0`),
    verifiedTreasuryPaidUnitsHi: units("verified_treasury_paid_units_hi").notNull().default(sql`0`),
    verifiedRefundedUnitsLo: units("verified_refunded_units_lo").notNull().default(sql`0`),
    verifiedRefundedUnitsHi: units("verified_refunded_units_hi").notNull().default(sql`0`),
    disputedEscrowedUnitsLo: units("disputed_escrowed_units_lo").notNull().default(sql`0`),
    disputedEscrowedUnitsHi: units("disputed_escrowed_units_hi").notNull().default(sql`0`),
    disputedChargedUnitsLo: units("disputed_charged_units_lo").notNull().default(sql`0`),
    disputedChargedUnitsHi: units("disputed_charged_units_hi").notNull().default(sql`0`),
    disputedWorkerPaidUnitsLo: units("disputed_worker_paid_units_lo").notNull().default(sql`0`),
    disputedWorkerPaidUnitsHi: units("disputed_worker_paid_units_hi").notNull().default(sql`0`),
    disputedTreasuryPaidUnitsLo: units("disputed_treasury_paid_units_lo").notNull().default(sql`0`),
    disputedTreasuryPaidUnitsHi: units("disputed_treasury_paid_units_hi").notNull().default(sql`0`),
    disputedRefundedUnitsLo: units("disputed_refunded_units_lo").notNull().default(sql`0`),
    disputedRefundedUnitsHi: units("disputed_refunded_units_hi").notNull().default(sql`0`),
  },
  (t) => [
    primaryKey({ columns: [t.grain, t.day, t.model, t.worker, t.keyFingerprint] }),
    // The worker statement by model or key reads the full-key rows of one worker.
    index("job_rollups_worker").on(t.grain, t.worker, t.day),
  ],
);

/**
 * Days of `jobs` recorded before the rollups existed and not summed into them yet; the
 * backfill (`backfillRollups` in src/db/rollups.ts, run by `db migrate` and at every start)
 * works through them a few days per transaction and deletes the row when done, so it resumes
 * after a crash.
 * Reports aggregate from `jobs` while a row is here.
 */
export const jobRollupsBackfill = sqliteTable("job_rollups_backfill", {
  id: integer("id").primaryKey(),
  /** The next day to sum (day number), inclusive. */
  nextDay: integer("next_day").notNull(),
  /** The last day to sum, inclusive. Later days only hold jobs written under the triggers. */
  lastDay: integer("last_day").notNull(),
});

/**
 * The credit vault of each API key (by fingerprint): one key spends one wallet's credits. Pinned
 * from configuration, or learned from the key's first lock; every later lock must come from it.
 */
export const creditVaults = sqliteTable("credit_vaults", {
  keyFingerprint: text("key_fingerprint").primaryKey(),
  vault: text("vault").notNull(),
  source: text("source", { enum: ["configured", "learned"] }).notNull(),
  /** The job whose lock taught it (learned pins). */
  jobId: text("job_id"),
  pinnedAt: epochMs("pinned_at").notNull(),
});

/**
 * Settlements whose one payee besides worker and credit vault is a treasury candidate, while
 * the profile pins no treasury: once enough agree, that address is pinned as the treasury.
 */
export const treasuryEvidence = sqliteTable(
  "treasury_evidence",
  {
    profile: text("profile").notNull(),
    signature: text("signature").notNull(),
    address: text("address").notNull(),
    jobId: text("job_id").notNull(),
    seenAt: epochMs("seen_at").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.profile, t.signature] }),
    index("treasury_evidence_address").on(t.profile, t.address),
  ],
);

/** Facts a profile left open and the store learned from the chain (e.g. the treasury). */
export const profilePins = sqliteTable(
  "profile_pins",
  {
    profile: text("profile").notNull(),
    name: text("name", { enum: ["treasury", "escrow_authority"] }).notNull(),
    value: text("value").notNull(),
    /** How many agreeing settlements pinned it. */
    evidence: integer("evidence").notNull(),
    pinnedAt: epochMs("pinned_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.profile, t.name] })],
);

/**
 * What the jobs API answered about a job, its body as received (the audit record shows it).
 * Apart from `jobs`: a job waiting for finality has its row rewritten at every poll (its lease,
 * its next look), and this document, about as large as the rest of the row, made each rewrite
 * cost a sixth more. No row: no answer yet, or one without a body.
 */
export const jobApiAnswers = sqliteTable("job_api_answers", {
  jobId: text("job_id")
    .primaryKey()
    .references(() => jobs.jobId, { onDelete: "cascade" }),
  response: json<unknown>()("response").notNull(),
});

/**
 * Each signature a job's `conflict_signatures` list holds, one row per (signature, job), kept by
 * triggers on `jobs` (migrations 0070, 0071; PostgreSQL 0061, 0062) whichever writer changes the
 * list: the jobs naming a signature only through a conflicting receipt, a jobs API answer's
 * earlier step or a ledger line kept with them are found through it, as the receipt's columns'
 * indexes find the others.
 */
export const jobConflictSignatures = sqliteTable(
  "job_conflict_signatures",
  {
    signature: text("signature").notNull(),
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.jobId, { onDelete: "cascade" }),
  },
  (t) => [
    primaryKey({ columns: [t.signature, t.jobId] }),
    index("job_conflict_signatures_job").on(t.jobId),
  ],
);

/** A receipt that disagreed with the one already recorded for its job: an audit finding. */
export const receiptConflicts = sqliteTable(
  "receipt_conflicts",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.jobId, { onDelete: "cascade" }),
    source: text("source", { enum: receiptSources }).notNull(),
    receipt: json<Record<string, unknown>>()("receipt").notNull(),
    /** Field names whose values differ from the recorded receipt. */
    differences: json<string[]>()("differences").notNull(),
    receivedAt: epochMs("received_at").notNull(),
  },
  (t) => [index("receipt_conflicts_job").on(t.jobId)],
);

/**
 * One row per signature named by any job. A finalized transaction never changes: it is fetched
 * once, its derived facts and the raw RPC response kept as evidence, and shared by every job.
 */
export const chainTransactions = sqliteTable(
  "chain_transactions",
  {
    signature: text("signature").primaryKey(),
    /** `unknown` until seen; `landed` once a status came back; `finalized`; `dropped`; `pruned`. */
    state: text("state", { enum: ["unknown", "landed", "finalized", "dropped", "pruned"] })
      .notNull()
      .default("unknown"),
    commitment: text("commitment", { enum: ["processed", "confirmed", "finalized"] }),
    slot: integer("slot"),
    /** Block time in seconds since the epoch, as the chain reports it. */
    blockTime: integer("block_time"),
    feeLamports: units("fee_lamports"),
    succeeded: integer("succeeded", { mode: "boolean" }),
    err: json<unknown>()("err"),
    /** Derived facts (see src/chain/transaction-facts.ts), bigints as decimal strings. */
    facts: json<unknown>()("facts"),
    /** The getTransaction response as received. */
    raw: text("raw"),
    firstSeenAt: epochMs("first_seen_at").notNull(),
    /** When a status poll last changed the row (a poll that changes nothing writes nothing). */
    statusCheckedAt: epochMs("status_checked_at"),
    fetchedAt: epochMs("fetched_at"),
    /**
     * When a status query first found nothing, to tell "not yet" from "dropped"; the time since
     * sets how often an unseen signature is polled.
     */
    notFoundSince: epochMs("not_found_since"),
    /**
     * getTransaction misses while finalized (pruned at the limit). Rows written before
     * 2026-11-29 may count status misses too; a status found resets it.
     */
    notFoundCount: integer("not_found_count").notNull().default(0),
    /**
     * The current slot when a status query first found nothing. The transaction was signed
     * before then, so its blockhash expires at most ~150 slots later: past that plus a margin,
     * a signature still unseen (history searched) is dropped.
     */
    notFoundSlot: integer("not_found_slot"),
    /**
     * The one job the transaction's memos name (`memoJobOf`), written by the verifier with the
     * facts, or when it first reads a row stored without it (by the ledger reader, or before
     * 2026-11-29). Null when the memos name none or several, or not written yet. A receipt
     * naming the signature does not send that job back to the verifier: it owns the money
     * whoever else names it (see `reopenNamers`).
     */
    memoJob: text("memo_job"),
  },
  (t) => [index("chain_transactions_state").on(t.state)],
);

export const checkOutcomes = ["pass", "fail", "skip"] as const;
export type CheckOutcome = (typeof checkOutcomes)[number];

/** The latest result of each named check for each job; a re-verification replaces the row. */
export const checkResults = sqliteTable(
  "check_results",
  {
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.jobId, { onDelete: "cascade" }),
    name: text("name").notNull(),
    outcome: text("outcome", { enum: checkOutcomes }).notNull(),
    /** Why it failed or was skipped; null on pass. */
    reason: text("reason"),
    expected: json<unknown>()("expected"),
    actual: json<unknown>()("actual"),
    runId: integer("run_id"),
    checkedAt: epochMs("checked_at").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.jobId, t.name] }),
    // Jobs whose credits.header waits for the ledger (the skip names the vault): a report
    // calls no figure final past them, since the ledger's read may reopen and fail them.
    index("check_results_header_waiting")
      .on(t.jobId)
      .where(
        sql`${t.name} = 'credits.header' AND ${t.outcome} = 'skip' AND ${t.expected} IS NOT NULL`,
      ),
  ],
);

/**
 * A verification run: serve's continuous loop, a nightly `verify`, or a re-verify request.
 * `abandoned`: its process died while it was running (closed by the next verifier to start;
 * a text enum, so adding it needed no migration).
 */
export const verificationRuns = sqliteTable(
  "verification_runs",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    trigger: text("trigger", { enum: ["serve", "verify", "cron", "reverify"] }).notNull(),
    status: text("status", {
      enum: ["running", "completed", "timed_out", "failed", "interrupted", "abandoned"],
    }).notNull(),
    windowFrom: epochMs("window_from"),
    windowTo: epochMs("window_to"),
    startedAt: epochMs("started_at").notNull(),
    finishedAt: epochMs("finished_at"),
    owner: text("owner").notNull(),
    summary: json<unknown>()("summary"),
  },
  (t) => [index("verification_runs_started").on(t.startedAt)],
);

export { type TokenRole, tokenRoles };

/** API access tokens. Only a hash is stored; the token is shown once at creation. */
export const accessTokens = sqliteTable("access_tokens", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  role: text("role", { enum: tokenRoles }).notNull(),
  tokenHash: text("token_hash").notNull().unique(),
  createdAt: epochMs("created_at").notNull(),
  lastUsedAt: epochMs("last_used_at"),
  revokedAt: epochMs("revoked_at"),
});

/**
 * How far the nightly runs have counted: one row (`id` 1). A run's claim (`claimWindowJobs`)
 * raises `through` to its window's end, never past the database's clock as it claims, and a
 * receipt's row written after it is recorded no earlier (`recorded_at` at least `through`): a
 * receipt stamped before a window's end whose write came after that window's run had counted
 * was counted by no night, its date and its recording both in a window already counted.
 */
export const nightlyCountedThrough = sqliteTable("nightly_counted_through", {
  id: integer("id").primaryKey(),
  through: epochMs("through").notNull(),
});

/**
 * Jobs whose verdict a later judgement turned from `verified` or `partially_verified` to
 * `discrepancy`, `dropped` or `unverifiable` (a second payout out of escrow that `serve`'s scan
 * found after the job's nightly run, a line the ledger read later), one row a job, written by
 * the trigger `jobs_nightly_turned` (migration 0065; PostgreSQL 0057) whoever wrote the verdict.
 * The first nightly run to complete after names such a job of an earlier window
 * (`earlierJobs`) and fails; the run of the job's own window counts it as it stands. Each
 * forgets the rows it dealt with. Without them such a job was reported by no run: its own had
 * passed, and the later ones count their own windows.
 */
export const nightlyTurned = sqliteTable("nightly_turned", {
  jobId: text("job_id").primaryKey(),
  verdict: text("verdict", { enum: verdicts }).notNull(),
  previousVerdict: text("previous_verdict", { enum: verdicts }).notNull(),
  turnedAt: epochMs("turned_at").notNull(),
});

/** Named advisory locks with an expiry, e.g. so two nightly runs never overlap. */
export const locks = sqliteTable("locks", {
  name: text("name").primaryKey(),
  owner: text("owner").notNull(),
  acquiredAt: epochMs("acquired_at").notNull(),
  expiresAt: epochMs("expires_at").notNull(),
});

/**
 * Dashboard sign-ins: a browser exchanges an access token for a session cookie. Only the
 * SHA-256 of the session id is stored; the session acts with its token's role and dies with
 * the token (revoked) or at `expiresAt`, whichever comes first.
 */
export const dashboardSessions = sqliteTable(
  "dashboard_sessions",
  {
    idHash: text("id_hash").primaryKey(),
    tokenId: text("token_id")
      .notNull()
      .references(() => accessTokens.id),
    createdAt: epochMs("created_at").notNull(),
    expiresAt: epochMs("expires_at").notNull(),
  },
  (t) => [index("dashboard_sessions_expires").on(t.expiresAt)],
);

/**
 * The ledger's read position in each credit vault's signature history (src/ledger). A sync
 * lists pages newest first from the newest signature down to `newestSignature`; while it runs,
 * `syncTop` and `syncBefore` say where it stands, so a restart or another process goes on from
 * the next page and never lists a page twice. Written with the page's lines in one transaction.
 */
export const ledgerCursors = sqliteTable("ledger_cursors", {
  vault: text("vault").primaryKey(),
  /** Newest signature of the last completed sync: the `until` of the next one. */
  newestSignature: text("newest_signature"),
  newestSlot: integer("newest_slot"),
  /** Newest signature of the sync in progress (its first page's first entry). */
  syncTop: text("sync_top"),
  syncTopSlot: integer("sync_top_slot"),
  /** Oldest signature listed so far by the sync in progress: the next page's `before`. */
  syncBefore: text("sync_before"),
  /** Completed syncs; orders lines of later syncs after earlier ones. */
  syncNumber: integer("sync_number").notNull().default(0),
  /** Lines listed so far by the sync in progress. */
  syncIndex: integer("sync_index").notNull().default(0),
  pagesRead: integer("pages_read").notNull().default(0),
  /** The vault's balance read at finalized, when every line up to its slot had been listed. */
  balanceUnits: units("balance_units"),
  balanceSlot: integer("balance_slot"),
  balanceAt: epochMs("balance_at"),
  /** When the last sync completed: the history is read up to about this moment. */
  syncedAt: epochMs("synced_at"),
  lastError: text("last_error"),
  updatedAt: epochMs("updated_at").notNull(),
  /**
   * `ord` of the last movement whose balance before was compared with the movement before it
   * (the gap walk of src/store/ledger.ts); lines above it are compared when a statement is built.
   */
  chainedOrd: integer("chained_ord"),
  /**
   * Every transaction with a block time before this instant is listed: the block time of the
   * chain's finalized slot read just before the last completed sync listed its newest page.
   * The local clock (`synced_at`) runs ahead of finality, so it cannot say that a period is read.
   */
  finalThrough: epochMs("final_through"),
  /** The same instant for the sync in progress, kept with its first page. */
  syncFinalThrough: epochMs("sync_final_through"),
  /**
   * What the vault's address held at the balance read when it was not a token account of the
   * credit mint (JSON: program, mint, amount): the balance is then 0 credits, and a finding.
   */
  balanceForeign: text("balance_foreign"),
  /**
   * Who else than the escrow authority may spend the vault, as the last balance read found it
   * (JSON: its slot, the owner when not the authority's, a delegate with what it may spend):
   * said by every statement while it lasts, though no line shows how it came to be.
   */
  balanceControl: text("balance_control"),
  /**
   * How far a nightly run has judged the vault's history (ms): every finding before this instant
   * was reported by one. Null while never judged: the next run judges it from its beginning.
   * Only ever raised (two runs at once keep the later mark).
   */
  judgedThrough: epochMs("judged_through"),
  /**
   * When (local clock, ms) the run that last raised `judged_through` took its statements: a line
   * listed after it (`ledger_lines.listed_at`) was in no statement that run judged, whatever its
   * block time, so the next run judges it (a node that listed it late, an endpoint that hid it).
   */
  judgedAt: epochMs("judged_at"),
  /**
   * The line the next listing of the vault's held history goes on below (src/ledger/reader.ts),
   * null for the newest: runs of separate processes (each nightly `verify`) go on where the last
   * stopped, and cover the whole history over runs.
   */
  relistBelow: text("relist_below"),
});

/**
 * Where the scan of the escrow vault's memos stands (src/ledger/escrow-scan.ts): the newest
 * signature of its history listed so far, the `until` of the next scan. The escrow vault holds
 * every customer's locks, so its history is not kept line by line as a credit vault's is: an
 * entry whose memo names a recorded job that does not name its signature is what is looked at.
 */
export const escrowScans = sqliteTable("escrow_scans", {
  vault: text("vault").primaryKey(),
  /** Newest signature of the last completed scan: the `until` of the next; null before one. */
  newestSignature: text("newest_signature"),
  newestSlot: integer("newest_slot"),
  /** Newest signature of the scan in progress (its first page's first entry). */
  syncTop: text("sync_top"),
  syncTopSlot: integer("sync_top_slot"),
  /** Oldest signature the scan in progress has judged: the next page's `before`. */
  syncBefore: text("sync_before"),
  /**
   * The chain's finalized slot when the last completed scan began: every payout out of escrow
   * up to it was listed, and judged or held (`escrow_pending`). A clean verdict waits for it to
   * pass the job's own transactions (src/verify/escrow-cover.ts). Null before such a scan.
   */
  coveredSlot: integer("covered_slot"),
  /** The same for the scan in progress, written once it completes. */
  syncCoveredSlot: integer("sync_covered_slot"),
  /** Jobs that gained a transaction by `serve`'s scans (a nightly's span is not counted). */
  kept: integer("kept").notNull().default(0),
  updatedAt: epochMs("updated_at").notNull(),
});

/**
 * Escrow listing entries the scan could not judge when it listed them: their memo names a job
 * not recorded yet (a proxy records a job when its answer ends, which an operator can hold open
 * past the scan), or their transaction was not served. Judged at each scan once the job is
 * recorded or the transaction served. One of a job not recorded is dropped `ESCROW_PENDING_MS`
 * after it was listed; one of a recorded job whose transaction no endpoint served (`unread`) is
 * kept until one does, and the job is not judged meanwhile (an endpoint lying about a payout
 * out of escrow would otherwise see the job `verified` once the hold ended). A signature a job
 * named past its kept conflict signatures is held under `namedPastVault`
 * (src/store/receipt-rules.ts): a row of its own beside the escrow vault's entry for the same job
 * and signature when the listing names it too, each judged by its own rule. One row for both
 * (the key without the vault) had the listing's unread entry written into the named-past row,
 * dropped an hour later with the job judged meanwhile, and a named-past hold after a listing's
 * not written at all.
 */
export const escrowPending = sqliteTable(
  "escrow_pending",
  {
    jobId: text("job_id").notNull(),
    signature: text("signature").notNull(),
    vault: text("vault").notNull(),
    /** Seconds, as the listing gave it; null when it gave none. */
    blockTime: integer("block_time"),
    listedAt: epochMs("listed_at").notNull(),
    /**
     * Why the transaction of a recorded job's entry could not be read (the last fetch's error);
     * null while the entry waits for its job to be recorded or to name its closing step.
     */
    unread: text("unread"),
    /** The endpoints' answers when they disagreed on the transaction (an `RpcDisagreement`). */
    disagreement: json<unknown>()("disagreement"),
    /**
     * The recorded job whose own step (a transaction it names or keeps, read final by the
     * verifier) paid out of escrow under this job's memo too; null for a listing's entry. Such a
     * row is not dropped after `ESCROW_PENDING_MS`: the job it holds for is judged on it whenever
     * it is recorded (by its claim, or a scan). The memos inside recorded jobs' own transactions
     * bound them, where a listing's are the whole network's traffic.
     */
    namedBy: text("named_by"),
  },
  (t) => [
    primaryKey({ columns: [t.jobId, t.signature, t.vault] }),
    index("escrow_pending_listed").on(t.listedAt),
    // The rows the hour drops and the scan's pending pages walk, in the order they were held:
    // not those a recorded job's own step holds (`named_by`), which their job's claim finds by
    // the primary key. Made-up memos in an operator's own settlements mark as many rows as it
    // writes; walked with the rest, each escrow write and each scan round paid for all of them.
    index("escrow_pending_unmarked").on(t.listedAt).where(sql`${t.namedBy} IS NULL`),
  ],
);

/** What a ledger line is, decided when its transaction is read (src/store/ledger.ts). */
export const ledgerLineKinds = ["lock", "return", "deposit", "unexplained", "none"] as const;

/**
 * One line per transaction naming a credit vault, as `getSignaturesForAddress` listed it, with
 * the vault's balance before and after once the transaction is read. What a line is (lock,
 * return, deposit, unexplained) is decided when a statement is built, against the receipts
 * recorded by then: a receipt that arrives late explains its lock.
 */
export const ledgerLines = sqliteTable(
  "ledger_lines",
  {
    vault: text("vault").notNull(),
    signature: text("signature").notNull(),
    /** Chronological order within the vault: later syncs above earlier, newest first inverted. */
    ord: integer("ord").notNull(),
    slot: integer("slot").notNull(),
    /** Seconds since the epoch, as the node reported it. */
    blockTime: integer("block_time"),
    /** `listed` until the transaction is read; `read` with balances and memos. */
    state: text("state", { enum: ["listed", "read"] })
      .notNull()
      .default("listed"),
    succeeded: integer("succeeded", { mode: "boolean" }),
    /** The vault's balance before and after; null when the transaction did not change it. */
    preUnits: units("pre_units"),
    postUnits: units("post_units"),
    /** post - pre; 0 for a transaction that moved none of the vault's money. */
    deltaUnits: units("delta_units"),
    /** Memo texts of the transaction, joined with newlines. */
    memo: text("memo"),
    /** What the first memo naming a job says: escrow, settle or refund, and the job id. */
    memoKind: text("memo_kind", { enum: ["escrow", "settle", "refund"] }),
    memoJobId: text("memo_job_id"),
    /**
     * Every distinct step and job the memos name (JSON list of kind and job id), when they name
     * more than one, else null: the money moved under a label nobody can tie to one job, always
     * a finding, and the line is judged with each job it names. Null on lines read before it.
     */
    memoJobs: text("memo_jobs"),
    listedAt: epochMs("listed_at").notNull(),
    /**
     * What the line is, decided when it is read against the receipts recorded by then (null
     * while listed): a recorded job's `lock`, a `return` of a lock this vault paid, a `deposit`,
     * an `unexplained` debit, or `none` (no movement of the vault's money). A receipt that
     * arrives later can turn an `unexplained` line into a lock or a `deposit` into a return:
     * those two kinds are looked at again by each ledger round and each statement.
     */
    kind: text("kind", { enum: ledgerLineKinds }),
    /** The job the line belongs to: the recorded job of a lock or return, or the memo's job. */
    jobId: text("job_id"),
    /** A debit naming a job (lock or not) that a return to this vault or its settlement released. */
    released: integer("released", { mode: "boolean" }).notNull().default(false),
    /**
     * A lock's credits header against the vault's balances from the lock to the job's response:
     * true when one matched (or the receipt has no header), false when none did, null while
     * the history up to the response is not read yet.
     */
    headerOk: integer("header_ok", { mode: "boolean" }),
    /** Set on a movement whose balance before is not the previous movement's balance after. */
    gapAfterSignature: text("gap_after_signature"),
    gapAfterSlot: integer("gap_after_slot"),
    gapUnits: units("gap_units"),
    /**
     * Movements of the vault's address in another mint or token program (JSON list of mint,
     * program and amount), null when none: never credits, never summed, always a finding.
     */
    foreignChanges: text("foreign_changes"),
    /**
     * The owner of the vault's token account after the transaction, when it is not the
     * profile's escrow authority (the owner of every credit vault), else null: a SetAuthority
     * gave the vault's money to someone else to spend. Always a finding, moved money or not.
     */
    otherOwner: text("other_owner"),
    /**
     * The owner of the vault's token account after the transaction whenever the transaction
     * shows it (its token balances name the vault), else null: a transaction without a token
     * program among its keys (a SOL transfer anyone may send to the vault) carries no token
     * balances, and its null must not read as "the escrow authority owns it". Null too on
     * lines read before this column. The vault's owner now is its newest line that knows it.
     */
    ownerAfter: text("owner_after"),
    /**
     * The delegate an Approve (or ApproveChecked) naming the vault gave it in this transaction,
     * else null: the delegate can spend the vault alone, and no balance shows it. The
     * instruction's accounts other than the vault, its owner and the credit mint; when none is
     * left, the instruction's kind and accounts. Always a finding, moved money or not.
     */
    delegate: text("delegate"),
    /**
     * The transaction created the vault's token account (absent from its pre-balances, present
     * after): nothing of the vault's history lies before it. Null when not known (a line read
     * before this column): the next ledger round finds it out for the vault's oldest line.
     */
    opened: integer("opened", { mode: "boolean" }),
    /**
     * Money out of the vault in this transaction beyond its net debit (what its transfers and
     * burns from the vault moved, less max(0, -delta)), when there is any, else null: a payout
     * the same transaction's money in hides from the balances (a top-up of 1,000,000 paying
     * 300,000 out reads as a deposit of 700,000). No receipt explains it: always a finding,
     * an unreceipted debit. Lines read before this column are read again (see the migration).
     */
    hiddenDebitUnits: units("hidden_debit_units"),
    /**
     * Money into the vault in this transaction that escrow did not pay in (the customer's own
     * top-up, say), when the line's net credit holds any, else null: under a job's settle or
     * refund memo it is no return of that job's lock but a deposit. Lines read before this
     * column that may hold a return are read again (see the migration).
     */
    depositInUnits: units("deposit_in_units"),
    /**
     * Why the listed entry was set aside, read as no line of the vault's, else null: its
     * transaction's own signature proves it names no account of the vault's (the node that
     * listed it lied). Kept as a line moving nothing, so the statement says what was set aside.
     */
    setAside: text("set_aside"),
  },
  (t) => [
    primaryKey({ columns: [t.vault, t.signature] }),
    index("ledger_lines_order").on(t.vault, t.ord),
    // Lines listed since a vault's last judgement (`ledger_cursors.judged_at`).
    index("ledger_lines_listed").on(t.vault, t.listedAt),
    index("ledger_lines_time").on(t.vault, t.blockTime, t.ord),
    index("ledger_lines_state").on(t.state, t.vault),
    index("ledger_lines_memo_job").on(t.memoJobId),
    // The statement's per-vault sets of locked and returned jobs, read from the index alone.
    index("ledger_lines_vault_memo").on(t.vault, t.memoKind, t.deltaUnits, t.memoJobId),
    index("ledger_lines_vault_job").on(t.vault, t.jobId),
    // The few lines whose memos name several jobs: a statement finding, judged every round.
    index("ledger_lines_memo_jobs").on(t.vault, t.blockTime).where(sql`${t.memoJobs} IS NOT NULL`),
    // Small sets a statement reads line by line; everything else comes from `ledger_daily`.
    index("ledger_lines_review")
      .on(t.vault, t.kind, t.blockTime)
      .where(sql`${t.kind} IN ('unexplained', 'deposit')`),
    index("ledger_lines_open_locks")
      .on(t.vault, t.blockTime)
      .where(sql`${t.kind} = 'lock' AND ${t.released} = 0`),
    index("ledger_lines_header_open")
      .on(t.vault, t.blockTime)
      .where(sql`${t.kind} = 'lock' AND (${t.headerOk} IS NULL OR ${t.headerOk} = 0)`),
    index("ledger_lines_gaps").on(t.vault, t.blockTime).where(sql`${t.gapUnits} IS NOT NULL`),
    index("ledger_lines_foreign")
      .on(t.vault, t.blockTime)
      .where(sql`${t.foreignChanges} IS NOT NULL`),
    index("ledger_lines_other_owner")
      .on(t.vault, t.blockTime)
      .where(sql`${t.otherOwner} IS NOT NULL`),
    // The vault's newest line whose owner is known: whose the vault is now.
    index("ledger_lines_owner_after").on(t.vault, t.ord).where(sql`${t.ownerAfter} IS NOT NULL`),
    index("ledger_lines_delegate").on(t.vault, t.blockTime).where(sql`${t.delegate} IS NOT NULL`),
    index("ledger_lines_hidden_debit")
      .on(t.vault, t.blockTime)
      .where(sql`${t.hiddenDebitUnits} IS NOT NULL`),
    // Returns that also brought in money escrow did not pay: the statement counts it a deposit.
    index("ledger_lines_deposit_in")
      .on(t.vault, t.blockTime)
      .where(sql`${t.depositInUnits} IS NOT NULL`),
    index("ledger_lines_unclassified")
      .on(t.vault, t.ord)
      .where(sql`${t.state} = 'read' AND ${t.kind} IS NULL`),
    index("ledger_lines_set_aside").on(t.vault, t.blockTime).where(sql`${t.setAside} IS NOT NULL`),
  ],
);

/**
 * Per vault, UTC day (of the lines' block time) and kind: how many lines and their sum, kept by
 * triggers on `ledger_lines` in the same transaction as every write, so a statement sums whole
 * days here and reads lines only for its partial first and last day.
 */
export const ledgerDaily = sqliteTable(
  "ledger_daily",
  {
    vault: text("vault").notNull(),
    /** floor(block_time / 86400). */
    day: integer("day").notNull(),
    kind: text("kind", { enum: ledgerLineKinds }).notNull(),
    lines: integer("lines").notNull(),
    /** The lines' sum in two parts (src/db/split-sums.ts): low in [0, 2^32), high. */
    unitsLo: units("units_lo").notNull().default(sql`0`),
    unitsHi: units("units_hi").notNull().default(sql`0`),
  },
  (t) => [primaryKey({ columns: [t.vault, t.day, t.kind] })],
);

/**
 * Every answer of Decentral's `GET /v1/account` (src/ledger/account-snapshots.ts), beside the
 * credit vault's balance on chain read at the same moment, and their differences (0 when the
 * account says what the chain holds).
 */
export const accountSnapshots = sqliteTable(
  "account_snapshots",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    takenAt: epochMs("taken_at").notNull(),
    keyFingerprint: text("key_fingerprint").notNull(),
    /** The key's credit vault, or null when it is not known yet (nothing compared). */
    vault: text("vault"),
    /** `credits_remaining` as answered (whole credits). */
    creditsRemaining: integer("credits_remaining"),
    /** `usdc_value` as answered, in base units. */
    usdcValueUnits: units("usdc_value_units"),
    /** The vault's balance at finalized, read before and after the call and equal both times. */
    vaultUnits: units("vault_units"),
    vaultSlot: integer("vault_slot"),
    /** credits_remaining - the vault's balance in whole credits (rounded down). */
    creditsDifference: integer("credits_difference"),
    /** usdc_value - the vault's balance, in base units. */
    usdcDifferenceUnits: units("usdc_difference_units"),
    /** Why nothing was compared (the API or the chain did not answer, the vault is unknown). */
    error: text("error"),
  },
  (t) => [index("account_snapshots_vault_taken").on(t.vault, t.takenAt)],
);
