import { and, asc, desc, eq, gte, inArray, lt, lte, type SQL, sql } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { checkResults, jobRollupsBackfill, jobs } from "../../db/pg/schema.js";
import {
  countedVerdicts,
  DAY_MS,
  figureSumsByVerdict,
  grains,
  HOUR_MS,
  reportWorkerSql,
  rollupFigureColumns,
  rollupFigureSums,
  storedFigures,
  verdictCountColumn,
} from "../../db/rollups.js";
import {
  finalVerdicts,
  openVerdicts,
  type Verdict,
  verdicts,
  waitsForTreasuryText,
} from "../../db/schema.js";
import { daysOfStarts, type PeriodPieces, periodPieces } from "../period-pieces.js";
import { rejudgingRows, rejudgingSql } from "../rejudging-rules.js";
import type {
  AuditRows,
  AuditTransaction,
  FailingCheckRow,
  GroupSums,
  JobCursor,
  JobRow,
  JobRowFilter,
  ReportGrouping,
  ReportsStore,
  RollupRow,
  SumsQuery,
} from "../reports.js";

/**
 * The reports' reads on PostgreSQL: the same answers as the SQLite implementation in
 * src/store/reports.ts, read from the same rollups (kept by the `jobs_rollup` trigger, an
 * absent dimension as NULL rather than x''). Reads only: nothing here needs a lock. Every
 * reconciliation is one statement (the pieces of the period as UNION ALL), so its figures come
 * from one snapshot while writers go on. `sum()` answers `numeric` (text on the wire): money is
 * converted with `BigInt`, counts with `Number`, never through a float.
 */

/** The figures of the jobs in a GROUP BY, as the rollup trigger adds them (booleans as 0/1). */
export const jobsFigureSumsPg = storedFigures
  .map((f) => {
    const expr = f.perJob.replaceAll("$.", "");
    return f.kind === "count"
      ? `coalesce(sum((${expr})::int), 0) AS ${f.column}`
      : `coalesce(sum(${expr}), 0) AS ${f.column}`;
  })
  .join(",\n    ");

const byVerdict = figureSumsByVerdict("postgres");

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

/** Every column of a rollup row but the dimensions comes back as text: as bigints. */
function bigintsOf(
  row: Record<string, unknown>,
  columns: readonly string[],
): Record<string, bigint> {
  const out: Record<string, bigint> = {};
  for (const c of columns) out[c] = BigInt(row[c] as string | number);
  return out;
}

/** The rollup grains a query reads (hour rows: null when it has none) and its worker filters. */
function grainsRead(query: SumsQuery) {
  const byWorker = query.worker !== undefined;
  const g = rollupGrouping[query.groupBy];
  return {
    g,
    // One worker: its (day, worker) rows by day, or its full-key rows (index job_rollups_worker).
    dayGrain: byWorker ? (query.groupBy === "day" ? grains.worker : grains.full) : g.day,
    hourGrain: byWorker ? (query.groupBy === "day" ? grains.hourWorker : null) : g.hour,
    workerFilter: byWorker ? sql`worker = ${query.worker} AND ` : sql``,
    jobsWorkerFilter: byWorker ? sql`${sql.raw(reportWorkerSql())} = ${query.worker} AND ` : sql``,
  };
}

