import { isNotNull, sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  customType,
  index,
  pgTable,
  primaryKey,
  text,
  unique,
} from "drizzle-orm/pg-core";
import {
  backfillIsPending,
  captureIsOpen,
  checkOutcomes,
  ledgerLineKinds,
  nightlyCountings,
  receiptSources,
  recordedAfterDate,
  rejudgeReasons,
  tokenRoles,
  verdictIsOpen,
  verdicts,
  waitsForTreasuryTerm,
} from "../schema.js";

/**
 * The PostgreSQL mirror of `src/db/schema.ts`: the same tables, columns, keys and index names,
 * so the store modules read and write the same rows on either database and `db copy` moves a
 * SQLite store across column for column (test/pg-schema.test.ts compares the two). What
 * differs, and why:
 *
 * - Every SQLite INTEGER is a PostgreSQL `bigint`. SQLite integers are 64-bit signed, so is
 *   `bigint`: any value one store holds fits the other, and a copy never fails or rounds.
 *   Non-money integers (epoch milliseconds, slots, token counts) read as JS numbers, as they
 *   do from SQLite.
 * - Money (base units of USDC, lamports) is `bigint` read as a JS bigint, not `numeric(20,0)`.
 *   Amounts are u64 on chain, but the store already holds them as signed 64-bit integers (and
 *   refunds and deltas are negative), so `bigint` loses nothing SQLite keeps. Aggregates over
 *   many rows are computed as `numeric` by `sum()` itself. `bigint` is fixed-width and compares
 *   and indexes faster than `numeric`.
 * - Except the stored sums of money (`job_rollups`' money figures, `ledger_daily.units`): they
 *   are `numeric`, read and written as a JS bigint. A rollup row sums flows, not money held (a
 *   vault locked whole at each job counts its balance each time), so neither the USDC supply
 *   nor 64 bits bound it: 1,024 amounts of 2^53 - 1 reach 2^63 (SQLite's still stop there:
 *   README, Known limits, "Sums past 2^63 base units on SQLite").
 * - SQLite's 0/1 booleans are `boolean`.
 * - JSON is `json`, not `jsonb`: `json` keeps the text exactly as written (key order,
 *   spacing), as SQLite's TEXT does, so evidence reads back byte for byte.
 * - `job_rollups` keeps an absent dimension as NULL under a UNIQUE NULLS NOT DISTINCT key
 *   (PostgreSQL 15+) where SQLite uses the empty BLOB x'' (a text column holds no BLOB): NULL
 *   never equals a model name a caller sends either, and the upsert of the rollup trigger
 *   still finds one row per key.
 */

/** Integer base units (USDC base units, lamports), read and written as bigint. */
const units = (name: string) => bigint(name, { mode: "bigint" });

/**
 * A stored sum of money (`numeric`, unbounded), read and written as bigint: node-postgres
 * answers `numeric` as a decimal string.
 */
const sumUnits = customType<{ data: bigint; driverData: string }>({
  dataType: () => "numeric",
  toDriver: (value) => value.toString(),
  fromDriver: (value) => BigInt(value),
});

/** A 64-bit integer that is not money (counts, slots, token counts), read as a JS number. */
const int = (name: string) => bigint(name, { mode: "number" });

/** Milliseconds since the Unix epoch, UTC. */
const epochMs = (name: string) => bigint(name, { mode: "number" });

/** JSON kept as written (`json`); bigints must already be decimal strings. */
const json = <T>() =>
  customType<{ data: T; driverData: string | T }>({
    dataType: () => "json",
    toDriver: (value) => JSON.stringify(value) as unknown as T,
    // node-postgres parses `json` on the way out already: parsing again would turn the JSON
    // string "400000" into a number (and throw on "Dcrtu…").
    fromDriver: (value) => value as T,
  });

