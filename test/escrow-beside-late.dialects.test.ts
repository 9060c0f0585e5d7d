import { describe, expect, it } from "vitest";
import {
  createEscrowScanner,
  ESCROW_PENDING_MS,
  judgeNamedBeside,
} from "../src/ledger/escrow-scan.js";
import { createLogger } from "../src/log.js";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { besideAtClaim, ESCROW_UNCLOSED_WAIT_MS } from "../src/store/ledger-rules.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { chainTruth, moneyOf } from "./support/chain-truth.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { periodEdge } from "./support/ledger-periods.js";
import { nightlyAfter, nightlyOver, nightStart } from "./support/nightly-window.js";
import { discrepancy, type Scenario, useAdversaryHarness, verified } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";
import { rewritingNode } from "./support/rewriting-node.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * Job A's own settlement pays job B's worker a second time out of escrow, B's settle memo
 * written by a program's call (no listing names B). The verifier reading A's settlement holds it
 * for B while B is not recorded (`escrow_pending`), and that hold went an hour after the read:
 * an operator holding B's answer (or a customer importing B's receipt) more than an hour later,
 * or no escrow scan within that hour (a nightly `verify` alone), had B `verified` on its one
 * named payout. A hold from a recorded job's own step is kept until B is recorded, and B is
 * judged on it then, by whichever comes first: its claim, `serve`'s scan, a nightly run.
 */

const log = createLogger({ level: "silent" });
const escrowVault = localnetProfile.escrowVault!;
const late = ESCROW_PENDING_MS + 60_000;

describe("a claim's look at an entry another recorded job's step holds for the job", () => {
  const job = {
    escrowTx: "lockB",
    settlementTx: null,
    apiEscrowTx: null,
    apiSettlementTx: null,
    conflictSignatures: null,
  };
  const now = 10_000_000_000;
  const held = { signature: "settleA", blockTime: now / 1000 - 5, listedAt: now - 1_000 };

  it("keeps it once the job names a closing step, or has one kept", () => {
    expect(besideAtClaim({ ...job, settlementTx: "settleB" }, held, now)).toBe("keep");
    expect(besideAtClaim({ ...job, apiSettlementTx: "settleB" }, held, now)).toBe("keep");
    expect(besideAtClaim({ ...job, conflictSignatures: ["other"] }, held, now)).toBe("keep");
  });

  it("lets it go when the job names it (kept with neither, as the scan does)", () => {
    expect(besideAtClaim({ ...job, settlementTx: "settleA" }, held, now)).toBe("release");
    expect(besideAtClaim({ ...job, conflictSignatures: ["settleA"] }, held, now)).toBe("release");
  });

  it("waits while the job names no closing step and the step is younger than the wait, then keeps it", () => {
    expect(besideAtClaim(job, held, now)).toBe("wait");
    expect(besideAtClaim(job, held, now + ESCROW_UNCLOSED_WAIT_MS)).toBe("keep");
    // No block time: from when it was held.
    const undated = { ...held, blockTime: null };
    expect(besideAtClaim(job, undated, now)).toBe("wait");
    expect(besideAtClaim(job, undated, now + ESCROW_UNCLOSED_WAIT_MS)).toBe("keep");
  });
});

