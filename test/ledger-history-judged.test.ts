import { describe, expect, it } from "vitest";
import { createLedgerReader, type LedgerRpc } from "../src/ledger/reader.js";
import { buildStatement, ledgerStoreOf } from "../src/ledger/statement.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { summaryToText } from "../src/nightly/summary-format.js";
import { createVerifier } from "../src/verify/engine.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

/**
 * What of a credit vault's history the nightly runs judge: every part of it once, whenever the
 * auditor learned the vault, and none of it as clean when the RPC no longer has its start.
 */

const log = createLogger({ level: "silent" });
const DAY = 86_400_000;

const h = useAdversaryHarness();
/** The world's clock runs ahead of the local one by this much (`advanceTo`). */
let offset = 0;
const worldNow = () => Date.now() + offset;

/** Moves the world's clock to `t` (ms): block times follow it. */
function advanceTo(t: number) {
  const d = t - worldNow();
  if (d < 0) throw new Error(`cannot go back ${d} ms`);
  offset += d;
  h.op.advanceClock(d);
}

const nextMidnight = (t: number) => Math.floor(t / DAY) * DAY + DAY;

/** The nightly `verify` of [from, to) as cron runs it, with the credit vaults' ledger. */
async function nightly(c: Scenario, from: number, to: number, rpc: LedgerRpc = h.rpc) {
  await h.finalized();
  const verifier = createVerifier({
    store: c.store,
    rpc: h.rpc,
    profile: c.profile,
    log,
    options: quickVerifierOptions,
    now: worldNow,
  });
  const reader = createLedgerReader({
    store: c.store,
    rpc,
    profile: c.profile,
    log,
    now: worldNow,
  });
  const ledger = ledgerWindowCheck({
    store: c.store,
    reader,
    profile: c.profile,
    graceSeconds: 420,
    now: worldNow,
  });
  return runNightlyVerification(c.store, verifier, {
    from,
    to,
    timeoutMs: 30_000,
    ledger,
    now: worldNow,
  });
}

describe("the nightly runs over a credit vault's whole history", () => {
  it("reports a theft from a vault made before its key's first job (the vault learned a day later), once", async () => {
    const c = await h.scenario();
    const D = nextMidnight(worldNow());
    advanceTo(D + 3_600_000);
    const one = h.op.plan({ keyIndex: 1 });
    c.record(one, h.op.honestJob(one), { createdAt: worldNow(), creditsRemainingUnits: null });
    // Day D, noon: the operator takes 300,000 from key 4's vault; no job of key 4 exists yet.
    const vault = h.op.vault(4);
    h.op.fund(vault, 5_000_000n);
    advanceTo(D + 12 * 3_600_000);
    const theft = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 300_000n)]).signature;

    advanceTo(D + DAY + 5 * 60_000);
    // Night D: key 4's vault is not known yet.
    const nightD = await nightly(c, D, D + DAY);
    expect(nightD.ledger?.vaults).toBe(1);

    // Day D+1: key 4's first job; its vault is learned from the lock.
    advanceTo(D + DAY + 9 * 3_600_000);
    const four = h.op.plan({ keyIndex: 4 });
    c.record(four, h.op.honestJob(four), { createdAt: worldNow(), creditsRemainingUnits: null });
    advanceTo(D + 2 * DAY + 5 * 60_000);
    const nightD1 = await nightly(c, D + DAY, D + 2 * DAY);
    expect(nightD1).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    expect(nightD1.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({
        vault,
        signature: theft,
        amountUnits: "-300000",
        beforeWindow: true,
      }),
    ]);
    expect(nightD1.ledger?.judgedBefore).toContainEqual({ vault, from: null });

    // Judged once: the next night does not report it again.
    advanceTo(D + 3 * DAY + 5 * 60_000);
    const nightD2 = await nightly(c, D + 2 * DAY, D + 3 * DAY);
    expect(nightD2.ledger?.unreceiptedDebits).toEqual([]);
    expect(nightD2.ledger?.judgedBefore).toEqual([]);
    expect(nightD2.exitCode).toBe(0);
  });

  it("judges a night the cron skipped with the next night's run", async () => {
    const c = await h.scenario();
    const D = nextMidnight(worldNow());
    advanceTo(D - 3_600_000);
    const pinned = h.op.plan({ keyIndex: 2 });
    c.record(pinned, h.op.honestJob(pinned), {
      createdAt: worldNow(),
      creditsRemainingUnits: null,
    });
    advanceTo(D + 5 * 60_000);
    const first = await nightly(c, D - DAY, D);
    expect(first.ledger?.unreceiptedDebits).toEqual([]);
    // Day D: a theft; the run of night D never runs.
    advanceTo(D + 12 * 3_600_000);
    const theft = h.op.send([
      h.op.transfer(pinned.vault, h.op.attackerAccount(0n), 70_000n),
    ]).signature;
    advanceTo(D + 2 * DAY + 5 * 60_000);
    const next = await nightly(c, D + DAY, D + 2 * DAY);
    expect(next).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    expect(next.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ signature: theft, beforeWindow: true }),
    ]);
    expect(next.ledger?.judgedBefore).toEqual([
      { vault: pinned.vault, from: new Date(D).toISOString() },
    ]);
  });
});

