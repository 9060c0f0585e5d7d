import { DAY_MS, HOUR_MS } from "../db/rollups.js";

/**
 * How a report period is read: whole UTC days from the day rollups, whole hours of a partial
 * first or last day from the hour rollups, the rest from `jobs`. Pure, shared by the reports
 * store of either dialect.
 */

/** [from, to) cut into whole UTC days, whole hours, and the partial hours read from `jobs`. */
export interface PeriodPieces {
  days: { first: number; end: number } | null;
  hours: { first: number; end: number }[];
  partial: { from: number; to: number }[];
}

/** Cuts an edge [from, to) (less than two days) into whole hours and the partial hours. */
function edgePieces(from: number, to: number, into: PeriodPieces): void {
  if (from >= to) return;
  const first = Math.ceil(from / HOUR_MS);
  const end = Math.floor(to / HOUR_MS);
  if (first >= end) {
    into.partial.push({ from, to });
    return;
  }
  into.hours.push({ first, end });
  if (from < first * HOUR_MS) into.partial.push({ from, to: first * HOUR_MS });
  if (end * HOUR_MS < to) into.partial.push({ from: end * HOUR_MS, to });
}

/** The whole days, whole hours and partial hours of [from, to). */
export function periodPieces(from: number, to: number): PeriodPieces {
  const pieces: PeriodPieces = { days: null, hours: [], partial: [] };
  const first = Math.ceil(from / DAY_MS);
  const end = Math.floor(to / DAY_MS);
  if (first >= end) {
    edgePieces(from, to, pieces);
    return pieces;
  }
  pieces.days = { first, end };
  edgePieces(from, first * DAY_MS, pieces);
  edgePieces(end * DAY_MS, to, pieces);
  return pieces;
}

/** The days that start at `dayStarts` (ascending), each to the next start, the last to `to`. */
export function daysOfStarts(query: {
  to: number;
  dayStarts?: readonly number[];
}): { from: number; to: number }[] {
  const starts = query.dayStarts ?? [];
  return starts.map((from, i) => ({ from, to: starts[i + 1] ?? query.to }));
}
