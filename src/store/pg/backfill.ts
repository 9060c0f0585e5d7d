import type { PgStore } from "../../db/pg/client.js";
import type { BackfillClaim, BackfillStore } from "../backfill.js";
import type { PgExecutor } from "./executor.js";
import { notOnPostgresYet } from "./not-yet.js";

/** `claimBackfillInTransaction` on PostgreSQL, inside the caller's transaction. */
export async function claimBackfillPg(
  _tx: PgExecutor,
  _claims: readonly BackfillClaim[],
  _giveUps: readonly string[],
  _at: number,
): Promise<void> {
  throw notOnPostgresYet("backfill");
}

/** `giveUpBackfillInTransaction` on PostgreSQL, inside the caller's transaction. */
export async function giveUpBackfillPg(
  _tx: PgExecutor,
  _jobId: string,
  _at: number,
): Promise<void> {
  throw notOnPostgresYet("backfill");
}

export function createPgBackfillStore(_store: PgStore): BackfillStore {
  throw notOnPostgresYet("backfill");
}
