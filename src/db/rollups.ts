import type { Store } from "./client.js";
import { openVerdicts, type Verdict, verdicts } from "./schema.js";

/**
 * The rollups of `jobs` (table `job_rollups`, kept by the triggers of migrations/*_rollups.sql):
 * the figure columns, the SQL that sums them from `jobs`, and the resumable backfill of days
 * recorded before the triggers existed.
 */

export const DAY_MS = 86_400_000;

/** Grains of `job_rollups`: the full key, then the sums by one dimension. */
export const grains = { full: 0, model: 1, worker: 2, key: 3 } as const;

/** Money columns summed as they are on `jobs`. */
export const rollupMoneyColumns = [
  "escrowed_units",
  "charged_units",
  "worker_paid_units",
  "treasury_paid_units",
  "refunded_units",
  "fees_lamports",
] as const;

/** Money columns also summed apart on verified jobs and on disputed (discrepancy, dropped) jobs. */
export const rollupSplitColumns = [
  "escrowed_units",
  "charged_units",
  "worker_paid_units",
  "treasury_paid_units",
  "refunded_units",
] as const;

/** Final verdicts, each counted in `jobs_<verdict>`. */
export const countedVerdicts: readonly Verdict[] = verdicts.filter(
  (v) => !openVerdicts.includes(v),
);

/** The column counting jobs of a verdict: `jobs_open` for any verdict not final. */
export const verdictCountColumn = (verdict: Verdict): string =>
  openVerdicts.includes(verdict) ? "jobs_open" : `jobs_${verdict}`;

/** Every figure column of `job_rollups`, in table order. */
export const rollupFigureColumns: readonly string[] = [
  "jobs_open",
  ...countedVerdicts.map(verdictCountColumn),
  ...rollupMoneyColumns,
  ...rollupSplitColumns.map((c) => `verified_${c}`),
  ...rollupSplitColumns.map((c) => `disputed_${c}`),
];

/**
 * The figures of the jobs in a GROUP BY, as `jobs` holds them: the same expressions the
 * triggers add per row, summed. Reports from `jobs` and the backfill both use it.
 */
export const jobsFigureSums: string = [
  `sum(verdict IN (${openVerdicts.map((v) => `'${v}'`).join(", ")})) AS jobs_open`,
  ...countedVerdicts.map((v) => `sum(verdict = '${v}') AS ${verdictCountColumn(v)}`),
  ...rollupMoneyColumns.map((c) => `coalesce(sum(${c}), 0) AS ${c}`),
  ...rollupSplitColumns.map(
    (c) => `coalesce(sum(CASE WHEN verdict = 'verified' THEN ${c} END), 0) AS verified_${c}`,
  ),
  ...rollupSplitColumns.map(
    (c) =>
      `coalesce(sum(CASE WHEN verdict IN ('discrepancy', 'dropped') THEN ${c} END), 0) AS disputed_${c}`,
  ),
].join(",\n    ");

/** Sums of the rollup figure columns, named as the columns. */
export const rollupFigureSums: string = rollupFigureColumns
  .map((c) => `sum(${c}) AS ${c}`)
  .join(", ");

/** Days per backfill transaction: short enough that writers wait well under the busy timeout. */
const backfillChunkDays = 1;

/**
 * Sums, into `job_rollups`, the days recorded before the rollup triggers existed, one day per
 * transaction, resuming where the last run stopped (`job_rollups_backfill`). Each day is
 * replaced whole (delete, then sum from `jobs`) inside its transaction, so a row the triggers
 * already added for that day is not counted twice, and a crash loses at most one day's work.
 * Returns the days summed. Safe to run from several processes: each transaction takes the
 * write lock first and re-reads the cursor.
 */
export function backfillRollups(
  store: Store,
  options: { onProgress?: (day: number, lastDay: number) => void } = {},
): number {
  const db = store.sqlite;
  const cursor = db.prepare("SELECT next_day, last_day FROM job_rollups_backfill WHERE id = 1");
  const deleteDays = db.prepare(
    "DELETE FROM job_rollups WHERE grain IN (0, 1, 2, 3) AND day BETWEEN ? AND ?",
  );
  const sumFull = db.prepare(
    `INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint, ${rollupFigureColumns.join(", ")})
     SELECT 0, created_at / ${DAY_MS}, coalesce(model, x''), coalesce(worker, x''),
       coalesce(key_fingerprint, x''),
       ${jobsFigureSums}
     FROM jobs INDEXED BY jobs_created_at
     WHERE created_at >= ? AND created_at < ?
     GROUP BY 2, 3, 4, 5`,
  );
  const marginal = (grain: number, dims: string) =>
    db.prepare(
      `INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint, ${rollupFigureColumns.join(", ")})
       SELECT ${grain}, day, ${dims}, ${rollupFigureSums}
       FROM job_rollups WHERE grain = 0 AND day BETWEEN ? AND ?
       GROUP BY 2, 3, 4, 5`,
    );
  const sumModel = marginal(grains.model, "model, x'', x''");
  const sumWorker = marginal(grains.worker, "x'', worker, x''");
  const sumKey = marginal(grains.key, "x'', x'', key_fingerprint");
  const advance = db.prepare("UPDATE job_rollups_backfill SET next_day = ? WHERE id = 1");
  const finish = db.prepare("DELETE FROM job_rollups_backfill WHERE id = 1");

  const step = db.transaction((): { day: number; lastDay: number } | null => {
    const at = cursor.get() as { next_day: number; last_day: number } | undefined;
    if (!at) return null;
    const first = at.next_day;
    const last = Math.min(at.last_day, first + backfillChunkDays - 1);
    deleteDays.run(first, last);
    sumFull.run(first * DAY_MS, (last + 1) * DAY_MS);
    for (const s of [sumModel, sumWorker, sumKey]) s.run(first, last);
    if (last >= at.last_day) finish.run();
    else advance.run(last + 1);
    return { day: last, lastDay: at.last_day };
  }).immediate;

  let days = 0;
  for (;;) {
    const done = step();
    if (done === null) return days;
    days++;
    options.onProgress?.(done.day, done.lastDay);
  }
}

/** True when every day of `jobs` is summed in the rollups (no backfill left). */
export function rollupsComplete(store: Store): boolean {
  return store.sqlite.prepare("SELECT 1 FROM job_rollups_backfill LIMIT 1").get() === undefined;
}
