import type Database from "better-sqlite3";
import { asc, eq, sql } from "drizzle-orm";
import type { SqliteStore, Store } from "../db/client.js";
import {
  countedVerdicts,
  currentRollups,
  DAY_MS,
  figureSumsByVerdict,
  grains,
  HOUR_MS,
  jobsFigureSums,
  joinRollupRow,
  reportWorkerSql,
  rollupFigureColumns,
  sqliteRollupSums,
  sqliteRollupWholeSums,
  verdictCountColumn,
} from "../db/rollups.js";
import {
  chainTransactions,
  checkResults,
  finalVerdicts,
  jobApiAnswers,
  jobs,
  openVerdicts,
  type RejudgeReason,
  receiptConflicts,
  type Verdict,
  verdicts,
  waitsForTreasuryText,
} from "../db/schema.js";
import { isIntegerOverflow, wholeSumsFit } from "../db/split-sums.js";
import { daysOfStarts, type PeriodPieces, periodPieces } from "./period-pieces.js";
import { pgTwins } from "./pg-twins.js";
import { inReadSnapshot } from "./prepared.js";
import { type RejudgingRow, rejudgingRows, rejudgingSql } from "./rejudging-rules.js";
import { type ReportGrouping, reportGroupings } from "./report-groupings.js";

export { type PeriodPieces, periodPieces };

/**
 * The reports' reads of the store: reconciliation sums from the rollups and from `jobs`, the
 * verdict counts of a window, and the instant before which every job is final. Aggregates stay
 * raw SQL: drizzle cannot name an index, and sums must arrive as exact bigints (safe integers).
 */

export { type ReportGrouping, reportGroupings };

/** One group's sums: its key (day number for `day`, else the text; null when not recorded). */
export interface GroupSums {
  group: number | string | null;
  /** Sums named as the figure columns of `job_rollups`. */
  sums: Record<string, bigint>;
}

/** What to sum: a period [from, to), grouped, optionally for one worker only. */
export interface SumsQuery {
  from: number;
  to: number;
  groupBy: ReportGrouping;
  worker?: string;
  /** `jobs`: every job from scratch (what `--recompute` and the benchmark compare with). */
  source?: "rollups" | "jobs";
  /**
   * With `groupBy: "day"`, the starts of the days to group by, ascending, the first `from`:
   * a time zone's days (see `zoneDayStarts`) instead of UTC days. Each day runs to the next
   * start (the last to `to`), and its group is its start in milliseconds.
   */
  dayStarts?: readonly number[];
}

/** A rollup row (or the same sums from `jobs`): its grain, bucket and dimensions, then figures. */
export type RollupRow = {
  grain: bigint;
  bucket: bigint;
  model: string | Buffer;
  worker: string | Buffer;
  key_fingerprint: string | Buffer;
} & Record<string, bigint>;

/** Statements of the audit record: primary-key and indexed point lookups only. */
function prepareAuditStatements(store: SqliteStore) {
  const { db } = store;
  return {
    // The jobs API's body in the same statement as the row: read apart, another process's
    // answer written between the two reads showed one answer's status beside the next's body.
    job: db
      .select({
        job: jobs,
        // Named in full: drizzle writes a lone table's columns unqualified, which inside the
        // subquery would name its own.
        apiResponse: sql`(SELECT a.response FROM job_api_answers a
          WHERE a.job_id = "jobs"."job_id")`.mapWith(jobApiAnswers.response),
      })
      .from(jobs)
      .where(eq(jobs.jobId, sql.placeholder("jobId")))
      .prepare(),
    conflicts: db
      .select()
      .from(receiptConflicts)
      .where(eq(receiptConflicts.jobId, sql.placeholder("jobId")))
      .orderBy(asc(receiptConflicts.id))
      .prepare(),
    checks: db
      .select()
      .from(checkResults)
      .where(eq(checkResults.jobId, sql.placeholder("jobId")))
      .orderBy(asc(checkResults.name))
      .prepare(),
    transaction: db
      .select({
        state: chainTransactions.state,
        commitment: chainTransactions.commitment,
        slot: chainTransactions.slot,
        blockTime: chainTransactions.blockTime,
        feeLamports: chainTransactions.feeLamports,
        succeeded: chainTransactions.succeeded,
        err: chainTransactions.err,
        facts: chainTransactions.facts,
        fetchedAt: chainTransactions.fetchedAt,
      })
      .from(chainTransactions)
      .where(eq(chainTransactions.signature, sql.placeholder("signature")))
      .prepare(),
  };
}

