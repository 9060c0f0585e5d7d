/* The rules of the verifier's queue that do not touch a database, shared by both dialects. */

import {
  and,
  type Column,
  eq,
  gt,
  gte,
  inArray,
  isNotNull,
  isNull,
  lt,
  lte,
  ne,
  not,
  or,
  type Placeholder,
  type SQL,
  sql,
  type Table,
} from "drizzle-orm";
import {
  type jobs,
  type RejudgeReason,
  recordedAfterDate,
  type Verdict,
  verdictIsFinal,
  verdictIsOpen,
} from "../db/schema.js";

/**
 * The columns of a job a claim returns: what a round reads of a job before it knows whether the
 * job's checks run this round (the signatures it names, the backfill's and the jobs API's word
 * on its settlement, its queue columns). Most claimed jobs go back waiting: reading their whole
 * rows (59 columns) was a third of the CPU of a poll of a job whose signatures no node has seen.
 * A job whose checks run is read whole then (`JobQueueStore.rowsOf`).
 */
export const claimedColumns = [
  "jobId",
  "escrowTx",
  "settlementTx",
  "apiEscrowTx",
  "apiSettlementTx",
  "conflictSignatures",
  "apiStatus",
  "keyFingerprint",
  "source",
  "recordedAt",
  "verdict",
  "verdictAt",
  "verifyAttempts",
  "nextVerifyAt",
  "leaseOwner",
  "leaseUntil",
  "backfillState",
  "backfillNextAt",
] as const satisfies readonly (keyof typeof jobs.$inferSelect)[];

/** A claimed job: its `claimedColumns`. */
export type ClaimedJob = Pick<typeof jobs.$inferSelect, (typeof claimedColumns)[number]>;

/** The `claimedColumns` of a drizzle table of jobs (either dialect's), for a `returning()`. */
export function claimedSelection<T extends Record<(typeof claimedColumns)[number], unknown>>(
  table: T,
): Pick<T, (typeof claimedColumns)[number]> {
  return Object.fromEntries(claimedColumns.map((key) => [key, table[key]])) as Pick<
    T,
    (typeof claimedColumns)[number]
  >;
}

/** Verdicts of a job whose last round ended in RPC trouble; it is retried with backoff. */
export const rpcTroubleVerdicts: Verdict[] = ["error", "rpc_disagreement"];

/** Which jobs a run covers. */
export interface QueueFilter {
  /**
   * Jobs created at or after this time (ms since epoch), and jobs recorded at or after it that
   * are dated before it (see `jobInWindow`).
   */
  from?: number;
  /** Jobs created (or, dated before `from`, recorded) before this time: the window [from, to). */
  to?: number;
  jobIds?: string[];
}

/**
 * The jobs a window [from, to) judges: those dated in it (`created_at`), and those recorded in
 * it (`recorded_at`) but dated before it. A receipt's date is the sender's word (a completion's
 * `created`, an import's `created_at`): one dated into a night whose run is over, or imported
 * after that run, is judged by the run of the window it was recorded in, where its money moved.
 * A job dated in the window is taken once, by its date, however it was recorded, and a job
 * recorded before the window is left to the window it was recorded in. Either bound may be
 * absent (no lower bound: every job dated before `to`).
 */
export function jobInWindow(
  jobs: { createdAt: Column; recordedAt: Column },
  from: number | Placeholder | undefined,
  to: number | Placeholder | undefined,
): SQL | undefined {
  const dated = and(
    from === undefined ? undefined : gte(jobs.createdAt, from),
    to === undefined ? undefined : lt(jobs.createdAt, to),
  );
  if (from === undefined) return dated;
  return or(
    dated,
    and(
      gte(jobs.recordedAt, from),
      to === undefined ? undefined : lt(jobs.recordedAt, to),
      lt(jobs.createdAt, from),
      // Implied by the two above; written out, it is the term of the index that holds them.
      recordedAfterDate(jobs.createdAt, jobs.recordedAt),
    ),
  );
}

/**
 * Jobs recorded in [from, to) and dated before `from`: the part of `jobInWindow` the rollups,
 * summed by the day a job is dated, do not count in the window.
 */
export function recordedLate(
  table: { createdAt: Column; recordedAt: Column },
  from: Placeholder,
  to: Placeholder,
): SQL {
  return and(
    gte(table.recordedAt, from),
    lt(table.recordedAt, to),
    lt(table.createdAt, from),
    recordedAfterDate(table.createdAt, table.recordedAt),
  )!;
}