describe("a lock not yet due when its window's run read the vault", () => {
  it("is judged by the next run whose window starts after it fell due, whatever the gap", async () => {
    const c = await h.scenario();
    const D = nextMidnight(worldNow());
    const E = D + DAY;
    // The key's first job, honest: its vault is learned from it.
    advanceTo(D + 3_600_000);
    const one = h.op.plan({ keyIndex: 1 });
    c.record(one, h.op.honestJob(one), { createdAt: worldNow(), creditsRemainingUnits: null });
    // A minute before the window's end, a lock whose settlement keeps the rest in escrow.
    advanceTo(E - 60_000);
    const plan = h.op.plan({ keyIndex: 1 });
    const lock = h.op.send(h.op.lockIxs(plan)).signature;
    const settlement = h.op.send([
      ...h.op.payoutIxs(plan, { remainder: 0n }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(
      plan,
      { escrowTx: lock, settlementTx: settlement },
      { createdAt: worldNow(), creditsRemainingUnits: null },
    );
    // Lookback: the settlement window (120 s) and grace (420 s). Not due at the run after E.
    advanceTo(E + 5 * 60_000);
    const first = await nightly(c, D, E);
    expect(first.ledger?.unreleasedLocks).toEqual([]);
    // The next window starts 8.5 min after E: the lock is due (at E + 8 min), and it lies
    // neither in what the run judges before its window ([E, F)) nor in its lookback.
    const F = E + 8.5 * 60_000;
    advanceTo(F + 3_600_000 + 5 * 60_000);
    const second = await nightly(c, F, F + 3_600_000);
    expect(second.ledger?.unreleasedLocks).toEqual([
      expect.objectContaining({ signature: lock, jobId: plan.jobId, beforeWindow: true }),
    ]);
    expect(second.exitCode).toBe(1);
  });
});

describe("a credit vault whose oldest history the RPC no longer holds", () => {
  it("is not complete before the oldest line it lists, and the nightly run says so once", async () => {
    const c = await h.scenario();
    const D = nextMidnight(worldNow());
    const vault = h.op.vault(3);
    advanceTo(D + 3_600_000);
    h.op.fund(vault, 5_000_000n);
    advanceTo(D + 12 * 3_600_000);
    h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 300_000n)]);
    advanceTo(D + DAY);
    await h.finalized();
    // The node keeps history from D+1 on: everything before is pruned.
    const pruneSlot = h.world.currentSlot();
    const pruned = new Set<string>();
    const rpc: LedgerRpc = {
      async getSignaturesForAddress(address, o) {
        const page = await h.rpc.getSignaturesForAddress(address, o);
        for (const e of page) if (e.slot < pruneSlot) pruned.add(e.signature);
        return page.filter((e) => e.slot >= pruneSlot);
      },
      getTransaction: async (sig) => (pruned.has(sig) ? null : h.rpc.getTransaction(sig)),
      getTokenAccount: (a) => h.rpc.getTokenAccount(a),
      getSlot: (commitment) => h.rpc.getSlot(commitment),
      getBlockTime: (slot) => h.rpc.getBlockTime(slot),
    };
    advanceTo(D + DAY + 9 * 3_600_000);
    const plan = h.op.plan({ keyIndex: 3 });
    c.record(plan, h.op.honestJob(plan), { createdAt: worldNow(), creditsRemainingUnits: null });
    advanceTo(D + 2 * DAY + 5 * 60_000);

    const run = await nightly(c, D + DAY, D + 2 * DAY, rpc);
    expect(pruned.size).toBeGreaterThan(0);
    // Never clean: a finding (exit 1) that names where the history the node still has begins.
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1, reason: null });
    expect(run.ledger?.prunedHistory).toEqual([
      { vault, beforeSignature: expect.any(String), before: expect.any(String) },
    ]);
    expect(summaryToText(run)).toContain("is not available from the RPC (pruned)");
    // Said once: the vault is judged through the window, and the next night finishes clean
    // rather than "could not finish" every night from now on.
    expect((await ledgerStoreOf(c.store).cursorFigures(vault))?.judgedThrough).toBe(D + 2 * DAY);
    advanceTo(D + 3 * DAY + 5 * 60_000);
    const nextNight = await nightly(c, D + 2 * DAY, D + 3 * DAY, rpc);
    expect(nextNight.ledger?.prunedHistory).toEqual([]);
    expect(nextNight.exitCode).not.toBe(2);

    const options = { profile: c.profile, graceSeconds: 420, now: worldNow };
    const theftDay = (await buildStatement(c.store, { from: D, to: D + DAY, vault }, options))
      .vaults[0]!;
    expect(theftDay.complete).toBe(false);
    expect(theftDay.missingHistory).toMatchObject({ beforeSignature: expect.any(String) });
    // After the oldest line listed, the history is whole.
    const later = (
      await buildStatement(
        c.store,
        { from: D + DAY + 10 * 3_600_000, to: D + 2 * DAY, vault },
        options,
      )
    ).vaults[0]!;
    expect(later.missingHistory).toBeNull();
    expect(later.complete).toBe(true);
  });
});
