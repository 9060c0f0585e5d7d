import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore, migrationsFolder } from "../src/db/migrate.js";
import { backfillRollups } from "../src/db/rollups.js";
import {
  generateJobs,
  generateJobsSql,
  generatorVersion,
  sqlGeneratorVersion,
} from "./generate-jobs.js";

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

/**
 * `jobs`: job by job with evidence (audit lookups need it), every index of the schema; `sql`:
 * set-based, what reconciliation reads only: the jobs (no evidence rows), the rollups, and of
 * the indexes on `jobs` those the report path uses (`reportPathIndexes`).
 */
export type ReportDbKind = "jobs" | "sql";

/**
 * Indexes on `jobs` the reports read through: the jobs of partial hours by time, a worker's by
 * worker then time, the oldest open job by verdict then time (`dataCompleteUntil`); and the
 * partial ones the app's statements name (`INDEXED BY`, which fails to prepare without them),
 * each holding only the few jobs still open, asked about, waiting for the treasury, judged
 * again or under a verifier's lease: the oldest of them bounds `dataCompleteUntil`, the open ones the metrics, the ones judged
 * again the report's `rejudging`. The primary key (audit
 * lookups) is kept in any case. The `sql` database builds only these.
 */
export const reportPathIndexes = [
  "jobs_created_at",
  "jobs_worker_created",
  "jobs_verdict_created",
  "jobs_open_due",
  "jobs_backfill",
  "jobs_treasury_waiting",
  "jobs_rejudging",
  "jobs_leased",
];

/** A short digest of `reportPathIndexes`: a `sql` database keeping other indexes is another file. */
function indexSetVersion(): string {
  return createHash("sha256").update(reportPathIndexes.join(",")).digest("hex").slice(0, 6);
}

/** Seconds each step of generating a database took. */
export interface GenerationSeconds {
  /** Writing the jobs (triggers and the indexes on `jobs` off). */
  insert: number;
  /** Building the indexes on `jobs` afterwards. */
  indexes: number;
  /** The rollup backfill (`backfillRollups`, what `db migrate` runs). */
  backfill: number;
}

/**
 * Fills `store` the way an existing deployment meets the rollups: jobs written with the jobs
 * indexes and the rollup triggers off (both rebuilt after, much faster than row by row), then
 * the rollups built by the same resumable backfill `db migrate` runs. `keepIndex` says which
 * indexes on `jobs` to build again (the others stay dropped).
 */
function fillThenBackfill(
  store: SqliteStore,
  fill: () => void,
  keepIndex: (name: string) => boolean,
): GenerationSeconds {
  const db = store.sqlite;
  const saved = db
    .prepare(
      `SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name = 'jobs'
         AND (type = 'index' OR (type = 'trigger' AND name LIKE 'jobs_rollup_%'))`,
    )
    .all() as { name: string; sql: string }[];
  const isTrigger = (o: { sql: string }) => o.sql.startsWith("CREATE TRIGGER");
  for (const o of saved) db.exec(`DROP ${isTrigger(o) ? "TRIGGER" : "INDEX"} ${o.name}`);
  let started = performance.now();
  const lap = () => {
    const seconds = (performance.now() - started) / 1000;
    started = performance.now();
    return seconds;
  };
  fill();
  const insert = lap();
  for (const o of saved) if (isTrigger(o) || keepIndex(o.name)) db.exec(o.sql);
  const indexes = lap();
  db.exec(`INSERT INTO job_rollups_backfill (id, next_day, last_day)
    SELECT 1, (SELECT min(created_at) FROM jobs) / 86400000, (SELECT max(created_at) FROM jobs) / 86400000
    WHERE EXISTS (SELECT 1 FROM jobs)`);
  backfillRollups(store);
  return { insert, indexes, backfill: lap() };
}

/**
 * Returns the path of a database holding `count` generated jobs of `kind`, generating it first
 * when the cache has none for this version. It is written under a temporary name and renamed
 * when complete, so an interrupted generation is never reused. `dir`: where (the cache unless
 * told).
 */
export function ensureReportDb(
  count: number,
  onProgress?: (done: number) => void,
  kind: ReportDbKind = "jobs",
  dir: string = cacheDir,
): {
  path: string;
  generated: boolean;
  seconds: number;
  /** CPU seconds of this process while generating (the wall time depends on the host's load). */
  cpuSeconds: number;
  steps: GenerationSeconds | null;
} {
  // The set-based generator's version and the indexes it keeps are in the name, not in
  // reportDbVersion: the ledger benchmark keys its own cache on reportDbVersion(lines, "sql").
  const version =
    kind === "sql"
      ? `${reportDbVersion(count, kind)}-s${sqlGeneratorVersion}-${indexSetVersion()}`
      : reportDbVersion(count, kind);
  const path = join(dir, `${kind}-${count}-${version}.db`);
  if (existsSync(path)) return { path, generated: false, seconds: 0, cpuSeconds: 0, steps: null };
  mkdirSync(dir, { recursive: true });
  const partial = `${path}.partial`;
  for (const suffix of ["", "-wal", "-shm", "-journal"]) rmSync(partial + suffix, { force: true });
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  let steps: GenerationSeconds;
  const store = openSqliteStore(partial);
  try {
    migrateStore(store);
    // A throwaway file being filled: no journal, no fsync, a large page cache. A WAL database
    // goes back to a rollback journal first, and better-sqlite3's defensive mode refuses
    // journal_mode = OFF until unsafe mode is on: without both it silently stayed WAL.
    store.sqlite.pragma("journal_mode = DELETE");
    store.sqlite.unsafeMode(true);
    if (store.sqlite.pragma("journal_mode = OFF", { simple: true }) !== "off") {
      throw new Error("could not turn the journal off for generating");
    }
    store.sqlite.pragma("synchronous = OFF");
    store.sqlite.pragma("cache_size = -262144");
    // Index builds sort tens of millions of entries: in temporary files, not in memory.
    store.sqlite.pragma("temp_store = FILE");
    const progress = onProgress ? { onProgress } : {};
    steps =
      kind === "sql"
        ? fillThenBackfill(
            store,
            () =>
              generateJobsSql(store, {
                count,
                endAt: reportDbEndAt,
                days: reportDbDays,
                ...progress,
              }),
            (name) => reportPathIndexes.includes(name),
          )
        : fillThenBackfill(
            store,
            () =>
              generateJobs(store, {
                count,
                endAt: reportDbEndAt,
                days: reportDbDays,
                withEvidence: true,
                ...progress,
              }),
            () => true,
          );
    // Cached as any store is: in WAL, so the service and the benchmark read it side by side.
    store.sqlite.pragma("journal_mode = WAL");
  } finally {
    store.close();
  }
  renameSync(partial, path);
  const cpu = process.cpuUsage(cpuStarted);
  return {
    path,
    generated: true,
    seconds: (performance.now() - started) / 1000,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    steps,
  };
}
