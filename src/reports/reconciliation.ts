import type { Store } from "../db/client.js";
import {
  countedVerdicts,
  grains,
  jobsFigureSums,
  rollupFigureSums,
  rollupsComplete,
  verdictCountColumn,
} from "../db/rollups.js";
import { openVerdicts, type Verdict, verdicts } from "../db/schema.js";
import { formatUnits } from "../money.js";
import { DAY_MS, dayOf, isoOf } from "./period.js";

export const groupByValues = ["day", "model", "worker", "key"] as const;
export type GroupBy = (typeof groupByValues)[number];

/** Money figures that are also shown split by standing: on verified jobs, on disputed jobs. */
export const splitMoney = [
  "escrowed",
  "charged",
  "workerPaid",
  "treasuryPaid",
  "refunded",
] as const;
type SplitMoney = (typeof splitMoney)[number];
type Standing = "verified" | "disputed";
/** `verifiedChargedUnits`, `disputedEscrowedUnits`, ...: money on jobs of one standing. */
export type StandingFigures = {
  [K in `${Standing}${Capitalize<SplitMoney>}Units`]: bigint;
};
const standingKey = (standing: Standing, money: SplitMoney) =>
  `${standing}${money[0]!.toUpperCase()}${money.slice(1)}Units` as keyof StandingFigures;
// Verified: proven in full. Disputed: a failing check, or a signature that never landed
// (discrepancy, dropped). The rollup triggers split the money the same way.

/** Counts and sums of one group (or of the whole report). Amounts are exact bigints. */
export interface ReconciliationFigures extends StandingFigures {
  jobs: number;
  verified: number;
  /** No check failed, but the job's own data left a money check unproven. */
  partiallyVerified: number;
  /** Not final yet (pending, awaiting finality, retryable error). */
  pending: number;
  discrepancies: number;
  dropped: number;
  unverifiable: number;
  chargedUnits: bigint;
  escrowedUnits: bigint;
  workerPaidUnits: bigint;
  treasuryPaidUnits: bigint;
  refundedUnits: bigint;
  /** escrowed - worker paid - treasury paid - refunded: money still in escrow or lost. */
  unaccountedUnits: bigint;
  /** Network fees of the jobs' transactions, lamports. */
  feesLamports: bigint;
}

export interface ReconciliationGroup extends ReconciliationFigures {
  /** The day (`YYYY-MM-DD`), model, worker address or key fingerprint; null when not recorded. */
  group: string | null;
}

export interface ReconciliationReport {
  from: number;
  to: number;
  groupBy: GroupBy;
  generatedAt: number;
  /** Before this instant every recorded job is final, so figures before it will not move. */
  dataCompleteUntil: number;
  groups: ReconciliationGroup[];
  totals: ReconciliationFigures;
}

export interface ReconciliationQuery {
  from: number;
  to: number;
  groupBy: GroupBy;
  /** Restrict to one worker (the worker statement). */
  worker?: string;
  /**
   * `rollups` (default): whole UTC days from `job_rollups`, the partial days at either end from
   * `jobs`. `jobs`: every job from scratch, what `--recompute` and the benchmark compare with.
   */
  source?: "rollups" | "jobs";
}

/** Group expression and the covering index that holds it first (see src/db/schema.ts). */
const grouping: Record<GroupBy, { expr: string; index: string }> = {
  // Integer day number, formatted once per group in JS. The index is on this very expression.
  day: { expr: "created_at / 86400000", index: "jobs_report_day" },
  model: { expr: "model", index: "jobs_report_model" },
  worker: { expr: "worker", index: "jobs_report_worker" },
  key: { expr: "key_fingerprint", index: "jobs_report_key" },
};

/**
 * From `jobs`: the aggregation runs in SQLite over a covering index that starts with the group,
 * so SQLite sums in index order without sorting and without reading table rows. Statements use
 * safe integers, so every sum arrives as a bigint; SQLite's integer SUM is exact and raises on
 * 64-bit overflow instead of rounding. For one worker (the worker statement) the worker index
 * is searched by its first column.
 */
