import { DAY_MS, dayOf, instantProblem, parseInstant } from "../reports/period.js";

/** The period picker's choices; every one is whole UTC days. */
export const periodKinds = ["day", "week", "month", "custom"] as const;
export type PeriodKind = (typeof periodKinds)[number];

/** A period as the pages use it: [from, to) in ms, plus what the picker shows. */
export interface DashboardPeriod {
  kind: PeriodKind;
  from: number;
  to: number;
  /** First day shown, `YYYY-MM-DD`. */
  firstDay: string;
  /** Last day shown (inclusive for people; `to` is the next midnight), `YYYY-MM-DD`. */
  lastDay: string;
  /** The query string that names this period, for links. */
  query: string;
}

/** Longest custom period: a year and a day, so one page never aggregates without bound. */
const MAX_DAYS = 367;

/** A bad picker value, with the field at fault, for a 400 page. */
export class PeriodError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

function ofDays(kind: PeriodKind, fromDay: number, toDayExclusive: number): DashboardPeriod {
  const firstDay = dayOf(fromDay);
  const lastDay = dayOf(toDayExclusive - 1);
  const query =
    kind === "custom" ? `period=custom&from=${firstDay}&to=${lastDay}` : `period=${kind}`;
  return {
    kind,
    from: fromDay * DAY_MS,
    to: toDayExclusive * DAY_MS,
    firstDay,
    lastDay,
    query,
  };
}

/** What a picker query carries: the menu, the date fields, and the days the form showed. */
export interface PeriodQuery {
  period?: string;
  from?: string;
  to?: string;
  /**
   * The days the form showed in its date fields (`first..last`, empty when none), sent back
   * with it: dates that differ from them were typed by the person, whatever the menu says.
   */
  shown?: string;
}

/** The `shown` value of a period's form: the days its date fields hold. */
export function shownDays(period: DashboardPeriod | null): string {
  return period === null ? "" : `${period.firstDay}..${period.lastDay}`;
}

/**
 * Whether the query's dates were changed from what the form showed (or, without `shown`, from
 * the days of the period the menu names): such dates are a custom range and must be used, not
 * dropped because the menu still says "Month to date". A menu changed with the dates left as
 * shown takes the menu's period.
 */
export function datesEdited(query: PeriodQuery, now: number): boolean {
  const from = query.from ?? "";
  const to = query.to ?? "";
  if (query.period === "custom" || (from === "" && to === "")) return false;
  if (query.shown !== undefined) return `${from}..${to}` !== query.shown;
  const kind = query.period ?? "month";
  // "All time" (the discrepancies' menu) shows no dates: any given were typed. An unknown
  // menu value is left to periodOf, which says what is wrong with it.
  if (kind === "all") return true;
  if (!(periodKinds as readonly string[]).includes(kind)) return false;
  return `${from}..${to}` !== shownDays(periodOf({ period: kind }, now));
}

/**
 * The period of a page's query, in UTC: `day` is today, `week` is Monday to today, `month`
 * (the default) is the 1st to today, each through the end of today; `custom` takes `from` and
 * `to` as days, both inclusive (a person's "1 to 30 November"), so `to` is the midnight after.
 * Dates typed into the form are a custom range whatever the menu says (see `datesEdited`).
 */
export function periodOf(query: PeriodQuery, now: number): DashboardPeriod {
  const kind = (datesEdited(query, now) ? "custom" : (query.period ?? "month")) as PeriodKind;
  if (!periodKinds.includes(kind)) {
    throw new PeriodError("period", `period must be one of ${periodKinds.join(", ")}`);
  }
  const today = Math.floor(now / DAY_MS);
  const tomorrow = today + 1;
  if (kind === "day") return ofDays(kind, today, tomorrow);
  if (kind === "week") {
    // 1970-01-01 was a Thursday: day 0 is weekday 3 counting Monday as 0.
    const weekday = (today + 3) % 7;
    return ofDays(kind, today - weekday, tomorrow);
  }
  if (kind === "month") {
    const d = new Date(today * DAY_MS);
    const first = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1) / DAY_MS;
    return ofDays(kind, first, tomorrow);
  }
  const day = (field: "from" | "to") => {
    const text = query[field];
    if (text === undefined || text === "")
      throw new PeriodError(field, `${field}: a date is needed`);
    if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) {
      throw new PeriodError(field, `${field}: write the date as YYYY-MM-DD`);
    }
    const ms = parseInstant(text);
    if (ms === null) {
      throw new PeriodError(field, `${field}: ${instantProblem(text) ?? `${text} is not a date`}`);
    }
    return ms / DAY_MS;
  };
  const fromDay = day("from");
  const toDay = day("to");
  if (toDay < fromDay) throw new PeriodError("to", "to: the last day is before the first");
  if (toDay - fromDay + 1 > MAX_DAYS) {
    throw new PeriodError("to", `to: a period is at most ${MAX_DAYS} days`);
  }
  return ofDays(kind, fromDay, toDay + 1);
}
