import type Database from "better-sqlite3";
import type { SqliteStore } from "./client.js";
import { finalVerdicts, openVerdicts, type Verdict } from "./schema.js";
import {
  carriedHigh,
  carriedLow,
  highName,
  highPart,
  joinSplitSums,
  lowName,
  lowPart,
  splitSum,
  wholeValue,
} from "./split-sums.js";

/**
 * The rollups of `jobs` (table `job_rollups`, kept by the triggers that `rollupTriggersSql`
 * writes, installed by migrations/*_rollup*.sql): the one table of reconciliation figures, the
 * SQL that sums them from `jobs`, the triggers, and the resumable backfill of days recorded
 * before the triggers existed.
 */

export const DAY_MS = 86_400_000;
export const HOUR_MS = 3_600_000;

/**
 * The worker a job's figures are reported under (SQL over a `jobs` row `row`, or none): the
 * receipt's, else the one the jobs API names, which the checks judge a receipt without one
 * against (`evaluateJob`), so its payout counts for the worker it went to. Every report that
 * groups or filters by worker reads this, never `worker` alone.
 */
export const reportWorkerSql = (row = ""): string => {
  const r = row === "" ? "" : `${row}.`;
  return `coalesce(${r}worker, ${r}api_worker)`;
};

// Verdicts that are not final are counted together as `jobs_open`.
const quoted = (vs: readonly string[]) => vs.map((v) => `'${v}'`).join(", ");
const isOpen = `$.verdict IN (${quoted(openVerdicts)})`;
const isVerified = "$.verdict = 'verified'";
const isDisputed = "$.verdict IN ('discrepancy', 'dropped')";

/** How a figure is shown: a count of jobs, USDC base units (also as USDC), or lamports. */
export type FigureKind = "count" | "units" | "lamports";

interface FigureSpec {
  /** Name in the report (JSON key, CSV column, TypeScript field). */
  key: string;
  kind: FigureKind;
  /** Short column label (dashboard table, CSV readers). */
  label: string;
  /** One sentence for the API's schema; absent when the name says it. */
  description?: string;
  /** Column of `job_rollups` holding its sum; absent for a figure derived from others. */
  column?: string;
  /** What one job adds, as SQL over a `jobs` row named `$` (NULL counts as 0). */
  perJob?: string;
  /** Shown in the dashboard's reconciliation table. */
  dashboard: boolean;
}

/**
 * THE reconciliation figures, in report order. Everything else is derived from this table:
 * the rollup columns and triggers, the from-scratch sums over `jobs`, the report's type and
 * JSON, its CSV header, its OpenAPI schema, the dashboard's table and the recompute check.
 * A new figure is one line here (and a migration adding its rollup column and triggers).
 */
