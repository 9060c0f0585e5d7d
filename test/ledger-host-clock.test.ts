import { describe, expect, it } from "vitest";
import { BLOCK_TIME_AHEAD_SECONDS } from "../src/chain/block-time.js";
import { createRpcPool, type RpcPool } from "../src/chain/rpc-pool.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { createLogger } from "../src/log.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { createVerifier } from "../src/verify/engine.js";
import { useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

/**
 * This machine's clock behind the chain's. The bound on block times refuses answers no chain
 * can have; it must not judge the host's clock: a clock minutes or hours slow stalls nothing,
 * and even a day slow keeps what the ledger can hold.
 */

const log = createLogger({ level: "silent" });
const h = useAdversaryHarness();

function pool(): RpcPool {
  return createRpcPool({
    endpoints: [{ url: h.world.rpcUrl, rateLimitPerSec: 500, concurrency: 4, timeoutMs: 2000 }],
    backoffBaseMs: 20,
    backoffMaxMs: 200,
    breakerCooldownMs: 500,
  });
}

describe("this machine's clock behind the chain's", () => {
  // 9 minutes, within the profile's 10 minutes of skew for a receipt's time (`receipt.time`):
  // at 10 minutes exactly the receipt sat on the bound, compared in whole seconds with the
  // lock's block time, and failed `receipt.time` in 3 of 8 runs on an idle host.
  it("9 minutes: jobs are judged, and a busy vault's ledger syncs and reads through", async () => {
    const c = await h.scenario();
    const honest = await c.pinKey(1);
    await h.finalized();
    // The chain's clock moves 9 minutes ahead of this machine's.
    h.op.advanceClock(540_000);
    const plan = h.op.plan({ keyIndex: 1 });
    c.record(plan, h.op.honestJob(plan));
    await c.flush();
    await h.finalized();
    const rpc = pool();
    try {
      const verifier = createVerifier({
        store: c.store,
        rpc,
        profile: c.profile,
        log,
        options: quickVerifierOptions,
      });
      await verifier.runUntilSettled({}, { timeoutMs: 5_000 });
      expect(await c.outcome(plan.jobId)).toEqual({ verdict: "verified", failing: [] });

      const custody = { vaults: [honest.vault], byKey: {} };
      const reader = createLedgerReader({ store: c.store, rpc, profile: c.profile, log, custody });
      const [read] = await reader.syncAll();
      expect(read).toMatchObject({ vault: honest.vault, noBlockTime: null });
      expect(read?.listed).toBeGreaterThan(0);
      const figures = await createLedgerStore(c.store).cursorFigures(honest.vault);
      // Read through the chain's finalized time: past this machine's clock.
      expect(figures?.finalThrough).toBeGreaterThan(Date.now());
    } finally {
      await rpc.close();
    }
  });

  it("more than a day: a listing keeps its older entries, and the reason names the clock", async () => {
    const c = await h.scenario();
    const honest = await c.pinKey(1);
    const older = h.op.plan({ keyIndex: 1 });
    c.record(older, h.op.honestJob(older));
    await h.finalized();
    h.op.advanceClock((BLOCK_TIME_AHEAD_SECONDS + 3_600) * 1000);
    const newer = h.op.plan({ keyIndex: 1 });
    const newerTxs = h.op.honestJob(newer);
    await h.finalized();
    const custody = { vaults: [honest.vault], byKey: {} };
    const rpc = pool();
    try {
      const all = await rpc.getSignaturesForAddress(honest.vault);
      const reader = createLedgerReader({ store: c.store, rpc, profile: c.profile, log, custody });
      const [read] = await reader.syncAll();
      expect(read?.vault).toBe(honest.vault);
      expect(read?.noBlockTime).toMatch(/this machine's clock is wrong/);
      const ledger = createLedgerStore(c.store);
      // Every entry dated within the bound is stored and read; the newer ones wait.
      const limit = Date.now() / 1000 + BLOCK_TIME_AHEAD_SECONDS;
      const kept = all.filter((e) => (e.blockTime ?? 0) <= limit).map((e) => e.signature);
      expect(kept.length).toBeGreaterThan(0);
      expect(kept.length).toBeLessThan(all.length);
      expect(await ledger.listedSignatures(honest.vault)).toEqual([]);
      expect((await ledger.historyStart(honest.vault))?.read).toBe(true);
      expect(read?.listed).toBe(kept.length);
      expect(kept).not.toContain(newerTxs.escrowTx);
      // The read-through time stays below the entries held back.
      const figures = await ledger.cursorFigures(honest.vault);
      expect(figures?.finalThrough ?? 0).toBeLessThanOrEqual(limit * 1000);
      // No balance is kept that holds movements the lines do not.
      expect(figures?.balanceUnits ?? null).toBe(null);
    } finally {
      await rpc.close();
    }
  });
});
