import { and, asc, count, desc, eq, gte, inArray, lt, or, sql } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { checkResults, jobs, nightlyTurned, verificationRuns } from "../../db/pg/schema.js";
import { type Verdict, verdictIsOpen, verdicts } from "../../db/schema.js";
import { statusSpaces } from "../jobs-api-rules.js";
import {
  type HeadersNotJudged,
  headersNotJudgedWhere,
  type OpsStore,
  TURNED_READ_MAX,
  turnedRows,
} from "../ops.js";
import {
  conflictNotFinal,
  countedByLaterRun,
  countedInWindow,
  countedLate,
  datedNotCounted,
  leasedElsewhere,
  namesUnseenTransaction,
  recordedLate,
  sentBackElsewhereWhere,
  transactionsFinalAndRead,
  verdictRefusedOnHeldRow,
  waitingForDrop,
  waitingOnRpc,
} from "../queue-rules.js";

const unverified: Verdict[] = ["discrepancy", "dropped", "unverifiable"];

/**
 * The job's row is one another session holds locked (an operator's `SELECT … FOR UPDATE`, a
 * long transaction that wrote it): no claim takes it and no verdict write waits for it (both
 * `SKIP LOCKED`), so the job stays open for that, not for the chain. Asked by locking the row
 * `FOR SHARE SKIP LOCKED` for the statement's instant, never waiting.
 */
// The outer row's column is named with its table: a column in a select list is rendered
// unqualified, and `job_id` inside the subquery was `held`'s own, so no row was ever held.
const rowHeldElsewhere = sql<unknown>`NOT EXISTS (SELECT 1 FROM ${jobs} AS held
  WHERE held.job_id = ${jobs}.${sql.identifier(jobs.jobId.name)} FOR SHARE OF held SKIP LOCKED)`;

/**
 * The operations queries on PostgreSQL (see src/store/ops.ts); reads only. `walBytes` is 0:
 * the write-ahead log is the server's, shared by every database on it, not a file of this
 * store (the metric is SQLite's -wal file).
 */
