import OpenAI, { APIError } from "openai";
import PQueue from "p-queue";
import { chainFaults, type SimFault } from "../localnet/decentral-jobs.js";
import { modelCatalog } from "../localnet/models.js";

/**
 * The demo's workload: what a team using Decentral sends in an afternoon, compressed. Honest
 * chat completions of every model, streamed (with and without `include_usage`) or not, from
 * several API keys, mixed with requests the simulator answers with an error (402, 503, 504)
 * and with jobs it settles wrongly on purpose (`x-sim-fault`). Every request goes through the
 * recording proxy with the official `openai` SDK, as a user's code would.
 */

export type StreamMode = "off" | "with-usage" | "without-usage";

/** One request of the plan. */
export interface PlannedRequest {
  index: number;
  model: string;
  /** Index of a funded API key, or `low-balance` for the key whose credits cannot cover a lock. */
  apiKey: number | "low-balance";
  stream: StreamMode;
  /** `max_tokens` of the request; null sends none (the lock then assumes 2,000 tokens). */
  maxTokens: number | null;
  /** Sent as `x-sim-fault`; null for an honest request. */
  fault: SimFault | null;
  /** HTTP status the network answers with. */
  expectedStatus: 200 | 402 | 503 | 504;
}

/** What came back for one request. */
export interface RequestOutcome {
  request: PlannedRequest;
  /** HTTP status received (0 when the request never got an answer). */
  status: number;
  /** `x-decentral-job-id` of the answer; null when the network made no job (402, 503). */
  jobId: string | null;
  /** Why the request failed, when it failed otherwise than planned. */
  problem: string | null;
}

const prompts = [
  "Summarise the attached incident report in three bullet points.",
  "Translate 'the invoice is overdue' into French, German and Spanish.",
  "Write a SQL query that lists customers with more than five orders last month.",
  "Explain how an escrow account protects both the buyer and the seller.",
  "Draft a polite reply declining a meeting invitation for Friday.",
  "Classify this support ticket as billing, bug or feature request: 'I was charged twice.'",
  "Give me a haiku about settlement finality on a blockchain.",
  "Refactor this function to avoid the nested loops and explain why it is faster.",
];

const streamModes: StreamMode[] = ["off", "with-usage", "without-usage"];
const maxTokenChoices: (number | null)[] = [null, 800, 300, 1500];
/**
 * Chain faults that also run streamed when the plan has room (the settlement signature then
 * comes from the jobs API, not the headers). Not `double-settle`: streamed, the receipt learns
 * only the settlement the jobs API names; the other is found by the escrow scan after a ledger
 * round (src/ledger/escrow-scan.ts), which may come after the demo has printed the job verified.
 */
const streamedFaults: SimFault[] = [
  "underpay-worker",
  "overcharge",
  "failed-settlement",
  "wrong-worker",
];

/**
 * The requests of a demo run, in sending order: `total` requests, of which one 402, one 503,
 * one 504, one job of each chain fault (and, from 40 requests on, streamed variants of four of
 * them); the rest honest. The first `lead` requests are honest so that `reuse-escrow`, placed
 * last among the faults, always finds an earlier escrow of its key to replay.
 */
export function planTraffic(total: number, lead: number): PlannedRequest[] {
  const models = modelCatalog.map((m) => m.id);
  type Special = Omit<PlannedRequest, "index" | "model">;
  const specials: Special[] = [
    { apiKey: "low-balance", stream: "off", maxTokens: null, fault: null, expectedStatus: 402 },
    { apiKey: 1, stream: "off", maxTokens: null, fault: "busy", expectedStatus: 503 },
    { apiKey: 2, stream: "off", maxTokens: 800, fault: "timeout", expectedStatus: 504 },
  ];
  const faults = chainFaults.filter((f) => f !== "reuse-escrow");
  faults.forEach((fault, i) => {
    specials.push({
      apiKey: i % 4,
      stream: "off",
      maxTokens: i % 2 === 0 ? null : 800,
      fault,
      expectedStatus: 200,
    });
  });
  if (total >= 40) {
    streamedFaults.forEach((fault, i) => {
      specials.push({
        apiKey: (i + 1) % 4,
        stream: "with-usage",
        maxTokens: null,
        fault,
        expectedStatus: 200,
      });
    });
  }
  specials.push({
    apiKey: 0,
    stream: "off",
    maxTokens: null,
    fault: "reuse-escrow",
    expectedStatus: 200,
  });

  const honestCount = Math.max(0, total - specials.length);
  const honest: Special[] = [];
  for (let j = 0; j < honestCount; j++) {
    honest.push({
      // Keys rotate more slowly than models, so every key meets every model.
      apiKey: (j + Math.floor(j / 4)) % 4,
      stream: streamModes[j % streamModes.length]!,
      maxTokens: maxTokenChoices[Math.floor(j / 3) % maxTokenChoices.length]!,
      fault: null,
      expectedStatus: 200,
    });
  }

  // Honest lead first, then faults spread evenly through the remaining honest requests.
  const head = honest.slice(0, Math.min(lead, honest.length));
  const rest = honest.slice(head.length);
  const merged = [
    ...rest.map((r, j) => ({ r, key: (j + 1) / (rest.length + 1) })),
    ...specials.map((r, k) => ({ r, key: (k + 0.5) / specials.length })),
  ].sort((a, b) => a.key - b.key);
  return [...head, ...merged.map((m) => m.r)]
    .slice(0, Math.max(total, specials.length))
    .map((r, index) => ({ ...r, index, model: models[index % models.length]! }));
}

