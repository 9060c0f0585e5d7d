import { setTimeout as sleep } from "node:timers/promises";
import { type Context, Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { formatUnits } from "../money.js";
import {
  ACCOUNT_BALANCE_OFF_UNITS,
  type DecentralJobs,
  isSimFault,
  type JobError,
  type SimFault,
  type SimJob,
} from "./decentral-jobs.js";
import { modelCatalog } from "./models.js";

/**
 * The local Decentral API: OpenAI-compatible chat completions paid through escrow on the local
 * chain, the jobs and account endpoints, and `/sim/*` ground truth for tests.
 */

const DOCS = "https://docs.usedecentral.org/errors";

function errorResponse(c: Context, error: JobError) {
  for (const [name, value] of Object.entries(error.headers ?? {})) c.header(name, value);
  return c.json(
    {
      error: {
        code: error.code,
        message: error.message,
        type: error.type,
        param: error.param,
        docs: `${DOCS}#${error.code}`,
        ...(error.details ? { details: error.details } : {}),
      },
    },
    error.status,
  );
}

function badRequest(message: string, param: string | null): JobError {
  return { status: 400, code: "invalid_request", type: "invalid_request_error", message, param };
}

interface ChatBody {
  model: string;
  messages: { role: string; content: unknown }[];
  maxTokens: number | null;
  stream: boolean;
  includeUsage: boolean;
}

function parseChatBody(body: unknown): ChatBody | JobError {
  if (typeof body !== "object" || body === null)
    return badRequest("body must be a JSON object", null);
  const b = body as Record<string, unknown>;
  if (typeof b.model !== "string" || b.model === "")
    return badRequest("model is required", "model");
  if (!Array.isArray(b.messages) || b.messages.length === 0) {
    return badRequest("messages must be a non-empty array", "messages");
  }
  for (const m of b.messages) {
    if (typeof m !== "object" || m === null || typeof (m as { role?: unknown }).role !== "string") {
      return badRequest("each message needs a role and content", "messages");
    }
  }
  const rawMax = b.max_completion_tokens ?? b.max_tokens;
  let maxTokens: number | null = null;
  if (rawMax !== undefined && rawMax !== null) {
    if (typeof rawMax !== "number" || !Number.isInteger(rawMax) || rawMax < 1) {
      return badRequest("max_tokens must be a positive integer", "max_tokens");
    }
    maxTokens = rawMax;
  }
  if (b.stream !== undefined && typeof b.stream !== "boolean") {
    return badRequest("stream must be a boolean", "stream");
  }
  const options = b.stream_options as { include_usage?: unknown } | undefined | null;
  return {
    model: b.model,
    messages: b.messages as ChatBody["messages"],
    maxTokens,
    stream: b.stream === true,
    includeUsage: options?.include_usage === true,
  };
}

function promptText(messages: ChatBody["messages"]): string {
  return messages
    .map(
      (m) => `${m.role}: ${typeof m.content === "string" ? m.content : JSON.stringify(m.content)}`,
    )
    .join("\n");
}

function usage(job: SimJob) {
  return {
    prompt_tokens: job.promptTokens,
    completion_tokens: job.completionTokens,
    total_tokens: job.promptTokens + job.completionTokens,
  };
}

/** Builds the simulator's Hono app over a job engine. `apiKeys[i]` is API key index i. */
export function createSimulatorApp(jobs: DecentralJobs, apiKeys: readonly string[]) {
  const keyIndex = new Map(apiKeys.map((key, i) => [key, i]));
  const app = new Hono<{ Variables: { apiKeyIndex: number } }>();

  const unauthorized: JobError = {
    status: 401,
    code: "invalid_api_key",
    type: "authentication_error",
    message: "missing or unknown API key; send Authorization: Bearer dcntrl_live_...",
    param: null,
  };

  app.use("/v1/*", async (c, next) => {
    const match = /^Bearer\s+(\S+)$/i.exec(c.req.header("authorization") ?? "");
    const index = match ? keyIndex.get(match[1]!) : undefined;
    if (index === undefined) return errorResponse(c, unauthorized);
    c.set("apiKeyIndex", index);
    await next();
  });

  app.get("/v1/models", (c) =>
    c.json({
      object: "list",
      data: modelCatalog.map((m) => ({
        id: m.id,
        object: "model",
        created: 1_767_225_600,
        owned_by: "decentral",
        decentral: {
          tier: m.tier,
          credits_per_request: m.creditsPerRequest,
          credits_per_1k_tokens: m.creditsPer1kTokens,
          included_tokens: m.includedTokens,
        },
      })),
    }),
  );

  app.get("/v1/account", (c) => {
    const off =
      jobs.options.accountBalanceOff || c.req.header("x-sim-fault") === "account-balance-off";
    const units = jobs.creditUnits(c.get("apiKeyIndex")) + (off ? ACCOUNT_BALANCE_OFF_UNITS : 0n);
    return c.json({ credits_remaining: Number(units / 10_000n), usdc_value: formatUnits(units) });
  });

  app.get("/v1/jobs/:jobId", (c) => {
    const job = jobs.job(c.req.param("jobId"));
    if (!job || job.apiKeyIndex !== c.get("apiKeyIndex")) {
      return errorResponse(c, {
        status: 404,
        code: "job_not_found",
        type: "invalid_request_error",
        message: "no such job for this API key",
        param: "job_id",
      });
    }
    return c.json(jobs.apiView(job));
  });

  app.post("/v1/chat/completions", async (c) => {
    const raw = await c.req.json().catch(() => undefined);
    const body = parseChatBody(raw);
    if ("code" in body) return errorResponse(c, body);
    const faultHeader = c.req.header("x-sim-fault");
    let fault: SimFault | null = null;
    if (faultHeader) {
      if (!isSimFault(faultHeader)) {
        return errorResponse(c, badRequest(`unknown x-sim-fault ${faultHeader}`, "x-sim-fault"));
      }
      fault = faultHeader;
    }
    const job = jobs.begin({
      apiKeyIndex: c.get("apiKeyIndex"),
      model: body.model,
      promptText: promptText(body.messages),
      messageCount: body.messages.length,
      maxTokens: body.maxTokens,
      stream: body.stream,
      fault,
    });
    if ("code" in job) return errorResponse(c, job);

    if (job.fault === "timeout") {
      if (jobs.options.timeoutAfterMs > 0) await sleep(jobs.options.timeoutAfterMs);
      return errorResponse(c, jobs.timeOut(job));
    }
    if (jobs.options.inferenceMs > 0) await sleep(jobs.options.inferenceMs);
    const id = `chatcmpl-${job.jobId.slice(4)}`;
    const created = Math.floor(Date.now() / 1000);

    if (!body.stream) {
      jobs.settle(job);
      for (const [name, value] of Object.entries(jobs.headers(job, true))) c.header(name, value);
      return c.json({
        id,
        object: "chat.completion",
        created,
        model: job.model,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: jobs.completionText(job) },
            logprobs: null,
            finish_reason: job.finishReason,
          },
        ],
        usage: usage(job),
      });
    }

    for (const [name, value] of Object.entries(jobs.headers(job, false))) c.header(name, value);
    return streamSSE(c, async (stream) => {
      const chunk = (delta: object, finishReason: string | null) =>
        JSON.stringify({
          id,
          object: "chat.completion.chunk",
          created,
          model: job.model,
          choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
          ...(body.includeUsage ? { usage: null } : {}),
        });
      let settled = false;
      try {
        await stream.writeSSE({ data: chunk({ role: "assistant", content: "" }, null) });
        const text = jobs.completionText(job);
        const words = text === "" ? [] : text.split(" ");
        const size = Math.max(1, jobs.options.streamChunkTokens);
        for (let i = 0; i < words.length; i += size) {
          const piece = words.slice(i, i + size).join(" ");
          await stream.writeSSE({ data: chunk({ content: i === 0 ? piece : ` ${piece}` }, null) });
        }
        await stream.writeSSE({ data: chunk({}, job.finishReason) });
        if (body.includeUsage) {
          await stream.writeSSE({
            data: JSON.stringify({
              id,
              object: "chat.completion.chunk",
              created,
              model: job.model,
              choices: [],
              usage: usage(job),
            }),
          });
        }
        // Settled after the last chunk and before the stream ends, so a client that polls the
        // jobs API once the stream is over finds the settlement.
        jobs.settle(job);
        settled = true;
        await stream.writeSSE({ data: "[DONE]" });
      } finally {
        // The job ran whether or not the client stayed to the end.
        if (!settled) jobs.settle(job);
      }
    });
  });

  app.get("/sim/jobs", (c) => c.json({ jobs: jobs.allJobs().map((j) => jobs.groundTruth(j)) }));
  app.get("/sim/jobs/:jobId", (c) => {
    const job = jobs.job(c.req.param("jobId"));
    if (!job) {
      return errorResponse(c, {
        status: 404,
        code: "job_not_found",
        type: "invalid_request_error",
        message: "no such job",
        param: "job_id",
      });
    }
    return c.json(jobs.groundTruth(job));
  });
  // A customer's top-up of one key's credit vault: {"apiKeyIndex": 0, "units": "1000000"}.
  app.post("/sim/deposits", async (c) => {
    const body = (await c.req.json().catch(() => null)) as Record<string, unknown> | null;
    const index = body?.apiKeyIndex;
    const units = body?.units;
    if (
      typeof index !== "number" ||
      !Number.isInteger(index) ||
      index < 0 ||
      index >= apiKeys.length
    ) {
      return errorResponse(
        c,
        badRequest("apiKeyIndex must be a known API key index", "apiKeyIndex"),
      );
    }
    if (typeof units !== "string" || !/^[1-9]\d{0,18}$/.test(units)) {
      return errorResponse(c, badRequest("units must be a positive decimal string", "units"));
    }
    return c.json(jobs.deposit(index, BigInt(units)));
  });
  // Ground truth of a credit vault: every lock, return, refund and top-up the simulator made
  // in it (hidden jobs included), with the vault's change in each, oldest first.
  app.get("/sim/vaults/:vault/movements", (c) =>
    c.json({
      movements: jobs.vaultMovements(c.req.param("vault")).map((m) => ({
        ...m,
        deltaUnits: m.deltaUnits.toString(),
      })),
    }),
  );
  // The `account-balance-off` switch: {"on": true} makes GET /v1/account report a wrong balance.
  app.put("/sim/account-balance-off", async (c) => {
    const body = (await c.req.json().catch(() => null)) as { on?: unknown } | null;
    if (typeof body?.on !== "boolean") {
      return errorResponse(c, badRequest("on must be true or false", "on"));
    }
    jobs.options.accountBalanceOff = body.on;
    return c.json({ accountBalanceOff: body.on });
  });
  app.get("/healthz", (c) => c.json({ ok: true, slot: jobs.currentSlot() }));

  app.notFound((c) =>
    errorResponse(c, {
      status: 404,
      code: "not_found",
      type: "invalid_request_error",
      message: `no route ${c.req.method} ${c.req.path}`,
      param: null,
    }),
  );
  return app;
}
