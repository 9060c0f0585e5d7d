import { describe, expect, it } from "vitest";
import { createQuorumRpc } from "../src/chain/quorum.js";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import type { TransactionFacts } from "../src/chain/transaction-facts.js";
import { createEscrowScanner, type EscrowScanResult } from "../src/ledger/escrow-scan.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { createLogger } from "../src/log.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { createVerifier } from "../src/verify/engine.js";
import { createEscrowCoverGate, ESCROW_COVER_WAIT_MS } from "../src/verify/escrow-cover.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { nightlyAfter } from "./support/nightly-window.js";
import {
  discrepancy,
  type JobOutcome,
  type JobPlan,
  type Scenario,
  useAdversaryHarness,
} from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * Round 18: RPC_QUORUM=2, a streamed job whose lock the operator (holding the escrow authority)
 * pays out of escrow a second time under the job's own settle memo: a payout neither the receipt
 * nor the jobs API names, found only by the escrow scan. One member of the quorum lies about that
 * second payout's transaction (altered facts: the endpoints disagree; "not found": fewer than two
 * agree). The scan could not read it and held the entry an hour; the clean verdict waited for the
 * scan five minutes at most, then the job was `verified` though its lock was paid out twice. The
 * job must not be judged while the entry is unread: `rpc_disagreement` naming the transaction,
 * or RPC trouble (`error`) past the wait; `discrepancy` once the truth is read.
 *
 * Driven as serve drives it (src/background.ts): one quorum RPC for the verifier, the escrow scan
 * and the ledger; the verifier's verdicts wait on the escrow scan through a gate; a completed
 * scan makes the gate's jobs due (`verifier.lookAgain(gate.covered(slot))`), a ledger read those
 * waiting for it (`gate.ledgerRead`). Every clock is the harness's chain clock, moved past the
 * five-minute cap.
 */

const log = createLogger({ level: "silent" });
const h = useAdversaryHarness();
const now = () => h.op.now();
const escrowVault = localnetProfile.escrowVault!;

/**
 * What the liar says of the second payout: its transaction altered (the endpoints disagree), not
 * found (fewer than two agree), or its listing entry dated a second off (no listing agreed on).
 */
type Lie = "alter" | "not_found" | "listing" | "none";

const clean = new Set(["verified", "partially_verified"]);

/** A job whose lock is charged in full (nothing returned): each payout is the whole lock. */
function wholeLockJob(): JobPlan {
  const plan = h.op.plan({ keyIndex: 2, maxTokens: 300, completionTokens: 300 });
  expect(plan.remainder).toBe(0n);
  return plan;
}

/** Waits until the local chain is `n` slots past `slot` (finality is 3 slots behind). */
async function slotsPast(slot: number, n: number): Promise<void> {
  while (h.world.currentSlot() < slot + n) await new Promise((r) => setTimeout(r, 10));
}

/** The second payout's facts as the liar serves them: the worker paid one unit more. */
function altered(facts: TransactionFacts): TransactionFacts {
  return {
    ...facts,
    tokenChanges: facts.tokenChanges.map((c, i) =>
      i === 0 ? { ...c, post: c.post + 1n, delta: c.delta + 1n } : c,
    ),
  };
}

/** An endpoint over the honest local node. */
const honestEndpoint = (): RpcPool => ({ ...h.rpc, async close() {} });

/**
 * An endpoint over the honest local node that, while `lying.on`, lies about `lying.target`'s
 * transaction only (and tells the truth about everything else, its listing included).
 */
function liarEndpoint(lie: Lie, lying: { on: boolean; target: string | null }): RpcPool {
  return {
    ...h.rpc,
    async getTransaction(signature, commitment, options) {
      const served = await h.rpc.getTransaction(signature, commitment, options);
      if (!lying.on || signature !== lying.target || served === null) return served;
      if (lie === "not_found") return null;
      if (lie === "alter") return { ...served, facts: altered(served.facts) };
      return served;
    },
    async getSignaturesForAddress(address, options) {
      const listed = await h.rpc.getSignaturesForAddress(address, options);
      if (!lying.on || lie !== "listing") return listed;
      return listed.map((e) =>
        e.signature === lying.target && e.blockTime !== null
          ? { ...e, blockTime: e.blockTime + 1 }
          : e,
      );
    },
    async close() {},
  };
}

