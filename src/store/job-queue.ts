import {
  and,
  eq,
  gt,
  inArray,
  isNotNull,
  isNull,
  lt,
  lte,
  not,
  or,
  type Placeholder,
  type SQL,
  sql,
} from "drizzle-orm";
import type { Db, SqliteStore, Store } from "../db/client.js";
import {
  finalVerdicts,
  jobs,
  openVerdicts,
  type RejudgeReason,
  type Verdict,
  verdictIsOpen,
  verdicts,
} from "../db/schema.js";
import { besideAtClaim, type HeldBeside, jobKeepingLine } from "./ledger-rules.js";
import { pgTwins } from "./pg-twins.js";
import { param, perConnection, prepareColumns, prepareRows } from "./prepared.js";
import {
  backfillAgainSet,
  type ClaimedJob,
  claimedSelection,
  claimOrder,
  jobInWindow,
  judgedElsewhere,
  NO_FAR_LOOK,
  narrows,
  type PutOffCursor,
  putOffRange,
  type QueueFilter,
  reasonLiteral,
  rejudgeColumns,
  type SweepSlice,
  type SweepStep,
  sliceToReopen,
} from "./queue-rules.js";
import { maxKeptSignatures, maxKeptWithPayouts, namedPastVault } from "./receipt-rules.js";
import { createGivenUpReset } from "./signatures.js";

/** A drizzle handle or the transaction a caller is inside (the reopen joins it). */
type Writer = Pick<Db, "update">;

/**
 * `job_id` is one of `ids`, passed as ONE JSON parameter: drizzle builds and SQLite prepares an
 * IN list of a parameter per id in time that grows with the list (~50 µs an id), on the
 * caller's event loop. `ids` is the JSON text, or a placeholder for it in a prepared statement.
 */
const jobIdIn = (ids: string | Placeholder) =>
  sql`${jobs.jobId} IN (SELECT value FROM json_each(${ids}))`;

/** What a reopen writes: see `reopenJobs`. */
const reopened = (now: number, dueAt: number, because: SQL | Placeholder) => ({
  ...rejudgeColumns(jobs, because),
  verdict: "pending" as const,
  nextVerifyAt: dueAt,
  verifyAttempts: 0,
  lastError: null,
  leaseOwner: null,
  leaseUntil: null,
  updatedAt: now,
});

/**
 * Sends jobs back to the verifier's queue: pending, due at `now`, attempts reset, and any lease
 * dropped, so a verifier mid-round on one of them cannot write a verdict reached on what the
 * job was before (its verdict write is guarded by the lease). This is the only way a job is
 * reopened; the receipt writer, the jobs-API answer, custody, the ledger and `reverify` all
 * call it, inside the transaction that changed what the checks will see (on `store`'s
 * connection). `where` narrows the ids further (e.g. only jobs whose answer changed); `dueAt`
 * (default `now`) puts them ahead of the queue, e.g. 0 for a re-verification asked for by
 * hand. A job leaving a final verdict keeps it as the verdict judged again, with `because`
 * (default `evidence`: something it was judged on changed; see `rejudgeColumns`). Returns how
 * many jobs were reopened. A list of ids runs a statement prepared once per
 * connection: preparing an UPDATE of `jobs`, with its rollup triggers, costs about 0.3 ms.
 */
export function reopenJobs(
  store: SqliteStore,
  target: { jobIds: readonly string[] } | { where: SQL },
  now: number,
  options: { dueAt?: number; because?: RejudgeReason } = {},
): number {
  const dueAt = options.dueAt ?? now;
  const because = options.because ?? "evidence";
  if ("where" in target) {
    const set = reopened(now, dueAt, reasonLiteral(because));
    return store.db.update(jobs).set(set).where(target.where).run().changes;
  }
  if (target.jobIds.length === 0) return 0;
  const ids = JSON.stringify(target.jobIds);
  return statementsOf(store).reopen.run({ ids, now, dueAt, because }).changes;
}

/**
 * The ids of the jobs naming one of the JSON list `sigs`, by receipt, jobs API or conflict
 * signature (`job_conflict_signatures`), as a UNION of one indexed lookup per column: an OR of
 * the four made SQLite scan every job. The jobs API indexes hold only a signature the receipt
 * does not name, so their lookups say so. Left out unless `memoJob`: the job the transaction's
 * memos name (`chain_transactions.memo_job`), which owns its money whoever else names it, so no
 * namer coming or going changes its verdict.
 */
const namersOf = (sigs: Placeholder | string, memoJob = false) => {
  // Each branch: the signatures, each one's transaction row (a primary-key lookup, once per
  // signature), then the jobs naming it through one index.
  const from = sql`FROM json_each(${sigs}) s
    LEFT JOIN chain_transactions c ON c.signature = s.value JOIN jobs j`;
  const notMemoJob = memoJob ? sql`true` : sql`j.job_id IS NOT c.memo_job`;
  return sql`
  SELECT j.job_id ${from} ON j.escrow_tx = s.value WHERE ${notMemoJob}
  UNION SELECT j.job_id ${from} ON j.settlement_tx = s.value WHERE ${notMemoJob}
  UNION SELECT j.job_id ${from} ON j.api_escrow_tx = s.value
    AND j.api_escrow_tx IS NOT j.escrow_tx WHERE ${notMemoJob}
  UNION SELECT j.job_id ${from} ON j.api_settlement_tx = s.value
    AND j.api_settlement_tx IS NOT j.settlement_tx WHERE ${notMemoJob}
  UNION SELECT j.job_id FROM json_each(${sigs}) s
    LEFT JOIN chain_transactions c ON c.signature = s.value
    JOIN job_conflict_signatures j ON j.signature = s.value WHERE ${notMemoJob}`;
};

