import { count, desc, inArray } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { jobs, verificationRuns } from "../../db/pg/schema.js";
import { verdictIsOpen } from "../../db/schema.js";
import type { DashboardStore } from "../dashboard.js";

/** The dashboard's own reads on PostgreSQL (see src/store/dashboard.ts); reads only. */
export function createPgDashboardStore(store: PgStore): DashboardStore {
  const { db } = store;
  const depth = db
    .select({ n: count() })
    .from(jobs)
    .where(verdictIsOpen(jobs.verdict))
    .prepare("dashboard_queue_depth");
  const lastRun = db
    .select({
      status: verificationRuns.status,
      windowFrom: verificationRuns.windowFrom,
      windowTo: verificationRuns.windowTo,
      startedAt: verificationRuns.startedAt,
      finishedAt: verificationRuns.finishedAt,
      summary: verificationRuns.summary,
    })
    .from(verificationRuns)
    .where(inArray(verificationRuns.trigger, ["verify", "cron"]))
    .orderBy(desc(verificationRuns.startedAt))
    .limit(1)
    .prepare("dashboard_last_run");
  return {
    queueDepth: async () => Number((await depth.execute())[0]?.n ?? 0),
    lastNightlyRun: async () => (await lastRun.execute())[0] ?? null,
  };
}
