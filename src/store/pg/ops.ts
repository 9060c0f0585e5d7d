import type { PgStore } from "../../db/pg/client.js";
import type { OpsStore } from "../ops.js";
import { notOnPostgresYet } from "./not-yet.js";

export function createPgOpsStore(_store: PgStore): OpsStore {
  throw notOnPostgresYet("ops");
}
