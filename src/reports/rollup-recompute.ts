import type { Store } from "../db/client.js";
import { DAY_MS, grains, jobsFigureSums, rollupFigureColumns } from "../db/rollups.js";
import { dayOf } from "./period.js";

export type GrainName = keyof typeof grains;

/** One figure of one rollup row that differs from the same figure summed from `jobs`. */
export interface RollupDifference {
  grain: GrainName;
  /** UTC day, `YYYY-MM-DD`. */
  day: string;
  /** Dimensions of the row; null when not recorded on the jobs, or not part of the grain. */
  model: string | null;
  worker: string | null;
  keyFingerprint: string | null;
  /** Column of `job_rollups`, e.g. `charged_units`, `jobs_verified`. */
  column: string;
  /** What the rollups hold and what the jobs add up to (0 for a row one side lacks). */
  rollup: bigint;
  recomputed: bigint;
}

export interface RollupCheck {
  /** Days compared, [firstDay, endDay) as `YYYY-MM-DD`; null when the store holds nothing. */
  firstDay: string | null;
  lastDay: string | null;
  days: number;
  /** Rollup rows compared (every grain), counting rows only one side has. */
  rows: number;
  /** Capped at `maxDifferences`; `differenceCount` counts them all. */
  differences: RollupDifference[];
  differenceCount: number;
}

type Row = {
  grain: bigint;
  model: string | Buffer;
  worker: string | Buffer;
  key_fingerprint: string | Buffer;
} & Record<string, bigint>;

const grainNames = Object.fromEntries(Object.entries(grains).map(([k, v]) => [v, k])) as Record<
  number,
  GrainName
>;

const dim = (value: string | Buffer): string | null => (typeof value === "string" ? value : null);

/**
 * Compares every rollup row of the days in [from, to) (all days when not given) with the same
 * figures summed from scratch over `jobs`, to the base unit: the full-key rows and the three
 * marginals, built here from the from-scratch full-key sums. One day per read transaction, so
 * each comparison sees one consistent snapshot while writers go on; memory holds one day.
 */
export function recomputeRollups(
  store: Store,
  options: { from?: number; to?: number; maxDifferences?: number } = {},
): RollupCheck {
  const db = store.sqlite;
  const maxDifferences = options.maxDifferences ?? 1000;
  const bounds = db
    .prepare(
      `SELECT min(d) AS first, max(d) AS last FROM (
         SELECT (SELECT min(created_at) FROM jobs) / ${DAY_MS} AS d
         UNION ALL SELECT (SELECT max(created_at) FROM jobs) / ${DAY_MS}
         UNION ALL SELECT min(day) FROM job_rollups WHERE grain = 0
         UNION ALL SELECT max(day) FROM job_rollups WHERE grain = 0)`,
    )
    .get() as { first: number | null; last: number | null };
  const check: RollupCheck = {
    firstDay: null,
    lastDay: null,
    days: 0,
    rows: 0,
    differences: [],
    differenceCount: 0,
  };
  if (bounds.first === null || bounds.last === null) return check;
  const first = Math.max(
    bounds.first,
    options.from === undefined ? bounds.first : Math.floor(options.from / DAY_MS),
  );
  const last = Math.min(
    bounds.last,
    options.to === undefined ? bounds.last : Math.ceil(options.to / DAY_MS) - 1,
  );
  if (first > last) return check;
  check.firstDay = dayOf(first);
  check.lastDay = dayOf(last);

  const scratch = db
    .prepare(
      `SELECT 0 AS grain, coalesce(model, x'') AS model, coalesce(worker, x'') AS worker,
         coalesce(key_fingerprint, x'') AS key_fingerprint,
         ${jobsFigureSums}
       FROM jobs INDEXED BY jobs_created_at
       WHERE created_at >= ? AND created_at < ?
       GROUP BY 2, 3, 4`,
    )
    .safeIntegers(true);
  const stored = db
    .prepare(
      `SELECT grain, model, worker, key_fingerprint, ${rollupFigureColumns.join(", ")}
       FROM job_rollups WHERE grain IN (0, 1, 2, 3) AND day = ?`,
    )
    .safeIntegers(true);

  const keyOf = (grain: number, row: Row) =>
    JSON.stringify([
      grain,
      grain === 0 || grain === 1 ? dim(row.model) : null,
      grain === 0 || grain === 2 ? dim(row.worker) : null,
      grain === 0 || grain === 3 ? dim(row.key_fingerprint) : null,
    ]);

  const compareDay = db.transaction((day: number) => {
    const expected = new Map<string, Row>();
    const add = (key: string, row: Row) => {
      const into = expected.get(key);
      if (!into) {
        expected.set(key, { ...row });
        return;
      }
      for (const c of rollupFigureColumns) into[c] = (into[c] ?? 0n) + (row[c] ?? 0n);
    };
    for (const row of scratch.all(day * DAY_MS, (day + 1) * DAY_MS) as Row[]) {
      for (const grain of [0, 1, 2, 3]) add(keyOf(grain, row), row);
    }
    const actual = new Map<string, Row>();
    for (const row of stored.all(day) as Row[]) actual.set(keyOf(Number(row.grain), row), row);

    for (const key of new Set([...expected.keys(), ...actual.keys()])) {
      check.rows++;
      const want = expected.get(key);
      const have = actual.get(key);
      const [grain, model, worker, keyFingerprint] = JSON.parse(key) as [
        number,
        string | null,
        string | null,
        string | null,
      ];
      for (const column of rollupFigureColumns) {
        const recomputed = want?.[column] ?? 0n;
        const rollup = have?.[column] ?? 0n;
        if (recomputed === rollup) continue;
        check.differenceCount++;
        if (check.differences.length < maxDifferences) {
          check.differences.push({
            grain: grainNames[grain] ?? "full",
            day: dayOf(day),
            model,
            worker,
            keyFingerprint,
            column,
            rollup,
            recomputed,
          });
        }
      }
    }
  });
  for (let day = first; day <= last; day++) {
    compareDay.immediate(day);
    check.days++;
  }
  return check;
}

/** The check as text: one line when the rollups match, else one line per difference. */
export function rollupCheckToText(check: RollupCheck): string {
  const span =
    check.firstDay === null ? "no jobs recorded" : `${check.firstDay} to ${check.lastDay}`;
  const head = `rollups compared with jobs from scratch: ${check.days} days (${span}), ${check.rows} rollup rows`;
  if (check.differenceCount === 0) return `${head}: no difference\n`;
  const lines = [
    `${head}: ${check.differenceCount} differences${check.differenceCount > check.differences.length ? ` (first ${check.differences.length} listed)` : ""}`,
  ];
  for (const d of check.differences) {
    const where = [
      `grain ${d.grain}`,
      d.day,
      `model ${d.model ?? "-"}`,
      `worker ${d.worker ?? "-"}`,
      `key ${d.keyFingerprint ?? "-"}`,
    ].join(" ");
    lines.push(
      `  ${where}: ${d.column} rollup ${d.rollup} jobs ${d.recomputed} (off by ${d.rollup - d.recomputed})`,
    );
  }
  return `${lines.join("\n")}\n`;
}
