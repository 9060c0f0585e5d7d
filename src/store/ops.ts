import { statSync } from "node:fs";
import { and, asc, count, desc, eq, gte, inArray, lt, or, sql } from "drizzle-orm";
import type { SqliteStore, Store } from "../db/client.js";
import {
  checkResults,
  jobs,
  nightlyTurned,
  openVerdicts,
  type Verdict,
  verdictIsOpen,
  verdicts,
  verificationRuns,
} from "../db/schema.js";
import { statusSpaces } from "./jobs-api-rules.js";
import { pgTwins } from "./pg-twins.js";
import { perConnectionModule } from "./prepared.js";
import {
  conflictNotFinal,
  countedByLaterRun,
  countedInWindow,
  countedLate,
  datedNotCounted,
  leasedElsewhere,
  namesUnseenTransaction,
  type OpenJobGroup,
  recordedLate,
  sentBackElsewhereWhere,
  transactionsFinalAndRead,
  verdictRefusedOnHeldRow,
  waitingForDrop,
  waitingOnRpc,
} from "./queue-rules.js";

/** A job of a window that did not end verified. */
/** Verdicts that fail a nightly run (exit 1). */
export const failsRun = (verdict: Verdict) =>
  verdict === "discrepancy" || verdict === "dropped" || verdict === "unverifiable";

/** The most rows of `nightly_turned` one run reads: the rest wait for the next (a profile
 * change may turn thousands of jobs at once). */
export const TURNED_READ_MAX = 1000;

/**
 * A job of another window than a run's, counted by that window's run: `earlier`, dated before
 * the run's window; `later`, dated after it, in a window the runs have counted already
 * (`countedByLaterRun`).
 */
export interface OtherWindowJob extends UnverifiedJob {
  window: "earlier" | "later";
  failingChecks: string[];
}

/** What `turnedBad` found (see there). */
export interface TurnedBad {
  named: OtherWindowJob[];
  done: { jobId: string; turnedAt: number }[];
}

/** Which rows of `nightly_turned` a run of a window names, and which it is done with. */
export function turnedRows(
  rows: readonly {
    jobId: string;
    turnedAt: number;
    verdict: Verdict | null;
    datedBefore: boolean;
    /** Dated after the window, in one the runs have counted already (`countedByLaterRun`). */
    countedLater: boolean;
    counted: boolean;
  }[],
): { named: Omit<OtherWindowJob, "failingChecks">[]; done: TurnedBad["done"] } {
  const named: Omit<OtherWindowJob, "failingChecks">[] = [];
  const done: TurnedBad["done"] = [];
  for (const r of rows) {
    const bad = r.verdict !== null && failsRun(r.verdict);
    const names = bad && (r.datedBefore || r.countedLater) && !r.counted;
    if (names) {
      const window = r.datedBefore ? "earlier" : "later";
      named.push({ jobId: r.jobId, verdict: r.verdict as Verdict, window });
    }
    const clean = r.verdict === "verified" || r.verdict === "partially_verified";
    if (names || (bad && r.counted) || clean || r.verdict === null) {
      done.push({ jobId: r.jobId, turnedAt: r.turnedAt });
    }
  }
  return { named, done };
}

export interface UnverifiedJob {
  jobId: string;
  verdict: Verdict;
}

/**
 * Jobs waiting on RPC trouble: their last round could not read the chain (`error`) or the
 * endpoints disagreed (`rpc_disagreement`). They are retried with backoff, so none is overdue,
 * yet their figures cannot move until the RPC answers.
 */
export interface RpcTrouble {
  jobs: number;
  /** When the oldest of them was recorded: the figures from then on wait on the RPC. */
  oldestCreatedAt: number | null;
  /** The latest round that ended in trouble, and what it said. */
  lastAt: number | null;
  lastError: string | null;
  /**
   * Jobs parked as `error` because their verdict write was refused on a row another database
   * session held locked (`verdictRefusedOnHeldRow`): no RPC was in trouble. Not in `jobs`.
   */
  heldRows: { jobs: number; lastError: string | null };
}

/**
 * What operations ask of the store: readiness, metrics and the nightly run's summary. Reads
 * only; each method is one query.
 */