describe.each(dialects)(
  "a second payout of a job inside another's step, the job recorded past the hour, on %s",
  (dialect) => {
    const stores = useDialectStores(dialect);
    const h = useAdversaryHarness({ openStore: () => stores.open() });

    /** An escrow scan whose clock is `ahead` ms past the machine's (serve's, an hour on). */
    const scanner = (c: Scenario, ahead: number, rpc = h.rpc) =>
      createEscrowScanner({
        store: c.store,
        rpc,
        profile: localnetProfile,
        log,
        pageSize: 50,
        now: () => Date.now() + ahead,
      });

    /** The reconciliation report's money from `from`, but fees, and the chain's. */
    const moneyAndChain = async (c: Scenario, from: number, signatures: string[]) => {
      const r = await reconciliationReport(c.store, {
        from,
        to: h.op.now() + 3_600_000,
        groupBy: "key",
      });
      const { feesLamports: _, ...money } = moneyOf(r.totals);
      const { feesLamports: __, ...moved } = chainTruth(h.op, signatures);
      return { money, moved };
    };

    /** Whether `jobId` has an escrow entry held (its clean verdict would wait for the scan). */
    const heldFor = async (c: Scenario, jobId: string) =>
      (await createLedgerStore(c.store).escrowCoverage(escrowVault, [jobId])).pending.has(jobId);

    /**
     * Keys 1 and 2 pinned, then A and B locked and settled, A's settlement paying B again under
     * B's memo written by a call (or, `topLevel`, at top level, the scan listing it under B's memo
     * first); A recorded and judged (B not), then a scan an hour and a minute later: the hour that
     * dropped B's entry before.
     */
    async function heldPastTheHour(c: Scenario, topLevel = false) {
      await c.pinKey(1);
      await c.pinKey(2);
      const from = periodEdge(h);
      const s = c.paidInsideAnother((text) => (topLevel ? h.op.memo(text) : h.op.memoByCall(text)));
      c.recordWithJobsApi(s.a, { escrowTx: s.lockA, settlementTx: s.settleA });
      await h.finalized();
      if (topLevel) {
        // The listing names B: the scan holds its entry, as any listed one, before the verifier.
        await c.flush();
        expect((await scanner(c, 0).scanNew()).kept).toEqual([]);
        expect(await heldFor(c, s.b.jobId)).toBe(true);
      }
      expect(await c.verdicts(s.a.jobId)).toEqual([discrepancy("settlement.memo")]);
      expect(await heldFor(c, s.b.jobId)).toBe(true);
      expect((await scanner(c, late).scanNew()).kept).toEqual([]);
      return { s, from };
    }

    it("is kept with the job when the verifier claims it first, and the report counts every unit once", async () => {
      const c = (await h.scenario()).recordOnChainClock();
      const { s, from } = await heldPastTheHour(c);
      c.recordWithJobsApi(s.b, { escrowTx: s.lockB, settlementTx: s.settleB });
      expect(await c.verdicts(s.b.jobId)).toEqual([discrepancy("settlement.single")]);
      expect((await readJob(c.store, s.b.jobId))?.conflictSignatures).toEqual([s.settleA]);
      expect(await heldFor(c, s.b.jobId)).toBe(false);
      const { money, moved } = await moneyAndChain(c, from, s.signatures);
      expect(money).toEqual(moved);
    });

    it("is kept with the job, B's memo at top level and its entry held by the scan before the verifier's hold", async () => {
      const c = (await h.scenario()).recordOnChainClock();
      const { s, from } = await heldPastTheHour(c, true);
      c.recordWithJobsApi(s.b, { escrowTx: s.lockB, settlementTx: s.settleB });
      expect(await c.verdicts(s.b.jobId)).toEqual([discrepancy("settlement.single")]);
      expect((await readJob(c.store, s.b.jobId))?.conflictSignatures).toEqual([s.settleA]);
      const { money, moved } = await moneyAndChain(c, from, s.signatures);
      expect(money).toEqual(moved);
    });

    // The scan's pending pages leave out the rows a recorded job's own step holds: walked with
    // the rest, made-up memos in an operator's own settlements (any number of them) cost every
    // round. The job's claim judges them, found by the job's id.
    it("is left by serve's scan, there first, to the job's claim, which keeps it with the job", async () => {
      const c = (await h.scenario()).recordOnChainClock();
      const { s, from } = await heldPastTheHour(c);
      c.recordWithJobsApi(s.b, { escrowTx: s.lockB, settlementTx: s.settleB });
      await c.flush();
      expect(await scanner(c, late + 60_000).scanNew()).toMatchObject({ kept: [], unread: null });
      expect(await heldFor(c, s.b.jobId)).toBe(true);
      expect(await c.verdicts(s.b.jobId)).toEqual([discrepancy("settlement.single")]);
      expect(await heldFor(c, s.b.jobId)).toBe(false);
      const { money, moved } = await moneyAndChain(c, from, s.signatures);
      expect(money).toEqual(moved);
    });

    it("is kept as the verifier read it, serve's scan there first with an endpoint serving it without its inner instructions (where the job's memo is)", async () => {
      const c = (await h.scenario()).recordOnChainClock();
      const { s } = await heldPastTheHour(c);
      const withoutInner = rewritingNode(h.rpc, (signature) =>
        signature === s.settleA
          ? (result: { meta: { innerInstructions?: unknown } }) => {
              delete result.meta.innerInstructions;
            }
          : undefined,
      );
      c.recordWithJobsApi(s.b, { escrowTx: s.lockB, settlementTx: s.settleB });
      await c.flush();
      expect(await scanner(c, late + 60_000, withoutInner).scanNew()).toMatchObject({
        kept: [],
        unread: null,
      });
      expect(await heldFor(c, s.b.jobId)).toBe(true);
      expect(await c.verdicts(s.b.jobId)).toEqual([discrepancy("settlement.single")]);
    });

    it("is kept with a job recorded, and judged, while the hold was being written", async () => {
      const c = (await h.scenario()).recordOnChainClock();
      const s = c.paidInsideAnother((text) => h.op.memoByCall(text));
      await h.finalized();
      const facts = (await h.rpc.getTransaction(s.settleA, "finalized"))!.facts;
      const ledger = createLedgerStore(c.store);
      // B recorded and judged (verified: nothing held for it yet) after the verifier found B
      // not recorded, before its hold is written: B's claim came before the hold was there.
      let judgedB: unknown = null;
      const racing: typeof ledger = Object.create(ledger);
      racing.keepEscrowSteps = async (...args) => {
        if (judgedB === null && args[1].hold.length > 0) {
          c.recordWithJobsApi(s.b, { escrowTx: s.lockB, settlementTx: s.settleB });
          await c.flush();
          await c
            .verifierOver(h.rpc)
            .runUntilSettled({ jobIds: [s.b.jobId] }, { timeoutMs: 20_000 });
          judgedB = await c.outcome(s.b.jobId);
        }
        return ledger.keepEscrowSteps(...args);
      };
      const step = { job: s.a.jobId, signature: s.settleA, facts };
      const found = await judgeNamedBeside(
        racing,
        localnetProfile,
        escrowVault,
        [step],
        Date.now(),
      );
      expect(judgedB).toEqual(verified);
      expect(found).toEqual({ kept: [{ job: s.b.jobId, signature: s.settleA }], held: [] });
      await c.verifierOver(h.rpc).runUntilSettled({ jobIds: [s.b.jobId] }, { timeoutMs: 20_000 });
      expect(await c.outcome(s.b.jobId)).toEqual(discrepancy("settlement.single"));
      expect(await heldFor(c, s.b.jobId)).toBe(false);
    });

    it("is kept with a job naming no closing step at the look, answered and judged while the hold was being written", async () => {
      const c = (await h.scenario()).recordOnChainClock();
      const s = c.paidInsideAnother((text) => h.op.memoByCall(text));
      // B a stream whose jobs API answer has not come: no closing step named yet.
      c.record(s.b, { escrowTx: s.lockB, settlementTx: null }, { stream: true });
      await c.flush();
      await h.finalized();
      const facts = (await h.rpc.getTransaction(s.settleA, "finalized"))!.facts;
      const ledger = createLedgerStore(c.store);
      // B's answer comes, and B is judged (verified: nothing held for it yet), after the
      // verifier found B naming no closing step, before its hold is written.
      let judgedB: unknown = null;
      const racing: typeof ledger = Object.create(ledger);
      racing.keepEscrowSteps = async (...args) => {
        if (judgedB === null && args[1].hold.length > 0) {
          c.honestJobsApi(s.b, { escrowTx: s.lockB, settlementTx: s.settleB });
          await c.flush();
          await c
            .verifierOver(h.rpc)
            .runUntilSettled({ jobIds: [s.b.jobId] }, { timeoutMs: 20_000 });
          judgedB = await c.outcome(s.b.jobId);
        }
        return ledger.keepEscrowSteps(...args);
      };
      const step = { job: s.a.jobId, signature: s.settleA, facts };
      const found = await judgeNamedBeside(
        racing,
        localnetProfile,
        escrowVault,
        [step],
        Date.now(),
      );
      expect(judgedB).toEqual(verified);
      expect(found).toEqual({ kept: [{ job: s.b.jobId, signature: s.settleA }], held: [] });
      // The verifier alone (no scan) judges B again on it.
      await c.verifierOver(h.rpc).runUntilSettled({ jobIds: [s.b.jobId] }, { timeoutMs: 20_000 });
      expect(await c.outcome(s.b.jobId)).toEqual(discrepancy("settlement.single"));
      expect(await heldFor(c, s.b.jobId)).toBe(false);
    });

    it("of a job naming no closing step is left by serve's scan past the wait, and kept by the job's claim then", async () => {
      const c = (await h.scenario()).recordOnChainClock();
      const s = c.paidInsideAnother((text) => h.op.memoByCall(text));
      // B a stream whose jobs API answer never comes: no closing step named.
      c.record(s.b, { escrowTx: s.lockB, settlementTx: null }, { stream: true });
      await c.flush();
      await h.finalized();
      // serve's scan lists A's settlement first: B names no closing step, its entry is held.
      expect((await scanner(c, 0).scanNew()).kept).toEqual([]);
      const facts = (await h.rpc.getTransaction(s.settleA, "finalized"))!.facts;
      const step = { job: s.a.jobId, signature: s.settleA, facts };
      const ledger = createLedgerStore(c.store);
      expect(
        await judgeNamedBeside(ledger, localnetProfile, escrowVault, [step], Date.now()),
      ).toEqual({ kept: [], held: [{ job: s.b.jobId, signature: s.settleA }] });
      // Past the wait the scan keeps B's own settlement (listed under its memo) with B, as the
      // closing found on chain; A's, held by A's step, it kept too before. Its pending pages now
      // leave out the rows a recorded job's step holds: B's claim (looked at again after each
      // scan) keeps it.
      const past = ESCROW_UNCLOSED_WAIT_MS + 60_000;
      expect(await scanner(c, past).scanNew()).toMatchObject({ kept: [s.b.jobId], unread: null });
      expect((await readJob(c.store, s.b.jobId))?.conflictSignatures).toEqual([s.settleB]);
      expect(await heldFor(c, s.b.jobId)).toBe(true);
      await createVerifier({
        store: c.store,
        rpc: h.rpc,
        profile: localnetProfile,
        log,
        options: quickVerifierOptions,
        now: () => Date.now() + past,
      }).runUntilSettled({ jobIds: [s.b.jobId] }, { timeoutMs: 3_000 });
      expect((await readJob(c.store, s.b.jobId))?.conflictSignatures).toEqual([
        s.settleB,
        s.settleA,
      ]);
      expect(await heldFor(c, s.b.jobId)).toBe(false);
    });

    it("let go when the job's receipt names the other job's settlement as its own: the job fails settlement.memo", async () => {
      const c = (await h.scenario()).recordOnChainClock();
      const { s } = await heldPastTheHour(c);
      // The operator's next move: B's receipt and answer name A's settlement, which pays B.
      c.recordWithJobsApi(s.b, { escrowTx: s.lockB, settlementTx: s.settleA });
      expect(await c.verdicts(s.b.jobId)).toEqual([discrepancy("settlement.memo")]);
      expect(await heldFor(c, s.b.jobId)).toBe(false);
      expect((await readJob(c.store, s.b.jobId))?.conflictSignatures ?? null).toBeNull();
    });

    it("with a nightly verify alone: the run of a later window judges the job paid again, recorded in a later window, on the payout inside the other's settlement", async () => {
      const c = (await h.scenario()).recordOnChainClock();
      await c.pinKey(1);
      await c.pinKey(2);
      const vaults = [h.op.vault(1), h.op.vault(2)];
      const from = await nightStart(h, c);
      const s = c.paidInsideAnother((text) => h.op.memoByCall(text));
      c.recordWithJobsApi(s.a, { escrowTx: s.lockA, settlementTx: s.settleA });
      await c.flush();
      const to = Math.ceil((h.op.now() + 1) / 1000) * 1000;
      const first = await nightlyAfter(h, c, { vaults, from, to });
      expect(first).toMatchObject({ exitCode: 1 });
      expect(await c.outcome(s.a.jobId)).toEqual(discrepancy("settlement.memo"));
      // The night's run again, an hour and a minute on: its escrow scans dropped B's entry before.
      const again = await nightlyOver(h, c, { vaults, from, to, now: () => h.op.now() + late });
      expect(again).toMatchObject({ exitCode: 1 });
      // B recorded in a later window, and judged by that window's run.
      const from2 = await nightStart(h, c);
      c.recordWithJobsApi(s.b, { escrowTx: s.lockB, settlementTx: s.settleB });
      await c.flush();
      const to2 = Math.ceil((h.op.now() + 1) / 1000) * 1000;
      expect(await nightlyAfter(h, c, { vaults, from: from2, to: to2 })).toMatchObject({
        outcome: "discrepancies",
        exitCode: 1,
      });
      expect(await c.outcome(s.b.jobId)).toEqual(discrepancy("settlement.single"));
      expect((await readJob(c.store, s.b.jobId))?.conflictSignatures).toEqual([s.settleA]);
      const { money, moved } = await moneyAndChain(c, from, s.signatures);
      expect(money).toEqual(moved);
    });
  },
);