export const reportFigures = [
  { key: "jobs", kind: "count", label: "jobs", dashboard: true },
  {
    key: "verified",
    kind: "count",
    label: "verified",
    column: "jobs_verified",
    perJob: isVerified,
    dashboard: true,
  },
  {
    key: "partiallyVerified",
    kind: "count",
    label: "partial",
    description: "no check failed, but the job's own data left a money check unproven",
    column: "jobs_partially_verified",
    perJob: "$.verdict = 'partially_verified'",
    dashboard: true,
  },
  {
    key: "pending",
    kind: "count",
    label: "not final",
    description: "not final yet (pending, awaiting finality, retryable error)",
    column: "jobs_open",
    perJob: isOpen,
    dashboard: true,
  },
  {
    key: "discrepancies",
    kind: "count",
    label: "discrepancy",
    column: "jobs_discrepancy",
    perJob: "$.verdict = 'discrepancy'",
    dashboard: true,
  },
  {
    key: "dropped",
    kind: "count",
    label: "dropped",
    column: "jobs_dropped",
    perJob: "$.verdict = 'dropped'",
    dashboard: true,
  },
  {
    key: "unverifiable",
    kind: "count",
    label: "unverifiable",
    column: "jobs_unverifiable",
    perJob: "$.verdict = 'unverifiable'",
    dashboard: true,
  },
  {
    key: "chargedUnits",
    kind: "units",
    label: "charged",
    column: "charged_units",
    perJob: "$.charged_units",
    dashboard: true,
  },
  {
    key: "escrowedUnits",
    kind: "units",
    label: "escrowed",
    column: "escrowed_units",
    perJob: "$.escrowed_units",
    dashboard: true,
  },
  {
    key: "workerPaidUnits",
    kind: "units",
    label: "worker",
    column: "worker_paid_units",
    perJob: "$.worker_paid_units",
    dashboard: true,
  },
  {
    key: "treasuryPaidUnits",
    kind: "units",
    label: "treasury",
    column: "treasury_paid_units",
    perJob: "$.treasury_paid_units",
    dashboard: true,
  },
  {
    key: "refundedUnits",
    kind: "units",
    label: "refunded",
    column: "refunded_units",
    perJob: "$.refunded_units",
    dashboard: true,
  },
  {
    key: "unaccountedUnits",
    kind: "units",
    label: "unaccounted",
    description: "escrowed - worker paid - treasury paid - refunded",
    dashboard: true,
  },
  {
    key: "feesLamports",
    kind: "lamports",
    label: "fees (SOL)",
    description: "network fees of the jobs' transactions, lamports",
    column: "fees_lamports",
    perJob: "$.fees_lamports",
    dashboard: true,
  },
  ...standing("escrowed", "escrowed_units"),
  ...standing("charged", "charged_units"),
  ...standing("workerPaid", "worker_paid_units"),
  ...standing("treasuryPaid", "treasury_paid_units"),
  ...standing("refunded", "refunded_units"),
] as const satisfies readonly FigureSpec[];

/**
 * Money on verified jobs (proven in full) and on disputed ones (a failing check, or a
 * signature that never landed: discrepancy, dropped), for one money figure.
 */