/**
 * Reopens the jobs naming one of `signatures` (receipt or jobs API columns) whose judgement was
 * made, or is being made, without knowing every namer: a final verdict, or a lease held (the
 * reopen drops it, so a verdict reached without the new namer is never written). An open job
 * nobody holds reads the namers when it is claimed, and is left alone: so a job recorded or
 * reopened in the same batch costs nothing here, and a flood of receipts naming one signature
 * reopens each of its other namers once per verdict, not once per receipt. The job the
 * transaction's memos name is left alone too: its verdict does not turn on who else names the
 * signature, and a stream of made-up jobs naming it would otherwise keep it from ever being
 * final. Inside the caller's write transaction. A job naming a signature only as a conflict
 * signature is sent back too: with no receipt naming it, it may own the transaction's money.
 */
export function reopenNamers(
  store: SqliteStore,
  signatures: readonly string[],
  now: number,
  except: string | null = null,
) {
  if (signatures.length === 0) return 0;
  const st = statementsOf(store);
  const sigs = [...new Set(signatures)];
  // Nearly always no other namer is judged or held (a proxied job's own row is open and free):
  // a probe per signature, five index lookups, tells so at a fraction of the UPDATE's cost.
  if (sigs.every((sig) => st.judgedNamer.get({ sig }) === undefined)) return 0;
  return st.reopenNamers.run({ sigs: JSON.stringify(sigs), now, except }).changes;
}

/**
 * Reopens the jobs holding one of `signatures` in any role, the memo's job and the conflicting
 * receipts' signatures included, whose judgement was made or is being made (a final verdict, or
 * a lease held, which the reopen drops): the signatures were given up on (dropped, pruned) and
 * the ledger has now read them on chain (`recordReads` in ledger.ts), as `reverify` does by
 * hand. A second lock a jobs API answer named once while still unsent, sent later (a durable
 * nonce keeps it valid), left its job `dropped: never landed` while the ledger read the debit.
 * Inside the caller's write transaction. Runs only when such a signature is read.
 */
export function reopenHolders(store: SqliteStore, signatures: readonly string[], now: number) {
  if (signatures.length === 0) return 0;
  const sigs = JSON.stringify([...new Set(signatures)]);
  const judged = or(not(verdictIsOpen(jobs.verdict)), isNotNull(jobs.leaseOwner));
  const holders = sql`${jobs.jobId} IN (${namersOf(sigs, true)})`;
  return reopenJobs(store, { where: and(holders, judged)! }, now);
}

/**
 * Keeps a read ledger line's transaction `sig` with `job` (one of its conflict signatures) when
 * the job names it nowhere yet and holds fewer than `cap` (`maxKeptSignatures`, one past those
 * the verifier follows: the last marks an overflow; see `jobKeepingLine`; the escrow scan keeps a
 * payout up to `maxKeptWithPayouts`), in the caller's write transaction. True when the job
 * gained it. One a full list of `maxKeptSignatures` leaves out is held for the escrow scan
 * (`holdNamedPast`).
 *
 * The job is the transaction's memo's, which owns it once it names it anywhere: the other jobs
 * naming it that are judged (another job's receipt naming it as that job's settlement, judged
 * owning its money while the memo's job named it nowhere) are sent back, as a receipt naming it
 * sends them (`reopenNamers`). Left as they stood, they and the memo's job both counted it: the
 * report's totals above what moved on chain.
 */
export function keepWithJob(
  store: SqliteStore,
  job: string,
  sig: string,
  now: number,
  cap: number = maxKeptSignatures,
): boolean {
  const st = statementsOf(store);
  if (st.keepWithJob.run({ job, sig, now, cap }).changes === 0) {
    // A payout past every place (`maxKeptWithPayouts`) is not held again: it was read.
    if (cap === maxKeptSignatures)
      st.holdPastFull.run({ job, sig, now, cap, vault: namedPastVault });
    return false;
  }
  // Not the job itself, now a namer too: a claim keeping a line with the job it holds would
  // drop its own lease.
  reopenNamers(store, [sig], now, job);
  return true;
}

/**
 * Holds `signatures`, named for `job` past its kept conflict signatures, for the escrow scan to
 * read (`escrow_pending` under `namedPastVault`; one held already keeps its first time), in the
 * caller's write transaction.
 */
export function holdNamedPast(
  store: SqliteStore,
  job: string,
  signatures: readonly string[],
  now: number,
): void {
  const st = statementsOf(store);
  for (const sig of signatures) st.holdNamedPast.run({ job, sig, now, vault: namedPastVault });
}

