import type { Store } from "../db/client.js";
import { DAY_MS, grains, HOUR_MS, rollupFigureColumns } from "../db/rollups.js";
import { printable } from "../printable-text.js";
import { type RollupRow, reportsStore } from "../store/reports.js";
import { csvCell, csvNameCell } from "./csv-cell.js";
import { dayOf, isoOf } from "./period.js";

export type GrainName = keyof typeof grains;

/** One figure of one rollup row that differs from the same figure summed from `jobs`. */
export interface RollupDifference {
  grain: GrainName;
  /** UTC day, `YYYY-MM-DD`; for an hour grain, the hour: `YYYY-MM-DDTHH`. */
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

const grainNames = Object.fromEntries(Object.entries(grains).map(([k, v]) => [v, k])) as Record<
  number,
  GrainName
>;

const dim = (value: string | Buffer): string | null => (typeof value === "string" ? value : null);

/** Which dimensions each grain keeps, and whether its bucket is an hour. */
const grainKeeps = (grain: number) => ({
  hour: grain >= grains.hourModel,
  model: grain === grains.full || grain === grains.model || grain === grains.hourModel,
  worker: grain === grains.full || grain === grains.worker || grain === grains.hourWorker,
  key: grain === grains.full || grain === grains.key || grain === grains.hourKey,
});

/**
 * Compares every rollup row of the days in [from, to) (all days when not given) with the same
 * figures summed from scratch over `jobs`, to the base unit: the full-key rows, the day
 * marginals and the hour marginals, all built here from the from-scratch full-key sums per
 * hour. One day per read transaction, so each comparison sees one consistent snapshot while
 * writers go on; memory holds one day.
 */
export async function recomputeRollups(
  store: Store,
  options: { from?: number; to?: number; maxDifferences?: number } = {},
): Promise<RollupCheck> {
  const reports = reportsStore(store);
  const maxDifferences = options.maxDifferences ?? 1000;
  const bounds = await reports.rollupDayBounds();
  const check: RollupCheck = {
    firstDay: null,
    lastDay: null,
    days: 0,
    rows: 0,
    differences: [],
    differenceCount: 0,
  };
  if (bounds === null) return check;
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

  const keyOf = (grain: number, bucket: number, row: RollupRow) => {
    const keeps = grainKeeps(grain);
    return JSON.stringify([
      grain,
      bucket,
      keeps.model ? dim(row.model) : null,
      keeps.worker ? dim(row.worker) : null,
      keeps.key ? dim(row.key_fingerprint) : null,
    ]);
  };

  for (let day = first; day <= last; day++) {
    const { scratch, stored } = await reports.rollupDay(day);
    const expected = new Map<string, RollupRow>();
    const add = (key: string, row: RollupRow) => {
      const into = expected.get(key);
      if (!into) {
        expected.set(key, { ...row });
        return;
      }
      for (const c of rollupFigureColumns) into[c] = (into[c] ?? 0n) + (row[c] ?? 0n);
    };
    for (const row of scratch) {
      const hour = Number(row.bucket);
      for (const grain of Object.values(grains)) {
        const bucket = grainKeeps(grain).hour ? hour : Math.floor((hour * HOUR_MS) / DAY_MS);
        add(keyOf(grain, bucket, row), row);
      }
    }
    const actual = new Map<string, RollupRow>();
    for (const row of stored) {
      actual.set(keyOf(Number(row.grain), Number(row.bucket), row), row);
    }

    for (const key of new Set([...expected.keys(), ...actual.keys()])) {
      check.rows++;
      const want = expected.get(key);
      const have = actual.get(key);
      const [grain, bucket, model, worker, keyFingerprint] = JSON.parse(key) as [
        number,
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
            day: grainKeeps(grain).hour ? isoOf(bucket * HOUR_MS).slice(0, 13) : dayOf(bucket),
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
    // Model, worker and key come from receipts and the jobs API: a control character in one
    // (a row stored before names were checked) would drive the terminal or forge a line.
    const where = [
      `grain ${d.grain}`,
      d.day,
      `model ${d.model === null ? "-" : printable(d.model)}`,
      `worker ${d.worker === null ? "-" : printable(d.worker)}`,
      `key ${d.keyFingerprint === null ? "-" : printable(d.keyFingerprint)}`,
    ].join(" ");
    lines.push(
      `  ${where}: ${d.column} rollup ${d.rollup} jobs ${d.recomputed} (off by ${d.rollup - d.recomputed})`,
    );
  }
  return `${lines.join("\n")}\n`;
}

/** The check as JSON: amounts as decimal strings, as every report gives them. */
export function rollupCheckToJson(check: RollupCheck) {
  return {
    firstDay: check.firstDay,
    lastDay: check.lastDay,
    days: check.days,
    rows: check.rows,
    differenceCount: check.differenceCount,
    differences: check.differences.map((d) => ({
      grain: d.grain,
      day: d.day,
      model: d.model,
      worker: d.worker,
      keyFingerprint: d.keyFingerprint,
      column: d.column,
      rollup: d.rollup.toString(),
      recomputed: d.recomputed.toString(),
      offBy: (d.rollup - d.recomputed).toString(),
    })),
  };
}

/**
 * The differences as RFC 4180 CSV (CRLF line ends), one row each; a header alone when the
 * rollups match. The exit code says which; `differenceCount` beyond the listed rows is in JSON.
 */
export function rollupCheckToCsv(check: RollupCheck): string {
  const header = [
    "grain",
    "day",
    "model",
    "worker",
    "keyFingerprint",
    "column",
    "rollup",
    "recomputed",
    "offBy",
  ];
  const lines = [header.join(",")];
  for (const d of check.differences) {
    // Model, worker and key come from receipts: text cells, never a formula or a number.
    lines.push(
      [
        csvCell(d.grain),
        csvCell(d.day),
        csvNameCell(d.model),
        csvNameCell(d.worker),
        csvNameCell(d.keyFingerprint),
        csvCell(d.column),
        csvCell(d.rollup),
        csvCell(d.recomputed),
        csvCell(d.rollup - d.recomputed),
      ].join(","),
    );
  }
  return `${lines.join("\r\n")}\r\n`;
}
