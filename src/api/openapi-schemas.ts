import { z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { reportFigures } from "../db/rollups.js";
import {
  checkOutcomes,
  finalVerdicts,
  receiptSources,
  rejudgeReasons,
  verdicts,
} from "../db/schema.js";
import { AppError, errorCodes } from "../errors.js";
import { shownValue, timeZoneOf, timeZoneRefusal } from "../instant.js";
import { basicFormatHint, instantProblem, parseInstant } from "../reports/period.js";
import { type FiguresJson, groupByValues } from "../reports/reconciliation.js";

/** The one error body of the API. */
export const ErrorSchema = z
  .object({
    error: z
      .object({
        code: z.enum(errorCodes),
        message: z.string(),
        field: z.string().optional(),
      })
      .catchall(z.unknown()),
    requestId: z.string(),
  })
  .openapi("Error");

const errorResponse = (description: string) => ({
  content: { "application/json": { schema: ErrorSchema } },
  description,
});

/** Error responses every authenticated route can give. */
export const authErrors = {
  400: errorResponse(
    "A query or path parameter is invalid, or a body was sent to a route that reads none; `error.field` names it.",
  ),
  401: errorResponse("No access token, or an unknown or revoked one."),
  403: errorResponse("The token's role does not allow this route."),
  503: errorResponse(
    "`store_unavailable`: the audit database is unreachable (or its write lock is held past the timeout); `retry-after: 1`. Retry shortly.",
  ),
} as const;

/**
 * A schema registered as a component (`.openapi("Name")`), or null: rendered `anyOf: [{$ref},
 * {type: "null"}]`. Its `.nullable()` renders `allOf: [{$ref}, {type: ["object", "null"]}]`,
 * which admits no null (the `$ref` alone refuses it), so strict validators and generated
 * clients failed on the null the API sends.
 */
export const nullableRef = <T extends z.ZodType>(schema: T) => z.union([schema, z.null()]);

export const notFoundError = { 404: errorResponse("No such job.") } as const;

/** A JSON or CSV route's answer to an `Accept` that refuses every type it answers. */
export const notAcceptableError = {
  406: errorResponse("`not_acceptable`: `Accept` refuses every type this route answers."),
} as const;

const instantDoc =
  "UTC instant: `YYYY-MM-DD` (midnight UTC), an ISO 8601 date-time with `Z` or an offset, or an epoch integer: seconds up to 10 digits, milliseconds from 11. Eight digits shaped as a date (`20261101`) or six as a month (`202611`) are refused: write `2026-11-01`. A time before 1970-01-01 is refused, and so is one finer than a millisecond (`…00.1231Z`): jobs are dated to the millisecond.";

/** What a query parameter a route does not take is told, with the ones it takes. */
const unknownQueryMessage = (known: readonly string[]) =>
  `unknown query parameter; this route takes ${known.length > 0 ? known.join(", ") : "none"}`;

/**
 * The query of an API route: a parameter it does not take is a 400 naming it (`field`), not
 * ignored. Ignored, `groupby=model` (wrong case) was answered as the default `groupBy=day`, and
 * a filter the route lacks as if every job matched it.
 */
export function queryObject<T extends z.ZodRawShape>(shape: T) {
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === "unrecognized_keys" ? unknownQueryMessage(Object.keys(shape)) : undefined,
  });
}

/** Middleware of a route that takes no query parameter: any is a 400 naming it, as above. */
export const noQueryParameters: MiddlewareHandler = async (c, next) => {
  const name = Object.keys(c.req.queries())[0];
  if (name !== undefined) {
    throw new AppError("validation_failed", `${name}: ${unknownQueryMessage([])}`, {
      field: name,
    });
  }
  await next();
};

/**
 * Middleware of a route that reads no body: one sent is a 400 naming `body`, not ignored.
 * Ignored, `POST /jobs/:id/reverify` with `{"jobIds": [...]}` queued the one job of its path and
 * answered 202, as if the body had been read. A body sent in chunks is looked at up to its first
 * byte, never read whole; an empty one (`content-length: 0`) is no body.
 */
