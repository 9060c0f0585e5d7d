import type { PgStore } from "../../db/pg/client.js";
import type { VerificationRunStore } from "../verification-runs.js";
import { notOnPostgresYet } from "./not-yet.js";

export function createPgVerificationRunStore(_store: PgStore): VerificationRunStore {
  throw notOnPostgresYet("verification-runs");
}
