/**
 * Test files that wait far more than they compute: the local chain's slots, leases and their
 * clocks, deadlines, a PostgreSQL server held or hung, RPC endpoints that answer late. Run one
 * file at a time on the 2-core VM (2026-12-04), each of these took under 0.3 CPU-seconds per
 * second of its run, counting every process of vitest's tree (its workers, the processes they
 * start, the PostgreSQL server) read from /proc: 57 CPU-seconds over 387 s in all, against 893
 * over 949 s for the other 273 files. vitest.config.ts runs them after the others, many at
 * once, where among the others they held one of a few places for their whole wait. A file stays
 * in its own project kind: one of `sharedImportFiles` shares its worker's imports here too.
 */
export const waitingFiles: readonly string[] = [
  "test/bench-proxy-idle.test.ts",
  "test/chain-block-time-lies.test.ts",
  "test/chain-quorum.test.ts",
  "test/chain-rpc-pool.test.ts",
  "test/jobs-api-client-deadline.test.ts",
  "test/leader-lease.test.ts",
  "test/ledger-cut-listing.test.ts",
  "test/ledger-gap-heal-quorum.test.ts",
  "test/ledger-inner-instructions.test.ts",
  "test/ledger-listing-order.test.ts",
  "test/ledger-permanent-delegate.test.ts",
  "test/ledger-quorum-nightly.test.ts",
  "test/ledger-quorum.test.ts",
  "test/ledger-unnamed-escrow-adversary.test.ts",
  "test/ledger-world.test.ts",
  "test/ledger-wrapped-sol.test.ts",
  "test/localnet-rpc-faults.test.ts",
  "test/nightly-ledger-read-bound.dialects.test.ts",
  "test/nightly-ledger-timing.test.ts",
  "test/nightly-run-row.test.ts",
  "test/nightly-verify-close-locked.test.ts",
  "test/nightly-verify-start.test.ts",
  "test/pg-import-locked-row.test.ts",
  "test/pg-job-lease-clock.test.ts",
  "test/pg-nightly-held-freed.test.ts",
  "test/pg-nightly-verdict-refused.test.ts",
  "test/pg-pool-wait.test.ts",
  "test/pg-receipt-writer-locked-row.test.ts",
  "test/pg-receipt-writer-pool.test.ts",
  "test/pg-serve-nightly-hung-database.test.ts",
  "test/pg-turn-locked-row.test.ts",
  "test/pg-verifier-locked-row.test.ts",
  "test/pg-verify-hung-database.test.ts",
  "test/pg-verify-migration-lock.test.ts",
  "test/recorder-jobs-api-consults.test.ts",
  "test/recorder-receipt-writer-refused.test.ts",
  "test/serve-hangup.test.ts",
  "test/verify-adversarial-one-slot.test.ts",
  "test/verify-adversarial-round10.test.ts",
  "test/verify-adversarial-round11.test.ts",
  "test/verify-adversarial-round9.test.ts",
  "test/verify-drop-lies.test.ts",
  "test/verify-write-lock-deadline.test.ts",
];
