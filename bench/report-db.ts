import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { openStore } from "../src/db/client.js";
import { migrateStore, migrationsFolder } from "../src/db/migrate.js";
import { generateJobs, generatorVersion } from "./generate-jobs.js";

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
export function reportDbVersion(count: number): string {
  const hash = createHash("sha256");
  hash.update(readFileSync(join(migrationsFolder, "0000_init.sql")));
  hash.update(generatorVersion);
  hash.update(String(count));
  return hash.digest("hex").slice(0, 12);
}

/**
 * Returns the path of a database holding `count` generated jobs with evidence, generating it
 * first when the cache has none for this version. It is written under a temporary name and
 * renamed when complete, so an interrupted generation is never reused.
 */
export function ensureReportDb(
  count: number,
  onProgress?: (done: number) => void,
): { path: string; generated: boolean; seconds: number } {
  const path = join(cacheDir, `jobs-${count}-${reportDbVersion(count)}.db`);
  if (existsSync(path)) return { path, generated: false, seconds: 0 };
  mkdirSync(cacheDir, { recursive: true });
  const partial = `${path}.partial`;
  for (const suffix of ["", "-wal", "-shm", "-journal"]) rmSync(partial + suffix, { force: true });
  const started = performance.now();
  const store = openStore(partial);
  try {
    migrateStore(store);
    // A throwaway file being filled: no journal, no fsync, a large page cache.
    store.sqlite.pragma("journal_mode = OFF");
    store.sqlite.pragma("synchronous = OFF");
    store.sqlite.pragma("cache_size = -262144");
    generateJobs(store, {
      count,
      endAt: reportDbEndAt,
      days: reportDbDays,
      withEvidence: true,
      ...(onProgress ? { onProgress } : {}),
    });
  } finally {
    store.close();
  }
  renameSync(partial, path);
  return { path, generated: true, seconds: (performance.now() - started) / 1000 };
}
