import type { Store } from "../db/client.js";
import {
  type FigureKey,
  type FigureValues,
  type ReportFigure,
  reportFigures,
  storedFigures,
} from "../db/rollups.js";
import { finalVerdicts, type RejudgeReason, rejudgeReasons, type Verdict } from "../db/schema.js";
import { AppError } from "../errors.js";
import { zoneDateOf, zoneDayStarts } from "../instant.js";
import { formatUnits } from "../money.js";
import {
  periodPieces,
  type RejudgingRow,
  type ReportGrouping,
  reportGroupings,
  reportsStore,
  type SumsQuery,
} from "../store/reports.js";
import { csvCell, csvNameCell } from "./csv-cell.js";
import { DAY_MS, dayOf, isoOf, RECORDING_MARGIN_MS } from "./period.js";

export const groupByValues = reportGroupings;
export type GroupBy = ReportGrouping;

/**
 * Counts and sums of one group (or of the whole report), one field per row of `reportFigures`
 * (src/db/rollups.ts). Amounts are exact bigints; counts are numbers.
 */
export type ReconciliationFigures = FigureValues;

export interface ReconciliationGroup extends ReconciliationFigures {
  /** The day (`YYYY-MM-DD`), model, worker address or key fingerprint; null when not recorded. */
  group: string | null;
}

export interface ReconciliationReport {
  from: number;
  to: number;
  groupBy: GroupBy;
  /** The IANA time zone whose days `groupBy: "day"` groups by; `UTC` unless asked. */
  timeZone: string;
  generatedAt: number;
  /** Before this instant every recorded job is final, so figures before it will not move. */
  dataCompleteUntil: number;
  groups: ReconciliationGroup[];
  totals: ReconciliationFigures;
  rejudging: Rejudging;
}

/**
 * The jobs of the period that had a final verdict and are judged again (a profile change,
 * `reverify`, an upgrade's rule, new evidence): counted as not final (`pending`) until judged,
 * never by the verdict they left, which new evidence may overturn; this says what they were.
 */
export interface Rejudging {
  jobs: number;
  byPreviousVerdict: Record<Verdict, number>;
  byReason: Record<RejudgeReason, number>;
  /** Charged on those that were verified: money counted as verified before they were sent back. */
  previouslyVerifiedChargedUnits: bigint;
}

/** `Rejudging` from the store's rows (a reason not recorded counts as `evidence`). */
export function rejudgingOf(rows: readonly RejudgingRow[]): Rejudging {
  const out: Rejudging = {
    jobs: 0,
    byPreviousVerdict: Object.fromEntries(finalVerdicts.map((v) => [v, 0])) as Record<
      Verdict,
      number
    >,
    byReason: Object.fromEntries(rejudgeReasons.map((r) => [r, 0])) as Record<
      RejudgeReason,
      number
    >,
    previouslyVerifiedChargedUnits: 0n,
  };
  for (const row of rows) {
    out.jobs += row.jobs;
    out.byPreviousVerdict[row.previousVerdict] =
      (out.byPreviousVerdict[row.previousVerdict] ?? 0) + row.jobs;
    out.byReason[row.reason ?? "evidence"] += row.jobs;
    if (row.previousVerdict === "verified") out.previouslyVerifiedChargedUnits += row.chargedUnits;
  }
  return out;
}

export interface ReconciliationQuery extends Omit<SumsQuery, "dayStarts"> {
  groupBy: GroupBy;
  /** An IANA time zone (as `timeZoneOf` spells it): `day` groups are its days. Default UTC. */
  timeZone?: string | undefined;
}

/**
 * The most days a report groups by a time zone's days: a year and a day, as the dashboard's
 * longest period. Each is summed apart, so a span of decades would be read as tens of thousands
 * of periods; UTC days, the rollups' own, have no such bound.
 */
export const MAX_ZONED_DAYS = 367;