export function createPgOpsStore(store: PgStore): OpsStore {
  const { db } = store;
  /** `rows` with the names of each one's failing checks: the checks of all of them in one read. */
  const withFailingChecks = async <T extends { jobId: string }>(rows: T[]) => {
    if (rows.length === 0) return [];
    const failing = await db
      .select({ jobId: checkResults.jobId, name: checkResults.name })
      .from(checkResults)
      .where(
        and(
          inArray(
            checkResults.jobId,
            rows.map((r) => r.jobId),
          ),
          eq(checkResults.outcome, "fail"),
        ),
      )
      .orderBy(sql`${checkResults.name} COLLATE "C"`);
    return rows.map((row) => ({
      ...row,
      failingChecks: failing.filter((c) => c.jobId === row.jobId).map((c) => c.name),
    }));
  };
  const from = sql.placeholder("from");
  const to = sql.placeholder("to");
  const exists = db
    .select({ jobId: jobs.jobId })
    .from(jobs)
    .where(eq(jobs.jobId, sql.placeholder("jobId")))
    .prepare("ops_job_exists");
  const open = db
    .select({ n: count() })
    .from(jobs)
    .where(verdictIsOpen(jobs.verdict))
    .prepare("ops_open_jobs");
  // As on SQLite: a job due at once (0) became due when it was last written.
  const oldestDue = db
    .select({
      at: sql<string | null>`least(
        (SELECT min(${jobs.nextVerifyAt}) FROM ${jobs}
          WHERE ${verdictIsOpen(jobs.verdict)} AND ${jobs.nextVerifyAt} > 0),
        (SELECT min(${jobs.updatedAt}) FROM ${jobs}
          WHERE ${verdictIsOpen(jobs.verdict)} AND ${jobs.nextVerifyAt} = 0))`,
    })
    .from(sql`(SELECT 1) AS one`)
    .prepare("ops_oldest_due");
  const withVerdict = db
    .select({ n: count() })
    .from(jobs)
    .where(eq(jobs.verdict, sql.placeholder("verdict")))
    .prepare("ops_jobs_with_verdict");
  const trouble = db
    .select({
      n: count(),
      oldest: sql<string | null>`min(${jobs.createdAt})`,
      lastAt: sql<string | null>`max(${jobs.updatedAt})`,
    })
    .from(jobs)
    .where(waitingOnRpc(jobs))
    .prepare("ops_rpc_trouble");
  const lastTrouble = db
    .select({ lastError: jobs.lastError })
    .from(jobs)
    .where(waitingOnRpc(jobs))
    .orderBy(desc(jobs.updatedAt))
    .limit(1)
    .prepare("ops_rpc_trouble_last");
  const heldRows = db
    .select({ n: count(), lastError: sql<string | null>`max(${jobs.lastError})` })
    .from(jobs)
    .where(verdictRefusedOnHeldRow(jobs))
    .prepare("ops_held_row_refusals");
  // job_id bytewise (COLLATE "C") breaks ties as SQLite does.
  const unverifiedInWindow = db
    .select({ jobId: jobs.jobId, verdict: jobs.verdict })
    .from(jobs)
    .where(and(inArray(jobs.verdict, unverified), countedInWindow(jobs, from, to)))
    .orderBy(asc(jobs.createdAt), sql`${jobs.jobId} COLLATE "C"`)
    .limit(sql.placeholder("limit"))
    .prepare("ops_unverified_jobs");
  const openGroups = db
    .select({
      verdict: jobs.verdict,
      source: jobs.source,
      backfillState: jobs.backfillState,
      noSettlement: sql<unknown>`(${jobs.settlementTx} IS NULL AND ${jobs.apiSettlementTx} IS NULL)`,
      answered: sql<unknown>`(${jobs.apiCheckedAt} IS NOT NULL AND (${jobs.apiSettlementTx} IS NOT NULL
        OR lower(btrim(${jobs.apiStatus}, ${statusSpaces})) IN ('refunded', 'failed')))`,
      unseen: namesUnseenTransaction(jobs),
      finalAndRead: transactionsFinalAndRead(jobs),
      waitingForDrop: waitingForDrop(jobs),
      leased: leasedElsewhere(jobs, sql.placeholder("owner")),
      conflictOpen: conflictNotFinal(),
      held: rowHeldElsewhere,
      refusedOnHeldRow: verdictRefusedOnHeldRow(jobs),
      refusal: sql<
        string | null
      >`max(CASE WHEN ${verdictRefusedOnHeldRow(jobs)} THEN ${jobs.lastError} END)`,
      n: count(),
    })
    .from(jobs)
    .where(and(verdictIsOpen(jobs.verdict), countedInWindow(jobs, from, to)))
    .groupBy(
      sql`1`,
      sql`2`,
      sql`3`,
      sql`4`,
      sql`5`,
      sql`6`,
      sql`7`,
      sql`8`,
      sql`9`,
      sql`10`,
      sql`11`,
      sql`12`,
    )
    .prepare("ops_open_job_groups");

  const late = db
    .select({ verdict: jobs.verdict, n: count() })
    .from(jobs)
    .where(recordedLate(jobs, from, to))
    .groupBy(jobs.verdict)
    .prepare("ops_recorded_late");
  const notCounted = db
    .select({ verdict: jobs.verdict, n: count() })
    .from(jobs)
    .where(datedNotCounted(jobs, from, to))
    .groupBy(jobs.verdict)
    .prepare("ops_dated_not_counted");
  const lateCounted = db
    .select({ verdict: jobs.verdict, n: count() })
    .from(jobs)
    .where(countedLate(jobs, from, to))
    .groupBy(jobs.verdict)
    .prepare("ops_counted_late");

  // `json` has no equality operator: partial jobs are grouped by the text of `unproven`.
  const unproven = db
    .select({ unproven: sql<string | null>`${jobs.unproven}::text`, n: count() })
    .from(jobs)
    .where(and(eq(jobs.verdict, "partially_verified"), countedInWindow(jobs, from, to)))
    .groupBy(sql`${jobs.unproven}::text`)
    .prepare("ops_unproven_counts");

  /** `headersNotJudgedWhere` with the window's bounds as parameters. */
  const notJudgedWhere = (fromMs: number, toMs: number) =>
    sql.join(
      headersNotJudgedWhere("c.expected->>'vault'")
        .split(/(\$from|\$to)/)
        .map((part) =>
          part === "$from" ? sql`${fromMs}` : part === "$to" ? sql`${toMs}` : sql.raw(part),
        ),
      sql.raw(""),
    );

  return {
    async headersNotJudged(fromMs, toMs, limit) {
      const where = notJudgedWhere(fromMs, toMs);
      const { rows } = await db.execute<{ n: string; latest: string | null }>(
        sql`SELECT count(*) AS n, max(j.recorded_at) AS latest
            FROM check_results c JOIN jobs j ON j.job_id = c.job_id WHERE ${where}`,
      );
      const n = Number(rows[0]?.n ?? 0);
      if (n === 0) return { jobs: 0, latestRecordedAt: null, first: [] };
      const first = await db.execute<{ job_id: string; vault: string; recorded_at: string }>(
        sql`SELECT j.job_id, c.expected->>'vault' AS vault, j.recorded_at
            FROM check_results c JOIN jobs j ON j.job_id = c.job_id WHERE ${where}
            ORDER BY j.created_at, j.job_id COLLATE "C" LIMIT ${limit}`,
      );
      return {
        jobs: n,
        latestRecordedAt: rows[0]?.latest == null ? null : Number(rows[0].latest),
        first: first.rows.map((r): HeadersNotJudged["first"][number] => ({
          jobId: r.job_id,
          vault: r.vault,
          recordedAt: Number(r.recorded_at),
        })),
      };
    },
    async jobsCreatedSince(since) {
      return db.select().from(jobs).where(gte(jobs.createdAt, since));
    },
    async ping() {
      await db.execute(sql`SELECT 1`);
    },
    async jobExists(jobId) {
      return (await exists.execute({ jobId })).length > 0;
    },
    async countOpenJobs() {
      return Number((await open.execute())[0]?.n ?? 0);
    },
    async countJobsWithVerdict(verdict) {
      return Number((await withVerdict.execute({ verdict }))[0]?.n ?? 0);
    },
    async rpcTrouble() {
      const row = (await trouble.execute())[0];
      const n = Number(row?.n ?? 0);
      const held = (await heldRows.execute())[0];
      const heldRowJobs = { jobs: Number(held?.n ?? 0), lastError: held?.lastError ?? null };
      if (n === 0) {
        return {
          jobs: 0,
          oldestCreatedAt: null,
          lastAt: null,
          lastError: null,
          heldRows: heldRowJobs,
        };
      }
      return {
        jobs: n,
        oldestCreatedAt: Number(row?.oldest),
        lastAt: Number(row?.lastAt),
        lastError: (await lastTrouble.execute())[0]?.lastError ?? null,
        heldRows: heldRowJobs,
      };
    },
    async oldestDueAt() {
      const at = (await oldestDue.execute())[0]?.at;
      return at === null || at === undefined ? null : Number(at);
    },
    async unverifiedJobs(fromMs, toMs, limit) {
      const rows = await unverifiedInWindow.execute({ from: fromMs, to: toMs, limit });
      if (rows.length === 0) return [];
      return withFailingChecks(rows);
    },
    async notCountedIn(jobIds, fromMs, toMs) {
      if (jobIds.length === 0) return [];
      const rows = await db
        .select({
          jobId: jobs.jobId,
          verdict: jobs.verdict,
          datedBefore: sql<boolean>`${jobs.createdAt} < ${fromMs}`,
        })
        .from(jobs)
        .where(
          and(
            inArray(jobs.jobId, [...jobIds]),
            or(lt(jobs.createdAt, fromMs), countedByLaterRun(jobs, toMs, verificationRuns)),
            sql`NOT (${countedInWindow(jobs, fromMs, toMs)})`,
          ),
        )
        .orderBy(asc(jobs.createdAt), sql`${jobs.jobId} COLLATE "C"`);
      return withFailingChecks(
        rows.map(({ datedBefore, ...row }) => ({
          ...row,
          verdict: row.verdict as Verdict,
          window: datedBefore ? ("earlier" as const) : ("later" as const),
        })),
      );
    },
    async sentBackElsewhere(fromMs, toMs, limit) {
      const where = sentBackElsewhereWhere(jobs, verificationRuns, fromMs, toMs);
      const rows = await db
        .select({ jobId: jobs.jobId, previousVerdict: jobs.previousVerdict })
        .from(jobs)
        .where(where)
        .orderBy(asc(jobs.nextVerifyAt), asc(jobs.createdAt), sql`${jobs.jobId} COLLATE "C"`)
        .limit(limit);
      const total =
        rows.length < limit
          ? rows.length
          : Number((await db.select({ n: count() }).from(jobs).where(where))[0]?.n ?? rows.length);
      return {
        jobs: rows.map((r) => ({ jobId: r.jobId, previousVerdict: r.previousVerdict as Verdict })),
        total,
      };
    },
    async turnedBad(fromMs, toMs) {
      const rows = await db
        .select({
          jobId: nightlyTurned.jobId,
          turnedAt: nightlyTurned.turnedAt,
          verdict: jobs.verdict,
          datedBefore: sql<boolean>`${jobs.createdAt} < ${fromMs}`,
          countedLater: sql<boolean>`coalesce(${countedByLaterRun(jobs, toMs, verificationRuns)}, false)`,
          counted: sql<boolean>`coalesce(${countedInWindow(jobs, fromMs, toMs)}, false)`,
        })
        .from(nightlyTurned)
        .leftJoin(jobs, eq(jobs.jobId, nightlyTurned.jobId))
        .orderBy(asc(jobs.createdAt), sql`${nightlyTurned.jobId} COLLATE "C"`)
        .limit(TURNED_READ_MAX);
      const { named, done } = turnedRows(
        rows.map((r) => ({
          jobId: r.jobId,
          turnedAt: Number(r.turnedAt),
          verdict: (r.verdict ?? null) as Verdict | null,
          datedBefore: r.datedBefore === true,
          countedLater: r.countedLater === true,
          counted: r.counted === true,
        })),
      );
      return { named: await withFailingChecks(named), done };
    },
    async forgetTurned(done) {
      if (done.length === 0) return;
      await db.transaction(async (tx) => {
        for (const r of done) {
          await tx
            .delete(nightlyTurned)
            .where(and(eq(nightlyTurned.jobId, r.jobId), eq(nightlyTurned.turnedAt, r.turnedAt)));
        }
      });
    },
    async openJobGroups(fromMs, toMs, owner) {
      const rows = await openGroups.execute({ from: fromMs, to: toMs, owner: owner ?? "" });
      return rows.map(({ refusedOnHeldRow: _, ...row }) => ({
        ...row,
        verdict: row.verdict as Verdict,
        noSettlement: Boolean(row.noSettlement),
        answered: Boolean(row.answered),
        unseen: Boolean(row.unseen),
        finalAndRead: Boolean(row.finalAndRead),
        waitingForDrop: Boolean(row.waitingForDrop),
        leased: Boolean(row.leased),
        conflictOpen: Boolean(row.conflictOpen),
        held: Boolean(row.held),
        n: Number(row.n),
      }));
    },
    async recordedLateByVerdict(fromMs, toMs) {
      const counts = Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
      for (const row of await late.execute({ from: fromMs, to: toMs })) {
        counts[row.verdict] = Number(row.n);
      }
      return counts;
    },
    async countedAdjustByVerdict(fromMs, toMs) {
      const none = () => Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
      const adjust = { notCounted: none(), late: none() };
      const window = { from: fromMs, to: toMs };
      for (const row of await notCounted.execute(window)) {
        adjust.notCounted[row.verdict] = Number(row.n);
      }
      for (const row of await lateCounted.execute(window)) adjust.late[row.verdict] = Number(row.n);
      return adjust;
    },
    async unprovenCounts(fromMs, toMs) {
      const counts: Record<string, number> = {};
      for (const row of await unproven.execute({ from: fromMs, to: toMs })) {
        const codes = row.unproven === null ? null : (JSON.parse(row.unproven) as string[] | null);
        for (const code of codes ?? ["unknown"]) counts[code] = (counts[code] ?? 0) + Number(row.n);
      }
      return counts;
    },
    async walBytes() {
      return 0;
    },
  };
}
