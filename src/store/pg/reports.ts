import type { PgStore } from "../../db/pg/client.js";
import type { ReportsStore } from "../reports.js";
import { notOnPostgresYet } from "./not-yet.js";

export function createPgReportsStore(_store: PgStore): ReportsStore {
  throw notOnPostgresYet("reports");
}