export const noRequestBody: MiddlewareHandler = async (c, next) => {
  const length = c.req.header("content-length")?.trim();
  let sent = length !== undefined && length !== "0";
  if (!sent && length === undefined && c.req.raw.body) {
    const reader = c.req.raw.body.getReader();
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      if (chunk.value.byteLength > 0) {
        sent = true;
        await reader.cancel().catch(() => {});
        break;
      }
    }
  }
  if (sent) {
    throw new AppError(
      "bad_request",
      "body: this route reads no body; send none (its parameters are in the path)",
      { field: "body" },
    );
  }
  await next();
};

/** `timeZone`: an IANA time zone name, as Intl spells it (`europe/london` -> `Europe/London`). */
export const timeZoneParam = z
  .string()
  .transform((value, ctx) => {
    const zone = timeZoneOf(value);
    if (zone === null) {
      ctx.addIssue({
        code: "custom",
        message: timeZoneRefusal(value),
      });
      return z.NEVER;
    }
    return zone;
  })
  .optional()
  .openapi({
    param: { name: "timeZone", in: "query" },
    description:
      "An IANA time zone (`Europe/London`): `from` and `to` given as dates are the starts of those days there, and `groupBy=day` groups by its days (23 or 25 hours long when its clocks change). Default UTC.",
    example: "Europe/London",
  });

/** A date-time whose offset's + arrived as a space, as it should be sent (a long one cut). */
function plusRestored(value: string): string {
  const space = value.lastIndexOf(" ");
  return `${shownValue(value.slice(0, space))}%2B${value.slice(space + 1)}`;
}

/** A query parameter holding an instant, parsed to epoch milliseconds. */
export const instantParam = (name: string, description: string) =>
  z
    // A missing one says so and what it takes, not zod's "expected string, received undefined".
    .string({
      error: (issue) => (issue.input === undefined ? `required: ${instantDoc}` : undefined),
    })
    .transform((value, ctx) => {
      const ms = parseInstant(value);
      if (ms === null) {
        const hint = basicFormatHint(value);
        // A query string reads `+` as a space: an offset sent unencoded arrives as one.
        const plusLost = /T[\d:.]+ \d{2}:?\d{2}$/.test(value);
        const problem = instantProblem(value);
        ctx.addIssue({
          code: "custom",
          message:
            problem !== null
              ? problem
              : hint !== null
                ? hint
                : plusLost
                  ? `the offset's + arrived as a space (a query string reads + so): send it as %2B, e.g. ${plusRestored(value)}`
                  : "not a date (YYYY-MM-DD), an ISO 8601 date-time or an epoch integer",
        });
        return z.NEVER;
      }
      return ms;
    })
    .openapi({
      param: { name, in: "query" },
      description: `${description} ${instantDoc}`,
      example: "2026-11-01",
    });

/** `to` must come after `from` when both are given. */
export function periodRefinement(
  value: { from?: number | undefined; to?: number | undefined },
  ctx: z.RefinementCtx,
) {
  if (value.from !== undefined && value.to !== undefined && value.to <= value.from) {
    ctx.addIssue({ code: "custom", path: ["to"], message: "must be after from" });
  }
}

/**
 * A whole-number query parameter: decimal digits only, from `min` to `max`. `z.coerce` took
 * `1e2` for 100 and an empty value for 0.
 */
export const wholeNumberQuery = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, "must be a whole number in decimal digits")
    .transform(Number)
    // No int(): the digits are one already, and its check of a number past 2^53 spoke first,
    // naming 9007199254740991 as the most a `limit` of 1..500 takes.
    .pipe(z.number().min(min).max(max))
    // Documented as what it is to the caller: an integer in range, not a string.
    .openapi({ type: "integer", minimum: min, maximum: max });

export const limitParam = wholeNumberQuery(1, 500)
  .default(100)
  .openapi({
    param: { name: "limit", in: "query" },
    default: 100,
    description: "Page size, 1..500. Default 100.",
  });

