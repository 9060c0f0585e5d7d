/** A nightly window a run finished (exit 0 or 1): its jobs and ledger were judged. */
export interface JudgedWindow {
  from: number;
  to: number;
}

/**
 * The earliest time in [`since`, `before`) that no finished nightly window covers, counted from
 * `floor` (the start of the first nightly window, finished or not) when that is later; null when
 * every part of it is covered, or when there is no nightly at all. A finished window covers
 * only its own span: the latest end of any run is not enough, as an operator's `verify --since
 * 1h` after a killed night would pass for that whole night. When no run finished inside the
 * look-back and the first nightly began before it (a schedule set again after months), nothing
 * is taken in: that is left to `verify --from --to` rather than one run that cannot finish.
 */
export function firstUnjudged(
  floor: number | null,
  since: number,
  before: number,
  judged: readonly JudgedWindow[],
): number | null {
  if (floor === null) return null;
  if (floor < since && !judged.some((w) => w.to > since)) return null;
  let t = Math.max(floor, since);
  for (const w of [...judged].sort((a, b) => a.from - b.from)) {
    if (w.from > t) break;
    t = Math.max(t, w.to);
  }
  return t < before ? t : null;
}
