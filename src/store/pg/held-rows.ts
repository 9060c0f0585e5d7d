import type { SQL } from "drizzle-orm";
import type { PgStore } from "../../db/pg/client.js";
import { jobs } from "../../db/pg/schema.js";
import { AppError } from "../../errors.js";
import { HELD_LOCKED } from "../queue-rules.js";
import { boundRowLockWaits, sqlStateOf } from "./group-commit.js";

/**
 * A write of the job rows `rows` selects found one held locked by another session past its
 * bounded wait (`boundRowLockWaits`): SQLSTATE 55P03, as the statement's own failure, so
 * `retryWhileRowLocked` runs the transaction again; the rows let its refusal name the jobs.
 */
export class JobRowHeldError extends Error {
  override name = "JobRowHeldError";
  readonly code = "55P03";
  constructor(
    readonly rows: SQL,
    cause: unknown,
  ) {
    super("a job row is held locked by another session", { cause });
  }
}

/** Runs `write` (a statement writing the jobs `rows` selects), its row-lock timeout naming them. */
export async function namingHeldRows<T>(rows: SQL, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (sqlStateOf(error) === "55P03" && !(error instanceof JobRowHeldError)) {
      throw new JobRowHeldError(rows, error);
    }
    throw error;
  }
}

/**
 * Which jobs of those `rows` selects another session holds locked now: the rows that exist and
 * that a lock skipping the locked ones does not take. Read in a transaction of its own, never
 * waiting for a row.
 */
export async function heldJobIds(store: PgStore, rows: SQL): Promise<string[]> {
  return store.db.transaction(async (tx) => {
    // The table's own lock is waited for a moment only: a table lock (a VACUUM FULL) held
    // past it leaves the jobs unnamed rather than the refusal waiting the statement timeout.
    await boundRowLockWaits(tx, 200);
    const named = tx.select({ jobId: jobs.jobId }).from(jobs).where(rows);
    const all = await named;
    const free = new Set((await named.for("update", { skipLocked: true })).map((r) => r.jobId));
    return all.map((r) => r.jobId).filter((id) => !free.has(id));
  });
}

/**
 * The refusal of a write whose job rows stayed held through `tries` waits of `waitMs`: a
 * `locked` AppError naming the held jobs (those of `rows` when the failure does not say which,
 * or `fallback`), and `then`, what becomes of the write.
 */
export async function rowsHeldError(
  store: PgStore,
  cause: unknown,
  wait: { tries: number; waitMs: number },
  then: string,
  rows?: SQL,
  fallback: readonly string[] = [],
): Promise<AppError> {
  const where = cause instanceof JobRowHeldError ? cause.rows : rows;
  const held = where === undefined ? [] : await heldJobIds(store, where).catch(() => []);
  const named = held.length > 0 ? held : [...fallback];
  // A wait of the write's not for a job row it names (a table lock: a VACUUM FULL, an ALTER
  // TABLE) is said as what it is known to be.
  const who =
    named.length === 0
      ? "a row or table the write locks"
      : `job ${named.slice(0, 5).join(", ")}${named.length > 5 ? ` and ${named.length - 5} more` : ""}: its row`;
  return new AppError(
    "locked",
    `${who} ${HELD_LOCKED} (waited ${wait.tries} times ${wait.waitMs} ms); ${then}`,
    { jobIds: named },
    { cause },
  );
}
