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
  const day = Date.UTC(Number(y), Number(mo) - 1, Number(d));
  if (new Date(day).toISOString().slice(0, 10) !== `${y}-${mo}-${d}`) return null;
  if (Number(h) > 23 || Number(mi) > 59 || Number(s ?? 0) > 59) return null;
  if (oh !== undefined && (Number(oh) > 14 || Number(om) > 59)) return null;
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) return null;
  // A time between two milliseconds is the later one (Date.parse drops the rest): a period
  // from 23:59:59.9999 must not take in a job at 23:59:59.999, which came before it.
  return /[1-9]/.test(fraction?.slice(3) ?? "") ? ms + 1 : ms;
}