/** The prompt of a request (varied, so completions and their lengths vary). */
export function promptOf(request: PlannedRequest): string {
  return prompts[request.index % prompts.length]!;
}

export interface TrafficTarget {
  /** The recording proxy's base URL, `<service>/v1`. */
  baseUrl: string;
  apiKeys: readonly string[];
  lowBalanceApiKey: string;
}

async function send(client: OpenAI, request: PlannedRequest): Promise<RequestOutcome> {
  const body = {
    model: request.model,
    messages: [
      { role: "system" as const, content: "You are a concise assistant." },
      { role: "user" as const, content: promptOf(request) },
    ],
    ...(request.maxTokens === null ? {} : { max_tokens: request.maxTokens }),
  };
  // A request the network answers with an error is sent once: the SDK would otherwise retry
  // a 503 or a 504, and each retry of a 504 would be one more (refunded) job.
  const options =
    request.fault === null && request.expectedStatus === 200
      ? {}
      : {
          maxRetries: 0,
          ...(request.fault === null ? {} : { headers: { "x-sim-fault": request.fault } }),
        };
  try {
    let jobId: string | null;
    if (request.stream === "off") {
      const { response } = await client.chat.completions.create(body, options).withResponse();
      jobId = response.headers.get("x-decentral-job-id");
    } else {
      const { data, response } = await client.chat.completions
        .create(
          {
            ...body,
            stream: true,
            ...(request.stream === "with-usage" ? { stream_options: { include_usage: true } } : {}),
          },
          options,
        )
        .withResponse();
      jobId = response.headers.get("x-decentral-job-id");
      for await (const _chunk of data) {
        // Read to the end, as a chat UI would: the receipt is complete once the stream is.
      }
    }
    return { request, status: 200, jobId, problem: null };
  } catch (error) {
    if (error instanceof APIError && error.status !== undefined) {
      const headers = error.headers as Headers | undefined;
      return {
        request,
        status: error.status,
        jobId: headers?.get("x-decentral-job-id") ?? null,
        problem: error.status === request.expectedStatus ? null : error.message,
      };
    }
    return {
      request,
      status: 0,
      jobId: null,
      problem: error instanceof Error ? error.message : String(error),
    };
  }
}

/**
 * Sends the plan through the proxy with the `openai` SDK, `concurrency` requests at a time,
 * one client per API key. Resolves with one outcome per request, in plan order.
 */
export async function driveTraffic(
  plan: readonly PlannedRequest[],
  target: TrafficTarget,
  opts: { concurrency: number; onProgress?: (done: number, total: number) => void },
): Promise<RequestOutcome[]> {
  const clients = new Map<PlannedRequest["apiKey"], OpenAI>();
  const clientFor = (apiKey: PlannedRequest["apiKey"]) => {
    let client = clients.get(apiKey);
    if (!client) {
      const key = apiKey === "low-balance" ? target.lowBalanceApiKey : target.apiKeys[apiKey];
      if (key === undefined) throw new Error(`no API key ${apiKey}`);
      client = new OpenAI({ baseURL: target.baseUrl, apiKey: key });
      clients.set(apiKey, client);
    }
    return client;
  };
  const queue = new PQueue({ concurrency: opts.concurrency });
  let done = 0;
  const outcomes = await Promise.all(
    plan.map((request) =>
      queue.add(async () => {
        const outcome = await send(clientFor(request.apiKey), request);
        done++;
        opts.onProgress?.(done, plan.length);
        return outcome;
      }),
    ),
  );
  return outcomes as RequestOutcome[];
}
