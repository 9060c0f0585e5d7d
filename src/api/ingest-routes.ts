import { createRoute, z } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import type { Store } from "../db/client.js";
import { AppError } from "../errors.js";
import { printable } from "../printable-text.js";
import { codingsOf } from "../recorder/content-codings.js";
import {
  type IngestItemResult,
  ingestReceipts,
  ingestReceiptsVia,
  maxBatchSize,
  maxIngestBodyBytes,
  summarize,
} from "../recorder/ingest.js";
import { parseJsonNotingDuplicates } from "../recorder/json-duplicate-members.js";
import { jobIdPattern, maxAnswerCount } from "../recorder/receipt-input.js";
import type { ReceiptWriter } from "../recorder/receipt-writer.js";
import { maxChoices } from "../recorder/request-facts.js";
import { BEARER_SCHEME } from "./auth.js";
import { authErrors, ErrorSchema, noQueryParameters } from "./openapi-schemas.js";
import { createRouter } from "./router.js";

const signature = (what: string) =>
  z.string().openapi({
    description: `${what}: base58 of exactly 64 bytes (87 or 88 characters); several joined by commas (a header sent twice) keep the first as the receipt's and record each other as a conflicting receipt of the job`,
  });

/** The receipt as documented. Items are validated one by one by the recorder, not by this. */
const ReceiptSchema = z
  .object({
    job_id: z.string().regex(jobIdPattern),
    escrow_tx: signature("escrow-lock signature"),
    settlement_tx: signature("settlement signature")
      .nullable()
      .optional()
      .openapi({ description: "null for a stream: obtained later from the jobs API" }),
    worker: z.string().nullable().optional().openapi({ description: "base58 of exactly 32 bytes" }),
    credits_remaining: z
      .union([z.string(), z.number()])
      .nullable()
      .optional()
      .openapi({ description: "`x-decentral-credits-remaining`, in credits (at most 4 decimals)" }),
    model: z.string().optional().openapi({
      description:
        "the model the caller asked for: it prices the job (in a `_decentral` completion it is the response's and prices nothing; send `_decentral.requested_model` then)",
    }),
    requested_model: z.string().optional().openapi({
      description: "the model asked for; when given, `model` is taken as the response's",
    }),
    response_model: z
      .string()
      .optional()
      .openapi({ description: "the model the response named (only compared)" }),
    max_tokens: z
      .number()
      .int()
      .optional()
      .openapi({ description: "the request's max_tokens: it bounds what the job can cost" }),
    n: z.number().int().min(1).max(maxChoices).optional().openapi({
      description:
        "the request's n, the choices it asked for: max_tokens bounds each, so the usage may be n times it",
    }),
    http_status: z.number().int().min(100).max(599).optional().openapi({
      description:
        "the HTTP status the caller got: an answer outside 2xx gave no completion, so a settlement of it fails refund.not_settled",
    }),
    key_fingerprint: z
      .string()
      .regex(/^[0-9a-f]{16}$/)
      .optional()
      .openapi({
        description:
          "16 hex digits of the SHA-256 of the caller's API key (as reports show it): ties the lock to the key's credit vault",
      }),
    key_check: z
      .string()
      .regex(/^[0-9a-f]{16}$/)
      .optional()
      .openapi({
        description:
          "hex digits 16 to 32 of the same SHA-256, only beside key_fingerprint and never shown as the key: receipts of one fingerprint naming two key checks are two keys made to share it (key.fingerprint_unique)",
      }),
    credit_vault: z
      .string()
      .optional()
      .openapi({ description: "the key's credit vault (a token account), base58 of 32 bytes" }),
    usage: z
      .object({
        prompt_tokens: z.number().int().optional(),
        completion_tokens: z.number().int().optional(),
        total_tokens: z.number().int().optional(),
        reasoning_tokens: z.number().int().optional(),
        rejected_prediction_tokens: z.number().int().optional(),
      })
      .optional(),
    answer_bytes: z.number().int().min(0).max(maxAnswerCount).optional().openapi({
      description:
        "the bytes of the answer's generated text as its client read it, counted as the proxy counts them (the fetch wrapper sends it for a JSON answer): they bound the completion tokens the usage may name (usage.consistent); a plain receipt's only",
    }),
    answer_tool_calls: z.number().int().min(0).max(maxAnswerCount).optional().openapi({
      description:
        "the tool calls among the answer's generated text, with answer_bytes (16 tokens each)",
    }),
    prediction_sent: z.boolean().optional().openapi({
      description:
        "whether the request sent a `prediction`: usage naming rejected prediction tokens for one that sent none fails usage.consistent; a plain receipt's only",
    }),
    stream: z.boolean().optional().openapi({
      description:
        "as the proxy records it (the fetch wrapper sends it): true where the answer was an event stream or the request asked for one; with answer_bytes, an answer that sent no usage where it was owed (a JSON answer, a stream owing it by usage_asked) has its charge bounded by what it holds (charge.matches_price); a plain receipt's only",
    }),
    usage_asked: z.boolean().optional().openapi({
      description:
        "whether the stream owed its usage: its request asked for it (stream_options.include_usage), or it answered a request of the other kind; a plain receipt's only",
    }),
    request_method: z
      .string()
      .regex(/^[A-Za-z]{1,16}$/)
      .optional()
      .openapi({
        description:
          "the HTTP method of the request the answer came to (the fetch wrapper sends it): a job is a POST, and money moved for any other method (a free GET /v1/models) fails escrow.within_ceiling and charge.matches_price",
      }),
    request_path: z
      .string()
      .max(200)
      .regex(/^\/[\x21-\x7e]*$/)
      .optional()
      .openapi({
        description:
          "the path of that request without its query (the fetch wrapper sends it): money moved for a POST to a free endpoint (/v1/models, /v1/jobs, /v1/account, /v1/webhooks) fails the same checks",
      }),
    created_at: z
      .union([z.string(), z.number()])
      .optional()
      .openapi({ description: "ISO 8601 date-time or epoch seconds; default: when recorded" }),
    tags: z.record(z.string(), z.string()).optional(),
    capture_state: z.enum(["complete", "aborted"]).optional().openapi({
      description:
        "aborted when the caller got none of the answer (the proxy's import line of a job it answered 503); default complete",
    }),
  })
  .openapi("Receipt", {
    description:
      "The `_decentral` object of the Python integration docs plus optional model, usage, created_at and tags; a whole chat completion carrying a `_decentral` member is accepted too (its own members are not checked; `_decentral` holds job_id, escrow_tx, settlement_tx, worker, credits_remaining, and the caller's requested_model, max_tokens, n, key_fingerprint, key_check, credit_vault, http_status, request_method, request_path and tags: when it names any of the first seven, even as null (read as absent), nothing at the completion's top level, the operator's answer, is read as the caller's or refuses the receipt; when it names none, one of those six at the top level is refused; its `choices`, the answer, are counted as a chat client reads them (one choice unless `n` says) to bound the completion tokens its usage names). A field the receipt does not take is refused by name (`did you mean http_status?` for `httpStatus`), never ignored. What the operator writes never refuses a receipt: a malformed `settlement_tx`, `worker`, `credits_remaining` or usage count is recorded as unknown, and `response_model` is kept cleaned; `job_id` and `escrow_tx` are required and checked, as are the fields the caller writes.",
  });