function standing<const M extends string, const C extends string>(money: M, column: C) {
  const cap = `${money[0]!.toUpperCase()}${money.slice(1)}` as Capitalize<M>;
  const words = money.replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`);
  return [
    {
      key: `verified${cap}Units`,
      kind: "units",
      label: `${words} on verified`,
      description: `${words} on verified jobs, base units`,
      column: `verified_${column}`,
      perJob: `CASE WHEN ${isVerified} THEN $.${column} END`,
      dashboard: money === "charged",
    },
    {
      key: `disputed${cap}Units`,
      kind: "units",
      label: `${words} on disputed`,
      description: `${words} on disputed jobs (discrepancy or dropped), base units`,
      column: `disputed_${column}`,
      perJob: `CASE WHEN ${isDisputed} THEN $.${column} END`,
      dashboard: money === "charged",
    },
  ] as const;
}

export type ReportFigure = (typeof reportFigures)[number];
export type FigureKey = ReportFigure["key"];
/** Figures stored in `job_rollups` (every one but the derived `jobs` and `unaccountedUnits`). */
export type StoredFigure = Extract<ReportFigure, { column: string }>;

/** Counts and sums of one group (or of a whole report), every figure of `reportFigures`. */
export type FigureValues = {
  [F in ReportFigure as F["key"]]: F["kind"] extends "count" ? number : bigint;
};

export const storedFigures: readonly StoredFigure[] = reportFigures.filter(
  (f): f is StoredFigure => "column" in f,
);

/** Every figure column of `job_rollups` (PostgreSQL) and of `job_rollup_deltas`. */
export const rollupFigureColumns: readonly string[] = storedFigures.map((f) => f.column);

/** The figure columns holding money (every one but the counts). */
export const moneyFigureColumns: readonly string[] = storedFigures
  .filter((f) => f.kind !== "count")
  .map((f) => f.column);

const isMoney = (column: string) => moneyFigureColumns.includes(column);

/**
 * The figure columns of SQLite's `job_rollups`: each count as it is, each sum of money as its
 * two parts (src/db/split-sums.ts), so no sum passes 2^63.
 */
export const sqliteRollupColumns: readonly string[] = rollupFigureColumns.flatMap((c) =>
  isMoney(c) ? [lowName(c), highName(c)] : [c],
);

/**
 * Per figure column, SQL for its value (counts) or its two parts (money), in
 * `sqliteRollupColumns` order.
 */
const eachStored = (count: (c: string) => string, money: (c: string) => string[]): string =>
  rollupFigureColumns.flatMap((c) => (isMoney(c) ? money(c) : [count(c)])).join(", ");

/**
 * Sums of stored parts (rows of `job_rollups`, or partial sums in the same columns) into a
 * stored value: the low part kept in [0, 2^32), its carry moved to the high part. `from` is
 * the table alias, with its dot.
 */
const carriedSums = (from: string): string =>
  eachStored(
    (c) => `sum(${from}${c}) AS ${c}`,
    (c) => [
      `${carriedLow(`sum(${from}${lowName(c)})`)} AS ${lowName(c)}`,
      `${carriedHigh(`sum(${from}${highName(c)})`, `sum(${from}${lowName(c)})`)} AS ${highName(c)}`,
    ],
  );

/** A row of SQLite's rollup columns with each sum of money joined into one exact bigint. */
export const joinRollupRow = <T extends Record<string, unknown>>(row: T) =>
  joinSplitSums(row, moneyFigureColumns);

/** A figure of one `jobs` row (`new`, `old`, or none for a GROUP BY over `jobs`). */
const perJob = (f: StoredFigure, row: string) => {
  const expr = f.perJob.replaceAll("$.", row === "" ? "" : `${row}.`);
  return f.kind === "count" ? `(${expr})` : `coalesce(${expr}, 0)`;
};

/**
 * The figures of the jobs in a GROUP BY, as `jobs` holds them: the same expressions the
 * triggers add per row, summed. The backfill and the recompute use it.
 */
export const jobsFigureSums: string = storedFigures
  .map((f) =>
    f.kind === "count"
      ? `coalesce(sum(${perJob(f, "")}), 0) AS ${f.column}`
      : splitSum(perJob(f, ""), f.column),
  )
  .join(",\n    ");

/** The `jobs` columns the figures read besides the verdict: each money column once. */
const figureColumns: readonly string[] = (() => {
  const columns = new Set<string>();
  for (const f of storedFigures) {
    const read = [...f.perJob.matchAll(/\$\.(\w+)/g)].map((m) => m[1]!);
    const money = read.filter((c) => c !== "verdict");
    // What makes `figureSumsByVerdict` exact: a count is a predicate on the verdict alone,
    // money is one column as it is, or under such a predicate (nothing added, scaled or
    // defaulted, which would not sum the same in two steps).
    const shaped =
      f.kind === "count"
        ? money.length === 0
        : money.length === 1 &&
          new RegExp(
            `^(CASE WHEN [^$]*(\\$\\.verdict[^$]*)* THEN )?\\$\\.${money[0]}( END)?$`,
          ).test(f.perJob) &&
          f.perJob.startsWith("CASE") === f.perJob.endsWith(" END");
    if (!shaped) {
      throw new Error(`figure ${f.key} is not a verdict predicate over at most one column`);
    }
    for (const c of money) columns.add(c);
  }
  return [...columns];
})();

/**
 * The figures of the jobs of a range in two steps, for a report's partial hours: `inner`
 * groups the jobs by group and verdict (a count and a plain sum of each money column), `outer`
 * sums those rows by group into every figure. Exact, since the verdict, the one thing a figure's
 * predicate reads, is constant within a (group, verdict) row and each figure is linear in its
 * column. A job then costs one count and six plain sums instead of every figure's CASE
 * (about half the time over 10,000 jobs). `jobs` stays `jobsFigureSums`' independent check.
 */
export function figureSumsByVerdict(
  dialect: "sqlite" | "postgres",
  /**
   * SQLite: `whole` sums each money column in one `sum()`, exact when every value comes back
   * an INTEGER (`wholeSumsFit`; past 2^63 it raises instead), `split` in two parts.
   */
  sums: "split" | "whole" = dialect === "sqlite" ? "split" : "whole",
): {
  inner: string;
  outer: string;
} {
  // SQLite sums each money column in two parts (src/db/split-sums.ts): past 2^63, sum() fails.
  const split = sums === "split";
  const inner = [
    "verdict",
    "count(*) AS n",
    ...figureColumns.map((c) =>
      split
        ? `sum(${lowPart(c)}) AS ${lowName(c)}, sum(${highPart(c)}) AS ${highName(c)}`
        : `sum(${c}) AS ${c}`,
    ),
  ];
  const outer = storedFigures.map((f) => {
    const expr = f.perJob.replaceAll("$.", "");
    const part = (name: (c: string) => string) =>
      f.perJob.replace(/\$\.(\w+)/g, (_, c: string) => (c === "verdict" ? c : name(c)));
    if (f.kind !== "count" && split) {
      return `coalesce(sum(${part(lowName)}), 0) AS ${lowName(f.column)}, coalesce(sum(${part(highName)}), 0) AS ${highName(f.column)}`;
    }
    if (f.kind !== "count") return `coalesce(sum(${expr}), 0) AS ${f.column}`;
    return dialect === "postgres"
      ? `coalesce(sum((${expr})::int * n), 0) AS ${f.column}`
      : `coalesce(sum((${expr}) * n), 0) AS ${f.column}`;
  });
  return { inner: inner.join(", "), outer: outer.join(",\n    ") };
}

/** Sums of the rollup figure columns, named as the columns (PostgreSQL). */
export const rollupFigureSums: string = rollupFigureColumns
  .map((c) => `sum(${c}) AS ${c}`)
  .join(", ");

/**
 * Sums of SQLite's rollup figure columns: each count, and the two parts of each sum of money
 * summed apart (`joinRollupRow` joins them).
 */
export const sqliteRollupSums: string = eachStored(
  (c) => `sum(${c}) AS ${c}`,
  (c) => [`sum(${lowName(c)}) AS ${lowName(c)}`, `sum(${highName(c)}) AS ${highName(c)}`],
);

/**
 * The same sums, each sum of money read whole (`wholeValue`, one `sum()` a figure instead of
 * two): exact when every value comes back an INTEGER (`wholeSumsFit`), else read again by
 * `sqliteRollupSums`. A quarter less work a row for the reports that read the most rows.
 */
export const sqliteRollupWholeSums: string = eachStored(
  (c) => `sum(${c}) AS ${c}`,
  (c) => [`sum(${wholeValue(c)}) AS ${c}`],
);

/**
 * Grains of `job_rollups`. Day grains: the full key (day, model, worker, key), then the sums by
 * one dimension. Hour grains: the sums by one dimension per UTC hour, which answer the whole
 * hours of a period's first and last day, so only the jobs of its partial hours are read. The
 * `day` column holds the bucket: the UTC day number for day grains, the UTC hour number
 * (created_at / 3600000) for hour grains.
 */
export const grains = {
  full: 0,
  model: 1,
  worker: 2,
  key: 3,
  hourModel: 4,
  hourWorker: 5,
  hourKey: 6,
} as const;

/** Each grain's bucket length and the dimensions it keeps. */
const grainShape: Record<number, { ms: number; dims: ("model" | "worker" | "key_fingerprint")[] }> =
  {
    [grains.full]: { ms: DAY_MS, dims: ["model", "worker", "key_fingerprint"] },
    [grains.model]: { ms: DAY_MS, dims: ["model"] },
    [grains.worker]: { ms: DAY_MS, dims: ["worker"] },
    [grains.key]: { ms: DAY_MS, dims: ["key_fingerprint"] },
    [grains.hourModel]: { ms: HOUR_MS, dims: ["model"] },
    [grains.hourWorker]: { ms: HOUR_MS, dims: ["worker"] },
    [grains.hourKey]: { ms: HOUR_MS, dims: ["key_fingerprint"] },
  };
const allGrains = Object.values(grains);
const dayGrains = [grains.full, grains.model, grains.worker, grains.key];
const hourGrains = [grains.hourModel, grains.hourWorker, grains.hourKey];

const grainsWith = (dim: string) =>
  allGrains.filter((g) => grainShape[g]!.dims.includes(dim as "model")).join(", ");

const rollupInsertHead = `INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    ${sqliteRollupColumns.join(", ")})`;

/** SET clauses adding the figures of `add` (a row alias, with its dot) to the stored ones of `to`. */
const addFigures = (to: string, add: string): string =>
  eachStored(
    (c) => `${c} = ${to}${c} + ${add}${c}`,
    (c) => {
      const low = `${to}${lowName(c)} + ${add}${lowName(c)}`;
      return [
        `${lowName(c)} = ${carriedLow(low)}`,
        `${highName(c)} = ${carriedHigh(`${to}${highName(c)} + ${add}${highName(c)}`, low)}`,
      ];
    },
  ).replaceAll(", ", ",\n    ");
const rollupUpsertTail = `ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    ${addFigures("", "excluded.")}`;
const grainRows = `(${allGrains.map((g, i) => (i === 0 ? `SELECT ${g} AS grain` : `SELECT ${g}`)).join(" UNION ALL ")}) AS g`;

/**
 * Rows of `jobs` changes not yet summed into `job_rollups`: one row per written job (two when
 * a job moves to another group), keyed by the job's time and full key, holding what the write
 * adds to each figure (negative for what it takes away). The triggers on `jobs` append here,
 * which costs a writer one narrow insert per job instead of an upsert per grain;
 * `foldRollupDeltasSql` sums them into every grain at once: in a transaction of its own on the
 * WAL checkpointer's thread once half that many are pending (src/db/wal-checkpointer.ts), at
 * the end of each batch of receipts (an import), and whenever the table reaches
 * `deltaFoldRows` rows (the fold trigger, in the transaction that wrote the last one).
 * Readers add the pending rows (`currentRollups`), so rollups plus deltas always equal the jobs.
 */
export const rollupDeltasTable = "job_rollup_deltas";

/** Pending delta rows at which a write folds them (bounds what every report reads extra). */
export const deltaFoldRows = 1024;

const deltaInsertHead = `INSERT INTO ${rollupDeltasTable} (created_at, model, worker, key_fingerprint,
    ${rollupFigureColumns.join(", ")})`;

/** A job moved to another bucket or group: its old rows lose it, its new rows gain it. */
const movedSql = `(new.created_at / ${HOUR_MS} IS NOT old.created_at / ${HOUR_MS}
    OR new.model IS NOT old.model OR ${reportWorkerSql("new")} IS NOT ${reportWorkerSql("old")}
    OR new.key_fingerprint IS NOT old.key_fingerprint)`;

/** The bucket of grain `grain` (SQL) for a time `at` (SQL, epoch ms). */
const bucketOf = (grain: string, at: string) =>
  `${at} / CASE WHEN ${grain} >= ${grains.hourModel} THEN ${HOUR_MS} ELSE ${DAY_MS} END`;
/** A dimension of a delta row `d` in grain `grain`: x'' where the grain does not keep it. */
const dimOf = (grain: string, dim: string, d: string) =>
  `CASE WHEN ${grain} IN (${grainsWith(dim)}) THEN ${d}.${dim} ELSE x'' END`;
const dims = ["model", "worker", "key_fingerprint"] as const;

/**
 * The pending deltas summed per grain key: by hour and full key first, so each grain sums a few
 * rows. CROSS JOIN keeps the hourly sums the outer loop: as the inner one they were summed again
 * for every grain. (`WHERE true` lets an upsert follow: see SQLite's parsing ambiguity.)
 */
const deltaGrainSums = `SELECT g.grain AS grain, ${bucketOf("g.grain", `h.hour * ${HOUR_MS}`)} AS day,
    ${dims.map((dim) => `${dimOf("g.grain", dim, "h")} AS ${dim}`).join(",\n    ")},
    ${carriedSums("h.")}
  FROM (SELECT created_at / ${HOUR_MS} AS hour, model, worker, key_fingerprint,
      ${eachStored(
        (c) => `sum(${c}) AS ${c}`,
        (c) => [`sum(${lowPart(c)}) AS ${lowName(c)}`, `sum(${highPart(c)}) AS ${highName(c)}`],
      )}
    FROM ${rollupDeltasTable} GROUP BY 1, 2, 3, 4) AS h CROSS JOIN ${grainRows}
  WHERE true
  GROUP BY 1, 2, 3, 4, 5`;

/**
 * Sums the pending deltas into every grain of `job_rollups` (by hour and full key first, so
 * each grain sums a few rows), then empties the table. Runs inside the writer's transaction.
 */
export function foldRollupDeltasSql(): [string, string] {
  return [
    `${rollupInsertHead}
  ${deltaGrainSums}
  ${rollupUpsertTail}`,
    `DELETE FROM ${rollupDeltasTable}`,
  ];
}

/**
 * The fold as the trigger runs it: the same sums as `foldRollupDeltasSql`, written as an INSERT
 * of the missing keys and an UPDATE ... FROM instead of an upsert. An upsert's DO UPDATE always
 * aborts on a constraint error, so SQLite compiles every statement that can fire the trigger
 * with a statement journal (a copy of each page the statement touches, taken for each row
 * written: a third of a receipt insert); these two statements follow the conflict policy of
 * the statement that fired them, so a writer that asks for OR IGNORE (the receipt insert) pays
 * for none.
 */
function foldRollupDeltasInTriggerSql(): string[] {
  const keyMatch = (r: string) =>
    ["grain", "day", ...dims].map((c) => `${r}.${c} = s.${c}`).join(" AND ");
  // The updated table unaliased: an older SQLite (3.40, Debian 12's `sqlite3`) refuses an
  // alias there inside a trigger, and then cannot read the database's schema at all.
  return [
    `INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint)
  SELECT s.grain, s.day, s.model, s.worker, s.key_fingerprint FROM (${deltaGrainSums}) AS s
  WHERE NOT EXISTS (SELECT 1 FROM job_rollups AS r WHERE ${keyMatch("r")})`,
    `UPDATE job_rollups SET
    ${addFigures("job_rollups.", "s.")}
  FROM (${deltaGrainSums}) AS s
  WHERE ${keyMatch("job_rollups")}`,
    `DELETE FROM ${rollupDeltasTable}`,
  ];
}

/**
 * What reports read instead of `job_rollups`: its rows and the pending deltas, each as the
 * grain rows it will be summed into (one arm per grain, so a query's `grain = N` leaves one arm
 * to scan). Several rows may share a key: readers sum them.
 */
export const currentRollups = `(SELECT grain, day, model, worker, key_fingerprint, ${sqliteRollupColumns.join(", ")}
    FROM job_rollups
  ${allGrains
    .map(
      (g) => `UNION ALL SELECT ${g}, ${bucketOf(String(g), "created_at")},
    ${dims.map((dim) => dimOf(String(g), dim, rollupDeltasTable)).join(", ")},
    ${eachStored(
      (c) => c,
      (c) => [lowPart(c), highPart(c)],
    )} FROM ${rollupDeltasTable}`,
    )
    .join("\n  ")})`;

/**
 * The rollup triggers (the migration holds this text; a test compares them), generated from
 * `reportFigures`. The triggers on `jobs`, one per kind of write, append what the write changes
 * to `job_rollup_deltas`. The update trigger fires only when a reported figure or a group
 * changes: moves between verdicts that are not final (the most frequent verdict writes) leave
 * it alone. When the job stays in its groups it appends the difference new - old; when it
 * moves, the old figures negated and the new ones. The last trigger folds the deltas once
 * `deltaFoldRows` are pending, whichever path wrote them.
 */
export function rollupTriggersSql(): string[] {
  const dimExpr = (row: string, dim: string) =>
    dim === "worker" ? `coalesce(${reportWorkerSql(row)}, x'')` : `coalesce(${row}.${dim}, x'')`;
  const key = (row: string) =>
    [`${row}.created_at`, ...dims.map((dim) => dimExpr(row, dim))].join(", ");
  const insert = `CREATE TRIGGER \`jobs_rollup_insert\` AFTER INSERT ON \`jobs\` BEGIN
  ${deltaInsertHead}
  VALUES (${key("new")},
    ${storedFigures.map((f) => perJob(f, "new")).join(",\n    ")});
END`;
  // Cheap to test, since it runs on every verdict write: the count a job falls in (the count
  // figures split the verdicts), and each other column any figure reads.
  const countClass = (row: string) =>
    `CASE ${storedFigures
      .filter((f) => f.kind === "count")
      .map((f, i) => `WHEN ${perJob(f, row)} THEN ${i}`)
      .join(" ")} END`;
  const readColumns = [
    ...new Set(
      storedFigures.flatMap((f) => [...f.perJob.matchAll(/\$\.(\w+)/g)].map((m) => m[1]!)),
    ),
  ].filter((c) => c !== "verdict");
  const changed = [
    `${countClass("new")} IS NOT ${countClass("old")}`,
    ...readColumns.map((c) => `coalesce(new.${c}, 0) IS NOT coalesce(old.${c}, 0)`),
  ].join("\n    OR ");
  // s.add_new: the row gains the new figures; s.sub_old: it loses the old. One row (1, 1) keyed
  // by the new values when the job stays in its groups, else (1, 0) new and (0, 1) old.
  const sides = `(SELECT 1 AS add_new, 1 - ${movedSql} AS sub_old
    UNION ALL SELECT 0, 1 WHERE ${movedSql}) AS s`;
  const keyColumns = [
    (row: string) => `${row}.created_at`,
    ...dims.map((dim) => (row: string) => dimExpr(row, dim)),
  ];
  const side = (expr: (row: string) => string) =>
    `CASE WHEN s.add_new THEN ${expr("new")} ELSE ${expr("old")} END`;
  const update = `CREATE TRIGGER \`jobs_rollup_update\` AFTER UPDATE OF verdict, created_at, model, worker, api_worker, key_fingerprint, ${readColumns.join(", ")} ON \`jobs\`
  WHEN ${movedSql}
    OR ${changed}
BEGIN
  ${deltaInsertHead}
  SELECT ${keyColumns.map(side).join(",\n    ")},
    ${storedFigures.map((f) => `s.add_new * ${perJob(f, "new")} - s.sub_old * ${perJob(f, "old")}`).join(",\n    ")}
  FROM ${sides};
END`;
  const del = `CREATE TRIGGER \`jobs_rollup_delete\` AFTER DELETE ON \`jobs\` BEGIN
  ${deltaInsertHead}
  VALUES (${key("old")},
    ${storedFigures.map((f) => `-${perJob(f, "old")}`).join(",\n    ")});
END`;
  // Rowids restart at 1 once the table is emptied, so the rowid counts the pending rows.
  const fold = `CREATE TRIGGER \`jobs_rollup_fold\` AFTER INSERT ON \`${rollupDeltasTable}\`
  WHEN new.rowid >= ${deltaFoldRows}
BEGIN
  ${foldRollupDeltasInTriggerSql().join(";\n  ")};
END`;
  return [insert, update, del, fold];
}

