import { expect } from "vitest";
import type { RpcPool } from "../../src/chain/rpc-pool.js";
import { createEscrowScanner } from "../../src/ledger/escrow-scan.js";
import { createLedgerReader } from "../../src/ledger/reader.js";
import { type LedgerWindowResult, ledgerWindowCheck } from "../../src/ledger/window-check.js";
import { createLogger } from "../../src/log.js";
import { type NightlySummary, runNightlyVerification } from "../../src/nightly/nightly-run.js";
import { createVerifier } from "../../src/verify/engine.js";
import { clockPause, edgeAfter, moveClockTo } from "./chain-clock.js";
import { chainSecondAfter } from "./finality.js";
import { type AdversaryHarness, type JobPlan, type Scenario, verified } from "./operator.js";
import { quickVerifierOptions } from "./quick-verifier.js";

const log = createLogger({ level: "silent" });

export interface NightlyWindow {
  from: number;
  to: number;
  /** The credit vaults the ledger reads. */
  vaults: string[];
  /** Default 20 s. */
  timeoutMs?: number;
  /** Default the harness's honest node. */
  rpc?: RpcPool;
  /** The run's clock, the reader's and the verifier's. Default the machine's. */
  now?: () => number;
  /**
   * The ledger check's pause between reads while the chain finalizes the window's last seconds
   * (`clockPause` moves the chain's clock on instead of waiting). Default a timer.
   */
  pause?: (ms: number, signal?: AbortSignal) => Promise<unknown>;
  /** Called after each read of the ledger, with how many there were. */
  afterRead?: (reads: number) => Promise<void>;
}

/**
 * A nightly run over [from, to) as `verify` runs one: a verifier and the ledger's window check
 * (the credit vaults, the escrow scan) over one RPC, the run's own window and clocks. With how
 * many times the run read the ledger.
 */
export async function nightlyOver(
  h: AdversaryHarness,
  c: Scenario,
  window: NightlyWindow,
): Promise<NightlySummary & { reads: number }> {
  const rpc = window.rpc ?? h.rpc;
  const custody = { vaults: window.vaults, byKey: {} };
  const clock = window.now ? { now: window.now } : {};
  const pause = window.pause;
  const reader = createLedgerReader({
    store: c.store,
    rpc,
    profile: c.profile,
    log,
    custody,
    ...clock,
  });
  const check = ledgerWindowCheck({
    store: c.store,
    reader,
    profile: c.profile,
    graceSeconds: 0,
    ...clock,
    ...(pause ? { pause } : {}),
  });
  let reads = 0;
  const ledger = Object.assign(
    async (w: { from: number; to: number; signal?: AbortSignal }): Promise<LedgerWindowResult> => {
      const result = await check(w);
      await window.afterRead?.(++reads);
      return result;
    },
    { commit: check.commit, escrowFirst: check.escrowFirst },
  );
  const summary = await runNightlyVerification(
    c.store,
    createVerifier({
      store: c.store,
      rpc,
      profile: c.profile,
      log,
      custody,
      ...clock,
      options: quickVerifierOptions,
    }),
    {
      from: window.from,
      to: window.to,
      timeoutMs: window.timeoutMs ?? 20_000,
      ...clock,
      preflight: () => rpc.getSlot("finalized"),
      ledger,
    },
  );
  return { ...summary, reads };
}

/**
 * `nightlyOver` once the run's clock is past `to` and the chain final past it. For a scenario
 * whose receipts the chain's clock dates (`recordOnChainClock`), that clock is moved on past `to`
 * and the run keeps it, its finality pauses moving it on too (`clockPause`): waited for on the
 * machine's clock, each night was 3-4 s of real time, most of the files that run several.
 * Otherwise the machine's clock is waited for: moved on, the chain's clock stays ahead of it for
 * the rest of the file, and a receipt the machine's clock dates lies before its block.
 */
export async function nightlyAfter(
  h: AdversaryHarness,
  c: Scenario,
  window: NightlyWindow,
): Promise<NightlySummary & { reads: number }> {
  if (!c.onChainClock) {
    await new Promise((r) => setTimeout(r, Math.max(0, window.to - Date.now() + 50)));
    await h.finalized();
    return nightlyOver(h, c, window);
  }
  moveClockTo(h, window.to, 50);
  await h.finalized();
  return nightlyOver(h, c, { now: () => h.op.now(), pause: clockPause(h), ...window });
}

