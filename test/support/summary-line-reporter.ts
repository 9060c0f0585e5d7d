import type { Reporter, SerializedError, TestModule } from "vitest/node";

/**
 * Ends a run with one plain line, `N passed, N failed[, N skipped][, N files failed][, N errors]`,
 * free of colour codes, so any CI log reader can tell a run that tested something from one that
 * did not. A file whose hook or import failed has its tests skipped, not failed: it is counted
 * apart, as are errors raised outside any test, so the line never reads clean for a failed run.
 */
export class SummaryLineReporter implements Reporter {
  onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<SerializedError> = [],
  ): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    let failedFiles = 0;
    for (const module of testModules) {
      if (module.errors().length > 0) failedFiles++;
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
      }
    }
    const parts = [`${passed} passed`, `${failed} failed`];
    if (skipped > 0) parts.push(`${skipped} skipped`);
    if (failedFiles > 0) parts.push(`${failedFiles} files failed`);
    if (unhandledErrors.length > 0) parts.push(`${unhandledErrors.length} errors`);
    process.stdout.write(`\n${parts.join(", ")}\n`);
  }
}