/** RPC_QUORUM=2 over two honest endpoints. */
const honestQuorum = () =>
  createQuorumRpc({
    members: [
      { name: "honest-a", rpc: honestEndpoint() },
      { name: "honest-b", rpc: honestEndpoint() },
    ],
    quorum: 2,
    log,
    now,
  });

/** serve's pieces over one RPC: the verifier (its verdicts gated on the scan), the scan, the ledger. */
function serveOver(c: Scenario, rpc: RpcPool) {
  const gate = createEscrowCoverGate(now);
  const verifier = createVerifier({
    store: c.store,
    rpc,
    profile: c.profile,
    log,
    now,
    options: quickVerifierOptions,
    escrowCover: { vault: escrowVault, gate },
  });
  const scanner = createEscrowScanner({ store: c.store, rpc, profile: c.profile, log, now });
  const reader = createLedgerReader({ store: c.store, rpc, profile: c.profile, log, now });
  return {
    /** One escrow scan round, as the ledger's loop runs it; the jobs it covers made due. */
    async scan(): Promise<EscrowScanResult> {
      const scanned = await scanner.scanNew();
      if (scanned.covered !== null) await verifier.lookAgain(gate.covered(scanned.covered));
      return scanned;
    },
    /** `scan`, null when it failed (as serve's loop logs it and goes on). */
    async tryScan(): Promise<EscrowScanResult | null> {
      return this.scan().catch(() => null);
    },
    /** One read of the credit vaults; the verdicts waiting for it made due. */
    async readLedger(): Promise<void> {
      const results = await reader.syncAll();
      await verifier.lookAgain(gate.ledgerRead(results.map((r) => r.vault)));
    },
    /** The verifier's loop for a while (it ends early once the job is final). */
    async verify(jobId: string, timeoutMs = 1_200): Promise<void> {
      await verifier.runUntilSettled({ jobIds: [jobId] }, { timeoutMs });
    },
  };
}

interface Seen {
  verdict: string;
  failing: string[];
  lastError: string | null;
  rpcQuorum: unknown;
}

async function look(c: Scenario, jobId: string): Promise<Seen> {
  const outcome: JobOutcome = await c.outcome(jobId);
  const row = await readJob(c.store, jobId);
  return {
    ...outcome,
    lastError: row?.lastError ?? null,
    rpcQuorum: await c.check(jobId, "settlement.rpc_quorum"),
  };
}

interface Run {
  plan: JobPlan;
  first: string;
  second: string;
  /** Every verdict seen while the liar lied (the last one after the five-minute cap). */
  whileLying: Seen[];
  /** The verdict seen once the cap had passed, the liar still lying. */
  afterCap: Seen;
  /** The scan's results while the liar lied (null: the scan failed). */
  scans: (EscrowScanResult | null)[];
  /** What the quorum's getTransaction of the second payout threw while the liar lied. */
  quorumError: { name: string; code: string | undefined; message: string } | null;
  /** The job had escrow entries held pending (`escrow_pending`) after the cap, the liar lying. */
  pendingAfterCap: boolean;
  /** The verdict once the liar stopped lying (or honest endpoints took over). */
  afterTruth: Seen;
}

/** A quorum of 2 over an honest endpoint and one lying `lie` while `lying.on`. */
const lyingQuorum = (
  lie: Lie,
  lying: { on: boolean; target: string | null },
  clock?: () => number,
) =>
  createQuorumRpc({
    members: [
      { name: "honest", rpc: honestEndpoint() },
      { name: "liar", rpc: liarEndpoint(lie, lying) },
    ],
    quorum: 2,
    log,
    ...(clock ? { now: clock } : {}),
  });

/**
 * The whole story: the lock paid out twice, the liar lying about the second payout through the
 * five-minute cap, then the truth (`truth`: the liar stops, or serve's pieces are made again over
 * two honest endpoints).
 */
