import { eq } from "drizzle-orm";
import { afterEach, describe, expect, it, vi } from "vitest";
import { jobs } from "../src/db/schema.js";
import { createLogger } from "../src/log.js";
import { createCustodyStore } from "../src/store/custody.js";
import { createJobQueueStore } from "../src/store/job-queue.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { createSignatureStore } from "../src/store/signatures.js";
import { createVerdictStore } from "../src/store/verdicts.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { createRound } from "../src/verify/round.js";
import { defaultVerifierOptions } from "../src/verify/verifier-options.js";
import { recordHonest } from "./support/honest-receipt.js";
import { createTestStore } from "./support/store.js";
import { createFakeChain } from "./support/verify-fake-rpc.js";

/**
 * A round stores the transactions it fetched several to a write, and a batch short of a full
 * one waits a little for the fetches still out to join it. Once no fetch is out, nothing can
 * join it: the round stores it and decides its jobs at once. A round of one job (its lock and
 * its settlement) waited 50 ms for fetches that were never coming, on every job a verifier
 * judged alone: a nightly's stragglers, each job `serve` verifies as it arrives.
 *
 * The timers here never run (faked, never moved on): a round that waits on one never ends.
 */

const log = createLogger({ level: "silent" });

afterEach(() => {
  vi.useRealTimers();
});

/** Resolves "stuck" after `turns` turns of the event loop with no timer run. */
async function turnsPass(turns: number): Promise<"stuck"> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
  return "stuck";
}

describe("a round's fetched transactions", () => {
  it("are stored in one write and their job decided as soon as no fetch is out, with no timer", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
    const store = createTestStore();
    const chain = createFakeChain({ finalitySlots: 1 });
    const jobId = recordHonest(store, "alone", chain);
    const signatures = createSignatureStore(store);
    /** How many transactions each store of fetched ones wrote. */
    const writes: number[] = [];
    const round = createRound({
      queue: createJobQueueStore(store),
      signatures: {
        ...signatures,
        recordFetchedAll: (items) => {
          writes.push(items.length);
          return signatures.recordFetchedAll(items);
        },
      },
      verdicts: createVerdictStore(store, localnetProfile),
      custody: createCustodyStore(store, localnetProfile, { vaults: [], byKey: {} }),
      ledger: createLedgerStore(store),
      configuredVaults: new Set(),
      rpc: chain.rpc,
      profile: localnetProfile,
      options: { ...defaultVerifierOptions, pollIntervalMs: 2 },
      owner: "me",
      now: Date.now,
      log,
    });
    const claimed = await Promise.race([
      round(null, null, new AbortController().signal),
      turnsPass(500),
    ]);
    // Let a round stuck on its timer end, so nothing of it is left running.
    vi.runOnlyPendingTimers();
    expect(claimed).toBe(1);
    expect(chain.calls.getTransaction.size).toBe(2);
    expect(writes).toEqual([2]);
    const row = store.db.select().from(jobs).where(eq(jobs.jobId, jobId)).get();
    expect(row?.verdict).toBe("verified");
  });
});
