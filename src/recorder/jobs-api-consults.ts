import { setMaxListeners } from "node:events";
import type { Logger } from "../log.js";
import { leaveToBackfillUnit } from "../store/backfill.js";
import { recordJobsApiAnswerUnit } from "../store/jobs-api.js";
import {
  isFinalAnswer,
  type JobsApiAnswer,
  type JobsApiClient,
  JobsApiError,
  logSentBack,
} from "./jobs-api.js";
import type { ReceiptWriter } from "./receipt-writer.js";

export interface JobsApiConsultsOptions {
  jobsApi: JobsApiClient;
  writer: ReceiptWriter;
  log: Logger;
  now: () => number;
  /** Delays of the retries while the answer's status is not final (or the call failed). */
  retryDelaysMs: readonly number[];
  /** Longest wait of a job for its batch, in ms. Default 100. */
  batchMs?: number;
  /**
   * Jobs asked about in one batch; a full batch goes at once. Default 16: a batch's requests go
   * out, and its answers are written, in one stretch of the event loop (about 1 ms for 16).
   */
  batchMax?: number;
  /**
   * How long the answers of a batch are waited for to be written together, in ms; one that
   * comes later is written alone when it comes. Default 200.
   */
  batchWaitMs?: number;
  /**
   * How long `finish` waits for the calls in flight before it aborts them, in ms. Default
   * 1,000: an answer normally takes milliseconds, and a stop must not wait on an API that
   * does not answer (the cluster kills a worker not gone soon after the drain).
   */
  finishWaitMs?: number;
}

/** The jobs API questions of the proxy, asked after each response in batches. */
export interface JobsApiConsults {
  /**
   * Asks the jobs API about `jobId` with the caller's `authorization` (held in memory only,
   * until the last attempt), within `batchMs`, and records the answer; asks again after each
   * retry delay while the answer's status is not final (`settling` with the settlement named is
   * not) or the call failed for a reason that may pass; a job still without a final status
   * after the last retry is left to the settlement backfill. `requestId`, the id of the request
   * whose answer named the job, is in each log line about its question.
   */
  ask(jobId: string, authorization: string, requestId?: string): void;
  /** Asks the waiting batch now; resolves when every question asked so far is settled. */
  drain(): Promise<void>;
  /**
   * The process is stopping: asks the waiting batch now, makes no more retries, and aborts the
   * calls still in flight after `finishWaitMs`. Every job whose question is left without an
   * answer (aborted, a retry dropped, or asked after this) is left to the settlement backfill,
   * which asks later with the job's own key: resolves once that is written.
   */
  finish(): Promise<void>;
  /** Questions not settled yet (waiting, in flight, or waiting for a retry). */
  waiting(): number;
}

type Asked = { q: Question; answer: JobsApiAnswer; at: number } | { q: Question; error: unknown };

interface Question {
  jobId: string;
  authorization: string;
  /** The id of the request whose answer named the job, for its log lines. */
  requestId: string | undefined;
  /** Retries made so far. */
  attempt: number;
  settle(): void;
}

/**
 * Batches the proxy's jobs API questions. At one request in flight, a question asked at once
 * after each response had its answer committed on its own, and that commit cost the service as
 * much CPU as the call itself (about 0.2 to 0.4 ms a job on a 2-vCPU host). Asked in batches,
 * the answers of a batch reach the writer in one event-loop turn and share its group commits
 * (each at most the writer's slice long, so a receipt waits little behind them). Nothing waits
 * for a batch but the audit record: the verifier needs the chain's finality, seconds later.
 */
