import { randomBytes } from "node:crypto";
import http from "node:http";
import Database from "better-sqlite3";
import bs58 from "bs58";
import { describe, expect, it, onTestFinished } from "vitest";
import { sqliteStoreOver } from "../src/db/client.js";
import { localApiKey } from "../src/localnet/keys.js";
import type { InstructionSpec } from "../src/localnet/wire.js";
import { addressBytes } from "../src/localnet/wire.js";
import { createLogger } from "../src/log.js";
import { createRecordingFetch } from "../src/recorder/fetch-wrapper.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import { reconciliationReport } from "../src/reports/reconciliation.js";
import { reportsStore } from "../src/store/reports.js";
import type { CustodyConfig } from "../src/verify/custody.js";
import { createVerifier, type VerifierRpc } from "../src/verify/engine.js";
import { localnetProfile, profileSchema } from "../src/verify/profiles.js";
import {
  discrepancy,
  discrepancyIncluding,
  fingerprintOfKey,
  type JobPlan,
  Scenario,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";
import {
  address,
  closedAfterTest,
  ingestToken,
  jobId,
  jobUpstream,
  listen,
  serveApp,
  signature,
} from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

/**
 * Review of the soundness work (issue 9), as a dishonest operator who signs every byte of the
 * escrow, settlement and refund transactions and writes the response headers, body and the
 * jobs API's answers, but not the customer's recorded request, key fingerprint or the
 * configured CREDIT_VAULTS. Each test here is a fraud (or a miscount) that the verifier lets
 * through today; it states the verdict and failing checks a sound verifier must reach.
 *
 * Amounts (qwen3-8b, 640 completion tokens, no max_tokens): lock 160000, charge 120000,
 * staked worker 102000, treasury 18000, remainder 40000.
 */

const h = useAdversaryHarness();

const log = createLogger({ level: "silent" });

/** The store `pinKey(1)` leaves (key 1's first honest job, verified), serialized once. */
let pinned: Promise<Buffer> | undefined;

/**
 * A scenario (localnet profile) whose store already holds key 1's first job, verified, so its
 * credit vault is known: a copy of one store pinned once for the file, where pinning in every
 * case was a verifier run of its own.
 */
async function pinnedScenario(): Promise<Scenario> {
  pinned ??= (async () => {
    const store = createTestStore();
    await new Scenario(h, localnetProfile, store).pinKey(1);
    const bytes = store.sqlite.serialize();
    store.close();
    return bytes;
  })();
  const store = sqliteStoreOver(new Database(await pinned));
  onTestFinished(() => store.close());
  return new Scenario(h, localnetProfile, store);
}

/** Runs a verifier over the scenario's store with the deployment's CREDIT_VAULTS. */
async function verifyWithCustody(c: Scenario, custody: CustodyConfig): Promise<void> {
  const verifier = createVerifier({
    store: c.store,
    rpc: h.rpc,
    profile: c.profile,
    log,
    custody,
    options: quickVerifierOptions,
  });
  const summary = await verifier.runUntilSettled({}, { timeoutMs: 20_000 });
  if (summary.status !== "completed") throw new Error(JSON.stringify(summary));
}

/** A job id of Decentral's shape that sorts before (`0`) or after (`z`) random ones. */
function idStarting(first: "0" | "z"): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let id = `job_${first}`;
  for (let i = 0; i < 19; i++) id += alphabet[Math.floor(Math.random() * alphabet.length)];
  return id;
}

/**
 * What moved on chain in `signatures`, each counted once, in the figures reports sum: into the
 * escrow vault, to the plans' workers and the treasury (their sum charged), back into the
 * plans' credit vaults, and the fees.
 */
function movedOnChain(signatures: string[], plans: JobPlan[]) {
  const distinct = [...new Set(signatures)];
  const credited = (accounts: string[]) =>
    distinct.reduce((n, sig) => {
      const deltas = h.op.deltas(sig);
      for (const account of new Set(accounts)) {
        const d = deltas.get(account)?.delta ?? 0n;
        if (d > 0n) n += d;
      }
      return n;
    }, 0n);
  const worker = credited(plans.map((p) => p.worker.tokenAccount));
  const treasury = credited([h.op.accounts.treasury.tokenAccount]);
  return {
    escrowedUnits: credited([h.op.accounts.escrowVault]),
    chargedUnits: worker + treasury,
    workerPaidUnits: worker,
    treasuryPaidUnits: treasury,
    refundedUnits: credited(plans.map((p) => p.vault)),
    feesLamports: distinct.reduce((n, sig) => n + h.op.fee(sig), 0n),
  };
}

/** The reconciliation's money totals over the jobs recorded from `from` on. */
async function reportedMoney(c: Scenario, from: number) {
  const t = (await reconciliationReport(c.store, { from, to: Date.now() + 60_000, groupBy: "day" }))
    .totals;
  return {
    escrowedUnits: t.escrowedUnits,
    chargedUnits: t.chargedUnits,
    workerPaidUnits: t.workerPaidUnits,
    treasuryPaidUnits: t.treasuryPaidUnits,
    refundedUnits: t.refundedUnits,
    feesLamports: t.feesLamports,
  };
}

/** A signature of the right shape that no transaction on chain has. */
const madeUpSignature = () => bs58.encode(randomBytes(64));

