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
