import { createRoute, z } from "@hono/zod-openapi";
import { isBase58OfLength } from "../chain/base58.js";
import type { Store } from "../db/client.js";
import { failingVerdicts, listDiscrepancies } from "../reports/job-listing.js";
import {
  groupByValues,
  reconciliationReport,
  reconciliationToCsv,
  reconciliationToJson,
} from "../reports/reconciliation.js";
import { type CheckName, checkNames } from "../verify/check-catalogue.js";
import {
  authErrors,
  cursorParam,
  FiguresSchema,
  instantParam,
  JobSummarySchema,
  limitParam,
  notAcceptableError,
  orderParam,
  periodBounds,
  periodRefinement,
  queryObject,
  ReconciliationSchema,
  RejudgingSchema,
  timeZoneParam,
} from "./openapi-schemas.js";
import {
  answersOnly,
  csvAnswer,
  periodParams,
  reportQuery,
  wantsCsv,
  withCsvAnswer,
  zonedPeriod,
} from "./report-query.js";
import { createRouter } from "./router.js";

export interface ReportRoutesDeps {
  store: Store;
  now: () => number;
}

const reconciliationQuery = reportQuery({
  groupBy: z
    .enum(groupByValues)
    .default("day")
    .openapi({ param: { name: "groupBy", in: "query" }, description: "Default `day`." }),
  timeZone: timeZoneParam,
});

const discrepancyQuery = queryObject({
  from: instantParam("from", "Jobs created at or after this instant.").optional(),
  to: instantParam("to", "Jobs created before this instant.").optional(),
  timeZone: timeZoneParam,
  verdict: z
    .enum(failingVerdicts)
    .optional()
    .openapi({
      param: { name: "verdict", in: "query" },
      description: "Only jobs of this verdict: `discrepancy` or `dropped`. Default both.",
    }),
  // A check the catalogue does not name fails on no job: refused, not answered "none".
  check: z
    .enum(checkNames as [CheckName, ...CheckName[]])
    .optional()
    .openapi({
      param: { name: "check", in: "query" },
      description: "Only jobs failing the check of this name (a name of the checks table).",
    }),
  limit: limitParam,
  cursor: cursorParam,
  order: orderParam,
}).superRefine(periodRefinement);

const workerQuery = queryObject({ ...periodParams, timeZone: timeZoneParam }).superRefine(
  periodRefinement,
);

const DiscrepancyPageSchema = z
  .object({
    items: z.array(
      JobSummarySchema.extend({
        failingChecks: z.array(
          z.object({
            name: z.string(),
            reason: z.string().nullable(),
            expected: z.unknown(),
            actual: z.unknown(),
          }),
        ),
      }),
    ),
    nextCursor: z.string().nullable(),
  })
  .openapi("DiscrepancyPage");

const WorkerStatementSchema = z
  .object({
    worker: z.string(),
    ...periodBounds,
    timeZone: z.string().describe("The IANA time zone whose days `days` are (`UTC` unless asked)."),
    generatedAt: z.string(),
    dataCompleteUntil: z.string(),
    days: z.array(FiguresSchema.extend({ day: z.string() })),
    totals: FiguresSchema,
    rejudging: RejudgingSchema,
  })
  .openapi("WorkerStatement");

/** Reconciliation, discrepancies and worker statements; all need role read. */
export function reportRoutes(deps: ReportRoutesDeps) {
  const reconciliation = withCsvAnswer(
    createRoute({
      method: "get",
      path: "/reports/reconciliation",
      tags: ["reports"],
      middleware: answersOnly(["application/json", "text/csv"]),
      summary: "Money in, money out, per day, model, worker or key, for a period",
      request: { query: reconciliationQuery },
      responses: {
        200: {
          content: { "application/json": { schema: ReconciliationSchema } },
          description: "The report; totals equal the sum of the groups exactly.",
        },
        ...authErrors,
        ...notAcceptableError,
      },
    }),
    "Columns `kind` (group|total), `group`, then the JSON figures in order, then on every row the report's `from` (inclusive), `to` (exclusive), `groupBy`, `generatedAt` and `dataCompleteUntil` (instants in ISO 8601 UTC, as in the JSON), and last `timeZone` (whose days `groupBy=day` groups by); the last row is the totals.",
  );

  const discrepancies = createRoute({
    method: "get",
    path: "/reports/discrepancies",
    tags: ["reports"],
    middleware: answersOnly(["application/json"]),
    summary: "Jobs with a failing check, with their failing checks",
    request: { query: discrepancyQuery },
    responses: {
      200: {
        content: { "application/json": { schema: DiscrepancyPageSchema } },
        description: "One page; pass `nextCursor` as `cursor` for the next.",
      },
      ...authErrors,
      ...notAcceptableError,
    },
  });

  const workerStatement = createRoute({
    method: "get",
    path: "/reports/workers/{address}",
    tags: ["reports"],
    middleware: answersOnly(["application/json"]),
    summary: "A worker's payout statement for a period",
    request: {
      params: z.object({
        // A receipt's worker is always an address, 32 bytes of base58; anything else names no
        // worker (43 characters of base58 are 43 bytes: a mistyped address, not one paid nothing).
        address: z
          .string()
          .refine((value) => isBase58OfLength(value, 32), "not an address: base58 of 32 bytes")
          .openapi({ param: { name: "address", in: "path" }, description: "Worker wallet." }),
      }),
      query: workerQuery,
    },
    responses: {
      200: {
        content: { "application/json": { schema: WorkerStatementSchema } },
        description: "Per-day figures and totals of the worker's jobs.",
      },
      ...authErrors,
      ...notAcceptableError,
    },
  });

  return createRouter({ store: deps.store, role: "read" })
    .openapi(reconciliation, async (c) => {
      const query = c.req.valid("query");
      const report = await reconciliationReport(
        deps.store,
        { ...zonedPeriod(c, query), groupBy: query.groupBy, timeZone: query.timeZone },
        deps.now,
      );
      if (wantsCsv(c, query.format)) {
        return csvAnswer(c, reconciliationToCsv(report), `reconciliation-${query.groupBy}.csv`);
      }
      return c.json(reconciliationToJson(report), 200);
    })
    .openapi(discrepancies, async (c) => {
      const q = c.req.valid("query");
      const page = await listDiscrepancies(
        deps.store,
        { ...zonedPeriod(c, q), check: q.check, verdict: q.verdict },
        { limit: q.limit, cursor: q.cursor, order: q.order },
      );
      return c.json(page, 200);
    })
    .openapi(workerStatement, async (c) => {
      const { address } = c.req.valid("param");
      const q = c.req.valid("query");
      const report = await reconciliationReport(
        deps.store,
        { ...zonedPeriod(c, q), groupBy: "day", worker: address, timeZone: q.timeZone },
        deps.now,
      );
      const json = reconciliationToJson(report);
      return c.json(
        {
          worker: address,
          from: json.from,
          to: json.to,
          timeZone: json.timeZone,
          generatedAt: json.generatedAt,
          dataCompleteUntil: json.dataCompleteUntil,
          days: json.groups.map(({ group, ...figures }) => ({ day: group ?? "", ...figures })),
          totals: json.totals,
          rejudging: json.rejudging,
        },
        200,
      );
    });
}