/** The starts of the zone's days of the query's period; more than MAX_ZONED_DAYS is refused. */
function zonedDayStarts(query: ReconciliationQuery & { timeZone: string }): number[] {
  if (query.to - query.from > (MAX_ZONED_DAYS + 1) * DAY_MS) throw tooManyZonedDays();
  const starts = zoneDayStarts(query.timeZone, query.from, query.to);
  if (starts.length > MAX_ZONED_DAYS) throw tooManyZonedDays();
  return starts;
}

/**
 * A period of more than MAX_ZONED_DAYS of a zone's days, refused naming `to` as the API takes
 * it; the CLI, whose period is flags, names the flags it was given instead.
 */
export class TooManyZonedDays extends AppError {
  constructor() {
    super(
      "validation_failed",
      `to: a period read in a timeZone's days holds at most ${MAX_ZONED_DAYS} of them; ask for a longer period in parts, or in UTC days (no timeZone)`,
      { field: "to" },
    );
  }
}

const tooManyZonedDays = () => new TooManyZonedDays();

/** Whether the query's days are another zone's than UTC's (UTC's are the rollups' own). */
function zonedDays(
  query: ReconciliationQuery,
): query is ReconciliationQuery & { timeZone: string } {
  return query.groupBy === "day" && query.timeZone !== undefined && query.timeZone !== "UTC";
}

export { periodPieces };

/** Zero figures, the start of every sum. */
export function emptyFigures(): ReconciliationFigures {
  return Object.fromEntries(
    reportFigures.map((f) => [f.key, f.kind === "count" ? 0 : 0n]),
  ) as ReconciliationFigures;
}

type Values = Record<string, number | bigint>;

function addFigures(into: ReconciliationFigures, row: ReconciliationFigures): void {
  const to = into as unknown as Values;
  const from = row as unknown as Values;
  for (const f of reportFigures) {
    to[f.key] = (to[f.key] as number) + (from[f.key] as number);
  }
}

/** Every figure zero: no job counted and no money moved. */
function isZero(f: ReconciliationFigures): boolean {
  const values = f as unknown as Values;
  return reportFigures.every((spec) => values[spec.key] === 0 || values[spec.key] === 0n);
}

/**
 * The instant before which every job is final: the creation time of the oldest job that is
 * not final yet, or `now` when none is. One index probe per open verdict (`jobs_verdict_created`).
 */
export function dataCompleteUntil(store: Store, now: number): Promise<number> {
  return reportsStore(store).dataCompleteUntil(now);
}

/** The creation of the oldest job without a final verdict, or `now` (the verification lag). */
export function oldestOpenJob(store: Store, now: number): Promise<number> {
  return reportsStore(store).oldestOpenJob(now);
}

/**
 * Builds the reconciliation report of a period. Whole UTC days come from the day rollups, the
 * whole hours of a partial first or last day from the hour rollups, and only the jobs of
 * partial hours are read. Totals are the exact sums of the groups.
 */
