import http from "node:http";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { type Store, sqliteStoreOver } from "../src/db/client.js";
import { openPostgres } from "../src/db/pg/client.js";
import { localApiKey } from "../src/localnet/keys.js";
import { createLogger } from "../src/log.js";
import { parseJobsApiAnswer } from "../src/recorder/jobs-api.js";
import { createRecordingProxy } from "../src/recorder/proxy.js";
import { createSettlementBackfill } from "../src/recorder/settlement-backfill.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { type Dialect, dialects, useDialectStores } from "./support/dialects.js";
import { rerunMigrationUpdates } from "./support/migration-rerun.js";
import {
  type AdversaryHarness,
  AuthorityType,
  discrepancy,
  fingerprintOfKey,
  newJobId,
  Scenario,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";
import { connectionsLeftOpen, usePostgresDatabase } from "./support/postgres.js";
import { closedAfterTest, listen, serveApp } from "./support/recorder-fixtures.js";
import { updateSignature } from "./support/seed-queue.js";
import { readJob, updateJob } from "./support/seed-recorder.js";
import { createTestStore } from "./support/store.js";

/**
 * The operator signs every byte of the escrow, settlement and refund transactions and holds
 * every local key. Each test below is one way it could try to take money while the receipts
 * still look right, sent as real signed transactions to the local chain; the verifier must end
 * the job in `discrepancy` with exactly the checks the fraud breaks (one cause, one check).
 * Honest jobs built the same way must still verify.
 *
 * Amounts (qwen3-8b, 640 completion tokens, no max_tokens): lock 160000, charge 120000,
 * staked worker 102000, treasury 18000, remainder 40000.
 *
 * What "exactly the checks it breaks" assumes:
 * - `X.instructions` failing skips `X.balances`; `X.balances` fails only for changes that no
 *   more specific check owns (a foreign vault is `escrow.source`, an unpaid worker is
 *   `settlement.worker_paid`, escrow money paid to an unknown account is
 *   `settlement.recipients`);
 * - `escrow.source` owns both where the lock came from and where the remainder or refund went;
 * - a lock below the charge is `escrow.covers_charge` alone (conservation then says nothing new);
 * - a replayed transaction (another job's, or one named for two steps of a job) fails
 *   `signatures.unique` alone: its own checks defer to it;
 * - each scenario has its own store; `pinKey` verifies a first honest job of the key, so its
 *   credit vault is learned before the fraud is looked at (`pinnedScenario`: a store that
 *   holds key 1's, pinned before the case).
 */

/**
 * One local world for both dialects' scenarios: each scenario has its own store, and the chain
 * already serves every scenario of a dialect, so a second world only cost its start again.
 */
const world = useAdversaryHarness();

/**
 * Scenarios (localnet profile) whose store already holds what `pinKey(1)` leaves: key 1's first
 * honest job, verified, so its credit vault is known. Each store is a copy of one pinned once
 * for the dialect: pinning in every case was a verifier run of its own, about a third of a
 * PostgreSQL case on a loaded 2-core runner. Stores are closed after their test.
 */
function usePinnedScenarios(dialect: Dialect, harness: () => AdversaryHarness) {
  const database = dialect === "postgres" ? usePostgresDatabase() : null;
  const pool = { poolSize: 4, statementTimeoutMs: 30_000 };
  const opened: Store[] = [];
  let copies: Promise<() => Promise<Store>> | undefined;
  // The next PostgreSQL copy, made while the test that took the last one runs.
  let spare: Promise<string> | undefined;
  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
  });
  afterAll(async () => {
    await spare?.catch(() => undefined);
  });
  const pinOnce = async (): Promise<() => Promise<Store>> => {
    if (database === null) {
      const store = createTestStore();
      await new Scenario(harness(), localnetProfile, store).pinKey(1);
      const bytes = store.sqlite.serialize();
      store.close();
      return async () => sqliteStoreOver(new Database(bytes));
    }
    const url = await database.createMigrated();
    const store = openPostgres(url, pool);
    try {
      await new Scenario(harness(), localnetProfile, store).pinKey(1);
    } finally {
      await store.close();
    }
    // A database is copied only while nobody is connected to it.
    await connectionsLeftOpen([decodeURIComponent(new URL(url).pathname.slice(1))]);
    const copy = () => database.create({ template: url });
    return async () => {
      const taken = spare ?? copy();
      spare = taken.then(copy, copy);
      spare.catch(() => undefined);
      return openPostgres(await taken, pool);
    };
  };
  return async (): Promise<Scenario> => {
    copies ??= pinOnce();
    const store = await (await copies)();
    opened.push(store);
    return new Scenario(harness(), localnetProfile, store);
  };
}

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  let h: AdversaryHarness;
  const pinnedScenario = usePinnedScenarios(dialect, () => h);
  beforeAll(() => {
    h = {
      ...world,
      scenario: async (profile = localnetProfile) => new Scenario(h, profile, await stores.open()),
    };
  });

  describe("honest jobs built by hand", () => {
    it("verifies a normal job that is its key's first lock, with the jobs API agreeing", async () => {
      const c = await h.scenario();
      const plan = h.op.plan({ keyIndex: 0 });
      const txs = h.op.honestJob(plan);
      c.record(plan, txs);
      c.honestJobsApi(plan, txs);
      expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    });

    it("verifies a later job of a pinned key paid to an unstaked worker", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({
        keyIndex: 1,
        workerIndex: 2,
        model: "llama-3.3-70b",
        maxTokens: 800,
      });
      const txs = h.op.honestJob(plan);
      c.record(plan, txs);
      expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    });

    it("verifies a 504 whose whole lock went back to the key's credit vault", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const refundTx = h.op.send(h.op.refundIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx: refundTx }, { httpStatus: 504 });
      expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    });

    it("verifies a settlement made of plain Transfer instructions in a version-0 transaction", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const escrow = h.op.accounts.escrowVault;
      const escrowTx = h.op.send([
        h.op.plainTransfer(plan.vault, escrow, plan.lock),
        h.op.memo(`decentral:escrow:${plan.jobId}`),
      ]).signature;
      const settlementTx = h.op.send(
        [
          h.op.plainTransfer(escrow, plan.worker.tokenAccount, plan.workerShare),
          h.op.plainTransfer(escrow, h.op.accounts.treasury.tokenAccount, plan.treasuryShare),
          h.op.plainTransfer(escrow, plan.vault, plan.remainder),
          h.op.memo(`decentral:settle:${plan.jobId}`),
        ],
        { version: 0 },
      ).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    });

    it("ends a stream without usage partially verified: its charge is bounded by the lock only", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(plan);
      c.record(plan, txs, {
        stream: true,
        promptTokens: null,
        completionTokens: null,
        totalTokens: null,
      });
      expect(await c.verdicts(plan.jobId)).toEqual([
        { verdict: "partially_verified", failing: [] },
      ]);
    });
    it("ends a job of an unpriced model partially verified: its price is unknown", async () => {
      const c = await pinnedScenario();
      // Asked for and answered by a model the profile has no price for.
      const plan = {
        ...h.op.plan({ keyIndex: 1 }),
        model: "mystery-13b",
        requestedModel: "mystery-13b",
      };
      c.record(plan, h.op.honestJob(plan));
      expect(await c.verdicts(plan.jobId)).toEqual([
        { verdict: "partially_verified", failing: [] },
      ]);
    });

    it("ends a job whose receipt ties it to no key partially verified: its vault is unproven", async () => {
      const c = await h.scenario();
      const plan = h.op.plan({ keyIndex: 1 });
      c.record(plan, h.op.honestJob(plan), { keyFingerprint: null });
      expect(await c.verdicts(plan.jobId)).toEqual([
        { verdict: "partially_verified", failing: [] },
      ]);
    });
  });

  describe("frauds in the escrow lock", () => {
    it("catches a lock funded from another user's credit vault once the key's vault is pinned", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const other = h.op.vault(2);
      const escrowTx = h.op.send(h.op.lockIxs(plan, { from: other })).signature;
      // The remainder goes back where the lock came from, so only the source is wrong.
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(plan, { remainderTo: other }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
    });

    it("catches an attacker who adds 1 base unit to the lock and takes the remainder", async () => {
      const c = await pinnedScenario();
      const attacker = h.op.attackerAccount(10n);
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send([
        ...h.op.lockIxs(plan),
        h.op.transfer(attacker, h.op.accounts.escrowVault, 1n, {
          authority: h.op.attacker.address,
        }),
      ]).signature;
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(plan, { remainder: plan.remainder + 1n, remainderTo: attacker }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
    });

    it("catches an Approve that makes the attacker a delegate of the credit vault inside the lock", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send([
        ...h.op.lockIxs(plan),
        h.op.approve(plan.vault, h.op.attacker.address, 5_000_000n),
      ]).signature;
      const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.instructions")]);
    });

    it("catches a lock that also closes another user's empty token account", async () => {
      const c = await pinnedScenario();
      const victim = h.op.victimVault(0n);
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send([
        ...h.op.lockIxs(plan),
        h.op.closeAccount(victim, h.op.attacker.address),
      ]).signature;
      const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.instructions")]);
    });

    it("catches a lock paid into an account that is not the escrow vault", async () => {
      const c = await pinnedScenario();
      const attacker = h.op.attackerAccount(0n);
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send([
        h.op.transfer(plan.vault, attacker, plan.lock),
        h.op.memo(`decentral:escrow:${plan.jobId}`),
      ]).signature;
      const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
    });

    it("catches a lock into another customer's credit vault when the profile pins no escrow vault", async () => {
      // Per-job escrow accounts: the lock's escrow account is the one account it credited.
      const c = await h.scenario({ ...localnetProfile, escrowVault: null });
      await c.pinKey(1);
      await c.pinKey(2);
      const other = h.op.vault(2);
      // A settled job and a 504: each lock goes into customer 2's vault and is paid back out of
      // it as if it were escrow, the worker and treasury paid, customer 1 given back the rest.
      const settled = h.op.plan({ keyIndex: 1 });
      const settledLock = h.op.send([
        h.op.transfer(settled.vault, other, settled.lock),
        h.op.memo(`decentral:escrow:${settled.jobId}`),
      ]).signature;
      const settlementTx = h.op.send([
        h.op.transfer(other, settled.worker.tokenAccount, settled.workerShare),
        h.op.transfer(other, h.op.accounts.treasury.tokenAccount, settled.treasuryShare),
        h.op.transfer(other, settled.vault, settled.remainder),
        h.op.memo(`decentral:settle:${settled.jobId}`),
      ]).signature;
      c.record(settled, { escrowTx: settledLock, settlementTx });
      const timedOut = h.op.plan({ keyIndex: 1, completionTokens: null });
      const timedOutLock = h.op.send([
        h.op.transfer(timedOut.vault, other, timedOut.lock),
        h.op.memo(`decentral:escrow:${timedOut.jobId}`),
      ]).signature;
      const refundTx = h.op.send([
        h.op.transfer(other, timedOut.vault, timedOut.lock),
        h.op.memo(`decentral:refund:${timedOut.jobId}`),
      ]).signature;
      c.record(timedOut, { escrowTx: timedOutLock, settlementTx: refundTx }, { httpStatus: 504 });
      expect(await c.verdicts(settled.jobId, timedOut.jobId)).toEqual([
        discrepancy("escrow.vault"),
        discrepancy("escrow.vault"),
      ]);
      const check = await c.check(settled.jobId, "escrow.vault");
      expect(check?.reason).toContain(
        `the credit vault of another API key (${fingerprintOfKey(2)})`,
      );
      expect(check?.actual).toMatchObject({ vault: other });
    });

    it("catches locks into an account the attacker owns when the profile pins no escrow vault", async () => {
      // Per-job escrow accounts: the one account each lock credits is taken for its escrow.
      const c = await h.scenario({ ...localnetProfile, escrowVault: null });
      await c.pinKey(1);
      const held = h.op.attackerAccount(0n);
      // Two jobs lock into the attacker's account and are paid out of it as if it were escrow:
      // between lock and settlement the attacker alone could spend the customer's credits.
      const plans = [h.op.plan({ keyIndex: 1 }), h.op.plan({ keyIndex: 1 })];
      for (const plan of plans) {
        const escrowTx = h.op.send([
          h.op.transfer(plan.vault, held, plan.lock),
          h.op.memo(`decentral:escrow:${plan.jobId}`),
        ]).signature;
        const payer = { from: held, authority: h.op.attacker.address };
        const settlementTx = h.op.send(h.op.settleIxs(plan, payer)).signature;
        c.record(plan, { escrowTx, settlementTx });
      }
      expect(await c.verdicts(...plans.map((p) => p.jobId))).toEqual([
        discrepancy("escrow.vault"),
        discrepancy("escrow.vault"),
      ]);
      const check = await c.check(plans[0]!.jobId, "escrow.vault");
      expect(check?.reason).toContain(`owned by ${h.op.attacker.address}`);
      expect(check?.actual).toMatchObject({ vault: held, owner: h.op.attacker.address });
    });

    it.each([
      ["before", true],
      ["after", false],
    ])(
      "catches a lock into the credit vault of a key whose first lock is judged beside it (recorded %s it)",
      async (_, firstBefore) => {
        // Per-job escrow accounts; key 2 has no pin when the two jobs' checks read the pins.
        const c = await h.scenario({ ...localnetProfile, escrowVault: null });
        await c.pinKey(1);
        const other = h.op.vault(2);
        const first = h.op.plan({ keyIndex: 2 });
        const firstTxs = h.op.honestJob(first);
        const plan = h.op.plan({ keyIndex: 1 });
        const escrowTx = h.op.send([
          h.op.transfer(plan.vault, other, plan.lock),
          h.op.memo(`decentral:escrow:${plan.jobId}`),
        ]).signature;
        const settlementTx = h.op.send([
          h.op.transfer(other, plan.worker.tokenAccount, plan.workerShare),
          h.op.transfer(other, h.op.accounts.treasury.tokenAccount, plan.treasuryShare),
          h.op.transfer(other, plan.vault, plan.remainder),
          h.op.memo(`decentral:settle:${plan.jobId}`),
        ]).signature;
        if (firstBefore) c.record(first, firstTxs);
        c.record(plan, { escrowTx, settlementTx });
        if (!firstBefore) c.record(first, firstTxs);
        expect(await c.verdicts(first.jobId, plan.jobId)).toEqual([
          verified,
          discrepancy("escrow.vault"),
        ]);
        expect((await c.check(plan.jobId, "escrow.vault"))?.reason).toContain(
          `the credit vault of another API key (${fingerprintOfKey(2)})`,
        );
      },
    );

    it("catches a lock below the charge", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const lock = plan.charge - 20_000n;
      const escrowTx = h.op.send(h.op.lockIxs(plan, { amount: lock })).signature;
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(plan, { remainder: 0n }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.covers_charge")]);
    });

    it("catches a lock 1000 times the price at max_tokens, even with the rest returned", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1, maxTokens: 2000 });
      // 160,000 is the most this job can cost; the lock ties up 160,000,000 of the vault.
      const lock = plan.lock * 1000n;
      const escrowTx = h.op.send(h.op.lockIxs(plan, { amount: lock })).signature;
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(plan, { remainder: lock - plan.charge }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.within_ceiling")]);
    });

    it("catches an over-lock of a proxied request that set no max_tokens, at the default", async () => {
      const c = await pinnedScenario();
      const over = async (source: "proxy" | "ingest") => {
        const plan = h.op.plan({ keyIndex: 1 });
        const lock = plan.lock * 2n;
        const escrowTx = h.op.send(h.op.lockIxs(plan, { amount: lock })).signature;
        const settlementTx = h.op.send([
          ...h.op.payoutIxs(plan, { remainder: lock - plan.charge }),
          h.op.memo(`decentral:settle:${plan.jobId}`),
        ]).signature;
        return c.record(plan, { escrowTx, settlementTx }, { maxTokens: null }, source);
      };
      const proxied = await over("proxy");
      // An ingested receipt may leave max_tokens out whatever the request said: no ceiling.
      const ingested = await over("ingest");
      expect(await c.verdicts(proxied, ingested)).toEqual([
        discrepancy("escrow.within_ceiling"),
        verified,
      ]);
    });

    it("catches a 504 whose over-lock came back whole", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1, maxTokens: 2000, completionTokens: null });
      const lock = plan.lock * 1000n;
      const escrowTx = h.op.send(h.op.lockIxs(plan, { amount: lock })).signature;
      const refundTx = h.op.send(h.op.refundIxs({ ...plan, lock })).signature;
      c.record(plan, { escrowTx, settlementTx: refundTx }, { httpStatus: 504 });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.within_ceiling")]);
    });

    it("catches a failed escrow followed by a normal settlement, as the escrow's failure alone", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      // The lock is there, but a later instruction overdraws the low-balance vault: the whole
      // transaction fails on chain, pays its fee and moves nothing.
      const escrowTx = h.op.send(
        [...h.op.lockIxs(plan), h.op.transfer(h.op.vault(4), h.op.accounts.escrowVault, 10n ** 9n)],
        { expectFailure: true },
      ).signature;
      const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.succeeded")]);
    });

    it("catches an escrow whose memo was sent in a separate transaction, as one failing check", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send([
        h.op.transfer(plan.vault, h.op.accounts.escrowVault, plan.lock),
      ]).signature;
      h.op.send([h.op.memo(`decentral:escrow:${plan.jobId}`)]);
      const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.memo")]);
    });

    it("catches one lock whose memos name two jobs, each then settled", async () => {
      const c = await pinnedScenario();
      const a = h.op.plan({ keyIndex: 1 });
      const b = h.op.plan({ keyIndex: 1 });
      // One lock for two jobs; the escrow vault's float pays the second settlement.
      const escrowTx = h.op.send([
        ...h.op.lockIxs(a),
        h.op.memo(`decentral:escrow:${b.jobId}`),
      ]).signature;
      const settleA = h.op.send(h.op.settleIxs(a)).signature;
      const settleB = h.op.send(h.op.settleIxs(b)).signature;
      c.record(a, { escrowTx, settlementTx: settleA });
      c.record(b, { escrowTx, settlementTx: settleB });
      expect(await c.verdicts(a.jobId, b.jobId)).toEqual([
        discrepancy("escrow.memo"),
        discrepancy("escrow.memo"),
      ]);
    });
  });

  describe("frauds in the settlement", () => {
    it("catches one settlement whose memos name two jobs and pays once", async () => {
      const c = await pinnedScenario();
      const a = h.op.plan({ keyIndex: 1 });
      const b = h.op.plan({ keyIndex: 1 });
      const escrowA = h.op.send(h.op.lockIxs(a)).signature;
      const escrowB = h.op.send(h.op.lockIxs(b)).signature;
      const shared = h.op.send([
        ...h.op.payoutIxs(a),
        h.op.memo(`decentral:settle:${a.jobId}`),
        h.op.memo(`decentral:settle:${b.jobId}`),
      ]).signature;
      c.record(a, { escrowTx: escrowA, settlementTx: shared });
      c.record(b, { escrowTx: escrowB, settlementTx: shared });
      expect(await c.verdicts(a.jobId, b.jobId)).toEqual([
        discrepancy("settlement.memo"),
        discrepancy("settlement.memo"),
      ]);
    });

    it("catches a settlement whose memos also name a job nobody recorded", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.settleIxs(plan),
        h.op.memo(`decentral:settle:${newJobId()}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.memo")]);
    });

    it("catches a correct settlement that also burns another user's credits", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.settleIxs(plan),
        h.op.burn(h.op.vault(3), 50_000n),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.instructions")]);
    });

    it("catches a correct settlement that also makes the attacker owner of a user's vault", async () => {
      const c = await pinnedScenario();
      const victim = h.op.victimVault(500_000n);
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.settleIxs(plan),
        h.op.setAuthority(victim, AuthorityType.AccountOwner, h.op.attacker.address),
      ]).signature;
      // Later the attacker drains the vault in a transaction that names no job.
      const drain = h.op.attackerAccount(0n);
      h.op.send([h.op.transfer(victim, drain, 500_000n, { authority: h.op.attacker.address })]);
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.instructions")]);
    });

    it("catches a correct settlement that also mints new credits to the attacker", async () => {
      const c = await pinnedScenario();
      const attacker = h.op.attackerAccount(0n);
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.settleIxs(plan),
        h.op.mintTo(h.op.accounts.mint, attacker, 70_000n),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.instructions")]);
    });

    it("catches a CloseAccount made by another program inside the settlement (an inner instruction)", async () => {
      const c = await pinnedScenario();
      const nested = h.op.nestedAccounts(30_000n);
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.settleIxs(plan),
        h.op.recoverNestedIx(nested),
      ]).signature;
      expect(h.op.chain.transaction(settlementTx)?.innerInstructions.length).toBeGreaterThan(0);
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.instructions")]);
    });

    it("catches a correct settlement plus a transfer from another user's vault to the attacker", async () => {
      const c = await pinnedScenario();
      const attacker = h.op.attackerAccount(0n);
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.settleIxs(plan),
        h.op.transfer(h.op.vault(3), attacker, 90_000n),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.balances")]);
    });

    it("catches a correct settlement plus a Token-2022 transfer out of an account the escrow authority owns", async () => {
      const c = await pinnedScenario();
      const mint = h.op.createToken2022Mint();
      const held = h.op.createToken2022Account(h.op.escrowAuthority.address, mint, 1_000_000n);
      const attacker = h.op.createToken2022Account(h.op.attacker.address, mint);
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.settleIxs(plan),
        h.op.transfer2022(held, attacker, 1_000_000n, mint),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.balances")]);
    });

    it("leaves unproven a worker the profile's pinned workers do not name: the operator's own wallet", async () => {
      const c = await h.scenario();
      await c.pinKey(3);
      // The operator names its own wallet as the worker and pays it the unstaked share: a
      // wallet the registry (the profile's pinned rates) does not know takes the worker's pay.
      const plan = h.op.plan({ keyIndex: 3 });
      const share = (plan.charge * 7500n) / 10_000n;
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(plan, {
          workerShare: share,
          treasuryShare: plan.charge - share,
          workerAccount: h.op.attackerAccount(0n),
        }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx }, { worker: h.op.attacker.address });
      expect(await c.verdicts(plan.jobId)).toEqual([
        { verdict: "partially_verified", failing: [] },
      ]);
      expect(await c.check(plan.jobId, "settlement.split")).toMatchObject({
        outcome: "skip",
        reason: expect.stringContaining("is not among the profile's pinned workers"),
      });
    });

    it("catches a worker paid in a fake mint while the attacker takes the worker's USDC", async () => {
      const c = await pinnedScenario();
      const fake = h.op.createFakeMint();
      const attackerFake = h.op.createTokenAccount(h.op.attacker.address, fake, 10_000_000n);
      const plan = h.op.plan({ keyIndex: 1 });
      const workerFake = h.op.createTokenAccount(plan.worker.address, fake);
      const attacker = h.op.attackerAccount(0n);
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(plan, { workerAccount: attacker }),
        h.op.transfer(attackerFake, workerFake, plan.workerShare, {
          mint: fake,
          authority: h.op.attacker.address,
        }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([
        discrepancy("settlement.balances", "settlement.worker_paid"),
      ]);
    });

    it("catches the treasury's share paid to a stranger", async () => {
      const c = await pinnedScenario();
      const stranger = h.op.attackerAccount(0n);
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(plan, { treasuryAccount: stranger }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.recipients")]);
    });

    it("catches the remainder returned to another user's credit vault", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(plan, { remainderTo: h.op.vault(2) }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
    });

    it("catches the remainder returned to the key's vault after its owner was changed to the attacker", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      // A transaction of its own, naming no job: no check of the job reads it.
      h.op.send([h.op.setAuthority(plan.vault, AuthorityType.AccountOwner, h.op.attacker.address)]);
      onTestFinished(() => h.op.giveBackVault(plan.vault));
      const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
      const check = await c.check(plan.jobId, "escrow.source");
      expect(check?.reason).toContain(`while ${h.op.attacker.address} owned it`);
      expect(check?.actual).toEqual({
        returnedTo: [
          { account: plan.vault, owner: h.op.attacker.address, amount: plan.remainder.toString() },
        ],
      });
    });

    it("catches a staked worker paid at the unstaked rate", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1, workerIndex: 1 });
      const workerShare = (plan.charge * 7500n) / 10_000n;
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(plan, { workerShare, treasuryShare: plan.charge - workerShare }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.split")]);
    });

    it("catches a settlement that landed before its escrow", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
      h.op.nextSlot();
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.after_escrow")]);
    });

    it("catches a settlement after the profile's window", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      h.op.advanceClock((localnetProfile.settlementWindowSeconds + 10) * 1000);
      const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.within_window")]);
    });
  });

  describe("frauds in the refund", () => {
    it("catches a 504 refund sent to an account that is not the key's credit vault", async () => {
      const c = await pinnedScenario();
      const attacker = h.op.attackerAccount(0n);
      const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const refundTx = h.op.send(h.op.refundIxs(plan, attacker)).signature;
      c.record(plan, { escrowTx, settlementTx: refundTx }, { httpStatus: 504 });
      const [outcome] = await c.verdicts(plan.jobId);
      // One cause: either check may own it, but only one of them.
      expect([discrepancy("escrow.source"), discrepancy("refund.complete")]).toContainEqual(
        outcome,
      );
    });

    it("catches a 504 refund into the key's vault after its owner was changed to the attacker", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      h.op.send([h.op.setAuthority(plan.vault, AuthorityType.AccountOwner, h.op.attacker.address)]);
      onTestFinished(() => h.op.giveBackVault(plan.vault));
      const refundTx = h.op.send(h.op.refundIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx: refundTx }, { httpStatus: 504 });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
      const check = await c.check(plan.jobId, "escrow.source");
      expect(check?.reason).toContain(`while ${h.op.attacker.address} owned it`);
      expect(check?.actual).toEqual({
        returnedTo: [
          { account: plan.vault, owner: h.op.attacker.address, amount: plan.lock.toString() },
        ],
      });
    });

    it("catches a refund that also freezes a worker's token account", async () => {
      const c = await pinnedScenario();
      const fake = h.op.createFakeMint();
      const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
      const frozen = h.op.createTokenAccount(plan.worker.address, fake);
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const refundTx = h.op.send([
        ...h.op.refundIxs(plan),
        h.op.freeze(frozen, fake, h.op.attacker.address),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx: refundTx }, { httpStatus: 504 });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("refund.instructions")]);
    });

    it("catches a 504 refund that landed before its lock, paid out of other locks in escrow", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
      const refundTx = h.op.send(h.op.refundIxs(plan)).signature;
      h.op.nextSlot();
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx: refundTx }, { httpStatus: 504 });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("refund.after_escrow")]);
    });

    it("catches a 504 refund long after the window, the credits held all that time", async () => {
      // A refund comes only once the window has passed: it is late past the window and the
      // receipt skew (kept short here, so the shared chain clock moves little).
      const profile = { ...localnetProfile, receiptTimeSkewSeconds: 30 };
      const c = await h.scenario(profile);
      await c.pinKey(1);
      const onTime = h.op.plan({ keyIndex: 1, completionTokens: null });
      const late = h.op.plan({ keyIndex: 1, completionTokens: null });
      const onTimeLock = h.op.send(h.op.lockIxs(onTime)).signature;
      const lateLock = h.op.send(h.op.lockIxs(late)).signature;
      // Recorded as a recorder beside the chain dates them: the skew is short here.
      const answered = { httpStatus: 504, createdAt: h.op.now() };
      // An honest timeout's refund, just after the window.
      h.op.advanceClock((profile.settlementWindowSeconds + 5) * 1000);
      const onTimeRefund = h.op.send(h.op.refundIxs(onTime)).signature;
      h.op.advanceClock(30 * 1000);
      const lateRefund = h.op.send(h.op.refundIxs(late)).signature;
      c.record(onTime, { escrowTx: onTimeLock, settlementTx: onTimeRefund }, answered);
      c.record(late, { escrowTx: lateLock, settlementTx: lateRefund }, answered);
      expect(await c.verdicts(late.jobId)).toEqual([discrepancy("refund.within_window")]);
      const check = await c.check(late.jobId, "refund.within_window");
      expect(check?.expected).toEqual({ maxSeconds: profile.settlementWindowSeconds + 30 });
      expect((check?.actual as { seconds: number } | undefined)?.seconds).toBeGreaterThan(150);
      expect((await c.check(onTime.jobId, "refund.within_window"))?.outcome).toBe("pass");
    });
  });

  describe("frauds in what the receipt and the jobs API say", () => {
    it("prices by the requested model when the response names another, unpriced one", async () => {
      const c = await pinnedScenario();
      const plan = { ...h.op.plan({ keyIndex: 1 }), model: "qwen3-8b-turbo-preview" };
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      // The whole lock is charged: nothing goes back to the user.
      const charge = plan.lock;
      const workerShare = (charge * 8500n) / 10_000n;
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(plan, {
          workerShare,
          treasuryShare: charge - workerShare,
          remainder: 0n,
        }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      expect(await c.verdicts(plan.jobId)).toEqual([
        discrepancy("charge.matches_price", "charge.model"),
      ]);
    });

    it("catches a replayed receipt naming another job's escrow and settlement; the original keeps them", async () => {
      const c = await pinnedScenario();
      const original = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(original);
      c.record(original, txs);
      const replay = h.op.plan({ keyIndex: 1 });
      c.record(replay, txs);
      expect(await c.verdicts(original.jobId, replay.jobId)).toEqual([
        verified,
        discrepancy("signatures.unique"),
      ]);
    });

    it("keeps honest jobs final while receipts of made-up jobs name their locks, again and again", async () => {
      const c = await pinnedScenario();
      const honest = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(honest);
      c.record(honest, txs);
      const older = h.op.plan({ keyIndex: 1 });
      const olderTxs = h.op.honestJob(older);
      c.record(older, olderTxs);
      await c.verify();
      // The older job's lock as stored before the memo's job was kept with it.
      await updateSignature(c.store, olderTxs.escrowTx, { memoJob: null });
      // An ingest token posting made-up jobs that name the honest jobs' transactions.
      const madeUp = () => {
        for (const named of [txs, olderTxs]) c.record(h.op.plan({ keyIndex: 1 }), named);
      };
      madeUp();
      // Their memos name the honest job: it owns that money whoever else names it.
      expect(await c.outcome(honest.jobId)).toEqual(verified);
      // Not known for the older lock: judged again, once, which keeps the memo's job.
      expect((await c.outcome(older.jobId)).verdict).toBe("pending");
      await c.verify();
      madeUp();
      expect(await c.outcome(honest.jobId)).toEqual(verified);
      expect(await c.outcome(older.jobId)).toEqual(verified);
    });

    it("catches a replay through the jobs API's escrow field", async () => {
      const c = await pinnedScenario();
      const original = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(original);
      c.record(original, txs);
      // The replaying job names no escrow in its headers; the jobs API names the original's.
      const replay = h.op.plan({ keyIndex: 1 });
      const ownSettlement = h.op.send(h.op.settleIxs(replay)).signature;
      c.record(replay, { escrowTx: null, settlementTx: ownSettlement });
      c.jobsApi(replay.jobId, {
        status: "settled",
        credits_charged: Number(replay.charge / 10_000n),
        worker_address: replay.worker.address,
        on_chain: { escrow_tx: txs.escrowTx, settlement_tx: ownSettlement },
      });
      expect(await c.verdicts(original.jobId, replay.jobId)).toEqual([
        verified,
        discrepancy("signatures.unique"),
      ]);
      // The jobs API's escrow field counts when looking for jobs naming a signature.
      const evidence = (await c.check(replay.jobId, "signatures.unique"))?.actual as
        | { signature: string; namedBy: string[] }[]
        | undefined;
      expect(evidence?.find((e) => e.signature === txs.escrowTx)?.namedBy.sort()).toEqual(
        [original.jobId, replay.jobId].sort(),
      );
    });

    it("catches one transaction named as both the escrow and the settlement of a job", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const both = h.op.send([...h.op.lockIxs(plan), ...h.op.settleIxs(plan)]).signature;
      c.record(plan, { escrowTx: both, settlementTx: both });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("signatures.unique")]);
    });

    it("catches a jobs API whose credits_charged differs from what the chain charged", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(plan);
      c.record(plan, txs);
      c.jobsApi(plan.jobId, {
        status: "settled",
        credits_charged: Number(plan.charge / 10_000n) - 4,
        worker_address: plan.worker.address,
        on_chain: { escrow_tx: txs.escrowTx, settlement_tx: txs.settlementTx },
      });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("jobs_api.matches_chain")]);
    });

    it("catches a jobs API that says refunded while the chain shows a settlement", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(plan);
      c.record(plan, txs);
      c.jobsApi(plan.jobId, {
        status: "refunded",
        credits_charged: 0,
        worker_address: plan.worker.address,
        on_chain: { escrow_tx: txs.escrowTx, settlement_tx: txs.settlementTx },
      });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("jobs_api.matches_chain")]);
    });

    // A status in another case or with spaces is the same word: read as not final, the check
    // was skipped and "Refunded" with nothing charged verified a job the chain shows settled.
    it.each(["Refunded", "REFUNDED ", " refunded"])(
      "catches a jobs API that says %j while the chain shows a settlement",
      async (status) => {
        const c = await pinnedScenario();
        const plan = h.op.plan({ keyIndex: 1 });
        const txs = h.op.honestJob(plan);
        c.record(plan, txs);
        c.jobsApi(plan.jobId, {
          status,
          credits_charged: 0,
          worker_address: plan.worker.address,
          on_chain: { escrow_tx: txs.escrowTx, settlement_tx: txs.settlementTx },
        });
        expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("jobs_api.matches_chain")]);
      },
    );

    // An answer naming the settlement with a status that is not final ("settling", or a word the
    // protocol does not list) gave no charge to compare: the job was verified as if compared.
    it.each(["settling", "completed"])(
      "leaves a job whose jobs API only ever says %j, naming the settlement, not verified",
      async (status) => {
        const c = await pinnedScenario();
        const plan = h.op.plan({ keyIndex: 1 });
        const txs = h.op.honestJob(plan);
        c.record(plan, txs);
        c.jobsApi(plan.jobId, {
          status,
          credits_charged: Number(plan.charge / 10_000n) * 2,
          worker_address: plan.worker.address,
          on_chain: { escrow_tx: txs.escrowTx, settlement_tx: txs.settlementTx },
        });
        expect(await c.verdicts(plan.jobId)).toEqual([
          { verdict: "partially_verified", failing: [] },
        ]);
        expect(await c.check(plan.jobId, "jobs_api.matches_chain")).toMatchObject({
          outcome: "skip",
          reason: expect.stringContaining(`last answer (${status}) is not final`),
        });
        // Its final answer, charging twice what the chain shows, is then compared.
        c.jobsApi(plan.jobId, {
          status: "settled",
          credits_charged: Number(plan.charge / 10_000n) * 2,
          worker_address: plan.worker.address,
          on_chain: { escrow_tx: txs.escrowTx, settlement_tx: txs.settlementTx },
        });
        expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("jobs_api.matches_chain")]);
      },
    );

    // Before that rule such an answer ended the questions and the job stood verified: an upgraded
    // database asks about it again and judges the final answer that comes.
    it("asks again about a job verified on a settling answer before the final-status rule", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(plan);
      c.record(plan, txs);
      const twice = Number(plan.charge / 10_000n) * 2;
      const answer = (status: string) => ({
        status,
        credits_charged: twice,
        worker_address: plan.worker.address,
        on_chain: { escrow_tx: txs.escrowTx, settlement_tx: txs.settlementTx },
      });
      c.jobsApi(plan.jobId, answer("settling"));
      await c.verify();
      // As the code before the rule left it: verified, the backfill done.
      await updateJob(c.store, plan.jobId, {
        verdict: "verified",
        unproven: null,
        backfillState: "done",
        backfillAttempts: 1,
      });

      await rerunMigrationUpdates(c.store, "rejudge_reason");

      expect(await readJob(c.store, plan.jobId)).toMatchObject({
        verdict: "pending",
        previousVerdict: "verified",
        rejudgeReason: "upgrade",
        backfillState: "pending",
      });
      // Judged as a job recorded now while no final answer has come.
      expect(await c.verdicts(plan.jobId)).toEqual([
        { verdict: "partially_verified", failing: [] },
      ]);
      expect(await readJob(c.store, plan.jobId)).toMatchObject({
        unproven: ["jobs_api_not_final"],
        previousVerdict: null,
        rejudgeReason: null,
      });
      const asked: string[] = [];
      const backfill = createSettlementBackfill({
        store: c.store,
        log: createLogger({ level: "silent" }),
        jobsApi: async (jobId) => {
          asked.push(jobId);
          return parseJobsApiAnswer(answer("settled"));
        },
        apiKey: localApiKey(plan.keyIndex),
      });
      // The key's first job, recorded with no answer, is asked about too.
      await backfill.runOnce();
      expect(asked).toContain(plan.jobId);
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("jobs_api.matches_chain")]);
    });

    it('catches a jobs API that says "SETTLED" with another charge than the chain\'s', async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(plan);
      c.record(plan, txs);
      c.jobsApi(plan.jobId, {
        status: "SETTLED",
        credits_charged: Number(plan.charge / 10_000n) - 4,
        worker_address: plan.worker.address,
        on_chain: { escrow_tx: txs.escrowTx, settlement_tx: txs.settlementTx },
      });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("jobs_api.matches_chain")]);
    });
  });

  describe("usage and amounts the operator claims", () => {
    type Plan = ReturnType<typeof h.op.plan>;
    type Scenario = Awaited<ReturnType<typeof h.scenario>>;

    /** A request's offer of the tool its answers call: a call earns its format's allowance. */
    const offeredTools = [{ type: "function", function: { name: "f", parameters: {} } }];

    /**
     * One job of `plan` asked through the recording proxy (key 1, its model, no max_tokens)
     * from an upstream that answers with the job's signatures, `headers` and `body`, as the
     * operator writes them; `stream` asks for and answers an event stream.
     */
    async function throughProxy(
      c: Scenario,
      plan: Plan,
      answer: {
        body: string;
        stream?: boolean;
        headers?: Record<string, string>;
        request?: Record<string, unknown>;
        /** The request's bytes as the client sends them, from its JSON. */
        requestBytes?: (json: string) => string | Buffer;
        /** The upstream drops the connection once `body` is written, short of its end. */
        cut?: boolean;
        /** Headers the client sends beside its key and content type. */
        requestHeaders?: Record<string, string>;
        /** The endpoint asked, `/v1/chat/completions` unless said. */
        path?: string;
      },
    ): Promise<void> {
      const txs = h.op.honestJob(plan);
      const log = createLogger({ level: "silent" });
      const upstream = closedAfterTest(
        await listen(
          http.createServer(async (req, res) => {
            for await (const _ of req) {
            }
            res.writeHead(200, {
              "content-type": answer.stream ? "text/event-stream" : "application/json",
              "x-decentral-job-id": plan.jobId,
              "x-decentral-tx-signature": txs.escrowTx,
              "x-decentral-settlement-tx": txs.settlementTx,
              "x-decentral-worker": plan.worker.address,
              // A cut JSON answer says it is one byte longer than what comes.
              ...(answer.cut && !answer.stream
                ? { "content-length": String(Buffer.byteLength(answer.body) + 1) }
                : {}),
              ...answer.headers,
            });
            if (!answer.cut) {
              res.end(answer.body);
              return;
            }
            // A stream is dropped once the proxy holds the job's open receipt and reads on: before
            // that it leaves the upstream unread, and a drop on a slow commit would lose bytes it
            // was sent. A JSON answer is read as it comes and its receipt written only whole, after
            // an end a cut one never has: waiting for that receipt held each cut JSON answer 10 s.
            res.write(answer.body, async () => {
              for (let i = 0; answer.stream && i < 1000; i++) {
                if (await readJob(c.store, plan.jobId)) break;
                await new Promise((resolve) => setTimeout(resolve, 10));
              }
              setTimeout(() => res.socket?.destroy(), 50);
            });
          }),
        ),
      );
      const proxy = createRecordingProxy({
        store: c.store,
        log,
        upstreamBaseUrl: `${upstream.url}/v1`,
      });
      const app = closedAfterTest(await serveApp({ store: c.store, log, proxy }));
      try {
        const json = JSON.stringify({
          model: plan.requestedModel,
          messages: [{ role: "user", content: "Say hi" }],
          ...(answer.stream ? { stream: true, stream_options: { include_usage: true } } : {}),
          ...answer.request,
        });
        const asked = fetch(`${app.url}${answer.path ?? "/v1/chat/completions"}`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${localApiKey(plan.keyIndex)}`,
            "content-type": "application/json",
            ...answer.requestHeaders,
          },
          body: answer.requestBytes ? answer.requestBytes(json) : json,
        });
        if (answer.cut) {
          // The caller gets no whole answer: a JSON one never comes, a stream breaks off.
          const read = await asked
            .then((res) => res.text())
            .then(
              () => "whole",
              () => "broken",
            );
          expect(read).toBe("broken");
        } else {
          const res = await asked;
          expect(res.status).toBe(200);
          await res.text();
        }
        await proxy.idle();
      } finally {
        await proxy.close();
      }
    }

    /**
     * Each answer through the proxy for a job of key 1 charged on chain at the completion tokens
     * the answer names, as an operator would; the jobs' plans in order.
     */
    async function chargedAsNamed(c: Scenario, answers: Parameters<typeof throughProxy>[2][]) {
      const plans = [];
      for (const answer of answers) {
        const completionTokens = /"completion_tokens":(\d+)/.exec(answer.body)?.[1];
        const plan = h.op.plan({ keyIndex: 1, completionTokens: Number(completionTokens) });
        await throughProxy(c, plan, answer);
        plans.push(plan);
      }
      return plans;
    }

    /** A completion answering `message`, with `usage` as the operator claims it. */
    const completion = (message: Record<string, unknown>, usage: Record<string, unknown>) =>
      JSON.stringify({
        id: "chatcmpl-1",
        object: "chat.completion",
        model: "qwen3-8b",
        choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", ...message } }],
        usage,
      });

    it("catches usage with more completion tokens than tokens in all", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      c.record(plan, h.op.honestJob(plan), { promptTokens: 5, totalTokens: 3 });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("usage.consistent")]);
      expect(await c.check(plan.jobId, "usage.consistent")).toMatchObject({
        expected: { completionTokensAtMost: 3 },
        actual: { completionTokens: 640, totalTokens: 3 },
      });
    });

    it("catches usage whose total is less than prompt + completion tokens, and takes one above them", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      c.record(plan, h.op.honestJob(plan), { promptTokens: 12, totalTokens: 645 });
      // Gemini counts thinking in the total alone: a total above its parts prices nothing.
      const thought = h.op.plan({ keyIndex: 1 });
      c.record(thought, h.op.honestJob(thought), { promptTokens: 12, totalTokens: 1052 });
      expect(await c.verdicts(plan.jobId, thought.jobId)).toEqual([
        discrepancy("usage.consistent"),
        verified,
      ]);
      expect(await c.check(plan.jobId, "usage.consistent")).toMatchObject({
        expected: { totalTokensAtLeast: 652 },
      });
    });

    it("catches a charge for 640 completion tokens on an answer of three bytes, and lets reasoning tokens explain the rest", async () => {
      const c = await pinnedScenario();
      // Usage that adds up, priced honestly on chain, for an answer that cannot hold it.
      const made = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, made, {
        body: completion(
          { content: "Hi." },
          { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 },
        ),
      });
      // The same answer after 630 tokens of reasoning the operator names: it can hold 640.
      const reasoned = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, reasoned, {
        body: completion(
          { content: "Hi." },
          {
            prompt_tokens: 12,
            completion_tokens: 640,
            total_tokens: 652,
            completion_tokens_details: { reasoning_tokens: 630 },
          },
        ),
      });
      // An honest answer of 640 words, a tool call among it.
      const honest = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, honest, {
        body: completion(
          {
            content: Array.from({ length: 620 }, () => "w").join(" "),
            tool_calls: [{ type: "function", function: { name: "f", arguments: '{"a":1}' } }],
          },
          { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 },
        ),
      });
      expect(await c.verdicts(made.jobId, reasoned.jobId, honest.jobId)).toEqual([
        discrepancy("usage.consistent"),
        verified,
        verified,
      ]);
      expect(await c.check(made.jobId, "usage.consistent")).toMatchObject({
        outcome: "fail",
        expected: { completionTokensAtMost: 19 },
        actual: { completionTokens: 640, answerBytes: 3, reasoningTokens: null },
      });
      expect(await c.check(reasoned.jobId, "usage.consistent")).toMatchObject({
        outcome: "pass",
        expected: { completionTokensAtMost: 649 },
      });
    });

    /** An event stream of `deltas`, then a chunk of `usage` and `[DONE]`; `pad` goes first. */
    const stream = (deltas: unknown[], usage: Record<string, unknown>, pad = "") => {
      const chunk = (delta: unknown, extra: Record<string, unknown> = {}) =>
        `data: ${JSON.stringify({
          id: "c1",
          object: "chat.completion.chunk",
          model: "qwen3-8b",
          choices: [{ index: 0, delta, finish_reason: null }],
          ...extra,
        })}\n\n`;
      return `${pad}${deltas.map((d) => chunk(d)).join("")}${chunk({}, { usage })}data: [DONE]\n\n`;
    };
    it("catches a stream whose usage names more completion tokens than its bytes", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const usage = { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 };
      const body = stream([{ role: "assistant", content: "Hi." }], usage);
      await throughProxy(c, plan, { stream: true, body });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("usage.consistent")]);
      expect(await c.check(plan.jobId, "usage.consistent")).toMatchObject({
        actual: { completionTokens: 640, answerBytes: 3 },
      });
    });

    const words = (n: number) => Array.from({ length: n }, () => "w").join(" ");

    it("leaves unproven a 200 whose JSON body is an error, whatever usage it names", async () => {
      const c = await pinnedScenario();
      // The caller's SDK hands over no completion, yet the base price was charged on chain.
      const failed = h.op.plan({ keyIndex: 1, completionTokens: 0 });
      await throughProxy(c, failed, {
        body: JSON.stringify({
          error: { message: "the model is overloaded", type: "server_error", code: null },
          usage: { prompt_tokens: 12, completion_tokens: 0, total_tokens: 12 },
        }),
      });
      // An honest empty answer (a filter stopped it) is still a completion: charged so, verified.
      const empty = h.op.plan({ keyIndex: 1, completionTokens: 0 });
      await throughProxy(c, empty, {
        body: completion(
          { content: "" },
          { prompt_tokens: 12, completion_tokens: 0, total_tokens: 12 },
        ),
      });
      expect(await c.verdicts(failed.jobId, empty.jobId)).toEqual([
        { verdict: "partially_verified", failing: [] },
        verified,
      ]);
      expect(await readJob(c.store, failed.jobId)).toMatchObject({ completionTokens: null });
    });

    it("leaves unproven an answer the upstream cut short, whatever usage its bytes name", async () => {
      const c = await pinnedScenario();
      const usage = { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 };
      // The whole JSON text, one byte short of its Content-Length: the caller gets nothing.
      const json = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, json, {
        cut: true,
        body: completion({ content: words(640) }, usage),
      });
      // A stream whose usage came, broken off before its [DONE]: the caller's read fails.
      const streamed = h.op.plan({ keyIndex: 1 });
      const events = stream([{ role: "assistant", content: words(640) }], usage);
      await throughProxy(c, streamed, {
        cut: true,
        stream: true,
        body: events.slice(0, events.indexOf("data: [DONE]")),
      });
      // Cut after its [DONE]: the caller read the whole answer, as an SDK does.
      const done = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, done, { cut: true, stream: true, body: events });
      const unproven = { verdict: "partially_verified", failing: [] };
      expect(await c.verdicts(json.jobId, streamed.jobId, done.jobId)).toEqual([
        unproven,
        unproven,
        verified,
      ]);
      for (const plan of [json, streamed]) {
        expect(await readJob(c.store, plan.jobId)).toMatchObject({
          captureState: "aborted",
          completionTokens: null,
          unproven: ["usage_unknown"],
        });
      }
    });

    it("takes honest answers whose tokens are not all in their text", async () => {
      const c = await pinnedScenario();
      const answers = [
        // Predicted Outputs: 190 predicted tokens the model rejected, billed, never shown.
        {
          request: { prediction: { type: "content", content: "ok, the file as it was" } },
          body: completion(
            { content: "ok" },
            {
              prompt_tokens: 300,
              completion_tokens: 200,
              total_tokens: 500,
              completion_tokens_details: {
                reasoning_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 190,
              },
            },
          ),
        },
        // Twelve parallel tool calls of f({}): each call's format is billed.
        {
          request: { tools: offeredTools },
          body: completion(
            {
              content: null,
              tool_calls: Array.from({ length: 12 }, (_, i) => ({
                id: `call_${i}`,
                type: "function",
                function: { name: "f", arguments: "{}" },
              })),
            },
            { prompt_tokens: 80, completion_tokens: 130, total_tokens: 210 },
          ),
        },
        // The same as a stream: each call's name and arguments arrive over several deltas.
        {
          request: { tools: offeredTools },
          stream: true,
          body: stream(
            Array.from({ length: 12 }, (_, i) => [
              {
                tool_calls: [{ index: i, id: `call_${i}`, function: { name: "f", arguments: "" } }],
              },
              { tool_calls: [{ index: i, function: { arguments: "{}" } }] },
            ]).flat(),
            { prompt_tokens: 80, completion_tokens: 130, total_tokens: 210 },
          ),
        },
        // Gemini: thinking counted in total_tokens alone.
        {
          body: completion(
            { content: "Paris." },
            { prompt_tokens: 10, completion_tokens: 2, total_tokens: 412 },
          ),
        },
        // xAI: reasoning tokens counted beside the completion tokens, in the total.
        {
          body: completion(
            { content: "Paris." },
            {
              prompt_tokens: 10,
              completion_tokens: 2,
              total_tokens: 112,
              completion_tokens_details: { reasoning_tokens: 100 },
            },
          ),
        },
        // Three choices asked for (n: 3), 30 tokens each.
        {
          request: { n: 3 },
          body: JSON.stringify({
            id: "chatcmpl-1",
            object: "chat.completion",
            model: "qwen3-8b",
            choices: [0, 1, 2].map((index) => ({
              index,
              finish_reason: "stop",
              message: { role: "assistant", content: words(30) },
            })),
            usage: { prompt_tokens: 5, completion_tokens: 90, total_tokens: 95 },
          }),
        },
      ];
      const plans = await chargedAsNamed(c, answers);
      expect(await c.verdicts(...plans.map((p) => p.jobId))).toEqual(answers.map(() => verified));
      expect(await c.check(plans[1]!.jobId, "usage.consistent")).toMatchObject({
        actual: { answerBytes: 36, answerToolCalls: 12 },
      });
      expect(await c.check(plans[2]!.jobId, "usage.consistent")).toMatchObject({
        actual: { answerBytes: 36, answerToolCalls: 12 },
      });
    });

    it("takes parallel tool calls streamed without their index, and n or audio asked in a body with a byte-order mark", async () => {
      const c = await pinnedScenario();
      const usage = { prompt_tokens: 80, completion_tokens: 130, total_tokens: 210 };
      const answers = [
        // Gemini's OpenAI-compatible stream: each of twelve parallel calls of f({}) whole in a
        // chunk of its own, with its own id and no index.
        {
          request: { tools: offeredTools },
          stream: true,
          body: stream(
            Array.from({ length: 12 }, (_, i) => ({
              tool_calls: [
                {
                  id: `call_${i}`,
                  type: "function",
                  function: { name: "f", arguments: "{}" },
                },
              ],
            })),
            usage,
          ),
        },
        // Three choices of 30 words asked for in a body a Python or Node upstream reads: JSON
        // after a UTF-8 byte-order mark (a file saved by a Windows editor, sent by curl -d @).
        {
          request: { n: 3 },
          requestBytes: (json: string) => `\uFEFF${json}`,
          body: JSON.stringify({
            id: "chatcmpl-1",
            object: "chat.completion",
            model: "qwen3-8b",
            choices: [0, 1, 2].map((index) => ({
              index,
              finish_reason: "stop",
              message: { role: "assistant", content: words(30) },
            })),
            usage: { prompt_tokens: 5, completion_tokens: 90, total_tokens: 95 },
          }),
        },
      ];
      const plans = await chargedAsNamed(c, answers);
      expect(await c.verdicts(...plans.map((p) => p.jobId))).toEqual(answers.map(() => verified));
      expect(await c.check(plans[0]!.jobId, "usage.consistent")).toMatchObject({
        actual: { answerBytes: 36, answerToolCalls: 12 },
      });
      expect(await c.check(plans[1]!.jobId, "usage.consistent")).toMatchObject({
        actual: { answerBytes: 177 },
      });
      // A body the proxy cannot read at all (compressed) may have asked for any choices and for
      // audio: the answer's every choice and its audio count.
      const unread = h.op.plan({ keyIndex: 1, completionTokens: 90 });
      await throughProxy(c, unread, {
        ...answers[1]!,
        requestBytes: (json) => gzipSync(json),
      });
      // The model it asked for is unknown: partially verified, but no discrepancy.
      expect(await c.verdicts(unread.jobId)).toEqual([
        { verdict: "partially_verified", failing: [] },
      ]);
      expect(await c.check(unread.jobId, "usage.consistent")).toMatchObject({
        outcome: "pass",
        actual: { answerBytes: 177 },
      });
    });

    it("reads a request body its client compressed, so the operator cannot pad choices it never asked for", async () => {
      const c = await pinnedScenario();
      // The client sends its JSON gzip-, deflate- or brotli-compressed with its content-encoding,
      // which the upstream decodes. Read as no request, it would count all 128 choices and audio:
      // the operator, seeing the encoding, answers 'Hi.' and a second choice nobody asked for.
      const padded = JSON.stringify({
        id: "chatcmpl-1",
        object: "chat.completion",
        model: "qwen3-8b",
        choices: [
          { index: 0, finish_reason: "stop", message: { role: "assistant", content: "Hi." } },
          {
            index: 1,
            finish_reason: "stop",
            message: { role: "assistant", content: "w".repeat(1900) },
          },
        ],
        usage: { prompt_tokens: 5, completion_tokens: 1900, total_tokens: 1905 },
      });
      const encodings = {
        gzip: (json: string) => gzipSync(json),
        deflate: (json: string) => deflateSync(json),
        br: (json: string) => brotliCompressSync(json),
      };
      const plans = [];
      for (const [encoding, requestBytes] of Object.entries(encodings)) {
        const plan = h.op.plan({ keyIndex: 1, completionTokens: 1900 });
        await throughProxy(c, plan, {
          body: padded,
          requestBytes,
          requestHeaders: { "content-encoding": encoding },
        });
        plans.push(plan);
      }
      expect(await c.verdicts(...plans.map((p) => p.jobId))).toEqual(
        plans.map(() => discrepancy("usage.consistent")),
      );
      expect(await c.check(plans[0]!.jobId, "usage.consistent")).toMatchObject({
        actual: { completionTokens: 1900, answerBytes: 3 },
      });
      // An honest n: 3 in a compressed body: its model and its three choices are read.
      const honest = h.op.plan({ keyIndex: 1, completionTokens: 90 });
      await throughProxy(c, honest, {
        request: { n: 3 },
        requestBytes: (json) => gzipSync(json),
        requestHeaders: { "content-encoding": "gzip" },
        body: JSON.stringify({
          id: "chatcmpl-1",
          object: "chat.completion",
          model: "qwen3-8b",
          choices: [0, 1, 2].map((index) => ({
            index,
            finish_reason: "stop",
            message: { role: "assistant", content: words(30) },
          })),
          usage: { prompt_tokens: 5, completion_tokens: 90, total_tokens: 95 },
        }),
      });
      expect(await c.verdicts(honest.jobId)).toEqual([verified]);
    });

    it("takes thoughts inside the completion tokens when the total also holds tool-use prompt tokens", async () => {
      const c = await pinnedScenario();
      // Gemini through a gateway that folds its 400 thought tokens into completion_tokens, as
      // OpenAI counts reasoning; its total also holds 500 tokens of a grounding tool's prompt
      // (totalTokenCount = prompt + candidates + thoughts + toolUsePrompt).
      const plan = h.op.plan({ keyIndex: 1, completionTokens: 405 });
      await throughProxy(c, plan, {
        body: completion(
          { content: "Paris." },
          {
            prompt_tokens: 20,
            completion_tokens: 405,
            total_tokens: 925,
            completion_tokens_details: { reasoning_tokens: 400 },
          },
        ),
      });
      expect(await c.verdicts(plan.jobId)).toEqual([verified]);
      expect(await c.check(plan.jobId, "usage.consistent")).toMatchObject({
        expected: { completionTokensAtMost: 422 },
      });
    });

    it("takes a Mistral reasoning answer, its thinking in a content part of its own", async () => {
      const c = await pinnedScenario();
      // Magistral: 300 words of thinking, then the answer; usage names no reasoning tokens.
      const thinking = [
        { type: "thinking", thinking: [{ type: "text", text: words(300) }] },
        { type: "text", text: "Paris." },
      ];
      const usage = { prompt_tokens: 20, completion_tokens: 310, total_tokens: 330 };
      const json = h.op.plan({ keyIndex: 1, completionTokens: 310 });
      await throughProxy(c, json, { body: completion({ content: thinking }, usage) });
      // Streamed, the parts come in deltas.
      const streamed = h.op.plan({ keyIndex: 1, completionTokens: 310 });
      await throughProxy(c, streamed, {
        stream: true,
        body: stream(
          thinking.map((part) => ({ content: [part] })),
          usage,
        ),
      });
      expect(await c.verdicts(json.jobId, streamed.jobId)).toEqual([verified, verified]);
      for (const plan of [json, streamed]) {
        expect(await c.check(plan.jobId, "usage.consistent")).toMatchObject({
          actual: { answerBytes: 605 },
        });
      }
    });

    it("catches usage padded where the caller reads nothing, and reasoning beyond the completion", async () => {
      const c = await pinnedScenario();
      const hi = (usage: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
        completion({ content: "Hi.", ...extra }, usage);
      const answers = [
        // More reasoning tokens than completion tokens: the operator's figure contradicts itself.
        {
          body: hi({
            prompt_tokens: 12,
            completion_tokens: 1900,
            total_tokens: 1912,
            completion_tokens_details: { reasoning_tokens: 99999 },
          }),
        },
        // A second choice of 4,000 spaces nobody asked for (n is 1).
        {
          body: JSON.stringify({
            id: "chatcmpl-1",
            object: "chat.completion",
            model: "qwen3-8b",
            choices: ["Hi.", " ".repeat(4000)].map((content, index) => ({
              index,
              finish_reason: "stop",
              message: { role: "assistant", content },
            })),
            usage: { prompt_tokens: 12, completion_tokens: 1900, total_tokens: 1912 },
          }),
        },
        // Audio data nobody asked for.
        {
          body: hi(
            { prompt_tokens: 12, completion_tokens: 1900, total_tokens: 1912 },
            { audio: { id: "a", data: "A".repeat(4000), expires_at: 0, transcript: "" } },
          ),
        },
        // A stream padded with an SSE comment every client skips.
        {
          stream: true,
          body: stream(
            [{ role: "assistant", content: "Hi." }],
            { prompt_tokens: 12, completion_tokens: 1900, total_tokens: 1912 },
            `: ${"x".repeat(20000)}\n\n`,
          ),
        },
        // A thousand empty tool calls, each after the allowance of a call's format.
        {
          request: { tools: offeredTools },
          body: hi(
            { prompt_tokens: 12, completion_tokens: 1900, total_tokens: 1912 },
            { tool_calls: Array.from({ length: 1000 }, () => ({})) },
          ),
        },
        // 300 calls of f at index 0, each with an id of its own: one call to its client, named
        // `f` once (a name given again replaces the one before).
        {
          request: { tools: offeredTools },
          stream: true,
          body: stream(
            [
              { role: "assistant", content: "Hi." },
              ...Array.from({ length: 300 }, (_, i) => ({
                tool_calls: [{ index: 0, id: `call_${i}`, function: { name: "f" } }],
              })),
            ],
            { prompt_tokens: 12, completion_tokens: 1900, total_tokens: 1912 },
          ),
        },
        // Twenty one-word chunks whose JSON framing holds 2,000 bytes, but their text 40.
        {
          stream: true,
          body: stream(
            Array.from({ length: 20 }, () => ({ content: " w" })),
            { prompt_tokens: 12, completion_tokens: 2000, total_tokens: 2012 },
          ),
        },
      ];
      const plans = await chargedAsNamed(c, answers);
      expect(await c.verdicts(...plans.map((p) => p.jobId))).toEqual(
        answers.map(() => discrepancy("usage.consistent")),
      );
      expect(await c.check(plans[0]!.jobId, "usage.consistent")).toMatchObject({
        expected: { hiddenTokensAtMost: 1900 },
      });
      for (const plan of plans.slice(1, 4)) {
        expect(await c.check(plan.jobId, "usage.consistent")).toMatchObject({
          actual: { answerBytes: 3 },
        });
      }
      expect(await c.check(plans[4]!.jobId, "usage.consistent")).toMatchObject({
        actual: { answerBytes: 3, answerToolCalls: 0 },
      });
      expect(await c.check(plans[5]!.jobId, "usage.consistent")).toMatchObject({
        actual: { answerBytes: 4, answerToolCalls: 1 },
      });
      expect(await c.check(plans[6]!.jobId, "usage.consistent")).toMatchObject({
        actual: { answerBytes: 40 },
      });
    });

    it("bounds the charge of an answer without usage by its bytes, an `error` member beside it or not", async () => {
      const c = await pinnedScenario();
      // 'Hi.' holds at most 19 tokens; the operator charges 640 and sends no usage. An `error`
      // member beside the answer (no SDK reads it in a 200) must not lift the bound to the lock.
      const body = (extra: Record<string, unknown>) =>
        JSON.stringify({
          id: "chatcmpl-1",
          object: "chat.completion",
          model: "qwen3-8b",
          choices: [
            { index: 0, finish_reason: "stop", message: { role: "assistant", content: "Hi." } },
          ],
          ...extra,
        });
      const plain = h.op.plan({ keyIndex: 1, completionTokens: 640 });
      await throughProxy(c, plain, { body: body({}) });
      const withError = h.op.plan({ keyIndex: 1, completionTokens: 640 });
      await throughProxy(c, withError, { body: body({ error: { message: "" } }) });
      expect(await c.verdicts(plain.jobId, withError.jobId)).toEqual([
        discrepancy("charge.matches_price"),
        discrepancy("charge.matches_price"),
      ]);
    });

    it("catches a chat answer padded in a legacy `text` its client never reads", async () => {
      const c = await pinnedScenario();
      const usage = { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 };
      const answer = (choice: Record<string, unknown>) =>
        JSON.stringify({
          id: "cmpl-1",
          model: "qwen3-8b",
          choices: [{ index: 0, finish_reason: "stop", ...choice }],
          usage,
        });
      // A chat client reads the message: 640 words beside it in `text` are read by nobody.
      const padded = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, padded, {
        body: answer({ text: words(640), message: { role: "assistant", content: "Hi." } }),
      });
      // A legacy completion is its `text`: 640 words, honestly charged.
      const legacy = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, legacy, {
        body: answer({ text: words(640) }),
        path: "/v1/completions",
      });
      // A chat answer with no message at all: its client gets no answer, the 640 words in `text`
      // beside none are read by nobody either (as JSON and as a stream).
      const bare = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, bare, { body: answer({ text: words(640) }) });
      const bareStream = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, bareStream, {
        stream: true,
        body: [
          `data: ${JSON.stringify({ id: "c", model: "qwen3-8b", choices: [{ index: 0, text: words(640) }] })}`,
          `data: ${JSON.stringify({ id: "c", model: "qwen3-8b", choices: [], usage })}`,
          "data: [DONE]",
          "",
        ].join("\n\n"),
      });
      expect(await c.verdicts(padded.jobId, legacy.jobId, bare.jobId, bareStream.jobId)).toEqual([
        discrepancy("usage.consistent"),
        verified,
        discrepancy("usage.consistent"),
        discrepancy("usage.consistent"),
      ]);
      expect(await c.check(padded.jobId, "usage.consistent")).toMatchObject({
        actual: { answerBytes: 3 },
      });
    });

    it("takes credits_charged sent as a JSON number with a floating-point artifact", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(plan);
      c.record(plan, txs);
      // The charge in credits one float step off its decimal, as float arithmetic leaves it
      // (0.1 + 0.2 is 0.30000000000000004).
      const float = new Float64Array([Number(plan.charge) / 10_000]);
      new BigUint64Array(float.buffer)[0]! += 1n;
      const credits = float[0]!;
      expect(String(credits).split(".")[1]?.length ?? 0).toBeGreaterThan(4);
      c.jobsApi(plan.jobId, {
        status: "settled",
        credits_charged: credits,
        worker_address: plan.worker.address,
        on_chain: { escrow_tx: txs.escrowTx, settlement_tx: txs.settlementTx },
      });
      expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    });

    it("fails credits.header on a balance header that is no credit amount, through the proxy and ingest", async () => {
      const c = await pinnedScenario();
      const proxied = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, proxied, {
        headers: { "x-decentral-credits-remaining": "999999.00001" },
        body: completion(
          { content: Array.from({ length: 640 }, () => "w").join(" ") },
          { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 },
        ),
      });
      const ingested = h.op.plan({ keyIndex: 1 });
      const answer = await c.ingest(ingested, h.op.honestJob(ingested), {
        credits_remaining: "999999.00001",
      });
      expect(answer.status).toBe(201);
      expect(await c.verdicts(proxied.jobId, ingested.jobId)).toEqual([
        discrepancy("credits.header"),
        discrepancy("credits.header"),
      ]);
      for (const jobId of [proxied.jobId, ingested.jobId]) {
        expect(await c.check(jobId, "credits.header")).toMatchObject({
          reason: expect.stringContaining("not a credit amount: 999999.00001"),
          actual: { header: "999999.00001" },
        });
      }
    });

    it("fails jobs_api.matches_chain on credits_charged that is no credit amount", async () => {
      const c = await pinnedScenario();
      const sent = ["99.00001", 99.00001, "1e2"];
      const plans = sent.map((credits) => {
        const plan = h.op.plan({ keyIndex: 1 });
        const txs = h.op.honestJob(plan);
        c.record(plan, txs);
        c.jobsApi(plan.jobId, {
          status: "settled",
          credits_charged: credits,
          worker_address: plan.worker.address,
          on_chain: { escrow_tx: txs.escrowTx, settlement_tx: txs.settlementTx },
        });
        return plan;
      });
      expect(await c.verdicts(...plans.map((p) => p.jobId))).toEqual(
        sent.map(() => discrepancy("jobs_api.matches_chain")),
      );
      for (const [i, plan] of plans.entries()) {
        expect((await c.check(plan.jobId, "jobs_api.matches_chain"))?.reason).toBe(
          `the jobs API's credits_charged is not a credit amount: ${String(sent[i])}`,
        );
      }
    });

    it("verifies an honest answer of n choices with max_tokens each, and still fails one choice past it", async () => {
      const c = await pinnedScenario();
      // `max_tokens` bounds each choice: four of 100 tokens are 400, priced as the protocol
      // prices the job (at most the lock, the price at max_tokens).
      const choice = (index: number, words: number) => ({
        index,
        finish_reason: "length",
        message: { role: "assistant", content: Array.from({ length: words }, () => "w").join(" ") },
      });
      const body = (n: number, words: number) =>
        JSON.stringify({
          id: "chatcmpl-1",
          object: "chat.completion",
          model: "qwen3-8b",
          choices: Array.from({ length: n }, (_, i) => choice(i, words)),
          usage: { prompt_tokens: 12, completion_tokens: n * words, total_tokens: 12 + n * words },
        });
      const honest = h.op.plan({ keyIndex: 1, maxTokens: 100, completionTokens: 400 });
      await throughProxy(c, honest, { request: { n: 4, max_tokens: 100 }, body: body(4, 100) });
      // 3,000 tokens would cost 20 credits, but the lock (12, the price at max_tokens) is the
      // most the job can cost: charged the whole lock, as the operator can.
      const atLock = h.op.plan({ keyIndex: 1, maxTokens: 1000, completionTokens: 1000 });
      await throughProxy(c, atLock, {
        request: { n: "3", max_tokens: 1000 },
        body: body(3, 1000),
      });
      // Four choices' worth of usage on a request for one is past its max_tokens.
      const one = h.op.plan({ keyIndex: 1, maxTokens: 100, completionTokens: 400 });
      await throughProxy(c, one, { request: { max_tokens: 100 }, body: body(4, 100) });
      // A receipt posted to the ingest API says the same with `n`.
      const ingested = h.op.plan({ keyIndex: 1, maxTokens: 100, completionTokens: 400 });
      const posted = await c.ingest(ingested, h.op.honestJob(ingested), { max_tokens: 100, n: 4 });
      expect(posted.status).toBe(201);
      expect(await c.verdicts(honest.jobId, atLock.jobId, one.jobId, ingested.jobId)).toEqual([
        verified,
        verified,
        discrepancy("charge.matches_price", "usage.consistent"),
        verified,
      ]);
      expect(await c.check(atLock.jobId, "charge.matches_price")).toMatchObject({
        expected: { completionTokens: 3000, charge: "120000", pricedAtMaxTokens: 1000 },
      });
      // The audit record's expected charge is the same.
      expect((await readJob(c.store, atLock.jobId))?.expectedChargeUnits).toBe(120000n);
      expect(await c.check(one.jobId, "charge.matches_price")).toMatchObject({
        expected: { completionTokensAtMost: 100 },
      });
    });

    it("bounds the charge of a stream that asked for its usage and ended whole without it by its bytes", async () => {
      const c = await pinnedScenario();
      const chunk = (delta: unknown) =>
        `data: ${JSON.stringify({
          id: "c1",
          object: "chat.completion.chunk",
          model: "qwen3-8b",
          choices: [{ index: 0, delta, finish_reason: null }],
        })}\n\n`;
      // Three bytes of answer and no usage chunk: the operator dropped the one asked for.
      const body = `${chunk({ role: "assistant", content: "Hi." })}data: [DONE]\n\n`;
      // Charged at 640 completion tokens, far beyond what 3 bytes can hold (3 + 16 tokens).
      const stripped = h.op.plan({ keyIndex: 1, completionTokens: 640 });
      await throughProxy(c, stripped, { stream: true, body });
      // At the price of 19 tokens the charge is within the bound: unproven, not refuted.
      const within = h.op.plan({ keyIndex: 1, completionTokens: 19 });
      await throughProxy(c, within, { stream: true, body });
      // A stream whose request did not ask for usage sends none, and hidden reasoning tokens
      // may lie beyond its bytes: its charge is bounded by the lock only.
      const unasked = h.op.plan({ keyIndex: 1, completionTokens: 640 });
      await throughProxy(c, unasked, {
        stream: true,
        body,
        request: { stream_options: { include_usage: false } },
      });
      const unproven = { verdict: "partially_verified", failing: [] };
      expect(await c.verdicts(stripped.jobId, within.jobId, unasked.jobId)).toEqual([
        discrepancy("charge.matches_price"),
        unproven,
        unproven,
      ]);
      expect(await c.check(stripped.jobId, "charge.matches_price")).toMatchObject({
        expected: { completionTokensAtMost: 19 },
        actual: { charge: stripped.charge.toString() },
      });
      expect(await readJob(c.store, stripped.jobId)).toMatchObject({
        usageAsked: true,
        completionTokens: null,
        answerBytes: 3,
      });
      expect(await readJob(c.store, unasked.jobId)).toMatchObject({ usageAsked: false });
    });

    it("bounds the charge of a chat answer its client cannot read as JSON as an answer of no bytes", async () => {
      const c = await pinnedScenario();
      const usage = { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 };
      // One byte after the JSON, or no JSON at all: the client's SDK reads no completion.
      const trailing = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, trailing, { body: `${completion({ content: "Hi." }, usage)}x` });
      const text = h.op.plan({ keyIndex: 1, completionTokens: 2000 });
      await throughProxy(c, text, {
        body: "upstream busy",
        headers: { "content-type": "text/plain" },
      });
      // Charged the least a request costs: unproven, not refuted.
      const least = h.op.plan({ keyIndex: 1, completionTokens: 0 });
      await throughProxy(c, least, { body: "upstream busy" });
      // A byte-order mark before the JSON is read past, as the client's JSON reader does.
      const marked = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, marked, {
        body: `\ufeff${completion({ content: words(640) }, usage)}`,
      });
      const unproven = { verdict: "partially_verified", failing: [] };
      expect(await c.verdicts(trailing.jobId, text.jobId, least.jobId, marked.jobId)).toEqual([
        discrepancy("charge.matches_price"),
        discrepancy("charge.matches_price"),
        unproven,
        verified,
      ]);
      expect(await c.check(text.jobId, "charge.matches_price")).toMatchObject({
        expected: { completionTokensAtMost: 16 },
        actual: { charge: text.charge.toString() },
      });
    });

    it("bounds the charge of a chat answer of the other kind than asked by what its client read", async () => {
      const c = await pinnedScenario();
      const usage = { prompt_tokens: 12, completion_tokens: 640, total_tokens: 652 };
      const chunk = (fields: Record<string, unknown>) =>
        `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", model: "qwen3-8b", ...fields })}\n\n`;
      const events = (content: string) =>
        chunk({ choices: [{ index: 0, delta: { role: "assistant", content } }] }) +
        chunk({ choices: [], usage }) +
        "data: [DONE]\n\n";
      const sse = { "content-type": "text/event-stream" };
      const json = { "content-type": "application/json" };
      const streamAsked = { stream: true, stream_options: { include_usage: true } };
      // Events to a request without `stream`: the SDK reads no JSON, so no completion.
      const eventsToJson = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, eventsToJson, { body: events("Hi."), headers: sse });
      // A JSON completion to a request with `stream`: the SDK finds no event in it.
      const jsonToStream = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, jsonToStream, {
        body: completion({ content: "Hi." }, usage),
        request: streamAsked,
      });
      // The same to a stream that did not ask for its usage: still no chunk was read.
      const jsonToUnasked = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, jsonToUnasked, {
        body: completion({ content: "Hi." }, usage),
        request: { stream: true },
      });
      // Charged the least a request costs: unproven, not refuted.
      const least = h.op.plan({ keyIndex: 1, completionTokens: 0 });
      await throughProxy(c, least, { body: events("Hi."), headers: sse });
      // Honest answers under the wrong content type. Events typed as JSON to a stream: the SDK
      // reads them as the stream it asked for.
      const typedJson = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, typedJson, {
        body: events(words(640)),
        headers: json,
        request: streamAsked,
      });
      // A whole completion typed as events to a request without `stream`: Python's SDK reads it,
      // Node's gets text; measured, its usage unknown.
      const typedSse = h.op.plan({ keyIndex: 1 });
      await throughProxy(c, typedSse, {
        body: completion({ content: words(640) }, usage),
        headers: sse,
      });
      const unproven = { verdict: "partially_verified", failing: [] };
      expect(
        await c.verdicts(
          eventsToJson.jobId,
          jsonToStream.jobId,
          jsonToUnasked.jobId,
          least.jobId,
          typedJson.jobId,
          typedSse.jobId,
        ),
      ).toEqual([
        discrepancy("charge.matches_price"),
        discrepancy("charge.matches_price"),
        discrepancy("charge.matches_price"),
        unproven,
        verified,
        unproven,
      ]);
      for (const plan of [eventsToJson, jsonToStream, jsonToUnasked]) {
        expect(await c.check(plan.jobId, "charge.matches_price")).toMatchObject({
          expected: { completionTokensAtMost: 16 },
          actual: { charge: plan.charge.toString() },
        });
      }
      expect(await readJob(c.store, typedSse.jobId)).toMatchObject({
        completionTokens: null,
        answerBytes: Buffer.byteLength(words(640)),
      });
    });
  });

  describe("jobs API answers that name a step and then stop naming it", () => {
    // The operator writes every answer: one that names a second payout or refund, then one
    // that names the honest closing again, must not leave the job as if the first never came.
    const settledAnswer = (plan: ReturnType<typeof h.op.plan>, escrowTx: string, s: string) => ({
      status: "settled",
      credits_charged: Number(plan.charge / 10_000n),
      worker_address: plan.worker.address,
      on_chain: { escrow_tx: escrowTx, settlement_tx: s },
    });
    const secondPayout = (plan: ReturnType<typeof h.op.plan>) =>
      h.op.send([
        ...h.op.payoutIxs(plan, { remainder: 0n }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;

    it("keeps a second settlement an answer named after the next answer names the receipt's again", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(plan);
      c.record(plan, txs);
      const s2 = secondPayout(plan);
      c.jobsApi(plan.jobId, settledAnswer(plan, txs.escrowTx, s2));
      expect(await c.verdicts(plan.jobId)).toEqual([
        discrepancy("jobs_api.matches_receipt", "settlement.single"),
      ]);
      c.jobsApi(plan.jobId, settledAnswer(plan, txs.escrowTx, txs.settlementTx));
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
    });

    it("keeps a stream's second settlement after the answers go back to the first", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(plan);
      c.record(plan, { escrowTx: txs.escrowTx, settlementTx: null }, { stream: true });
      // The honest order first: an answer still pending, then one naming the settlement.
      c.jobsApi(plan.jobId, { status: "pending", on_chain: { escrow_tx: txs.escrowTx } });
      c.honestJobsApi(plan, txs);
      expect(await c.verdicts(plan.jobId)).toEqual([verified]);
      expect((await readJob(c.store, plan.jobId))?.conflictSignatures ?? []).toEqual([]);
      const s2 = secondPayout(plan);
      c.jobsApi(plan.jobId, settledAnswer(plan, txs.escrowTx, s2));
      expect(await c.verdicts(plan.jobId)).toEqual([
        discrepancy("jobs_api.matches_receipt", "settlement.single"),
      ]);
      c.honestJobsApi(plan, txs);
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.single")]);
    });

    it("keeps a 504's second refund, to the attacker, after the answers go back to the first", async () => {
      const c = await pinnedScenario();
      const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const r1 = h.op.send(h.op.refundIxs(plan)).signature;
      c.record(plan, { escrowTx, settlementTx: r1 }, { httpStatus: 504 });
      expect(await c.verdicts(plan.jobId)).toEqual([verified]);
      const r2 = h.op.send(h.op.refundIxs(plan, h.op.attackerAccount(0n))).signature;
      const refunded = (s: string) => ({
        status: "refunded",
        credits_charged: 0,
        on_chain: { escrow_tx: escrowTx, settlement_tx: s },
      });
      c.jobsApi(plan.jobId, refunded(r2));
      expect(await c.verdicts(plan.jobId)).toEqual([
        discrepancy("jobs_api.matches_receipt", "refund.single"),
      ]);
      c.jobsApi(plan.jobId, refunded(r1));
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("refund.single")]);
    });
  });

  describe("receipts posted to the ingest API", () => {
    it("pins the key named by key_fingerprint and catches a later lock from another user's vault", async () => {
      const c = await h.scenario();
      const pin = h.op.plan({ keyIndex: 1 });
      expect((await c.ingest(pin, h.op.honestJob(pin))).status).toBe(201);
      await c.verify();
      const fraud = h.op.plan({ keyIndex: 1 });
      const other = h.op.vault(2);
      const escrowTx = h.op.send(h.op.lockIxs(fraud, { from: other })).signature;
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(fraud, { remainderTo: other }),
        h.op.memo(`decentral:settle:${fraud.jobId}`),
      ]).signature;
      expect((await c.ingest(fraud, { escrowTx, settlementTx })).status).toBe(201);
      expect(await c.verdicts(pin.jobId, fraud.jobId)).toEqual([
        verified,
        discrepancy("escrow.source"),
      ]);
    });

    it("prices an ingested receipt by its requested_model", async () => {
      const c = await pinnedScenario();
      const plan = { ...h.op.plan({ keyIndex: 1 }), model: "qwen3-8b-turbo-preview" };
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
      expect((await c.ingest(plan, { escrowTx, settlementTx })).status).toBe(201);
      expect(await c.verdicts(plan.jobId)).toEqual([
        discrepancy("charge.matches_price", "charge.model"),
      ]);
    });
  });

  describe("with a mainnet-like profile that knows no treasury and no program ids", () => {
    /** Settlements that must agree before the treasury is pinned (kept small here). */
    const learnAfter = 3;
    const mainnetLike = {
      ...localnetProfile,
      name: "mainnet-like",
      treasury: null,
      programs: { jobEscrow: null, settlement: null, staking: null, workerRegistry: null },
      treasuryLearnAfter: learnAfter,
    } as Profile;

    it("does not verify a job paying an unknown payee before the treasury is learned", async () => {
      const c = await h.scenario(mainnetLike);
      const stranger = h.op.attackerAccount(0n);
      const plan = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(plan, { treasuryAccount: stranger }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      const [outcome] = await c.verdicts(plan.jobId);
      expect(outcome?.verdict).not.toBe("verified");
    });

    it("learns the treasury from agreeing settlements, then verifies honest jobs and fails a stranger payee", async () => {
      const c = await h.scenario(mainnetLike);
      for (let i = 0; i < learnAfter; i++) {
        const plan = h.op.plan({ keyIndex: 1, workerIndex: i % 4 });
        c.record(plan, h.op.honestJob(plan));
        await c.verify();
      }
      const honest = h.op.plan({ keyIndex: 1 });
      c.record(honest, h.op.honestJob(honest));
      const stranger = h.op.attackerAccount(0n);
      const fraud = h.op.plan({ keyIndex: 1 });
      const escrowTx = h.op.send(h.op.lockIxs(fraud)).signature;
      const settlementTx = h.op.send([
        ...h.op.payoutIxs(fraud, { treasuryAccount: stranger }),
        h.op.memo(`decentral:settle:${fraud.jobId}`),
      ]).signature;
      c.record(fraud, { escrowTx, settlementTx });
      expect(await c.verdicts(honest.jobId, fraud.jobId)).toEqual([
        verified,
        discrepancy("settlement.recipients"),
      ]);
    });
  });

  describe("with a Token-2022 credit mint (the profile allows either token program)", () => {
    /**
     * A credit mint under Token-2022, with its own escrow vault, credit vault (owned by the
     * escrow authority), worker and treasury accounts, and a profile naming it; `plan` is an
     * honest job's numbers paid from and to those accounts.
     */
    const token2022Credits = async (mintOptions: { transferFeeBps?: number }) => {
      const op = h.op;
      const mint = op.createToken2022Mint(mintOptions);
      const feeBps = BigInt(mintOptions.transferFeeBps ?? 0);
      const escrow = op.createToken2022Account(op.escrowAuthority.address, mint);
      const vault = op.createToken2022Account(op.escrowAuthority.address, mint, 10_000_000n);
      const treasury = op.createToken2022Account(op.treasuryOwner.address, mint);
      const base = op.plan({ keyIndex: 1 });
      const worker = {
        ...base.worker,
        tokenAccount: op.createToken2022Account(base.worker.address, mint),
      };
      const c = await h.scenario({ ...localnetProfile, usdcMint: mint, escrowVault: escrow });
      const plan = { ...base, vault, worker };
      const lockTx = op.send([
        op.transfer2022(vault, escrow, plan.lock, mint),
        op.memo(`decentral:escrow:${plan.jobId}`),
      ]).signature;
      // The operator pays the worker and the treasury their shares and returns what is left
      // of what arrived (the fee is a whole number of base units for this lock).
      const arrived = plan.lock - (plan.lock * feeBps) / 10_000n;
      const remainder = arrived - plan.workerShare - plan.treasuryShare;
      const settleTx = op.send([
        op.transfer2022(escrow, worker.tokenAccount, plan.workerShare, mint),
        op.transfer2022(escrow, treasury, plan.treasuryShare, mint),
        op.transfer2022(escrow, vault, remainder, mint),
        op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx: lockTx, settlementTx: settleTx });
      return { c, plan };
    };

    it("verifies an honest job whose credits are a Token-2022 mint", async () => {
      const { c, plan } = await token2022Credits({});
      expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    });

    it("catches a lock in a Token-2022 mint with a transfer fee: less arrived in escrow than left the vault", async () => {
      const { c, plan } = await token2022Credits({ transferFeeBps: 100 });
      expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
      expect(await c.check(plan.jobId, "escrow.vault")).toMatchObject({
        actual: { locked: "158400", taken: "160000" },
      });
    });
  });
});