/** One row per Decentral job (see `jobs` in src/db/schema.ts for every column's meaning). */
export const jobs = pgTable(
  "jobs",
  {
    jobId: text("job_id").primaryKey(),
    source: text("source", { enum: receiptSources }).notNull(),
    escrowTx: text("escrow_tx"),
    settlementTx: text("settlement_tx"),
    worker: text("worker"),
    creditsRemainingUnits: units("credits_remaining_units"),
    creditsRemainingUnread: text("credits_remaining_unread"),
    model: text("model"),
    responseModel: text("response_model"),
    creditVault: text("credit_vault"),
    promptTokens: int("prompt_tokens"),
    completionTokens: int("completion_tokens"),
    totalTokens: int("total_tokens"),
    reasoningTokens: int("reasoning_tokens"),
    rejectedPredictionTokens: int("rejected_prediction_tokens"),
    answerBytes: int("answer_bytes"),
    answerToolCalls: int("answer_tool_calls"),
    maxTokens: int("max_tokens"),
    choices: int("choices"),
    stream: boolean("stream"),
    usageAsked: boolean("usage_asked"),
    predictionSent: boolean("prediction_sent"),
    /** The HTTP method of the request the proxy forwarded (see the SQLite schema). */
    requestMethod: text("request_method"),
    /** The path of that request, without its query (see the SQLite schema). */
    requestPath: text("request_path"),
    httpStatus: int("http_status"),
    latencyMs: int("latency_ms"),
    ttfbMs: int("ttfb_ms"),
    keyFingerprint: text("key_fingerprint"),
    /** The next 16 hex digits of the key's SHA-256 (see the SQLite schema). */
    keyCheck: text("key_check"),
    tags: json<Record<string, string>>()("tags").notNull().default(sql`'{}'`),
    captureState: text("capture_state", { enum: ["open", "complete", "aborted"] })
      .notNull()
      .default("complete"),
    receiptWriter: text("receipt_writer"),
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

    apiStatus: text("api_status"),
    apiCreditsChargedUnits: units("api_credits_charged_units"),
    apiCreditsChargedUnread: text("api_credits_charged_unread"),
    apiEscrowTx: text("api_escrow_tx"),
    apiSettlementTx: text("api_settlement_tx"),
    apiWorker: text("api_worker"),
    apiCompletionTokens: int("api_completion_tokens"),
    apiCheckedAt: epochMs("api_checked_at"),
    backfillState: text("backfill_state", { enum: ["pending", "done", "gave_up"] }),
    backfillAttempts: int("backfill_attempts").notNull().default(0),
    backfillNextAt: epochMs("backfill_next_at"),

    verdict: text("verdict", { enum: verdicts }).notNull().default("pending"),
    verdictAt: epochMs("verdict_at"),
    verdictProfile: text("verdict_profile"),
    previousVerdict: text("previous_verdict", { enum: verdicts }),
    rejudgeReason: text("rejudge_reason", { enum: rejudgeReasons }),
    verifyAttempts: int("verify_attempts").notNull().default(0),
    nextVerifyAt: epochMs("next_verify_at").notNull().default(0),
    leaseOwner: text("lease_owner"),
    leaseUntil: epochMs("lease_until"),
    lastError: text("last_error"),
    commitment: text("commitment", { enum: ["processed", "confirmed", "finalized"] }),
    conflictSignatures: json<string[]>()("conflict_signatures"),
    unproven: json<string[]>()("unproven"),

    escrowedUnits: units("escrowed_units"),
    chargedUnits: units("charged_units"),
    workerPaidUnits: units("worker_paid_units"),
    treasuryPaidUnits: units("treasury_paid_units"),
    refundedUnits: units("refunded_units"),
    expectedChargeUnits: units("expected_charge_units"),
    feesLamports: units("fees_lamports"),
    escrowPaidUnits: units("escrow_paid_units"),
    sharedReturnUnits: units("shared_return_units"),
    nightlyCounted: text("nightly_counted", { enum: nightlyCountings }),
  },
  (t) => [
    index("jobs_created_at").on(t.createdAt),
    // Jobs recorded after their date, for a window's late ones (see src/db/schema.ts).
    index("jobs_recorded_late")
      .on(t.recordedAt, t.createdAt)
      .where(recordedAfterDate(t.createdAt, t.recordedAt)),
    // The verifier's queue (see src/db/schema.ts).
    index("jobs_open_due").on(t.nextVerifyAt, t.recordedAt).where(verdictIsOpen(t.verdict)),
    // The jobs under a lease, for `nextDue` (see src/db/schema.ts).
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
    // (`api_escrow_tx = x AND api_escrow_tx IS DISTINCT FROM escrow_tx`), or the planner cannot
    // use them.
    index("jobs_api_escrow_tx")
      .on(t.apiEscrowTx)
      .where(sql`${t.apiEscrowTx} IS NOT NULL AND ${t.apiEscrowTx} IS DISTINCT FROM ${t.escrowTx}`),
    index("jobs_api_settlement_tx")
      .on(t.apiSettlementTx)
      .where(
        sql`${t.apiSettlementTx} IS NOT NULL AND ${t.apiSettlementTx} IS DISTINCT FROM ${t.settlementTx}`,
      ),
    // By the worker reports put the job under (`reportWorkerSql`), then time.
    index("jobs_worker_created").on(sql`coalesce(worker, api_worker)`, t.createdAt),
    index("jobs_model_created").on(t.model, t.createdAt),
    index("jobs_key_created").on(t.keyFingerprint, t.createdAt),
    // A fingerprint's least and greatest key check (see the SQLite schema).
    index("jobs_key_check").on(t.keyFingerprint, t.keyCheck).where(isNotNull(t.keyCheck)),
    // The jobs the settlement backfill still asks about (`backfillIsPending`): few at any time.
    index("jobs_backfill").on(t.backfillNextAt).where(backfillIsPending(t.backfillState)),
    index("jobs_verdict_created").on(t.verdict, t.createdAt),
    // `dataCompleteUntil`: the few jobs waiting for the treasury, oldest first.
    index("jobs_treasury_waiting")
      .on(t.createdAt)
      .where(waitsForTreasuryTerm(t.verdict, sql`(${t.unproven})::text`)),
    // Jobs judged again (see src/db/schema.ts): few at any time.
    index("jobs_rejudging").on(t.createdAt).where(isNotNull(t.previousVerdict)),
    index("jobs_open_receipts").on(t.receiptWriter).where(captureIsOpen(t.captureState)),
  ],
);

