import { describe, expect, it } from "vitest";
import { createLedgerReader } from "../src/ledger/reader.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { chainSecondAfter } from "./support/finality.js";
import { discrepancy, useAdversaryHarness, verified } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

/**
 * A Token-2022 credit mint whose permanent delegate is the attacker: it may move any vault's
 * money with no owner's signature and no Approve on the vault. What it moves is still money out
 * of the vault (balances), and what it pays out of escrow is not the escrow authority's release.
 */
const log = createLogger({ level: "silent" });

const h = useAdversaryHarness();

describe("a credit mint with a permanent delegate", () => {
  it("fails a release it signs and lists a debit it makes as unreceipted; the nightly run exits 1", async () => {
    const op = h.op;
    const mint = op.createToken2022Mint({ permanentDelegate: op.attacker.address });
    const account = (owner: string, fund = 0n) => op.createToken2022Account(owner, mint, fund);
    const escrow = account(op.escrowAuthority.address, 10_000_000_000n);
    const vault = account(op.escrowAuthority.address, 100_000_000n);
    const treasury = account(op.treasuryOwner.address);
    const thief = account(op.attacker.address);
    const workerAccount = account(op.worker(0).address);
    const profile = { ...localnetProfile, usdcMint: mint, escrowVault: escrow, treasury };
    const c = await h.scenario(profile);
    /** A job of key 1 over the Token-2022 accounts, released by `signer`. */
    const job = (signer = op.escrowAuthority.address) => {
      const p = op.plan({ keyIndex: 1, workerIndex: 0 });
      const plan = { ...p, vault, worker: { ...p.worker, tokenAccount: workerAccount } };
      const escrowTx = op.send([
        op.transfer2022(vault, escrow, plan.lock, mint),
        op.memo(`decentral:escrow:${plan.jobId}`),
      ]).signature;
      const settlementTx = op.send([
        op.transfer2022(escrow, workerAccount, plan.workerShare, mint, signer),
        op.transfer2022(escrow, treasury, plan.treasuryShare, mint, signer),
        op.transfer2022(escrow, vault, plan.remainder, mint, signer),
        op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      c.record(plan, { escrowTx, settlementTx });
      return plan.jobId;
    };
    // The first job ties key 1 to the vault.
    expect(await c.verdicts(job())).toEqual([verified]);
    const from = await chainSecondAfter(h.world);
    const honest = job();
    // The delegate moves the vault's money, under the honest job's settle memo.
    const theft = op.send([
      op.transfer2022(vault, thief, 77_000n, mint, op.attacker.address),
      op.memo(`decentral:settle:${honest}`),
    ]).signature;
    const delegated = job(op.attacker.address);
    expect(await c.verdicts(honest, delegated)).toEqual([verified, discrepancy("escrow.vault")]);

    await h.finalized();
    const reader = createLedgerReader({ store: c.store, rpc: h.rpc, profile, log });
    const verifier = createVerifier({
      store: c.store,
      rpc: h.rpc,
      profile,
      log,
      options: quickVerifierOptions,
    });
    const run = await runNightlyVerification(c.store, verifier, {
      from,
      to: Date.now(),
      timeoutMs: 10_000,
      ledger: ledgerWindowCheck({ store: c.store, reader, profile, graceSeconds: 0 }),
    });
    expect(run.exitCode).toBe(1);
    expect(run.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ vault, signature: theft, amountUnits: "-77000" }),
    ]);
    // Known limit: the mint's permanent delegate is no standing delegate of the vault's own.
    expect(run.ledger?.vaultDelegatesNow).toEqual([]);
  });
});
