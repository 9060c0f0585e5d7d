/**
 * Verifier timing for tests on the local chain: polls, retries and backfill waits of 20 ms, so
 * a test's jobs reach their verdicts in a few hundred ms instead of the production seconds.
 */
export const quickVerifierOptions = {
  pollIntervalMs: 20,
  errorBackoffMs: 20,
  backfillWaitMs: 20,
} as const;
