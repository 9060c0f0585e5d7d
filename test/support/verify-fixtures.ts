import type { TokenChange, TransactionFacts } from "../../src/chain/transaction-facts.js";
import { localnetAccounts } from "../../src/localnet/keys.js";
import type { ReceiptForChecks } from "../../src/verify/checks.js";

/**
 * Block times of the fixtures' transactions start at the test run's start: receipts recorded
 * now are within `receipt.time`'s span of their locks.
 */
const fixtureEpochSeconds = Math.floor(Date.now() / 1000);

/** Reference-model transactions built by hand, for checks and engine tests without a chain. */

export const accounts = localnetAccounts();
export const worker = accounts.workers[2]!; // unstaked: 75%
export const vault = accounts.creditVaults[0]!.vault;
export const sig = (c: string) => c.repeat(87).slice(0, 87);

export function change(account: string, owner: string, delta: bigint): TokenChange {
  return {
    account,
    owner,
    mint: accounts.mint,
    programId: accounts.tokenProgram,
    decimals: 6,
    pre: 1_000_000_000n,
    post: 1_000_000_000n + delta,
    delta,
  };
}

export function facts(
  signature: string,
  slot: number,
  memo: string,
  changes: TokenChange[],
): TransactionFacts {
  return {
    signature,
    slot,
    blockTime: fixtureEpochSeconds + slot,
    succeeded: true,
    err: null,
    fee: 5000n,
    feePayer: accounts.payer,
    version: "legacy",
    accounts: [],
    tokenChanges: changes,
    solChanges: [],
    memos: [memo],
    programs: [],
    tokenInstructions: [],
    innerInstructionsKnown: true,
  };
}

/** An honest qwen3-8b job: lock 8 + 4*2 = 16 credits (2,000 max tokens), charge 8 credits. */
export function honest(jobId = "job_honest", tag = "") {
  const lock = 160_000n;
  const charge = 80_000n;
  const workerShare = (charge * 7500n) / 10_000n;
  const escrow = facts(sig(`E${tag}`), 10, `decentral:escrow:${jobId}`, [
    change(vault, accounts.escrowAuthority, -lock),
    change(accounts.escrowVault, accounts.escrowAuthority, lock),
  ]);
  const settlement = facts(sig(`S${tag}`), 12, `decentral:settle:${jobId}`, [
    change(accounts.escrowVault, accounts.escrowAuthority, -lock),
    change(worker.tokenAccount, worker.address, workerShare),
    change(accounts.treasury.tokenAccount, accounts.treasury.owner, charge - workerShare),
    change(vault, accounts.escrowAuthority, lock - charge),
  ]);
  const job: ReceiptForChecks = {
    jobId,
    escrowTx: escrow.signature,
    settlementTx: settlement.signature,
    worker: worker.address,
    model: "qwen3-8b",
    completionTokens: 300,
    maxTokens: null,
    httpStatus: 200,
    keyFingerprint: "0123456789abcdef",
    apiStatus: null,
    apiCreditsChargedUnits: null,
    apiEscrowTx: null,
    apiSettlementTx: null,
    apiWorker: null,
    apiCheckedAt: null,
  };
  return { job, escrow, settlement };
}