const foldStatements = new WeakMap<Database.Database, Database.Statement[]>();

/**
 * Sums the pending rollup deltas into `job_rollups`: writers call it at the end of a batch,
 * inside its transaction; the backfill before it replaces a day.
 */
export function foldRollupDeltas(store: SqliteStore): void {
  let statements = foldStatements.get(store.sqlite);
  if (statements === undefined) {
    statements = foldRollupDeltasSql().map((text) => store.sqlite.prepare(text));
    foldStatements.set(store.sqlite, statements);
  }
  for (const statement of statements) statement.run();
}

/** Final verdicts, each counted in `jobs_<verdict>`. */
export const countedVerdicts: readonly Verdict[] = finalVerdicts;

/** The column counting jobs of a verdict: `jobs_open` for any verdict not final. */
export const verdictCountColumn = (verdict: Verdict): string =>
  openVerdicts.includes(verdict) ? "jobs_open" : `jobs_${verdict}`;

/** Days per backfill transaction: short enough that writers wait well under the busy timeout. */
const backfillChunkDays = 1;

/**
 * Sums, into `job_rollups`, the days recorded before the rollup triggers existed (or before a
 * grain was added), one day per transaction, resuming where the last run stopped
 * (`job_rollups_backfill`). Each day is replaced whole (delete, then sum from `jobs`) inside its
 * transaction, so a row the triggers already added for that day is not counted twice, and a
 * crash loses at most one day's work. Returns the days summed. Safe to run from several
 * processes: each transaction takes the write lock first and re-reads the cursor.
 */