async function paidTwice(lie: Lie, truth: "liar_stops" | "honest_endpoints"): Promise<Run> {
  const c = (await h.scenario()).recordOnChainClock();
  const lying = { on: true, target: null as string | null };
  const quorum = lyingQuorum(lie, lying, now);
  const serve = serveOver(c, quorum);
  // serve's scan ran before the job: its cursor is set.
  await h.finalized();
  await serve.scan();

  const plan = wholeLockJob();
  const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
  const first = h.op.send(h.op.settleIxs(plan)).signature;
  const second = h.op.send(h.op.settleIxs(plan)).signature;
  lying.target = second;
  const sentSlot = h.world.currentSlot();
  // A stream: the headers name no settlement, the jobs API names the first payout only.
  c.record(plan, { escrowTx, settlementTx: null }, { stream: true });
  c.honestJobsApi(plan, { escrowTx, settlementTx: first });
  await c.flush();
  // Finalized, and past the scan's margin of 10 slots.
  await slotsPast(sentSlot, 16);

  const whileLying: Seen[] = [];
  const scans: (EscrowScanResult | null)[] = [];
  await serve.verify(plan.jobId);
  whileLying.push(await look(c, plan.jobId));
  scans.push(await serve.tryScan());
  await serve.readLedger();
  await serve.verify(plan.jobId);
  whileLying.push(await look(c, plan.jobId));

  // Past the cap: the liar still lying, serve's scan and verifier go on.
  h.op.advanceClock(ESCROW_COVER_WAIT_MS + 60_000);
  h.op.nextSlot();
  await h.finalized();
  scans.push(await serve.tryScan());
  await serve.readLedger();
  await serve.verify(plan.jobId);
  scans.push(await serve.tryScan());
  await serve.verify(plan.jobId);
  const afterCap = await look(c, plan.jobId);
  whileLying.push(afterCap);
  const quorumError = await quorum.getTransaction(second).then(
    () => null,
    (e: Error & { code?: string }) => ({ name: e.name, code: e.code, message: e.message }),
  );
  const pendingAfterCap = (
    await createLedgerStore(c.store).escrowCoverage(escrowVault, [plan.jobId])
  ).pending.has(plan.jobId);

  // The truth.
  let after = serve;
  if (truth === "liar_stops") lying.on = false;
  else {
    after = serveOver(c, honestQuorum());
  }
  h.op.nextSlot();
  await h.finalized();
  await after.tryScan();
  await after.verify(plan.jobId, 5_000);
  const afterTruth = await look(c, plan.jobId);
  return {
    plan,
    first,
    second,
    whileLying,
    afterCap,
    scans,
    quorumError,
    pendingAfterCap,
    afterTruth,
  };
}

/** Runs `paidTwice` once for the cases of a describe block that read it. */
function once(lie: Lie, truth: "liar_stops" | "honest_endpoints") {
  let run: Promise<Run> | undefined;
  return () => {
    run ??= paidTwice(lie, truth);
    return run;
  };
}

const verdictsOf = (seen: Seen[]) => seen.map((s) => s.verdict);

describe("control: RPC_QUORUM=2 over two honest endpoints", () => {
  it("judges the streamed job paid out twice a discrepancy directly, never verified", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const serve = serveOver(c, honestQuorum());
    await h.finalized();
    await serve.scan();
    const plan = wholeLockJob();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    h.op.send(h.op.settleIxs(plan));
    const sentSlot = h.world.currentSlot();
    c.record(plan, { escrowTx, settlementTx: null }, { stream: true });
    c.honestJobsApi(plan, { escrowTx, settlementTx: first });
    await c.flush();
    await slotsPast(sentSlot, 16);

    const seen: string[] = [];
    await serve.verify(plan.jobId);
    seen.push((await c.outcome(plan.jobId)).verdict);
    const scanned = await serve.scan();
    expect(scanned).toMatchObject({ kept: [plan.jobId], unread: null });
    await serve.verify(plan.jobId, 5_000);
    const outcome = await c.outcome(plan.jobId);
    seen.push(outcome.verdict);
    expect(seen.filter((v) => clean.has(v))).toEqual([]);
    expect(outcome).toEqual(discrepancy("settlement.single"));
  });
});

