import type { TestSpecification } from "vitest/node";
import { BaseSequencer } from "vitest/node";

/**
 * Seconds each of the longest test files takes on the 2-core runner, two files at once. Only
 * their order matters: a file started last, while the other worker is idle, is what the whole
 * run waits for. CI's file times of 2026-12-02 (less what a change since cut, at the ratio
 * measured on one host before and after it); two files CI did not time are earlier estimates
 * times 0.75, the median ratio of CI's figures to those estimates where both are known: a file
 * started too early costs little, one started too late the run's end. store-ledger, which CI
 * did not time, is its time on one host after its cut times the ratio of CI's figure for
 * ledger-memo-debit-adversary to that host's. The verifier and ledger files (verify-adversarial,
 * store-ledger, ledger-world, -inner-rewritten, -review-slices, -statement-adversary,
 * -node-lies) are CI's later run's times (serve-cluster 109 s there) at the ratio of
 * serve-cluster's figure here to it (0.5), less what a cut since saved at the ratio measured
 * on one host. service-sigterm, its tests two at once, and nightly-verify-start, its held start
 * given 16 s instead of 12, are their earlier figures at the ratio of one host's runs (80 of
 * 152 s of tests; 4 s more). Files not named here are short; they follow in vitest's own order.
 */
export const longFileSeconds: Readonly<Record<string, number>> = {
  "test/serve-cluster.test.ts": 48,
  "test/verify-adversarial.test.ts": 45,
  "test/store-ledger.dialects.test.ts": 14,
  "test/recorder-kill-drill.test.ts": 27,
  "test/pg-verify-hung-database.test.ts": 33,
  "test/ledger-memo-debit-adversary.dialects.test.ts": 32,
  "test/pg-multi-serve.test.ts": 29,
  "test/nightly-credits-header-edge.dialects.test.ts": 25,
  "test/pg-receipt-writer-pool.test.ts": 22,
  "test/ledger-inner-rewritten.test.ts": 10,
  "test/pg-restart.test.ts": 17,
  "test/db-upgrade.dialects.test.ts": 22,
  "test/multi-process.test.ts": 21,
  "test/verify-twice-at-once.test.ts": 20,
  "test/import-kill-drill.test.ts": 18,
  "test/cli-exit-codes.test.ts": 20,
  "test/ledger-made-up-slot.dialects.test.ts": 19,
  "test/nightly-ledger-timing.test.ts": 17,
  "test/ledger-refund-memo-deposit.dialects.test.ts": 17,
  "test/verify-rpc-faults.test.ts": 16,
  "test/chain-quorum-world.test.ts": 16,
  "test/verify-review.test.ts": 15,
  "test/verify-write-lock-deadline.test.ts": 15,
  "test/pg-receipt-writer-locked-row.test.ts": 15,
  "test/nightly-verify-start.test.ts": 17,
  "test/verify-adversarial-shapes.test.ts": 14,
  "test/ledger-statement-adversary.test.ts": 6,
  "test/pg-job-lease-clock.test.ts": 13,
  "test/service-sigterm.test.ts": 8,
  "test/nightly-verify-close-locked.test.ts": 12,
  "test/statement-balance-read.test.ts": 12,
  "test/ledger-mixed-memos.dialects.test.ts": 11,
  "test/ledger-chained-omission.dialects.test.ts": 10,
  "test/pg-import-locked-row.test.ts": 10,
  "test/store-tokens-sessions.dialects.test.ts": 10,
  "test/pg-refuses-writes.test.ts": 9,
  "test/pg-verify-migration-lock.test.ts": 9,
  "test/credits-header-clock.dialects.test.ts": 9,
  "test/db-concurrent-writers.test.ts": 8,
  "test/ledger-relisted-judged.dialects.test.ts": 8,
  "test/ledger-world.test.ts": 16,
  "test/ledger-review-slices.dialects.test.ts": 11,
  "test/ledger-node-lies.test.ts": 4,
  "test/ledger-set-aside.dialects.test.ts": 5,
};

/**
 * Longest files first. vitest orders by the durations it cached from the last run, but CI
 * starts from a fresh `npm ci` with no cache, and then orders by file size: a short file of
 * long waits (nightly-verify-start, 148 lines, 41 s) started as the 84th of 159.
 */
export class LongestFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    const root = this.ctx.config.root;
    const seconds = (file: TestSpecification) =>
      longFileSeconds[file.moduleId.slice(root.length + 1).replaceAll("\\", "/")] ?? 0;
    // Array sort is stable: files of no estimate keep vitest's order among themselves.
    return [...base].sort((a, b) => seconds(b) - seconds(a));
  }
}
