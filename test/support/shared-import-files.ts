/**
 * Test files that run with `isolate: false` (vitest.config.ts, project `shared-imports`): one
 * worker imports the program's modules once for all of them, where an isolated file imports
 * them afresh (about 4.7 s a file on a loaded 2-core runner). A module's top-level code then runs
 * once per worker, not once per file, so a file here starts no process or worker thread, patches
 * no prototype, global, clock or environment variable, registers no process listener, imports
 * no helper that registers hooks at its top level (test/support/service-process.ts), and uses no
 * LiteSVM (one per process) and no PostgreSQL. test/shared-imports.test.ts reads each file for
 * those marks; a file that needs one of them belongs in the isolated project (remove it here).
 * Timing tests of the event loop stay isolated too: a file before them may leave timers running.
 */
export const sharedImportFiles: readonly string[] = [
  "test/api-auth.test.ts",
  "test/api-client.test.ts",
  "test/api-error-handler.test.ts",
  "test/api-openapi-routes.test.ts",
  "test/api-route-guard.test.ts",
  "test/background-report-counters.test.ts",
  "test/bench-generate-jobs.test.ts",
  "test/chain-adaptive-rate.test.ts",
  "test/chain-quorum-page-boundary.test.ts",
  "test/chain-quorum.test.ts",
  "test/chain-rpc-transport.test.ts",
  "test/chain-transaction-facts.test.ts",
  "test/db-write-transactions.test.ts",
  "test/errors-message.test.ts",
  "test/host-identity.test.ts",
  "test/instant.test.ts",
  "test/job-queue-lease-plans.test.ts",
  "test/jobs-api-client-deadline.test.ts",
  "test/json-duplicate-members.test.ts",
  "test/longest-first-sequencer.test.ts",
  "test/migration-guard.test.ts",
  "test/money.test.ts",
  "test/nightly-summary-format.test.ts",
  "test/proxy-large-answer-end.test.ts",
  "test/proxy-target-auth.test.ts",
  "test/proxy-upstream-request-head.test.ts",
  "test/recorder-backfill.test.ts",
  "test/recorder-ingest.test.ts",
  "test/recorder-jobs-api-consults.test.ts",
  "test/recorder-json-answer-scan.test.ts",
  "test/recorder-proxy.test.ts",
  "test/recorder-receipt-writer-locked.test.ts",
  "test/recorder-receipts.test.ts",
  "test/recorder-reopen.test.ts",
  "test/recorder-replayed-job-id.test.ts",
  "test/recorder-sse-usage.test.ts",
  "test/reports-csv-cells.test.ts",
  "test/serve-cluster-metrics.test.ts",
  "test/store-ledger-memo-plan.test.ts",
  "test/store-prepared.test.ts",
  "test/store-read-snapshot.test.ts",
  "test/store-signatures-quiet-poll.test.ts",
  "test/store.test.ts",
  "test/tokens-store.test.ts",
  "test/verify-slot-clock.test.ts",
];