/** The columns the nightly windows' count reads (`countedInWindow`). */
type CountedColumns = { createdAt: Column; recordedAt: Column; nightlyCounted: Column };

/**
 * The jobs a nightly window [from, to) counts in its summary: each job in exactly one of any
 * windows that follow each other, however late it was recorded. `jobInWindow` (what the run
 * judges) takes a job dated in the window, and one recorded in it but dated before it: a job
 * dated in night N and recorded after N's end but before N's run was taken by N (by its date)
 * and by N+1 (recorded late), and a reader summing the nightly reports counted it twice.
 *
 * A job recorded before its window's end is counted by its date: no other window can take it.
 * One recorded after its window's end is counted by the window it was recorded in, unless a
 * run of the window it is dated in saw it first: that run claims it (`nightly_counted` `date`,
 * `claimWindowJobs`) before it counts, and it is counted by its date from then on. A run of the
 * window it was recorded in claims it the other way (`late`), so a run of its date's window done
 * again later leaves it where it was counted. A receipt recorded after a run's claim, or a row
 * the claim could not write (held by another session), is the next window's: never both.
 */
export function countedInWindow(
  jobs: CountedColumns,
  from: number | Placeholder | Column,
  to: number | Placeholder | Column,
): SQL {
  return or(
    and(
      gte(jobs.createdAt, from),
      lt(jobs.createdAt, to),
      or(
        and(isNull(jobs.nightlyCounted), lt(jobs.recordedAt, to)),
        eq(jobs.nightlyCounted, "date"),
      ),
    ),
    countedLate(jobs, from, to),
  )!;
}

/** The columns of `verification_runs` `countedByLaterRun` reads (either dialect's table). */
type RunsTable = Table & {
  status: Column;
  windowFrom: Column;
  windowTo: Column;
  finishedAt: Column;
};

/**
 * Jobs dated at or after `to` that a nightly run has counted already: a completed run whose
 * window counts the job (`countedInWindow` with the run's bounds), which ended after the job
 * was recorded (`runs`, `verification_runs`). A run of an earlier window run after theirs (out
 * of order, or again) names such a job when it judges it: its own window's run has passed, and
 * the later ones count their own windows. One no completed run counted is its own window's
 * run's to count: how far the runs have counted (a high-water mark) took a window skipped
 * while a later one ran for counted, and a run's window merely holding a job's date or its
 * recording took one recorded after the run's claim (or dated after its window) for counted,
 * and each such job was named twice, by the earlier run and then by the one counting it.
 */
export function countedByLaterRun(jobs: CountedColumns, to: number, runs: RunsTable): SQL {
  return and(
    gte(jobs.createdAt, to),
    sql`EXISTS (SELECT 1 FROM ${runs} WHERE ${runs.status} = 'completed'
      AND ${runs.windowFrom} IS NOT NULL AND ${runs.windowTo} IS NOT NULL
      AND ${jobs.recordedAt} < ${runs.finishedAt}
      AND ${countedInWindow(jobs, runs.windowFrom, runs.windowTo)})`,
  )!;
}

/**
 * Jobs sent back to be judged again (`previous_verdict` set) and open now, of another window
 * than [from, to) whose run has passed, as `notCountedIn` takes them: dated before it, or after
 * it in a window the runs have counted (`countedByLaterRun`). `OpsStore.sentBackElsewhere`.
 */
export function sentBackElsewhereWhere(
  jobs: CountedColumns & { previousVerdict: Column; verdict: Column },
  runs: RunsTable,
  from: number,
  to: number,
): SQL {
  return and(
    isNotNull(jobs.previousVerdict),
    verdictIsOpen(jobs.verdict),
    or(lt(jobs.createdAt, from), countedByLaterRun(jobs, to, runs)),
    sql`NOT (${countedInWindow(jobs, from, to)})`,
  )!;
}

/**
 * `created_at` in [from, to), as a filter of the rows `jobs_recorded_late` gives, not a range of
 * `jobs_created_at` (the unary plus): read by its date, the count read every job of the window,
 * a day's proxied receipts included, to find the few recorded after it.
 */
const datedIn = (createdAt: Column, from: number | Placeholder, to: number | Placeholder) =>
  sql`+${createdAt} >= ${from} AND +${createdAt} < ${to}`;

