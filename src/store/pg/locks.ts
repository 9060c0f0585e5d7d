import type { PgStore } from "../../db/pg/client.js";
import type { LockStore } from "../locks.js";
import { notOnPostgresYet } from "./not-yet.js";

export function createPgLockStore(_store: PgStore): LockStore {
  throw notOnPostgresYet("locks");
}
