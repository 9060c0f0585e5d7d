import type { TestSpecification } from "vitest/node";
import { BaseSequencer } from "vitest/node";

/**
 * Seconds each of the longest test files takes on the 2-core runner, two files at once (CI's
 * figures for the first, a loaded run's scaled down for the others). Only their order matters: a file started last, while the other worker is idle, is what the
 * whole run waits for. Files not named here are short; they follow in vitest's own order.
 */
export const longFileSeconds: Readonly<Record<string, number>> = {
  "test/serve-cluster.test.ts": 120,
  "test/verify-adversarial.test.ts": 82,
  "test/recorder-kill-drill.test.ts": 61,
  "test/ledger-statement-adversary.test.ts": 45,
  "test/pg-restart.test.ts": 35,
  "test/ledger-world.test.ts": 35,
  "test/nightly-verify-start.test.ts": 34,
  "test/nightly-ledger-timing.test.ts": 34,
  "test/pg-multi-serve.test.ts": 31,
  "test/store-ledger.dialects.test.ts": 30,
  "test/db-upgrade.dialects.test.ts": 29,
  "test/cli-exit-codes.test.ts": 27,
  "test/verify-review.test.ts": 25,
  "test/multi-process.test.ts": 24,
  "test/verify-rpc-faults.test.ts": 21,
  "test/service-sigterm.test.ts": 20,
  "test/ledger-quorum.test.ts": 19,
  "test/store-job-queue.dialects.test.ts": 14,
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
