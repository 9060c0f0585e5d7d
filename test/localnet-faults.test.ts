import bs58 from "bs58";
import { describe, expect, it } from "vitest";
import type { StoredTransaction } from "../src/localnet/chain.js";
import type { DecentralJobs } from "../src/localnet/decentral-jobs.js";
import { findModel, priceUnits } from "../src/localnet/models.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { useStarted } from "./support/started-life.js";

const world = useStarted(() => startLocalWorld({ slotMs: 20, finalitySlots: 2 }));

interface GroundTruth {
  jobId: string;
  fault: string | null;
  status: string;
  completionTokens: number;
  lockUnits: string;
  chargeUnits: string;
  priceUnits: string;
  workerShareUnits: string;
  workerNamed: string;
  workerPaid: string | null;
  escrowTx: string | null;
  settlementTxs: string[];
  refundTx: string | null;
}

type ApiJob = ReturnType<DecentralJobs["apiView"]>;

interface FaultRun {
  status: number;
  headers: Headers;
  truth: GroundTruth;
  api: ApiJob;
}

const MODEL = "mistral-small-3.1-24b";
let prompts = 0;

async function run(fault: string | null, apiKeyIndex = 0, stream = false): Promise<FaultRun> {
  const apiKey = world.apiKeys[apiKeyIndex]!;
  const response = await fetch(`${world.decentralBaseUrl}/chat/completions`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${apiKey}`,
      "content-type": "application/json",
      ...(fault ? { "x-sim-fault": fault } : {}),
    },
    body: JSON.stringify({
      model: MODEL,
      stream,
      messages: [{ role: "user", content: `fault ${fault} prompt ${prompts++}` }],
    }),
  });
  await response.text();
  const jobId = response.headers.get("x-decentral-job-id")!;
  const truth = (await (
    await fetch(`${world.simulatorUrl}/sim/jobs/${jobId}`)
  ).json()) as GroundTruth;
  const api = (await (
    await fetch(`${world.decentralBaseUrl}/jobs/${jobId}`, {
      headers: { authorization: `Bearer ${apiKey}` },
    })
  ).json()) as ApiJob;
  return { status: response.status, headers: response.headers, truth, api };
}

function tx(signature: string | null | undefined): StoredTransaction {
  const found = signature ? world.chain.transaction(signature) : undefined;
  if (!found) throw new Error(`transaction ${signature} is not on chain`);
  return found;
}

function delta(t: StoredTransaction, account: string): bigint {
  const index = t.accountKeys.indexOf(account);
  const pre = t.preTokenBalances.find((b) => b.accountIndex === index)?.amount ?? 0n;
  const post = t.postTokenBalances.find((b) => b.accountIndex === index)?.amount ?? 0n;
  return post - pre;
}

function workerOf(address: string) {
  return world.accounts.workers.find((w) => w.address === address)!;
}

/** Worker, treasury and credit vault deltas of a settlement transaction. */
function split(t: StoredTransaction, workerAddress: string, apiKeyIndex = 0) {
  return {
    worker: delta(t, workerOf(workerAddress).tokenAccount),
    treasury: delta(t, world.accounts.treasury.tokenAccount),
    returned: delta(t, world.accounts.creditVaults[apiKeyIndex]!.vault),
    escrow: delta(t, world.accounts.escrowVault),
  };
}

function expectedAmounts(completionTokens: number, rateBps: number, extraCredits = 0n) {
  const model = findModel(MODEL)!;
  const charge = priceUnits(model, completionTokens) + extraCredits * 10_000n;
  const lock = priceUnits(model, 2000);
  const worker = (charge * BigInt(rateBps)) / 10_000n;
  return { charge, lock, worker, treasury: charge - worker };
}

describe("simulator faults, each producing exactly the discrepancy it names", () => {
  it("an honest job settles to the reference model", async () => {
    const { truth, headers } = await run(null);
    const named = workerOf(headers.get("x-decentral-worker")!);
    const want = expectedAmounts(truth.completionTokens, named.rateBps);
    expect(split(tx(headers.get("x-decentral-settlement-tx")), named.address)).toEqual({
      worker: want.worker,
      treasury: want.treasury,
      returned: want.lock - want.charge,
      escrow: -want.lock,
    });
    expect(truth.fault).toBeNull();
  });

  it("underpay-worker pays the worker less than its rate and gives the difference to the treasury", async () => {
    const { truth, headers } = await run("underpay-worker");
    const named = workerOf(headers.get("x-decentral-worker")!);
    const want = expectedAmounts(truth.completionTokens, named.rateBps);
    const got = split(tx(headers.get("x-decentral-settlement-tx")), named.address);
    expect(got.worker).toBeLessThan(want.worker);
    expect(got.worker + got.treasury).toBe(want.charge);
    expect(got.returned).toBe(want.lock - want.charge);
    expect(got.escrow).toBe(-want.lock);
    expect(truth).toMatchObject({ fault: "underpay-worker", workerShareUnits: String(got.worker) });
  });

  it("wrong-worker names one registered worker and pays another at the same rate", async () => {
    const { truth, headers } = await run("wrong-worker");
    const named = workerOf(headers.get("x-decentral-worker")!);
    const settlement = tx(headers.get("x-decentral-settlement-tx"));
    expect(settlement.accountKeys).not.toContain(named.tokenAccount);
    const paid = workerOf(truth.workerPaid!);
    expect(paid.address).not.toBe(named.address);
    expect(paid.rateBps).toBe(named.rateBps);
    const want = expectedAmounts(truth.completionTokens, paid.rateBps);
    expect(split(settlement, paid.address)).toEqual({
      worker: want.worker,
      treasury: want.treasury,
      returned: want.lock - want.charge,
      escrow: -want.lock,
    });
  });

  it("skip-settlement locks but never settles, while the jobs API claims a settled, charged job", async () => {
    const before = world.chain.transactionCount();
    const { truth, headers, api } = await run("skip-settlement");
    expect(world.chain.transactionCount()).toBe(before + 1);
    expect(tx(headers.get("x-decentral-tx-signature")).err).toBeNull();
    expect(headers.get("x-decentral-settlement-tx")).toBeNull();
    expect(truth).toMatchObject({ settlementTxs: [], refundTx: null });
    expect(api).toMatchObject({ status: "settled", on_chain: { settlement_tx: null } });
    expect(api.credits_charged).toBe(Number(BigInt(truth.chargeUnits) / 10_000n));
  });

  it("double-settle settles twice from the escrow vault; the header names the first, the jobs API the second", async () => {
    const { truth, headers, api } = await run("double-settle");
    expect(truth.settlementTxs).toHaveLength(2);
    const [first, second] = truth.settlementTxs.map((s) => tx(s));
    expect(headers.get("x-decentral-settlement-tx")).toBe(first!.signature);
    expect(api.on_chain.settlement_tx).toBe(second!.signature);
    const named = workerOf(headers.get("x-decentral-worker")!);
    const want = expectedAmounts(truth.completionTokens, named.rateBps);
    for (const settlement of [first!, second!]) {
      expect(settlement.err).toBeNull();
      expect(settlement.logMessages.join("\n")).toContain(`decentral:settle:${truth.jobId}`);
      expect(split(settlement, named.address)).toEqual({
        worker: want.worker,
        treasury: want.treasury,
        returned: want.lock - want.charge,
        escrow: -want.lock,
      });
    }
  });

  it("reuse-escrow locks nothing new and presents an earlier job's escrow signature", async () => {
    const earlier = await run(null, 2);
    const before = world.chain.transactionCount();
    const { truth, headers, api } = await run("reuse-escrow", 2);
    expect(world.chain.transactionCount()).toBe(before + 1);
    expect(headers.get("x-decentral-tx-signature")).toBe(
      earlier.headers.get("x-decentral-tx-signature"),
    );
    expect(api.on_chain.escrow_tx).toBe(earlier.headers.get("x-decentral-tx-signature"));
    expect(truth).toMatchObject({ fault: "reuse-escrow", escrowTx: null });
    const settlement = tx(headers.get("x-decentral-settlement-tx"));
    expect(settlement.err).toBeNull();
    expect(settlement.logMessages.join("\n")).toContain(`decentral:settle:${truth.jobId}`);
  });

  it("phantom-signature carries a well-formed settlement signature that never lands", async () => {
    const before = world.chain.transactionCount();
    const { truth, headers, api } = await run("phantom-signature");
    const phantom = headers.get("x-decentral-settlement-tx")!;
    expect(bs58.decode(phantom)).toHaveLength(64);
    expect(api.on_chain.settlement_tx).toBe(phantom);
    expect(world.chain.transactionCount()).toBe(before + 1);
    expect(world.chain.signatureStatus(phantom, true)).toBeNull();
    expect(truth.settlementTxs).toEqual([]);
  });

  it("overcharge charges more than the model's price and splits that charge correctly", async () => {
    const { truth, headers, api } = await run("overcharge");
    const named = workerOf(headers.get("x-decentral-worker")!);
    const extra = BigInt(findModel(MODEL)!.creditsPerRequest);
    const want = expectedAmounts(truth.completionTokens, named.rateBps, extra);
    expect(BigInt(truth.chargeUnits)).toBe(BigInt(truth.priceUnits) + extra * 10_000n);
    const got = split(tx(headers.get("x-decentral-settlement-tx")), named.address);
    expect(got).toEqual({
      worker: want.worker,
      treasury: want.treasury,
      returned: want.lock - want.charge,
      escrow: -want.lock,
    });
    expect(api.credits_charged).toBe(Number(want.charge / 10_000n));
  });

  it("failed-settlement commits a settlement that fails on chain: fee paid, no tokens moved", async () => {
    const { truth, headers, api } = await run("failed-settlement");
    const settlement = tx(headers.get("x-decentral-settlement-tx"));
    expect(settlement.err).not.toBeNull();
    expect(settlement.postBalances[0]! - settlement.preBalances[0]!).toBe(-settlement.fee);
    expect(settlement.fee).toBeGreaterThan(0);
    for (const pre of settlement.preTokenBalances) {
      const post = settlement.postTokenBalances.find((b) => b.accountIndex === pre.accountIndex);
      expect(post?.amount).toBe(pre.amount);
    }
    expect(api).toMatchObject({
      status: "settled",
      on_chain: { settlement_tx: settlement.signature },
    });
    expect(truth).toMatchObject({ status: "failed", settlementTxs: [settlement.signature] });
  });

  it("a streamed faulty job reports its settlement only through the jobs API", async () => {
    const { truth, headers, api } = await run("double-settle", 3, true);
    expect(headers.get("x-decentral-settlement-tx")).toBeNull();
    expect(api.on_chain.settlement_tx).toBe(truth.settlementTxs[1]);
  });

  it("draws faults at the configured rate when no header asks for one", async () => {
    world.setSimulatorOptions({ faultRate: 1, faults: ["overcharge"] });
    try {
      const runs = [await run(null, 3), await run(null, 3)];
      expect(runs.map((r) => r.truth.fault)).toEqual(["overcharge", "overcharge"]);
    } finally {
      world.setSimulatorOptions({ faultRate: 0 });
    }
    expect((await run(null, 3)).truth.fault).toBeNull();
  });
});