/**
 * Keeps with each claimed job the read lines its memos name that `jobKeepingLine` gives it and
 * it names nowhere (`keepWithJob`), and returns the rows as they are then. The ledger keeps a
 * line with its job when it reads it; one read before the job's receipt was recorded (the
 * proxy records once the answer has ended) found no job to keep it with, and later reviews see
 * the same kind and write nothing, so the job's first judgement looks here. So does a debit
 * that is no lock whose memos name the job among others (`earlyMixedDebits`): filed under the
 * job its escrow memo or first memo names, it is kept with every job it names (each would file
 * it alone, `jobOfUnexplainedDebit`), and one recorded after the read was judged without it.
 * So does a payout out of escrow under the job's memo inside another recorded job's own step,
 * held for it when the verifier read that step (`escrow_pending.named_by`, never pruned): kept
 * with the job, or let go when it names it (`besideAtClaim`), however late it was recorded;
 * held an hour, a job recorded after it was `verified` on its one payout named. Three indexed
 * reads per claim, the keeping only for a line or entry found.
 */
function keepEarlyLines(store: SqliteStore, claimed: ClaimedJob[], now: number): ClaimedJob[] {
  if (claimed.length === 0) return claimed;
  const st = statementsOf(store);
  const ids = JSON.stringify(claimed.map((j) => j.jobId));
  const lines = st.earlyLines.all({ ids }) as {
    memo_job_id: string;
    signature: string;
    kind: string;
    job_id: string | null;
  }[];
  const gained = new Set<string>();
  for (const l of lines) {
    if (jobKeepingLine({ kind: l.kind, jobId: l.job_id }) !== l.memo_job_id) continue;
    if (keepWithJob(store, l.memo_job_id, l.signature, now)) gained.add(l.memo_job_id);
  }
  const mixed = st.earlyMixedDebits.all({ ids }) as { job: string; signature: string }[];
  for (const l of mixed) if (keepWithJob(store, l.job, l.signature, now)) gained.add(l.job);
  const byId = new Map(claimed.map((j) => [j.jobId, j]));
  for (const held of st.heldBeside.all({ ids }) as HeldBeside[]) {
    const job = byId.get(held.job);
    const what = job === undefined ? "wait" : besideAtClaim(job, held, now);
    if (what === "wait") continue;
    if (what === "keep" && keepWithJob(store, held.job, held.signature, now, maxKeptWithPayouts)) {
      gained.add(held.job);
    }
    st.dropBeside.run({ job: held.job, signature: held.signature, vault: held.vault });
  }
  if (gained.size === 0) return claimed;
  const fresh = new Map(
    store.db
      .select(claimedSelection(jobs))
      .from(jobs)
      .where(jobIdIn(JSON.stringify([...gained])))
      .all()
      .map((j) => [j.jobId, j]),
  );
  return claimed.map((j) => fresh.get(j.jobId) ?? j);
}

type JobRow = typeof jobs.$inferSelect;

export { type ClaimedJob, narrows, type PutOffCursor, type QueueFilter } from "./queue-rules.js";

/** How many jobs of a filter hold each verdict, and how many of those are final. */
export interface VerdictCounts {
  total: number;
  final: number;
  byVerdict: Record<Verdict, number>;
}

/**
 * The verifier's work queue: the job's queue columns (verdict while open, `next_verify_at`,
 * `verify_attempts`, the lease). A job is worked on only under a lease (owner + expiry); an
 * expired lease is reclaimable, so a crash never loses a job. Verdicts are written by
 * verdicts.ts, under the same lease.
 */
