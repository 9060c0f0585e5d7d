import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { deadlineSignal } from "../src/deadline.js";

// Garbage collection on demand, as `--expose-gc` gives it, to collect what is only weakly held.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("a deadline signal", () => {
  it("aborts at its deadline however often garbage is collected meanwhile", async () => {
    // Nothing but the returned object holds the deadline. AbortSignal.any over
    // AbortSignal.timeout lost its timeout to a collection on Node 20 (nodejs/node#57736).
    const { signal } = deadlineSignal(100);
    for (let i = 0; i < 10; i++) {
      gc();
      await sleep(20);
    }
    expect(signal.aborted).toBe(true);
    expect((signal.reason as DOMException).name).toBe("TimeoutError");
  });

  it("aborts with a source signal's reason, and at once for one already aborted", () => {
    const source = new AbortController();
    const { signal } = deadlineSignal(60_000, undefined, source.signal);
    expect(signal.aborted).toBe(false);
    source.abort("stop");
    expect(signal.reason).toBe("stop");
    expect(deadlineSignal(60_000, AbortSignal.abort("gone")).signal.reason).toBe("gone");
  });

  it("never aborts once cleared", async () => {
    const source = new AbortController();
    const deadline = deadlineSignal(30, source.signal);
    deadline.clear();
    await sleep(60);
    source.abort();
    expect(deadline.signal.aborted).toBe(false);
  });
});

describe("the time left of a drain", () => {
  it("counts on the monotonic clock, whatever the wall clock does", async () => {
    const { timeLeft } = await import("../src/deadline.js");
    const realNow = Date.now;
    const left = timeLeft(10_000);
    try {
      // The wall clock stepped an hour forward, then two hours back.
      Date.now = () => realNow() + 3_600_000;
      const forward = left();
      Date.now = () => realNow() - 7_200_000;
      const back = left();
      expect(forward).toBeGreaterThan(9_000);
      expect(forward).toBeLessThanOrEqual(10_000);
      expect(back).toBeLessThanOrEqual(10_000);
      await sleep(50);
      expect(left()).toBeLessThan(back);
    } finally {
      Date.now = realNow;
    }
  });
});