export const cursorParam = z
  .string()
  // An empty cursor (`cursor=${next}` with nothing in it) answered the first page again, where
  // every other empty parameter is refused: a pager built so walked the first page forever.
  .min(1)
  .max(500)
  .optional()
  .openapi({
    param: { name: "cursor", in: "query" },
    description: "Opaque cursor: the previous page's `nextCursor`.",
  });

export const orderParam = z
  .enum(["desc", "asc"])
  .default("desc")
  .openapi({
    param: { name: "order", in: "query" },
    description: "By creation time: `desc` (newest first, default) or `asc`.",
  });

export const verdictSchema = z.enum(verdicts);

/** A job as listed by `GET /jobs` and `GET /reports/discrepancies`. */
export const JobSummarySchema = z
  .object({
    jobId: z.string(),
    createdAt: z.string().describe("ISO 8601, UTC"),
    source: z.string(),
    model: z.string().nullable(),
    worker: z.string().nullable(),
    keyFingerprint: z.string().nullable(),
    verdict: verdictSchema,
    verdictAt: z.string().nullable(),
    rejudging: z
      .object({ previousVerdict: verdictSchema, reason: z.enum(rejudgeReasons) })
      .nullable()
      .describe(
        "a job that had a final verdict and is being judged again: that verdict and why (see the audit record's `rejudging`); `verdict` stays open meanwhile",
      ),
    escrowTx: z.string().nullable(),
    settlementTx: z.string().nullable(),
    chargedUnits: z.string().nullable().describe("USDC base units read from the chain"),
    chargedUsdc: z.string().nullable(),
    tags: z.record(z.string(), z.string()),
  })
  .openapi("JobSummary");

/**
 * Counts and amounts of a reconciliation group or of the totals: one property per figure of
 * `reportFigures` (src/db/rollups.ts), amounts as base units and as USDC.
 */
export const FiguresSchema = z
  .object(
    Object.fromEntries(
      reportFigures.flatMap((f): [string, z.ZodNumber | z.ZodString][] => {
        const described = <T extends z.ZodNumber | z.ZodString>(schema: T): T =>
          "description" in f ? (schema.describe(f.description) as T) : schema;
        if (f.kind === "count") return [[f.key, described(z.number().int())]];
        if (f.kind === "lamports") return [[f.key, described(z.string())]];
        return [
          [f.key, described(z.string())],
          [f.key.replace(/Units$/, "Usdc"), z.string()],
        ];
      }),
      // Entries lose their keys' types; each is what `figuresToJson` writes: counts as numbers,
      // amounts as strings (a union of both left a typed client unable to read either).
    ) as { [K in keyof FiguresJson]: FiguresJson[K] extends number ? z.ZodNumber : z.ZodString },
  )
  .openapi("ReconciliationFigures");

/** `from` and `to` of a report: the period is half-open, [from, to), UTC. */
export const periodBounds = {
  from: z.string().describe("Start of the period, inclusive (UTC)."),
  to: z
    .string()
    .describe(
      "End of the period, exclusive (UTC): a job created exactly at this instant is in the next period.",
    ),
};

/** The jobs of a report's period judged again (see `Rejudging` in src/reports/reconciliation.ts). */
export const RejudgingSchema = z
  .object({
    jobs: z.number().int(),
    byPreviousVerdict: z.object(
      Object.fromEntries(finalVerdicts.map((v) => [v, z.number().int()])) as Record<
        (typeof finalVerdicts)[number],
        z.ZodNumber
      >,
    ),
    byReason: z.object(
      Object.fromEntries(rejudgeReasons.map((r) => [r, z.number().int()])) as Record<
        (typeof rejudgeReasons)[number],
        z.ZodNumber
      >,
    ),
    previouslyVerifiedChargedUnits: z.string(),
    previouslyVerifiedChargedUsdc: z.string(),
  })
  .describe(
    "Jobs of the period that had a final verdict and are being judged again (a profile change, reverify, an upgrade's rule, new evidence): the figures count them as not final (`pending`), not by the verdict they left, which new evidence may overturn; this says what they were, why they were sent back, and what was charged on those that were verified",
  )
  .openapi("Rejudging");

