import type { Queued } from "./receipt-writer.js";

/**
 * Sorts the tasks the database refused: those refused for `refuseAfterMs` are rejected, or
 * kept (those that may be, while fewer than `maxKept` are); the rest are tried again.
 * `at` is on the monotonic clock (`performance.now()`): with the wall clock, a step back (NTP,
 * a VM restored) held a refused receipt's client for the size of the step, an hour for an hour.
 */
export function sortRefused(
  queue: Queued[],
  kept: Queued[],
  error: unknown,
  limits: { at: number; refuseAfterMs: number; maxKept: number; giveUp: boolean },
): Queued[] {
  const retry: Queued[] = [];
  for (const item of queue) {
    item.refusedSince ??= limits.at;
    if (limits.at - item.refusedSince < limits.refuseAfterMs) retry.push(item);
    else if (item.keep && !limits.giveUp && kept.length < limits.maxKept) {
      kept.push(item);
      const keep = item.keep;
      // Said once: a task kept again after the database refused it once more is still kept.
      item.keep = () => {};
      keep();
    } else item.reject(error);
  }
  return retry;
}
