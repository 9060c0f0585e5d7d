import {
  createLedgerReader,
  type LedgerDeps,
  type LedgerReader,
  type LedgerRpc,
} from "../../src/ledger/reader.js";
import { buildStatement } from "../../src/ledger/statement.js";
import { ledgerWindowCheck } from "../../src/ledger/window-check.js";
import { createLogger } from "../../src/log.js";
import { runNightlyVerification } from "../../src/nightly/nightly-run.js";
import { createVerifier } from "../../src/verify/engine.js";
import { finalizedPast } from "./finality.js";
import type { AdversaryHarness, Scenario } from "./operator.js";
import { quickVerifierOptions } from "./quick-verifier.js";

const silent = createLogger({ level: "silent" });

/**
 * Moves the world's clock past the next whole second (or the first at or after `notBefore`, ms,
 * when later) and returns that second: a period edge. Every transaction sent before has a block
 * time before it, every one sent after a block time at or after it.
 */
export function periodEdge(h: AdversaryHarness, notBefore = 0): number {
  const at = Math.max(
    Math.ceil(h.op.now() / 1000) * 1000 + 1000,
    Math.ceil(notBefore / 1000) * 1000,
  );
  h.op.advanceClock(at - h.op.now() + 50);
  h.op.nextSlot();
  return at;
}

/**
 * Moves the world's clock on past `ms` from now (a settlement window) and returns once the chain
 * has finalized past that time, as a read then lists it: no real time waited for the window.
 */
export async function finalizedAfter(h: AdversaryHarness, ms: number): Promise<void> {
  const due = h.op.now() + ms;
  // Block times are whole seconds: the finalized slot's is past `due` from the next second on.
  h.op.advanceClock(Math.floor(due / 1000) * 1000 + 1000 - h.op.now() + 50);
  await finalizedPast(h.world, due);
}

/**
 * Moves the world's clock on (never back) until the chain's finalized slot is past `at` (ms) and
 * returns once it is: a read then lists the chain through `at` (a nightly run reads through its
 * window's end and the 2 s after it), with no real time waited for those seconds.
 */
export async function finalizedThrough(h: AdversaryHarness, at: number): Promise<void> {
  // Block times are whole seconds: the finalized slot's is past `at` from the next second on.
  const by = Math.floor(at / 1000) * 1000 + 1000 + 50 - h.op.now();
  if (by > 0) h.op.advanceClock(by);
  await finalizedPast(h.world, at);
}

/**
 * The reader of `vault`'s history alone, the only credit vault configured, through `rpc`; with
 * its own clock or options when `more` gives them.
 */
export function vaultReader(
  h: AdversaryHarness,
  c: Scenario,
  vault: string,
  rpc: LedgerRpc = h.rpc,
  more: Pick<LedgerDeps, "now" | "options"> = {},
) {
  return createLedgerReader({
    store: c.store,
    rpc,
    profile: c.profile,
    log: silent,
    custody: { vaults: [vault], byKey: {} },
    ...more,
  });
}

/** The local chain's node, whose listings of signatures leave `missing` out. */
export function listingWithout(h: AdversaryHarness, missing: string): LedgerRpc {
  return {
    getTransaction: (s) => h.rpc.getTransaction(s),
    getTokenAccount: (a) => h.rpc.getTokenAccount(a),
    getSlot: (x) => h.rpc.getSlot(x),
    getBlockTime: (s) => h.rpc.getBlockTime(s),
    async getSignaturesForAddress(address, o) {
      const page = await h.rpc.getSignaturesForAddress(address, o);
      return page.filter((e) => e.signature !== missing);
    },
  };
}

