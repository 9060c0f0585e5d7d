// Every PostgreSQL twin a store module calls, loaded together with the PostgreSQL client
// (src/store/pg-twins.ts).

export { createPgReceiptWriter } from "../../recorder/receipt-writer-pg.js";
export { createPgAccountSnapshotsStore } from "./account-snapshots.js";
export {
  claimBackfillPg,
  createPgBackfillStore,
  giveUpBackfillPg,
  leaveToBackfillPg,
} from "./backfill.js";
export { createPgCustodyStore } from "./custody.js";
export { createPgDashboardStore } from "./dashboard.js";
export { createPgJobQueueStore } from "./job-queue.js";
export { createPgJobsApiStore, recordJobsApiAnswerPg } from "./jobs-api.js";
export { createPgLedgerStore } from "./ledger.js";
export { createPgLockStore } from "./locks.js";
export { createPgOpenReceiptStore } from "./open-receipts.js";
export { createPgOpsStore } from "./ops.js";
export { createPgReceiptsStore, recordReceiptsPg } from "./receipts.js";
export { createPgReportsStore } from "./reports.js";
export { createPgSessionsStore } from "./sessions.js";
export { createPgSignatureStore } from "./signatures.js";
export { createPgTokensStore } from "./tokens.js";
export { createPgVerdictStore } from "./verdicts.js";
export { createPgVerificationRunStore } from "./verification-runs.js";
