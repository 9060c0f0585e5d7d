import { describe, expect, it, onTestFinished } from "vitest";
import type { SqliteStore } from "../src/db/client.js";
import type { InstructionSpec } from "../src/localnet/wire.js";
import { reportsStore } from "../src/store/reports.js";
import { createSignatureStore } from "../src/store/signatures.js";
import type { Verifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import {
  AuthorityType,
  discrepancy,
  type JobPlan,
  useAdversaryHarness,
  verified,
} from "./support/operator.js";
import {
  ownerlessNode,
  rewritingNode,
  storeServedWithoutTokenBalances,
} from "./support/rewriting-node.js";
import { updateSignature } from "./support/seed-queue.js";

/**
 * More ways the operator, who signs every escrow, settlement and refund, could shape its
 * transactions (see verify-adversarial.test.ts for the rules): accounts loaded from a lookup
 * table, a pinned escrow vault it took for itself, a settlement that failed on chain. The
 * verdict logic is the store's dialect's alike, so one SQLite store per scenario is enough.
 */

const h = useAdversaryHarness();

/**
 * Runs `verifier` until `jobId` has been tried three times (or 3 s have passed) and returns its
 * verdict and last error: an answer no try can read keeps the job an error each time. Run for
 * its whole 3 s, the job's next try was seconds off by then, and the honest node's run after it
 * waited for it.
 */
async function triedAsError(
  verifier: { runUntilSettled: Verifier["runUntilSettled"] },
  store: SqliteStore,
  jobId: string,
) {
  const read = () =>
    store.sqlite
      .prepare("SELECT verdict, last_error, verify_attempts FROM jobs WHERE job_id = ?")
      .get(jobId) as { verdict: string; last_error: string; verify_attempts: number };
  const stop = new AbortController();
  await verifier.runUntilSettled(
    {},
    {
      timeoutMs: 3_000,
      signal: stop.signal,
      onProgress: () => {
        if (read().verify_attempts >= 3) stop.abort();
      },
    },
  );
  const { verdict, last_error } = read();
  return { verdict, last_error };
}

describe("accounts loaded from a lookup table", () => {
  it("verifies an honest settlement whose every token account a lookup table loads", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const table = h.op.lookupTable([
      h.op.accounts.escrowVault,
      plan.worker.tokenAccount,
      h.op.accounts.treasury.tokenAccount,
      plan.vault,
      h.op.accounts.mint,
    ]);
    const stored = h.op.send(h.op.settleIxs(plan), { version: 0, lookupTables: [table] });
    expect(stored.loadedAddresses.writable).toEqual(
      expect.arrayContaining([h.op.accounts.escrowVault, plan.vault]),
    );
    c.record(plan, { escrowTx, settlementTx: stored.signature });
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });

  it("catches a remainder sent to another user's vault that only the lookup table names", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const other = h.op.vault(2);
    const table = h.op.lookupTable([h.op.accounts.escrowVault, other, h.op.accounts.mint]);
    const stored = h.op.send(
      [
        ...h.op.payoutIxs(plan, { remainderTo: other }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ],
      { version: 0, lookupTables: [table] },
    );
    expect(stored.loadedAddresses.writable).toContain(other);
    c.record(plan, { escrowTx, settlementTx: stored.signature });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.source")]);
  });

  it("catches a lock that also pays the attacker, an account the lookup table loads", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const thief = h.op.attackerAccount(0n);
    const table = h.op.lookupTable([h.op.accounts.escrowVault, thief, h.op.accounts.mint]);
    const stored = h.op.send([...h.op.lockIxs(plan), h.op.transfer(plan.vault, thief, 5_000n)], {
      version: 0,
      lookupTables: [table],
    });
    expect(stored.loadedAddresses.writable).toContain(thief);
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx: stored.signature, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
  });
});

describe("a settlement that failed on chain", () => {
  it("catches a settlement whose transfers look right but whose last instruction failed it", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    // An empty account of the attacker's pays 1 unit it does not hold: the whole transaction
    // fails after the payouts ran, so nothing it shows moved.
    const empty = h.op.attackerAccount(0n);
    const settlementTx = h.op.send(
      [
        ...h.op.settleIxs(plan),
        h.op.transfer(empty, plan.vault, 1n, { authority: h.op.attacker.address }),
      ],
      { expectFailure: true },
    ).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("settlement.succeeded")]);
  });
});

