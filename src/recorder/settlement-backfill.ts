import { setMaxListeners } from "node:events";
import { isBusyError, type Store } from "../db/client.js";
import type { Logger } from "../log.js";
import { backoff } from "../retry.js";
import {
  type BackfillClaim,
  claimBackfillUnit,
  createBackfillStore,
  giveUpBackfillUnit,
} from "../store/backfill.js";
import { createJobsApiStore, recordJobsApiAnswerUnit } from "../store/jobs-api.js";
import { BACKFILL_MAX_DELAY_MS } from "../verify/verifier-options.js";
import { type JobsApiAnswer, type JobsApiClient, JobsApiError, logSentBack } from "./jobs-api.js";
import { keyFingerprint } from "./proxy.js";
import type { ReceiptWriter } from "./receipt-writer.js";

/** Options of the settlement backfill loop; every one has a default. */
export interface SettlementBackfillOptions {
  store: Store;
  log: Logger;
  jobsApi: JobsApiClient;
  /**
   * `DECENTRAL_API_KEY`: the key for jobs no key of `apiKeys` matches. Without a key for a job
   * the loop gives up on it (and says so once): its settlement stays unknown.
   */
  apiKey?: string | undefined;
  /**
   * `DECENTRAL_API_KEYS`: the callers' own keys. A job is asked about with the key whose
   * fingerprint it was recorded with (the jobs API shows a job only to its own key), so a
   * stream whose lookup with the caller's key died with the process still gets its
   * settlement. Held in memory only; never logged nor stored. Default none.
   */
  apiKeys?: readonly string[] | undefined;
  /**
   * Writes go through this writer (the proxy's), so a write lock held by another process is
   * waited for off the event loop. Default: written directly on `store`.
   */
  writer?: ReceiptWriter;
  /** Clock (epoch ms). Default `Date.now`. */
  now?: () => number;
  /** Time between two passes when nothing was due. Default 1,000 ms. */
  intervalMs?: number;
  /** Jobs claimed per pass. Default 50. */
  batchSize?: number;
  /** First retry delay; doubles each attempt. Default 2,000 ms. */
  baseDelayMs?: number;
  /** Longest delay between two attempts. Default `BACKFILL_MAX_DELAY_MS`. */
  maxDelayMs?: number;
  /** Attempts before the job is marked `gave_up` (the verifier then calls it unverifiable). Default 30. */
  maxAttempts?: number;
}

export interface SettlementBackfill {
  /** Starts the background loop. */
  start(): void;
  /**
   * Stops the loop and waits for the pass in progress, whose jobs API calls are aborted (their
   * jobs stay pending).
   */
  stop(): Promise<void>;
  /** Runs one pass now; resolves with the number of jobs asked about. */
  runOnce(): Promise<number>;
}

/** Delay before attempt `attempt + 1`: exponential from `base`, capped at `max`. */
export function backoffDelay(attempt: number, base: number, max: number): number {
  return backoff(attempt, { baseMs: base, maxMs: max });
}

/**
 * The background loop that obtains settlement signatures the receipt lacked (streamed jobs)
 * from `GET /v1/jobs/{id}` with the job's own key from `DECENTRAL_API_KEYS` (matched by
 * fingerprint) or else `DECENTRAL_API_KEY`, with exponential backoff, until the jobs
 * API gives a final status (settled, refunded or failed: a `settling` answer naming the
 * settlement is asked about again, for the status and charge compared with the chain). Its state lives
 * in the `jobs.backfill_*` columns, so a restart resumes where it stopped; each claimed job's
 * next attempt time is pushed forward before the call, which keeps two passes off one job.
 */
