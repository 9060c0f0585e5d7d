import { finalizedPast } from "./finality.js";
import type { AdversaryHarness } from "./operator.js";

/**
 * The nightly ledger check's pause between reads (`ledgerWindowCheck`'s `pause`) on `h`'s chain:
 * moves the chain's clock on by the pause, as that much time passing would (new slots, later
 * block times, later finality), instead of waiting it. The run still starts before the chain has
 * finalized what it must read and reads again until it has; only the waiting is gone.
 */
export function clockPause(h: AdversaryHarness) {
  return async (ms: number, signal?: AbortSignal): Promise<void> => {
    signal?.throwIfAborted();
    h.op.advanceClock(ms);
    // A turn of the event loop, as a timer gives: the run's deadline may fire meanwhile.
    await new Promise((r) => setImmediate(r));
    signal?.throwIfAborted();
  };
}

/**
 * Moves `h`'s chain clock on to just past the whole second after `at` (ms) when it is behind it,
 * and returns once the chain has finalized past `at`: the chain as waiting for `at`'s finality
 * leaves it, no real time waited but the few slots of finality.
 */
export async function finalizedPastOnClock(h: AdversaryHarness, at: number): Promise<void> {
  const edge = Math.floor(at / 1000) * 1000 + 1000 + 50;
  const by = edge - h.op.now();
  if (by > 0) h.op.advanceClock(by);
  await finalizedPast(h.world, at);
}

/**
 * Moves the chain's clock on to `at` (ms) plus `pastMs` at once, as that much time passing would:
 * its slots and block times move on with it, and so does a run's clock read from it.
 */
export function moveClockTo(h: AdversaryHarness, at: number, pastMs = 0): void {
  const by = at + pastMs - h.op.now();
  if (by > 0) h.op.advanceClock(by);
}

/**
 * The chain's next whole second at least `ms` from its now, moved on to a slot past it: every
 * transaction sent after this has a block time at or after it (a window's edge).
 */
export function edgeAfter(h: AdversaryHarness, ms: number): number {
  const at = Math.ceil((h.op.now() + ms) / 1000) * 1000;
  moveClockTo(h, at, h.world.chain.slotMs);
  return at;
}