describe("the pinned escrow vault", () => {
  it("catches a lock into the pinned escrow vault after its owner was changed to the attacker", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const escrow = h.op.accounts.escrowVault;
    // A transaction of its own, naming no job: the escrow vault becomes the attacker's, who
    // may then spend every lock paid into it alone, memo or not.
    h.op.send([h.op.setAuthority(escrow, AuthorityType.AccountOwner, h.op.attacker.address)]);
    onTestFinished(() => h.op.giveBackVault(escrow));
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const attacker = { authority: h.op.attacker.address };
    const settlementTx = h.op.send(h.op.settleIxs(plan, attacker)).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
    expect(await c.check(plan.jobId, "escrow.vault")).toMatchObject({
      expected: { owner: h.op.escrowAuthority.address },
      actual: { vault: escrow, owner: h.op.attacker.address },
    });
  });
});

describe("a settlement that pays the worker out of the customer's vault", () => {
  it("catches the worker's share taken straight from the credit vault while escrow keeps it", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    // Escrow pays the treasury and the remainder; the worker is paid by the customer's vault
    // itself, so escrow keeps the worker's share of the lock and the customer pays it twice.
    const settlementTx = h.op.send([
      h.op.transfer(
        h.op.accounts.escrowVault,
        h.op.accounts.treasury.tokenAccount,
        plan.treasuryShare,
      ),
      h.op.transfer(h.op.accounts.escrowVault, plan.vault, plan.remainder),
      h.op.transfer(plan.vault, plan.worker.tokenAccount, plan.workerShare),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    // The vault paid out (its own finding) and escrow released less than the lock (another).
    expect(await c.verdicts(plan.jobId)).toEqual([
      discrepancy("settlement.balances", "settlement.conserves_lock"),
    ]);
  });
});

/** Locks `plan` honestly, then gives the escrow vault to the attacker before its release. */
async function lockThenHandAway() {
  const c = await h.scenario();
  await c.pinKey(1);
  const escrow = h.op.accounts.escrowVault;
  const plan = h.op.plan({ keyIndex: 1 });
  const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
  // A transaction of its own, naming no job, after the lock: the lock sits in an account
  // the attacker may now spend alone.
  h.op.send([h.op.setAuthority(escrow, AuthorityType.AccountOwner, h.op.attacker.address)]);
  onTestFinished(() => h.op.giveBackVault(escrow));
  return { c, escrow, plan, escrowTx, attacker: { authority: h.op.attacker.address } };
}

describe("the pinned escrow vault handed away while a lock is held", () => {
  it("catches a settlement paid exactly out of the escrow vault the attacker owns by then", async () => {
    const { c, escrow, plan, escrowTx, attacker } = await lockThenHandAway();
    const settlementTx = h.op.send(h.op.settleIxs(plan, attacker)).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
    expect(await c.check(plan.jobId, "escrow.vault")).toMatchObject({
      expected: { owner: h.op.escrowAuthority.address },
      actual: { vault: escrow, owner: h.op.attacker.address, releasedBy: settlementTx },
    });
  });

  it("catches a whole refund paid out of the escrow vault the attacker owns by then", async () => {
    const { c, escrow, plan, escrowTx, attacker } = await lockThenHandAway();
    const refundTx = h.op.send([
      h.op.transfer(escrow, plan.vault, plan.lock, attacker),
      h.op.memo(`decentral:refund:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, { httpStatus: 504 });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
  });
});

describe("a node that names no owner in token balances", () => {
  it("does not verify a refund out of the escrow vault the attacker owns by then", async () => {
    const { c, escrow, plan, escrowTx, attacker } = await lockThenHandAway();
    const refundTx = h.op.send([
      h.op.transfer(escrow, plan.vault, plan.lock, attacker),
      h.op.memo(`decentral:refund:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, { httpStatus: 504 });
    await c.flush();
    await h.finalized();
    // The owner tells who could spend the lock; a node that leaves it out proves nobody owns it.
    const verifier = c.verifierOver(ownerlessNode(h.rpc));
    await verifier.runUntilSettled({}, { timeoutMs: 20_000 });
    // Its transfer names the attacker, not the escrow authority, as who signed it: that much
    // the instruction proves without an owner.
    expect(await c.outcome(plan.jobId)).toEqual({
      verdict: "discrepancy",
      failing: ["escrow.vault"],
    });
  });
});

/**
 * Locks a job honestly, then, in a transaction naming no job, lets the attacker spend
 * `approved` of the escrow vault (by default far more than the lock) as its delegate.
 */
async function lockThenDelegate(approved: (plan: JobPlan) => bigint = () => 10n ** 15n) {
  const c = await h.scenario();
  await c.pinKey(1);
  const escrow = h.op.accounts.escrowVault;
  const plan = h.op.plan({ keyIndex: 1 });
  const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
  h.op.send([h.op.approveChecked(escrow, h.op.attacker.address, approved(plan))]);
  onTestFinished(() => {
    h.op.send([h.op.revoke(escrow)]);
  });
  return { c, escrow, plan, escrowTx, attacker: { authority: h.op.attacker.address } };
}

describe("the pinned escrow vault's locks given to a delegate", () => {
  it("catches a settlement a delegate the operator named after the lock pays exactly", async () => {
    const { c, escrow, plan, escrowTx, attacker } = await lockThenDelegate();
    const settlementTx = h.op.send([
      h.op.transfer(escrow, plan.worker.tokenAccount, plan.workerShare, attacker),
      h.op.transfer(escrow, h.op.accounts.treasury.tokenAccount, plan.treasuryShare, attacker),
      h.op.transfer(escrow, plan.vault, plan.remainder, attacker),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
  });

  it("catches a settlement the delegate signs while each transfer also names the escrow authority", async () => {
    const { c, escrow, plan, escrowTx, attacker } = await lockThenDelegate();
    // The token program reads a transfer's authority at its place and nothing after it but a
    // multisig's signers: the escrow authority's address appended there signs nothing.
    const alsoNamingAuthority = (ix: InstructionSpec): InstructionSpec => ({
      ...ix,
      accounts: [
        ...ix.accounts,
        { address: h.op.escrowAuthority.address, signer: false, writable: false },
      ],
    });
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, attacker).map((ix) => alsoNamingAuthority(ix)),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
    expect(await c.check(plan.jobId, "escrow.vault")).toMatchObject({
      actual: { vault: escrow, spentBy: h.op.attacker.address, releasedBy: settlementTx },
    });
  });

  it("catches it again, when judged again, in facts stored before the signer was kept", async () => {
    const { c, plan, escrowTx, attacker } = await lockThenDelegate();
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, attacker).map((ix) => ({
        ...ix,
        accounts: [
          ...ix.accounts,
          { address: h.op.escrowAuthority.address, signer: false, writable: false },
        ],
      })),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
    // The settlement's facts as an older version stored them: no transfer's authority kept.
    const [row] = (await createSignatureStore(c.store).load([settlementTx])).values();
    const facts = row!.facts as { tokenInstructions: { authority?: string }[] };
    for (const ix of facts.tokenInstructions) delete ix.authority;
    await updateSignature(c.store, settlementTx, { facts });
    await c.verifierOver(h.rpc).reverify(plan.jobId);
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
  });

  it("catches a whole refund a delegate the operator named after the lock pays", async () => {
    const { c, escrow, plan, escrowTx, attacker } = await lockThenDelegate((plan) => plan.lock);
    const refundTx = h.op.send([
      h.op.transfer(escrow, plan.vault, plan.lock, attacker),
      h.op.memo(`decentral:refund:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, { httpStatus: 504 });
    expect(await c.verdicts(plan.jobId)).toEqual([discrepancy("escrow.vault")]);
  });
});

// Last: it moves the shared chain's clock past a window, which would date later receipts early.
describe("a node that dates no transaction", () => {
  it("does not verify a refund past the window: when it came is not known", async () => {
    const profile = { ...localnetProfile, receiptTimeSkewSeconds: 30 };
    const c = await h.scenario(profile);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const answered = { httpStatus: 504, createdAt: h.op.now() };
    h.op.advanceClock((profile.settlementWindowSeconds + 120) * 1000);
    const refundTx = h.op.send(h.op.refundIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx: refundTx }, answered);
    await c.flush();
    await h.finalized();
    // `blockTime` is optional in a getTransaction answer, and only it dates the refund.
    const undated = rewritingNode(h.rpc, () => (result: { blockTime: number | null }) => {
      result.blockTime = null;
    });
    await c.verifierOver(undated).runUntilSettled({}, { timeoutMs: 20_000 });
    expect(await c.outcome(plan.jobId)).toEqual({ verdict: "partially_verified", failing: [] });
    expect((await reportsStore(c.store).auditRows(plan.jobId))?.job.unproven).toEqual([
      "block_time_unknown",
    ]);
  });
});

// The chain refuses a transaction listing an account twice. A node answering with the worker's
// token account listed twice gave it two balance changes: the worker read as paid twice and an
// honest job became a discrepancy of the operator's, on a node's word.
describe("an answer listing one account twice", () => {
  it("is a node's unreadable answer: the job waits as an error naming it, never judged by it", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    await c.flush();
    await h.finalized();
    type Balance = { accountIndex: number };
    type Result = {
      transaction: { message: { accountKeys: string[] } };
      meta: {
        preBalances: unknown[];
        postBalances: unknown[];
        preTokenBalances: Balance[];
        postTokenBalances: Balance[];
      };
    };
    const twice = rewritingNode(h.rpc, (signature) =>
      signature !== txs.settlementTx
        ? undefined
        : (result: Result) => {
            const keys = result.transaction.message.accountKeys;
            const at = keys.indexOf(plan.worker.tokenAccount);
            keys.push(keys[at]!);
            const { meta } = result;
            meta.preBalances.push(meta.preBalances[at]);
            meta.postBalances.push(meta.postBalances[at]);
            for (const list of [meta.preTokenBalances, meta.postTokenBalances]) {
              const own = list.find((b) => b.accountIndex === at);
              if (own) list.push({ ...own, accountIndex: keys.length - 1 });
            }
          },
    );
    const row = await triedAsError(c.verifierOver(twice), c.store as SqliteStore, plan.jobId);
    expect(row).toMatchObject({ verdict: "error", last_error: /listed twice/ });
    // Read from an honest node, the same job verifies.
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });
});

// A node may leave `meta.preTokenBalances`/`postTokenBalances` out of its answer (both are
// optional in the RPC's JSON). Read as no balance moving, an honest settlement paid nobody and
// the job became a discrepancy of the operator's, on a node's omission.
describe("an answer with no token balances", () => {
  it("is a node's unreadable answer: the job waits as an error naming it, never judged by it", async () => {
    const c = await h.scenario();
    await c.pinKey(2);
    const plan = h.op.plan({ keyIndex: 2 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    await c.flush();
    await h.finalized();
    const bare = rewritingNode(h.rpc, (signature) =>
      signature !== txs.settlementTx
        ? undefined
        : (result: { meta: Record<string, unknown> }) => {
            delete result.meta.preTokenBalances;
            delete result.meta.postTokenBalances;
          },
    );
    const row = await triedAsError(c.verifierOver(bare), c.store as SqliteStore, plan.jobId);
    expect(row).toMatchObject({ verdict: "error", last_error: /token balances/ });
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });

  it("stored before it was unreadable, is fetched again, never judged by", async () => {
    const c = await h.scenario();
    await c.pinKey(2);
    const plan = h.op.plan({ keyIndex: 2 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    await c.flush();
    await h.finalized();
    // The settlement as a version that read such an answer stored it: no balance moved.
    await storeServedWithoutTokenBalances(c.store, h.rpc, txs.settlementTx);
    // Judged by them, the settlement paid nobody: a discrepancy on the node's omission.
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
  });
});

describe("a stored answer an older version read without token balances", () => {
  it("is fetched again for its job, and stops no round of the verifier", async () => {
    const c = await h.scenario();
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1 });
    const { escrowTx, settlementTx } = h.op.honestJob(plan);
    c.record(plan, { escrowTx, settlementTx });
    expect(await c.verdicts(plan.jobId)).toEqual([verified]);
    // As an older version stored it: the node's answer without token balances (read then as no
    // balance moving), and facts keeping no transfer's authority, so the answer is read again.
    const [row] = (await createSignatureStore(c.store).load([settlementTx])).values();
    const facts = row!.facts as { tokenInstructions: { authority?: string }[] };
    for (const ix of facts.tokenInstructions) delete ix.authority;
    const raw = JSON.parse(row!.raw as string) as { meta: Record<string, unknown> };
    delete raw.meta.preTokenBalances;
    delete raw.meta.postTokenBalances;
    await updateSignature(c.store, settlementTx, { facts, raw: JSON.stringify(raw) });
    // Read again, it is unreadable: it is fetched again for its job, and every other job is judged.
    const verifier = c.verifierOver(h.rpc);
    await verifier.reverify(plan.jobId);
    const other = h.op.plan({ keyIndex: 1 });
    c.record(other, h.op.honestJob(other));
    await c.flush();
    await verifier.runUntilSettled({}, { timeoutMs: 2_000 });
    expect(await c.outcome(other.jobId)).toEqual({ verdict: "verified", failing: [] });
    expect(await c.outcome(plan.jobId)).toEqual({ verdict: "verified", failing: [] });
  });
});
