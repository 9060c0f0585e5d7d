import type { LocalWorld } from "../../src/localnet/world.js";
import { finalizedPast } from "./finality.js";

/**
 * A local chain whose clock a test moves on by hand (an adversary harness is one): its world and
 * the clock's `now` and `advanceClock`.
 */
export interface MovableChain {
  world: LocalWorld;
  op: { now(): number; advanceClock(ms: number): void };
}

/**
 * The nightly ledger check's pause between reads (`ledgerWindowCheck`'s `pause`) on `h`'s chain:
 * moves the chain's clock on by the pause, as that much time passing would (new slots, later
 * block times, later finality), instead of waiting it. The run still starts before the chain has
 * finalized what it must read and reads again until it has; only the waiting is gone.
 */
export function clockPause(h: MovableChain) {
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
export async function finalizedPastOnClock(h: MovableChain, at: number): Promise<void> {
  const edge = Math.floor(at / 1000) * 1000 + 1000 + 50;
  const by = edge - h.op.now();
  if (by > 0) h.op.advanceClock(by);
  await finalizedPast(h.world, at);
}

/**
 * Moves `h`'s chain clock on past the next whole second and returns that second: every
 * transaction sent after this has a block time at or after it (a period's edge).
 */
export function chainEdge(h: MovableChain): number {
  const at = Math.ceil(h.op.now() / 1000) * 1000 + 1000;
  h.op.advanceClock(at - h.op.now() + 50);
  return at;
}