export interface OpsStore {
  /** Resolves when the database answers a query; rejects with its error otherwise. */
  ping(): Promise<void>;
  /** Whether a job of this id is recorded. */
  jobExists(jobId: string): Promise<boolean>;
  /** Jobs without a final verdict (the verification queue's depth). */
  countOpenJobs(): Promise<number>;
  /** Jobs waiting on RPC trouble: how many, the oldest, the last error. */
  rpcTrouble(): Promise<RpcTrouble>;
  /** Jobs whose verdict is `verdict`, whenever created. */
  countJobsWithVerdict(verdict: Verdict): Promise<number>;
  /**
   * When the open job due soonest became due (ms since epoch), or null with no open job: how
   * far the verifier is behind its own schedule. A job due "at once" (`next_verify_at` 0: new,
   * or reopened by hand) became due when it was last written (`updated_at`).
   */
  oldestDueAt(): Promise<number | null>;
  /**
   * Jobs [from, to) counts (`countedInWindow`) that ended discrepancy, dropped or unverifiable,
   * oldest first, at most `limit`, each with the names of its failing checks.
   */
  unverifiedJobs(
    from: number,
    to: number,
    limit: number,
  ): Promise<(UnverifiedJob & { failingChecks: string[] })[]>;
  /**
   * Of `jobIds`, those of other windows, not counted by [from, to) (`countedInWindow`): dated
   * before `from` (`earlier`), or after the window in one the runs have counted already
   * (`later`, `countedByLaterRun`), oldest first, with their verdicts and the names of their
   * failing checks. A job dated after the window whose window no run has counted is its own
   * window's run's to judge.
   */
  notCountedIn(jobIds: readonly string[], from: number, to: number): Promise<OtherWindowJob[]>;
  /**
   * Jobs sent back to be judged again (`previous_verdict` set: a reverify, a profile's new rule,
   * a conflicting receipt, a ledger line read late) and open now, of other windows than
   * [from, to) as `notCountedIn` takes them: no run of their own window comes again, so with no
   * `serve` they wait for a run to judge them. The first `limit` by when each falls due
   * (`next_verify_at`; the oldest first among those due alike), with the verdict each was sent
   * back from, and how many there are in all. A job a run tried and left open (in
   * `rpc_disagreement`, say, or waiting on its transactions) falls due after that try, so it
   * goes behind those not tried since: by age alone, 1,000 such jobs held every place of every
   * run, and the newer ones behind them were never judged.
   */
  sentBackElsewhere(from: number, to: number, limit: number): Promise<SentBackElsewhere>;
  /**
   * The jobs a later verdict turned from verified to one failing a run (`nightly_turned`), for
   * the run of [from, to), the oldest `TURNED_READ_MAX`: `named`, those of other windows (as
   * `notCountedIn` takes them) whose verdict still fails a run, oldest first, with their
   * failing checks; `done`, the rows the run deals with, for `forgetTurned`: those, those of
   * jobs the window counts with a verdict failing it, and those of jobs verified again or gone.
   * Rows of jobs open now (sent back again: forgotten, the job's next turn from `discrepancy`
   * writes none) and of jobs dated after the window whose window no run has counted stay. Read
   * before the run's counts: a job the window counts, turned after the counts were read, stays
   * for the next run.
   */
  turnedBad(from: number, to: number): Promise<TurnedBad>;
  /** Forgets the rows `turnedBad` named done (a row written again since stays). */
  forgetTurned(done: TurnedBad["done"]): Promise<void>;
  /**
   * Open jobs [from, to) counts (`countedInWindow`), grouped by what tells what they wait on
   * (`openJobWait`); `owner`, the verifier whose own leases are not another's (`leasedElsewhere`).
   */
  openJobGroups(from: number, to: number, owner?: string): Promise<OpenJobGroup[]>;
  /**
   * Jobs recorded in [from, to) but dated before it, by verdict: the window judges them (see
   * `jobInWindow`) while the rollups count them on the day they are dated.
   */
  recordedLateByVerdict(from: number, to: number): Promise<Record<Verdict, number>>;
  /**
   * What the nightly count of [from, to) (`countedInWindow`) differs by from the rollups' count
   * of the jobs dated in it, by verdict: `notCounted`, dated in it but counted by another window
   * or by none yet (`datedNotCounted`); `late`, recorded in it and counted by it (`countedLate`).
   */
  countedAdjustByVerdict(
    from: number,
    to: number,
  ): Promise<{ notCounted: Record<Verdict, number>; late: Record<Verdict, number> }>;
  /**
   * Jobs of [from, to) (`jobInWindow`) verified or partially verified while their credits
   * header still waits for the ledger to read their credit vault past their response (the
   * verifier's skip names the vault; only a vault the ledger reads, as the reports count
   * them): how many, the latest recording among them, and the first `limit`, oldest first.
   * A receipt recorded after the run's read of the ledger is judged with its header a skip: the
   * run, called verified, had not judged it in full.
   */
  headersNotJudged(from: number, to: number, limit: number): Promise<HeadersNotJudged>;
  /**
   * Partially verified jobs [from, to) counts (`countedInWindow`) by what was left unproven
   * (`unknown` when unsaid).
   */
  unprovenCounts(from: number, to: number): Promise<Record<string, number>>;
  /** Every job created at or after `from`, whole rows (the demo compares them with its truth). */
  jobsCreatedSince(from: number): Promise<(typeof jobs.$inferSelect)[]>;
  /** Size of the database's -wal file in bytes. */
  walBytes(): Promise<number>;
}