/**
 * Jobs dated in [from, to) that the window does not count (`countedInWindow`): counted by the
 * window they were recorded in. The rollups, summed by the day a job is dated, count them in
 * the window. Each is recorded after its date, so at or after `from`: the terms of the partial
 * index `jobs_recorded_late`.
 */
export function datedNotCounted(
  jobs: CountedColumns,
  from: number | Placeholder,
  to: number | Placeholder,
): SQL {
  return and(
    gte(jobs.recordedAt, from),
    datedIn(jobs.createdAt, from, to),
    recordedAfterDate(jobs.createdAt, jobs.recordedAt),
    or(eq(jobs.nightlyCounted, "late"), and(isNull(jobs.nightlyCounted), gte(jobs.recordedAt, to))),
  )!;
}

/**
 * Jobs recorded in [from, to) that the window counts as recorded late: dated before it and not
 * claimed by their date's window, or claimed by a window they were recorded in (`late`).
 */
export function countedLate(
  jobs: CountedColumns,
  from: number | Placeholder | Column,
  to: number | Placeholder | Column,
): SQL {
  return and(
    gte(jobs.recordedAt, from),
    lt(jobs.recordedAt, to),
    recordedAfterDate(jobs.createdAt, jobs.recordedAt),
    or(eq(jobs.nightlyCounted, "late"), and(isNull(jobs.nightlyCounted), lt(jobs.createdAt, from))),
  )!;
}

/**
 * The jobs a run of [from, to) claims before it counts, not claimed before (`nightly_counted`
 * null): `date`, those dated in it and recorded after its end, which it counts and the window
 * they were recorded in would count too; `late`, those recorded in it and dated before it, which
 * it counts and a run of their date's window done again would count too. Written once: the first
 * run to write decides, and every later run counts as it says.
 */
export function unclaimedOfWindow(
  jobs: CountedColumns,
  how: "date" | "late",
  from: number | Placeholder,
  to: number | Placeholder,
): SQL {
  const window =
    how === "date"
      ? and(gte(jobs.recordedAt, to), datedIn(jobs.createdAt, from, to))
      : and(gte(jobs.recordedAt, from), lt(jobs.recordedAt, to), lt(jobs.createdAt, from));
  return and(
    window,
    recordedAfterDate(jobs.createdAt, jobs.recordedAt),
    isNull(jobs.nightlyCounted),
  )!;
}

/**
 * Whether `filter` leaves any job out: a window or named jobs. `{}` or `{from: undefined}` (a
 * `verify` run over the whole store) covers every job, as no filter does.
 */
export function narrows(filter: QueueFilter | null): filter is QueueFilter {
  return (
    filter !== null &&
    (filter.from !== undefined || filter.to !== undefined || filter.jobIds !== undefined)
  );
}

/**
 * Where a job read by `JobQueueStore.putOff` sits in its order (next look, then job id): the
 * next page starts after it.
 */
export interface PutOffCursor {
  nextVerifyAt: number;
  jobId: string;
}

/**
 * The open jobs `putOff` reads, after `from` when it is given: next look in (`after`, `until`],
 * and past the cursor in (next look, job id) order. The range on the next look walks
 * `jobs_open_due` from the cursor's; the job id settles only the jobs put off at the same
 * moment (a round puts its batch off together), so a page is never a scan of the ones before it.
 */
export function putOffRange(
  jobs: { verdict: Column; nextVerifyAt: Column; jobId: Column },
  after: number,
  until: number,
  from: PutOffCursor | undefined,
): SQL {
  return and(
    verdictIsOpen(jobs.verdict),
    from === undefined
      ? gt(jobs.nextVerifyAt, after)
      : and(
          gte(jobs.nextVerifyAt, Math.max(from.nextVerifyAt, after + 1)),
          or(gt(jobs.nextVerifyAt, from.nextVerifyAt), gt(jobs.jobId, from.jobId)),
        ),
    lte(jobs.nextVerifyAt, until),
  )!;
}