describe("credit vault custody", () => {
  it("does not let a key learn, as its own, a vault already pinned to another key", async () => {
    const c = await h.scenario();
    // Key 2's first honest job pins vault 2 to key 2.
    await c.pinKey(2);
    // Key 1 has no pin yet: its "first lock" is taken from key 2's vault, and so is the next.
    const victimVault = h.op.vault(2);
    const plans = [h.op.plan({ keyIndex: 1 }), h.op.plan({ keyIndex: 1 })];
    for (const plan of plans) {
      const escrowTx = h.op.send(h.op.lockIxs(plan, { from: victimVault })).signature;
      const settlementTx = h.op.send(h.op.settleIxs(plan, { remainderTo: victimVault })).signature;
      c.record(plan, { escrowTx, settlementTx });
      await c.verify();
    }
    // Key 2's customer paid for key 1's jobs.
    expect(await Promise.all(plans.map((p) => c.outcome(p.jobId)))).toEqual([
      discrepancy("escrow.source"),
      discrepancy("escrow.source"),
    ]);
  });

  it.each([
    ["learned from first locks", false],
    ["with the deployment's vault list", true],
  ])(
    "does not let two keys' first locks, decided in one slice, both take one vault (%s)",
    async (_, listed) => {
      const c = await h.scenario();
      const custody: CustodyConfig = {
        vaults: listed ? [h.op.vault(1), h.op.vault(2)] : [],
        byKey: {},
      };
      // Both first jobs are recorded before the verifier runs (an import, a backfill, a busy
      // minute), so both are decided in one slice, before either key has a pin. Key 1's is
      // honest; key 2's lock is taken from key 1's vault, and its remainder goes back there.
      const victimVault = h.op.vault(1);
      const honest = h.op.plan({ keyIndex: 1 });
      c.record(honest, h.op.honestJob(honest));
      const fromVictim = () => {
        const plan = h.op.plan({ keyIndex: 2 });
        const escrowTx = h.op.send(h.op.lockIxs(plan, { from: victimVault })).signature;
        const settlementTx = h.op.send(
          h.op.settleIxs(plan, { remainderTo: victimVault }),
        ).signature;
        c.record(plan, { escrowTx, settlementTx });
        return plan;
      };
      const first = fromVictim();
      await verifyWithCustody(c, custody);
      // Later: key 2 again from key 1's vault, then from its own vault.
      const later = fromVictim();
      const own = h.op.plan({ keyIndex: 2 });
      c.record(own, h.op.honestJob(own));
      await verifyWithCustody(c, custody);
      expect(await Promise.all([honest, first, later, own].map((p) => c.outcome(p.jobId)))).toEqual(
        [verified, discrepancy("escrow.source"), discrepancy("escrow.source"), verified],
      );
    },
  );

  it("does not learn, as a key's credit vault, an account the escrow authority does not own", async () => {
    const c = await h.scenario();
    // The key's first lock comes from the attacker's own account, and the remainder goes
    // back there: from now on the key's real vault is watched by nothing, and the lock's
    // source is an account no credit vault of the reference model can be (the profile knows
    // the escrow authority that owns every credit vault).
    const own = h.op.attackerAccount(1_000_000n);
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send([
      h.op.transfer(own, h.op.accounts.escrowVault, plan.lock, {
        authority: h.op.attacker.address,
      }),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan, { remainderTo: own })).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
  });

  it("pins the vault a receipt declared for its key, so a later receipt without it cannot move it", async () => {
    const c = await h.scenario();
    // The backend declares key 1's vault on its first receipt.
    const first = h.op.plan({ keyIndex: 1 });
    c.record(first, h.op.honestJob(first), { creditVault: first.vault });
    await c.verify();
    // A later receipt of the same key (from the proxy, say) declares nothing; its lock is
    // taken from key 2's vault.
    const fraud = h.op.plan({ keyIndex: 1 });
    const other = h.op.vault(2);
    const escrowTx = h.op.send(h.op.lockIxs(fraud, { from: other })).signature;
    const settlementTx = h.op.send(h.op.settleIxs(fraud, { remainderTo: other })).signature;
    c.record(fraud, { escrowTx, settlementTx });
    // Today the declared vault was never pinned: the fraud is the key's "first lock".
    expect(await c.verdicts(first.jobId, fraud.jobId)).toEqual([
      verified,
      discrepancy("escrow.source"),
    ]);
  });

  it("still ties each key to one vault when the deployment lists its vaults (CREDIT_VAULTS)", async () => {
    const c = await h.scenario();
    const custody: CustodyConfig = { vaults: [h.op.vault(1), h.op.vault(2)], byKey: {} };
    // Key 1's first lock comes from its own vault.
    const first = h.op.plan({ keyIndex: 1 });
    c.record(first, h.op.honestJob(first));
    await verifyWithCustody(c, custody);
    // A later job of key 1 spends key 2's vault, which is also listed.
    const fraud = h.op.plan({ keyIndex: 1 });
    const other = h.op.vault(2);
    const escrowTx = h.op.send(h.op.lockIxs(fraud, { from: other })).signature;
    const settlementTx = h.op.send(h.op.settleIxs(fraud, { remainderTo: other })).signature;
    c.record(fraud, { escrowTx, settlementTx });
    await verifyWithCustody(c, custody);
    expect([await c.outcome(first.jobId), await c.outcome(fraud.jobId)]).toEqual([
      verified,
      discrepancy("escrow.source"),
    ]);
  });

  it.each([
    ["a plain two-vault list, key 2's vault learned from its first lock", "list"],
    ["the two vaults listed and each pinned to its key", "list+pins"],
    ["each vault pinned to its key, no plain list", "pins"],
  ] as const)(
    "does not verify a receipt naming no key whose lock drew on key 2's vault (%s)",
    async (_, shape) => {
      const c = await h.scenario();
      const [one, two] = [h.op.vault(1), h.op.vault(2)];
      const custody: CustodyConfig = {
        vaults: shape === "pins" ? [] : [one, two],
        byKey: shape === "list" ? {} : { [fingerprintOfKey(1)]: one, [fingerprintOfKey(2)]: two },
      };
      if (shape === "list") {
        const first = h.op.plan({ keyIndex: 2 });
        c.record(first, h.op.honestJob(first));
        await verifyWithCustody(c, custody);
      }
      // Customer 1's backend ingests its receipt without key_fingerprint or credit_vault; the
      // operator locked, charged and settled the job out of customer 2's vault.
      const keyless = h.op.plan({ keyIndex: 2 });
      c.record(keyless, h.op.honestJob(keyless), { keyFingerprint: null });
      await verifyWithCustody(c, custody);
      expect(await c.outcome(keyless.jobId)).toEqual({
        verdict: "partially_verified",
        failing: [],
      });
      const source = await c.check(keyless.jobId, "escrow.source");
      expect(source?.outcome).toBe("skip");
      expect(source?.reason).toContain(`the credit vault of API key ${fingerprintOfKey(2)}`);
    },
  );

  it("verifies a receipt naming no key in a deployment of one credit vault, held by a key", async () => {
    const c = await h.scenario();
    // Every job of this deployment draws on its one vault, whichever key made it.
    const custody: CustodyConfig = { vaults: [h.op.vault(2)], byKey: {} };
    const first = h.op.plan({ keyIndex: 2 });
    c.record(first, h.op.honestJob(first));
    await verifyWithCustody(c, custody);
    const keyless = h.op.plan({ keyIndex: 2 });
    c.record(keyless, h.op.honestJob(keyless), { keyFingerprint: null });
    await verifyWithCustody(c, custody);
    expect([await c.outcome(first.jobId), await c.outcome(keyless.jobId)]).toEqual([
      verified,
      verified,
    ]);
  });

  it("verifies a receipt naming no key whose lock drew on a listed vault no key holds", async () => {
    const c = await h.scenario();
    const custody: CustodyConfig = { vaults: [h.op.vault(1), h.op.vault(2)], byKey: {} };
    const keyless = h.op.plan({ keyIndex: 2 });
    c.record(keyless, h.op.honestJob(keyless), { keyFingerprint: null });
    await verifyWithCustody(c, custody);
    expect(await c.outcome(keyless.jobId)).toEqual(verified);
  });

  it.each([
    ["judged before the key's first lock", "before"],
    ["judged in the same run as the key's first lock", "together"],
  ] as const)(
    "does not keep verified a receipt naming no key whose lock drew on a listed vault its key then learns (%s)",
    async (_, order) => {
      const c = await h.scenario();
      const custody: CustodyConfig = { vaults: [h.op.vault(1), h.op.vault(2)], byKey: {} };
      // The operator draws customer 1's keyless job on customer 2's vault while no key holds
      // it, then customer 2's first job pins that vault to key 2: the operator picks the order.
      const keyless = h.op.plan({ keyIndex: 2 });
      c.record(keyless, h.op.honestJob(keyless), { keyFingerprint: null });
      if (order === "before") await verifyWithCustody(c, custody);
      const first = h.op.plan({ keyIndex: 2 });
      c.record(first, h.op.honestJob(first));
      await verifyWithCustody(c, custody);
      expect([await c.outcome(first.jobId), await c.outcome(keyless.jobId)]).toEqual([
        verified,
        { verdict: "partially_verified", failing: [] },
      ]);
      const source = await c.check(keyless.jobId, "escrow.source");
      expect(source?.reason).toContain(`the credit vault of API key ${fingerprintOfKey(2)}`);
    },
  );
});

describe("what the receipt's status allows", () => {
  it("does not accept a settlement that charges a job whose response was a 504", async () => {
    const c = await pinnedScenario();
    // The caller got a 504 (timed out, credits refunded) and no usage; the operator settles
    // the job anyway and keeps the whole lock.
    const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const workerShare = (plan.lock * 8500n) / 10_000n;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, {
        workerShare,
        treasuryShare: plan.lock - workerShare,
        remainder: 0n,
      }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx }, { httpStatus: 504 });
    // Today: partially_verified (usage_unknown), as if it were a stream without usage.
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("refund.not_settled")]);
  });

  it.each([
    { status: 500, completionTokens: 640 },
    { status: 500, completionTokens: null },
    { status: 402, completionTokens: 640 },
  ])(
    "does not accept a settlement of a job answered $status (usage $completionTokens), and verifies its refund",
    async ({ status, completionTokens }) => {
      const c = await pinnedScenario();
      // The caller got an error, no completion; the operator still settles the job at its full
      // price. A second job answered the same way got its whole lock back: that one is sound.
      const settled = h.op.plan({ keyIndex: 1, completionTokens });
      const txs = h.op.honestJob(settled);
      c.record(settled, txs, { httpStatus: status });
      const refunded = h.op.plan({ keyIndex: 1, completionTokens });
      const escrowTx = h.op.send(h.op.lockIxs(refunded)).signature;
      const refundTx = h.op.send(h.op.refundIxs(refunded)).signature;
      c.record(refunded, { escrowTx, settlementTx: refundTx }, { httpStatus: status });
      // Before: verified (partially_verified, usage_unknown, without usage), charged in full.
      expect(await c.verdicts(settled.jobId, refunded.jobId)).toEqual([
        discrepancy("refund.not_settled"),
        verified,
      ]);
    },
  );
});

