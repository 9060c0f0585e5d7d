import { beforeAll, describe, expect, it } from "vitest";
import {
  type GroupBy,
  groupByValues,
  type ReconciliationFigures,
  reconciliationReport,
  reconciliationToCsv,
  reconciliationToJson,
} from "../src/reports/reconciliation.js";
import { reportsStore } from "../src/store/reports.js";
import { moneyOf as chainMoneyOf, chainTruth } from "./support/chain-truth.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { type JobPlan, type Scenario, useAdversaryHarness } from "./support/operator.js";

/**
 * Report totals must count each on-chain movement once, whatever the receipts say: several
 * receipts replaying one escrow and settlement, a replay through the jobs API's escrow field,
 * and one settlement whose memos name two jobs. The truth is computed from the chain itself
 * (token balance changes and fees of the distinct transactions the receipts name), never from
 * the receipts.
 */

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });
  let c: Scenario;
  const hour = 3_600_000;
  let from: number;
  let to: number;

  /** Signatures of jobs that must verify, and of jobs that must not (the disputed money). */
  const verifiedSigs = new Set<string>();
  const disputedSigs = new Set<string>();
  const jobIds = { verified: [] as string[], disputed: [] as string[] };
  const workersUsed = new Set<string>();

  beforeAll(async () => {
    from = Date.now() - hour;
    c = await h.scenario();
    const op = h.op;
    const honest = (plan: JobPlan, extra: { refund?: boolean } = {}) => {
      const escrowTx = op.send(op.lockIxs(plan)).signature;
      const settlementTx = op.send(
        extra.refund ? op.refundIxs(plan) : op.settleIxs(plan),
      ).signature;
      verifiedSigs.add(escrowTx).add(settlementTx);
      jobIds.verified.push(plan.jobId);
      workersUsed.add(plan.worker.address);
      return { escrowTx, settlementTx };
    };

    const pin = await c.pinKey(1);
    jobIds.verified.push(pin.jobId);
    workersUsed.add(pin.worker.address);
    const pinRow = (await reportsStore(c.store).auditRows(pin.jobId))!.job;
    verifiedSigs.add(pinRow.escrowTx!).add(pinRow.settlementTx!);

    // Honest jobs: staked and unstaked workers, two models, a 504 refund.
    const h1 = op.plan({ keyIndex: 1 });
    const h1Txs = honest(h1);
    c.record(h1, h1Txs);
    const h2 = op.plan({ keyIndex: 1, model: "llama-3.3-70b", maxTokens: 800, workerIndex: 2 });
    const h2Txs = honest(h2);
    c.record(h2, h2Txs);
    const r = op.plan({ keyIndex: 1, completionTokens: null, workerIndex: 3 });
    const rTxs = honest(r, { refund: true });
    c.record(r, { escrowTx: rTxs.escrowTx, settlementTx: rTxs.settlementTx }, { httpStatus: 504 });

    // Two receipts replaying h1's escrow and settlement, one replaying h2's.
    for (const original of [h1Txs, h1Txs, h2Txs]) {
      const replay = op.plan({ keyIndex: 1, workerIndex: original === h2Txs ? 2 : 0 });
      c.record(replay, original);
      jobIds.disputed.push(replay.jobId);
    }

    // A replay of h1's escrow through the jobs API, with a settlement of its own that draws on
    // the escrow vault's float: that settlement moved money and counts once, as disputed.
    // Another model, so the lock left in escrow by the shared settlement and the float this
    // settlement draws on do not cancel out in `unaccounted`.
    const v = op.plan({ keyIndex: 1, model: "phi-4-mini" });
    const vSettlement = op.send(op.settleIxs(v)).signature;
    c.record(v, { escrowTx: null, settlementTx: vSettlement });
    c.jobsApi(v.jobId, {
      status: "settled",
      credits_charged: Number(v.charge / 10_000n),
      worker_address: v.worker.address,
      on_chain: { escrow_tx: h1Txs.escrowTx, settlement_tx: vSettlement },
    });
    disputedSigs.add(vSettlement);
    jobIds.disputed.push(v.jobId);

    // Two jobs with their own locks and one settlement naming both, paid once.
    const a = op.plan({ keyIndex: 1 });
    const b = op.plan({ keyIndex: 1 });
    const escrowA = op.send(op.lockIxs(a)).signature;
    const escrowB = op.send(op.lockIxs(b)).signature;
    const shared = op.send([
      ...op.payoutIxs(a),
      op.memo(`decentral:settle:${a.jobId}`),
      op.memo(`decentral:settle:${b.jobId}`),
    ]).signature;
    c.record(a, { escrowTx: escrowA, settlementTx: shared });
    c.record(b, { escrowTx: escrowB, settlementTx: shared });
    for (const sig of [escrowA, escrowB, shared]) disputedSigs.add(sig);
    jobIds.disputed.push(a.jobId, b.jobId);

    // A replay recorded and judged before the job it copies: the real receipt comes later,
    // and the replay judged alone must not keep the money it then no longer owns.
    const original = op.plan({ keyIndex: 1 });
    const originalTxs = honest(original);
    const early = op.plan({ keyIndex: 1 });
    c.record(early, originalTxs);
    jobIds.disputed.push(early.jobId);
    await c.verify();
    c.record(original, originalTxs);

    await c.verify();
    to = Date.now() + hour;
  });
  /** What the distinct transactions moved (`chainTruth`), with what escrow kept of it. */
  function truthOf(signatures: Iterable<string>, worker?: string) {
    const t = chainTruth(h.op, signatures, worker);
    const unaccountedUnits =
      t.escrowedUnits - t.workerPaidUnits - t.treasuryPaidUnits - t.refundedUnits;
    return { ...t, unaccountedUnits };
  }

  const moneyOf = (f: ReconciliationFigures | ReturnType<typeof truthOf>) => ({
    ...chainMoneyOf(f),
    unaccountedUnits: f.unaccountedUnits,
  });

  const report = (groupBy: GroupBy, worker?: string) =>
    reconciliationReport(c.store, { from, to, groupBy, worker });

  describe("reports over replayed and shared signatures", () => {
    it("ends the replays and the shared settlement in discrepancy and keeps the originals verified", async () => {
      const verdicts = async (ids: string[]) =>
        (await Promise.all(ids.map((id) => c.outcome(id)))).map((o) => o.verdict);
      expect(await verdicts(jobIds.verified)).toEqual(jobIds.verified.map(() => "verified"));
      expect(await verdicts(jobIds.disputed)).toEqual(jobIds.disputed.map(() => "discrepancy"));
    });

    it.each(groupByValues)(
      "totals grouped by %s equal what moved on chain, each movement once",
      async (groupBy) => {
        const truth = truthOf([...verifiedSigs, ...disputedSigs]);
        const r = await report(groupBy);
        expect(moneyOf(r.totals)).toEqual(truth);
        expect(r.totals).toMatchObject({
          jobs: jobIds.verified.length + jobIds.disputed.length,
          verified: jobIds.verified.length,
          discrepancies: jobIds.disputed.length,
          pending: 0,
        });
      },
    );

    it("writes the same totals in JSON and in the CSV total row", async () => {
      const r = await report("key");
      const truth = truthOf([...verifiedSigs, ...disputedSigs]);
      const json = reconciliationToJson(r).totals as Record<string, unknown>;
      const csv = reconciliationToCsv(r).trim().split("\r\n");
      const header = csv[0]!.split(",");
      const total = csv.at(-1)!.split(",");
      for (const [key, value] of Object.entries(truth)) {
        expect({ key, json: json[key], csv: total[header.indexOf(key)] }).toEqual({
          key,
          json: value.toString(),
          csv: value.toString(),
        });
      }
    });

    it("gives each worker's group and statement exactly what that worker received on chain", async () => {
      const byWorker = new Map((await report("worker")).groups.map((g) => [g.group, g]));
      for (const worker of workersUsed) {
        const truth = truthOf([...verifiedSigs, ...disputedSigs], worker);
        expect({ worker, paid: byWorker.get(worker)?.workerPaidUnits }).toEqual({
          worker,
          paid: truth.workerPaidUnits,
        });
        const statement = (await report("day", worker)).totals;
        expect({
          worker,
          workerPaidUnits: statement.workerPaidUnits,
          treasuryPaidUnits: statement.treasuryPaidUnits,
          chargedUnits: statement.chargedUnits,
        }).toEqual({
          worker,
          workerPaidUnits: truth.workerPaidUnits,
          treasuryPaidUnits: truth.treasuryPaidUnits,
          chargedUnits: truth.chargedUnits,
        });
      }
    });

    it("shows money on verified jobs apart from money on disputed jobs", async () => {
      const totals = (await report("day")).totals as unknown as Record<string, unknown>;
      const verified = truthOf(verifiedSigs);
      const disputed = truthOf(disputedSigs);
      const fields = [
        "EscrowedUnits",
        "ChargedUnits",
        "WorkerPaidUnits",
        "TreasuryPaidUnits",
        "RefundedUnits",
      ] as const;
      type Truth = ReturnType<typeof truthOf>;
      const pick = (t: Truth, f: (typeof fields)[number]) =>
        t[`${f[0]!.toLowerCase()}${f.slice(1)}` as keyof Truth];
      for (const f of fields) {
        expect({
          field: f,
          verified: totals[`verified${f}`],
          disputed: totals[`disputed${f}`],
        }).toEqual({ field: f, verified: pick(verified, f), disputed: pick(disputed, f) });
      }
    });
  });
});