describe("RPC_QUORUM=2, one member altering the second payout's transaction (RpcDisagreementError)", () => {
  const run = once("alter", "liar_stops");

  it("the scan cannot read the second payout while the liar lies (held unread)", async () => {
    const r = await run();
    // The quorum cannot read it: the scan holds the entry, and keeps nothing.
    expect(r.quorumError).toMatchObject({ name: "RpcDisagreementError" });
    expect(r.scans.some((s) => s?.unread?.includes(r.second))).toBe(true);
    expect(r.scans.flatMap((s) => s?.kept ?? [])).toEqual([]);
    expect(r.pendingAfterCap).toBe(true);
  });

  it("is never verified while the liar lies: rpc_disagreement, settlement.rpc_quorum naming the second payout", async () => {
    const r = await run();
    expect(verdictsOf(r.whileLying).filter((v) => clean.has(v))).toEqual([]);
    expect(r.afterCap.verdict).toBe("rpc_disagreement");
    const check = r.afterCap.rpcQuorum as { outcome: string } | null;
    expect(check).not.toBeNull();
    expect(["fail", "skip"]).toContain(check?.outcome);
    expect(JSON.stringify(check)).toContain(r.second);
  });

  it("ends discrepancy (settlement.single) once the liar stops lying", async () => {
    const r = await run();
    expect(r.afterTruth.verdict).toBe("discrepancy");
    expect(r.afterTruth.failing).toContain("settlement.single");
  });
});

describe("RPC_QUORUM=2, one member answering the second payout's transaction not found (rpc_unavailable)", () => {
  const run = once("not_found", "honest_endpoints");

  it("the scan cannot read the second payout while the liar lies (held unread)", async () => {
    const r = await run();
    expect(r.quorumError).toMatchObject({ code: "rpc_unavailable" });
    expect(r.quorumError?.message).toContain("liar: not_found");
    expect(r.scans.some((s) => s?.unread?.includes(r.second))).toBe(true);
    expect(r.scans.flatMap((s) => s?.kept ?? [])).toEqual([]);
    expect(r.pendingAfterCap).toBe(true);
  });

  it("is never verified while the liar lies: past the verdict's five-minute wait, `error` naming the second payout", async () => {
    const r = await run();
    expect(verdictsOf(r.whileLying).filter((v) => clean.has(v))).toEqual([]);
    expect(r.afterCap.verdict).toBe("error");
    expect(r.afterCap.lastError ?? "").toContain(r.second);
  });

  it("ends discrepancy (settlement.single) scanned and verified through honest endpoints", async () => {
    const r = await run();
    expect(r.afterTruth.verdict).toBe("discrepancy");
    expect(r.afterTruth.failing).toContain("settlement.single");
  });
});

describe("RPC_QUORUM=2, one member misdating the second payout's listing entry (no listing agreed on)", () => {
  const run = once("listing", "liar_stops");

  it("is never verified while the scan cannot read past it: past the verdict's wait, `error` naming the scan", async () => {
    const r = await run();
    // Every scan fails on the listing: nothing is held, nothing kept.
    expect(r.scans.filter((s) => s !== null)).toEqual([]);
    expect(verdictsOf(r.whileLying).filter((v) => clean.has(v))).toEqual([]);
    expect(r.afterCap.verdict).toBe("error");
    expect(r.afterCap.lastError).toContain(
      "the escrow scan has not read past this job's transactions",
    );
  });

  it("ends discrepancy (settlement.single) once the liar stops lying", async () => {
    const r = await run();
    expect(r.afterTruth.verdict).toBe("discrepancy");
    expect(r.afterTruth.failing).toContain("settlement.single");
  });
});