/**
 * The order a claim takes due jobs in, as three sides each read in `jobs_open_due` order up to
 * the claim's limit and merged by `due`. `fresh`: jobs due at once (`next_verify_at` 0: a new
 * receipt, a reverify), due since they were recorded. `looked`: jobs due again at a time (a
 * retry, a wait for finality, a reopen), due then. Taking the fresh ones first, as the index
 * alone does, left a job waiting for finality unclaimed for as long as new receipts came in
 * faster than the verifier took them. Only the order reads `recorded_at`, the recording host's
 * clock: which jobs are claimable is still `next_verify_at` against the claimer's `t`, so a
 * claimer whose clock is behind the recorder's takes new jobs at once, only ordered as if
 * recorded that much later. `far`: jobs whose next look is past `farAfter`, further off than
 * the claimer ever puts one (`longestLookMs`): written before the clock was stepped back, they
 * are due now. A `narrowed` claim (a window, named jobs) compares an expression,
 * not the column, so neither side walks jobs_open_due through the due jobs outside the window.
 */
export function claimOrder(
  jobs: { nextVerifyAt: Column; recordedAt: Column },
  t: number | Placeholder,
  narrowed: boolean,
  farAfter: number | Placeholder,
): Record<"fresh" | "looked" | "far", { where: SQL; due: SQL }> {
  const next = narrowed ? sql`(${jobs.nextVerifyAt} + 0)` : sql`${jobs.nextVerifyAt}`;
  return {
    fresh: { where: lte(next, 0), due: sql`${jobs.recordedAt}` },
    looked: { where: and(gt(next, 0), lte(next, t))!, due: sql`${jobs.nextVerifyAt}` },
    far: { where: gt(next, farAfter), due: sql`CAST(${t} AS bigint)` },
  };
}

/**
 * The `farAfter` of a claim that takes no job as put off too far (see `JobQueueStore.claim`):
 * past every time a due time is written as.
 */
export const NO_FAR_LOOK = Number.MAX_SAFE_INTEGER;

/**
 * A time column (a next attempt) due at `at`: passed, or past `farAfter`, further off than it is
 * ever put, so written before the clock was stepped back.
 */
export const dueOrFar = (next: Column, at: number | Placeholder, farAfter: number | Placeholder) =>
  or(lte(next, at), gt(next, farAfter))!;

/** What an open job waits on, for a run that ends with jobs not final. */
export type OpenJobWait =
  | "held"
  | "refused"
  | "leased"
  | "rpc"
  | "settlement"
  | "jobs_api"
  | "unjudged"
  | "landing"
  | "conflict"
  | "read_past"
  | "finality";

/**
 * The receipt's escrow or settlement signature is one no status poll has found yet
 * (`chain_transactions.state` still `unknown`): the job waits for it to land, or to be called
 * dropped once its blockhash has expired, not for a landed transaction's finality.
 */
export const namesUnseenTransaction = (t: { escrowTx: Column; settlementTx: Column }) =>
  sql<unknown>`EXISTS (SELECT 1 FROM chain_transactions c
    WHERE c.signature IN (${t.escrowTx}, ${t.settlementTx}) AND c.state = 'unknown')`;

/**
 * Parked as RPC trouble only because a signature no endpoint shows waits for its drop: every
 * endpoint answered not found, and the drop waits until each is the profile's slots past the
 * first miss, counted on the slots this process read (src/verify/round.ts). A process that
 * started after the first miss (a restarted `serve`, each nightly `verify`) counts from its own
 * start: the job waits for its transaction to land or be dropped, no RPC is in trouble.
 */
export const waitingForDrop = (t: { verdict: Column; lastError: Column }) =>
  sql<unknown>`(${inArray(t.verdict, rpcTroubleVerdicts)} AND ${t.lastError} LIKE 'not found; %the drop waits until each %'
    AND ${t.lastError} NOT LIKE '%could not be asked%' AND ${t.lastError} NOT LIKE '%disagree%')`;

/**
 * Every transaction the verifier reads for the job is final and read (`chain_transactions`
 * finalized, fetched): the receipt's escrow, and its settlement, and the escrow and settlement
 * the jobs API named, those it names (src/verify/round.ts reads all four). A job still
 * `awaiting_finality` then waits for no transaction, but for the escrow scan or the credit
 * vaults' ledger to read past it (src/verify/escrow-cover.ts; the scan holds a lock no step
 * closes for minutes). A receipt without a settlement (a skip-settlement answer, imported)
 * used to be said to wait for its transactions' finality, sending on-call to the RPC; so was
 * one whose only settlement the jobs API named, final and read, and one whose answer named a
 * second settlement not final yet was said to wait for the scan.
 */
