/**
 * Instants and periods at the edges of reports. Every period is UTC, `from` inclusive and
 * `to` exclusive, in milliseconds since the epoch.
 */

import { AppError } from "../errors.js";
import {
  finerThanMillisecond,
  parseZonedDateTime,
  shownValue,
  utcDay,
  zoneDateOf,
  zoneDayStart,
} from "../instant.js";

const DAY_MS = 86_400_000;

/**
 * Parses an instant: `YYYY-MM-DD` (UTC midnight), an ISO 8601 date-time with `Z` or an offset,
 * or an integer since the epoch: seconds up to 10 digits (what ingest's `created_at` takes, up
 * to the year 2286), milliseconds from 11 to 13 (the same years: a longer number is no time an
 * answer could name back in ISO 8601). Returns null for anything else, including dates
 * that do not exist (2026-02-30), so a typo is an error rather than a silently shifted period.
 * With `timeZone` (a name `timeZoneOf` took), a date is the start of that day there, not in UTC.
 */
export function parseInstant(text: string, timeZone?: string): number | null {
  const ms = calendarInstant(text, timeZone);
  // Epoch integers start at 0; a date before it is no time any receipt or chain record has.
  return ms !== null && ms >= 0 ? ms : null;
}

/** `parseInstant` without its lower bound: what the text names, if anything. */
function calendarInstant(text: string, timeZone?: string): number | null {
  const value = text.trim();
  // A date in ISO 8601's basic format (`date +%Y%m%d`) is no instant here: read as epoch
  // seconds it put the period in 1970 without a word (`verify` judged nothing and exited 0).
  if (basicFormatDate(value) !== null) return null;
  // Seconds read as milliseconds put a period in January 1970 without a word.
  if (/^\d{1,10}$/.test(value)) return Number(value) * 1000;
  if (/^\d{11,13}$/.test(value)) return Number(value);
  const dateOnly = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (dateOnly) {
    const [, y, m, d] = dateOnly;
    const midnight = utcDay(Number(y), Number(m), Number(d));
    return midnight === null || timeZone === undefined ? midnight : zoneDayStart(timeZone, value);
  }
  // Read to its millisecond, `from=…00.1231` took in a job of .1230, before it.
  return finerThanMillisecond(value) ? null : parseZonedDateTime(value);
}

/**
 * Why `parseInstant` refuses text that looks like an instant, or null when there is no more
 * to say than "not a date". "Not a date" misled for `0001-01-01` (a date, before 1970), for
 * `2026-02-30` (shaped as one) and for 14 digits (an integer, but no epoch time).
 */
export function instantProblem(text: string): string | null {
  const value = text.trim();
  const shown = shownValue(value);
  const ms = calendarInstant(value);
  // A negative epoch integer (`-1`) is a time before 1970 too; it was told it was no epoch
  // integer at all.
  if ((ms !== null && ms < 0) || /^-\d+$/.test(value)) {
    return `${shown} is before 1970-01-01, the epoch: no receipt or chain record is older (write 1970-01-01 for "from the start")`;
  }
  if (finerThanMillisecond(value) && parseZonedDateTime(value) !== null) {
    return `${shown} is finer than a millisecond: jobs are dated to the millisecond, so give at most 3 decimals of a second`;
  }
  if (/^\d{14,}$/.test(value)) {
    return `${shown} has ${value.length} digits: an epoch integer is seconds (up to 10 digits) or milliseconds (11 to 13)`;
  }
  const shaped = /^(\d{4})-(\d{2})-(\d{2})(T|$)/i.exec(value);
  if (shaped && utcDay(Number(shaped[1]), Number(shaped[2]), Number(shaped[3])) === null) {
    return `${shaped[1]}-${shaped[2]}-${shaped[3]} is no day of the calendar (month 01 to 12, day 01 to the month's last)`;
  }
  return null;
}

/**
 * The `YYYY-MM-DD` that eight digits shaped as a date (`20261101`: a year from 1970, a month,
 * a day of 01 to 31) would be written as, the first day for six shaped as a month (`202611`),
 * or null for any other text. Such digits are refused
 * as instants: as epoch seconds they name a moment of 1970 to 1973, which no one means.
 */
