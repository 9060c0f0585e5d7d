import type { SqliteStore } from "../../src/db/client.js";
import { recordReceipt } from "../../src/recorder/receipts.js";
import type { createFakeChain } from "./verify-fake-rpc.js";
import { honest } from "./verify-fixtures.js";

/**
 * Records an honest job's receipt (job id `job_<tag>`) as ingested, its lock and settlement
 * landed on `chain`: a job the verifier settles `verified`. Returns its job id.
 */
export function recordHonest(
  store: SqliteStore,
  tag: string,
  chain: ReturnType<typeof createFakeChain>,
): string {
  const j = honest(`job_${tag}`, tag);
  chain.land(j.escrow);
  chain.land(j.settlement);
  recordReceipt(
    store,
    {
      jobId: j.job.jobId,
      escrowTx: j.job.escrowTx,
      settlementTx: j.job.settlementTx,
      worker: j.job.worker,
      creditsRemainingUnits: null,
      model: j.job.model,
      keyFingerprint: j.job.keyFingerprint ?? null,
      promptTokens: 10,
      completionTokens: j.job.completionTokens,
      totalTokens: null,
    },
    "ingest",
  );
  return j.job.jobId;
}