export const transactionsFinalAndRead = (t: {
  escrowTx: Column;
  settlementTx: Column;
  apiEscrowTx: Column;
  apiSettlementTx: Column;
}) => {
  const finalAndRead = (signature: Column) =>
    sql`EXISTS (SELECT 1 FROM chain_transactions c WHERE c.signature = ${signature}
      AND c.state = 'finalized' AND c.fetched_at IS NOT NULL)`;
  // A jobs API signature that is the receipt's own is probed once.
  return sql<unknown>`(${t.escrowTx} IS NOT NULL AND ${finalAndRead(t.escrowTx)}
    AND (${t.settlementTx} IS NULL OR ${finalAndRead(t.settlementTx)})
    AND (${t.apiEscrowTx} IS NULL OR ${t.apiEscrowTx} = ${t.escrowTx} OR ${finalAndRead(t.apiEscrowTx)})
    AND (${t.apiSettlementTx} IS NULL OR ${t.apiSettlementTx} = ${t.settlementTx}
      OR ${finalAndRead(t.apiSettlementTx)}))`;
};

/**
 * A signature the job names only through a conflicting receipt, a jobs API answer's earlier
 * step or a ledger line kept with it (`job_conflict_signatures`) that is neither final and read
 * nor set aside (dropped, pruned): the verifier reads it with the job's own (`jobSignatures`),
 * so a job whose own transactions are all final and read still waits for it. Such a job was
 * said to wait for the escrow scan or the ledger. Over a select from `jobs`.
 */
export const conflictNotFinal = () =>
  // \`jobs.job_id\` spelled out: drizzle writes a column of a one-table select unqualified, which
  // the subquery would read as its own \`k.job_id\`.
  sql<unknown>`EXISTS (SELECT 1 FROM job_conflict_signatures k WHERE k.job_id = jobs.job_id
    AND NOT EXISTS (SELECT 1 FROM chain_transactions c WHERE c.signature = k.signature
      AND (c.state IN ('dropped', 'pruned') OR (c.state = 'finalized' AND c.fetched_at IS NOT NULL))))`;

/**
 * The job is leased by a verifier other than `owner` (serve's beside a run, another `verify`,
 * or, in a copy of a store, the one still working on the original): that verifier judges it, or
 * its lease has to be taken over first. A verdict write clears the lease, so a lease read once
 * a run has let its own go is another's. Such a job was said to wait for the escrow scan or
 * the ledger (its transactions final), or not to be judged for a slow RPC.
 */
export const leasedElsewhere = (t: { leaseOwner: Column }, owner: Placeholder | string) =>
  sql<unknown>`(${t.leaseOwner} IS NOT NULL AND ${t.leaseOwner} <> ${owner})`;

/**
 * The start of the last error of a job whose verdict write failed on its own too, parked as
 * `error` until its next try (src/verify/round.ts).
 */
export const VERDICT_NOT_WRITTEN = "the verdict could not be written: ";

/** What a write refused for a row or table another session kept locked says (PostgreSQL). */
export const HELD_LOCKED = "is held locked by another session";

/**
 * The job was parked as `error` because its verdict write was refused: a row it locks (a job
 * its pin reopens, say) stayed held by another database session, not the RPC in trouble.
 */
export const verdictRefusedOnHeldRow = (t: { verdict: Column; lastError: Column }) =>
  sql<unknown>`(${t.verdict} = 'error' AND ${t.lastError} LIKE ${`${VERDICT_NOT_WRITTEN}%${HELD_LOCKED}%`})`;

/**
 * Jobs waiting on RPC trouble (`rpcTroubleVerdicts`), less those parked on a held row
 * (`verdictRefusedOnHeldRow`): no RPC was in trouble for them.
 */
export const waitingOnRpc = (t: { verdict: Column; lastError: Column }) =>
  sql<unknown>`(${inArray(t.verdict, rpcTroubleVerdicts)} AND (${verdictRefusedOnHeldRow(t)}) IS NOT TRUE)`;

/**
 * The refusal a job parked on a held row was written with, from "job X: its row is held locked
 * by another session (waited …)" up to what became of the write.
 */
export const refusalOf = (lastError: string) =>
  lastError.slice(VERDICT_NOT_WRITTEN.length).split("; ")[0] ?? "";

