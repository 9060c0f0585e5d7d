import type { SqliteStore } from "../../src/db/client.js";
import { creditsToUnits } from "../../src/money.js";
import { parseJobsApiAnswer, recordJobsApiAnswer } from "../../src/recorder/jobs-api.js";
import { keyFingerprint } from "../../src/recorder/proxy.js";
import { recordReceipt } from "../../src/recorder/receipts.js";

/** Where the simulator is and which keys it accepts. */
export interface SimulatorTarget {
  decentralBaseUrl: string;
  apiKeys: readonly string[];
}

export interface JobSpec {
  model?: string;
  stream?: boolean;
  fault?: string;
  apiKeyIndex?: number;
  maxTokens?: number;
  prompt?: string;
  /** Ask `GET /v1/jobs/{id}` afterwards and store its answer, as the recorder's backfill does. */
  consultJobsApi?: boolean;
  /** The receipt's date, as its sender says it (a completion's `created`, an import's). */
  createdAt?: number;
  /** When the receipt is recorded (the store's clock); default now. */
  recordedAt?: number;
}

interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
}

const base = (t: SimulatorTarget) => t.decentralBaseUrl.replace(/\/+$/, "").replace(/\/v1$/, "");

/**
 * Runs one job against the simulator as a client would and records its receipt the way the
 * recorder does (headers, usage, then the jobs API answer). Returns the job id and status.
 */
export async function runRecordedJob(
  target: SimulatorTarget,
  store: SqliteStore,
  spec: JobSpec = {},
): Promise<{ jobId: string; httpStatus: number }> {
  const key = target.apiKeys[spec.apiKeyIndex ?? 0]!;
  const stream = spec.stream ?? false;
  const res = await fetch(`${base(target)}/v1/chat/completions`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${key}`,
      "content-type": "application/json",
      ...(spec.fault ? { "x-sim-fault": spec.fault } : {}),
    },
    body: JSON.stringify({
      model: spec.model ?? "qwen3-8b",
      messages: [{ role: "user", content: spec.prompt ?? "Explain escrow in one paragraph." }],
      ...(spec.maxTokens ? { max_tokens: spec.maxTokens } : {}),
      ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    }),
  });
  const jobId = res.headers.get("x-decentral-job-id");
  const text = await res.text();
  if (!jobId) throw new Error(`no job id (HTTP ${res.status}): ${text.slice(0, 200)}`);
  let usage = null as Usage | null;
  if (res.ok && !stream) usage = (JSON.parse(text) as { usage?: Usage }).usage ?? null;
  if (res.ok && stream) {
    for (const line of text.split("\n")) {
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const chunk = JSON.parse(line.slice(6)) as { usage?: Usage | null };
      if (chunk.usage) usage = chunk.usage;
    }
  }
  const credits = res.headers.get("x-decentral-credits-remaining");
  recordReceipt(
    store,
    {
      jobId,
      escrowTx: res.headers.get("x-decentral-tx-signature") || null,
      settlementTx: res.headers.get("x-decentral-settlement-tx") || null,
      worker: res.headers.get("x-decentral-worker") || null,
      creditsRemainingUnits: credits === null ? null : creditsToUnits(credits),
      model: spec.model ?? "qwen3-8b",
      keyFingerprint: keyFingerprint(`Bearer ${key}`),
      promptTokens: usage?.prompt_tokens ?? null,
      completionTokens: usage?.completion_tokens ?? null,
      totalTokens: usage?.total_tokens ?? null,
      maxTokens: spec.maxTokens ?? null,
      stream,
      httpStatus: res.status,
      ...(spec.createdAt === undefined ? {} : { createdAt: spec.createdAt }),
    },
    "ingest",
    spec.recordedAt === undefined ? {} : { now: spec.recordedAt },
  );
  if (spec.consultJobsApi ?? true) {
    const api = await fetch(`${base(target)}/v1/jobs/${jobId}`, {
      headers: { authorization: `Bearer ${key}` },
    });
    recordJobsApiAnswer(store, jobId, parseJobsApiAnswer(await api.json()));
  }
  return { jobId, httpStatus: res.status };
}

/** What the simulator really did for a job (`GET /sim/jobs/{id}`). */
export async function groundTruth(target: SimulatorTarget, jobId: string) {
  const res = await fetch(`${base(target)}/sim/jobs/${jobId}`);
  return (await res.json()) as Record<string, unknown>;
}
