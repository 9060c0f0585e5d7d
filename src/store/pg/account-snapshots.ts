import type { PgStore } from "../../db/pg/client.js";
import type { AccountSnapshotsStore } from "../account-snapshots.js";
import { notOnPostgresYet } from "./not-yet.js";

export function createPgAccountSnapshotsStore(_store: PgStore): AccountSnapshotsStore {
  throw notOnPostgresYet("account-snapshots");
}
