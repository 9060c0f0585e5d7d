import type { SqliteStore } from "../db/client.js";
import type { PgExecutor } from "./pg/executor.js";

/**
 * One write a group-committing writer (the receipt writer) runs inside its shared transaction,
 * in either dialect: `runSqlite` runs synchronously on the writer's SQLite connection,
 * `runPostgres` on the writer's PostgreSQL transaction. Store modules build these (`recordReceiptsUnit`, …);
 * callers hand them to the writer without knowing which database is behind it.
 */
export interface WriteUnit<T> {
  runSqlite(store: SqliteStore): T;
  runPostgres(tx: PgExecutor): Promise<T>;
  /**
   * The jobs whose rows it writes, when it writes a few: a writer that holds one back (its row
   * locked) holds back the later units of those jobs too, so each job's are written in order.
   */
  jobIds?: readonly string[];
}