export function backfillRollups(
  store: SqliteStore,
  options: { onProgress?: (day: number, lastDay: number) => void } = {},
): number {
  const db = store.sqlite;
  const cursor = db.prepare("SELECT next_day, last_day FROM job_rollups_backfill WHERE id = 1");
  const deleteDays = db.prepare(
    `DELETE FROM job_rollups WHERE (grain IN (${dayGrains.join(", ")}) AND day BETWEEN ? AND ?)
       OR (grain IN (${hourGrains.join(", ")}) AND day BETWEEN ? AND ?)`,
  );
  // Full key by hour first (a temporary table), then every grain from it.
  db.exec(`CREATE TEMP TABLE IF NOT EXISTS rollup_backfill_hours AS
    SELECT 0 AS hour, model, worker, key_fingerprint, ${sqliteRollupColumns.join(", ")}
    FROM job_rollups WHERE false`);
  const clearHours = db.prepare("DELETE FROM temp.rollup_backfill_hours");
  const sumHours = db.prepare(
    `INSERT INTO temp.rollup_backfill_hours
     SELECT created_at / ${HOUR_MS}, coalesce(model, x''), coalesce(${reportWorkerSql()}, x''),
       coalesce(key_fingerprint, x''),
       ${jobsFigureSums}
     FROM jobs INDEXED BY jobs_created_at
     WHERE created_at >= ? AND created_at < ?
     GROUP BY 1, 2, 3, 4`,
  );
  const fromHours = (grain: number) => {
    const { ms, dims } = grainShape[grain]!;
    const dim = (d: string) => (dims.includes(d as "model") ? d : "x''");
    return db.prepare(
      `INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint, ${sqliteRollupColumns.join(", ")})
       SELECT ${grain}, hour / ${ms / HOUR_MS}, ${dim("model")}, ${dim("worker")}, ${dim("key_fingerprint")},
         ${carriedSums("")}
       FROM temp.rollup_backfill_hours
       GROUP BY 2, 3, 4, 5`,
    );
  };
  const sums = allGrains.map(fromHours);
  const advance = db.prepare("UPDATE job_rollups_backfill SET next_day = ? WHERE id = 1");
  const finish = db.prepare("DELETE FROM job_rollups_backfill WHERE id = 1");

  const step = db.transaction((): { day: number; lastDay: number } | null => {
    const at = cursor.get() as { next_day: number; last_day: number } | undefined;
    if (!at) return null;
    const first = at.next_day;
    const last = Math.min(at.last_day, first + backfillChunkDays - 1);
    // Pending deltas of the day would count twice once it is summed from the jobs.
    foldRollupDeltas(store);
    deleteDays.run(first, last, first * 24, last * 24 + 23);
    clearHours.run();
    sumHours.run(first * DAY_MS, (last + 1) * DAY_MS);
    for (const s of sums) s.run();
    clearHours.run();
    if (last >= at.last_day) finish.run();
    else advance.run(last + 1);
    return { day: last, lastDay: at.last_day };
  }).immediate;

  // Nothing left to sum (every start but those after the upgrade that added the rollups): read
  // without the write lock, which another process (an import, a backup) may hold for long.
  if (cursor.get() === undefined) return 0;
  let days = 0;
  for (;;) {
    const done = step();
    if (done === null) return days;
    days++;
    options.onProgress?.(done.day, done.lastDay);
  }
}

/** True when every day of `jobs` is summed in the rollups (no backfill left). */
export function rollupsComplete(store: SqliteStore): boolean {
  return store.sqlite.prepare("SELECT 1 FROM job_rollups_backfill LIMIT 1").get() === undefined;
}
