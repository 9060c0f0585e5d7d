import { describe, expect, it } from "vitest";
import type { JobQueueStore } from "../src/store/job-queue.js";
import type { SweepStep } from "../src/store/queue-rules.js";
import { createProfileSweep } from "../src/verify/profile-sweep.js";

/**
 * `serve` on SQLite sweeps on the event loop that proxies requests, and each store call is
 * synchronous: a step read 50,000 jobs (ten 5,000-row reads) and reopened up to 1,000 in one go
 * without the loop getting a turn, holding every proxied request 200-400 ms at a time on a
 * 200k-job database while a changed profile was swept.
 */
describe("a profile sweep step", () => {
  /** A queue of `total` jobs, every one judged under another profile. */
  function queueOf(total: number, turns: () => number) {
    const calls: { step: SweepStep; turnsBefore: number }[] = [];
    const queue = {
      async reopenJudgedElsewhere(step: SweepStep) {
        calls.push({ step, turnsBefore: turns() });
        const from = step.after === null ? 0 : Number(step.after) + 1;
        const ids = Array.from(
          { length: Math.max(0, Math.min(step.limit, total - from)) },
          (_, i) => String(from + i),
        );
        const last = ids.at(-1) ?? step.after;
        return { reopened: ids, last, end: from + ids.length >= total, held: [] };
      },
      async openOf() {
        return [];
      },
    } as unknown as JobQueueStore;
    return { queue, calls };
  }

  it("lets the event loop turn between two store calls and reopens a few hundred jobs a write", async () => {
    let turns = 0;
    let ticking = true;
    const tick = () => {
      turns += 1;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const { queue, calls } = queueOf(5000, () => turns);
    const sweep = createProfileSweep({
      queue,
      judgedBy: "localnet@0000000000000000",
      before: 0,
      filter: null,
      now: () => 0,
      batch: 1000,
      intervalMs: 0,
    });
    try {
      expect(await sweep.step(true)).toBe(1000);
    } finally {
      ticking = false;
    }
    expect(calls.length).toBeGreaterThan(1);
    for (const call of calls) expect(call.step.limit).toBeLessThanOrEqual(200);
    for (let i = 1; i < calls.length; i++) {
      expect(calls[i]!.turnsBefore).toBeGreaterThan(calls[i - 1]!.turnsBefore);
    }
  });
});
