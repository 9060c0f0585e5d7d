import type { PgStore } from "../../db/pg/client.js";
import type { CustodyConfig, CustodyProfile, CustodyStore } from "../custody.js";
import { notOnPostgresYet } from "./not-yet.js";

export function createPgCustodyStore(
  _store: PgStore,
  _profile: CustodyProfile,
  _config?: CustodyConfig,
): CustodyStore {
  throw notOnPostgresYet("custody");
}
