import {
  DAY_MS,
  grains,
  HOUR_MS,
  reportWorkerSql,
  type StoredFigure,
  storedFigures,
} from "../rollups.js";

/**
 * The PostgreSQL rollup triggers of `jobs`, generated from `reportFigures` as
 * `rollupTriggersSql()` generates the SQLite triggers: the same grains, buckets, figures and
 * "open" verdicts. The migration holds this text (test/pg-schema.test.ts compares the installed
 * functions and triggers with it).
 *
 * Statement triggers over transition tables: one upsert per statement, whatever its number of
 * rows. A row trigger upserted the same few rollup rows once per job (a batch of 1,000 receipts
 * of one day moved each of its rows 1,000 times, each a new row version). Here the statement's
 * old rows count negated and its new rows added, summed per rollup key first, so a job that
 * keeps its groups cancels out and a job that moves takes its figures from one row to the
 * other. Rows are written in key order, so concurrent writers lock them in the same order.
 */

const dimsOf: Record<number, readonly string[]> = {
  [grains.full]: ["model", "worker", "key_fingerprint"],
  [grains.model]: ["model"],
  [grains.worker]: ["worker"],
  [grains.key]: ["key_fingerprint"],
  [grains.hourModel]: ["model"],
  [grains.hourWorker]: ["worker"],
  [grains.hourKey]: ["key_fingerprint"],
};
const allGrains = Object.values(grains);
const grainsWith = (dim: string) => allGrains.filter((g) => dimsOf[g]!.includes(dim)).join(", ");

/** Columns of `jobs` the figures read, besides the verdict. */
const readColumns = [
  ...new Set(storedFigures.flatMap((f) => [...f.perJob.matchAll(/\$\.(\w+)/g)].map((m) => m[1]!))),
].filter((c) => c !== "verdict");

/** What one job row (`row`: an alias of a `jobs` row) adds to a figure; booleans count as 0/1. */
const perJob = (f: StoredFigure, row: string) => {
  const expr = f.perJob.replaceAll("$.", `${row}.`);
  return f.kind === "count" ? `(${expr})::int` : `coalesce(${expr}, 0)`;
};

const figureColumns = storedFigures.map((f) => f.column);
const rowColumns = ["created_at", "model", "worker", "key_fingerprint", "verdict", ...readColumns];
/** A row's values for `rowColumns` (`row.` prefixed): its worker is the one reported. */
const rowValues = (row: string) =>
  rowColumns
    .map((c) => (c === "worker" ? reportWorkerSql(row) : row === "" ? c : `${row}.${c}`))
    .join(", ");

/** The transition tables the triggers name (`REFERENCING … AS`). */
const oldRows = "old_jobs";
const newRows = "new_jobs";

/** The rollup dimensions of grain `g` (NULL where the grain does not group by it). */
const dimensionsOf = (row: string) =>
  (["model", "worker", "key_fingerprint"] as const)
    .map((dim) => `CASE WHEN g.grain IN (${grainsWith(dim)}) THEN ${row}.${dim} END`)
    .join(",\n    ");

/**
 * The upsert of the sums of `source`, a FROM item `c (sign, <rowColumns>)` (rows kept by
 * `where`): one row per rollup key in key order; keys whose every sum is 0 are skipped, so a
 * statement that changes nothing the rollups count locks no rollup row.
 */
function upsertSums(source: string, where = ""): string {
  const sums = storedFigures.map((f) => `sum(c.sign * ${perJob(f, "c")})`);
  return `INSERT INTO job_rollups AS r (grain, day, model, worker, key_fingerprint,
    ${figureColumns.join(", ")})
  SELECT g.grain,
    c.created_at / CASE WHEN g.grain >= ${grains.hourModel} THEN ${HOUR_MS} ELSE ${DAY_MS} END,
    ${dimensionsOf("c")},
    ${sums.join(",\n    ")}
  FROM ${source}
  CROSS JOIN (VALUES ${allGrains.map((g) => `(${g})`).join(", ")}) AS g (grain)${where}
  GROUP BY 1, 2, 3, 4, 5
  HAVING ${sums.map((s) => `${s} <> 0`).join("\n    OR ")}
  ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    ${figureColumns.map((c) => `${c} = r.${c} + EXCLUDED.${c}`).join(",\n    ")};`;
}

const rowsOf = (table: string, sign: number) =>
  `(SELECT ${sign}, ${rowValues("")} FROM ${table}) AS c (sign, ${rowColumns.join(", ")})`;

/**
 * An update's old and new rows of a job, paired by job id (a row whose id changed has no pair
 * and counts whole), for the jobs whose change the rollups see (`pgRollupUpdateWhen`): lease
 * claims, renewals and moves between open verdicts pass nothing on.
 */
const changedRows = `${oldRows} AS o FULL JOIN ${newRows} AS n ON n.job_id = o.job_id
  CROSS JOIN LATERAL (VALUES
    (o.job_id, -1, ${rowValues("o")}),
    (n.job_id, 1, ${rowValues("n")})
  ) AS c (job_id, sign, ${rowColumns.join(", ")})`;