type AuditStatements = ReturnType<typeof prepareAuditStatements>;
/** A chain transaction's stored facts, as the audit record shows them. */
export type AuditTransaction = NonNullable<ReturnType<AuditStatements["transaction"]["get"]>>;
/**
 * A job's row, its conflicting receipts, its check results and the stored facts of its two
 * transactions (null where the signature is unknown or none is stored yet), as stored.
 */
export interface AuditRows {
  job: NonNullable<ReturnType<AuditStatements["job"]["get"]>>["job"];
  /** The jobs API's answer as received; null before the first one, or without a body. */
  apiResponse: unknown;
  conflicts: ReturnType<AuditStatements["conflicts"]["all"]>;
  checks: ReturnType<AuditStatements["checks"]["all"]>;
  transactions: {
    escrow: AuditTransaction | null;
    /** The receipt's settlement, or the jobs API's when a streamed receipt has none. */
    settlement: AuditTransaction | null;
    /**
     * Every transaction the job names that is stored, by signature: the receipt's, the jobs
     * API's and those of conflicting receipts. A job's amounts may count all of them.
     */
    named: ReadonlyMap<string, AuditTransaction>;
  };
}

/** Every signature a job names: receipt, jobs API, conflicting receipts; each once. */
export function namedSignatures(job: AuditRows["job"]): string[] {
  const all = [
    job.escrowTx,
    job.apiEscrowTx,
    job.settlementTx,
    job.apiSettlementTx,
    ...(Array.isArray(job.conflictSignatures) ? job.conflictSignatures : []),
  ];
  return [...new Set(all.filter((s): s is string => typeof s === "string"))];
}

/** Where a keyset page starts: strictly after this (created_at, job_id). */
export interface JobCursor {
  createdAt: number;
  jobId: string;
}

/** A job as the listings show it, as stored. */
export interface JobRow {
  job_id: string;
  created_at: number;
  source: string;
  model: string | null;
  worker: string | null;
  key_fingerprint: string | null;
  verdict: Verdict;
  verdict_at: number | null;
  previous_verdict: Verdict | null;
  rejudge_reason: RejudgeReason | null;
  escrow_tx: string | null;
  settlement_tx: string | null;
  charged_units: bigint | null;
  tags: string;
}

const jobColumns = `job_id, created_at, source, model, worker, key_fingerprint, verdict, verdict_at,
  previous_verdict, rejudge_reason, escrow_tx, settlement_tx, charged_units, tags`;

/** Filters of the job listings; every one optional. Period: `from` inclusive, `to` exclusive. */
export interface JobRowFilter {
  verdict?: Verdict;
  worker?: string;
  model?: string;
  keyFingerprint?: string;
  from?: number | undefined;
  to?: number | undefined;
}

/** A failing check of a job, as stored (expected and actual as JSON text). */
export interface FailingCheckRow {
  name: string;
  reason: string | null;
  expected: string | null;
  actual: string | null;
}

