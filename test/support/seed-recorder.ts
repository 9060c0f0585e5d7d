import { createHash } from "node:crypto";
import { asc, eq } from "drizzle-orm";
import type { Store } from "../../src/db/client.js";
import * as pgSchema from "../../src/db/pg/schema.js";
import * as sqliteSchema from "../../src/db/schema.js";

/**
 * Rows the recorder's store modules read, written and read back with drizzle on either
 * dialect's schema (same tables and columns), so a conformance test seeds and inspects both
 * stores with the same code.
 */

export type JobRow = typeof sqliteSchema.jobs.$inferSelect;
export type ConflictRow = typeof sqliteSchema.receiptConflicts.$inferSelect;
export type JobSeed = Partial<typeof sqliteSchema.jobs.$inferInsert> & { jobId: string };

/** Inserts a job row: an ingested receipt, pending, unless `seed` says otherwise. */
export async function seedJob(store: Store, seed: JobSeed): Promise<void> {
  const at = seed.createdAt ?? Date.UTC(2026, 10, 1);
  const row = {
    source: "ingest" as const,
    receiptHash: createHash("sha256").update(seed.jobId).digest("hex"),
    createdAt: at,
    recordedAt: at,
    updatedAt: at,
    ...seed,
  };
  if (store.kind === "postgres") await store.db.insert(pgSchema.jobs).values(row);
  else store.db.insert(sqliteSchema.jobs).values(row).run();
}

/** Changes columns of a job (what the verifier or the backfill would have written). */
export async function updateJob(
  store: Store,
  jobId: string,
  patch: Partial<typeof sqliteSchema.jobs.$inferInsert>,
): Promise<void> {
  if (store.kind === "postgres") {
    await store.db.update(pgSchema.jobs).set(patch).where(eq(pgSchema.jobs.jobId, jobId));
  } else {
    store.db.update(sqliteSchema.jobs).set(patch).where(eq(sqliteSchema.jobs.jobId, jobId)).run();
  }
}

/** The job's row as stored, or undefined. */
export async function readJob(store: Store, jobId: string): Promise<JobRow | undefined> {
  if (store.kind === "postgres") {
    const [row] = await store.db.select().from(pgSchema.jobs).where(eq(pgSchema.jobs.jobId, jobId));
    return row as JobRow | undefined;
  }
  return store.db.select().from(sqliteSchema.jobs).where(eq(sqliteSchema.jobs.jobId, jobId)).get();
}

/** Every job id stored, in order. */
export async function jobIds(store: Store): Promise<string[]> {
  if (store.kind === "postgres") {
    const rows = await store.db
      .select({ jobId: pgSchema.jobs.jobId })
      .from(pgSchema.jobs)
      .orderBy(asc(pgSchema.jobs.jobId));
    return rows.map((row) => row.jobId);
  }
  return store.db
    .select({ jobId: sqliteSchema.jobs.jobId })
    .from(sqliteSchema.jobs)
    .orderBy(asc(sqliteSchema.jobs.jobId))
    .all()
    .map((row) => row.jobId);
}

/** The conflicting receipts kept, oldest first. */
export async function readConflicts(store: Store): Promise<ConflictRow[]> {
  if (store.kind === "postgres") {
    const rows = await store.db
      .select()
      .from(pgSchema.receiptConflicts)
      .orderBy(asc(pgSchema.receiptConflicts.id));
    return rows as ConflictRow[];
  }
  return store.db
    .select()
    .from(sqliteSchema.receiptConflicts)
    .orderBy(asc(sqliteSchema.receiptConflicts.id))
    .all();
}

/** Whether a column of a job holds SQL NULL (drizzle reads a JSON `null` text as null too). */
export async function isSqlNull(store: Store, jobId: string, column: string): Promise<boolean> {
  const query = `SELECT ${column} IS NULL AS empty FROM jobs WHERE job_id = `;
  if (store.kind === "postgres") {
    const { rows } = await store.pool.query<{ empty: boolean }>(`${query}$1`, [jobId]);
    return rows[0]?.empty === true;
  }
  const row = store.sqlite.prepare(`${query}?`).get(jobId) as { empty: number } | undefined;
  return row?.empty === 1;
}

/** The jobs API's answer body kept for a job (`job_api_answers`), or undefined when none. */
export async function readApiResponse(store: Store, jobId: string): Promise<unknown> {
  if (store.kind === "postgres") {
    const { rows } = await store.pool.query<{ response: unknown }>(
      "SELECT response FROM job_api_answers WHERE job_id = $1",
      [jobId],
    );
    return rows[0]?.response;
  }
  const row = store.sqlite
    .prepare("SELECT response FROM job_api_answers WHERE job_id = ?")
    .get(jobId) as { response: string } | undefined;
  return row === undefined ? undefined : JSON.parse(row.response);
}