export interface JobQueueStore {
  /**
   * Claims up to `limit` due open jobs under a lease in ONE statement (`UPDATE ... WHERE
   * job_id IN (SELECT ... LIMIT n) RETURNING *`): a write statement takes the write lock before
   * it reads, so two processes claiming at once wait for each other (busy timeout) instead of
   * one failing on a read-to-write upgrade, and never both get a job. Jobs still leased to this
   * owner are claimable too: rounds of one verifier never overlap, so such a lease is left
   * from a round that failed, and waiting for it to expire would stall those jobs. Except
   * those a claim with the same `leaseAt` and `leaseMs` just took (their lease ends at exactly
   * leaseAt + leaseMs): a round may claim in several pieces, each a short write.
   *
   * Two clocks: a job is due when its `next_verify_at` has passed `t`, the claimer's own clock,
   * and a lease is written and judged by `leaseAt` (default `t`), the time of the clock every
   * claimer shares (`LockStore.sharedNow`: PostgreSQL's, whose verifiers run on many hosts).
   * Leases judged by each host's clock let a host ahead by more than a lease take the live
   * leases of another, and one behind have its own taken: two verifiers on the same jobs.
   *
   * A job whose `next_verify_at` is past `farAfter` (default: none is) is due too, after the
   * others due by then: the claimer never puts a look that far off, so it was written before
   * the clock was stepped back, and would otherwise wait that step longer.
   *
   * A lease of one of `liveOwners` (default none) is left alone even past its expiry: owners
   * known to run now (a process of this host), whose leases looked expired only because the
   * clock they are judged by was stepped forward.
   */
  claim(
    owner: string,
    filter: QueueFilter | null,
    lease: {
      t: number;
      leaseMs: number;
      limit: number;
      leaseAt?: number;
      farAfter?: number;
      liveOwners?: readonly string[];
    },
  ): Promise<ClaimedJob[]>;
  /**
   * The whole rows of these jobs as stored now (a claimed job whose checks run reads every
   * column; the claim returned `claimedColumns`), in no particular order; a job not stored is
   * left out.
   */
  rowsOf(jobIds: readonly string[]): Promise<JobRow[]>;
  /**
   * Extends this owner's leases to `until` (a long round on a slow node), a time on the clock
   * leases are judged by (a claim's `leaseAt`).
   */
  renewLeases(owner: string, until: number): Promise<void>;
  /**
   * Drops this owner's leases (only those of `jobIds` when given), so another verifier takes
   * the jobs at once; they stay as due as they were, or become due no sooner than `dueAt`.
   */
  releaseLeases(owner: string, jobIds?: readonly string[], dueAt?: number): Promise<void>;
  /**
   * When the next open job in `filter` is due (ms since epoch), or null if none is open. A
   * leased job is due when its lease ends, read on the caller's clock: `clocks.t` on it is
   * `clocks.leaseAt` on the leases' clock (by default the two are one).
   */
  nextDue(
    filter: QueueFilter | null,
    clocks?: { t: number; leaseAt: number },
  ): Promise<number | null>;
  /** Jobs of `filter` by verdict: a run's progress. */
  countVerdicts(filter: QueueFilter | null): Promise<VerdictCounts>;
  /**
   * Queues a fresh verification of one job: its given-up signatures (dropped, pruned) are
   * looked for again and the job is reopened, in one transaction.
   */
  reverify(jobId: string, t: number): Promise<void>;
  /**
   * One step of the profile sweep (src/verify/profile-sweep.ts): reads `scan` jobs in `job_id`
   * order after `after` (a read, no write lock) and reopens, due at `t`, those of `filter` that
   * `judgedElsewhere` (at most `limit`), checked again as they are reopened.
   */
  reopenJudgedElsewhere(step: SweepStep): Promise<SweepSlice>;
  /**
   * Final jobs of `filter` whose verdict another profile than `judgedBy` wrote, by that profile
   * (null: written before profiles were recorded), as the sweep reopens them (`judgedElsewhere`).
   */
  countJudgedElsewhere(
    filter: QueueFilter | null,
    judgedBy: string,
  ): Promise<{ profile: string | null; jobs: number }[]>;
  /**
   * Sends back to the verifier those of these jobs that are final, held by no lease, and whose
   * verdict was written before `before` (or never dated): judged before evidence stored at
   * `before` that their figures read (another job's lock, for a transaction both name). A job
   * judged since is left alone. Returns how many were sent back.
   */
  reopenStale(jobIds: readonly string[], before: number, t: number): Promise<number>;
  /** Those of these jobs that are open (not final). */
  openOf(jobIds: readonly string[]): Promise<string[]>;
  /**
   * Open jobs whose next look is in (`after`, `until`], soonest first (then by job id), at most
   * `limit`, after `from` when it is given (the last job of the page before), with the
   * signatures their receipt and the jobs API name: jobs another verifier may have put off
   * while it watched their never-seen signatures, which a verifier that starts watches too.
   * Read a page at a time: on SQLite a read is a synchronous stretch of the event loop the
   * proxy shares, and 50,000 jobs in one read held it for a quarter of a second.
   */
  putOff(after: number, until: number, limit: number, from?: PutOffCursor): Promise<PutOffJob[]>;
  /**
   * Makes these jobs due at `t` without reopening them (`makeDue`): a signature one of them
   * waits for was seen. Nothing else of them changes; returns how many matched.
   */
  makeDue(jobIds: readonly string[], t: number): Promise<number>;
}

/** An open job looked at again later (`putOff`), with the signatures it names. */
export interface PutOffJob {
  jobId: string;
  escrowTx: string | null;
  apiEscrowTx: string | null;
  settlementTx: string | null;
  apiSettlementTx: string | null;
  nextVerifyAt: number;
}

function filterCondition(filter: QueueFilter | null): SQL | undefined {
  if (!filter) return undefined;
  const parts = [];
  const window = jobInWindow(jobs, filter.from, filter.to);
  if (window) parts.push(window);
  if (filter.jobIds !== undefined) parts.push(inArray(jobs.jobId, filter.jobIds));
  return parts.length > 0 ? and(...parts) : undefined;
}

/**
 * The claim of `JobQueueStore.claim`, with placeholders for `owner`, `t`, `leaseAt`, `until`
 * (leaseAt + leaseMs) and `limit`. Due jobs are taken in the order they fell due: a job never
 * looked at (a new receipt, `next_verify_at` 0) by when it was recorded, any other by
 * `next_verify_at`; see `claimOrder` in queue-rules.ts.
 */
