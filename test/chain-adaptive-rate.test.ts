import { describe, expect, it } from "vitest";
import { AdaptiveRate } from "../src/chain/adaptive-rate.js";

describe("adaptive RPC rate", () => {
  it("halves on a 429 and climbs back slowly, by addition, to the configured limit", () => {
    const rate = new AdaptiveRate({ limit: 8 });
    expect(rate.current(0)).toBe(8);
    rate.onRateLimited(1000);
    expect(rate.current(1000)).toBe(4);
    // limit / 60 per second: 4 -> 8 takes 30 s.
    expect(rate.current(16_000)).toBeCloseTo(6, 5);
    expect(rate.current(31_000)).toBe(8);
    expect(rate.current(100_000)).toBe(8);
  });

  it("counts a burst of 429s from requests already in flight as one signal", () => {
    const rate = new AdaptiveRate({ limit: 8 });
    rate.onRateLimited(0);
    rate.onRateLimited(10);
    rate.onRateLimited(900);
    expect(rate.current(900)).toBeCloseTo(4 + 0.9 * (8 / 60), 5);
    rate.onRateLimited(1000);
    expect(rate.current(1000)).toBeCloseTo((4 + 8 / 60) / 2, 5);
  });

  it("never drops below its floor", () => {
    const rate = new AdaptiveRate({ limit: 8, min: 0.5 });
    for (let t = 0; t < 20_000; t += 1000) rate.onRateLimited(t);
    expect(rate.current(19_000)).toBe(0.5);
  });

  it("spaces requests 1/rate apart below the limit and leaves them to the queue at it", () => {
    const rate = new AdaptiveRate({ limit: 10, increasePerSec: 0 });
    expect(rate.reserve(0)).toBe(0);
    expect(rate.reserve(0)).toBe(0);
    rate.onRateLimited(0); // 5 per second: 200 ms apart
    expect(rate.reserve(0)).toBe(0);
    expect(rate.reserve(0)).toBe(200);
    expect(rate.reserve(50)).toBe(350);
    expect(rate.reserve(1000)).toBe(0);
  });

  it("against a provider allowing 5 requests/s, a client configured for 8 gets few 429s", () => {
    // A fake clock: the client sends as fast as its adapted rate lets it for ten minutes;
    // the provider answers 429 to any request that would make more than 5 in a rolling second.
    const rate = new AdaptiveRate({ limit: 8 });
    const accepted: number[] = [];
    let now = 0;
    let sent = 0;
    let limited = 0;
    let queueFreeAt = 0; // the endpoint queue's own rate: 8 per second
    while (now < 600_000) {
      now = Math.max(queueFreeAt, now + rate.reserve(now));
      queueFreeAt = now + 125;
      sent++;
      while (accepted.length > 0 && accepted[0]! <= now - 1000) accepted.shift();
      if (accepted.length >= 5) {
        limited++;
        rate.onRateLimited(now);
      } else {
        accepted.push(now);
      }
    }
    // Without adapting, 3 of every 8 requests would be refused (37.5%).
    expect(limited / sent).toBeLessThan(0.05);
    // And it still uses most of what the provider allows.
    expect((sent - limited) / 600).toBeGreaterThan(3.5);
  });
});
