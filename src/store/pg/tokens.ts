import type { PgStore } from "../../db/pg/client.js";
import type { TokensStore } from "../tokens.js";
import { notOnPostgresYet } from "./not-yet.js";

export function createPgTokensStore(_store: PgStore): TokensStore {
  throw notOnPostgresYet("tokens");
}
