import { PgTransaction } from "drizzle-orm/pg-core";
import type { PgDb } from "../../db/pg/client.js";
import type { PgExecutor, PgTx } from "./executor.js";

/**
 * Runs `write` in the caller's transaction when `executor` is one (the receipt writer's group),
 * else in a transaction of its own: a row locked `FOR UPDATE` stays locked until the work that
 * read it is committed. Not a savepoint inside a transaction (two more round trips per call);
 * the writer runs a failing group again with a savepoint per task.
 */
export function inPgTransaction<T>(
  executor: PgExecutor,
  write: (tx: PgTx) => Promise<T>,
): Promise<T> {
  if (executor instanceof PgTransaction) return write(executor as PgTx);
  return (executor as PgDb).transaction(write);
}

/** SQLSTATEs PostgreSQL asks the client to retry: serialization failure, deadlock. */
const retryable = new Set(["40001", "40P01"]);

/**
 * Thrown inside a transaction `retryOnConflict` runs, to roll it back whole and run it again, as
 * a serialization failure is: what it read asks for a lock it may take only before its rows.
 */
export class RunAgainError extends Error {
  override name = "RunAgainError";
  readonly code = "40001";
}

/**
 * Runs a store method's transaction, again (up to `attempts` times) when PostgreSQL aborted it
 * as a deadlock victim or serialization failure: two processes locking the same jobs in another
 * order is not an error of either, and the transaction was rolled back whole.
 */
export async function retryOnConflict<T>(run: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      // drizzle wraps the driver's error, which carries the SQLSTATE, as `cause`.
      const failure = error as { code?: unknown; cause?: { code?: unknown } } | null;
      const code = failure?.code ?? failure?.cause?.code;
      if (attempt >= attempts || typeof code !== "string" || !retryable.has(code)) throw error;
    }
  }
}