function jobsAggregateSql(groupBy: GroupBy, byWorker: boolean, partialDay: boolean): string {
  // A partial day is a small slice of time: seek it by time and read its rows, rather than
  // scan a group-first index across every job for the few in range.
  const g = byWorker
    ? { expr: grouping[groupBy].expr, index: "jobs_report_worker" }
    : partialDay
      ? { expr: grouping[groupBy].expr, index: "jobs_created_at" }
      : grouping[groupBy];
  const dayBounds =
    groupBy === "day" && !byWorker && !partialDay
      ? "created_at / 86400000 BETWEEN ? AND ? AND "
      : "";
  return `SELECT ${g.expr} AS grp,
    ${jobsFigureSums}
  FROM jobs INDEXED BY ${g.index}
  WHERE ${byWorker ? "worker = ? AND " : ""}${dayBounds}created_at >= ? AND created_at < ?
  GROUP BY ${g.expr}`;
}

/** The rollup grain and column of each grouping: day sums the (day, model) rows. */
const rollupGrouping: Record<GroupBy, { grain: number; expr: string }> = {
  day: { grain: grains.model, expr: "day" },
  model: { grain: grains.model, expr: "model" },
  worker: { grain: grains.worker, expr: "worker" },
  key: { grain: grains.key, expr: "key_fingerprint" },
};

/**
 * From `job_rollups`, for whole days [firstDay, endDay): a few rows per day and group, read in
 * primary-key order (grain, day). One worker reads the (day, worker) rows by day, or its
 * full-key rows through `job_rollups_worker` for the other groupings.
 */
function rollupAggregateSql(groupBy: GroupBy, byWorker: boolean): string {
  const g = rollupGrouping[groupBy];
  const grain = byWorker ? (groupBy === "day" ? grains.worker : grains.full) : g.grain;
  return `SELECT ${g.expr} AS grp, ${rollupFigureSums}
  FROM job_rollups
  WHERE grain = ${grain} AND ${byWorker ? "worker = ? AND " : ""}day >= ? AND day < ?
  GROUP BY ${g.expr}`;
}

/** A row of either aggregation: the group, then the figure columns of `job_rollups`. */
type FigureRow = { grp: bigint | string | Buffer | null } & Record<string, bigint>;

/** [from, to) cut into whole UTC days (from the rollups) and the partial days at its ends. */
export function periodPieces(
  from: number,
  to: number,
): { wholeDays: { first: number; end: number } | null; partial: { from: number; to: number }[] } {
  const first = Math.ceil(from / DAY_MS);
  const end = Math.floor(to / DAY_MS);
  if (first >= end) return { wholeDays: null, partial: [{ from, to }] };
  const partial: { from: number; to: number }[] = [];
  if (from < first * DAY_MS) partial.push({ from, to: first * DAY_MS });
  if (end * DAY_MS < to) partial.push({ from: end * DAY_MS, to });
  return { wholeDays: { first, end }, partial };
}

/** Zero figures, the start of every sum. */
export function emptyFigures(): ReconciliationFigures {
  return {
    jobs: 0,
    verified: 0,
    partiallyVerified: 0,
    pending: 0,
    discrepancies: 0,
    dropped: 0,
    unverifiable: 0,
    chargedUnits: 0n,
    escrowedUnits: 0n,
    workerPaidUnits: 0n,
    treasuryPaidUnits: 0n,
    refundedUnits: 0n,
    unaccountedUnits: 0n,
    feesLamports: 0n,
    ...(Object.fromEntries(
      splitMoney.flatMap((m) => [
        [standingKey("verified", m), 0n],
        [standingKey("disputed", m), 0n],
      ]),
    ) as StandingFigures),
  };
}

