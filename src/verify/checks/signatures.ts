import type { TransactionFacts } from "../../chain/transaction-facts.js";
import type { Role } from "../check-catalogue.js";
import type { Profile } from "../profiles.js";
import type { CheckInput, CheckResult, ReceiptForChecks } from "./check-input.js";
import { fail, pass } from "./check-list.js";
import { memoJobOf, parseJobMemos } from "./memos.js";

/**
 * Which signatures a job names, and which job owns each: `signatures.unique` (a replayed
 * receipt, or one signature named for two steps) and the owner a transaction's money is
 * counted for.
 */

/** The signatures a job names: receipt headers first, then what the jobs API added. */
export function jobSignatures(
  job: Pick<
    ReceiptForChecks,
    "escrowTx" | "apiEscrowTx" | "settlementTx" | "apiSettlementTx" | "conflictSignatures"
  >,
): string[] {
  const all = [
    job.escrowTx,
    job.apiEscrowTx,
    job.settlementTx,
    job.apiSettlementTx,
    ...(job.conflictSignatures ?? []),
  ];
  return [...new Set(all.filter((s): s is string => s !== null))];
}

/**
 * The one job a transaction's money is counted for in reports: the job its memos name, when
 * they name exactly one job that a receipt names; when they name several, the first (by id) of
 * those naming it; otherwise the first job (by id) naming it. Every job naming a signature
 * computes the same owner, so each movement is counted once. A receipt replaying a settlement
 * that pays two jobs, under an id before both, owned it though its memos name neither: its
 * key's and worker's report groups read both jobs' payouts (`closingShares` gives a part to
 * the jobs the memos name alone, so nothing went back to them).
 */
export function signatureOwner(
  profile: Profile,
  facts: TransactionFacts,
  namers: readonly string[],
  names?: (jobId: string, signature: string) => boolean,
): string | null {
  const memoJob = memoJobOf(profile, facts.memos);
  // `namers` lists at most MAX_NAMED_BY jobs; the memo's job is asked about directly.
  if (memoJob !== null && (namers.includes(memoJob) || names?.(memoJob, facts.signature))) {
    return memoJob;
  }
  if (memoJob === null) {
    const memoJobs = new Set(parseJobMemos(profile, facts.memos).map((m) => m.jobId));
    const named = namers.filter((id) => memoJobs.has(id));
    if (named.length > 0) return [...named].sort()[0]!;
  }
  return [...namers].sort()[0] ?? null;
}

/** Signatures this job names that another job's memo (or an earlier role) claims. */
export function stolenSignatures(input: CheckInput): Map<string, string> {
  const { job, profile, transactions, namedBy } = input;
  const stolen = new Map<string, string>();
  for (const signature of jobSignatures(job)) {
    // A signature no endpoint serves moved nothing anyone could own: its `.exists` says so.
    if (input.unserved?.has(signature)) continue;
    const names = namedBy.get(signature) ?? [job.jobId];
    const facts = transactions.get(signature);
    // The job its memos name owns it once it names it anywhere (`signatureOwner`), a line the
    // ledger kept with it or a conflicting receipt of it included, though no receipt of it
    // names it: each of two receipts naming the other job's settlement, each job holding its
    // own by its memo, was judged on its own and verified, the receipt's named one let go.
    const memoJob = facts ? memoJobOf(profile, facts.memos) : null;
    if (memoJob !== null && memoJob !== job.jobId && input.names?.(memoJob, signature)) {
      stolen.set(signature, memoJob);
      continue;
    }
    if (names.every((id) => id === job.jobId)) continue;
    const owners = facts
      ? [...new Set(parseJobMemos(profile, facts.memos).map((m) => m.jobId))]
      : [];
    if (!owners.includes(job.jobId)) {
      const owner = owners[0] ?? signatureOwnerAmong(names, job.jobId);
      if (owner !== null) stolen.set(signature, owner);
    }
  }
  return stolen;
}

/** With no memo to decide, the first job by id owns a shared signature. */
function signatureOwnerAmong(names: readonly string[], self: string): string | null {
  const first = [...names].sort()[0] ?? self;
  return first === self ? null : first;
}

/** `signatures.unique`: each signature serves this job alone, in one step. */
export function uniqueSignatures(
  input: CheckInput,
  stolen: Map<string, string>,
  roles: Map<string, Role[]>,
): CheckResult {
  const { namedBy, namedByTotal } = input;
  const findings: unknown[] = [];
  for (const [signature, owner] of stolen) {
    const names = namedBy.get(signature) ?? [];
    findings.push({
      signature,
      owner,
      namedBy: names,
      jobsNaming: namedByTotal?.get(signature) ?? names.length,
    });
  }
  for (const [signature, played] of roles) {
    if (played.length > 1) findings.push({ signature, roles: played });
  }
  if (findings.length === 0)
    return pass("signatures.unique", "each signature serves only this job", []);
  const reason =
    stolen.size > 0
      ? `a signature of another job is named by this receipt (replayed receipt): ${[...stolen.values()][0]} owns it`
      : "one signature is named for two steps of this job";
  return fail("signatures.unique", reason, [], findings);
}
