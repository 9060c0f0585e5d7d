import type { LocalWorld } from "../../src/localnet/world.js";

/** The block time (ms) of the local chain's finalized slot: how far a listing now is whole. */
export function finalizedTime(world: LocalWorld): number {
  const slot = world.chain.currentSlot() - world.chain.finalitySlots;
  return (world.chain.blockTime(slot) ?? 0) * 1000;
}

/**
 * Waits until the local chain's finalized block time has passed `at` (ms): a vault read after
 * it holds every transaction of the second `at` falls in, as the ledger counts a period read.
 */
export async function finalizedPast(world: LocalWorld, at: number): Promise<void> {
  while (finalizedTime(world) <= at) await new Promise((r) => setTimeout(r, 10));
}