function claimQuery(db: Db, filter: QueueFilter | null) {
  const t = sql.placeholder("t");
  const limit = sql.placeholder("limit");
  // INDEXED BY: without statistics (SQLite gathers none unless asked) the planner took
  // jobs_verdict_created and sorted every due job, however few the claim takes. A filtered claim
  // (a window, named jobs) is left to the planner: through jobs_open_due it would walk every due
  // job outside the window.
  const source = narrows(filter) ? sql`${jobs}` : sql`${jobs} INDEXED BY jobs_open_due`;
  const claimable = and(
    verdictIsOpen(jobs.verdict),
    or(
      isNull(jobs.leaseUntil),
      and(
        lte(jobs.leaseUntil, sql.placeholder("leaseAt")),
        sql`coalesce(${jobs.leaseOwner}, '') NOT IN (SELECT value FROM json_each(${sql.placeholder("live")}))`,
      ),
      and(
        eq(jobs.leaseOwner, sql.placeholder("owner")),
        lt(jobs.leaseUntil, sql.placeholder("until")),
      ),
    ),
    filterCondition(filter),
  );
  const { fresh, looked, far } = claimOrder(jobs, t, narrows(filter), sql.placeholder("far"));
  // Each side read in its index's order up to the limit, then the two merged by `due`.
  const side = (part: typeof fresh) =>
    db
      .select({ jobId: sql`${jobs.jobId}`.as("job_id"), due: part.due.as("due") })
      .from(source)
      .where(and(claimable, part.where))
      // New jobs tie on next_verify_at 0: read by when they were recorded, as `due` merges
      // them (by rowid, a host's receipts written late came before earlier ones).
      .orderBy(jobs.nextVerifyAt, jobs.recordedAt)
      .limit(limit);
  const due = sql`SELECT job_id FROM (SELECT * FROM (${side(fresh)})
    UNION ALL SELECT * FROM (${side(looked)}) UNION ALL SELECT * FROM (${side(far)}))
    ORDER BY due LIMIT ${limit}`;
  return db
    .update(jobs)
    .set({ leaseOwner: param("owner"), leaseUntil: param("until") })
    .where(sql`${jobs.jobId} IN (${due})`)
    .returning(claimedSelection(jobs));
}

/**
 * When the next open job of `filter` is due, see `JobQueueStore.nextDue`: a lease's end moved
 * to the caller's clock by the placeholder `shift` (t - leaseAt).
 */
function nextDueQuery(db: Db, filter: QueueFilter | null) {
  const shift = sql.placeholder("shift");
  if (filter !== null) {
    // A window's or named jobs (`verify --from`): few, read as the planner finds them.
    return db
      .select({
        next: sql<
          number | null
        >`min(max(${jobs.nextVerifyAt}, coalesce(${jobs.leaseUntil} + ${shift}, 0)))`,
      })
      .from(jobs)
      .where(and(verdictIsOpen(jobs.verdict), filterCondition(filter)));
  }
  // The whole queue, at each poll: the first unleased open job in jobs_open_due's order, and
  // the leased ones by jobs_leased (a claim's few). Over every open job it was 10 to 25 ms of
  // the event loop with 50,000 waiting for finality.
  const unleased = sql`SELECT ${jobs.nextVerifyAt} AS due FROM ${jobs} INDEXED BY jobs_open_due
    WHERE ${and(verdictIsOpen(jobs.verdict), isNull(jobs.leaseUntil))}
    ORDER BY ${jobs.nextVerifyAt} LIMIT 1`;
  const leased = sql`SELECT max(${jobs.nextVerifyAt}, ${jobs.leaseUntil} + ${shift}) AS due
    FROM ${jobs} INDEXED BY jobs_leased
    WHERE ${and(isNotNull(jobs.leaseUntil), verdictIsOpen(jobs.verdict))}`;
  return db
    .select({ next: sql<number | null>`min(due)` })
    .from(sql`(SELECT due FROM (${unleased}) UNION ALL ${leased})`);
}

/**
 * The queue's statements run on every round, polled job or proxied receipt, prepared once per
 * connection: drizzle building them spent more CPU than SQLite running them (a claim ~0.4 ms
 * of query building per call). Those of a filtered run are built per call (`verify --from`).
 */
