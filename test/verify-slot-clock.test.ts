import { describe, expect, it } from "vitest";
import { createSlotClock } from "../src/verify/slot-clock.js";

describe("the pace of the finalized slot", () => {
  it("is learnt from slots read over at least the minimum span", () => {
    const clock = createSlotClock({ minSpanMs: 1000 });
    expect(clock.msPerSlot()).toBeNull();
    clock.observe(1000, 0);
    clock.observe(1001, 500);
    expect(clock.msPerSlot()).toBeNull(); // half a second says too little
    clock.observe(1005, 2000);
    expect(clock.msPerSlot()).toBe(400);
    clock.observe(1010, 4000);
    expect(clock.msPerSlot()).toBeCloseTo(4000 / 10);
    expect(clock.latest()).toEqual({ slot: 1010, t: 4000 });
    // Between reads the slot is estimated by the pace.
    expect(clock.estimate(6000)).toBe(1015);
    expect(clock.estimate(3000)).toBe(1010);
    expect(createSlotClock().estimate(0)).toBeNull();
  });

  it("forgets samples older than its window, so a pace that changes is followed", () => {
    const clock = createSlotClock({ minSpanMs: 1000, windowMs: 10_000 });
    clock.observe(0, 0);
    clock.observe(25, 10_000); // 400 ms a slot
    clock.observe(50, 20_000);
    expect(clock.msPerSlot()).toBe(400);
    clock.observe(150, 30_000); // now 100 ms a slot
    clock.observe(250, 40_000);
    expect(clock.msPerSlot()).toBe(100);
  });

  it("learns nothing from a node that stalls, and starts again from one behind the one before", () => {
    const clock = createSlotClock({ minSpanMs: 1000 });
    clock.observe(1000, 0);
    clock.observe(1000, 5000);
    expect(clock.msPerSlot()).toBeNull(); // a stalled chain: no pace, polls as before
    clock.observe(1010, 9000);
    expect(clock.msPerSlot()).toBe(900);
    // One absurd reading, then honest ones: the pace is learnt again, not stuck on it.
    clock.observe(9_000_000_000, 10_000);
    clock.observe(1013, 11_000);
    expect(clock.latest()).toEqual({ slot: 1013, t: 11_000 });
    expect(clock.msPerSlot()).toBeNull();
    clock.observe(1018, 13_000);
    expect(clock.msPerSlot()).toBe(400);
  });
});
