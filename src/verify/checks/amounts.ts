import { payableWorker, readLock, readRelease } from "../money-movements.js";
import { priceUnits } from "../profiles.js";
import type { ChainAmounts, CheckInput } from "./check-input.js";
import { sum } from "./check-list.js";
import type { UsableLock } from "./escrow.js";
import { signatureOwner } from "./signatures.js";
import type { RoleTx } from "./transaction.js";

/**
 * The money of the transactions this job owns (see `signatureOwner`): a replayed receipt owns
 * nothing it replays, so every on-chain movement is counted for exactly one job.
 */
export function amountsOf(
  input: CheckInput,
  escrow: RoleTx | null,
  extraLocks: RoleTx[],
  closings: RoleTx[],
  refunds: RoleTx[],
  lock: UsableLock | null,
): ChainAmounts {
  const { job, profile, namedBy } = input;
  const owns = (tx: RoleTx) =>
    signatureOwner(profile, tx.facts, namedBy.get(tx.signature) ?? [job.jobId], input.names) ===
    job.jobId;
  const amounts: ChainAmounts = {
    escrowedUnits: null,
    chargedUnits: null,
    workerPaidUnits: null,
    treasuryPaidUnits: null,
    refundedUnits: null,
    expectedChargeUnits:
      job.completionTokens === null ? null : priceUnits(profile, job.model, job.completionTokens),
    feesLamports: null,
  };
  // A second lock named only by the jobs API moved the customer's money too (its mismatch is
  // jobs_api.matches_receipt's finding): it is counted like the first.
  const apiLockFacts =
    job.apiEscrowTx !== null && job.apiEscrowTx !== escrow?.signature
      ? input.transactions.get(job.apiEscrowTx)
      : undefined;
  const locks = [
    escrow,
    apiLockFacts
      ? {
          role: "escrow" as const,
          signature: job.apiEscrowTx!,
          facts: apiLockFacts,
          stolenBy: null,
        }
      : null,
    ...extraLocks,
  ].filter((t): t is RoleTx => t !== null);
  const owned = [...locks, ...closings].filter((t) => owns(t));
  const known = [...locks, ...closings];
  if (known.length > 0) amounts.feesLamports = sum(owned.map((t) => t.facts.fee));
  if (locks.length > 0) {
    amounts.escrowedUnits = sum(
      locks.map((l) => (owns(l) && l.facts.succeeded ? readLock(profile, l.facts).lock : 0n)),
    );
  }
  if (closings.length === 0) return amounts;
  const creditVault =
    lock?.creditVault ??
    (escrow ? readLock(profile, escrow.facts).sources[0]?.account : undefined) ??
    job.creditVault ??
    "";
  const escrowAccount =
    lock?.escrowAccount ??
    (escrow ? readLock(profile, escrow.facts).escrowAccount : null) ??
    profile.escrowVault ??
    "";
  const treasury = profile.treasury ?? input.learnedTreasury ?? null;
  const vaultOwner =
    lock?.reading.sources[0]?.owner ??
    (escrow ? readLock(profile, escrow.facts).sources[0]?.owner : undefined) ??
    null;
  const payee = payableWorker(profile, job.worker, vaultOwner);
  const refundSigs = new Set(refunds.map((r) => r.signature));
  let worker = 0n;
  let treasuryPaid = 0n;
  let charged = 0n;
  let returned = 0n;
  for (const c of closings) {
    if (!owns(c) || !c.facts.succeeded) continue;
    const r = readRelease(profile, c.facts, {
      creditVault,
      escrowAccount,
      worker: refundSigs.has(c.signature) ? null : payee,
      treasury,
      vaultOwner: profile.escrowAuthority,
    });
    worker += r.worker;
    treasuryPaid += r.treasury;
    returned += r.returned;
    charged += r.worker + r.treasury + r.unexplainedTotal;
  }
  amounts.workerPaidUnits = worker;
  amounts.treasuryPaidUnits = treasuryPaid;
  amounts.chargedUnits = charged;
  amounts.refundedUnits = returned;
  return amounts;
}
