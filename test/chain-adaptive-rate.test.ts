import { describe, expect, it } from "vitest";
import { AdaptiveRate } from "../src/chain/adaptive-rate.js";

describe("adaptive RPC rate", () => {
  // window 1, threshold 1: every 429 is a signal, to show the decrease and climb alone.
  it("halves on a 429 and climbs back slowly, by addition, to the configured limit", () => {
    const rate = new AdaptiveRate({ limit: 8, window: 1, threshold: 1 });
    expect(rate.current(0)).toBe(8);
    rate.onRateLimited(1000);
    expect(rate.current(1000)).toBe(4);
    // limit / 60 per second: 4 -> 8 takes 30 s.
    expect(rate.current(16_000)).toBeCloseTo(6, 5);
    expect(rate.current(31_000)).toBe(8);
    expect(rate.current(100_000)).toBe(8);
  });

  it("counts a burst of 429s from requests already in flight as one signal", () => {
    const rate = new AdaptiveRate({ limit: 8, window: 1, threshold: 1 });
    rate.onRateLimited(0);
    rate.onRateLimited(10);
    rate.onRateLimited(900);
    expect(rate.current(900)).toBeCloseTo(4 + 0.9 * (8 / 60), 5);
    rate.onRateLimited(1000);
    expect(rate.current(1000)).toBeCloseTo((4 + 8 / 60) / 2, 5);
  });

  it("never drops below its floor", () => {
    const rate = new AdaptiveRate({ limit: 8, min: 0.5, window: 1, threshold: 1 });
    for (let t = 0; t < 20_000; t += 1000) rate.onRateLimited(t);
    expect(rate.current(19_000)).toBe(0.5);
  });

  it("spaces requests 1/rate apart below the limit and leaves them to the queue at it", () => {
    const rate = new AdaptiveRate({ limit: 10, increasePerSec: 0, window: 1, threshold: 1 });
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

/**
 * Ten minutes on a fake clock against a provider: the client sends as fast as its adapted rate
 * and its endpoint queue let it, and after a 429 waits out the 1 s Retry-After the pool honours.
 */
function drive(
  limit: number,
  refuses: (now: number) => boolean,
): { sent: number; refused: number; meanRate: number } {
  const rate = new AdaptiveRate({ limit });
  let now = 0;
  let sent = 0;
  let refused = 0;
  let rateSum = 0;
  let queueFreeAt = 0;
  while (now < 600_000) {
    now = Math.max(queueFreeAt, now + rate.reserve(now));
    queueFreeAt = now + 1000 / limit;
    sent++;
    rateSum += rate.current(now);
    if (refuses(now)) {
      refused++;
      queueFreeAt = now + 1000;
      rate.onRateLimited(now);
    } else {
      rate.onAnswered();
    }
  }
  return { sent, refused, meanRate: rateSum / sent };
}

function rollingLimit(perSec: number): (now: number) => boolean {
  const accepted: number[] = [];
  return (now) => {
    while (accepted.length > 0 && accepted[0]! <= now - 1000) accepted.shift();
    if (accepted.length >= perSec) return true;
    accepted.push(now);
    return false;
  };
}

describe("adaptive RPC rate: 429s that do not depend on our rate", () => {
  it("keeps its rate when the provider answers 429 to 8% of requests at random", () => {
    let seed = 11;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const run = drive(10, () => random() < 0.08);
    expect(run.refused / run.sent).toBeGreaterThan(0.06);
    // Halving on every 429 held the rate near 1.7 requests/s of the 10 configured.
    expect(run.meanRate).toBeGreaterThan(9);
    // Answered requests: the Retry-After pauses cost their share, the rate costs nothing more.
    expect((run.sent - run.refused) / 600).toBeGreaterThan(4.5);
  });

  it("still comes down to a provider whose real limit is far below the configured one", () => {
    const run = drive(8, rollingLimit(2));
    // Without adapting, one request in three is refused (two answered, then a 1 s pause); the
    // rate comes down until 429s are under a quarter of the latest answers.
    expect(run.refused / run.sent).toBeLessThan(0.25);
    expect((run.sent - run.refused) / 600).toBeGreaterThan(1.3);
  });

  it("against a provider allowing 5 requests/s with a client set to 8, refuses under 20%", () => {
    const run = drive(8, rollingLimit(5));
    expect(run.refused / run.sent).toBeLessThan(0.2);
    expect((run.sent - run.refused) / 600).toBeGreaterThan(3);
  });
});