export async function reconciliationReport(
  store: Store,
  query: ReconciliationQuery,
  now: () => number = Date.now,
): Promise<ReconciliationReport> {
  const reports = reportsStore(store);
  // The final instant is read before the sums and again after them, and the earlier is kept: a
  // job that turns final while they are read is after the first (read after alone, it could
  // pass a job the sums had seen open), and a final job sent back to the verifier meanwhile (a
  // reverify, the ledger's reopen), which the sums show open, is after the second.
  const generatedAt = now();
  const before = await reports.dataCompleteUntil(generatedAt);
  // The jobs judged again on the sums' snapshot: a job sent back between two reads was counted
  // final in the sums and judged again beside them.
  const { groups: rows, rejudging: rejudgingRows } = await reports.sumsWithRejudging(
    zonedDays(query) ? { ...query, dayStarts: zonedDayStarts(query) } : query,
  );
  const completeUntil = Math.min(
    before,
    await reports.dataCompleteUntil(generatedAt),
    // A receipt committed a moment from now can still carry a time just before it.
    generatedAt - RECORDING_MARGIN_MS,
  );
  const byGroup = new Map<string, ReconciliationGroup>();
  for (const row of rows) {
    const group =
      row.group === null
        ? null
        : zonedDays(query)
          ? zoneDateOf(query.timeZone, Number(row.group))
          : query.groupBy === "day"
            ? dayOf(Number(row.group))
            : String(row.group);
    const mapKey = group === null ? "\u0000null" : `=${group}`;
    let into = byGroup.get(mapKey);
    if (!into) {
      into = { group, ...emptyFigures() };
      byGroup.set(mapKey, into);
    }
    addFigures(into, figuresOf(row.sums));
  }
  // A job that moved to another group (a worker the jobs API named later, a model or key set
  // again) leaves its old rollup row behind at zero: that is no group of the period, and was
  // listed as one of no job ("not recorded: 0 jobs" in the CSV and on the dashboard).
  const groups = [...byGroup.values()]
    .filter((g) => !isZero(g))
    .sort((a, b) =>
      a.group === b.group
        ? 0
        : a.group === null
          ? -1
          : b.group === null
            ? 1
            : a.group < b.group
              ? -1
              : 1,
    );
  const totals = emptyFigures();
  for (const g of groups) addFigures(totals, g);
  const rejudging = rejudgingOf(rejudgingRows);
  return {
    from: query.from,
    to: query.to,
    groupBy: query.groupBy,
    timeZone: query.timeZone ?? "UTC",
    generatedAt,
    dataCompleteUntil: completeUntil,
    groups,
    totals,
    rejudging,
  };
}

/** Report figures from the figure columns of `job_rollups` (or the same sums over `jobs`). */
export function figuresOf(row: Record<string, bigint>): ReconciliationFigures {
  const f = emptyFigures() as unknown as Values;
  for (const spec of storedFigures) {
    const value = row[spec.column] ?? 0n;
    f[spec.key] = spec.kind === "count" ? Number(value) : value;
  }
  const figures = f as unknown as ReconciliationFigures;
  figures.jobs = reportFigures.reduce(
    (n, spec) => (spec.kind === "count" && "column" in spec ? n + (f[spec.key] as number) : n),
    0,
  );
  figures.unaccountedUnits =
    figures.escrowedUnits -
    figures.workerPaidUnits -
    figures.treasuryPaidUnits -
    figures.refundedUnits;
  return figures;
}

/**
 * Jobs of [from, to) by verdict (the nightly summary): final verdicts of whole days and hours
 * from the rollups and of partial hours from `jobs`; jobs not final yet (few, and not told
 * apart by the rollups) from `jobs` through its (verdict, created_at) index.
 */
export function countJobsByVerdict(
  store: Store,
  from: number,
  to: number,
): Promise<Record<Verdict, number>> {
  return reportsStore(store).countJobsByVerdict(from, to);
}

/** The JSON name of a figure's USDC twin: `chargedUnits` -> `chargedUsdc`. */
type UsdcKey<K extends string> = K extends `${infer P}Units` ? `${P}Usdc` : never;
type UnitsFigure = Extract<ReportFigure, { kind: "units" }>;
const usdcKey = (key: string) => key.replace(/Units$/, "Usdc");

/**
 * Columns of the report rows, in order, as they appear in JSON (keys) and CSV (header):
 * each figure of `reportFigures`, amounts in USDC base units followed by their USDC twin.
 */
export const reconciliationColumns = reportFigures.flatMap((f) =>
  f.kind === "units" ? [f.key, usdcKey(f.key)] : [f.key],
) as readonly (FigureKey | UsdcKey<UnitsFigure["key"]>)[];

export type FiguresJson = {
  [F in ReportFigure as F["key"]]: F["kind"] extends "count" ? number : string;
} & { [F in UnitsFigure as UsdcKey<F["key"]>]: string };