/** What `sentBackElsewhere` finds. */
export interface SentBackElsewhere {
  jobs: { jobId: string; previousVerdict: Verdict }[];
  total: number;
}

const unverified: Verdict[] = ["discrepancy", "dropped", "unverifiable"];

/** What `headersNotJudged` finds in a window. */
export interface HeadersNotJudged {
  jobs: number;
  /** The latest recording (ms) among them; null when none. */
  latestRecordedAt: number | null;
  /** The first of them, oldest first, with the vault each waits on. */
  first: { jobId: string; vault: string; recordedAt: number }[];
}

/**
 * The verdicts a run counts as no finding (`headersNotJudged`): a credits header left a skip
 * under them makes the run's "verified" a claim it did not prove.
 */
export const verdictsCalledVerified: readonly Verdict[] = ["verified", "partially_verified"];

/**
 * The terms of `headersNotJudged` past the partial index `check_results_header_waiting` (whose
 * own terms come first), over `check_results c` and `jobs j`, written out for both dialects:
 * the window as `jobInWindow` takes it, the vault as the reports take it (one the ledger reads).
 * `vaultOf` is the dialect's read of the json field.
 */
export function headersNotJudgedWhere(vaultOf: string): string {
  return `c.name = 'credits.header' AND c.outcome = 'skip' AND c.expected IS NOT NULL
    AND j.verdict IN (${verdictsCalledVerified.map((v) => `'${v}'`).join(", ")})
    AND j.credits_remaining_units IS NOT NULL
    AND ((j.created_at >= $from AND j.created_at < $to)
      OR (j.recorded_at >= $from AND j.recorded_at < $to AND j.created_at < $from
        AND j.created_at < j.recorded_at))
    AND (EXISTS (SELECT 1 FROM ledger_cursors l WHERE l.vault = ${vaultOf})
      OR EXISTS (SELECT 1 FROM credit_vaults v WHERE v.vault = ${vaultOf}))`;
}

/** Size of the store's -wal file, 0 when there is none (`:memory:`, or just truncated). */
export function walFileBytes(store: SqliteStore): number {
  const path = store.sqlite.name;
  if (store.sqlite.memory || path === "" || path === ":memory:") return 0;
  try {
    return statSync(`${path}-wal`).size;
  } catch {
    return 0;
  }
}

/** The ops store of either dialect. */
export function createOpsStore(store: Store): OpsStore {
  return store.kind === "postgres" ? pgTwins().createPgOpsStore(store) : sqliteOpsStore(store);
}

const sqliteOpsStore = perConnectionModule(createSqliteOpsStore);

