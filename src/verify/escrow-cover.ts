import type { TransactionFacts } from "../chain/transaction-facts.js";

/**
 * A clean verdict waits for the escrow scan (src/ledger/escrow-scan.ts) to have read past the
 * job's own transactions. An operator holding the escrow authority pays a streamed job's
 * settlement out twice at once; the verifier judges the job on the transactions it names
 * (`verified`) as soon as they are final, and the scan finds the second payout a round later
 * (`discrepancy`): a backend that read `GET /audit/:jobId` meanwhile was told a falsehood (8 to
 * 33 s of it, measured as deployed). So, where `serve` scans the escrow vault, a job whose
 * transactions are all in stays `awaiting_finality`, its checks not run, until a completed scan
 * began at least `ESCROW_COVER_MARGIN_SLOTS` past its newest transaction's slot, with none of
 * its escrow entries held pending (`escrow_pending`: listed but not judged yet). The scan lists
 * finalized entries only, so every payout made within the margin of the job's last step has
 * been judged by then. One made later is found by a later scan, which sends the job back (as
 * before). The checks run once, after the wait: a failing one shows that much later too.
 *
 * A scan that has not read past the job `ESCROW_COVER_WAIT_MS` after its newest transaction (it
 * keeps failing, or endpoints under a quorum disagree on the escrow vault's listing) leaves the
 * job `error`, retried, never judged as it stands: judged so, a job whose second payout the
 * listing never showed was `verified` for as long as the scan failed (one endpoint of two,
 * lying about one listing entry, made every scan fail). A job whose entries are held pending
 * past the wait, the scan reading past it, waits for the next scan, which judges them: let
 * through, a stream whose settlement the jobs API named after the wait was `verified` until
 * then, its second payout held unjudged.
 */

/** Slots past a job's newest transaction a completed scan must have begun at (~4 s on mainnet). */
export const ESCROW_COVER_MARGIN_SLOTS = 10;

/** The longest a clean verdict waits for the scan, from the job's newest transaction. */
export const ESCROW_COVER_WAIT_MS = 5 * 60_000;

/** A job waiting for the scan is looked at again at least this often (a scan wakes it sooner). */
export const ESCROW_COVER_RECHECK_MS = 30_000;

/** How often the scan runs while a job waits for a slot its last scan did not reach. */
export const ESCROW_COVER_PACE_MS = 1_000;

/**
 * How long the scan keeps that pace after it let jobs through: a payout made just past the
 * margin is listed within about a second of its finality, not at the next `LEDGER_POLL_MS`.
 */
export const ESCROW_COVER_AFTERWARD_MS = 60_000;

/** What deciding a job reads of the scan: how far it read, and the jobs with entries pending. */
export interface EscrowCoverView {
  coveredSlot: number | null;
  pending: ReadonlySet<string>;
  /** How soon a waiting job is looked at again. Default `ESCROW_COVER_RECHECK_MS`. */
  recheckMs?: number;
}

/**
 * Where a verifier's verdicts wait for the escrow scan: the vault, and either the gate to this
 * process's scan (`serve`), or, for a verifier beside none (`verify`), how recent another
 * process's scan must be for its verdicts to wait for it (`serve` beside it, whose `/audit`
 * readers would read the verdict) and how often it looks again meanwhile.
 */
export type EscrowCoverConfig =
  | { vault: string; gate: EscrowCoverGate }
  | { vault: string; liveWithinMs: number; recheckMs: number };

/**
 * The view a round judges by: null when the verdicts do not wait (another process's scan that
 * has not run for `liveWithinMs`: none runs beside this verifier).
 */
export function coverViewOf(
  config: EscrowCoverConfig,
  read: { coveredSlot: number | null; pending: ReadonlySet<string>; scannedAt: number | null },
  now: number,
): EscrowCoverView | null {
  if ("gate" in config) return { coveredSlot: read.coveredSlot, pending: read.pending };
  if (read.scannedAt === null || now - read.scannedAt > config.liveWithinMs) return null;
  return { coveredSlot: read.coveredSlot, pending: read.pending, recheckMs: config.recheckMs };
}

/**
 * Why a verdict waits: until a scan covers `slot`, or until the ledger has read the credit
 * vault `vault` past the job's response; at most until `until` (ms).
 */
export interface EscrowCoverWait {
  /** The slot a completed scan must have begun at; -1 when the scan has covered the job. */
  slot: number;
  until: number;
  /** Entries of the job are held pending: the next completed scan judges them. */
  pending: boolean;
  /** The credit vault whose read by the ledger the verdict waits for (`credits.header`). */
  vault?: string;
  /**
   * Past `until`: the scan had not read past the job (its last completed scan began at
   * `coveredSlot`, null before one), or entries of it are still held.
   */
  overdue?: { coveredSlot: number | null };
}

/** What a held verdict waits for, in words (the verifier's debug line, `/audit`'s detail). */
export function waitMessage(wait: EscrowCoverWait): string {
  if (wait.vault !== undefined) {
    return "verdict waits for the ledger to read the credit vault past the job's response";
  }
  return wait.pending
    ? "verdict waits for the escrow scan to judge the job's entries it holds pending"
    : "verdict waits for the escrow scan to read past the job's transactions";
}

