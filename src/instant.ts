/**
 * Reads an ISO 8601 date-time that names its zone (`Z` or an offset) and exists: 2026-02-30 or
 * 24:00 is refused rather than shifted into another day, and a time without a zone is refused
 * rather than read in whatever zone the server runs in. Milliseconds since the epoch (a time
 * finer than a millisecond rounded up), or null.
 */
export function parseZonedDateTime(text: string): number | null {
  const match =
    /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:Z|[+-](\d{2}):?(\d{2}))$/i.exec(
      text,
    );
  if (!match) return null;
  const [, y, mo, d, h, mi, s, fraction, oh, om] = match;
  if (utcDay(Number(y), Number(mo), Number(d)) === null) return null;
  if (Number(h) > 23 || Number(mi) > 59 || Number(s ?? 0) > 59) return null;
  if (oh !== undefined && (Number(oh) > 14 || Number(om) > 59)) return null;
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) return null;
  // A time between two milliseconds is the later one (Date.parse drops the rest): a period
  // from 23:59:59.9999 must not take in a job at 23:59:59.999, which came before it.
  return /[1-9]/.test(fraction?.slice(3) ?? "") ? ms + 1 : ms;
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
