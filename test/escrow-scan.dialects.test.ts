import { describe, expect, it } from "vitest";
import { unionOfListings } from "../src/chain/quorum.js";
import type { AddressSignatureInfo } from "../src/chain/rpc-pool.js";
import {
  createEscrowScanner,
  ESCROW_PENDING_MS,
  ESCROW_UNCLOSED_WAIT_MS,
  listedMemoTexts,
} from "../src/ledger/escrow-scan.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { auditRecord } from "../src/reports/audit-record.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { createVerifier } from "../src/verify/engine.js";
import { createEscrowCoverGate, type EscrowCoverConfig } from "../src/verify/escrow-cover.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { chainSecondAfter } from "./support/finality.js";
import {
  discrepancy,
  type JobPlan,
  type Scenario,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";
import { withholdingNode } from "./support/rewriting-node.js";
import { readJob } from "./support/seed-recorder.js";
import { signatureOf } from "./support/seed-reports.js";

/**
 * A streamed job's headers name no settlement; the jobs API names one. The operator settles it
 * twice, each time paying the worker and the treasury the whole lock out of escrow: nothing comes
 * back to the customer's vault, so no credit vault's ledger reads the second payout. The escrow
 * vault's listing carries each transaction's memo: the payout under the job's settle memo that
 * the job does not name is kept with it, and `settlement.single` fails.
 */

const log = createLogger({ level: "silent" });
const explorer = { cluster: "custom", rpcUrl: "http://127.0.0.1:8899" } as const;

describe("the escrow listing's memo text", () => {
  it("is read as the memos a node joined, each without its length", () => {
    expect(listedMemoTexts("[31] decentral:settle:job_abc; [4] note")).toEqual([
      "decentral:settle:job_abc",
      "note",
    ]);
    expect(listedMemoTexts("[2] a;b")).toEqual(["a;b"]);
  });
});

describe("a quorum's union of listings", () => {
  it("keeps every memo any endpoint gave an entry: one blanking it hides no job", () => {
    const entry = { signature: "sigA", slot: 5, err: null, blockTime: 100 };
    const honest = { ...entry, memo: "[31] decentral:settle:job_abc" };
    const blank = { ...entry, memo: null };
    for (const lists of [
      [[blank], [honest]],
      [[honest], [blank]],
    ]) {
      // Marked disputed: the blank one may be the truth, a memo written by a call unlisted.
      expect(unionOfListings(lists)).toEqual([{ ...honest, memoDisputed: true }]);
    }
    expect(unionOfListings([[honest], [honest]])).toEqual([honest]);
    const other = { ...entry, memo: "[4] note" };
    expect(unionOfListings([[other], [honest]])[0]).toEqual({
      ...entry,
      memo: "[4] note; [31] decentral:settle:job_abc",
      memoDisputed: true,
    });
  });
});

describe.each(dialects)("the escrow vault's memo scan on %s", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  const scanner = (c: Scenario) =>
    createEscrowScanner({
      store: c.store,
      rpc: h.rpc,
      profile: localnetProfile,
      log,
      pageSize: 50,
    });

  /** A streamed job whose charge is its whole lock (nothing returns to the vault). */
  function streamedWholeLock(): JobPlan {
    const plan = h.op.plan({ keyIndex: 2, maxTokens: 300, completionTokens: 300 });
    expect(plan.remainder).toBe(0n);
    return plan;
  }

  /** Records `plan` as a stream (no settlement header), the jobs API naming `settlementTx`. */
  function recordStreamed(c: Scenario, plan: JobPlan, escrowTx: string, settlementTx: string) {
    c.record(plan, { escrowTx, settlementTx: null }, { stream: true });
    c.honestJobsApi(plan, { escrowTx, settlementTx });
    return c.flush();
  }

  /**
   * A streamed job whose whole lock is paid out twice, recorded with the jobs API naming the
   * first payout, everything finalized.
   */
  async function streamPaidTwice(c: Scenario): Promise<JobPlan> {
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    h.op.send(h.op.settleIxs(plan));
    await recordStreamed(c, plan, escrowTx, first);
    await h.finalized();
    return plan;
  }

  /** A verifier over the scenario whose verdicts wait for the escrow scan as `escrowCover` says. */
  const coverVerifier = (c: Scenario, escrowCover: EscrowCoverConfig) =>
    createVerifier({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log,
      options: quickVerifierOptions,
      escrowCover,
    });
  const escrowVault = localnetProfile.escrowVault!;

  it("keeps a second payout of a streamed job with the job, which then fails settlement.single", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    const second = h.op.send(h.op.settleIxs(plan)).signature;
    await recordStreamed(c, plan, escrowTx, first);
    await h.finalized();
    // Nothing but escrow, the worker and the treasury moved: the ledger has nothing to read.
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);

    const scanned = await scanner(c).scanNew();
    expect(scanned.kept).toEqual([plan.jobId]);
    expect(scanned.unread).toBeNull();
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([second]);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
  });

  it("keeps nothing of an honest streamed job, nor of a unit anyone sends into escrow under its memo", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    // An outsider's deposit into escrow under the job's settle memo: no payout of escrow.
    const outsider = h.op.attackerAccount();
    h.op.send([
      h.op.transfer(outsider, h.op.accounts.escrowVault, 1n, { authority: h.op.attacker.address }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]);
    await recordStreamed(c, plan, escrowTx, settlementTx);
    await h.finalized();
    const scanned = await scanner(c).scanNew();
    expect(scanned.kept).toEqual([]);
    // The outsider's deposit was fetched (its memo names the job) and found to pay nothing out.
    expect(scanned.fetched).toBeGreaterThanOrEqual(1);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures ?? []).toEqual([]);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });

  it("holds an honest streamed job's settlement found before the jobs API names it, and keeps nothing once the answer does", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx: null }, { stream: true });
    await h.finalized();
    await c.flush();
    const scan = scanner(c);
    const ledger = createLedgerStore(c.store);
    const held = async () =>
      (
        await ledger.pendingEscrowSteps(
          h.op.accounts.escrowVault,
          1000,
          Number.MAX_SAFE_INTEGER,
          null,
        )
      )
        .filter((p) => p.job === plan.jobId)
        .map(({ job, signature }) => ({ job, signature }));
    // Scanned before any answer: the job names no settlement yet, so this may be its one.
    expect((await scan.scanNew()).kept).toEqual([]);
    expect(await held()).toEqual([{ job: plan.jobId, signature: settlementTx }]);
    const pendingOf = async () =>
      (await ledger.escrowCoverage(h.op.accounts.escrowVault, [plan.jobId])).pending;
    // What a verdict waits for: the scan has not judged the job's entry yet.
    expect(await pendingOf()).toEqual(new Set([plan.jobId]));
    c.honestJobsApi(plan, { escrowTx, settlementTx });
    await c.flush();
    expect((await scan.scanNew()).kept).toEqual([]);
    expect(await held()).toEqual([]);
    expect(await pendingOf()).toEqual(new Set());
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures ?? []).toEqual([]);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });

  it("keeps a second payout made before the jobs API answers once the answer names the first", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    const second = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx: null }, { stream: true });
    await h.finalized();
    await c.flush();
    const scan = scanner(c);
    expect((await scan.scanNew()).kept).toEqual([]);
    c.honestJobsApi(plan, { escrowTx, settlementTx: first });
    await c.flush();
    expect((await scan.scanNew()).kept).toEqual([plan.jobId]);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([second]);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
  });

  it("keeps the settlements of a stream whose answer does not come, after the wait, as found on chain; two fail", async () => {
    const c = await h.scenario();
    const honest = streamedWholeLock();
    const honestEscrow = h.op.send(h.op.lockIxs(honest)).signature;
    const honestSettlement = h.op.send(h.op.settleIxs(honest)).signature;
    const twice = streamedWholeLock();
    const twiceEscrow = h.op.send(h.op.lockIxs(twice)).signature;
    const payouts = [h.op.send(h.op.settleIxs(twice)).signature];
    payouts.push(h.op.send(h.op.settleIxs(twice)).signature);
    c.record(honest, { escrowTx: honestEscrow, settlementTx: null }, { stream: true });
    c.record(twice, { escrowTx: twiceEscrow, settlementTx: null }, { stream: true });
    await h.finalized();
    await c.flush();
    expect((await scanner(c).scanNew()).kept).toEqual([]);
    // No answer comes (none to ask, or down): the wait over, each payout is judged as it stands.
    const later = createEscrowScanner({
      store: c.store,
      rpc: h.rpc,
      profile: localnetProfile,
      log,
      pageSize: 50,
      now: () => Date.now() + ESCROW_UNCLOSED_WAIT_MS + 1000,
    });
    expect((await later.scanNew()).kept.sort()).toEqual([honest.jobId, twice.jobId].sort());
    expect((await readJob(c.store, honest.jobId))?.conflictSignatures).toEqual([honestSettlement]);
    expect(((await readJob(c.store, twice.jobId))?.conflictSignatures ?? []).sort()).toEqual(
      [...payouts].sort(),
    );
    // When the answers come at last, each names its first payout.
    c.honestJobsApi(honest, { escrowTx: honestEscrow, settlementTx: honestSettlement });
    c.honestJobsApi(twice, { escrowTx: twiceEscrow, settlementTx: payouts[0]! });
    expect(await c.verdicts(honest.jobId)).toEqual([verified]);
    expect(await c.verdicts(twice.jobId)).toEqual([discrepancy("settlement.single")]);
    // The audit record names the honest one by the step the answer named, not as a conflict;
    // the second payout stays a conflicting receipt's.
    const namedAs = async (jobId: string) =>
      Object.fromEntries(
        (await auditRecord(c.store, jobId, explorer))!.transactions.map((t) => [
          t.signature,
          t.namedAs,
        ]),
      );
    const honestNamed = (await namedAs(honest.jobId))[honestSettlement];
    expect(honestNamed).toContain("jobs API settlement");
    expect(honestNamed).not.toContain("conflicting receipt");
    const twiceNamed = await namedAs(twice.jobId);
    expect(twiceNamed[payouts[0]!]).not.toContain("conflicting receipt");
    expect(twiceNamed[payouts[1]!]).toEqual(["conflicting receipt"]);
  });

  it("goes on from where the last scan stopped, and finds a payout made after it", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    await recordStreamed(c, plan, escrowTx, first);
    await h.finalized();
    const scan = scanner(c);
    const before = await scan.scanNew();
    expect(before.kept).toEqual([]);
    // Listed again, nothing new: the cursor holds, and the scan says when it last ran through.
    const ledger = createLedgerStore(c.store);
    const ranBefore = (await ledger.escrowScanFigures(localnetProfile.escrowVault!)).scannedAt;
    await new Promise((r) => setTimeout(r, 5));
    expect((await scan.scanNew()).listed).toBe(0);
    const ranAfter = (await ledger.escrowScanFigures(localnetProfile.escrowVault!)).scannedAt;
    expect(ranAfter).toBeGreaterThan(ranBefore!);

    const second = h.op.send(h.op.settleIxs(plan)).signature;
    await h.finalized();
    const after = await scan.scanNew();
    expect(after.listed).toBe(1);
    expect(after.kept).toEqual([plan.jobId]);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([second]);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
  });

  it("lists a long history over several rounds, a few pages each, and finds the payout deep in it", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    const second = h.op.send(h.op.settleIxs(plan)).signature;
    // Traffic after it: other jobs, none recorded here.
    for (let i = 0; i < 4; i++) h.op.honestJob(h.op.plan({ keyIndex: 1 }));
    await recordStreamed(c, plan, escrowTx, first);
    await h.finalized();
    const scan = createEscrowScanner({
      store: c.store,
      rpc: h.rpc,
      profile: localnetProfile,
      log,
      pageSize: 2,
      pagesPerRound: 2,
    });
    const ledger = createLedgerStore(c.store);
    const vault = localnetProfile.escrowVault!;
    const finalizedAtStart = await h.rpc.getSlot("finalized");
    const rounds = [];
    let afterFirst = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 50; i++) {
      const round = await scan.scanNew();
      if (i === 0) afterFirst = await h.rpc.getSlot("finalized");
      rounds.push(round);
      if (!round.more) break;
      // A scan in progress covers nothing yet: a verdict waiting for it still waits.
      expect((await ledger.escrowCoverage(vault, [plan.jobId])).coveredSlot).toBeNull();
    }
    expect(rounds.length).toBeGreaterThan(2);
    expect(rounds.flatMap((r) => r.kept)).toEqual([plan.jobId]);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([second]);
    // Completed, it covers every payout finalized when it began, all those rounds ago.
    const covered = rounds.at(-1)!.covered!;
    expect(rounds.slice(0, -1).map((r) => r.covered)).toEqual(rounds.slice(1).map(() => null));
    expect(covered).toBeGreaterThanOrEqual(finalizedAtStart);
    expect(covered).toBeLessThanOrEqual(afterFirst);
    expect(await ledger.escrowCoverage(vault, [plan.jobId, "job_other"])).toMatchObject({
      coveredSlot: covered,
      pending: new Set(),
    });
    // Complete: the next scan lists only what came after.
    h.op.honestJob(h.op.plan({ keyIndex: 1 }));
    await h.finalized();
    const next = await scan.scanNew();
    expect(next).toMatchObject({ more: false, kept: [] });
    expect(next.covered).toBeGreaterThan(covered);
    expect(next.listed).toBe(2);
  });

  it("stops before a payout no endpoint serves, and judges it once one does", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    const second = h.op.send(h.op.settleIxs(plan)).signature;
    h.op.honestJob(h.op.plan({ keyIndex: 1 }));
    await recordStreamed(c, plan, escrowTx, first);
    await h.finalized();
    const withheld = new Set([second]);
    const rpc = withholdingNode(h.rpc, withheld);
    const scan = createEscrowScanner({ store: c.store, rpc, profile: localnetProfile, log });
    const held = await scan.scanNew();
    expect(held.kept).toEqual([]);
    expect(held.unread).toContain(second);
    // Not passed by: the next scan lists it again.
    withheld.clear();
    const after = await scan.scanNew();
    expect(after).toMatchObject({ kept: [plan.jobId], unread: null });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
  });

  it("holds a payout no endpoint serves with its job past the hour, the job not verified meanwhile; judged once served", async () => {
    const c = await h.scenario();
    // The chain's clock, moved on here only (the harness's clock is every test's).
    let later = 0;
    const now = () => h.op.now() + later;
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    await recordStreamed(c, plan, escrowTx, first);
    await h.finalized();
    const verifier = createVerifier({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log,
      now,
      options: quickVerifierOptions,
    });
    await verifier.runUntilSettled({ jobIds: [plan.jobId] }, { timeoutMs: 5_000 });
    expect(await c.outcome(plan.jobId)).toEqual(verified);
    // After the verdict: a second payout, and an outsider's unit sent in under the job's memo.
    const second = h.op.send(h.op.settleIxs(plan)).signature;
    const outsider = h.op.attackerAccount();
    const deposit = h.op.send([
      h.op.transfer(outsider, h.op.accounts.escrowVault, 1n, { authority: h.op.attacker.address }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    await h.finalized();
    const hidden = new Set([second, deposit]);
    const rpc = withholdingNode(h.rpc, hidden);
    const scan = createEscrowScanner({ store: c.store, rpc, profile: localnetProfile, log, now });
    const held = await scan.scanNew();
    expect(held.kept).toEqual([]);
    expect(held.unread).not.toBeNull();
    // Sent back to the verifier, which does not judge it while the entries are unread.
    expect((await readJob(c.store, plan.jobId))?.verdict).toBe("pending");
    const ledger = createLedgerStore(c.store);
    const unreadOf = async () =>
      ((await ledger.escrowUnread(escrowVault, [plan.jobId])).get(plan.jobId) ?? []).map(
        (e) => e.signature,
      );
    expect((await unreadOf()).sort()).toEqual([second, deposit].sort());
    // Past the hour an entry of a job not recorded is held, and past the verdict's wait.
    later = 61 * 60_000;
    await scan.scanNew();
    expect((await unreadOf()).sort()).toEqual([second, deposit].sort());
    await verifier.runUntilSettled({ jobIds: [plan.jobId] }, { timeoutMs: 1_000 });
    const waiting = await readJob(c.store, plan.jobId);
    if (dialect === "sqlite") {
      expect(waiting?.verdict).toBe("error");
      expect(waiting?.lastError).toContain(second);
    } else {
      // PostgreSQL's verifier goes by the server's clock, which this test does not move: the
      // job is still within the verdict's wait for the scan.
      expect(waiting?.verdict).toBe("awaiting_finality");
    }
    // The outsider's unit, once served, pays nothing out: dropped, the payout still held.
    hidden.delete(deposit);
    expect((await scan.scanNew()).kept).toEqual([]);
    expect(await unreadOf()).toEqual([second]);
    await verifier.runUntilSettled({ jobIds: [plan.jobId] }, { timeoutMs: 1_000 });
    expect((await readJob(c.store, plan.jobId))?.verdict).toBe(waiting?.verdict);
    hidden.delete(second);
    expect((await scan.scanNew()).kept).toEqual([plan.jobId]);
    expect(await unreadOf()).toEqual([]);
    await verifier.runUntilSettled({ jobIds: [plan.jobId] }, { timeoutMs: 5_000 });
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
  });

  it("lets a job whose only unread entry was an outsider's unit be verified again once it is read", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    const outsider = h.op.attackerAccount();
    const deposit = h.op.send([
      h.op.transfer(outsider, h.op.accounts.escrowVault, 1n, { authority: h.op.attacker.address }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    await recordStreamed(c, plan, escrowTx, first);
    await h.finalized();
    let serving = false;
    const rpc: typeof h.rpc = Object.create(h.rpc);
    rpc.getTransaction = (signature, ...rest) =>
      signature === deposit && !serving
        ? Promise.resolve(null)
        : h.rpc.getTransaction(signature, ...rest);
    const scan = createEscrowScanner({ store: c.store, rpc, profile: localnetProfile, log });
    expect((await scan.scanNew()).unread).toContain(deposit);
    serving = true;
    expect((await scan.scanNew()).kept).toEqual([]);
    expect((await createLedgerStore(c.store).escrowUnread(escrowVault, [plan.jobId])).size).toBe(0);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });

  it("reads again, in a nightly run's scan, an entry an earlier run held unread before its span", async () => {
    const c = await h.scenario();
    let later = 0;
    const now = () => h.op.now() + later;
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    await recordStreamed(c, plan, escrowTx, first);
    // Anyone's unit into escrow under the job's memo; one fetch of it fails (a 429).
    const outsider = h.op.attackerAccount();
    const deposit = h.op.send([
      h.op.transfer(outsider, h.op.accounts.escrowVault, 1n, { authority: h.op.attacker.address }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    await h.finalized();
    let flaky = true;
    const rpc: typeof h.rpc = Object.create(h.rpc);
    rpc.getTransaction = (signature, ...rest) =>
      flaky && signature === deposit
        ? Promise.reject(new Error("429 Too Many Requests"))
        : h.rpc.getTransaction(signature, ...rest);
    const scan = createEscrowScanner({ store: c.store, rpc, profile: localnetProfile, log, now });
    expect((await scan.scanSince(now() - 2 * 3_600_000)).heldBack).toEqual([plan.jobId]);
    const ledger = createLedgerStore(c.store);
    expect((await ledger.escrowUnread(escrowVault, [plan.jobId])).get(plan.jobId)).toEqual([
      expect.objectContaining({ signature: deposit, reason: expect.stringContaining("429") }),
    ]);
    // The next night's span begins after the unit: no listing names it again.
    flaky = false;
    later = 24 * 3_600_000;
    const next = await scan.scanSince(now() - 2 * 3_600_000);
    expect(next.heldBack).toEqual([plan.jobId]);
    expect((await ledger.escrowUnread(escrowVault, [plan.jobId])).size).toBe(0);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });

  it("judges a job by the profile's escrow vault's unread entries only (one of a vault no longer scanned is read by no scan)", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    await recordStreamed(c, plan, escrowTx, first);
    await h.finalized();
    const ledger = createLedgerStore(c.store);
    const unread = { reason: "not served", disagreement: null };
    const hold = { job: plan.jobId, signature: signatureOf("old"), blockTime: null, unread };
    const change = { keep: [], hold: [hold], release: [], pruneBefore: 0 };
    await ledger.keepEscrowSteps(h.op.attackerAccount(), change, null, Date.now());
    expect((await ledger.escrowUnread(escrowVault, [plan.jobId])).size).toBe(0);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });

  it("judges the held entries behind a page of ones no endpoint serves (they stalled it until the hour dropped them)", async () => {
    const c = await h.scenario();
    // U: a closed job with two payouts under its memo that no endpoint serves.
    const u = streamedWholeLock();
    const uEscrow = h.op.send(h.op.lockIxs(u)).signature;
    const uFirst = h.op.send(h.op.settleIxs(u)).signature;
    const unserved = [h.op.send(h.op.settleIxs(u)).signature];
    unserved.push(h.op.send(h.op.settleIxs(u)).signature);
    await recordStreamed(c, u, uEscrow, uFirst);
    await h.finalized();
    const rpc: typeof h.rpc = Object.create(h.rpc);
    rpc.getTransaction = (signature, ...rest) =>
      unserved.includes(signature)
        ? Promise.resolve(null)
        : h.rpc.getTransaction(signature, ...rest);
    const scan = createEscrowScanner({
      store: c.store,
      rpc,
      profile: localnetProfile,
      log,
      pageSize: 2,
    });
    expect((await scan.scanNew()).unread).not.toBeNull();
    // V: a stream paid twice before its answer, held behind U's entries.
    const v = streamedWholeLock();
    const vEscrow = h.op.send(h.op.lockIxs(v)).signature;
    const vFirst = h.op.send(h.op.settleIxs(v)).signature;
    const vSecond = h.op.send(h.op.settleIxs(v)).signature;
    c.record(v, { escrowTx: vEscrow, settlementTx: null }, { stream: true });
    await h.finalized();
    await c.flush();
    expect((await scan.scanNew()).kept).toEqual([]);
    c.honestJobsApi(v, { escrowTx: vEscrow, settlementTx: vFirst });
    await c.flush();
    expect((await scan.scanNew()).kept).toEqual([v.jobId]);
    expect((await readJob(c.store, v.jobId))?.conflictSignatures).toEqual([vSecond]);
  });

  it("judges, in the nightly's span, a payout of a job naming no settlement yet as it stands", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const payouts = [h.op.send(h.op.settleIxs(plan)).signature];
    payouts.push(h.op.send(h.op.settleIxs(plan)).signature);
    c.record(plan, { escrowTx, settlementTx: null }, { stream: true });
    await h.finalized();
    await c.flush();
    const logged: { level: number; msg: string; jobId?: string }[] = [];
    const spy = createLogger(
      { level: "info" },
      { write: (line: string) => logged.push(JSON.parse(line)) },
    );
    const scan = createEscrowScanner({
      store: c.store,
      rpc: h.rpc,
      profile: localnetProfile,
      log: spy,
      pageSize: 50,
    });
    // Minutes after its payouts, no answer: a nightly run judges the window as it stands.
    expect((await scan.scanSince(Date.now() - 5 * 60_000)).kept).toEqual([plan.jobId]);
    expect(((await readJob(c.store, plan.jobId))?.conflictSignatures ?? []).sort()).toEqual(
      [...payouts].sort(),
    );
    // Two payouts of one job at once are no settlement found: a warning.
    expect(logged.filter((l) => l.jobId === plan.jobId).map((l) => [l.level, l.msg])).toEqual([
      [40, "job judged again: escrow paid out under its memo a transaction it does not name"],
    ]);
  });

  it("holds a payout under the memo of a job not recorded yet, and judges it once the job is (an answer held open past the scan)", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    const second = h.op.send(h.op.settleIxs(plan)).signature;
    await h.finalized();
    const scan = scanner(c);
    // Paid out twice; the stream still open, its receipt not recorded when the scan passes.
    expect((await scan.scanNew()).kept).toEqual([]);
    await recordStreamed(c, plan, escrowTx, first);
    expect((await scan.scanNew()).kept).toEqual([plan.jobId]);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([second]);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
  });

  describe("a second payout of one job inside another's settlement, its memo written by a call", () => {
    const paidInside = (c: Scenario) => c.paidInsideAnother((text) => h.op.memoByCall(text));

    it("is kept with the job it pays once the verifier reads that settlement", async () => {
      const c = await h.scenario();
      await c.expectPaidInsideKept(paidInside(c));
    });

    // Held by a recorded job's own step (`named_by`): the scan's pending pages leave it out (any
    // number of made-up memos would cost each round), and the job's claim judges it.
    it("is held for that job while it is not recorded, and kept by its claim once it is", async () => {
      const c = await h.scenario();
      const s = paidInside(c);
      c.recordWithJobsApi(s.a, { escrowTx: s.lockA, settlementTx: s.settleA });
      await h.finalized();
      expect(await c.verdicts(s.a.jobId)).toEqual([discrepancy("settlement.memo")]);
      const ledger = createLedgerStore(c.store);
      expect((await ledger.escrowCoverage(escrowVault, [s.b.jobId])).pending).toEqual(
        new Set([s.b.jobId]),
      );
      c.recordWithJobsApi(s.b, { escrowTx: s.lockB, settlementTx: s.settleB });
      await c.flush();
      expect(await scanner(c).scanNew()).toMatchObject({ kept: [], unread: null });
      expect((await ledger.escrowCoverage(escrowVault, [s.b.jobId])).pending.size).toBe(1);
      expect(await c.verdicts(s.b.jobId)).toEqual([discrepancy("settlement.single")]);
      expect((await readJob(c.store, s.b.jobId))?.conflictSignatures).toEqual([s.settleA]);
      expect((await ledger.escrowCoverage(escrowVault, [s.b.jobId])).pending.size).toBe(0);
    });
  });

  it("scans a span for jobs recorded after their held entries were dropped (an import), as the nightly run does", async () => {
    const c = await h.scenario();
    const from = h.op.now() - 1_000;
    const early = streamedWholeLock();
    const earlyTxs = h.op.honestJob(early);
    await recordStreamed(c, early, earlyTxs.escrowTx, earlyTxs.settlementTx);
    const late = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(late)).signature;
    const first = h.op.send(h.op.settleIxs(late)).signature;
    const second = h.op.send(h.op.settleIxs(late)).signature;
    await h.finalized();
    let clock = Date.now();
    const scan = createEscrowScanner({
      store: c.store,
      rpc: h.rpc,
      profile: localnetProfile,
      log,
      now: () => clock,
    });
    await scan.scanNew();
    // Imported past the time entries of jobs not recorded are held.
    clock += ESCROW_PENDING_MS + 60_000;
    await scan.scanNew();
    await recordStreamed(c, late, escrowTx, first);
    expect((await scan.scanNew()).kept).toEqual([]);
    const spanned = await scan.scanSince(from);
    expect(spanned.kept).toEqual([late.jobId]);
    expect((await readJob(c.store, late.jobId))?.conflictSignatures).toEqual([second]);
    expect(await c.verdicts(late.jobId, early.jobId)).toEqual([
      discrepancy("settlement.single"),
      verified,
    ]);
  });

  it("reads a node that ignores `until` only down to where the last scan ended, and refuses one that lists `before` again", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const txs = h.op.honestJob(plan);
    await recordStreamed(c, plan, txs.escrowTx, txs.settlementTx);
    await h.finalized();
    const rpc: typeof h.rpc = Object.create(h.rpc);
    rpc.getSignaturesForAddress = (address, options = {}) => {
      const { until: _, ...rest } = options;
      return h.rpc.getSignaturesForAddress(address, rest);
    };
    const scan = createEscrowScanner({ store: c.store, rpc, profile: localnetProfile, log });
    await scan.scanNew();
    h.op.honestJob(h.op.plan({ keyIndex: 1 }));
    await h.finalized();
    expect((await scan.scanNew()).listed).toBe(2);
    expect((await scan.scanNew()).listed).toBe(0);

    const stuck: typeof h.rpc = Object.create(h.rpc);
    stuck.getSignaturesForAddress = (address, options = {}) => {
      const { before: _, ...rest } = options;
      return h.rpc.getSignaturesForAddress(address, rest);
    };
    const paged = createEscrowScanner({
      store: c.store,
      rpc: stuck,
      profile: localnetProfile,
      log,
      pageSize: 2,
    });
    await expect(paged.scanSince(0)).rejects.toThrow(/listed .* again below itself/);
  });

  // Two pages as the chain lists them, then the first again below the second's last entry, and
  // the second below the first's: never the cursor itself, never a new entry. Followed, the
  // scan went round the two pages for ever (scanSince: the nightly run's, to its --timeout).
  it("refuses a node whose pages go round below the cursor", async () => {
    const c = await h.scenario();
    for (let i = 0; i < 2; i++) h.op.honestJob(h.op.plan({ keyIndex: 1 }));
    await h.finalized();
    const listed: AddressSignatureInfo[] = [];
    let asked = 0;
    const round: typeof h.rpc = Object.create(h.rpc);
    round.getSignaturesForAddress = async (address, options = {}) => {
      asked++;
      if (listed.length >= 4) {
        return options.before === listed[1]?.signature ? listed.slice(2, 4) : listed.slice(0, 2);
      }
      const page = await h.rpc.getSignaturesForAddress(address, options);
      listed.push(...page);
      return page;
    };
    const scan = createEscrowScanner({
      store: c.store,
      rpc: round,
      profile: localnetProfile,
      log,
      pageSize: 2,
    });
    // Still listing after 5 s, the scan is stopped.
    const within = (work: (signal: AbortSignal) => Promise<unknown>) => {
      const signal = AbortSignal.timeout(5_000);
      return work(signal).then(
        () => "scanned",
        (error: Error) => (signal.aborted ? "still listing" : error.message),
      );
    };
    expect(await within((signal) => scan.scanSince(0, signal))).toMatch(
      /listed 2 entries again below \w+/,
    );
    expect(asked).toBe(3);
    listed.length = 0;
    expect(await within((signal) => scan.scanNew(signal))).toMatch(
      /listed 2 entries again below \w+/,
    );
  });

  it("runs in serve's rounds beside the credit vaults' read, not behind it", async () => {
    const c = await h.scenario();
    const plan = await streamPaidTwice(c);
    // The credit vault's listing hangs (a first read of a long history, a slow node).
    let release = () => {};
    const hanging = new Promise<void>((resolve) => {
      release = resolve;
    });
    const rpc: typeof h.rpc = Object.create(h.rpc);
    rpc.getSignaturesForAddress = async (address, options) => {
      if (address === plan.vault) await hanging;
      return h.rpc.getSignaturesForAddress(address, options);
    };
    const reader = createLedgerReader({
      store: c.store,
      rpc,
      profile: c.profile,
      log,
      custody: { vaults: [plan.vault], byKey: {} },
      options: { intervalMs: 50 },
    });
    reader.start();
    try {
      await expect
        .poll(async () => (await readJob(c.store, plan.jobId))?.conflictSignatures?.length ?? 0, {
          timeout: 5_000,
        })
        .toBe(1);
    } finally {
      release();
      await reader.stop();
    }
  });

  it("covers only the lowest finalized slot of the pool's endpoints: the listing may come from one behind", async () => {
    const c = await h.scenario();
    const finalized = await h.rpc.getSlot("finalized");
    // One endpoint tells a slot far ahead (its listing may fail, and another's serve the page).
    const rpc: typeof h.rpc = Object.create(h.rpc);
    rpc.finalizedSlots = async () => ({
      slots: new Map([
        ["ahead", finalized + 500],
        ["behind", finalized - 7],
      ]),
      unanswered: ["down"],
    });
    const scan = createEscrowScanner({ store: c.store, rpc, profile: localnetProfile, log });
    expect((await scan.scanNew()).covered).toBe(finalized - 7);
    // A pool that can tell none: the finalized slot as the pool answers it.
    rpc.finalizedSlots = async () => ({ slots: new Map(), unanswered: ["a", "b"] });
    const next = (await scan.scanNew()).covered!;
    expect(next).toBeGreaterThanOrEqual(finalized);
  });

  it("runs at its pace (a second by default) while a verdict waits for it, and back at its interval once a scan fails", async () => {
    const c = await h.scenario();
    let listings = 0;
    let failing = false;
    const rpc: typeof h.rpc = Object.create(h.rpc);
    rpc.getSignaturesForAddress = async (address, options) => {
      if (address === localnetProfile.escrowVault) {
        listings++;
        if (failing) throw new Error("listing refused");
      }
      return h.rpc.getSignaturesForAddress(address, options);
    };
    const covered: number[] = [];
    const reader = createLedgerReader({
      store: c.store,
      rpc,
      profile: c.profile,
      log,
      // A quarter of the default pace: the scans below come four times as fast.
      options: { intervalMs: 60_000, escrowCoverPaceMs: 250 },
      escrowCover: {
        wanted: () => true,
        covered: async (slot) => {
          covered.push(slot);
        },
      },
    });
    reader.start();
    try {
      await expect.poll(() => covered.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
      failing = true;
      const before = listings;
      // Five paces: a scan kept at the pace would list four times more.
      await new Promise((r) => setTimeout(r, 1_250));
      // The failed one, then nothing until its interval (a minute) is up.
      expect(listings - before).toBeLessThanOrEqual(2);
    } finally {
      await reader.stop();
    }
  });

  it("holds a verdict of a verifier beside another process's running scan (a nightly beside serve) until that scan reads past the job", async () => {
    const c = await h.scenario();
    // serve's scan has run, before the job's transactions: it is live, and covers none of them.
    const scan = scanner(c);
    await scan.scanNew();
    const plan = await streamPaidTwice(c);
    const verifier = () =>
      coverVerifier(c, { vault: escrowVault, liveWithinMs: 120_000, recheckMs: 50 });
    const held = await verifier().runUntilSettled({}, { timeoutMs: 1_500 });
    expect(held.status).toBe("timed_out");
    expect((await readJob(c.store, plan.jobId))?.verdict).toBe("awaiting_finality");
    // serve's next scan covers it and keeps the second payout: judged on it, never verified.
    expect((await scan.scanNew()).kept).toEqual([plan.jobId]);
    expect((await verifier().runUntilSettled({}, { timeoutMs: 20_000 })).status).toBe("completed");
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
  });

  it("does not hold a verifier's verdicts for another process's scan that no longer runs", async () => {
    const c = await h.scenario();
    await scanner(c).scanNew();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    await recordStreamed(c, plan, escrowTx, settlementTx);
    await h.finalized();
    await new Promise((r) => setTimeout(r, 300));
    const verifier = coverVerifier(c, { vault: escrowVault, liveWithinMs: 200, recheckMs: 50 });
    expect((await verifier.runUntilSettled({}, { timeoutMs: 20_000 })).status).toBe("completed");
    expect(await c.outcome(plan.jobId)).toEqual(verified);
  });

  it("holds a clean verdict for the ledger's read of the vault the key's first lock teaches, pinning it so the ledger reads it", async () => {
    const c = await h.scenario();
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    await c.flush();
    await h.finalized();
    await new Promise((r) => setTimeout(r, 300));
    // The escrow scan has read past the job: what is left to wait for is the ledger.
    expect((await scanner(c).scanNew()).kept).toEqual([]);
    const gate = createEscrowCoverGate();
    const verifier = coverVerifier(c, { vault: escrowVault, gate });
    expect((await verifier.runUntilSettled({}, { timeoutMs: 1_500 })).status).toBe("timed_out");
    expect((await readJob(c.store, plan.jobId))?.verdict).toBe("awaiting_finality");
    // Not judged yet, its vault is pinned all the same: the ledger reads pinned vaults only.
    const ledger = createLedgerStore(c.store);
    expect(await ledger.pinnedVaults()).toContain(plan.vault);
    const reader = createLedgerReader({ store: c.store, rpc: h.rpc, profile: c.profile, log });
    await reader.syncAll();
    await verifier.lookAgain(gate.ledgerRead([plan.vault]));
    expect((await verifier.runUntilSettled({}, { timeoutMs: 20_000 })).status).toBe("completed");
    expect(await c.outcome(plan.jobId)).toEqual(verified);
  });

  it("is run by the nightly over its window: the run judges the job on a second payout made before the window began, and exits 1", async () => {
    const c = await h.scenario();
    const plan = streamedWholeLock();
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const first = h.op.send(h.op.settleIxs(plan)).signature;
    const second = h.op.send(h.op.settleIxs(plan)).signature;
    // Paid out twice, then answered in the next window: the job is that window's.
    const from = await chainSecondAfter(h.world, 200);
    c.recordOnChainClock();
    await recordStreamed(c, plan, escrowTx, first);
    await c.flush();
    const to = Math.ceil((h.op.now() + 1) / 1000) * 1000;
    await new Promise((r) => setTimeout(r, Math.max(0, to - Date.now() + 50)));
    await h.finalized();
    const custody = { vaults: [plan.vault], byKey: {} };
    const reader = createLedgerReader({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log,
      custody,
    });
    const run = await runNightlyVerification(
      c.store,
      createVerifier({
        store: c.store,
        rpc: h.rpc,
        profile: c.profile,
        log,
        custody,
        options: quickVerifierOptions,
      }),
      {
        from,
        to,
        timeoutMs: 20_000,
        preflight: () => h.rpc.getSlot("finalized"),
        ledger: ledgerWindowCheck({ store: c.store, reader, profile: c.profile, graceSeconds: 0 }),
      },
    );
    expect(run).toMatchObject({ outcome: "discrepancies", exitCode: 1 });
    expect(run.byVerdict.discrepancy).toBe(1);
    expect(run.ledger?.incomplete).toBeNull();
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([second]);
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("settlement.single"));
  });
});
