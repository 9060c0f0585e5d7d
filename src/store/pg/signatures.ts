import type { PgStore } from "../../db/pg/client.js";
import type { SignatureStore } from "../signatures.js";
import { notOnPostgresYet } from "./not-yet.js";

export function createPgSignatureStore(_store: PgStore): SignatureStore {
  throw notOnPostgresYet("signatures");
}
