import type { PgStore } from "../../db/pg/client.js";
import type { SessionsStore } from "../sessions.js";
import { notOnPostgresYet } from "./not-yet.js";

export function createPgSessionsStore(_store: PgStore): SessionsStore {
  throw notOnPostgresYet("sessions");
}