/** The operations queries over `store`, prepared once. */
function createSqliteOpsStore(store: SqliteStore): OpsStore {
  const { db } = store;
  const from = sql.placeholder("from");
  const to = sql.placeholder("to");
  // Raw: a query with no table; drizzle has no builder for it.
  const ping = store.sqlite.prepare("SELECT 1");
  const exists = db
    .select({ jobId: jobs.jobId })
    .from(jobs)
    .where(eq(jobs.jobId, sql.placeholder("jobId")))
    .prepare();
  const open = db.select({ n: count() }).from(jobs).where(verdictIsOpen(jobs.verdict)).prepare();
  // The planner would walk every open job by the (verdict, created_at) index; the partial
  // index of open jobs by due time answers min() from its first entry.
  // Both from the partial index of open jobs by due time: the first entry past 0, and the jobs
  // due at once (those not claimed yet: a few, or an import's backlog).
  const isOpen = `verdict IN (${openVerdicts.map((v) => `'${v}'`).join(", ")})`;
  const oldestDue = store.sqlite
    .prepare(
      `SELECT min(at) FROM (
         SELECT min(next_verify_at) AS at FROM jobs INDEXED BY jobs_open_due
           WHERE ${isOpen} AND next_verify_at > 0
         UNION ALL
         SELECT min(updated_at) FROM jobs INDEXED BY jobs_open_due
           WHERE ${isOpen} AND next_verify_at = 0)`,
    )
    .pluck();
  const withVerdict = db
    .select({ n: count() })
    .from(jobs)
    .where(eq(jobs.verdict, sql.placeholder("verdict")))
    .prepare();
  const trouble = db
    .select({
      n: count(),
      oldest: sql<number | null>`min(${jobs.createdAt})`,
      lastAt: sql<number | null>`max(${jobs.updatedAt})`,
    })
    .from(jobs)
    .where(waitingOnRpc(jobs))
    .prepare();
  const lastTrouble = db
    .select({ lastError: jobs.lastError })
    .from(jobs)
    .where(waitingOnRpc(jobs))
    .orderBy(desc(jobs.updatedAt))
    .limit(1)
    .prepare();
  const heldRows = db
    .select({
      n: count(),
      lastError: sql<string | null>`max(${jobs.lastError})`,
    })
    .from(jobs)
    .where(verdictRefusedOnHeldRow(jobs))
    .prepare();
  const unverifiedInWindow = db
    .select({ jobId: jobs.jobId, verdict: jobs.verdict })
    .from(jobs)
    .where(and(inArray(jobs.verdict, unverified), countedInWindow(jobs, from, to)))
    .orderBy(asc(jobs.createdAt), asc(jobs.jobId))
    .limit(sql.placeholder("limit"))
    .prepare();
  // `+outcome` keeps SQLite on the primary key (job_id, name) should an index on the outcome
  // come back: it would scan every failing check of every job.
  const failing = db
    .select({ name: checkResults.name })
    .from(checkResults)
    .where(
      and(eq(checkResults.jobId, sql.placeholder("jobId")), sql`+${checkResults.outcome} = 'fail'`),
    )
    .orderBy(asc(checkResults.name))
    .prepare();
  const openGroups = db
    .select({
      verdict: jobs.verdict,
      source: jobs.source,
      backfillState: jobs.backfillState,
      noSettlement: sql<unknown>`(${jobs.settlementTx} IS NULL AND ${jobs.apiSettlementTx} IS NULL)`,
      answered: sql<unknown>`(${jobs.apiCheckedAt} IS NOT NULL AND (${jobs.apiSettlementTx} IS NOT NULL
        OR lower(trim(${jobs.apiStatus}, ${statusSpaces})) IN ('refunded', 'failed')))`,
      unseen: namesUnseenTransaction(jobs),
      finalAndRead: transactionsFinalAndRead(jobs),
      waitingForDrop: waitingForDrop(jobs),
      leased: leasedElsewhere(jobs, sql.placeholder("owner")),
      conflictOpen: conflictNotFinal(),
      n: count(),
    })
    .from(jobs)
    .where(and(verdictIsOpen(jobs.verdict), countedInWindow(jobs, from, to)))
    .groupBy(sql`1`, sql`2`, sql`3`, sql`4`, sql`5`, sql`6`, sql`7`, sql`8`, sql`9`, sql`10`)
    .prepare();

  const late = db
    .select({ verdict: jobs.verdict, n: count() })
    .from(jobs)
    .where(recordedLate(jobs, from, to))
    .groupBy(jobs.verdict)
    .prepare();
  const notCounted = db
    .select({ verdict: jobs.verdict, n: count() })
    .from(jobs)
    .where(datedNotCounted(jobs, from, to))
    .groupBy(jobs.verdict)
    .prepare();
  const lateCounted = db
    .select({ verdict: jobs.verdict, n: count() })
    .from(jobs)
    .where(countedLate(jobs, from, to))
    .groupBy(jobs.verdict)
    .prepare();

  // The few waiting checks drive the join (CROSS JOIN keeps them the outer loop), as in the
  // ledger's review and the reports.
  const vaultOf = "json_extract(c.expected, '$.vault')";
  const notJudgedFrom = `FROM check_results c INDEXED BY check_results_header_waiting
     CROSS JOIN jobs j ON j.job_id = c.job_id
     WHERE ${headersNotJudgedWhere(vaultOf).replaceAll("$from", "@from").replaceAll("$to", "@to")}`;
  const notJudgedCount = store.sqlite.prepare(
    `SELECT count(*) AS n, max(j.recorded_at) AS latest ${notJudgedFrom}`,
  );
  const notJudgedFirst = store.sqlite.prepare(
    `SELECT j.job_id AS jobId, ${vaultOf} AS vault, j.recorded_at AS recordedAt ${notJudgedFrom}
     ORDER BY j.created_at, j.job_id LIMIT @limit`,
  );

  const unproven = db
    .select({ unproven: jobs.unproven, n: count() })
    .from(jobs)
    .where(and(eq(jobs.verdict, "partially_verified"), countedInWindow(jobs, from, to)))
    .groupBy(jobs.unproven)
    .prepare();

  return {
    async jobsCreatedSince(since) {
      return db.select().from(jobs).where(gte(jobs.createdAt, since)).all();
    },
    async ping() {
      ping.get();
    },
    async jobExists(jobId) {
      return exists.get({ jobId }) !== undefined;
    },
    async countOpenJobs() {
      return open.get()?.n ?? 0;
    },
    async countJobsWithVerdict(verdict) {
      return withVerdict.get({ verdict })?.n ?? 0;
    },
    async rpcTrouble() {
      const row = trouble.get();
      const n = row?.n ?? 0;
      const held = heldRows.get();
      return {
        jobs: n,
        oldestCreatedAt: n === 0 ? null : Number(row?.oldest),
        lastAt: n === 0 ? null : Number(row?.lastAt),
        lastError: n === 0 ? null : (lastTrouble.get()?.lastError ?? null),
        heldRows: { jobs: held?.n ?? 0, lastError: held?.lastError ?? null },
      };
    },
    async oldestDueAt() {
      return (oldestDue.get() as number | null) ?? null;
    },
    async unverifiedJobs(fromMs, toMs, limit) {
      return unverifiedInWindow.all({ from: fromMs, to: toMs, limit }).map((row) => ({
        ...row,
        failingChecks: failing.all({ jobId: row.jobId }).map((c) => c.name),
      }));
    },
    async notCountedIn(jobIds, fromMs, toMs) {
      if (jobIds.length === 0) return [];
      const rows = db
        .select({
          jobId: jobs.jobId,
          verdict: jobs.verdict,
          datedBefore: sql<number>`${jobs.createdAt} < ${fromMs}`,
        })
        .from(jobs)
        .where(
          and(
            inArray(jobs.jobId, [...jobIds]),
            or(lt(jobs.createdAt, fromMs), countedByLaterRun(jobs, toMs, verificationRuns)),
            sql`NOT (${countedInWindow(jobs, fromMs, toMs)})`,
          ),
        )
        .orderBy(asc(jobs.createdAt), asc(jobs.jobId))
        .all();
      return rows.map(({ datedBefore, ...row }) => ({
        ...row,
        window: datedBefore ? "earlier" : "later",
        failingChecks: failing.all({ jobId: row.jobId }).map((c) => c.name),
      }));
    },
    async sentBackElsewhere(fromMs, toMs, limit) {
      const where = sentBackElsewhereWhere(jobs, verificationRuns, fromMs, toMs);
      const rows = db
        .select({ jobId: jobs.jobId, previousVerdict: jobs.previousVerdict })
        .from(jobs)
        .where(where)
        .orderBy(asc(jobs.nextVerifyAt), asc(jobs.createdAt), asc(jobs.jobId))
        .limit(limit)
        .all();
      const total =
        rows.length < limit
          ? rows.length
          : (db.select({ n: count() }).from(jobs).where(where).get()?.n ?? rows.length);
      return {
        jobs: rows.map((r) => ({ jobId: r.jobId, previousVerdict: r.previousVerdict as Verdict })),
        total,
      };
    },
    async turnedBad(fromMs, toMs) {
      const rows = db
        .select({
          jobId: nightlyTurned.jobId,
          turnedAt: nightlyTurned.turnedAt,
          verdict: jobs.verdict,
          datedBefore: sql<number>`${jobs.createdAt} < ${fromMs}`,
          countedLater: sql<number>`coalesce(${countedByLaterRun(jobs, toMs, verificationRuns)}, 0)`,
          counted: sql<number>`${countedInWindow(jobs, fromMs, toMs)}`,
        })
        .from(nightlyTurned)
        .leftJoin(jobs, eq(jobs.jobId, nightlyTurned.jobId))
        .orderBy(asc(jobs.createdAt), asc(nightlyTurned.jobId))
        .limit(TURNED_READ_MAX)
        .all();
      const { named, done } = turnedRows(
        rows.map((r) => ({
          ...r,
          datedBefore: Boolean(r.datedBefore),
          countedLater: Boolean(r.countedLater),
          counted: Boolean(r.counted),
        })),
      );
      const withChecks = named.map((j) => ({
        ...j,
        failingChecks: failing.all({ jobId: j.jobId }).map((c) => c.name),
      }));
      return { named: withChecks, done };
    },
    async forgetTurned(done) {
      const forget = store.sqlite.transaction(() => {
        for (const r of done) {
          db.delete(nightlyTurned)
            .where(and(eq(nightlyTurned.jobId, r.jobId), eq(nightlyTurned.turnedAt, r.turnedAt)))
            .run();
        }
      });
      forget.immediate();
    },
    async openJobGroups(fromMs, toMs, owner) {
      const rows = await openGroups.all({ from: fromMs, to: toMs, owner: owner ?? "" });
      return rows.map((row) => ({
        ...row,
        verdict: row.verdict as Verdict,
        noSettlement: Boolean(row.noSettlement),
        answered: Boolean(row.answered),
        unseen: Boolean(row.unseen),
        finalAndRead: Boolean(row.finalAndRead),
        waitingForDrop: Boolean(row.waitingForDrop),
        leased: Boolean(row.leased),
        conflictOpen: Boolean(row.conflictOpen),
        // SQLite locks the whole file, never a row: no job waits on one, and no verdict write
        // is refused for one (a busy file fails the round, retried, parking no job).
        held: false,
        refusal: null,
        n: Number(row.n),
      }));
    },
    async recordedLateByVerdict(fromMs, toMs) {
      const counts = Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
      for (const row of late.all({ from: fromMs, to: toMs })) counts[row.verdict] = row.n;
      return counts;
    },
    async countedAdjustByVerdict(fromMs, toMs) {
      const none = () => Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
      const adjust = { notCounted: none(), late: none() };
      const window = { from: fromMs, to: toMs };
      for (const row of notCounted.all(window)) adjust.notCounted[row.verdict] = row.n;
      for (const row of lateCounted.all(window)) adjust.late[row.verdict] = row.n;
      return adjust;
    },
    async headersNotJudged(fromMs, toMs, limit) {
      const window = { from: fromMs, to: toMs };
      const { n, latest } = notJudgedCount.get(window) as { n: number; latest: number | null };
      if (n === 0) return { jobs: 0, latestRecordedAt: null, first: [] };
      const first = notJudgedFirst.all({ ...window, limit }) as HeadersNotJudged["first"];
      return { jobs: n, latestRecordedAt: latest, first };
    },
    async unprovenCounts(fromMs, toMs) {
      const counts: Record<string, number> = {};
      for (const row of unproven.all({ from: fromMs, to: toMs })) {
        for (const code of row.unproven ?? ["unknown"]) counts[code] = (counts[code] ?? 0) + row.n;
      }
      return counts;
    },
    async walBytes() {
      return walFileBytes(store);
    },
  };
}