/**
 * The start of a night's window: the next whole second at least 200 ms from now on the clock
 * that dates `c`'s receipts, once the chain's newest slot is past it (every transaction sent
 * after has a block time at or after it). On the chain's clock (`recordOnChainClock`) the clock
 * is moved there (`edgeAfter`); otherwise the chain is waited for (`chainSecondAfter`).
 */
export async function nightStart(h: AdversaryHarness, c: Scenario): Promise<number> {
  return c.onChainClock ? edgeAfter(h, 200) : chainSecondAfter(h.world, 200);
}

/**
 * A window of the chain's clock judged by a run: with an honest job of the key `keyIndex`, or
 * none. Each case of a file spends its own key: a vault's debits that another case's store never
 * recorded are the ledger's findings.
 */
export async function nightWithJob(
  h: AdversaryHarness,
  c: Scenario,
  vaults: string[],
  keyIndex: number | null,
): Promise<NightlySummary & { reads: number }> {
  const from = await nightStart(h, c);
  if (keyIndex !== null) {
    const other = h.op.plan({ keyIndex });
    const txs = h.op.honestJob(other);
    c.record(other, txs);
    c.honestJobsApi(other, txs);
    await c.flush();
  }
  const to = Math.ceil((h.op.now() + 1) / 1000) * 1000;
  return nightlyAfter(h, c, { vaults, from, to });
}

/**
 * The verifier over the harness's honest node, run until `jobIds` are final (serve's, say); on
 * the chain's clock for a scenario it dates (`recordOnChainClock`), which `nightlyAfter` moves on:
 * on the machine's, seconds behind it then, a job paid out twice stayed pending through the run.
 */
export async function verifyJobs(h: AdversaryHarness, c: Scenario, jobIds: string[]) {
  await createVerifier({
    store: c.store,
    rpc: h.rpc,
    profile: c.profile,
    log,
    options: quickVerifierOptions,
    ...(c.onChainClock ? { now: () => h.op.now() } : {}),
  }).runUntilSettled({ jobIds }, { timeoutMs: 10_000 });
}

/**
 * A window of the chain's clock of its own holding one streamed job of the key `keyIndex`
 * whose lock is charged in full (nothing returned, so each payout is the whole lock), paid out
 * once: recorded, its jobs API answering. Not run.
 */
export async function paidOnceNight(
  h: AdversaryHarness,
  c: Scenario,
  keyIndex: number,
): Promise<{ plan: JobPlan; from: number; to: number }> {
  const from = await nightStart(h, c);
  const plan = h.op.plan({ keyIndex, maxTokens: 300, completionTokens: 300 });
  expect(plan.remainder).toBe(0n);
  const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
  const first = h.op.send(h.op.settleIxs(plan)).signature;
  c.record(plan, { escrowTx, settlementTx: null }, { stream: true });
  c.honestJobsApi(plan, { escrowTx, settlementTx: first });
  await c.flush();
  const to = Math.ceil((h.op.now() + 1) / 1000) * 1000;
  return { plan, from, to };
}

/** `paidOnceNight`, then its run: the window's one job counted verified, the run exiting 0. */
export async function paidOnceCounted(h: AdversaryHarness, c: Scenario, keyIndex: number) {
  const night = await paidOnceNight(h, c, keyIndex);
  const { plan, from, to } = night;
  expect(await nightlyAfter(h, c, { vaults: [plan.vault], from, to })).toMatchObject({
    exitCode: 0,
    total: 1,
  });
  expect(await c.outcome(plan.jobId)).toEqual(verified);
  return night;
}

/**
 * serve's escrow scan once, then its verifier, once the chain is final: the scan must keep a
 * payout of `jobId` (a second one, made since) and send it back, which the verifier judges.
 */
export async function serveFinds(h: AdversaryHarness, c: Scenario, jobId: string) {
  await h.finalized();
  const scanned = await createEscrowScanner({
    store: c.store,
    rpc: h.rpc,
    profile: c.profile,
    log,
  }).scanNew();
  expect(scanned.kept).toEqual([jobId]);
  await verifyJobs(h, c, [jobId]);
}
