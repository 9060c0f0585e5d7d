import http from "node:http";
import https from "node:https";
import type Database from "better-sqlite3";
import type { Store } from "../db/client.js";
import { creditsToUnitsOrNull } from "../money.js";
import { addressOrNull, signatureOrNull } from "./receipt-input.js";

/** What `GET /v1/jobs/{job_id}` said about a job, reduced to what the audit compares. */
export interface JobsApiAnswer {
  status: string | null;
  creditsChargedUnits: bigint | null;
  escrowTx: string | null;
  settlementTx: string | null;
  worker: string | null;
  /** The response body as received. */
  raw: unknown;
}

/** Job statuses after which no settlement signature will ever appear. */
const terminalWithoutSettlement = new Set(["refunded", "failed"]);

/** True when asking the jobs API again cannot bring anything new. */
export function isSettledAnswer(answer: JobsApiAnswer): boolean {
  return (
    answer.settlementTx !== null ||
    (answer.status !== null && terminalWithoutSettlement.has(answer.status))
  );
}

function text(value: unknown): string | null {
  return typeof value === "string" && value.length > 0 && value.length <= 200 ? value : null;
}

/** Reads the documented fields of a jobs API body; anything missing or odd becomes null. */
export function parseJobsApiAnswer(body: unknown): JobsApiAnswer {
  const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const onChain = (
    typeof b.on_chain === "object" && b.on_chain !== null ? b.on_chain : {}
  ) as Record<string, unknown>;
  return {
    status: text(b.status),
    creditsChargedUnits: creditsToUnitsOrNull(b.credits_charged),
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

/** Asks the Decentral jobs API about one job. */
export type JobsApiClient = (jobId: string, authorization: string) => Promise<JobsApiAnswer>;

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
  return (jobId, authorization) =>
    new Promise<JobsApiAnswer>((resolve, reject) => {
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
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("error", () => reject(new JobsApiError("jobs API reset", null, true)));
          res.on("end", () => {
            let body: unknown = null;
            try {
              body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
            } catch {
              // An unreadable body says nothing; every field stays null.
            }
            resolve(parseJobsApiAnswer(body));
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", (error) =>
        reject(new JobsApiError(`jobs API unreachable (${error.message})`, null, true)),
      );
      req.end();
    });
}

const updateCache = new WeakMap<Database.Database, Database.Statement>();

/**
 * True when this answer tells the checks something the row did not say: a first answer, or a
 * different status, signature, worker or charge. The job is then verified again (any lease
 * dropped, so a verdict reached on the old answer is not written). SET expressions read the
 * row as it was before the update.
 */
const changed = `(api_checked_at IS NULL OR api_status IS NOT @status
  OR api_escrow_tx IS NOT @escrowTx OR api_settlement_tx IS NOT @settlementTx
  OR api_worker IS NOT @worker OR api_credits_charged_units IS NOT @charged)`;

/**
 * Stores what the jobs API said in the `api_*` columns and fills the receipt's settlement
 * signature from it when the receipt lacked one (an update, never a conflict). A recorded
 * settlement signature is never overwritten: a different one from the API is a finding for
 * the verifier, which compares the two columns. The backfill is done once the answer is final.
 * A job not yet final becomes due for verification now (it may have been parked waiting for
 * exactly this answer), and one whose answer changed is verified again.
 */
export function recordJobsApiAnswer(
  store: Store,
  jobId: string,
  answer: JobsApiAnswer,
  now = Date.now(),
): void {
  let statement = updateCache.get(store.sqlite);
  if (!statement) {
    statement = store.sqlite.prepare(
      `UPDATE jobs SET api_status = @status, api_credits_charged_units = @charged,
         api_escrow_tx = @escrowTx, api_settlement_tx = @settlementTx, api_worker = @worker,
         api_response = @raw, api_checked_at = @now,
         settlement_tx = coalesce(settlement_tx, @settlementTx),
         backfill_state = CASE WHEN @final = 1 AND backfill_state = 'pending' THEN 'done'
           ELSE backfill_state END,
         verdict = CASE WHEN ${changed} THEN 'pending' ELSE verdict END,
         next_verify_at = CASE WHEN ${changed} THEN @now
           WHEN verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')
           THEN min(next_verify_at, @now) ELSE next_verify_at END,
         lease_owner = CASE WHEN ${changed} THEN NULL ELSE lease_owner END,
         lease_until = CASE WHEN ${changed} THEN NULL ELSE lease_until END,
         updated_at = @now
       WHERE job_id = @jobId`,
    );
    updateCache.set(store.sqlite, statement);
  }
  statement.run({
    jobId,
    status: answer.status,
    charged: answer.creditsChargedUnits,
    escrowTx: answer.escrowTx,
    settlementTx: answer.settlementTx,
    worker: answer.worker,
    raw: JSON.stringify(answer.raw ?? null),
    now,
    final: isSettledAnswer(answer) ? 1 : 0,
  });
}