/** The SELECTs (one per piece of the period) that together answer one `groupSums`. */
function groupSumsPieces(query: SumsQuery, pieces: PeriodPieces): SQL[] {
  const { g, dayGrain, hourGrain, workerFilter, jobsWorkerFilter } = grainsRead(query);
  if (hourGrain === null) {
    // No hour rows for this grouping: the edges' whole hours come from the jobs too.
    for (const h of pieces.hours)
      pieces.partial.push({ from: h.first * HOUR_MS, to: h.end * HOUR_MS });
    pieces.hours = [];
  }
  const selects: SQL[] = [];
  const rollupSelect = (grain: number, expr: string, range: { first: number; end: number }) =>
    sql`SELECT ${sql.raw(expr)} AS grp, ${sql.raw(rollupFigureSums)}, false AS backfill_pending
      FROM job_rollups
      WHERE grain = ${sql.raw(String(grain))} AND ${workerFilter}day >= ${range.first}
        AND day < ${range.end}
      GROUP BY ${sql.raw(expr)}`;
  if (pieces.days) selects.push(rollupSelect(dayGrain, g.expr, pieces.days));
  // Hour rows by day: the bucket is the hour number, so the day is bucket / 24.
  const hourExpr = query.groupBy === "day" ? "day / 24" : g.expr;
  if (hourGrain !== null)
    for (const h of pieces.hours) selects.push(rollupSelect(hourGrain, hourExpr, h));
  const jobsExpr = jobsGroupExpr[query.groupBy];
  for (const p of pieces.partial) {
    selects.push(sql`SELECT grp, ${sql.raw(byVerdict.outer)}, false AS backfill_pending FROM (
        SELECT ${sql.raw(jobsExpr)} AS grp, ${sql.raw(byVerdict.inner)} FROM jobs
        WHERE ${jobsWorkerFilter}created_at >= ${p.from} AND created_at < ${p.to}
        GROUP BY 1, verdict) AS per_verdict
      GROUP BY grp`);
  }
  return selects;
}

/** One bound array parameter of `type` (drizzle would spread a JS array into a list). */
const arrayOf = (values: readonly number[], type: "bigint" | "int") =>
  sql`${sql.param([...values])}::${sql.raw(type)}[]`;

/**
 * The SELECTs of a period grouped by a zone's days (`dayStarts`), each row under its day's
 * start: every day's whole UTC days and hours from the rollups in one join on the days' ranges,
 * its partial hours from the jobs in another. A SELECT per piece of every day made a month's
 * statement some 200 KB of SQL, parsed and planned each time (Kathmandu's month took 395 ms
 * against 43 ms by UTC days). Each range is read by its own index scan, a lateral read that
 * `OFFSET 0` keeps from being merged into the join: merged, the planner hashed the rollups on
 * the grain and looped over the jobs, reading every row of both for a month (95 to 115 ms for
 * 95,000 rollup rows and 20,000 jobs, against 1 ms by UTC days).
 */
function zonedDaySelects(
  query: SumsQuery,
  pieces: (from: number, to: number) => PeriodPieces,
): SQL[] {
  const { dayGrain, hourGrain, workerFilter, jobsWorkerFilter } = grainsRead(query);
  const ranges: { day: number; grain: number; first: number; end: number }[] = [];
  const partial: { day: number; from: number; to: number }[] = [];
  for (const day of daysOfStarts(query)) {
    const cut = pieces(day.from, day.to);
    if (cut.days) ranges.push({ day: day.from, grain: dayGrain, ...cut.days });
    for (const h of cut.hours) {
      if (hourGrain !== null) ranges.push({ day: day.from, grain: hourGrain, ...h });
      else partial.push({ day: day.from, from: h.first * HOUR_MS, to: h.end * HOUR_MS });
    }
    for (const p of cut.partial) partial.push({ day: day.from, ...p });
  }
  const column = <R>(rows: readonly R[], of: (row: R) => number, type: "bigint" | "int") =>
    arrayOf(rows.map(of), type);
  const selects: SQL[] = [];
  if (ranges.length > 0) {
    selects.push(sql`SELECT r.zone_day AS grp, ${sql.raw(rollupFigureSums)},
        false AS backfill_pending
      FROM unnest(${column(ranges, (r) => r.day, "bigint")},
        ${column(ranges, (r) => r.grain, "int")}, ${column(ranges, (r) => r.first, "int")},
        ${column(ranges, (r) => r.end, "int")}) AS r(zone_day, piece_grain, piece_first, piece_end)
      CROSS JOIN LATERAL (SELECT * FROM job_rollups WHERE grain = r.piece_grain
        AND ${workerFilter}day >= r.piece_first AND day < r.piece_end OFFSET 0) AS job_rollups
      GROUP BY r.zone_day`);
  }
  if (partial.length > 0) {
    selects.push(sql`SELECT grp, ${sql.raw(byVerdict.outer)}, false AS backfill_pending FROM (
        SELECT p.zone_day AS grp, ${sql.raw(byVerdict.inner)}
        FROM unnest(${column(partial, (p) => p.day, "bigint")},
          ${column(partial, (p) => p.from, "bigint")}, ${column(partial, (p) => p.to, "bigint")})
          AS p(zone_day, piece_from, piece_to)
        CROSS JOIN LATERAL (SELECT * FROM jobs WHERE ${jobsWorkerFilter}created_at >= p.piece_from
          AND created_at < p.piece_to OFFSET 0) AS jobs
        GROUP BY 1, verdict) AS per_verdict
      GROUP BY grp`);
  }
  return selects;
}