function addFigures(into: ReconciliationFigures, row: ReconciliationFigures): void {
  into.jobs += row.jobs;
  into.verified += row.verified;
  into.partiallyVerified += row.partiallyVerified;
  into.pending += row.pending;
  into.discrepancies += row.discrepancies;
  into.dropped += row.dropped;
  into.unverifiable += row.unverifiable;
  into.chargedUnits += row.chargedUnits;
  into.escrowedUnits += row.escrowedUnits;
  into.workerPaidUnits += row.workerPaidUnits;
  into.treasuryPaidUnits += row.treasuryPaidUnits;
  into.refundedUnits += row.refundedUnits;
  into.unaccountedUnits += row.unaccountedUnits;
  into.feesLamports += row.feesLamports;
  for (const m of splitMoney) {
    for (const standing of ["verified", "disputed"] as const) {
      into[standingKey(standing, m)] += row[standingKey(standing, m)];
    }
  }
}

/**
 * The instant before which every job is final: the creation time of the oldest job that is
 * not final yet, or `now` when none is. One index probe per open verdict (`jobs_verdict_created`).
 */
export function dataCompleteUntil(store: Store, now: number): number {
  const stmt = store.sqlite
    .prepare("SELECT min(created_at) AS oldest FROM jobs WHERE verdict = ?")
    .pluck();
  let oldest = now;
  for (const verdict of openVerdicts) {
    const value = stmt.get(verdict) as number | null;
    if (value !== null && value < oldest) oldest = value;
  }
  return oldest;
}

/** The figure rows of a period, grouped, from the rollups and the partial days' jobs. */
function figureRows(store: Store, query: ReconciliationQuery): FigureRow[] {
  const byWorker = query.worker !== undefined;
  const pieces =
    query.source === "jobs" || !rollupsComplete(store)
      ? { wholeDays: null, partial: [{ from: query.from, to: query.to }] }
      : periodPieces(query.from, query.to);
  const rows: FigureRow[] = [];
  if (pieces.wholeDays !== null) {
    const stmt = store.sqlite
      .prepare(rollupAggregateSql(query.groupBy, byWorker))
      .safeIntegers(true);
    const params: (number | string)[] = [];
    if (query.worker !== undefined) params.push(query.worker);
    params.push(pieces.wholeDays.first, pieces.wholeDays.end);
    rows.push(...(stmt.all(...params) as FigureRow[]));
  }
  if (pieces.partial.length > 0) {
    const partialDay = pieces.wholeDays !== null || query.to - query.from < DAY_MS;
    const stmt = store.sqlite
      .prepare(jobsAggregateSql(query.groupBy, byWorker, partialDay))
      .safeIntegers(true);
    for (const part of pieces.partial) {
      const params: (number | string)[] = [];
      if (query.worker !== undefined) params.push(query.worker);
      if (query.groupBy === "day" && !byWorker && !partialDay) {
        params.push(Math.floor(part.from / DAY_MS), Math.floor((part.to - 1) / DAY_MS));
      }
      params.push(part.from, part.to);
      rows.push(...(stmt.all(...params) as FigureRow[]));
    }
  }
  return rows;
}

