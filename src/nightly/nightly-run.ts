import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { QuorumRpc } from "../chain/quorum.js";
import type { RpcPool } from "../chain/rpc-pool.js";
import { withoutUrlSecrets } from "../chain/url-secrets.js";
import { isBusyError, pgWriteRefusalHint, type Store, storeErrorNamed } from "../db/client.js";
import { openVerdicts, type Verdict, verdicts } from "../db/schema.js";
import { deadlineSignal } from "../deadline.js";
import { messageOf } from "../errors.js";
import { ownerIsAlive, ownerIsDead, ownerName } from "../host-identity.js";
import {
  type EscrowRun,
  LedgerNotFinalError,
  type LedgerWindowResult,
  ledgerFindingCount,
} from "../ledger/window-check.js";
import { printable } from "../printable-text.js";
import { isoOf } from "../reports/period.js";
import { countJobsByVerdict } from "../reports/reconciliation.js";
import { createJobQueueStore } from "../store/job-queue.js";
import {
  createOpsStore,
  failsRun,
  type HeadersNotJudged,
  type SentBackElsewhere,
  type TurnedBad,
  verdictsCalledVerified,
} from "../store/ops.js";
import { countOpenJobWaits, type OpenJobWait, refusalOf } from "../store/queue-rules.js";
import {
  createVerificationRunStore,
  type LateNotClaimed,
  type NightlyRunOutcome,
} from "../store/verification-runs.js";
import type { ProfileStatus } from "../verify/profile-status.js";
import { acquireLock, lockHolder, releaseLock, sharedLockNow, takeOverLock } from "./locks.js";

/** Name of the lock that keeps two nightly runs apart. */
export const NIGHTLY_LOCK = "nightly-verify";

/** Progress of a run as the engine reports it. */
export interface NightlyProgress {
  total: number;
  final: number;
  byVerdict: Record<Verdict, number>;
}

/** The part of the verifier (`src/verify/engine.ts`) a nightly run uses. */
export interface SettlingEngine {
  /** Its lease owner id: a job leased by another is said to wait on that verifier. */
  readonly owner?: string;
  runUntilSettled(
    filter: { from?: number; to?: number },
    opts: {
      timeoutMs: number;
      signal?: AbortSignal;
      onProgress?(p: NightlyProgress): void;
      holdRun?: boolean;
      runId?: number;
    },
  ): Promise<{
    status: "completed" | "timed_out" | "interrupted";
    runId?: number;
    /** A due job's row was held locked by another database session during the run. */
    rowsHeld?: true;
    /** Final jobs another profile had judged, sent back to be judged under this one. */
    rejudged?: number;
    /** Why the run's last round could not reach the database, when it ended so. */
    databaseTrouble?: string;
  }>;
  /**
   * Judges what of `jobIds` it can now and waits for none (`Verifier.judgeDue`): the jobs of
   * other windows sent back to be judged again before the run. An engine without it leaves
   * them to `serve`'s verifier.
   */
  judgeDue?(
    jobIds: readonly string[],
    opts: { timeoutMs: number; signal?: AbortSignal; runId?: number },
  ): Promise<{ judged: string[] }>;
  /**
   * Closes the run row kept `running` (`holdRun`) through the ledger's read, with the night's
   * outcome. An engine without it finishes its row as the jobs settle; the outcome is then
   * written on the finished row.
   */
  endRun?(
    runId: number,
    status: "completed" | "timed_out" | "interrupted",
    outcome: NightlyRunOutcome,
    t: number,
  ): Promise<void>;
}

export interface NightlyOptions {
  /** Window start, inclusive (ms since epoch). */
  from: number;
  /** Window end, exclusive (ms since epoch). */
  to: number;
  /** Give up after this long; the run then exits 2. */
  timeoutMs: number;
  /**
   * How long past `timeoutMs` the summary's reads wait for a database that is away (restarting,
   * its write lock held), so that a run that timed out then still says what the window holds
   * (`verify`: VERIFY_CLOSE_GRACE_MS, as for its run row). Default 15 s.
   */
  closeGraceMs?: number;
  /**
   * When the run's time began, on the monotonic clock (`performance.now()`). Default: as the
   * run starts. `verify` gives 0, its process's start, so the time its start took (modules
   * loaded on a busy host, the database waited for) counts against its `--timeout`.
   */
  startedTick?: number;
  /**
   * A window holding fewer jobs than this ends `too_few_jobs` (exit 1): a day without traffic
   * often means the recorder stopped, not that all is well. Default 0: never.
   */
  minJobs?: number;
  /**
   * The engine's verifier holds a proxied job for the jobs API's answer (serve's does), so a
   * run that ends with such jobs open names the jobs API. Default false (`verify` alone).
   */
  waitsForJobsApi?: boolean;
  /**
   * The RPC quorum (none without one): a run that ends with jobs open names the endpoints that
   * answered "not found" during it for transactions another endpoint served, and one with jobs
   * in `rpc_disagreement` the endpoints that took a side of a disagreement no quorum settled.
   */
  rpcQuorum?: Pick<QuorumRpc, "leftOut" | "quorumStatus">;
  /**
   * The RPC's attempt counts (`RpcPool.stats`): open jobs of a run whose RPC answered 429 name
   * the rate limiting, not "a slow or failing RPC?".
   */
  rpcStats?: RpcPool["stats"];
  /** Runs before anything else, e.g. an RPC `getSlot`; a rejection means "could not finish". */
  preflight?: () => Promise<unknown>;
  onProgress?: (p: NightlyProgress) => void;
  /**
   * The credit vaults' ledger of the window (src/ledger/window-check.ts), run after the jobs
   * are final: an unreceipted debit, an unreleased lock (the window's, or one just before it
   * that fell due since), a gap in a vault's history or a closing balance off the chain's is a
   * finding (exit 1); a ledger not read through the window makes the run incomplete. It waits,
   * within the run's time, until the chain has finalized past the window's end.
   */
  ledger?: ((window: {
    from: number;
    to: number;
    signal?: AbortSignal;
    /** The run's escrow scans so far: the read's own scan lists only what is newer. */
    escrow?: EscrowRun;
  }) => Promise<LedgerWindowResult>) & {
    /**
     * Records how far the run judged each vault's history (`ledgerWindowCheck`): called only
     * when the run's outcome is not "could not finish", so the next run judges again what
     * this one could not report.
     */
    commit?: (result: LedgerWindowResult) => Promise<void>;
    /**
     * The escrow scan alone, before any job is judged (`ledgerWindowCheck`): the jobs it sent
     * back, and why it could not read the escrow vault, when it could not (the run then judges
     * no job).
     */
    escrowFirst?: (window: {
      from: number;
      to: number;
      signal?: AbortSignal;
      escrow?: EscrowRun;
    }) => Promise<{ failed: string | null; sentBack: string[] }>;
  };
  signal?: AbortSignal;
  /** Lock owner id; random by default. */
  owner?: string;
  now?: () => number;
  /** What the protocol profile cannot check for any job; said once in the summary. */
  profile?: () => Promise<ProfileStatus>;
  /**
   * Called before each of the run's closing writes (the nightly lock's release, the ledger's
   * marks, the run row): `verify` bounds SQLite's wait for another process's write lock by the
   * time left there. Its own timer may not have run: a wait holds the event loop, and the
   * writes follow each other without a turn of it.
   */
  boundWaits?: () => void;
  /**
   * The outcome its caller already reported when it gave up on the run (serve's schedule, its
   * database answering nothing past the run's time), or null. The run, going on once the
   * database answers, writes that on its row, as the status page shows the exit code the
   * caller was told; and it keeps the ledger's marks where they were, so the next run reports
   * again the findings nobody was told of.
   */
  givenUp?: () => NightlyRunOutcome | null;
  /**
   * The bounds on the jobs of other windows sent back that the run judges
   * (`sentBackElsewhere`): how many it reads, and the longest it spends on them. Default
   * `MAX_SENT_BACK_JUDGED` and `SENT_BACK_MS`.
   */
  sentBack?: { jobs?: number; ms?: number };
}