/** One group of open jobs as the store counts them. */
export interface OpenJobGroup {
  verdict: Verdict;
  source: string;
  backfillState: string | null;
  /** Neither the receipt nor a jobs API answer names a settlement. */
  noSettlement: boolean;
  /** A jobs API answer names the settlement or says refunded / failed. */
  answered: boolean;
  /** The escrow or settlement signature has not been seen on chain yet (`namesUnseenTransaction`). */
  unseen: boolean;
  /** Every transaction it names, the jobs API's too, is final and read (`transactionsFinalAndRead`). */
  finalAndRead: boolean;
  /** Parked as RPC trouble while a signature waits for its drop (`waitingForDrop`). */
  waitingForDrop: boolean;
  /** Another database session holds the job's row locked as it is read (PostgreSQL only). */
  held: boolean;
  /** Leased by another verifier than the one reading (`leasedElsewhere`). */
  leased: boolean;
  /** A signature named with the job is not final and read yet (`conflictNotFinal`). */
  conflictOpen: boolean;
  /**
   * The last error of one of the group's jobs parked as `error` because their verdict write was
   * refused on a row another session held locked (`verdictRefusedOnHeldRow`), else null.
   */
  refusal: string | null;
  n: number;
}

/**
 * What the jobs of a group wait on, as the verifier decides it (src/verify/decide.ts): a row
 * another database session holds locked (no claim takes it, no verdict write waits for it), a
 * verdict write refused on a row held so (parked as `error`, though no RPC was in trouble), RPC
 * trouble, the settlement backfill's search, the jobs API's answer (a proxied or backfilled
 * job waits for it), a judgement not yet made, a signature not seen on chain yet, the escrow
 * scan or the ledger to read past transactions all final, else the chain's finality.
 */
export function openJobWait(
  group: Omit<OpenJobGroup, "n">,
  verifier: { waitsForJobsApi: boolean },
): OpenJobWait {
  if (group.held) return "held";
  if (group.refusal !== null) return "refused";
  // Another verifier has it: whatever else it waits on, that verifier looks at it, not this run.
  if (group.leased) return "leased";
  // Every endpoint answers not found and the drop waits for their slots: no RPC is in trouble.
  if (group.waitingForDrop) return "landing";
  if (rpcTroubleVerdicts.includes(group.verdict)) return "rpc";
  if (group.backfillState === "pending" && group.noSettlement) return "settlement";
  const asks = group.backfillState === "pending" || group.source === "proxy";
  if (verifier.waitsForJobsApi && asks && !group.answered) return "jobs_api";
  // Never judged (or sent back and not judged again): its transactions were not read, which
  // is no wait for finality (a slow or failing RPC, or a run too short for its jobs).
  if (group.verdict === "pending") return "unjudged";
  if (group.unseen) return "landing";
  // Its own transactions final, a conflicting receipt's (or a ledger line's) is not: the chain.
  if (group.verdict === "awaiting_finality" && group.finalAndRead && group.conflictOpen) {
    return "conflict";
  }
  // Held with every transaction final: for the escrow scan or the ledger, not the chain.
  if (group.verdict === "awaiting_finality" && group.finalAndRead) return "read_past";
  return "finality";
}

/**
 * Counts of open jobs by what they wait on; `waitsForJobsApi`: the verifier holds a job for
 * the jobs API's answer (serve's does; `verify` run alone does not).
 */
export function countOpenJobWaits(
  groups: readonly OpenJobGroup[],
  verifier: { waitsForJobsApi: boolean },
): Record<OpenJobWait, number> {
  const counts: Record<OpenJobWait, number> = {
    held: 0,
    refused: 0,
    leased: 0,
    rpc: 0,
    settlement: 0,
    jobs_api: 0,
    unjudged: 0,
    landing: 0,
    conflict: 0,
    read_past: 0,
    finality: 0,
  };
  for (const group of groups) counts[openJobWait(group, verifier)] += group.n;
  return counts;
}

/**
 * A job whose final verdict another profile than `judgedBy` wrote, at or before `before`: what
 * a verifier started under `judgedBy` at `before` judges again (src/verify/profile-sweep.ts).
 * A verdict another profile wrote after `before` is left to it: two processes under two
 * profiles each judge the other's verdicts of before their start once, never back and forth.
 * A verdict written before profiles were recorded (`verdict_profile` null) is one too:
 * whichever profile wrote it may not be this one, and judged again it records its profile, so
 * it is judged again once, not at each start. The sweep reopens by it and the nightly counts
 * by it, so a run that ends before the sweep reached a job does not call it verified.
 */
