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
