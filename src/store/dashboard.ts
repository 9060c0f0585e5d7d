import { count, desc, inArray } from "drizzle-orm";
import type { SqliteStore, Store } from "../db/client.js";
import { jobs, verdictIsOpen, verificationRuns } from "../db/schema.js";
import { pgTwins } from "./pg-twins.js";

/** The last nightly (or `verify`) run, as the status page shows it. */
export interface LastNightlyRun {
  status: string;
  windowFrom: number | null;
  windowTo: number | null;
  startedAt: number;
  finishedAt: number | null;
  /** The run's summary as recorded (JSON), or null. */
  summary: unknown;
}

/** The dashboard's own reads of the store (the status page); reports go through ReportsStore. */
export interface DashboardStore {
  /** Jobs waiting for a final verdict. */
  queueDepth(): Promise<number>;
  /** The most recent run started by `verify` or the cron, or null when none ran. */
  lastNightlyRun(): Promise<LastNightlyRun | null>;
}

/** The dashboard store of either dialect. */
export function createDashboardStore(store: Store): DashboardStore {
  return store.kind === "postgres"
    ? pgTwins().createPgDashboardStore(store)
    : createSqliteDashboardStore(store);
}

/** Creates the dashboard's store module; its statements are prepared here, once. */
function createSqliteDashboardStore(store: SqliteStore): DashboardStore {
  const depth = store.db
    .select({ n: count() })
    .from(jobs)
    .where(verdictIsOpen(jobs.verdict))
    .prepare();
  const lastRun = store.db
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
    .prepare();
  return {
    queueDepth: async () => depth.get()?.n ?? 0,
    lastNightlyRun: async () => lastRun.get() ?? null,
  };
}

const created = new WeakMap<Store, DashboardStore>();

/** The dashboard's store module of an open store, created on first use and kept with it. */
export function dashboardStore(store: Store): DashboardStore {
  let module = created.get(store);
  if (!module) {
    module = createDashboardStore(store);
    created.set(store, module);
  }
  return module;
}
