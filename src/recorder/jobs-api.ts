import http from "node:http";
import https from "node:https";
import { connectHostOf } from "../connect-host.js";
import type { Store } from "../db/client.js";
import type { Verdict } from "../db/schema.js";
import type { Logger } from "../log.js";
import { creditsToUnitsOrNull } from "../money.js";
import { createJobsApiStore, type JobsApiAnswer } from "../store/jobs-api.js";
import { operatorText, operatorTokens, unreadAmount } from "./operator-values.js";
import { addressOrNull, signatureOrNull } from "./receipt-input.js";
import { valueWithoutKey, withoutKey } from "./without-key.js";

export { isFinalAnswer, type JobsApiAnswer } from "../store/jobs-api.js";

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
    completionTokens: operatorTokens(
      typeof b.usage === "object" && b.usage !== null
        ? (b.usage as Record<string, unknown>).completion_tokens
        : undefined,
    ),
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
 * into an error. A call ends at `timeoutMs` from its start (within an eighth of it, 250 ms at
 * most), however its bytes come.
 */
export function createJobsApiClient(
  baseUrl: string,
  options: { timeoutMs?: number; maxSockets?: number } = {},
): JobsApiClient {
  const base = new URL(baseUrl);
  const jobsPath = `${base.pathname.replace(/\/+$/, "")}/jobs/`;
  const secure = base.protocol === "https:";
  const transport = secure ? https : http;
  const agent = new (secure ? https.Agent : http.Agent)({
    keepAlive: true,
    maxSockets: options.maxSockets ?? 16,
  });
  const hostname = connectHostOf(base);
  const host = base.host;
  const port = base.port || (secure ? 443 : 80);
  const timeoutMs = options.timeoutMs ?? 10_000;
  // Each call used to arm a timer of its own, a socket idle timeout, and a listener on the
  // caller's signal (Node's EventTarget is slow to add and remove one): with the answer's walk
  // (see answerWithoutKey), about a third of the client's CPU per call. One timer now ends every
  // call past its time, and one listener a signal ends every call made with it.
  const calls = new Map<Call, number>();
  const sweepMs = Math.max(1, Math.min(250, Math.ceil(timeoutMs / 8)));
  let sweep: NodeJS.Timeout | null = null;
  const sweepCalls = () => {
    const now = performance.now();
    for (const [call, began] of calls) {
      if (now - began >= timeoutMs) call.end(new JobsApiError("jobs API timed out", null, true));
    }
    if (calls.size === 0 && sweep !== null) {
      clearInterval(sweep);
      sweep = null;
    }
  };
  const bySignal = new WeakMap<AbortSignal, Set<Call>>();
  const watch = (signal: AbortSignal, call: Call) => {
    let watched = bySignal.get(signal);
    if (watched === undefined) {
      const ended = new Set<Call>();
      watched = ended;
      bySignal.set(signal, ended);
      signal.addEventListener(
        "abort",
        () => {
          for (const c of [...ended]) c.end(new JobsApiError("jobs API call aborted", null, true));
        },
        { once: true },
      );
    }
    watched.add(call);
  };
  /**
   * Reads an error answer's body to its end, so that its connection is used again, but no
   * further than an answer's bound nor longer than one sweep interval (a few hundred bytes come
   * with the head): a body that never ended held its connection for good, and once each was so
   * held no call was answered again.
   */
  const drainBriefly = (res: http.IncomingMessage, cut: () => void) => {
    const drain: Call = { end: cut };
    calls.set(drain, performance.now() - timeoutMs + sweepMs);
    let size = 0;
    res.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxAnswerBytes) cut();
    });
    res.on("close", () => calls.delete(drain));
  };
  return (jobId, authorization, signal) => {
    const call = ask(jobId, authorization, signal);
    call.then(answered, failed);
    return call;
  };

  function ask(jobId: string, authorization: string, signal?: AbortSignal) {
    return new Promise<JobsApiAnswer>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new JobsApiError("jobs API call aborted", null, true));
        return;
      }
      let over = false;
      let answering = false;
      const call: Call = {
        // Rejected first: a response already being read would otherwise end only with its
        // socket, which a destroyed request does not always report on the response.
        end(error) {
          done(error);
          req.destroy();
        },
      };
      const done = (error: JobsApiError | null, answer?: JobsApiAnswer) => {
        if (over) return;
        over = true;
        calls.delete(call);
        if (signal) bySignal.get(signal)?.delete(call);
        if (error) reject(error);
        else resolve(answer as JobsApiAnswer);
      };
      const send = () =>
        transport.request(
          {
            hostname,
            port,
            path: jobsPath + encodeURIComponent(jobId),
            // A flat list of name, value pairs: Node writes it as it is, without copying each
            // into the request's own header map (and adds no `host` to it).
            headers: ["host", host, "authorization", authorization, "accept", "application/json"],
            agent,
          },
          (res) => {
            answering = true;
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) {
              drainBriefly(res, () => req.destroy());
              const retryable = status === 429 || status >= 500;
              done(new JobsApiError(`jobs API answered ${status}`, status, retryable));
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
                done(null, parseJobsApiAnswer(null));
                return;
              }
              chunks.push(chunk);
            });
            res.on("error", () => done(new JobsApiError("jobs API reset", null, true)));
            res.on("end", () => {
              let body: unknown = null;
              try {
                const bytes = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
                body = answerWithoutKey(bytes.toString("utf8"), authorization);
              } catch {
                // An unreadable body says nothing; every field stays null.
              }
              done(null, parseJobsApiAnswer(body));
            });
          },
        );
      let req = send();
      let resent = false;
      const onError = (error: NodeJS.ErrnoException) => {
        // A kept-alive connection the API closed as it was reused (one that closes each
        // connection after an answer without saying so): the question goes once more on a
        // fresh one. Asking again costs nothing, and a retry a delay later cost a call more.
        if (!over && !resent && !answering && req.reusedSocket && isStaleSocket(error)) {
          resent = true;
          req = send();
          req.on("error", onError);
          req.end();
          return;
        }
        done(new JobsApiError(`jobs API unreachable (${error.message})`, null, true));
      };
      req.on("error", onError);
      // The whole call ends at the timeout: an answer sent a byte at a time within a socket's
      // idle time never ended, and held the backfill's whole batch.
      calls.set(call, performance.now());
      if (sweep === null) {
        sweep = setInterval(sweepCalls, sweepMs);
        // The call's socket keeps the process up while the call lasts.
        sweep.unref();
      }
      if (signal) watch(signal, call);
      req.end();
    });
  }
}

