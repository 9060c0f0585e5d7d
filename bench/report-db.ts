import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore, migrationsFolder } from "../src/db/migrate.js";
import { backfillRollups } from "../src/db/rollups.js";
import { generateJobs, generateJobsSql, generatorVersion } from "./generate-jobs.js";

const benchDir = dirname(fileURLToPath(import.meta.url));

/** Where generated databases are kept between runs (gitignored). */
export const cacheDir = join(benchDir, ".cache");

/** Fixed end of the generated period, so every run of a cached database sees the same data. */
export const reportDbEndAt = Date.UTC(2026, 10, 1);
export const reportDbDays = 30;

/**
 * The cache key: the schema (the migration SQL) and the generator's version. A change to
 * either makes a new database, so a report is never measured over rows of an old schema.
 */
export function reportDbVersion(count: number, kind: ReportDbKind = "jobs"): string {
  const hash = createHash("sha256");
  for (const file of readdirSync(migrationsFolder)
    .filter((f) => f.endsWith(".sql"))
    .sort()) {
    hash.update(readFileSync(join(migrationsFolder, file)));
  }
  hash.update(generatorVersion);
  hash.update(String(count));
  hash.update(kind);
  return hash.digest("hex").slice(0, 12);
}

/** `jobs`: job by job with evidence (audit lookups need it); `sql`: set-based, jobs only. */
export type ReportDbKind = "jobs" | "sql";

/**
 * Fills `store` the way an existing deployment meets the rollups: jobs written with the jobs
 * indexes and the rollup triggers off (both rebuilt after, much faster than row by row), then
 * the rollups built by the same resumable backfill `db migrate` runs. Returns its seconds.
 */
function fillThenBackfill(store: SqliteStore, fill: () => void): number {
  const db = store.sqlite;
  const saved = db
    .prepare(
      `SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name = 'jobs'
         AND (type = 'index' OR (type = 'trigger' AND name LIKE 'jobs_rollup_%'))`,
    )
    .all() as { name: string; sql: string }[];
  for (const o of saved)
    db.exec(`DROP ${o.sql.startsWith("CREATE TRIGGER") ? "TRIGGER" : "INDEX"} ${o.name}`);
  fill();
  for (const o of saved) db.exec(o.sql);
  db.exec(`INSERT INTO job_rollups_backfill (id, next_day, last_day)
    SELECT 1, (SELECT min(created_at) FROM jobs) / 86400000, (SELECT max(created_at) FROM jobs) / 86400000
    WHERE EXISTS (SELECT 1 FROM jobs)`);
  const started = performance.now();
  backfillRollups(store);
  return (performance.now() - started) / 1000;
}

/**
 * Returns the path of a database holding `count` generated jobs with evidence, generating it
 * first when the cache has none for this version. It is written under a temporary name and
 * renamed when complete, so an interrupted generation is never reused.
 */
export function ensureReportDb(
  count: number,
  onProgress?: (done: number) => void,
  kind: ReportDbKind = "jobs",
): { path: string; generated: boolean; seconds: number; backfillSeconds: number } {
  const path = join(cacheDir, `${kind}-${count}-${reportDbVersion(count, kind)}.db`);
  if (existsSync(path)) return { path, generated: false, seconds: 0, backfillSeconds: 0 };
  mkdirSync(cacheDir, { recursive: true });
  const partial = `${path}.partial`;
  for (const suffix of ["", "-wal", "-shm", "-journal"]) rmSync(partial + suffix, { force: true });
  const started = performance.now();
  let backfillSeconds = 0;
  const store = openSqliteStore(partial);
  try {
    migrateStore(store);
    // A throwaway file being filled: no journal, no fsync, a large page cache.
    store.sqlite.pragma("journal_mode = OFF");
    store.sqlite.pragma("synchronous = OFF");
    store.sqlite.pragma("cache_size = -262144");
    // Index builds sort tens of millions of entries: in temporary files, not in memory.
    store.sqlite.pragma("temp_store = FILE");
    const progress = onProgress ? { onProgress } : {};
    backfillSeconds = fillThenBackfill(store, () =>
      kind === "sql"
        ? generateJobsSql(store, { count, endAt: reportDbEndAt, days: reportDbDays, ...progress })
        : generateJobs(store, {
            count,
            endAt: reportDbEndAt,
            days: reportDbDays,
            withEvidence: true,
            ...progress,
          }),
    );
  } finally {
    store.close();
  }
  renameSync(partial, path);
  return { path, generated: true, seconds: (performance.now() - started) / 1000, backfillSeconds };
}
