import type { PgDb } from "../../db/pg/client.js";

/** A transaction drizzle hands to `db.transaction(async (tx) => …)` on PostgreSQL. */
export type PgTx = Parameters<Parameters<PgDb["transaction"]>[0]>[0];

/**
 * What a PostgreSQL store function writes through: the pool (each statement on its own) or the
 * transaction of the caller it composes inside (the receipt writer's group, a store method's
 * unit of work). The PostgreSQL counterpart of the SQLite `…InTransaction(tx, …)` helpers.
 */
export type PgExecutor = PgDb | PgTx;
