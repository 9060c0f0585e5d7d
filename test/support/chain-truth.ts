import type { Operator } from "./operator.js";

/** The money a report's figures must equal, each a sum over distinct transactions. */
export interface ChainTruth {
  escrowedUnits: bigint;
  chargedUnits: bigint;
  workerPaidUnits: bigint;
  treasuryPaidUnits: bigint;
  refundedUnits: bigint;
  feesLamports: bigint;
}

/**
 * What the distinct `signatures` moved, read from the local chain's token balance changes and
 * fees, never from the receipts: into escrow (escrowed), to the workers' and the treasury's
 * accounts (charged, their sum), back to a credit vault out of escrow (refunded). `worker`, one
 * worker's address: only the transactions that paid that worker (a worker's statement).
 */
export function chainTruth(
  op: Operator,
  signatures: Iterable<string>,
  worker?: string,
): ChainTruth {
  const { accounts } = op;
  const workerAccounts = new Set(
    accounts.workers
      .filter((w) => worker === undefined || w.address === worker)
      .map((w) => w.tokenAccount),
  );
  const vaults = new Set(accounts.creditVaults.map((v) => v.vault));
  const t: ChainTruth = {
    escrowedUnits: 0n,
    chargedUnits: 0n,
    workerPaidUnits: 0n,
    treasuryPaidUnits: 0n,
    refundedUnits: 0n,
    feesLamports: 0n,
  };
  for (const sig of new Set(signatures)) {
    const deltas = op.deltas(sig);
    const usdc = (account: string) => {
      const d = deltas.get(account);
      return d && d.mint === accounts.mint ? d.delta : 0n;
    };
    const escrowDelta = usdc(accounts.escrowVault);
    let workerPaid = 0n;
    for (const a of workerAccounts) if (usdc(a) > 0n) workerPaid += usdc(a);
    if (worker !== undefined && workerPaid === 0n) continue;
    t.feesLamports += op.fee(sig);
    if (escrowDelta > 0n) t.escrowedUnits += escrowDelta;
    t.workerPaidUnits += workerPaid;
    const treasury = usdc(accounts.treasury.tokenAccount);
    if (treasury > 0n) t.treasuryPaidUnits += treasury;
    if (escrowDelta < 0n) {
      for (const v of vaults) if (usdc(v) > 0n) t.refundedUnits += usdc(v);
    }
  }
  t.chargedUnits = t.workerPaidUnits + t.treasuryPaidUnits;
  return t;
}

/** A report's figures (or a truth) as `ChainTruth` compares them. */
export const moneyOf = (f: ChainTruth): ChainTruth => ({
  escrowedUnits: f.escrowedUnits,
  chargedUnits: f.chargedUnits,
  workerPaidUnits: f.workerPaidUnits,
  treasuryPaidUnits: f.treasuryPaidUnits,
  refundedUnits: f.refundedUnits,
  feesLamports: f.feesLamports,
});