/** Builds WHERE clauses and parameters shared by the listings. */
function whereOf(filter: JobRowFilter, cursor: JobCursor | null, order: "asc" | "desc") {
  const clauses: string[] = [];
  const params: (string | number)[] = [];
  if (filter.verdict !== undefined) {
    clauses.push("verdict = ?");
    params.push(filter.verdict);
  }
  if (filter.worker !== undefined) {
    clauses.push(`${reportWorkerSql()} = ?`);
    params.push(filter.worker);
  }
  if (filter.model !== undefined) {
    clauses.push("model = ?");
    params.push(filter.model);
  }
  if (filter.keyFingerprint !== undefined) {
    clauses.push("key_fingerprint = ?");
    params.push(filter.keyFingerprint);
  }
  if (filter.from !== undefined) {
    clauses.push("created_at >= ?");
    params.push(filter.from);
  }
  if (filter.to !== undefined) {
    clauses.push("created_at < ?");
    params.push(filter.to);
  }
  if (cursor) {
    // Row-value comparison: strictly after the last row seen, in the listing's order.
    // The plain bound on created_at lets SQLite seek in its index instead of scanning from
    // the first row (it does not range-scan on the row value alone).
    const [bound, strict] = order === "asc" ? [">=", ">"] : ["<=", "<"];
    clauses.push(`created_at ${bound} ? AND (created_at, job_id) ${strict} (?, ?)`);
    params.push(cursor.createdAt, cursor.createdAt, cursor.jobId);
  }
  return { where: clauses.length ? `WHERE ${clauses.join(" AND ")}` : "", params };
}

export type { RejudgingRow } from "./rejudging-rules.js";

export interface ReportsStore {
  /** Group sums of a period: whole days and hours from the rollups, the rest from `jobs`. */
  groupSums(query: SumsQuery): Promise<GroupSums[]>;
  /** The instant before which every job is final (the oldest open job's creation, or `now`). */
  dataCompleteUntil(now: number): Promise<number>;
  /**
   * The creation of the oldest job without a final verdict, or `now` when none is: what the
   * verifier still owes (jobs waiting for the ledger have their verdict).
   */
  oldestOpenJob(now: number): Promise<number>;
  /** Jobs of [from, to) by verdict. */
  countJobsByVerdict(from: number, to: number): Promise<Record<Verdict, number>>;
  /**
   * Jobs of [from, to) (of `worker`, when given) judged again: by the final verdict they left
   * and why (`jobs.previous_verdict`, `rejudge_reason`), with their charged units.
   */
  rejudging(query: { from: number; to: number; worker?: string }): Promise<RejudgingRow[]>;
  /**
   * `groupSums` and `rejudging` of one query on one snapshot: read apart, a final job sent back
   * between the two reads was counted final in the sums and judged again beside them.
   */
  sumsWithRejudging(query: SumsQuery): Promise<{ groups: GroupSums[]; rejudging: RejudgingRow[] }>;
  /** True when every day of `jobs` is summed in the rollups (no backfill left). */
  rollupsComplete(): Promise<boolean>;
  /** First and last UTC day held by `jobs` or the rollups; null when both are empty. */
  rollupDayBounds(): Promise<{ first: number; last: number } | null>;
  /**
   * One day, in one read transaction: its full-key sums per hour from scratch over `jobs`
   * (`bucket` = hour number), and every rollup row of that day, day and hour grains.
   */
  rollupDay(day: number): Promise<{ scratch: RollupRow[]; stored: RollupRow[] }>;
  /** A job with its conflicting receipts and checks; null for an unknown job. */
  auditRows(jobId: string): Promise<AuditRows | null>;
  /** Up to `limit` jobs by keyset on (created_at, job_id), strictly after `cursor`. */
  jobRows(
    filter: JobRowFilter,
    cursor: JobCursor | null,
    order: "asc" | "desc",
    limit: number,
  ): Promise<JobRow[]>;
  /** Like `jobRows` for one verdict, only jobs with a failing check (of that name, if given). */
  failingJobRows(
    filter: JobRowFilter & { verdict: Verdict },
    check: string | undefined,
    cursor: JobCursor | null,
    order: "asc" | "desc",
    limit: number,
  ): Promise<JobRow[]>;
  /** A job's failing checks, by name. */
  failingChecks(jobId: string): Promise<FailingCheckRow[]>;
}

/** The column of `jobs` each grouping groups by. */
const jobsGroupExpr: Record<ReportGrouping, string> = {
  day: `created_at / ${DAY_MS}`,
  model: "model",
  worker: reportWorkerSql(),
  key: "key_fingerprint",
};

