import { z } from "@hono/zod-openapi";
import { instantParam, periodRefinement } from "./openapi-schemas.js";

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
  return z.object({ ...periodParams, ...extra, format: formatParam }).superRefine(refine);
}

/** Whether the caller asked for CSV: `format=csv`, or no format and `Accept: text/csv`. */
export function wantsCsv(format: "json" | "csv" | undefined, accept: string | undefined): boolean {
  return format === "csv" || (format === undefined && (accept ?? "").includes("text/csv"));
}

/** Headers of a CSV report downloaded as `filename`. */
export function csvHeaders(filename: string) {
  return {
    "content-type": "text/csv; charset=utf-8; header=present",
    "content-disposition": `attachment; filename="${filename}"`,
  };
}
