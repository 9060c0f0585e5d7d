/** The verifier's timing and batch sizes; every one has a default. */
export interface VerifierOptions {
  /**
   * How often signatures that are not final yet are polled, in ms. Finality moves one slot at a
   * time, so polling faster than a few slots only spends requests. Default 2000.
   */
  pollIntervalMs: number;
  /** How long the loop rests when nothing is due, unless `notify()` wakes it. Default 5000. */
  idleIntervalMs: number;
  /** Lease length in ms; a crashed owner's jobs are reclaimable after it. Default 120000. */
  leaseMs: number;
  /** Jobs claimed per round. Default 1000. */
  claimBatchSize: number;
  /** getTransaction calls in flight at once (the pool enforces the rate). Default 8. */
  fetchConcurrency: number;
  /**
   * Fetch work one round keeps, in seconds at the RPC's current rate: a round polls the
   * statuses of all it claimed (256 signatures a request), keeps the jobs whose transactions
   * it can fetch in this time and hands the others back to the queue at once, so several
   * processes verifying one store share a backlog instead of one holding it under its lease.
   * Default 2.
   */
  fetchSecondsPerRound: number;
  /** First retry delay after RPC trouble, in ms; doubles up to `maxBackoffMs`. Default 1000. */
  errorBackoffMs: number;
  /** Longest delay between two looks at a job, in ms. Default 60000. */
  maxBackoffMs: number;
  /** How soon to look again at a job waiting for the settlement backfill, in ms. Default 5000. */
  backfillWaitMs: number;
  /**
   * How long after its recording a job being asked about (by the proxy, or by the settlement
   * backfill) waits for the jobs API's answer before it is verified without it, in ms. The
   * answer can name a second settlement, so a `verified` given before it could be taken back.
   * `serve`, which asks, waits 60000; default 0 (`verify` asks nothing itself).
   */
  jobsApiWaitMs: number;
  /**
   * The same for a job the proxy recorded, which it asks about at once (its questions and
   * retries end within about 45 s, then it hands the job to the backfill). `serve` waits
   * 45000; default 0.
   */
  proxyJobsApiWaitMs: number;
  /**
   * How long another verifier of the store (`serve`'s, `JOBS_API_WAIT_MS`) may put a job off
   * for the jobs API's answer, when this one waits less itself (`verify`): a next look that far
   * off is that wait, not a clock stepped back, and is left to its time. Default 0.
   */
  jobsApiHeldElsewhereMs: number;
  /**
   * getTransaction answers of "not found" (from every endpoint of the pool) for a signature
   * whose status is finalized before it counts as pruned from the node (verdict
   * `unverifiable`), once they also span `fetchMissSpanMs`. Default 5.
   */
  maxFetchMisses: number;
  /**
   * Shortest time from the first such miss to the prune, in ms: a node lagging or failing over
   * answers "not found" for a minute or so, and pruning is for good. Default 300000.
   */
  fetchMissSpanMs: number;
  /**
   * How long a drop waits, from a signature's first miss, on an endpoint that cannot answer,
   * that alone shows the signature with no transaction its fee payer signed, or whose own
   * finalized slot has not moved the drop window since: past it, the "not found" of the others
   * stands, in ms. Default 300000 (5 minutes: a blockhash expires in about 1, so a landed
   * transaction has long been seen by a healthy endpoint by then).
   */
  dropHoldMs: number;
  /**
   * How long a run's closing write (its row's outcome) waits for a busy or restarting database
   * past the run's time, in ms. Default 15000.
   */
  closeGraceMs: number;
}

export const defaultVerifierOptions: VerifierOptions = {
  pollIntervalMs: 2000,
  idleIntervalMs: 5000,
  leaseMs: 120_000,
  claimBatchSize: 1000,
  fetchConcurrency: 8,
  fetchSecondsPerRound: 2,
  errorBackoffMs: 1000,
  maxBackoffMs: 60_000,
  backfillWaitMs: 5000,
  jobsApiWaitMs: 0,
  proxyJobsApiWaitMs: 0,
  jobsApiHeldElsewhereMs: 0,
  maxFetchMisses: 5,
  fetchMissSpanMs: 300_000,
  dropHoldMs: 300_000,
  closeGraceMs: 15_000,
};

/**
 * The settlement backfill's longest delay between two asks about a job, by default (10 min):
 * a verifier waiting for its next ask (`backfill_next_at`) looks at the job again no later.
 */
export const BACKFILL_MAX_DELAY_MS = 600_000;

/**
 * The furthest off a verifier with `options` puts a job's next look: its longest wait (or the
 * settlement backfill's next ask, which a job waiting for it waits for) with the retries'
 * jitter (up to 1.25 times), plus the poll grid it snaps to. Its decisions are bounded by it, so
 * a look further off than this was written by a clock since stepped back.
 */
export function longestLookMs(options: VerifierOptions): number {
  const longest = Math.max(
    BACKFILL_MAX_DELAY_MS,
    options.maxBackoffMs,
    options.backfillWaitMs,
    options.jobsApiWaitMs,
    options.proxyJobsApiWaitMs,
    options.jobsApiHeldElsewhereMs,
  );
  return Math.ceil(longest * 1.25) + options.pollIntervalMs;
}
