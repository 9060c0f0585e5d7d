import { type RouteConfig, z } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { accepts } from "hono/accepts";
import { AppError } from "../errors.js";
import { mixedZoneBounds, parseInstant } from "../reports/period.js";
import { instantParam, periodRefinement, queryObject } from "./openapi-schemas.js";

/** A report's period: `from` inclusive and `to` exclusive, both required. */
export const periodParams = {
  from: instantParam("from", "Start of the period, inclusive."),
  to: instantParam("to", "End of the period, exclusive."),
};

type Bounds = { from?: number | undefined; to?: number | undefined };

/**
 * The period of a query naming a time zone: `from` and `to` given as dates are the starts of
 * those days in that zone (read as UTC days by the schema, which does not see the zone). Both
 * given, they are both dates or both instants; a bound left out stays out.
 */
export function zonedPeriod<Q extends Bounds & { timeZone?: string | undefined }>(
  c: Context,
  query: Q,
): Pick<Q, "from" | "to"> {
  const zone = query.timeZone;
  if (zone === undefined) return { from: query.from, to: query.to };
  const fromText = c.req.query("from");
  const toText = c.req.query("to");
  const mixed =
    fromText !== undefined && toText !== undefined ? mixedZoneBounds(fromText, toText, zone) : null;
  if (mixed) {
    throw new AppError("validation_failed", `${mixed.field}: ${mixed.message}`, {
      field: mixed.field,
    });
  }
  const inZone = (text: string | undefined, utc: number | undefined) =>
    utc === undefined ? undefined : (parseInstant(text ?? "", zone) ?? utc);
  const from = inZone(fromText, query.from);
  const to = inZone(toText, query.to);
  if (from !== undefined && to !== undefined && to <= from) {
    throw new AppError("validation_failed", `to: must be after from (in ${zone})`, {
      field: "to",
    });
  }
  // Each bound is given exactly when the query's is: the types of `Q` hold.
  return { from, to } as Pick<Q, "from" | "to">;
}

/** `format=json|csv`; without it, `Accept` decides (see `wantsCsv`). */
const formatParam = z
  .enum(["json", "csv"])
  .optional()
  .openapi({
    param: { name: "format", in: "query" },
    description:
      "`csv` for RFC 4180 CSV, `json` for JSON. Without it the answer follows `Accept`: CSV when it rates `text/csv` above `application/json` (q-values; `q=0` refuses a type), JSON otherwise and on a tie (406 when it refuses both); the answer then carries `Vary: Accept`.",
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

type MediaRange = Parameters<NonNullable<Parameters<typeof accepts>[1]["match"]>>[0][number];

/**
 * The quality the `Accept` ranges give `type`: that of the most specific range matching it
 * (the type itself, then its main type's wildcard, then the wildcard of all types), 0 when none
 * does (RFC 9110, 12.5.1).
 */
function qualityOf(ranges: MediaRange[], type: string): number {
  const main = type.split("/")[0];
  let best = { specificity: 0, q: 0 };
  for (const range of ranges) {
    const name = range.type.toLowerCase();
    const specificity =
      name === type ? 3 : name === `${main}/*` ? 2 : name === "*/*" || name === "*" ? 1 : 0;
    if (specificity > best.specificity) best = { specificity, q: range.q };
  }
  return best.q;
}

/**
 * Middleware of a route that answers only `types`: an `Accept` that gives every one of them
 * quality 0 (`image/png`, `application/json;q=0`) is a 406 naming the types the route has,
 * rather than an answer the caller said it cannot take. No `Accept`, or `*` ranges, take any.
 */
export function answersOnly(types: readonly string[]): MiddlewareHandler {
  return async (c, next) => {
    if (c.req.header("accept") !== undefined) {
      let ranges: MediaRange[] = [];
      accepts(c, {
        header: "Accept",
        supports: [...types],
        default: types[0] ?? "application/json",
        match: (parsed) => {
          ranges = parsed;
          return types[0] ?? "application/json";
        },
      });
      // An empty or unparsable header names no range: read as no preference.
      if (ranges.length > 0 && types.every((type) => qualityOf(ranges, type) === 0)) {
        throw new AppError("not_acceptable", `Accept: this route answers ${types.join(" or ")}`, {
          field: "accept",
        });
      }
    }
    await next();
  };
}

/**
 * Whether the caller asked for CSV: `format=csv`; without `format`, an `Accept` that rates
 * `text/csv` above `application/json` (media types case-insensitive, `q=0` refusing one, JSON
 * on a tie), and then the answer varies with `Accept`, which caches are told. A substring test
 * sent CSV to `text/csv;q=0, application/json` and JSON to `TEXT/CSV`.
 */
export function wantsCsv(c: Context, format: "json" | "csv" | undefined): boolean {
  if (format !== undefined) return format === "csv";
  c.header("vary", "Accept", { append: true });
  const chosen = accepts(c, {
    header: "Accept",
    supports: ["application/json", "text/csv"],
    default: "application/json",
    match: (ranges) =>
      qualityOf(ranges, "text/csv") > qualityOf(ranges, "application/json")
        ? "text/csv"
        : "application/json",
  });
  return chosen === "text/csv";
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
