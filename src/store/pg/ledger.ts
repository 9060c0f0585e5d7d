import type { PgStore } from "../../db/pg/client.js";
import type { LedgerStore } from "../ledger.js";
import { notOnPostgresYet } from "./not-yet.js";

export function createPgLedgerStore(_store: PgStore): LedgerStore {
  throw notOnPostgresYet("ledger");
}