/**
 * Rollups of `jobs` per UTC day or hour and grain (grains as in src/db/rollups.ts), kept by the
 * trigger function `jobs_rollup` (generated by src/db/pg/rollups.ts, appended to the migrations
 * in migrations/postgres/) in the transaction of every write.
 * A dimension not recorded or not part of the grain is NULL (see the note at the top).
 */
export const jobRollups = pgTable(
  "job_rollups",
  {
    grain: int("grain").notNull(),
    day: int("day").notNull(),
    model: text("model"),
    worker: text("worker"),
    keyFingerprint: text("key_fingerprint"),
    jobsOpen: int("jobs_open").notNull().default(0),
    jobsVerified: int("jobs_verified").notNull().default(0),
    jobsPartiallyVerified: int("jobs_partially_verified").notNull().default(0),
    jobsDiscrepancy: int("jobs_discrepancy").notNull().default(0),
    jobsDropped: int("jobs_dropped").notNull().default(0),
    jobsUnverifiable: int("jobs_unverifiable").notNull().default(0),
    escrowedUnits: sumUnits("escrowed_units").notNull().default(sql`0`),
    chargedUnits: sumUnits("charged_units").notNull().default(sql`0`),
    workerPaidUnits: sumUnits("worker_paid_units").notNull().default(sql`0`),
    treasuryPaidUnits: sumUnits("treasury_paid_units").notNull().default(sql`0`),
    refundedUnits: sumUnits("refunded_units").notNull().default(sql`0`),
    feesLamports: sumUnits("fees_lamports").notNull().default(sql`0`),
    verifiedEscrowedUnits: sumUnits("verified_escrowed_units").notNull().default(sql`0`),
    verifiedChargedUnits: sumUnits("verified_charged_units").notNull().default(sql`0`),
    verifiedWorkerPaidUnits: sumUnits("verified_worker_paid_units").notNull().default(sql`0`),
    verifiedTreasuryPaidUnits: sumUnits("verified_treasury_paid_units").notNull().default(sql`0`),
    verifiedRefundedUnits: sumUnits("verified_refunded_units").notNull().default(sql`0`),
    disputedEscrowedUnits: sumUnits("disputed_escrowed_units").notNull().default(sql`0`),
    disputedChargedUnits: sumUnits("disputed_charged_units").notNull().default(sql`0`),
    disputedWorkerPaidUnits: sumUnits("disputed_worker_paid_units").notNull().default(sql`0`),
    disputedTreasuryPaidUnits: sumUnits("disputed_treasury_paid_units").notNull().default(sql`0`),
    disputedRefundedUnits: sumUnits("disputed_refunded_units").notNull().default(sql`0`),
  },
  (t) => [
    unique("job_rollups_key")
      .on(t.grain, t.day, t.model, t.worker, t.keyFingerprint)
      .nullsNotDistinct(),
    index("job_rollups_worker").on(t.grain, t.worker, t.day),
  ],
);

