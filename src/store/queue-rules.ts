/* The rules of the verifier's queue that do not touch a database, shared by both dialects. */

import type { Verdict } from "../db/schema.js";

/** Verdicts of a job whose last round ended in RPC trouble; it is retried with backoff. */
export const rpcTroubleVerdicts: Verdict[] = ["error", "rpc_disagreement"];

/** Which jobs a run covers. */
export interface QueueFilter {
  /** Jobs created at or after this time (ms since epoch). */
  from?: number;
  /** Jobs created before this time (ms since epoch): the window is [from, to). */
  to?: number;
  jobIds?: string[];
}

/**
 * Whether `filter` leaves any job out: a window or named jobs. `{}` or `{from: undefined}` (a
 * `verify` run over the whole store) covers every job, as no filter does.
 */
export function narrows(filter: QueueFilter | null): filter is QueueFilter {
  return (
    filter !== null &&
    (filter.from !== undefined || filter.to !== undefined || filter.jobIds !== undefined)
  );
}

/** What an open job waits on, for a run that ends with jobs not final. */
export type OpenJobWait = "rpc" | "settlement" | "jobs_api" | "unjudged" | "finality";

/** One group of open jobs as the store counts them. */
export interface OpenJobGroup {
  verdict: Verdict;
  source: string;
  backfillState: string | null;
  /** Neither the receipt nor a jobs API answer names a settlement. */
  noSettlement: boolean;
  /** A jobs API answer names the settlement or says refunded / failed. */
  answered: boolean;
  n: number;
}

/**
 * What the jobs of a group wait on, as the verifier decides it (src/verify/decide.ts): RPC
 * trouble, the settlement backfill's search, the jobs API's answer (a proxied or backfilled
 * job waits for it), a judgement not yet made, else the chain's finality.
 */
export function openJobWait(
  group: Omit<OpenJobGroup, "n">,
  verifier: { waitsForJobsApi: boolean },
): OpenJobWait {
  if (rpcTroubleVerdicts.includes(group.verdict)) return "rpc";
  if (group.backfillState === "pending" && group.noSettlement) return "settlement";
  const asks = group.backfillState === "pending" || group.source === "proxy";
  if (verifier.waitsForJobsApi && asks && !group.answered) return "jobs_api";
  // Never judged (or sent back and not judged again): its transactions were not read, which
  // is no wait for finality (a slow or failing RPC, or a run too short for its jobs).
  if (group.verdict === "pending") return "unjudged";
  return "finality";
}

/**
 * Counts of open jobs by what they wait on; `waitsForJobsApi`: the verifier holds a job for
 * the jobs API's answer (serve's does; `verify` run alone does not).
 */
export function countOpenJobWaits(
  groups: readonly OpenJobGroup[],
  verifier: { waitsForJobsApi: boolean },
): Record<OpenJobWait, number> {
  const counts: Record<OpenJobWait, number> = {
    rpc: 0,
    settlement: 0,
    jobs_api: 0,
    unjudged: 0,
    finality: 0,
  };
  for (const group of groups) counts[openJobWait(group, verifier)] += group.n;
  return counts;
}
