import type { Store } from "../db/client.js";
import { finalVerdicts, type Verdict, verdicts } from "../db/schema.js";
import { formatUnits } from "../money.js";
import { DAY_MS, dayOf, isoOf } from "./period.js";

export const groupByValues = ["day", "model", "worker", "key"] as const;
export type GroupBy = (typeof groupByValues)[number];

/** Verdicts that are not final yet: the job still moves. */
export const openVerdicts: readonly Verdict[] = verdicts.filter((v) => !finalVerdicts.includes(v));

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
const moneyKey = (money: SplitMoney) => `${money}Units` as const;
/** Verified: proven in full. Disputed: a failing check, or a signature that never landed. */
const standingOf = (verdict: Verdict): Standing | null =>
  verdict === "verified"
    ? "verified"
    : verdict === "discrepancy" || verdict === "dropped"
      ? "disputed"
      : null;

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
 * The aggregation runs in SQLite over a covering index that starts with (group, verdict), so
 * SQLite sums in index order without sorting and without reading table rows; per-verdict
 * counts are folded into groups in JS. Statements use safe integers, so every sum arrives as
 * a bigint; SQLite's integer SUM is exact and raises on 64-bit overflow instead of rounding.
 * For one worker (the worker statement) the worker index is searched by its first column.
 */
function aggregateSql(groupBy: GroupBy, byWorker: boolean): string {
  const g = byWorker
    ? { expr: grouping[groupBy].expr, index: "jobs_report_worker" }
    : grouping[groupBy];
  const dayBounds =
    groupBy === "day" && !byWorker ? "created_at / 86400000 BETWEEN ? AND ? AND " : "";
  return `SELECT ${g.expr} AS grp, verdict,
    count(*) AS jobs,
    coalesce(sum(charged_units), 0) AS charged,
    coalesce(sum(escrowed_units), 0) AS escrowed,
    coalesce(sum(worker_paid_units), 0) AS worker_paid,
    coalesce(sum(treasury_paid_units), 0) AS treasury_paid,
    coalesce(sum(refunded_units), 0) AS refunded,
    coalesce(sum(fees_lamports), 0) AS fees
  FROM jobs INDEXED BY ${g.index}
  WHERE ${byWorker ? "worker = ? AND " : ""}${dayBounds}created_at >= ? AND created_at < ?
  GROUP BY ${byWorker ? "" : `${g.expr}, `}verdict${byWorker ? `, ${g.expr}` : ""}`;
}

interface AggregateRow {
  grp: bigint | string | null;
  verdict: Verdict;
  jobs: bigint;
  charged: bigint;
  escrowed: bigint;
  worker_paid: bigint;
  treasury_paid: bigint;
  refunded: bigint;
  fees: bigint;
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

/** Builds the reconciliation report of a period. Totals are the exact sums of the groups. */
export function reconciliationReport(
  store: Store,
  query: ReconciliationQuery,
  now: () => number = Date.now,
): ReconciliationReport {
  const byWorker = query.worker !== undefined;
  const stmt = store.sqlite.prepare(aggregateSql(query.groupBy, byWorker)).safeIntegers(true);
  const params: (number | string)[] = [];
  if (query.worker !== undefined) params.push(query.worker);
  if (query.groupBy === "day" && !byWorker) {
    params.push(Math.floor(query.from / DAY_MS), Math.floor((query.to - 1) / DAY_MS));
  }
  params.push(query.from, query.to);
  const rows = stmt.all(...params) as AggregateRow[];

  const byGroup = new Map<string, ReconciliationGroup>();
  for (const row of rows) {
    const group =
      row.grp === null ? null : query.groupBy === "day" ? dayOf(Number(row.grp)) : String(row.grp);
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

function figuresOf(row: AggregateRow): ReconciliationFigures {
  const jobs = Number(row.jobs);
  const f = emptyFigures();
  f.jobs = jobs;
  if (row.verdict === "verified") f.verified = jobs;
  else if (row.verdict === "partially_verified") f.partiallyVerified = jobs;
  else if (row.verdict === "discrepancy") f.discrepancies = jobs;
  else if (row.verdict === "dropped") f.dropped = jobs;
  else if (row.verdict === "unverifiable") f.unverifiable = jobs;
  else f.pending = jobs;
  f.chargedUnits = row.charged;
  f.escrowedUnits = row.escrowed;
  f.workerPaidUnits = row.worker_paid;
  f.treasuryPaidUnits = row.treasury_paid;
  f.refundedUnits = row.refunded;
  f.unaccountedUnits = row.escrowed - row.worker_paid - row.treasury_paid - row.refunded;
  f.feesLamports = row.fees;
  const standing = standingOf(row.verdict);
  if (standing !== null) {
    for (const m of splitMoney) f[standingKey(standing, m)] = f[moneyKey(m)];
  }
  return f;
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