/** Builds the reconciliation report of a period. Totals are the exact sums of the groups. */
export function reconciliationReport(
  store: Store,
  query: ReconciliationQuery,
  now: () => number = Date.now,
): ReconciliationReport {
  const byGroup = new Map<string, ReconciliationGroup>();
  for (const row of figureRows(store, query)) {
    // The rollups hold x'' (a BLOB) where the jobs hold NULL: both mean not recorded.
    const group =
      row.grp === null || row.grp instanceof Uint8Array
        ? null
        : query.groupBy === "day"
          ? dayOf(Number(row.grp))
          : String(row.grp);
    const mapKey = group === null ? "\u0000null" : `=${group}`;
    let into = byGroup.get(mapKey);
    if (!into) {
      into = { group, ...emptyFigures() };
      byGroup.set(mapKey, into);
    }
    addFigures(into, figuresOf(row));
  }
  const groups = [...byGroup.values()].sort((a, b) =>
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
  const generatedAt = now();
  return {
    from: query.from,
    to: query.to,
    groupBy: query.groupBy,
    generatedAt,
    dataCompleteUntil: dataCompleteUntil(store, generatedAt),
    groups,
    totals,
  };
}

const n = (row: Record<string, bigint>, column: string) => row[column] ?? 0n;

/** Report figures from the figure columns of `job_rollups` (or the same sums over `jobs`). */
export function figuresOf(row: Record<string, bigint>): ReconciliationFigures {
  const count = (v: Verdict) => Number(n(row, verdictCountColumn(v)));
  const f = emptyFigures();
  f.verified = count("verified");
  f.partiallyVerified = count("partially_verified");
  f.pending = Number(n(row, "jobs_open"));
  f.discrepancies = count("discrepancy");
  f.dropped = count("dropped");
  f.unverifiable = count("unverifiable");
  f.jobs =
    f.verified + f.partiallyVerified + f.pending + f.discrepancies + f.dropped + f.unverifiable;
  f.chargedUnits = n(row, "charged_units");
  f.escrowedUnits = n(row, "escrowed_units");
  f.workerPaidUnits = n(row, "worker_paid_units");
  f.treasuryPaidUnits = n(row, "treasury_paid_units");
  f.refundedUnits = n(row, "refunded_units");
  f.unaccountedUnits = f.escrowedUnits - f.workerPaidUnits - f.treasuryPaidUnits - f.refundedUnits;
  f.feesLamports = n(row, "fees_lamports");
  for (const m of splitMoney) {
    const column = snake(m);
    f[standingKey("verified", m)] = n(row, `verified_${column}_units`);
    f[standingKey("disputed", m)] = n(row, `disputed_${column}_units`);
  }
  return f;
}

const snake = (camel: string) => camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * Jobs of [from, to) by verdict (the nightly summary): final verdicts of whole days from the
 * rollups and of partial days from `jobs`; jobs not final yet (few, and not told apart by the
 * rollups) from `jobs` through its (verdict, created_at) index.
 */
export function countJobsByVerdict(
  store: Store,
  from: number,
  to: number,
): Record<Verdict, number> {
  const counts = Object.fromEntries(verdicts.map((v) => [v, 0])) as Record<Verdict, number>;
  const pieces = rollupsComplete(store)
    ? periodPieces(from, to)
    : { wholeDays: null, partial: [{ from, to }] };
  if (pieces.wholeDays !== null) {
    const row = store.sqlite
      .prepare(
        `SELECT ${countedVerdicts.map((v) => `coalesce(sum(${verdictCountColumn(v)}), 0) AS ${v}`).join(", ")}
         FROM job_rollups WHERE grain = ${grains.model} AND day >= ? AND day < ?`,
      )
      .get(pieces.wholeDays.first, pieces.wholeDays.end) as Record<Verdict, number>;
    for (const v of countedVerdicts) counts[v] += row[v];
  }
  const byVerdict = store.sqlite.prepare(
    `SELECT verdict, count(*) AS n FROM jobs WHERE created_at >= ? AND created_at < ?
     GROUP BY verdict`,
  );
  for (const part of pieces.partial) {
    for (const row of byVerdict.all(part.from, part.to) as { verdict: Verdict; n: number }[]) {
      if (countedVerdicts.includes(row.verdict)) counts[row.verdict] += row.n;
    }
  }
  const open = store.sqlite
    .prepare("SELECT count(*) FROM jobs WHERE verdict = ? AND created_at >= ? AND created_at < ?")
    .pluck();
  for (const v of openVerdicts) counts[v] = open.get(v, from, to) as number;
  return counts;
}

/**
 * Columns of the report rows, in order, as they appear in JSON (keys) and CSV (header).
 * Amounts appear twice: base units and USDC with six decimals; fees only in lamports.
 */
export const reconciliationColumns = [
  "jobs",
  "verified",
  "partiallyVerified",
  "pending",
  "discrepancies",
  "dropped",
  "unverifiable",
  "chargedUnits",
  "chargedUsdc",
  "escrowedUnits",
  "escrowedUsdc",
  "workerPaidUnits",
  "workerPaidUsdc",
  "treasuryPaidUnits",
  "treasuryPaidUsdc",
  "refundedUnits",
  "refundedUsdc",
  "unaccountedUnits",
  "unaccountedUsdc",
  "feesLamports",
  ...splitMoney.flatMap((m) =>
    (["verified", "disputed"] as const).flatMap((standing) => {
      const units = standingKey(standing, m);
      return [units, units.replace(/Units$/, "Usdc") as StandingUsdc];
    }),
  ),
] as const;

type StandingUsdc = {
  [K in keyof StandingFigures]: K extends `${infer P}Units` ? `${P}Usdc` : never;
}[keyof StandingFigures];

export type FiguresJson = {
  [K in (typeof reconciliationColumns)[number]]: K extends
    | "jobs"
    | "verified"
    | "partiallyVerified"
    | "pending"
    | "discrepancies"
    | "dropped"
    | "unverifiable"
    ? number
    : string;
};

/** Figures as JSON: counts as numbers, amounts as decimal strings (units and USDC). */
export function figuresToJson(f: ReconciliationFigures): FiguresJson {
  return {
    jobs: f.jobs,
    verified: f.verified,
    partiallyVerified: f.partiallyVerified,
    pending: f.pending,
    discrepancies: f.discrepancies,
    dropped: f.dropped,
    unverifiable: f.unverifiable,
    chargedUnits: f.chargedUnits.toString(),
    chargedUsdc: formatUnits(f.chargedUnits),
    escrowedUnits: f.escrowedUnits.toString(),
    escrowedUsdc: formatUnits(f.escrowedUnits),
    workerPaidUnits: f.workerPaidUnits.toString(),
    workerPaidUsdc: formatUnits(f.workerPaidUnits),
    treasuryPaidUnits: f.treasuryPaidUnits.toString(),
    treasuryPaidUsdc: formatUnits(f.treasuryPaidUnits),
    refundedUnits: f.refundedUnits.toString(),
    refundedUsdc: formatUnits(f.refundedUnits),
    unaccountedUnits: f.unaccountedUnits.toString(),
    unaccountedUsdc: formatUnits(f.unaccountedUnits),
    feesLamports: f.feesLamports.toString(),
    ...(Object.fromEntries(
      splitMoney.flatMap((m) =>
        (["verified", "disputed"] as const).flatMap((standing) => {
          const units = standingKey(standing, m);
          return [
            [units, f[units].toString()],
            [units.replace(/Units$/, "Usdc"), formatUnits(f[units])],
          ];
        }),
      ),
    ) as Record<keyof StandingFigures | StandingUsdc, string>),
  };
}

/** The report's JSON form (the body of `GET /reports/reconciliation`). */
export function reconciliationToJson(report: ReconciliationReport) {
  return {
    from: isoOf(report.from),
    to: isoOf(report.to),
    groupBy: report.groupBy,
    generatedAt: isoOf(report.generatedAt),
    dataCompleteUntil: isoOf(report.dataCompleteUntil),
    groups: report.groups.map((g) => ({ group: g.group, ...figuresToJson(g) })),
    totals: figuresToJson(report.totals),
  };
}

export type ReconciliationJson = ReturnType<typeof reconciliationToJson>;

/** One CSV field, quoted per RFC 4180 when it holds a comma, quote, CR or LF. */
export function csvField(value: string | number | null): string {
  const text = value === null ? "" : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** A cell a spreadsheet would read as a formula, quoted as text. */
function asText(value: string): string {
  return /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
}

/**
 * The report as RFC 4180 CSV (CRLF line ends): a header, one row per group (`kind` = `group`),
 * then one `total` row whose figures are exactly the JSON `totals`. A group that was not
 * recorded (no model, say) has an empty `group` field.
 */
export function reconciliationToCsv(report: ReconciliationReport): string {
  const header = ["kind", "group", ...reconciliationColumns];
  const lines = [header.join(",")];
  const line = (kind: string, group: string | null, f: ReconciliationFigures) => {
    const json = figuresToJson(f);
    lines.push([kind, group, ...reconciliationColumns.map((c) => json[c])].map(csvField).join(","));
  };
  // Group names come from receipts (model, worker, key): one starting like a formula would run
  // as one in a spreadsheet, so it is quoted as text (OWASP CSV injection).
  for (const g of report.groups) line("group", g.group === null ? null : asText(g.group), g);
  line("total", null, report.totals);
  return `${lines.join("\r\n")}\r\n`;
}
