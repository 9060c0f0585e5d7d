import { createRoute, z } from "@hono/zod-openapi";
import { isBase58OfLength } from "../chain/base58.js";
import type { Store } from "../db/client.js";
import { listJobs } from "../reports/job-listing.js";
import {
  authErrors,
  cursorParam,
  instantParam,
  JobSummarySchema,
  limitParam,
  notAcceptableError,
  orderParam,
  periodRefinement,
  queryObject,
  timeZoneParam,
  verdictSchema,
} from "./openapi-schemas.js";
import { answersOnly, zonedPeriod } from "./report-query.js";
import { createRouter } from "./router.js";

const text = (name: string, description: string) =>
  z
    .string()
    .min(1)
    .max(200)
    .optional()
    .openapi({ param: { name, in: "query" }, description });

const jobsQuery = queryObject({
  verdict: verdictSchema.optional().openapi({ param: { name: "verdict", in: "query" } }),
  // A worker is recorded only as a base58 address: anything else would list no jobs.
  worker: z
    .string()
    .refine((value) => isBase58OfLength(value, 32), "not a worker address: base58 of 32 bytes")
    .optional()
    .openapi({ param: { name: "worker", in: "query" }, description: "Worker wallet address." }),
  model: text("model", "Model name as recorded."),
  // Checked as a fingerprint: a mistyped one would list no jobs, read as "none for this key".
  key: z
    .string()
    .regex(/^[0-9a-f]{16}$/, "not a key fingerprint: 16 lowercase hex digits")
    .optional()
    .openapi({
      param: { name: "key", in: "query" },
      description: "Fingerprint of the caller's Decentral key: 16 lowercase hex digits.",
    }),
  from: instantParam("from", "Jobs created at or after this instant.").optional(),
  to: instantParam("to", "Jobs created before this instant.").optional(),
  timeZone: timeZoneParam,
  limit: limitParam,
  cursor: cursorParam,
  order: orderParam,
}).superRefine(periodRefinement);

const JobPageSchema = z
  .object({ items: z.array(JobSummarySchema), nextCursor: z.string().nullable() })
  .openapi("JobPage");

/** `GET /jobs` (role read): the jobs listing with filters and a stable keyset cursor. */
export function jobRoutes(deps: { store: Store }) {
  const list = createRoute({
    method: "get",
    path: "/jobs",
    tags: ["jobs"],
    middleware: answersOnly(["application/json"]),
    summary: "List jobs, newest first, with filters",
    request: { query: jobsQuery },
    responses: {
      200: {
        content: { "application/json": { schema: JobPageSchema } },
        description:
          "One page; pass `nextCursor` as `cursor` for the next. Pages stay stable while jobs arrive.",
      },
      ...authErrors,
      ...notAcceptableError,
    },
  });

  return createRouter({ store: deps.store, role: "read" }).openapi(list, async (c) => {
    const q = c.req.valid("query");
    const page = await listJobs(
      deps.store,
      {
        verdict: q.verdict,
        worker: q.worker,
        model: q.model,
        keyFingerprint: q.key,
        ...zonedPeriod(c, q),
      },
      { limit: q.limit, cursor: q.cursor, order: q.order },
    );
    return c.json(page, 200);
  });
}