function prepare(store: SqliteStore) {
  const { db, sqlite } = store;
  const owner = eq(jobs.leaseOwner, sql.placeholder("owner"));
  const ids = sql.placeholder("ids");
  const released = { leaseOwner: null, leaseUntil: null };
  return {
    claim: prepareColumns(store, claimedSelection(jobs), claimQuery(db, null)),
    rowsOf: prepareRows(store, jobs, db.select().from(jobs).where(jobIdIn(ids))),
    nextDue: nextDueQuery(db, null).prepare(),
    renew: db
      .update(jobs)
      .set({ leaseUntil: param("until") })
      .where(leasedTo(owner))
      .prepare(),
    release: db
      .update(jobs)
      .set(released)
      .where(and(owner, jobIdIn(ids)))
      .prepare(),
    releaseUntil: db
      .update(jobs)
      .set({
        ...released,
        nextVerifyAt: sql`max(${jobs.nextVerifyAt}, ${sql.placeholder("dueAt")})`,
      })
      .where(and(owner, jobIdIn(ids)))
      .prepare(),
    reopen: db
      .update(jobs)
      .set(reopened(param("now"), param("dueAt"), sql.placeholder("because")))
      .where(jobIdIn(ids))
      .prepare(),
    reopenNamers: db
      .update(jobs)
      .set(reopened(param("now"), param("now"), reasonLiteral("evidence")))
      .where(
        and(
          sql`${jobs.jobId} IN (${namersOf(sql.placeholder("sigs"))})`,
          sql`${jobs.jobId} IS NOT ${sql.placeholder("except")}`,
          or(not(verdictIsOpen(jobs.verdict)), isNotNull(jobs.leaseOwner)),
        ),
      )
      .prepare(),
    // A job naming `sig` in a column `namersOf` reads whose judgement `reopenNamers` would
    // undo: every job that UPDATE reopens is one of these (it also leaves out the memo's job).
    // Raw SQL, each column looked up through its own index (UNION ALL): the same probe as one
    // drizzle query OR-ing the columns cost more than the UPDATE it spares.
    judgedNamer: (() => {
      const judged = `(verdict NOT IN (${openVerdicts.map((v) => `'${v}'`).join(", ")})
        OR lease_owner IS NOT NULL)`;
      return sqlite
        .prepare(
          `SELECT 1 FROM jobs WHERE escrow_tx = @sig AND ${judged}
           UNION ALL SELECT 1 FROM jobs WHERE settlement_tx = @sig AND ${judged}
           UNION ALL SELECT 1 FROM jobs WHERE api_escrow_tx = @sig
             AND api_escrow_tx IS NOT escrow_tx AND ${judged}
           UNION ALL SELECT 1 FROM jobs WHERE api_settlement_tx = @sig
             AND api_settlement_tx IS NOT settlement_tx AND ${judged}
           UNION ALL SELECT 1 FROM job_conflict_signatures k JOIN jobs ON jobs.job_id = k.job_id
             WHERE k.signature = @sig AND ${judged}
           LIMIT 1`,
        )
        .pluck();
    })(),
    makeDue: db
      .update(jobs)
      .set({ nextVerifyAt: sql`min(${jobs.nextVerifyAt}, ${sql.placeholder("now")})` })
      .where(jobIdIn(ids))
      .prepare(),
    // Raw SQL: json_each and json_insert over the JSON list, one guarded statement.
    keepWithJob: sqlite.prepare(
      `UPDATE jobs SET conflict_signatures = json_insert(
           CASE WHEN json_type(conflict_signatures) = 'array' THEN conflict_signatures ELSE '[]' END,
           '$[#]', @sig),
         updated_at = @now
       WHERE job_id = @job AND @sig IS NOT escrow_tx AND @sig IS NOT settlement_tx
         AND @sig IS NOT api_escrow_tx AND @sig IS NOT api_settlement_tx
         AND (json_type(conflict_signatures) IS NOT 'array'
           OR (NOT EXISTS (SELECT 1 FROM json_each(conflict_signatures) WHERE value = @sig)
             AND json_array_length(conflict_signatures) < @cap))`,
    ),
    holdNamedPast: sqlite.prepare(
      `INSERT INTO escrow_pending (job_id, signature, vault, listed_at)
       VALUES (@job, @sig, @vault, @now) ON CONFLICT (job_id, signature, vault) DO NOTHING`,
    ),
    // `holdNamedPast` of a line `keepWithJob` left out because the job's list is full (not one
    // the job names already).
    holdPastFull: sqlite.prepare(
      `INSERT INTO escrow_pending (job_id, signature, vault, listed_at)
       SELECT job_id, @sig, @vault, @now FROM jobs
       WHERE job_id = @job AND @sig IS NOT escrow_tx AND @sig IS NOT settlement_tx
         AND @sig IS NOT api_escrow_tx AND @sig IS NOT api_settlement_tx
         AND json_type(conflict_signatures) = 'array'
         AND NOT EXISTS (SELECT 1 FROM json_each(conflict_signatures) WHERE value = @sig)
         AND json_array_length(conflict_signatures) >= @cap
       ON CONFLICT (job_id, signature, vault) DO NOTHING`,
    ),
    // The escrow entries a recorded job's own step holds for one of the JSON list `ids` (few:
    // each a payout out of escrow under two jobs' memos), by the primary key's job.
    heldBeside: sqlite.prepare(
      `SELECT job_id AS job, signature, vault, block_time AS blockTime, listed_at AS listedAt
       FROM escrow_pending
       WHERE job_id IN (SELECT value FROM json_each(@ids)) AND named_by IS NOT NULL
       ORDER BY job_id, signature, vault`,
    ),
    dropBeside: sqlite.prepare(
      "DELETE FROM escrow_pending WHERE job_id = @job AND signature = @signature AND vault = @vault",
    ),
    // The lines whose memos name one of the JSON list `ids`. INDEXED BY: without statistics
    // the planner took ledger_lines_state and walked every read line of every vault.
    earlyLines: sqlite.prepare(
      `SELECT memo_job_id, signature, kind, job_id FROM ledger_lines INDEXED BY ledger_lines_memo_job
       WHERE memo_job_id IN (SELECT value FROM json_each(@ids)) AND state = 'read'
         AND kind IN ('return', 'unexplained') AND job_id = memo_job_id
       ORDER BY memo_job_id, vault, ord`,
    ),
    // The debits that are no lock whose memos name several jobs, one of them in the JSON list
    // `ids` (few: the statement lists each as a finding). INDEXED BY as above.
    earlyMixedDebits: sqlite.prepare(
      `SELECT DISTINCT json_extract(m.value, '$.jobId') AS job, l.signature, l.vault, l.ord
       FROM ledger_lines AS l INDEXED BY ledger_lines_memo_jobs, json_each(l.memo_jobs) AS m
       WHERE l.memo_jobs IS NOT NULL AND l.state = 'read' AND l.kind = 'unexplained'
         AND json_extract(m.value, '$.jobId') IN (SELECT value FROM json_each(@ids))
       ORDER BY job, l.vault, l.ord`,
    ),
  };
}

