import { describe, expect, it } from "vitest";
import {
  addQuorumCounts,
  addReportCounters,
  type BackgroundReport,
} from "../src/background-worker.js";

const totals = { unexplained: 0, unreleasedLocks: 0 } as unknown as BackgroundReport["totals"];

function report(count: number, outvoted: number, setAside: boolean): BackgroundReport {
  return {
    type: "report",
    rpcStats: [{ endpoint: "a", method: "getSlot", outcome: "ok", count }],
    jobsApiCalls: [
      ["answered", count],
      ["failed", outvoted],
    ],
    quorum: {
      quorum: 2,
      endpoints: [
        {
          endpoint: "a",
          outvoted,
          unresolved: 1,
          consecutiveOutvoted: outvoted,
          setAside,
          setAsideUntil: setAside ? 1 : null,
        },
      ],
    },
    totals,
  };
}

describe("the counters of a background thread that ended", () => {
  it("are added to the next thread's, so the metrics' counters never go back", () => {
    const next = addReportCounters(report(40, 3, true), report(2, 0, false));
    expect(next.rpcStats).toEqual([{ endpoint: "a", method: "getSlot", outcome: "ok", count: 42 }]);
    expect(next.jobsApiCalls).toEqual([
      ["answered", 42],
      ["failed", 3],
    ]);
    expect(next.quorum?.endpoints[0]).toMatchObject({ outvoted: 3, unresolved: 2 });
    // The standing is the running thread's own.
    expect(next.quorum?.endpoints[0]?.setAside).toBe(false);
  });

  it("stay counted when no thread runs, with no endpoint set aside by a thread gone", () => {
    const earlier = report(40, 3, true).quorum;
    const now = addQuorumCounts(earlier, null);
    expect(now?.endpoints).toEqual([
      {
        endpoint: "a",
        outvoted: 3,
        unresolved: 1,
        consecutiveOutvoted: 0,
        setAside: false,
        setAsideUntil: null,
      },
    ]);
  });
});
