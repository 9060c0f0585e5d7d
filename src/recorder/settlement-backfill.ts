import type { Store } from "../db/client.js";
import type { Logger } from "../log.js";
import { type JobsApiClient, JobsApiError, recordJobsApiAnswer } from "./jobs-api.js";

/** Options of the settlement backfill loop; every one has a default. */
export interface SettlementBackfillOptions {
  store: Store;
  log: Logger;
  jobsApi: JobsApiClient;
  /** `DECENTRAL_API_KEY`. Without it the loop leaves pending jobs alone (and says so once). */
  apiKey?: string | undefined;
  /** Clock (epoch ms). Default `Date.now`. */
  now?: () => number;
  /** Time between two passes when nothing was due. Default 1,000 ms. */
  intervalMs?: number;
  /** Jobs claimed per pass. Default 50. */
  batchSize?: number;
  /** First retry delay; doubles each attempt. Default 2,000 ms. */
  baseDelayMs?: number;
  /** Longest delay between two attempts. Default 600,000 ms (10 min). */
  maxDelayMs?: number;
  /** Attempts before the job is marked `gave_up` (the verifier then calls it unverifiable). Default 30. */
  maxAttempts?: number;
}

export interface SettlementBackfill {
  /** Starts the background loop. */
  start(): void;
  /** Stops the loop and waits for the pass in progress. */
  stop(): Promise<void>;
  /** Runs one pass now; resolves with the number of jobs asked about. */
  runOnce(): Promise<number>;
}

/** Delay before attempt `attempt + 1`: exponential from `base`, capped at `max`. */
export function backoffDelay(attempt: number, base: number, max: number): number {
  return Math.min(max, base * 2 ** Math.min(attempt, 30));
}

/**
 * The background loop that obtains settlement signatures the receipt lacked (streamed jobs)
 * from `GET /v1/jobs/{id}` with `DECENTRAL_API_KEY`, with exponential backoff, until the jobs
 * API names a settlement transaction or says the job was refunded or failed. Its state lives
 * in the `jobs.backfill_*` columns, so a restart resumes where it stopped; each claimed job's
 * next attempt time is pushed forward before the call, which keeps two passes off one job.
 */
export function createSettlementBackfill(options: SettlementBackfillOptions): SettlementBackfill {
  const { store, log, jobsApi } = options;
  const now = options.now ?? Date.now;
  const intervalMs = options.intervalMs ?? 1000;
  const batchSize = options.batchSize ?? 50;
  const baseDelayMs = options.baseDelayMs ?? 2000;
  const maxDelayMs = options.maxDelayMs ?? 600_000;
  const maxAttempts = options.maxAttempts ?? 30;

  const due = store.sqlite.prepare(
    `SELECT job_id AS jobId, backfill_attempts AS attempts FROM jobs
     WHERE backfill_state = 'pending' AND backfill_next_at <= ?
     ORDER BY backfill_next_at LIMIT ?`,
  );
  const claim = store.sqlite.prepare(
    `UPDATE jobs SET backfill_attempts = backfill_attempts + 1, backfill_next_at = ?
     WHERE job_id = ? AND backfill_state = 'pending'`,
  );
  const giveUp = store.sqlite.prepare(
    `UPDATE jobs SET backfill_state = 'gave_up', updated_at = ?
     WHERE job_id = ? AND backfill_state = 'pending'`,
  );

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<number> | undefined;
  let stopped = true;
  let warnedNoKey = false;

  async function pass(): Promise<number> {
    const apiKey = options.apiKey;
    const at = now();
    const rows = due.all(at, batchSize) as { jobId: string; attempts: number }[];
    if (rows.length === 0) return 0;
    if (!apiKey) {
      // Nobody can ask the jobs API for these any more: give up now, so the verifier calls
      // them unverifiable instead of waiting for ever (and a nightly run can finish).
      const giveUpAll = store.sqlite.transaction(() => {
        for (const row of rows) giveUp.run(at, row.jobId);
      });
      giveUpAll.immediate();
      if (!warnedNoKey) {
        log.warn(
          { jobs: rows.length },
          "DECENTRAL_API_KEY not set: streamed jobs whose settlement the caller's own key could not fetch stay without one (unverifiable)",
        );
        warnedNoKey = true;
      }
      return rows.length;
    }
    const claimAll = store.sqlite.transaction(() => {
      for (const row of rows) {
        claim.run(at + backoffDelay(row.attempts, baseDelayMs, maxDelayMs), row.jobId);
      }
    });
    claimAll.immediate();
    const authorization = `Bearer ${apiKey}`;
    await Promise.all(
      rows.map(async ({ jobId, attempts }) => {
        try {
          const answer = await jobsApi(jobId, authorization);
          recordJobsApiAnswer(store, jobId, answer, now());
          log.debug({ jobId, status: answer.status }, "jobs API consulted");
        } catch (error) {
          const permanent = error instanceof JobsApiError && !error.retryable;
          const message = error instanceof Error ? error.message : "error";
          if (permanent || attempts + 1 >= maxAttempts) {
            giveUp.run(now(), jobId);
            log.warn({ jobId, reason: message }, "settlement backfill gave up");
          } else {
            log.debug({ jobId, reason: message }, "settlement backfill will retry");
          }
          return;
        }
        if (attempts + 1 >= maxAttempts) giveUp.run(now(), jobId);
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
        log.error({ err: error }, "settlement backfill pass failed");
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
      await running;
    },
    runOnce,
  };
}
