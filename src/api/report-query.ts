import { type RouteConfig, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { instantParam, periodRefinement, queryObject } from "./openapi-schemas.js";

/** A report's period: `from` inclusive and `to` exclusive, both required. */
export const periodParams = {
  from: instantParam("from", "Start of the period, inclusive."),
  to: instantParam("to", "End of the period, exclusive."),
};

/** `format=json|csv`; without it, `Accept: text/csv` asks for CSV (see `wantsCsv`). */
const formatParam = z
  .enum(["json", "csv"])
  .optional()
  .openapi({
    param: { name: "format", in: "query" },
    description: "`csv` for RFC 4180 CSV; `Accept: text/csv` does the same.",
  });

/**
 * The query of a report served as JSON or CSV: its period, the report's own parameters
 * (`extra`, documented in this order), then `format`. `to` must be after `from`.
 */
export function reportQuery<Extra extends z.ZodRawShape>(extra: Extra) {
  // The generic shape hides from the compiler that the output has `from` and `to`; it has.
  const refine = periodRefinement as (value: unknown, ctx: z.RefinementCtx) => void;
  return queryObject({ ...periodParams, ...extra, format: formatParam }).superRefine(refine);
}

/** Whether the caller asked for CSV: `format=csv`, or no format and `Accept: text/csv`. */
export function wantsCsv(format: "json" | "csv" | undefined, accept: string | undefined): boolean {
  return format === "csv" || (format === undefined && (accept ?? "").includes("text/csv"));
}

/**
 * `route` with `text/csv` (described by `description`) documented beside the JSON of its 200
 * answer. The route's type keeps the JSON alone: typed with both, the typed client's `json()`
 * was a union of the JSON body, a string and a `Response`, of which no field could be read.
 * A client asking CSV reads `text()`; the handler answers it with `csvAnswer`.
 */
export function withCsvAnswer<R extends RouteConfig>(route: R, description: string): R {
  const ok = route.responses[200];
  if (!ok || !("content" in ok) || !ok.content) throw new Error(`${route.path}: no 200 content`);
  const csv = { schema: z.string().openapi({ description }) };
  return {
    ...route,
    responses: { ...route.responses, 200: { ...ok, content: { ...ok.content, "text/csv": csv } } },
  };
}

/**
 * The CSV answer of a route made with `withCsvAnswer`, typed as that route's answers (`T`, from
 * the handler's return type): its type says JSON only, the document says CSV too.
 */
export function csvAnswer<T>(c: Context, csv: string, filename: string): T {
  return c.body(csv, 200, csvHeaders(filename)) as T;
}

/** Headers of a CSV report downloaded as `filename`. */
export function csvHeaders(filename: string) {
  return {
    "content-type": "text/csv; charset=utf-8; header=present",
    "content-disposition": `attachment; filename="${filename}"`,
  };
}
