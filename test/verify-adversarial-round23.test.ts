import { describe, expect, it } from "vitest";
import { unionOfListings } from "../src/chain/quorum.js";
import { createEscrowScanner } from "../src/ledger/escrow-scan.js";
import { createLogger } from "../src/log.js";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { chainTruth, moneyOf } from "./support/chain-truth.js";
import { periodEdge } from "./support/ledger-periods.js";
import { discrepancy, type Scenario, useAdversaryHarness, verified } from "./support/operator.js";
import { rewritingNode, withholdingNode } from "./support/rewriting-node.js";
import { readJob } from "./support/seed-recorder.js";

/**
 * Round 23. A payout out of escrow whose job memo a program writes by a call of its own (an
 * inner instruction) is in no node's signature listing under that memo: the listing names
 * top-level memos only. The escrow scan fetched only the entries whose listed memo names a
 * recorded job, so a streamed job paid out a second time so stayed `verified`, though the
 * verifier reads an inner memo as the job's as soon as anything names the transaction.
 */

const h = useAdversaryHarness();

const scanner = (c: Scenario, rpc = h.rpc) =>
  createEscrowScanner({
    store: c.store,
    rpc,
    profile: localnetProfile,
    log: createLogger({ level: "silent" }),
    pageSize: 50,
  });

describe("a second payout of a streamed job whose settle memo a program writes by a call", () => {
  it.each([
    ["no memo of its own", null],
    ["a memo of its own naming no job", "decentral:payout"],
  ])(
    "is kept by the escrow scan, with %s at top level, and the job fails settlement.single",
    async (_what, topLevel) => {
      const c = await h.scenario();
      const { plan, second } = c.streamedPaidTwice((p) => [
        h.op.memoByCall(`decentral:settle:${p.jobId}`),
        ...(topLevel === null ? [] : [h.op.memo(topLevel)]),
      ]);
      await h.finalized();
      // The listing names no job's memo for it: the memo is the program's call.
      const listed = await h.rpc.getSignaturesForAddress(h.op.accounts.escrowVault, { limit: 10 });
      const entry = listed.find((e) => e.signature === second);
      expect(entry?.memo ?? null).toBe(
        topLevel === null ? null : `[${topLevel.length}] ${topLevel}`,
      );
      expect(await c.verdicts(plan.jobId)).toEqual([verified]);

      const scanned = await scanner(c).scanNew();
      expect(scanned.kept).toEqual([plan.jobId]);
      expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([second]);
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
    },
  );
});

describe("a second payout listed under another recorded job's memo, the paid job's memo written by a call", () => {
  it("is kept with both jobs its memos name, and both fail settlement.single", async () => {
    const c = await h.scenario();
    const other = h.op.plan({ keyIndex: 1 });
    c.recordWithJobsApi(other, h.op.honestJob(other));
    const { plan, second } = c.streamedPaidTwice((p) => [
      h.op.memoByCall(`decentral:settle:${p.jobId}`),
      h.op.memo(`decentral:settle:${other.jobId}`),
    ]);
    await h.finalized();
    expect(await c.verdicts(other.jobId, plan.jobId)).toEqual([verified, verified]);

    const scanned = await scanner(c).scanNew();
    expect([...scanned.kept].sort()).toEqual([other.jobId, plan.jobId].sort());
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([second]);
    expect(await c.verdicts(other.jobId, plan.jobId)).toEqual([
      discrepancy("settlement.single"),
      discrepancy("settlement.single"),
    ]);
  });

  it("held for that job until it is recorded, is kept with both jobs then", async () => {
    const c = await h.scenario();
    const other = h.op.plan({ keyIndex: 1 });
    const otherTxs = h.op.honestJob(other);
    const { plan } = c.streamedPaidTwice((p) => [
      h.op.memoByCall(`decentral:settle:${p.jobId}`),
      h.op.memo(`decentral:settle:${other.jobId}`),
    ]);
    await h.finalized();
    const scan = scanner(c);
    expect((await scan.scanNew()).kept).toEqual([]);
    c.recordWithJobsApi(other, otherTxs);
    await c.flush();
    expect([...(await scan.scanNew()).kept].sort()).toEqual([other.jobId, plan.jobId].sort());
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
  });
});

