import { beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { buildStatement, statementToCsv } from "../src/ledger/statement.js";
import { ledgerFindingCount } from "../src/ledger/window-check.js";
import { localKeyNames, localSigner } from "../src/localnet/keys.js";
import { summaryToText } from "../src/nightly/summary-format.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { clockPause } from "./support/chain-clock.js";
import { finalizedPast } from "./support/finality.js";
import {
  finalizedAfter,
  nightlyOnChain,
  periodEdge,
  vaultStatementSince,
} from "./support/ledger-periods.js";
import {
  type AdversaryHarness,
  AuthorityType,
  type Scenario,
  startAdversaryHarness,
  useAdversaryHarness,
} from "./support/operator.js";
import { readJob } from "./support/seed-recorder.js";

const h = useAdversaryHarness();
/** A whole second after the world opened and funded its credit vaults. */
let worldOpened = 0;
beforeAll(() => {
  worldOpened = periodEdge(h);
});

/** A period's start a few seconds back, after the vaults' own opening deposits. */
const periodStart = () => Math.max(h.op.now() - 5_000, worldOpened);

/** A scenario on `w`'s chain whose receipts are dated by its clock, which the tests move on. */
const scenarioOn = async (w: AdversaryHarness, profile?: Profile) =>
  (await w.scenario(profile)).recordOnChainClock();

/**
 * The nightly run on `w`'s chain, on its clock: the tests move it on to a period's edge, and the
 * run's pauses for the chain to finalize 2 s past the window move it on instead of waiting.
 */
const nightlyOn = (w: AdversaryHarness, c: Scenario) =>
  nightlyOnChain(w, c, undefined, () => w.op.now(), clockPause(w));

/** Reads the vault and builds its statement of [from, now) with no grace after the window. */
const statementOf = (c: Scenario, vault: string, from: number) =>
  vaultStatementSince(h, c, vault, from);

describe("the statement of a credit vault against an operator who names its debits", () => {
  it("shows another key's job naming a theft from this vault as its lock as an unreceipted debit", async () => {
    const c = await scenarioOn(h);
    const from = periodStart();
    const one = await c.pinKey(1);
    await c.pinKey(2);
    // 500,000 out of key 1's vault into escrow, memo naming key 2's job K, then to the attacker.
    const k = h.op.plan({ keyIndex: 2 });
    const honestK = h.op.honestJob(k);
    const theft = h.op.send([
      h.op.transfer(one.vault, h.op.accounts.escrowVault, 500_000n),
      h.op.memo(`decentral:escrow:${k.jobId}`),
    ]).signature;
    h.op.send([h.op.transfer(h.op.accounts.escrowVault, h.op.attackerAccount(0n), 500_000n)]);
    c.record(k, honestK);
    // The jobs API files the theft as K's escrow.
    c.jobsApi(k.jobId, {
      status: "settled",
      credits_charged: Number(k.charge / 10_000n),
      worker_address: k.worker.address,
      on_chain: { escrow_tx: theft, settlement_tx: honestK.settlementTx },
    });
    await c.verify();

    const s = await statementOf(c, one.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({
        finding: "unreceipted_debit",
        signature: theft,
        amountUnits: -500_000n,
        memoJobId: k.jobId,
      }),
    ]);
    expect(s.unexplainedOutUnits).toBe(500_000n);
    // Only key 1's own job is a lock of this vault, settled and released.
    expect(s.locksUnits).toBe(one.lock);
    expect(s.unreleasedLocks).toEqual([]);
    expect(s.creditsHeaderMismatches).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
  });

  it("shows a debit that a late jobs API answer names as a receipted job's lock, and a settlement paying it on, as an unreceipted debit", async () => {
    const c = await scenarioOn(h);
    const from = periodStart();
    // J's receipt names its lock and settlement; the jobs API, asked about it, is still
    // processing, so J passes on its receipt alone (partially verified: no final answer).
    const j = h.op.plan({ keyIndex: 0 });
    const honestJ = h.op.honestJob(j);
    c.record(j, honestJ);
    c.jobsApi(j.jobId, { status: "processing" });
    await h.finalized();
    expect(await c.verdicts(j.jobId)).toEqual([{ verdict: "partially_verified", failing: [] }]);

    // The customer tops up; the operator moves 3,000,000 of it into escrow under J's escrow
    // memo and on to the treasury under J's settle memo, and the jobs API then names these two
    // as J's escrow and settlement.
    h.op.fund(j.vault, 3_120_000n);
    const theft = h.op.send([
      h.op.transfer(j.vault, h.op.accounts.escrowVault, 3_000_000n),
      h.op.memo(`decentral:escrow:${j.jobId}`),
    ]).signature;
    const payout = h.op.send([
      h.op.transfer(h.op.accounts.escrowVault, h.op.accounts.treasury.tokenAccount, 3_000_000n),
      h.op.memo(`decentral:settle:${j.jobId}`),
    ]).signature;
    c.jobsApi(j.jobId, {
      status: "settled",
      credits_charged: Number(j.charge / 10_000n),
      worker_address: j.worker.address,
      on_chain: { escrow_tx: theft, settlement_tx: payout },
    });
    await h.finalized();
    // The verifier reads both settlements as J's: its charge and what was taken.
    expect((await c.verdicts(j.jobId))[0]?.verdict).toBe("discrepancy");

    const s = await statementOf(c, j.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({
        finding: "unreceipted_debit",
        signature: theft,
        amountUnits: -3_000_000n,
        memoJobId: j.jobId,
      }),
    ]);
    expect(s.unexplainedOutUnits).toBe(3_000_000n);
    // J's one lock is the one its receipt names, settled and released.
    expect(s.locksUnits).toBe(j.lock);
    expect(s.returnsUnits).toBe(j.remainder);
    expect(s.depositsUnits).toBe(3_120_000n);
    expect(s.unreleasedLocks).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
  });

  it("keeps a lock that one base unit sent back with a refund memo does not account for an unreleased lock", async () => {
    const profile: Profile = { ...localnetProfile, settlementWindowSeconds: 1 };
    const c = await scenarioOn(h, profile);
    const from = periodStart();
    // An honest job of the same vault, settled and verified: it closes cleanly.
    const honest = await c.pinKey(3);
    const plan = h.op.plan({ keyIndex: 3 });
    const lock = h.op.send(h.op.lockIxs(plan)).signature;
    h.op.send([
      h.op.transfer(h.op.accounts.escrowVault, plan.vault, 1n),
      h.op.memo(`decentral:refund:${plan.jobId}`),
    ]);
    c.record(
      plan,
      { escrowTx: lock, settlementTx: null },
      { completionTokens: null, promptTokens: null, totalTokens: null },
    );
    await c.flush();
    // Past the settlement window (1 s) with no grace.
    await finalizedAfter(h, 1_000);

    const s = await statementOf(c, plan.vault, from);
    expect(s.returnsUnits).toBe(honest.remainder + 1n);
    expect(s.unreleasedLocks).toEqual([
      expect.objectContaining({
        finding: "unreleased_lock",
        jobId: plan.jobId,
        signature: lock,
        lockUnits: plan.lock,
        outstandingUnits: plan.lock - 1n,
      }),
    ]);
    expect(s.unexplained).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("the statement of a credit vault refunded a lock the settlement then closed again", () => {
  it("keeps the refund no receipt names with its job once the vault is read: the job is not verified", async () => {
    const c = await scenarioOn(h);
    // The period starts now: earlier tests' lines of this vault are not in it.
    const from = periodEdge(h);
    // A lock of 160,000 refunded whole, then settled as if it were still in escrow: 40,000
    // more came back than left, out of other customers' locks. Receipt and jobs API name the
    // lock and the settlement only.
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const refund = h.op.send(h.op.refundIxs(plan)).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    c.honestJobsApi(plan, { escrowTx, settlementTx });
    await h.finalized();
    expect(await c.verdicts(plan.jobId)).toEqual([{ verdict: "verified", failing: [] }]);

    // The vault got back 200,000 of a 160,000 lock.
    const s = await statementOf(c, plan.vault, from);
    expect({ locks: s.locksUnits, returns: s.returnsUnits }).toEqual({
      locks: plan.lock,
      returns: plan.lock + plan.remainder,
    });
    // Read, the refund is the job's too, and the job judged again on both closings.
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([refund]);
    expect(await c.verdicts(plan.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["jobs_api.matches_chain", "refund.not_settled"] },
    ]);
  });
});

describe("the statement of a credit vault locked twice for one job", () => {
  it("keeps the second lock no receipt names with its job once the vault is read: escrow.single fails", async () => {
    const c = await scenarioOn(h);
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(plan);
    // The same lock again, under the job's escrow memo, kept in escrow.
    const second = h.op.send(h.op.lockIxs(plan)).signature;
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    await h.finalized();
    expect(await c.verdicts(plan.jobId)).toEqual([{ verdict: "verified", failing: [] }]);

    const s = await statementOf(c, plan.vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ finding: "unreceipted_debit", signature: second }),
    ]);
    expect((await readJob(c.store, plan.jobId))?.conflictSignatures).toEqual([second]);
    expect(await c.verdicts(plan.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["escrow.single"] },
    ]);
  });
});