/** A socket error of a connection the other side had closed: nothing of an answer came. */
const isStaleSocket = (error: NodeJS.ErrnoException) =>
  error.code === "ECONNRESET" || error.code === "EPIPE";

/** A call in flight, as its timeout or its caller's signal ends it. */
interface Call {
  end(error: JobsApiError): void;
}

/**
 * A jobs API answer's text parsed, without the caller's key: cut from the text, and from every
 * parsed string and name when the text holds a JSON escape (`\u0041` for `A`), which parsing
 * undoes. Text without a backslash parses to pieces of itself, which the cut already cleared:
 * its walk, a fifth of the client's CPU per call, is left out.
 */
function answerWithoutKey(raw: string, authorization: string): unknown {
  const text = withoutKey(raw, authorization);
  const parsed: unknown = JSON.parse(text);
  const clear = !text.includes("\\") && withoutKey(text, authorization) === text;
  return clear ? parsed : valueWithoutKey(parsed, authorization);
}

/** Jobs API calls this process made, by how they ended (for `/metrics`). */
const callCounts = new Map<JobsApiCallOutcome, number>();

/** How a jobs API call ended: an answer, a failure worth a retry, a refusal (4xx), a stop. */
export type JobsApiCallOutcome = "answered" | "failed" | "refused" | "aborted";

/** The calls made so far, by outcome. */
export function jobsApiCallCounts(): ReadonlyMap<JobsApiCallOutcome, number> {
  return callCounts;
}

const add = (outcome: JobsApiCallOutcome) =>
  callCounts.set(outcome, (callCounts.get(outcome) ?? 0) + 1);
const answered = () => add("answered");
const failed = (error: unknown) => {
  if (!(error instanceof JobsApiError)) add("failed");
  else if (error.message === "jobs API call aborted") add("aborted");
  else add(error.retryable ? "failed" : "refused");
};

/**
 * Says that an answer's write sent a job judged before it came (`earlier`, its verdict) back to
 * the verifier: the job's next "job verdict" line is its second, on the answer.
 */
export function logSentBack(
  log: Logger,
  jobId: string,
  earlier: Verdict | null,
  /** The request whose answer named the job, when the proxy asked. */
  requestId?: string,
): void {
  if (earlier === null) return;
  log.info(
    { jobId, requestId, earlier },
    "job judged again: the jobs API answered after its verdict, which was given without the answer",
  );
}

/**
 * Stores what the jobs API said about a job (see `JobsApiStore.recordAnswer`): the job is
 * verified again when the answer changed, and is due now while it is not final. Returns the
 * final verdict the answer sent back to be judged again, else null.
 */
export function recordJobsApiAnswer(
  store: Store,
  jobId: string,
  answer: JobsApiAnswer,
  now = Date.now(),
): Promise<Verdict | null> {
  return createJobsApiStore(store).recordAnswer(jobId, answer, now);
}