export const ReconciliationSchema = z
  .object({
    ...periodBounds,
    groupBy: z.enum(groupByValues),
    timeZone: z
      .string()
      .describe("The IANA time zone whose days `groupBy=day` groups by (`UTC` unless asked)."),
    generatedAt: z.string(),
    dataCompleteUntil: z
      .string()
      .describe("Every job created before this instant is final: its figures will not change."),
    groups: z.array(FiguresSchema.extend({ group: z.string().nullable() })),
    totals: FiguresSchema,
    rejudging: RejudgingSchema,
  })
  .openapi("Reconciliation");

const TokenMovementSchema = z.object({
  account: z.string(),
  owner: z.string().nullable(),
  mint: z.string(),
  programId: z.string().nullable(),
  decimals: z.number().int().nullable(),
  pre: z.string(),
  post: z.string(),
  delta: z.string(),
});

const TransactionFields = z.object({
  signature: z.string(),
  explorerUrl: z.string(),
  state: z.enum(["unknown", "landed", "finalized", "dropped", "pruned"]),
  commitment: z.enum(["processed", "confirmed", "finalized"]).nullable(),
  slot: z.number().int().nullable(),
  blockTime: z.string().nullable(),
  feeLamports: z.string().nullable(),
  succeeded: z.boolean().nullable(),
  err: z.unknown(),
  tokenMovements: z.array(TokenMovementSchema),
  fetchedAt: z.string().nullable(),
});

const TransactionSchema = TransactionFields.nullable().openapi("ChainTransaction");

const NamedTransactionSchema = TransactionFields.extend({
  namedAs: z
    .array(
      z.enum([
        "receipt escrow",
        "receipt settlement",
        "jobs API escrow",
        "jobs API settlement",
        "conflicting receipt",
      ]),
    )
    .describe(
      "who named the transaction for this job, and as which step; `conflicting receipt`: kept with the job, not named as a step of it by its receipt or the jobs API (another receipt or answer of its id named it, or it was found on chain under the job's memo)",
    ),
  countedInAmounts: z
    .boolean()
    .describe("whether the job's amounts count this transaction's money and fee"),
  notCountedBecause: z
    .string()
    .nullable()
    .describe("why the amounts leave it out: another job owns it, or no memo of this job"),
}).openapi("NamedChainTransaction");

const nullableUnits = z.string().nullable();

/** One check's latest result for a job. */
const CheckResultSchema = z
  .object({
    name: z.string(),
    outcome: z.enum(checkOutcomes),
    reason: z.string().nullable(),
    expected: z.unknown(),
    actual: z.unknown(),
    checkedAt: z.string(),
  })
  .openapi("CheckResult");

