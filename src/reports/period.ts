/**
 * Instants and periods at the edges of reports. Every period is UTC, `from` inclusive and
 * `to` exclusive, in milliseconds since the epoch.
 */

import { parseZonedDateTime } from "../instant.js";

const DAY_MS = 86_400_000;

/**
 * Parses an instant: `YYYY-MM-DD` (UTC midnight), an ISO 8601 date-time with `Z` or an offset,
 * or integer milliseconds since the epoch. Returns null for anything else, including dates
 * that do not exist (2026-02-30), so a typo is an error rather than a silently shifted period.
 */
export function parseInstant(text: string): number | null {
  const value = text.trim();
  if (/^\d{1,15}$/.test(value)) return Number(value);
  const dateOnly = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (dateOnly) {
    const [, y, m, d] = dateOnly;
    const ms = Date.UTC(Number(y), Number(m) - 1, Number(d));
    return new Date(ms).toISOString().slice(0, 10) === value ? ms : null;
  }
  return parseZonedDateTime(value);
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