/** Figures as JSON: counts as numbers, amounts as decimal strings (units and USDC). */
export function figuresToJson(f: ReconciliationFigures): FiguresJson {
  const values = f as unknown as Values;
  const json: Record<string, string | number> = {};
  for (const spec of reportFigures) {
    const value = values[spec.key]!;
    if (spec.kind === "count") {
      json[spec.key] = value as number;
      continue;
    }
    json[spec.key] = value.toString();
    if (spec.kind === "units") json[usdcKey(spec.key)] = formatUnits(value as bigint);
  }
  return json as FiguresJson;
}

/** `Rejudging` as JSON: amounts as decimal strings (units and USDC). */
export function rejudgingToJson(r: Rejudging) {
  return {
    jobs: r.jobs,
    byPreviousVerdict: r.byPreviousVerdict,
    byReason: r.byReason,
    previouslyVerifiedChargedUnits: r.previouslyVerifiedChargedUnits.toString(),
    previouslyVerifiedChargedUsdc: formatUnits(r.previouslyVerifiedChargedUnits),
  };
}

/** The report's JSON form (the body of `GET /reports/reconciliation`). */
export function reconciliationToJson(report: ReconciliationReport) {
  return {
    from: isoOf(report.from),
    to: isoOf(report.to),
    groupBy: report.groupBy,
    timeZone: report.timeZone,
    generatedAt: isoOf(report.generatedAt),
    dataCompleteUntil: isoOf(report.dataCompleteUntil),
    groups: report.groups.map((g) => ({ group: g.group, ...figuresToJson(g) })),
    totals: figuresToJson(report.totals),
    rejudging: rejudgingToJson(report.rejudging),
  };
}

/**
 * The columns after the figures of every CSV row: what the file covers and how far it is final,
 * as the JSON says it (`from` inclusive, `to` exclusive, ISO 8601 UTC; what `group` names). A saved CSV once held
 * figures alone, so no one could tell its period, or whether its last days could still move.
 * A column added later goes last: one put between them moved `generatedAt` and
 * `dataCompleteUntil`, and whoever read those by position read another column.
 */
export const reconciliationCsvMetaColumns = [
  "from",
  "to",
  "groupBy",
  "generatedAt",
  "dataCompleteUntil",
  "timeZone",
] as const;

/**
 * The report as RFC 4180 CSV (CRLF line ends): a header, one row per group (`kind` = `group`),
 * then one `total` row whose figures are exactly the JSON `totals`. A group that was not
 * recorded (no model, say) has an empty `group` field. Every row ends with the report's
 * period and `dataCompleteUntil` (`reconciliationCsvMetaColumns`): columns, not a preamble,
 * so the first line stays the header a spreadsheet or a CSV reader expects, the figures keep
 * their positions, and a row copied or filtered out of the file still says what it covers.
 */
export function reconciliationToCsv(report: ReconciliationReport): string {
  const header = ["kind", "group", ...reconciliationColumns, ...reconciliationCsvMetaColumns];
  const metaValues: Record<(typeof reconciliationCsvMetaColumns)[number], string> = {
    from: isoOf(report.from),
    to: isoOf(report.to),
    groupBy: report.groupBy,
    generatedAt: isoOf(report.generatedAt),
    dataCompleteUntil: isoOf(report.dataCompleteUntil),
    timeZone: report.timeZone,
  };
  const meta = reconciliationCsvMetaColumns.map((c) => csvCell(metaValues[c]));
  const lines = [header.join(",")];
  const line = (kind: string, group: string | null, f: ReconciliationFigures) => {
    const figures = figuresToJson(f);
    const cells = reconciliationColumns.map((c) => csvCell(figures[c]));
    // A day is the service's own date, meant to be read as one: only names are kept text.
    const groupCell = report.groupBy === "day" ? csvCell(group) : csvNameCell(group);
    lines.push([csvCell(kind), groupCell, ...cells, ...meta].join(","));
  };
  // Group names come from receipts (model, worker, key): `csvNameCell` keeps them text, a
  // key fingerprint of digits included, which a spreadsheet would read as a rounded number,
  // and shows a character that shows as nothing.
  for (const g of report.groups) line("group", g.group, g);
  line("total", null, report.totals);
  return `${lines.join("\r\n")}\r\n`;
}
