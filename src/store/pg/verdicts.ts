import type { PgStore } from "../../db/pg/client.js";
import type { CustodyProfile } from "../custody.js";
import type { VerdictStore } from "../verdicts.js";
import { notOnPostgresYet } from "./not-yet.js";

export function createPgVerdictStore(_store: PgStore, _profile: CustodyProfile): VerdictStore {
  throw notOnPostgresYet("verdicts");
}