/** The local chain's node, which gives no block time for `undated` (listed or served). */
export function blockTimeLeftOut(h: AdversaryHarness, undated: string): LedgerRpc {
  return {
    async getTransaction(s) {
      const served = await h.rpc.getTransaction(s);
      if (served === null || s !== undated) return served;
      return { ...served, facts: { ...served.facts, blockTime: null } };
    },
    getTokenAccount: (a) => h.rpc.getTokenAccount(a),
    getSlot: (x) => h.rpc.getSlot(x),
    getBlockTime: (s) => h.rpc.getBlockTime(s),
    async getSignaturesForAddress(address, o) {
      const page = await h.rpc.getSignaturesForAddress(address, o);
      return page.map((e) => (e.signature === undated ? { ...e, blockTime: null } : e));
    },
  };
}

/**
 * The nightly run of scenario `c` on the harness's chain over a window, its jobs verified with
 * quick timing and its ledger read by `reader` (every vault, when not given) and judged with no
 * grace after the window; `reader` to read the vaults again between runs. `now` is the run's
 * clock and the default reader's: the chain's (`() => h.op.now()`) for a test that moves it on
 * instead of waiting; `pause` then moves it on through the run's finality pauses too
 * (`clockPause`), where the run would sleep until the chain had finalized 2 s past the window,
 * and the run's verifier keeps that clock as well (on the machine's, which trails a clock moved
 * on, a run whose receipts were dated by the moved clock took 9 s instead of 2).
 */
export function nightlyOnChain(
  h: AdversaryHarness,
  c: Scenario,
  reader?: LedgerReader,
  now: () => number = Date.now,
  pause?: (ms: number, signal?: AbortSignal) => Promise<unknown>,
) {
  const vaults =
    reader ??
    createLedgerReader({ store: c.store, rpc: h.rpc, profile: c.profile, log: silent, now });
  const verifier = createVerifier({
    store: c.store,
    rpc: h.rpc,
    profile: c.profile,
    log: silent,
    options: quickVerifierOptions,
    ...(pause ? { now } : {}),
  });
  const nightly = (window: { from: number; to: number }, timeoutMs = 10_000) =>
    runNightlyVerification(c.store, verifier, {
      ...window,
      timeoutMs,
      now,
      ledger: ledgerWindowCheck({
        store: c.store,
        reader: vaults,
        profile: c.profile,
        graceSeconds: 0,
        now,
        ...(pause ? { pause } : {}),
      }),
    });
  return { reader: vaults, nightly };
}

/**
 * Reads `vault` alone (through `rpc`, the harness's node unless given) and builds its statement
 * of [from, now) with no grace after the window, now on the chain's clock.
 */
export async function vaultStatementSince(
  h: AdversaryHarness,
  c: Scenario,
  vault: string,
  from: number,
  rpc: LedgerRpc = h.rpc,
) {
  await h.finalized();
  await vaultReader(h, c, vault, rpc).syncVault(vault);
  const statement = await buildStatement(
    c.store,
    { from, to: h.op.now() + 1_000, vault },
    { profile: c.profile, graceSeconds: 0 },
  );
  return statement.vaults[0]!;
}

/**
 * `vault`'s statement from `from` (as `vaultStatementSince` builds it), read once the chain has
 * finalized a second past now: past the settlement window of `quickWindowProfile`. For a
 * scenario whose receipts are dated by the chain's clock (`recordOnChainClock`) that clock is
 * moved on through the second (`finalizedAfter`), as its passing would move it: waited for, it
 * was 1.2-1.7 s of each statement, most of a case's time. Otherwise it is waited for: moved on,
 * the chain's clock stays ahead of the machine's for the rest of the file, and a receipt dated
 * by the machine's clock (or a period edge from `chainSecondAfter`) then lies a second or more
 * before the chain's blocks.
 */
export async function statementAfterWindow(
  h: AdversaryHarness,
  c: Scenario,
  vault: string,
  from: number,
) {
  if (c.onChainClock) await finalizedAfter(h, 1_000);
  else await finalizedPast(h.world, h.op.now() + 1_000);
  return vaultStatementSince(h, c, vault, from);
}