export function basicFormatDate(text: string): string | null {
  const value = text.trim();
  const match = /^(19[7-9]\d|[2-9]\d{3})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$/.exec(value);
  if (match) return `${match[1]}-${match[2]}-${match[3]}`;
  // A month so (`date +%Y%m`, 202611): as epoch seconds, a moment of 1970's first two weeks.
  const month = /^(19[7-9]\d|[2-9]\d{3})(0[1-9]|1[0-2])$/.exec(value);
  return month ? `${month[1]}-${month[2]}-01` : null;
}

/**
 * What to write instead of digits `basicFormatDate` reads as a date or a month, or null: a
 * month's six digits are said as such, not as the "eight digits" of a date they are not.
 */
export function basicFormatHint(text: string): string | null {
  const date = basicFormatDate(text);
  if (date === null) return null;
  return text.trim().length === 6
    ? `a month without its dash: write its first day ${date} (six digits are not read as epoch seconds)`
    : `a date without its dashes: write it ${date} (eight digits are not read as epoch seconds)`;
}

/** The reason given for an instant that `parseInstant` refuses, with a hint for basic dates. */
export function instantRefusal(text: string): string {
  const hint = basicFormatHint(text);
  if (hint !== null) return `${text.trim()} is ${hint}`;
  return instantProblem(text) ?? `not a date or ISO 8601 date-time: ${shownValue(text)}`;
}

const isDate = (text: string) => /^\d{4}-\d{2}-\d{2}$/.test(text.trim());

/**
 * Why a period's bounds cannot be read in `timeZone`: one given as a date (the start of that
 * day there) and the other as an instant (a date-time or epoch integer, the same anywhere), a
 * period whose ends are read by two rules, one of them not the zone's. Names the instant's
 * field and what to send; null when both are dates or both instants.
 */
export function mixedZoneBounds(
  from: string,
  to: string,
  timeZone: string,
  flag: (field: "from" | "to" | "timeZone") => string = (field) => field,
): { field: "from" | "to"; message: string } | null {
  if (timeZone === "UTC" || isDate(from) === isDate(to)) return null;
  const [date, instant] = isDate(from) ? (["from", "to"] as const) : (["to", "from"] as const);
  const dateText = date === "from" ? from : to;
  return {
    field: instant,
    message: `with ${flag("timeZone")} ${timeZone} and ${flag(date)} a date (${dateText.trim()}, the start of that day in ${timeZone}), give ${flag(instant)} as a date too (YYYY-MM-DD, read the same way), or both as date-times with their offsets`,
  };
}

/** ISO 8601 text of an instant in UTC. */
export function isoOf(ms: number): string {
  return new Date(ms).toISOString();
}

/** The UTC day (`YYYY-MM-DD`) of a day number (milliseconds / 86,400,000). */
export function dayOf(dayNumber: number): string {
  return isoOf(dayNumber * DAY_MS).slice(0, 10);
}

export { DAY_MS };

/**
 * How far behind the clock a job's time can still be when its row commits: the proxy stamps a
 * receipt inside its write transaction, the fetch wrapper with the time the answer came, and a
 * transaction takes a few ms (a busy PostgreSQL, or a wrapper posting a second later, longer).
 * Reports call figures final only up to this far before now, so a job committed a moment after
 * the report was read is not in a period it called final.
 */
export const RECORDING_MARGIN_MS = 5_000;

/**
 * Parses a duration such as `24h`, `30m`, `7d`, `90s`, `1500ms` into milliseconds; null when
 * the text is not one.
 */
export function parseDuration(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) return null;
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS }[match[2] as string];
  const ms = Math.round(Number(match[1]) * (factor ?? 0));
  return ms > 0 ? ms : null;
}

/**
 * Why `parseDuration` refuses `text`: a duration of zero (`0h`, `0.0001ms`) is named as one,
 * where "not a duration like 24h" sent its writer looking for a wrong unit.
 */
