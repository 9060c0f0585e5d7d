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

/**
 * The next whole second (ms) at least `leadMs` from now, returned once the local chain's clock
 * has reached it: every transaction sent after this returns has a block time at or after it, so
 * a period starting there holds them all and nothing sent before. A timer alone does not promise
 * that: a slot begun before the second carries the second before as its block time, and a timer
 * on a loaded host fires early against `Date.now` when the loop's cached time is stale.
 */
export async function chainSecondAfter(world: LocalWorld, leadMs = 1): Promise<number> {
  const at = Math.ceil((Date.now() + leadMs) / 1000) * 1000;
  while ((world.chain.blockTime(world.chain.currentSlot()) ?? 0) * 1000 < at) {
    await new Promise((r) => setTimeout(r, Math.max(1, Math.min(20, at - Date.now()))));
  }
  return at;
}

/**
 * The machine's time now (a window's end a run may take: not after the machine's clock), once
 * it is past the second of the chain's newest slot, which runs a little ahead of it; returned
 * once the local chain has finalized past it. A window ending there holds everything sent
 * before, and a read lists it at once, where a fixed pause of a second was a guess that a
 * loaded host could outrun.
 */
export async function finalizedNow(world: LocalWorld): Promise<number> {
  const newest = (world.chain.blockTime(world.chain.currentSlot()) ?? 0) * 1000;
  while (Date.now() <= newest) await new Promise((r) => setTimeout(r, 5));
  const now = Date.now();
  await finalizedPast(world, now);
  return now;
}