const ItemResultSchema = z
  .object({
    index: z.number().int(),
    jobId: z.string().optional(),
    status: z.enum(["created", "duplicate", "updated", "conflict", "rejected"]),
    field: z.string().optional().openapi({ description: "rejected: the field at fault" }),
    reason: z.string().optional(),
  })
  .openapi("IngestItemResult");

const BatchResultSchema = z
  .object({
    created: z.number().int(),
    duplicate: z.number().int(),
    updated: z.number().int(),
    conflict: z.number().int(),
    rejected: z.number().int(),
    results: z.array(ItemResultSchema),
  })
  .openapi("IngestBatchResult");

const SingleResultSchema = z
  .object({ jobId: z.string(), status: z.enum(["created", "duplicate", "updated"]) })
  .openapi("IngestResult");

/** Documentation of `POST /jobs`, registered without its validators (see ingestRoutes). */
const ingestRouteDoc = () =>
  createRoute({
    method: "post",
    path: "/jobs",
    tags: ["ingest"],
    summary: "Record one receipt or a batch of up to 1,000",
    description:
      "Idempotent on `job_id`: the same receipt again is a duplicate; a different receipt for a recorded job is a conflict, kept as an audit finding (the answer names no field or value of the recorded receipt). Only a receipt from the same source may fill fields the recorded one lacks; another source's receipt (e.g. one for a job the proxy recorded) is a conflict unless it is the same receipt. A batch is written in one transaction, and the answer comes after it is committed.",
    security: [{ [BEARER_SCHEME]: [] }],
    request: {
      body: {
        required: true,
        content: {
          "application/json": {
            schema: z.union([ReceiptSchema, z.array(ReceiptSchema).min(1).max(maxBatchSize)]),
          },
        },
      },
    },
    responses: {
      200: {
        content: {
          "application/json": { schema: z.union([SingleResultSchema, BatchResultSchema]) },
        },
        description: "A single receipt that was a duplicate or an update, or a batch's outcomes.",
      },
      201: {
        content: { "application/json": { schema: SingleResultSchema } },
        description: "A single receipt, recorded.",
      },
      ...authErrors,
      400: {
        content: { "application/json": { schema: ErrorSchema } },
        description:
          "A single receipt with a bad or unknown field (`validation_failed`, `error.field` names it), a body that is not JSON or not valid UTF-8, or an empty array (`bad_request`, `error.field` is `body`), or a query parameter (this route takes none).",
      },
      415: {
        content: { "application/json": { schema: ErrorSchema } },
        description:
          "`unsupported_media_type`: the body is not sent as `application/json` (a form, text, or no content type), or names a charset other than UTF-8, or is sent with a `content-encoding` (gzip, ...), which is not decoded.",
      },
      409: {
        content: { "application/json": { schema: ErrorSchema } },
        description:
          "A single receipt for a job already recorded with a different receipt. It says no more than that: no field names, no stored values.",
      },
      503: {
        content: { "application/json": { schema: ErrorSchema } },
        description:
          "`store_unavailable`: the database is unreachable (or the receipt backlog is full); nothing of the request was written. Retry shortly.",
      },
      413: {
        content: { "application/json": { schema: ErrorSchema } },
        description: `More than 1,000 receipts, or a body above ${maxIngestBodyBytes} bytes (refused by its Content-Length or as it streams in, before it is parsed).`,
      },
    },
  });