export function durationRefusal(text: string, example: string): string {
  return /^\d+(?:\.\d+)?(ms|s|m|h|d)$/.test(text.trim())
    ? `must be more than 0 (at least 1ms): ${shownValue(text)}`
    : `not a duration like ${example}: ${shownValue(text)}`;
}

/** Flags of the commands that take a window (`verify`, `report reconciliation`). */
export type WindowFlags = {
  since?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
  window?: string | undefined;
};

/** Values of `--window`: windows aligned on UTC days, whatever the time the command runs. */
export const namedWindows = ["yesterday"] as const;

/**
 * The UTC day before the one holding `now`: [00:00 yesterday, 00:00 today); with `timeZone`,
 * the day before today there, from one start of its days to the next.
 */
export function yesterdayWindow(now: number, timeZone?: string): { from: number; to: number } {
  if (timeZone !== undefined) {
    const today = zoneDateOf(timeZone, now);
    const yesterday = isoOf(Date.parse(`${today}T00:00:00Z`) - DAY_MS).slice(0, 10);
    return { from: zoneDayStart(timeZone, yesterday), to: zoneDayStart(timeZone, today) };
  }
  const to = Math.floor(now / DAY_MS) * DAY_MS;
  return { from: to - DAY_MS, to };
}

/**
 * The window [from, to) that the flags name, at `now`:
 * - `--since 24h`: [now - 24 h, now), relative to the moment the command runs, so a run that
 *   starts late covers a later window;
 * - `--window yesterday`: the previous UTC day, the same whenever in the day it runs;
 * - `--from X [--to Y]`: [X, Y), with `to` now when not given.
 * With `timeZone`, `yesterday` and dates given to `--from`/`--to` are days of that zone.
 * A bad or conflicting flag is a `validation_failed` AppError naming it.
 */
export function windowFromFlags(
  flags: WindowFlags,
  now: number,
  timeZone?: string,
): { from: number; to: number } {
  const bad = (field: string, message: string) =>
    new AppError("validation_failed", `--${field}: ${message}`, { field });
  const given = (["since", "window"] as const).filter((f) => flags[f] !== undefined);
  if (given.length > 1) throw bad("window", "use one of --since, --window or --from/--to");
  const [only] = given;
  if (only !== undefined && (flags.from !== undefined || flags.to !== undefined)) {
    throw bad(only, `use either --${only} or --from/--to`);
  }
  if (flags.window !== undefined) {
    if (flags.window !== "yesterday") {
      throw bad(
        "window",
        `no window named ${JSON.stringify(flags.window)} (known: ${namedWindows.join(", ")}); for another period give --since or --from/--to`,
      );
    }
    return yesterdayWindow(now, timeZone);
  }
  if (flags.since !== undefined) {
    const ms = parseDuration(flags.since);
    if (ms === null) {
      throw bad(
        "since",
        `${durationRefusal(flags.since, "24h, 90m or 7d")}${flags.since === "yesterday" ? " (the previous UTC day is --window yesterday)" : ""}`,
      );
    }
    if (ms > now) throw bad("since", `reaches back before 1970: ${shownValue(flags.since)}`);
    return { from: now - ms, to: now };
  }
  if (flags.from === undefined) {
    throw bad("from", "give --since 24h, --window yesterday, or --from (and --to)");
  }
  if (timeZone !== undefined && flags.to !== undefined) {
    const flag = (field: string) => (field === "timeZone" ? "--time-zone" : `--${field}`);
    const mixed = mixedZoneBounds(flags.from, flags.to, timeZone, flag);
    if (mixed) throw bad(mixed.field, mixed.message);
  }
  const from = parseInstant(flags.from, timeZone);
  if (from === null) throw bad("from", instantRefusal(flags.from));
  const to = flags.to === undefined ? now : parseInstant(flags.to, timeZone);
  if (to === null) throw bad("to", instantRefusal(flags.to ?? ""));
  if (to <= from) throw bad("to", "must be after --from");
  return { from, to };
}