/** The SELECTs of a period cut into `pieces`; with `dayStarts`, by the days that start there. */
function periodSelects(
  query: SumsQuery,
  pieces: (from: number, to: number) => PeriodPieces,
): SQL[] {
  if (query.dayStarts === undefined || query.groupBy !== "day") {
    return groupSumsPieces(query, pieces(query.from, query.to));
  }
  return zonedDaySelects(query, pieces);
}

/** Conditions of the job listings; `order` says which way the keyset cursor points. */
function listingWhere(filter: JobRowFilter, cursor: JobCursor | null, order: "asc" | "desc") {
  const clauses: SQL[] = [];
  if (filter.verdict !== undefined) clauses.push(eq(jobs.verdict, filter.verdict));
  if (filter.worker !== undefined)
    clauses.push(sql`${sql.raw(reportWorkerSql())} = ${filter.worker}`);
  if (filter.model !== undefined) clauses.push(eq(jobs.model, filter.model));
  if (filter.keyFingerprint !== undefined)
    clauses.push(eq(jobs.keyFingerprint, filter.keyFingerprint));
  if (filter.from !== undefined) clauses.push(gte(jobs.createdAt, filter.from));
  if (filter.to !== undefined) clauses.push(lt(jobs.createdAt, filter.to));
  if (cursor) {
    // Strictly after the last row seen, in the listing's order; the plain bound on created_at
    // lets the index seek. job_id compares bytewise (COLLATE "C"), as SQLite compares it, so a
    // database with a linguistic collation pages in the same order.
    const after =
      order === "asc"
        ? sql`(${jobs.createdAt}, ${jobs.jobId} COLLATE "C") > (${cursor.createdAt}, ${cursor.jobId})`
        : sql`(${jobs.createdAt}, ${jobs.jobId} COLLATE "C") < (${cursor.createdAt}, ${cursor.jobId})`;
    clauses.push(
      order === "asc"
        ? gte(jobs.createdAt, cursor.createdAt)
        : lte(jobs.createdAt, cursor.createdAt),
      after,
    );
  }
  return and(...clauses);
}

/** The listing's order: by creation, then job id bytewise. */
const listingOrder = (order: "asc" | "desc") =>
  order === "asc"
    ? [asc(jobs.createdAt), sql`${jobs.jobId} COLLATE "C" ASC`]
    : [desc(jobs.createdAt), sql`${jobs.jobId} COLLATE "C" DESC`];

/** A job as the listings show it (tags as the JSON text it was stored as). */
const jobRowColumns = {
  job_id: jobs.jobId,
  created_at: jobs.createdAt,
  source: jobs.source,
  model: jobs.model,
  worker: jobs.worker,
  key_fingerprint: jobs.keyFingerprint,
  verdict: jobs.verdict,
  verdict_at: jobs.verdictAt,
  previous_verdict: jobs.previousVerdict,
  rejudge_reason: jobs.rejudgeReason,
  escrow_tx: jobs.escrowTx,
  settlement_tx: jobs.settlementTx,
  charged_units: jobs.chargedUnits,
  tags: sql<string>`${jobs.tags}::text`,
};

/** A stored transaction as the audit statement returns it: the fee as decimal text. */
type TransactionJson = Omit<AuditTransaction, "feeLamports"> & { feeLamports: string | null };

function transaction(t: TransactionJson | null): AuditTransaction | null {
  return t === null
    ? null
    : { ...t, feeLamports: t.feeLamports === null ? null : BigInt(t.feeLamports) };
}