/**
 * Whether the job's clean verdict waits for the scan; null when the scan has covered it (and
 * holds none of its entries) or it has no transaction yet. Past `ESCROW_COVER_WAIT_MS` the wait
 * says so (`overdue`).
 */
export function escrowCoverWait(
  job: { jobId: string; recordedAt: number },
  transactions: ReadonlyMap<string, TransactionFacts>,
  view: EscrowCoverView,
  now: number,
): EscrowCoverWait | null {
  let newestSlot = -1;
  for (const facts of transactions.values()) newestSlot = Math.max(newestSlot, facts.slot);
  if (newestSlot < 0) return null;
  const slot = newestSlot + ESCROW_COVER_MARGIN_SLOTS;
  const pending = view.pending.has(job.jobId);
  if (!pending && view.coveredSlot !== null && view.coveredSlot >= slot) return null;
  const until = coverWaitUntil(job, transactions);
  if (now < until) return { slot, until, pending };
  return { slot, until, pending, overdue: { coveredSlot: view.coveredSlot } };
}

/** Why a job the scan has not read past within the wait is not judged (its `last_error`). */
export function overdueMessage(wait: EscrowCoverWait): string {
  const covered = wait.overdue?.coveredSlot ?? null;
  return `the escrow scan has not read past this job's transactions (slot ${wait.slot}) ${ESCROW_COVER_WAIT_MS / 60_000} minutes after its newest one (${
    covered === null ? "no scan has completed" : `the last completed scan began at slot ${covered}`
  }): a second payout out of escrow under its memo cannot be ruled out; judged once the scan has read past it`;
}

/** The most a verdict waits: `ESCROW_COVER_WAIT_MS` after the job's newest transaction (ms). */
export function coverWaitUntil(
  job: { recordedAt: number },
  transactions: ReadonlyMap<string, TransactionFacts>,
): number {
  let newestTime = job.recordedAt;
  for (const facts of transactions.values()) {
    if (facts.blockTime !== null) newestTime = Math.max(newestTime, facts.blockTime * 1000);
  }
  return newestTime + ESCROW_COVER_WAIT_MS;
}

/**
 * Between the verifier and the scan of one process: the jobs left waiting, made due as soon as
 * a completed scan covers them, and the scan's pace while any waits for a slot not reached.
 */
export interface EscrowCoverGate {
  /** The verifier left these jobs waiting for the scan, or the ledger. */
  waiting(jobs: readonly { jobId: string; wait: EscrowCoverWait }[]): void;
  /**
   * A job waits for a slot the last completed scan had not reached, or a scan let jobs through
   * less than `ESCROW_COVER_AFTERWARD_MS` ago: scan again soon.
   */
  wanted(): boolean;
  /** A scan completed, covering `slot`: the jobs it may let through, no longer tracked. */
  covered(slot: number): string[];
  /** The ledger read these credit vaults: the jobs waiting for one, no longer tracked. */
  ledgerRead(vaults: readonly string[]): string[];
}

export function createEscrowCoverGate(now: () => number = Date.now): EscrowCoverGate {
  const waits = new Map<string, EscrowCoverWait>();
  let lastCovered = -1;
  let releasedAt = Number.NEGATIVE_INFINITY;
  return {
    waiting(jobs) {
      for (const { jobId, wait } of jobs) waits.set(jobId, wait);
      // A scan that never completes makes nothing due: jobs past their wait are let go here.
      if (waits.size > 1000) {
        const t = now();
        for (const [jobId, wait] of waits) if (wait.until <= t) waits.delete(jobId);
      }
    },
    wanted() {
      const t = now();
      if (t - releasedAt < ESCROW_COVER_AFTERWARD_MS) return true;
      for (const [jobId, wait] of waits) {
        // Past its wait the job is judged at its own due time: no reason to hurry a scan (one
        // failing kept the pace at a second through an outage).
        if (wait.until <= t) waits.delete(jobId);
        else if (!wait.pending && wait.slot >= 0 && wait.slot > lastCovered) return true;
      }
      return false;
    },
    covered(slot) {
      lastCovered = Math.max(lastCovered, slot);
      const t = now();
      const due: string[] = [];
      for (const [jobId, wait] of waits) {
        // A job with entries pending is looked at after each completed scan: the scan judged
        // them first. One past its wait is judged as it stands at its own due time.
        const waitsForScan = wait.pending || wait.slot >= 0;
        if (waitsForScan && (wait.pending || wait.slot <= slot)) due.push(jobId);
        if ((waitsForScan && (wait.pending || wait.slot <= slot)) || wait.until <= t) {
          waits.delete(jobId);
        }
      }
      if (due.length > 0) releasedAt = t;
      return due;
    },
    ledgerRead(vaults) {
      const read = new Set(vaults);
      const due: string[] = [];
      for (const [jobId, wait] of waits) {
        if (wait.vault === undefined || !read.has(wait.vault)) continue;
        due.push(jobId);
        waits.delete(jobId);
      }
      return due;
    },
  };
}

/** The gate of a config that has one (this process scans). */
export const gateOf = (config: EscrowCoverConfig | undefined): EscrowCoverGate | null =>
  config && "gate" in config ? config.gate : null;