const statementsOf = perConnection(prepare);

/**
 * Drops every lease of `owner` (a process known dead), inside the caller's write transaction
 * (see verification-runs.ts).
 */
export function releaseLeasesOf(db: Writer, owner: string): void {
  db.update(jobs)
    .set({ leaseOwner: null, leaseUntil: null })
    .where(leasedTo(eq(jobs.leaseOwner, owner)))
    .run();
}

/**
 * The jobs leased to `owner` (a condition on `lease_owner`): only an open job holds a lease (a
 * claim takes open jobs, a verdict write and a reopen drop it), with its end set, so they are
 * read by `jobs_leased` (a claim's few hundred). `lease_owner = ?` alone scanned the whole
 * table inside the write lock: 0.4 to 0.7 s over 300,000 jobs, on the event loop of a `serve
 * --workers 1` every 40 s of a long round (the lease renewal), and at each verifier's stop; by
 * the open jobs' verdicts it still read every open job (29 ms with 50,000 waiting).
 */
export const leasedTo = (owner: SQL) =>
  sql`${jobs.jobId} IN (SELECT ${jobs.jobId} FROM ${jobs} INDEXED BY jobs_leased
    WHERE ${and(owner, isNotNull(jobs.leaseUntil), verdictIsOpen(jobs.verdict))})`;

/** The jobqueue store of either dialect. */
export function createJobQueueStore(store: Store): JobQueueStore {
  return store.kind === "postgres"
    ? pgTwins().createPgJobQueueStore(store)
    : createSqliteJobQueueStore(store);
}

