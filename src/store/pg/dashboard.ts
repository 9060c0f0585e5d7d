import type { PgStore } from "../../db/pg/client.js";
import type { DashboardStore } from "../dashboard.js";
import { notOnPostgresYet } from "./not-yet.js";

export function createPgDashboardStore(_store: PgStore): DashboardStore {
  throw notOnPostgresYet("dashboard");
}