describe("a proxied answer that sent no usage", () => {
  /** A job settled at `charge` (the lock's 160,000 by default), its worker paid 85%. */
  function settledAt(charge?: bigint) {
    const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
    const charged = charge ?? plan.lock;
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const workerShare = (charged * 8500n) / 10_000n;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, {
        workerShare,
        treasuryShare: charged - workerShare,
        remainder: plan.lock - charged,
      }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    return { plan, txs: { escrowTx, settlementTx } };
  }
  const noUsage = { promptTokens: null, completionTokens: null, totalTokens: null };

  it("fails a charge above the price of what its measured answer can hold", async () => {
    const c = await pinnedScenario();
    // 12 bytes of answer hold at most 28 tokens (8 credits, 80,000); charged the whole lock.
    const { plan, txs } = settledAt();
    expect(plan.lock).toBe(160_000n);
    c.record(
      plan,
      txs,
      { ...noUsage, stream: false, answerBytes: 12, answerToolCalls: 0, httpStatus: 200 },
      "proxy",
    );
    // Before: partially_verified (usage_unknown), the charge bounded by the lock only.
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("charge.matches_price")]);
  });

  it("leaves a charge within that bound, a stream's and an ingested receipt's unproven", async () => {
    const c = await pinnedScenario();
    const within = settledAt(80_000n);
    c.record(
      within.plan,
      within.txs,
      { ...noUsage, stream: false, answerBytes: 12, answerToolCalls: 0, httpStatus: 200 },
      "proxy",
    );
    // 1,000 bytes and a tool call bound 1,032 tokens: 12 credits, 120,000.
    const tools = settledAt(120_000n);
    c.record(
      tools.plan,
      tools.txs,
      { ...noUsage, stream: false, answerBytes: 1000, answerToolCalls: 1, httpStatus: 200 },
      "proxy",
    );
    // A stream sends usage only when asked; an ingested receipt that does not say which kind of
    // answer it read (a completion posted whole may be a stream pieced together) is not bounded.
    const stream = settledAt();
    c.record(
      stream.plan,
      stream.txs,
      { ...noUsage, stream: true, answerBytes: 12, answerToolCalls: 0, httpStatus: 200 },
      "proxy",
    );
    const ingested = settledAt();
    c.record(ingested.plan, ingested.txs, { ...noUsage, stream: null, answerBytes: 12 });
    const partial = { verdict: "partially_verified", failing: [] };
    expect(
      await c.verdicts(within.plan.jobId, tools.plan.jobId, stream.plan.jobId, ingested.plan.jobId),
    ).toEqual([partial, partial, partial, partial]);
  });
});

describe("what the jobs API's status allows", () => {
  it("does not verify a settled job the jobs API calls failed", async () => {
    const c = await pinnedScenario();
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    c.jobsApi(plan.jobId, {
      status: "failed",
      credits_charged: Number(plan.charge / 10_000n),
      worker_address: plan.worker.address,
      on_chain: { escrow_tx: txs.escrowTx, settlement_tx: txs.settlementTx },
    });
    // Before: verified, the jobs API's status skipped as "not final".
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("jobs_api.matches_chain")]);
  });

  it("does not verify a failed job whose lock nothing named returns, and verifies one refunded", async () => {
    const c = await pinnedScenario();
    const kept = h.op.plan({ keyIndex: 1 });
    const keptLock = h.op.send(h.op.lockIxs(kept)).signature;
    c.record(kept, { escrowTx: keptLock, settlementTx: null });
    c.jobsApi(kept.jobId, {
      status: "failed",
      credits_charged: 0,
      worker_address: kept.worker.address,
      on_chain: { escrow_tx: keptLock, settlement_tx: null },
    });
    const refunded = h.op.plan({ keyIndex: 1 });
    const lock = h.op.send(h.op.lockIxs(refunded)).signature;
    const refund = h.op.send(h.op.refundIxs(refunded)).signature;
    c.record(refunded, { escrowTx: lock, settlementTx: null });
    c.jobsApi(refunded.jobId, {
      status: "failed",
      credits_charged: 0,
      worker_address: refunded.worker.address,
      on_chain: { escrow_tx: lock, settlement_tx: refund },
    });
    // As for a job the jobs API calls refunded with no refund named: the return may exist
    // unnamed (the vault statement shows a lock never returned), so it is unverifiable.
    expect(await c.verdicts(kept.jobId, refunded.jobId)).toEqual([
      { verdict: "unverifiable", failing: [] },
      verified,
    ]);
  });
});

describe("a worker named as the owner of the credit vaults", () => {
  /** Lock = price, settled with the worker's share sent to `workerAccount`. */
  async function settleToVault(c: Scenario, workerAccount: (plan: JobPlan) => string) {
    const plan = h.op.plan({ keyIndex: 1, maxTokens: 500, completionTokens: 500 });
    expect(plan.remainder).toBe(0n);
    const workerShare = (plan.charge * 7500n) / 10_000n;
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, {
        workerShare,
        treasuryShare: plan.charge - workerShare,
        workerAccount: workerAccount(plan),
      }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx }, { worker: h.op.accounts.escrowAuthority });
    const [outcome] = await c.verdicts(plan.jobId);
    const job = (await reportsStore(c.store).auditRows(plan.jobId))!.job;
    return {
      outcome,
      paid: { worker: job.workerPaidUnits, treasury: job.treasuryPaidUnits },
      treasuryShare: plan.charge - workerShare,
    };
  }

  it("does not count the worker's share sent back to the payer's own vault as paid", async () => {
    const c = await pinnedScenario();
    const { outcome, paid, treasuryShare } = await settleToVault(c, (plan) => plan.vault);
    // Before: verified, with the worker paid 60000 and nobody but the treasury paid.
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("settlement.worker_paid");
    expect(paid).toEqual({ worker: 0n, treasury: treasuryShare });
  });

  it("does not count the worker's share sent to another customer's vault as paid", async () => {
    const c = await pinnedScenario();
    await c.pinKey(2);
    const { outcome, paid, treasuryShare } = await settleToVault(c, () => h.op.vault(2));
    // Before: verified, and escrow.source (money of the lock in another vault) never ran.
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toEqual(
      expect.arrayContaining(["escrow.source", "settlement.worker_paid"]),
    );
    expect(paid).toEqual({ worker: 0n, treasury: treasuryShare });
  });

  it("knows the owner of the credit vaults from the lock when the profile names no escrow authority", async () => {
    const c = await h.scenario({ ...localnetProfile, escrowAuthority: null });
    await c.pinKey(1);
    await c.pinKey(2);
    const { outcome, paid } = await settleToVault(c, () => h.op.vault(2));
    // Before: verified, the other customer's vault counted as the worker's.
    expect(outcome?.verdict).toBe("discrepancy");
    expect(outcome?.failing).toContain("settlement.worker_paid");
    expect(paid.worker).toBe(0n);
  });
});

describe("a charge with no usage recorded", () => {
  it("does not accept a charge above the price at the request's max_tokens", async () => {
    const c = await pinnedScenario();
    // A stream without usage: the charge is bounded by the lock only, but the lock is the
    // operator's choice. The request set no max_tokens, so the job cannot cost more than the
    // price at 2,000 completion tokens (160000); the operator locks and charges 2.5 times that.
    const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
    const lock = (plan.lock * 5n) / 2n;
    const escrowTx = h.op.send(h.op.lockIxs(plan, { amount: lock })).signature;
    const workerShare = (lock * 8500n) / 10_000n;
    const settlementTx = h.op.send(
      h.op.settleIxs(plan, { workerShare, treasuryShare: lock - workerShare, remainder: 0n }),
    ).signature;
    c.record(plan, { escrowTx, settlementTx }, { stream: true });
    // Today: partially_verified (usage_unknown), the same as an honest stream.
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("charge.matches_price")]);
  });
});

describe("usage beyond what the request allowed", () => {
  it("does not verify usage above the request's max_tokens", async () => {
    const c = await pinnedScenario();
    // The caller capped the completion at 300 tokens (the job can cost 8 credits at most);
    // the response body claims 4,000 completion tokens, and the lock and charge follow it.
    const plan = h.op.plan({ keyIndex: 1, maxTokens: 300, completionTokens: 4000 });
    expect(plan.charge).toBeGreaterThan(plan.lock);
    const escrowTx = h.op.send(h.op.lockIxs(plan, { amount: plan.charge })).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan, { remainder: 0n })).signature;
    c.record(plan, { escrowTx, settlementTx });
    // Today: verified, three times what the request could cost. The lock followed the charge
    // above that ceiling, so it is a finding of its own.
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("charge.matches_price", "escrow.within_ceiling"),
    ]);
  });
});