/** The stable shape of `GET /audit/{jobId}`. */
export const AuditRecordSchema = z
  .object({
    jobId: z.string(),
    verdict: verdictSchema,
    verdictAt: z.string().nullable(),
    verdictProfile: z
      .string()
      .nullable()
      .describe(
        "the protocol profile that wrote the verdict: its name and the first 16 hex digits of the SHA-256 of its content (`localnet@2d63503b9d1c5483`); a final verdict of another profile is judged again by a verifier started under this one. Null on verdicts written before it was recorded (judged again, once, by the first verifier to start)",
      ),
    rejudging: z
      .object({
        previousVerdict: verdictSchema.describe("the final verdict the job had"),
        previousVerdictAt: z.string().nullable(),
        previousVerdictProfile: z.string().nullable(),
        previousChecks: z
          .array(CheckResultSchema)
          .describe(
            "the checks the verdict it left was reached on: no longer current (`checks` holds only those of the new judgement)",
          ),
        reason: z
          .enum(rejudgeReasons)
          .describe(
            "why it was sent back: `profile` (a verifier started under another profile), `reverify` (asked for by hand), `upgrade` (a rule of this version may judge it otherwise), `evidence` (something it was judged on changed: a jobs API answer, a transaction read on chain, another receipt naming its transactions, an account pinned; the verdict it left may not hold). Evidence outranks the others",
          ),
        message: z.string(),
      })
      .nullable()
      .describe(
        "a job that had a final verdict and is being judged again: `verdict` stays open (`pending`, ...) until the new one, never the verdict it left, and `verdictAt`/`verdictProfile` are that verdict's meanwhile. Null otherwise",
      ),
    unproven: z
      .array(z.object({ code: z.string(), message: z.string() }))
      .describe(
        "for `partially_verified`: the money checks the job's own data left unproven (e.g. usage_unknown: the charge is bounded by the lock only); a failing verdict judged while the treasury was learned carries `treasury_unknown` too, and is decided again once it is",
      ),
    commitment: z.enum(["processed", "confirmed", "finalized"]).nullable(),
    lastError: z.string().nullable(),
    receipt: z.object({
      source: z.enum(receiptSources),
      decentral: z
        .object({
          jobId: z.string(),
          escrowTx: z.string().nullable(),
          settlementTx: z.string().nullable(),
          worker: z.string().nullable(),
          creditsRemainingUnits: nullableUnits,
        })
        .describe("The x-decentral-* response headers (or the `_decentral` object) as recorded."),
      model: z
        .string()
        .nullable()
        .describe("the model the caller asked for; the job is priced by it"),
      responseModel: z.string().nullable().describe("the model the response named"),
      creditVault: z
        .string()
        .nullable()
        .describe("the credit vault the receipt's sender declared for its key"),
      usage: z.object({
        promptTokens: z.number().int().nullable(),
        completionTokens: z.number().int().nullable(),
        totalTokens: z.number().int().nullable(),
      }),
      maxTokens: z.number().int().nullable(),
      stream: z.boolean().nullable(),
      httpStatus: z.number().int().nullable(),
      latencyMs: z.number().int().nullable(),
      ttfbMs: z.number().int().nullable(),
      keyFingerprint: z.string().nullable(),
      tags: z.record(z.string(), z.string()),
      captureState: z.enum(["open", "complete", "aborted"]),
      receiptHash: z.string(),
      createdAt: z.string(),
      recordedAt: z.string(),
    }),
    conflicts: z.array(
      z.object({
        source: z.enum(receiptSources),
        differences: z.array(z.string()),
        receipt: z.record(z.string(), z.unknown()),
        receivedAt: z.string(),
      }),
    ),
    jobsApi: z
      .object({
        status: z.string().nullable(),
        creditsChargedUnits: nullableUnits,
        escrowTx: z.string().nullable(),
        settlementTx: z.string().nullable(),
        worker: z.string().nullable(),
        checkedAt: z.string(),
        response: z.unknown(),
      })
      .nullable(),
    escrow: TransactionSchema.describe("the lock the receipt names"),
    settlement: TransactionSchema.describe(
      "the receipt's settlement, or the jobs API's when the receipt names none",
    ),
    transactions: z
      .array(NamedTransactionSchema)
      .describe(
        "every transaction the job names (receipt, jobs API, conflicting receipts), each once: a second settlement or lock is counted in `amounts` too, so the amounts add up from this list",
      ),
    amounts: z.object({
      escrowedUnits: nullableUnits,
      chargedUnits: nullableUnits,
      chargedUsdc: nullableUnits,
      workerPaidUnits: nullableUnits,
      treasuryPaidUnits: nullableUnits,
      refundedUnits: nullableUnits,
      expectedChargeUnits: nullableUnits,
      feesLamports: nullableUnits,
    }),
    checks: z
      .array(CheckResultSchema)
      .describe(
        "the checks of the current verdict; while the job is judged again, only those the new judgement wrote (the verdict it left was reached on `rejudging.previousChecks`)",
      ),
  })
  .openapi("AuditRecord");
