/* Custody's rules written once for both dialects. */

import { and, type Column, inArray, isNull, type SQL, sql } from "drizzle-orm";
import { treasuryWaitingVerdicts, type Verdict } from "../db/schema.js";

/**
 * Judged jobs of receipts naming no key and no vault whose lock passed `escrow.source` as drawn
 * on `vault` while no key held it (the passing check records the vault it drew on). Once a key
 * holds the vault that lock may be the key's customer's credits: they are looked at again, so
 * a verdict does not depend on whether the operator drew on a vault before or after its key's
 * first lock. A correlated EXISTS, driven from the keyless jobs (`jobs_key_created`);
 * `vaultInEvidence` is the dialect's read of the vault in the check row `c`'s JSON `actual`.
 */
export function untiedJobsWhere(
  jobs: { keyFingerprint: Column; creditVault: Column; verdict: Column },
  vaultInEvidence: SQL,
  vault: string,
): SQL {
  return and(
    isNull(jobs.keyFingerprint),
    isNull(jobs.creditVault),
    inArray(jobs.verdict, ["verified", "partially_verified"]),
    // Raw SQL: the vault inside the check's JSON evidence, of the row being updated.
    sql`EXISTS (SELECT 1 FROM check_results c WHERE c.job_id = jobs.job_id
      AND c.name = 'escrow.source' AND c.outcome = 'pass' AND ${vaultInEvidence} = ${vault})`,
  )!;
}

/** What a verdict leaves unproven while the treasury is still being learned. */
export const TREASURY_UNKNOWN = "treasury_unknown";

/**
 * Whether a verdict waits for the treasury: final (but `verified`) with the treasury among what
 * it left unproven, its settlement's one payee besides the worker and the credit vault counted
 * as the treasury's pay. Once the treasury is pinned such verdicts are decided again (the payee
 * they counted as a candidate may be another address, a finding; a discrepancy found for
 * another reason kept that payee's money in its treasury figure for good), so one written
 * after the pin, on pins read before it, is stale: the reopen at the pin did not see it.
 */
export function waitsForTreasury(verdict: Verdict, unproven: readonly string[]): boolean {
  return treasuryWaitingVerdicts.includes(verdict) && unproven.includes(TREASURY_UNKNOWN);
}