describe("a second payout whose memo a call wrote, one endpoint of a quorum listing a made-up job's memo for it", () => {
  it("is read all the same (the endpoints disputed its memo), and the job fails settlement.single", async () => {
    const c = await h.scenario();
    const { plan, second } = c.streamedPaidTwice((p) => [
      h.op.memoByCall(`decentral:settle:${p.jobId}`),
    ]);
    await h.finalized();
    const text = "decentral:settle:job_madeupmadeupmadeup00";
    const madeUp = `[${text.length}] ${text}`;
    // The union of an honest endpoint's listing and a liar's, as RPC_QUORUM reads them.
    const quorum: typeof h.rpc = Object.create(h.rpc);
    quorum.getSignaturesForAddress = async (...args) => {
      const honest = await h.rpc.getSignaturesForAddress(...args);
      const lying = honest.map((e) => (e.signature === second ? { ...e, memo: madeUp } : e));
      return unionOfListings([lying, honest]);
    };
    expect(await scanner(c, quorum).scanNew()).toMatchObject({ kept: [plan.jobId] });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
  });
});

/** A node serving the transactions of `held` with no inner instructions, while they are in it. */
const withoutInner = (held: ReadonlySet<string>) =>
  rewritingNode(h.rpc, (signature) =>
    held.has(signature)
      ? (result: { meta: { innerInstructions?: unknown } }) => {
          delete result.meta.innerInstructions;
        }
      : undefined,
  );

describe("an entry whose listing names no job, not served whole", () => {
  it.each([
    ["by no endpoint", (held: ReadonlySet<string>) => withholdingNode(h.rpc, held), /was not read/],
    ["without its inner instructions", withoutInner, /without its inner instructions/],
  ])(
    "fails the scan while served %s, and is kept with the job its call's memo names once served whole",
    async (_how, node, why) => {
      const c = await h.scenario();
      const { plan, second } = c.streamedPaidTwice((p) => [
        h.op.memoByCall(`decentral:settle:${p.jobId}`),
      ]);
      await h.finalized();
      const held = new Set([second]);
      const scan = scanner(c, node(held));
      // Passed by unread, it could be a second payout of any job: the scan does not complete.
      await expect(scan.scanNew()).rejects.toThrow(why);
      held.clear();
      expect(await scan.scanNew()).toMatchObject({ kept: [plan.jobId], unread: null });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
    },
  );

  it("costs the next scan a fetch of that entry again, not of every entry beside it read already", async () => {
    const c = await h.scenario();
    const escrow = h.op.accounts.escrowVault;
    const wallet = h.op.attackerAccount(40n);
    const deposits = Array.from(
      { length: 30 },
      () =>
        h.op.send([h.op.transfer(wallet, escrow, 1n, { authority: h.op.attacker.address })])
          .signature,
    );
    await h.finalized();
    const held = new Set([deposits[0]!]);
    const fetched: string[] = [];
    const node: typeof h.rpc = Object.create(withholdingNode(h.rpc, held));
    const withheld = node.getTransaction.bind(node);
    node.getTransaction = (signature, ...rest) => {
      fetched.push(signature);
      return withheld(signature, ...rest);
    };
    const scan = scanner(c, node);
    for (let i = 0; i < 3; i++) await expect(scan.scanNew()).rejects.toThrow(/was not read/);
    held.clear();
    expect(await scan.scanNew()).toMatchObject({ kept: [], unread: null });
    // Each deposit read once, the one not served once a scan: a page of them read again every
    // scan while one was not served never completed on a node failing one fetch in a hundred.
    const others = new Set(deposits.slice(1));
    expect(fetched.filter((s) => others.has(s)).sort()).toEqual(deposits.slice(1).sort());
    expect(fetched.filter((s) => s === deposits[0])).toHaveLength(4);
  });
});