describe("receipts from the fetch wrapper", () => {
  it("prices by the model the caller asked for, not the one the response names", async () => {
    const c = await h.scenario();
    const custody: CustodyConfig = { vaults: [h.op.vault(1)], byKey: {} };
    // The caller asks for qwen3-8b; the operator answers as llama-3.3-70b and charges its price.
    const plan = h.op.plan({ keyIndex: 1, model: "llama-3.3-70b" });
    const txs = h.op.honestJob(plan);
    const upstream = await jobUpstream(plan, txs, {
      headers: { "x-decentral-credits-remaining": "500" },
      body: JSON.stringify({
        model: "llama-3.3-70b",
        choices: [{ index: 0, message: { role: "assistant", content: "x".repeat(640) } }],
        usage: { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 },
      }),
    });
    const audit = closedAfterTest(await serveApp({ store: c.store, log }));
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token: await ingestToken(c.store),
    });
    const res = await recordingFetch(`${upstream.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer dcntrl_live_abcdefghijklmnopqrstuvwxyz012345" },
      body: JSON.stringify({ model: "qwen3-8b", messages: [] }),
    });
    await res.json();
    await recordingFetch.flush();
    expect(recordingFetch.stats()).toMatchObject({ delivered: 1 });
    await verifyWithCustody(c, custody);
    // Today: verified at llama's price (the wrapper sends the response's model as `model`,
    // and no requested_model, key_fingerprint or max_tokens).
    expect(await c.outcome(plan.jobId)).toEqual(
      discrepancy("charge.matches_price", "charge.model"),
    );
  });
});

describe("the model and ceiling a request asks, whatever shape its body takes", () => {
  const key = localApiKey(1);
  const asked = { model: "phi-4-mini", max_tokens: 100, messages: [] };

  /**
   * The caller asks for phi-4-mini with at most 100 tokens; the operator answers as
   * llama-3.3-70b with 2,000 completion tokens and charges llama's price for them.
   */
  async function lyingOperator(model = "llama-3.3-70b") {
    const plan = h.op.plan({ keyIndex: 1, model, completionTokens: 2000 });
    const txs = h.op.honestJob(plan);
    const received: string[] = [];
    const upstream = closedAfterTest(
      await listen(
        http.createServer(async (req, res) => {
          let body = "";
          for await (const chunk of req) body += chunk;
          received.push(body);
          res.writeHead(200, {
            "content-type": "application/json",
            "x-decentral-job-id": plan.jobId,
            "x-decentral-tx-signature": txs.escrowTx,
            "x-decentral-settlement-tx": txs.settlementTx,
            "x-decentral-worker": plan.worker.address,
          });
          res.end(
            JSON.stringify({
              model,
              // An answer that can hold the usage it names: the lie here is the price alone.
              choices: [
                {
                  index: 0,
                  finish_reason: "length",
                  message: { role: "assistant", content: "w ".repeat(1000) },
                },
              ],
              usage: { prompt_tokens: 12, completion_tokens: 2000, total_tokens: 2012 },
            }),
          );
        }),
      ),
    );
    return { plan, upstream, received };
  }

  async function throughProxy(body: string, contentType?: string) {
    const c = await pinnedScenario();
    const { plan, upstream } = await lyingOperator();
    const proxy = createRecordingProxy({
      store: c.store,
      log,
      upstreamBaseUrl: `${upstream.url}/v1`,
    });
    const app = closedAfterTest(await serveApp({ store: c.store, log, proxy }));
    try {
      const res = await fetch(`${app.url}/v1/chat/completions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${key}`,
          ...(contentType === undefined ? {} : { "content-type": contentType }),
        },
        body,
      });
      await res.text();
      await proxy.idle();
    } finally {
      await proxy.close();
    }
    return { c, plan };
  }

  async function throughWrapper(
    call: (recordingFetch: typeof fetch, url: string) => Promise<Response>,
    model?: string,
  ) {
    const c = await pinnedScenario();
    const { plan, upstream, received } = await lyingOperator(model);
    const audit = closedAfterTest(await serveApp({ store: c.store, log }));
    const recordingFetch = createRecordingFetch({
      ingestUrl: `${audit.url}/jobs`,
      token: await ingestToken(c.store),
    });
    await (await call(recordingFetch, `${upstream.url}/v1/chat/completions`)).json();
    await recordingFetch.flush();
    expect(recordingFetch.stats()).toMatchObject({ delivered: 1 });
    return { c, plan, received };
  }

  const init = (body: RequestInit["body"]): RequestInit => ({
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body,
  });

  it("proxy: reads a JSON body sent as text/plain and prices by the model it asks", async () => {
    // `fetch` with a string body says text/plain; the upstream reads it as JSON all the same.
    const { c, plan } = await throughProxy(JSON.stringify(asked));
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("charge.matches_price", "escrow.within_ceiling", "charge.model"),
    ]);
  });

  it("proxy: a body it cannot read leaves the model unknown, never the response's", async () => {
    const { c, plan } = await throughProxy(
      "model=phi-4-mini&max_tokens=100",
      "application/x-www-form-urlencoded",
    );
    expect(await c.verdicts(plan.jobId)).toEqual([{ verdict: "partially_verified", failing: [] }]);
    expect(await c.check(plan.jobId, "charge.matches_price")).toMatchObject({
      outcome: "skip",
    });
  });

  it("fetch wrapper: reads a body given as bytes", async () => {
    const { c, plan } = await throughWrapper((f, url) =>
      f(url, init(new TextEncoder().encode(JSON.stringify(asked)))),
    );
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("charge.matches_price", "escrow.within_ceiling", "charge.model"),
    ]);
  });

  it("fetch wrapper: reads the body of a Request passed alone, and still sends it", async () => {
    const { c, plan, received } = await throughWrapper((f, url) =>
      f(new Request(url, init(JSON.stringify(asked)))),
    );
    expect(received).toEqual([JSON.stringify(asked)]);
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("charge.matches_price", "escrow.within_ceiling", "charge.model"),
    ]);
  });

  it("fetch wrapper: bounds usage by max_completion_tokens", async () => {
    const { c, plan } = await throughWrapper(
      (f, url) =>
        f(
          url,
          init(JSON.stringify({ model: "qwen3-8b", max_completion_tokens: 100, messages: [] })),
        ),
      "qwen3-8b",
    );
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("charge.matches_price", "escrow.within_ceiling"),
    ]);
  });
});

describe("usage the operator writes in the response body", () => {
  it("decides an honest job even when another job reports an absurd completion_tokens", async () => {
    const c = await pinnedScenario();
    // The proxy keeps any integer usage from the body (ingest caps it; the proxy does not).
    const absurd = h.op.plan({ keyIndex: 1 });
    c.record(absurd, h.op.honestJob(absurd), { completionTokens: 1e30, totalTokens: 1e30 });
    const honest = h.op.plan({ keyIndex: 1 });
    c.record(honest, h.op.honestJob(honest));
    // Today the verdict write fails (the expected charge does not fit in 64 bits), the whole
    // slice rolls back and every round that claims the job throws: no job is decided again.
    let error: unknown = null;
    await c.verify().catch((e: unknown) => {
      error = e;
    });
    expect({
      error,
      outcomes: [await c.outcome(absurd.jobId), await c.outcome(honest.jobId)],
    }).toEqual({
      error: null,
      outcomes: [discrepancy("charge.matches_price"), verified],
    });
  });
});

describe("transactions the verifier cannot read", () => {
  it("judges a settlement that closes a token account and opens it again in another mint", async () => {
    const c = await pinnedScenario();
    const fake = h.op.createFakeMint();
    // An empty credit-mint account of the attacker's. Inside the settlement it is closed and
    // created again at the same address for the fake mint: its pre and post token balances
    // then name two mints, which the transaction reader refuses as malformed.
    const reborn = h.op.createTokenAccount(h.op.attacker.address);
    const attacker = h.op.attackerAccount(0n);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const createAccount = (
      h.op as unknown as { createAccountIx(address: string, space: number): InstructionSpec }
    ).createAccountIx(reborn, 165);
    const initializeAccount3: InstructionSpec = {
      programId: "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
      accounts: [
        { address: reborn, signer: false, writable: true },
        { address: fake, signer: false, writable: false },
      ],
      data: Uint8Array.from([18, ...addressBytes(h.op.attacker.address)]),
    };
    // The remainder is taken, too.
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, { remainderTo: attacker }),
      h.op.closeAccount(reborn, h.op.attacker.address, h.op.attacker.address),
      createAccount,
      initializeAccount3,
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    // Today: unverifiable, as if the node had pruned the transaction.
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.instructions")]);
  });
});

describe("what the operator leaves out", () => {
  it("judges the customer's money when the headers and the jobs API name no worker", async () => {
    const c = await pinnedScenario();
    // The remainder goes to another customer's vault, which fails escrow.source when the
    // worker is named; without a worker every money check is skipped.
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan, { remainderTo: h.op.vault(2) })).signature;
    c.record(plan, { escrowTx, settlementTx }, { worker: null });
    // Today: unverifiable ("neither the receipt nor the jobs API names the worker").
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
  });
});

describe("one job id answered twice", () => {
  it("does not verify a job whose id came back on a second, separately charged request", async () => {
    const c = await pinnedScenario();
    const from = Date.now() - 60_000;
    // Two requests, one job id: each answer names its own lock and settlement, both memos
    // name the same job, and the customer's vault pays twice.
    const plan = h.op.plan({ keyIndex: 1 });
    const first = h.op.honestJob(plan);
    const second = h.op.honestJob(plan);
    expect((await c.ingest(plan, first)).status).toBe(201);
    const again = await c.ingest(plan, second);
    // The second receipt is kept as a conflict finding on the job's audit record only.
    expect(again.status).toBeLessThan(500);
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("escrow.single", "settlement.single"),
    ]);
    const totals = (
      await reconciliationReport(c.store, {
        from,
        to: Date.now() + 60_000,
        groupBy: "day",
      })
    ).totals;
    // Both locks moved the customer's money (plus the key's first job's lock).
    expect(totals.escrowedUnits).toBe(3n * plan.lock);
  });

  for (const [variant, settlementOf] of [
    ["names no settlement", () => null],
    ["repeats the first settlement", (first: { settlementTx: string }) => first.settlementTx],
  ] as const) {
    it(`does not verify a job whose second answer takes a second lock and ${variant}`, async () => {
      const c = await pinnedScenario();
      const from = Date.now() - 60_000;
      // The second answer's lock is taken from the customer's vault with this job's memo and
      // is never settled nor refunded: the customer paid twice for one job id.
      const plan = h.op.plan({ keyIndex: 1 });
      const first = h.op.honestJob(plan);
      const secondLock = h.op.send(h.op.lockIxs(plan)).signature;
      expect((await c.ingest(plan, first)).status).toBe(201);
      const again = await c.ingest(plan, {
        escrowTx: secondLock,
        settlementTx: settlementOf(first),
      });
      expect(again.status).toBe(409);
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.single")]);
      expect((await c.check(plan.jobId, "escrow.single"))?.actual).toMatchObject({
        escrow: first.escrowTx,
        otherLocks: [{ signature: secondLock, taken: plan.lock.toString() }],
      });
      const totals = (
        await reconciliationReport(c.store, { from, to: Date.now() + 60_000, groupBy: "day" })
      ).totals;
      // Only the key's first job is verified money; both locks of this one are disputed.
      expect({
        verified: totals.verified,
        verifiedEscrowedUnits: totals.verifiedEscrowedUnits,
        disputedEscrowedUnits: totals.disputedEscrowedUnits,
      }).toEqual({
        verified: 1,
        verifiedEscrowedUnits: plan.lock,
        disputedEscrowedUnits: 2n * plan.lock,
      });
    });
  }

  for (const [variant, memo] of [
    ["no memo", null],
    ["another job id's escrow memo", (jobId: string) => `decentral:escrow:${jobId}x`],
  ] as const) {
    it(`does not verify a job whose conflicting receipt names a second debit with ${variant}`, async () => {
      const c = await pinnedScenario();
      // The second debit of the customer's vault is whatever memo the operator writes: the
      // job's own conflicting receipt names it, so it is looked at all the same.
      const plan = h.op.plan({ keyIndex: 1 });
      const first = h.op.honestJob(plan);
      const taken = h.op.send([
        h.op.transfer(plan.vault, h.op.accounts.escrowVault, plan.lock),
        ...(memo ? [h.op.memo(memo(plan.jobId))] : []),
      ]).signature;
      expect((await c.ingest(plan, first)).status).toBe(201);
      const again = await c.ingest(plan, { escrowTx: taken, settlementTx: first.settlementTx });
      expect(again.status).toBe(409);
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("signatures.explained")]);
      expect((await c.check(plan.jobId, "signatures.explained"))?.actual).toEqual({
        unexplained: [taken],
      });
    });
  }

  it("does not verify a refunded job whose conflicting receipt names a payout with no memo", async () => {
    const c = await pinnedScenario();
    const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refundTx = h.op.send(h.op.refundIxs(plan)).signature;
    const theft = h.op.send([
      h.op.transfer(h.op.accounts.escrowVault, h.op.attackerAccount(), plan.lock),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, { httpStatus: 504 });
    expect((await c.ingest(plan, { escrowTx, settlementTx: theft })).status).toBe(409);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("signatures.explained")]);
  });

  it("does not verify a refunded job whose second answer names a second refund", async () => {
    const c = await pinnedScenario();
    const from = Date.now() - 60_000;
    // A 504 refunded whole; the second answer for the job id names the same lock and another
    // refund of this job, paid out of the shared escrow vault to the attacker.
    const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refundTx = h.op.send(h.op.refundIxs(plan)).signature;
    const theft = h.op.send(h.op.refundIxs(plan, h.op.attackerAccount())).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, { httpStatus: 504 });
    expect((await c.ingest(plan, { escrowTx, settlementTx: theft })).status).toBe(409);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("refund.single")]);
    const totals = (
      await reconciliationReport(c.store, { from, to: Date.now() + 60_000, groupBy: "day" })
    ).totals;
    expect({
      verified: totals.verified,
      disputedEscrowedUnits: totals.disputedEscrowedUnits,
    }).toEqual({ verified: 1, disputedEscrowedUnits: plan.lock });
  });
});

describe("report totals against the chain", () => {
  /** Sum of the escrow vault's credits over distinct signatures, from the chain's record. */
  const escrowedOnChain = (sigs: string[]) =>
    [...new Set(sigs)].reduce((n, sig) => {
      const d = h.op.deltas(sig).get(h.op.accounts.escrowVault);
      return d && d.delta > 0n ? n + d.delta : n;
    }, 0n);

  it("counts a second lock that only the jobs API names", async () => {
    const c = await h.scenario();
    const from = Date.now() - 60_000;
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    // The customer's vault is debited a second time for the same job; the headers name the
    // first lock, the jobs API the second.
    const secondLock = h.op.send(h.op.lockIxs(plan)).signature;
    c.record(plan, txs);
    c.jobsApi(plan.jobId, {
      status: "settled",
      credits_charged: Number(plan.charge / 10_000n),
      worker_address: plan.worker.address,
      on_chain: { escrow_tx: secondLock, settlement_tx: txs.settlementTx },
    });
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("escrow.single", "jobs_api.matches_receipt"),
    ]);
    const totals = (
      await reconciliationReport(c.store, {
        from,
        to: Date.now() + 60_000,
        groupBy: "day",
      })
    ).totals;
    const named = [txs.escrowTx, secondLock, txs.settlementTx];
    expect({
      escrowedUnits: totals.escrowedUnits,
      feesLamports: totals.feesLamports,
    }).toEqual({
      escrowedUnits: escrowedOnChain(named),
      feesLamports: named.reduce((n, s) => n + h.op.fee(s), 0n),
    });
  });

  it("keeps a verified job's money on it when more than ten replays sort before it", async () => {
    const c = await h.scenario();
    const from = Date.now() - 60_000;
    // The original's id sorts after every replay's: the replays are the first ten (and more)
    // jobs by id naming its signatures.
    const original: JobPlan = { ...h.op.plan({ keyIndex: 1 }), jobId: idStarting("z") };
    const txs = h.op.honestJob(original);
    c.record(original, txs);
    const replays: string[] = [];
    for (let i = 0; i < 11; i++) {
      const replay: JobPlan = { ...h.op.plan({ keyIndex: 1 }), jobId: idStarting("0") };
      c.record(replay, txs);
      replays.push(replay.jobId);
    }
    const outcomes = await c.verdicts(original.jobId, ...replays);
    expect(outcomes).toEqual([verified, ...replays.map(() => discrepancy("signatures.unique"))]);
    const totals = (
      await reconciliationReport(c.store, {
        from,
        to: Date.now() + 60_000,
        groupBy: "day",
      })
    ).totals;
    // Total money is right either way; the split must put the original's money on verified.
    expect({
      verifiedEscrowedUnits: totals.verifiedEscrowedUnits,
      disputedEscrowedUnits: totals.disputedEscrowedUnits,
      verifiedChargedUnits: totals.verifiedChargedUnits,
    }).toEqual({
      verifiedEscrowedUnits: original.lock,
      disputedEscrowedUnits: 0n,
      verifiedChargedUnits: original.charge,
    });
  });
});

describe("report totals against the chain: money into the vault that escrow did not pay", () => {
  it("does not count a top-up named as a 504's refund as refunded", async () => {
    const c = await pinnedScenario();
    const from = Date.now();
    const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    // The lock stays in escrow; the "refund" is a top-up of the vault from another account.
    const topUp = h.op.send([
      h.op.transfer(h.op.attackerAccount(), plan.vault, plan.lock, {
        authority: h.op.attacker.address,
      }),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: topUp }, { httpStatus: 504 });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome!.verdict).toBe("discrepancy");
    expect(outcome!.failing).toContain("refund.memo");
    const money = await reportedMoney(c, from);
    expect(money.escrowedUnits).toBe(plan.lock);
    // Nothing left escrow: nothing was refunded, and the kept lock stays unaccounted.
    expect(money.refundedUnits).toBe(0n);
    expect(money.chargedUnits).toBe(0n);
  });
});

describe("report totals against the chain: one transaction, one role", () => {
  it("counts once a second lock named by both a conflicting receipt and the jobs API", async () => {
    const c = await h.scenario();
    const from = Date.now();
    // The job id answered twice; the jobs API names the second answer's lock and settlement.
    const plan = h.op.plan({ keyIndex: 1 });
    const first = h.op.honestJob(plan);
    const second = h.op.honestJob(plan);
    expect((await c.ingest(plan, first)).status).toBe(201);
    expect((await c.ingest(plan, second)).status).toBe(409);
    c.honestJobsApi(plan, second);
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("escrow.single", "jobs_api.matches_receipt", "settlement.single"),
    ]);
    expect(await reportedMoney(c, from)).toEqual(
      movedOnChain(
        [first.escrowTx, first.settlementTx, second.escrowTx, second.settlementTx],
        [plan],
      ),
    );
  });

  for (const [name, profile] of [
    ["the escrow vault pinned", localnetProfile],
    ["no escrow vault pinned", profileSchema.parse({ ...localnetProfile, escrowVault: null })],
  ] as const) {
    it(`counts once a refund the jobs API also names as the escrow, with ${name}`, async () => {
      const c = await h.scenario(profile);
      const from = Date.now();
      const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const refundTx = h.op.send(h.op.refundIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx: refundTx }, { httpStatus: 504 });
      c.jobsApi(plan.jobId, {
        status: "refunded",
        on_chain: { escrow_tx: refundTx, settlement_tx: refundTx },
      });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("jobs_api.matches_receipt")]);
      expect(await reportedMoney(c, from)).toEqual(movedOnChain([escrowTx, refundTx], [plan]));
    });
  }

  it("counts once a transaction a conflicting receipt names as both the lock and the settlement", async () => {
    const c = await pinnedScenario();
    const from = Date.now();
    // The second answer's one transaction locks and settles the job again, both memos in it.
    const plan = h.op.plan({ keyIndex: 1 });
    const first = h.op.honestJob(plan);
    const both = h.op.send([...h.op.lockIxs(plan), ...h.op.settleIxs(plan)]).signature;
    expect((await c.ingest(plan, first)).status).toBe(201);
    expect((await c.ingest(plan, { escrowTx: both, settlementTx: both })).status).toBe(409);
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("escrow.single", "settlement.single"),
    ]);
    expect(await reportedMoney(c, from)).toEqual(
      movedOnChain([first.escrowTx, first.settlementTx, both], [plan]),
    );
  });

  it("counts once a transaction the jobs API names as both the escrow and the settlement", async () => {
    const c = await pinnedScenario();
    const from = Date.now();
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    const both = h.op.send([...h.op.lockIxs(plan), ...h.op.settleIxs(plan)]).signature;
    c.honestJobsApi(plan, { escrowTx: both, settlementTx: both });
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("escrow.single", "jobs_api.matches_receipt", "settlement.single"),
    ]);
    expect(await reportedMoney(c, from)).toEqual(
      movedOnChain([txs.escrowTx, txs.settlementTx, both], [plan]),
    );
  });

  it("counts as escrowed a lock that a receipt names as its job's settlement", async () => {
    const c = await h.scenario();
    const from = Date.now();
    // X takes a second lock from job A's vault with A's escrow memo. A's receipt names X as its
    // settlement; B's receipt names X as its escrow (B's settlement is paid from the float).
    const a = h.op.plan({ keyIndex: 1 });
    const b = h.op.plan({ keyIndex: 2 });
    const aLock = h.op.send(h.op.lockIxs(a)).signature;
    const x = h.op.send(h.op.lockIxs(a)).signature;
    const bSettle = h.op.send(h.op.settleIxs(b)).signature;
    c.record(a, { escrowTx: aLock, settlementTx: x });
    c.record(b, { escrowTx: x, settlementTx: bSettle });
    expect(await c.verdicts(a.jobId, b.jobId)).toEqual([
      discrepancy("escrow.single", "settlement.memo"),
      discrepancy("signatures.unique"),
    ]);
    const moved = movedOnChain([aLock, x, bSettle], [a, b]);
    const reported = await reportedMoney(c, from);
    // Both locks took A's credits into escrow. B's remainder went back to B's vault, which
    // no lock of B paid: a misdirected return is no job's refund, so it is left out here.
    expect(reported).toEqual({ ...moved, refundedUnits: 0n });
    expect(reported.escrowedUnits).toBe(2n * a.lock);
  });
});

describe("report totals against the chain: a lock paid straight on", () => {
  it("counts the customer's debit as escrowed, and what escrow paid on at once as charged", async () => {
    const c = await pinnedScenario();
    const from = Date.now();
    // The lock's transaction also pays the whole lock out of escrow to the operator: the escrow
    // account's balance does not move, the customer's vault and the operator's account do.
    const plan = h.op.plan({ keyIndex: 1 });
    const taker = h.op.attackerAccount(0n);
    const escrowTx = h.op.send([
      ...h.op.lockIxs(plan),
      h.op.transfer(h.op.accounts.escrowVault, taker, plan.lock),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome!.verdict).toBe("discrepancy");
    const money = await reportedMoney(c, from);
    expect(h.op.deltas(escrowTx).get(plan.vault)?.delta).toBe(-plan.lock);
    expect({
      escrowedUnits: money.escrowedUnits,
      chargedUnits: money.chargedUnits,
      refundedUnits: money.refundedUnits,
    }).toEqual({
      escrowedUnits: plan.lock,
      chargedUnits: plan.lock + plan.charge,
      refundedUnits: plan.remainder,
    });
  });
});

describe("report totals against the chain: a top-up inside the lock", () => {
  it("counts only the lock as escrowed, and nothing of the top-up as charged", async () => {
    const c = await pinnedScenario();
    const from = Date.now();
    // The lock's transaction also pays 500,000 into the customer's own vault from elsewhere:
    // the vault's balance rises, escrow's by the lock.
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send([
      h.op.transfer(h.op.attackerAccount(), plan.vault, 500_000n, {
        authority: h.op.attacker.address,
      }),
      ...h.op.lockIxs(plan),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome!.verdict).toBe("discrepancy");
    const money = await reportedMoney(c, from);
    expect({ escrowedUnits: money.escrowedUnits, chargedUnits: money.chargedUnits }).toEqual({
      escrowedUnits: plan.lock,
      chargedUnits: plan.charge,
    });
  });
});

describe("report totals against the chain: a discrepancy's figures", () => {
  it("counts as refunded the remainder paid back from the account a misdirected lock went into", async () => {
    const c = await pinnedScenario();
    const from = Date.now();
    // The lock goes into a new account of the escrow authority instead of the escrow vault,
    // and the settlement pays out of that account: the customer got the remainder back.
    const plan = h.op.plan({ keyIndex: 1 });
    const held = h.op.victimVault(0n);
    const escrowTx = h.op.send([
      h.op.transfer(plan.vault, held, plan.lock),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    const settlementTx = h.op.send([
      h.op.transfer(held, plan.worker.tokenAccount, plan.workerShare),
      h.op.transfer(held, h.op.accounts.treasury.tokenAccount, plan.treasuryShare),
      h.op.transfer(held, plan.vault, plan.remainder),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome!.verdict).toBe("discrepancy");
    expect(outcome!.failing).toContain("escrow.vault");
    expect(await reportedMoney(c, from)).toEqual({
      escrowedUnits: plan.lock,
      chargedUnits: plan.charge,
      workerPaidUnits: plan.workerShare,
      treasuryPaidUnits: plan.treasuryShare,
      refundedUnits: plan.remainder,
      feesLamports: h.op.fee(escrowTx) + h.op.fee(settlementTx),
    });
  });

  it("does not count as escrowed what a lock moved between two other customers' vaults", async () => {
    const c = await pinnedScenario();
    await c.pinKey(2);
    await c.pinKey(3);
    const from = Date.now();
    // Customer 1's lock also moves 30,000 from vault 2 to vault 3: customer 1 paid the lock only.
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send([
      ...h.op.lockIxs(plan),
      h.op.transfer(h.op.vault(2), h.op.vault(3), 30_000n),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome!.verdict).toBe("discrepancy");
    expect(h.op.deltas(escrowTx).get(plan.vault)?.delta).toBe(-plan.lock);
    expect(await reportedMoney(c, from)).toEqual(movedOnChain([escrowTx, settlementTx], [plan]));
  });

  it("does not count as escrowed what a lock drawn on another vault moved between two others", async () => {
    const c = await pinnedScenario();
    await c.pinKey(2);
    await c.pinKey(3);
    const from = Date.now();
    // Customer 1's lock takes nothing from vault 1: it locks out of vault 2 and also moves
    // 30,000 from vault 2 to vault 3. Both vaults' statements show that money.
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send([
      ...h.op.lockIxs(plan, { from: h.op.vault(2) }),
      h.op.transfer(h.op.vault(2), h.op.vault(3), 30_000n),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome!.failing).toContain("escrow.source");
    const money = await reportedMoney(c, from);
    const onChain = movedOnChain([escrowTx, settlementTx], [plan]);
    expect({ escrowedUnits: money.escrowedUnits, chargedUnits: money.chargedUnits }).toEqual({
      escrowedUnits: onChain.escrowedUnits,
      chargedUnits: onChain.chargedUnits,
    });
  });

  it("does not count as escrowed or charged a second lock drawn wholly on another vault", async () => {
    const c = await pinnedScenario();
    await c.pinKey(2);
    const from = Date.now();
    // The receipt names an honest lock; the jobs API names a second "lock" of the job that
    // moves 70,000 from vault 2 to the attacker: customer 2's money, in vault 2's statement.
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const secondLock = h.op.send([
      h.op.transfer(h.op.vault(2), h.op.attackerAccount(0n), 70_000n),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    c.honestJobsApi(plan, { escrowTx: secondLock, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome!.verdict).toBe("discrepancy");
    const money = await reportedMoney(c, from);
    expect({ escrowedUnits: money.escrowedUnits, chargedUnits: money.chargedUnits }).toEqual({
      escrowedUnits: plan.lock,
      chargedUnits: plan.charge,
    });
  });

  it("counts as refunded only what an account held of the job's lock, not more it paid back", async () => {
    const c = await pinnedScenario();
    await c.pinKey(2);
    const from = Date.now();
    // Job A is honest but its 40,000 remainder goes to the attacker.
    const a = h.op.plan({ keyIndex: 1 });
    const attacker = h.op.attackerAccount(0n);
    const lockA = h.op.send(h.op.lockIxs(a)).signature;
    const settleA = h.op.send(h.op.settleIxs(a, { remainderTo: attacker })).signature;
    c.record(a, { escrowTx: lockA, settlementTx: settleA });
    // Job B's lock takes 10,000 more from vault 1 into account H, and 40,000 from vault 2 into
    // H too; its settlement is honest, and H pays all 50,000 into vault 1 under its memo.
    const b = h.op.plan({ keyIndex: 1 });
    const held = h.op.attackerAccount(0n);
    const lockB = h.op.send([
      ...h.op.lockIxs(b),
      h.op.transfer(b.vault, held, 10_000n),
      h.op.transfer(h.op.vault(2), held, 40_000n),
    ]).signature;
    const settleB = h.op.send([
      ...h.op.settleIxs(b).slice(0, -1),
      h.op.transfer(held, b.vault, 50_000n, { authority: h.op.attacker.address }),
      h.op.memo(`decentral:settle:${b.jobId}`),
    ]).signature;
    c.record(b, { escrowTx: lockB, settlementTx: settleB });
    const outcomes = await c.verdicts(a.jobId, b.jobId);
    expect(outcomes.map((o) => o.verdict)).toEqual(["discrepancy", "discrepancy"]);
    const totals = (
      await reconciliationReport(c.store, { from, to: Date.now() + 60_000, groupBy: "day" })
    ).totals;
    // B's refund is its remainder and the 10,000 H held of its lock: customer 2's 40,000 that
    // H passed on is not this customer's refund, and A's stolen remainder stays unaccounted.
    expect({ refunded: totals.refundedUnits, unaccounted: totals.unaccountedUnits }).toEqual({
      refunded: b.remainder + 10_000n,
      unaccounted: a.remainder,
    });
  });

  it("counts the worker's pay of a settlement that also carries the job's refund memo", async () => {
    const c = await pinnedScenario();
    const from = Date.now();
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send([
      ...h.op.settleIxs(plan),
      h.op.memo(`decentral:refund:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    const [outcome] = await c.verdicts(plan.jobId);
    expect(outcome!.verdict).toBe("discrepancy");
    expect(await reportedMoney(c, from)).toEqual(movedOnChain([escrowTx, settlementTx], [plan]));
  });
});

