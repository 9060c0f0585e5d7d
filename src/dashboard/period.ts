import { timeZoneOf, timeZoneRefusal, zoneDateOf, zoneDayStart } from "../instant.js";
import { DAY_MS, dayOf, instantProblem, parseInstant } from "../reports/period.js";

/** The period picker's choices; every one is whole days of the period's time zone. */
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
  /** The IANA time zone whose days these are (`UTC` unless one was asked for). */
  timeZone: string;
  /** The query string that names this period, for links. */
  query: string;
  /**
   * A period that runs to today (day, week, month), named by a link made before it ended:
   * shown whole, as the link named it, not as the one running now.
   */
  ended: boolean;
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

/**
 * The days numbered `fromDay` to `toDayExclusive` (days of the calendar, as UTC's are
 * numbered) as a period of `timeZone`: from the start of the first there to the start of the
 * day after the last.
 */
function ofDays(
  kind: PeriodKind,
  fromDay: number,
  toDayExclusive: number,
  timeZone: string,
  ended = false,
): DashboardPeriod {
  const firstDay = dayOf(fromDay);
  const lastDay = dayOf(toDayExclusive - 1);
  const zone = timeZone === "UTC" ? "" : `&timeZone=${encodeURIComponent(timeZone)}`;
  // A period that runs to today names its first day (`start`): a link followed after it
  // ended shows it, not the next one's first days (and a next-page link, an empty page).
  const query =
    kind === "custom"
      ? `period=custom&from=${firstDay}&to=${lastDay}${zone}`
      : `period=${kind}&start=${firstDay}${zone}`;
  const start = (day: number) =>
    timeZone === "UTC" ? day * DAY_MS : zoneDayStart(timeZone, dayOf(day));
  return {
    kind,
    from: start(fromDay),
    to: start(toDayExclusive),
    firstDay,
    lastDay,
    timeZone,
    query,
    ended,
  };
}

type RunningKind = Exclude<PeriodKind, "custom">;

/** The day, week (from Monday) or month holding `day`: its first day and the day after its last. */
function spanOf(kind: RunningKind, day: number): { first: number; after: number } {
  if (kind === "day") return { first: day, after: day + 1 };
  if (kind === "week") {
    // 1970-01-01 was a Thursday: day 0 is weekday 3 counting Monday as 0.
    const first = day - ((day + 3) % 7);
    return { first, after: first + 7 };
  }
  const d = new Date(day * DAY_MS);
  return {
    first: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1) / DAY_MS,
    after: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) / DAY_MS,
  };
}

/** The day number of a date a query gives in `field`, refused naming it when it is none. */
function dayOfField(field: string, text: string | undefined): number {
  if (text === undefined || text === "") throw new PeriodError(field, `${field}: a date is needed`);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) {
    throw new PeriodError(field, `${field}: write the date as YYYY-MM-DD`);
  }
  const ms = parseInstant(text);
  if (ms === null) {
    throw new PeriodError(field, `${field}: ${instantProblem(text) ?? `${text} is not a date`}`);
  }
  return ms / DAY_MS;
}

/**
 * A `start` that is not the first day of its period: the dashboard's links name a week by its
 * Monday and a month by its 1st. Moved to its period's first day, `week&start=1970-01-01` (a
 * Thursday) showed a week from 1969-12-29, before the epoch that every date refuses.
 */
function notFirstDay(kind: RunningKind, start: string, first: number): PeriodError {
  const its = first >= 0 ? ` (that ${kind} starts ${dayOf(first)})` : "";
  return new PeriodError(
    "start",
    `start: ${start} is not the first day of a ${kind}${its}: a week starts on a Monday, a month on the 1st; check the link`,
  );
}

/**
 * Today's day, week or month; or, when `start` names an earlier one (a link made before it
 * ended), that one whole.
 */
function runningPeriod(
  kind: RunningKind,
  start: string | undefined,
  today: number,
  timeZone: string,
): DashboardPeriod {
  const now = spanOf(kind, today);
  if (start === undefined) return ofDays(kind, now.first, today + 1, timeZone);
  const startDay = dayOfField("start", start);
  if (startDay > today) {
    throw new PeriodError(
      "start",
      `start: ${start} is after today (${dayOf(today)}); check the link`,
    );
  }
  const named = spanOf(kind, startDay);
  if (named.first !== startDay) throw notFirstDay(kind, start, named.first);
  if (named.first === now.first) return ofDays(kind, now.first, today + 1, timeZone);
  return ofDays(kind, named.first, named.after, timeZone, true);
}

/**
 * The time zone a page's query names: an IANA name as the API's `timeZone` takes it, `UTC`
 * when none is given (or the field is left empty); one this runtime does not know is refused.
 */
export function timeZoneOfQuery(text: string | undefined): string {
  if (text === undefined || text.trim() === "") return "UTC";
  const zone = timeZoneOf(text.trim());
  if (zone === null) throw new PeriodError("timeZone", `timeZone: ${timeZoneRefusal(text)}`);
  return zone;
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
  /** An IANA time zone whose days the period is made of; UTC without it. */
  timeZone?: string;
  /** The first day of the day, week or month a link names (see `runningPeriod`). */
  start?: string;
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
  return `${from}..${to}` !== shownDays(periodOf({ period: kind, timeZone: query.timeZone }, now));
}

/**
 * The period of a page's query, in its time zone (UTC unless `timeZone` names one): `day` is
 * today, `week` is Monday to today, `month` (the default) is the 1st to today, each through
 * the end of today; `custom` takes `from` and `to` as days, both inclusive (a person's "1 to
 * 30 November"), so `to` is the start of the day after. Dates typed into the form are a custom
 * range whatever the menu says (see `datesEdited`).
 */
export function periodOf(query: PeriodQuery, now: number): DashboardPeriod {
  const kind = (datesEdited(query, now) ? "custom" : (query.period ?? "month")) as PeriodKind;
  if (!periodKinds.includes(kind)) {
    throw new PeriodError("period", `period must be one of ${periodKinds.join(", ")}`);
  }
  const timeZone = timeZoneOfQuery(query.timeZone);
  const today = Date.parse(`${zoneDateOf(timeZone, now)}T00:00:00Z`) / DAY_MS;
  if (kind !== "custom") return runningPeriod(kind, query.start, today, timeZone);
  const day = (field: "from" | "to") => dayOfField(field, query[field]);
  const fromDay = day("from");
  const toDay = day("to");
  if (toDay < fromDay) throw new PeriodError("to", "to: the last day is before the first");
  if (toDay - fromDay + 1 > MAX_DAYS) {
    throw new PeriodError("to", `to: a period is at most ${MAX_DAYS} days`);
  }
  return ofDays(kind, fromDay, toDay + 1, timeZone);
}