/** A job of the window that did not end verified, with its failing checks. */
export interface NightlyFinding {
  jobId: string;
  verdict: Verdict;
  failingChecks: string[];
}

/**
 * A job of another window judged again after that window's run (`earlierJobs`, `laterJobs`),
 * and how it was found.
 */
export interface OtherWindowFinding extends NightlyFinding {
  foundBy: "escrow_scan" | "judged_again" | "sent_back";
}

/**
 * The jobs of other windows sent back to be judged again before a run began (a reverify, a
 * profile's new rule, a conflicting receipt, a ledger line read late: `previous_verdict` set),
 * which the run judged as it could once its own window's work was done (`sentBackElsewhere`).
 */
export interface SentBackElsewhereCounts {
  /** Those it wrote a final verdict for. */
  judged: number;
  /**
   * Of those, the ones whose verdict is another than the one they were sent back from; those
   * not verified are named (`earlierJobs`, `laterJobs`), once.
   */
  changed: number;
  /**
   * Those still open as it ended: leased by another verifier (serve's, which judges them), put
   * off (their transactions not final, the escrow scan or the ledger not past them), past the
   * run's bound (`MAX_SENT_BACK_JUDGED` jobs, `SENT_BACK_MS`), or not read (`unread`). The
   * next run, or serve's verifier, judges them.
   */
  left: number;
  /** Why they were not read or judged, when the database or the verifier failed. */
  unread?: string;
}

/** What a nightly run found; `exitCode` is the contract with cron: 0, 1 or 2. */
export interface NightlySummary {
  from: number;
  to: number;
  startedAt: number;
  finishedAt: number;
  /**
   * `verified`: every job verified, at least one job (0); `no_jobs`: no job was recorded in the
   * window, so nothing was verified (0); `too_few_jobs`: fewer than `minJobs` (1);
   * `discrepancies`: a job is not verified (1); `ledger_findings`: every job verified, but a
   * credit vault moved money no receipt explains (1); `incomplete`: could not finish (2).
   */
  outcome:
    | "verified"
    | "no_jobs"
    | "too_few_jobs"
    | "discrepancies"
    | "ledger_findings"
    | "incomplete";
  exitCode: 0 | 1 | 2;
  /** Why the run could not finish (lock held, RPC unreachable, timeout, database error). */
  reason: string | null;
  total: number;
  /** The `minJobs` the run was given (0 when none). */
  minJobs: number;
  byVerdict: Record<Verdict, number>;
  /** Jobs that ended discrepancy, dropped or unverifiable (at most `maxFindings`). */
  findings: NightlyFinding[];
  /** Findings beyond those listed. */
  moreFindings: number;
  /**
   * Partially verified jobs by what was left unproven (e.g. `usage_unknown`): no check failed,
   * so they do not fail the run, but they are not proven in full either.
   */
  unproven: Record<string, number>;
  /** The profile's gaps (checks no job can pass under it), when the caller knows the profile. */
  profile: ProfileStatus | null;
  runId: number | null;
  /** The ledger of the window, when the run read it. */
  ledger?: LedgerWindowResult;
  /**
   * Jobs of the window another profile had judged before the run began, judged again under
   * this run's profile; absent when none.
   */
  rejudged?: number;
  /**
   * Jobs of earlier windows (counted by the run of the window they are in) judged again after
   * that run: `escrow_scan`, sent back by this run's escrow scan (a payout out of escrow under
   * the job's memo, made or found after that run) and judged by this run; `judged_again`,
   * turned from verified to a verdict that fails a run since (serve's scan found such a payout
   * first, or the run that found it did not complete), each named by the first run to complete
   * after; `sent_back`, sent back to be judged again before the run and judged by it to a
   * verdict that fails a run other than the one it was sent back from (one turned from verified
   * is named `judged_again`). Each with its verdict now; one not verified fails the run
   * (`discrepancies`), one not final leaves it incomplete. Absent when none.
   */
  earlierJobs?: OtherWindowFinding[];
  /**
   * Jobs of later windows whose run has passed (a run of an earlier window run after theirs:
   * out of order, or again), found as `earlierJobs` are: their own run has counted them, and
   * the runs after count their own windows. Absent when none.
   */
  laterJobs?: OtherWindowFinding[];
  /**
   * Final jobs of the window whose verdict another profile than the run's wrote (a process
   * under another `AUDIT_PROFILE` judged them after the run began), by that profile: not verified under the run's profile, so the run is incomplete. Absent when none.
   */
  judgedElsewhere?: { profile: string | null; jobs: number }[];
  /**
   * The jobs of other windows sent back to be judged again before the run began, which it
   * judged as extra work, waiting for none: how many it judged and how many it left. Those left
   * fail nothing (no exit 2): they are not the window's. Absent when there were none.
   */
  sentBackElsewhere?: SentBackElsewhereCounts;
  /**
   * Set when the database did not answer the summary's reads (an outage outlasting the run):
   * `total`, `byVerdict`, `findings` and `unproven` are then not known, not zero.
   */
  countsUnknown?: true;
  /**
   * The run's closing writes that failed (another process's write lock held as it closed, or the
   * database away): the outcome stands, judged in full, but what follows is said (the next
   * nightly judges the ledger's history again; the status page shows the run abandoned).
   */
  notStored?: string[];
}

const maxFindings = 100;

/**
 * How many times a run reads the ledger, the first read and those made again for receipts
 * recorded during the run whose credits headers it left unjudged: receipts that keep coming
 * (an import of the window running beside it) cannot hold the run in reads; those left are
 * named instead, and the run is incomplete.
 */
const MAX_LEDGER_READS = 3;

/** Jobs named by a run that left their credits headers unjudged; the rest are counted. */
const MAX_NAMED_UNJUDGED = 10;

/** Jobs named by a run that could not claim the late ones it counted; the rest are counted. */
const MAX_NAMED_UNCLAIMED = 10;

/**
 * The jobs of other windows sent back to be judged again that one run judges, those due first
 * (`OpsStore.sentBackElsewhere`): a profile's new rule may send back every clean verdict at
 * once; the runs after take the rest.
 */
export const MAX_SENT_BACK_JUDGED = 1_000;

/**
 * The longest a run spends on them, and never more than half the time its own window's work
 * left it: the run's own window keeps its time, and the run its closing writes' time.
 */
export const SENT_BACK_MS = 60_000;

/** How many times a run claims again the late jobs its first claim left (a second apart). */
const LATE_CLAIM_RETRIES = 3;

/** Pause between attempts while the database is away (a restart, a failover, a lock held). */
const DATABASE_RETRY_MS = 1000;
/**
 * How long the summary's reads wait for the database past the run's deadline unless told
 * (`NightlyOptions.closeGraceMs`): a run that timed out while the database was away still says
 * what the window holds once it is back.
 */
const SUMMARY_GRACE_MS = 15_000;

/** How long a run's outcome, its write refused by the lock past the run's time, is tried again. */
const OUTCOME_RETRY_MS = 500;
/** The pause between two of those tries, each at once or not at all. */
const OUTCOME_RETRY_GAP_MS = 10;

/** Tries `write` again every `OUTCOME_RETRY_GAP_MS` for `OUTCOME_RETRY_MS` while the lock is held. */
async function triedAgain(write: () => Promise<void>): Promise<boolean> {
  const until = performance.now() + OUTCOME_RETRY_MS;
  while (performance.now() < until) {
    await sleep(OUTCOME_RETRY_GAP_MS);
    try {
      await write();
      return true;
    } catch (error) {
      if (!isBusyError(error)) return false;
    }
  }
  return false;
}

