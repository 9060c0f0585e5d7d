import { describe, expect, it } from "vitest";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { isoOf } from "../src/reports/period.js";
import { SETTLEMENT_CLOCK_SLACK_SECONDS } from "../src/store/ledger-rules.js";
import { createVerifier } from "../src/verify/engine.js";
import { clockPause, finalizedPastOnClock } from "./support/chain-clock.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { periodEdge, vaultReader } from "./support/ledger-periods.js";
import { type AdversaryHarness, type Scenario, useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

/**
 * A credits header's span runs through the lines the chain dated up to 2 s after the response's
 * second (`SETTLEMENT_CLOCK_SLACK_SECONDS`), so it is read in full only once the chain has
 * finalized past them. A job recorded in a window's last 2 s spans lines after the window's
 * end: a nightly run that read the vaults only through the end left its false header a skip
 * ("not read past the response"), and counted the job verified while its own statement listed
 * the header as a mismatch. The verifier of `serve` judging such a job before the ledger has
 * read far enough leaves it verified too, until the ledger's round reads past the response and
 * reopens it.
 */
const log = createLogger({ level: "silent" });

/** 70,000 units (7 credits) above the balance the job left: no balance of its span rounds to it. */
const FALSE_BY = 70_000n;

/**
 * `rpc` (the ledger's node), its finalized slot held where the chain's is now until `release`:
 * the run's first read of the vaults sees the chain finalized as far as when the run started,
 * however long a loaded host takes to get there. A read after the chain finalized past the
 * headers' span on its own proves nothing of a run that reads no further than the window.
 */
function finalityHeld(h: AdversaryHarness, rpc: RpcPool) {
  let held: number | null = h.world.chain.currentSlot() - h.world.chain.finalitySlots;
  const node = new Proxy(rpc, {
    get(target, key, receiver) {
      if (key !== "getSlot") return Reflect.get(target, key, receiver);
      return async (...args: Parameters<RpcPool["getSlot"]>) => {
        const slot = await target.getSlot(...args);
        return args[0] === "finalized" && held !== null ? Math.min(slot, held) : slot;
      };
    },
  });
  const release = () => {
    held = null;
  };
  return { node, release };
}

/**
 * A nightly `verify` of [from, to) with `vault` configured, as `verify` runs it, on the chain's
 * clock: its pauses while the chain finalizes past the window move that clock on instead of
 * waiting (`clockPause`), so the run still reads again until the chain has finalized what the
 * credits headers span. Until its first pause, its ledger sees the chain finalized only as far
 * as when the run started (`finalityHeld`).
 */
function nightly(
  h: AdversaryHarness,
  c: Scenario,
  vault: string,
  from: number,
  to: number,
  ledgerRpc: RpcPool = h.rpc,
) {
  const custody = { vaults: [vault], byKey: {} };
  const now = () => h.op.now();
  const finality = finalityHeld(h, ledgerRpc);
  const moveOn = clockPause(h);
  return runNightlyVerification(
    c.store,
    createVerifier({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log,
      custody,
      now,
      options: quickVerifierOptions,
    }),
    {
      from,
      to,
      timeoutMs: 20_000,
      now,
      preflight: () => h.rpc.getSlot("finalized"),
      ledger: ledgerWindowCheck({
        store: c.store,
        reader: createLedgerReader({
          store: c.store,
          rpc: finality.node,
          profile: c.profile,
          log,
          custody,
          now,
        }),
        profile: c.profile,
        graceSeconds: 0,
        now,
        pause: (ms, signal) => {
          finality.release();
          return moveOn(ms, signal);
        },
      }),
    },
  );
}

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** An honest job of key 1 whose receipt's header is `FALSE_BY` above what the vault held. */
  function falseHeaderJob(c: Scenario, vault: string) {
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    const recordedAt = h.op.now();
    c.record(
      plan,
      txs,
      { creditsRemainingUnits: h.op.balance(vault) + FALSE_BY },
      "ingest",
      recordedAt,
    );
    c.honestJobsApi(plan, txs);
    return { jobId: plan.jobId, recordedAt };
  }

  it("fails a false header of a job recorded in the window's last second: the run reads past the window's end through the header's span, not counting the job verified", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const { vault } = await c.pinKey(1);
    const job = falseHeaderJob(c, vault);
    await c.flush();
    // The window ends at the next whole second: the response is in its last second, and the
    // run starts at its end, the chain finalized past it but not 2 s past the response.
    const to = Math.floor(job.recordedAt / 1000) * 1000 + 1000;
    await finalizedPastOnClock(h, to);

    const run = await nightly(h, c, vault, from, to);
    expect(await c.outcome(job.jobId)).toEqual({
      verdict: "discrepancy",
      failing: ["credits.header"],
    });
    expect(run).toMatchObject({ outcome: "discrepancies", exitCode: 1, reason: null });
    expect(run.byVerdict).toMatchObject({ verified: 1, discrepancy: 1 });
    expect(run.findings).toEqual([
      { jobId: job.jobId, verdict: "discrepancy", failingChecks: ["credits.header"] },
    ]);
    expect(run.ledger?.creditsHeaderMismatches).toEqual([
      expect.objectContaining({ vault, jobId: job.jobId, beforeWindow: false }),
    ]);
    expect(run.ledger?.incomplete).toBeNull();
  });

  it("fails a false header of a job dated in the window but recorded after its end: the run reads through the header's span past its recording", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const { vault } = await c.pinKey(3);
    const plan = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(plan);
    const to = periodEdge(h);
    const header = h.op.balance(vault) + FALSE_BY;
    // Ingested 3 s after the window's end, dated in its last second: the header's span runs
    // 2 s past the recording, beyond the 2 s past the end the run read before. A theft in the
    // span, past the window, is the next window's alone.
    h.op.advanceClock(3_000);
    const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 55_000n)]).signature;
    const recordedAt = h.op.now();
    c.record(
      plan,
      txs,
      { creditsRemainingUnits: header, createdAt: to - 1_000 },
      "ingest",
      recordedAt,
    );
    c.honestJobsApi(plan, txs);
    await c.flush();
    await finalizedPastOnClock(h, to);

    const run = await nightly(h, c, vault, from, to);
    expect(await c.outcome(plan.jobId)).toEqual({
      verdict: "discrepancy",
      failing: ["credits.header"],
    });
    expect(run).toMatchObject({ outcome: "discrepancies", exitCode: 1, reason: null });
    expect(run.findings).toEqual([
      { jobId: plan.jobId, verdict: "discrepancy", failingChecks: ["credits.header"] },
    ]);
    expect(run.ledger?.creditsHeaderMismatches).toEqual([
      expect.objectContaining({ vault, jobId: plan.jobId, beforeWindow: false }),
    ]);
    expect(run.ledger?.incomplete).toBeNull();
    expect(run.ledger?.unreceiptedDebits).toEqual([]);

    const next = periodEdge(h);
    const second = await nightly(h, c, vault, to, next);
    expect(second.exitCode).toBe(1);
    expect(second.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({
        vault,
        signature: theft,
        amountUnits: "-55000",
        beforeWindow: false,
      }),
    ]);
  });

  it("does not finish a run whose node left a line of the 2 s after its end unread, which a false header of its last second spans; the next read fails the header", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const { vault } = await c.pinKey(1);
    const job = falseHeaderJob(c, vault);
    await c.flush();
    const to = Math.floor(job.recordedAt / 1000) * 1000 + 1000;
    h.op.advanceClock(Math.max(0, to + 20 - h.op.now()));
    // A top-up just after the window's end, in the header's span; the ledger's node does not
    // serve it.
    const topUp = h.op.send([h.op.transfer(h.op.victimVault(100_000n), vault, 1_000n)]).signature;
    await finalizedPastOnClock(h, to);
    const unserved = new Proxy(h.rpc, {
      get(target, key, receiver) {
        if (key !== "getTransaction") return Reflect.get(target, key, receiver);
        return async (...args: Parameters<RpcPool["getTransaction"]>) =>
          args[0] === topUp ? null : target.getTransaction(...args);
      },
    });

    const run = await nightly(h, c, vault, from, to, unserved);
    expect(run).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    expect(run.reason).toBe(
      `ledger: the history of 1 credit vault(s) is not read through the window's end (${vault}, 1 transaction(s) listed in the ${SETTLEMENT_CLOCK_SLACK_SECONDS} s after the window's end not read: the credits headers of its last jobs span them)`,
    );
    // Once read, the ledger sends the job back and its header fails.
    await vaultReader(h, c, vault).syncVault(vault);
    expect((await c.outcome(job.jobId)).verdict).toBe("pending");
    await c.verify();
    expect(await c.outcome(job.jobId)).toEqual({
      verdict: "discrepancy",
      failing: ["credits.header"],
    });
  });

  it("names a theft dated in the 2 s after a window's end, which its run reads, in the next run alone", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const { vault } = await c.pinKey(2);
    const plan = h.op.plan({ keyIndex: 2 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    await c.flush();
    const to = periodEdge(h);
    const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 55_000n)]).signature;
    await finalizedPastOnClock(h, to);

    const first = await nightly(h, c, vault, from, to);
    expect(first).toMatchObject({ outcome: "verified", exitCode: 0, reason: null });
    const next = periodEdge(h);
    const second = await nightly(h, c, vault, to, next);
    expect(second).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    expect(second.ledger?.unreceiptedDebits).toEqual([
      {
        vault,
        signature: theft,
        amountUnits: "-55000",
        memo: null,
        memoJobId: null,
        at: isoOf(to),
        beforeWindow: false,
      },
    ]);
  });

  it("reopens a job the verifier judged verified before the ledger read past its response once the ledger's round does, and fails its false header", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const { vault } = await c.pinKey(1);
    const job = falseHeaderJob(c, vault);
    await c.verify();
    expect(await c.check(job.jobId, "credits.header")).toMatchObject({
      outcome: "skip",
      reason: "the ledger has not read the credit vault past the job's response yet",
      expected: { vault },
    });
    expect(await c.outcome(job.jobId)).toEqual({ verdict: "verified", failing: [] });

    const reader = vaultReader(h, c, vault);
    // Read with the chain finalized past the response, not past the 2 s after it: still open.
    await finalizedPastOnClock(h, job.recordedAt);
    const early = await reader.syncVault(vault);
    expect(early.pending).toBe(0);
    expect(await c.outcome(job.jobId)).toEqual({ verdict: "verified", failing: [] });

    // The ledger's next round, the chain finalized past the header's span.
    await finalizedPastOnClock(h, job.recordedAt + SETTLEMENT_CLOCK_SLACK_SECONDS * 1000);
    await reader.syncVault(vault);
    expect((await c.outcome(job.jobId)).verdict).toBe("pending");
    await c.verify();
    expect(await c.outcome(job.jobId)).toEqual({
      verdict: "discrepancy",
      failing: ["credits.header"],
    });
  });
});
