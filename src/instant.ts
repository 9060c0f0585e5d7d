import { cutText } from "./printable-text.js";

/**
 * Reads an ISO 8601 date-time that names its zone (`Z` or an offset) and exists: 2026-02-30 or
 * 24:00 is refused rather than shifted into another day, and a time without a zone is refused
 * rather than read in whatever zone the server runs in. Milliseconds since the epoch (of the
 * millisecond the time falls in, as a receipt's time is kept), or null.
 */
export function parseZonedDateTime(text: string): number | null {
  const match =
    /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:Z|[+-](\d{2}):?(\d{2}))$/i.exec(
      text,
    );
  if (!match) return null;
  const [, y, mo, d, h, mi, s, , oh, om] = match;
  if (utcDay(Number(y), Number(mo), Number(d)) === null) return null;
  if (Number(h) > 23 || Number(mi) > 59 || Number(s ?? 0) > 59) return null;
  if (oh !== undefined && (Number(oh) > 14 || Number(om) > 59)) return null;
  const ms = Date.parse(text);
  // Date.parse drops digits past the millisecond: 23:59:59.9999 is a time of 23:59:59.999, of
  // its own day (rounded up, a job then was counted in the next day's report).
  return Number.isNaN(ms) ? null : ms;
}

/**
 * True when `text` gives a time finer than a millisecond (a non-zero digit past the third of
 * its seconds' fraction): receipts are dated to the millisecond, so no period bound between
 * two milliseconds parts the jobs of one from those of the next.
 */
export function finerThanMillisecond(text: string): boolean {
  return /:\d{2}\.\d{3}\d*[1-9]/.test(text);
}

/**
 * Milliseconds since the epoch of the millisecond in which epoch seconds written in decimal
 * (`1795996799.9996`) fall, read from the digits: multiplied as a float, rounded, they could be
 * the next millisecond, and the next day's.
 */
export function epochSecondsToMs(digits: string): number {
  const [whole, fraction = ""] = digits.split(".");
  return Number(whole) * 1000 + Number(fraction.slice(0, 3).padEnd(3, "0"));
}

/**
 * Midnight UTC of a day of the calendar (month 1 to 12), or null when there is no such day
 * (2026-02-30). `Date.UTC` reads a year from 0 to 99 as 1900 to 1999: `0001-01-01` came out as
 * 1901 and was refused as "not a date", though it is one.
 */
export function utcDay(year: number, month: number, day: number): number | null {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  const ms = date.getTime();
  if (Number.isNaN(ms)) return null;
  return date.getUTCFullYear() === year &&
    date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day
    ? ms
    : null;
}

/**
 * The IANA time zone `name` names, or null when this runtime knows no such zone: spelt as Intl
 * spells it where that differs only in case (`europe/london` -> `Europe/London`), else as given
 * (Intl answers `Asia/Kathmandu` with its older name, `Asia/Katmandu`). A name of a zone that
 * is UTC at every instant (`Etc/UTC`, `GMT`, `Zulu`: Intl answers each with `UTC`) is `UTC`,
 * whose days are the rollups' own, not a zone whose days are summed one by one.
 */
export function timeZoneOf(name: string): string | null {
  try {
    const resolved = new Intl.DateTimeFormat("en-US", { timeZone: name }).resolvedOptions()
      .timeZone;
    if (resolved === "UTC") return resolved;
    return resolved.toLowerCase() === name.toLowerCase() ? resolved : name;
  } catch {
    return null;
  }
}

/** The most of a refused value its refusal shows: the longest IANA name is 32, an instant 35. */
const shownValueLength = 64;

/**
 * A refused value as its refusal shows it: cut to 64 characters, the cut ending in an
 * ellipsis. 5,000 characters sent were all said back.
 */
export function shownValue(text: string): string {
  return cutText(text, shownValueLength, "\u2026") ?? "";
}

/** Why `timeZoneOf` refused `name`, with what to give instead; a long name is shown cut. */
export function timeZoneRefusal(name: string): string {
  const shown = shownValue(name);
  return `no time zone named ${JSON.stringify(shown)}: give an IANA name such as Europe/London or America/New_York`;
}

const zoneFormats = new Map<string, Intl.DateTimeFormat>();

/** The wall clock of `timeZone` at `ms`, as the UTC instant that shows the same date and time. */
function wallClockOf(timeZone: string, ms: number): number {
  let format = zoneFormats.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    zoneFormats.set(timeZone, format);
  }
  const parts: Record<string, number> = {};
  for (const p of format.formatToParts(ms)) parts[p.type] = Number(p.value);
  const wall = new Date(0);
  wall.setUTCFullYear(parts.year!, parts.month! - 1, parts.day!);
  wall.setUTCHours(parts.hour!, parts.minute!, parts.second!, ((ms % 1000) + 1000) % 1000);
  return wall.getTime();
}

/** The calendar day (`YYYY-MM-DD`) that `ms` falls on in `timeZone` (a name `timeZoneOf` took). */
export function zoneDateOf(timeZone: string, ms: number): string {
  return new Date(wallClockOf(timeZone, ms)).toISOString().slice(0, 10);
}

const HOURS_26 = 26 * 3_600_000;

/**
 * The first instant of the calendar day `date` (`YYYY-MM-DD`) in `timeZone`: its midnight, or,
 * where a clock change skips midnight, the first instant the zone's clocks show that date.
 * Days run from one such instant to the next, so a zone's days cover time once, 23 or 25 hours
 * long on the days its clocks change.
 */
export function zoneDayStart(timeZone: string, date: string): number {
  const utcMidnight = Date.parse(`${date}T00:00:00Z`);
  const isStart = (t: number) =>
    zoneDateOf(timeZone, t) >= date && zoneDateOf(timeZone, t - 1) < date;
  // Midnight at the offset of the hours around it: the start on every day but a few.
  const guess = utcMidnight - (wallClockOf(timeZone, utcMidnight) - utcMidnight);
  const start = utcMidnight - (wallClockOf(timeZone, guess) - guess);
  if (isStart(start)) return start;
  // Every zone's offset lies within 26 hours of UTC: the day starts inside this window, and
  // the first instant showing `date` or later is found by halving it (to the millisecond).
  let low = utcMidnight - HOURS_26;
  let high = utcMidnight + HOURS_26;
  while (high - low > 1) {
    const mid = low + Math.floor((high - low) / 2);
    if (zoneDateOf(timeZone, mid) >= date) high = mid;
    else low = mid;
  }
  return high;
}
/**
 * The starts of the days of `timeZone` in [from, to), `from` itself first, each after the one
 * before. A date the zone's clocks skipped (Pacific/Apia's 2011-12-30) starts no day: its first
 * instant is the next day's, and the two gave one start twice, an empty day before the next.
 */
export function zoneDayStarts(timeZone: string, from: number, to: number): number[] {
  const starts = [from];
  let day = zoneDateOf(timeZone, from);
  for (;;) {
    const start = zoneDayStart(timeZone, nextDate(day));
    if (start >= to) return starts;
    starts.push(start);
    day = zoneDateOf(timeZone, start);
  }
}

/** The calendar day after `date` (`YYYY-MM-DD`). */
function nextDate(date: string): string {
  return new Date(Date.parse(`${date}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
}