/**
 * `POST /jobs`: one receipt (201 created, 200 duplicate or updated, 409 conflict, 400 naming
 * the field) or an array of up to 1,000 (200 with one outcome per item; 413 beyond). A whole
 * chat-completion JSON with a `_decentral` member counts as one receipt. Role ingest, checked
 * before the body is read.
 */
export function ingestRoutes(deps: { store: Store; now?: () => number; writer?: ReceiptWriter }) {
  const now = deps.now ?? Date.now;
  const { writer } = deps;
  const ingest = (items: unknown[]): Promise<IngestItemResult[]> | IngestItemResult[] =>
    writer
      ? ingestReceiptsVia(writer, items, "ingest", now())
      : ingestReceipts(deps.store, items, "ingest", now());
  const app = createRouter({ store: deps.store, role: "ingest" });
  // Documented, not validated by a body schema: a batch must accept some items and reject
  // others, each with its index and field, which a whole-body validator cannot do.
  app.openAPIRegistry.registerPath(ingestRouteDoc());
  return app.post(
    "/jobs",
    // `?dry_run=1` ignored would write for real what its sender meant only to try.
    noQueryParameters,
    bodyLimit({
      maxSize: maxIngestBodyBytes,
      onError: () => {
        throw new AppError(
          "payload_too_large",
          `request body above ${maxIngestBodyBytes} bytes (4 MiB); send at most ${maxBatchSize} receipts per request`,
        );
      },
    }),
    async (c) => {
      if (writer?.full()) {
        // A database that went away would hold this request until it returns.
        throw new AppError(
          "store_unavailable",
          "the audit store is not taking writes right now (database unreachable or refusing writes, or receipt backlog full); nothing was written, retry shortly",
        );
      }
      // A body sent as text or a form was not meant as receipts, whatever it looks like.
      const type = (c.req.header("content-type") ?? "").split(";")[0]?.trim().toLowerCase();
      if (type !== "application/json" && !/^application\/[^/]+\+json$/.test(type ?? "")) {
        throw new AppError(
          "unsupported_media_type",
          `content-type: must be application/json, got ${type ? JSON.stringify(printable(type)) : "none"}`,
          { field: "content-type" },
        );
      }
      // The body is read as UTF-8: one its sender says is in another charset (Latin-1, say) would
      // be read as other text than was sent (`Ã©` stored as `é`), or refused as not UTF-8.
      const charset = /;\s*charset\s*=\s*"?([^";\s]*)"?/i
        .exec(c.req.header("content-type") ?? "")?.[1]
        ?.toLowerCase();
      if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
        throw new AppError(
          "unsupported_media_type",
          `content-type: charset ${JSON.stringify(printable(charset))} is not taken; send the JSON as UTF-8`,
          { field: "content-type" },
        );
      }
      // Nothing decodes a compressed body: read as it is, it is refused as "not JSON", which
      // hides what to change.
      const encoding = c.req.header("content-encoding");
      if (codingsOf(encoding).length > 0) {
        throw new AppError(
          "unsupported_media_type",
          `content-encoding: ${JSON.stringify(printable(encoding?.trim() ?? ""))} is not taken; send the JSON uncompressed`,
          { field: "content-encoding" },
        );
      }
      let text: string;
      try {
        // Read strictly: a byte that is not UTF-8 would be stored as U+FFFD, a receipt that
        // no longer says what the caller sent.
        text = new TextDecoder("utf-8", { fatal: true }).decode(await c.req.arrayBuffer());
      } catch {
        throw new AppError("bad_request", "body: not valid UTF-8", { field: "body" });
      }
      let body: unknown;
      try {
        body = parseJsonNotingDuplicates(text);
      } catch {
        throw new AppError("bad_request", "body: must be JSON: a receipt or an array of receipts", {
          field: "body",
        });
      }
      if (Array.isArray(body)) {
        // Refused as `import` refuses a file holding no receipt: a batch that came out empty
        // most likely lost its receipts on the way (a filter, a serializer), and a 200 of zero
        // counts told its sender they were recorded.
        if (body.length === 0) {
          throw new AppError(
            "bad_request",
            "body: an empty array holds no receipt; nothing was recorded (send at least one, or nothing at all)",
            { field: "body" },
          );
        }
        if (body.length > maxBatchSize) {
          throw new AppError(
            "payload_too_large",
            `at most ${maxBatchSize} receipts per request, got ${body.length}`,
          );
        }
        // An ingest token learns that an item conflicts, never how: no field names.
        const results = (await ingest(body)).map(({ differences: _, ...rest }) => rest);
        return c.json({ ...summarize(results), results }, 200);
      }
      const [result] = await ingest([body]);
      if (!result) throw new AppError("internal", "no outcome for the receipt");
      if (result.status === "rejected") {
        throw new AppError("validation_failed", `${result.field}: ${result.reason}`, {
          field: result.field,
        });
      }
      if (result.status === "conflict") {
        // Naming the differing fields would let a token holder test guesses against the
        // recorded receipt (is this the worker?): it learns only that the job is recorded.
        throw new AppError(
          "conflict",
          `job ${result.jobId} is already recorded with a different receipt; yours is kept as a conflict for audit`,
          { jobId: result.jobId },
        );
      }
      const single = { jobId: result.jobId ?? "", status: result.status };
      return result.status === "created" ? c.json(single, 201) : c.json(single, 200);
    },
  );
}
