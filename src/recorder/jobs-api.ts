import http from "node:http";
import https from "node:https";
import type { Store } from "../db/client.js";
import { creditsToUnitsOrNull } from "../money.js";
import { createJobsApiStore, type JobsApiAnswer } from "../store/jobs-api.js";
import { operatorText, unreadAmount } from "./operator-values.js";
import { addressOrNull, signatureOrNull } from "./receipt-input.js";
import { valueWithoutKey, withoutKey } from "./without-key.js";

export { isSettledAnswer, type JobsApiAnswer } from "../store/jobs-api.js";

function text(value: unknown): string | null {
  return typeof value === "string" && value.length > 0 && value.length <= 200 ? value : null;
}

/** Reads the documented fields of a jobs API body; anything missing or odd becomes null. */
export function parseJobsApiAnswer(body: unknown): JobsApiAnswer {
  const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const onChain = (
    typeof b.on_chain === "object" && b.on_chain !== null ? b.on_chain : {}
  ) as Record<string, unknown>;
  const charged = creditsToUnitsOrNull(b.credits_charged);
  return {
    // Stored and shown as written, so made fit to store: PostgreSQL text cannot hold NUL.
    status: operatorText(b.status),
    creditsChargedUnits: charged,
    // Sent but no credit amount ("99.00001", 1e2): kept, so the check fails on it rather than
    // comparing nothing.
    creditsChargedUnread:
      charged === null && b.credits_charged !== undefined && b.credits_charged !== null
        ? unreadAmount(b.credits_charged)
        : null,
    escrowTx: signatureOrNull(text(onChain.escrow_tx)),
    settlementTx: signatureOrNull(text(onChain.settlement_tx)),
    worker: addressOrNull(text(b.worker_address)),
    raw: body,
  };
}

/** A failed jobs API call; `retryable` is false when asking again cannot help (401, 404). */
export class JobsApiError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = "JobsApiError";
  }
}

/** The largest jobs API answer read, in bytes. */
export const maxAnswerBytes = 64 * 1024;

/**
 * Asks the Decentral jobs API about one job. An aborted `signal` ends the call at once with a
 * retryable `JobsApiError`: a stopping process does not wait for an API that does not answer.
 */
export type JobsApiClient = (
  jobId: string,
  authorization: string,
  signal?: AbortSignal,
) => Promise<JobsApiAnswer>;

/**
 * A jobs API client for `baseUrl` (e.g. `https://api.usedecentral.org/v1`) over node:http with
 * a keep-alive agent: it runs beside the proxy on every job, so it must cost little CPU.
 * `authorization` is the full header value; it is sent and forgotten, never logged nor put
 * into an error.
 */
export function createJobsApiClient(
  baseUrl: string,
  options: { timeoutMs?: number; maxSockets?: number } = {},
): JobsApiClient {
  const base = new URL(baseUrl);
  const basePath = base.pathname.replace(/\/+$/, "");
  const secure = base.protocol === "https:";
  const transport = secure ? https : http;
  const agent = new (secure ? https.Agent : http.Agent)({
    keepAlive: true,
    maxSockets: options.maxSockets ?? 16,
  });
  const timeoutMs = options.timeoutMs ?? 10_000;
  return (jobId, authorization, signal) => counted(ask(jobId, authorization, signal));

  function ask(jobId: string, authorization: string, signal?: AbortSignal) {
    let deadline: NodeJS.Timeout | undefined;
    return new Promise<JobsApiAnswer>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new JobsApiError("jobs API call aborted", null, true));
        return;
      }
      const req = transport.request(
        {
          protocol: base.protocol,
          hostname: base.hostname,
          port: base.port || (secure ? 443 : 80),
          path: `${basePath}/jobs/${encodeURIComponent(jobId)}`,
          headers: { authorization, accept: "application/json" },
          agent,
          timeout: timeoutMs,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          if (status < 200 || status >= 300) {
            res.resume();
            const retryable = status === 429 || status >= 500;
            reject(new JobsApiError(`jobs API answered ${status}`, status, retryable));
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            // A job's answer is a few hundred bytes: one far larger is not read on, nor kept
            // (its raw body is stored), and says nothing.
            if (size > maxAnswerBytes) {
              res.destroy();
              resolve(parseJobsApiAnswer(null));
              return;
            }
            chunks.push(chunk);
          });
          res.on("error", () => reject(new JobsApiError("jobs API reset", null, true)));
          res.on("end", () => {
            let body: unknown = null;
            try {
              const text = withoutKey(Buffer.concat(chunks).toString("utf8"), authorization);
              body = valueWithoutKey(JSON.parse(text), authorization);
            } catch {
              // An unreadable body says nothing; every field stays null.
            }
            resolve(parseJobsApiAnswer(body));
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error("timeout")));
      // The socket's timeout is an idle time: an answer sent a byte at a time within it never
      // ended, and held the backfill's whole batch. The call as a whole ends at the timeout.
      deadline = setTimeout(() => {
        reject(new JobsApiError("jobs API timed out", null, true));
        req.destroy();
      }, timeoutMs);
      req.on("error", (error) =>
        reject(new JobsApiError(`jobs API unreachable (${error.message})`, null, true)),
      );
      if (signal) {
        // Rejected first: a response already being read would otherwise end only with its
        // socket, which a destroyed request does not always report on the response.
        const abort = () => {
          reject(new JobsApiError("jobs API call aborted", null, true));
          req.destroy();
        };
        signal.addEventListener("abort", abort, { once: true });
        req.once("close", () => signal.removeEventListener("abort", abort));
      }
      req.end();
    }).finally(() => clearTimeout(deadline));
  }
}

/** Jobs API calls this process made, by how they ended (for `/metrics`). */
const callCounts = new Map<JobsApiCallOutcome, number>();

/** How a jobs API call ended: an answer, a failure worth a retry, a refusal (4xx), a stop. */
export type JobsApiCallOutcome = "answered" | "failed" | "refused" | "aborted";

/** The calls made so far, by outcome. */
export function jobsApiCallCounts(): ReadonlyMap<JobsApiCallOutcome, number> {
  return callCounts;
}

function counted(call: Promise<JobsApiAnswer>): Promise<JobsApiAnswer> {
  const add = (outcome: JobsApiCallOutcome) =>
    callCounts.set(outcome, (callCounts.get(outcome) ?? 0) + 1);
  call.then(
    () => add("answered"),
    (error: unknown) => {
      if (!(error instanceof JobsApiError)) add("failed");
      else if (error.message === "jobs API call aborted") add("aborted");
      else add(error.retryable ? "failed" : "refused");
    },
  );
  return call;
}

/**
 * Stores what the jobs API said about a job (see `JobsApiStore.recordAnswer`): the job is
 * verified again when the answer changed, and is due now while it is not final.
 */
export function recordJobsApiAnswer(
  store: Store,
  jobId: string,
  answer: JobsApiAnswer,
  now = Date.now(),
): Promise<void> {
  return createJobsApiStore(store).recordAnswer(jobId, answer, now);
}
