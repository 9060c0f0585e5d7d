import { describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { createReportsStore } from "../src/store/reports.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { createTestStore, recordPrepared } from "./support/store.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";

/**
 * A verifier, a ledger reader and a statement over one store each make the store modules they
 * use: a module's statements are prepared once per connection, not once per module made (each
 * verifier prepared ~170, about 25 ms on a loaded runner), and each module made is its caller's
 * own object.
 */
describe("store modules on one SQLite connection", () => {
  const log = createLogger({ level: "silent" });

  it("prepare the verifier's statements once, however many verifiers are made over the store", () => {
    const store = createTestStore();
    try {
      const rpc = createFakeChain({ finalitySlots: 0 }).rpc;
      const prepared = recordPrepared(store);
      createVerifier({ store, rpc, profile: localnetProfile, log });
      const first = prepared.length;
      createVerifier({ store, rpc, profile: localnetProfile, log });
      expect(first).toBeGreaterThan(50);
      // The second verifier's custody store and its statement of `sqlite.transaction` aside.
      expect(prepared.length - first).toBeLessThan(first / 4);
    } finally {
      store.close();
    }
  });

  it("prepare a report grouping's statements on its first report, not when the module is made", async () => {
    const store = createTestStore();
    try {
      const prepared = recordPrepared(store);
      const reports = createReportsStore(store);
      const made = prepared.length;
      // 4 groupings x (all, one worker) x (rollups, jobs) were prepared at once: 37 in all.
      expect(made).toBeLessThan(20);
      const day = Date.UTC(2026, 10, 1);
      expect(await reports.groupSums({ from: day, to: day + 86_400_000, groupBy: "key" })).toEqual(
        [],
      );
      expect(prepared.length).toBeGreaterThan(made);
    } finally {
      store.close();
    }
  });

  it("give each caller its own module object: a function one replaces is not the other's", async () => {
    const store = createTestStore();
    try {
      const a = createLedgerStore(store);
      const b = createLedgerStore(store);
      expect(a).not.toBe(b);
      a.pinnedVaults = async () => ["replaced"];
      expect(await b.pinnedVaults()).toEqual([]);
    } finally {
      store.close();
    }
  });
});