/**
 * How long past its time a nightly run on PostgreSQL may go on before it is given up on (see
 * `givenUpOnHung`): the summary's reads are tried for `closeGraceMs` past it (15 s unless
 * told), each read and the run row's write waiting out up to a statement timeout (README's
 * PostgreSQL table lock), and 5 s more.
 */
export function hangMarginMs(statementTimeoutMs: number, closeGraceMs = SUMMARY_GRACE_MS): number {
  return closeGraceMs + 5_000 + 2 * statementTimeoutMs;
}

/** The longest a Node timer waits (a longer one fires at once). */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * `run`, or what `giveUp()` says once `ms` have passed since `startedTick` (monotonic clock): a
 * database that stops answering without closing its connections (a server hung, a network
 * dropping its packets) holds each of the run's calls into it until it answers again, or for
 * ever, as none has a deadline of its own. The run given up on is left to end on its own.
 */
export async function givenUpOnHung<T>(
  run: Promise<T>,
  ms: number,
  startedTick: number,
  giveUp: () => T,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      run,
      new Promise<T>((resolve) => {
        const wait = ms - (performance.now() - startedTick);
        timer = setTimeout(() => resolve(giveUp()), Math.min(MAX_TIMER_MS, Math.max(0, wait)));
        timer.unref();
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The summary of a run given up on, its database answering nothing `marginMs` past its time
 * (`limit`: what the run's time is called where it was given).
 */
export function unansweredSummary(
  window: { from: number; to: number; minJobs?: number },
  startedAt: number,
  finishedAt: number,
  marginMs: number,
  limit: string,
): NightlySummary {
  const byVerdict = Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
  return {
    from: window.from,
    to: window.to,
    startedAt,
    finishedAt,
    outcome: "incomplete",
    exitCode: 2,
    reason: `database: no answer ${Math.round(marginMs / 1000)} s past the run's ${limit} (a server hung, or a network dropping its packets); the window's job counts could not be read`,
    total: 0,
    minJobs: window.minJobs ?? 0,
    byVerdict,
    findings: [],
    moreFindings: 0,
    unproven: {},
    profile: null,
    runId: null,
    countsUnknown: true,
  };
}

/**
 * `work`, again while the database is away (the store's own test, `isBusyError`: no
 * connection, a server shutting down or restarting, SQLite's write lock held), for at most
 * `ms` of real time (a caller's clock may stand still) or until the signal. Any other error,
 * or one once the time is up, is thrown.
 */
async function whileDatabaseAway<T>(
  work: () => Promise<T>,
  ms: number,
  signal?: AbortSignal,
): Promise<T> {
  const until = performance.now() + ms;
  for (;;) {
    try {
      return await work();
    } catch (error) {
      const wait = Math.min(DATABASE_RETRY_MS, until - performance.now());
      if (!isBusyError(error) || wait <= 0 || signal?.aborted) throw error;
      await sleep(wait, undefined, signal ? { signal } : {}).catch(() => {});
      if (signal?.aborted) throw error;
    }
  }
}

/**
 * How long work told to stop has to end on its own (its own error says more, e.g. how far the
 * chain had finalized) before the caller moves on without it.
 */
const ABORT_GRACE_MS = 500;

/**
 * `work`, or soon after the signal aborts a rejection with its reason: the caller moves on at
 * its deadline while a call that does not heed the signal is left to end on its own (its
 * outcome, an error included, no longer matters).
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  work.catch(() => {});
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      timer = setTimeout(() => reject(signal.reason), ABORT_GRACE_MS);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    });
  });
}

const exitCodes = {
  verified: 0,
  no_jobs: 0,
  too_few_jobs: 1,
  discrepancies: 1,
  ledger_findings: 1,
  incomplete: 2,
} as const satisfies Record<NightlySummary["outcome"], 0 | 1 | 2>;

/**
 * A `--timeout` as it was given: whole seconds bare (`30 s`), under a second in milliseconds.
 * Rounded to whole seconds, `--timeout 1ms` read "timed out after 0 s: its start took 1 s",
 * and the summary beside it "took 0.8 s": three durations where there were two.
 */
export function timeoutText(ms: number): string {
  if (ms % 1000 === 0) return `${ms / 1000} s`;
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Time a run took, in tenths of a second, as the summary's `took` line says it. */
export function tookText(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Brings every job of [from, to) to a final verdict with the verifier, under the nightly lock,
 * and summarises the window from the database (the source of truth, whatever the engine
 * reports). Never throws for a run that could not finish: that is exit code 2 with a reason.
 */
export async function runNightlyVerification(
  store: Store,
  engine: SettlingEngine,
  options: NightlyOptions,
): Promise<NightlySummary> {
  const now = options.now ?? Date.now;
  const owner = options.owner ?? ownerName(`nightly-${randomUUID()}`);
  const startedAt = now();
  // The run as a whole keeps to its timeout (the lock outlives it by a minute): the jobs, then
  // the ledger, then the jobs the ledger reopened, each with what is left of it.
  // Measured on the monotonic clock: a wall clock stepped (NTP, a VM resumed) would end the
  // run at once, or let it run past its timeout by the size of the step.
  const startedTick = options.startedTick ?? performance.now();
  const elapsed = () => Math.round(performance.now() - startedTick);
  const left = () => Math.max(0, options.timeoutMs - elapsed());
  const timedOut = () => `timed out after ${timeoutText(options.timeoutMs)}`;
  let reason: string | null = null;
  // A store error names its file: "database or disk is full" alone said neither which disk
  // nor which database.
  const storeMessage = (error: unknown) => messageOf(storeErrorNamed(store, error));
  const leftOutBefore = options.rpcQuorum?.leftOut() ?? [];
  const unresolvedBefore = unresolvedOf(options.rpcQuorum);
  const rateLimitedBefore = rateLimitedOf(options.rpcStats);
  let runId: number | null = null;
  let runStatus: "completed" | "timed_out" | "interrupted" = "completed";
  /** A due job's row was held locked by another database session during the run. */
  let rowsHeld = false;
  /** Why the verifier's last round could not reach the database, when the run ended so. */
  let databaseTrouble: string | null = null;
  let ledger: LedgerWindowResult | undefined;
  let rejudged = 0;
  /** Jobs of other windows this run's escrow scan sent back, judged by the run. */
  let sentBackOther: string[] = [];
  /**
   * What every read of the ledger's escrow scan sent back: a read made again (for headers
   * recorded during the run) finds the payouts kept already, and sends nothing back.
   */
  const sentBackAll = new Set<string>();
  /**
   * The jobs of other windows sent back to be judged again before the run began, read as it
   * starts (null when not read): those its own ledger read or escrow scan sends back are the
   * next run's, or the escrow scan's path below.
   */
  let sentBackBefore: SentBackElsewhere | null = null;
  /** Those of them the run wrote a final verdict for. */
  let sentBackJudged: string[] = [];
  /** Why they were not read or judged, when they were not. */
  let sentBackTrouble: string | null = null;

  // The lock outlives the run's timeout a little, so a crashed run frees it on its own.
  let holder: Awaited<ReturnType<typeof acquireLock>> = null;
  let locked = false;
  const notStored: string[] = [];
  /** What the run was doing, said with a deadline that came during a wait for the database. */
  let phase = "settling the window's jobs";
  try {
    const ttlMs = options.timeoutMs + 60_000;
    // A database restarting as cron starts the run (its maintenance hour) is waited out, as
    // it is later in the run, within the run's time: the lock is the run's first read.
    holder = await whileDatabaseAway(
      async () => {
        // Judged by the database's clock where runs of other hosts take it (PostgreSQL): a
        // host whose clock ran ahead of a live run's by its lease took the lock, two nightlies
        // at once.
        const lockNow = await sharedLockNow(store, startedAt);
        // A run that still runs on this host keeps the lock whatever its expiry says: judged by
        // this host's clock (SQLite), a step forward past the run's --timeout plus a minute (NTP,
        // a VM resumed) let the next cron start take it, two nightlies at once.
        const current = await lockHolder(store, NIGHTLY_LOCK);
        if (current && current.owner !== owner && ownerIsAlive(current.owner)) return current;
        const found = await acquireLock(store, NIGHTLY_LOCK, owner, ttlMs, lockNow);
        // A run killed (SIGKILL, OOM) on this host left its lock behind: its pid is gone, so
        // the lock is taken now instead of after its expiry (the timeout plus a minute).
        if (found && ownerIsDead(found.owner)) {
          if (await takeOverLock(store, NIGHTLY_LOCK, found.owner, owner, ttlMs, lockNow)) {
            return null;
          }
        }
        return found;
      },
      left(),
      options.signal,
    );
    locked = holder === null;
  } catch (error) {
    // The lock is the run's first write: a URL naming a read replica is found here.
    const hint = pgWriteRefusalHint(error);
    reason = `database: ${storeMessage(error)}${hint === null ? "" : ` (${hint})`}`;
  }
  if (holder) {
    reason = `another verification run holds the lock (owner ${holder.owner}, since ${new Date(holder.acquiredAt).toISOString()}, until ${new Date(holder.expiresAt).toISOString()})`;
  } else if (locked) {
    try {
      // A start (modules loaded on a busy host, the database waited for) that used the whole
      // --timeout leaves the RPC no time to answer: called unreachable, a healthy node would be
      // what the operator looks into.
      if (left() === 0) {
        throw new Error(
          `${timedOut()}: its start took ${tookText(elapsed())}, before the RPC was asked`,
        );
      }
      if (options.preflight) {
        // Within the run's time: a node that hangs kept `verify --timeout 10s` waiting for
        // the preflight's own retries (five attempts of the RPC timeout, over a minute).
        let timer: NodeJS.Timeout | undefined;
        const check = options.preflight();
        check.catch(() => {}); // still running when the time is up; its end matters no more
        try {
          await Promise.race([
            check,
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error(`no answer, ${timedOut()}`)), left());
            }),
          ]);
        } catch (error) {
          throw new Error(`RPC unreachable: ${messageOf(error)}`);
        } finally {
          clearTimeout(timer);
        }
      }
      if (engine.judgeDue) {
        // One read, no wait for a database away: judging them is extra work, never the run's.
        try {
          sentBackBefore = await createOpsStore(store).sentBackElsewhere(
            options.from,
            options.to,
            options.sentBack?.jobs ?? MAX_SENT_BACK_JUDGED,
          );
        } catch (error) {
          sentBackTrouble = `not read: ${storeMessage(error)}`;
        }
      }
      const settle = async (
        filter: { from?: number; to?: number; jobIds?: string[] } = {
          from: options.from,
          to: options.to,
        },
      ) => {
        if (left() === 0) {
          reason = timedOut();
          return;
        }
        const result = await engine.runUntilSettled(filter, {
          timeoutMs: left(),
          ...(options.signal ? { signal: options.signal } : {}),
          ...(options.onProgress ? { onProgress: options.onProgress } : {}),
          // The row stays `running` until the night's outcome is written: killed while the
          // ledger is read, it is closed `abandoned`, not left `completed`. The jobs the
          // ledger reopened are settled on the same row.
          ...(engine.endRun ? { holdRun: true } : {}),
          ...(runId !== null ? { runId } : {}),
        });
        runId = result.runId ?? null;
        runStatus = result.status;
        if (result.rowsHeld) rowsHeld = true;
        databaseTrouble = result.databaseTrouble ?? null;
        rejudged += result.rejudged ?? 0;
        if (result.status === "timed_out") {
          reason = timedOut();
        } else if (result.status === "interrupted") {
          reason = "interrupted";
        }
      };
      // The escrow vault's payouts under the window's jobs' memos are read before any job is
      // judged. Judged first, beside no scan of serve's (none, or one that keeps failing), a job
      // paid out twice was written `verified`, and stayed so when the run's own scan then
      // failed. The scan failing, no job is judged: the run could prove none of them.
      // What the run's escrow scans listed: the one of each read of the vaults goes on from it.
      const escrowRun: EscrowRun = { newest: null, dated: null };
      const escrowFirst = options.ledger?.escrowFirst;
      if (escrowFirst) {
        phase = "reading the escrow vault's payouts under the window's jobs' memos";
        const reading = deadlineSignal(Math.max(1, left()), options.signal);
        try {
          const early = await untilAborted(
            escrowFirst({
              from: options.from,
              to: options.to,
              signal: reading.signal,
              escrow: escrowRun,
            }),
            reading.signal,
          );
          for (const jobId of early.sentBack) sentBackAll.add(jobId);
          if (early.failed !== null) {
            reason = `${early.failed}; no job was judged (a job judged without it could be called verified with a second payout out of escrow unseen)`;
          }
        } catch (error) {
          if (!reading.signal.aborted) throw error;
          runStatus = options.signal?.aborted ? "interrupted" : "timed_out";
          throw new Error(
            options.signal?.aborted
              ? "interrupted"
              : `${timedOut()} (reading the escrow vault's payouts under the window's jobs' memos)`,
          );
        } finally {
          reading.clear();
        }
      }
      phase = "settling the window's jobs";
      if (reason === null) await settle();
      if (reason === null && options.ledger) {
        const readLedger = options.ledger;
        // What the jobs left of the run's time: a run out of time while the vaults are read had
        // spent it, or most of it, on the jobs (a dropped signature waits out its 300 slots), and
        // "(reading the credit vaults' history)" alone sent on-call to the ledger's RPC calls.
        const ledgerHad = left();
        const ops = createOpsStore(store);
        /** The latest recording of a job left unjudged that the last read was made again for. */
        let readAgainFor: number | null = null;
        for (let reads = 1; ; reads++) {
          const reading = deadlineSignal(Math.max(1, left()), options.signal);
          const { signal } = reading;
          try {
            // A database restart while the vaults are read is ridden out as the jobs' rounds
            // ride it out: read again once it answers, within the run's time. Reading again is
            // safe: the reader goes on from each vault's cursor.
            // Raced with the deadline: the reader checks the signal between its calls, but an
            // RPC call that never answers (a node that accepts and hangs) held the run past its
            // --timeout, by the RPC's timeout and retries or for ever.
            ledger = await whileDatabaseAway(
              () =>
                untilAborted(
                  readLedger({ from: options.from, to: options.to, signal, escrow: escrowRun }),
                  signal,
                ),
              left(),
              signal,
            );
          } catch (error) {
            // A wait for another process's write lock, bounded by the time left, ends past the
            // deadline before its timer has run (the wait holds the event loop): the run is out
            // of time all the same, and said only "database is locked", not when nor where.
            const lockedOut = isBusyError(error) && left() === 0;
            if (!signal.aborted && !lockedOut) throw error;
            // Waiting for the chain to finalize the window's end: say how far it had.
            // The row says so too: it was held `running` as `completed` once the jobs settled.
            runStatus = options.signal?.aborted ? "interrupted" : "timed_out";
            const doing =
              error instanceof LedgerNotFinalError
                ? `waiting for finality: ${error.message}`
                : `reading the credit vaults' history${lockedOut ? `: ${messageOf(error)}` : ""}`;
            const jobsTook =
              reads === 1 && ledgerHad < options.timeoutMs / 2
                ? `; the jobs took ${((options.timeoutMs - ledgerHad) / 1000).toFixed(1)} s of it, leaving the read ${(ledgerHad / 1000).toFixed(1)} s`
                : "";
            throw new Error(
              options.signal?.aborted ? "interrupted" : `${timedOut()} (${doing})${jobsTook}`,
            );
          } finally {
            reading.clear();
          }
          reason = ledger.incomplete;
          // Each read's scan sends back what it kept; a read again keeps nothing more of them.
          for (const jobId of ledger.escrowSentBack ?? []) sentBackAll.add(jobId);
          phase = "counting the jobs the ledger's read reopened";
          // The ledger's read reopens the jobs whose credits.header waited for it: settle them.
          const counts = await whileDatabaseAway(
            () => windowJobsByVerdict(store, options.from, options.to),
            left(),
            options.signal,
          );
          phase = "settling the jobs the ledger's read reopened";
          if (reason === null && openVerdicts.some((v) => counts[v] > 0)) await settle();
          if (reason !== null) break;
          // A receipt dated in the window and recorded during the run, after the read above took
          // how far the vaults' lines are read (ingest, an import, serve's proxy still writing),
          // was judged with its credits header a skip, the ledger not read past its response:
          // called verified, the run exited 0 with the header unjudged. The vaults are read again
          // through its header's span (its recording is a late one now, `latestRecordedAfter`),
          // while such receipts keep coming, within the run's time; those still left are named
          // (`headersUnjudgedText`) and the run is incomplete.
          phase = "looking for credits headers the ledger's read left unjudged";
          const unjudged = await whileDatabaseAway(
            () => ops.headersNotJudged(options.from, options.to, 1),
            left(),
            options.signal,
          );
          const latest = unjudged.latestRecordedAt;
          if (latest === null || reads >= MAX_LEDGER_READS || left() === 0) break;
          // None recorded since the last read: a read again judges nothing more.
          if (readAgainFor !== null && latest <= readAgainFor) break;
          readAgainFor = latest;
          phase = "reading the credit vaults again for credits headers recorded during the run";
        }
        // A payout out of escrow under the memo of a job an earlier run counted (a second
        // settlement after that run was over): the scan sent the job back to the verifier, and
        // the run that found it judges it and says so, whatever window the job is dated in.
        // Left to serve's verifier, the run exited 0, and with no serve the job stayed pending.
        // So is a job of a later window whose run has passed, found by a run of an earlier
        // window run after it (out of order, or again): left as its own window's, it was sent
        // back and judged by no run.
        const sentBack = [...sentBackAll];
        if (reason === null && sentBack.length > 0) {
          phase = "judging the jobs of other windows the escrow scan sent back";
          const outside = await whileDatabaseAway(
            () => ops.notCountedIn(sentBack, options.from, options.to),
            left(),
            options.signal,
          );
          if (outside.some((j) => openVerdicts.includes(j.verdict))) {
            await settle({ jobIds: outside.map((j) => j.jobId) });
          }
          sentBackOther = outside.map((j) => j.jobId);
        }
      }
      // A job of another window sent back to be judged again after its window's run (a
      // reverify, a profile's new rule, a conflicting receipt, a ledger line read late) is
      // judged by `serve`'s verifier; with only the nightly `verify` deployed no run judged it
      // (each settles its own window, and that job's had passed): it stayed `pending`. The run
      // judges those sent back before it began once its own window is done, as extra work
      // within a bound, and waits for none: one leased by another verifier (serve's) or put off
      // is left as it is, and those it leaves fail nothing (a run beside serve that waited for
      // them ran out its --timeout and exited 2). Its window's counts are its own as before.
      const judgeDue = engine.judgeDue?.bind(engine);
      if (reason === null && judgeDue && sentBackBefore !== null) {
        const ids = sentBackBefore.jobs.map((j) => j.jobId).filter((id) => !sentBackAll.has(id));
        const budget = Math.min(options.sentBack?.ms ?? SENT_BACK_MS, Math.floor(left() / 2));
        const id: number | null = runId;
        if (ids.length > 0 && budget > 0) {
          try {
            sentBackJudged = (
              await judgeDue(ids, {
                timeoutMs: budget,
                ...(options.signal ? { signal: options.signal } : {}),
                ...(id !== null ? { runId: id } : {}),
              })
            ).judged;
          } catch (error) {
            sentBackTrouble = `not judged: ${storeMessage(error)}`;
          }
        }
      }
    } catch (error) {
      // Out of time in a wait for the lock (or a database away): the timeout and the phase.
      const lockedOut = isBusyError(error) && left() === 0;
      if (lockedOut) runStatus = "timed_out";
      reason = lockedOut ? `${timedOut()} (${phase}: ${messageOf(error)})` : storeMessage(error);
    } finally {
      try {
        await whileDatabaseAway(
          () => {
            options.boundWaits?.();
            return releaseLock(store, NIGHTLY_LOCK, owner);
          },
          left(),
          options.signal,
        );
      } catch {
        // The lock expires on its own (timeout + 1 min); the run's outcome stands.
        notStored.push(
          "the nightly lock's release (it expires a minute after the run's --timeout, or is taken over on this host)",
        );
      }
    }
  }

  if (locked) {
    // The jobs two windows could both count (dated in this one and recorded after its end, or
    // recorded in it and dated before it) are claimed for this window before its counts are
    // read: the next window leaves out what this one counted (`countedInWindow`). Not stored,
    // the count stands: those jobs are counted by the window they were recorded in.
    // Made inside each try: a database closed under the run fails its statements' preparation.
    const runs = () => createVerificationRunStore(store);
    const claim = () =>
      whileDatabaseAway(
        () => {
          options.boundWaits?.();
          return runs().claimWindowJobs(options.from, options.to, now());
        },
        left(),
        options.signal,
      );
    let claimed = true;
    try {
      await claim();
    } catch {
      claimed = false;
    }
    // A job recorded in the window and dated before it is counted by it whether claimed or not
    // (`countedLate`): one left unclaimed (its row held by another session, the claim not
    // stored) was counted here and again by a run of the window it is dated in done later, so
    // the sum of the nightly reports had it twice. Claimed again while time is left, else said:
    // the run is incomplete, and done again it claims them.
    let lateLeft: LateNotClaimed | null = null;
    try {
      for (let tries = 1; ; tries++) {
        lateLeft = await whileDatabaseAway(
          () => runs().lateNotClaimed(options.from, options.to, MAX_NAMED_UNCLAIMED),
          left(),
          options.signal,
        );
        if (lateLeft.jobs === 0 || tries > LATE_CLAIM_RETRIES || left() < DATABASE_RETRY_MS) break;
        await sleep(DATABASE_RETRY_MS, undefined, options.signal ? { signal: options.signal } : {});
        claimed = await claim().then(
          () => true,
          () => false,
        );
      }
    } catch {
      // Not known: the counts below say what they can; an unread list is no finding.
    }
    if (!claimed) {
      notStored.push(
        "which jobs recorded after their date this window counted (those dated in it it did not claim are counted by the window they were recorded in)",
      );
    }
    if (lateLeft !== null && lateLeft.jobs > 0) {
      const text = lateNotClaimedText(lateLeft);
      reason = reason === null ? text : `${reason}; ${text}`;
    }
  }

  let byVerdict = Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
  let found: NightlyFinding[] = [];
  let unproven: Record<string, number> = {};
  let profile: ProfileStatus | null = null;
  let judgedElsewhere: { profile: string | null; jobs: number }[] = [];
  let countsUnknown = false;
  let countsRead = false;
  let unjudged: HeadersNotJudged | null = null;
  /** Jobs of other windows the run names (`earlierJobs`, `laterJobs`). */
  let others: (OtherWindowFinding & { window: "earlier" | "later" })[] = [];
  let turnedDone: TurnedBad["done"] = [];
  let sentBackCounts: SentBackElsewhereCounts | null = null;
  try {
    const ops = createOpsStore(store);
    // Read while the database is away, every count would be 0: read again once it answers
    // (past the deadline by a little), or say the counts are not known.
    // The jobs turned bad after their run first: a job of this window turned after this read is
    // left for the next run, not forgotten unseen by the counts below.
    const turned = await whileDatabaseAway(
      () => ops.turnedBad(options.from, options.to),
      Math.max(left(), options.closeGraceMs ?? SUMMARY_GRACE_MS),
      options.signal,
    );
    const read = await whileDatabaseAway(
      async () => ({
        byVerdict: await countedJobsByVerdict(store, options.from, options.to),
        found: await ops.unverifiedJobs(options.from, options.to, maxFindings),
        unproven: await ops.unprovenCounts(options.from, options.to),
      }),
      Math.max(left(), options.closeGraceMs ?? SUMMARY_GRACE_MS),
      options.signal,
    );
    ({ byVerdict, found, unproven } = read);
    countsRead = true;
    if (sentBackOther.length > 0) {
      others = (await ops.notCountedIn(sentBackOther, options.from, options.to)).map((j) => ({
        ...j,
        foundBy: "escrow_scan" as const,
      }));
    }
    turnedDone = turned.done;
    for (const j of turned.named) {
      if (!others.some((e) => e.jobId === j.jobId)) others.push({ ...j, foundBy: "judged_again" });
    }
    if (sentBackBefore !== null || sentBackTrouble !== null) {
      const counted = await sentBackCounted(
        store,
        options,
        sentBackBefore,
        sentBackAll,
        sentBackJudged,
      );
      // Named once: a job judged as it was before it was sent back was named then (or was
      // never a finding), and one turned from verified is named by `nightly_turned` above.
      for (const j of counted.named) {
        if (!others.some((e) => e.jobId === j.jobId)) others.push({ ...j, foundBy: "sent_back" });
      }
      const trouble = sentBackTrouble ?? counted.unread;
      sentBackCounts = {
        ...counted.counts,
        ...(trouble !== null ? { unread: trouble } : {}),
      };
      if (sentBackCounts.judged + sentBackCounts.left === 0 && trouble === null) {
        sentBackCounts = null;
      }
    }
    // Once the ledger was read in full: before it, every header of the window's last seconds
    // waits, and a vault it could not read is named already (the read that does reopens them).
    if (ledger !== undefined && ledger.incomplete === null) {
      unjudged = await createOpsStore(store).headersNotJudged(
        options.from,
        options.to,
        MAX_NAMED_UNJUDGED,
      );
    }
    profile = (await options.profile?.()) ?? null;
    if (profile !== null) {
      judgedElsewhere = await createJobQueueStore(store).countJudgedElsewhere(
        { from: options.from, to: options.to },
        profile.id,
      );
    }
  } catch (error) {
    countsUnknown = !countsRead;
    const unknown = countsUnknown ? "; the window's job counts could not be read" : "";
    reason = reason === null ? `database: ${storeMessage(error)}${unknown}` : `${reason}${unknown}`;
  }
  const total = verdicts.reduce((sum, v) => sum + byVerdict[v], 0);
  const open = openVerdicts.reduce((sum, v) => sum + byVerdict[v], 0);
  // What the open jobs wait on: a jobs API or an RPC that does not answer is named, not only
  // the time the run ran out of.
  // A run that never took the lock judged nothing: what its jobs wait on is the other run's
  // doing, and guessing at it ("a slow or failing RPC?") hid that another run holds the lock.
  let waiting = "";
  if (open > 0 && locked) {
    try {
      const groups = await createOpsStore(store).openJobGroups(
        options.from,
        options.to,
        engine.owner,
      );
      const waits = countOpenJobWaits(groups, {
        waitsForJobsApi: options.waitsForJobsApi ?? false,
      });
      // Read now, a row let go before this read counts its job as waiting on something else:
      // one held all run but its last poll interval was called not judged, a slow RPC asked.
      const heldBefore =
        rowsHeld && waits.held === 0
          ? store.kind === "sqlite"
            ? LEASED_DURING_RUN
            : HELD_DURING_RUN
          : "";
      const refusal = groups.find((g) => g.refusal !== null)?.refusal ?? null;
      waiting = describeWaits(waits, refusal, databaseTrouble) + heldBefore;
    } catch {
      // The counts above stand; only the detail is missing.
    }
  }
  if (open > 0 && waiting !== "") {
    waiting += leftOutText(options.rpcQuorum, leftOutBefore);
    waiting += rateLimitedText(options.rpcStats, rateLimitedBefore);
  }
  if (reason === null && open > 0) reason = `${open} jobs are not final${waiting}`;
  else if (reason !== null && waiting !== "")
    reason = `${reason}; ${open} jobs not final${waiting}`;
  if (byVerdict.rpc_disagreement > 0) {
    // Never a finding about the jobs, but the run cannot call them verified either.
    const disagreement = `${byVerdict.rpc_disagreement} jobs in rpc_disagreement: the RPC endpoints disagree on their transactions (${disagreeingText(options.rpcQuorum, unresolvedBefore)}tx inspect SIGNATURE --quorum k)`;
    reason = reason === null ? disagreement : `${reason}; ${disagreement}`;
  }
  const headers = unjudged === null ? null : headersUnjudgedText(unjudged, startedAt);
  if (headers !== null) reason = reason === null ? headers : `${reason}; ${headers}`;
  const elsewhere = judgedElsewhereText(judgedElsewhere, profile);
  if (elsewhere !== null) reason = reason === null ? elsewhere : `${reason}; ${elsewhere}`;
  const othersOpen = others.filter((j) => openVerdicts.includes(j.verdict)).length;
  if (othersOpen > 0) {
    const text = `${othersOpen} jobs of ${otherWindowsText(others)} the escrow scan sent back (a payout under their memo found after their run) are not final`;
    reason = reason === null ? text : `${reason}; ${text}`;
  }
  const othersBad = others.filter((j) =>
    (["discrepancy", "dropped", "unverifiable"] as Verdict[]).includes(j.verdict),
  ).length;
  const bad = byVerdict.discrepancy + byVerdict.dropped + byVerdict.unverifiable + othersBad;
  const minJobs = options.minJobs ?? 0;
  const ledgerFindings = ledger ? ledgerFindingCount(ledger) : 0;
  const outcome: NightlySummary["outcome"] =
    reason !== null
      ? "incomplete"
      : bad > 0
        ? "discrepancies"
        : ledgerFindings > 0
          ? "ledger_findings"
          : total < minJobs
            ? "too_few_jobs"
            : total === 0
              ? "no_jobs"
              : "verified";
  if (reason !== null) reason = withoutUrlSecrets(reason);
  const givenUp = options.givenUp?.() ?? null;
  if (ledger && outcome !== "incomplete" && givenUp === null) {
    try {
      options.boundWaits?.();
      await options.ledger?.commit?.(ledger);
    } catch {
      // The marks stay where they were: the next run judges that history again, and reports
      // its findings once more rather than never.
      notStored.push("the ledger's marks (the next nightly judges this history again)");
    }
  }
  if (outcome !== "incomplete" && givenUp === null && turnedDone.length > 0) {
    try {
      options.boundWaits?.();
      await createOpsStore(store).forgetTurned(turnedDone);
    } catch {
      // Named again by the next run that completes, rather than never.
      notStored.push("the jobs judged again this run named (the next nightly names them again)");
    }
  }
  // Its start and its length, not the clock read again: never before its start, nor hours
  // after it, when the clock stepped meanwhile.
  const finishedAt = startedAt + elapsed();
  if (runId !== null) {
    // The night's outcome goes on the run row, or the status page shows a clean night after cron
    // was told 1 or 2. The row, held `running` since the jobs settled, closes in the same write.
    const written: NightlyRunOutcome = givenUp ?? {
      outcome,
      exitCode: exitCodes[outcome],
      reason,
      ledgerFindings: ledger ? ledgerFindings : null,
    };
    let stored = true;
    try {
      options.boundWaits?.();
      await (engine.endRun
        ? engine.endRun(runId, runStatus, written, finishedAt)
        : createVerificationRunStore(store).recordOutcome(runId, written, finishedAt));
    } catch {
      // Past the run's time a write takes the lock at once or not at all, and one try mostly
      // misses the gaps an `import` beside it leaves (15 ms between transactions of about 30).
      // The outcome, which the status page and serve's schedule read, is tried again for a
      // moment (the row closed with it).
      const id = runId;
      stored = await triedAgain(() => {
        options.boundWaits?.();
        return createVerificationRunStore(store).recordOutcome(id, written, finishedAt, runStatus);
      });
    }
    if (!stored) {
      // The exit code stands. A process whose heartbeat lives on (serve's) writes it again at
      // each heartbeat; else the row, its heartbeat gone, is closed `abandoned` by the next
      // sweep, its outcome never written.
      notStored.push(
        `the run row's outcome (run ${runId}: written again at serve's heartbeat when serve ran it; else shown abandoned, and serve's schedule judges this window again)`,
      );
    }
  }
  return {
    from: options.from,
    to: options.to,
    startedAt,
    finishedAt,
    outcome,
    exitCode: exitCodes[outcome],
    reason,
    total,
    minJobs,
    byVerdict,
    findings: found,
    moreFindings: Math.max(0, bad - othersBad - found.length),
    unproven,
    profile,
    runId,
    ...(ledger ? { ledger } : {}),
    ...(rejudged > 0 ? { rejudged } : {}),
    ...otherWindowsJobs(others),
    ...(judgedElsewhere.length > 0 ? { judgedElsewhere } : {}),
    ...(sentBackCounts !== null ? { sentBackElsewhere: sentBackCounts } : {}),
    ...(countsUnknown ? { countsUnknown: true as const } : {}),
    ...(notStored.length > 0 ? { notStored } : {}),
  };
}

/**
 * What became of the jobs of other windows sent back before the run (`sentBackBefore`, less
 * those the escrow scan sent back, `scanned`): how many it judged (`judged`), how many changed
 * verdict, how many are open now or were past the read's bound; and those to name, judged to a
 * verdict failing a run other than the one they were sent back from, not turned from verified
 * (`nightly_turned` names those). Its own reads failing say so in `unread`, never fail the run.
 */
async function sentBackCounted(
  store: Store,
  window: { from: number; to: number },
  before: SentBackElsewhere | null,
  scanned: ReadonlySet<string>,
  judged: readonly string[],
): Promise<{
  counts: Omit<SentBackElsewhereCounts, "unread">;
  named: (OtherWindowFinding & { window: "earlier" | "later" })[];
  unread: string | null;
}> {
  const considered = (before?.jobs ?? []).filter((j) => !scanned.has(j.jobId));
  const beyond = before === null ? 0 : before.total - before.jobs.length;
  const named: (OtherWindowFinding & { window: "earlier" | "later" })[] = [];
  try {
    const counts =
      considered.length === 0
        ? { total: 0, final: 0 }
        : await createJobQueueStore(store).countVerdicts({
            jobIds: considered.map((j) => j.jobId),
          });
    const was = new Map(considered.map((j) => [j.jobId, j.previousVerdict]));
    let changed = 0;
    const now = await createOpsStore(store).notCountedIn(judged, window.from, window.to);
    for (const j of now) {
      const previous = was.get(j.jobId);
      if (previous === undefined || previous === j.verdict) continue;
      changed++;
      if (failsRun(j.verdict) && !verdictsCalledVerified.includes(previous)) {
        named.push({ ...j, foundBy: "sent_back" });
      }
    }
    return {
      counts: { judged: judged.length, changed, left: counts.total - counts.final + beyond },
      named,
      unread: null,
    };
  } catch (error) {
    return {
      counts: {
        judged: judged.length,
        changed: 0,
        left: considered.length - judged.length + beyond,
      },
      named,
      unread: `not counted: ${messageOf(storeErrorNamed(store, error))}`,
    };
  }
}

/**
 * Why a run that counted jobs recorded late in its window without claiming them is not clean:
 * "1 job recorded in this window after its date ... (job_x) ...".
 */
function lateNotClaimedText(left: LateNotClaimed): string {
  const more = left.jobs - left.first.length;
  const jobs = left.jobs === 1 ? "1 job" : `${left.jobs} jobs`;
  return `${jobs} recorded in this window after ${left.jobs === 1 ? "its date" : "their date"} counted by it but not claimed for it (${left.first.join(", ")}${more > 0 ? `; and ${more} more` : ""}): ${left.jobs === 1 ? "its row" : "their rows"} held by another database session (SELECT ... FOR UPDATE, a long transaction) or the claim not stored, so a run of the window ${left.jobs === 1 ? "it is" : "they are"} dated in would count ${left.jobs === 1 ? "it" : "them"} again; run this window again to claim ${left.jobs === 1 ? "it" : "them"}`;
}

/**
 * Why a window with jobs called verified whose credits headers the ledger's read left a skip is
 * not verified: "1 job verified with its credits header not judged (job_x, recorded at …, credit
 * vault V): ..."; null when none.
 */
function headersUnjudgedText(unjudged: HeadersNotJudged, startedAt: number): string | null {
  if (unjudged.jobs === 0) return null;
  // A job recorded before the run began was there for its read of the vaults: a read that
  // proved the chain final past its response yet listed no line past it is the RPC's listing
  // (an address index behind the slot it called final, or one leaving the job's transactions
  // out). Said as a recording during the run, on-call looked for an import in the night.
  const during = (unjudged.latestRecordedAt ?? startedAt) >= startedAt;
  const before = unjudged.first.some((j) => j.recordedAt < startedAt);
  const why = [
    during
      ? "recorded while the run went on, after its read of the credit vault, which had not read it past the response"
      : null,
    before
      ? "recorded before the run began, yet the credit vault's history the run read holds no line past the response: the RPC listed the vault without its latest transactions (an address index behind the slot it called final, or one that left them out)"
      : null,
  ]
    .filter((part) => part !== null)
    .join("; or ");
  const named = unjudged.first
    .map((j) => `${j.jobId}, recorded at ${isoOf(j.recordedAt)}, credit vault ${j.vault}`)
    .join("; ");
  const more = unjudged.jobs - unjudged.first.length;
  const jobs = unjudged.jobs === 1 ? "1 job" : `${unjudged.jobs} jobs`;
  return `${jobs} of the window verified with the credits header not judged (${named}${more > 0 ? `; and ${more} more` : ""}): ${why}; the next run, or serve's ledger round, judges ${unjudged.jobs === 1 ? "it" : "them"}`;
}

/**
 * Why a window whose final jobs include verdicts of another profile is not verified under the
 * run's: "2 jobs judged under another profile than localnet@… (localnet@…: 2)"; null when none.
 */
function judgedElsewhereText(
  groups: readonly { profile: string | null; jobs: number }[],
  profile: ProfileStatus | null,
): string | null {
  const n = groups.reduce((sum, g) => sum + g.jobs, 0);
  if (n === 0 || profile === null) return null;
  const each = groups.map((g) => `${g.profile ?? "no profile recorded"}: ${g.jobs}`).join(", ");
  return `${n} jobs judged under another profile than ${profile.id} (${each}) not judged again by this run (a process under another AUDIT_PROFILE judged them after it began, or it ended before reaching them); they are not verified under ${profile.name} (the next run under it judges them again)`;
}

/**
 * The window's jobs by verdict: those dated in it (the rollups' count) and those recorded in it
 * but dated before it (`jobInWindow`), which the verifier's run over the window judged too.
 */
async function windowJobsByVerdict(
  store: Store,
  from: number,
  to: number,
): Promise<Record<Verdict, number>> {
  const dated = await countJobsByVerdict(store, from, to);
  const late = await createOpsStore(store).recordedLateByVerdict(from, to);
  return Object.fromEntries(verdicts.map((v) => [v, dated[v] + late[v]])) as Record<
    Verdict,
    number
  >;
}

/**
 * The jobs the window counts, by verdict (`countedInWindow`): those dated in it (the rollups'
 * count) less those another window counts or none has claimed yet, and those recorded in it
 * but dated before it that it counts. A job dated in one window and recorded in the next before
 * the first's run was counted by both runs' summaries.
 */
async function countedJobsByVerdict(
  store: Store,
  from: number,
  to: number,
): Promise<Record<Verdict, number>> {
  const dated = await countJobsByVerdict(store, from, to);
  const { notCounted, late } = await createOpsStore(store).countedAdjustByVerdict(from, to);
  return Object.fromEntries(verdicts.map((v) => [v, dated[v] - notCounted[v] + late[v]])) as Record<
    Verdict,
    number
  >;
}

/** Endpoint counts of `now` less those `before` them, the endpoints whose count grew. */
function grownSince(
  now: readonly { endpoint: string; times: number }[],
  before: readonly { endpoint: string; times: number }[],
): { endpoint: string; times: number }[] {
  const earlier = new Map(before.map((e) => [e.endpoint, e.times]));
  return now
    .map((e) => ({ endpoint: e.endpoint, times: e.times - (earlier.get(e.endpoint) ?? 0) }))
    .filter((e) => e.times > 0);
}

const namedTimes = (counts: readonly { endpoint: string; times: number }[]) =>
  counts.map((e) => `${e.endpoint} ${e.times} times`).join(", ");

/**
 * "; the RPC endpoints disagree: answered not found for a transaction another endpoint served
 * (liar 6 times)", counting this run's answers (not those `before` it), or "". Said as "RPC
 * trouble" or "waiting for finality" alone, on-call looked for a slow node, not a lying one.
 */
function leftOutText(
  quorum: NightlyOptions["rpcQuorum"],
  before: { endpoint: string; times: number }[],
): string {
  const left = grownSince(quorum?.leftOut() ?? [], before);
  if (left.length === 0) return "";
  return `; the RPC endpoints disagree: answered not found for a transaction another endpoint served (${namedTimes(left)})`;
}

/** Each endpoint's count of answers 429 (rate limited) so far. */
function rateLimitedOf(stats: NightlyOptions["rpcStats"]) {
  const times = new Map<string, number>();
  for (const s of stats?.() ?? []) {
    if (s.outcome === "rate_limited") times.set(s.endpoint, (times.get(s.endpoint) ?? 0) + s.count);
  }
  return [...times].map(([endpoint, n]) => ({ endpoint, times: n }));
}

/** "; the RPC answered 429 (rate limited) this run: a 40 times; ...", or "". */
function rateLimitedText(
  stats: NightlyOptions["rpcStats"],
  before: { endpoint: string; times: number }[],
): string {
  const limited = grownSince(rateLimitedOf(stats), before);
  if (limited.length === 0) return "";
  return `; the RPC answered 429 (rate limited) this run: ${namedTimes(limited)} (the provider allows fewer requests than RPC_RATE_LIMIT, or a longer --timeout is needed)`;
}

/** Each endpoint's count of disagreements no quorum settled (none without a quorum). */
function unresolvedOf(quorum: NightlyOptions["rpcQuorum"]) {
  return (quorum?.quorumStatus().endpoints ?? []).map((e) => ({
    endpoint: e.endpoint,
    times: e.unresolved,
  }));
}

/**
 * "disagreeing this run: a 4 times, b 4 times; ", the endpoints that answered one side of a
 * disagreement no quorum settled during this run (not `before` it), or "". The jobs'
 * `rpc_disagreement` alone named no endpoint: on-call had to inspect each job to learn which.
 */
function disagreeingText(
  quorum: NightlyOptions["rpcQuorum"],
  before: { endpoint: string; times: number }[],
): string {
  const sides = grownSince(unresolvedOf(quorum), before);
  return sides.length === 0 ? "" : `disagreeing this run: ${namedTimes(sides)}; `;
}

/** Said of open jobs when a due job's row was held during the run and is free at its end. */
const HELD_DURING_RUN =
  "; a due job's row was held locked by another database session (another verifier writing it, serve's beside this run, or a long transaction: SELECT ... FOR UPDATE) during the run, which looked at it again only a poll interval later";

/**
 * The same on SQLite, which locks no row: a job due that no claim took was leased by another
 * verifier of this host beating its heartbeat into this database. "Held locked by another
 * database session (... SELECT ... FOR UPDATE)" sent on-call after a lock SQLite never takes.
 */
const LEASED_DURING_RUN =
  "; a due job was leased by another verifier of this host working on this database (serve's beside this run, or another verify) during the run, which looked at it again only a poll interval later";

/**
 * ": 18 waiting for the jobs API's answer, 2 on RPC trouble", or "" with nothing to say;
 * `refusal`, the last error of a job whose verdict write was refused on a held row.
 */
function describeWaits(
  waits: Record<OpenJobWait, number>,
  refusal: string | null,
  databaseTrouble: string | null,
): string {
  const words: Record<OpenJobWait, string> = {
    held: "whose rows another database session holds locked (SELECT ... FOR UPDATE, a long transaction)",
    leased:
      "leased by another verifier (serve's beside this run, or another verify), which judges them",
    refused: `whose verdict write was refused, a row it locks held by another database session (SELECT ... FOR UPDATE, a long transaction)${refusal === null ? "" : `: ${refusalOf(refusal)}`}; tried again after the error backoff`,
    jobs_api: "waiting for the jobs API's answer",
    settlement: "waiting for the settlement backfill to find their settlement",
    rpc: "waiting on RPC trouble",
    // The verifier's last round refused by the database (a table lock, no connection slot):
    // "a slow or failing RPC?" sent on-call to the wrong service.
    unjudged:
      databaseTrouble === null
        ? "not judged yet (their transactions not read: a slow or failing RPC?)"
        : `not judged yet (the verifier's last round could not use the database: ${printable(databaseTrouble)})`,
    landing:
      "waiting for a transaction the RPC has not seen yet to land (dropped once its blockhash expired)",
    // Beside a `serve` whose scan runs (or in serve's own schedule), a clean verdict waits for
    // the scan and the ledger to read past the job: "waiting for their transactions to be
    // final" sent on-call to the RPC while it was the ledger that lagged.
    // Their own transactions final, one a conflicting receipt, the jobs API's earlier step or a
    // ledger line names with them is not: it is the chain they wait on, not the scan.
    conflict:
      "final on chain, waiting for a transaction named with them (by a conflicting receipt, the jobs API's earlier step or a ledger line) to land and be final",
    read_past:
      "final on chain, waiting for the escrow scan or the credit vaults' ledger to read past them",
    finality: "waiting for their transactions to be final",
  };
  const parts = (Object.keys(words) as OpenJobWait[])
    .filter((wait) => waits[wait] > 0)
    .map((wait) => `${waits[wait]} ${words[wait]}`);
  return parts.length > 0 ? `: ${parts.join(", ")}` : "";
}

/** "earlier windows", "a later window's" as the jobs named are. */
function otherWindowsText(jobs: readonly { window: "earlier" | "later" }[]): string {
  const windows = new Set(jobs.map((j) => j.window));
  return windows.size > 1 ? "earlier and later windows" : `${[...windows][0]} windows`;
}

/** The jobs of other windows a run names, as the summary lists them (absent when none). */
function otherWindowsJobs(
  jobs: readonly (OtherWindowFinding & { window: "earlier" | "later" })[],
): Pick<NightlySummary, "earlierJobs" | "laterJobs"> {
  const of = (window: "earlier" | "later") =>
    jobs.filter((j) => j.window === window).map(({ window: _, ...j }) => j);
  const earlier = of("earlier");
  const later = of("later");
  return {
    ...(earlier.length > 0 ? { earlierJobs: earlier } : {}),
    ...(later.length > 0 ? { laterJobs: later } : {}),
  };
}
