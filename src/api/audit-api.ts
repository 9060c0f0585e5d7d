import { OpenAPIHono } from "@hono/zod-openapi";
import type { Store } from "../db/client.js";
import type { ExplorerCluster } from "../reports/audit-record.js";
import { auditRoutes, type Reverifier } from "./audit-routes.js";
import type { AppEnv } from "./context.js";
import { jobRoutes } from "./job-routes.js";
import type { AppMetrics } from "./metrics.js";
import { opsRoutes, type ReadinessProbes } from "./ops-routes.js";
import { reportRoutes } from "./report-routes.js";

export interface AuditApiDeps {
  store: Store;
  now: () => number;
  explorer: ExplorerCluster;
  metrics: AppMetrics;
  verifier?: Reverifier;
  readiness?: ReadinessProbes;
}

/**
 * The audit and reports API: audit records, reports, the jobs listing, readiness and metrics.
 * Chained so that `hc<AuditApi>` (src/api/client.ts) infers every route's input and output.
 */
export function auditApi(deps: AuditApiDeps) {
  return new OpenAPIHono<AppEnv>()
    .route("/", auditRoutes(deps))
    .route("/", reportRoutes(deps))
    .route("/", jobRoutes(deps))
    .route("/", opsRoutes(deps));
}

export type AuditApi = ReturnType<typeof auditApi>;
