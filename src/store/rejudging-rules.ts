/* The rules of reading the jobs judged again that do not touch a database, shared by the
 * SQLite reports store (reports.ts) and the PostgreSQL one (pg/reports.ts). */

import { reportWorkerSql } from "../db/rollups.js";
import type { RejudgeReason, Verdict } from "../db/schema.js";
import { highName, joinParts, lowName, splitSum } from "../db/split-sums.js";

/** Jobs judged again of one verdict left and one reason (see `ReportsStore.rejudging`). */
export interface RejudgingRow {
  previousVerdict: Verdict;
  reason: RejudgeReason | null;
  jobs: number;
  chargedUnits: bigint;
}

/**
 * The SELECT of `ReportsStore.rejudging` over `jobs` (`from`, `to`, `worker` named as the
 * dialect names its parameters): few rows, read through the partial index `jobs_rejudging`.
 * SQLite sums the charged units in two parts (src/db/split-sums.ts): one sum() fails past 2^63,
 * and the whole report with it.
 */
export function rejudgingSql(
  dialect: "sqlite" | "postgres",
  param: (name: "from" | "to" | "worker") => string,
  worker: boolean,
  index = "",
): string {
  const byWorker = worker ? ` AND ${reportWorkerSql()} = ${param("worker")}` : "";
  const charged =
    dialect === "sqlite"
      ? splitSum("charged_units", "charged")
      : "coalesce(sum(charged_units), 0) AS charged";
  return `SELECT previous_verdict AS previous, rejudge_reason AS reason, count(*) AS n,
      ${charged}
    FROM jobs ${index}
    WHERE previous_verdict IS NOT NULL AND created_at >= ${param("from")}
      AND created_at < ${param("to")}${byWorker}
    GROUP BY previous_verdict, rejudge_reason`;
}

/** `RejudgingRow`s from the rows of `rejudgingSql`, as either driver returns them. */
export function rejudgingRows(rows: Record<string, unknown>[]): RejudgingRow[] {
  return rows.map((r) => ({
    previousVerdict: r.previous as Verdict,
    reason: (r.reason ?? null) as RejudgeReason | null,
    jobs: Number(r.n),
    chargedUnits:
      r.charged === undefined
        ? joinParts(
            r[highName("charged")] as bigint | number,
            r[lowName("charged")] as bigint | number,
          )
        : BigInt(r.charged as bigint | string | number),
  }));
}