/** Rollup grain (day, hour) and group expression of each grouping; day sums the model rows. */
const rollupGrouping: Record<ReportGrouping, { day: number; hour: number; expr: string }> = {
  day: { day: grains.model, hour: grains.hourModel, expr: "day" },
  model: { day: grains.model, hour: grains.hourModel, expr: "model" },
  worker: { day: grains.worker, hour: grains.hourWorker, expr: "worker" },
  key: { day: grains.key, hour: grains.hourKey, expr: "key_fingerprint" },
};

const dayGrainList = [grains.full, grains.model, grains.worker, grains.key].join(", ");
const hourGrainList = [grains.hourModel, grains.hourWorker, grains.hourKey].join(", ");

type Row = { grp: bigint | string | Buffer | null } & Record<string, bigint>;

/** Statements of one grouping, for all workers (`all`) or one (`worker`), of one way of summing. */
interface GroupingStatements {
  days: Database.Statement;
  /** Null where the rollups have no hour grain for it (one worker by model or key). */
  hours: Database.Statement | null;
  jobs: Database.Statement;
}

/**
 * A grouping's statements: `whole` reads each sum of money in one `sum()`, exact while it fits
 * (`wholeSumsFit`); `split` in two parts (src/db/split-sums.ts), exact to 2^95, when it does not.
 */
interface GroupingSums {
  whole: GroupingStatements;
  split: GroupingStatements;
}

const byVerdict = {
  whole: figureSumsByVerdict("sqlite", "whole"),
  split: figureSumsByVerdict("sqlite", "split"),
};
const rollupSums = { whole: sqliteRollupWholeSums, split: sqliteRollupSums };

function prepareGrouping(
  db: Database.Database,
  groupBy: ReportGrouping,
  byWorker: boolean,
  sums: "whole" | "split",
): GroupingStatements {
  const g = rollupGrouping[groupBy];
  // One worker: its (day, worker) rows by day, or its full-key rows (index job_rollups_worker).
  const dayGrain = byWorker ? (groupBy === "day" ? grains.worker : grains.full) : g.day;
  const hourGrain = byWorker ? (groupBy === "day" ? grains.hourWorker : null) : g.hour;
  const workerFilter = byWorker ? "worker = @worker AND " : "";
  const jobsWorkerFilter = byWorker ? `${reportWorkerSql()} = @worker AND ` : "";
  const days = db
    .prepare(
      `SELECT ${g.expr} AS grp, ${rollupSums[sums]} FROM ${currentRollups}
       WHERE grain = ${dayGrain} AND ${workerFilter}day >= @first AND day < @end
       GROUP BY ${g.expr}`,
    )
    .safeIntegers(true);
  // Hour rows by day: the bucket is the hour number, so the day is bucket / 24.
  const hourExpr = groupBy === "day" ? "day / 24" : g.expr;
  const hours =
    hourGrain === null
      ? null
      : db
          .prepare(
            `SELECT ${hourExpr} AS grp, ${rollupSums[sums]} FROM ${currentRollups}
             WHERE grain = ${hourGrain} AND ${workerFilter}day >= @first AND day < @end
             GROUP BY ${hourExpr}`,
          )
          .safeIntegers(true);
  // Jobs of a time range, sought by time (or by worker, then time) and read row by row.
  const index = byWorker ? "jobs_worker_created" : "jobs_created_at";
  const jobs = db
    .prepare(
      `SELECT grp, ${byVerdict[sums].outer} FROM (
         SELECT ${jobsGroupExpr[groupBy]} AS grp, ${byVerdict[sums].inner}
         FROM jobs INDEXED BY ${index}
         WHERE ${jobsWorkerFilter}created_at >= @from AND created_at < @to
         GROUP BY 1, verdict)
       GROUP BY grp`,
    )
    .safeIntegers(true);
  return { days, hours, jobs };
}

/**
 * Rows read with each sum of money whole, or null when one did not fit in 64 bits (a REAL
 * came back, or SQLite raised "integer overflow"; see `wholeSumsFit`): read them split.
 */