describe("the statement of a credit vault another customer's settlement pays into", () => {
  it("files money a settlement moved in from another vault under its job's memo as a deposit, not a return", async () => {
    const c = await scenarioOn(h);
    await c.pinKey(1);
    await c.pinKey(2);
    const third = await c.pinKey(3);
    // The period starts after key 3's own job: its lock and return are not in it.
    const from = periodEdge(h);
    // Key 1's honest settlement also moves 30,000 from vault 2 to vault 3.
    const plan = h.op.plan({ keyIndex: 1 });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    const settlementTx = h.op.send([
      ...h.op.settleIxs(plan),
      h.op.transfer(h.op.vault(2), third.vault, 30_000n),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    await c.verify();

    const s = await statementOf(c, third.vault, from);
    expect({ deposits: s.depositsUnits, returns: s.returnsUnits }).toEqual({
      deposits: 30_000n,
      returns: 0n,
    });
    expect(s.differenceUnits).toBe(0n);
  });
});

describe("the statement of a credit vault closed and opened again in another mint", () => {
  it("counts only the credit mint: a fake-mint 'refund' leaves the lock unreleased and is a finding", async () => {
    const profile: Profile = { ...localnetProfile, settlementWindowSeconds: 1 };
    const c = await scenarioOn(h, profile);
    const from = periodStart();
    // The operator locks key 4's whole vault for job J, closes the empty vault and opens it
    // again at the same address in a fake mint of the same decimals, then "refunds" J there.
    const keyIndex = 4;
    const vault = h.op.vault(keyIndex);
    const all = h.op.balance(vault);
    const plan = { ...h.op.plan({ keyIndex: 2 }), keyIndex, vault };
    const lock = h.op.send([
      h.op.transfer(vault, h.op.accounts.escrowVault, all),
      h.op.memo(`decentral:escrow:${plan.jobId}`),
    ]).signature;
    const fake = h.op.createFakeMint();
    h.op.reopenVault(keyIndex, fake);
    const source = h.op.createTokenAccount(h.op.attacker.address, fake, all);
    const refund = h.op.send([
      h.op.transfer(source, vault, all, { mint: fake, authority: h.op.attacker.address }),
      h.op.memo(`decentral:refund:${plan.jobId}`),
    ]).signature;
    c.record(
      plan,
      { escrowTx: lock, settlementTx: refund },
      {
        httpStatus: 504,
        completionTokens: null,
        promptTokens: null,
        totalTokens: null,
        creditsRemainingUnits: null,
      },
    );
    await c.verify();
    expect((await c.verdicts(plan.jobId))[0]?.verdict).toBe("discrepancy");
    // Past the settlement window (1 s) with no grace.
    await finalizedAfter(h, 1_000);

    const s = await statementOf(c, vault, from);
    // No credit came back: J's lock is still out, and nothing is a return or a deposit.
    expect(s.locksUnits).toBe(all);
    expect(s.returnsUnits).toBe(0n);
    expect(s.depositsUnits).toBe(0n);
    expect(s.unreleasedLocks).toEqual([
      expect.objectContaining({
        finding: "unreleased_lock",
        jobId: plan.jobId,
        signature: lock,
        outstandingUnits: all,
      }),
    ]);
    // The fake tokens are findings in their own mint, and the address holds no credits now.
    expect(s.foreignMint).toEqual([
      expect.objectContaining({
        finding: "foreign_mint_movement",
        signature: refund,
        memoJobId: plan.jobId,
        changes: [expect.objectContaining({ mint: fake, amountUnits: all })],
      }),
      expect.objectContaining({ finding: "foreign_mint_balance", mint: fake, amountUnits: all }),
    ]);
    expect(s.counts.foreignMint).toBe(2);
    expect(s.closingByLedgerUnits).toBe(0n);
    expect(s.closingOnChainUnits).toBe(0n);
  });
});

describe("the statement of a credit vault whose owner was changed", () => {
  it("names the SetAuthority that gave the vault away, and the refund into it, though every line sums", async () => {
    const c = await scenarioOn(h);
    // After what earlier tests moved in this vault.
    const from = periodEdge(h);
    await c.pinKey(3);
    const plan = h.op.plan({ keyIndex: 3, completionTokens: null });
    const lock = h.op.send(h.op.lockIxs(plan)).signature;
    // Moves no money and names no job: only the vault's owner after it tells.
    const handover = h.op.send([
      h.op.setAuthority(plan.vault, AuthorityType.AccountOwner, h.op.attacker.address),
    ]).signature;
    onTestFinished(() => h.op.giveBackVault(plan.vault));
    const refund = h.op.send(h.op.refundIxs(plan)).signature;
    c.record(plan, { escrowTx: lock, settlementTx: refund }, { httpStatus: 504 });
    await c.verify();

    const s = await statementOf(c, plan.vault, from);
    expect(s.unexplained).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
    expect(s.ownerChanges).toEqual([
      {
        finding: "vault_owner_changed",
        signature: handover,
        slot: expect.any(Number),
        blockTime: expect.any(Number),
        owner: h.op.attacker.address,
        memo: null,
        memoJobId: null,
      },
      expect.objectContaining({
        finding: "vault_owner_changed",
        signature: refund,
        owner: h.op.attacker.address,
        memoJobId: plan.jobId,
      }),
      // The refund is the vault's newest transaction, and it leaves the vault the attacker's.
      expect.objectContaining({
        finding: "vault_owner_now",
        signature: refund,
        owner: h.op.attacker.address,
      }),
    ]);
    expect(s.counts.ownerChanges).toBe(3);
    const csv = statementToCsv({ from, to: Date.now(), generatedAt: Date.now(), vaults: [s] });
    expect(csv).toContain(`vault_owner_changed,${plan.vault},`);
    // The refund's row names the new owner and keeps the line's own memo.
    expect(csv).toContain(
      `,${plan.jobId},"owner=${h.op.attacker.address}; memo=decentral:refund:${plan.jobId}"`,
    );
  });

  it("makes the nightly run exit 1 on a SetAuthority alone, every job verified", async () => {
    // A world of its own: the vault's whole history is judged, and holds no other test's.
    const w = await startAdversaryHarness();
    onTestFinished(() => w.close());
    const c = await scenarioOn(w);
    const { vault } = await c.pinKey(1);
    const from = periodEdge(w);
    const handover = w.op.send([
      w.op.setAuthority(vault, AuthorityType.AccountOwner, w.op.attacker.address),
    ]).signature;
    await w.finalized();
    const to = w.op.now();
    const run = await nightlyOn(w, c).nightly({ from, to });
    const found = {
      vault,
      signature: handover,
      owner: w.op.attacker.address,
      memoJobId: null,
      at: expect.any(String),
      beforeWindow: false,
    };
    expect(run.ledger?.vaultOwnerChanges).toEqual([
      { ...found, finding: "vault_owner_changed" },
      { ...found, finding: "vault_owner_now" },
    ]);
    expect(run.ledger && ledgerFindingCount(run.ledger)).toBe(2);
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    expect(summaryToText(run)).toContain(
      `vault ${vault} was owned by ${w.op.attacker.address}, not the escrow authority, after ${handover}`,
    );
  });
});

/** Resolves once `slots` slots of the harness's chain have passed. */
async function slotsPass(w: { world: { currentSlot(): number } }, slots: number) {
  const target = w.world.currentSlot() + slots;
  while (w.world.currentSlot() < target) await new Promise((r) => setTimeout(r, 10));
}

describe("the statement of a credit vault another owns since an earlier period", () => {
  it("names the vault's owner in every later statement and makes the nightly run exit 1, until it is given back", async () => {
    // A world of its own: the vault's whole history is judged, and holds no other test's.
    const w = await startAdversaryHarness();
    onTestFinished(() => w.close());
    const c = await scenarioOn(w);
    const { vault } = await c.pinKey(1);
    const wait = () => slotsPass(w, 5);
    const opened = periodEdge(w);
    const handover = w.op.send([
      w.op.setAuthority(vault, AuthorityType.AccountOwner, w.op.attacker.address),
    ]).signature;
    await wait();
    // A later period, holding no transaction of the vault: the attacker still owns it.
    const from = periodEdge(w);
    // The period of the second `from` opens, read once the chain has finalized it (the
    // machine's clock may trail the chain's by a slot).
    await finalizedPast(w.world, from);
    const to = Math.min(from + 1_000, w.op.now());
    const { reader, nightly } = nightlyOn(w, c);
    // The run of the handover's period names it; the next run has no transaction to name.
    expect((await nightly({ from: opened, to: from })).exitCode).toBe(1);
    const run = await nightly({ from, to });
    expect(run.ledger?.vaultOwnerChanges).toEqual([
      {
        vault,
        finding: "vault_owner_now",
        signature: handover,
        owner: w.op.attacker.address,
        memoJobId: null,
        at: expect.any(String),
        beforeWindow: false,
      },
    ]);
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    expect(summaryToText(run)).toContain(
      `vault ${vault} is owned now by ${w.op.attacker.address}, not the escrow authority`,
    );
    const later = await buildStatement(
      c.store,
      { from, to, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    const s = later.vaults[0]!;
    expect(s.ownerChanges).toEqual([
      expect.objectContaining({ finding: "vault_owner_now", owner: w.op.attacker.address }),
    ]);
    expect(statementToCsv(later)).toContain(`vault_owner_now,${vault},`);

    // Given back: the vault's newest transaction leaves it the escrow authority's again.
    w.op.giveBackVault(vault);
    await wait();
    await reader.syncVault(vault);
    const back = await buildStatement(
      c.store,
      { from, to, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    expect(back.vaults[0]!.ownerChanges).toEqual([]);
  });

  it("keeps naming the vault's owner after a SOL transfer to it, which shows no owner", async () => {
    const w = await startAdversaryHarness();
    onTestFinished(() => w.close());
    const c = await scenarioOn(w);
    const { vault } = await c.pinKey(1);
    const wait = () => slotsPass(w, 5);
    const opened = periodEdge(w);
    const handover = w.op.send([
      w.op.setAuthority(vault, AuthorityType.AccountOwner, w.op.attacker.address),
    ]).signature;
    await wait();
    // One lamport to the vault, which anyone may send: no token program among its keys, so a
    // validator records no token balances for it, and the vault's newest line shows no owner.
    const from = periodEdge(w);
    const sol = w.op.send([w.op.lamportsTo(vault)]);
    expect(sol.postTokenBalances).toEqual([]);
    // The period of the second `from` opens, read once the chain has finalized it (the
    // machine's clock may trail the chain's by a slot).
    await finalizedPast(w.world, from);
    const to = Math.min(from + 1_000, w.op.now());
    const { reader, nightly } = nightlyOn(w, c);
    // The handover's period names it; the next period's newest line (the lamport) shows no
    // owner, and the vault is still the attacker's.
    expect((await nightly({ from: opened, to: from })).exitCode).toBe(1);
    const run = await nightly({ from, to });
    expect(run.ledger?.vaultOwnerChanges).toEqual([
      expect.objectContaining({
        finding: "vault_owner_now",
        signature: handover,
        beforeWindow: false,
      }),
    ]);
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    const statement = async () =>
      (await buildStatement(c.store, { from, to, vault }, { profile: c.profile, graceSeconds: 0 }))
        .vaults[0]!.ownerChanges;
    expect(await statement()).toEqual([
      expect.objectContaining({
        finding: "vault_owner_now",
        signature: handover,
        owner: w.op.attacker.address,
      }),
    ]);

    // Given back, then another lamport: the vault is the escrow authority's again.
    w.op.send([
      w.op.setAuthority(
        vault,
        AuthorityType.AccountOwner,
        w.op.accounts.escrowAuthority,
        w.op.attacker.address,
      ),
    ]);
    w.op.send([w.op.lamportsTo(vault)]);
    await wait();
    await reader.syncVault(vault);
    expect(await statement()).toEqual([]);
  });
});

describe("the statement of a credit vault given a delegate", () => {
  it("names the Approve and the ApproveChecked that let another spend the vault, though nothing moved and the job verified", async () => {
    const c = await scenarioOn(h);
    // After what earlier tests moved in this vault.
    const from = periodEdge(h);
    await c.pinKey(1);
    const plan = h.op.plan({ keyIndex: 1, completionTokens: null });
    const lock = h.op.send(h.op.lockIxs(plan)).signature;
    // Moves nothing and names no job: the attacker may now spend the whole balance alone.
    const approve = h.op.send([
      h.op.approve(plan.vault, h.op.attacker.address, 10n ** 15n),
    ]).signature;
    const refund = h.op.send(h.op.refundIxs(plan)).signature;
    c.record(plan, { escrowTx: lock, settlementTx: refund }, { httpStatus: 504 });
    const checked = h.op.send([
      h.op.approveChecked(plan.vault, h.op.attacker.address, 1n),
    ]).signature;
    // Taking the delegate back is no finding; the approvals before it stay ones.
    h.op.send([h.op.revoke(plan.vault)]);
    await c.verify();
    expect((await c.outcome(plan.jobId)).verdict).toBe("verified");

    const s = await statementOf(c, plan.vault, from);
    expect(s.unexplained).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
    expect(s.ownerChanges).toEqual([]);
    expect(s.delegateApprovals).toEqual([
      {
        finding: "vault_delegate_approved",
        signature: approve,
        slot: expect.any(Number),
        blockTime: expect.any(Number),
        delegate: h.op.attacker.address,
        approvedUnits: 10n ** 15n,
        memo: null,
        memoJobId: null,
      },
      expect.objectContaining({
        finding: "vault_delegate_approved",
        signature: checked,
        delegate: h.op.attacker.address,
        approvedUnits: 1n,
      }),
    ]);
    expect(s.counts.delegateApprovals).toBe(2);
    const csv = statementToCsv({ from, to: Date.now(), generatedAt: Date.now(), vaults: [s] });
    expect(csv).toContain(`vault_delegate_approved,${plan.vault},`);
    expect(csv).toContain(`delegate=${h.op.attacker.address}`);
  });

  it("names no delegate when another approves its own account naming the vault as the delegate", async () => {
    const c = await scenarioOn(h);
    const from = periodEdge(h);
    const { vault } = await c.pinKey(2);
    // Anyone can send this: it gives the vault a hold on the attacker's account, not the
    // attacker a hold on the vault. Both forms, signed by the attacker alone.
    const mine = h.op.attackerAccount(1_000n);
    h.op.send([
      h.op.approve(mine, vault, 1n, h.op.attacker.address),
      h.op.approveChecked(mine, vault, 1n, h.op.attacker.address),
    ]);

    const s = await statementOf(c, vault, from);
    expect(s.delegateApprovals).toEqual([]);
    expect(s.counts.delegateApprovals).toBe(0);
  });

  it("makes the nightly run exit 1 on an Approve alone, every job verified", async () => {
    // A world of its own: the vault's whole history is judged, and holds no other test's.
    const w = await startAdversaryHarness();
    onTestFinished(() => w.close());
    const c = await scenarioOn(w);
    const { vault } = await c.pinKey(1);
    const from = periodEdge(w);
    const approve = w.op.send([w.op.approve(vault, w.op.attacker.address, 10n ** 15n)]).signature;
    await w.finalized();
    const to = w.op.now();
    const run = await nightlyOn(w, c).nightly({ from, to });
    expect(run.ledger?.vaultDelegateApprovals).toEqual([
      {
        vault,
        signature: approve,
        delegate: w.op.attacker.address,
        memoJobId: null,
        at: expect.any(String),
        beforeWindow: false,
      },
    ]);
    expect(run.ledger && ledgerFindingCount(run.ledger)).toBe(1);
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    expect(summaryToText(run)).toContain(
      `vault ${vault} was given a delegate, ${w.op.attacker.address}, by an Approve in ${approve}`,
    );
  });
});

describe("the statements of two credit vaults one lock drew on together", () => {
  it("count what the job's settlement paid out once across them: the part it did not pay is an unreleased lock", async () => {
    const profile: Profile = { ...localnetProfile, settlementWindowSeconds: 1 };
    const c = await scenarioOn(h, profile);
    const one = await c.pinKey(1);
    const two = await c.pinKey(2);
    const from = periodEdge(h);
    // A keyless receipt's lock takes its 160,000 from vault 1 and, in the same transaction,
    // 120,000 more from vault 2. The settlement pays the 120,000 charge and returns 40,000 to
    // vault 1: the 120,000 of vault 2 stays in escrow.
    const plan = h.op.plan({ keyIndex: 1 });
    const taken = plan.charge;
    const escrowTx = h.op.send([
      ...h.op.lockIxs(plan),
      h.op.transfer(two.vault, h.op.accounts.escrowVault, taken),
    ]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx }, { keyFingerprint: null });
    await h.finalized();
    expect(await c.verdicts(plan.jobId)).toEqual([
      { verdict: "discrepancy", failing: ["escrow.source"] },
    ]);
    // Past the settlement window (1 s) with no grace.
    await finalizedAfter(h, 1_000);

    const s1 = await statementOf(c, one.vault, from);
    const s2 = await statementOf(c, two.vault, from);
    expect({ one: s1.locksUnits, two: s2.locksUnits }).toEqual({ one: plan.lock, two: taken });
    // The 120,000 the settlement paid out accounts for one of the two debits, not for both.
    const unreleased = [...s1.unreleasedLocks, ...s2.unreleasedLocks];
    expect(unreleased).toEqual([
      expect.objectContaining({ jobId: plan.jobId, signature: escrowTx }),
    ]);
    expect(unreleased[0]?.outstandingUnits).toBe(taken);
    expect([s1.differenceUnits, s2.differenceUnits]).toEqual([0n, 0n]);
  });
});

describe("the statement of a credit vault whose transaction moves money both in and out", () => {
  /** A customer's wallet holding `units` credits, and its signer. */
  function wallet(units: bigint) {
    const user = localSigner(localKeyNames.user(3));
    return { user, account: h.op.createTokenAccount(user.address, h.op.accounts.mint, units) };
  }

  it("lists a payout inside a top-up as an unreceipted debit, and the nightly run exits 1", async () => {
    const c = await scenarioOn(h);
    const { vault } = await c.pinKey(3);
    const from = periodEdge(h);
    // The operator builds the customer's "buy credits" transaction and signs a payout into it.
    const w = wallet(1_000_000n);
    const topUp = h.op.send(
      [
        h.op.transfer(w.account, vault, 1_000_000n, { authority: w.user.address }),
        h.op.transfer(vault, h.op.attackerAccount(0n), 300_000n),
      ],
      { extraSigners: [w.user] },
    ).signature;
    const s = await statementOf(c, vault, from);
    // Read by its net change alone, it was a deposit of 700,000 and no finding.
    expect(s.unexplained).toEqual([
      expect.objectContaining({
        finding: "unreceipted_debit",
        signature: topUp,
        amountUnits: -300_000n,
      }),
    ]);
    expect(s.unexplainedOutUnits).toBe(300_000n);
    expect(s.depositsUnits).toBe(1_000_000n);
    expect(s.counts.unexplained).toBe(1);
    expect(s.differenceUnits).toBe(0n);

    const run = await nightlyOn(h, c).nightly({ from, to: h.op.now() });
    // Other tests of this world locked from the same vault before: only this line is ours.
    expect(run.ledger?.unreceiptedDebits.filter((d) => d.signature === topUp)).toEqual([
      expect.objectContaining({ vault, amountUnits: "-300000", beforeWindow: false }),
    ]);
    expect(run).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
  });

  it("keeps an honest top-up a deposit, and lists a lock a top-up hides as an unreceipted debit", async () => {
    const c = await scenarioOn(h);
    const { vault } = await c.pinKey(3);
    const from = periodEdge(h);
    const w = wallet(2_000_000n);
    h.op.send([h.op.transfer(w.account, vault, 1_000_000n, { authority: w.user.address })], {
      extraSigners: [w.user],
    });
    // The mirror: a job's lock with a top-up in the same transaction, then its settlement.
    // The ledger reads no lock the vault's net change hides (its release would go unjudged):
    // what left the vault is an unreceipted debit, though a receipt names it.
    const plan = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send(
      [
        ...h.op.lockIxs(plan),
        h.op.transfer(w.account, vault, 1_000_000n, { authority: w.user.address }),
      ],
      { extraSigners: [w.user] },
    ).signature;
    const settlementTx = h.op.send(h.op.settleIxs(plan)).signature;
    c.record(plan, { escrowTx, settlementTx });
    await c.verify();

    const s = await statementOf(c, vault, from);
    expect(s.unexplained).toEqual([
      expect.objectContaining({ signature: escrowTx, amountUnits: -plan.lock }),
    ]);
    expect(s.depositsUnits).toBe(2_000_000n);
    expect(s.locksUnits).toBe(0n);
    expect(s.returnsUnits).toBe(plan.remainder);
    expect(s.differenceUnits).toBe(0n);
  });
});