export function judgedElsewhere(
  jobs: { verdict: Column; verdictProfile: Column; verdictAt: Column },
  judgedBy: string,
  before?: number,
): SQL {
  return and(
    not(verdictIsOpen(jobs.verdict)),
    or(isNull(jobs.verdictProfile), ne(jobs.verdictProfile, judgedBy)),
    before === undefined ? undefined : or(isNull(jobs.verdictAt), lte(jobs.verdictAt, before)),
  )!;
}

/** One step of the profile sweep: see `JobQueueStore.reopenJudgedElsewhere`. */
export interface SweepStep {
  judgedBy: string;
  before: number;
  /** The last job id an earlier step passed; null: from the first job. */
  after: string | null;
  /** These jobs instead of the `scan` after `after`: those an earlier step found held locked. */
  ids?: readonly string[];
  /** Jobs read, in `job_id` order. */
  scan: number;
  /** Jobs reopened at most. */
  limit: number;
  filter: QueueFilter | null;
  t: number;
}

/** What one step of the sweep did. */
export interface SweepSlice {
  reopened: string[];
  /** The last job id passed: the next step's `after`. */
  last: string | null;
  /** The step passed the last job: the sweep is over. */
  end: boolean;
  /**
   * Jobs to reopen that another database session held locked (PostgreSQL; skipped, never
   * waited for): to be tried again.
   */
  held: string[];
}

/**
 * The jobs of one slice a step reopens, from the slice's rows (`due`: judged elsewhere, in the
 * filter) in `job_id` order: at most `limit`, the slice passed up to the last one taken when the
 * limit is reached, else whole.
 */
export function sliceToReopen(
  rows: readonly { jobId: string; due: boolean | number }[],
  step: Pick<SweepStep, "after" | "scan" | "limit">,
): { ids: string[]; last: string | null; end: boolean } {
  const ids: string[] = [];
  for (const row of rows) {
    if (!row.due) continue;
    if (ids.length === step.limit) {
      return { ids, last: ids[ids.length - 1] ?? step.after, end: false };
    }
    ids.push(row.jobId);
  }
  return { ids, last: rows[rows.length - 1]?.jobId ?? step.after, end: rows.length < step.scan };
}

/**
 * A reverify asks the jobs API again about a job its settlement backfill gave up on: one given
 * up for want of a key (a process killed before its stream's lookup, `DECENTRAL_API_KEYS` not
 * set) found its settlement once the key was added and the job reverified. Due at once.
 */
export const backfillAgainSet = {
  backfillState: "pending",
  backfillAttempts: 0,
  backfillNextAt: 0,
} as const;

/**
 * What a reopen writes of the job judged again (`jobs.previous_verdict`, `rejudge_reason`): a
 * job leaving a final verdict keeps it there, with `because` (an SQL literal or placeholder of
 * `rejudgeReasons`); one reopened while already judged again keeps the verdict it left, and
 * its reason unless `because` is `evidence`: new evidence outranks a profile change or a
 * request by hand, and a user must not read "the profile changed" for a job a jobs API answer
 * or a ledger read sent back. A job that had no final verdict gains neither. The `unproven`
 * codes of the verdict it leaves are cleared: they are no verdict's while it is open, and
 * `GET /audit/:jobId` showed a `partially_verified` job's codes beside `pending` as if current.
 */
export function rejudgeColumns(
  t: { verdict: Column; previousVerdict: Column; rejudgeReason: Column },
  because: SQL | Placeholder,
) {
  const leaves = verdictIsFinal(t.verdict);
  return {
    previousVerdict: sql`CASE WHEN ${leaves} THEN ${t.verdict} ELSE ${t.previousVerdict} END`,
    rejudgeReason: sql`CASE WHEN ${leaves} THEN ${because}
      WHEN ${t.previousVerdict} IS NOT NULL AND ${because} = 'evidence' THEN 'evidence'
      ELSE ${t.rejudgeReason} END`,
    unproven: null,
  };
}

/** A reason of `rejudgeReasons` as the SQL literal a reopen writes. */
export const reasonLiteral = (because: RejudgeReason): SQL => sql.raw(`'${because}'`);