export function createJobsApiConsults(options: JobsApiConsultsOptions): JobsApiConsults {
  const { jobsApi, writer, log, now, retryDelaysMs } = options;
  const batchMs = options.batchMs ?? 100;
  const batchMax = options.batchMax ?? 16;
  const batchWaitMs = options.batchWaitMs ?? 200;
  let batch: Question[] = [];
  let timer: NodeJS.Timeout | null = null;
  const unsettled = new Set<Promise<void>>();
  const finishWaitMs = options.finishWaitMs ?? 1000;
  let draining = 0;
  let finishing = false;
  // Ends the calls in flight once a stop has waited for them long enough.
  const stopCalls = new AbortController();
  // Every call in flight listens to it (a batch is 16, more with retries): not a leak.
  setMaxListeners(0, stopCalls.signal);
  /** Jobs whose question the stop left unanswered, not yet handed to the backfill. */
  const left = new Set<string>();
  /** Set once `finish` handed its jobs over: a job left later is handed over on its own. */
  let handedOver = false;

  function enqueue(question: Question) {
    batch.push(question);
    if (draining > 0 || batch.length >= batchMax) flush();
    else timer ??= setTimeout(flush, batchMs);
  }

  function flush() {
    if (timer) clearTimeout(timer);
    timer = null;
    const taken = batch;
    batch = [];
    if (taken.length > 0) void askAll(taken);
  }

  /** One question asked; never rejects, even for a client that throws at once. */
  function askOne(q: Question): Promise<Asked> {
    let call: Promise<JobsApiAnswer>;
    try {
      call = jobsApi(q.jobId, q.authorization, stopCalls.signal);
    } catch (error) {
      call = Promise.reject(error);
    }
    return call.then(
      (answer) => ({ q, answer, at: now() }),
      (error: unknown) => ({ q, error }),
    );
  }

  async function askAll(taken: Question[]) {
    // The answers in by `batchWaitMs` go to the writer in one turn, so they share its commits;
    // a slower one goes alone when it comes and holds back no other.
    let together = true;
    const arrived: Asked[] = [];
    const calls = taken.map((q) =>
      askOne(q).then((a) => {
        if (together) arrived.push(a);
        else void settle(a);
      }),
    );
    let waited: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(calls),
      new Promise((resolve) => {
        waited = setTimeout(resolve, batchWaitMs);
      }),
    ]);
    clearTimeout(waited);
    together = false;
    await Promise.all(arrived.map(settle));
  }

  /** A question is settled whatever happens, so `drain` never waits for one that went wrong. */
  const settle = (a: Asked) => settleOne(a).catch(() => a.q.settle());

  async function settleOne(a: Asked) {
    let again = true;
    if ("answer" in a) {
      try {
        // Stamped with the time it was received: an older answer never replaces a newer one.
        // A database refusing writes keeps it in memory until it takes them again: the answer
        // is in hand, and asking again would only add load while it refuses.
        let kept = false;
        let onKept!: () => void;
        const keptNow = new Promise<void>((resolve) => {
          onKept = resolve;
        });
        const written = writer.run(recordJobsApiAnswerUnit(a.q.jobId, a.answer, a.at), {
          keep: () => {
            kept = true;
            onKept();
          },
        });
        written.catch((error: unknown) => {
          if (kept) {
            log.warn(
              { err: error, jobId: a.q.jobId, requestId: a.q.requestId },
              "jobs API answer kept while the database refused writes, not recorded",
            );
          }
        });
        written
          .then((earlier) => logSentBack(log, a.q.jobId, earlier, a.q.requestId))
          .catch(() => {});
        await Promise.race([written, keptNow]);
        again = !isFinalAnswer(a.answer);
      } catch {
        // Not written (the database is away): asked again after the next delay.
      }
    } else if (a.error instanceof JobsApiError && !a.error.retryable) {
      log.debug(
        { jobId: a.q.jobId, requestId: a.q.requestId, status: a.error.status },
        "jobs API refused the caller's key",
      );
      again = false;
    }
    const delay = retryDelaysMs[a.q.attempt];
    const outOfRetries = again && delay === undefined && !finishing;
    if (again && (finishing || outOfRetries)) left.add(a.q.jobId);
    if (!again || delay === undefined || finishing) {
      // Out of retries while running (a jobs API down for a few seconds): the settlement
      // backfill asks from here on, with the job's key when DECENTRAL_API_KEYS holds it, so a
      // second settlement only the answer names is still found. Left unasked, the job was
      // verified without the answer and never looked at again.
      if (outOfRetries) await handOver();
      a.q.settle();
      return;
    }
    const retry = setTimeout(() => {
      retries.delete(retry);
      enqueue({ ...a.q, attempt: a.q.attempt + 1 });
    }, delay);
    retries.set(retry, a.q);
  }

  /** Retries waiting for their delay, with their questions. */
  const retries = new Map<NodeJS.Timeout, Question>();

  /** Counts `work` among the unsettled questions, so `drain` waits for it. */
  function track(work: Promise<void>) {
    unsettled.add(work);
    void work.then(() => unsettled.delete(work));
  }

  /**
   * Leaves every job in `left` to the settlement backfill, in one write. A job that has its
   * settlement signature is left too: a second settlement is named only by the jobs API.
   */
  async function handOver() {
    const jobIds = [...left];
    left.clear();
    if (jobIds.length === 0) return;
    try {
      await writer.run(leaveToBackfillUnit(jobIds, now()));
      log.info({ jobs: jobIds.length }, "jobs API questions left to the settlement backfill");
    } catch (error) {
      log.warn(
        { err: error, jobs: jobIds.length },
        "jobs API questions not left to the settlement backfill (the database is away)",
      );
    }
  }

  return {
    ask(jobId, authorization, requestId) {
      if (finishing) {
        // Stopping: the job is asked about later by the backfill, not by this process.
        left.add(jobId);
        if (handedOver && left.size === 1) {
          track(new Promise<void>((resolve) => setImmediate(resolve)).then(handOver));
        }
        return;
      }
      let settle!: () => void;
      const done = new Promise<void>((resolve) => {
        settle = resolve;
      });
      track(done);
      enqueue({ jobId, authorization, requestId, attempt: 0, settle });
    },
    async drain() {
      draining++;
      try {
        flush();
        while (unsettled.size > 0) await Promise.allSettled([...unsettled]);
      } finally {
        draining--;
      }
    },
    async finish() {
      finishing = true;
      for (const [timer, q] of retries) {
        clearTimeout(timer);
        left.add(q.jobId);
        q.settle();
      }
      retries.clear();
      const bound = setTimeout(() => stopCalls.abort(), finishWaitMs);
      try {
        await this.drain();
      } finally {
        clearTimeout(bound);
      }
      handedOver = true;
      await handOver();
    },
    waiting: () => unsettled.size,
  };
}
