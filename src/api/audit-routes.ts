import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Store } from "../db/client.js";
import { AppError } from "../errors.js";
import { jobIdPattern, jobIdRule } from "../recorder/receipt-input.js";
import { auditRecord, type ExplorerCluster } from "../reports/audit-record.js";
import { createOpsStore } from "../store/ops.js";
import type { AppEnv } from "./context.js";
import {
  AuditRecordSchema,
  authErrors,
  ErrorSchema,
  noQueryParameters,
  notAcceptableError,
  notFoundError,
} from "./openapi-schemas.js";
import { answersOnly } from "./report-query.js";
import { createRouter } from "./router.js";

/** Queues a fresh verification of one job; implemented by the verifier. */
export interface Reverifier {
  reverify(jobId: string): Promise<void>;
}

export interface AuditRoutesDeps {
  store: Store;
  explorer: ExplorerCluster;
  verifier?: Reverifier;
}

const jobIdParam = z.object({
  // Every job recorded has such an id (the proxy, ingest and import take no other): one of
  // another shape is a mistyped id, told so rather than "no job".
  jobId: z
    .string()
    .regex(jobIdPattern, jobIdRule)
    .openapi({ param: { name: "jobId", in: "path" }, example: "job_8fx2kp3m9qrstvwxyz" }),
});

/** `GET /audit/{jobId}` (role read) and `POST /jobs/{jobId}/reverify` (role admin). */
export function auditRoutes(deps: AuditRoutesDeps) {
  const audit = createRoute({
    method: "get",
    path: "/audit/{jobId}",
    tags: ["audit"],
    summary: "Everything recorded and proven about one job",
    middleware: [noQueryParameters, answersOnly(["application/json"])] as const,
    request: { params: jobIdParam },
    responses: {
      200: {
        content: { "application/json": { schema: AuditRecordSchema } },
        description: "The audit record.",
      },
      ...authErrors,
      ...notFoundError,
      ...notAcceptableError,
    },
  });

  const reverify = createRoute({
    method: "post",
    path: "/jobs/{jobId}/reverify",
    tags: ["audit"],
    summary: "Queue a fresh verification of one job",
    middleware: noQueryParameters,
    request: { params: jobIdParam },
    responses: {
      202: {
        content: {
          "application/json": {
            schema: z.object({ jobId: z.string(), queued: z.literal(true) }),
          },
        },
        description: "Queued; `GET /audit/{jobId}` shows the new verdict once reached.",
      },
      ...authErrors,
      ...notFoundError,
      409: {
        content: { "application/json": { schema: ErrorSchema } },
        description: "No verifier runs in this process.",
      },
      423: {
        content: { "application/json": { schema: ErrorSchema } },
        description:
          "A row of the job is held locked by another database session (PostgreSQL); try again once it is free.",
      },
    },
  });

  const readers = createRouter({ store: deps.store, role: "read" }).openapi(audit, async (c) => {
    const { jobId } = c.req.valid("param");
    const record = await auditRecord(deps.store, jobId, deps.explorer);
    if (!record) throw new AppError("not_found", `no job ${jobId}`, { field: "jobId" });
    return c.json(record, 200);
  });
  const ops = createOpsStore(deps.store);
  const admins = createRouter({ store: deps.store, role: "admin" }).openapi(reverify, async (c) => {
    const { jobId } = c.req.valid("param");
    if (!(await ops.jobExists(jobId)))
      throw new AppError("not_found", `no job ${jobId}`, { field: "jobId" });
    if (!deps.verifier) {
      throw new AppError("conflict", "no verifier runs in this process");
    }
    await deps.verifier.reverify(jobId);
    return c.json({ jobId, queued: true as const }, 202);
  });
  return new OpenAPIHono<AppEnv>().route("/", readers).route("/", admins);
}