/** Days of `jobs` not summed into the rollups yet (see src/db/schema.ts). */
export const jobRollupsBackfill = pgTable("job_rollups_backfill", {
  id: int("id").primaryKey(),
  nextDay: int("next_day").notNull(),
  lastDay: int("last_day").notNull(),
});

export const creditVaults = pgTable("credit_vaults", {
  keyFingerprint: text("key_fingerprint").primaryKey(),
  vault: text("vault").notNull(),
  source: text("source", { enum: ["configured", "learned"] }).notNull(),
  jobId: text("job_id"),
  pinnedAt: epochMs("pinned_at").notNull(),
});

export const treasuryEvidence = pgTable(
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

export const profilePins = pgTable(
  "profile_pins",
  {
    profile: text("profile").notNull(),
    name: text("name", { enum: ["treasury", "escrow_authority"] }).notNull(),
    value: text("value").notNull(),
    evidence: int("evidence").notNull(),
    pinnedAt: epochMs("pinned_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.profile, t.name] })],
);

/** See the SQLite schema. */
export const jobApiAnswers = pgTable("job_api_answers", {
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
export const jobConflictSignatures = pgTable(
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

export const receiptConflicts = pgTable(
  "receipt_conflicts",
  {
    id: int("id").primaryKey().generatedByDefaultAsIdentity(),
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.jobId, { onDelete: "cascade" }),
    source: text("source", { enum: receiptSources }).notNull(),
    receipt: json<Record<string, unknown>>()("receipt").notNull(),
    differences: json<string[]>()("differences").notNull(),
    receivedAt: epochMs("received_at").notNull(),
  },
  (t) => [index("receipt_conflicts_job").on(t.jobId)],
);

export const chainTransactions = pgTable(
  "chain_transactions",
  {
    signature: text("signature").primaryKey(),
    state: text("state", { enum: ["unknown", "landed", "finalized", "dropped", "pruned"] })
      .notNull()
      .default("unknown"),
    commitment: text("commitment", { enum: ["processed", "confirmed", "finalized"] }),
    slot: int("slot"),
    blockTime: int("block_time"),
    feeLamports: units("fee_lamports"),
    succeeded: boolean("succeeded"),
    err: json<unknown>()("err"),
    facts: json<unknown>()("facts"),
    raw: text("raw"),
    firstSeenAt: epochMs("first_seen_at").notNull(),
    statusCheckedAt: epochMs("status_checked_at"),
    fetchedAt: epochMs("fetched_at"),
    notFoundSince: epochMs("not_found_since"),
    notFoundCount: int("not_found_count").notNull().default(0),
    notFoundSlot: int("not_found_slot"),
    memoJob: text("memo_job"),
  },
  (t) => [index("chain_transactions_state").on(t.state)],
);

export const checkResults = pgTable(
  "check_results",
  {
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.jobId, { onDelete: "cascade" }),
    name: text("name").notNull(),
    outcome: text("outcome", { enum: checkOutcomes }).notNull(),
    reason: text("reason"),
    expected: json<unknown>()("expected"),
    actual: json<unknown>()("actual"),
    runId: int("run_id"),
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

export const verificationRuns = pgTable(
  "verification_runs",
  {
    id: int("id").primaryKey().generatedByDefaultAsIdentity(),
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

export const accessTokens = pgTable("access_tokens", {
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
export const nightlyCountedThrough = pgTable("nightly_counted_through", {
  id: bigint("id", { mode: "number" }).primaryKey(),
  through: epochMs("through").notNull(),
});

/** Jobs a nightly run counted that a later verdict turned bad (see the SQLite schema). */
export const nightlyTurned = pgTable("nightly_turned", {
  jobId: text("job_id").primaryKey(),
  verdict: text("verdict", { enum: verdicts }).notNull(),
  previousVerdict: text("previous_verdict", { enum: verdicts }).notNull(),
  turnedAt: epochMs("turned_at").notNull(),
});

export const locks = pgTable("locks", {
  name: text("name").primaryKey(),
  owner: text("owner").notNull(),
  acquiredAt: epochMs("acquired_at").notNull(),
  expiresAt: epochMs("expires_at").notNull(),
});

export const dashboardSessions = pgTable(
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

export const ledgerCursors = pgTable("ledger_cursors", {
  vault: text("vault").primaryKey(),
  newestSignature: text("newest_signature"),
  newestSlot: int("newest_slot"),
  syncTop: text("sync_top"),
  syncTopSlot: int("sync_top_slot"),
  syncBefore: text("sync_before"),
  syncNumber: int("sync_number").notNull().default(0),
  syncIndex: int("sync_index").notNull().default(0),
  pagesRead: int("pages_read").notNull().default(0),
  balanceUnits: units("balance_units"),
  balanceSlot: int("balance_slot"),
  balanceAt: epochMs("balance_at"),
  syncedAt: epochMs("synced_at"),
  lastError: text("last_error"),
  updatedAt: epochMs("updated_at").notNull(),
  chainedOrd: int("chained_ord"),
  finalThrough: epochMs("final_through"),
  syncFinalThrough: epochMs("sync_final_through"),
  balanceForeign: text("balance_foreign"),
  /** Who else may spend the vault at the last balance read (see the SQLite schema). */
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

/** Where the scan of the escrow vault's memos stands (see the SQLite schema). */
export const escrowScans = pgTable("escrow_scans", {
  vault: text("vault").primaryKey(),
  /** Newest signature of the last completed scan: the `until` of the next; null before one. */
  newestSignature: text("newest_signature"),
  newestSlot: int("newest_slot"),
  /** Newest signature of the scan in progress (its first page's first entry). */
  syncTop: text("sync_top"),
  syncTopSlot: int("sync_top_slot"),
  /** Oldest signature the scan in progress has judged: the next page's `before`. */
  syncBefore: text("sync_before"),
  /** The finalized slot when the last completed scan began (see the SQLite schema). */
  coveredSlot: int("covered_slot"),
  /** The same for the scan in progress. */
  syncCoveredSlot: int("sync_covered_slot"),
  /** Signatures kept with the jobs their memos name, over every scan. */
  kept: int("kept").notNull().default(0),
  updatedAt: epochMs("updated_at").notNull(),
});

/** Escrow listing entries the scan could not judge yet (see the SQLite schema). */
export const escrowPending = pgTable(
  "escrow_pending",
  {
    jobId: text("job_id").notNull(),
    signature: text("signature").notNull(),
    vault: text("vault").notNull(),
    /** Seconds, as the listing gave it; null when it gave none. */
    blockTime: int("block_time"),
    listedAt: epochMs("listed_at").notNull(),
    unread: text("unread"),
    disagreement: json<unknown>()("disagreement"),
    /** The recorded job whose own step held this row (see the SQLite schema): never pruned. */
    namedBy: text("named_by"),
  },
  (t) => [
    primaryKey({ columns: [t.jobId, t.signature, t.vault] }),
    index("escrow_pending_listed").on(t.listedAt),
    // Not the rows a recorded job's own step holds (see the SQLite schema).
    index("escrow_pending_unmarked").on(t.listedAt).where(sql`${t.namedBy} IS NULL`),
  ],
);

export const ledgerLines = pgTable(
  "ledger_lines",
  {
    vault: text("vault").notNull(),
    signature: text("signature").notNull(),
    ord: int("ord").notNull(),
    slot: int("slot").notNull(),
    blockTime: int("block_time"),
    state: text("state", { enum: ["listed", "read"] })
      .notNull()
      .default("listed"),
    succeeded: boolean("succeeded"),
    preUnits: units("pre_units"),
    postUnits: units("post_units"),
    deltaUnits: units("delta_units"),
    memo: text("memo"),
    memoKind: text("memo_kind", { enum: ["escrow", "settle", "refund"] }),
    memoJobId: text("memo_job_id"),
    /**
     * Every distinct step and job the memos name (JSON list of kind and job id), when they name
     * more than one, else null: the money moved under a label nobody can tie to one job, always
     * a finding, and the line is judged with each job it names. Null on lines read before it.
     */
    memoJobs: text("memo_jobs"),
    listedAt: epochMs("listed_at").notNull(),
    kind: text("kind", { enum: ledgerLineKinds }),
    jobId: text("job_id"),
    released: boolean("released").notNull().default(false),
    headerOk: boolean("header_ok"),
    gapAfterSignature: text("gap_after_signature"),
    gapAfterSlot: int("gap_after_slot"),
    gapUnits: units("gap_units"),
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
    opened: boolean("opened"),
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
    index("ledger_lines_vault_memo").on(t.vault, t.memoKind, t.deltaUnits, t.memoJobId),
    index("ledger_lines_vault_job").on(t.vault, t.jobId),
    // The few lines whose memos name several jobs: a statement finding, judged every round.
    index("ledger_lines_memo_jobs").on(t.vault, t.blockTime).where(sql`${t.memoJobs} IS NOT NULL`),
    index("ledger_lines_review")
      .on(t.vault, t.kind, t.blockTime)
      .where(sql`${t.kind} IN ('unexplained', 'deposit')`),
    index("ledger_lines_open_locks")
      .on(t.vault, t.blockTime)
      .where(sql`${t.kind} = 'lock' AND NOT ${t.released}`),
    index("ledger_lines_header_open")
      .on(t.vault, t.blockTime)
      .where(sql`${t.kind} = 'lock' AND ${t.headerOk} IS NOT TRUE`),
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
 * Lines and their sum per vault, UTC day (block_time / 86400) and kind, kept by the trigger
 * function `ledger_daily_lines` (migrations/postgres/0001_ledger_kinds_snapshots_hours.sql) in
 * every write's transaction.
 */
export const ledgerDaily = pgTable(
  "ledger_daily",
  {
    vault: text("vault").notNull(),
    day: int("day").notNull(),
    kind: text("kind", { enum: ledgerLineKinds }).notNull(),
    lines: int("lines").notNull(),
    units: sumUnits("units").notNull(),
  },
  (t) => [primaryKey({ columns: [t.vault, t.day, t.kind] })],
);

export const accountSnapshots = pgTable(
  "account_snapshots",
  {
    id: int("id").primaryKey().generatedByDefaultAsIdentity(),
    takenAt: epochMs("taken_at").notNull(),
    keyFingerprint: text("key_fingerprint").notNull(),
    vault: text("vault"),
    creditsRemaining: int("credits_remaining"),
    usdcValueUnits: units("usdc_value_units"),
    vaultUnits: units("vault_units"),
    vaultSlot: int("vault_slot"),
    creditsDifference: int("credits_difference"),
    usdcDifferenceUnits: units("usdc_difference_units"),
    error: text("error"),
  },
  (t) => [index("account_snapshots_vault_taken").on(t.vault, t.takenAt)],
);