export function createSettlementBackfill(options: SettlementBackfillOptions): SettlementBackfill {
  const { store, log, jobsApi } = options;
  const now = options.now ?? Date.now;
  const intervalMs = options.intervalMs ?? 1000;
  const batchSize = options.batchSize ?? 50;
  const baseDelayMs = options.baseDelayMs ?? 2000;
  const maxDelayMs = options.maxDelayMs ?? BACKFILL_MAX_DELAY_MS;
  const maxAttempts = options.maxAttempts ?? 30;

  const keyOf = new Map<string, string>();
  for (const key of options.apiKeys ?? []) {
    const fingerprint = keyFingerprint(key);
    if (fingerprint) keyOf.set(fingerprint, key);
  }
  const backfill = createBackfillStore(store);
  const answers = createJobsApiStore(store);
  // Through the writer (the proxy's group commit) when there is one, else each on its own.
  const { writer } = options;
  const claim = (claims: BackfillClaim[], giveUps: string[], at: number, farAfter: number) =>
    writer
      ? writer.run(claimBackfillUnit(claims, giveUps, at, farAfter))
      : backfill.claim(claims, giveUps, at, farAfter);
  const giveUp = (at: number, jobId: string) =>
    writer ? writer.run(giveUpBackfillUnit(jobId, at)) : backfill.giveUp(jobId, at);
  const recordAnswer = (jobId: string, answer: JobsApiAnswer, at: number) =>
    writer
      ? writer.run(recordJobsApiAnswerUnit(jobId, answer, at))
      : answers.recordAnswer(jobId, answer, at);

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<number> | undefined;
  let stopped = true;
  // Aborted by `stop`: a pass waiting on a jobs API that does not answer ends at once (its
  // jobs stay pending and are asked again after their delay), not at the client's timeout.
  let calls = new AbortController();
  setMaxListeners(0, calls.signal);
  let warnedNoKey = false;

  async function pass(): Promise<number> {
    // A pass run after a stop (`runOnce`) asks again; a stop from here on aborts this one.
    if (calls.signal.aborted) calls = new AbortController();
    const { signal } = calls;
    // Every call of the pass listens to it: not a leak.
    setMaxListeners(0, signal);
    const at = now();
    // A next ask further off than any this loop (or a receipt's grace) puts one was written
    // before the clock went back: due now, not that step later.
    const farAfter = at + Math.max(maxDelayMs, BACKFILL_MAX_DELAY_MS);
    const rows = (await backfill.due(at, batchSize, farAfter)).map((row) => ({
      ...row,
      apiKey: (row.fingerprint === null ? undefined : keyOf.get(row.fingerprint)) ?? options.apiKey,
    }));
    if (rows.length === 0) return 0;
    const keyless = rows.filter((row) => row.apiKey === undefined);
    const due = rows.filter((row) => row.apiKey !== undefined);
    // Nobody can ask the jobs API for the keyless ones any more: give up now, so the verifier
    // calls them unverifiable instead of waiting for ever (and a nightly run can finish).
    // Another process's pass may have claimed some of the due ones first: those are its to ask.
    const claimed = await claim(
      due.map((row) => ({
        jobId: row.jobId,
        nextAt: at + backoffDelay(row.attempts, baseDelayMs, maxDelayMs),
      })),
      keyless.map((row) => row.jobId),
      at,
      farAfter,
    );
    const mine = new Set(claimed);
    const asked = due.filter((row) => mine.has(row.jobId));
    if (keyless.length > 0 && !warnedNoKey) {
      log.warn(
        { jobs: keyless.length },
        "no backfill key for these jobs' API keys (DECENTRAL_API_KEYS, DECENTRAL_API_KEY): jobs recorded without a settlement (streams, most often, or receipts posted without one) that the caller's own key could not fetch stay without one (unverifiable)",
      );
      warnedNoKey = true;
    }
    await Promise.all(
      asked.map(async ({ jobId, attempts, apiKey }) => {
        try {
          const answer = await jobsApi(jobId, `Bearer ${apiKey}`, signal);
          const answeredAt = now();
          logSentBack(log, jobId, await recordAnswer(jobId, answer, answeredAt));
          log.debug({ jobId, status: answer.status }, "jobs API consulted");
        } catch (error) {
          // Cut off by a stop, not a failure of the jobs API: never the attempt given up on.
          if (signal.aborted) return;
          const permanent = error instanceof JobsApiError && !error.retryable;
          const message = error instanceof Error ? error.message : "error";
          if (permanent || attempts + 1 >= maxAttempts) {
            await giveUp(now(), jobId);
            log.warn({ jobId, reason: message }, "settlement backfill gave up");
          } else {
            log.debug({ jobId, reason: message }, "settlement backfill will retry");
          }
          return;
        }
        if (attempts + 1 >= maxAttempts) await giveUp(now(), jobId);
      }),
    );
    return rows.length;
  }

  function runOnce(): Promise<number> {
    running ??= pass().finally(() => {
      running = undefined;
    });
    return running;
  }

  function schedule(delay: number) {
    if (stopped) return;
    timer = setTimeout(async () => {
      let count = 0;
      try {
        count = await runOnce();
      } catch (error) {
        // The database busy or out of reach (a lock held, no connection free within the pool's
        // wait on a loaded host) is retried at the next pass, as the ledger's rounds are: a
        // warning. Any other failure is the backfill's own.
        if (isBusyError(error)) {
          log.warn(
            { err: String(error) },
            "settlement backfill found the database busy; retried next pass",
          );
        } else log.error({ err: error }, "settlement backfill pass failed");
      }
      // A full batch means more may be due: go again at once.
      schedule(count >= batchSize ? 0 : intervalMs);
    }, delay);
    timer.unref();
  }

  return {
    start() {
      if (!stopped) return;
      stopped = false;
      schedule(0);
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      calls.abort();
      await running;
    },
    runOnce,
  };
}
