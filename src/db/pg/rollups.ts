import { DAY_MS, grains, HOUR_MS, type StoredFigure, storedFigures } from "../rollups.js";

/**
 * The PostgreSQL rollup trigger of `jobs`, generated from `reportFigures` as
 * `rollupTriggersSql()` generates the SQLite triggers: the same grains, buckets, figures and
 * "open" verdicts. The migration holds this text (test/pg-schema.test.ts compares the installed
 * function and trigger with it). One row function serves insert, update and delete: OLD's
 * figures negated, NEW's added, summed per rollup key first, so a job that keeps its groups
 * upserts each row once and a job that moves takes its figures from one row to the other. Rows
 * are written in key order, so concurrent writers lock them in the same order.
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

/** What one job row (`row`: c, OLD or NEW) adds to a figure; booleans count as 0/1. */
const perJob = (f: StoredFigure, row: string) => {
  const expr = f.perJob.replaceAll("$.", `${row}.`);
  return f.kind === "count" ? `(${expr})::int` : `coalesce(${expr}, 0)`;
};

const figureColumns = storedFigures.map((f) => f.column);
const rowColumns = ["created_at", "model", "worker", "key_fingerprint", "verdict", ...readColumns];

/** The body of `jobs_rollup()` (what `pg_proc.prosrc` holds). */
export function pgRollupFunctionBody(): string {
  return `
BEGIN
  INSERT INTO job_rollups AS r (grain, day, model, worker, key_fingerprint,
    ${figureColumns.join(", ")})
  SELECT g.grain,
    c.created_at / CASE WHEN g.grain >= ${grains.hourModel} THEN ${HOUR_MS} ELSE ${DAY_MS} END,
    ${(["model", "worker", "key_fingerprint"] as const)
      .map((dim) => `CASE WHEN g.grain IN (${grainsWith(dim)}) THEN c.${dim} END`)
      .join(",\n    ")},
    ${storedFigures.map((f) => `sum(c.sign * ${perJob(f, "c")})`).join(",\n    ")}
  FROM (
    SELECT -1, ${rowColumns.map((c) => `OLD.${c}`).join(", ")}
    WHERE TG_OP <> 'INSERT'
    UNION ALL
    SELECT 1, ${rowColumns.map((c) => `NEW.${c}`).join(", ")}
    WHERE TG_OP <> 'DELETE'
  ) AS c (sign, ${rowColumns.join(", ")})
  CROSS JOIN (VALUES ${allGrains.map((g) => `(${g})`).join(", ")}) AS g (grain)
  GROUP BY 1, 2, 3, 4, 5
  ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    ${figureColumns.map((c) => `${c} = r.${c} + EXCLUDED.${c}`).join(",\n    ")};
  RETURN NULL;
END;
`;
}

/**
 * The update trigger's WHEN: it fires only when a job changes hour bucket, group, the count its
 * verdict falls in, or a figure it reads (as the SQLite trigger does), so moves between verdicts
 * that are not final leave the rollups alone.
 */
export function pgRollupUpdateWhen(): string {
  const countClass = (row: string) =>
    `CASE ${storedFigures
      .filter((f) => f.kind === "count")
      .map((f, i) => `WHEN ${f.perJob.replaceAll("$.", `${row}.`)} THEN ${i}`)
      .join(" ")} END`;
  return [
    `OLD.created_at / ${HOUR_MS} IS DISTINCT FROM NEW.created_at / ${HOUR_MS}`,
    ...["model", "worker", "key_fingerprint"].map((c) => `OLD.${c} IS DISTINCT FROM NEW.${c}`),
    `${countClass("OLD")} IS DISTINCT FROM ${countClass("NEW")}`,
    ...readColumns.map((c) => `coalesce(OLD.${c}, 0) IS DISTINCT FROM coalesce(NEW.${c}, 0)`),
  ].join("\n    OR ");
}

/** The statements the migration appends: the function and its update trigger. */
export function pgRollupTriggersSql(): string[] {
  return [
    `CREATE OR REPLACE FUNCTION "jobs_rollup"() RETURNS trigger LANGUAGE plpgsql AS $$${pgRollupFunctionBody()}$$;`,
    `DROP TRIGGER IF EXISTS "jobs_rollup_update" ON "jobs";`,
    `CREATE TRIGGER "jobs_rollup_update" AFTER UPDATE OF verdict, created_at, model, worker, key_fingerprint, ${readColumns.join(", ")} ON "jobs"
  FOR EACH ROW WHEN (${pgRollupUpdateWhen()})
  EXECUTE FUNCTION "jobs_rollup"();`,
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
    ${(["model", "worker", "key_fingerprint"] as const)
      .map((dim) => `CASE WHEN g.grain IN (${grainsWith(dim)}) THEN c.${dim} END`)
      .join(",\n    ")},
    ${storedFigures.map((f) => `sum(${perJob(f, "c")})`).join(",\n    ")}
  FROM jobs AS c CROSS JOIN (VALUES ${hourGrains.map((g) => `(${g})`).join(", ")}) AS g (grain)
  GROUP BY 1, 2, 3, 4, 5
  ORDER BY 1, 2, 3, 4, 5;`;
}