/** Creates the reports' store module on PostgreSQL; fixed statements are prepared once. */
export function createPgReportsStore(store: PgStore): ReportsStore {
  const { db } = store;
  const jobId = sql.placeholder("jobId");
  // A job, its conflicting receipts, its checks and both its transactions in one statement,
  // so a lookup costs one round trip and one connection. The nested rows come back as JSON
  // with the field names the audit record reads: ids and times are JSON numbers (as the
  // number-mode columns map them), money is text made bigint below, JSON columns are embedded
  // as stored; names in bytewise order, as SQLite orders them. Outer columns are named with
  // their table: drizzle writes a lone table's columns unqualified, which inside a subquery
  // would name the subquery's own column.
  const transactionJson = (signature: SQL) => sql<TransactionJson | null>`(SELECT json_build_object(
      'state', t.state, 'commitment', t.commitment, 'slot', t.slot, 'blockTime', t.block_time,
      'feeLamports', t.fee_lamports::text, 'succeeded', t.succeeded, 'err', t.err,
      'facts', t.facts, 'fetchedAt', t.fetched_at)
    FROM chain_transactions t WHERE t.signature = ${signature})`;
  const auditJob = db
    .select({
      job: jobs,
      apiResponse: sql<unknown>`(SELECT a.response FROM job_api_answers a
        WHERE a.job_id = jobs.job_id)`,
      conflicts: sql<AuditRows["conflicts"]>`(SELECT coalesce(json_agg(json_build_object(
          'id', c.id, 'jobId', c.job_id, 'source', c.source, 'receipt', c.receipt,
          'differences', c.differences, 'receivedAt', c.received_at) ORDER BY c.id), '[]'::json)
        FROM receipt_conflicts c WHERE c.job_id = jobs.job_id)`,
      checks: sql<AuditRows["checks"]>`(SELECT coalesce(json_agg(json_build_object(
          'jobId', c.job_id, 'name', c.name, 'outcome', c.outcome, 'reason', c.reason,
          'expected', c.expected, 'actual', c.actual, 'runId', c.run_id,
          'checkedAt', c.checked_at) ORDER BY c.name COLLATE "C"), '[]'::json)
        FROM check_results c WHERE c.job_id = jobs.job_id)`,
      escrow: transactionJson(sql`jobs.escrow_tx`),
      settlement: transactionJson(sql`coalesce(jobs.settlement_tx, jobs.api_settlement_tx)`),
      // Every transaction the job names (receipt, jobs API, conflicting receipts), by
      // signature; each a primary-key lookup.
      named: sql<Record<string, TransactionJson>>`(SELECT coalesce(json_object_agg(t.signature,
          json_build_object(
            'state', t.state, 'commitment', t.commitment, 'slot', t.slot,
            'blockTime', t.block_time, 'feeLamports', t.fee_lamports::text,
            'succeeded', t.succeeded, 'err', t.err, 'facts', t.facts,
            'fetchedAt', t.fetched_at)), '{}'::json)
        FROM chain_transactions t WHERE t.signature IN (
          SELECT s FROM unnest(ARRAY[jobs.escrow_tx, jobs.api_escrow_tx, jobs.settlement_tx,
            jobs.api_settlement_tx]) AS s
          UNION SELECT e.value FROM json_array_elements_text(CASE
            WHEN json_typeof(jobs.conflict_signatures) = 'array' THEN jobs.conflict_signatures
            ELSE '[]'::json END) AS e))`,
    })
    .from(jobs)
    .where(eq(jobs.jobId, jobId))
    .prepare("reports_audit");
  // expected and actual as the JSON text stored (`json` keeps it byte for byte), as SQLite
  // hands back its TEXT; names bytewise, as SQLite orders them.
  const failingChecksOf = db
    .select({
      name: checkResults.name,
      reason: checkResults.reason,
      expected: sql<string | null>`${checkResults.expected}::text`,
      actual: sql<string | null>`${checkResults.actual}::text`,
    })
    .from(checkResults)
    .where(and(eq(checkResults.jobId, jobId), eq(checkResults.outcome, "fail")))
    .orderBy(sql`${checkResults.name} COLLATE "C"`)
    .prepare("reports_failing_checks");
  const backfillLeft = db
    .select({ one: sql`1` })
    .from(jobRollupsBackfill)
    .limit(1)
    .prepare("reports_backfill_left");

  const backfillMarker = sql.raw(
    `SELECT NULL AS grp, ${rollupFigureColumns.map((c) => `0 AS ${c}`).join(", ")},
       true AS backfill_pending WHERE EXISTS (SELECT 1 FROM job_rollups_backfill)`,
  );
  const complete = async () => (await backfillLeft.execute()).length === 0;

  /** Rows of a raw statement (aggregates: every value as the driver's text). */
  type Executor = Pick<typeof db, "execute">;
  const rowsOn = async (on: Executor, query: SQL) =>
    (await on.execute(query)).rows as Record<string, string | number | boolean | null>[];
  const rowsOf = (query: SQL) => rowsOn(db, query);

  const groupSums = (query: SumsQuery) => groupSumsOn(db, query);
  const groupSumsOn = async (on: Executor, query: SumsQuery): Promise<GroupSums[]> => {
    if (query.from >= query.to) return [];
    const whole = (from: number, to: number): PeriodPieces => ({
      days: null,
      hours: [],
      partial: [{ from, to }],
    });
    const fromJobs = () => rowsOn(on, sql.join(periodSelects(query, whole), sql` UNION ALL `));
    // One statement, so one round trip and one snapshot: the rollup pieces, and one marker row
    // when a backfill is still owed (the rollups are then incomplete: the whole period is read
    // from the jobs instead). Guarding the jobs branch inside the statement would not do: the
    // planner gives a month of jobs a parallel plan, whose workers start even when skipped.
    let rows =
      query.source === "jobs"
        ? await fromJobs()
        : await rowsOn(
            on,
            sql.join([...periodSelects(query, periodPieces), backfillMarker], sql` UNION ALL `),
          );
    if (rows.some((row) => row.backfill_pending === true)) rows = await fromJobs();
    return rows.map((row) => ({
      group: row.grp === null ? null : query.groupBy === "day" ? Number(row.grp) : String(row.grp),
      sums: bigintsOf(row, rollupFigureColumns),
    }));
  };

  // The oldest job of each verdict that is not final: one index probe each (jobs_verdict_created),
  // in one statement; least() ignores the verdicts that have no job.
  const openOldest = openVerdicts
    .map((v) => `(SELECT min(created_at) FROM jobs WHERE verdict = '${v}')`)
    .join(", ");
  const oldestOpen = sql.raw(`SELECT least(${openOldest}) AS oldest`);
  // With, in the same statement (a job moving between the two is seen in one of them), the
  // oldest final job whose credits.header is a skip naming the vault it waits on: the ledger's
  // read of that vault may reopen and fail it, so its figures may still move (the jobs the
  // ledger's review reads, through the partial index check_results_header_waiting).
  // Only a vault the ledger reads (one it has a cursor of, or a key's pinned vault) ever ends
  // the wait: a lock from any other account (the operator's choice) would hold it for good.
  // And the oldest final job the settlement backfill still asks the jobs API about, whose
  // answer sends it back to the verifier (index jobs_backfill). And the oldest job judged for
  // want of the treasury, decided again once it is learned (jobs_treasury_waiting).
  const completeUntil = sql.raw(
    `SELECT least(${openOldest}, (SELECT min(j.created_at) FROM check_results c
        JOIN jobs j ON j.job_id = c.job_id
        WHERE c.name = 'credits.header' AND c.outcome = 'skip' AND c.expected IS NOT NULL
          AND j.verdict IN (${finalVerdicts.map((v) => `'${v}'`).join(", ")})
          AND j.credits_remaining_units IS NOT NULL
          AND (EXISTS (SELECT 1 FROM ledger_cursors l WHERE l.vault = c.expected->>'vault')
            OR EXISTS (SELECT 1 FROM credit_vaults v WHERE v.vault = c.expected->>'vault'))),
      (SELECT min(created_at) FROM jobs WHERE backfill_state = 'pending'
        AND verdict IN (${finalVerdicts.map((v) => `'${v}'`).join(", ")})),
      (SELECT min(created_at) FROM jobs
        WHERE ${waitsForTreasuryText("verdict", "(unproven)::text")})) AS oldest`,
  );

  const countJobsByVerdict = async (from: number, to: number) => {
    const counts = Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
    const pieces: PeriodPieces = (await complete())
      ? periodPieces(from, to)
      : { days: null, hours: [], partial: [{ from, to }] };
    const ranges: SQL[] = [];
    if (pieces.days)
      ranges.push(
        sql`(grain = ${grains.model} AND day >= ${pieces.days.first} AND day < ${pieces.days.end})`,
      );
    for (const h of pieces.hours)
      ranges.push(sql`(grain = ${grains.hourModel} AND day >= ${h.first} AND day < ${h.end})`);
    const finalSums = countedVerdicts
      .map((v) => `coalesce(sum(${verdictCountColumn(v)}), 0) AS ${v}`)
      .join(", ");
    const partial = pieces.partial.map(
      (p) => sql`(created_at >= ${p.from} AND created_at < ${p.to})`,
    );
    // One snapshot for the three reads: a job turning final between them would otherwise be
    // counted twice (open, then in the rollups) or not at all.
    const [rolled, scratch, open] = await db.transaction(
      async (tx) => {
        const rows = async (query: SQL) =>
          (await tx.execute(query)).rows as Record<string, string | number | boolean | null>[];
        const rolledRows =
          ranges.length === 0
            ? null
            : await rows(
                sql`SELECT ${sql.raw(finalSums)} FROM job_rollups WHERE ${sql.join(ranges, sql` OR `)}`,
              );
        const scratchRows =
          partial.length === 0
            ? []
            : await rows(
                sql`SELECT verdict, count(*) AS n FROM jobs WHERE ${sql.join(partial, sql` OR `)}
              GROUP BY verdict`,
              );
        // Jobs not final yet: few, and not told apart by the rollups (index jobs_verdict_created).
        const openRows = await tx
          .select({ verdict: jobs.verdict, n: sql<string>`count(*)` })
          .from(jobs)
          .where(
            and(
              inArray(jobs.verdict, [...openVerdicts]),
              gte(jobs.createdAt, from),
              lt(jobs.createdAt, to),
            ),
          )
          .groupBy(jobs.verdict);
        return [rolledRows, scratchRows, openRows] as const;
      },
      { isolationLevel: "repeatable read", accessMode: "read only" },
    );
    const row = rolled?.[0];
    if (row) for (const v of countedVerdicts) counts[v] += Number(row[v]);
    for (const r of scratch) {
      const verdict = r.verdict as Verdict;
      if (countedVerdicts.includes(verdict)) counts[verdict] += Number(r.n);
    }
    for (const r of open) counts[r.verdict] = Number(r.n);
    return counts;
  };

  const scratchHours = (day: number) =>
    sql`SELECT ${sql.raw(String(grains.full))} AS grain, created_at / ${sql.raw(String(HOUR_MS))} AS bucket,
        model, ${sql.raw(reportWorkerSql())} AS worker, key_fingerprint, ${sql.raw(jobsFigureSumsPg)}
      FROM jobs WHERE created_at >= ${day * DAY_MS} AND created_at < ${(day + 1) * DAY_MS}
      GROUP BY 2, 3, 4, 5`;
  const storedOfDay = (day: number) =>
    sql`SELECT grain, day AS bucket, model, worker, key_fingerprint,
        ${sql.raw(rollupFigureColumns.join(", "))}
      FROM job_rollups
      WHERE (grain IN (${sql.raw(dayGrainList)}) AND day = ${day})
        OR (grain IN (${sql.raw(hourGrainList)}) AND day BETWEEN ${day * 24} AND ${day * 24 + 23})`;
  const rollupRows = (rows: Record<string, unknown>[]): RollupRow[] =>
    rows.map(
      (row) =>
        ({
          ...bigintsOf(row, ["grain", "bucket", ...rollupFigureColumns]),
          // NULL where SQLite holds x'': both read as "not recorded" (see rollup-recompute).
          model: row.model,
          worker: row.worker,
          key_fingerprint: row.key_fingerprint,
        }) as unknown as RollupRow,
    );

  /** `ReportsStore.rejudging` on `on`, each value bound as a parameter. */
  const rejudgingOn = async (
    on: Executor,
    { from, to, worker }: { from: number; to: number; worker?: string },
  ) => {
    const values = { from, to, worker };
    // Each parameter's place marked, then bound in its place.
    const text = rejudgingSql("postgres", (name) => `\u0000${name}\u0000`, worker !== undefined);
    const parts = text.split("\u0000");
    const query = sql.join(
      parts.map((part, i) =>
        i % 2 === 0 ? sql.raw(part) : sql`${values[part as keyof typeof values]}`,
      ),
      sql``,
    );
    return rejudgingRows(await rowsOn(on, query));
  };

  return {
    groupSums,
    async dataCompleteUntil(now) {
      const [row] = await rowsOf(completeUntil);
      const oldest = row?.oldest;
      return oldest === null || oldest === undefined ? now : Math.min(now, Number(oldest));
    },
    async oldestOpenJob(now) {
      const [row] = await rowsOf(oldestOpen);
      const oldest = row?.oldest;
      return oldest === null || oldest === undefined ? now : Math.min(now, Number(oldest));
    },
    countJobsByVerdict,
    rejudging: (query) => rejudgingOn(db, query),
    // One REPEATABLE READ, read-only transaction: both reads see one snapshot.
    sumsWithRejudging: (query) =>
      db.transaction(
        async (tx) => ({
          groups: await groupSumsOn(tx, query),
          rejudging: await rejudgingOn(tx, query),
        }),
        { isolationLevel: "repeatable read", accessMode: "read only" },
      ),
    rollupsComplete: complete,
    async rollupDayBounds() {
      const [b] = await rowsOf(
        sql.raw(`SELECT min(d) AS first, max(d) AS last FROM (
           SELECT (SELECT min(created_at) FROM jobs) / ${DAY_MS} AS d
           UNION ALL SELECT (SELECT max(created_at) FROM jobs) / ${DAY_MS}
           UNION ALL SELECT min(day) FROM job_rollups WHERE grain = ${grains.full}
           UNION ALL SELECT max(day) FROM job_rollups WHERE grain = ${grains.full}) AS bounds`),
      );
      return b === undefined || b.first === null || b.last === null
        ? null
        : { first: Number(b.first), last: Number(b.last) };
    },
    // Both reads see one snapshot: a REPEATABLE READ, read-only transaction (writers go on).
    rollupDay: (day) =>
      db.transaction(
        async (tx) => ({
          scratch: rollupRows((await tx.execute(scratchHours(day))).rows),
          stored: rollupRows((await tx.execute(storedOfDay(day))).rows),
        }),
        { isolationLevel: "repeatable read", accessMode: "read only" },
      ),
    async auditRows(id) {
      const [row] = await auditJob.execute({ jobId: id });
      if (!row) return null;
      return {
        job: row.job,
        apiResponse: row.apiResponse ?? null,
        conflicts: row.conflicts,
        checks: row.checks,
        transactions: {
          escrow: transaction(row.escrow),
          settlement: transaction(row.settlement),
          named: new Map(
            Object.entries(row.named ?? {}).map(([signature, t]) => [signature, transaction(t)!]),
          ),
        },
      } as AuditRows;
    },
    async jobRows(filter, cursor, order, limit) {
      return (await db
        .select(jobRowColumns)
        .from(jobs)
        .where(listingWhere(filter, cursor, order))
        .orderBy(...listingOrder(order))
        .limit(limit)) as JobRow[];
    },
    async failingJobRows(filter, check, cursor, order, limit) {
      // Each verdict is read in jobs_verdict_created order; a job's check rows are found by
      // the primary key (job_id, name).
      const failing = sql`EXISTS (SELECT 1 FROM check_results c WHERE c.job_id = ${jobs.jobId}
        AND c.outcome = 'fail'${check !== undefined ? sql` AND c.name = ${check}` : sql``})`;
      return (await db
        .select(jobRowColumns)
        .from(jobs)
        .where(and(listingWhere(filter, cursor, order), failing))
        .orderBy(...listingOrder(order))
        .limit(limit)) as JobRow[];
    },
    failingChecks: async (id) =>
      (await failingChecksOf.execute({ jobId: id })) as FailingCheckRow[],
  };
}