describe("a stream paid out twice whose jobs API answer comes after the verdict's wait", () => {
  it("is not verified while its entries are held: the next scan judges them first", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const serve = serveOver(c, honestQuorum());
    await h.finalized();
    await serve.scan();
    const plan = wholeLockJob();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    h.op.send(h.op.settleIxs(plan));
    const sentSlot = h.world.currentSlot();
    // No settlement in the headers, no answer yet: the scan holds both payouts unjudged (the
    // job may name either).
    c.record(plan, { escrowTx, settlementTx: null }, { stream: true });
    await c.flush();
    await slotsPast(sentSlot, 16);
    await serve.verify(plan.jobId);
    await serve.scan();
    await serve.readLedger();
    // Past the verdict's five-minute wait, within the scan's ten-minute hold, the answer names
    // the first payout.
    h.op.advanceClock(ESCROW_COVER_WAIT_MS + 60_000);
    h.op.nextSlot();
    await h.finalized();
    c.honestJobsApi(plan, { escrowTx, settlementTx: first });
    await c.flush();
    await serve.verify(plan.jobId);
    const beforeScan = await look(c, plan.jobId);
    expect(clean.has(beforeScan.verdict)).toBe(false);
    expect(await serve.scan()).toMatchObject({ kept: [plan.jobId] });
    await serve.verify(plan.jobId, 5_000);
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
  });
});

/**
 * A nightly run with no serve beside it over the window of a streamed job paid out twice, over
 * a quorum of an honest endpoint and one lying `lie` about the second payout.
 */
async function nightOfPaidTwice(lie: Lie) {
  const c = await h.scenario();
  const lying = { on: true, target: null as string | null };
  const quorum = lyingQuorum(lie, lying);
  const from = Math.floor(Date.now() / 1000) * 1000;
  const plan = wholeLockJob();
  const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
  const first = h.op.send(h.op.settleIxs(plan)).signature;
  const second = h.op.send(h.op.settleIxs(plan)).signature;
  lying.target = second;
  c.record(plan, { escrowTx, settlementTx: null }, { stream: true });
  c.honestJobsApi(plan, { escrowTx, settlementTx: first });
  await c.flush();
  const to = Math.ceil((Date.now() + 1) / 1000) * 1000;
  const window = { vaults: [plan.vault], from, to };
  const run = await nightlyAfter(h, c, { ...window, timeoutMs: 5_000, rpc: quorum });
  return { c, plan, second, lying, quorum, window, run };
}

describe("a nightly run over the job's window, one member altering the second payout's transaction", () => {
  it("does not count the job verified: the run is incomplete (exit 2), the job rpc_disagreement naming the transaction", async () => {
    const { c, plan, second, run } = await nightOfPaidTwice("alter");
    expect(run).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    expect(run.byVerdict.verified ?? 0).toBe(0);
    expect(run.byVerdict.partially_verified ?? 0).toBe(0);
    // The run's scan, before it judged the job, held the payout unread: the job waits for it.
    expect(run.byVerdict.rpc_disagreement).toBe(1);
    expect(run.reason).toContain("1 jobs in rpc_disagreement");
    const seen = await look(c, plan.jobId);
    expect(seen.verdict).toBe("rpc_disagreement");
    expect(JSON.stringify(seen.rpcQuorum)).toContain(second);
  });
});

describe("a nightly run with no serve beside it, one member misdating the second payout's listing entry", () => {
  it("judges no job when its escrow scan cannot read: exit 2, the job paid out twice not verified", async () => {
    const { c, plan, lying, quorum, window, run } = await nightOfPaidTwice("listing");
    expect(run).toMatchObject({ outcome: "incomplete", exitCode: 2 });
    expect(run.reason).toContain("no job was judged");
    expect((await look(c, plan.jobId)).verdict).toBe("pending");
    // Once the listing is agreed on, the next run finds the payout.
    lying.on = false;
    const again = await nightlyAfter(h, c, { ...window, timeoutMs: 10_000, rpc: quorum });
    expect(again).toMatchObject({ outcome: "discrepancies", exitCode: 1 });
    const outcome = await c.outcome(plan.jobId);
    expect(outcome.verdict).toBe("discrepancy");
    expect(outcome.failing).toContain("settlement.single");
  });
});