function createSqliteJobQueueStore(store: SqliteStore): JobQueueStore {
  const { db, sqlite } = store;
  const st = statementsOf(store);
  const resetGivenUp = createGivenUpReset(store);
  const backfillAgain = db
    .update(jobs)
    .set(backfillAgainSet)
    .where(and(eq(jobs.jobId, sql.placeholder("jobId")), eq(jobs.backfillState, "gave_up")))
    .prepare();
  const makeDueNow = sqlite.transaction((jobIds: readonly string[], t: number) =>
    makeDue(store, jobIds, t),
  ).immediate;
  const reopenStaleTx = sqlite.transaction((ids: readonly string[], before: number, t: number) =>
    reopenJobs(
      store,
      {
        where: and(
          jobIdIn(JSON.stringify(ids)),
          not(verdictIsOpen(jobs.verdict)),
          isNull(jobs.leaseOwner),
          or(isNull(jobs.verdictAt), lt(jobs.verdictAt, before)),
        )!,
      },
      t,
    ),
  );
  const reverifyOne = sqlite.transaction((jobId: string, t: number) => {
    resetGivenUp(jobId);
    backfillAgain.run({ jobId });
    reopenJobs(store, { jobIds: [jobId] }, t, { dueAt: 0, because: "reverify" });
  });
  const claimTx = sqlite.transaction(
    (
      claim: typeof st.claim,
      owner: string,
      {
        t,
        leaseMs,
        limit,
        leaseAt = t,
        farAfter = NO_FAR_LOOK,
        liveOwners = [],
      }: Parameters<JobQueueStore["claim"]>[2],
    ) => {
      const live = JSON.stringify(liveOwners);
      const until = leaseAt + leaseMs;
      return keepEarlyLines(
        store,
        claim.all({ owner, t, leaseAt, until, limit, far: farAfter, live }),
        t,
      );
    },
  );
  return {
    async claim(owner, filter, lease) {
      const claim = narrows(filter)
        ? prepareColumns(store, claimedSelection(jobs), claimQuery(db, filter))
        : st.claim;
      return claimTx.immediate(claim, owner, lease);
    },
    async rowsOf(jobIds) {
      return jobIds.length === 0 ? [] : st.rowsOf.all({ ids: JSON.stringify(jobIds) });
    },
    async renewLeases(owner, until) {
      st.renew.run({ owner, until });
    },
    async releaseLeases(owner, jobIds, dueAt) {
      if (jobIds === undefined) return releaseLeasesOf(db, owner);
      if (jobIds.length === 0) return;
      const ids = JSON.stringify(jobIds);
      if (dueAt === undefined) st.release.run({ owner, ids });
      else st.releaseUntil.run({ owner, ids, dueAt });
    },
    async nextDue(filter, clocks) {
      const shift = clocks === undefined ? 0 : clocks.t - clocks.leaseAt;
      const row = (filter === null ? st.nextDue : nextDueQuery(db, filter).prepare()).get({
        shift,
      });
      return row?.next ?? null;
    },
    async countVerdicts(filter) {
      const byVerdict = Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
      const rows = db
        .select({ verdict: jobs.verdict, n: sql<number>`count(*)` })
        .from(jobs)
        .where(filterCondition(filter))
        .groupBy(jobs.verdict)
        .all();
      let total = 0;
      for (const r of rows) {
        byVerdict[r.verdict] = r.n;
        total += r.n;
      }
      const final = finalVerdicts.reduce((n, v) => n + byVerdict[v], 0);
      return { total, final, byVerdict };
    },
    async reverify(jobId, t) {
      reverifyOne.immediate(jobId, t);
    },
    async reopenStale(jobIds, before, t) {
      if (jobIds.length === 0) return 0;
      return reopenStaleTx.immediate(jobIds, before, t);
    },
    async reopenJudgedElsewhere(step) {
      const stale = and(
        judgedElsewhere(jobs, step.judgedBy, step.before),
        filterCondition(step.filter),
      );
      const rows = db
        .select({ jobId: jobs.jobId, due: sql<number>`CASE WHEN ${stale} THEN 1 ELSE 0 END` })
        .from(jobs)
        .where(
          step.ids
            ? jobIdIn(JSON.stringify(step.ids))
            : step.after === null
              ? undefined
              : gt(jobs.jobId, step.after),
        )
        .orderBy(jobs.jobId)
        .limit(step.scan)
        .all();
      const { ids, last, end } = sliceToReopen(rows, step);
      if (ids.length === 0) return { reopened: [], last, end, held: [] };
      const where = and(jobIdIn(JSON.stringify(ids)), stale)!;
      // Checked again inside the write: a job reopened or judged since the read is left alone.
      const reopened = sqlite
        .transaction(() => {
          const found = db.select({ jobId: jobs.jobId }).from(jobs).where(where).all();
          const ids = found.map((r) => r.jobId);
          reopenJobs(store, { jobIds: ids }, step.t, { because: "profile" });
          return ids;
        })
        .immediate();
      return { reopened, last, end, held: [] };
    },
    async countJudgedElsewhere(filter, judgedBy) {
      return db
        .select({ profile: jobs.verdictProfile, jobs: sql<number>`count(*)` })
        .from(jobs)
        .where(and(judgedElsewhere(jobs, judgedBy), filterCondition(filter)))
        .groupBy(jobs.verdictProfile)
        .all();
    },
    async openOf(jobIds) {
      if (jobIds.length === 0) return [];
      return db
        .select({ jobId: jobs.jobId })
        .from(jobs)
        .where(and(jobIdIn(JSON.stringify(jobIds)), verdictIsOpen(jobs.verdict)))
        .all()
        .map((r) => r.jobId);
    },
    async makeDue(jobIds, t) {
      if (jobIds.length === 0) return 0;
      return makeDueNow(jobIds, t);
    },
    async putOff(after, until, limit, from) {
      // INDEXED BY, as the claim: without statistics the planner took the verdict's index and
      // sorted every open job for each page. Selected as expressions, as the claim's: drizzle
      // names no table a raw source brings.
      return db
        .select({
          jobId: sql<string>`${jobs.jobId}`.as("job_id"),
          escrowTx: sql<string | null>`${jobs.escrowTx}`.as("escrow_tx"),
          apiEscrowTx: sql<string | null>`${jobs.apiEscrowTx}`.as("api_escrow_tx"),
          settlementTx: sql<string | null>`${jobs.settlementTx}`.as("settlement_tx"),
          apiSettlementTx: sql<string | null>`${jobs.apiSettlementTx}`.as("api_settlement_tx"),
          nextVerifyAt: sql<number>`${jobs.nextVerifyAt}`.as("next_verify_at"),
        })
        .from(sql`${jobs} INDEXED BY jobs_open_due`)
        .where(putOffRange(jobs, after, until, from))
        .orderBy(jobs.nextVerifyAt, jobs.jobId)
        .limit(limit)
        .all();
    },
  };
}

/**
 * Makes jobs due now without reopening them: `next_verify_at` moves to `now` if it was later;
 * the verdict, attempts and lease stay. For news a verifier may be parked waiting for that
 * changes nothing it has checked (an unchanged jobs-API answer for a job not yet final).
 * Composes inside the caller's transaction on `store`'s connection like `reopenJobs`. Returns
 * how many jobs matched.
 */
export function makeDue(store: SqliteStore, jobIds: readonly string[], now: number): number {
  if (jobIds.length === 0) return 0;
  return statementsOf(store).makeDue.run({ ids: JSON.stringify(jobIds), now }).changes;
}