/**
 * The scan does not fetch an entry the job its listing names names itself (its own step): a
 * second payout of another job made inside it, under that job's memo written by a call, no
 * listing names. The verifier, reading the step for the job naming it, keeps it with every
 * other recorded job its memos name, as the scan keeps a transaction it reads.
 */
describe("a settlement that pays another job's worker again under that job's memo", () => {
  /** A and B settled, A's settlement paying B's worker again; the report's period from before. */
  const paidInsideA = async (c: Scenario, memoOfB: "by a call" | "at top level") => {
    await c.pinKey(1);
    await c.pinKey(2);
    const from = periodEdge(h);
    const paid = c.paidInsideAnother((text) =>
      memoOfB === "by a call" ? h.op.memoByCall(text) : h.op.memo(text),
    );
    return { from, ...paid };
  };

  /** The reconciliation report's money of the period from `from`, but fees, and the chain's. */
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

  it.each(["by a call", "at top level"] as const)(
    "written %s: the job paid again keeps the settlement and fails settlement.single, and the report counts every unit once",
    async (memoOfB) => {
      const c = (await h.scenario()).recordOnChainClock();
      const s = await paidInsideA(c, memoOfB);
      await c.expectPaidInsideKept(s);
      const { money, moved } = await moneyAndChain(c, s.from, s.signatures);
      expect(money).toEqual(moved);
    },
  );

  it("with the job paid again recorded later, the settlement is held for it, and the job's claim keeps it then (the scan leaves it)", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const s = await paidInsideA(c, "by a call");
    c.recordWithJobsApi(s.a, { escrowTx: s.lockA, settlementTx: s.settleA });
    await h.finalized();
    expect(await c.verdicts(s.a.jobId)).toEqual([discrepancy("settlement.memo")]);
    const scan = scanner(c);
    expect((await scan.scanNew()).kept).toEqual([]);
    c.recordWithJobsApi(s.b, { escrowTx: s.lockB, settlementTx: s.settleB });
    await c.flush();
    // The hold is marked with A, whose step it is: the scan's rounds leave it to B's claim.
    expect(await scan.scanNew()).toMatchObject({ kept: [], unread: null });
    expect(await c.verdicts(s.b.jobId)).toEqual([discrepancy("settlement.single")]);
    expect((await readJob(c.store, s.b.jobId))?.conflictSignatures).toEqual([s.settleA]);
    const { money, moved } = await moneyAndChain(c, s.from, s.signatures);
    expect(money).toEqual(moved);
  });
});

describe("a settlement two jobs share and name, one recorded after the other was judged", () => {
  it("is held for the later job and let go by its claim once that job names it: kept with neither", async () => {
    const c = await h.scenario();
    const a = h.op.plan({ keyIndex: 1 });
    const b = h.op.plan({ keyIndex: 2 });
    const txs = h.op.sharedSettlement(a, b);
    c.record(a, { escrowTx: txs.escrowA, settlementTx: txs.shared });
    await h.finalized();
    // Two jobs' memos in one settlement fail settlement.memo on the local profile, no more.
    expect(await c.verdicts(a.jobId)).toEqual([discrepancy("settlement.memo")]);
    const vault = h.op.accounts.escrowVault;
    const ledger = createLedgerStore(c.store);
    expect((await ledger.escrowCoverage(vault, [b.jobId])).pending).toEqual(new Set([b.jobId]));
    c.record(b, { escrowTx: txs.escrowB, settlementTx: txs.shared });
    await c.flush();
    // Held by A's own step (marked): the scan leaves it, B's claim lets it go.
    expect(await scanner(c).scanNew()).toMatchObject({ kept: [], unread: null });
    expect(await c.verdicts(a.jobId, b.jobId)).toEqual([
      discrepancy("settlement.memo"),
      discrepancy("settlement.memo"),
    ]);
    expect((await ledger.escrowCoverage(vault, [b.jobId])).pending.size).toBe(0);
    expect((await readJob(c.store, b.jobId))?.conflictSignatures ?? null).toBeNull();
  });
});