function wholeRowsOf(read: () => Row[]): Row[] | null {
  try {
    const rows = read();
    return rows.every((row) => wholeSumsFit(row, rollupFigureColumns)) ? rows : null;
  } catch (error) {
    if (isIntegerOverflow(error)) return null;
    throw error;
  }
}

/** The reports store of either dialect. */
export function createReportsStore(store: Store): ReportsStore {
  return store.kind === "postgres"
    ? pgTwins().createPgReportsStore(store)
    : createSqliteReportsStore(store);
}

/**
 * Creates the reports' store module; each statement is prepared once (a grouping's on its first
 * report).
 */
function createSqliteReportsStore(store: SqliteStore): ReportsStore {
  const db = store.sqlite;
  // A grouping's statements are prepared on its first report and kept: a store opened for a
  // few reads (a command, a test) prepared all of them, most never run.
  const groupings = new Map<string, GroupingSums>();
  const groupingStatements = (g: ReportGrouping, worker: boolean) => {
    const key = `${g}:${worker}`;
    let prepared = groupings.get(key);
    if (prepared === undefined) {
      prepared = {
        whole: prepareGrouping(db, g, worker, "whole"),
        split: prepareGrouping(db, g, worker, "split"),
      };
      groupings.set(key, prepared);
    }
    return prepared;
  };
  const backfillLeft = db.prepare("SELECT 1 FROM job_rollups_backfill LIMIT 1");
  const oldestOpen = db
    .prepare("SELECT min(created_at) AS oldest FROM jobs WHERE verdict = ?")
    .pluck();
  // A final job whose credits.header is a skip naming the vault it waits on: the ledger's read
  // of that vault passes the check where it stands or reopens the job, which then fails. Its
  // verdict and figures may still move, so nothing at or after it is called final (the same
  // jobs the ledger's review reads, through their partial index).
  // Only a vault the ledger reads (one it has a cursor of, or a key's pinned vault) ever ends
  // the wait: a lock from any other account (the operator's choice) would hold it for good.
  // CROSS JOIN keeps the few waiting checks the outer loop: joined plainly, SQLite read every
  // final job by verdict and probed the checks of each (about 1 s at a million jobs, twice a
  // report).
  const oldestHeaderWaiting = db
    .prepare(
      `SELECT min(j.created_at) FROM check_results c INDEXED BY check_results_header_waiting
       CROSS JOIN jobs j ON j.job_id = c.job_id
       WHERE c.name = 'credits.header' AND c.outcome = 'skip' AND c.expected IS NOT NULL
         AND j.verdict IN (${finalVerdicts.map((v) => `'${v}'`).join(", ")})
         AND j.credits_remaining_units IS NOT NULL
         AND (EXISTS (SELECT 1 FROM ledger_cursors l
                WHERE l.vault = json_extract(c.expected, '$.vault'))
           OR EXISTS (SELECT 1 FROM credit_vaults v
                WHERE v.vault = json_extract(c.expected, '$.vault')))`,
    )
    .pluck();
  // A final job the settlement backfill still asks the jobs API about: the answer sends it
  // back to the verifier (a settlement named at last, or a second one), which may judge it
  // again with other figures, hours after a stream was called unverifiable (index
  // jobs_backfill: the few jobs still asked about).
  const oldestStillAsked = db
    .prepare(
      `SELECT min(created_at) FROM jobs INDEXED BY jobs_backfill
       WHERE backfill_state = 'pending'
         AND verdict IN (${finalVerdicts.map((v) => `'${v}'`).join(", ")})`,
    )
    .pluck();
  // A job judged for want of the treasury: final, yet decided again once the treasury is
  // learned (`waitsForTreasury`), when one whose settlement paid another address than the one
  // pinned turns discrepancy, and a discrepancy's treasury figure drops that address's pay. Its standing and figures may still move (index
  // jobs_treasury_waiting, whose term the query repeats: none once the treasury is known).
  const oldestTreasuryWaiting = db
    .prepare(
      `SELECT min(created_at) FROM jobs INDEXED BY jobs_treasury_waiting
       WHERE ${waitsForTreasuryText("verdict", "unproven")}`,
    )
    .pluck();
  const finalCounts = db.prepare(
    `SELECT ${countedVerdicts.map((v) => `coalesce(sum(${verdictCountColumn(v)}), 0) AS ${v}`).join(", ")}
     FROM ${currentRollups} WHERE grain = @grain AND day >= @first AND day < @end`,
  );
  const jobsByVerdict = db.prepare(
    `SELECT verdict, count(*) AS n FROM jobs INDEXED BY jobs_created_at
     WHERE created_at >= ? AND created_at < ? GROUP BY verdict`,
  );
  // Jobs not final yet: few, and not told apart by the rollups (index jobs_verdict_created).
  const openCount = db
    .prepare("SELECT count(*) FROM jobs WHERE verdict = ? AND created_at >= ? AND created_at < ?")
    .pluck();

  const complete = () => backfillLeft.get() === undefined;
  const audit = prepareAuditStatements(store);
  const storedTransaction = (signature: string | null) =>
    signature === null ? null : (audit.transaction.get({ signature }) ?? null);
  // Point reads, no transaction: a read transaction here would queue behind writers.
  const readAudit = (jobId: string): AuditRows | null => {
    const row = audit.job.get({ jobId });
    if (!row) return null;
    const { job, apiResponse } = row;
    const named = new Map<string, AuditTransaction>();
    for (const signature of namedSignatures(job)) {
      const tx = storedTransaction(signature);
      if (tx) named.set(signature, tx);
    }
    return {
      job,
      apiResponse: apiResponse ?? null,
      conflicts: audit.conflicts.all({ jobId }),
      checks: audit.checks.all({ jobId }),
      transactions: {
        escrow: storedTransaction(job.escrowTx),
        settlement: storedTransaction(job.settlementTx ?? job.apiSettlementTx),
        named,
      },
    };
  };
  // Listing statements depend on which filters are given: each shape is prepared on first
  // use and kept, so every statement is still prepared once.
  const shapes = new Map<string, Database.Statement>();
  const shaped = (text: string) => {
    let stmt = shapes.get(text);
    if (!stmt) {
      stmt = db.prepare(text).safeIntegers(true);
      shapes.set(text, stmt);
    }
    return stmt;
  };
  // INDEXED BY: by the range alone the planner may read every job of the period.
  const rejudgingOf = (worker: boolean) =>
    db
      .prepare(rejudgingSql("sqlite", (name) => `@${name}`, worker, "INDEXED BY jobs_rejudging"))
      .safeIntegers(true);
  const rejudgingAll = rejudgingOf(false);
  const rejudgingOfWorker = rejudgingOf(true);
  const rejudging = ({ from, to, worker }: { from: number; to: number; worker?: string }) =>
    rejudgingRows(
      (worker === undefined ? rejudgingAll : rejudgingOfWorker).all({ from, to, worker }) as never,
    );
  const failingChecksOf = db.prepare(
    `SELECT name, reason, expected, actual FROM check_results
     WHERE job_id = ? AND +outcome = 'fail' ORDER BY name`,
  );

  const dayBounds = db.prepare(
    `SELECT min(d) AS first, max(d) AS last FROM (
       SELECT (SELECT min(created_at) FROM jobs) / ${DAY_MS} AS d
       UNION ALL SELECT (SELECT max(created_at) FROM jobs) / ${DAY_MS}
       UNION ALL SELECT min(day) FROM ${currentRollups} WHERE grain = ${grains.full}
       UNION ALL SELECT max(day) FROM ${currentRollups} WHERE grain = ${grains.full})`,
  );
  const scratchHours = db
    .prepare(
      `SELECT ${grains.full} AS grain, created_at / ${HOUR_MS} AS bucket,
         coalesce(model, x'') AS model, coalesce(${reportWorkerSql()}, x'') AS worker,
         coalesce(key_fingerprint, x'') AS key_fingerprint,
         ${jobsFigureSums}
       FROM jobs INDEXED BY jobs_created_at
       WHERE created_at >= ? AND created_at < ?
       GROUP BY 2, 3, 4, 5`,
    )
    .safeIntegers(true);
  const storedOfDay = db
    .prepare(
      `SELECT grain, day AS bucket, model, worker, key_fingerprint, ${sqliteRollupSums}
       FROM ${currentRollups}
       WHERE (grain IN (${dayGrainList}) AND day = @day)
         OR (grain IN (${hourGrainList}) AND day BETWEEN @day * 24 AND @day * 24 + 23)
       GROUP BY grain, day, model, worker, key_fingerprint`,
    )
    .safeIntegers(true);
  const readDay = (day: number) =>
    inReadSnapshot(store, () => ({
      scratch: (scratchHours.all(day * DAY_MS, (day + 1) * DAY_MS) as RollupRow[]).map(
        joinRollupRow,
      ),
      stored: (storedOfDay.all({ day }) as RollupRow[]).map(joinRollupRow),
    }));

  const groupSums = (query: SumsQuery): GroupSums[] => {
    if (query.dayStarts === undefined || query.groupBy !== "day") return periodSums(query);
    // A zone's days: each summed as a period of its own, all of it one group.
    return daysOfStarts(query).flatMap((day) =>
      periodSums({ ...query, ...day }).map((row) => ({ ...row, group: day.from })),
    );
  };

  const periodSums = (query: SumsQuery): GroupSums[] => {
    const statements = groupingStatements(query.groupBy, query.worker !== undefined);
    const pieces: PeriodPieces =
      query.source === "jobs" || !complete()
        ? { days: null, hours: [], partial: [{ from: query.from, to: query.to }] }
        : periodPieces(query.from, query.to);
    if (statements.whole.hours === null) {
      // No hour rows for this grouping: the edges' whole hours come from the jobs too.
      for (const h of pieces.hours)
        pieces.partial.push({ from: h.first * HOUR_MS, to: h.end * HOUR_MS });
      pieces.hours = [];
    }
    const worker = query.worker === undefined ? {} : { worker: query.worker };
    const rowsOf = (s: GroupingStatements): Row[] => {
      const rows: Row[] = [];
      if (pieces.days) rows.push(...(s.days.all({ ...worker, ...pieces.days }) as Row[]));
      for (const h of pieces.hours) rows.push(...(s.hours!.all({ ...worker, ...h }) as Row[]));
      for (const p of pieces.partial) rows.push(...(s.jobs.all({ ...worker, ...p }) as Row[]));
      return rows;
    };
    // Each sum of money in one sum() while every one fits in 64 bits, else in two parts (a
    // second read on the same snapshot: the caller's read transaction).
    const whole = wholeRowsOf(() => rowsOf(statements.whole));
    const sums =
      whole ??
      rowsOf(statements.split).map(({ grp, ...split }) => ({
        grp,
        ...joinRollupRow(split as Record<string, bigint>),
      }));
    return sums.map(({ grp, ...figures }) => ({
      // The rollups hold x'' (a BLOB) where the jobs hold NULL: both mean not recorded.
      group:
        grp === null || grp instanceof Uint8Array
          ? null
          : typeof grp === "bigint"
            ? Number(grp)
            : grp,
      sums: figures as Record<string, bigint>,
    }));
  };

  const oldestOpenJob = (now: number): number => {
    let oldest = now;
    for (const verdict of openVerdicts) {
      const value = oldestOpen.get(verdict) as number | null;
      if (value !== null && value < oldest) oldest = value;
    }
    return oldest;
  };
  const dataCompleteUntil = (now: number): number => {
    let oldest = oldestOpenJob(now);
    for (const waiting of [
      oldestHeaderWaiting.get(),
      oldestStillAsked.get(),
      oldestTreasuryWaiting.get(),
    ] as (number | null)[]) {
      if (waiting !== null && waiting < oldest) oldest = waiting;
    }
    return oldest;
  };

  const countJobsByVerdict = (from: number, to: number): Record<Verdict, number> => {
    const counts = Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
    const pieces: PeriodPieces = complete()
      ? periodPieces(from, to)
      : { days: null, hours: [], partial: [{ from, to }] };
    const addFinal = (grain: number, range: { first: number; end: number }) => {
      const row = finalCounts.get({ grain, ...range }) as Record<Verdict, number>;
      for (const v of countedVerdicts) counts[v] += row[v];
    };
    if (pieces.days) addFinal(grains.model, pieces.days);
    for (const h of pieces.hours) addFinal(grains.hourModel, h);
    for (const part of pieces.partial) {
      for (const row of jobsByVerdict.all(part.from, part.to) as {
        verdict: Verdict;
        n: number;
      }[]) {
        if (countedVerdicts.includes(row.verdict)) counts[row.verdict] += row.n;
      }
    }
    for (const v of openVerdicts) counts[v] = openCount.get(v, from, to) as number;
    return counts;
  };

  return {
    // One snapshot for the several statements of a period (whole days, whole hours, partial
    // hours): a writer moving money between two jobs read by different statements (a new
    // owner of a transaction) showed it on both, or on neither, between them.
    groupSums: async (query) => inReadSnapshot(store, () => groupSums(query)),
    // One snapshot for each answer's several reads: a job moving between verdicts between two
    // of them would be counted twice or not at all (and an open job missed says "complete").
    dataCompleteUntil: async (now) => inReadSnapshot(store, () => dataCompleteUntil(now)),
    oldestOpenJob: async (now) => inReadSnapshot(store, () => oldestOpenJob(now)),
    countJobsByVerdict: async (from, to) =>
      inReadSnapshot(store, () => countJobsByVerdict(from, to)),
    rejudging: async (query) => rejudging(query),
    sumsWithRejudging: async (query) =>
      inReadSnapshot(store, () => ({ groups: groupSums(query), rejudging: rejudging(query) })),
    rollupsComplete: async () => complete(),
    rollupDayBounds: async () => {
      const b = dayBounds.get() as { first: number | null; last: number | null };
      return b.first === null || b.last === null ? null : { first: b.first, last: b.last };
    },
    // Both reads see one snapshot, without holding writers back.
    rollupDay: async (day) => readDay(day),
    auditRows: async (jobId) => readAudit(jobId),
    jobRows: async (filter, cursor, order, limit) => {
      const { where, params } = whereOf(filter, cursor, order);
      const dir = order === "asc" ? "ASC" : "DESC";
      return shaped(
        `SELECT ${jobColumns} FROM jobs ${where} ORDER BY created_at ${dir}, job_id ${dir} LIMIT ?`,
      ).all(...params, limit) as JobRow[];
    },
    failingJobRows: async (filter, check, cursor, order, limit) => {
      const { where, params } = whereOf(filter, cursor, order);
      const dir = order === "asc" ? "ASC" : "DESC";
      // The unary `+` keeps SQLite on the primary key (job_id, name) should an index on the
      // outcome come back: a job has a few dozen check rows, every job's failing ones many more.
      // Each verdict is read in `jobs_verdict_created` order, so a page costs the same at any
      // depth and never sorts the whole set.
      const failing = `EXISTS (SELECT 1 FROM check_results c WHERE c.job_id = jobs.job_id
        AND +c.outcome = 'fail'${check !== undefined ? " AND +c.name = ?" : ""})`;
      return shaped(
        `SELECT ${jobColumns} FROM jobs INDEXED BY jobs_verdict_created ${where} AND ${failing}
         ORDER BY created_at ${dir}, job_id ${dir} LIMIT ?`,
      ).all(...params, ...(check !== undefined ? [check] : []), limit) as JobRow[];
    },
    failingChecks: async (jobId) => failingChecksOf.all(jobId) as FailingCheckRow[],
  };
}

const created = new WeakMap<Store, ReportsStore>();

/** The reports' store module of an open store, created on first use and kept with it. */
export function reportsStore(store: Store): ReportsStore {
  let module = created.get(store);
  if (!module) {
    module = createReportsStore(store);
    created.set(store, module);
  }
  return module;
}