describe("a signature that never lands, beside transactions that did", () => {
  // With 10 ms slots a signature unseen 50 slots after its first miss is dropped in ~0.5 s.
  const quickDrop = { ...localnetProfile, dropAfterSlots: 50 };
  it("judges and counts the lock of a job whose only settlement never lands: dropped", async () => {
    const c = await h.scenario(quickDrop);
    await c.pinKey(1);
    const from = Date.now();
    // The operator keeps the whole lock in escrow and answers with a made-up settlement.
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx: madeUpSignature() });
    expect(await c.verdicts(plan.jobId)).toEqual([
      { verdict: "dropped", failing: ["settlement.exists"] },
    ]);
    expect((await c.check(plan.jobId, "escrow.source"))?.outcome).toBe("pass");
    expect(await reportedMoney(c, from)).toEqual(movedOnChain([escrowTx], [plan]));
    const totals = (
      await reconciliationReport(c.store, { from, to: Date.now() + 60_000, groupBy: "day" })
    ).totals;
    // The lock is disputed money, all of it still in escrow.
    expect({
      disputed: totals.disputedEscrowedUnits,
      unaccounted: totals.unaccountedUnits,
    }).toEqual({ disputed: plan.lock, unaccounted: plan.lock });
  });

  it("finds the overcharge of a job whose jobs API names a settlement that never lands", async () => {
    const c = await h.scenario(quickDrop);
    await c.pinKey(1);
    const from = Date.now();
    // The settlement keeps the whole lock (charges 16 credits for a 12-credit job); the jobs
    // API names a settlement that never lands instead of it.
    const plan = h.op.plan({ keyIndex: 1 });
    const workerShare = (plan.lock * 85n) / 100n;
    const over = {
      ...plan,
      charge: plan.lock,
      workerShare,
      treasuryShare: plan.lock - workerShare,
      remainder: 0n,
    };
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send(h.op.settleIxs(over)).signature;
    c.record(plan, { escrowTx, settlementTx });
    c.honestJobsApi(over, { escrowTx, settlementTx: madeUpSignature() });
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("charge.matches_price", "settlement.exists"),
    ]);
    expect(await reportedMoney(c, from)).toEqual(movedOnChain([escrowTx, settlementTx], [plan]));
  });

  it("judges a second lock of a job whose second answer names a settlement that never lands", async () => {
    const c = await h.scenario(quickDrop);
    const from = Date.now();
    const plan = h.op.plan({ keyIndex: 1 });
    const first = h.op.honestJob(plan);
    const secondLock = h.op.send(h.op.lockIxs(plan)).signature;
    expect((await c.ingest(plan, first)).status).toBe(201);
    const again = await c.ingest(plan, { escrowTx: secondLock, settlementTx: madeUpSignature() });
    expect(again.status).toBe(409);
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("escrow.single", "settlement.exists"),
    ]);
    expect(await reportedMoney(c, from)).toEqual(
      movedOnChain([first.escrowTx, first.settlementTx, secondLock], [plan]),
    );
  });

  it("keeps an honest job judged and counted when the jobs API later names a settlement that never lands", async () => {
    const c = await h.scenario(quickDrop);
    const from = Date.now();
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    c.honestJobsApi(plan, { escrowTx: txs.escrowTx, settlementTx: madeUpSignature() });
    // What landed is right: the made-up signature is the one finding.
    expect(await c.verdicts(plan.jobId)).toEqual([
      { verdict: "dropped", failing: ["settlement.exists"] },
    ]);
    expect((await c.check(plan.jobId, "charge.matches_price"))?.outcome).toBe("pass");
    expect((await c.check(plan.jobId, "settlement.exists"))?.expected).toMatchObject({
      namedBy: ["jobs API"],
    });
    expect(await reportedMoney(c, from)).toEqual(
      movedOnChain([txs.escrowTx, txs.settlementTx], [plan]),
    );
  });

  it("finds a lock from another customer's vault when the node no longer serves the settlement", async () => {
    const c = await h.scenario(quickDrop);
    await c.pinKey(1);
    const from = Date.now();
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan, { from: h.op.vault(2) })).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    await c.flush();
    // A node that has pruned the settlement: finalized, but its transaction is not served.
    const pruning: VerifierRpc = {
      getSignatureStatuses: (sigs) => h.rpc.getSignatureStatuses(sigs),
      getTransaction: (sig) =>
        sig === settlementTx ? Promise.resolve(null) : h.rpc.getTransaction(sig),
      getSlot: () => h.rpc.getSlot(),
    };
    const verifier = createVerifier({
      store: c.store,
      rpc: pruning,
      profile: c.profile,
      log,
      options: {
        pollIntervalMs: 20,
        errorBackoffMs: 20,
        backfillWaitMs: 20,
        maxFetchMisses: 2,
        fetchMissSpanMs: 0,
      },
    });
    const summary = await verifier.runUntilSettled({}, { timeoutMs: 20_000 });
    expect(summary.status).toBe("completed");
    expect(await c.outcome(plan.jobId)).toEqual(discrepancy("escrow.source"));
    expect((await c.check(plan.jobId, "settlement.exists"))?.outcome).toBe("skip");
    const reported = await reportedMoney(c, from);
    expect(reported.escrowedUnits).toBe(movedOnChain([escrowTx], [plan]).escrowedUnits);
    expect(reported.feesLamports).toBe(h.op.fee(escrowTx));
  });
});