/** The trigger functions, by the operation they serve (what `pg_proc.prosrc` holds). */
export function pgRollupFunctionBodies(): Record<"insert" | "update" | "delete", string> {
  const body = (statement: string) => `
BEGIN
  ${statement}
  RETURN NULL;
END;
`;
  return {
    insert: body(upsertSums(rowsOf(newRows, 1))),
    delete: body(upsertSums(rowsOf(oldRows, -1))),
    update: body(
      upsertSums(
        changedRows,
        `
  WHERE c.job_id IS NOT NULL
    AND (o.job_id IS NULL OR n.job_id IS NULL
    OR ${pgRollupUpdateWhen().replaceAll("OLD.", "o.").replaceAll("NEW.", "n.")})`,
      ),
    ),
  };
}

/**
 * Whether an update of one job changes what the rollups count: its hour bucket, a group, the
 * count its verdict falls in, or a figure it reads (as the SQLite trigger's WHEN), so moves
 * between verdicts that are not final leave the rollups alone.
 */
export function pgRollupUpdateWhen(): string {
  const countClass = (row: string) =>
    `CASE ${storedFigures
      .filter((f) => f.kind === "count")
      .map((f, i) => `WHEN ${f.perJob.replaceAll("$.", `${row}.`)} THEN ${i}`)
      .join(" ")} END`;
  return [
    `OLD.created_at / ${HOUR_MS} IS DISTINCT FROM NEW.created_at / ${HOUR_MS}`,
    ...["model", "key_fingerprint"].map((c) => `OLD.${c} IS DISTINCT FROM NEW.${c}`),
    `${reportWorkerSql("OLD")} IS DISTINCT FROM ${reportWorkerSql("NEW")}`,
    `${countClass("OLD")} IS DISTINCT FROM ${countClass("NEW")}`,
    ...readColumns.map((c) => `coalesce(OLD.${c}, 0) IS DISTINCT FROM coalesce(NEW.${c}, 0)`),
  ].join("\n    OR ");
}

/**
 * The statements the migration holds: the row triggers and their function go, and each
 * operation gets its statement trigger and function (transition tables allow one event a
 * trigger, and neither a column list nor a WHEN: the update function filters itself).
 */
export function pgRollupTriggersSql(): string[] {
  const bodies = pgRollupFunctionBodies();
  const ops = ["insert", "update", "delete"] as const;
  const referencing = {
    insert: `NEW TABLE AS ${newRows}`,
    update: `OLD TABLE AS ${oldRows} NEW TABLE AS ${newRows}`,
    delete: `OLD TABLE AS ${oldRows}`,
  };
  return [
    ...ops.map((op) => `DROP TRIGGER IF EXISTS "jobs_rollup_${op}" ON "jobs";`),
    `DROP FUNCTION IF EXISTS "jobs_rollup"();`,
    ...ops.flatMap((op) => [
      `CREATE OR REPLACE FUNCTION "jobs_rollup_${op}"() RETURNS trigger LANGUAGE plpgsql AS $$${bodies[op]}$$;`,
      `CREATE TRIGGER "jobs_rollup_${op}" AFTER ${op.toUpperCase()} ON "jobs"
  REFERENCING ${referencing[op]}
  FOR EACH STATEMENT EXECUTE FUNCTION "jobs_rollup_${op}"();`,
    ]),
  ];
}

/**
 * Hour rows for the jobs already in a database migrated before the hour grains existed: the
 * same sums the trigger would have added, job by job (day rows are already complete).
 */
export function pgRollupHoursBackfillSql(): string {
  const hourGrains = [grains.hourModel, grains.hourWorker, grains.hourKey];
  return `INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    ${figureColumns.join(", ")})
  SELECT g.grain, c.created_at / ${HOUR_MS},
    ${dimensionsOf("c")},
    ${storedFigures.map((f) => `sum(${perJob(f, "c")})`).join(",\n    ")}
  FROM jobs AS c CROSS JOIN (VALUES ${hourGrains.map((g) => `(${g})`).join(", ")}) AS g (grain)
  GROUP BY 1, 2, 3, 4, 5
  ORDER BY 1, 2, 3, 4, 5;`;
}

/**
 * The rollup rows that group by worker (full key, worker, worker by hour), summed again from
 * `jobs` under the worker each job is reported under (`reportWorkerSql`): for a database whose
 * rows put a payout of a receipt without a worker under no worker. Totals do not change; the
 * migration runs it once, with the triggers replaced in the same transaction.
 */
export function pgRollupWorkerRebuildSql(): string[] {
  const rebuilt = allGrains.filter((g) => dimsOf[g]!.includes("worker"));
  return [
    `DELETE FROM job_rollups WHERE grain IN (${rebuilt.join(", ")});`,
    `INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    ${figureColumns.join(", ")})
  SELECT g.grain,
    c.created_at / CASE WHEN g.grain >= ${grains.hourModel} THEN ${HOUR_MS} ELSE ${DAY_MS} END,
    ${dimensionsOf("c")},
    ${storedFigures.map((f) => `sum(${perJob(f, "c")})`).join(",\n    ")}
  FROM (SELECT ${rowValues("")} FROM jobs) AS c (${rowColumns.join(", ")})
  CROSS JOIN (VALUES ${rebuilt.map((g) => `(${g})`).join(", ")}) AS g (grain)
  GROUP BY 1, 2, 3, 4, 5
  ORDER BY 1, 2, 3, 4, 5;`,
  ];
}
