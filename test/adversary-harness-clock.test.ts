import { describe, expect, it } from "vitest";
import { harnessClock, useAdversaryHarness } from "./support/operator.js";

/**
 * The adversary harness moves the local chain on a slot at a time without waiting. Those slots
 * must not stay on the chain's clock: it ran ~10 ms a slot ahead of the recorder's (the
 * machine's), more with each case of a file, and a receipt recorded right after its settlement
 * came out dated in the second before the settlement's block.
 */
describe("adversary harness clock", () => {
  const h = useAdversaryHarness();

  it("gives back the slots it moved on at once, never going back", async () => {
    for (let i = 0; i < 10; i++) h.op.nextSlot();
    expect(h.op.now() - Date.now()).toBeGreaterThanOrEqual(90);
    let slot = h.world.chain.currentSlot();
    const deadline = Date.now() + 2_000;
    while (h.op.now() - Date.now() > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
      const now = h.world.chain.currentSlot();
      expect(now).toBeGreaterThanOrEqual(slot);
      slot = now;
    }
    expect(h.op.now() - Date.now()).toBeLessThanOrEqual(0);
  });

  it("keeps what advanceClock moved on for good", async () => {
    h.op.advanceClock(5_000);
    h.op.nextSlot();
    await new Promise((r) => setTimeout(r, 50));
    const ahead = h.op.now() - Date.now();
    expect(ahead).toBeGreaterThanOrEqual(4_990);
    expect(ahead).toBeLessThanOrEqual(5_000);
  });

  it("runs at half speed while it is ahead, then with the machine", () => {
    let machine = 1_000;
    const clock = harnessClock(() => machine);
    clock.lead(10);
    expect(clock.now()).toBe(1_010);
    machine += 10;
    expect(clock.now()).toBe(1_015);
    clock.advance(100);
    expect(clock.now()).toBe(1_115);
    machine += 10;
    expect(clock.now()).toBe(1_120);
    machine += 10;
    expect(clock.now()).toBe(1_130);
  });
});