describe("what the operator's response headers can do to the record", () => {
  it("records every receipt when one response claims an absurd credits-remaining", async () => {
    const store = createTestStore();
    const ids = [jobId(), jobId()];
    let served = 0;
    // The upstream answers the first call with a credits-remaining header above 2^63 base
    // units (the ingest API refuses such a value; the proxy takes it), the second honestly.
    const upstream = closedAfterTest(
      await listen(
        http.createServer(async (req, res) => {
          for await (const _ of req) {
            // drain the body
          }
          const n = served++;
          res.writeHead(200, {
            "content-type": "application/json",
            "x-decentral-job-id": ids[n] ?? jobId(),
            "x-decentral-tx-signature": signature(),
            "x-decentral-settlement-tx": signature(),
            "x-decentral-worker": address(),
            "x-decentral-credits-remaining": n === 0 ? "100000000000000000" : "991.5",
          });
          res.end(
            JSON.stringify({
              model: "qwen3-8b",
              choices: [],
              usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
            }),
          );
        }),
      ),
    );
    const proxy = createRecordingProxy({ store, log, upstreamBaseUrl: `${upstream.url}/v1` });
    // Not closed: proxy.close() would wait for the flush that never succeeds.
    const app = closedAfterTest(await serveApp({ store, log, proxy }));
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${app.url}/v1/chat/completions`, {
        method: "POST",
        headers: {
          authorization: "Bearer dcntrl_live_abcdefghijklmnopqrstuvwxyz012345",
          "content-type": "application/json",
        },
        body: JSON.stringify({ model: "qwen3-8b", max_tokens: 300, messages: [] }),
      });
      expect(res.status).toBe(200);
      await res.text();
      // The next response comes in a later turn: its receipt is written in its own batch.
      await new Promise((r) => setTimeout(r, 300));
    }
    await new Promise((r) => setTimeout(r, 500));
    const recorded = store.sqlite
      .prepare("SELECT job_id FROM jobs ORDER BY job_id")
      .pluck()
      .all() as string[];
    // Today neither job is recorded: the failed batch is retried for ever, and every later
    // receipt joins it, so one header blinds the audit of every job that follows.
    expect(recorded).toEqual([...ids].sort());
  });
});

describe("ideas that are already handled", () => {
  it("worker paid from another user's vault while the escrow pays the attacker: settlement.balances", async () => {
    const c = await pinnedScenario();
    const attacker = h.op.attackerAccount(0n);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, { workerAccount: attacker }),
      h.op.transfer(h.op.vault(3), plan.worker.tokenAccount, plan.workerShare),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.balances")]);
  });

  it("escrow debited beyond the lock with the excess sent to the credit vault: settlement.conserves_lock", async () => {
    const c = await pinnedScenario();
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send(
      h.op.settleIxs(plan, { remainder: plan.remainder + 50_000n }),
    ).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.conserves_lock")]);
  });

  it("zero-delta churn through another user's vault inside an honest settlement moves nothing: verified", async () => {
    const c = await pinnedScenario();
    const attacker = h.op.attackerAccount(0n);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send([
      ...h.op.settleIxs(plan),
      h.op.transfer(h.op.vault(3), attacker, 70_000n),
      h.op.transfer(attacker, h.op.vault(3), 70_000n, { authority: h.op.attacker.address }),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });

  it("a lock taken by a delegate approved earlier fails escrow.source: its owner did not sign it", async () => {
    const c = await pinnedScenario();
    const plan = h.op.plan({ keyIndex: 1 });
    h.op.send([h.op.approve(plan.vault, h.op.attacker.address, plan.lock)]);
    const escrowTx = h.op.send(h.op.lockIxs(plan, { authority: h.op.attacker.address })).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
  });

  it("two settlements of one job, one in the headers and one from the jobs API: settlement.single", async () => {
    const c = await pinnedScenario();
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    const second = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, txs);
    c.jobsApi(plan.jobId, {
      status: "settled",
      credits_charged: Number(plan.charge / 10_000n),
      worker_address: plan.worker.address,
      on_chain: { escrow_tx: txs.escrowTx, settlement_tx: second },
    });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancyIncluding("settlement.single")]);
  });

  it("a failed transaction named as the settlement: settlement.succeeded", async () => {
    const c = await pinnedScenario();
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send(
      [...h.op.settleIxs(plan), h.op.transfer(h.op.vault(4), plan.vault, 10n ** 9n)],
      { expectFailure: true },
    ).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.succeeded")]);
  });

  it("a settlement memo naming a longer job id that starts with this one: settlement.memo", async () => {
    const c = await pinnedScenario();
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan),
      h.op.memo(`decentral:settle:${plan.jobId}x`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.memo")]);
  });

  it("a refund named by the jobs API next to a settlement in the headers: refund.not_settled", async () => {
    const c = await pinnedScenario();
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    const refund = h.op.send(h.op.refundIxs(plan)).signature;
    c.record(plan, txs);
    c.jobsApi(plan.jobId, {
      status: "settled",
      worker_address: plan.worker.address,
      on_chain: { escrow_tx: txs.escrowTx, settlement_tx: refund },
    });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancyIncluding("refund.not_settled")]);
  });
});

describe("the time a receipt gives itself", () => {
  it("does not place a job's money in a period its chain lock is far from", async () => {
    const c = await pinnedScenario();
    // Reports count a job in the period of its receipt's time, which an ingest or import may
    // set to any date: years before the lock, or years after it.
    const honestJob = async (createdAt?: number) => {
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx }, createdAt === undefined ? {} : { createdAt });
      return plan.jobId;
    };
    const past = await honestJob(Date.UTC(2021, 2, 1));
    const future = await honestJob(Date.UTC(2099, 11, 31));
    const now = await honestJob();
    const stamped = await honestJob(Date.now() + 30_000);
    expect(await c.verdicts(past, future, now, stamped)).toEqual([
      discrepancy("receipt.time"),
      discrepancy("receipt.time"),
      verified,
      verified,
    ]);
  });
});
